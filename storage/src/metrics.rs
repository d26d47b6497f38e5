//! The storage engine's metrics: WAL appends and fsync latency, memtable memory, the flush
//! backlog and flush time, and the live segments.
//!
//! Counters and histograms are updated where the work happens (the committer and the flusher);
//! gauges of state (memtable bytes, backlog, segments) are read from the engine when metrics
//! are scraped ([`Db::refresh_metrics`](crate::Db::refresh_metrics)), so the write path pays
//! nothing for them. Write amplification is `(eddy_flushed_bytes + eddy_compaction_written_bytes)
//! / eddy_flushed_bytes` over any interval.

use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::engine::Inner;
use crate::error::Result;
use crate::wal::WalWriter;

/// Buckets of the WAL fsync histogram, in seconds: 50 µs to about 1.6 s. A healthy local SSD
/// syncs in well under a millisecond; seconds mean a failing or overloaded disk.
fn fsync_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_05, 2.0, 16)
}

/// Buckets of the flush histogram, in seconds: 1 ms to about 65 s.
fn flush_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 17)
}

/// Handles to the storage engine's metrics; cheap to clone (each is a shared atomic).
#[derive(Debug, Clone)]
pub struct StorageMetrics {
    wal_fsync_seconds: Histogram,
    wal_bytes: Counter,
    wal_records: Counter,
    flush_seconds: Histogram,
    flushed_rows: Counter,
    flush_failures: Counter,
    flushed_bytes: Counter,
    compaction_seconds: Histogram,
    compactions: Counter,
    compaction_read_bytes: Counter,
    compaction_written_bytes: Counter,
    compaction_failures: Counter,
    memtable_bytes: Gauge,
    memtable_bytes_max: Gauge,
    frozen_memtables: Gauge,
    unflushed_records: Gauge,
    segments: Gauge,
    segment_bytes: Gauge,
    writes_stalled: Gauge,
    decoded_cache_hits: Counter,
    decoded_cache_misses: Counter,
    decoded_cache_bytes: Gauge,
}

impl Default for StorageMetrics {
    fn default() -> Self {
        Self {
            wal_fsync_seconds: Histogram::new(fsync_buckets()),
            wal_bytes: Counter::default(),
            wal_records: Counter::default(),
            flush_seconds: Histogram::new(flush_buckets()),
            flushed_rows: Counter::default(),
            flush_failures: Counter::default(),
            flushed_bytes: Counter::default(),
            compaction_seconds: Histogram::new(flush_buckets()),
            compactions: Counter::default(),
            compaction_read_bytes: Counter::default(),
            compaction_written_bytes: Counter::default(),
            compaction_failures: Counter::default(),
            memtable_bytes: Gauge::default(),
            memtable_bytes_max: Gauge::default(),
            frozen_memtables: Gauge::default(),
            unflushed_records: Gauge::default(),
            segments: Gauge::default(),
            segment_bytes: Gauge::default(),
            decoded_cache_hits: Counter::default(),
            decoded_cache_misses: Counter::default(),
            decoded_cache_bytes: Gauge::default(),
            writes_stalled: Gauge::default(),
        }
    }
}

impl StorageMetrics {
    /// Adds every storage metric to `registry` (names as docs/operations.md lists them).
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "eddy_wal_fsync_duration",
            "Time of each WAL fsync (one per group commit in wal_sync = always)",
            Unit::Seconds,
            self.wal_fsync_seconds.clone(),
        );
        registry.register_with_unit(
            "eddy_wal_appended",
            "Bytes of encoded write batches appended to the WAL",
            Unit::Bytes,
            self.wal_bytes.clone(),
        );
        registry.register(
            "eddy_wal_records",
            "WAL records appended (one per write batch)",
            self.wal_records.clone(),
        );
        registry.register_with_unit(
            "eddy_flush_duration",
            "Time to flush one memtable to Parquet segments, manifest included",
            Unit::Seconds,
            self.flush_seconds.clone(),
        );
        registry.register(
            "eddy_flushed_rows",
            "Rows written to Parquet segments by flushes",
            self.flushed_rows.clone(),
        );
        registry.register(
            "eddy_flush_failures",
            "Flushes that failed (the data stays in memory and WAL and the flush is retried)",
            self.flush_failures.clone(),
        );
        registry.register_with_unit(
            "eddy_flushed",
            "Bytes of Parquet segments written by flushes",
            Unit::Bytes,
            self.flushed_bytes.clone(),
        );
        registry.register(
            "eddy_compactions",
            "Compactions finished (each merges every segment of one table partition)",
            self.compactions.clone(),
        );
        registry.register_with_unit(
            "eddy_compaction_duration",
            "Time of each compaction, from picking the partition to the new manifest",
            Unit::Seconds,
            self.compaction_seconds.clone(),
        );
        registry.register_with_unit(
            "eddy_compaction_read",
            "Bytes of segments read by compactions",
            Unit::Bytes,
            self.compaction_read_bytes.clone(),
        );
        registry.register_with_unit(
            "eddy_compaction_written",
            "Bytes of segments written by compactions",
            Unit::Bytes,
            self.compaction_written_bytes.clone(),
        );
        registry.register(
            "eddy_compaction_failures",
            "Compactions that failed (the partition's segments stay as they are; retried)",
            self.compaction_failures.clone(),
        );
        registry.register_with_unit(
            "eddy_memtable",
            "Memory held by memtables, active and waiting for flush",
            Unit::Bytes,
            self.memtable_bytes.clone(),
        );
        registry.register_with_unit(
            "eddy_memtable_limit",
            "memtable_bytes_max: above it writers wait for flushes",
            Unit::Bytes,
            self.memtable_bytes_max.clone(),
        );
        registry.register(
            "eddy_flush_backlog_memtables",
            "Frozen memtables waiting to be flushed",
            self.frozen_memtables.clone(),
        );
        registry.register(
            "eddy_flush_backlog_records",
            "WAL records not yet in a Parquet segment (replayed after a crash)",
            self.unflushed_records.clone(),
        );
        registry.register(
            "eddy_segments",
            "Live Parquet segments",
            self.segments.clone(),
        );
        registry.register_with_unit(
            "eddy_segments_size",
            "Size of the live Parquet segments",
            Unit::Bytes,
            self.segment_bytes.clone(),
        );
        registry.register(
            "eddy_writes_stalled",
            "1 while the engine refuses or holds back writes (see /ready for the reason), else 0",
            self.writes_stalled.clone(),
        );
        registry.register(
            "eddy_decoded_cache_hits",
            "Column chunks a segment scan found decoded in the cache",
            self.decoded_cache_hits.clone(),
        );
        registry.register(
            "eddy_decoded_cache_misses",
            "Column chunks a segment scan decoded from Parquet (and cached)",
            self.decoded_cache_misses.clone(),
        );
        registry.register_with_unit(
            "eddy_decoded_cache",
            "Memory held by decoded columns of segments (decoded_cache_bytes is the limit)",
            Unit::Bytes,
            self.decoded_cache_bytes.clone(),
        );
    }

    /// Syncs the WAL and records how long the fsync took.
    pub(crate) fn timed_fsync(&self, wal: &mut WalWriter) -> Result<()> {
        let started = Instant::now();
        let synced = wal.sync();
        self.wal_fsync_seconds
            .observe(started.elapsed().as_secs_f64());
        synced
    }

    /// Counts a group of records appended to the WAL.
    pub(crate) fn appended(&self, records: u64, bytes: u64) {
        self.wal_records.inc_by(records);
        self.wal_bytes.inc_by(bytes);
    }

    /// Records a completed flush.
    pub(crate) fn flushed(&self, rows: u64, bytes: u64, started: Instant) {
        self.flushed_rows.inc_by(rows);
        self.flushed_bytes.inc_by(bytes);
        self.flush_seconds.observe(started.elapsed().as_secs_f64());
    }

    /// Records a finished compaction.
    pub(crate) fn compacted(
        &self,
        outcome: &crate::compaction::CompactionOutcome,
        started: Instant,
    ) {
        self.compactions.inc();
        self.compaction_read_bytes.inc_by(outcome.bytes_in);
        self.compaction_written_bytes.inc_by(outcome.bytes_out);
        self.compaction_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    /// Counts the column chunks of a row group a scan found in the decoded cache or decoded.
    pub(crate) fn decoded(&self, hits: usize, misses: usize) {
        self.decoded_cache_hits.inc_by(hits as u64);
        self.decoded_cache_misses.inc_by(misses as u64);
    }

    /// Counts a failed compaction.
    pub(crate) fn compaction_failed(&self) {
        self.compaction_failures.inc();
    }

    /// Counts a failed flush.
    pub(crate) fn flush_failed(&self) {
        self.flush_failures.inc();
    }

    /// Sets the gauges of state from the engine as it is now; `stalled` is whether writes are
    /// refused or held back.
    pub(crate) fn refresh(&self, inner: &Inner, stalled: bool) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let st = inner.state.read();
        let frozen_bytes: usize = st.frozen.iter().map(|f| f.mem.bytes).sum();
        self.memtable_bytes
            .set(gauge((st.active.bytes + frozen_bytes) as u64));
        self.memtable_bytes_max
            .set(gauge(inner.config.memtable_bytes_max as u64));
        self.frozen_memtables.set(gauge(st.frozen.len() as u64));
        let unflushed = st.active.last_seq.saturating_sub(st.manifest.flushed_seq);
        self.unflushed_records.set(gauge(unflushed));
        self.segments.set(gauge(st.manifest.segments.len() as u64));
        let segment_bytes = st.manifest.segments.iter().map(|s| s.bytes).sum();
        self.segment_bytes.set(gauge(segment_bytes));
        self.writes_stalled.set(i64::from(stalled));
        drop(st);
        self.decoded_cache_bytes
            .set(gauge(inner.decoded.lock().bytes() as u64));
    }
}
