//! Metrics and health: `/metrics` counts what each front end wrote and rejected, WAL fsyncs
//! and statements per protocol; `/health` and `/ready` answer; `eddy_queries` lists running
//! statements and `pg_cancel_backend(pid)` stops one as a cancel request would; backend pids
//! tell sessions apart whatever the login method.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::SinkExt;
use tokio_postgres::error::SqlState;

use crate::common::{Server, data_dir};

/// One sample of a scrape: metric name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// The samples of an OpenMetrics text exposition (comments and `# EOF` skipped).
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), Vec::new()),
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').expect("labels end with }");
                let labels = rest
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').expect("label=value");
                        (k.to_string(), v.trim_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
        };
        out.push((name, labels, value));
    }
    out
}

/// The value of the sample `name` whose labels include `labels`; panics when there is none.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| *v)
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

/// GET `path` with optional basic credentials: (status, content type, body).
async fn get(s: &Server, path: &str, user: Option<(&str, &str)>) -> (u16, String, String) {
    let mut r = reqwest::Client::new().get(s.url(path));
    if let Some((u, p)) = user {
        r = r.basic_auth(u, Some(p));
    }
    let r = r.send().await.expect("http request");
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    (status, content_type, r.text().await.unwrap_or_default())
}

/// Scrapes `/metrics` and parses it.
async fn scrape(s: &Server) -> Vec<Sample> {
    let (status, content_type, body) = get(s, "/metrics", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    parse(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_writes_per_front_end_and_statements_per_protocol() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let (status, _, body) = get(&s, "/health", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = get(&s, "/ready", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ready\""), "{body}");

    let before = scrape(&s).await;
    let delta = |after: &[Sample], name: &str, labels: &[(&str, &str)]| {
        value(after, name, labels) - value(&before, name, labels)
    };

    // HTTP: 5 rows, then 2 more and a bad line in one request.
    let lines: String = (0..5)
        .map(|i| format!("lp,host=a v={i} {}\n", 1_000 + i))
        .collect();
    assert_eq!(s.write_lp(lines).await.0, 204);
    let (status, body) = s
        .write_lp("lp,host=b v=1 2000\nlp,host=b v 2001\nlp,host=b v=3 2002\n")
        .await;
    assert_eq!(status, 400, "{body}");

    // Postgres: 3 rows by INSERT, 4 by COPY, a few queries, one of them failing.
    let c = s.pg().await;
    c.batch_execute(
        "CREATE TABLE pgt (time TIMESTAMP NOT NULL, host TEXT, v DOUBLE PRECISION, \
         PRIMARY KEY (host, time))",
    )
    .await
    .unwrap();
    c.batch_execute(
        "INSERT INTO pgt VALUES ('2024-01-01T00:00:00', 'a', 1.0), \
         ('2024-01-01T00:01:00', 'a', 2.0), ('2024-01-01T00:02:00', 'b', 3.0)",
    )
    .await
    .unwrap();
    let sink: tokio_postgres::CopyInSink<Bytes> = c
        .copy_in("COPY pgt (time, host, v) FROM STDIN")
        .await
        .unwrap();
    let mut sink = std::pin::pin!(sink);
    sink.send(Bytes::from_static(
        b"2024-01-02 00:00:00\tc\t1\n2024-01-02 00:01:00\tc\t2\n\
          2024-01-02 00:02:00\td\t3\n2024-01-02 00:03:00\td\t4\n",
    ))
    .await
    .unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 4);
    let n: i64 = c
        .query_one("SELECT count(*) FROM pgt", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 7);
    c.simple_query("SELECT count(*) FROM lp").await.unwrap();
    c.simple_query("SELECT * FROM no_such_table")
        .await
        .expect_err("no such table");

    let after = scrape(&s).await;
    let after = after.as_slice();
    let rows = "eddy_ingest_rows_total";
    let rejected = "eddy_ingest_rejected_rows_total";
    assert_eq!(delta(after, rows, &[("front_end", "http")]), 7.0);
    assert_eq!(delta(after, rejected, &[("front_end", "http")]), 1.0);
    assert_eq!(delta(after, rows, &[("front_end", "pg_insert")]), 3.0);
    assert_eq!(delta(after, rows, &[("front_end", "pg_copy")]), 4.0);
    assert_eq!(delta(after, rejected, &[("front_end", "pg_insert")]), 0.0);
    assert!(delta(after, "eddy_ingest_bytes_total", &[("front_end", "http")]) > 0.0);
    // Four write requests, each acknowledged after an fsync (wal_sync = always).
    assert!(delta(after, "eddy_wal_fsync_duration_seconds_count", &[]) >= 4.0);
    assert!(delta(after, "eddy_wal_records_total", &[]) >= 4.0);
    assert!(value(after, "eddy_memtable_bytes", &[]) > 0.0);
    assert!(value(after, "eddy_flush_backlog_records", &[]) >= 4.0);
    // CREATE, INSERT, two counts, the failing SELECT: at least five statements over Postgres.
    let pg = [("protocol", "pg")];
    assert!(delta(after, "eddy_queries_total", &pg) >= 5.0);
    assert!(delta(after, "eddy_query_duration_seconds_count", &pg) >= 5.0);
    assert!(delta(after, "eddy_query_errors_total", &pg) >= 1.0);
    assert_eq!(
        delta(after, "eddy_queries_total", &[("protocol", "http")]),
        0.0
    );
    assert!(value(after, "eddy_pg_connections_open", &[]) >= 1.0);
    assert!(delta(after, "eddy_pg_connections_accepted_total", &[]) >= 1.0);
    assert!(delta(after, "eddy_http_connections_accepted_total", &[]) >= 1.0);
    assert_eq!(value(after, "eddy_writes_stalled", &[]), 0.0);

    // An INSERT through the HTTP query API counts as HTTP's, one over Flight SQL as Flight's.
    let (status, body) = s
        .post(
            &s.url("/api/v3/query_sql"),
            r#"{"db": "eddy", "q": "INSERT INTO pgt VALUES ('2024-01-02T00:00:00', 'c', 1.0), ('2024-01-02T00:01:00', 'c', 2.0)"}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", s.flight))
        .expect("a URI")
        .connect()
        .await
        .expect("connect to Flight SQL");
    let mut flight = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
    let n = flight
        .execute_update(
            "INSERT INTO pgt VALUES ('2024-01-03T00:00:00', 'd', 1.0), \
             ('2024-01-03T00:01:00', 'd', 2.0), ('2024-01-03T00:02:00', 'd', 3.0)"
                .into(),
            None,
        )
        .await
        .expect("INSERT over Flight SQL");
    assert_eq!(n, 3);
    let last = scrape(&s).await;
    let last = last.as_slice();
    assert_eq!(delta(last, rows, &[("front_end", "http")]), 9.0);
    assert_eq!(delta(last, rows, &[("front_end", "flight")]), 3.0);
    assert_eq!(delta(last, rows, &[("front_end", "other")]), 0.0);
}

/// A scan of a segment decodes its columns once: the second scan finds them in the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_scans_count_decoded_cache_hits_and_misses() {
    let dir = data_dir();
    let mut s = Server::start(dir.path());
    let lines: String = (0..1000)
        .map(|i| format!("dc,host=h{} v={i} {}\n", i % 7, 1_000_000 + i))
        .collect();
    assert_eq!(s.write_lp(lines).await.0, 204);
    // A clean stop flushes the rows into a segment.
    assert_eq!(s.stop(), Some(0));
    s.restart();
    let c = s.pg().await;
    let sum = "SELECT sum(v) FROM dc WHERE v >= 0";
    let mut seen = Vec::new();
    for _ in 0..2 {
        let before = scrape(&s).await;
        let got: f64 = c.query_one(sum, &[]).await.unwrap().get(0);
        assert_eq!(got, (0..1000).sum::<i64>() as f64);
        let after = scrape(&s).await;
        let delta = |name: &str| value(&after, name, &[]) - value(&before, name, &[]);
        seen.push((
            delta("eddy_decoded_cache_misses_total"),
            delta("eddy_decoded_cache_hits_total"),
        ));
        assert!(value(&after, "eddy_decoded_cache_bytes", &[]) > 0.0);
    }
    // The first scan decodes the column it reads; the second finds it in the cache.
    assert!(seen[0].0 >= 1.0 && seen[0].1 == 0.0, "{seen:?}");
    assert_eq!(seen[1], (0.0, seen[0].0), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_cancel_backend_stops_a_statement_listed_in_eddy_queries() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let a = s.pg().await;
    let b = s.pg().await;
    let a_pid: i32 = a
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let b_pid: i32 = b
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(a_pid, b_pid);

    // The count runs inside the result stream, for as long as it is not stopped.
    let long = "SELECT count(*) FROM generate_series(1, 100000000000) AS t(x) WHERE x % 7 = 3";
    let slow = tokio::spawn(async move {
        let result = a.simple_query(long).await.map(|_| ());
        (a, result)
    });
    let others = "SELECT pid, query FROM eddy_queries WHERE pid <> pg_backend_pid()";
    let deadline = Instant::now() + Duration::from_secs(30);
    let (pid, query): (i32, String) = loop {
        let rows = b.query(others, &[]).await.unwrap();
        if let Some(row) = rows.first() {
            break (row.get(0), row.get(1));
        }
        assert!(Instant::now() < deadline, "the slow query was never listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((pid, query.as_str()), (a_pid, long));
    // Every column encodes (text format, as psql reads it).
    let listed = b.simple_query("SELECT * FROM eddy_queries").await.unwrap();
    assert!(listed.len() >= 3, "{} messages", listed.len());

    let none: bool = b
        .query_one("SELECT pg_cancel_backend(2147483000)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!none, "no session has that pid");
    let cancelled: bool = b
        .query_one(&format!("SELECT pg_cancel_backend({pid})"), &[])
        .await
        .unwrap()
        .get(0);
    assert!(cancelled);
    let (a, result) = tokio::time::timeout(Duration::from_secs(60), slow)
        .await
        .expect("the cancelled query ended")
        .unwrap();
    let err = result.expect_err("the query was cancelled");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");

    // Gone from eddy_queries, and the connection goes on working.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.query(others, &[]).await.unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the cancelled query is still listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let one: i64 = a.query_one("SELECT 1::bigint", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    let idle: bool = b
        .query_one(&format!("SELECT pg_cancel_backend({pid})"), &[])
        .await
        .unwrap()
        .get(0);
    assert!(!idle, "an idle session has nothing to cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_pids_differ_under_password_login_and_metrics_need_credentials() {
    let dir = data_dir();
    let s = Server::start_with(dir.path(), &["--pg-user", "alice:s3cret"]);
    let mut pids = Vec::new();
    for _ in 0..2 {
        let (client, conn) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=alice password=s3cret dbname=eddy",
                s.pg
            ),
            tokio_postgres::NoTls,
        )
        .await
        .expect("log in with a password");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        pids.push((client, pid));
    }
    assert_ne!(pids[0].1, pids[1].1, "two sessions, one pid");

    // /metrics is behind the same credentials as writes; /health and /ready are not.
    let (status, _, _) = get(&s, "/metrics", None).await;
    assert_eq!(status, 401);
    let (status, content_type, body) = get(&s, "/metrics", Some(("alice", "s3cret"))).await;
    assert_eq!(status, 200, "{body}");
    assert!(content_type.starts_with("application/openmetrics-text"));
    assert!(value(&parse(&body), "eddy_pg_connections_open", &[]) >= 2.0);
    assert_eq!(get(&s, "/health", None).await.0, 200);
    assert_eq!(get(&s, "/ready", None).await.0, 200);
}
