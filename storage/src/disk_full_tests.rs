//! A full disk under the engine, faked by the test-only fault hooks of the WAL writer and the
//! flusher: a refused write leaves nothing in the WAL, the next write goes through with the
//! next sequence number, and a failing flush keeps its rows, removes its files and refuses
//! writers over the memory budget instead of blocking them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Int64Array, StringArray, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use crate::schema::{ColumnDef, ColumnKind, FieldType, TableDef};
use crate::wal::WalFault;
use crate::{Db, StorageConfig, StorageError, WalSync};

fn def() -> TableDef {
    TableDef {
        id: 0,
        name: "m".into(),
        columns: vec![
            ColumnDef::new("time", ColumnKind::Time),
            ColumnDef::new("host", ColumnKind::Tag),
            ColumnDef::new("v", ColumnKind::Field(FieldType::Integer)),
        ],
        retention_ns: None,
    }
}

/// One row per value, at time = value (so every value is its own key).
fn batch(values: &[i64]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("time", crate::schema::time_data_type(), false),
        Field::new("host", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampNanosecondArray::from_iter_values(
                values.iter().copied(),
            )),
            Arc::new(StringArray::from_iter_values(values.iter().map(|_| "a"))),
            Arc::new(Int64Array::from_iter_values(values.iter().copied())),
        ],
    )
    .expect("batch")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
}

/// Every value of `m`, from memory and segments, sorted.
fn values(db: &Db) -> Vec<i64> {
    let snap = db.snapshot("m").expect("table");
    let plan = snap.read_plan(i64::MIN, i64::MAX).expect("plan");
    let mut batches = plan.batches.clone();
    for f in &plan.files {
        batches.extend(
            crate::segment::read_segment(&f.path, snap.schema.arrow_schema()).expect("read"),
        );
    }
    let mut out: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.column(2)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("v")
                .values()
                .to_vec()
        })
        .collect();
    out.sort_unstable();
    out
}

/// (sequence number, values) of every record in the WAL, read without changing it.
fn wal_records(dir: &Path) -> Vec<(u64, Vec<i64>)> {
    let mut out = Vec::new();
    crate::wal::scan(&dir.join("wal"), 0, |rec| {
        let v = rec.parts[0]
            .1
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("v")
            .values()
            .to_vec();
        out.push((rec.seq, v));
        Ok(())
    })
    .expect("scan");
    out
}

/// Files under `data/` (segments and checksum files, finished or not).
fn data_files(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(&dir.join("data"), &mut out);
    out
}

#[test]
fn a_wal_append_that_finds_the_disk_full_is_cut_and_the_next_write_goes_through() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StorageConfig::new(dir.path());
    let db = Db::open(config.clone()).expect("open");
    db.catalog().create_table(def(), false).expect("create");
    assert_eq!(
        rt.block_on(db.write("m", batch(&[1, 2]))).expect("write"),
        1
    );

    // A write that reaches the file half-way, then an fsync that fails after a whole write.
    for (next, (fault, refused)) in [(3, (WalFault::Write, 100)), (4, (WalFault::Sync, 200))] {
        db.inner().wal.lock().inject_fault(fault);
        let err = rt
            .block_on(db.write("m", batch(&[refused])))
            .expect_err("refused on a full disk");
        assert!(
            matches!(err, StorageError::DiskFull { .. }),
            "{fault:?}: {err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("disk full"), "{msg}");
        assert!(msg.contains(".wal"), "names the file: {msg}");
        let stall = db.write_stall().expect("writes are reported as refused");
        assert!(stall.contains("disk full"), "{stall}");

        // The sequence number of the refused write is handed out again.
        let seq = rt.block_on(db.write("m", batch(&[next]))).expect("write");
        assert_eq!(seq, next as u64 - 1, "{fault:?}");
        assert_eq!(db.applied_seq(), seq);
        assert_eq!(db.write_stall(), None, "{fault:?}");
    }

    assert_eq!(values(&db), [1, 2, 3, 4]);
    // The WAL holds exactly the acknowledged records, soundly framed, with no torn tail.
    assert_eq!(
        wal_records(dir.path()),
        [(1, vec![1, 2]), (2, vec![3]), (3, vec![4])]
    );
    for check in crate::wal::check_files(&dir.path().join("wal")).expect("check") {
        assert_eq!(check.damage, None, "{}", check.path.display());
        assert_eq!(check.torn_tail, None, "{}", check.path.display());
    }

    // Replay after a crash (no flush at close) gives the same rows and sequence numbers.
    drop(db);
    let db = Db::open(config).expect("reopen");
    assert_eq!(values(&db), [1, 2, 3, 4]);
    assert_eq!(db.applied_seq(), 3);
    assert_eq!(db.recovery_report().torn_bytes_cut, 0);
    assert_eq!(rt.block_on(db.write("m", batch(&[5]))).expect("write"), 4);
    db.close().expect("close");
}

#[test]
fn an_fsync_that_fails_in_interval_mode_stops_writes_until_restart() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = StorageConfig::new(dir.path());
    config.wal_sync = WalSync::IntervalMs(1);
    let db = Db::open(config).expect("open");
    db.catalog().create_table(def(), false).expect("create");
    // Past the interval, so the next group fsyncs.
    std::thread::sleep(Duration::from_millis(20));
    db.inner().wal.lock().inject_fault(WalFault::Sync);
    // Acknowledged records may have been waiting for that fsync: nothing more is accepted.
    let first = rt.block_on(db.write("m", batch(&[1])));
    let later = rt.block_on(db.write("m", batch(&[2])));
    assert!(
        matches!(later, Err(StorageError::ShutDown(_))),
        "{first:?} then {later:?}"
    );
    let stall = db.write_stall().expect("writes are refused");
    assert!(stall.contains("until the server restarts"), "{stall}");
}

#[test]
fn a_flush_that_finds_the_disk_full_keeps_its_rows_and_refuses_writers_over_the_budget() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = StorageConfig::new(dir.path());
    // Any row puts the memtables over the budget; only explicit flushes run.
    config.memtable_bytes_max = 1;
    config.memtable_flush_bytes = 1 << 30;
    let db = Db::open(config.clone()).expect("open");
    db.catalog().create_table(def(), false).expect("create");
    rt.block_on(db.write("m", batch(&[1, 2]))).expect("write");

    *db.inner().flush_fault.lock() = true;
    let err = db.flush().expect_err("the flush finds the disk full");
    assert!(matches!(err, StorageError::DiskFull { .. }), "{err}");
    {
        // Under the flush lock: the flusher thread retries (and fails) on its own meanwhile.
        let _no_flush = db.inner().flush_lock.lock();
        assert_eq!(
            data_files(dir.path()),
            Vec::<String>::new(),
            "files of the failed flush"
        );
    }
    assert!(db.segments().is_empty());
    assert_eq!(values(&db), [1, 2], "the rows stay readable");
    let stall = db.write_stall().expect("a stall");
    assert!(stall.contains("disk full"), "{stall}");

    // Over the budget with the disk full: refused at once, not held until space comes back.
    // The timer is made inside the runtime: outside it there is no time driver to register with.
    let held = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), db.write("m", batch(&[3]))).await
    });
    let err = held
        .expect("refused, not blocked")
        .expect_err("refused over the budget");
    assert!(matches!(err, StorageError::DiskFull { .. }), "{err}");

    // Space is back: the flush works, the stall clears, writes are accepted again.
    *db.inner().flush_fault.lock() = false;
    db.flush().expect("flush");
    assert_eq!(db.write_stall(), None);
    assert_eq!(db.segments().len(), 1);
    rt.block_on(db.write("m", batch(&[3]))).expect("write");
    assert_eq!(values(&db), [1, 2, 3]);
    db.close().expect("close");
    let db = Db::open(config).expect("reopen");
    assert_eq!(values(&db), [1, 2, 3]);
    db.close().expect("close");
}

#[test]
fn every_io_error_of_a_full_disk_is_disk_full_even_inside_parquet_and_arrow() {
    use datafusion::arrow::error::ArrowError;
    use datafusion::parquet::errors::ParquetError;

    use crate::error::IoContext;

    let enospc = || std::io::Error::from_raw_os_error(28);
    let err = Err::<(), _>(enospc()).at("wal/1.wal").expect_err("error");
    assert!(err.is_disk_full(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("disk full") && msg.contains("wal/1.wal"),
        "{msg}"
    );
    let quota = Err::<(), _>(std::io::Error::from_raw_os_error(122))
        .at("catalog.tmp")
        .expect_err("error");
    assert!(quota.is_disk_full(), "{quota}");
    let other = Err::<(), _>(std::io::Error::from_raw_os_error(5))
        .at("x")
        .expect_err("error");
    assert!(matches!(other, StorageError::Io { .. }), "{other}");

    // The Parquet writer wraps the file's error, sometimes inside io::Error::other again.
    let tmp = Path::new("data/m/1970-01-01/1.parquet.tmp");
    for e in [
        StorageError::Parquet(ParquetError::External(Box::new(enospc()))),
        StorageError::Parquet(ParquetError::External(Box::new(std::io::Error::other(
            ParquetError::External(Box::new(enospc())),
        )))),
        StorageError::Arrow(ArrowError::from(enospc())),
    ] {
        let e = e.or_disk_full(tmp);
        assert!(e.is_disk_full(), "{e}");
        assert!(e.to_string().contains("1.parquet.tmp"), "{e}");
    }
    let unrelated = StorageError::Parquet(ParquetError::General("bad".into())).or_disk_full(tmp);
    assert!(matches!(unrelated, StorageError::Parquet(_)), "{unrelated}");
}
