//! The Postgres front end with psql and tokio-postgres: COPY in and out, PostgreSQL's text
//! output and start-up parameters, password authentication (SCRAM, md5, cleartext), TLS, the
//! connection limit and the refusal to listen beyond loopback without passwords.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::{Server, data_dir, free_port};

/// Runs psql with a connection string and `sql`, feeding `stdin`; returns (success, stdout,
/// stderr).
fn psql_conn(conn: &str, sql: &str, stdin: &str, password: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new("psql");
    cmd.arg(conn)
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let mut child = cmd.spawn().expect("run psql");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write psql stdin");
    let out = child.wait_with_output().expect("psql output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn conn(s: &Server, user: &str, extra: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={user} dbname=eddy {extra}",
        s.pg
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_with_psql() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    s.psql(
        "CREATE TABLE w (ts TIMESTAMP NOT NULL, station TEXT, temp DOUBLE PRECISION, n BIGINT, \
         ok BOOLEAN, note TEXT, PRIMARY KEY (station, ts))",
    );
    let c = conn(&s, "eddy", "");
    // Text format: tabs, \N for NULL, backslash escapes, a terminating \. line.
    let text = "2024-01-01 00:00:00\toslo\t-3.5\t1\tt\ta\\tb\n\
                2024-01-01 00:01:00\toslo\t\\N\t2\tf\t\\N\n\
                2024-01-01T00:02:00Z\tlima\t18.25\t3\ttrue\tline\\nbreak\n\\.\n";
    let (ok, out, err) = psql_conn(
        &c,
        "COPY w (ts, station, temp, n, ok, note) FROM STDIN",
        text,
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "COPY 3");
    // CSV with a header, a quoted field holding a comma, a quote and a newline.
    let csv = "station,ts,temp\nbergen,2024-01-01 00:03:00,1.5\n\"ber,\"\"gen\"\"\nx\",2024-01-01 00:04:00,2\n";
    let (ok, out, err) = psql_conn(
        &c,
        "COPY w (station, ts, temp) FROM STDIN WITH (FORMAT csv, HEADER true)",
        csv,
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "COPY 2");
    assert_eq!(
        s.psql("SELECT station, temp, n, ok, note FROM w ORDER BY ts"),
        "oslo|-3.5|1|t|a\tb\noslo||2|f|\nlima|18.25|3|t|line\nbreak\nbergen|1.5|||\nber,\"gen\"\nx|2|||\n"
    );

    // A bad value: the error names the line, the column and the type; nothing is written.
    let bad = "2024-01-02 00:00:00\toslo\t1\n2024-01-02 00:01:00\toslo\t2\n2024-01-02 00:02:00\toslo\tabc\n";
    let (ok, _, err) = psql_conn(&c, "COPY w (ts, station, temp) FROM STDIN", bad, None);
    assert!(!ok);
    assert!(err.contains("line 3"), "{err}");
    assert!(
        err.contains("\"temp\"") && err.contains("double precision"),
        "{err}"
    );
    assert_eq!(s.psql("SELECT count(*) FROM w"), "5\n");
    let (ok, _, err) = psql_conn(&c, "COPY nope FROM STDIN", "", None);
    assert!(!ok && err.contains("\"nope\" does not exist"), "{err}");

    // Out: a query as CSV with a header, a table as text.
    let (ok, out, err) = psql_conn(
        &c,
        "COPY (SELECT station, temp FROM w WHERE station = 'oslo' ORDER BY ts) TO STDOUT WITH (FORMAT csv, HEADER)",
        "",
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(out, "station,temp\noslo,-3.5\noslo,\n");
    let (ok, out, err) = psql_conn(&c, "COPY w (station, note) TO STDOUT", "", None);
    assert!(ok, "{err}");
    assert!(
        out.contains("oslo\ta\\tb\n") && out.contains("oslo\t\\N\n"),
        "{out}"
    );

    // The server's files are out of reach.
    let (ok, _, err) = psql_conn(&c, "COPY w TO '/tmp/eddy-copy-out'", "", None);
    assert!(!ok && err.contains("file"), "{err}");
}

/// tokio-postgres sends COPY as Parse/Bind/Execute, not as a simple query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_through_the_extended_protocol() {
    use futures::{SinkExt, TryStreamExt};
    let dir = data_dir();
    let s = Server::start(dir.path());
    let c = s.pg().await;
    c.batch_execute("CREATE TABLE xc (time TIMESTAMP NOT NULL, host TEXT, v BIGINT)")
        .await
        .unwrap();
    let sink = c
        .copy_in::<_, bytes::Bytes>("COPY xc (time, host, v) FROM STDIN (FORMAT csv)")
        .await
        .unwrap();
    let mut sink = std::pin::pin!(sink);
    sink.send(bytes::Bytes::from_static(
        b"2024-01-01 00:00:00,a,1\n2024-01-01 00:00:01,b,2\n",
    ))
    .await
    .unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 2);

    let out = c
        .copy_out("COPY (SELECT host, v FROM xc ORDER BY v) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = out.try_collect().await.unwrap();
    let bytes: Vec<u8> = chunks.iter().flat_map(|b| b.iter().copied()).collect();
    assert_eq!(bytes, b"a\t1\nb\t2\n");

    // A bad COPY is refused at Parse, and the connection goes on.
    let Err(e) = c
        .copy_in::<_, bytes::Bytes>("COPY xc FROM '/etc/passwd'")
        .await
    else {
        panic!("COPY from a server file was accepted");
    };
    assert!(e.as_db_error().is_some(), "{e}");
    let n: i64 = c
        .query_one("SELECT count(*) FROM xc", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_output_and_parameters_match_postgresql() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    assert_eq!(
        s.psql(
            "SELECT TIMESTAMP '2024-01-01 00:00:00', TIMESTAMP '2024-01-01 00:00:00.5', \
             TIMESTAMP '2024-01-01 12:34:56.123456', true, false, 1.5::float8, 0.1::float8, \
             1e20::float8, 3::bigint"
        ),
        "2024-01-01 00:00:00|2024-01-01 00:00:00.5|2024-01-01 12:34:56.123456|t|f|1.5|0.1|1e+20|3\n"
    );
    let v = s.psql("SELECT version()");
    assert!(v.starts_with("PostgreSQL 16.6 "), "{v}");
    assert_eq!(s.psql("SHOW server_version"), "16.6\n");
    assert_eq!(
        s.psql("SELECT current_setting('server_version_num')::int / 100 AS version"),
        "1600\n"
    );
    let c = s.pg().await;
    // Start-up parameters as PostgreSQL reports them.
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={} user=eddy dbname=eddy", s.pg),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    drop(client);
    // Empty and comment-only queries (Grafana's health check) answer EmptyQueryResponse.
    for q in ["", ";", "-- ping"] {
        let msgs = c
            .simple_query(q)
            .await
            .unwrap_or_else(|e| panic!("{q:?}: {e}"));
        assert!(
            msgs.iter()
                .all(|m| !matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))),
            "{q:?}"
        );
    }
    // Several statements in one simple query: one result each.
    let msgs = c.simple_query("SELECT 1; SELECT 2, 3").await.unwrap();
    let rows: Vec<usize> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.len()),
            _ => None,
        })
        .collect();
    assert_eq!(rows, vec![1, 2]);
    // pg_catalog for psql's \d and drivers.
    s.psql("CREATE TABLE cat_t (ts TIMESTAMP NOT NULL, h TEXT, v DOUBLE PRECISION, PRIMARY KEY (h, ts))");
    let listed = s.psql(
        "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relname = 'cat_t'",
    );
    assert_eq!(listed, "cat_t\n");
    let d = s.psql_out(&["-c", "\\d cat_t"]);
    assert!(d.contains("ts") && d.contains("double precision"), "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_requests_and_statement_timeout_stop_running_queries() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let c = s.pg().await;
    let token = c.cancel_token();
    // Streaming rows: the count runs inside the result stream, after planning.
    let long = "SELECT count(*) FROM generate_series(1, 100000000000) AS t(x) WHERE x % 7 = 3";
    let started = std::time::Instant::now();
    let cancel = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let err = c
        .simple_query(long)
        .await
        .expect_err("the query was cancelled");
    cancel.await.unwrap().unwrap();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    // The same through the extended protocol, then the connection goes on working.
    let token = c.cancel_token();
    let cancel = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let err = c
        .query(long, &[])
        .await
        .expect_err("the query was cancelled");
    cancel.await.unwrap().unwrap();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
    );
    let one: i64 = c.query_one("SELECT 1::bigint", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    // A cancel request while nothing runs changes nothing. The server handles it on its own
    // connection after the client has sent it, so give it time to land before the next query
    // (a late cancel would stop that query, in PostgreSQL too).
    c.cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let two: i64 = c.query_one("SELECT 2::bigint", &[]).await.unwrap().get(0);
    assert_eq!(two, 2);

    // statement_timeout stops the same query on its own, over both protocols.
    c.batch_execute("SET statement_timeout = '300ms'")
        .await
        .unwrap();
    let show = c.query_one("SHOW statement_timeout", &[]).await.unwrap();
    assert_eq!(show.get::<_, String>(0), "300ms");
    for extended in [false, true] {
        let err = if extended {
            c.query(long, &[]).await.map(|_| ()).unwrap_err()
        } else {
            c.simple_query(long).await.map(|_| ()).unwrap_err()
        };
        let db = err.as_db_error().expect("a server error");
        assert_eq!(db.code(), &tokio_postgres::error::SqlState::QUERY_CANCELED);
        assert_eq!(db.message(), "canceling statement due to statement timeout");
    }
    // Short statements still run; a bad value is refused and the old one kept.
    let three: i64 = c.query_one("SELECT 3::bigint", &[]).await.unwrap().get(0);
    assert_eq!(three, 3);
    let err = c
        .batch_execute("SET statement_timeout = 'soon'")
        .await
        .unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(
        db.code(),
        &tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE
    );
    assert!(
        db.message().contains("statement_timeout"),
        "{}",
        db.message()
    );
    let show = c.query_one("SHOW statement_timeout", &[]).await.unwrap();
    assert_eq!(show.get::<_, String>(0), "300ms");
    // RESET lifts the limit again.
    c.batch_execute("RESET statement_timeout").await.unwrap();
    let show = c.query_one("SHOW statement_timeout", &[]).await.unwrap();
    assert_eq!(show.get::<_, String>(0), "0");
    // SHOW prints a timeout the way PostgreSQL does, whatever unit SET used.
    for (set, shown) in [
        ("1000", "1s"),
        ("'90s'", "90s"),
        ("'120s'", "2min"),
        ("'1.5s'", "1500ms"),
        ("'2h'", "2h"),
        ("86400000", "1d"),
        ("0", "0"),
    ] {
        c.batch_execute(&format!("SET statement_timeout = {set}"))
            .await
            .unwrap();
        let show = c.query_one("SHOW statement_timeout", &[]).await.unwrap();
        assert_eq!(
            show.get::<_, String>(0),
            shown,
            "SET statement_timeout = {set}"
        );
        let current: String = c
            .query_one("SELECT current_setting('statement_timeout')", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(current, shown, "current_setting after SET {set}");
    }
    c.batch_execute("SET statement_timeout = 1000; RESET ALL")
        .await
        .unwrap();
    let show = c.query_one("SHOW statement_timeout", &[]).await.unwrap();
    assert_eq!(show.get::<_, String>(0), "0");
}

/// Result columns without an alias get PostgreSQL's names, over both protocols and through a
/// cursor, even when two share one; the plan keeps resolving ORDER BY as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_columns_have_postgresql_names() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    s.psql("CREATE TABLE names_t (time TIMESTAMP NOT NULL, h TEXT, v DOUBLE PRECISION, PRIMARY KEY (h, time))");
    s.psql("INSERT INTO names_t VALUES ('2024-01-01T00:00:00', 'a', 1), ('2024-01-01T00:00:01', 'b', 2)");
    let c = s.pg().await;
    let sql = "SELECT h, count(*), avg(v), 1 + 1, min(v)::bigint, '1'::int, max(v), max(time), \
               upper(h) AS up FROM names_t GROUP BY h ORDER BY count(*) DESC, h";
    let want = [
        "h", "count", "avg", "?column?", "min", "int4", "max", "max", "up",
    ];
    let prepared = c.prepare(sql).await.unwrap();
    let names: Vec<&str> = prepared.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, want, "extended protocol");
    let rows = c.query(&prepared, &[]).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<_, i64>("count"), 1);
    let msgs = c.simple_query(sql).await.unwrap();
    let row = msgs
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .expect("a row");
    let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, want, "simple protocol");
    // psql's header, and a cursor's rows.
    let out = s.psql_out(&["-c", "SELECT count(*), now() IS NOT NULL FROM names_t"]);
    assert!(
        out.lines()
            .next()
            .unwrap_or("")
            .contains("count | ?column?"),
        "{out}"
    );
    let msgs = c
        .simple_query("BEGIN; DECLARE n CURSOR FOR SELECT sum(v) FROM names_t; FETCH n; COMMIT")
        .await
        .unwrap();
    let row = msgs
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .expect("a fetched row");
    assert_eq!(row.columns()[0].name(), "sum");
    assert_eq!(row.get("sum"), Some("3"));
    // Inside derived tables and CTEs too, where BI tools wrap a user's query.
    let rows = c
        .query(
            "SELECT s.count, \"?column?\" FROM (SELECT count(*), 1 + 1 FROM names_t) s",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((rows[0].get::<_, i64>(0), rows[0].get::<_, i64>(1)), (2, 2));
    let rows = c
        .query(
            "WITH m AS (SELECT h, avg(v) FROM names_t GROUP BY h) SELECT h, avg FROM m ORDER BY h",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, [("a".into(), 1.0), ("b".into(), 2.0)]);
    let wrapped = c
        .prepare("SELECT * FROM (SELECT max(v), upper(h) FROM names_t GROUP BY h) AS virtual_table")
        .await
        .unwrap();
    let names: Vec<&str> = wrapped.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["max", "upper"]);
    // Repeated names, which DataFusion refuses in a plan and PostgreSQL allows.
    let sql =
        "SELECT h, h::text, 1, 1, max(v) AS m, min(v) AS m FROM names_t GROUP BY h ORDER BY h";
    let prepared = c.prepare(sql).await.unwrap();
    let names: Vec<&str> = prepared.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["h", "h", "?column?", "?column?", "m", "m"]);
    let rows = c.query(&prepared, &[]).await.unwrap();
    let got: Vec<(String, String, i64, f64, f64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(4), r.get(5)))
        .collect();
    assert_eq!(
        got,
        [
            ("a".into(), "a".into(), 1, 1.0, 1.0),
            ("b".into(), "b".into(), 1, 2.0, 2.0)
        ]
    );
}

/// A minimal frontend speaking the wire protocol message by message, for what no client
/// library exposes: a named portal from Bind, then FETCH, MOVE and CLOSE naming it.
struct RawFrontend {
    socket: tokio::net::TcpStream,
}

impl RawFrontend {
    async fn connect(port: u16) -> RawFrontend {
        use tokio::io::AsyncWriteExt;
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut body = 196608i32.to_be_bytes().to_vec();
        for s in ["user", "eddy", "database", "eddy", ""] {
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        }
        let mut startup = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        startup.extend(body);
        socket.write_all(&startup).await.unwrap();
        let mut f = RawFrontend { socket };
        f.until_ready().await;
        f
    }

    async fn send(&mut self, tag: u8, body: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let mut m = vec![tag];
        m.extend(((body.len() + 4) as i32).to_be_bytes());
        m.extend_from_slice(body);
        self.socket.write_all(&m).await.unwrap();
    }

    /// Messages up to ReadyForQuery, as (type, body), without it.
    async fn until_ready(&mut self) -> Vec<(char, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        loop {
            let tag = self.socket.read_u8().await.unwrap();
            let len = self.socket.read_i32().await.unwrap() as usize;
            let mut body = vec![0; len - 4];
            self.socket.read_exact(&mut body).await.unwrap();
            if tag == b'Z' {
                return out;
            }
            out.push((tag as char, body));
        }
    }

    /// Runs `sql` as a simple query; returns each message as its type and a readable body:
    /// the text of data rows' values, the column count of a row description, the command
    /// tag or the error's SQLSTATE.
    async fn simple(&mut self, sql: &str) -> Vec<String> {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        self.send(b'Q', &body).await;
        self.until_ready()
            .await
            .into_iter()
            .map(|(tag, b)| match tag {
                'T' => format!("T {}", i16::from_be_bytes([b[0], b[1]])),
                'D' => {
                    let len = i32::from_be_bytes([b[2], b[3], b[4], b[5]]) as usize;
                    format!("D {}", String::from_utf8_lossy(&b[6..6 + len]))
                }
                'C' => format!("C {}", String::from_utf8_lossy(&b[..b.len() - 1])),
                'E' => {
                    let code = b.split(|&c| c == 0).find(|f| f.first() == Some(&b'C'));
                    format!(
                        "E {}",
                        String::from_utf8_lossy(&code.unwrap_or_default()[1..])
                    )
                }
                other => other.to_string(),
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_move_and_close_name_protocol_portals() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    s.psql(
        "CREATE TABLE portal_t (time TIMESTAMP NOT NULL, h TEXT, n BIGINT, PRIMARY KEY (h, time))",
    );
    s.psql(
        "INSERT INTO portal_t VALUES ('2024-01-01T00:00:01', 'a', 1), ('2024-01-01T00:00:02', 'a', 2), \
         ('2024-01-01T00:00:03', 'a', 3), ('2024-01-01T00:00:04', 'a', 4), ('2024-01-01T00:00:05', 'a', 5)",
    );
    let mut f = RawFrontend::connect(s.pg).await;
    f.simple("BEGIN").await;
    // Parse and Bind (text results) make portal "p"; nothing runs it before FETCH does.
    f.send(b'P', b"\0SELECT n FROM portal_t ORDER BY time\0\0\0")
        .await;
    f.send(b'B', b"p\0\0\0\0\0\0\0\0").await;
    f.send(b'S', b"").await;
    let _ = f.until_ready().await;
    assert_eq!(
        f.simple("FETCH 2 FROM p").await,
        ["T 1", "D 1", "D 2", "C FETCH 2"]
    );
    assert_eq!(f.simple("MOVE FORWARD 1 IN p").await, ["C MOVE 1"]);
    assert_eq!(
        f.simple("FETCH RELATIVE 1 p").await,
        ["T 1", "D 4", "C FETCH 1"]
    );
    assert_eq!(f.simple("MOVE BACKWARD 1 p").await, ["E 55000"]);
    assert_eq!(
        f.simple("FETCH ALL FROM p").await,
        ["T 1", "D 5", "C FETCH 1"]
    );
    // Past the end the columns are still described.
    assert_eq!(f.simple("FETCH NEXT FROM p").await, ["T 1", "C FETCH 0"]);
    assert_eq!(f.simple("CLOSE p").await, ["C CLOSE CURSOR"]);
    assert_eq!(f.simple("FETCH NEXT FROM p").await, ["E 34000"]);
    // A SQL cursor of the same session is found first, as before.
    f.simple("DECLARE c CURSOR FOR SELECT n FROM portal_t ORDER BY time")
        .await;
    assert_eq!(
        f.simple("FETCH 1 FROM c").await,
        ["T 1", "D 1", "C FETCH 1"]
    );
    f.simple("COMMIT").await;
}

/// Column `i` of the first row of a simple query, as text.
async fn nth_value(c: &tokio_postgres::Client, sql: &str, i: usize) -> String {
    let msgs = c.simple_query(sql).await.unwrap();
    msgs.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(i).map(str::to_string),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no value from {sql}"))
}

async fn first_value(c: &tokio_postgres::Client, sql: &str) -> String {
    nth_value(c, sql, 0).await
}

/// `now()` is each statement's start, over a long-lived connection and for a prepared
/// statement run again (Grafana's `$__timeFilter` ranges and `now() - interval` panels rely on
/// it); `SET datafusion.*` applies to the statements after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn now_moves_with_each_statement_and_datafusion_settings_apply() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let c = s.pg().await;
    let prepared = c.prepare("SELECT now()").await.unwrap();
    let prepared_now = async |c: &tokio_postgres::Client| -> std::time::SystemTime {
        c.query_one(&prepared, &[]).await.unwrap().get(0)
    };
    let (simple_before, prepared_before) = (
        first_value(&c, "SELECT now()").await,
        prepared_now(&c).await,
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (simple_after, prepared_after) = (
        first_value(&c, "SELECT now()").await,
        prepared_now(&c).await,
    );
    assert!(
        simple_after > simple_before,
        "{simple_before} then {simple_after}"
    );
    assert!(prepared_after > prepared_before);

    let batch_size = "SHOW datafusion.execution.batch_size";
    assert_eq!(nth_value(&c, batch_size, 1).await, "8192");
    c.batch_execute("SET datafusion.execution.batch_size = 7")
        .await
        .unwrap();
    assert_eq!(nth_value(&c, batch_size, 1).await, "7");
    // Other sessions keep their own.
    let other = s.pg().await;
    assert_eq!(nth_value(&other, batch_size, 1).await, "8192");
    // now() still moves after the session's state was taken again.
    let later = first_value(&c, "SELECT now()").await;
    assert!(later > simple_after, "{simple_after} then {later}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_oids_and_primary_keys_survive_restarts() {
    let dir = data_dir();
    let mut s = Server::start(dir.path());
    s.psql("CREATE TABLE oid_t (ts TIMESTAMP NOT NULL, h TEXT, r TEXT, v DOUBLE PRECISION, PRIMARY KEY (h, r, ts))");
    s.psql("CREATE TABLE oid_u (ts TIMESTAMP NOT NULL, v DOUBLE PRECISION)");
    let oids =
        "SELECT relname, oid FROM pg_catalog.pg_class WHERE relname LIKE 'oid_%' ORDER BY relname";
    let before = s.psql(oids);
    // The primary key is the tags, then time, as pg_index and pg_constraint tell drivers.
    let pk = "SELECT con.conname, a.attname FROM pg_catalog.pg_constraint con \
              JOIN pg_catalog.pg_class c ON c.oid = con.conrelid \
              JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
              WHERE c.relname = 'oid_t' AND con.contype = 'p' AND array_has(con.conkey, a.attnum) \
              ORDER BY a.attnum";
    assert_eq!(s.psql(pk), "oid_t_pkey|ts\noid_t_pkey|h\noid_t_pkey|r\n");
    let d = s.psql_out(&["-c", "\\d oid_t"]);
    assert!(
        d.contains("\"oid_t_pkey\" PRIMARY KEY, btree (h, r, ts)"),
        "{d}"
    );
    s.stop();
    s.restart();
    assert_eq!(s.psql(oids), before);
    // Listing in another order after a restart does not renumber either.
    s.kill9();
    s.restart();
    s.psql("SELECT oid FROM pg_catalog.pg_class WHERE relname = 'oid_u'");
    assert_eq!(s.psql(oids), before);
    let lines: Vec<&str> = before.lines().collect();
    assert_eq!(lines.len(), 4, "tables and their key indexes: {before}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_tls_and_connection_limits() {
    let dir = data_dir();
    // SCRAM-SHA-256 (the default with users).
    let mut s = Server::start_with(
        dir.path(),
        &["--pg-user", "alice:s3cret", "--pg-connections-max", "2"],
    );
    let c = conn(&s, "alice", "");
    let (ok, out, err) = psql_conn(&c, "SELECT 1", "", Some("s3cret"));
    assert!(ok, "{err}");
    assert_eq!(out, "1\n");
    // The session knows who logged in.
    let sql = "SELECT session_user, current_user, user, current_role, \
               current_setting('session_authorization')";
    let (ok, out, err) = psql_conn(&c, sql, "", Some("s3cret"));
    assert!(ok, "{err}");
    assert_eq!(out, "alice|alice|alice|alice|alice\n");
    let (ok, _, err) = psql_conn(&c, "SELECT 1", "", Some("wrong"));
    assert!(
        !ok && err
            .to_lowercase()
            .contains("password authentication failed"),
        "{err}"
    );
    let (ok, _, err) = psql_conn(&conn(&s, "mallory", ""), "SELECT 1", "", Some("s3cret"));
    assert!(
        !ok && err.contains("password authentication failed"),
        "{err}"
    );
    // The connection limit: two held, the third is refused with a reason.
    let url = format!(
        "host=127.0.0.1 port={} user=alice password=s3cret dbname=eddy",
        s.pg
    );
    let mut held = Vec::new();
    for _ in 0..2 {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        held.push(client);
    }
    let e = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(_) => panic!("a third connection was accepted over pg_connections_max = 2"),
        Err(e) => e,
    };
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
    assert_eq!(db.code().code(), "53300", "{db:?}");
    drop(held);
    s.stop();

    // md5 and cleartext.
    for method in ["md5", "password"] {
        let mut s = Server::start_with(dir.path(), &["--pg-user", "bob:pw", "--pg-auth", method]);
        let (ok, out, err) = psql_conn(&conn(&s, "bob", ""), "SELECT 2", "", Some("pw"));
        assert!(ok, "{method}: {err}");
        assert_eq!(out, "2\n");
        let (ok, _, _) = psql_conn(&conn(&s, "bob", ""), "SELECT 2", "", Some("nope"));
        assert!(!ok, "{method}: a wrong password was accepted");
        s.stop();
    }

    // TLS with a self-signed certificate: sslmode=require works only when it is configured.
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(st.success());
    let mut plain = Server::start(dir.path());
    let (ok, _, err) = psql_conn(
        &conn(&plain, "eddy", "sslmode=require"),
        "SELECT 1",
        "",
        None,
    );
    assert!(!ok, "sslmode=require must fail without TLS configured");
    assert!(err.to_lowercase().contains("ssl"), "{err}");
    plain.stop();
    let s = Server::start_with(
        dir.path(),
        &[
            "--pg-tls-cert",
            cert.to_str().unwrap(),
            "--pg-tls-key",
            key.to_str().unwrap(),
        ],
    );
    let (ok, out, err) = psql_conn(&conn(&s, "eddy", "sslmode=require"), "SELECT 3", "", None);
    assert!(ok, "{err}");
    assert_eq!(out, "3\n");
}

#[test]
fn listening_beyond_loopback_needs_passwords() {
    let dir = data_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--http-addr")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--pg-addr")
        .arg(format!("0.0.0.0:{}", free_port()))
        .output()
        .expect("run eddy");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("requires authentication"), "{err}");
}
