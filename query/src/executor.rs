//! The threads queries run on, apart from the threads that serve connections.
//!
//! Parsing, planning and running a statement can take a lot of CPU and stack (a long operator
//! chain is a deep tree, and every pass over it recurses). On the threads that serve
//! connections, one such statement would stall every other client, HTTP `/health` included, or
//! overflow a small stack and abort the process. So the work of a statement runs on a runtime
//! of its own, whose threads have large stacks, and only its answer (rows, in small batches)
//! comes back to the connection. A client that goes away drops the stream, which stops the
//! work at its next batch.

use std::future::Future;
use std::sync::Arc;

use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use futures::StreamExt;

use crate::error::{QueryError, Result};
use crate::limits::{QUERY_THREAD_STACK_BYTES, RESULT_BATCHES_IN_FLIGHT};

/// The runtime statements are planned and run on.
#[derive(Debug, Clone)]
pub struct QueryRuntime {
    inner: Arc<Owned>,
}

/// Owns the runtime: dropped with the last handle, without blocking (the engine may be
/// dropped inside another runtime, where a blocking shutdown would panic).
#[derive(Debug)]
struct Owned {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl QueryRuntime {
    /// A runtime with one thread per core (at least two).
    pub fn new() -> Result<Self> {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("eddy-query")
            .thread_stack_size(QUERY_THREAD_STACK_BYTES)
            .enable_all()
            .build()
            .map_err(|e| QueryError::internal(format!("cannot start the query runtime: {e}")))?;
        let handle = runtime.handle().clone();
        Ok(Self {
            inner: Arc::new(Owned {
                runtime: Some(runtime),
                handle,
            }),
        })
    }

    /// The runtime's handle, for work that must be spawned on it.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.inner.handle
    }

    /// Runs `work` on the query threads and waits for it. A panic in it is an internal error
    /// of this statement only.
    pub async fn run<F, T, E>(&self, work: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<QueryError> + Send + 'static,
    {
        // Dropping the handle (the client went away) aborts the work at its next await.
        let mut task = AbortOnDrop(self.inner.handle.spawn(work));
        match (&mut task.0).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => Err(QueryError::internal(format!(
                "the statement failed: {}",
                panic_message(e.into_panic())
            ))
            .into()),
            Err(e) => Err(QueryError::internal(format!("the statement failed: {e}")).into()),
        }
    }

    /// Runs the synchronous `work` (parsing, rewriting) on the query threads.
    pub async fn compute<F, T, E>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<QueryError> + Send + 'static,
    {
        self.run(async move { work() }).await
    }

    /// `stream`, pulled on the query threads: the caller receives finished batches. Each batch
    /// waiting for the caller is counted against `pool`, so results a slow client has not read
    /// cannot grow beyond the query memory limit.
    pub fn offload(
        &self,
        stream: SendableRecordBatchStream,
        pool: &Arc<dyn MemoryPool>,
    ) -> SendableRecordBatchStream {
        let mut builder =
            RecordBatchReceiverStreamBuilder::new(stream.schema(), RESULT_BATCHES_IN_FLIGHT);
        let tx = builder.tx();
        let reservation = MemoryConsumer::new("result batches in flight").register(pool);
        builder.spawn_on(
            async move {
                let mut stream = stream;
                while let Some(item) = stream.next().await {
                    let item = match item {
                        Ok(batch) => {
                            let bytes = batch.get_array_memory_size();
                            // Only the batch in hand is held; the ones in the channel were
                            // counted while the query computed them.
                            reservation.try_resize(bytes).map(|_| batch)
                        }
                        Err(e) => Err(e),
                    };
                    let failed = item.is_err();
                    if tx.send(item).await.is_err() || failed {
                        break;
                    }
                }
                Ok(())
            },
            &self.inner.handle,
        );
        builder.build()
    }
}

/// Aborts the task when the waiting future is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}
