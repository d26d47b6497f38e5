//! Cancel requests. A client stops a running query by opening a second connection that names
//! the first one's process id and secret key (sent to it at start-up). The query stops whether
//! it is still being planned or already streaming rows, and the client gets SQLSTATE 57014.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use futures::{Stream, StreamExt, stream};
use parking_lot::Mutex;
use pgwire::api::ClientInfo;
use pgwire::api::cancel::CancelHandler;
use pgwire::error::PgWireError;
use pgwire::messages::cancel::CancelRequest;
use tokio::sync::watch;

use eddy_query::QueryError;

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
            signal.send_modify(|n| *n += 1);
        }
    }
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

    /// Called as a query starts: a receiver that fires on a cancel request from now on.
    pub fn start<C: ClientInfo>(&self, client: &C) -> watch::Receiver<u64> {
        self.key.get_or_init(|| {
            let (pid, secret) = client.pid_and_secret_key();
            let key = (pid, secret.to_bytes());
            self.registry
                .connections
                .lock()
                .insert(key.clone(), Arc::downgrade(&self.sender));
            key
        });
        self.sender.subscribe()
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
pub fn cancelled() -> QueryError {
    QueryError::new("57014", "canceling statement due to user request")
}

/// Runs `work` unless a cancel request arrives first.
pub async fn unless_cancelled<T>(
    cancel: &mut watch::Receiver<u64>,
    work: impl std::future::Future<Output = Result<T, QueryError>>,
) -> Result<T, QueryError> {
    tokio::select! {
        r = work => r,
        Ok(()) = cancel.changed() => Err(cancelled()),
    }
}

/// `rows`, ending with the cancellation error if a cancel request arrives while they are
/// produced. Dropping the DataFusion stream stops its tasks.
pub fn rows_until_cancelled(
    rows: SendableRecordBatchStream,
    cancel: watch::Receiver<u64>,
) -> impl Stream<Item = Result<RecordBatch, PgWireError>> + Send {
    stream::unfold(Some((rows, cancel)), |state| async move {
        let (mut rows, mut cancel) = state?;
        tokio::select! {
            batch = rows.next() => {
                let batch = batch?.map_err(|e| super::user_error(e.into()));
                Some((batch, Some((rows, cancel))))
            }
            Ok(()) = cancel.changed() => Some((Err(super::user_error(cancelled())), None)),
        }
    })
}
