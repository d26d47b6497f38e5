//! SQL over the Postgres wire protocol: DDL, INSERT, DataFusion's full SQL, parameters,
//! SQLSTATE errors and the refusals that keep the server's file system out of reach.

use crate::common::{Server, data_dir};

async fn sqlstate(c: &tokio_postgres::Client, sql: &str) -> (String, String) {
    let e = c.simple_query(sql).await.expect_err(sql);
    let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
    (db.code().code().to_string(), db.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_insert_and_full_sql() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let c = s.pg().await;
    c.batch_execute(
        "CREATE TABLE readings (ts TIMESTAMP NOT NULL, sensor TEXT, site TEXT, temp DOUBLE PRECISION, \
         ok BOOLEAN, n BIGINT, PRIMARY KEY (sensor, site, ts));
         CREATE TABLE sites (time TIMESTAMP NOT NULL, site TEXT, city TEXT, PRIMARY KEY (site, time));",
    )
    .await
    .unwrap();
    let n = c
        .execute(
            "INSERT INTO readings (ts, sensor, site, temp, ok, n) VALUES \
             ('2024-01-01T00:00:00', 's1', 'a', 20.5, true, 1), \
             ('2024-01-01T00:01:00', 's1', 'a', 21.5, true, 2), \
             ('2024-01-01T00:02:00', 's1', 'a', 19.0, false, 3), \
             ('2024-01-01T00:00:00', 's2', 'b', 10.0, true, 4)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 4);
    c.execute(
        "INSERT INTO sites VALUES ('2024-01-01T00:00:00', 'a', 'Oslo'), ('2024-01-01T00:00:00', 'b', 'Lima')",
        &[],
    )
    .await
    .unwrap();
    // Upsert by key: a second insert of the same (sensor, site, ts) replaces its fields.
    c.execute(
        "INSERT INTO readings (ts, sensor, site, temp) VALUES ('2024-01-01T00:02:00', 's1', 'a', 25.0)",
        &[],
    )
    .await
    .unwrap();

    // Join, CTE, window function.
    let rows = c
        .query(
            "WITH r AS (SELECT sensor, site, temp, ok, \
                 row_number() OVER (PARTITION BY sensor ORDER BY ts DESC) AS rn FROM readings) \
             SELECT r.sensor, s.city, r.temp, r.ok FROM r JOIN sites s ON r.site = s.site \
             WHERE r.rn = 1 ORDER BY r.sensor",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, f64, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    // The upsert set temp only: ok keeps false from the earlier write of that key.
    assert_eq!(
        got,
        vec![
            ("s1".into(), "Oslo".into(), 25.0, false),
            ("s2".into(), "Lima".into(), 10.0, true)
        ]
    );

    // Extended protocol with typed parameters, binary results.
    let stmt = c
        .prepare("SELECT sensor, temp, n FROM readings WHERE site = $1 AND temp > $2 ORDER BY ts")
        .await
        .unwrap();
    let rows = c.query(&stmt, &[&"a", &20.0f64]).await.unwrap();
    let got: Vec<(String, f64, Option<i64>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("s1".into(), 20.5, Some(1)),
            ("s1".into(), 21.5, Some(2)),
            ("s1".into(), 25.0, Some(3))
        ]
    );

    // time_bucket beside date_bin.
    let rows = c
        .query(
            "SELECT time_bucket('2 minutes', ts) AS b, count(*) AS n, \
                    date_bin(INTERVAL '2 minutes', ts, TIMESTAMP '2000-01-03') AS d \
             FROM readings GROUP BY b, d ORDER BY b",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(chrono::NaiveDateTime, i64, chrono::NaiveDateTime)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let t0 = chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let t2 = t0 + chrono::Duration::minutes(2);
    assert_eq!(got, vec![(t0, 3, t0), (t2, 1, t2)]);

    // Several statements in one simple query, one result each.
    let msgs = c
        .simple_query("SELECT 1 AS a; SELECT 2 AS b, 3 AS c")
        .await
        .unwrap();
    let rows: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(rows, vec!["1", "2"]);

    // psql sees the table and its rows.
    let out = s.psql("SELECT count(*) FROM readings");
    assert_eq!(out.trim(), "4");
    c.batch_execute("BEGIN; SET application_name = 'x'; COMMIT;")
        .await
        .unwrap();

    c.batch_execute("DROP TABLE sites").await.unwrap();
    let (code, _) = sqlstate(&c, "SELECT * FROM sites").await;
    assert_eq!(code, "42P01");
    c.batch_execute("DROP TABLE IF EXISTS sites").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlstate_and_name_the_object() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let c = s.pg().await;
    assert_eq!(s.write_lp("cpu,host=a usage=1 1\n").await.0, 204);
    let (code, msg) = sqlstate(&c, "SELECT * FROM nosuchtable").await;
    assert_eq!(code, "42P01");
    assert!(msg.contains("nosuchtable"), "{msg}");
    let (code, msg) = sqlstate(&c, "SELECT nosuchcolumn FROM cpu").await;
    assert_eq!(code, "42703");
    assert!(msg.contains("nosuchcolumn"), "{msg}");
    let (code, _) = sqlstate(&c, "SELEC 1").await;
    assert_eq!(code, "42601");
    let (code, msg) = sqlstate(&c, "CREATE TABLE cpu (time TIMESTAMP NOT NULL, x DOUBLE)").await;
    assert_eq!(code, "42P07");
    assert!(msg.contains("cpu"), "{msg}");
    let (code, msg) = sqlstate(&c, "CREATE TABLE t2 (time TIMESTAMP NOT NULL, x INTERVAL)").await;
    assert_eq!(code, "0A000");
    assert!(msg.contains("\"x\""), "{msg}");
    let (code, msg) = sqlstate(
        &c,
        "INSERT INTO cpu (time, host, usage) VALUES ('2024-01-01T00:00:00', 'a', 'notanumber')",
    )
    .await;
    assert!(code.starts_with("22") || code == "42804", "{code} {msg}");
    let (code, msg) = sqlstate(&c, "INSERT INTO cpu (host, usage) VALUES ('a', 1.0)").await;
    assert!(!code.is_empty(), "{msg}");
    // The connection stays usable after errors.
    let n: i64 = c
        .query_one("SELECT count(*) FROM cpu", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_system_is_out_of_reach() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let c = s.pg().await;
    assert_eq!(s.write_lp("cpu,host=a usage=1 1\n").await.0, 204);
    let (code, msg) = sqlstate(
        &c,
        "CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '/etc/passwd'",
    )
    .await;
    assert_eq!(code, "42501", "{msg}");
    let (code, msg) = sqlstate(&c, "COPY cpu TO '/tmp/eddy-leak.csv'").await;
    assert_eq!(code, "42501", "{msg}");
    let (code, msg) = sqlstate(
        &c,
        "COPY (SELECT 1) TO '/tmp/eddy-leak.parquet' STORED AS PARQUET",
    )
    .await;
    assert_eq!(code, "42501", "{msg}");
    assert!(!std::path::Path::new("/tmp/eddy-leak.csv").exists());
    let (code, _) = sqlstate(&c, "SELECT * FROM read_parquet('/etc/passwd')").await;
    assert_ne!(code, "00000");
    let (code, _) = sqlstate(&c, "SELECT * FROM '/etc/passwd'").await;
    assert_eq!(code, "42P01");
    let (code, _) = sqlstate(&c, "CREATE TABLE mem AS SELECT 1 AS x").await;
    assert_eq!(code, "0A000");
}

/// `x IN (SELECT ...)` in a select list, which Eddy rewrites for DataFusion, answers as
/// PostgreSQL does: NULL when `x` is NULL or the subquery holds a NULL and `x` is not found,
/// false for no rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_subquery_in_a_select_list_is_three_valued() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let c = s.pg().await;
    let cases = [
        ("1 IN (SELECT x FROM (VALUES (1), (2)) v(x))", Some(true)),
        ("3 IN (SELECT x FROM (VALUES (1), (2)) v(x))", Some(false)),
        ("3 IN (SELECT x FROM (VALUES (1), (NULL)) v(x))", None),
        ("1 IN (SELECT x FROM (VALUES (1), (NULL)) v(x))", Some(true)),
        ("NULL::bigint IN (SELECT x FROM (VALUES (1)) v(x))", None),
        (
            "NULL::bigint IN (SELECT x FROM (VALUES (1)) v(x) WHERE x > 5)",
            Some(false),
        ),
        ("3 NOT IN (SELECT x FROM (VALUES (1), (NULL)) v(x))", None),
        (
            "3 NOT IN (SELECT x FROM (VALUES (1), (2)) v(x))",
            Some(true),
        ),
        (
            "1 NOT IN (SELECT x FROM (VALUES (1), (2)) v(x))",
            Some(false),
        ),
    ];
    for (expr, want) in cases {
        let row = c.query_one(&format!("SELECT {expr}"), &[]).await.unwrap();
        assert_eq!(row.get::<_, Option<bool>>(0), want, "{expr}");
    }
}
