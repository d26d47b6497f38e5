//! Criterion benches of the hot paths: line-protocol parsing (alone, and with the schema on
//! write that builds the Arrow batch), a whole durable write through the one write path, WAL
//! append, segment write and segment scan. Run with `cargo bench --bench core`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eddy_ingest::lineproto::{self, Precision};
use eddy_storage::{Catalog, DEFAULT_TIME_COLUMN};

use eddy::generator;

fn tsbs(rows_hosts: usize, minutes: i64) -> Vec<u8> {
    let spec = generator::GenSpec {
        scale: rows_hosts,
        start_ns: 1_704_067_200_000_000_000,
        end_ns: 1_704_067_200_000_000_000 + minutes * 60_000_000_000,
        interval_ns: 10_000_000_000,
        seed: 1,
    };
    let mut out = Vec::new();
    generator::generate(&spec, &mut out).expect("generate");
    out
}

fn batch_of(
    data: &[u8],
    dir: &std::path::Path,
) -> (
    std::sync::Arc<eddy_storage::TableSchema>,
    datafusion::arrow::record_batch::RecordBatch,
) {
    let catalog = Catalog::open(dir).expect("catalog");
    let parsed = lineproto::parse(data, Precision::Nanosecond, 0);
    let built = lineproto::batch::build(parsed, &catalog);
    let rows = built.tables.into_iter().next().expect("rows");
    let schema = catalog
        .ensure_columns(&rows.table, &rows.columns)
        .expect("schema");
    assert_eq!(schema.time_column(), DEFAULT_TIME_COLUMN);
    let batch = rows.into_batch(&schema).expect("batch");
    let batch = eddy_storage::dedup::conform(&batch, schema.arrow_schema()).expect("conform");
    (schema, batch)
}

fn parse(c: &mut Criterion) {
    let data = tsbs(100, 50); // 30,000 lines, about 10 MB
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = Catalog::open(dir.path()).expect("catalog");
    let mut g = c.benchmark_group("line_protocol");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(20);
    g.bench_function("parse_tsbs_cpu_30k_lines", |b| {
        b.iter(|| {
            let parsed = lineproto::parse(&data, Precision::Nanosecond, 0);
            black_box(lineproto::batch::build(parsed, &catalog))
        })
    });
    g.bench_function("parse_only_tsbs_cpu_30k_lines", |b| {
        b.iter(|| black_box(lineproto::parse(&data, Precision::Nanosecond, 0)))
    });
    g.finish();
}

/// One request of the ingest benchmark through `Ingest::write_lp` of a node opened as `eddy serve` opens
/// it (views installed, fsync before the answer): what the HTTP handler calls, without HTTP.
fn ingest(c: &mut Criterion) {
    let data = tsbs(100, 8);
    let lines = data.iter().filter(|&&b| b == b'\n').count();
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let node = rt
        .block_on(eddy_server::node::Node::open(
            eddy_storage::StorageConfig::new(dir.path()),
            256 << 20,
        ))
        .expect("node");
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(lines as u64));
    g.sample_size(20);
    g.bench_function("write_lp_one_request", |b| {
        b.iter(|| {
            let outcome = rt
                .block_on(node.ingest.write_lp(&data, Precision::Nanosecond, 0))
                .expect("write");
            assert_eq!(outcome.lines_written, lines);
        })
    });
    g.finish();
    node.db.close().expect("close");
}

fn wal(c: &mut Criterion) {
    let data = tsbs(100, 8); // 5,000 lines: one request of the ingest benchmark
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, batch) = batch_of(&data, dir.path());
    let mut g = c.benchmark_group("wal");
    g.throughput(Throughput::Elements(batch.num_rows() as u64));
    g.sample_size(20);
    g.bench_function("encode_5000_rows", |b| {
        b.iter(|| black_box(eddy_storage::wal::encode_batch(&batch).expect("encode")))
    });
    let encoded = eddy_storage::wal::encode_batch(&batch).expect("encode");
    let wal_dir = dir.path().join("wal");
    let mut writer = eddy_storage::wal::WalWriter::create(&wal_dir, 1, 64 << 20).expect("wal");
    g.bench_function("append_fsync_5000_rows", |b| {
        b.iter(|| {
            let seq = writer.last_seq() + 1;
            writer.push(seq, 1, &encoded);
            writer.write_buffered().expect("write");
            writer.sync().expect("sync");
            writer.rotate_if_full().expect("rotate");
        })
    });
    g.finish();
}

fn segments(c: &mut Criterion) {
    let data = tsbs(100, 60); // 36,000 rows
    let dir = tempfile::tempdir().expect("tempdir");
    let (schema, batch) = batch_of(&data, dir.path());
    let sorted = eddy_storage::dedup::sort_dedup(&schema, std::slice::from_ref(&batch))
        .expect("sort")
        .expect("rows");
    let mut g = c.benchmark_group("segment");
    g.throughput(Throughput::Elements(batch.num_rows() as u64));
    g.sample_size(10);
    g.bench_function("sort_dedup_36k_rows", |b| {
        b.iter(|| {
            black_box(
                eddy_storage::dedup::sort_dedup(&schema, std::slice::from_ref(&batch))
                    .expect("sort"),
            )
        })
    });
    let path = dir.path().join("bench.parquet");
    g.bench_function("write_36k_rows", |b| {
        b.iter(|| eddy_storage::segment::write_segment(&path, &schema, &sorted).expect("write"))
    });
    g.bench_function("scan_36k_rows", |b| {
        b.iter(|| {
            black_box(
                eddy_storage::segment::read_segment(&path, schema.arrow_schema()).expect("read"),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, parse, ingest, wal, segments);
criterion_main!(benches);
