//! Stream sources: Eddy consumes Kafka topics and MQTT topic filters itself, and writes what
//! they carry through the one write path, like any front end.
//!
//! A source is defined by `CREATE SOURCE` (kept in the catalog, resumed after a restart) and
//! run by the [`SourceManager`] as a task. Each task collects a batch of messages, decodes
//! it ([`decode`]), and commits the rows, the dead letters and (for Kafka) the offsets the
//! batch consumed as one WAL record: after a crash, the source resumes from the offsets it
//! finds with the rows, so nothing is lost or written twice. A write that fails (a full disk)
//! is retried until it succeeds; meanwhile the source reads nothing more, so memory stays
//! bounded and the broker keeps what was not consumed.

// An `IngestError` is returned once per failed write, never per row: its size costs nothing.
#![allow(clippy::result_large_err)]

pub mod dead_letters;
pub mod decode;
mod kafka;
mod mqtt;
pub mod options;
pub mod stats;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use eddy_storage::{SourceDef, SourceProgress, StorageError};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::Ingest;
use crate::sources::dead_letters::DeadLetter;
use crate::sources::decode::Message;
use crate::sources::options::SourceSpec;
use crate::sources::stats::{SourceState, SourceStats, StatsSnapshot, now_ns};

pub use dead_letters::DEAD_LETTERS_TABLE;

/// Longest wait between retries of a failed write or connection.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why a source request failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The definition does not check out.
    #[error("invalid source definition: {0}")]
    Invalid(String),
    /// The catalog refused it (no such source, a name taken, a failed write).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What a source task is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Consume.
    Run,
    /// Hold (keep connections, read nothing).
    Pause,
    /// Finish the batch in hand and stop.
    Stop,
}

/// One source as `eddy_sources` shows it.
#[derive(Debug, Clone)]
pub struct SourceStatus {
    /// Its definition (options with secrets).
    pub def: SourceDef,
    /// Its options with secrets hidden.
    pub options_shown: BTreeMap<String, String>,
    /// Its counters.
    pub stats: StatsSnapshot,
}

/// A running source.
struct Running {
    stats: Arc<SourceStats>,
    control: watch::Sender<Control>,
    done: tokio::sync::oneshot::Receiver<()>,
}

/// Starts, stops and lists the node's sources.
pub struct SourceManager {
    ingest: Ingest,
    running: Mutex<BTreeMap<String, Running>>,
}

impl std::fmt::Debug for SourceManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceManager").finish_non_exhaustive()
    }
}

impl SourceManager {
    /// A manager writing through `ingest`; nothing runs until [`SourceManager::start_all`].
    pub fn new(ingest: Ingest) -> Arc<SourceManager> {
        Arc::new(SourceManager {
            ingest: ingest.for_front_end(crate::FrontEnd::Source),
            running: Mutex::new(BTreeMap::new()),
        })
    }

    /// Starts every source of the catalog (at start-up), paused ones paused.
    pub fn start_all(&self) {
        for def in self.ingest.catalog().sources() {
            let name = def.name.clone();
            if let Err(e) = self.start(def) {
                tracing::error!(source = %name, error = %e, "cannot start source");
            }
        }
    }

    /// `CREATE SOURCE`: checks the definition, stores it, starts it.
    pub fn create(
        &self,
        name: &str,
        kind: &str,
        options: BTreeMap<String, String>,
        if_not_exists: bool,
    ) -> Result<(), SourceError> {
        options::parse(name, kind, &options).map_err(SourceError::Invalid)?;
        dead_letters::ensure_table(&self.ingest).map_err(|e| e.into_storage_error())?;
        if if_not_exists && self.ingest.catalog().source(name).is_some() {
            return Ok(());
        }
        let def = self.ingest.catalog().create_source(
            SourceDef {
                id: 0,
                name: name.to_string(),
                kind: kind.to_string(),
                options,
                paused: false,
            },
            false,
        )?;
        tracing::info!(source = %name, kind, "source created");
        self.start(def)
    }

    /// `DROP SOURCE`: stops it (finishing the batch in hand) and forgets it. Its rows, its
    /// dead letters and the offsets committed to its broker stay.
    pub async fn drop_source(&self, name: &str, if_exists: bool) -> Result<(), SourceError> {
        if self.ingest.catalog().source(name).is_none() {
            return if if_exists {
                Ok(())
            } else {
                Err(StorageError::SourceNotFound(name.to_string()).into())
            };
        }
        self.stop(name).await;
        self.ingest.catalog().drop_source(name)?;
        tracing::info!(source = %name, "source dropped");
        Ok(())
    }

    /// `ALTER SOURCE ... PAUSE | RESUME` (kept across restarts).
    pub fn set_paused(&self, name: &str, paused: bool) -> Result<(), SourceError> {
        self.ingest.catalog().set_source_paused(name, paused)?;
        if let Some(r) = self.running.lock().get(name) {
            let _ = r
                .control
                .send(if paused { Control::Pause } else { Control::Run });
        }
        Ok(())
    }

    /// Every source with its counters.
    pub fn status(&self) -> Vec<SourceStatus> {
        let running = self.running.lock();
        self.ingest
            .catalog()
            .sources()
            .into_iter()
            .map(|def| {
                let stats = running
                    .get(&def.name)
                    .map(|r| r.stats.snapshot())
                    .unwrap_or_else(|| {
                        let s = SourceStats::default();
                        s.set_state(SourceState::Stopped);
                        s.snapshot()
                    });
                SourceStatus {
                    options_shown: options::redacted(&def.options),
                    def,
                    stats,
                }
            })
            .collect()
    }

    /// Stops every source, each finishing (and committing) the batch in hand, so a clean
    /// shutdown hands partitions over without a gap or a duplicate.
    pub async fn shutdown(&self) {
        let names: Vec<String> = self.running.lock().keys().cloned().collect();
        for name in names {
            self.stop(&name).await;
        }
    }

    async fn stop(&self, name: &str) {
        let Some(r) = self.running.lock().remove(name) else {
            return;
        };
        let _ = r.control.send(Control::Stop);
        // A source blocked on a broker that went away is given up on after a while.
        if tokio::time::timeout(Duration::from_secs(30), r.done)
            .await
            .is_err()
        {
            tracing::warn!(source = %name, "source did not stop within 30 s");
        }
    }

    fn start(&self, def: SourceDef) -> Result<(), SourceError> {
        let spec =
            options::parse(&def.name, &def.kind, &def.options).map_err(SourceError::Invalid)?;
        let stats = Arc::new(SourceStats::default());
        let initial = if def.paused {
            Control::Pause
        } else {
            Control::Run
        };
        let (control, control_rx) = watch::channel(initial);
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let task = SourceTask {
            def: def.clone(),
            spec,
            ingest: self.ingest.clone(),
            stats: stats.clone(),
            control: control_rx,
        };
        match &task.spec {
            SourceSpec::Kafka(_) => kafka::spawn(task, done_tx),
            SourceSpec::Mqtt(_) => mqtt::spawn(task, done_tx),
        }
        self.running.lock().insert(
            def.name,
            Running {
                stats,
                control,
                done,
            },
        );
        Ok(())
    }
}

/// What a source's task works with.
pub(crate) struct SourceTask {
    /// Its definition.
    pub def: SourceDef,
    /// Its checked options.
    pub spec: SourceSpec,
    /// The write path.
    pub ingest: Ingest,
    /// Its counters.
    pub stats: Arc<SourceStats>,
    /// What it is asked to do.
    pub control: watch::Receiver<Control>,
}

/// A batch decoded and ready to write.
pub(crate) struct PreparedBatch {
    /// Rows and dead letters, one write.
    parts: Vec<eddy_storage::WritePart>,
    /// The messages that failed: index in the batch and why.
    failed: Vec<(usize, String)>,
}

/// Fewest messages worth a decoding thread of their own.
const MESSAGES_PER_DECODE_THREAD: usize = 16;

/// The source was asked to stop before its batch was committed.
#[derive(Debug)]
pub(crate) struct Stopped;

impl SourceTask {
    /// What the source is asked to do now.
    pub fn wanted(&self) -> Control {
        *self.control.borrow()
    }

    /// Decodes `messages` and commits their rows, their dead letters and `progress` as one
    /// write, retrying a failed write with backoff until it succeeds or the source is stopped.
    /// Returns the rows written.
    pub async fn commit(
        &self,
        messages: &[Message],
        progress: Option<SourceProgress>,
    ) -> Result<u64, Stopped> {
        let prepared = self.prepare(messages);
        self.write(prepared, messages, progress).await
    }

    /// Decodes a batch into the parts of one write (rows and dead letters). Large batches are
    /// decoded on several threads, in slices of consecutive messages whose parts keep their
    /// order, so a key written twice in the batch keeps its later value.
    pub fn prepare(&self, messages: &[Message]) -> Result<PreparedBatch, crate::IngestError> {
        let now = now_ns();
        let common = self.spec.common();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(messages.len() / MESSAGES_PER_DECODE_THREAD)
            .max(1);
        let decoded: Vec<Result<decode::Decoded, crate::IngestError>> = if threads == 1 {
            vec![decode::decode(&self.ingest, &common.format, messages, now)]
        } else {
            let chunk = messages.len().div_ceil(threads);
            std::thread::scope(|scope| {
                let handles: Vec<_> = messages
                    .chunks(chunk)
                    .map(|slice| {
                        scope
                            .spawn(move || decode::decode(&self.ingest, &common.format, slice, now))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Ok(decode::Decoded::default())))
                    .collect()
            })
        };
        let chunk = messages.len().div_ceil(threads).max(1);
        let mut parts = Vec::new();
        let mut failed: Vec<(usize, String)> = Vec::new();
        for (c, d) in decoded.into_iter().enumerate() {
            let d = d?;
            parts.extend(d.prepared.parts);
            failed.extend(d.failed.into_iter().map(|(i, e)| (c * chunk + i, e)));
        }
        if !failed.is_empty() {
            let letters: Vec<DeadLetter<'_>> = failed
                .iter()
                .map(|(i, error)| DeadLetter {
                    source: &self.def.name,
                    message: &messages[*i],
                    error,
                })
                .collect();
            parts.push(dead_letters::part(
                &self.ingest,
                &letters,
                now,
                common.dead_letter_bytes,
            )?);
        }
        Ok(PreparedBatch { parts, failed })
    }

    /// Writes a prepared batch with `progress`; a failed write (or preparation) is retried,
    /// prepared afresh from `messages`, with backoff until it succeeds or the source is
    /// stopped. Returns the rows written.
    pub async fn write(
        &self,
        mut prepared: Result<PreparedBatch, crate::IngestError>,
        messages: &[Message],
        progress: Option<SourceProgress>,
    ) -> Result<u64, Stopped> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = match prepared {
                Ok(batch) => self.try_write(batch, messages, progress.clone()).await,
                Err(e) => Err(e),
            };
            match attempt {
                Ok(rows) => {
                    if self.stats.state() == SourceState::Retrying {
                        self.stats.set_state(SourceState::Running);
                        tracing::info!(source = %self.def.name, "writes succeed again");
                    }
                    self.stats.committed(messages.len() as u64, rows);
                    return Ok(rows);
                }
                Err(e) => {
                    self.stats.error(&e.to_string());
                    self.stats.set_state(SourceState::Retrying);
                    tracing::warn!(
                        source = %self.def.name,
                        error = %e,
                        retry_in_ms = backoff.as_millis() as u64,
                        "cannot write the source's batch; retrying (nothing is consumed meanwhile)"
                    );
                    if self.sleep_unless_stopped(backoff).await {
                        return Err(Stopped);
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    prepared = self.prepare(messages);
                }
            }
        }
    }

    async fn try_write(
        &self,
        batch: PreparedBatch,
        messages: &[Message],
        progress: Option<SourceProgress>,
    ) -> Result<u64, crate::IngestError> {
        let dead = batch.failed.len() as u64;
        let rows = self.ingest.write_atomic(batch.parts, progress).await? - dead;
        if let Some((i, error)) = batch.failed.last() {
            self.ingest.record_rejected(dead);
            self.stats.dead_lettered(dead, error);
            tracing::debug!(
                source = %self.def.name,
                partition = %messages[*i].partition,
                offset = ?messages[*i].offset,
                error = %error,
                "message sent to eddy_dead_letters"
            );
        }
        Ok(rows)
    }

    /// Sleeps, waking early when asked to stop; returns whether it was.
    pub async fn sleep_unless_stopped(&self, d: Duration) -> bool {
        let mut control = self.control.clone();
        let stop = async {
            loop {
                if *control.borrow_and_update() == Control::Stop {
                    return;
                }
                if control.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(d) => self.wanted() == Control::Stop,
            _ = stop => true,
        }
    }
}
