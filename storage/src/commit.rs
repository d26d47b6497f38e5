//! The write path up to the acknowledgement: validation, the commit hook, and group commit.
//!
//! One committer thread owns WAL appends. It takes every request queued while the previous
//! fsync ran, appends them with one write, fsyncs once, applies them to the memtable in
//! sequence order and only then acknowledges. Applying in sequence order is what makes "all
//! records up to N are in the memtable" true at any instant, so a flush of the memtable can
//! record N as the WAL position it covers.
//!
//! A group whose append fails (a full disk) is cut from the WAL again and refused, and the
//! next group is tried as usual; only a failure that cannot be undone stops the engine until
//! a restart (see `append_group`).

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use tokio::sync::oneshot;

use crate::dedup::conform;
use crate::engine::{Inner, WalSync};
use crate::error::{Result, StorageError};
use crate::limits::{COMMIT_GROUP_REQUESTS_MAX, COMMITTER_IDLE_WAKE_MS, FAILURE_LOG_INTERVAL_MS};
use crate::metrics::StorageMetrics;
use crate::schema::TableSchema;
use crate::source::SourceProgress;
use crate::stall::LogLimiter;
use crate::wal::{self, WalWriter};

/// Work derived from a write batch that must be applied in the same commit (continuous
/// aggregates): `prepare` runs in the writer before the WAL append, outside any lock; `apply`
/// runs in the committer, in sequence order, while the batch enters the memtable, so readers
/// that hold [`Db::commit_barrier`](crate::Db::commit_barrier) see both or neither.
pub trait CommitHook: Send + Sync {
    /// Derives what the commit of `batch` (already in the full table schema) needs;
    /// `series_hashes` are the engine's per-row series hashes of the batch.
    fn prepare(
        &self,
        table: &Arc<TableSchema>,
        batch: &RecordBatch,
        series_hashes: &[u64],
    ) -> Option<Prepared>;
    /// Applies it. Must not call back into the [`Db`](crate::Db).
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

/// One table's rows in a write of several tables ([`Db::write_atomic`](crate::Db::write_atomic)).
#[derive(Debug, Clone)]
pub struct WritePart {
    /// The table, as the writer saw it.
    pub schema: Arc<TableSchema>,
    /// Its rows.
    pub batch: RecordBatch,
}

/// One table's rows of a [`CommitRequest`], validated and ready to apply.
struct CommitPart {
    prepared: Option<Prepared>,
    table_id: u64,
    time_index: usize,
    tag_count: usize,
    batch: RecordBatch,
    hashes: Vec<u64>,
}

/// One write waiting for the committer: one WAL record.
pub(crate) struct CommitRequest {
    parts: Vec<CommitPart>,
    /// The record's table id: the one part's table, or [`wal::MULTI_PART`].
    wal_table_id: u64,
    encoded: Vec<u8>,
    /// How far a stream source had consumed with these rows.
    progress: Option<SourceProgress>,
    reply: oneshot::Sender<Result<u64>>,
}

impl Inner {
    /// The body of [`Db::write_to`](crate::Db::write_to): everything that can fail is checked
    /// here, in the writer, so the committer only appends and applies.
    pub(crate) async fn write(&self, schema: &Arc<TableSchema>, batch: RecordBatch) -> Result<u64> {
        if let Some(reason) = self.failed.lock().clone() {
            return Err(StorageError::ShutDown(reason));
        }
        let Some(part) = self.prepare_part(schema, &batch)? else {
            return Ok(self.state.read().active.last_seq);
        };
        let encoded = wal::encode_batch(&part.batch)?;
        self.wait_for_memory().await?;
        let (reply, rx) = oneshot::channel();
        let req = CommitRequest {
            wal_table_id: part.table_id,
            parts: vec![part],
            encoded,
            progress: None,
            reply,
        };
        self.submit(req, rx).await
    }

    /// The body of [`Db::write_atomic`](crate::Db::write_atomic): every part is validated
    /// first (one bad part refuses the whole write), then all go into one WAL record with
    /// `progress`.
    pub(crate) async fn write_atomic(
        &self,
        parts: Vec<WritePart>,
        progress: Option<SourceProgress>,
    ) -> Result<u64> {
        if let Some(reason) = self.failed.lock().clone() {
            return Err(StorageError::ShutDown(reason));
        }
        let mut ready = Vec::with_capacity(parts.len());
        for p in &parts {
            if let Some(part) = self.prepare_part(&p.schema, &p.batch)? {
                ready.push(part);
            }
        }
        if ready.is_empty() && progress.is_none() {
            return Ok(self.state.read().active.last_seq);
        }
        let encoded_parts = ready
            .iter()
            .map(|p| Ok((p.table_id, wal::encode_batch(&p.batch)?)))
            .collect::<Result<Vec<_>>>()?;
        let encoded = wal::encode_multi(&encoded_parts, progress.as_ref())?;
        if encoded.len() > crate::limits::WAL_RECORD_BYTES_MAX - 64 {
            return Err(StorageError::LimitExceeded(format!(
                "one atomic write encodes to {} bytes, more than a WAL record holds ({} bytes); write fewer rows at once",
                encoded.len(),
                crate::limits::WAL_RECORD_BYTES_MAX
            )));
        }
        self.wait_for_memory().await?;
        let (reply, rx) = oneshot::channel();
        let req = CommitRequest {
            parts: ready,
            wal_table_id: wal::MULTI_PART,
            encoded,
            progress,
            reply,
        };
        self.submit(req, rx).await
    }

    /// Validates one table's rows and prepares what their commit needs; `None` for no rows.
    fn prepare_part(
        &self,
        schema: &Arc<TableSchema>,
        batch: &RecordBatch,
    ) -> Result<Option<CommitPart>> {
        let batch = validate(schema, batch)?;
        self.check_retention(schema, &batch)?;
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        let hashes = series_hashes(schema, &batch)?;
        let hook = self.hook.read().clone();
        let prepared = hook.and_then(|h| h.prepare(schema, &batch, &hashes));
        Ok(Some(CommitPart {
            prepared,
            table_id: schema.def().id,
            time_index: schema.time_index(),
            tag_count: schema.tag_indices().len(),
            batch,
            hashes,
        }))
    }

    /// Hands a request to the committer and waits for its acknowledgement.
    async fn submit(&self, req: CommitRequest, rx: oneshot::Receiver<Result<u64>>) -> Result<u64> {
        {
            let tx = self.commit_tx.lock();
            let tx = tx
                .as_ref()
                .ok_or_else(|| StorageError::ShutDown("closing".into()))?;
            tx.send(req)
                .map_err(|_| StorageError::ShutDown("WAL writer stopped".into()))?;
        }
        rx.await
            .map_err(|_| StorageError::ShutDown("WAL writer stopped".into()))?
    }
}

/// When the committer fsyncs: after every group (`Always`), or once the interval has passed.
struct SyncClock {
    interval: Option<Duration>,
    /// Where each fsync's duration is recorded.
    metrics: StorageMetrics,
    last_sync: Instant,
    /// Records were written (and acknowledged) since the last fsync.
    unsynced: bool,
}

impl SyncClock {
    /// Notes that everything written so far is on disk (an fsync, or a roll-back's fsync).
    fn synced(&mut self) {
        self.unsynced = false;
        self.last_sync = Instant::now();
    }

    /// Fsyncs `wal` now, timed; a failure leaves the clock as it was.
    fn sync(&mut self, wal: &mut WalWriter) -> Result<()> {
        self.metrics.timed_fsync(wal)?;
        self.synced();
        Ok(())
    }
}

/// Why a group was not appended.
enum GroupFailure {
    /// The group's records were cut from the WAL again: its writes are refused with this
    /// error, and later writes are tried as usual.
    Refused(StorageError),
    /// The WAL may have lost acknowledged records, or may hold records that were refused:
    /// nothing more may be acknowledged until a restart replays what is on disk.
    Broken(StorageError),
}

/// The committer thread: group commit until the request channel closes.
pub(crate) fn run_committer(inner: &Inner, rx: mpsc::Receiver<CommitRequest>) {
    let mut clock = SyncClock {
        interval: match inner.config.wal_sync {
            WalSync::Always => None,
            WalSync::IntervalMs(ms) => Some(Duration::from_millis(ms.max(1))),
        },
        metrics: inner.metrics.clone(),
        last_sync: Instant::now(),
        unsynced: false,
    };
    // A full disk refuses every group until space is freed: one log line per interval, not
    // one per request.
    let log_every = Duration::from_millis(FAILURE_LOG_INTERVAL_MS);
    let mut refusals = LogLimiter::new(log_every);
    let mut rotations = LogLimiter::new(log_every);
    loop {
        let idle_wake = Duration::from_millis(COMMITTER_IDLE_WAKE_MS);
        let first = match rx.recv_timeout(clock.interval.unwrap_or(idle_wake)) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if clock.unsynced {
                    match inner.metrics.timed_fsync(&mut inner.wal.lock()) {
                        Ok(()) => clock.unsynced = false,
                        // Acknowledged records were not synced: they may be lost.
                        Err(e) => inner.fail_writes(&e),
                    }
                    clock.last_sync = Instant::now();
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut group = vec![first];
        while group.len() < COMMIT_GROUP_REQUESTS_MAX {
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
        let appended = append_group(&mut inner.wal.lock(), &group, &mut clock, &mut rotations);
        match appended {
            Ok(seqs) => {
                let bytes = group.iter().map(|r| r.encoded.len() as u64).sum();
                inner.metrics.appended(group.len() as u64, bytes);
                if inner.stalls.lock().wal.take().is_some() {
                    tracing::info!("WAL appends succeed again; writes are accepted");
                    refusals.reset();
                    // Space may be back: flushes waiting out their backoff can try now.
                    inner.retry_flush_now();
                }
                let mut replies = Vec::with_capacity(group.len());
                let hook = inner.hook.read().clone();
                let over = {
                    let _applying = inner.apply_lock.lock();
                    let mut st = inner.state.write();
                    for (r, seq) in group.into_iter().zip(seqs) {
                        for part in r.parts {
                            st.active.apply(
                                seq,
                                part.table_id,
                                part.time_index,
                                part.tag_count,
                                part.batch,
                                &part.hashes,
                            );
                            if let (Some(h), Some(p)) = (&hook, part.prepared) {
                                h.apply(part.table_id, p);
                            }
                        }
                        if let Some(progress) = &r.progress {
                            st.active.apply_progress(seq, progress);
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
            Err(GroupFailure::Refused(e)) => {
                if let Some(suppressed) = refusals.allow() {
                    tracing::warn!(
                        error = %e,
                        suppressed,
                        "WAL append failed; the write was refused and cut from the WAL, later writes are tried again"
                    );
                }
                inner.stalls.lock().wal = Some(format!("the last WAL append failed: {e}"));
                for r in group {
                    let _ = r.reply.send(Err(copy_io_error(&e)));
                }
            }
            Err(GroupFailure::Broken(e)) => {
                inner.fail_writes(&e);
                for r in group {
                    let _ = r.reply.send(Err(StorageError::ShutDown(e.to_string())));
                }
            }
        }
    }
}

/// Appends one group: one write, then an fsync as the sync mode asks, then a new file if the
/// current one is full. Returns the group's sequence numbers.
///
/// A failed write or (in `Always` mode) a failed fsync is rolled back: the file is cut back
/// to its length before the group and fsynced. That is safe to continue from, fsyncgate
/// notwithstanding: in `Always` mode every record before the group was made durable by an
/// earlier fsync that succeeded, and the group's records, the only pages a failed writeback
/// could have dropped, are cut away, so the file is exactly the acknowledged records. In
/// `IntervalMs` mode a failed fsync may have dropped acknowledged records that were never
/// synced, so it is [`GroupFailure::Broken`]; so is a rollback that fails.
fn append_group(
    wal: &mut WalWriter,
    group: &[CommitRequest],
    clock: &mut SyncClock,
    rotations: &mut LogLimiter,
) -> std::result::Result<Vec<u64>, GroupFailure> {
    let mut seqs = Vec::with_capacity(group.len());
    for r in group {
        let seq = wal.last_seq() + 1;
        wal.push(seq, r.wal_table_id, &r.encoded);
        seqs.push(seq);
    }
    if let Err(e) = wal.write_buffered() {
        return Err(roll_back(wal, clock, e));
    }
    match clock.interval {
        None => {
            if let Err(e) = clock.metrics.timed_fsync(wal) {
                return Err(roll_back(wal, clock, e));
            }
        }
        Some(interval) => {
            clock.unsynced = true;
            if clock.last_sync.elapsed() >= interval {
                clock.sync(wal).map_err(GroupFailure::Broken)?;
            }
        }
    }
    if wal.is_full() {
        // Rotation fsyncs the old file; do it here, where a failure can be judged by mode.
        if clock.unsynced {
            clock.sync(wal).map_err(GroupFailure::Broken)?;
        }
        // The group is durable already: a file that cannot be started yet (a full disk) is
        // retried after the next group, and the current file grows past its limit meanwhile.
        if let Err(e) = wal.rotate_if_full()
            && let Some(suppressed) = rotations.allow()
        {
            tracing::warn!(error = %e, suppressed, "cannot start a new WAL file; will retry");
        }
    }
    Ok(seqs)
}

/// Cuts a failed group from the WAL: [`GroupFailure::Refused`] if that worked, otherwise
/// [`GroupFailure::Broken`].
fn roll_back(wal: &mut WalWriter, clock: &mut SyncClock, e: StorageError) -> GroupFailure {
    match wal.roll_back() {
        Ok(()) => {
            // The rollback's fsync covered whatever earlier records were still unsynced.
            clock.synced();
            GroupFailure::Refused(e)
        }
        Err(cut) => {
            tracing::error!(error = %cut, "cannot cut a failed group from the WAL");
            GroupFailure::Broken(e)
        }
    }
}

/// The error one request of a refused group gets (the I/O error is shared by the group, and
/// `io::Error` cannot be cloned).
fn copy_io_error(e: &StorageError) -> StorageError {
    let copy = |source: &std::io::Error| match source.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(source.kind(), source.to_string()),
    };
    match e {
        StorageError::DiskFull { path, source } => StorageError::DiskFull {
            path: path.clone(),
            source: copy(source),
        },
        StorageError::Io { path, source } => StorageError::Io {
            path: path.clone(),
            source: copy(source),
        },
        other => StorageError::Io {
            path: "<wal>".into(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

impl Inner {
    /// Marks the engine failed: after a WAL write or fsync error that could not be rolled
    /// back nothing more may be acknowledged, because what reached the disk is unknown.
    pub(crate) fn fail_writes(&self, e: &StorageError) {
        tracing::error!(error = %e, "WAL write failed; refusing further writes until restart");
        self.failed
            .lock()
            .get_or_insert_with(|| format!("WAL write failed: {e}"));
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
pub(crate) fn series_hashes(schema: &TableSchema, batch: &RecordBatch) -> Result<Vec<u64>> {
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
