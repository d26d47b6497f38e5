//! On-disk format versions: every file of the data directory records its format version, a
//! file written by a newer Eddy is refused by name at start-up (nothing is rewritten), and files
//! written before versions were recorded still open with the same answers.

use std::path::{Path, PathBuf};

use crate::common::{Server, data_dir, refused};

/// The JSON files of a data directory, relative to it.
const JSON_FILES: [&str; 4] = [
    "catalog.json",
    "manifest.json",
    "views.json",
    "views/checkpoint.json",
];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn wal_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

fn read_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write_json(path: &Path, v: &serde_json::Value) {
    std::fs::write(path, serde_json::to_vec_pretty(v).expect("json")).expect("write");
}

/// What the tests compare before and after: the table's rows and the view's.
fn answers(server: &Server) -> (String, String) {
    (
        server.psql("SELECT hostname, usage_user FROM cpu ORDER BY time"),
        server.psql("SELECT bucket, hostname, usage FROM cpu_1m ORDER BY 1, 2"),
    )
}

#[test]
fn files_carry_versions_newer_ones_are_refused_and_older_ones_open() {
    let tmp = data_dir();
    let dir = tmp.path().join("data");
    let mut server = Server::start(&dir);
    server.create_cpu_and_rollup();
    // A clean stop flushes the table and checkpoints the view: every JSON file exists.
    server.stop();
    server.restart();
    // A row left in the WAL only, so the copies below have a WAL file to read.
    let (status, body) = server
        .write_lp("cpu,hostname=host_c usage_user=4.5 1704067380000000000")
        .await_blocking();
    assert_eq!(status, 204, "{body}");
    let expected = answers(&server);
    assert_eq!(expected.0.lines().count(), 4, "{}", expected.0);
    server.kill9();

    for rel in JSON_FILES {
        let v = read_json(&dir.join(rel));
        assert_eq!(v["format_version"], 2, "{rel}: {v}");
        assert!(v["crc32"].is_u64(), "{rel}: {v}");
        assert!(v["body"].is_object(), "{rel}: {v}");
    }
    let wal = wal_files(&dir);
    assert!(!wal.is_empty(), "no WAL file after kill -9");
    for f in &wal {
        let bytes = std::fs::read(f).expect("wal");
        assert_eq!(&bytes[..4], b"EDWL", "{}", f.display());
        assert_eq!(&bytes[4..8], &2u32.to_le_bytes(), "{}", f.display());
    }

    // Each file in turn claims a newer version: Eddy refuses to start and names the file.
    for rel in JSON_FILES {
        let copy = tmp.path().join(format!("newer-{}", rel.replace('/', "-")));
        copy_dir(&dir, &copy);
        let mut v = read_json(&copy.join(rel));
        v["format_version"] = serde_json::json!(99);
        write_json(&copy.join(rel), &v);
        let before = std::fs::read(copy.join(rel)).expect("read");
        let err = refused(&copy);
        let name = Path::new(rel)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(rel);
        assert!(err.contains(name), "{rel}: {err}");
        assert!(err.contains("newer Eddy"), "{rel}: {err}");
        assert!(err.contains("format version 99"), "{rel}: {err}");
        assert_eq!(
            std::fs::read(copy.join(rel)).expect("read"),
            before,
            "{rel} was rewritten by the Eddy that refused it"
        );
    }
    let copy = tmp.path().join("newer-wal");
    copy_dir(&dir, &copy);
    let newest = wal_files(&copy).pop().expect("wal");
    let mut bytes = std::fs::read(&newest).expect("wal");
    bytes[4..8].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&newest, &bytes).expect("write");
    let err = refused(&copy);
    let name = newest.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(err.contains(name), "{err}");
    assert!(err.contains("newer Eddy"), "{err}");
    assert_eq!(std::fs::read(&newest).expect("wal"), bytes, "WAL rewritten");

    // Files as Eddy wrote them before versions were recorded: no `format_version` and no
    // checksummed envelope (the body's fields at the top), views.json a bare array, WAL files
    // without a header. They open and answer the same.
    let old = tmp.path().join("unversioned");
    copy_dir(&dir, &old);
    for rel in JSON_FILES {
        let mut v = read_json(&old.join(rel));
        let obj = v.as_object_mut().expect("object");
        let mut body = obj.remove("body").expect("body");
        if rel == "views.json" {
            let views = body
                .as_object_mut()
                .expect("object")
                .remove("views")
                .expect("views");
            write_json(&old.join(rel), &views);
        } else {
            write_json(&old.join(rel), &body);
        }
    }
    for f in wal_files(&old) {
        let bytes = std::fs::read(&f).expect("wal");
        std::fs::write(&f, &bytes[8..]).expect("write");
    }
    let mut server = Server::start(&old);
    assert_eq!(answers(&server), expected);
    // Everything is written in today's format (with checksums) again: the catalog and the
    // manifest at start-up, the definitions when the views open, the checkpoint at the stop.
    server.stop();
    for rel in JSON_FILES {
        assert_eq!(read_json(&old.join(rel))["format_version"], 2, "{rel}");
    }
}

/// Runs a future on a small runtime: the rest of this test is synchronous (psql, processes).
trait AwaitBlocking: std::future::Future + Sized {
    fn await_blocking(self) -> Self::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(self)
    }
}

impl<F: std::future::Future> AwaitBlocking for F {}
