//! What a Postgres connection is running, as the rest of the server sees it: each statement
//! is registered in the engine's list of running statements (`eddy_queries`, the statement
//! metrics), and `pg_cancel_backend(pid)` and `pg_backend_pid()` find sessions by the backend
//! pid their clients were given at start-up.
//!
//! `pg_cancel_backend` stops a statement through the connection's own cancel signal, so the
//! statement ends exactly as after a cancel request: SQLSTATE 57014, the connection usable.
//! Eddy has no roles, so any logged-in user may cancel any statement, as a superuser may in
//! PostgreSQL.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::common::cast::as_int64_array;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use eddy_query::running::{CancelHandle, Protocol, QueryInfo, RunningQueries, RunningQuery};
use pgwire::api::ClientInfo;

/// Who a connection's client is, learnt at its first statement.
#[derive(Debug)]
struct Client {
    pid: i32,
    user: String,
    addr: String,
}

/// One connection's side of the list of running statements.
#[derive(Debug)]
pub(crate) struct Activity {
    running: Arc<RunningQueries>,
    client: OnceLock<Client>,
}

impl Activity {
    /// Nothing registered yet, for a new connection.
    pub(crate) fn new(running: Arc<RunningQueries>) -> Activity {
        Activity {
            running,
            client: OnceLock::new(),
        }
    }

    /// Records who the client is; called as statements arrive (login has finished by then,
    /// and later calls change nothing).
    pub(crate) fn identify<C: ClientInfo>(&self, client: &C) {
        self.client.get_or_init(|| Client {
            pid: client.pid_and_secret_key().0,
            user: client
                .metadata()
                .get(pgwire::api::METADATA_USER)
                .cloned()
                .unwrap_or_default(),
            addr: client.socket_addr().to_string(),
        });
    }

    /// Registers a statement starting now; `cancel` stops it. Hold the guard as long as the
    /// statement's rows.
    pub(crate) fn start(&self, sql: &str, cancel: CancelHandle) -> RunningQuery {
        let (pid, user, client_addr) = match self.client.get() {
            Some(c) => (c.pid, c.user.clone(), Some(c.addr.clone())),
            None => (0, String::new(), None),
        };
        let info = QueryInfo {
            pid,
            protocol: Protocol::Pg,
            user,
            client_addr,
            query: eddy_query::running::clip_query(sql).to_string(),
        };
        self.running.start(info, cancel)
    }
}

/// `pg_cancel_backend(pid)`: cancels the statement the session with that backend pid is
/// running; true if there was one. Volatile, so the planner never runs it ahead of time.
pub fn pg_cancel_backend_udf(running: Arc<RunningQueries>) -> ScalarUDF {
    // DataFusion looks a qualified function name up as written; tools qualify this one.
    create_udf(
        "pg_cancel_backend",
        vec![DataType::Int64],
        DataType::Boolean,
        Volatility::Volatile,
        Arc::new(move |args: &[ColumnarValue]| {
            let cancel = |pid: i64| i32::try_from(pid).is_ok_and(|pid| running.cancel(pid));
            match args {
                [ColumnarValue::Scalar(ScalarValue::Int64(pid))] => {
                    Ok(ColumnarValue::Scalar(ScalarValue::Boolean(pid.map(cancel))))
                }
                [ColumnarValue::Array(pids)] => {
                    let pids = as_int64_array(pids)?;
                    let done: BooleanArray = pids.iter().map(|p| p.map(cancel)).collect();
                    Ok(ColumnarValue::Array(Arc::new(done)))
                }
                other => Err(DataFusionError::Execution(format!(
                    "pg_cancel_backend takes a backend pid, got {other:?}"
                ))),
            }
        }),
    )
    .with_aliases(["pg_catalog.pg_cancel_backend"])
}

/// The backend pid of one session, set once its client has logged in.
pub type BackendPid = Arc<AtomicI32>;

/// `pg_backend_pid()`: the pid this session's client was given at start-up (the one its
/// cancel requests, `eddy_queries` and `pg_cancel_backend` use). pg-catalog's own answers 1.
pub fn pg_backend_pid_udf(pid: BackendPid) -> ScalarUDF {
    create_udf(
        "pg_backend_pid",
        vec![],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |_: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Int32(Some(
                pid.load(Ordering::Relaxed),
            ))))
        }),
    )
    .with_aliases(["pg_catalog.pg_backend_pid"])
}
