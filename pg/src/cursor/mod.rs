//! SQL cursors of a session: `DECLARE name [SCROLL] CURSOR FOR query` starts the query and
//! keeps its result stream paused, `FETCH` and `MOVE` walk it (forward, or any way for a
//! `SCROLL` cursor), `CLOSE` drops it, and `pg_cursors` lists the open ones. Rows are
//! computed as they are reached, so a client can walk a large result a page at a time
//! (psycopg's named cursors, SQLAlchemy's `stream_results`).

pub mod command;
mod rows;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{BooleanArray, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use parking_lot::Mutex;

use self::command::CursorCommand;
use self::rows::CursorRows;
use crate::error::{PgError, Result};

/// What `DECLARE` said about a cursor.
#[derive(Debug, Clone)]
pub struct Declaration {
    /// Cursor name.
    pub name: String,
    /// The `DECLARE` statement, as `pg_cursors` shows it.
    pub statement: String,
    /// `WITH HOLD`: the cursor outlives the transaction.
    pub hold: bool,
    /// `SCROLL`: the cursor can move backward.
    pub scroll: bool,
}

/// One open cursor.
struct Cursor {
    declaration: Declaration,
    /// When it was declared, in microseconds since the epoch.
    created_us: i64,
    rows: CursorRows,
}

/// The open cursors of a session, by name.
#[derive(Default)]
pub struct Cursors {
    /// A cursor being fetched from is taken out of the map for the duration (the session runs
    /// one statement at a time), so the lock is never held across an await.
    open: Mutex<HashMap<String, Cursor>>,
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.open.lock().keys().cloned().collect();
        f.debug_struct("Cursors").field("open", &names).finish()
    }
}

fn missing(name: &str) -> PgError {
    PgError::new("34000", format!("cursor \"{name}\" does not exist"))
}

impl Cursors {
    /// Opens a cursor over a started query; a `SCROLL` cursor's kept rows are charged to
    /// `memory` (the server's query memory).
    pub fn declare(
        &self,
        declaration: Declaration,
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
        memory: &Arc<dyn MemoryPool>,
    ) -> Result<()> {
        let mut open = self.open.lock();
        let name = declaration.name.clone();
        if open.contains_key(&name) {
            return Err(PgError::new(
                "42P03",
                format!("cursor \"{name}\" already exists"),
            ));
        }
        let reservation = declaration
            .scroll
            .then(|| MemoryConsumer::new(format!("SCROLL cursor {name}")).register(memory));
        let created_us = eddy_storage::time::now_ns() / 1_000;
        open.insert(
            name,
            Cursor {
                declaration,
                created_us,
                rows: CursorRows::new(schema, stream, reservation),
            },
        );
        Ok(())
    }

    /// The result columns of cursor `name`, if it is open.
    pub fn schema(&self, name: &str) -> Option<SchemaRef> {
        self.open.lock().get(name).map(|c| c.rows.schema().clone())
    }

    /// Runs a `FETCH` or `MOVE`: the rows it returns (none for `MOVE`) and the count its
    /// command tag reports.
    pub async fn fetch(
        &self,
        command: &CursorCommand,
    ) -> Result<(SchemaRef, Vec<RecordBatch>, u64)> {
        let name = command.name.as_str();
        let mut cursor = self.open.lock().remove(name).ok_or_else(|| missing(name))?;
        let schema = cursor.rows.schema().clone();
        let result = cursor.rows.go(command.direction, command.move_only).await;
        // A cursor whose query failed is gone, as in PostgreSQL; one asked to move where it
        // cannot stays where it was.
        if result.is_ok() || result.as_ref().is_err_and(|e| e.sqlstate == "55000") {
            self.open.lock().insert(name.to_string(), cursor);
        }
        let (rows, count) = result?;
        Ok((schema, rows, count))
    }

    /// Closes cursor `name`, or every cursor for `None` (`CLOSE ALL`).
    pub fn close(&self, name: Option<&str>) -> Result<()> {
        let mut open = self.open.lock();
        match name {
            Some(n) => open.remove(n).map(drop).ok_or_else(|| missing(n)),
            None => {
                open.clear();
                Ok(())
            }
        }
    }

    /// The transaction ended (`COMMIT`, `ROLLBACK`): cursors without `WITH HOLD` close.
    pub fn end_transaction(&self) {
        self.open.lock().retain(|_, c| c.declaration.hold);
    }

    /// The columns of `pg_cursors`.
    pub fn listing_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("statement", DataType::Utf8, false),
            Field::new("is_holdable", DataType::Boolean, false),
            Field::new("is_binary", DataType::Boolean, false),
            Field::new("is_scrollable", DataType::Boolean, false),
            Field::new(
                "creation_time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]))
    }

    /// The open cursors as `pg_cursors` rows, by name.
    pub fn listing(&self) -> Result<RecordBatch> {
        let open = self.open.lock();
        let mut cursors: Vec<&Cursor> = open.values().collect();
        cursors.sort_by(|a, b| a.declaration.name.cmp(&b.declaration.name));
        let d = |f: fn(&Declaration) -> bool| {
            Arc::new(BooleanArray::from_iter(
                cursors.iter().map(|c| Some(f(&c.declaration))),
            ))
        };
        Ok(RecordBatch::try_new(
            Self::listing_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    cursors.iter().map(|c| c.declaration.name.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    cursors.iter().map(|c| c.declaration.statement.as_str()),
                )),
                d(|d| d.hold),
                // BINARY cursors are refused at DECLARE.
                d(|_| false),
                d(|d| d.scroll),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(
                        cursors.iter().map(|c| c.created_us),
                    )
                    .with_timezone("UTC"),
                ),
            ],
        )?)
    }
}
