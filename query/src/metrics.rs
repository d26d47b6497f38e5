//! The query layer's metrics: statements and their latency per protocol, statements running
//! now, and the continuous aggregates' checkpoints.
//!
//! Statements are counted by the [`RunningQuery`](crate::running::RunningQuery) guard each
//! front end holds while a statement and its result stream run, so a statement is timed from
//! its arrival to its last row, and counted once whichever protocol ran it.
//!
//! Views are maintained inside the commit of every write, so they never lag behind the data a
//! query sees. The lag that does exist is durability's: the WAL records applied to the views
//! since their last checkpoint, which a restart replays into them.

use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::running::Protocol;

/// The label set of the statement metrics: `protocol`.
type Labels = [(&'static str, &'static str); 1];

/// Buckets of the statement latency histogram, in seconds: 1 ms to about 65 s.
fn query_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Buckets of the view checkpoint histogram, in seconds: 1 ms to about 65 s.
fn checkpoint_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Handles to the statement metrics; cheap to clone (each is a shared atomic).
#[derive(Debug, Clone)]
pub struct QueryMetrics {
    queries: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    running: Gauge,
}

impl Default for QueryMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl QueryMetrics {
    /// Metrics with every protocol's counters at zero.
    pub fn new() -> Self {
        let m = Self {
            queries: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(query_histogram as fn() -> Histogram),
            running: Gauge::default(),
        };
        for p in Protocol::ALL {
            let labels = p.labels();
            m.queries.get_or_create_owned(&labels);
            m.errors.get_or_create_owned(&labels);
            m.duration.get_or_create_owned(&labels);
        }
        m
    }

    /// Adds every statement metric to `registry` (names as docs/operations.md lists them).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "eddy_queries",
            "Statements started, by protocol",
            self.queries.clone(),
        );
        registry.register(
            "eddy_query_errors",
            "Statements that ended in an error, cancelled ones included, by protocol",
            self.errors.clone(),
        );
        registry.register_with_unit(
            "eddy_query_duration",
            "Time from a statement's arrival to its last row sent, by protocol",
            Unit::Seconds,
            self.duration.clone(),
        );
        registry.register(
            "eddy_queries_running",
            "Statements running now (the rows of eddy_queries)",
            self.running.clone(),
        );
    }

    /// A statement started.
    pub(crate) fn started(&self, protocol: Protocol) {
        self.queries.get_or_create(&protocol.labels()).inc();
        self.running.inc();
    }

    /// A statement ended after `elapsed`, in an error if `failed`.
    pub(crate) fn finished(&self, protocol: Protocol, elapsed: Duration, failed: bool) {
        let labels = protocol.labels();
        self.running.dec();
        self.duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if failed {
            self.errors.get_or_create(&labels).inc();
        }
    }
}

/// Handles to the continuous aggregates' metrics; cheap to clone.
#[derive(Debug, Clone)]
pub struct ViewMetrics {
    checkpoint_seconds: Histogram,
    checkpoint_failures: Counter,
    lag_records: Gauge,
    views: Gauge,
}

impl Default for ViewMetrics {
    fn default() -> Self {
        Self {
            checkpoint_seconds: checkpoint_histogram(),
            checkpoint_failures: Counter::default(),
            lag_records: Gauge::default(),
            views: Gauge::default(),
        }
    }
}

impl ViewMetrics {
    /// Adds every view metric to `registry` (names as docs/operations.md lists them).
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "eddy_view_checkpoint_duration",
            "Time to write one checkpoint of the continuous aggregates",
            Unit::Seconds,
            self.checkpoint_seconds.clone(),
        );
        registry.register(
            "eddy_view_checkpoint_failures",
            "View checkpoints that failed (the WAL is kept from the last one that worked)",
            self.checkpoint_failures.clone(),
        );
        registry.register(
            "eddy_view_checkpoint_lag_records",
            "WAL records applied to the views since their last checkpoint (replayed into them \
             after a restart); views themselves are updated in the commit of every write",
            self.lag_records.clone(),
        );
        registry.register(
            "eddy_views",
            "Continuous aggregates defined",
            self.views.clone(),
        );
    }

    /// A checkpoint that started at `started` was written.
    pub(crate) fn checkpointed(&self, started: Instant) {
        self.checkpoint_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    /// A checkpoint failed.
    pub(crate) fn checkpoint_failed(&self) {
        self.checkpoint_failures.inc();
    }

    /// Sets the gauges read from state: the checkpoint lag and the number of views.
    pub(crate) fn set_state(&self, lag_records: u64, views: usize) {
        self.lag_records
            .set(i64::try_from(lag_records).unwrap_or(i64::MAX));
        self.views.set(i64::try_from(views).unwrap_or(i64::MAX));
    }
}
