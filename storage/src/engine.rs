//! The engine handle: [`Db`], its configuration, and the shared state every job works on.
//!
//! `Db` is a thin facade. Each public method delegates to the module that owns the job
//! (`commit`, `flush`, `retention`, `read`, `recovery`), so this file reads as the engine's
//! whole API, and the jobs share one `Inner` whose locks are documented in one place.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::Notify;

use crate::catalog::Catalog;
use crate::commit::{CommitHook, CommitRequest, run_committer};
use crate::compaction::CompactionOutcome;
use crate::decoded::{DecodedCache, DecodedRowGroup};
use crate::error::{IoContext, Result, StorageError};
use crate::flush::{FlushSignal, run_flusher};
use crate::latest::LatestCache;
use crate::limits::{
    DEFAULT_COMPACTION_QUIET_MS, DEFAULT_DECODED_CACHE_BYTES, DEFAULT_FLUSH_INTERVAL_MS,
    DEFAULT_LATEST_CACHE_BYTES, DEFAULT_MEMTABLE_BYTES_MAX, DEFAULT_MEMTABLE_FLUSH_BYTES,
    DEFAULT_WAL_SEGMENT_BYTES_MAX, SEGMENT_METADATA_CACHE_BYTES,
};
use crate::manifest::{Manifest, SegmentMeta};
use crate::memtable::{FrozenMemtable, Memtable};
use crate::metrics::StorageMetrics;
use crate::read::TableSnapshot;
use crate::recovery::{RecoveryReport, recover};
use crate::schema::TableSchema;
use crate::segment::{MetadataCache, SegmentFile, SegmentReader};
use crate::stall::Stalls;
use crate::wal::{self, WalWriter};

/// When a write is acknowledged relative to its WAL fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalSync {
    /// fsync before acknowledging (default): nothing acknowledged is ever lost.
    Always,
    /// Acknowledge after the write reaches the OS and fsync every this many milliseconds:
    /// a machine crash (not a process crash) can lose the last interval of acknowledged writes.
    IntervalMs(u64),
}

/// Configuration of the storage engine.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Root of the data directory.
    pub data_dir: PathBuf,
    /// When writes are acknowledged.
    pub wal_sync: WalSync,
    /// Size at which a WAL file is closed and a new one started.
    pub wal_segment_bytes_max: u64,
    /// Memory the memtables may hold before writers are made to wait for flushes.
    pub memtable_bytes_max: usize,
    /// Memtable size that triggers a flush to Parquet.
    pub memtable_flush_bytes: usize,
    /// Age of the oldest unflushed write that triggers a flush.
    pub flush_interval_ms: u64,
    /// Whether the background compactor merges the segments of partitions ([`Db::compact`]
    /// works either way).
    pub compaction: bool,
    /// Time a partition must go without a new segment before it is merged into one segment
    /// whatever its size.
    pub compaction_quiet_ms: u64,
    /// Memory for the per-segment latest-row summaries that answer
    /// `ORDER BY time DESC LIMIT 1` lookups without a scan (see [`Db::latest_row`]).
    pub latest_cache_bytes: usize,
    /// Memory for decoded columns of recently scanned segments (0 turns the cache off): a
    /// scan of a cached row group slices arrays instead of decoding Parquet pages.
    pub decoded_cache_bytes: usize,
}

impl StorageConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            wal_sync: WalSync::Always,
            wal_segment_bytes_max: DEFAULT_WAL_SEGMENT_BYTES_MAX,
            memtable_bytes_max: DEFAULT_MEMTABLE_BYTES_MAX,
            memtable_flush_bytes: DEFAULT_MEMTABLE_FLUSH_BYTES,
            flush_interval_ms: DEFAULT_FLUSH_INTERVAL_MS,
            compaction: true,
            compaction_quiet_ms: DEFAULT_COMPACTION_QUIET_MS,
            latest_cache_bytes: DEFAULT_LATEST_CACHE_BYTES,
            decoded_cache_bytes: DEFAULT_DECODED_CACHE_BYTES,
        }
    }
}

/// What readers and the flusher see of the data: the memtables and the live segments.
pub(crate) struct State {
    pub(crate) active: Memtable,
    pub(crate) frozen: Vec<Arc<FrozenMemtable>>,
    pub(crate) manifest: Arc<Manifest>,
    /// The manifest's segments by id, as handed to readers.
    pub(crate) files: BTreeMap<u64, Arc<SegmentFile>>,
}

/// Everything the engine's jobs share, behind one `Arc`.
pub(crate) struct Inner {
    pub(crate) config: StorageConfig,
    pub(crate) catalog: Catalog,
    pub(crate) state: RwLock<State>,
    pub(crate) wal: Mutex<WalWriter>,
    pub(crate) commit_tx: Mutex<Option<mpsc::Sender<CommitRequest>>>,
    /// Wakes the flusher; the flag asks for a flush regardless of size.
    pub(crate) flush_wake: (Mutex<FlushSignal>, Condvar),
    /// Wakes the compactor, or tells it to stop.
    pub(crate) compact_wake: (Mutex<crate::compaction::CompactSignal>, Condvar),
    /// Wakes the full-text indexer, or tells it to stop.
    pub(crate) index_wake: (Mutex<crate::text_index::IndexSignal>, Condvar),
    /// Partitions being compacted, and those waiting after a failed compaction.
    pub(crate) compaction_book: Mutex<crate::compaction::CompactionBook>,
    /// Notified when a flush completes, for writers waiting on memory.
    pub(crate) flushed: Notify,
    /// Serializes flushes and manifest changes.
    pub(crate) flush_lock: Mutex<()>,
    /// Set when a WAL write or fsync failed and could not be rolled back: the engine refuses
    /// writes until restarted.
    pub(crate) failed: Mutex<Option<String>>,
    /// Failures that hold writes back until the next success clears them (a full disk).
    pub(crate) stalls: Mutex<Stalls>,
    /// Test-only: while set, every flush fails with a full disk after writing its segments.
    #[cfg(test)]
    pub(crate) flush_fault: Mutex<bool>,
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) recovery: RecoveryReport,
    pub(crate) hook: RwLock<Option<Arc<dyn CommitHook>>>,
    /// Held by the committer while it applies a group; readers hold it to see a consistent
    /// pair of table data and derived state.
    pub(crate) apply_lock: Mutex<()>,
    /// Latest-row summaries of segments, for [`Db::latest_row`].
    pub(crate) latest: Mutex<LatestCache>,
    /// Verified footers and page indexes of segments, for [`Db::segment_reader`].
    pub(crate) segment_metadata: Arc<Mutex<MetadataCache>>,
    /// Decoded column chunks of segments, for [`Db::decoded_row_group`].
    pub(crate) decoded: Mutex<DecodedCache>,
    /// WAL, flush and memory metrics, scraped through [`Db::metrics`].
    pub(crate) metrics: StorageMetrics,
}

/// Handle to an open storage engine; cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("data_dir", &self.inner.config.data_dir)
            .finish()
    }
}

impl Db {
    /// Opens (or creates) a data directory: loads catalog and manifest, checks that they agree
    /// with the WAL and the segment files (refusing with [`StorageError::Inconsistent`] when
    /// they do not), replays the WAL above the manifest's position, cuts a torn tail, and
    /// starts the committer and the flusher.
    pub fn open(mut config: StorageConfig) -> Result<Db> {
        std::fs::create_dir_all(&config.data_dir).at(&config.data_dir)?;
        // Segment paths handed to readers must be absolute whatever the working directory.
        config.data_dir = std::fs::canonicalize(&config.data_dir).at(&config.data_dir)?;
        let recovered = recover(&config)?;

        let (tx, rx) = mpsc::channel();
        let latest_cache_bytes = config.latest_cache_bytes;
        let decoded_cache_bytes = config.decoded_cache_bytes;
        let inner = Arc::new(Inner {
            config,
            catalog: recovered.catalog,
            state: RwLock::new(State {
                active: recovered.active,
                frozen: Vec::new(),
                manifest: Arc::new(recovered.manifest),
                files: recovered.files,
            }),
            wal: Mutex::new(recovered.wal),
            commit_tx: Mutex::new(Some(tx)),
            flush_wake: (Mutex::new(FlushSignal::default()), Condvar::new()),
            compact_wake: (Mutex::new(Default::default()), Condvar::new()),
            index_wake: (Mutex::new(Default::default()), Condvar::new()),
            compaction_book: Mutex::new(Default::default()),
            flushed: Notify::new(),
            flush_lock: Mutex::new(()),
            failed: Mutex::new(None),
            stalls: Mutex::new(Stalls::default()),
            #[cfg(test)]
            flush_fault: Mutex::new(false),
            threads: Mutex::new(Vec::new()),
            recovery: recovered.report,
            hook: RwLock::new(None),
            apply_lock: Mutex::new(()),
            latest: Mutex::new(LatestCache::new(latest_cache_bytes)),
            segment_metadata: Arc::new(Mutex::new(MetadataCache::new(
                SEGMENT_METADATA_CACHE_BYTES,
            ))),
            decoded: Mutex::new(DecodedCache::new(decoded_cache_bytes)),
            metrics: StorageMetrics::default(),
        });
        let committer = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("eddy-wal".into())
                .spawn(move || run_committer(&inner, rx))
                .at("<spawn committer>")?
        };
        let flusher = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("eddy-flush".into())
                .spawn(move || run_flusher(&inner))
                .at("<spawn flusher>")?
        };
        let compactor = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("eddy-compact".into())
                .spawn(move || crate::compaction::run_compactor(&inner))
                .at("<spawn compactor>")?
        };
        let indexer = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("eddy-index".into())
                .spawn(move || crate::text_index::run_indexer(&inner))
                .at("<spawn indexer>")?
        };
        inner
            .threads
            .lock()
            .extend([committer, flusher, compactor, indexer]);
        Ok(Db { inner })
    }

    /// Writes several tables' rows and a stream source's progress as one WAL record: after a
    /// crash all of it is there or none of it is (the source resumes from the progress it
    /// finds, so no message is lost or written twice). Each part is checked as
    /// [`Db::write_to`] checks a batch; one bad part refuses the whole write. Returns the
    /// record's sequence number.
    pub async fn write_atomic(
        &self,
        parts: Vec<crate::commit::WritePart>,
        progress: Option<crate::source::SourceProgress>,
    ) -> Result<u64> {
        self.inner.write_atomic(parts, progress).await
    }

    /// The last position a source consumed in each partition, as durable writes recorded it:
    /// the manifest's, overlaid with the memtables' (newer) positions.
    pub fn source_offsets(&self, source_id: u64) -> std::collections::BTreeMap<String, i64> {
        let st = self.inner.state.read();
        let mut out = st
            .manifest
            .source_offsets
            .get(&source_id)
            .cloned()
            .unwrap_or_default();
        let mems = st.frozen.iter().map(|f| &f.mem).chain([&st.active]);
        for mem in mems {
            if let Some(newer) = mem.source_offsets.get(&source_id) {
                out.extend(newer.iter().map(|(k, v)| (k.clone(), *v)));
            }
        }
        out
    }

    /// The catalog of tables.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &StorageConfig {
        &self.inner.config
    }

    /// What recovery did when the engine was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// Writes a batch to a table and returns its sequence number once it is durable (per the
    /// WAL sync mode) and visible to readers. The batch's columns must exist in the table with
    /// the same types; columns it lacks are null. The time column may not hold nulls.
    pub async fn write(&self, table: &str, batch: RecordBatch) -> Result<u64> {
        let schema = self
            .inner
            .catalog
            .get(table)
            .ok_or_else(|| StorageError::TableNotFound(table.to_string()))?;
        self.write_to(&schema, batch).await
    }

    /// [`Db::write`] against a schema the caller already looked up.
    pub async fn write_to(&self, schema: &Arc<TableSchema>, batch: RecordBatch) -> Result<u64> {
        self.inner.write(schema, batch).await
    }

    /// Installs the hook that derives state from every committed write.
    pub fn set_commit_hook(&self, hook: Arc<dyn CommitHook>) {
        *self.inner.hook.write() = Some(hook);
    }

    /// Asks the commit hook to save its derived state now (after it was rebuilt, so it does
    /// not depend on raw data that retention may drop); returns the position it covers.
    pub fn checkpoint_hook(&self) -> Option<u64> {
        let hook = self.inner.hook.read().clone();
        hook.and_then(|h| h.checkpoint())
    }

    /// Blocks commits while held: a snapshot taken under it matches the state the commit hook
    /// has applied, write for write.
    pub fn commit_barrier(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.inner.apply_lock.lock()
    }

    /// Series hashes of a batch in the table schema (one per row), as the engine computes them.
    pub fn series_hashes(&self, schema: &TableSchema, batch: &RecordBatch) -> Result<Vec<u64>> {
        crate::commit::series_hashes(schema, batch)
    }

    /// Sequence number of the last write applied (visible to readers); under
    /// [`Db::commit_barrier`] it matches the state the commit hook has applied.
    pub fn applied_seq(&self) -> u64 {
        self.inner.state.read().active.last_seq
    }

    /// Makes every WAL record written so far durable.
    pub fn sync_wal(&self) -> Result<()> {
        let synced = self.inner.metrics.timed_fsync(&mut self.inner.wal.lock());
        if let Err(e) = &synced
            && matches!(self.inner.config.wal_sync, WalSync::IntervalMs(_))
        {
            // Acknowledged records were waiting for this fsync: after it failed they may be
            // gone, and the next fsync could succeed without them.
            self.inner.fail_writes(e);
        }
        synced
    }

    /// Why writes are refused or held back right now (a full disk under the WAL or under a
    /// flush, or an engine stopped by a WAL failure it could not undo), or `None` when they
    /// are accepted. It clears by itself after the next WAL append and flush that work.
    pub fn write_stall(&self) -> Option<String> {
        self.inner.write_stall()
    }

    /// Reads back, without changing anything, every WAL record with `seq > after_seq` of
    /// tables still in the catalog. Returns `false` when the WAL no longer holds all of them
    /// (its files from there on were removed).
    pub fn scan_wal(&self, after_seq: u64, mut f: impl FnMut(u64, &RecordBatch)) -> Result<bool> {
        let dir = self.inner.config.data_dir.join("wal");
        wal::scan(&dir, after_seq, |rec| {
            for (table_id, batch) in &rec.parts {
                f(*table_id, batch);
            }
            Ok(())
        })
    }

    /// The first instant a table still keeps (the start of its oldest retained day), or
    /// `i64::MIN` when it keeps everything.
    pub fn retention_floor(&self, schema: &TableSchema) -> i64 {
        self.inner.retention_floor_of(schema)
    }

    /// The data of a table as of now, or `None` if there is no such table.
    pub fn snapshot(&self, table: &str) -> Option<TableSnapshot> {
        let schema = self.inner.catalog.get(table)?;
        Some(self.snapshot_of(&schema))
    }

    /// The data of a table as of now, for a table looked up already.
    pub fn snapshot_of(&self, schema: &Arc<TableSchema>) -> TableSnapshot {
        self.inner.snapshot_of(schema)
    }

    /// Flushes everything in memory to segments now and waits for it.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush_all()
    }

    /// Merges every partition's segments into one segment each, now, and waits for it
    /// (whatever the compaction policy and setting). Returns what each job did.
    pub fn compact(&self) -> Result<Vec<CompactionOutcome>> {
        self.inner.compact_all()
    }

    /// Drops a table: it leaves the catalog, its buffered rows and segments are deleted.
    pub fn drop_table(&self, name: &str) -> Result<()> {
        self.inner.drop_table(name)
    }

    /// Flushes memory to segments, stops the background threads and syncs the WAL. Writes
    /// after this fail with [`StorageError::ShutDown`].
    pub fn close(&self) -> Result<()> {
        {
            // First, so a long compaction stops at its next batch instead of delaying shutdown.
            let (lock, cv) = &self.inner.compact_wake;
            lock.lock().stop = true;
            cv.notify_all();
            let (lock, cv) = &self.inner.index_wake;
            lock.lock().stop = true;
            cv.notify_all();
        }
        let flushed = self.inner.flush_all();
        if let Some(h) = self.inner.hook.read().clone() {
            h.checkpoint();
        }
        self.inner.commit_tx.lock().take();
        {
            let (lock, cv) = &self.inner.flush_wake;
            lock.lock().stop = true;
            cv.notify_all();
        }
        let threads = std::mem::take(&mut *self.inner.threads.lock());
        for t in threads {
            let _ = t.join();
        }
        self.inner.wal.lock().sync()?;
        flushed
    }

    /// Creates a full-text index on a text column (see [`Catalog::create_index`]); the
    /// indexer then builds it for every segment of the table, in the background.
    pub fn create_text_index(
        &self,
        name: &str,
        table: &str,
        column: &str,
        if_not_exists: bool,
    ) -> Result<crate::catalog::IndexDef> {
        let def = self
            .inner
            .catalog
            .create_index(name, table, column, if_not_exists)?;
        self.inner.request_text_indexes(false);
        Ok(def)
    }

    /// Drops a full-text index; its files are removed in the background.
    pub fn drop_text_index(&self, name: &str) -> Result<crate::catalog::IndexDef> {
        let def = self.inner.catalog.drop_index(name)?;
        self.inner.request_text_indexes(true);
        Ok(def)
    }

    /// For each full-text index, the live segments of its table and how many of them have
    /// their index built.
    pub fn text_index_progress(&self) -> Vec<(crate::catalog::IndexDef, usize, usize)> {
        let files: Vec<Arc<SegmentFile>> =
            self.inner.state.read().files.values().cloned().collect();
        self.inner
            .catalog
            .indexes()
            .into_iter()
            .map(|idx| {
                let of_table: Vec<_> = files
                    .iter()
                    .filter(|f| f.meta.table_id == idx.table_id)
                    .collect();
                let built = of_table
                    .iter()
                    .filter(|f| crate::text_index::text_index_dir(&f.path, &idx.column).exists())
                    .count();
                (idx, of_table.len(), built)
            })
            .collect()
    }

    /// Memory held by memtables (active and being flushed), in bytes.
    pub fn memtable_bytes(&self) -> usize {
        self.inner.memtable_bytes()
    }

    /// The row `SELECT * FROM t WHERE tag = v AND ... ORDER BY time DESC LIMIT 1` returns on
    /// `snapshot`, in the table schema, found without a scan (from per-segment summaries and
    /// the memtable's newest-row marks); `tags` are `(tag column, value)` pairs, all of which
    /// must hold.
    pub fn latest_row(
        &self,
        snapshot: &TableSnapshot,
        tags: &[(String, String)],
    ) -> Result<Option<RecordBatch>> {
        self.inner.latest_row(snapshot, tags)
    }

    /// An asynchronous Parquet reader over a segment (of a snapshot) for the query engine:
    /// every byte it returns, footer and page index included, was verified against the
    /// segment's checksum file, and verified footers are cached across queries.
    pub fn segment_reader(&self, file: Arc<SegmentFile>) -> SegmentReader {
        SegmentReader::new(file, self.inner.segment_metadata.clone())
    }

    /// The tag index of a segment (see `segment_tags.rs`), decoded once from its footer as
    /// the engine's footer cache holds it; `None` when the segment has none this version reads.
    pub fn segment_tag_index(
        &self,
        file: &SegmentFile,
    ) -> Result<Option<Arc<crate::segment_tags::SegmentTagIndex>>> {
        file.tag_index(&self.inner.segment_metadata)
    }

    /// Whether scans may read segments through the decoded-column cache
    /// ([`StorageConfig::decoded_cache_bytes`] is not 0).
    pub fn decoded_cache_enabled(&self) -> bool {
        self.decoded_cache_limit() > 0
    }

    /// The most memory the decoded-column cache may hold ([`StorageConfig::decoded_cache_bytes`]).
    pub fn decoded_cache_limit(&self) -> usize {
        self.inner.decoded.lock().budget()
    }

    /// Bytes of decoded columns the cache holds now.
    pub fn decoded_cache_bytes(&self) -> usize {
        self.inner.decoded.lock().bytes()
    }

    /// The row counts of a segment's row groups, from its verified footer (cached).
    pub fn segment_row_groups(&self, file: &SegmentFile) -> Result<Vec<usize>> {
        crate::decoded::row_group_rows(file, &self.inner.segment_metadata)
    }

    /// Columns `fields` (by name, of these types) of row group `row_group` of a segment,
    /// decoded: from the decoded-column cache, the others read through the verified reader
    /// and cached. A column the segment predates is all null.
    pub fn decoded_row_group(
        &self,
        file: &SegmentFile,
        row_group: usize,
        fields: &[datafusion::arrow::datatypes::FieldRef],
    ) -> Result<DecodedRowGroup> {
        let decoded = crate::decoded::decode_row_group(
            file,
            &self.inner.segment_metadata,
            &self.inner.decoded,
            row_group,
            fields,
        )?;
        self.inner.metrics.decoded(decoded.hits, decoded.misses);
        Ok(decoded)
    }

    /// The engine's metrics, to register with the node's Prometheus registry.
    pub fn metrics(&self) -> &StorageMetrics {
        &self.inner.metrics
    }

    /// Sets the metrics that are read from state (memtable bytes, flush backlog, segments,
    /// whether writes are stalled) to their values now; called when metrics are scraped.
    pub fn refresh_metrics(&self) {
        let stalled = self.write_stall().is_some();
        self.inner.metrics.refresh(&self.inner, stalled);
    }

    /// All live segments.
    pub fn segments(&self) -> Vec<SegmentMeta> {
        self.inner.state.read().manifest.segments.clone()
    }

    /// Memory held by each table's unflushed rows (in the active and the frozen memtables),
    /// in bytes, by table id. Until a flush writes them to a segment those rows are on disk
    /// only in the WAL, which holds all tables' records mixed.
    pub fn memtable_bytes_by_table(&self) -> HashMap<u64, usize> {
        let st = self.inner.state.read();
        let mut out: HashMap<u64, usize> = HashMap::new();
        for mem in std::iter::once(&st.active).chain(st.frozen.iter().map(|f| &f.mem)) {
            for (&id, table) in &mem.tables {
                let held = out.entry(id).or_insert(0);
                *held = held.saturating_add(table.bytes);
            }
        }
        out
    }

    /// Bytes of the WAL files on disk now.
    pub fn wal_bytes(&self) -> Result<u64> {
        crate::fsutil::dir_bytes(&self.inner.config.data_dir.join("wal"))
    }

    /// Bytes of every file in the data directory now (WAL, segments and their checksum
    /// files, catalog, manifest, view checkpoints), found by walking it.
    pub fn disk_bytes(&self) -> Result<u64> {
        crate::fsutil::dir_bytes(&self.inner.config.data_dir)
    }

    /// Test-only: the engine's shared state, for fault injection.
    #[cfg(test)]
    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}
