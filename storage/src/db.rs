//! The storage engine: the write path (validate, WAL with group commit, memtable), background
//! flushing to Parquet segments, recovery, and consistent snapshots for readers.
//!
//! One committer thread owns WAL appends. It takes every request queued while the previous
//! fsync ran, appends them with one write, fsyncs once, applies them to the memtable in
//! sequence order and only then acknowledges. Applying in sequence order is what makes "all
//! records up to N are in the memtable" true at any instant, so a flush of the memtable can
//! record N as the WAL position it covers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, TimestampNanosecondArray};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::{Notify, oneshot};

use crate::catalog::Catalog;
use crate::dedup::{conform, filter_time, sort_dedup};
use crate::error::{IoContext, Result, StorageError};
use crate::latest::{LatestCache, SegmentLatest};
use crate::manifest::{Manifest, SegmentMeta};
use crate::memtable::{FrozenMemtable, MemChunk, Memtable};
use crate::schema::{TableSchema, dir_name};
use crate::segment::{SegmentFile, read_segment, write_segment};
use crate::tag_index::TagSelection;
use crate::wal::{self, WalWriter};

/// Nanoseconds in a day, the width of a time partition.
pub const PARTITION_NANOS: i64 = 86_400_000_000_000;

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
    /// Memory for the per-segment latest-row summaries that answer
    /// `ORDER BY time DESC LIMIT 1` lookups without a scan (see [`crate::latest`]).
    pub latest_cache_bytes: usize,
}

impl StorageConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            wal_sync: WalSync::Always,
            wal_segment_bytes_max: 64 * 1024 * 1024,
            memtable_bytes_max: 512 * 1024 * 1024,
            memtable_flush_bytes: 128 * 1024 * 1024,
            flush_interval_ms: 300_000,
            latest_cache_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What recovery did at open.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// WAL records replayed into the memtable.
    pub records_replayed: u64,
    /// Bytes of a torn WAL tail that were cut.
    pub torn_bytes_cut: u64,
    /// Segment files on disk that no manifest listed (left by a crashed flush), removed.
    pub orphan_files_removed: u64,
}

/// Work derived from a write batch that must be applied in the same commit (continuous
/// aggregates): `prepare` runs in the writer before the WAL append, outside any lock; `apply`
/// runs in the committer, in sequence order, while the batch enters the memtable, so readers
/// that hold [`Db::commit_barrier`] see both or neither.
pub trait CommitHook: Send + Sync {
    /// Derives what the commit of `batch` (already in the full table schema) needs;
    /// `series_hashes` are the engine's per-row series hashes of the batch.
    fn prepare(
        &self,
        table: &Arc<TableSchema>,
        batch: &RecordBatch,
        series_hashes: &[u64],
    ) -> Option<Prepared>;
    /// Applies it. Must not call back into the [`Db`].
    fn apply(&self, table_id: u64, prepared: Prepared);
    /// Saves the derived state durably (called by the flusher and at close, not under the
    /// commit barrier); returns the WAL sequence number up to which the saved state covers
    /// all commits, so the WAL is kept above it, or `None` if the hook needs no WAL.
    fn checkpoint(&self) -> Option<u64> {
        None
    }
}

/// What a [`CommitHook`] prepared for one batch.
pub type Prepared = Box<dyn std::any::Any + Send>;

struct CommitRequest {
    prepared: Option<Prepared>,
    table_id: u64,
    time_index: usize,
    tag_count: usize,
    encoded: Vec<u8>,
    batch: RecordBatch,
    hashes: Vec<u64>,
    reply: oneshot::Sender<Result<u64>>,
}

struct State {
    active: Memtable,
    frozen: Vec<Arc<FrozenMemtable>>,
    manifest: Arc<Manifest>,
    /// The manifest's segments by id, as handed to readers.
    files: BTreeMap<u64, Arc<SegmentFile>>,
}

struct Inner {
    config: StorageConfig,
    catalog: Catalog,
    state: RwLock<State>,
    wal: Mutex<WalWriter>,
    commit_tx: Mutex<Option<mpsc::Sender<CommitRequest>>>,
    /// Wakes the flusher; the flag asks for a flush regardless of size.
    flush_wake: (Mutex<FlushSignal>, Condvar),
    /// Notified when a flush completes, for writers waiting on memory.
    flushed: Notify,
    /// Serializes flushes and manifest changes.
    flush_lock: Mutex<()>,
    /// Set when a WAL write or fsync failed: the engine refuses writes until restarted.
    failed: Mutex<Option<String>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    recovery: RecoveryReport,
    hook: RwLock<Option<Arc<dyn CommitHook>>>,
    /// Held by the committer while it applies a group; readers hold it to see a consistent
    /// pair of table data and derived state.
    apply_lock: Mutex<()>,
    /// Latest-row summaries of segments, for [`Db::latest_row`].
    latest: Mutex<LatestCache>,
}

#[derive(Default)]
struct FlushSignal {
    requested: bool,
    stop: bool,
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

/// The data of one table as of one instant, for a reader.
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    /// The table's schema at that instant.
    pub schema: Arc<TableSchema>,
    /// Live segments of the table, by increasing id; held, so their files stay readable.
    pub segments: Vec<Arc<SegmentFile>>,
    /// In-memory chunks, oldest first.
    pub memory: Vec<MemChunk>,
}

/// How to read a snapshot for a time range: files that can be scanned as they are, plus rows
/// that had to be merged in memory because their sources overlap.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    /// Segments that overlap no other source in the range: read directly (hold the
    /// `Arc` until the read is done; see [`SegmentFile`]).
    pub files: Vec<Arc<SegmentFile>>,
    /// Rows from memory and from overlapping segments, deduplicated, in the table schema.
    pub batches: Vec<RecordBatch>,
    /// Segments of the table skipped because their time range misses the query's.
    pub segments_pruned: usize,
}

/// Selects rows of a batch (in the table schema) by their key columns; see
/// [`TableSnapshot::read_plan_filtered`].
pub type KeyFilter =
    dyn Fn(&RecordBatch) -> std::result::Result<BooleanArray, ArrowError> + Send + Sync;

impl Db {
    /// Opens (or creates) a data directory: loads catalog and manifest, replays the WAL above
    /// the manifest's position, cuts a torn tail, and starts the committer and the flusher.
    pub fn open(mut config: StorageConfig) -> Result<Db> {
        std::fs::create_dir_all(&config.data_dir).at(&config.data_dir)?;
        // Segment paths handed to readers must be absolute whatever the working directory.
        config.data_dir = std::fs::canonicalize(&config.data_dir).at(&config.data_dir)?;
        let dir = config.data_dir.clone();
        let wal_dir = dir.join("wal");
        std::fs::create_dir_all(&wal_dir).at(&wal_dir)?;
        let catalog = Catalog::open(&dir)?;
        let manifest = Manifest::load(&dir)?;
        let orphans = remove_orphans(&dir, &manifest)?;

        let mut active = Memtable::default();
        let stats = wal::replay(&wal_dir, manifest.flushed_seq, |rec| {
            let Some(schema) = catalog.get_by_id(rec.table_id) else {
                // The table was dropped after this write: its rows are gone by request.
                return Ok(());
            };
            let batch = conform(&rec.batch, schema.arrow_schema())?;
            let hashes = series_hashes(&schema, &batch)?;
            active.apply(
                rec.seq,
                rec.table_id,
                schema.time_index(),
                schema.tag_indices().len(),
                batch,
                &hashes,
            );
            Ok(())
        })?;
        active.last_seq = active.last_seq.max(stats.last_seq);
        active.first_write = (!active.is_empty()).then(Instant::now);
        let next_seq = stats.last_seq.max(manifest.flushed_seq) + 1;
        let writer = WalWriter::create(&wal_dir, next_seq, config.wal_segment_bytes_max)?;
        if stats.records_applied > 0 || stats.torn_bytes_cut > 0 {
            tracing::info!(
                records = stats.records_applied,
                torn_bytes_cut = stats.torn_bytes_cut,
                "replayed WAL"
            );
        }

        let files = manifest
            .segments
            .iter()
            .map(|s| {
                let file = SegmentFile::new(config.data_dir.join(&s.path), s.clone());
                (s.id, Arc::new(file))
            })
            .collect();
        let (tx, rx) = mpsc::channel();
        let latest_cache_bytes = config.latest_cache_bytes;
        let inner = Arc::new(Inner {
            config,
            catalog,
            state: RwLock::new(State {
                active,
                frozen: Vec::new(),
                manifest: Arc::new(manifest),
                files,
            }),
            wal: Mutex::new(writer),
            commit_tx: Mutex::new(Some(tx)),
            flush_wake: (Mutex::new(FlushSignal::default()), Condvar::new()),
            flushed: Notify::new(),
            flush_lock: Mutex::new(()),
            failed: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
            recovery: RecoveryReport {
                records_replayed: stats.records_applied,
                torn_bytes_cut: stats.torn_bytes_cut,
                orphan_files_removed: orphans,
            },
            hook: RwLock::new(None),
            apply_lock: Mutex::new(()),
            latest: Mutex::new(LatestCache::new(latest_cache_bytes)),
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
        inner.threads.lock().extend([committer, flusher]);
        Ok(Db { inner })
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
        if let Some(reason) = self.inner.failed.lock().clone() {
            return Err(StorageError::ShutDown(reason));
        }
        let batch = validate(schema, &batch)?;
        self.check_retention(schema, &batch)?;
        if batch.num_rows() == 0 {
            return Ok(self.inner.state.read().active.last_seq);
        }
        let hashes = series_hashes(schema, &batch)?;
        let hook = self.inner.hook.read().clone();
        let prepared = hook.and_then(|h| h.prepare(schema, &batch, &hashes));
        let encoded = wal::encode_batch(&batch)?;
        self.wait_for_memory().await;
        let (reply, rx) = oneshot::channel();
        let req = CommitRequest {
            prepared,
            table_id: schema.def().id,
            time_index: schema.time_index(),
            tag_count: schema.tag_indices().len(),
            encoded,
            batch,
            hashes,
            reply,
        };
        {
            let tx = self.inner.commit_tx.lock();
            let tx = tx
                .as_ref()
                .ok_or_else(|| StorageError::ShutDown("closing".into()))?;
            tx.send(req)
                .map_err(|_| StorageError::ShutDown("WAL writer stopped".into()))?;
        }
        rx.await
            .map_err(|_| StorageError::ShutDown("WAL writer stopped".into()))?
    }

    /// Waits while the memtables hold more than allowed, so writers slow down to the speed of
    /// flushing instead of exhausting memory.
    async fn wait_for_memory(&self) {
        loop {
            let notified = self.inner.flushed.notified();
            let held = {
                let st = self.inner.state.read();
                st.active.bytes + st.frozen.iter().map(|f| f.mem.bytes).sum::<usize>()
            };
            if held < self.inner.config.memtable_bytes_max {
                return;
            }
            self.inner.request_flush();
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
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
        series_hashes(schema, batch)
    }

    /// Sequence number of the last write applied (visible to readers); under
    /// [`Db::commit_barrier`] it matches the state the commit hook has applied.
    pub fn applied_seq(&self) -> u64 {
        self.inner.state.read().active.last_seq
    }

    /// Makes every WAL record written so far durable.
    pub fn sync_wal(&self) -> Result<()> {
        self.inner.wal.lock().sync()
    }

    /// Reads back, without changing anything, every WAL record with `seq > after_seq` of
    /// tables still in the catalog. Returns `false` when the WAL no longer holds all of them
    /// (its files from there on were removed).
    pub fn scan_wal(&self, after_seq: u64, mut f: impl FnMut(u64, &RecordBatch)) -> Result<bool> {
        let dir = self.inner.config.data_dir.join("wal");
        wal::scan(&dir, after_seq, |rec| {
            f(rec.table_id, &rec.batch);
            Ok(())
        })
    }

    /// The first instant a table still keeps (the start of its oldest retained day), or
    /// `i64::MIN` when it keeps everything.
    pub fn retention_floor(&self, schema: &TableSchema) -> i64 {
        let current = self.inner.catalog.get_by_id(schema.def().id);
        let retention = current
            .as_ref()
            .map_or(schema.def().retention_ns, |t| t.def().retention_ns);
        match retention {
            Some(r) => retention_floor(now_ns(), r),
            None => i64::MIN,
        }
    }

    fn check_retention(&self, schema: &TableSchema, batch: &RecordBatch) -> Result<()> {
        let floor = self.retention_floor(schema);
        if floor == i64::MIN {
            return Ok(());
        }
        let oldest = batch
            .column(schema.time_index())
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .and_then(datafusion::arrow::compute::min);
        match oldest {
            Some(t) if t < floor => Err(StorageError::BeyondRetention {
                table: schema.name().to_string(),
                retention: describe_span(
                    self.inner
                        .catalog
                        .get_by_id(schema.def().id)
                        .and_then(|t| t.def().retention_ns)
                        .unwrap_or_default(),
                ),
                floor: rfc3339(floor),
                oldest: rfc3339(t),
            }),
            _ => Ok(()),
        }
    }

    /// The data of a table as of now, or `None` if there is no such table.
    pub fn snapshot(&self, table: &str) -> Option<TableSnapshot> {
        let schema = self.inner.catalog.get(table)?;
        Some(self.snapshot_of(&schema))
    }

    /// The data of a table as of now, for a table looked up already.
    pub fn snapshot_of(&self, schema: &Arc<TableSchema>) -> TableSnapshot {
        let id = schema.def().id;
        let st = self.inner.state.read();
        let mut memory: Vec<MemChunk> = st
            .frozen
            .iter()
            .filter_map(|f| f.mem.tables.get(&id).map(|t| t.chunk()))
            .collect();
        if let Some(t) = st.active.tables.get(&id) {
            memory.push(t.chunk());
        }
        let segments = st
            .files
            .values()
            .filter(|s| s.meta.table_id == id)
            .cloned()
            .collect();
        TableSnapshot {
            schema: schema.clone(),
            segments,
            memory,
        }
    }

    /// Flushes everything in memory to segments now and waits for it.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush_all()
    }

    /// Drops a table: it leaves the catalog, its buffered rows and segments are deleted.
    pub fn drop_table(&self, name: &str) -> Result<()> {
        let _guard = self.inner.flush_lock.lock();
        let schema = self
            .inner
            .catalog
            .get(name)
            .ok_or_else(|| StorageError::TableNotFound(name.to_string()))?;
        let id = schema.def().id;
        let mut manifest = (*self.inner.state.read().manifest).clone();
        let (gone, kept): (Vec<_>, Vec<_>) = manifest
            .segments
            .into_iter()
            .partition(|s| s.table_id == id);
        manifest.segments = kept;
        // Manifest first: a crash before the catalog change leaves a table without segments,
        // never segments that no table owns (and that orphan cleanup would not see).
        manifest.store(&self.inner.config.data_dir)?;
        self.inner.catalog.drop_table(name)?;
        let retired = {
            let mut st = self.inner.state.write();
            if let Some(t) = st.active.tables.remove(&id) {
                st.active.bytes -= t.bytes;
            }
            st.manifest = Arc::new(manifest);
            retire(&mut st.files, &gone)
        };
        self.inner.forget_latest(&gone);
        // Files are deleted here unless a running query still reads them.
        drop(retired);
        Ok(())
    }

    /// Flushes memory to segments, stops the background threads and syncs the WAL. Writes
    /// after this fail with [`StorageError::ShutDown`].
    pub fn close(&self) -> Result<()> {
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

    /// Memory held by memtables (active and being flushed), in bytes.
    pub fn memtable_bytes(&self) -> usize {
        let st = self.inner.state.read();
        st.active.bytes + st.frozen.iter().map(|f| f.mem.bytes).sum::<usize>()
    }

    /// The row `SELECT * FROM t WHERE tag = v AND ... ORDER BY time DESC LIMIT 1` returns on
    /// `snapshot`, in the table schema, found without a scan (see [`crate::latest`]); `tags`
    /// are `(tag column, value)` pairs, all of which must hold.
    pub fn latest_row(
        &self,
        snapshot: &TableSnapshot,
        tags: &[(String, String)],
    ) -> Result<Option<RecordBatch>> {
        let table = &snapshot.schema;
        crate::latest::latest_row(table, &snapshot.memory, &snapshot.segments, tags, |f| {
            if let Some(s) = self.inner.latest.lock().get(f.meta.id) {
                return Ok(Some(s));
            }
            let Some(summary) = SegmentLatest::read(f, table)? else {
                return Ok(None);
            };
            let summary = Arc::new(summary);
            self.inner.latest.lock().insert(f.meta.id, summary.clone());
            Ok(Some(summary))
        })
    }

    /// All live segments.
    pub fn segments(&self) -> Vec<SegmentMeta> {
        self.inner.state.read().manifest.segments.clone()
    }
}

impl Inner {
    fn forget_latest(&self, gone: &[SegmentMeta]) {
        let mut cache = self.latest.lock();
        for s in gone {
            cache.remove(s.id);
        }
    }

    fn request_flush(&self) {
        let (lock, cv) = &self.flush_wake;
        lock.lock().requested = true;
        cv.notify_all();
    }

    /// Drops the segments of days older than their table's retention.
    fn enforce_retention(&self) -> Result<()> {
        let now = now_ns();
        let floors: BTreeMap<u64, i64> = self
            .catalog
            .tables()
            .iter()
            .filter_map(|t| Some((t.def().id, retention_floor(now, t.def().retention_ns?))))
            .collect();
        if floors.is_empty() {
            return Ok(());
        }
        let _guard = self.flush_lock.lock();
        let expired = |s: &SegmentMeta| {
            floors
                .get(&s.table_id)
                .is_some_and(|&floor| s.partition < floor.div_euclid(PARTITION_NANOS))
        };
        let mut manifest = (*self.state.read().manifest).clone();
        let (gone, kept): (Vec<_>, Vec<_>) = manifest.segments.into_iter().partition(expired);
        if gone.is_empty() {
            return Ok(());
        }
        // Derived state (views) must be saved before the raw rows it was built from go.
        let hook = self.hook.read().clone();
        if let Some(h) = hook {
            h.checkpoint();
        }
        manifest.segments = kept;
        manifest.store(&self.config.data_dir)?;
        let retired = {
            let mut st = self.state.write();
            st.manifest = Arc::new(manifest);
            retire(&mut st.files, &gone)
        };
        self.forget_latest(&gone);
        // Files are deleted here unless a running query still reads them.
        drop(retired);
        let rows: u64 = gone.iter().map(|s| s.rows).sum();
        tracing::info!(
            segments = gone.len(),
            rows,
            "dropped segments past retention"
        );
        Ok(())
    }

    fn flush_all(&self) -> Result<()> {
        while self.flush_once()? {}
        Ok(())
    }

    /// Flushes the oldest frozen memtable, freezing the active one first if none is frozen.
    /// Returns whether anything was flushed.
    fn flush_once(&self) -> Result<bool> {
        let _guard = self.flush_lock.lock();
        let frozen = {
            let mut st = self.state.write();
            if st.frozen.is_empty() {
                if st.active.is_empty() {
                    return Ok(false);
                }
                let mem = std::mem::take(&mut st.active);
                st.active.last_seq = mem.last_seq;
                st.frozen.push(Arc::new(FrozenMemtable { mem }));
            }
            st.frozen[0].clone()
        };
        let mut manifest = (*self.state.read().manifest).clone();
        let started = Instant::now();
        let mut rows = 0u64;
        let mut written = Vec::new();
        let mut summaries = Vec::new();
        for (&table_id, tm) in &frozen.mem.tables {
            let Some(schema) = self.catalog.get_by_id(table_id) else {
                continue;
            };
            for (partition, batches) in split_by_partition(&schema, &tm.batches)? {
                let Some(sorted) = sort_dedup(&schema, &batches)? else {
                    continue;
                };
                let Some((min_time, max_time)) =
                    crate::dedup::time_bounds(&sorted, schema.time_index())
                else {
                    continue;
                };
                let id = manifest.next_segment_id;
                manifest.next_segment_id += 1;
                let rel = format!(
                    "data/{}/{}/{id:020}.parquet",
                    dir_name(schema.name()),
                    partition_date(partition)
                );
                let path = self.config.data_dir.join(&rel);
                let bytes = write_segment(&path, &schema, &sorted)?;
                rows += sorted.num_rows() as u64;
                let meta = SegmentMeta {
                    id,
                    table_id,
                    partition,
                    path: rel,
                    min_time,
                    max_time,
                    rows: sorted.num_rows() as u64,
                    bytes,
                };
                manifest.segments.push(meta.clone());
                // The rows are in hand: summarizing them now spares the first latest-row
                // lookup a read of the new file.
                match SegmentLatest::from_sorted(&schema, &sorted) {
                    Ok(Some(summary)) => summaries.push((id, Arc::new(summary))),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot summarize a new segment"),
                }
                written.push(Arc::new(SegmentFile::new(path, meta)));
            }
        }
        manifest.flushed_seq = manifest.flushed_seq.max(frozen.mem.last_seq);
        manifest.store(&self.config.data_dir)?;
        {
            let mut st = self.state.write();
            st.manifest = Arc::new(manifest);
            st.files.extend(written.into_iter().map(|f| (f.meta.id, f)));
            st.frozen.retain(|f| !Arc::ptr_eq(f, &frozen));
        }
        // Only now: a failed flush reuses its segment ids.
        for (id, summary) in summaries {
            self.latest.lock().insert(id, summary);
        }
        let flushed_seq = frozen.mem.last_seq;
        tracing::debug!(
            rows,
            elapsed_ms = started.elapsed().as_millis() as u64,
            flushed_seq,
            "flushed memtable"
        );
        self.flushed.notify_waiters();
        // Derived state (views) is saved after the data; the WAL is kept for whichever of
        // the two is older.
        let hook = self.hook.read().clone();
        let keep_above = hook
            .and_then(|h| h.checkpoint())
            .map_or(flushed_seq, |p| p.min(flushed_seq));
        if let Err(e) = self.wal.lock().remove_flushed(keep_above) {
            tracing::warn!(error = %e, "could not remove flushed WAL files");
        }
        Ok(true)
    }
}

fn run_committer(inner: &Inner, rx: mpsc::Receiver<CommitRequest>) {
    let interval = match inner.config.wal_sync {
        WalSync::Always => None,
        WalSync::IntervalMs(ms) => Some(Duration::from_millis(ms.max(1))),
    };
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    loop {
        let first = match rx.recv_timeout(interval.unwrap_or(Duration::from_secs(1))) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if unsynced {
                    match inner.wal.lock().sync() {
                        Ok(()) => unsynced = false,
                        Err(e) => fail(inner, &e),
                    }
                    last_sync = Instant::now();
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut group = vec![first];
        while group.len() < 4096 {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        if let Some(reason) = inner.failed.lock().clone() {
            for r in group {
                let _ = r.reply.send(Err(StorageError::ShutDown(reason.clone())));
            }
            continue;
        }
        let appended: Result<Vec<u64>> = (|| {
            let mut wal = inner.wal.lock();
            let mut seqs = Vec::with_capacity(group.len());
            for r in &group {
                let seq = wal.last_seq() + 1;
                wal.push(seq, r.table_id, &r.encoded);
                seqs.push(seq);
            }
            wal.write_buffered()?;
            match interval {
                None => wal.sync()?,
                Some(iv) => {
                    unsynced = true;
                    if last_sync.elapsed() >= iv {
                        wal.sync()?;
                        unsynced = false;
                        last_sync = Instant::now();
                    }
                }
            }
            wal.rotate_if_full()?;
            Ok(seqs)
        })();
        match appended {
            Ok(seqs) => {
                let mut replies = Vec::with_capacity(group.len());
                let hook = inner.hook.read().clone();
                let over = {
                    let _applying = inner.apply_lock.lock();
                    let mut st = inner.state.write();
                    for (r, seq) in group.into_iter().zip(seqs) {
                        st.active.apply(
                            seq,
                            r.table_id,
                            r.time_index,
                            r.tag_count,
                            r.batch,
                            &r.hashes,
                        );
                        if let (Some(h), Some(p)) = (&hook, r.prepared) {
                            h.apply(r.table_id, p);
                        }
                        replies.push((r.reply, seq));
                    }
                    st.active.bytes >= inner.config.memtable_flush_bytes
                };
                for (reply, seq) in replies {
                    let _ = reply.send(Ok(seq));
                }
                if over {
                    inner.request_flush();
                }
            }
            Err(e) => {
                fail(inner, &e);
                for r in group {
                    let _ = r.reply.send(Err(StorageError::ShutDown(e.to_string())));
                }
            }
        }
    }
}

fn fail(inner: &Inner, e: &StorageError) {
    tracing::error!(error = %e, "WAL write failed; refusing further writes until restart");
    inner
        .failed
        .lock()
        .get_or_insert_with(|| format!("WAL write failed: {e}"));
}

fn run_flusher(inner: &Inner) {
    let (lock, cv) = &inner.flush_wake;
    loop {
        {
            let mut sig = lock.lock();
            if !sig.requested && !sig.stop {
                cv.wait_for(&mut sig, Duration::from_secs(1));
            }
            if sig.stop {
                return;
            }
            sig.requested = false;
        }
        let due = {
            let st = inner.state.read();
            !st.frozen.is_empty()
                || st.active.bytes >= inner.config.memtable_flush_bytes
                || st.active.first_write.is_some_and(|t| {
                    t.elapsed() >= Duration::from_millis(inner.config.flush_interval_ms)
                })
        };
        if due && let Err(e) = inner.flush_once() {
            tracing::error!(error = %e, "flush failed; data stays in memory and WAL, will retry");
            std::thread::sleep(Duration::from_secs(1));
        }
        if let Err(e) = inner.enforce_retention() {
            tracing::error!(error = %e, "could not drop expired segments; will retry");
        }
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The start of the oldest day a table with `retention_ns` keeps at `now`: whole days
/// (partitions) are dropped once their end is older than the retention.
pub fn retention_floor(now: i64, retention_ns: i64) -> i64 {
    now.saturating_sub(retention_ns).div_euclid(PARTITION_NANOS) * PARTITION_NANOS
}

/// A span in the largest whole unit that fits (`7 days`, `36 hours`).
pub fn describe_span(ns: i64) -> String {
    const UNITS: [(i64, &str); 4] = [
        (86_400_000_000_000, "days"),
        (3_600_000_000_000, "hours"),
        (60_000_000_000, "minutes"),
        (1_000_000_000, "seconds"),
    ];
    for (unit, name) in UNITS {
        if ns >= unit && ns % unit == 0 {
            return format!("{} {name}", ns / unit);
        }
    }
    format!("{ns} ns")
}

/// A nanosecond timestamp as RFC 3339 (UTC).
pub fn rfc3339(ns: i64) -> String {
    use datafusion::arrow::datatypes::TimestampNanosecondType;
    match datafusion::arrow::temporal_conversions::as_datetime::<TimestampNanosecondType>(ns) {
        Some(dt) => format!("{}", dt.format("%Y-%m-%dT%H:%M:%S%.fZ")),
        None => format!("{ns} ns"),
    }
}

/// Checks a batch against the table schema and reshapes it to the full schema.
fn validate(schema: &TableSchema, batch: &RecordBatch) -> Result<RecordBatch> {
    for field in batch.schema().fields() {
        let Some((_, col)) = schema.column(field.name()) else {
            return Err(StorageError::InvalidSchema {
                table: schema.name().to_string(),
                reason: format!("column \"{}\" does not exist", field.name()),
            });
        };
        if &col.kind.data_type() != field.data_type() {
            return Err(StorageError::TypeConflict {
                table: schema.name().to_string(),
                column: field.name().clone(),
                expected: col.kind.describe(),
                found: field.data_type().to_string(),
            });
        }
    }
    let full = conform(batch, schema.arrow_schema())?;
    if full.column(schema.time_index()).null_count() > 0 {
        return Err(StorageError::InvalidSchema {
            table: schema.name().to_string(),
            reason: format!("time column \"{}\" may not be null", schema.time_column()),
        });
    }
    Ok(full)
}

/// Hash of each row's tag values, identifying its series.
fn series_hashes(schema: &TableSchema, batch: &RecordBatch) -> Result<Vec<u64>> {
    let mut hashes = vec![0u64; batch.num_rows()];
    let cols: Vec<ArrayRef> = schema
        .tag_indices()
        .iter()
        .map(|&i| batch.column(i).clone())
        .collect();
    if !cols.is_empty() {
        create_hashes(&cols, &RandomState::default(), &mut hashes).map_err(|e| {
            StorageError::InvalidSchema {
                table: schema.name().to_string(),
                reason: e.to_string(),
            }
        })?;
    }
    Ok(hashes)
}

/// Groups batches by time partition, keeping write order within each partition.
fn split_by_partition(
    schema: &TableSchema,
    batches: &[RecordBatch],
) -> Result<BTreeMap<i64, Vec<RecordBatch>>> {
    let mut out: BTreeMap<i64, Vec<RecordBatch>> = BTreeMap::new();
    for b in batches {
        let Some((lo, hi)) = crate::dedup::time_bounds(b, schema.time_index()) else {
            continue;
        };
        let (plo, phi) = (
            lo.div_euclid(PARTITION_NANOS),
            hi.div_euclid(PARTITION_NANOS),
        );
        if plo == phi {
            out.entry(plo).or_default().push(b.clone());
            continue;
        }
        for p in plo..=phi {
            let part = filter_time(
                b,
                schema.time_index(),
                p * PARTITION_NANOS,
                p * PARTITION_NANOS + (PARTITION_NANOS - 1),
            )?;
            if part.num_rows() > 0 {
                out.entry(p).or_default().push(part);
            }
        }
    }
    Ok(out)
}

/// `YYYY-MM-DD` of a partition (days since the Unix epoch).
pub fn partition_date(days: i64) -> String {
    // Howard Hinnant's civil-from-days algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Takes the `gone` segments out of the live set and marks them retired; the caller drops the
/// result outside the state lock (dropping may delete files).
fn retire(
    files: &mut BTreeMap<u64, Arc<SegmentFile>>,
    gone: &[SegmentMeta],
) -> Vec<Arc<SegmentFile>> {
    gone.iter()
        .filter_map(|s| files.remove(&s.id))
        .inspect(|f| f.retire())
        .collect()
}

/// Deletes segment files that the manifest does not list (left by a flush that crashed before
/// its manifest was written), and temporary files.
fn remove_orphans(dir: &Path, manifest: &Manifest) -> Result<u64> {
    let live: std::collections::HashSet<PathBuf> = manifest
        .segments
        .iter()
        .map(|s| dir.join(&s.path))
        .collect();
    let data = dir.join("data");
    if !data.exists() {
        return Ok(0);
    }
    let mut removed = 0;
    let mut stack = vec![data];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).at(&d)? {
            let path = entry.at(&d)?.path();
            if path.is_dir() {
                stack.push(path);
            } else if !live.contains(&path) {
                std::fs::remove_file(&path).at(&path)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

impl TableSnapshot {
    /// Every row of the snapshot with time in `[lo, hi]`, each key once, in the table schema.
    pub fn read_all(&self, lo: i64, hi: i64) -> Result<Vec<RecordBatch>> {
        let plan = self.read_plan(lo, hi)?;
        let mut out = Vec::new();
        for f in &plan.files {
            for b in read_segment(&f.path, self.schema.arrow_schema())? {
                out.push(filter_time(&b, self.schema.time_index(), lo, hi)?);
            }
        }
        for b in plan.batches {
            out.push(filter_time(&b, self.schema.time_index(), lo, hi)?);
        }
        out.retain(|b| b.num_rows() > 0);
        Ok(out)
    }

    /// The newest time held, if any rows are.
    pub fn max_time(&self) -> Option<i64> {
        self.segments
            .iter()
            .map(|s| s.meta.max_time)
            .chain(self.memory.iter().map(|m| m.max_time))
            .max()
    }

    /// Rows in the snapshot (before deduplication of overlapping sources).
    pub fn row_count(&self) -> u64 {
        let seg: u64 = self.segments.iter().map(|s| s.meta.rows).sum();
        let mem: usize = self
            .memory
            .iter()
            .flat_map(|m| m.batches.iter())
            .map(|b| b.num_rows())
            .sum();
        seg + mem as u64
    }

    /// Decides how to read the rows with time in `[lo, hi]`: sources that overlap no other
    /// source are read as they are; overlapping ones (and memory that may hold duplicate
    /// keys) are merged and deduplicated here, so the reader sees each key once.
    pub fn read_plan(&self, lo: i64, hi: i64) -> Result<ReadPlan> {
        self.read_plan_filtered(lo, hi, &TagSelection::default(), None)
    }

    /// [`read_plan`](Self::read_plan) keeping, among the rows that are read here (memory and
    /// overlapping segments), only those `tags` (through the memtable's tag index) and `keep`
    /// select. Both must look at key columns (tags, time) only: every version of a key then
    /// shares their verdict, so filtering before deduplication gives the same rows as filtering
    /// after it, and a point query merges a handful of rows instead of the memtable.
    pub fn read_plan_filtered(
        &self,
        lo: i64,
        hi: i64,
        tags: &TagSelection,
        keep: Option<&KeyFilter>,
    ) -> Result<ReadPlan> {
        let select = |b: &RecordBatch| -> Result<RecordBatch> {
            let b = conform(b, self.schema.arrow_schema())?;
            match keep {
                Some(keep) => Ok(datafusion::arrow::compute::filter_record_batch(
                    &b,
                    &keep(&b)?,
                )?),
                None => Ok(b),
            }
        };
        enum Source<'a> {
            Segment(&'a Arc<SegmentFile>),
            Memory(usize, &'a MemChunk),
        }
        let mut items: Vec<(i64, i64, Source)> = Vec::new();
        let mut pruned = 0;
        for s in &self.segments {
            if s.meta.max_time < lo || s.meta.min_time > hi {
                pruned += 1;
            } else {
                items.push((s.meta.min_time, s.meta.max_time, Source::Segment(s)));
            }
        }
        for (i, m) in self.memory.iter().enumerate() {
            if !m.batches.is_empty() && m.max_time >= lo && m.min_time <= hi {
                items.push((m.min_time, m.max_time, Source::Memory(i, m)));
            }
        }
        // Clusters of transitively overlapping time ranges, each kept in write order.
        items.sort_by_key(|(lo, _, _)| *lo);
        let mut clusters: Vec<Vec<(i64, i64, Source)>> = Vec::new();
        let mut cluster_hi = i64::MIN;
        for item in items {
            match clusters.last_mut() {
                Some(c) if item.0 <= cluster_hi => {
                    cluster_hi = cluster_hi.max(item.1);
                    c.push(item);
                }
                _ => {
                    cluster_hi = item.1;
                    clusters.push(vec![item]);
                }
            }
        }
        let schema = self.schema.arrow_schema();
        let mut plan = ReadPlan {
            files: Vec::new(),
            batches: Vec::new(),
            segments_pruned: pruned,
        };
        for mut cluster in clusters {
            if cluster.len() == 1 {
                match &cluster[0].2 {
                    Source::Segment(s) => {
                        plan.files.push(Arc::clone(s));
                        continue;
                    }
                    Source::Memory(_, m) if !m.may_have_duplicates => {
                        for b in &m.select(tags)? {
                            let b = select(b)?;
                            if b.num_rows() > 0 {
                                plan.batches.push(b);
                            }
                        }
                        continue;
                    }
                    Source::Memory(..) => {}
                }
            }
            // Write order: segments by id, then memory (which is newer than every segment).
            cluster.sort_by_key(|(_, _, s)| match s {
                Source::Segment(s) => (0, s.meta.id),
                Source::Memory(i, _) => (1, *i as u64),
            });
            let mut batches = Vec::new();
            for (_, _, s) in &cluster {
                match s {
                    Source::Segment(s) => {
                        for b in read_segment(&s.path, schema)? {
                            batches.push(select(&b)?);
                        }
                    }
                    Source::Memory(_, m) => {
                        for b in &m.select(tags)? {
                            batches.push(select(b)?);
                        }
                    }
                }
            }
            if let Some(b) = sort_dedup(&self.schema, &batches)? {
                plan.batches.push(b);
            }
        }
        Ok(plan)
    }
}
