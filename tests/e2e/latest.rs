//! `ORDER BY time DESC LIMIT 1` lookups, which skip planning a scan (the latest-row fast path),
//! answer what a scan answers: across segments and memory, with out-of-order and late rows,
//! field-wise upserts of one key in two places, and columns added after older segments.

use tokio_postgres::SimpleQueryMessage;

use crate::common::{Server, data_dir};

/// Every column of every row of a simple query, as text.
async fn rows(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(String::from)).collect())
            }
            _ => None,
        })
        .collect()
}

/// Checks a latest-row query against the same query with a second sort key, which the fast
/// path does not take (the rows here never tie on time), and returns its rows.
async fn latest(
    c: &tokio_postgres::Client,
    select: &str,
    filter: &str,
) -> Vec<Vec<Option<String>>> {
    let fast = rows(
        c,
        &format!("SELECT {select} FROM m {filter} ORDER BY time DESC LIMIT 1"),
    )
    .await;
    let scan = rows(
        c,
        &format!("SELECT {select} FROM m {filter} ORDER BY time DESC, host LIMIT 1"),
    )
    .await;
    assert_eq!(fast, scan, "{select} {filter}");
    fast
}

async fn check(c: &tokio_postgres::Client) {
    let cols = "host, dc, rack, time, a, b, c";
    let row = |v: &[Option<&str>]| vec![v.iter().map(|x| x.map(String::from)).collect::<Vec<_>>()];
    // h1's newest key holds a from the segment and b from memory.
    assert_eq!(
        latest(c, cols, "WHERE host = 'h1'").await,
        row(&[
            Some("h1"),
            Some("x"),
            None,
            Some("1970-01-01 00:00:00.0003"),
            Some("3"),
            Some("7"),
            None
        ])
    );
    // A late row older than h2's newest changes nothing.
    assert_eq!(
        latest(c, cols, "WHERE host = 'h2'").await,
        row(&[
            Some("h2"),
            Some("y"),
            None,
            Some("1970-01-01 00:00:00.0005"),
            Some("5"),
            None,
            None
        ])
    );
    // Tag and field added after the first segment was written.
    assert_eq!(
        latest(c, cols, "WHERE rack = 'r1'").await,
        row(&[
            Some("h3"),
            Some("y"),
            Some("r1"),
            Some("1970-01-01 00:00:00.00005"),
            Some("6"),
            None,
            Some("new")
        ])
    );
    assert_eq!(
        latest(c, "a", "WHERE host = 'h1' AND dc = 'z'").await,
        row(&[Some("9")])
    );
    assert_eq!(latest(c, "host", "").await, row(&[Some("h2")]));
    assert!(latest(c, cols, "WHERE host = 'h4'").await.is_empty());
    assert!(
        latest(c, cols, "WHERE host = 'h1' AND dc = 'y'")
            .await
            .is_empty()
    );
    latest(c, "*", "WHERE host = 'h3'").await;

    // The prepared form, with the value bound as a parameter, in binary.
    let stmt = c
        .prepare("SELECT * FROM m WHERE host = $1 ORDER BY time DESC LIMIT 1")
        .await
        .expect("prepare");
    let r = c.query(&stmt, &[&"h1"]).await.expect("h1");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].get::<_, Option<f64>>("a"), Some(3.0));
    assert_eq!(r[0].get::<_, Option<i64>>("b"), Some(7));
    assert_eq!(r[0].get::<_, &str>("dc"), "x");
    assert!(c.query(&stmt, &[&"nope"]).await.expect("nope").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_row_lookups_match_the_scan() {
    let dir = data_dir();
    let mut s = Server::start(dir.path());
    let first = "m,host=h1,dc=x a=1,b=10i 100000\n\
                 m,host=h1,dc=x a=3 300000\n\
                 m,host=h1,dc=x a=2 200000\n\
                 m,host=h1,dc=z a=9 250000\n\
                 m,host=h2,dc=y a=5 500000\n";
    assert_eq!(s.write_lp(first).await.0, 204);
    // A clean stop flushes: these rows are now a segment.
    assert_eq!(s.stop(), Some(0));
    s.restart();
    let second = "m,host=h1,dc=x b=7i 300000\n\
                  m,host=h2,dc=y a=4 400000\n\
                  m,host=h3,dc=y,rack=r1 a=6,c=\"new\" 50000\n";
    assert_eq!(s.write_lp(second).await.0, 204);
    // Segment and memory.
    check(&s.pg().await).await;
    // Two segments overlapping in time.
    assert_eq!(s.stop(), Some(0));
    s.restart();
    check(&s.pg().await).await;
}
