//! Atomic multi-table writes with a source's progress: durable together, recovered together
//! (from the WAL and, after a flush, from the manifest), and a torn record leaves neither.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, StringArray, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use crate::schema::{ColumnDef, ColumnKind, FieldType, TableDef};
use crate::source::SourceProgress;
use crate::{Db, StorageConfig, WritePart};

fn def(name: &str) -> TableDef {
    TableDef {
        id: 0,
        name: name.into(),
        columns: vec![
            ColumnDef::new("time", ColumnKind::Time),
            ColumnDef::new("s", ColumnKind::Tag),
            ColumnDef::new("v", ColumnKind::Field(FieldType::Integer)),
        ],
        retention_ns: None,
    }
}

fn rows(from: i64, n: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("time", crate::schema::time_data_type(), false),
        Field::new("s", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampNanosecondArray::from_iter_values(
                (from..from + n).map(|t| t * 1_000),
            )),
            Arc::new(StringArray::from_iter_values((0..n).map(|_| "a"))),
            Arc::new(Int64Array::from_iter_values(from..from + n)),
        ],
    )
    .expect("batch")
}

fn count(db: &Db, table: &str) -> usize {
    db.snapshot(table)
        .expect("table")
        .read_all(i64::MIN, i64::MAX)
        .expect("read")
        .iter()
        .map(|b| b.num_rows())
        .sum()
}

fn progress(source_id: u64, offset: i64) -> SourceProgress {
    SourceProgress {
        source_id,
        offsets: BTreeMap::from([("topic/0".to_string(), offset)]),
    }
}

fn write(rt: &tokio::runtime::Runtime, db: &Db, from: i64, n: i64, offset: i64) {
    let parts = ["a", "b"]
        .iter()
        .map(|t| WritePart {
            schema: db.catalog().get(t).expect("table"),
            batch: rows(from, n),
        })
        .collect();
    rt.block_on(db.write_atomic(parts, Some(progress(7, offset))))
        .expect("write");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
}

#[test]
fn rows_and_progress_survive_a_restart_from_the_wal_and_from_the_manifest() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StorageConfig::new(dir.path());
    let db = Db::open(config.clone()).expect("open");
    for t in ["a", "b"] {
        db.catalog().create_table(def(t), false).expect("create");
    }
    write(&rt, &db, 0, 10, 9);
    db.flush().expect("flush");
    write(&rt, &db, 10, 5, 14);
    // A commit of progress alone (every message of the batch was empty).
    rt.block_on(db.write_atomic(Vec::new(), Some(progress(7, 20))))
        .expect("progress only");
    assert_eq!(db.source_offsets(7).get("topic/0"), Some(&20));
    drop(db);
    // Not closed: the flushed part comes back from the manifest, the rest from the WAL.
    let db = Db::open(config.clone()).expect("reopen");
    assert_eq!(count(&db, "a"), 15);
    assert_eq!(count(&db, "b"), 15);
    assert_eq!(db.source_offsets(7).get("topic/0"), Some(&20));
    assert!(db.source_offsets(8).is_empty());
    db.close().expect("close");
    let db = Db::open(config).expect("reopen after close");
    assert_eq!(db.source_offsets(7).get("topic/0"), Some(&20));
    assert_eq!(count(&db, "b"), 15);
    db.close().expect("close");
}

#[test]
fn a_torn_atomic_record_leaves_neither_its_rows_nor_its_progress() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StorageConfig::new(dir.path());
    let db = Db::open(config.clone()).expect("open");
    for t in ["a", "b"] {
        db.catalog().create_table(def(t), false).expect("create");
    }
    write(&rt, &db, 0, 10, 9);
    write(&rt, &db, 10, 1000, 1009);
    drop(db);
    // Cut the last record in the middle: after its first part, inside its second.
    let wal_dir = dir.path().join("wal");
    let mut files: Vec<_> = std::fs::read_dir(&wal_dir)
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    files.sort();
    let last = files.last().expect("a WAL file");
    let len = std::fs::metadata(last).expect("meta").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .expect("open wal");
    f.set_len(len - 40).expect("cut");
    drop(f);
    let db = Db::open(config).expect("reopen");
    assert_eq!(count(&db, "a"), 10, "the torn record's rows of a are gone");
    assert_eq!(count(&db, "b"), 10, "the torn record's rows of b are gone");
    assert_eq!(db.source_offsets(7).get("topic/0"), Some(&9));
    db.close().expect("close");
}

#[test]
fn one_bad_part_refuses_the_whole_write() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(StorageConfig::new(dir.path())).expect("open");
    db.catalog().create_table(def("a"), false).expect("create");
    let mut other = def("b");
    other.columns[2] = ColumnDef::new("v", ColumnKind::Field(FieldType::Float));
    db.catalog().create_table(other, false).expect("create");
    let parts = ["a", "b"]
        .iter()
        .map(|t| WritePart {
            schema: db.catalog().get(t).expect("table"),
            batch: rows(0, 3),
        })
        .collect();
    let err = rt
        .block_on(db.write_atomic(parts, Some(progress(7, 2))))
        .expect_err("b's v is a float");
    assert!(err.to_string().contains("\"v\""), "{err}");
    assert_eq!(count(&db, "a"), 0);
    assert!(db.source_offsets(7).is_empty());
    db.close().expect("close");
}
