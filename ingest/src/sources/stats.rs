//! What `eddy_sources` shows of a running source: its state, counts, rates, lag and last error.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long a window the rates are computed over.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// A source's state, as shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// Connecting to its broker (or reconnecting after a failure).
    Connecting,
    /// Consuming.
    Running,
    /// Held by `ALTER SOURCE ... PAUSE`.
    Paused,
    /// Waiting for storage (a full disk, a failed write): retried until it succeeds.
    Retrying,
    /// Stopped (dropped, or the server is shutting down).
    Stopped,
    /// Cannot run until it is re-created (its definition no longer checks out).
    Failed,
}

impl SourceState {
    /// The name shown.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Connecting => "connecting",
            SourceState::Running => "running",
            SourceState::Paused => "paused",
            SourceState::Retrying => "retrying",
            SourceState::Stopped => "stopped",
            SourceState::Failed => "failed",
        }
    }
}

/// Counters of one source, updated by its task and read by `eddy_sources`.
#[derive(Debug)]
pub struct SourceStats {
    state: Mutex<SourceState>,
    messages: AtomicU64,
    rows: AtomicU64,
    errors: AtomicU64,
    dead_letters: AtomicU64,
    last_error: Mutex<Option<(i64, String)>>,
    lag: Mutex<BTreeMap<String, i64>>,
    samples: Mutex<VecDeque<(Instant, u64, u64)>>,
}

impl Default for SourceStats {
    fn default() -> Self {
        Self {
            state: Mutex::new(SourceState::Connecting),
            messages: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            last_error: Mutex::new(None),
            lag: Mutex::new(BTreeMap::new()),
            samples: Mutex::new(VecDeque::new()),
        }
    }
}

/// A point-in-time copy of a source's stats.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSnapshot {
    /// Its state.
    pub state: SourceState,
    /// Messages consumed and committed.
    pub messages: u64,
    /// Rows written.
    pub rows: u64,
    /// Messages per second over the last seconds.
    pub messages_per_second: f64,
    /// Rows per second over the last seconds.
    pub rows_per_second: f64,
    /// Errors: dead letters, failed writes, connection failures.
    pub errors: u64,
    /// Messages sent to `eddy_dead_letters`.
    pub dead_letters: u64,
    /// The last error and when (ns since the epoch).
    pub last_error: Option<(i64, String)>,
    /// Messages not yet consumed, by partition (Kafka).
    pub lag: BTreeMap<String, i64>,
}

impl SourceStats {
    /// Sets the state.
    pub fn set_state(&self, state: SourceState) {
        *self.state.lock() = state;
    }

    /// The state.
    pub fn state(&self) -> SourceState {
        *self.state.lock()
    }

    /// Counts a committed batch.
    pub fn committed(&self, messages: u64, rows: u64) {
        let m = self.messages.fetch_add(messages, Ordering::Relaxed) + messages;
        let r = self.rows.fetch_add(rows, Ordering::Relaxed) + rows;
        self.sample(m, r);
    }

    /// Counts dead letters written.
    pub fn dead_lettered(&self, n: u64, last: &str) {
        self.dead_letters.fetch_add(n, Ordering::Relaxed);
        self.error(last);
        self.errors
            .fetch_add(n.saturating_sub(1), Ordering::Relaxed);
    }

    /// Records an error.
    pub fn error(&self, message: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock() = Some((now_ns(), message.to_string()));
    }

    /// Replaces the lag of one partition.
    pub fn set_lag(&self, partition: &str, lag: i64) {
        self.lag.lock().insert(partition.to_string(), lag.max(0));
    }

    /// Forgets the lag of partitions no longer owned.
    pub fn retain_lag(&self, keep: impl Fn(&str) -> bool) {
        self.lag.lock().retain(|k, _| keep(k));
    }

    fn sample(&self, messages: u64, rows: u64) {
        let now = Instant::now();
        let mut s = self.samples.lock();
        s.push_back((now, messages, rows));
        while s.len() > 2 && s.front().is_some_and(|f| now - f.0 > RATE_WINDOW) {
            s.pop_front();
        }
        if s.len() > 1024 {
            s.pop_front();
        }
    }

    /// A copy for display.
    pub fn snapshot(&self) -> StatsSnapshot {
        let messages = self.messages.load(Ordering::Relaxed);
        let rows = self.rows.load(Ordering::Relaxed);
        let (messages_per_second, rows_per_second) = {
            let s = self.samples.lock();
            match s.front() {
                Some(&(t0, m0, r0)) => {
                    // Over the window up to now: a source that stopped shows its rate falling.
                    let secs = t0.elapsed().as_secs_f64().max(1.0);
                    if t0.elapsed() > RATE_WINDOW * 3 {
                        (0.0, 0.0)
                    } else {
                        ((messages - m0) as f64 / secs, (rows - r0) as f64 / secs)
                    }
                }
                None => (0.0, 0.0),
            }
        };
        StatsSnapshot {
            state: self.state(),
            messages,
            rows,
            messages_per_second,
            rows_per_second,
            errors: self.errors.load(Ordering::Relaxed),
            dead_letters: self.dead_letters.load(Ordering::Relaxed),
            last_error: self.last_error.lock().clone(),
            lag: self.lag.lock().clone(),
        }
    }
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
