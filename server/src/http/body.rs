//! Request bodies as they stream in: the one budget of bytes that all request bodies together
//! may hold (`http_inflight_bytes_max`), and [`LineStream`], which cuts line protocol into
//! chunks of whole lines and writes each chunk as soon as it is complete.
//!
//! A request takes its share of the budget, its *window*, before the first byte of its body is
//! read: its whole body when that is known to be at most [`CHUNK_BYTES`], else one chunk (a body
//! of unknown size, chunked or gzip, starts with room for one longest line and takes more as it
//! needs it and the budget allows). Its buffer never holds more than the window. A request that
//! cannot get its window is answered 503 at once, without reading its body; a request that got
//! it is never refused for memory later. The window is given back when the request ends, however
//! it ends (answered, failed, or the client went away): it is an RAII guard.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use eddy_ingest::{Ingest, IngestError, LINE_BYTES_MAX, LineError, Precision};

use super::ERRORS_LISTED_MAX;

/// Most bytes of line protocol a request buffers before it writes them: a larger body is
/// written in chunks of whole lines of up to this size as it arrives, and a request takes at
/// most this much of `http_inflight_bytes_max` at a time.
pub const CHUNK_BYTES: usize = 4 << 20;

/// Room for the longest line with its `\r\n`: a buffer this full without a newline holds the
/// start of a line that is too long.
const LINE_WINDOW: usize = LINE_BYTES_MAX + 2;

/// The bytes all request bodies may hold together.
#[derive(Debug)]
pub(super) struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    pub(super) fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget {
            used: AtomicUsize::new(0),
            max,
        })
    }

    /// The budget's size.
    pub(super) fn max(&self) -> usize {
        self.max
    }

    fn take(&self, bytes: usize) -> bool {
        let max = self.max;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= max)
            })
            .is_ok()
    }

    /// Takes `bytes` of the budget, if that many are free.
    pub(super) fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        self.take(bytes).then(|| Reservation {
            budget: Arc::clone(self),
            bytes,
        })
    }
}

/// A request's share of the budget, given back when dropped.
#[derive(Debug)]
pub(super) struct Reservation {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Reservation {
    fn bytes(&self) -> usize {
        self.bytes
    }

    fn try_grow(&mut self, extra: usize) -> bool {
        let ok = self.budget.take(extra);
        if ok {
            self.bytes += extra;
        }
        ok
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The window of a request: its body if that is known to be small, else one chunk, or for a
/// body whose (decompressed) size is unknown, one longest line to begin with.
pub(super) fn window_bytes(declared: Option<u64>, gzip: bool, request_bytes_max: usize) -> usize {
    match declared {
        Some(n) if !gzip => usize::try_from(n).unwrap_or(usize::MAX).min(CHUNK_BYTES),
        _ => LINE_WINDOW.min(CHUNK_BYTES).min(request_bytes_max),
    }
}

/// Why a streamed write stopped before the end of its body.
#[derive(Debug)]
pub(super) enum Stop {
    /// The (decompressed) body grew past `request_bytes_max`.
    TooLarge,
    /// The window had to grow to hold one line and the budget had no room.
    Busy,
    /// Storage failed.
    Failed(IngestError),
}

/// What a streamed write did.
#[derive(Debug, Default)]
pub(super) struct Written {
    /// Lines written durably.
    pub(super) lines_written: usize,
    /// Lines rejected.
    pub(super) lines_rejected: usize,
    /// The first [`ERRORS_LISTED_MAX`] rejected lines, in order.
    pub(super) listed: Vec<LineError>,
}

/// A line longer than the window, skipped as it streams by; the parser's verdict on it is
/// given from what was seen.
#[derive(Debug)]
struct LongLine {
    /// Its 1-based number in the body.
    line: usize,
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
        self.bytes += data.len();
    }

    /// What `eddy_ingest::lineproto::parse` says of this line: nothing for a blank line or a
    /// comment, which it skips, and otherwise that the line is too long.
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

/// Line protocol written as it streams in: complete lines are handed to the write path in
/// chunks, only the unfinished last line is kept, and line numbers count from the start of the
/// body across chunks.
pub(super) struct LineStream<'a> {
    ingest: &'a Ingest,
    precision: Precision,
    now_ns: i64,
    request_bytes_max: usize,
    window: Reservation,
    /// Complete lines not yet written, then the unfinished last line; at most the window.
    buf: Vec<u8>,
    /// Bytes of (decompressed) body received.
    received: usize,
    /// Lines of the body before `buf`.
    lines_before: usize,
    long_line: Option<LongLine>,
    written: Written,
}

impl<'a> LineStream<'a> {
    pub(super) fn new(
        ingest: &'a Ingest,
        precision: Precision,
        now_ns: i64,
        request_bytes_max: usize,
        window: Reservation,
    ) -> LineStream<'a> {
        LineStream {
            ingest,
            precision,
            now_ns,
            request_bytes_max,
            buf: Vec::with_capacity(window.bytes()),
            window,
            received: 0,
            lines_before: 0,
            long_line: None,
            written: Written::default(),
        }
    }

    /// Lines written so far.
    pub(super) fn lines_written(&self) -> usize {
        self.written.lines_written
    }

    /// Takes the next bytes of the (decompressed) body, writing every chunk they complete.
    pub(super) async fn feed(&mut self, mut data: &[u8]) -> Result<(), Stop> {
        self.received = self.received.saturating_add(data.len());
        if self.received > self.request_bytes_max {
            return Err(Stop::TooLarge);
        }
        while !data.is_empty() {
            if let Some(long) = self.long_line.as_mut() {
                match data.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        long.extend(&data[..i]);
                        data = &data[i + 1..];
                        self.end_long_line();
                    }
                    None => {
                        long.extend(data);
                        return Ok(());
                    }
                }
                continue;
            }
            let room = self.window.bytes().saturating_sub(self.buf.len());
            if data.len() <= room {
                self.buf.extend_from_slice(data);
                return Ok(());
            }
            let (now, rest) = data.split_at(room);
            self.buf.extend_from_slice(now);
            data = rest;
            self.make_room().await?;
        }
        Ok(())
    }

    /// The buffer is full and more data is waiting: take a larger window if the budget has
    /// room, else write the complete lines, else skip the over-long line it holds.
    async fn make_room(&mut self) -> Result<(), Stop> {
        let cap = self.window.bytes();
        let limit = CHUNK_BYTES.min(self.request_bytes_max);
        if cap < limit {
            let extra = cap.max(LINE_WINDOW).min(limit - cap);
            if self.window.try_grow(extra) {
                self.buf.reserve_exact(self.window.bytes() - self.buf.len());
                return Ok(());
            }
        }
        match self.buf.iter().rposition(|&b| b == b'\n') {
            Some(i) => self.write_lines(i + 1).await,
            None if self.buf.len() >= LINE_WINDOW => {
                let mut long = LongLine {
                    line: self.lines_before + 1,
                    bytes: 0,
                    first: None,
                    last: 0,
                };
                long.extend(&self.buf);
                self.buf.clear();
                self.long_line = Some(long);
                Ok(())
            }
            None => {
                // A window smaller than one line (not reached with the windows `window_bytes`
                // gives): it must hold one whole line.
                let extra = LINE_WINDOW - self.buf.len();
                if self.window.try_grow(extra) {
                    self.buf.reserve_exact(self.window.bytes() - self.buf.len());
                    Ok(())
                } else {
                    Err(Stop::Busy)
                }
            }
        }
    }

    /// Writes the first `end` bytes of the buffer, which end a line or the body.
    async fn write_lines(&mut self, end: usize) -> Result<(), Stop> {
        let chunk = &self.buf[..end];
        let lines = chunk.iter().filter(|&&b| b == b'\n').count();
        let result = self
            .ingest
            .write_lp(chunk, self.precision, self.now_ns)
            .await;
        self.buf.drain(..end);
        let outcome = result.map_err(Stop::Failed)?;
        self.written.lines_written += outcome.lines_written;
        for mut e in outcome.errors {
            e.line += self.lines_before;
            self.reject(e);
        }
        self.lines_before += lines;
        Ok(())
    }

    fn reject(&mut self, e: LineError) {
        self.written.lines_rejected += 1;
        if self.written.listed.len() < ERRORS_LISTED_MAX {
            self.written.listed.push(e);
        }
    }

    fn end_long_line(&mut self) {
        let Some(long) = self.long_line.take() else {
            return;
        };
        self.lines_before += 1;
        if let Some(message) = long.rejection() {
            // Never parsed by the write path, so counted here.
            self.ingest.record_rejected(1);
            self.reject(LineError {
                line: long.line,
                message,
            });
        }
    }

    /// The body has ended: writes what is left and says what was done.
    pub(super) async fn finish(mut self) -> Result<Written, Stop> {
        self.end_long_line();
        if !self.buf.is_empty() {
            let end = self.buf.len();
            self.write_lines(end).await?;
        }
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_given_back_by_every_reservation() {
        let budget = Budget::new(10);
        let a = budget.reserve(6).expect("fits");
        assert!(budget.reserve(5).is_none());
        let mut b = budget.reserve(4).expect("fits");
        assert!(!b.try_grow(1));
        drop(a);
        assert!(b.try_grow(6));
        assert!(budget.reserve(1).is_none());
        drop(b);
        assert!(budget.reserve(10).is_some());
        assert!(budget.reserve(0).is_some());
    }

    #[test]
    fn windows() {
        assert_eq!(window_bytes(Some(100), false, 1 << 30), 100);
        assert_eq!(window_bytes(Some(60_000_000), false, 1 << 30), CHUNK_BYTES);
        assert_eq!(window_bytes(Some(100), true, 1 << 30), LINE_WINDOW);
        assert_eq!(window_bytes(None, false, 1 << 30), LINE_WINDOW);
        assert_eq!(window_bytes(None, true, 4096), 4096);
    }

    #[test]
    fn a_long_line_is_judged_as_the_parser_would() {
        let mut long = LongLine {
            line: 7,
            bytes: 0,
            first: None,
            last: 0,
        };
        long.extend(b"  \t");
        assert_eq!(long.rejection(), None);
        long.extend(b"m v=1\r");
        assert_eq!(
            long.rejection().unwrap(),
            format!("line is 8 bytes; the maximum is {LINE_BYTES_MAX}")
        );
        let mut comment = LongLine {
            line: 1,
            bytes: 0,
            first: None,
            last: 0,
        };
        comment.extend(b" # x");
        assert_eq!(comment.rejection(), None);
    }
}
