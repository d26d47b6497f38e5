//! A query over one hour of one host reads only the segment that can hold that hour.

use crate::common::{Server, data_dir, eddy_gen};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_range_prunes_segments() {
    let dir = data_dir();
    let mut s = Server::start(dir.path());
    // Three hours, each flushed into its own segment by a clean restart.
    for h in 0..3 {
        let start = format!("2024-01-01T{h:02}:00:00Z");
        let end = format!("2024-01-01T{:02}:00:00Z", h + 1);
        let data = eddy_gen(&["--scale", "5", "--start", &start, "--end", &end]);
        assert_eq!(s.write_lp(data).await.0, 204);
        assert_eq!(s.stop(), Some(0));
        s.restart();
    }
    let segments: Vec<_> = walk(&dir.path().join("data"));
    assert_eq!(segments.len(), 3, "{segments:?}");

    let c = s.pg().await;
    let sql = "SELECT count(*), max(usage_user) FROM cpu WHERE hostname = 'host_1' \
               AND time >= '2024-01-01T01:00:00' AND time < '2024-01-01T02:00:00'";
    let n: i64 = c.query_one(sql, &[]).await.unwrap().get(0);
    assert_eq!(n, 360);
    let plan = explain_analyze(&c, sql).await;
    let files = plan.matches(".parquet").count();
    assert_eq!(files, 1, "only the 01:00 segment may be scanned:\n{plan}");
    assert!(
        segments
            .iter()
            .any(|p| plan.contains(p.file_name().unwrap().to_str().unwrap())),
        "the scanned file is one of the segments:\n{plan}"
    );
    assert!(
        plan.contains("DataSourceExec") || plan.contains("DecodedSegmentExec"),
        "{plan}"
    );
    // The host predicate reaches the segment scan.
    assert!(plan.contains("predicate"), "{plan}");
}

/// The plan `EXPLAIN ANALYZE` prints for `sql`, one line per plan row.
async fn explain_analyze(c: &tokio_postgres::Client, sql: &str) -> String {
    c.query(&format!("EXPLAIN ANALYZE {sql}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(1))
        .collect::<Vec<_>>()
        .join("\n")
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// max()/min() without GROUP BY push no dynamic filter into segment decoding (an OR over every
/// aggregated column, evaluated row by row, that cannot prune a series-sorted segment), and
/// the session knob that turns filter pushdown off gives the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_push_no_dynamic_filter_and_pushdown_is_a_session_setting() {
    let dir = data_dir();
    // The Parquet reader's filter pushdown is the subject: scans decode every time.
    let mut s = Server::start_with(dir.path(), &["--decoded-cache-bytes", "0"]);
    let data = eddy_gen(&[
        "--scale",
        "5",
        "--start",
        "2024-01-01T00:00:00Z",
        "--end",
        "2024-01-01T02:00:00Z",
    ]);
    assert_eq!(s.write_lp(data).await.0, 204);
    let sql = "SELECT count(*)::bigint, max(usage_user), max(usage_system), min(usage_idle) \
               FROM cpu WHERE time >= '2024-01-01T00:30:00' AND time < '2024-01-01T01:30:00'";
    let answer = |row: &tokio_postgres::Row| -> (i64, i64, i64, i64) {
        (row.get(0), row.get(1), row.get(2), row.get(3))
    };
    // In memory first, then from the segment the clean stop flushes.
    let in_memory = answer(&s.pg().await.query_one(sql, &[]).await.unwrap());
    assert_eq!(in_memory.0, 5 * 360);
    assert_eq!(s.stop(), Some(0));
    s.restart();
    let c = s.pg().await;
    let plan = explain_analyze(&c, sql).await;
    assert!(plan.contains(".parquet"), "the segment is scanned:\n{plan}");
    assert!(!plan.contains("DynamicFilter"), "{plan}");
    assert!(plan.contains("pushdown_rows_pruned"), "{plan}");
    assert_eq!(answer(&c.query_one(sql, &[]).await.unwrap()), in_memory);
    c.batch_execute("SET datafusion.execution.parquet.pushdown_filters = false")
        .await
        .unwrap();
    assert_eq!(answer(&c.query_one(sql, &[]).await.unwrap()), in_memory);
    // Another session keeps the default.
    let other = s.pg().await;
    let shown: String = other
        .query_one("SHOW datafusion.execution.parquet.pushdown_filters", &[])
        .await
        .unwrap()
        .get(1);
    assert_eq!(shown, "true");
}
