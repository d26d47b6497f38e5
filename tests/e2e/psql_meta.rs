//! psql's catalog meta-commands against Eddy (`\dt+`, `\l+`, `\dn+`, `\dv`, `\dm`, `\df`,
//! `\d+`) with the sizes they show, and a failed statement as an operator sees it: one line in
//! the server's log at the default log level, with its SQLSTATE, message, client address and
//! statement, and a count in `/metrics` by SQLSTATE.

use std::path::PathBuf;
use std::process::Command;

use crate::common::{Server, data_dir};

/// The counter of failed statements in `/metrics`, labelled by SQLSTATE.
const STATEMENT_ERRORS_METRIC: &str = "eddy_pg_statement_errors_total";
/// The label of [`STATEMENT_ERRORS_METRIC`] that holds the SQLSTATE.
const SQLSTATE_LABEL: &str = "sqlstate";

/// Runs `psql -X -A -F'|' -c meta` and returns its stdout; panics unless psql succeeded
/// without an error on stderr (psql prints "Did not find any ..." there, which is no error).
fn psql_meta(pg: u16, meta: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.to_string(),
            "-U",
            "eddy",
            "-d",
            "eddy",
        ])
        .args(["-X", "-A", "-F", "|", "-v", "ON_ERROR_STOP=1", "-c", meta])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run psql (install postgresql-client)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && !stderr.contains("ERROR"),
        "psql {meta} failed ({}):\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
        out.status
    );
    stdout
}

/// The header and rows of psql's unaligned (`-A -F'|'`) output: lines holding a `|`.
fn table(out: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = out.lines().filter(|l| l.contains('|'));
    let header: Vec<String> = lines
        .next()
        .unwrap_or_else(|| panic!("no header in:\n{out}"))
        .split('|')
        .map(str::to_string)
        .collect();
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split('|').map(str::to_string).collect::<Vec<String>>())
        .collect();
    (header, rows)
}

/// The cell of column `column` in the row whose column `key` is `value`.
fn cell(out: &str, key: &str, value: &str, column: &str) -> String {
    let (header, rows) = table(out);
    let at = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name} in:\n{out}"))
    };
    let (k, c) = (at(key), at(column));
    rows.iter()
        .find(|r| r.get(k).is_some_and(|v| v == value))
        .and_then(|r| r.get(c).cloned())
        .unwrap_or_else(|| panic!("no row with {key} = {value} in:\n{out}"))
}

/// PostgreSQL's `pg_size_pretty(bigint)`: bytes below 10 kB, then kB, MB, GB, TB, PB, each
/// used below 20 of the next unit and rounded half up.
fn size_pretty(bytes: i64) -> String {
    // (unit, limit before converting to the next unit, half rounding, bits of the unit)
    const UNITS: [(&str, i64, bool, u32); 6] = [
        ("bytes", 10 * 1024, false, 0),
        ("kB", 20 * 1024 - 1, true, 10),
        ("MB", 20 * 1024 - 1, true, 20),
        ("GB", 20 * 1024 - 1, true, 30),
        ("TB", 20 * 1024 - 1, true, 40),
        ("PB", 20 * 1024 - 1, true, 50),
    ];
    let mut size = bytes;
    for (i, &(name, limit, round, bits)) in UNITS.iter().enumerate() {
        if i + 1 == UNITS.len() || size.abs() < limit {
            if round {
                size = (size + if size < 0 { -1 } else { 1 }) / 2;
            }
            return format!("{size} {name}");
        }
        let (_, _, next_round, next_bits) = UNITS[i + 1];
        size /= 1i64 << (next_bits - bits - u32::from(next_round) + u32::from(round));
    }
    unreachable!("the last unit always answers")
}

/// Whether `s` looks like what `pg_size_pretty` gives: a number and a unit.
fn is_pretty_size(s: &str) -> bool {
    s.split_once(' ').is_some_and(|(n, unit)| {
        n.parse::<i64>().is_ok() && ["bytes", "kB", "MB", "GB", "TB", "PB"].contains(&unit)
    })
}

fn bigint(s: &Server, sql: &str) -> i64 {
    let out = s.psql(sql);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{sql}: not a number: {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_meta_commands_list_relations_databases_schemas_and_functions_with_sizes() {
    let dir = data_dir();
    let mut s = Server::start(dir.path());
    let lines: String = (0..2000)
        .map(|i| {
            format!(
                "cpu,host=h{} usage={}.5 {}\n",
                i % 4,
                i,
                1_704_067_200_000_000_000i64 + i * 1_000_000_000
            )
        })
        .collect();
    assert_eq!(s.write_lp(lines).await.0, 204);
    s.psql(
        "CREATE MATERIALIZED VIEW cpu_1m AS SELECT time_bucket('1 minute', time) AS bucket, \
         host, avg(usage) AS usage FROM cpu GROUP BY bucket, host",
    );
    // A clean stop flushes, so the table's rows are in files when its size is asked.
    assert_eq!(s.stop(), Some(0));
    s.restart();

    // pg_size_pretty formats as PostgreSQL does.
    let values = [
        0i64,
        1,
        10_239,
        10_240,
        1_000_000,
        123_456_789,
        10_737_418_240,
    ];
    let sql = values
        .iter()
        .map(|v| format!("pg_size_pretty({v}::bigint)"))
        .collect::<Vec<_>>()
        .join(", ");
    let got = s.psql(&format!("SELECT {sql}"));
    let want: Vec<String> = values.iter().map(|&v| size_pretty(v)).collect();
    assert_eq!(got.trim(), want.join("|"));
    assert_eq!(
        want,
        [
            "0 bytes",
            "1 bytes",
            "10239 bytes",
            "10 kB",
            "977 kB",
            "118 MB",
            "10 GB"
        ]
    );

    // Sizes of the table: the main fork, the table, the table with its indexes.
    let relation = bigint(&s, "SELECT pg_relation_size('cpu')");
    let table_size = bigint(&s, "SELECT pg_table_size('cpu')");
    let total = bigint(&s, "SELECT pg_total_relation_size('cpu')");
    assert!(relation > 0, "pg_relation_size('cpu') = {relation}");
    assert!(
        relation <= table_size && table_size <= total,
        "relation {relation}, table {table_size}, total {total}"
    );
    assert_eq!(
        s.psql("SELECT pg_size_pretty(pg_total_relation_size('cpu'))")
            .trim(),
        size_pretty(total)
    );

    // \dt+ lists the table with the size psql asks for (pg_table_size, pretty).
    let pretty_table = || s.psql("SELECT pg_size_pretty(pg_table_size('cpu'))");
    let before = pretty_table();
    let dt = psql_meta(s.pg, "\\dt+");
    let after = pretty_table();
    assert_eq!(cell(&dt, "Name", "cpu", "Type"), "table", "{dt}");
    assert_eq!(cell(&dt, "Name", "cpu", "Schema"), "public", "{dt}");
    let size = cell(&dt, "Name", "cpu", "Size");
    assert!(
        is_pretty_size(&size) && size != "0 bytes",
        "\\dt+ size of cpu: {size:?}\n{dt}"
    );
    assert!(
        size == before.trim() || size == after.trim(),
        "\\dt+ says {size}, pg_size_pretty(pg_table_size('cpu')) {before} / {after}"
    );
    assert!(
        !table(&dt)
            .1
            .iter()
            .any(|r| r.get(1).is_some_and(|n| n == "cpu_1m")),
        "\\dt+ lists the materialized view:\n{dt}"
    );

    // \l+ lists the database with its size.
    let pretty_db = || s.psql("SELECT pg_size_pretty(pg_database_size('eddy'))");
    let before = pretty_db();
    let l = psql_meta(s.pg, "\\l+");
    let after = pretty_db();
    let size = cell(&l, "Name", "eddy", "Size");
    assert!(
        is_pretty_size(&size) && size != "0 bytes",
        "\\l+ size of eddy: {size:?}\n{l}"
    );
    assert!(
        size == before.trim() || size == after.trim(),
        "\\l+ says {size}, pg_size_pretty(pg_database_size('eddy')) {before} / {after}"
    );
    let database = bigint(&s, "SELECT pg_database_size('eddy')");
    assert!(database >= total, "database {database} < table {total}");

    // \dn+ lists public.
    let dn = psql_meta(s.pg, "\\dn+");
    assert!(dn.lines().any(|l| l.starts_with("public|")), "{dn}");

    // \dm lists the continuous aggregate as a materialized view; \dv lists plain views only.
    let dm = psql_meta(s.pg, "\\dm");
    assert_eq!(
        cell(&dm, "Name", "cpu_1m", "Type"),
        "materialized view",
        "{dm}"
    );
    let dv = psql_meta(s.pg, "\\dv");
    assert!(
        !dv.contains("cpu_1m"),
        "\\dv lists a materialized view:\n{dv}"
    );

    // \df runs (its header at least: Eddy has no user functions).
    let df = psql_meta(s.pg, "\\df");
    assert!(
        df.contains("Schema|Name|Result data type|Argument data types|Type"),
        "{df}"
    );

    // \d+ describes the table: columns, types, the primary key.
    let d = psql_meta(s.pg, "\\d+ cpu");
    for (column, ty) in [
        ("time", "timestamp without time zone"),
        ("host", "text"),
        ("usage", "double precision"),
    ] {
        assert_eq!(cell(&d, "Column", column, "Type"), ty, "{d}");
    }
    assert_eq!(cell(&d, "Column", "time", "Nullable"), "not null", "{d}");
    assert!(d.contains("cpu_pkey"), "{d}");
    let (status, _) = s.write_lp("cpu,host=h9 usage=1 1\n").await;
    assert_eq!(status, 204, "the server still takes writes");
}

/// The value of `STATEMENT_ERRORS_METRIC{sqlstate="<code>"}` in a scrape, 0 when absent.
fn statement_errors(scrape: &str, code: &str) -> f64 {
    let label = format!("{SQLSTATE_LABEL}=\"{code}\"");
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{STATEMENT_ERRORS_METRIC}{{")) && l.contains(&label))
        .map(|l| {
            let (_, v) = l.rsplit_once(' ').expect("a sample has a value");
            v.parse::<f64>().unwrap_or_else(|_| panic!("a number: {l}"))
        })
        .sum()
}

async fn scrape(http: u16) -> String {
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{http}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(r.status().as_u16(), 200);
    r.text().await.expect("metrics body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_statement_is_logged_once_with_its_sqlstate_and_counted_in_metrics() {
    let root = data_dir();
    let log: PathBuf = root.path().join("eddy.log");
    // No RUST_LOG: Eddy's default log level, as an operator runs it.
    let mut s = Server::start_logged_at(&root.path().join("data"), &[], &log, None);
    let (c, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={} user=eddy dbname=eddy", s.pg),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect over the postgres protocol");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c.batch_execute(
        "CREATE TABLE t15 (time TIMESTAMP NOT NULL, k TEXT, v DOUBLE PRECISION, \
         PRIMARY KEY (k, time))",
    )
    .await
    .expect("create a table");
    let before = scrape(s.http).await;

    // A statement that fails (simple query protocol), marked so its log line can be found.
    let failing = "SELECT 'issue15-failed-marker' AS m FROM no_such_table_15";
    let err = c.simple_query(failing).await.expect_err("no such table");
    let db = err.as_db_error().expect("an error from the server");
    assert_eq!(db.code().code(), "42P01", "{db}");
    let message = db.message().to_string();
    // One that fails through the extended protocol (Parse), and ones that succeed.
    let err = c
        .query("SELECT nosuchcolumn_15 FROM t15", &[])
        .await
        .expect_err("no such column");
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("42703"),
        "{err}"
    );
    c.simple_query("SELECT 'issue15-ok-marker' AS m")
        .await
        .expect("a statement that works");
    let one: i64 = c
        .query_one("SELECT count(*) FROM t15", &[])
        .await
        .expect("the connection goes on")
        .get(0);
    assert_eq!(one, 0);

    let after = scrape(s.http).await;
    let delta = |code| statement_errors(&after, code) - statement_errors(&before, code);
    assert_eq!(
        delta("42P01"),
        1.0,
        "{STATEMENT_ERRORS_METRIC}{{{SQLSTATE_LABEL}=\"42P01\"}} did not count the failed \
         statement once:\n{after}"
    );
    assert!(
        delta("42703") >= 1.0,
        "{STATEMENT_ERRORS_METRIC}{{{SQLSTATE_LABEL}=\"42703\"}} did not count the failed \
         Parse:\n{after}"
    );

    drop(c);
    // Stopped, so that the log is complete.
    assert_eq!(s.stop(), Some(0), "eddy exits cleanly on SIGTERM");
    let text = std::fs::read_to_string(&log).expect("server log");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("issue15-failed-marker"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "the failed statement is logged once at the default level:\n{text}"
    );
    let line = lines[0];
    assert!(line.contains("42P01"), "no SQLSTATE in: {line}");
    assert!(
        line.contains(&message) || line.contains(&message.replace('"', "\\\"")),
        "no message {message:?} in: {line}"
    );
    assert!(line.contains("127.0.0.1"), "no client address in: {line}");
    assert!(line.contains(failing), "no statement in: {line}");
    assert!(
        text.lines()
            .any(|l| l.contains("42703") && l.contains("nosuchcolumn_15")),
        "the failed Parse is logged too:\n{text}"
    );
    assert!(
        !text.contains("issue15-ok-marker"),
        "a statement that worked was logged:\n{text}"
    );
    assert!(!text.contains("panicked"), "the server panicked:\n{text}");
}
