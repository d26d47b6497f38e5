//! Cancelling a statement of the HTTP query API or Flight SQL: `pg_cancel_backend` calls the
//! handle registered in `eddy_queries`, and the statement's work stops at its next await.

use std::sync::Arc;

use eddy_query::running::CancelHandle;
use eddy_query::{ErrorKind, QueryError};
use tokio::sync::watch;

/// A cancel handle to register with the statement, and what its work watches.
pub(crate) fn cancel_pair() -> (CancelHandle, watch::Receiver<bool>) {
    let (sender, receiver) = watch::channel(false);
    let handle: CancelHandle = Arc::new(move || {
        sender.send_replace(true);
    });
    (handle, receiver)
}

/// Runs `work` unless the statement is cancelled first.
pub(crate) async fn unless_cancelled<T>(
    cancel: &mut watch::Receiver<bool>,
    work: impl Future<Output = Result<T, QueryError>>,
) -> Result<T, QueryError> {
    tokio::select! {
        r = work => r,
        () = cancelled(cancel) => Err(QueryError::new(
            ErrorKind::Cancelled,
            "canceling statement due to user request",
        )),
    }
}

/// Resolves when the statement's cancel handle is called; never once the handle is gone.
async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    // The guard `wait_for` answers with is not `Send`: it goes at the end of this statement.
    let fired = cancel.wait_for(|c| *c).await.is_ok();
    if !fired {
        std::future::pending::<()>().await;
    }
}
