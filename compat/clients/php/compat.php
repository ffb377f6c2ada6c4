<?php
// PHP client of the compatibility suite: mysqli, or PDO with native
// (server-side) prepared statements.
// Usage: php compat.php mysqli|pdo RUNS.json HOST PORT USER PASSWORD DB (see ../README.md)

ini_set('precision', '-1'); // floats print as their shortest round-trip form
[$_, $api, $path, $host, $port, $user, $password, $db] = $argv;
$runs = json_decode(file_get_contents($path), true)['runs'];

// BIT values come back as numbers: the server's text form is their
// big-endian bytes.
function bits(int $v, int $len): string {
    $n = max(1, intdiv($len + 7, 8));
    $s = '';
    for ($i = 0; $i < $n; $i++) { $s = chr($v & 0xff) . $s; $v >>= 8; }
    return $s;
}

function canon($v, bool $isBit, int $len) {
    if ($v === null) return null;
    // mysqlnd turns BIT into a number, in text results too
    if ($isBit) return bits((int)$v, $len);
    if (is_int($v)) return (string)$v;
    if (is_float($v)) return (floor($v) == $v && abs($v) < 1e15) ? sprintf('%.0f', $v) : (string)$v;
    if (is_bool($v)) return $v ? '1' : '0';
    return (string)$v;
}

function hexrows(array $rows, array $bit, array $len): array {
    $out = [];
    foreach ($rows as $row) {
        $r = [];
        foreach (array_values($row) as $i => $v) {
            $c = canon($v, $bit[$i], $len[$i]);
            $r[] = $c === null ? null : bin2hex($c);
        }
        $out[] = $r;
    }
    return $out;
}

function param(array $p) {
    switch ($p['t']) {
        case 'null': return null;
        case 'int': return (int)$p['v'];
        case 'double': return (float)$p['v'];
        case 'bytes': return hex2bin($p['v']);
        default: return $p['v'];
    }
}

// an error of the driver itself, not of the server
function driver_err(Throwable $e): array {
    return ['code' => -1, 'state' => '', 'msg' => get_class($e) . ': ' . $e->getMessage()];
}

function emit(array $o) { echo json_encode($o, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE), "\n"; }

// ---- mysqli
function mysqli_fields($res): array {
    $cols = $bit = $len = [];
    foreach ($res->fetch_fields() as $f) {
        $cols[] = $f->name;
        $bit[] = $f->type == MYSQLI_TYPE_BIT;
        $len[] = (int)$f->length;
    }
    return [$cols, $bit, $len];
}

function mysqli_run($m, array $run, array $step, int $si) {
    if (!empty($step['tx'])) {
        $o = ['run' => $run['id'], 'step' => $si, 'exec' => 0];
        try {
            if ($step['tx'] == 'begin') $m->begin_transaction();
            elseif ($step['tx'] == 'commit') $m->commit();
            else $m->rollback();
        } catch (mysqli_sql_exception $e) { $o['error'] = mysqli_err($e); }
        catch (Throwable $e) { $o['error'] = driver_err($e); }
        emit($o);
        return;
    }
    $st = null;
    foreach ($step['execs'] as $ei => $ex) {
        $o = ['run' => $run['id'], 'step' => $si, 'exec' => $ei];
        try {
            if (!$run['prep']) {
                $r = $m->query($ex['sql']);
                if ($r === true) {
                    $o['affected'] = $m->affected_rows;
                    $o['insert_id'] = $m->insert_id;
                } else {
                    [$o['cols'], $bit, $len] = mysqli_fields($r);
                    $o['rows'] = hexrows($r->fetch_all(MYSQLI_NUM), $bit, $len);
                }
            } else {
                // one prepared statement for all of the step's executions
                if ($st === null) $st = $m->prepare($ex['sql']);
                $vals = array_map('param', $ex['params']);
                if ($vals) {
                    $types = '';
                    $long = [];
                    foreach ($ex['params'] as $i => $p) {
                        switch ($p['t']) {
                            case 'int': $types .= 'i'; break;
                            case 'double': $types .= 'd'; break;
                            // bytes go as long data (COM_STMT_SEND_LONG_DATA)
                            case 'bytes': $types .= 'b'; $long[$i] = $vals[$i]; $vals[$i] = null; break;
                            default: $types .= 's';
                        }
                    }
                    $st->bind_param($types, ...$vals);
                    foreach ($long as $i => $data) $st->send_long_data($i, $data);
                }
                $st->execute();
                $r = $st->get_result();
                if ($r === false) {
                    $o['affected'] = $st->affected_rows;
                    $o['insert_id'] = $st->insert_id;
                } else {
                    [$o['cols'], $bit, $len] = mysqli_fields($r);
                    $o['rows'] = hexrows($r->fetch_all(MYSQLI_NUM), $bit, $len);
                }
            }
        } catch (mysqli_sql_exception $e) { $o['error'] = mysqli_err($e); }
        catch (Throwable $e) { $o['error'] = driver_err($e); }
        emit($o);
    }
}

function mysqli_err(mysqli_sql_exception $e): array {
    return ['code' => $e->getCode(), 'state' => $e->getSqlState(), 'msg' => $e->getMessage()];
}

// ---- PDO
function pdo_run(PDO $pdo, array $run, array $step, int $si) {
    if (!empty($step['tx'])) {
        $o = ['run' => $run['id'], 'step' => $si, 'exec' => 0];
        try {
            if ($step['tx'] == 'begin') $pdo->beginTransaction();
            elseif ($step['tx'] == 'commit') $pdo->commit();
            else $pdo->rollBack();
        } catch (PDOException $e) { $o['error'] = pdo_err($e); }
        catch (Throwable $e) { $o['error'] = driver_err($e); }
        emit($o);
        return;
    }
    // text runs: emulated prepares with no placeholders send COM_QUERY
    $pdo->setAttribute(PDO::ATTR_EMULATE_PREPARES, !$run['prep']);
    $st = null;
    foreach ($step['execs'] as $ei => $ex) {
        $o = ['run' => $run['id'], 'step' => $si, 'exec' => $ei];
        try {
            if ($st === null || !$run['prep']) $st = $pdo->prepare($ex['sql']);
            foreach ($ex['params'] as $i => $p) {
                $type = ['null' => PDO::PARAM_NULL, 'int' => PDO::PARAM_INT, 'bytes' => PDO::PARAM_LOB][$p['t']] ?? PDO::PARAM_STR;
                $st->bindValue($i + 1, param($p), $type);
            }
            $st->execute();
            $n = $st->columnCount();
            if ($n == 0) {
                $o['affected'] = $st->rowCount();
                $o['insert_id'] = (int)$pdo->lastInsertId();
            } else {
                $cols = $bit = $len = [];
                for ($i = 0; $i < $n; $i++) {
                    $meta = $st->getColumnMeta($i);
                    $cols[] = $meta['name'];
                    $bit[] = ($meta['native_type'] ?? '') == 'BIT';
                    $len[] = (int)($meta['len'] ?? 0);
                }
                $o['cols'] = $cols;
                $o['rows'] = hexrows($st->fetchAll(PDO::FETCH_NUM), $bit, $len);
            }
            $st->closeCursor();
        } catch (PDOException $e) { $o['error'] = pdo_err($e); }
        catch (Throwable $e) { $o['error'] = driver_err($e); }
        emit($o);
    }
}

function pdo_err(PDOException $e): array {
    $i = $e->errorInfo ?? [];
    return ['code' => (int)($i[1] ?? 0), 'state' => (string)($i[0] ?? ''), 'msg' => (string)($i[2] ?? $e->getMessage())];
}

// ---- main
$conns = [];
$connect = function (string $database) use ($api, $host, $port, $user, $password) {
    if ($api == 'mysqli') {
        mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);
        $m = new mysqli($host, $user, $password, $database === '' ? null : $database, (int)$port);
        $m->set_charset('utf8mb4');
        return $m;
    }
    $dsn = "mysql:host=$host;port=$port;charset=utf8mb4" . ($database === '' ? '' : ";dbname=$database");
    return new PDO($dsn, $user, $password, [
        PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
        PDO::ATTR_EMULATE_PREPARES => false,
        PDO::ATTR_STRINGIFY_FETCHES => false,
    ]);
};
foreach ($runs as $run) {
    $key = $run['nodb'] ? '' : $db;
    if (!isset($conns[$key])) $conns[$key] = $connect($key);
    foreach ($run['steps'] as $si => $step) {
        if ($api == 'mysqli') mysqli_run($conns[$key], $run, $step, $si);
        else pdo_run($conns[$key], $run, $step, $si);
    }
}
