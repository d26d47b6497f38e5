//! Continuous aggregates: the view always equals its defining query over the raw table, for
//! random streams with out-of-order rows, duplicates, overwrites and rows days late, across
//! restarts and kill -9; shapes that cannot be maintained are refused with a reason.

use rand::{Rng, SeedableRng};

use crate::common::{Server, data_dir};

const AGGS: &str = "count(*) AS n, count(v) AS nv, sum(v) AS s, min(v) AS lo, max(v) AS hi, \
    avg(v) AS a, stddev(v) AS sd, stddev_pop(v) AS sdp, var_samp(v) AS vs, var_pop(v) AS vp, \
    first_value(v ORDER BY time) AS fv, last_value(v ORDER BY time) AS lv, \
    approx_distinct(k) AS ad, approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY v) AS p90, \
    bool_or(v > 90) AS any_hot, max(v) FILTER (WHERE k = 'a') AS hi_a, count(*) FILTER (WHERE v > 50) AS big, \
    first(v, time) AS f2, last(v, time) AS l2";

fn defining(bucket: &str) -> String {
    format!(
        "SELECT time_bucket('{bucket}', time) AS bucket, host, {AGGS} FROM m GROUP BY bucket, host"
    )
}

/// Rows of a query as strings, floats rounded to 6 significant digits, sorted.
async fn rows(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<String>> {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let mut out: Vec<Vec<String>> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| match r.get(i) {
                        None => "NULL".to_string(),
                        Some(v) => match v.parse::<f64>() {
                            Ok(f) if v.contains('.') || v.contains('e') => format!("{f:.6e}"),
                            _ => v.to_string(),
                        },
                    })
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// Column of `p90` in the view: merged t-digests estimate the percentile a little
/// differently from one pass over the rows, so it is compared within a stated tolerance.
const APPROX_COLUMN: usize = 15;
/// Tolerance of approximate percentiles: 1% of the value range (values are 0..100).
const APPROX_TOLERANCE: f64 = 1.0;

async fn assert_law(c: &tokio_postgres::Client, view: &str, bucket: &str, context: &str) {
    let got = rows(c, &format!("SELECT * FROM {view}")).await;
    let want = rows(c, &defining(bucket)).await;
    assert_eq!(got.len(), want.len(), "{context}: row count of {view}");
    for (g, w) in got.iter().zip(&want) {
        let exact = |r: &Vec<String>| {
            let mut r = r.clone();
            r.remove(APPROX_COLUMN);
            r
        };
        assert_eq!(exact(g), exact(w), "{context}: {view}");
        let (a, b) = (&g[APPROX_COLUMN], &w[APPROX_COLUMN]);
        if a != b {
            let (a, b): (f64, f64) = (a.parse().unwrap(), b.parse().unwrap());
            assert!(
                (a - b).abs() <= APPROX_TOLERANCE,
                "{context}: {view}: approx percentile {a} vs {b}"
            );
        }
    }
}

async fn wait_ready(c: &tokio_postgres::Client, view: &str) {
    for _ in 0..500 {
        let r = c
            .query_one("SELECT status FROM eddy_views WHERE name = $1", &[&view])
            .await
            .unwrap();
        if r.get::<_, String>(0) == "ready" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("view {view} never became ready");
}

fn random_lines(rng: &mut rand::rngs::StdRng, n: usize, t_max: i64) -> String {
    random_lines_in(rng, n, 0, t_max)
}

/// Lines with times (seconds) in `[t_min, t_max)`: a narrow range makes repeated keys, i.e.
/// overwrites, likely.
fn random_lines_in(rng: &mut rand::rngs::StdRng, n: usize, t_min: i64, t_max: i64) -> String {
    (0..n)
        .map(|_| {
            let host = rng.random_range(0..3);
            let k = ["a", "b", "c"][rng.random_range(0..3)];
            // Seconds over two days, so some rows land days behind the newest ones.
            let t = rng.random_range(t_min..t_max) * 1_000_000_000;
            let v = if rng.random_bool(0.1) {
                String::new()
            } else {
                format!(",v={}", rng.random_range(0..100))
            };
            format!("m,host=h{host} k=\"{k}\"{v} {t}\n")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_equal_their_defining_query_under_random_streams() {
    let dir = data_dir();
    let mut s = Server::start_with(dir.path(), &["--memtable-flush-bytes", "65536"]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let two_days = 2 * 86_400;
    // Data before the views exist: they backfill from it.
    assert_eq!(
        s.write_lp(random_lines(&mut rng, 800, two_days)).await.0,
        204
    );
    let c = s.pg().await;
    c.batch_execute(&format!(
        "CREATE MATERIALIZED VIEW m_1h AS {}",
        defining("1 hour")
    ))
    .await
    .unwrap();
    c.batch_execute(&format!(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS m_10m AS {}",
        defining("10 minutes")
    ))
    .await
    .unwrap();
    wait_ready(&c, "m_1h").await;
    wait_ready(&c, "m_10m").await;
    assert_law(&c, "m_1h", "1 hour", "after backfill").await;
    assert_law(&c, "m_10m", "10 minutes", "after backfill").await;

    for round in 0..12 {
        // In-order, late, duplicate and overwriting rows in every batch.
        let n = rng.random_range(1..300);
        let body = if round % 2 == 0 {
            random_lines(&mut rng, n, two_days)
        } else {
            // Within the last 20 minutes: late rows inside the exact overwrite window, and
            // many rewrites of the same keys.
            random_lines_in(&mut rng, n, two_days - 1200, two_days)
        };
        let (status, resp) = s.write_lp(body).await;
        assert_eq!(status, 204, "{resp}");
        // Read right after the acknowledgement: the write is visible.
        assert_law(&c, "m_1h", "1 hour", &format!("round {round}")).await;
        if round % 3 == 0 {
            assert_law(&c, "m_10m", "10 minutes", &format!("round {round}")).await;
        }
    }

    // Clean restart, then kill -9: the state is rebuilt and the law still holds.
    drop(c);
    assert_eq!(s.stop(), Some(0));
    s.restart();
    let c = s.pg().await;
    wait_ready(&c, "m_1h").await;
    assert_law(&c, "m_1h", "1 hour", "after restart").await;
    assert_eq!(
        s.write_lp(random_lines(&mut rng, 200, two_days)).await.0,
        204
    );
    drop(c);
    s.kill9();
    s.restart();
    let c = s.pg().await;
    wait_ready(&c, "m_1h").await;
    wait_ready(&c, "m_10m").await;
    assert_law(&c, "m_1h", "1 hour", "after kill -9").await;
    assert_law(&c, "m_10m", "10 minutes", "after kill -9").await;

    // The system table lists both; REFRESH recomputes; DROP removes.
    let listed = rows(&c, "SELECT name, source, status FROM eddy_views").await;
    assert_eq!(
        listed,
        vec![
            vec!["m_10m".to_string(), "m".into(), "ready".into()],
            vec!["m_1h".to_string(), "m".into(), "ready".into()]
        ]
    );
    c.batch_execute("REFRESH MATERIALIZED VIEW m_1h")
        .await
        .unwrap();
    assert_law(&c, "m_1h", "1 hour", "after refresh").await;
    let e = c.batch_execute("DROP TABLE m").await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "2BP01");
    c.batch_execute("DROP MATERIALIZED VIEW m_10m")
        .await
        .unwrap();
    let e = c.simple_query("SELECT * FROM m_10m").await.unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "42P01");
    c.batch_execute("DROP MATERIALIZED VIEW IF EXISTS m_10m")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_with_where_and_a_filtered_bucket_read() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let c = s.pg().await;
    assert_eq!(
        s.write_lp("cpu,hostname=a,region=x u=1i 0\ncpu,hostname=b,region=y u=5i 0\n")
            .await
            .0,
        204
    );
    c.batch_execute(
        "CREATE MATERIALIZED VIEW cpu_1m AS SELECT time_bucket('1 minute', time) AS bucket, hostname, \
         avg(u) AS avg_u, max(u) AS max_u, count(*) AS n, first(u, time) AS fu, last(u, time) AS lu \
         FROM cpu WHERE region = 'x' GROUP BY bucket, hostname",
    )
    .await
    .unwrap();
    wait_ready(&c, "cpu_1m").await;
    // Visible in the first read after the acknowledgement.
    assert_eq!(
        s.write_lp("cpu,hostname=a,region=x u=3i 30000000000\n")
            .await
            .0,
        204
    );
    let r = c
        .query_one("SELECT avg_u, max_u, n FROM cpu_1m WHERE bucket >= '1970-01-01T00:00:00' AND hostname = 'a'", &[])
        .await
        .unwrap();
    assert_eq!(
        (r.get::<_, f64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)),
        (2.0, 3, 2)
    );
    // Overwrite of an existing key: recomputed, not counted twice.
    assert_eq!(
        s.write_lp("cpu,hostname=a,region=x u=7i 30000000000\n")
            .await
            .0,
        204
    );
    let r = c
        .query_one("SELECT avg_u, max_u, n FROM cpu_1m", &[])
        .await
        .unwrap();
    assert_eq!(
        (r.get::<_, f64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)),
        (4.0, 7, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shapes_that_cannot_be_maintained_are_refused() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let c = s.pg().await;
    assert_eq!(s.write_lp("t,h=a v=1 0\nu,h=a w=1 0\n").await.0, 204);
    let cases = [
        (
            "SELECT time_bucket('1 minute', t.time) AS b, count(*) FROM t JOIN u ON t.h = u.h GROUP BY b",
            "join",
        ),
        (
            "SELECT time_bucket('1 minute', time) AS b, count(*) AS n FROM t GROUP BY b ORDER BY b",
            "ORDER BY",
        ),
        (
            "SELECT time_bucket('1 minute', time) AS b, median(v) FROM t GROUP BY b",
            "approx_percentile_cont",
        ),
        (
            "SELECT time_bucket('1 minute', time) AS b, count(DISTINCT h) FROM t GROUP BY b",
            "approx_distinct",
        ),
        (
            "SELECT time_bucket('1 minute', time) AS b, count(*) FROM t WHERE time < now() GROUP BY b",
            "non-deterministic",
        ),
        (
            "SELECT time_bucket('1 minute', time) AS b, count(*) AS n FROM t GROUP BY b HAVING count(*) > 1",
            "HAVING",
        ),
        ("SELECT h, count(*) FROM t GROUP BY h", "time_bucket"),
        (
            "SELECT time_bucket('1 month', time) AS b, count(*) FROM t GROUP BY b",
            "months",
        ),
    ];
    for (i, (sql, needle)) in cases.iter().enumerate() {
        let e = c
            .batch_execute(&format!("CREATE MATERIALIZED VIEW bad{i} AS {sql}"))
            .await
            .expect_err(sql);
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
        assert!(
            db.message().contains(needle),
            "{sql}: expected the error to mention {needle}: {}",
            db.message()
        );
    }
    let e = c
        .batch_execute("CREATE MATERIALIZED VIEW t AS SELECT time_bucket('1 minute', time) AS b, count(*) FROM u GROUP BY b")
        .await
        .unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "42P07");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_created_during_concurrent_writes_counts_every_row_once() {
    let dir = data_dir();
    let s = Server::start_with(dir.path(), &["--memtable-flush-bytes", "65536"]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    assert_eq!(
        s.write_lp(random_lines(&mut rng, 2000, 86_400)).await.0,
        204
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2u64 {
        let (url, stop) = (s.url("/api/v2/write?bucket=eddy"), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(100 + w);
            let client = reqwest::Client::new();
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = random_lines_in(&mut rng, 100, 86_000, 86_400);
                let r = client.post(&url).body(body).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 204);
                sent += 1;
            }
            sent
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let c = s.pg().await;
    c.batch_execute(&format!(
        "CREATE MATERIALIZED VIEW live AS {}",
        defining("1 hour")
    ))
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for w in writers {
        sent += w.await.unwrap();
    }
    assert!(
        sent > 2,
        "writers must overlap the creation: {sent} requests"
    );
    wait_ready(&c, "live").await;
    assert_law(&c, "live", "1 hour", "created during writes").await;
}

/// Hourly roll-up of `m_10m`, and what it must equal over the raw table.
const ROLLUP: &str = "SELECT time_bucket('1 hour', bucket) AS hour, host, sum(n) AS n, sum(s) AS s, \
    min(lo) AS lo, max(hi) AS hi FROM m_10m GROUP BY hour, host";
const ROLLUP_RAW: &str = "SELECT time_bucket('1 hour', time) AS hour, host, count(*) AS n, sum(v) AS s, \
    min(v) AS lo, max(v) AS hi FROM m GROUP BY hour, host";

async fn assert_rollup(c: &tokio_postgres::Client, context: &str) {
    let got = rows(c, "SELECT * FROM m_1h").await;
    assert_eq!(
        got,
        rows(c, ROLLUP).await,
        "{context}: m_1h vs its query over m_10m"
    );
    assert_eq!(got, rows(c, ROLLUP_RAW).await, "{context}: m_1h vs raw m");
    assert!(!got.is_empty(), "{context}: m_1h is empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_over_views_equal_their_query_over_raw_data() {
    let dir = data_dir();
    let mut s = Server::start_with(dir.path(), &["--memtable-flush-bytes", "65536"]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    let two_days = 2 * 86_400;
    assert_eq!(
        s.write_lp(random_lines(&mut rng, 500, two_days)).await.0,
        204
    );
    let c = s.pg().await;
    c.batch_execute(
        "CREATE MATERIALIZED VIEW m_10m AS SELECT time_bucket('10 minutes', time) AS bucket, host, \
         count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi FROM m GROUP BY bucket, host",
    )
    .await
    .unwrap();
    wait_ready(&c, "m_10m").await;
    c.batch_execute(&format!("CREATE MATERIALIZED VIEW m_1h AS {ROLLUP}"))
        .await
        .unwrap();
    assert_rollup(&c, "after creation").await;
    for round in 0..8 {
        let n = rng.random_range(1..200);
        let body = if round % 2 == 0 {
            random_lines(&mut rng, n, two_days)
        } else {
            random_lines_in(&mut rng, n, two_days - 600, two_days)
        };
        assert_eq!(s.write_lp(body).await.0, 204);
        assert_rollup(&c, &format!("round {round}")).await;
    }
    // The upstream cannot be dropped from under its dependant.
    let e = c
        .batch_execute("DROP MATERIALIZED VIEW m_10m")
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "2BP01");
    assert!(db.message().contains("m_1h"), "{}", db.message());

    drop(c);
    assert_eq!(
        s.write_lp(random_lines(&mut rng, 100, two_days)).await.0,
        204
    );
    s.kill9();
    s.restart();
    let c = s.pg().await;
    wait_ready(&c, "m_10m").await;
    assert_rollup(&c, "after kill -9").await;
    let listed = rows(&c, "SELECT name, source FROM eddy_views").await;
    assert_eq!(
        listed,
        vec![
            vec!["m_10m".to_string(), "m".into()],
            vec!["m_1h".to_string(), "m_10m".into()]
        ]
    );
    c.batch_execute("REFRESH MATERIALIZED VIEW m_10m")
        .await
        .unwrap();
    assert_rollup(&c, "after refresh").await;
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Poll `sql` (one integer) until it equals `want`.
async fn wait_count(c: &tokio_postgres::Client, sql: &str, want: i64, what: &str) {
    let mut got = -1;
    for _ in 0..300 {
        got = c.query_one(sql, &[]).await.unwrap().get::<_, i64>(0);
        if got == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{what}: {sql} gave {got}, expected {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downsampled_views_outlive_the_raw_data_retention() {
    let dir = data_dir();
    let mut s = Server::start_with(dir.path(), &["--flush-interval-ms", "200"]);
    let now = now_s();
    let day = 86_400;
    // One row per host every 10 minutes over the last 10 days.
    let mut body = String::new();
    let mut t = now - 10 * day;
    let mut i = 0u64;
    while t < now {
        for host in ["a", "b"] {
            body.push_str(&format!("m,host={host} v={} {t}000000000\n", i % 97));
            i += 1;
        }
        t += 600;
    }
    assert_eq!(s.write_lp(body).await.0, 204);
    let c = s.pg().await;
    let hourly = "SELECT time_bucket('1 hour', time) AS hour, host, count(*) AS n, sum(v) AS s, \
        max(v) AS hi FROM m GROUP BY hour, host";
    c.batch_execute(&format!("CREATE MATERIALIZED VIEW m_hourly AS {hourly}"))
        .await
        .unwrap();
    c.batch_execute(&format!(
        "CREATE MATERIALIZED VIEW m_recent WITH (retention = '5 days') AS {hourly}"
    ))
    .await
    .unwrap();
    wait_ready(&c, "m_hourly").await;
    wait_ready(&c, "m_recent").await;
    let everything = rows(&c, hourly).await;
    assert_eq!(rows(&c, "SELECT * FROM m_hourly").await, everything);

    // The raw table keeps 3 days: older whole days are dropped once flushed.
    c.batch_execute("ALTER TABLE m SET (retention = '3 days')")
        .await
        .unwrap();
    let floor_s = (now - 3 * day).div_euclid(day) * day;
    let floor = format!("to_timestamp({floor_s})");
    wait_count(
        &c,
        &format!("SELECT count(*) FROM m WHERE time < {floor}"),
        0,
        "raw rows past retention",
    )
    .await;
    assert!(
        c.query_one(
            &format!("SELECT count(*) FROM m WHERE time >= {floor}"),
            &[]
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
            > 0
    );
    // The downsampled view keeps every hour; the one with its own retention keeps 5 days.
    assert_eq!(rows(&c, "SELECT * FROM m_hourly").await, everything);
    let horizon = now - 5 * day;
    let recent: Vec<Vec<String>> = rows(
        &c,
        &format!("SELECT * FROM m_recent WHERE hour + interval '1 hour' > to_timestamp({horizon})"),
    )
    .await;
    wait_count(
        &c,
        &format!(
            "SELECT count(*) FROM m_recent WHERE hour + interval '1 hour' <= to_timestamp({horizon})"
        ),
        0,
        "view buckets past the view's retention",
    )
    .await;
    assert_eq!(rows(&c, "SELECT * FROM m_recent").await, recent);
    assert!(recent.len() > 2 * 24 * 4, "{} recent buckets", recent.len());

    // Rows older than the table keeps are rejected by line number; the others are written.
    let old = (now - 4 * day) * 1_000_000_000;
    let fresh = now * 1_000_000_000;
    let (status, resp) = s
        .write_lp(format!("m,host=a v=1 {old}\nm,host=c v=2 {fresh}\n"))
        .await;
    assert_eq!(status, 400, "{resp}");
    assert!(
        resp.contains("line 1") || resp.contains("\"line\":1"),
        "{resp}"
    );
    assert!(resp.contains("3 days"), "{resp}");
    let e = c
        .batch_execute(&format!(
            "INSERT INTO m (time, host, v) VALUES (to_timestamp({}), 'z', 1.0)",
            now - 4 * day
        ))
        .await
        .unwrap_err();
    assert!(
        e.as_db_error().unwrap().message().contains("3 days"),
        "{e:?}"
    );
    let hourly_now = rows(&c, "SELECT * FROM m_hourly").await;

    // The downsampled state survives a crash although its raw rows are gone.
    drop(c);
    s.kill9();
    s.restart();
    let c = s.pg().await;
    wait_ready(&c, "m_hourly").await;
    assert_eq!(rows(&c, "SELECT * FROM m_hourly").await, hourly_now);
    assert_eq!(
        rows(&c, "SELECT count(*) FROM m_hourly WHERE host = 'c'").await,
        vec![vec!["1".to_string()]]
    );
    let listed = rows(&c, "SELECT name, retention FROM eddy_views").await;
    assert_eq!(
        listed,
        vec![
            vec!["m_hourly".to_string(), "NULL".into()],
            vec!["m_recent".to_string(), "5 days".into()]
        ]
    );
}
