//! Eddy's write path, the only way data is written: line protocol (parsed, checked against the
//! catalog, created columns on write, filtered by retention) and Arrow batches (COPY, INSERT),
//! each committed durably through the storage engine.
//!
//! An [`Ingest`] handle is made from a [`Db`] and the commit hook that maintains continuous
//! aggregates, which it installs: no write can reach storage without view maintenance. Front
//! ends only decode their protocol and encode the answer; what is accepted, rejected and with
//! which message is decided here. The crate knows nothing of SQL or the network.

pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod lineproto;
pub mod metrics;
mod retention;
pub mod sources;

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use eddy_storage::{Catalog, CommitHook, Db, SourceProgress, StorageError, TableSchema, WritePart};

pub use error::IngestError;
pub use lineproto::{LINE_BYTES_MAX, LineError, Precision};
pub use metrics::{FrontEnd, IngestMetrics};

/// Result of writing one line-protocol request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LineOutcome {
    /// Lines written durably.
    pub lines_written: usize,
    /// Lines rejected, by line number.
    pub errors: Vec<LineError>,
}

/// Line protocol turned into one batch per table, checked against the catalog and retention,
/// not yet written: the parts of one atomic write ([`Ingest::write_atomic`]).
#[derive(Debug, Default)]
pub struct PreparedLines {
    /// One part per table.
    pub parts: Vec<WritePart>,
    /// The line numbers of each part's rows, in the same order.
    pub lines: Vec<Vec<usize>>,
    /// Lines rejected, by line number.
    pub errors: Vec<LineError>,
}

/// Handle to the write path; cheap to clone.
#[derive(Debug, Clone)]
pub struct Ingest {
    db: Db,
    metrics: IngestMetrics,
    /// Whose writes this handle counts.
    front_end: FrontEnd,
}

impl Ingest {
    /// The write path over `db`; installs `maintenance` (the continuous aggregates) as the
    /// storage commit hook, so every write it commits keeps the views current.
    pub fn new(db: Db, maintenance: Arc<dyn CommitHook>) -> Ingest {
        db.set_commit_hook(maintenance);
        Ingest {
            db,
            metrics: IngestMetrics::new(),
            front_end: FrontEnd::Other,
        }
    }

    /// The same write path, its writes counted as `front_end`'s in the metrics.
    pub fn for_front_end(&self, front_end: FrontEnd) -> Ingest {
        Ingest {
            front_end,
            ..self.clone()
        }
    }

    /// The write path's metrics, to register with the node's Prometheus registry.
    pub fn metrics(&self) -> &IngestMetrics {
        &self.metrics
    }

    /// Counts rows the front end refused before they reached the write path (a line too
    /// long to parse), so the rejected rows of a front end are all counted in one place.
    pub fn record_rejected(&self, rows: u64) {
        self.metrics.rejected(self.front_end, rows);
    }

    /// The storage engine written to.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The catalog of tables.
    pub fn catalog(&self) -> &Catalog {
        self.db.catalog()
    }

    /// Parses line protocol and writes it: schema on write, retention, then one durable write
    /// per table. Bad lines are reported with their line number and reason while good lines
    /// are written; a table whose rows cannot be written (its schema changed in a conflicting
    /// way meanwhile) has all its lines reported as rejected. A storage failure is an error:
    /// nothing after it was written. `now_ns` is the time of lines without a timestamp.
    pub async fn write_lp(
        &self,
        body: &[u8],
        precision: Precision,
        now_ns: i64,
    ) -> Result<LineOutcome, IngestError> {
        let outcome = self.write_lp_uncounted(body, precision, now_ns).await;
        match &outcome {
            Ok(o) => {
                let (rows, bytes) = (o.lines_written as u64, body.len() as u64);
                self.metrics.written(self.front_end, rows, bytes);
                self.metrics.rejected(self.front_end, o.errors.len() as u64);
            }
            Err(_) => self.metrics.failed(self.front_end),
        }
        outcome
    }

    /// [`Ingest::write_lp`] without the metrics.
    async fn write_lp_uncounted(
        &self,
        body: &[u8],
        precision: Precision,
        now_ns: i64,
    ) -> Result<LineOutcome, IngestError> {
        let prepared = self.prepare_lines(lineproto::parse(body, precision, now_ns))?;
        let mut outcome = LineOutcome {
            lines_written: 0,
            errors: prepared.errors,
        };
        // One write per table: a table whose schema changed meanwhile has its lines rejected
        // while the other tables are written.
        for (part, lines) in prepared.parts.into_iter().zip(prepared.lines) {
            match self.db.write_to(&part.schema, part.batch).await {
                Ok(_) => outcome.lines_written += lines.len(),
                Err(e @ StorageError::TypeConflict { .. }) => {
                    reject_all(&mut outcome.errors, &lines, &e.to_string());
                }
                Err(e) => return Err(IngestError::storage(part.schema.name(), e)),
            }
        }
        outcome.errors.sort_by_key(|e| e.line);
        Ok(outcome)
    }

    /// Prepares parsed lines for one atomic write (stream sources): schema on write and
    /// retention as [`Ingest::write_lp`] applies them, line by line, without writing.
    #[allow(clippy::result_large_err)] // once per write, not per row
    pub fn prepare_lines(
        &self,
        parsed: lineproto::ParsedLines<'_>,
    ) -> Result<PreparedLines, IngestError> {
        let built = lineproto::batch::build(parsed, self.db.catalog());
        let mut out = PreparedLines {
            errors: built.errors,
            ..Default::default()
        };
        for rows in built.tables {
            let schema = match self.db.catalog().ensure_columns(&rows.table, &rows.columns) {
                Ok(s) => s,
                Err(
                    e @ (StorageError::TypeConflict { .. }
                    | StorageError::InvalidSchema { .. }
                    | StorageError::LimitExceeded(_)),
                ) => {
                    reject_all(&mut out.errors, &rows.lines, &e.to_string());
                    continue;
                }
                Err(e) => return Err(IngestError::storage(rows.table, e)),
            };
            let lines = rows.lines.clone();
            let batch = match rows.into_batch(&schema) {
                Ok(b) => b,
                Err(message) => {
                    reject_all(&mut out.errors, &lines, &message);
                    continue;
                }
            };
            let (batch, lines) =
                retention::drop_expired(&self.db, &schema, batch, lines, &mut out.errors)
                    .map_err(|e| IngestError::storage(schema.name(), e.into()))?;
            if lines.is_empty() {
                continue;
            }
            out.parts.push(WritePart { schema, batch });
            out.lines.push(lines);
        }
        out.errors.sort_by_key(|e| e.line);
        Ok(out)
    }

    /// Writes several tables' rows and a stream source's progress as one durable unit
    /// (see [`Db::write_atomic`]). Returns the rows written.
    pub async fn write_atomic(
        &self,
        parts: Vec<WritePart>,
        progress: Option<SourceProgress>,
    ) -> Result<u64, IngestError> {
        let rows: u64 = parts.iter().map(|p| p.batch.num_rows() as u64).sum();
        let bytes: u64 = parts
            .iter()
            .map(|p| p.batch.get_array_memory_size() as u64)
            .sum();
        let table = parts
            .first()
            .map(|p| p.schema.name().to_string())
            .unwrap_or_default();
        match self.db.write_atomic(parts, progress).await {
            Ok(_) => {
                self.metrics.written(self.front_end, rows, bytes);
                Ok(rows)
            }
            Err(e) => {
                self.metrics.failed(self.front_end);
                Err(IngestError::storage(table, e))
            }
        }
    }

    /// Writes a batch to a table (COPY, INSERT, bulk sources): its columns are checked against
    /// the table's and coerced, rows beyond the table's retention refuse the whole batch, and
    /// the rows are durable when this returns. Returns the number of rows written.
    pub async fn write_batch(
        &self,
        schema: &Arc<TableSchema>,
        batch: RecordBatch,
    ) -> Result<u64, IngestError> {
        let rows = batch.num_rows() as u64;
        let bytes = batch.get_array_memory_size() as u64;
        match self.db.write_to(schema, batch).await {
            Ok(_) => {
                self.metrics.written(self.front_end, rows, bytes);
                Ok(rows)
            }
            Err(e) => {
                self.metrics.rejected(self.front_end, rows);
                self.metrics.failed(self.front_end);
                Err(IngestError::storage(schema.name(), e))
            }
        }
    }

    /// [`Ingest::write_batch`] to the table of that name, as the catalog has it now.
    pub async fn write_batch_to_table(
        &self,
        table: &str,
        batch: RecordBatch,
    ) -> Result<u64, IngestError> {
        let schema = self.db.catalog().get(table).ok_or_else(|| {
            IngestError::storage(table, StorageError::TableNotFound(table.to_string()))
        })?;
        self.write_batch(&schema, batch).await
    }
}

/// Reports every line of `lines` as rejected with `message`.
fn reject_all(errors: &mut Vec<LineError>, lines: &[usize], message: &str) {
    errors.extend(lines.iter().map(|&line| LineError {
        line,
        message: message.to_string(),
    }));
}
