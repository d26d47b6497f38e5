//! The statements running now: what the `eddy_queries` system table lists, what
//! `pg_cancel_backend(pid)` stops, and where statements are counted and timed.
//!
//! A front end registers each statement as it starts ([`RunningQueries::start`]) and holds
//! the [`RunningQuery`] guard it gets for as long as the statement runs. Rows are computed as
//! the client reads them, so the guard must travel with the result stream: dropping it is
//! what ends the statement here (it leaves the list, its duration is recorded).
//!
//! Cancelling calls the cancel handle the front end registered, the same one its own protocol
//! uses (the Postgres cancel request), so a statement stopped by pid ends exactly like one
//! stopped by its client.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use datafusion::arrow::array::{
    DurationMicrosecondArray, Int32Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::Result as DfResult;
use parking_lot::Mutex;

use crate::limits::QUERY_TEXT_CHARS_MAX;
use crate::metrics::QueryMetrics;

/// Name of the system table listing the statements running now.
pub const QUERIES_TABLE: &str = "eddy_queries";

/// The ids HTTP statements get cycle through `1..=HTTP_PIDS`: below the Postgres backend
/// pids, which pgwire hands out counting up from 100000, so one `pg_cancel_backend(pid)`
/// never names both.
const HTTP_PIDS: u32 = 99_999;

/// Stops one running statement; called with no lock held.
pub type CancelHandle = Arc<dyn Fn() + Send + Sync>;

/// The protocol a statement came over: the `protocol` label of the statement metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// The Postgres wire protocol.
    Pg,
    /// HTTP.
    Http,
    /// Arrow Flight SQL.
    Flight,
}

impl Protocol {
    /// Every protocol, in label order.
    pub const ALL: [Protocol; 3] = [Protocol::Pg, Protocol::Http, Protocol::Flight];

    /// The label value, and the `protocol` column of `eddy_queries`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Pg => "pg",
            Protocol::Http => "http",
            Protocol::Flight => "flight",
        }
    }

    /// The label set of the statement metrics.
    pub(crate) fn labels(self) -> [(&'static str, &'static str); 1] {
        [("protocol", self.as_str())]
    }
}

/// Who runs a statement, and its text, as a front end registers it.
#[derive(Debug, Clone)]
pub struct QueryInfo {
    /// The session's id: the backend pid for Postgres, [`RunningQueries::next_http_pid`]
    /// for HTTP.
    pub pid: i32,
    /// The protocol.
    pub protocol: Protocol,
    /// The user the session logged in as.
    pub user: String,
    /// The client's address, if known.
    pub client_addr: Option<String>,
    /// The statement's text (cut to [`QUERY_TEXT_CHARS_MAX`] characters when registered).
    pub query: String,
}

/// One registered statement.
struct Entry {
    info: QueryInfo,
    started_us: i64,
    started: Instant,
    cancel: CancelHandle,
    /// A cancel was sent and the statement has not ended yet.
    cancelling: bool,
}

/// The statements running now; one per engine.
pub struct RunningQueries {
    entries: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    next_http_pid: AtomicU32,
    metrics: QueryMetrics,
}

impl std::fmt::Debug for RunningQueries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningQueries")
            .field("running", &self.entries.lock().len())
            .finish_non_exhaustive()
    }
}

/// `sql` cut to at most [`QUERY_TEXT_CHARS_MAX`] characters.
pub fn clip_query(sql: &str) -> &str {
    match sql.char_indices().nth(QUERY_TEXT_CHARS_MAX) {
        Some((end, _)) => &sql[..end],
        None => sql,
    }
}

impl RunningQueries {
    /// An empty list whose statements are counted in `metrics`.
    pub fn new(metrics: QueryMetrics) -> Arc<RunningQueries> {
        Arc::new(RunningQueries {
            entries: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            next_http_pid: AtomicU32::new(0),
            metrics,
        })
    }

    /// The statement metrics, to register with the node's Prometheus registry.
    pub fn metrics(&self) -> &QueryMetrics {
        &self.metrics
    }

    /// An id for an HTTP (or Flight SQL) statement, from a range Postgres backend pids never
    /// use.
    pub fn next_http_pid(&self) -> i32 {
        let n = self.next_http_pid.fetch_add(1, Ordering::Relaxed) % HTTP_PIDS;
        i32::try_from(n + 1).unwrap_or(i32::MAX)
    }

    /// Registers a statement that starts now; `cancel` stops it. It is listed, and counted as
    /// running, until the guard is dropped.
    pub fn start(self: &Arc<Self>, mut info: QueryInfo, cancel: CancelHandle) -> RunningQuery {
        let clipped = clip_query(&info.query).len();
        info.query.truncate(clipped);
        let protocol = info.protocol;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let entry = Entry {
            info,
            started_us: eddy_storage::time::now_ns() / 1_000,
            started,
            cancel,
            cancelling: false,
        };
        self.entries.lock().insert(id, entry);
        self.metrics.started(protocol);
        RunningQuery {
            queries: self.clone(),
            id,
            protocol,
            started,
            failed: false,
        }
    }

    /// Cancels every statement session `pid` is running; returns whether there was one.
    pub fn cancel(&self, pid: i32) -> bool {
        let handles: Vec<CancelHandle> = {
            let mut entries = self.entries.lock();
            entries
                .values_mut()
                .filter(|e| e.info.pid == pid)
                .map(|e| {
                    e.cancelling = true;
                    e.cancel.clone()
                })
                .collect()
        };
        // Outside the lock: a handle may wake the statement, which then drops its guard.
        for cancel in &handles {
            cancel();
        }
        !handles.is_empty()
    }

    /// The columns of `eddy_queries`.
    pub fn table_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("pid", DataType::Int32, false),
            Field::new("protocol", DataType::Utf8, false),
            Field::new("user_name", DataType::Utf8, false),
            Field::new("client_addr", DataType::Utf8, true),
            Field::new(
                "started",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("duration", DataType::Duration(TimeUnit::Microsecond), false),
            Field::new("state", DataType::Utf8, false),
            Field::new("query", DataType::Utf8, false),
        ]))
    }

    /// The rows of `eddy_queries`: every statement running now, oldest first.
    pub fn table(&self) -> DfResult<RecordBatch> {
        let entries = self.entries.lock();
        let mut rows: Vec<&Entry> = entries.values().collect();
        rows.sort_by_key(|e| e.started);
        let running_us =
            |e: &Entry| i64::try_from(e.started.elapsed().as_micros()).unwrap_or(i64::MAX);
        Ok(RecordBatch::try_new(
            Self::table_schema(),
            vec![
                Arc::new(Int32Array::from_iter_values(
                    rows.iter().map(|e| e.info.pid),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|e| e.info.protocol.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|e| e.info.user.as_str()),
                )),
                Arc::new(StringArray::from_iter(
                    rows.iter().map(|e| e.info.client_addr.as_deref()),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|e| e.started_us))
                        .with_timezone("UTC"),
                ),
                Arc::new(DurationMicrosecondArray::from_iter_values(
                    rows.iter().map(|&e| running_us(e)),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter()
                        .map(|e| if e.cancelling { "cancelling" } else { "active" }),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|e| e.info.query.as_str()),
                )),
            ],
        )?)
    }
}

/// A registered statement; dropping it ends the statement in the list and the metrics.
/// Hold it as long as the statement's result stream.
pub struct RunningQuery {
    queries: Arc<RunningQueries>,
    id: u64,
    protocol: Protocol,
    started: Instant,
    failed: bool,
}

impl std::fmt::Debug for RunningQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningQuery")
            .field("id", &self.id)
            .field("protocol", &self.protocol)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl RunningQuery {
    /// Marks the statement failed (an error, or cancelled): it is counted as an error when
    /// it ends.
    pub fn fail(&mut self) {
        self.failed = true;
    }
}

impl Drop for RunningQuery {
    fn drop(&mut self) {
        self.queries.entries.lock().remove(&self.id);
        self.queries
            .metrics
            .finished(self.protocol, self.started.elapsed(), self.failed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn info(pid: i32, query: &str) -> QueryInfo {
        QueryInfo {
            pid,
            protocol: Protocol::Pg,
            user: "eddy".into(),
            client_addr: None,
            query: query.into(),
        }
    }

    #[test]
    fn statements_are_listed_while_their_guard_lives_and_cancelled_by_pid() {
        let running = RunningQueries::new(QueryMetrics::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let cancel: CancelHandle = Arc::new(move || {
            counted.fetch_add(1, Ordering::Relaxed);
        });
        let guard = running.start(info(100_001, "SELECT 1"), cancel.clone());
        let other = running.start(info(100_002, "SELECT 2"), cancel);
        assert_eq!(running.table().unwrap().num_rows(), 2);
        assert!(running.cancel(100_001));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert!(!running.cancel(7));
        drop(guard);
        assert_eq!(running.table().unwrap().num_rows(), 1);
        assert!(!running.cancel(100_001));
        drop(other);
        assert_eq!(running.table().unwrap().num_rows(), 0);
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let long = "é".repeat(QUERY_TEXT_CHARS_MAX + 10);
        assert_eq!(clip_query(&long).chars().count(), QUERY_TEXT_CHARS_MAX);
        assert_eq!(clip_query("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn http_ids_stay_below_postgres_pids() {
        let running = RunningQueries::new(QueryMetrics::new());
        running.next_http_pid.store(u32::MAX, Ordering::Relaxed);
        for _ in 0..3 {
            let pid = running.next_http_pid();
            assert!((1..100_000).contains(&pid), "{pid}");
        }
    }
}
