//! Cancel requests and `statement_timeout`. A client stops a running query by opening a
//! second connection that names the first one's process id and secret key (sent to it at
//! start-up); a session's `statement_timeout` stops queries that run longer. Either way the
//! query stops whether it is still being planned or already streaming rows, and the client
//! gets SQLSTATE 57014.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use eddy_query::running::{CancelHandle, RunningQuery};
use futures::{Stream, StreamExt, stream};
use parking_lot::Mutex;
use pgwire::api::ClientInfo;
use pgwire::api::cancel::CancelHandler;
use pgwire::error::PgWireError;
use pgwire::messages::cancel::CancelRequest;
use tokio::sync::watch;

use crate::error::PgError;

/// A connection's (process id, secret key), as its cancel requests name it.
type BackendKey = (i32, Bytes);

/// The connections that can be cancelled, by backend key.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    connections: Mutex<HashMap<BackendKey, Weak<watch::Sender<u64>>>>,
}

#[async_trait]
impl CancelHandler for CancelRegistry {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let key = (request.pid, request.secret_key.to_bytes());
        let signal = self.connections.lock().get(&key).and_then(Weak::upgrade);
        // As in PostgreSQL, a request naming no connection, or one that is idle, does nothing.
        if let Some(signal) = signal {
            fire(&signal);
        }
    }
}

/// Interrupts the query a connection is running (every [`Interrupt`] subscribed to it fires).
fn fire(signal: &watch::Sender<u64>) {
    signal.send_modify(|n| *n += 1);
}

/// One connection's side: it registers under its key on its first query and unregisters
/// when the connection ends.
#[derive(Debug)]
pub struct CancelSignal {
    registry: Arc<CancelRegistry>,
    sender: Arc<watch::Sender<u64>>,
    key: OnceLock<BackendKey>,
}

impl CancelSignal {
    /// A signal for a new connection.
    pub fn new(registry: Arc<CancelRegistry>) -> Self {
        Self {
            registry,
            sender: Arc::new(watch::channel(0).0),
            key: OnceLock::new(),
        }
    }

    /// Called as a query starts: what interrupts it from now on, a cancel request or, after
    /// `timeout`, the statement timeout.
    pub fn start<C: ClientInfo>(&self, client: &C, timeout: Option<Duration>) -> Interrupt {
        self.key.get_or_init(|| {
            let (pid, secret) = client.pid_and_secret_key();
            let key = (pid, secret.to_bytes());
            self.registry
                .connections
                .lock()
                .insert(key.clone(), Arc::downgrade(&self.sender));
            key
        });
        Interrupt {
            cancel: self.sender.subscribe(),
            deadline: timeout.map(|t| tokio::time::Instant::now() + t),
        }
    }

    /// Stops this connection's running query exactly as a cancel request naming it does;
    /// `pg_cancel_backend` calls it. It does nothing once the connection is gone.
    pub fn remote(&self) -> CancelHandle {
        let signal = Arc::downgrade(&self.sender);
        Arc::new(move || {
            if let Some(signal) = signal.upgrade() {
                fire(&signal);
            }
        })
    }
}

/// What stops one running query: a cancel request, or its deadline.
#[derive(Debug, Clone)]
pub struct Interrupt {
    cancel: watch::Receiver<u64>,
    deadline: Option<tokio::time::Instant>,
}

impl Interrupt {
    /// Waits until the query must stop; the error says why.
    async fn fired(&mut self) -> PgError {
        let deadline = self.deadline;
        let timed_out = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Ok(()) = self.cancel.changed() => cancelled(),
            () = timed_out => PgError::new("57014", "canceling statement due to statement timeout"),
            // The connection is gone and no deadline is set: nothing will interrupt.
            else => std::future::pending().await,
        }
    }
}

impl Drop for CancelSignal {
    fn drop(&mut self) {
        if let Some(key) = self.key.get() {
            self.registry.connections.lock().remove(key);
        }
    }
}

/// The error a cancelled query ends with.
pub fn cancelled() -> PgError {
    PgError::new("57014", "canceling statement due to user request")
}

/// Runs `work` unless the query is interrupted first.
pub async fn unless_cancelled<T>(
    interrupt: &mut Interrupt,
    work: impl std::future::Future<Output = Result<T, PgError>>,
) -> Result<T, PgError> {
    tokio::select! {
        r = work => r,
        e = interrupt.fired() => Err(e),
    }
}

/// `rows`, ending with an error if the query is interrupted while they are produced.
/// Dropping the DataFusion stream stops its tasks. `running` is the statement's entry in
/// `eddy_queries`: it goes with the rows, so the statement ends there when they do.
pub fn rows_until_cancelled(
    rows: SendableRecordBatchStream,
    interrupt: Interrupt,
    running: RunningQuery,
) -> impl Stream<Item = Result<RecordBatch, PgWireError>> + Send {
    stream::unfold(Some((rows, interrupt, running)), |state| async move {
        let (mut rows, mut interrupt, mut running) = state?;
        tokio::select! {
            batch = rows.next() => {
                let batch = batch?.map_err(|e| crate::wire::user_error(e.into()));
                if batch.is_err() {
                    running.fail();
                }
                Some((batch, Some((rows, interrupt, running))))
            }
            e = interrupt.fired() => {
                running.fail();
                Some((Err(crate::wire::user_error(e)), None))
            }
        }
    })
}
