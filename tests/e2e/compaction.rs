//! Compaction: a partition's segments are merged into one sorted, deduplicated segment that
//! holds exactly the rows the query answered before, is listed in `eddy_segments` and counted
//! in metrics, and is plain Parquet that pyarrow and DuckDB read to the same rows. (Kills in the
//! middle of a compaction are `scripts/chaos.py`'s `compaction` rounds, tests/e2e/chaos.rs.)

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::clients::{clients_dir, python, run};
use crate::common::{Server, data_dir};

const DAY: i64 = 86_400_000_000_000;
/// 2024-01-01T00:00:00Z.
const START: i64 = 1_704_067_200_000_000_000;

type Model = BTreeMap<(String, i64), (Option<i64>, Option<f64>)>;

/// Round `r` of writes: every host over three days, overlapping earlier rounds' keys. Odd
/// rounds set only `b` on half the keys, so the merge must take fields from different segments.
fn round(r: i64, model: &mut Model) -> String {
    let mut body = String::new();
    for host in 0..6 {
        for i in 0..200 {
            let t = START + (i * 3 + r) % 540 * (DAY / 180);
            let key = (format!("h{host}"), t);
            if r % 2 == 1 && i % 2 == 0 {
                let b = (r * 1000 + i) as f64 + 0.5;
                body.push_str(&format!("m,host=h{host} b={b} {t}\n"));
                model.entry(key).or_default().1 = Some(b);
            } else {
                let a = r * 10_000 + host * 1000 + i;
                body.push_str(&format!("m,host=h{host} a={a}i {t}\n"));
                model.entry(key).or_default().0 = Some(a);
            }
        }
    }
    body
}

/// The model's rows as the Python reader prints them.
fn lines(model: &Model) -> Vec<String> {
    let mut out: Vec<String> = model
        .iter()
        .map(|((h, t), (a, b))| {
            let a = a.map_or("null".to_string(), |a| a.to_string());
            let b = b.map_or("null".to_string(), |b| format!("{b:?}"));
            format!("{h},{t},{a},{b}")
        })
        .collect();
    out.sort();
    out
}

/// The table's rows as Eddy answers them, in the same form.
fn answered(s: &Server) -> Vec<String> {
    let text = s.psql(
        "SELECT host || ',' || CAST(CAST(time AS BIGINT) AS TEXT) || ',' || \
         coalesce(CAST(a AS TEXT), 'null') || ',' || coalesce(CAST(b AS TEXT), 'null') \
         FROM m",
    );
    let mut out: Vec<String> = text.lines().map(str::to_string).collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_merges_each_partition_into_one_segment_with_the_same_rows() {
    let dir = data_dir();
    let mut model = Model::new();
    // First without compaction: six flushes leave several overlapping segments per day.
    let mut s = Server::start_with(
        dir.path(),
        &["--compaction", "false", "--flush-interval-ms", "100"],
    );
    for r in 0..6 {
        assert_eq!(s.write_lp(round(r, &mut model)).await.0, 204);
        let want = r + 1;
        s.wait_for(
            "SELECT CAST(count(DISTINCT segment_id) / 3 AS BIGINT) FROM eddy_segments",
            want,
            30,
        )
        .await;
    }
    let before = answered(&s);
    assert_eq!(before.len(), model.len());
    assert_eq!(before, lines(&model), "rows before compaction");
    assert_eq!(s.stop(), Some(0));

    // Then with compaction: each day becomes one segment, and the answer stays the same.
    let mut s = Server::start_with(
        dir.path(),
        &["--compaction", "true", "--compaction-quiet-ms", "200"],
    );
    s.wait_for(
        "SELECT count(*) FROM eddy_segments WHERE table_name = 'm'",
        3,
        60,
    )
    .await;
    let listed = s.psql(
        "SELECT CAST(partition AS TEXT) AS day, level, rows, bytes > 0, min_time <= max_time, file \
         FROM eddy_segments WHERE table_name = 'm' ORDER BY day",
    );
    let rows: Vec<Vec<&str>> = listed.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 3, "{listed}");
    let days = ["2024-01-01", "2024-01-02", "2024-01-03"];
    let mut total = 0;
    for (row, day) in rows.iter().zip(days) {
        assert_eq!(row[0], day, "{listed}");
        assert!(row[1].parse::<i32>().expect("level") >= 1, "{listed}");
        total += row[2].parse::<usize>().expect("rows");
        assert_eq!(&row[3..5], ["t", "t"], "{listed}");
        assert!(row[5].starts_with(&format!("data/m/{day}/")), "{listed}");
    }
    assert_eq!(total, model.len(), "one row per key: {listed}");
    assert_eq!(answered(&s), lines(&model), "rows after compaction");

    // Counted in metrics, with the bytes it read and wrote.
    let metrics = reqwest::get(s.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert_eq!(value("eddy_compactions_total "), 3.0);
    assert!(value("eddy_compaction_read_bytes_total ") > 0.0);
    assert!(value("eddy_compaction_written_bytes_total ") > 0.0);

    // The inputs are gone from disk; only the three compacted files (and checksums) remain.
    let files: Vec<String> = rows.iter().map(|r| r[5].to_string()).collect();
    let mut on_disk = Vec::new();
    for day in days {
        for e in std::fs::read_dir(dir.path().join("data/m").join(day)).expect("day dir") {
            let name = e.expect("entry").file_name().to_string_lossy().to_string();
            if name.ends_with(".parquet") {
                on_disk.push(format!("data/m/{day}/{name}"));
            }
        }
    }
    on_disk.sort();
    assert_eq!(on_disk, files, "retired inputs are deleted");

    // Plain Parquet: pyarrow and DuckDB read the files to exactly these rows.
    let paths: Vec<_> = files.iter().map(|f| dir.path().join(f)).collect();
    let out = run(
        "read_segments.py",
        Command::new(python())
            .arg(clients_dir().join("read_segments.py"))
            .args(&paths),
    );
    let read: Vec<String> = out.lines().map(str::to_string).collect();
    assert_eq!(read, lines(&model), "rows pyarrow and DuckDB read");

    // A restart finds the compacted store as it was.
    assert_eq!(s.stop(), Some(0));
    s.restart();
    assert_eq!(answered(&s), lines(&model), "rows after a restart");
    s.assert_no_panic();
}

/// Compaction runs beside writers: rows written while partitions are merged are neither lost
/// nor shadowed by the merged segment (which sits in write order where its newest input was).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_compaction_are_kept_and_win_over_older_rows() {
    let dir = data_dir();
    let mut s = Server::start_with(
        dir.path(),
        &["--flush-interval-ms", "50", "--compaction-quiet-ms", "100"],
    );
    let mut model = Model::new();
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut r = 0;
    while Instant::now() < deadline || r < 12 {
        assert_eq!(s.write_lp(round(r, &mut model)).await.0, 204);
        r += 1;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(answered(&s), lines(&model), "rows while compaction runs");
    s.wait_for(
        "SELECT count(*) FROM eddy_segments WHERE table_name = 'm'",
        3,
        60,
    )
    .await;
    assert_eq!(answered(&s), lines(&model), "rows once compacted");
    s.kill9();
    s.restart();
    assert_eq!(answered(&s), lines(&model), "rows after kill -9");
    s.assert_no_panic();
}

/// A compacted file of several row groups is read by every core, each taking a byte range of
/// it: the rows are each counted once, whether the answer comes from a scan or statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_compacted_file_is_scanned_in_ranges_each_row_once() {
    let dir = data_dir();
    let mut s = Server::start_with(dir.path(), &["--compaction-quiet-ms", "200"]);
    // 600,000 rows in one day: three row groups of at most 262,144 rows once compacted.
    let rows: i64 = 600_000;
    for part in 0..3 {
        let body: String = (part * rows / 3..(part + 1) * rows / 3)
            .map(|i| format!("big,s=s{} v={i}i {}\n", i % 50, START + i * 100_000))
            .collect();
        assert_eq!(s.write_lp(body).await.0, 204);
    }
    assert_eq!(s.stop(), Some(0));
    s.restart();
    s.wait_for(
        "SELECT count(*) FROM eddy_segments WHERE table_name = 'big'",
        1,
        60,
    )
    .await;
    // Through the cache of decoded columns (row groups dealt out to the cores), then with the
    // cache off through the Parquet reader (byte ranges).
    assert_each_row_counted_once(&s, "DecodedSegmentExec: partitions=2", rows).await;
    s.assert_no_panic();
    assert_eq!(s.stop(), Some(0));
    let mut s = Server::start_with(dir.path(), &["--decoded-cache-bytes", "0"]);
    assert_each_row_counted_once(&s, "file_groups={2 groups", rows).await;
    s.assert_no_panic();
}

/// `rows` rows of table `big` are each counted once by a plan that reads in two parts (its
/// `EXPLAIN` shows `split`).
async fn assert_each_row_counted_once(s: &Server, split: &str, rows: i64) {
    let plan = s.psql("EXPLAIN SELECT sum(v) FROM big");
    assert!(
        plan.contains(split),
        "the file is read in two parts: {plan}"
    );
    let c = s.pg().await;
    let row = c
        .query_one(
            "SELECT count(*), sum(v), count(DISTINCT v), min(v), max(v) FROM big",
            &[],
        )
        .await
        .expect("aggregate");
    assert_eq!(row.get::<_, i64>(0), rows);
    assert_eq!(row.get::<_, i64>(1), (0..rows).sum::<i64>());
    assert_eq!(row.get::<_, i64>(2), rows);
    assert_eq!(row.get::<_, i64>(3), 0);
    assert_eq!(row.get::<_, i64>(4), rows - 1);
    let per_series = c
        .query_one(
            "SELECT count(*) FROM big WHERE s = 's7' AND v % 50 = 7",
            &[],
        )
        .await
        .expect("filter");
    assert_eq!(per_series.get::<_, i64>(0), rows / 50);
}
