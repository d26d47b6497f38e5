//! The write path up to the acknowledgement: validation, the commit hook, and group commit.
//!
//! One committer thread owns WAL appends. It takes every request queued while the previous
//! fsync ran, appends them with one write, fsyncs once, applies them to the memtable in
//! sequence order and only then acknowledges. Applying in sequence order is what makes "all
//! records up to N are in the memtable" true at any instant, so a flush of the memtable can
//! record N as the WAL position it covers.

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
use crate::limits::{COMMIT_GROUP_REQUESTS_MAX, COMMITTER_IDLE_WAKE_MS};
use crate::schema::TableSchema;
use crate::wal;

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

/// One write waiting for the committer.
pub(crate) struct CommitRequest {
    prepared: Option<Prepared>,
    table_id: u64,
    time_index: usize,
    tag_count: usize,
    encoded: Vec<u8>,
    batch: RecordBatch,
    hashes: Vec<u64>,
    reply: oneshot::Sender<Result<u64>>,
}

impl Inner {
    /// The body of [`Db::write_to`](crate::Db::write_to): everything that can fail is checked
    /// here, in the writer, so the committer only appends and applies.
    pub(crate) async fn write(&self, schema: &Arc<TableSchema>, batch: RecordBatch) -> Result<u64> {
        if let Some(reason) = self.failed.lock().clone() {
            return Err(StorageError::ShutDown(reason));
        }
        let batch = validate(schema, &batch)?;
        self.check_retention(schema, &batch)?;
        if batch.num_rows() == 0 {
            return Ok(self.state.read().active.last_seq);
        }
        let hashes = series_hashes(schema, &batch)?;
        let hook = self.hook.read().clone();
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

/// The committer thread: group commit until the request channel closes.
pub(crate) fn run_committer(inner: &Inner, rx: mpsc::Receiver<CommitRequest>) {
    let interval = match inner.config.wal_sync {
        WalSync::Always => None,
        WalSync::IntervalMs(ms) => Some(Duration::from_millis(ms.max(1))),
    };
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    loop {
        let idle_wake = Duration::from_millis(COMMITTER_IDLE_WAKE_MS);
        let first = match rx.recv_timeout(interval.unwrap_or(idle_wake)) {
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

/// Marks the engine failed: after a WAL write or fsync error nothing more may be acknowledged,
/// because what reached the disk is unknown.
fn fail(inner: &Inner, e: &StorageError) {
    tracing::error!(error = %e, "WAL write failed; refusing further writes until restart");
    inner
        .failed
        .lock()
        .get_or_insert_with(|| format!("WAL write failed: {e}"));
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
