//! The rows of one cursor and its position in them, moved by PostgreSQL's rules for `FETCH`
//! and `MOVE`. Rows are computed as the cursor reaches them. A `SCROLL` cursor keeps every
//! row it has read (charged to the server's query memory) so it can go back; any other cursor
//! keeps only rows it has not passed and refuses to go back, as PostgreSQL's `NO SCROLL` does.

use std::collections::VecDeque;

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::memory_pool::MemoryReservation;
use futures::StreamExt;

use super::command::Direction;
use crate::error::{PgError, Result};

/// A cursor's result rows as far as they have been read, and where the cursor stands.
pub(super) struct CursorRows {
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
    /// `Some` for a `SCROLL` cursor: what its kept rows hold of the query memory.
    scroll: Option<MemoryReservation>,
    /// Rows read and not dropped, in order; the first row of the first batch is row
    /// `first_kept` (rows count from 1).
    kept: VecDeque<RecordBatch>,
    first_kept: u64,
    /// Rows read from the stream so far.
    read: u64,
    /// How many rows the query has, once its stream has ended.
    total: Option<u64>,
    /// PostgreSQL's position: 0 before the first row, `k` on row `k`, `total + 1` after the
    /// last.
    pos: u64,
}

fn scroll_needed() -> PgError {
    PgError::new(
        "55000",
        "cursor can only scan forward; declare it with SCROLL to move backward or fetch a row again",
    )
}

impl CursorRows {
    /// A cursor before the first row of `stream`; `scroll` holds the reservation its kept rows
    /// are charged to, for a `SCROLL` cursor.
    pub(super) fn new(
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
        scroll: Option<MemoryReservation>,
    ) -> Self {
        CursorRows {
            schema,
            stream,
            scroll,
            kept: VecDeque::new(),
            first_kept: 1,
            read: 0,
            total: None,
            pos: 0,
        }
    }

    /// The result columns.
    pub(super) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Moves as `direction` says. Returns the rows passed over or landed on (none for
    /// `move_only`) and their count, which is what `FETCH n` / `MOVE n` report.
    pub(super) async fn go(
        &mut self,
        direction: Direction,
        move_only: bool,
    ) -> Result<(Vec<RecordBatch>, u64)> {
        let scroll = self.scroll.is_some();
        match direction {
            Direction::Forward(n) => {
                let target = self.pos.saturating_add(n);
                let keep_from = if move_only { target } else { self.pos + 1 };
                self.read_to(target, keep_from).await?;
                let last = target.min(self.read);
                let from = self.pos + 1;
                self.pos = if target <= self.read {
                    target
                } else {
                    self.read + 1
                };
                self.rows(from, last, move_only, false)
            }
            Direction::Backward(n) => {
                if !scroll {
                    return Err(scroll_needed());
                }
                let to = self.pos.saturating_sub(n);
                let from = self.pos.saturating_sub(1);
                self.pos = to;
                self.rows(to.max(1), from, move_only, true)
            }
            Direction::Absolute(k) if k > 0 => {
                let k = k.unsigned_abs();
                if !scroll && k <= self.pos {
                    return Err(scroll_needed());
                }
                self.land_forward(k, move_only).await
            }
            Direction::Absolute(0) => {
                if !scroll && self.pos != 0 {
                    return Err(scroll_needed());
                }
                self.pos = 0;
                Ok((Vec::new(), 0))
            }
            Direction::Absolute(k) => {
                if !scroll {
                    return Err(scroll_needed());
                }
                self.read_to(u64::MAX, u64::MAX).await?;
                let back = k.unsigned_abs();
                // Row `read + 1 - back`, if there is one.
                if back <= self.read {
                    self.land_back(self.read + 1 - back, move_only)
                } else {
                    self.pos = 0;
                    Ok((Vec::new(), 0))
                }
            }
            Direction::Relative(k) if k > 0 => {
                self.land_forward(self.pos.saturating_add(k.unsigned_abs()), move_only)
                    .await
            }
            Direction::Relative(0) => {
                let on_row = self.pos >= 1 && self.total.is_none_or(|n| self.pos <= n);
                if !on_row {
                    return Ok((Vec::new(), 0));
                }
                if move_only {
                    return Ok((Vec::new(), 1));
                }
                if !scroll {
                    return Err(scroll_needed());
                }
                self.rows(self.pos, self.pos, false, false)
            }
            Direction::Relative(k) => {
                if !scroll {
                    return Err(scroll_needed());
                }
                let back = k.unsigned_abs();
                if back < self.pos {
                    self.land_back(self.pos - back, move_only)
                } else {
                    self.pos = 0;
                    Ok((Vec::new(), 0))
                }
            }
        }
    }

    /// Goes to row `k` at or after the current position, or past the end when there is none.
    async fn land_forward(&mut self, k: u64, move_only: bool) -> Result<(Vec<RecordBatch>, u64)> {
        self.read_to(k, k).await?;
        if k <= self.read {
            self.pos = k;
            self.rows(k, k, move_only, false)
        } else {
            self.pos = self.read + 1;
            Ok((Vec::new(), 0))
        }
    }

    /// Goes to row `k`, which has been read (a `SCROLL` cursor keeps it).
    fn land_back(&mut self, k: u64, move_only: bool) -> Result<(Vec<RecordBatch>, u64)> {
        self.pos = k;
        self.rows(k, k, move_only, false)
    }

    /// Reads until row `row` is read or the rows end. A cursor without `SCROLL` drops the rows
    /// before `keep_from` as it goes, so skipping ahead holds no more than a batch.
    async fn read_to(&mut self, row: u64, keep_from: u64) -> Result<()> {
        while self.read < row && self.total.is_none() {
            let Some(batch) = self.stream.next().await else {
                self.total = Some(self.read);
                break;
            };
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            self.read += batch.num_rows() as u64;
            if let Some(reservation) = &mut self.scroll {
                reservation
                    .try_grow(batch.get_array_memory_size())
                    .map_err(|e| {
                        PgError::new(
                            "53200",
                            format!(
                                "a SCROLL cursor keeps every row it reads, and its {} rows exceed the query memory limit; fetch through a cursor without SCROLL to walk this result: {e}",
                                self.read
                            ),
                        )
                    })?;
            }
            self.kept.push_back(batch);
            if self.scroll.is_none() {
                self.drop_before(keep_from);
            }
        }
        if self.scroll.is_none() {
            self.drop_before(keep_from);
        }
        Ok(())
    }

    /// Drops the kept batches that end before row `row`.
    fn drop_before(&mut self, row: u64) {
        while let Some(front) = self.kept.front() {
            let end = self.first_kept + front.num_rows() as u64;
            if end > row {
                break;
            }
            self.first_kept = end;
            self.kept.pop_front();
        }
    }

    /// Rows `from..=to` (none when `to < from`), nearest first when `backward`, and how many.
    fn rows(
        &self,
        from: u64,
        to: u64,
        count_only: bool,
        backward: bool,
    ) -> Result<(Vec<RecordBatch>, u64)> {
        if to < from {
            return Ok((Vec::new(), 0));
        }
        let count = to - from + 1;
        if count_only {
            return Ok((Vec::new(), count));
        }
        let mut out = Vec::new();
        let mut start = self.first_kept;
        for batch in &self.kept {
            let end = start + batch.num_rows() as u64;
            let (a, b) = (from.max(start), (to + 1).min(end));
            if a < b {
                out.push(batch.slice((a - start) as usize, (b - a) as usize));
            }
            start = end;
        }
        if backward {
            let all = concat_batches(&self.schema, &out)?;
            let last = u32::try_from(all.num_rows()).map_err(|_| {
                PgError::new("54000", "FETCH BACKWARD returns at most 4294967295 rows")
            })?;
            let reversed = UInt32Array::from_iter_values((0..last).rev());
            out = vec![take_record_batch(&all, &reversed)?];
        }
        Ok((out, count))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryConsumer, MemoryPool};
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

    use super::*;
    use Direction::*;

    /// A cursor over rows 1..=n in batches of 3.
    fn cursor(n: i64, scroll: bool) -> CursorRows {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batches: Vec<_> = (1..=n)
            .collect::<Vec<_>>()
            .chunks(3)
            .map(|c| {
                Ok(RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(Int64Array::from(c.to_vec()))],
                )?)
            })
            .collect();
        let stream = Box::pin(RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::iter(batches),
        ));
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(1 << 20));
        let reservation = scroll.then(|| MemoryConsumer::new("test").register(&pool));
        CursorRows::new(schema, stream, reservation)
    }

    async fn fetch(c: &mut CursorRows, d: Direction) -> Vec<i64> {
        let (batches, count) = c.go(d, false).await.expect("fetch");
        let values: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                let a = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("ints");
                (0..a.len()).map(|i| a.value(i)).collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(values.len() as u64, count, "{d:?}");
        values
    }

    async fn move_by(c: &mut CursorRows, d: Direction) -> u64 {
        let (batches, count) = c.go(d, true).await.expect("move");
        assert!(batches.is_empty());
        count
    }

    /// The answers PostgreSQL 16 gives for `DECLARE c SCROLL CURSOR FOR SELECT
    /// generate_series(1, 10)` followed by these statements, in order.
    #[tokio::test]
    async fn scroll_cursor_moves_as_postgresql_does() {
        let mut c = cursor(10, true);
        assert_eq!(fetch(&mut c, Backward(1)).await, Vec::<i64>::new());
        assert_eq!(fetch(&mut c, Forward(1)).await, [1]);
        assert_eq!(fetch(&mut c, Forward(4)).await, [2, 3, 4, 5]);
        assert_eq!(fetch(&mut c, Relative(0)).await, [5]);
        assert_eq!(fetch(&mut c, Backward(2)).await, [4, 3]);
        assert_eq!(fetch(&mut c, Absolute(-1)).await, [10]);
        assert_eq!(fetch(&mut c, Forward(1)).await, Vec::<i64>::new());
        assert_eq!(fetch(&mut c, Relative(0)).await, Vec::<i64>::new());
        assert_eq!(fetch(&mut c, Backward(1)).await, [10]);
        assert_eq!(
            move_by(&mut c, Forward(super::super::command::ALL)).await,
            0
        );
        assert_eq!(fetch(&mut c, Backward(3)).await, [10, 9, 8]);
        assert_eq!(fetch(&mut c, Absolute(3)).await, [3]);
        assert_eq!(fetch(&mut c, Relative(-2)).await, [1]);
        assert_eq!(fetch(&mut c, Relative(-1)).await, Vec::<i64>::new());
        assert_eq!(fetch(&mut c, Forward(1)).await, [1]);
        assert_eq!(move_by(&mut c, Relative(0)).await, 1);
        assert_eq!(move_by(&mut c, Forward(20)).await, 9);
        assert_eq!(
            move_by(&mut c, Backward(super::super::command::ALL)).await,
            10
        );
        assert_eq!(fetch(&mut c, Absolute(-10)).await, [1]);
        assert_eq!(fetch(&mut c, Absolute(-11)).await, Vec::<i64>::new());
        assert_eq!(fetch(&mut c, Absolute(11)).await, Vec::<i64>::new());
        assert_eq!(fetch(&mut c, Backward(1)).await, [10]);
        assert_eq!(move_by(&mut c, Absolute(0)).await, 0);
        assert_eq!(fetch(&mut c, Relative(4)).await, [4]);
        assert_eq!(
            fetch(&mut c, Forward(super::super::command::ALL)).await,
            [5, 6, 7, 8, 9, 10]
        );
    }

    #[tokio::test]
    async fn forward_only_cursor_skips_without_keeping_rows_and_refuses_to_go_back() {
        let mut c = cursor(10, false);
        assert_eq!(fetch(&mut c, Absolute(1)).await, [1]);
        assert_eq!(move_by(&mut c, Forward(5)).await, 5);
        assert!(c.kept.len() <= 1, "kept {} batches", c.kept.len());
        assert_eq!(fetch(&mut c, Relative(2)).await, [8]);
        assert_eq!(move_by(&mut c, Relative(0)).await, 1);
        for back in [
            Backward(1),
            Relative(-1),
            Relative(0),
            Absolute(-1),
            Absolute(8),
            Absolute(0),
        ] {
            let e = c.go(back, false).await.expect_err("backward");
            assert_eq!(e.sqlstate, "55000", "{back:?}");
            assert!(e.message.contains("SCROLL"), "{e}");
        }
        assert_eq!(fetch(&mut c, Absolute(9)).await, [9]);
        assert_eq!(fetch(&mut c, Forward(5)).await, [10]);
        assert_eq!(fetch(&mut c, Forward(1)).await, Vec::<i64>::new());
    }

    #[tokio::test]
    async fn scroll_cursor_rows_are_charged_to_query_memory() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let big = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..100_000))],
        )
        .expect("batch");
        let stream = Box::pin(RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::iter(vec![Ok(big.clone()), Ok(big)]),
        ));
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(1_000_000));
        let mut c = CursorRows::new(
            schema,
            stream,
            Some(MemoryConsumer::new("test").register(&pool)),
        );
        let e = c.go(Absolute(-1), false).await.expect_err("over the limit");
        assert_eq!(e.sqlstate, "53200");
        assert!(e.message.contains("SCROLL"), "{e}");
    }
}
