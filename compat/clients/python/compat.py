"""Python MySQLdb (mysqlclient) client of the compatibility suite.

Usage: compat.py RUNS.json HOST PORT USER PASSWORD DB (see ../README.md).
MySQLdb has no server-side prepared statements: the "prep" runs pass the
parameters to cursor.execute, which quotes them on the client.
"""
import datetime
import decimal
import json
import sys

import MySQLdb


def canon(v, desc):
    """The value as MySQL's text protocol would show it, as bytes."""
    if v is None:
        return None
    scale = desc[5] if desc and desc[5] and 0 < desc[5] <= 6 else 0
    if isinstance(v, bool):
        return b"1" if v else b"0"
    if isinstance(v, int):
        s = str(v)
    elif isinstance(v, float):
        s = str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    elif isinstance(v, decimal.Decimal):
        s = format(v, "f")
    elif isinstance(v, datetime.datetime):
        s = v.strftime("%Y-%m-%d %H:%M:%S")
        if scale:
            s += ".%06d" % v.microsecond
            s = s[: len(s) - 6 + scale]
    elif isinstance(v, datetime.date):
        s = v.isoformat()
    elif isinstance(v, datetime.timedelta):
        us = (v.days * 86400 + v.seconds) * 1000000 + v.microseconds
        sign = "-" if us < 0 else ""
        us = abs(us)
        secs, frac = divmod(us, 1000000)
        s = "%s%02d:%02d:%02d" % (sign, secs // 3600, secs // 60 % 60, secs % 60)
        if scale:
            s += (".%06d" % frac)[: scale + 1]
    elif isinstance(v, (bytes, bytearray)):
        return bytes(v)
    elif isinstance(v, (set, frozenset)):
        s = ",".join(sorted(v))
    else:
        s = str(v)
    return s.encode("utf-8")


def placeholders(q):
    """? outside quotes becomes %s; a literal % becomes %%."""
    out, quote, i = [], None, 0
    while i < len(q):
        c = q[i]
        if quote:
            if c == "\\" and quote != "`" and i + 1 < len(q):
                out.append(c + q[i + 1].replace("%", "%%"))
                i += 2
                continue
            if c == quote:
                quote = None
            out.append("%%" if c == "%" else c)
        elif c in "'\"`":
            quote = c
            out.append(c)
        elif c == "?":
            out.append("%s")
        else:
            out.append("%%" if c == "%" else c)
        i += 1
    return "".join(out)


def param(p):
    t, v = p["t"], p.get("v")
    if t == "null":
        return None
    if t == "int":
        return int(v)
    if t == "double":
        return float(v)
    if t == "bytes":
        return bytes.fromhex(v)
    return v


def main():
    path, host, port, user, password, db = sys.argv[1:7]
    with open(path, encoding="utf-8") as f:
        runs = json.load(f)["runs"]

    def connect(database):
        kw = dict(host=host, port=int(port), user=user, passwd=password, charset="utf8mb4", use_unicode=True)
        if database:
            kw["db"] = database
        c = MySQLdb.connect(**kw)
        c.autocommit(True)
        return c

    conns = {}
    for run in runs:
        key = "" if run["nodb"] else db
        if key not in conns:
            conns[key] = connect(key)
        conn = conns[key]
        for si, step in enumerate(run["steps"]):
            if step.get("tx"):
                out = {"run": run["id"], "step": si, "exec": 0}
                try:
                    if step["tx"] == "begin":
                        conn.begin()
                    elif step["tx"] == "commit":
                        conn.commit()
                    else:
                        conn.rollback()
                except MySQLdb.Error as e:
                    out["error"] = error(conn, e)
                print(json.dumps(out), flush=True)
                continue
            for ei, ex in enumerate(step["execs"]):
                out = {"run": run["id"], "step": si, "exec": ei}
                cur = conn.cursor()
                try:
                    if run["prep"]:
                        cur.execute(placeholders(ex["sql"]), [param(p) for p in ex["params"]])
                    else:
                        cur.execute(ex["sql"])
                    if cur.description is not None:
                        rows = cur.fetchall()
                        out["cols"] = [d[0] for d in cur.description]
                        out["rows"] = [
                            [None if canon(v, d) is None else canon(v, d).hex() for v, d in zip(row, cur.description)]
                            for row in rows
                        ]
                    else:
                        out["affected"] = cur.rowcount
                        out["insert_id"] = cur.lastrowid
                except MySQLdb.Error as e:
                    out["error"] = error(conn, e)
                finally:
                    cur.close()
                print(json.dumps(out), flush=True)


def error(conn, e):
    code = e.args[0] if e.args and isinstance(e.args[0], int) else 0
    msg = e.args[1] if len(e.args) > 1 else str(e)
    return {"code": code, "state": conn.sqlstate(), "msg": msg}


if __name__ == "__main__":
    main()
