//! The HTTP connection limit: the listener accepts a connection only while fewer than
//! `http_connections_max` are open. Beyond that, new connections wait in the kernel's listen
//! queue until one closes; nothing is read from them, so they cost the server nothing.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{HttpMetrics, OpenConnection};

/// How often the "connection limit reached" warning may be logged.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A TCP listener that holds at most `connections_max` connections open at once.
pub(super) struct Limited {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    connections_max: usize,
    warned: Option<Instant>,
    metrics: HttpMetrics,
}

impl Limited {
    pub(super) fn new(inner: TcpListener, connections_max: usize, metrics: HttpMetrics) -> Limited {
        Limited {
            inner,
            slots: Arc::new(Semaphore::new(connections_max.max(1))),
            connections_max,
            warned: None,
            metrics,
        }
    }
}

impl axum::serve::Listener for Limited {
    type Io = Slotted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Slotted, SocketAddr) {
        let slot = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if self.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    self.warned = Some(Instant::now());
                    tracing::warn!(
                        http_connections_max = self.connections_max,
                        "HTTP connection limit reached: new connections wait until one closes"
                    );
                }
                Arc::clone(&self.slots)
                    .acquire_owned()
                    .await
                    .expect("the connection semaphore is never closed")
            }
        };
        // axum's own accept loop: it retries, and sleeps after running out of descriptors.
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let open = self.metrics.accepted();
        (
            Slotted {
                io,
                _slot: slot,
                _open: open,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// An accepted connection; its slot is given back when the connection is dropped.
pub(super) struct Slotted {
    io: TcpStream,
    _slot: OwnedSemaphorePermit,
    /// Counts the connection as open until it is dropped.
    _open: OpenConnection,
}

impl AsyncRead for Slotted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Slotted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
