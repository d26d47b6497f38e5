//! Durability: clean restarts keep data, kill -9 at random moments loses nothing that was
//! acknowledged and duplicates nothing, and a torn WAL tail is cut rather than read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::{Rng, SeedableRng};

use crate::common::{Server, data_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_restart_keeps_data_and_exits_zero() {
    let dir = data_dir();
    let mut s = Server::start(dir.path());
    let body: String = (0..1000)
        .map(|i| format!("r,k=k{} v={i}i {i}\n", i % 7))
        .collect();
    assert_eq!(s.write_lp(body).await.0, 204);
    assert_eq!(s.stop(), Some(0), "SIGTERM must flush and exit 0");
    s.restart();
    let c = s.pg().await;
    let row = c
        .query_one("SELECT count(*), sum(v) FROM r", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1000);
    assert_eq!(row.get::<_, i64>(1), (0..1000).sum::<i64>());
    // Shutdown flushed to Parquet; the segment is readable as plain Parquet.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    let segs = manifest["body"]["segments"].as_array().unwrap();
    assert_eq!(segs.len(), 1);
    let rows: u64 = segs.iter().map(|s| s["rows"].as_u64().unwrap()).sum();
    assert_eq!(rows, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_relative_data_dir_survives_restart() {
    let cwd = data_dir();
    let mut s = Server::start_in(cwd.path());
    assert_eq!(s.write_lp("rel,k=a v=1 1\nrel,k=b v=2 2\n").await.0, 204);
    assert_eq!(s.stop(), Some(0));
    assert!(cwd.path().join("eddy-data/manifest.json").exists());
    s.restart();
    let c = s.pg().await;
    let n: f64 = c
        .query_one("SELECT sum(v) FROM rel", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_memtable_slows_writers_but_loses_nothing() {
    let dir = data_dir();
    // 1 MiB of memtable at most: concurrent writers must wait for flushes (backpressure).
    let mut s = Server::start_with(
        dir.path(),
        &[
            "--memtable-bytes-max",
            "1048576",
            "--memtable-flush-bytes",
            "262144",
        ],
    );
    let mut tasks = Vec::new();
    for w in 0..4 {
        let url = s.url("/api/v2/write?bucket=eddy");
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for b in 0..20 {
                let body: String = (0..500)
                    .map(|j| format!("bp,w=w{w} v={j}i {}\n", b * 1000 + j))
                    .collect();
                let r = client.post(&url).body(body).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 204);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let c = s.pg().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM bp", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4 * 20 * 500);
    let segments = std::fs::read_dir(dir.path().join("data/bp/1970-01-01"))
        .unwrap()
        .count();
    assert!(
        segments > 1,
        "a 1 MiB memtable must have flushed several times: {segments}"
    );
    s.kill9();
    s.restart();
    let c = s.pg().await;
    let n: i64 = c
        .query_one(
            "SELECT count(DISTINCT w || CAST(time AS VARCHAR)) FROM bp",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4 * 20 * 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_sync_mode_survives_a_process_crash() {
    let dir = data_dir();
    let mut s = Server::start_with(
        dir.path(),
        &["--wal-sync", "interval", "--wal-sync-interval-ms", "50"],
    );
    assert_eq!(s.write_lp("iv,k=a v=1 1\niv,k=b v=2 2\n").await.0, 204);
    // The process dies; the operating system still has the written WAL pages.
    s.kill9();
    s.restart();
    let c = s.pg().await;
    let n: f64 = c
        .query_one("SELECT sum(v) FROM iv", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3.0);
}

const BATCH_ROWS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_concurrent_ingest_loses_no_acknowledged_row() {
    let dir = data_dir();
    // Small memtables: flushes and WAL truncation happen while the server is killed.
    let mut s = Server::start_with(dir.path(), &["--memtable-flush-bytes", "262144"]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xedd1);
    let mut acked: BTreeSet<(u32, u32, u32)> = BTreeSet::new();
    const ROUNDS: u32 = 20;
    for round in 0..ROUNDS {
        let url = s.url("/api/v2/write?bucket=eddy&precision=ns");
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..3u32 {
            let (url, stop) = (url.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut ok = Vec::new();
                let mut b = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let body: String = (0..BATCH_ROWS)
                        .map(|j| {
                            let t = ((round as i64 * 1000 + b as i64) * 1000 + j as i64) * 1000
                                + w as i64;
                            format!("crash,round=r{round},writer=w{w},batch=b{b} v={j}i {t}\n")
                        })
                        .collect();
                    match client.post(&url).body(body).send().await {
                        Ok(r) if r.status().as_u16() == 204 => ok.push((round, w, b)),
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => break,
                    }
                    b += 1;
                }
                ok
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..700))).await;
        s.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            acked.extend(w.await.unwrap());
        }
        s.restart();
        let c = s.pg().await;
        let rows = c
            .query(
                "SELECT round, writer, batch, count(*), count(DISTINCT time), sum(v) FROM crash GROUP BY 1, 2, 3",
                &[],
            )
            .await
            .unwrap();
        let mut present: BTreeMap<(u32, u32, u32), (i64, i64, i64)> = BTreeMap::new();
        for r in &rows {
            let key = (
                r.get::<_, String>(0)[1..].parse().unwrap(),
                r.get::<_, String>(1)[1..].parse().unwrap(),
                r.get::<_, String>(2)[1..].parse().unwrap(),
            );
            present.insert(key, (r.get(3), r.get(4), r.get(5)));
        }
        let full = (
            BATCH_ROWS as i64,
            BATCH_ROWS as i64,
            (0..BATCH_ROWS as i64).sum(),
        );
        for k in &acked {
            assert_eq!(
                present.get(k),
                Some(&full),
                "acknowledged batch {k:?} after round {round}"
            );
        }
        // Unacknowledged batches are all-or-nothing: a WAL record is never half applied.
        for (k, v) in &present {
            assert_eq!(v, &full, "batch {k:?} is partial after round {round}");
        }
    }
    assert!(
        acked.len() > ROUNDS as usize,
        "the test must acknowledge writes: {}",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_wal_tail_is_cut_not_read() {
    let dir = data_dir();
    let mut s = Server::start(dir.path());
    assert_eq!(s.write_lp("t,k=a v=1 1\nt,k=b v=2 2\n").await.0, 204);
    s.kill9();
    let wal_dir = dir.path().join("wal");
    let mut files: Vec<_> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    files.sort();
    let last = files.last().expect("a WAL file with data").clone();
    let good_len = std::fs::metadata(&last).unwrap().len();
    // A record header promising 4 KiB, followed by a few bytes: a crash mid-append.
    let mut tail = 4096u32.to_le_bytes().to_vec();
    tail.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5]);
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(&tail);
    std::fs::write(&last, &bytes).unwrap();

    s.restart();
    assert_eq!(
        std::fs::metadata(&last).unwrap().len(),
        good_len,
        "torn tail must be cut"
    );
    let c = s.pg().await;
    let n: f64 = c
        .query_one("SELECT sum(v) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3.0);
    assert_eq!(s.write_lp("t,k=c v=4 3\n").await.0, 204);
    s.kill9();
    s.restart();
    let c = s.pg().await;
    let n: f64 = c
        .query_one("SELECT sum(v) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 7.0);

    // Corruption inside an older, complete WAL file is not silently skipped.
    s.kill9();
    let mut files: Vec<_> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let first = files
        .iter()
        .find(|p| std::fs::metadata(p).unwrap().len() > 16)
        .unwrap()
        .clone();
    if files.last() != Some(&first) {
        let mut b = std::fs::read(&first).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0xff;
        std::fs::write(&first, &b).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(["serve", "--data-dir"])
            .arg(dir.path())
            .args([
                "--http-addr",
                &format!("127.0.0.1:{}", crate::common::free_port()),
            ])
            .args([
                "--pg-addr",
                &format!("127.0.0.1:{}", crate::common::free_port()),
            ])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt"));
    }
}
