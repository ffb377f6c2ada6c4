// JDBC client of the compatibility suite: MariaDB Connector/J (Debian's
// libmariadb-java) with server-side prepared statements
// (useServerPrepStmts=true).
// Usage: java -cp mariadb-java-client.jar Compat.java RUNS.json HOST PORT USER PASSWORD DB
// (see ../README.md). The JDK has no JSON library: a small reader is below.
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.*;
import java.util.*;

@SuppressWarnings("unchecked")
public class Compat {
    public static void main(String[] a) throws Exception {
        String text = Files.readString(Path.of(a[0]), StandardCharsets.UTF_8);
        Map<String, Object> doc = (Map<String, Object>) new Json(text).value();
        Map<String, Connection> conns = new HashMap<>();
        for (Object ro : (List<Object>) doc.get("runs")) {
            Map<String, Object> run = (Map<String, Object>) ro;
            String id = (String) run.get("id");
            boolean prep = Boolean.TRUE.equals(run.get("prep"));
            String key = Boolean.TRUE.equals(run.get("nodb")) ? "" : a[5];
            Connection c = conns.get(key);
            if (c == null) {
                String url = "jdbc:mariadb://" + a[1] + ":" + a[2] + "/" + key + "?useServerPrepStmts=true";
                c = DriverManager.getConnection(url, a[3], a[4]);
                conns.put(key, c);
            }
            List<Object> steps = (List<Object>) run.get("steps");
            for (int si = 0; si < steps.size(); si++) {
                Map<String, Object> step = (Map<String, Object>) steps.get(si);
                String tx = (String) step.get("tx");
                if (tx != null) {
                    StringBuilder o = head(id, si, 0);
                    try {
                        switch (tx) {
                            case "begin": c.setAutoCommit(false); break;
                            case "commit": c.commit(); c.setAutoCommit(true); break;
                            default: c.rollback(); c.setAutoCommit(true);
                        }
                    } catch (SQLException e) { error(o, e); }
                    emit(o);
                    continue;
                }
                List<Object> execs = (List<Object>) step.get("execs");
                PreparedStatement ps = null;
                for (int ei = 0; ei < execs.size(); ei++) {
                    Map<String, Object> ex = (Map<String, Object>) execs.get(ei);
                    String sql = (String) ex.get("sql");
                    StringBuilder o = head(id, si, ei);
                    try {
                        Statement st;
                        boolean hasRows;
                        if (prep) {
                            // one prepared statement for all of the step's executions
                            if (ps == null) ps = c.prepareStatement(sql, Statement.RETURN_GENERATED_KEYS);
                            List<Object> params = (List<Object>) ex.get("params");
                            for (int i = 0; i < params.size(); i++) bind(ps, i + 1, (Map<String, Object>) params.get(i));
                            hasRows = ps.execute();
                            st = ps;
                        } else {
                            st = c.createStatement();
                            hasRows = st.execute(sql, Statement.RETURN_GENERATED_KEYS);
                        }
                        if (hasRows) rows(o, st.getResultSet());
                        else {
                            o.append(",\"affected\":").append(st.getUpdateCount());
                            try (ResultSet k = st.getGeneratedKeys()) {
                                o.append(",\"insert_id\":").append(k.next() ? k.getLong(1) : 0);
                            }
                        }
                        if (!prep) st.close();
                    } catch (SQLException e) { error(o, e); }
                    emit(o);
                }
                if (ps != null) ps.close();
            }
        }
        for (Connection c : conns.values()) c.close();
    }

    static void bind(PreparedStatement ps, int i, Map<String, Object> p) throws SQLException {
        String v = (String) p.get("v");
        switch ((String) p.get("t")) {
            case "null": ps.setNull(i, Types.VARCHAR); break;
            case "int": ps.setLong(i, Long.parseLong(v)); break;
            case "double": ps.setDouble(i, Double.parseDouble(v)); break;
            case "bytes": ps.setBytes(i, hexBytes(v)); break;
            default: ps.setString(i, v);
        }
    }

    // Values as MySQL's text protocol shows them: getString, except bytes
    // for binary columns and the number for YEAR (a date to JDBC).
    static void rows(StringBuilder o, ResultSet rs) throws SQLException {
        ResultSetMetaData md = rs.getMetaData();
        int n = md.getColumnCount();
        o.append(",\"cols\":[");
        for (int i = 1; i <= n; i++) o.append(i > 1 ? "," : "").append(str(md.getColumnLabel(i)));
        o.append("],\"rows\":[");
        boolean first = true;
        while (rs.next()) {
            o.append(first ? "[" : ",[");
            first = false;
            for (int i = 1; i <= n; i++) {
                if (i > 1) o.append(",");
                byte[] b;
                int t = md.getColumnType(i);
                if (t == Types.BINARY || t == Types.VARBINARY || t == Types.LONGVARBINARY || t == Types.BLOB || t == Types.BIT) {
                    b = rs.getBytes(i);
                } else if (t == Types.DOUBLE || t == Types.FLOAT || t == Types.REAL) {
                    double d = rs.getDouble(i);
                    // MySQL writes 2, Java 2.0
                    String s = d == Math.rint(d) && Math.abs(d) < 1e15 ? Long.toString((long) d) : Double.toString(d);
                    b = rs.wasNull() ? null : s.getBytes(StandardCharsets.UTF_8);
                } else if (t == Types.DECIMAL || t == Types.NUMERIC) {
                    java.math.BigDecimal d = rs.getBigDecimal(i);
                    b = d == null ? null : d.toPlainString().getBytes(StandardCharsets.UTF_8);
                } else if (t == Types.TIMESTAMP || t == Types.TIME) {
                    String s = rs.getString(i);
                    b = s == null ? null : fraction(s, md.getScale(i)).getBytes(StandardCharsets.UTF_8);
                } else if ("YEAR".equals(md.getColumnTypeName(i))) {
                    int y = rs.getInt(i);
                    b = rs.wasNull() ? null : Integer.toString(y).getBytes(StandardCharsets.UTF_8);
                } else {
                    String s = rs.getString(i);
                    b = s == null ? null : s.getBytes(StandardCharsets.UTF_8);
                }
                o.append(b == null || rs.wasNull() ? "null" : "\"" + hex(b) + "\"");
            }
            o.append("]");
        }
        o.append("]");
        rs.close();
    }

    // Connector/J shows a TIMESTAMP as Timestamp.toString ("… 13:14:15.0")
    // and a binary-protocol TIME with its microseconds: MySQL's text has as
    // many fraction digits as the column's scale.
    static String fraction(String s, int scale) {
        int dot = s.lastIndexOf('.');
        String whole = dot < 0 ? s : s.substring(0, dot);
        if (scale <= 0 || scale > 6) return whole;
        String f = (dot < 0 ? "" : s.substring(dot + 1)) + "000000";
        return whole + "." + f.substring(0, scale);
    }

    static void error(StringBuilder o, SQLException e) {
        // Connector/J prefixes "(conn=N) " to the server's message
        String msg = String.valueOf(e.getMessage()).replaceFirst("^\\(conn=\\d+\\) ", "");
        o.append(",\"error\":{\"code\":").append(e.getErrorCode()).append(",\"state\":").append(str(String.valueOf(e.getSQLState())))
            .append(",\"msg\":").append(str(msg)).append("}");
    }

    static StringBuilder head(String run, int step, int exec) {
        return new StringBuilder("{\"run\":" + str(run) + ",\"step\":" + step + ",\"exec\":" + exec);
    }

    static void emit(StringBuilder o) {
        System.out.println(o.append("}"));
        System.out.flush();
    }

    static String hex(byte[] b) {
        StringBuilder s = new StringBuilder();
        for (byte x : b) s.append(String.format("%02x", x & 0xff));
        return s.toString();
    }

    static byte[] hexBytes(String h) {
        byte[] b = new byte[h.length() / 2];
        for (int i = 0; i < b.length; i++) b[i] = (byte) Integer.parseInt(h.substring(2 * i, 2 * i + 2), 16);
        return b;
    }

    static String str(String s) {
        StringBuilder o = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            if (ch == '"' || ch == '\\') o.append('\\').append(ch);
            else if (ch < 0x20) o.append(String.format("\\u%04x", (int) ch));
            else o.append(ch);
        }
        return o.append('"').toString();
    }

    // A JSON reader for the runs file: objects, arrays, strings, numbers,
    // true, false, null.
    static final class Json {
        final String s;
        int i;

        Json(String s) { this.s = s; }

        Object value() {
            ws();
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> m = new LinkedHashMap<>();
                i++;
                ws();
                if (s.charAt(i) == '}') { i++; return m; }
                while (true) {
                    ws();
                    String k = string();
                    ws();
                    i++; // :
                    m.put(k, value());
                    ws();
                    if (s.charAt(i++) == '}') return m;
                }
            }
            if (c == '[') {
                List<Object> l = new ArrayList<>();
                i++;
                ws();
                if (s.charAt(i) == ']') { i++; return l; }
                while (true) {
                    l.add(value());
                    ws();
                    if (s.charAt(i++) == ']') return l;
                }
            }
            if (c == '"') return string();
            if (s.startsWith("true", i)) { i += 4; return true; }
            if (s.startsWith("false", i)) { i += 5; return false; }
            if (s.startsWith("null", i)) { i += 4; return null; }
            int j = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) i++;
            return s.substring(j, i);
        }

        String string() {
            StringBuilder o = new StringBuilder();
            i++; // "
            while (true) {
                char c = s.charAt(i++);
                if (c == '"') return o.toString();
                if (c != '\\') { o.append(c); continue; }
                char e = s.charAt(i++);
                switch (e) {
                    case 'n': o.append('\n'); break;
                    case 't': o.append('\t'); break;
                    case 'r': o.append('\r'); break;
                    case 'b': o.append('\b'); break;
                    case 'f': o.append('\f'); break;
                    case 'u': o.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; break;
                    default: o.append(e);
                }
            }
        }

        void ws() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++;
        }
    }
}
