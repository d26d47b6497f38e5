//! Damaged and inconsistent data directories: a changed byte in a segment, its checksum file
//! or a JSON file is an error naming the file on every read path, never different data; a
//! missing or disagreeing catalog or manifest refuses to open; start-up deletes only what is
//! provably garbage.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Float64Array, Int64Array, StringArray, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ParquetRecordBatchStreamBuilder;
use datafusion::parquet::errors::ParquetError;
use parking_lot::Mutex;

use crate::catalog::Catalog;
use crate::check::{CheckOptions, Severity, check};
use crate::checksum::sidecar_path;
use crate::format::to_json;
use crate::limits::SEGMENT_CHECKSUM_BLOCK_BYTES;
use crate::manifest::{Manifest, SegmentMeta};
use crate::schema::{ColumnDef, ColumnKind, FieldType, TableDef};
use crate::segment::{MetadataCache, SegmentFile, SegmentReader, read_segment};
use crate::{Db, StorageConfig, StorageError};

/// 2023-11-14T22:13:20Z: every row of a test lands in one day unless it says otherwise.
const BASE: i64 = 1_700_000_000_000_000_000;
const DAY: i64 = 86_400_000_000_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn def() -> TableDef {
    TableDef {
        id: 0,
        name: "t".into(),
        columns: vec![
            ColumnDef::new("time", ColumnKind::Time),
            ColumnDef::new("s", ColumnKind::Tag),
            ColumnDef::new("a", ColumnKind::Field(FieldType::Integer)),
            ColumnDef::new("b", ColumnKind::Field(FieldType::Float)),
        ],
        retention_ns: None,
    }
}

/// `n` rows from `start`, one per millisecond, with values that do not compress (so the
/// segment spans many checksum blocks).
fn rows(n: usize, start: i64, seed: u64) -> RecordBatch {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x
    };
    let a: Vec<i64> = (0..n).map(|_| next() as i64).collect();
    let b: Vec<f64> = (0..n).map(|_| (next() >> 11) as f64 / 7.0).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("time", crate::schema::time_data_type(), false),
        Field::new("s", DataType::Utf8, true),
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::Float64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampNanosecondArray::from_iter_values(
                (0..n as i64).map(|i| start + i * 1_000_000),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("s{}", i % 3)),
            )),
            Arc::new(Int64Array::from(a)),
            Arc::new(Float64Array::from(b)),
        ],
    )
    .expect("batch")
}

fn open(dir: &Path) -> crate::Result<Db> {
    Db::open(StorageConfig::new(dir))
}

/// A data directory with one table and one segment per day of `days`, closed cleanly.
/// Returns the segments and the table's schema.
fn flushed(dir: &Path, days: i64, rows_per_day: usize) -> (Vec<SegmentMeta>, SchemaRef) {
    let rt = runtime();
    let db = open(dir).expect("open");
    let table = db.catalog().create_table(def(), false).expect("create");
    for d in 0..days {
        rt.block_on(db.write("t", rows(rows_per_day, BASE + d * DAY, d as u64)))
            .expect("write");
    }
    db.flush().expect("flush");
    let segments = db.segments();
    assert_eq!(segments.len(), days as usize);
    db.close().expect("close");
    (segments, table.arrow_schema().clone())
}

/// Every file under the data directory, relative to it.
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).expect("under dir").to_path_buf());
            }
        }
    }
    out
}

fn segment_files(dir: &Path) -> BTreeSet<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| p.starts_with("data"))
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).expect("copy");
        }
    }
}

fn assert_corrupt(err: &StorageError, name: &str) {
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(name), "{err}");
}

fn assert_refused(err: &StorageError, name: &str) {
    assert!(matches!(err, StorageError::Inconsistent { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(name), "{msg}");
    assert!(msg.contains("refusing to start"), "{msg}");
}

/// Reads a segment the way the query engine does: Parquet's async reader over a
/// [`SegmentReader`] (footer, page index and every column chunk).
async fn read_async(reader: SegmentReader) -> Result<usize, ParquetError> {
    let mut stream = ParquetRecordBatchStreamBuilder::new(reader)
        .await?
        .build()?;
    let mut rows = 0;
    while let Some(group) = stream.next_row_group().await? {
        for b in group {
            rows += b?.num_rows();
        }
    }
    Ok(rows)
}

fn reader(file: SegmentFile) -> SegmentReader {
    SegmentReader::new(
        Arc::new(file),
        Arc::new(Mutex::new(MetadataCache::new(1 << 20))),
    )
}

#[test]
fn a_changed_byte_anywhere_in_a_segment_fails_every_read_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (segments, schema) = flushed(dir.path(), 1, 30_000);
    let meta = segments[0].clone();
    let path = dir.path().join(&meta.path);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_string();
    let good = fs::read(&path).expect("read");
    let block = SEGMENT_CHECKSUM_BLOCK_BYTES as usize;
    assert!(good.len() > 3 * block, "segment of {} bytes", good.len());
    let want = read_segment(&path, &schema).expect("clean read");
    let rt = runtime();
    assert_eq!(
        rt.block_on(read_async(reader(SegmentFile::new(
            path.clone(),
            meta.clone()
        ))))
        .expect("clean async read"),
        30_000
    );

    // 41 offsets spread over the file, and its first and last bytes.
    let mut offsets: Vec<usize> = (0..41).map(|i| i * (good.len() - 1) / 40).collect();
    offsets.extend([4, good.len() / 2, good.len() - 9]);
    for off in offsets {
        for flip in [0x01u8, 0x80] {
            let mut bad = good.clone();
            bad[off] ^= flip;
            fs::write(&path, &bad).expect("write");

            // A whole-segment read (merges, latest-row summaries, view backfill).
            let err = read_segment(&path, &schema).expect_err("damaged segment read");
            assert_corrupt(&err, &name);

            // Random access: any range over the damaged block fails; others read the
            // original bytes.
            let file = SegmentFile::new(path.clone(), meta.clone());
            let err = file
                .read_ranges(&[0..good.len() as u64])
                .expect_err("damaged range read");
            assert_corrupt(&err, &name);
            let bad_block = off / block;
            let other = if bad_block == 0 {
                block..2 * block
            } else {
                0..block
            };
            let got = file
                .read_ranges(&[other.start as u64 + 3..other.end as u64 - 5])
                .expect("undamaged range");
            assert_eq!(&got[0][..], &good[other.start + 3..other.end - 5]);

            // A partial read (overlapping segments merged for a time range): only the pages
            // it needs are read, each verified; every page is needed here.
            let err = crate::segment::read_segment_range(
                &file,
                &Mutex::new(MetadataCache::new(1 << 20)),
                &schema,
                "time",
                (i64::MIN + 1, i64::MAX),
                &Default::default(),
                None,
            )
            .expect_err("damaged partial read");
            assert_corrupt(&err, &name);

            // The query engine's reader: footer, page index and pages all verified.
            let err = rt
                .block_on(read_async(reader(file)))
                .expect_err("damaged async read");
            assert!(err.to_string().contains(&name), "{err}");
            let inner = std::error::Error::source(&err)
                .and_then(|s| s.downcast_ref::<StorageError>())
                .unwrap_or_else(|| panic!("not a storage error: {err}"));
            assert_corrupt(inner, &name);
        }
    }
    fs::write(&path, &good).expect("restore");
    assert_eq!(read_segment(&path, &schema).expect("restored"), want);
}

#[test]
fn a_damaged_or_missing_checksum_file_fails_reads_of_its_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (segments, schema) = flushed(dir.path(), 1, 2_000);
    let path = dir.path().join(&segments[0].path);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_string();
    let crc = sidecar_path(&path);
    let good = fs::read(&crc).expect("read");
    for off in 0..good.len() {
        let mut bad = good.clone();
        bad[off] ^= 0x04;
        fs::write(&crc, &bad).expect("write");
        let err = read_segment(&path, &schema).expect_err("damaged checksums");
        assert!(err.to_string().contains(&name), "{err}");
        let file = SegmentFile::new(path.clone(), segments[0].clone());
        assert!(file.read_ranges(&[0..4]).is_err());
        assert!(file.read_metadata().is_err());
    }
    fs::remove_file(&crc).expect("rm");
    let err = read_segment(&path, &schema).expect_err("no checksums");
    assert_corrupt(&err, &name);
    assert!(err.to_string().contains("checksum file"), "{err}");
    // A segment cut short is caught by the length its checksums cover.
    fs::write(&crc, &good).expect("restore");
    let data = fs::read(&path).expect("read");
    fs::write(&path, &data[..data.len() - 1]).expect("truncate");
    assert_corrupt(&read_segment(&path, &schema).expect_err("short"), &name);
}

#[test]
fn a_new_data_directory_gets_its_catalog_and_manifest_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path()).expect("open");
    assert!(dir.path().join("catalog.json").exists());
    assert!(dir.path().join("manifest.json").exists());
    db.close().expect("close");
    open(dir.path()).expect("reopen").close().expect("close");
}

#[test]
fn a_missing_manifest_refuses_to_start_and_deletes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    flushed(dir.path(), 2, 100);
    fs::remove_file(dir.path().join("manifest.json")).expect("rm");
    let before = files(dir.path());
    let err = open(dir.path()).expect_err("no manifest");
    assert_refused(&err, "manifest.json");
    assert!(err.to_string().contains("2 segment files"), "{err}");
    assert_eq!(files(dir.path()), before);
}

#[test]
fn a_manifest_listing_no_segments_refuses_to_start_and_deletes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    flushed(dir.path(), 2, 100);
    let path = Manifest::path(dir.path());
    let segments = segment_files(dir.path());
    // Valid files both: an older Eddy's manifest, and today's with a sound checksum.
    let empty_v2 = to_json(&path, &Manifest::empty(), 2, false).expect("json");
    for body in [
        br#"{"flushed_seq":0,"next_segment_id":1,"segments":[]}"#.to_vec(),
        empty_v2,
    ] {
        fs::write(&path, &body).expect("write");
        let err = open(dir.path()).expect_err("empty manifest");
        assert_refused(&err, "manifest.json");
        assert_eq!(segment_files(dir.path()), segments);
    }
}

#[test]
fn a_missing_or_older_catalog_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    flushed(dir.path(), 1, 100);
    let path = dir.path().join("catalog.json");
    let good = fs::read(&path).expect("read");
    fs::remove_file(&path).expect("rm");
    let before = files(dir.path());
    let err = open(dir.path()).expect_err("no catalog");
    assert_refused(&err, "catalog.json");
    assert_eq!(files(dir.path()), before);

    // A catalog from before the table existed would hand its id out again.
    let other = tempfile::tempdir().expect("tempdir");
    Catalog::open(other.path())
        .expect("empty")
        .store()
        .expect("store");
    fs::copy(other.path().join("catalog.json"), &path).expect("copy");
    let err = open(dir.path()).expect_err("older catalog");
    assert_refused(&err, "catalog.json");

    fs::write(&path, &good).expect("restore");
    open(dir.path()).expect("restored").close().expect("close");
}

#[test]
fn a_manifest_naming_a_missing_segment_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (segments, _) = flushed(dir.path(), 2, 100);
    let gone = dir.path().join(&segments[1].path);
    fs::remove_file(&gone).expect("rm");
    let err = open(dir.path()).expect_err("missing segment");
    let name = gone.file_name().and_then(|n| n.to_str()).expect("name");
    assert_refused(&err, name);
    assert!(dir.path().join(&segments[0].path).exists());
}

#[test]
fn only_provable_garbage_is_removed_at_start() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path()).expect("open");
    db.catalog().create_table(def(), false).expect("create");
    rt.block_on(db.write("t", rows(100, BASE, 1)))
        .expect("write");
    db.flush().expect("flush");
    // Rows only in the WAL when the copy below is taken: a crash.
    rt.block_on(db.write("t", rows(50, BASE + 500_000_000_000, 2)))
        .expect("write");
    let crash = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), crash.path());
    db.close().expect("close");

    let (manifest, _) = Manifest::read(crash.path())
        .expect("read")
        .expect("manifest");
    let live = crash.path().join(&manifest.segments[0].path);
    let day_dir = live.parent().expect("day").to_path_buf();
    // A flush that stopped before its manifest: ids not handed out yet, rows in the WAL.
    let unflushed = day_dir.join(format!("{:020}.parquet", manifest.next_segment_id));
    fs::write(&unflushed, b"partial").expect("write");
    fs::write(sidecar_path(&unflushed), b"partial").expect("write");
    let tmp = day_dir.join(format!("{:020}.parquet.tmp", manifest.next_segment_id + 1));
    fs::write(&tmp, b"partial").expect("write");
    // Not Eddy's, and a segment the manifest does not account for: left alone.
    let notes = crash.path().join("data").join("notes.txt");
    fs::write(&notes, b"mine").expect("write");
    let stray = day_dir.join(format!("{:020}.parquet", 0));
    fs::write(&stray, b"stray").expect("write");

    let db = open(crash.path()).expect("open after crash");
    let report = db.recovery_report().clone();
    assert_eq!(report.orphan_files_removed, 3, "{report:?}");
    assert_eq!(report.unknown_files, 2, "{report:?}");
    assert!(!unflushed.exists() && !sidecar_path(&unflushed).exists() && !tmp.exists());
    assert!(notes.exists() && stray.exists() && live.exists());
    let snap = db.snapshot("t").expect("table");
    let n: usize = snap
        .read_all(i64::MIN, i64::MAX)
        .expect("read")
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(n, 150, "the WAL's rows are replayed");
    db.close().expect("close");
}

#[test]
fn a_segment_newer_than_the_manifest_without_wal_rows_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (segments, _) = flushed(dir.path(), 1, 100);
    let (manifest, _) = Manifest::read(dir.path()).expect("read").expect("manifest");
    let live = dir.path().join(&segments[0].path);
    let newer = live
        .parent()
        .expect("day")
        .join(format!("{:020}.parquet", manifest.next_segment_id));
    fs::copy(&live, &newer).expect("copy");
    let err = open(dir.path()).expect_err("newer segment");
    assert_refused(&err, "manifest.json");
    assert!(newer.exists(), "nothing deleted");
}

#[test]
fn retired_segments_left_by_a_crash_are_removed_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (segments, _) = flushed(dir.path(), 1, 100);
    let db = open(dir.path()).expect("open");
    let snap = db.snapshot("t").expect("table");
    let plan = snap.read_plan(i64::MIN, i64::MAX).expect("plan");
    drop(snap);
    db.drop_table("t").expect("drop");
    // A query still holds the file: it is retired, not deleted. Crash now.
    let path = dir.path().join(&segments[0].path);
    assert!(path.exists());
    let crash = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), crash.path());
    let (m, _) = Manifest::read(crash.path())
        .expect("read")
        .expect("manifest");
    assert_eq!(m.retired.len(), 1);
    drop(plan);
    db.close().expect("close");
    assert!(!path.exists() && !sidecar_path(&path).exists());

    let copied = crash.path().join(&segments[0].path);
    let db = open(crash.path()).expect("open");
    assert!(!copied.exists() && !sidecar_path(&copied).exists());
    let (m, _) = Manifest::read(crash.path())
        .expect("read")
        .expect("manifest");
    assert!(m.retired.is_empty(), "{:?}", m.retired);
    db.close().expect("close");
}

#[test]
fn segments_from_before_checksums_get_checksum_files_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (segments, schema) = flushed(dir.path(), 2, 100);
    // As an Eddy before checksums left it: no checksum files, a version 1 manifest.
    for s in &segments {
        fs::remove_file(sidecar_path(&dir.path().join(&s.path))).expect("rm");
    }
    let path = Manifest::path(dir.path());
    let (m, _) = Manifest::read(dir.path()).expect("read").expect("manifest");
    fs::write(&path, to_json(&path, &m, 1, false).expect("json")).expect("write");

    let db = open(dir.path()).expect("open");
    assert_eq!(db.recovery_report().checksums_written, 2);
    for s in &segments {
        let p = dir.path().join(&s.path);
        assert!(sidecar_path(&p).exists());
        read_segment(&p, &schema).expect("verified read");
    }
    db.close().expect("close");
    let (_, version) = Manifest::read(dir.path()).expect("read").expect("manifest");
    assert_eq!(version, crate::format::MANIFEST_FORMAT_VERSION);

    // Once the manifest is today's, a lost checksum file is damage, not an old segment.
    let p = dir.path().join(&segments[0].path);
    fs::remove_file(sidecar_path(&p)).expect("rm");
    let db = open(dir.path()).expect("opens; the segment fails when read");
    let err = read_segment(&p, &schema).expect_err("unverifiable");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    db.close().expect("close");
}

fn check_options() -> CheckOptions {
    CheckOptions {
        views_format_version: 2,
        checkpoint_format_version: 2,
    }
}

#[test]
fn check_passes_a_clean_directory_and_names_each_damaged_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (segments, _) = flushed(dir.path(), 2, 3_000);
    let report = check(dir.path(), &check_options()).expect("check");
    assert!(report.is_clean(), "{:?}", report.findings);
    assert_eq!(report.segments_checked, 2);
    assert_eq!(report.rows_checked, 6_000);

    let seg = dir.path().join(&segments[1].path);
    let good = fs::read(&seg).expect("read");
    let mut bad = good.clone();
    bad[good.len() / 3] ^= 0x20;
    fs::write(&seg, &bad).expect("write");
    let report = check(dir.path(), &check_options()).expect("check");
    assert_eq!(report.damaged(), 1, "{:?}", report.findings);
    let finding = &report.findings[0];
    assert_eq!(finding.severity, Severity::Damaged);
    assert_eq!(finding.path, seg);
    assert!(
        finding.to_string().contains("checksum mismatch"),
        "{finding}"
    );
    fs::write(&seg, &good).expect("restore");

    for name in ["catalog.json", "manifest.json"] {
        let path = dir.path().join(name);
        let good = fs::read(&path).expect("read");
        let mut bad = good.clone();
        let at = good.len() - 10;
        bad[at] ^= 0x01;
        fs::write(&path, &bad).expect("write");
        let report = check(dir.path(), &check_options()).expect("check");
        assert!(!report.is_clean());
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.severity == Severity::Damaged && f.path == path),
            "{name}: {:?}",
            report.findings
        );
        fs::remove_file(&path).expect("rm");
        let report = check(dir.path(), &check_options()).expect("check");
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.severity == Severity::Damaged && f.to_string().contains(name)),
            "{name}: {:?}",
            report.findings
        );
        fs::write(&path, &good).expect("restore");
    }
    let report = check(dir.path(), &check_options()).expect("check");
    assert!(report.is_clean(), "{:?}", report.findings);

    // Not damage: a file that is not Eddy's is a warning.
    fs::write(dir.path().join("data").join("notes.txt"), b"mine").expect("write");
    let report = check(dir.path(), &check_options()).expect("check");
    assert!(report.is_clean());
    assert_eq!(report.warnings(), 1, "{:?}", report.findings);
}
