//! Why writes are held back right now, and how failing background work retries without
//! flooding the log.
//!
//! A full disk is an operating condition, not a fault: the write that meets it is refused,
//! reads go on, and writes resume by themselves once space is freed. So each failure that
//! holds writes back is recorded here until the next success of the same kind clears it
//! (a WAL append, a flush), and [`Db::write_stall`](crate::Db::write_stall) reports it for
//! readiness checks. Only a WAL failure that cannot be rolled back stops the engine for good
//! (`Inner::failed`, see `commit.rs`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::engine::Inner;
use crate::error::StorageError;

/// What currently holds writes back, each cleared by the next success of what failed.
#[derive(Debug, Default)]
pub(crate) struct Stalls {
    /// The last group append failed and was rolled back; cleared by the next one that works.
    pub(crate) wal: Option<String>,
    /// The last flush failed; cleared by the next flush that works.
    pub(crate) flush: Option<FlushFailure>,
}

/// A failed flush, kept so that writers held back by memory can be told why.
#[derive(Debug, Clone)]
pub(crate) struct FlushFailure {
    /// The error, for humans.
    pub(crate) message: String,
    /// The file and OS error code when the disk was full.
    pub(crate) disk_full: Option<(PathBuf, i32)>,
}

impl FlushFailure {
    /// The failure of a flush that returned `e`.
    pub(crate) fn new(e: &StorageError) -> Self {
        let disk_full = match e {
            StorageError::DiskFull { path, source } => {
                // 28 is ENOSPC: a DiskFull error always carries an OS code, this is a fallback.
                Some((path.clone(), source.raw_os_error().unwrap_or(28)))
            }
            _ => None,
        };
        Self {
            message: e.to_string(),
            disk_full,
        }
    }

    /// The error a writer gets when memory is full and flushes fail for lack of space.
    pub(crate) fn disk_full_error(&self) -> Option<StorageError> {
        let (path, code) = self.disk_full.as_ref()?;
        Some(StorageError::DiskFull {
            path: path.clone(),
            source: std::io::Error::from_raw_os_error(*code),
        })
    }
}

impl Inner {
    /// Why writes are refused or held back right now, or `None` when they are accepted.
    pub(crate) fn write_stall(&self) -> Option<String> {
        if let Some(reason) = self.failed.lock().clone() {
            return Some(format!(
                "writes are refused until the server restarts: {reason}"
            ));
        }
        let (wal, flush) = {
            let stalls = self.stalls.lock();
            (stalls.wal.clone(), stalls.flush.clone())
        };
        if let Some(wal) = wal {
            return Some(format!("writes are refused: {wal}"));
        }
        let flush = flush?;
        if flush.disk_full.is_some() {
            return Some(format!(
                "flushes to Parquet fail because the disk is full; writes are refused once memtables reach memtable_bytes_max: {}",
                flush.message
            ));
        }
        // Any other flush failure holds writes back only once memory is full.
        (self.memtable_bytes() >= self.config.memtable_bytes_max).then(|| {
            format!(
                "writes wait: memtables hold memtable_bytes_max and flushes fail: {}",
                flush.message
            )
        })
    }
}

/// Exponential backoff of a retried background job: `min`, doubling up to `max`, back to
/// `min` after a success.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    /// Delay after the next failure.
    next: Duration,
    /// No attempt before this instant.
    until: Option<Instant>,
}

impl Backoff {
    /// A backoff that has not failed yet.
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
            until: None,
        }
    }

    /// Records a failure; returns how long to wait before the next attempt.
    pub(crate) fn failed(&mut self) -> Duration {
        let delay = self.next;
        self.until = Some(Instant::now() + delay);
        self.next = (delay * 2).min(self.max);
        delay
    }

    /// Records a success; returns whether it ends a run of failures.
    pub(crate) fn succeeded(&mut self) -> bool {
        self.next = self.min;
        self.until.take().is_some()
    }

    /// Lets the next attempt run at once (something changed: space may be back), keeping the
    /// delay that a further failure would add.
    pub(crate) fn wake(&mut self) {
        if self.until.is_some() {
            self.until = Some(Instant::now());
        }
    }

    /// Whether an attempt may run now.
    pub(crate) fn ready(&self) -> bool {
        self.until.is_none_or(|t| Instant::now() >= t)
    }

    /// Time left before the next attempt may run, if one is being waited out (`None` once
    /// the wait is over, so that a caller sleeping on it never spins).
    pub(crate) fn remaining(&self) -> Option<Duration> {
        let now = Instant::now();
        self.until.filter(|t| *t > now).map(|t| t - now)
    }
}

/// At most one log line per interval for a failure that repeats, with the count of those
/// left out.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter letting one line through per `every`.
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether to log this occurrence; if so, how many were left out since the last line.
    pub(crate) fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.every)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }

    /// Forgets the last line: the failure ended, so the next one is news.
    pub(crate) fn reset(&mut self) {
        self.last = None;
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_maximum_and_resets_on_success() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        assert!(b.ready());
        let delays: Vec<u64> = (0..9).map(|_| b.failed().as_millis() as u64).collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert!(!b.ready());
        b.wake();
        assert!(b.ready());
        assert!(b.succeeded());
        assert!(!b.succeeded());
        assert_eq!(b.failed(), Duration::from_millis(500));
    }

    #[test]
    fn the_limiter_lets_one_line_through_per_interval_and_counts_the_rest() {
        let mut l = LogLimiter::new(Duration::from_secs(3600));
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        l.reset();
        assert_eq!(l.allow(), Some(0));
    }
}
