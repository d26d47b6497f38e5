// Drives Eddy with pgjdbc: PreparedStatement parameters, ResultSet types, DatabaseMetaData
// (pg_catalog queries), and setFetchSize with autocommit off (portals executed with a row limit).
//
// Reads EDDY_PG_PORT from the environment; prints `ok: <check>` per check and exits non-zero
// with a message on the first failure.
//
//   javac -d OUT -cp /usr/share/java/postgresql.jar EddyJdbcTest.java
//   java -cp OUT:/usr/share/java/postgresql.jar EddyJdbcTest

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.Statement;
import java.sql.Timestamp;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Properties;
import java.util.TimeZone;

public class EddyJdbcTest {
    static void check(String name, Object got, Object want) {
        if (!Objects.equals(got, want)) {
            System.err.println("FAIL: " + name + ": got " + got + ", want " + want);
            System.exit(1);
        }
        System.out.println("ok: " + name);
    }

    static void check(String name, boolean cond) {
        check(name, cond, true);
    }

    static Timestamp ts(int minute) {
        return Timestamp.valueOf(String.format("2024-01-01 00:%02d:00", minute));
    }

    public static void main(String[] args) {
        try {
            run();
        } catch (Exception e) {
            e.printStackTrace();
            System.err.println("FAIL: " + e);
            System.exit(1);
        }
        System.out.println("jdbc: all checks passed");
    }

    static void run() throws Exception {
        // Eddy's timestamps are UTC without a time zone; keep the JVM's conversions neutral.
        TimeZone.setDefault(TimeZone.getTimeZone("UTC"));
        String port = System.getenv("EDDY_PG_PORT");
        Properties props = new Properties();
        props.setProperty("user", "eddy");
        props.setProperty("sslmode", "disable");
        props.setProperty("connectTimeout", "10");
        props.setProperty("socketTimeout", "60");
        String url = "jdbc:postgresql://127.0.0.1:" + port + "/eddy";
        try (Connection conn = DriverManager.getConnection(url, props)) {
            DatabaseMetaData md = conn.getMetaData();
            check("getDatabaseProductName", md.getDatabaseProductName(), "PostgreSQL");
            String version = md.getDatabaseProductVersion();
            check("getDatabaseProductVersion " + version + " >= 14",
                    md.getDatabaseMajorVersion() >= 14);

            try (Statement st = conn.createStatement()) {
                st.execute("DROP TABLE IF EXISTS jdbc_weather");
                st.execute("CREATE TABLE jdbc_weather (ts TIMESTAMP NOT NULL, station TEXT,"
                        + " temp DOUBLE PRECISION, n BIGINT, ok BOOLEAN, PRIMARY KEY (station, ts))");
            }
            try (PreparedStatement ps = conn.prepareStatement(
                    "INSERT INTO jdbc_weather (ts, station, temp, n, ok) VALUES (?, ?, ?, ?, ?)")) {
                Object[][] rows = {
                    {0, "oslo", -3.5, 1L, true}, {1, "oslo", -3.0, 2L, false},
                    {2, "oslo", -2.5, 3L, true}, {3, "oslo", -2.0, 6L, true},
                    {4, "oslo", -1.5, 7L, false}, {0, "lima", 18.25, 4L, true},
                };
                int total = 0;
                for (Object[] r : rows) {
                    ps.setTimestamp(1, ts((Integer) r[0]));
                    ps.setString(2, (String) r[1]);
                    ps.setDouble(3, (Double) r[2]);
                    ps.setLong(4, (Long) r[3]);
                    ps.setBoolean(5, (Boolean) r[4]);
                    total += ps.executeUpdate();
                }
                check("PreparedStatement INSERT update counts", total, rows.length);
            }

            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT ts, station, temp, n, ok FROM jdbc_weather"
                    + " WHERE station = ? AND temp > ? AND n >= ? AND ts >= ? ORDER BY ts")) {
                ps.setString(1, "oslo");
                ps.setDouble(2, -3.2);
                ps.setLong(3, 2L);
                ps.setTimestamp(4, ts(0));
                try (ResultSet rs = ps.executeQuery()) {
                    ResultSetMetaData rsmd = rs.getMetaData();
                    List<String> types = new ArrayList<>();
                    for (int i = 1; i <= rsmd.getColumnCount(); i++) {
                        types.add(rsmd.getColumnName(i) + ":" + rsmd.getColumnTypeName(i));
                    }
                    check("ResultSetMetaData column types", types,
                            List.of("ts:timestamp", "station:text", "temp:float8", "n:int8", "ok:bool"));
                    check("first row present", rs.next());
                    check("getTimestamp", rs.getTimestamp(1), ts(1));
                    check("getString", rs.getString(2), "oslo");
                    check("getDouble", rs.getDouble(3), -3.0);
                    check("getLong", rs.getLong(4), 2L);
                    check("getBoolean", rs.getBoolean(5), false);
                    check("getObject classes",
                            List.of(rs.getObject(1).getClass().getSimpleName(),
                                    rs.getObject(2).getClass().getSimpleName(),
                                    rs.getObject(3).getClass().getSimpleName(),
                                    rs.getObject(4).getClass().getSimpleName(),
                                    rs.getObject(5).getClass().getSimpleName()),
                            List.of("Timestamp", "String", "Double", "Long", "Boolean"));
                    int n = 1;
                    while (rs.next()) n++;
                    check("parameterized SELECT row count", n, 4);
                }
            }

            List<String> tables = new ArrayList<>();
            try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_NAME"));
            }
            check("getTables contains jdbc_weather", tables.contains("jdbc_weather"));

            List<String> cols = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "public", "jdbc_weather", "%")) {
                while (rs.next()) cols.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME"));
            }
            check("getColumns names and types", cols,
                    List.of("ts:timestamp", "station:text", "temp:float8", "n:int8", "ok:bool"));

            List<String> pk = new ArrayList<>();
            try (ResultSet rs = md.getPrimaryKeys(null, "public", "jdbc_weather")) {
                while (rs.next()) pk.add(rs.getString("COLUMN_NAME") + ":" + rs.getShort("KEY_SEQ"));
            }
            check("getPrimaryKeys", pk, List.of("station:1", "ts:2"));

            int typeRows = 0;
            try (ResultSet rs = md.getTypeInfo()) {
                while (rs.next()) typeRows++;
            }
            check("getTypeInfo is non-empty", typeRows > 0);

            // With autocommit off, setFetchSize makes pgjdbc execute a named portal 2 rows at a
            // time (Execute with max_rows = 2, PortalSuspended in between).
            conn.setAutoCommit(false);
            try (PreparedStatement ps = conn.prepareStatement(
                    "SELECT n FROM jdbc_weather WHERE station = ? ORDER BY ts")) {
                ps.setFetchSize(2);
                ps.setString(1, "oslo");
                List<Long> ns = new ArrayList<>();
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) ns.add(rs.getLong(1));
                }
                check("setFetchSize(2) returns all 5 rows", ns, List.of(1L, 2L, 3L, 6L, 7L));
            }
            conn.commit();
            conn.setAutoCommit(true);
        }
    }
}
