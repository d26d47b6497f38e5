//! Property tests of the storage engine: any sequence of writes (out of order, duplicate keys,
//! partial fields), flushes and reopenings reads back as the field-wise last-write-wins of the
//! input, each key exactly once.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, BooleanArray, Float64Array, Int64Array, StringArray, TimestampNanosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use proptest::prelude::*;

use crate::schema::{ColumnDef, ColumnKind, FieldType, TableDef};
use crate::tag_index::TagSelection;
use crate::{Db, StorageConfig};
use crate::{KeyFilter, ReadPlan};

type Row = (u8, i64, Option<i64>, Option<f64>);
type Model = BTreeMap<(String, i64), (Option<i64>, Option<f64>)>;

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<Row>),
    Flush,
    Reopen,
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(
            (0u8..3, -5i64..40, prop::option::of(-100i64..100), prop::option::of(-1e3f64..1e3)),
            1..20
        ).prop_map(Op::Write),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => Just(Op::Compact),
    ]
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

fn batch(rows: &[Row]) -> RecordBatch {
    // Day-sized time steps so rows spread over several partitions.
    let day = crate::time::PARTITION_NANOS / 4;
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
                rows.iter().map(|r| r.1 * day),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| format!("s{}", r.0)),
            )),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.2))),
            Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.3))),
        ],
    )
    .expect("batch")
}

type Out = Vec<(String, i64, Option<i64>, Option<f64>)>;

fn read_all(db: &Db) -> Out {
    read_selected(db, &TagSelection::default(), None)
}

/// Reads with a tag selection and a key filter handed to storage, then applies both to every
/// row (as the query engine does above the scan, since segment files come back unfiltered).
fn read_selected(db: &Db, tags: &TagSelection, keep: Option<&KeyFilter>) -> Out {
    let snap = db.snapshot("t").expect("table");
    let plan = snap
        .read_plan_filtered(i64::MIN, i64::MAX, tags, keep, None)
        .expect("plan");
    let mut batches = plan.batches.clone();
    for f in &plan.files {
        batches.extend(
            crate::segment::read_segment(&f.path, snap.schema.arrow_schema()).expect("read"),
        );
    }
    let mut out: Out = batches.into_iter().flat_map(read_rows).collect();
    out.retain(|r| {
        tags.any_of.iter().all(|(_, values)| values.contains(&r.0))
            && (keep.is_none() || r.1 >= KEEP_FROM_DAY)
    });
    out.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
    out
}

/// The rows of a batch in the table schema, with time in model days.
fn read_rows(b: RecordBatch) -> Out {
    let day = crate::time::PARTITION_NANOS / 4;
    let t = b
        .column(0)
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .expect("t");
    let s = b
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("s");
    let a = b
        .column(2)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("a");
    let f = b
        .column(3)
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("b");
    (0..b.num_rows())
        .map(|i| {
            (
                s.value(i).to_string(),
                t.value(i) / day,
                a.is_valid(i).then(|| a.value(i)),
                f.is_valid(i).then(|| f.value(i)),
            )
        })
        .collect()
}

const KEEP_FROM_DAY: i64 = 10;

/// The rows with time in `[lo, hi]` model days, read through `read_plan(lo, hi)` (overlapping
/// segments are then read by range), filtered by time as the query engine does above it.
fn read_range(db: &Db, lo: i64, hi: i64) -> Out {
    let day = crate::time::PARTITION_NANOS / 4;
    let snap = db.snapshot("t").expect("table");
    let plan = snap.read_plan(lo * day, hi * day).expect("plan");
    let mut batches = plan.batches.clone();
    for f in &plan.files {
        batches.extend(
            crate::segment::read_segment(&f.path, snap.schema.arrow_schema()).expect("read"),
        );
    }
    let mut out: Out = batches.into_iter().flat_map(read_rows).collect();
    out.retain(|r| r.1 >= lo && r.1 <= hi);
    out.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
    out
}

/// The latest row of series `s` (of the table with no filter) by [`Db::latest_row`].
fn latest(db: &Db, s: Option<&str>) -> Option<(String, i64, Option<i64>, Option<f64>)> {
    let snap = db.snapshot("t").expect("table");
    let tags: Vec<(String, String)> = s.map(|s| ("s".into(), s.into())).into_iter().collect();
    let row = db.latest_row(&snap, &tags).expect("latest")?;
    assert_eq!(row.num_rows(), 1);
    read_rows(row).pop()
}

/// Checks [`Db::latest_row`] against the model: per series, and over the whole table (where
/// series tied at the newest time may come back in any order).
fn check_latest(db: &Db, model: &Model) {
    for s in ["s0", "s1", "s2", "s9"] {
        let want = model
            .range((s.to_string(), i64::MIN)..=(s.to_string(), i64::MAX))
            .next_back()
            .map(|((s, t), (a, b))| (s.clone(), *t, *a, *b));
        assert_eq!(latest(db, Some(s)), want, "latest row of {s}");
    }
    let newest = model.keys().map(|(_, t)| *t).max();
    let got = latest(db, None);
    assert_eq!(
        got.as_ref().map(|r| r.1),
        newest,
        "newest time of the table"
    );
    if let Some((s, t, a, b)) = got {
        assert_eq!(model.get(&(s, t)), Some(&(a, b)), "a real row");
    }
}

/// `s IN ('s0', 's2')`, read through the memtable's tag index.
fn some_series() -> TagSelection {
    TagSelection {
        any_of: vec![("s".into(), vec!["s0".into(), "s2".into()])],
    }
}

/// `time >= KEEP_FROM_DAY days`, a key filter applied before deduplication.
fn recent(batch: &RecordBatch) -> Result<BooleanArray, ArrowError> {
    let day = crate::time::PARTITION_NANOS / 4;
    let t = batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .ok_or_else(|| ArrowError::ComputeError("time".into()))?;
    Ok(t.iter()
        .map(|v| v.map(|v| v >= KEEP_FROM_DAY * day))
        .collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn reads_back_field_wise_last_write_wins(
        ops in prop::collection::vec(op(), 1..25),
        range in (-5i64..40, 0i64..20),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = StorageConfig::new(dir.path());
        // Room for one segment summary: lookups also read summaries back from files.
        config.latest_cache_bytes = 0;
        let mut db = Db::open(config.clone()).expect("open");
        db.catalog().create_table(def(), false).expect("create");
        let mut model = Model::new();
        for op in &ops {
            match op {
                Op::Write(rows) => {
                    rt.block_on(db.write("t", batch(rows))).expect("write");
                    for r in rows {
                        let e = model.entry((format!("s{}", r.0), r.1)).or_insert((None, None));
                        if r.2.is_some() { e.0 = r.2; }
                        if r.3.is_some() { e.1 = r.3; }
                    }
                }
                Op::Flush => db.flush().expect("flush"),
                Op::Compact => {
                    db.compact().expect("compact");
                }
                Op::Reopen => {
                    db.close().expect("close");
                    db = Db::open(config.clone()).expect("reopen");
                }
            }
        }
        let want: Vec<_> = model.iter().map(|((s, t), (a, b))| (s.clone(), *t, *a, *b)).collect();
        prop_assert_eq!(read_all(&db), want.clone());
        let (lo, hi) = (range.0, range.0 + range.1);
        let in_range: Vec<_> = want.iter().filter(|r| r.1 >= lo && r.1 <= hi).cloned().collect();
        prop_assert_eq!(read_range(&db, lo, hi), in_range);
        check_latest(&db, &model);
        // Filtering by key before deduplication gives the rows filtering after it would.
        let selected: Vec<_> = want
            .iter()
            .filter(|r| (r.0 == "s0" || r.0 == "s2") && r.1 >= KEEP_FROM_DAY)
            .cloned()
            .collect();
        prop_assert_eq!(read_selected(&db, &some_series(), Some(&recent)), selected.clone());
        // And once more after everything is in segments and the engine restarted.
        db.close().expect("close");
        let db = Db::open(config).expect("reopen");
        prop_assert_eq!(read_all(&db), want.clone());
        check_latest(&db, &model);
        // Compacted: one segment per partition, read without any merge, same rows.
        db.compact().expect("compact");
        let segments = db.segments();
        let partitions: std::collections::BTreeSet<i64> =
            segments.iter().map(|s| s.partition).collect();
        prop_assert_eq!(segments.len(), partitions.len());
        let plan = db.snapshot("t").expect("t").read_plan(i64::MIN, i64::MAX).expect("plan");
        prop_assert!(plan.batches.is_empty(), "a compacted store is read without merging");
        prop_assert_eq!(read_all(&db), want.clone());
        check_latest(&db, &model);
        prop_assert_eq!(read_selected(&db, &some_series(), Some(&recent)), selected);
        db.close().expect("close");
    }
}

/// A segment that leaves the manifest stays readable for a reader that took its snapshot
/// before, and is deleted from disk once that reader is done.
#[test]
fn retired_segments_outlive_the_readers_that_hold_them() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(StorageConfig::new(dir.path())).expect("open");
    db.catalog().create_table(def(), false).expect("create");
    rt.block_on(db.write(
        "t",
        batch(&[(0, 1, Some(1), None), (1, 2, None, Some(2.0))]),
    ))
    .expect("write");
    db.flush().expect("flush");
    let snap = db.snapshot("t").expect("table");
    let plan = snap.read_plan(i64::MIN, i64::MAX).expect("plan");
    let schema = snap.schema.arrow_schema().clone();
    drop(snap);
    let paths: Vec<_> = plan.files.iter().map(|f| f.path.clone()).collect();
    assert_eq!(paths.len(), 1, "one segment read directly");

    db.drop_table("t").expect("drop");
    assert!(db.segments().is_empty());
    let rows: usize = crate::segment::read_segment(&paths[0], &schema)
        .expect("a held segment is still readable")
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 2);

    drop(plan);
    assert!(
        !paths[0].exists(),
        "the last holder deletes the retired file"
    );
    db.close().expect("close");
}

/// The size accessors the Postgres front end's `pg_relation_size` and `pg_database_size`
/// read: unflushed rows are held by their table and sit in the WAL; after a flush they are a
/// segment, and the whole directory holds at least the segments and the WAL.
#[test]
fn size_accessors_see_memtables_wal_and_files() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(StorageConfig::new(dir.path())).expect("open");
    let table = db.catalog().create_table(def(), false).expect("create");
    let id = table.def().id;
    rt.block_on(db.write(
        "t",
        batch(&[(0, 1, Some(1), None), (1, 2, None, Some(2.0))]),
    ))
    .expect("write");
    let held = db.memtable_bytes_by_table();
    assert!(held.get(&id).is_some_and(|b| *b > 0), "{held:?}");
    assert_eq!(held.len(), 1, "only the table written to: {held:?}");
    assert!(db.wal_bytes().expect("wal") > 0);

    db.flush().expect("flush");
    assert!(
        db.memtable_bytes_by_table().values().all(|b| *b == 0),
        "flushed rows are no longer held"
    );
    let segments: u64 = db
        .segments()
        .iter()
        .filter(|s| s.table_id == id)
        .map(|s| s.bytes)
        .sum();
    assert!(segments > 0);
    let total = db.disk_bytes().expect("disk");
    let wal = db.wal_bytes().expect("wal");
    assert!(total >= segments + wal, "{total} < {segments} + {wal}");
    db.close().expect("close");
}

/// A partition whose segment cannot be read fails its compaction, and waits, while the other
/// partitions are compacted; its segments stay as they were.
#[test]
fn a_damaged_segment_holds_back_only_its_own_partition() {
    use crate::compaction::Step;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = StorageConfig::new(dir.path());
    config.compaction = false;
    config.compaction_quiet_ms = 0;
    let db = Db::open(config).expect("open");
    db.catalog().create_table(def(), false).expect("create");
    // Partition 0 gets three segments, partition 2 (days 8..11 of the model) two.
    for round in 0..3 {
        let mut rows = vec![(0, 1, Some(round), None)];
        if round < 2 {
            rows.push((1, 9, Some(round), None));
        }
        rt.block_on(db.write("t", batch(&rows))).expect("write");
        db.flush().expect("flush");
    }
    let before = db.segments();
    assert_eq!(before.len(), 5, "{before:?}");
    let busiest = before
        .iter()
        .filter(|s| s.partition == before[0].partition)
        .collect::<Vec<_>>();
    assert_eq!(busiest.len(), 3);
    let damaged = dir.path().join(&busiest[1].path);
    let mut bytes = std::fs::read(&damaged).expect("read");
    bytes[10] ^= 0xff;
    std::fs::write(&damaged, &bytes).expect("write");

    let err = db
        .inner()
        .compact_once(false)
        .expect_err("the damaged partition fails");
    assert!(err.to_string().contains(&busiest[1].path), "{err}");
    match db.inner().compact_once(false).expect("the other partition") {
        Step::Ran(outcome) => {
            assert_eq!(outcome.inputs, 2);
            assert_ne!(outcome.partition, busiest[0].partition);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        db.inner().compact_once(false).expect("nothing else"),
        Step::Idle
    ));
    let after = db.segments();
    assert_eq!(
        after
            .iter()
            .filter(|s| s.partition == busiest[0].partition)
            .count(),
        3,
        "the damaged partition keeps its segments"
    );
    assert!(damaged.exists());
    // No output of the failed job is left behind.
    let files: usize = walk(&dir.path().join("data"));
    assert_eq!(
        files,
        4 * 2,
        "4 segments and their checksum files: {after:?}"
    );
    db.close().expect("close");
}

fn walk(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            n += walk(&p);
        } else {
            n += 1;
        }
    }
    n
}

/// Two flushed segments of one day overlap, so a point read merges them in memory: the
/// selected series' rows come back exactly, and only the pages its tag statistics allow are
/// decoded (fewer rows than the segments hold reach the merge).
#[test]
fn a_point_read_of_overlapping_segments_decodes_only_the_series_pages() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = StorageConfig::new(dir.path());
    // The two segments must stay as flushed: a compaction would merge them into one.
    config.compaction = false;
    let db = Db::open(config).expect("open");
    db.catalog().create_table(def(), false).expect("create");
    let schema = db.catalog().get("t").expect("t").arrow_schema().clone();
    // Big enough (incompressible values) that one series is a small part of the file's
    // checksum blocks.
    let (series, per_series) = (40u32, 5_000i64);
    for round in 0..2i64 {
        let mut times = Vec::new();
        let mut names = Vec::new();
        let mut values = Vec::new();
        for s in 0..series {
            for i in 0..per_series {
                times.push((i * 2 + round) * 1_000_000_000);
                names.push(format!("s{s:02}"));
                // MurmurHash3's finalizer: no delta or dictionary encoding shrinks these.
                let mut x = (u64::from(s) << 32) | (i as u64);
                x ^= x >> 33;
                x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
                x ^= x >> 33;
                values.push(Some(x as i64));
            }
        }
        let n = times.len();
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampNanosecondArray::from_iter_values(times)),
                Arc::new(StringArray::from_iter_values(names)),
                Arc::new(Int64Array::from_iter(values)),
                Arc::new(Float64Array::from_iter(vec![None::<f64>; n])),
            ],
        )
        .expect("batch");
        rt.block_on(db.write("t", b)).expect("write");
        db.flush().expect("flush");
    }
    let snap = db.snapshot("t").expect("table");
    let tags = TagSelection {
        any_of: vec![("s".into(), vec!["s17".into()])],
    };
    let plan = snap
        .read_plan_filtered(i64::MIN, i64::MAX, &tags, None, None)
        .expect("plan");
    assert!(
        plan.files.is_empty(),
        "the segments overlap: merged in memory"
    );
    let rows: usize = plan.batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 2 * per_series as usize, "exactly the series' rows");
    for b in &plan.batches {
        let s = b
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("s");
        assert!(s.iter().all(|v| v == Some("s17")));
    }
    // Reading only the columns a query projects (and the keys) gives the same values of
    // those, and nulls elsewhere.
    let projected = snap
        .read_plan_filtered(i64::MIN, i64::MAX, &tags, None, Some(&["a".to_string()]))
        .expect("projected plan");
    let concat = |p: &ReadPlan| {
        datafusion::arrow::compute::concat_batches(&schema, &p.batches).expect("concat")
    };
    let (all_columns, some) = (concat(&plan), concat(&projected));
    assert_eq!(all_columns.num_rows(), some.num_rows());
    for c in 0..3 {
        assert_eq!(all_columns.column(c), some.column(c), "column {c}");
    }
    let keys_only = concat(
        &snap
            .read_plan_filtered(i64::MIN, i64::MAX, &tags, None, Some(&[]))
            .expect("keys-only plan"),
    );
    assert_eq!(all_columns.column(2).null_count(), 0);
    assert_eq!(keys_only.column(2).null_count(), keys_only.num_rows());
    assert_eq!(all_columns.column(1), keys_only.column(1));
    // The same read through a whole-file decode gives the same rows.
    let all = read_all(&db);
    let want: Vec<_> = all.into_iter().filter(|r| r.0 == "s17").collect();
    assert_eq!(read_selected(&db, &tags, None), want);
    // Pages were skipped: the selection over the segment reads a few 4,096-row pages of its
    // 20,000 rows, not all of them.
    let file = snap.segments[0].clone();
    let read = crate::segment::read_segment_range(
        &file,
        &snap.footers,
        &schema,
        "time",
        (i64::MIN, i64::MAX),
        &tags,
        None,
    )
    .expect("read");
    let decoded: usize = read.batches.iter().map(|b| b.num_rows()).sum();
    assert!(
        decoded <= per_series as usize + 2 * crate::limits::DATA_PAGE_ROWS_MAX
            && decoded >= per_series as usize,
        "{decoded} rows decoded"
    );
    // And only their bytes were read: the file is not read whole to find them.
    assert!(
        read.bytes_read * 2 < file.meta.bytes,
        "{} of {} bytes read",
        read.bytes_read,
        file.meta.bytes
    );
}
