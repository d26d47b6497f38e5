//! The in-memory state of a view: partial aggregate states grouped into chunks of buckets,
//! the buckets waiting to be recomputed, and the recent keys used to detect overwrites.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use datafusion::arrow::array::{Array, BooleanArray, TimestampNanosecondArray};
use datafusion::arrow::record_batch::RecordBatch;

use super::view::ViewStatus;
use crate::error::Result;

/// How far behind the newest row of its series a row may be and still be checked exactly for
/// being an overwrite; older rows are assumed to overwrite (their bucket is recomputed).
pub const OVERWRITE_WINDOW_NS: i64 = 3_600_000_000_000;

/// Partial states of the buckets in one chunk (a fixed span of buckets), with the finalized
/// rows cached until the chunk changes.
#[derive(Debug, Default)]
pub(super) struct Chunk {
    /// Partial accumulator states, in the `Partial` output schema; a group may appear in
    /// several rows until they are reduced.
    pub states: Vec<RecordBatch>,
    /// The view's rows for this chunk at `version`.
    pub finished: Option<Vec<RecordBatch>>,
    /// Value of [`ViewState::clock`] when the chunk last changed.
    pub version: u64,
    /// The checkpoint file holding this chunk as of `version`, if it is saved.
    pub saved: Option<String>,
}

#[derive(Debug)]
pub(super) struct ViewState {
    pub status: ViewStatus,
    /// Chunks by the start of their first bucket.
    pub chunks: BTreeMap<i64, Chunk>,
    /// Bumped on every change; stamps the chunks it changes.
    pub clock: u64,
    /// Buckets to recompute from the source before the next read.
    pub dirty: BTreeSet<i64>,
    /// Keys seen per series (by hash of its tags) within the overwrite window.
    pub series: HashMap<u64, SeriesKeys>,
    /// Rows older than this were not loaded into `series` (after a restart from a
    /// checkpoint) and are assumed to overwrite.
    pub exact_from: i64,
    /// Rows written during backfill, checked against the backfilled data when it completes.
    pub pending: Vec<(u64, i64)>,
    /// [`Self::clock`] when the background finalizer last looked: unchanged since means idle.
    pub warm_seen: u64,
}

impl ViewState {
    pub fn new(status: ViewStatus) -> Self {
        Self {
            status,
            chunks: BTreeMap::new(),
            clock: 0,
            dirty: BTreeSet::new(),
            series: HashMap::new(),
            exact_from: i64::MIN,
            pending: Vec::new(),
            warm_seen: 0,
        }
    }

    /// The chunk starting at `start`, marked changed.
    pub fn touch(&mut self, start: i64) -> &mut Chunk {
        self.clock += 1;
        let clock = self.clock;
        let c = self.chunks.entry(start).or_default();
        c.version = clock;
        c.finished = None;
        c.saved = None;
        c
    }

    /// Rows of state held, over all chunks.
    pub fn state_rows(&self) -> usize {
        self.chunks
            .values()
            .flat_map(|c| c.states.iter())
            .map(|b| b.num_rows())
            .sum()
    }
}

/// The keys of one series within [`OVERWRITE_WINDOW_NS`] of its newest row, sorted. Rows
/// mostly arrive in time order, so the common case is a push at the back and a pop at the front.
#[derive(Debug, Default)]
pub(super) struct SeriesKeys {
    recent: VecDeque<i64>,
}

impl SeriesKeys {
    /// Adds a key; returns whether it is certainly new (so merging it cannot double count).
    pub fn insert(&mut self, t: i64) -> bool {
        let Some(&max) = self.recent.back() else {
            self.recent.push_back(t);
            return true;
        };
        if t > max {
            self.recent.push_back(t);
            let floor = t - OVERWRITE_WINDOW_NS;
            while self.recent.front().is_some_and(|&f| f < floor) {
                self.recent.pop_front();
            }
            return true;
        }
        if t < max - OVERWRITE_WINDOW_NS {
            return false;
        }
        match self.recent.binary_search(&t) {
            Ok(_) => false,
            Err(pos) => {
                self.recent.insert(pos, t);
                true
            }
        }
    }
}

/// Keeps the rows of `batches` whose timestamp in column `col` satisfies `keep`; drops batches
/// left empty. A batch whose column is not a nanosecond timestamp is kept whole.
pub(super) fn filter_rows(
    batches: &[RecordBatch],
    col: usize,
    keep: impl Fn(Option<i64>) -> bool,
) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let Some(ts) = b
            .column(col)
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
        else {
            out.push(b.clone());
            continue;
        };
        let mask: BooleanArray = ts.iter().map(|v| Some(keep(v))).collect();
        let f = datafusion::arrow::compute::filter_record_batch(b, &mask)
            .map_err(|e| super::df_err(e.into()))?;
        if f.num_rows() > 0 {
            out.push(f);
        }
    }
    Ok(out)
}

/// Timestamps of column `col` of a batch (empty when it is not a nanosecond timestamp).
pub(super) fn times(batch: &RecordBatch, col: usize) -> &[i64] {
    batch
        .column(col)
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .map(|a| a.values().as_ref())
        .unwrap_or_default()
}
