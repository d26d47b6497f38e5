//! Chaos, short version: `scripts/chaos.py` for seven rounds, one per way of killing the server
//! (during ingest, a flush, a compaction, a view refresh, a view backfill, a view checkpoint,
//! and start-up).
//! Each round kills `eddy` with SIGKILL under concurrent HTTP and Postgres writers, restarts it,
//! and checks that every acknowledged row is there exactly once, in-flight batches are all or
//! nothing, and every view equals its defining query over the raw table. The script's
//! 1,000-round run and its result are in docs/benchmarks.md.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::data_dir;

/// Seven rounds take about 15 s; a hung run is killed after this long.
const CHAOS_TIMEOUT: Duration = Duration::from_secs(600);

#[test]
fn chaos_kills_lose_no_acknowledged_row_and_keep_views_exact() {
    let dir = data_dir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/chaos.py");
    let out_path = dir.path().join("chaos.out");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_eddy"))
        .args(["--rounds", "7", "--seed", "14013"])
        .arg("--data-dir")
        .arg(dir.path().join("run"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("output file"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run python3 scripts/chaos.py");
    let deadline = Instant::now() + CHAOS_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chaos.py") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    println!("{output}");
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("chaos.py exited with {s}:\n{output}"),
        None => panic!(
            "chaos.py did not finish within {} s:\n{output}",
            CHAOS_TIMEOUT.as_secs()
        ),
    }
    assert!(
        output.contains("losses 0, duplicates 0, partial batches 0, rows never sent 0"),
        "{output}"
    );
}
