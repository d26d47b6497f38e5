//! SQL cursors of a session: `DECLARE name CURSOR FOR query` starts the query and keeps its
//! result stream paused, `FETCH` pulls the next rows from it, `CLOSE` drops it. Rows are
//! computed as they are fetched, so a client can walk a large result a page at a time
//! (psycopg's named cursors, SQLAlchemy's `stream_results`).

use std::collections::HashMap;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use parking_lot::Mutex;

use crate::error::{QueryError, Result};

/// One open cursor.
struct Cursor {
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
    /// Rows read from the stream but not fetched yet.
    pending: Option<RecordBatch>,
    /// `WITH HOLD`: survives the end of the transaction.
    hold: bool,
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

fn missing(name: &str) -> QueryError {
    QueryError::new("34000", format!("cursor \"{name}\" does not exist"))
}

impl Cursors {
    /// Opens cursor `name` over a started query.
    pub fn declare(
        &self,
        name: &str,
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
        hold: bool,
    ) -> Result<()> {
        let mut open = self.open.lock();
        if open.contains_key(name) {
            return Err(QueryError::new(
                "42P03",
                format!("cursor \"{name}\" already exists"),
            ));
        }
        open.insert(
            name.to_string(),
            Cursor {
                schema,
                stream,
                pending: None,
                hold,
            },
        );
        Ok(())
    }

    /// The result columns of cursor `name`, if it is open.
    pub fn schema(&self, name: &str) -> Option<SchemaRef> {
        self.open.lock().get(name).map(|c| c.schema.clone())
    }

    /// The next `count` rows of cursor `name` (all that remain for `None`); fewer at the end.
    pub async fn fetch(
        &self,
        name: &str,
        count: Option<u64>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let mut cursor = self.open.lock().remove(name).ok_or_else(|| missing(name))?;
        let schema = cursor.schema.clone();
        let rows = next_rows(&mut cursor, count).await?;
        // A cursor whose query failed is gone, as in PostgreSQL.
        self.open.lock().insert(name.to_string(), cursor);
        Ok((schema, rows))
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
        self.open.lock().retain(|_, c| c.hold);
    }
}

async fn next_rows(cursor: &mut Cursor, count: Option<u64>) -> Result<Vec<RecordBatch>> {
    let mut want = count.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let mut out = Vec::new();
    while want > 0 {
        let batch = match cursor.pending.take() {
            Some(b) => b,
            None => match cursor.stream.next().await {
                Some(b) => b?,
                None => break,
            },
        };
        if batch.num_rows() > want {
            out.push(batch.slice(0, want));
            cursor.pending = Some(batch.slice(want, batch.num_rows() - want));
            break;
        }
        want -= batch.num_rows();
        if batch.num_rows() > 0 {
            out.push(batch);
        }
    }
    Ok(out)
}
