//! The Postgres front end's connection metrics: connections accepted, open now, and refused
//! with the reason; and its failed statements by SQLSTATE. Statements are counted by the query
//! layer (`eddy_queries_total` and friends, label `protocol="pg"`), rows written by the write
//! path (`front_end="pg_insert"`, `"pg_copy"`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why a connection was closed without serving it: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// All `pg_connections_max` slots were taken (SQLSTATE 53300).
    TooManyClients,
    /// Too many connections were already waiting to log in; closed at once.
    LoginBacklog,
    /// No start-up packet, or no completed login, within its timeout.
    LoginTimeout,
}

impl Refusal {
    const ALL: [Refusal; 3] = [
        Refusal::TooManyClients,
        Refusal::LoginBacklog,
        Refusal::LoginTimeout,
    ];

    fn labels(self) -> [(&'static str, &'static str); 1] {
        let reason = match self {
            Refusal::TooManyClients => "too_many_clients",
            Refusal::LoginBacklog => "login_backlog",
            Refusal::LoginTimeout => "login_timeout",
        };
        [("reason", reason)]
    }
}

/// Handles to the Postgres connection metrics; cheap to clone (each is a shared atomic).
#[derive(Debug, Clone)]
pub struct PgMetrics {
    accepted: Counter,
    open: Gauge,
    refused: Family<[(&'static str, &'static str); 1], Counter>,
    statement_errors: Family<[(&'static str, String); 1], Counter>,
}

impl Default for PgMetrics {
    fn default() -> Self {
        let m = PgMetrics {
            accepted: Counter::default(),
            open: Gauge::default(),
            refused: Family::default(),
            statement_errors: Family::default(),
        };
        for r in Refusal::ALL {
            m.refused.get_or_create_owned(&r.labels());
        }
        m
    }
}

impl PgMetrics {
    /// Adds every Postgres connection metric to `registry` (names as docs/operations.md
    /// lists them).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "eddy_pg_connections_accepted",
            "Postgres connections accepted (TCP), cancel requests included",
            self.accepted.clone(),
        );
        registry.register(
            "eddy_pg_connections_open",
            "Postgres connections open now, logged in or not",
            self.open.clone(),
        );
        registry.register(
            "eddy_pg_connections_refused",
            "Postgres connections closed without serving them, by reason",
            self.refused.clone(),
        );
        registry.register(
            "eddy_pg_statement_errors",
            "Postgres statements that ended in an error, by SQLSTATE",
            self.statement_errors.clone(),
        );
    }

    /// A connection was accepted: counted, and open until the guard is dropped.
    pub(crate) fn accepted(&self) -> OpenConnection {
        self.accepted.inc();
        self.open.inc();
        OpenConnection {
            open: self.open.clone(),
        }
    }

    /// A connection was refused.
    pub(crate) fn refused(&self, why: Refusal) {
        self.refused.get_or_create(&why.labels()).inc();
    }

    /// A statement failed with `sqlstate`.
    pub(crate) fn statement_failed(&self, sqlstate: &str) {
        self.statement_errors
            .get_or_create(&[("sqlstate", sqlstate_label(sqlstate).to_string())])
            .inc();
    }

    /// How many statements failed with `sqlstate` (for tests and tools).
    pub fn statement_errors(&self, sqlstate: &str) -> u64 {
        self.statement_errors
            .get(&[("sqlstate", sqlstate_label(sqlstate).to_string())])
            .map_or(0, |c| c.get())
    }
}

/// The `sqlstate` label of an error code: the code, when it is one (five digits or capital
/// letters; any other text would make a label per message), else `XX000`.
fn sqlstate_label(code: &str) -> &str {
    if code.len() == 5
        && code
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    {
        code
    } else {
        "XX000"
    }
}

/// Counts one connection as open while it lives.
#[derive(Debug)]
pub(crate) struct OpenConnection {
    open: Gauge,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.open.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::PgMetrics;

    #[test]
    fn statement_errors_are_counted_by_sqlstate() {
        let m = PgMetrics::default();
        m.statement_failed("42P01");
        m.statement_failed("42P01");
        m.statement_failed("57014");
        m.statement_failed("not a code");
        assert_eq!(m.statement_errors("42P01"), 2);
        assert_eq!(m.statement_errors("57014"), 1);
        assert_eq!(m.statement_errors("XX000"), 1);
        let mut registry = prometheus_client::registry::Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("eddy_pg_statement_errors_total{sqlstate=\"42P01\"} 2"),
            "{text}"
        );
    }
}
