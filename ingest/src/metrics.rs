//! What the write path took in, per front end: rows written, bytes received, rows rejected
//! and writes that failed.
//!
//! Every front end writes through [`Ingest`](crate::Ingest); each holds a handle labelled
//! with its [`FrontEnd`] ([`Ingest::for_front_end`](crate::Ingest::for_front_end)), so the
//! counters are kept in one place and no front end can forget them. Every label exists from
//! the start (at zero), so a rate over a front end that has not written yet is 0, not absent.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

/// The front end a write came through: the `front_end` label of the ingest metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrontEnd {
    /// Line protocol over HTTP (`/write`, `/api/v2/write`, `/api/v3/write_lp`).
    Http,
    /// Line protocol over plain TCP (`--ilp-tcp-addr`).
    IlpTcp,
    /// `INSERT` over the Postgres protocol.
    PgInsert,
    /// `COPY ... FROM STDIN` over the Postgres protocol.
    PgCopy,
    /// A stream source (`CREATE SOURCE ... FROM KAFKA | MQTT`).
    Source,
    /// Arrow Flight SQL bulk ingest (`DoPut`).
    Flight,
    /// Anything else: an `INSERT` from a session no front end labelled (tools, tests).
    Other,
}

impl FrontEnd {
    /// Every front end, in label order.
    pub const ALL: [FrontEnd; 7] = [
        FrontEnd::Http,
        FrontEnd::IlpTcp,
        FrontEnd::PgInsert,
        FrontEnd::PgCopy,
        FrontEnd::Source,
        FrontEnd::Flight,
        FrontEnd::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FrontEnd::Http => "http",
            FrontEnd::IlpTcp => "ilp_tcp",
            FrontEnd::PgInsert => "pg_insert",
            FrontEnd::PgCopy => "pg_copy",
            FrontEnd::Source => "source",
            FrontEnd::Flight => "flight",
            FrontEnd::Other => "other",
        }
    }

    fn labels(self) -> Labels {
        [("front_end", self.as_str())]
    }
}

/// The label set of every ingest metric: `front_end`.
type Labels = [(&'static str, &'static str); 1];

/// Handles to the write path's metrics; cheap to clone (each is a shared atomic).
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    rows: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    rejected_rows: Family<Labels, Counter>,
    failed_writes: Family<Labels, Counter>,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl IngestMetrics {
    /// Metrics with every front end's counters at zero.
    pub fn new() -> Self {
        let m = Self {
            rows: Family::default(),
            bytes: Family::default(),
            rejected_rows: Family::default(),
            failed_writes: Family::default(),
        };
        for fe in FrontEnd::ALL {
            let labels = fe.labels();
            m.rows.get_or_create_owned(&labels);
            m.bytes.get_or_create_owned(&labels);
            m.rejected_rows.get_or_create_owned(&labels);
            m.failed_writes.get_or_create_owned(&labels);
        }
        m
    }

    /// Adds every ingest metric to `registry` (names as docs/operations.md lists them).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "eddy_ingest_rows",
            "Rows written durably, by front end (a line of line protocol is a row)",
            self.rows.clone(),
        );
        registry.register_with_unit(
            "eddy_ingest",
            "Bytes handed to the write path, by front end: line-protocol bodies as received, \
             Arrow batches (INSERT, COPY) by their in-memory size",
            Unit::Bytes,
            self.bytes.clone(),
        );
        registry.register(
            "eddy_ingest_rejected_rows",
            "Rows refused, by front end: bad lines, rows beyond retention, batches that do not \
             fit the table",
            self.rejected_rows.clone(),
        );
        registry.register(
            "eddy_ingest_failed_writes",
            "Writes that ended in an error, by front end: a storage failure, or a batch \
             (INSERT, COPY) refused whole",
            self.failed_writes.clone(),
        );
    }

    /// Counts rows written and the bytes they came in.
    pub(crate) fn written(&self, fe: FrontEnd, rows: u64, bytes: u64) {
        let labels = fe.labels();
        self.rows.get_or_create(&labels).inc_by(rows);
        self.bytes.get_or_create(&labels).inc_by(bytes);
    }

    /// Counts rows refused.
    pub(crate) fn rejected(&self, fe: FrontEnd, rows: u64) {
        if rows > 0 {
            self.rejected_rows.get_or_create(&fe.labels()).inc_by(rows);
        }
    }

    /// Counts a write that failed.
    pub(crate) fn failed(&self, fe: FrontEnd) {
        self.failed_writes.get_or_create(&fe.labels()).inc();
    }
}
