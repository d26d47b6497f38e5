//! InfluxDB line protocol over plain TCP (`--ilp-tcp-addr`, off unless configured): for
//! producers that stream lines at a high rate over long-lived connections, as they do to
//! InfluxDB's and QuestDB's line-protocol TCP listeners (Telegraf's `socket_writer`).
//!
//! A connection carries newline-delimited line protocol with nanosecond timestamps; the server
//! never answers on it. Lines without a timestamp get the server's clock when the batch they
//! arrived in is written. Each connection reads what the socket has, up to about
//! [`BATCH_BYTES`], and writes the complete lines with one [`Ingest::write_lp`] as soon as
//! the socket has nothing more ready, before it waits for more, so a slow producer's lines are
//! durable promptly and a fast one's are written in batches. While a batch is being written
//! the connection is not read: a producer faster than storage is held back by TCP itself, and
//! a connection holds at most about one batch and one read ([`READ_BYTES`]) in memory. The
//! unfinished last line stays for the next read.
//!
//! Bad lines never close a connection. Lines the write path rejects are counted in its
//! metrics (`eddy_ingest_rejected_rows_total{front_end="ilp_tcp"}`) and logged at `warn`; a
//! line longer than [`LINE_BYTES_MAX`] is skipped up to its newline, counted and logged the
//! same way. Each connection logs each kind at most once per 10 seconds, with `suppressed`
//! counting the lines not logged since its previous warning. A storage failure (a full disk,
//! a failed WAL) is logged at `error` and closes the connection: the protocol has no way to
//! tell the producer its data was not accepted other than closing.
//!
//! The last line must end with `\n`: a connection that closes in the middle of a line sent a
//! truncated line, which is dropped (counted as rejected, logged at `debug`).
//!
//! At most [`CONNECTIONS_MAX`] connections are open at once; beyond that, new connections wait
//! in the listen queue until one closes. Idle connections stay open as long as the producer
//! keeps them. At shutdown the listener stops accepting, each connection writes the complete
//! lines already received (and finishes a write in progress), then closes; [`serve`] returns
//! once every connection has closed.
//!
//! The protocol has no authentication: `eddy serve` listens beyond loopback only when told to
//! (`--ilp-tcp-allow-remote`).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_ingest::{Ingest, LINE_BYTES_MAX, Precision};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// Most connections open at once; more wait in the listen queue until one closes.
pub const CONNECTIONS_MAX: usize = 1024;

/// A connection writes the complete lines it holds once they reach this size, even when the
/// socket has more ready.
pub const BATCH_BYTES: usize = 1 << 20;

/// Most bytes taken from the socket by one read.
pub const READ_BYTES: usize = 64 << 10;

/// Room for the longest line with its `\r\n`: an unfinished line this long without a newline
/// is too long.
const LINE_WINDOW: usize = LINE_BYTES_MAX + 2;

/// A buffer grown past this is shrunk back when the producer has caught up, so that idle
/// connections hold little memory.
const IDLE_BUFFER_BYTES: usize = 2 * READ_BYTES;

/// Each kind of trouble is logged at most once per this interval (per connection, or for the
/// accept loop).
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// First pause after `accept` fails for want of resources (file descriptors, memory); it
/// doubles with each further failure up to `ACCEPT_BACKOFF_MAX`.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Accepts line-protocol connections and writes what they send through `ingest` until
/// `shutdown` resolves; then lets every connection write what it has received and close, and
/// returns when all have.
pub async fn serve(
    listener: TcpListener,
    ingest: Ingest,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut limit_log = LogLimit::new();
    let mut error_log = LogLimit::new();
    let mut resource_log = LogLimit::new();
    tokio::pin!(shutdown);
    loop {
        // A slot first: beyond the limit, nothing is accepted and new connections wait in the
        // kernel's listen queue.
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if let Some(suppressed) = limit_log.ready(1) {
                    tracing::warn!(
                        connections_max = CONNECTIONS_MAX,
                        suppressed,
                        "line protocol over TCP: connection limit reached; new connections \
                         wait until one closes"
                    );
                }
                let acquired = tokio::select! {
                    _ = &mut shutdown => None,
                    slot = Arc::clone(&slots).acquire_owned() => slot.ok(),
                };
                match acquired {
                    Some(slot) => slot,
                    None => break,
                }
            }
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => None,
            r = listener.accept() => Some(r),
        };
        let Some(accepted) = accepted else {
            break;
        };
        let (socket, peer) = match accepted {
            Ok(x) => {
                backoff = ACCEPT_BACKOFF_MIN;
                x
            }
            Err(e) if is_connection_error(&e) => {
                if let Some(suppressed) = error_log.ready(1) {
                    tracing::warn!(
                        error = %e,
                        suppressed,
                        "accepting a line protocol connection failed"
                    );
                }
                continue;
            }
            Err(e) => {
                // Out of file descriptors or memory, the connection stays queued and accept
                // would fail again at once: without a pause this loop would spin.
                let pause = backoff;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                if let Some(suppressed) = resource_log.ready(1) {
                    tracing::warn!(
                        error = %e,
                        suppressed,
                        retry_in_ms = pause.as_millis() as u64,
                        "cannot accept line protocol connections (out of file descriptors or \
                         memory?); retrying with backoff"
                    );
                }
                let stopping = tokio::select! {
                    _ = &mut shutdown => true,
                    _ = tokio::time::sleep(pause) => false,
                };
                if stopping {
                    break;
                }
                continue;
            }
        };
        let connection = Connection::new(socket, peer, ingest.clone());
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            // The slot is given back when the connection ends, whichever way it does.
            let _slot = slot;
            connection.run(stop).await;
        });
    }
    // No more connections: the port is closed, new connections are refused.
    drop(listener);
    let _ = stop_tx.send(true);
    let open = CONNECTIONS_MAX - slots.available_permits();
    if open > 0 {
        tracing::debug!(
            open,
            "line protocol over TCP: waiting for connections to write what they received"
        );
    }
    // Every slot back means every connection has ended.
    let _ = slots.acquire_many(CONNECTIONS_MAX as u32).await;
}

/// Resolves once shutdown is signalled (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Whether a failed `accept` concerns only the one connection being accepted, so the next
/// accept may be tried at once; other errors (out of file descriptors or memory) would fail
/// again at once, and the loop backs off.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionRefused
            | ErrorKind::Interrupted
            | ErrorKind::WouldBlock
            | ErrorKind::TimedOut
            | ErrorKind::PermissionDenied
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::NetworkDown
    )
}

/// Says when an event may be logged: at most once per [`LOG_INTERVAL`], counting the events
/// not logged in between.
#[derive(Debug)]
struct LogLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    fn new() -> LogLimit {
        LogLimit {
            last: None,
            suppressed: 0,
        }
    }

    /// Counts `events`: `Some(events not logged since the previous line)` when they may be
    /// logged now.
    fn ready(&mut self, events: u64) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < LOG_INTERVAL)
        {
            self.suppressed = self.suppressed.saturating_add(events);
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// A line longer than [`LINE_WINDOW`], skipped as it streams by.
#[derive(Debug, Default)]
struct LongLine {
    bytes: usize,
    /// Its first byte that is not ASCII whitespace, if any yet.
    first: Option<u8>,
    last: u8,
}

impl LongLine {
    fn extend(&mut self, data: &[u8]) {
        if self.first.is_none() {
            self.first = data.iter().copied().find(|b| !b.is_ascii_whitespace());
        }
        if let Some(&b) = data.last() {
            self.last = b;
        }
        self.bytes = self.bytes.saturating_add(data.len());
    }

    /// What `eddy_ingest::lineproto::parse` would say of this line: nothing for a blank line
    /// or a comment, which it skips, and otherwise that the line is too long.
    fn rejection(&self) -> Option<String> {
        match self.first {
            None | Some(b'#') => None,
            Some(_) => {
                let len = self.bytes - usize::from(self.last == b'\r');
                Some(format!(
                    "line is {len} bytes; the maximum is {LINE_BYTES_MAX}"
                ))
            }
        }
    }
}

/// Whether `unfinished` holds the start of a line the parser would not skip (not blank, not a
/// comment).
fn is_line(unfinished: &[u8]) -> bool {
    unfinished
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b != b'#')
}

/// How a connection's read loop ended.
#[derive(Debug)]
enum End {
    /// The producer closed its side.
    Eof,
    /// Reading failed (the connection was reset).
    ReadFailed(std::io::Error),
    /// The server is shutting down.
    Shutdown,
    /// Storage failed a write; the connection is closed.
    WriteFailed,
}

/// One producer's connection.
struct Connection {
    socket: TcpStream,
    peer: SocketAddr,
    ingest: Ingest,
    /// Complete lines not yet written, then the unfinished last line.
    buf: Vec<u8>,
    /// End of the complete lines in `buf`: just after its last `\n`, or 0.
    complete: usize,
    /// The over-long line being skipped, if any.
    long_line: Option<LongLine>,
    /// Warnings about lines the write path rejected.
    rejected_log: LogLimit,
    /// Warnings about over-long lines.
    long_log: LogLimit,
}

impl Connection {
    fn new(socket: TcpStream, peer: SocketAddr, ingest: Ingest) -> Connection {
        Connection {
            socket,
            peer,
            ingest,
            buf: Vec::new(),
            complete: 0,
            long_line: None,
            rejected_log: LogLimit::new(),
            long_log: LogLimit::new(),
        }
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        tracing::debug!(peer = %self.peer, "line protocol over TCP: connection opened");
        let mut chunk = vec![0u8; READ_BYTES];
        let end = loop {
            // Wait for data; every complete line received so far has been written.
            let read = tokio::select! {
                biased;
                _ = stopped(&mut stop) => None,
                r = self.socket.read(&mut chunk[..]) => Some(r),
            };
            let stopping = read.is_none();
            let mut ended = match read {
                None => None,
                Some(Ok(0)) => Some(End::Eof),
                Some(Ok(n)) => {
                    self.feed(&chunk[..n]);
                    None
                }
                Some(Err(e)) => Some(End::ReadFailed(e)),
            };
            // Then take what else is there without waiting, up to a batch (at shutdown too:
            // what has arrived is written).
            let mut caught_up = false;
            while ended.is_none() && self.buf.len() < BATCH_BYTES {
                match self.socket.try_read(&mut chunk[..]) {
                    Ok(0) => ended = Some(End::Eof),
                    Ok(n) => self.feed(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        caught_up = true;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => ended = Some(End::ReadFailed(e)),
                }
            }
            // The socket is not read while the batch is written: a producer faster than
            // storage is held back by TCP.
            if !self.write_complete().await {
                break End::WriteFailed;
            }
            if let Some(end) = ended {
                break end;
            }
            if stopping {
                break End::Shutdown;
            }
            if caught_up
                && self.buf.capacity() > IDLE_BUFFER_BYTES
                && self.buf.len() <= IDLE_BUFFER_BYTES
            {
                self.buf.shrink_to(IDLE_BUFFER_BYTES);
            }
        };
        match end {
            End::Eof => {
                self.drop_unfinished("closed by the producer");
                tracing::debug!(peer = %self.peer, "line protocol over TCP: connection closed");
            }
            End::ReadFailed(e) => {
                self.drop_unfinished("failed");
                tracing::debug!(
                    peer = %self.peer,
                    error = %e,
                    "line protocol over TCP: connection failed"
                );
            }
            End::Shutdown => {
                self.drop_unfinished("closed at shutdown");
                tracing::debug!(
                    peer = %self.peer,
                    "line protocol over TCP: connection closed at shutdown"
                );
            }
            // Logged where it failed; the unfinished line goes with the connection.
            End::WriteFailed => {}
        }
    }

    /// Takes bytes read from the socket: appends them to the buffer, or skips them while an
    /// over-long line is being skipped.
    fn feed(&mut self, mut data: &[u8]) {
        if let Some(long) = self.long_line.as_mut() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    long.extend(&data[..i]);
                    data = &data[i + 1..];
                    self.end_long_line();
                }
                None => {
                    long.extend(data);
                    return;
                }
            }
        }
        if data.is_empty() {
            return;
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(data);
        if let Some(i) = data.iter().rposition(|&b| b == b'\n') {
            self.complete = start + i + 1;
        }
        if self.buf.len() - self.complete >= LINE_WINDOW {
            // The unfinished line cannot be a line the parser accepts: skip it to its newline.
            let mut long = LongLine::default();
            long.extend(&self.buf[self.complete..]);
            self.buf.truncate(self.complete);
            self.long_line = Some(long);
        }
    }

    /// The over-long line's newline has arrived: counts and logs it.
    fn end_long_line(&mut self) {
        let Some(long) = self.long_line.take() else {
            return;
        };
        let Some(message) = long.rejection() else {
            return;
        };
        // Never parsed by the write path, so counted here.
        self.ingest.record_rejected(1);
        if let Some(suppressed) = self.long_log.ready(1) {
            tracing::warn!(
                peer = %self.peer,
                suppressed,
                "line protocol over TCP: skipped a line that is too long: {message}"
            );
        }
    }

    /// Writes the complete lines in the buffer; `false` when storage failed (logged), after
    /// which the connection must close.
    async fn write_complete(&mut self) -> bool {
        if self.complete == 0 {
            return true;
        }
        let now_ns = eddy_storage::time::now_ns();
        let result = self
            .ingest
            .write_lp(&self.buf[..self.complete], Precision::Nanosecond, now_ns)
            .await;
        self.buf.drain(..self.complete);
        self.complete = 0;
        match result {
            Ok(outcome) => {
                if let Some(first) = outcome.errors.first() {
                    let rejected = outcome.errors.len() as u64;
                    if let Some(suppressed) = self.rejected_log.ready(rejected) {
                        tracing::warn!(
                            peer = %self.peer,
                            rejected,
                            written = outcome.lines_written,
                            suppressed,
                            "line protocol over TCP: lines rejected; the first: {}",
                            first.message
                        );
                    }
                }
                true
            }
            Err(e) => {
                tracing::error!(
                    peer = %self.peer,
                    table = e.table(),
                    error = %e,
                    "line protocol over TCP: write failed; closing the connection so the \
                     producer knows (lines of this batch may not have been written)"
                );
                false
            }
        }
    }

    /// The connection ends: an unfinished last line (no newline) was cut off and is dropped.
    fn drop_unfinished(&mut self, how: &str) {
        let unfinished = &self.buf[self.complete..];
        let (cut, bytes) = match self.long_line.take() {
            Some(long) => (long.rejection().is_some(), long.bytes),
            None => (is_line(unfinished), unfinished.len()),
        };
        if cut {
            self.ingest.record_rejected(1);
            tracing::debug!(
                peer = %self.peer,
                bytes,
                "line protocol over TCP: connection {how} in the middle of a line; the \
                 unfinished line was dropped (the last line must end with a newline)"
            );
        }
        self.buf.clear();
        self.complete = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limit_logs_once_per_interval_and_counts_the_rest() {
        let mut limit = LogLimit::new();
        assert_eq!(limit.ready(3), Some(0));
        assert_eq!(limit.ready(2), None);
        assert_eq!(limit.ready(5), None);
        // As if the last line was logged an interval ago.
        if let Some(then) = Instant::now().checked_sub(LOG_INTERVAL) {
            limit.last = Some(then);
            assert_eq!(limit.ready(1), Some(7));
            assert_eq!(limit.ready(1), None);
        }
    }

    #[test]
    fn long_lines_are_judged_as_the_parser_would() {
        let mut long = LongLine::default();
        long.extend(b"   ");
        long.extend(b"m v=1\r");
        assert_eq!(
            long.rejection(),
            Some(format!("line is 8 bytes; the maximum is {LINE_BYTES_MAX}"))
        );
        let mut comment = LongLine::default();
        comment.extend(b"  # a comment");
        assert_eq!(comment.rejection(), None);
        assert_eq!(LongLine::default().rejection(), None);
        assert!(is_line(b"m,host=a v="));
        assert!(!is_line(b" \r"));
        assert!(!is_line(b"# note"));
        assert!(!is_line(b""));
    }
}
