//! Damaged data directories: a changed byte in a segment fails the queries that read it with
//! SQLSTATE XX001 and the file's name (never other answers), a missing or emptied manifest or
//! a missing catalog refuses to start without deleting anything, and `eddy check` says which
//! file is damaged.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Server, data_dir, eddy_gen, refused};

/// Every file under `dir/data`, sorted.
fn data_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dir.join("data"), &mut out);
    out.sort();
    out
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    data_files(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect()
}

/// Runs `eddy check --data-dir dir`: (exit code, stdout).
fn eddy_check(dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("check")
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run eddy check");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn file_name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).expect("file name")
}

const TOTALS: &str =
    "SELECT count(*), sum(usage_user), min(usage_system), max(usage_idle) FROM cpu";
/// Reads every column chunk of the segment, so every block of it.
const ALL: &str = "SELECT * FROM cpu";
const LATEST: &str = "SELECT hostname, usage_user FROM cpu WHERE hostname = 'host_3' \
                      ORDER BY time DESC LIMIT 1";

/// Two hours of ten hosts, flushed into one segment by a clean restart.
async fn server_with_one_segment(dir: &Path) -> Server {
    let mut s = Server::start(dir);
    let data = eddy_gen(&[
        "--scale",
        "10",
        "--start",
        "2024-01-01T00:00:00Z",
        "--end",
        "2024-01-01T02:00:00Z",
    ]);
    assert_eq!(s.write_lp(data).await.0, 204);
    assert_eq!(s.stop(), Some(0));
    assert_eq!(segments(dir).len(), 1, "{:?}", data_files(dir));
    s.restart();
    s
}

async fn totals(s: &Server) -> (i64, i64, i64, i64) {
    let row = s.pg().await.query_one(TOTALS, &[]).await.expect("totals");
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_byte_in_a_segment_is_sqlstate_xx001_naming_the_file() {
    let tmp = data_dir();
    // A directory inside the temporary one, so the logs `refused` writes beside it are
    // removed with it.
    let dir = &tmp.path().join("eddy-data");
    let mut s = server_with_one_segment(dir).await;
    let expected = totals(&s).await;
    assert_eq!(expected.0, 7200);
    s.stop();
    let (code, out) = eddy_check(dir);
    assert_eq!(code, Some(0), "{out}");

    let segment = segments(dir).pop().expect("segment");
    let good = std::fs::read(&segment).expect("read");
    let mut bad = good.clone();
    let mid = good.len() / 2;
    bad[mid] ^= 0x01;
    std::fs::write(&segment, &bad).expect("write");

    let (code, out) = eddy_check(dir);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(file_name(&segment)), "{out}");
    assert!(out.contains("DAMAGED"), "{out}");

    s.restart();
    let c = s.pg().await;
    for sql in [ALL, LATEST] {
        let err = c
            .query(sql, &[])
            .await
            .expect_err("a damaged segment must not answer");
        assert_eq!(
            err.code().map(|c| c.code()),
            Some("XX001"),
            "{sql}: {err:?}"
        );
        let message = err.as_db_error().map(|e| e.message()).unwrap_or_default();
        assert!(message.contains(file_name(&segment)), "{sql}: {message}");
    }
    // Put back, the same file answers as before: nothing was cached from the damaged bytes.
    std::fs::write(&segment, &good).expect("restore");
    assert_eq!(totals(&s).await, expected);
    s.stop();
    let (code, out) = eddy_check(dir);
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_emptied_manifest_refuses_to_start_and_deletes_nothing() {
    let tmp = data_dir();
    // A directory inside the temporary one, so the logs `refused` writes beside it are
    // removed with it.
    let dir = &tmp.path().join("eddy-data");
    let mut s = server_with_one_segment(dir).await;
    let expected = totals(&s).await;
    s.stop();
    let files = data_files(dir);
    let manifest = dir.join("manifest.json");
    let good = std::fs::read(&manifest).expect("manifest");

    std::fs::remove_file(&manifest).expect("rm");
    let err = refused(dir);
    assert!(err.contains("manifest.json"), "{err}");
    assert!(err.contains("refusing to start"), "{err}");
    assert_eq!(data_files(dir), files, "nothing under data/ may be deleted");
    let (code, out) = eddy_check(dir);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("manifest.json"), "{out}");

    // Valid JSON that lists no segments (as an older Eddy wrote it, without a checksum).
    std::fs::write(
        &manifest,
        r#"{"flushed_seq":0,"next_segment_id":1,"segments":[]}"#,
    )
    .expect("write");
    let err = refused(dir);
    assert!(err.contains("manifest.json"), "{err}");
    assert_eq!(data_files(dir), files, "nothing under data/ may be deleted");

    // A manifest with a changed byte is an error naming it.
    let mut bad = good.clone();
    let at = good.len() - 20;
    bad[at] ^= 0x01;
    std::fs::write(&manifest, &bad).expect("write");
    let err = refused(dir);
    assert!(err.contains("manifest.json"), "{err}");
    assert_eq!(data_files(dir), files, "nothing under data/ may be deleted");

    std::fs::write(&manifest, &good).expect("restore");
    s.restart();
    assert_eq!(totals(&s).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_catalog_refuses_to_start() {
    let tmp = data_dir();
    // A directory inside the temporary one, so the logs `refused` writes beside it are
    // removed with it.
    let dir = &tmp.path().join("eddy-data");
    let mut s = server_with_one_segment(dir).await;
    let expected = totals(&s).await;
    s.stop();
    let files = data_files(dir);
    let catalog = dir.join("catalog.json");
    let good = std::fs::read(&catalog).expect("catalog");

    std::fs::remove_file(&catalog).expect("rm");
    let err = refused(dir);
    assert!(err.contains("catalog.json"), "{err}");
    assert!(err.contains("refusing to start"), "{err}");
    assert!(
        !catalog.exists(),
        "no empty catalog may be written in its place"
    );
    assert_eq!(data_files(dir), files);
    let (code, out) = eddy_check(dir);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("catalog.json"), "{out}");

    std::fs::write(&catalog, &good).expect("restore");
    s.restart();
    assert_eq!(totals(&s).await, expected);
}
