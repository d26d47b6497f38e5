//! Advisory locks: `pg_advisory_lock` and its family, which migration tools (Flyway, Alembic
//! setups, Liquibase), job schedulers and asyncpg's pool reset call to coordinate sessions.
//!
//! One lock table serves the whole server ([`LockTable::global`]). A lock is named by a
//! `bigint` key or by a pair of `integer` keys (two separate key spaces, as in PostgreSQL) and
//! is taken exclusive (one session) or shared (any number of sessions; an exclusive request
//! waits for all of them). A session never conflicts with itself, and its locks are counted:
//! taken twice, released twice.
//!
//! - **Session-level** locks (`pg_advisory_lock`, `pg_try_advisory_lock`, their `_shared`
//!   forms) are held until `pg_advisory_unlock`, `pg_advisory_unlock_all()`, `DISCARD ALL` or
//!   the end of the connection, however it ends.
//! - **Transaction-level** locks (`pg_advisory_xact_lock`, `pg_try_advisory_xact_lock`, their
//!   `_shared` forms) are released when the transaction ends. Eddy has no multi-statement
//!   transactions, but it tracks `BEGIN`: inside `BEGIN ... COMMIT/ROLLBACK` they are held
//!   until `COMMIT` or `ROLLBACK`; outside, every statement is its own transaction, as in
//!   PostgreSQL's autocommit, and they are released when the statement ends (its last row
//!   sent). `pg_advisory_unlock` does not release them, as in PostgreSQL.
//!
//! Waiting. DataFusion calls scalar functions synchronously, on the query runtime's threads
//! (a multi-thread tokio runtime, see `eddy_query::executor`). A blocking `pg_advisory_lock`
//! that cannot be granted at once therefore waits inside `tokio::task::block_in_place`, which
//! hands the thread's other tasks to another thread first, and drives an async wait there
//! ([`LockTable::lock`]): it wakes when a holder releases the key (a `Notify` per key), and
//! stops with SQLSTATE 57014 when the statement is cancelled (a cancel request,
//! `pg_cancel_backend`) or reaches `statement_timeout` (the statement's own
//! [`crate::cancel::Interrupt`], which the connection hands to the session as each statement
//! starts), with 55P03 at `lock_timeout`, and with 40P01 when, after a second of waiting (as
//! PostgreSQL's `deadlock_timeout`), the wait closes a cycle of sessions waiting for each other.
//! Requests are queued in arrival order: a new request waits behind an earlier one it conflicts
//! with, so a stream of shared lockers cannot starve an exclusive one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::common::cast::as_int64_array;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::activity::BackendPid;
use crate::cancel::Interrupt;
use crate::error::PgError;
use crate::settings::{SessionVars, setting, timeout_millis};
use crate::wire::LogLimit;

/// How long a waiter waits before it looks for a deadlock (PostgreSQL's `deadlock_timeout`).
const DEADLOCK_TIMEOUT: Duration = Duration::from_secs(1);

/// Most (session, key) pairs held at once on the server. PostgreSQL's lock table is bounded
/// too (`max_locks_per_transaction`); without a bound one `SELECT pg_advisory_lock(i) FROM
/// generate_series(...)` could take the server's memory.
pub const HELD_MAX: usize = 100_000;

/// The name of an advisory lock: `pg_advisory_lock(bigint)` and `pg_advisory_lock(int, int)`
/// are separate key spaces, as in PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockKey {
    /// One `bigint` key.
    Int8(i64),
    /// Two `integer` keys.
    Pair(i32, i32),
}

impl std::fmt::Display for LockKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockKey::Int8(k) => write!(f, "{k}"),
            LockKey::Pair(a, b) => write!(f, "({a}, {b})"),
        }
    }
}

/// How a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One session at a time.
    Exclusive,
    /// Any number of sessions, none holding it exclusive.
    Shared,
}

impl Mode {
    fn index(self) -> usize {
        match self {
            Mode::Exclusive => 0,
            Mode::Shared => 1,
        }
    }

    /// PostgreSQL's name for the lock mode, as its messages print it.
    fn pg_name(self) -> &'static str {
        match self {
            Mode::Exclusive => "ExclusiveLock",
            Mode::Shared => "ShareLock",
        }
    }

    fn conflicts(self, other: Mode) -> bool {
        self == Mode::Exclusive || other == Mode::Exclusive
    }
}

/// Until when a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Until unlocked or the session ends.
    Session,
    /// Until the transaction ends (see the module documentation).
    Transaction,
}

/// A session's identity in the lock table.
pub type HolderId = u64;

/// How many times one session holds one key, by scope and mode.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Session-level holds: `[exclusive, shared]`.
    pub session: [u64; 2],
    /// Transaction-level holds: `[exclusive, shared]`.
    pub transaction: [u64; 2],
}

impl Counts {
    fn get_mut(&mut self, mode: Mode, scope: Scope) -> &mut u64 {
        match scope {
            Scope::Session => &mut self.session[mode.index()],
            Scope::Transaction => &mut self.transaction[mode.index()],
        }
    }

    fn holds(&self, mode: Mode) -> bool {
        self.session[mode.index()] > 0 || self.transaction[mode.index()] > 0
    }

    fn is_empty(&self) -> bool {
        *self == Counts::default()
    }

    /// Whether these holds (another session's) keep a request in `mode` from being granted.
    fn blocks(&self, mode: Mode) -> bool {
        self.holds(Mode::Exclusive) || (mode == Mode::Exclusive && self.holds(Mode::Shared))
    }
}

/// A request waiting for a key.
#[derive(Debug, Clone, Copy)]
struct Waiter {
    holder: HolderId,
    mode: Mode,
}

/// One key's holders and queue.
#[derive(Debug, Default)]
struct KeyState {
    holders: HashMap<HolderId, Counts>,
    /// Waiting requests by ticket: arrival order.
    waiters: BTreeMap<u64, Waiter>,
    /// Wakes the waiters when the holders or the queue change.
    wake: Arc<Notify>,
}

impl KeyState {
    /// Whether `holder` may take the key in `mode` now. `ticket` is its place in the queue if it
    /// waits; a request not queued yet comes after every waiter.
    fn grantable(&self, holder: HolderId, mode: Mode, ticket: Option<u64>) -> bool {
        if self
            .holders
            .iter()
            .any(|(h, counts)| *h != holder && counts.blocks(mode))
        {
            return false;
        }
        // A session that holds the key already is not queued behind others: they may be
        // waiting for it, so queueing it would deadlock.
        if self.holders.contains_key(&holder) {
            return true;
        }
        self.earlier_conflicting(holder, mode, ticket)
            .next()
            .is_none()
    }

    /// Sessions waiting ahead of `ticket` (all waiters without one) for a mode that conflicts.
    fn earlier_conflicting(
        &self,
        holder: HolderId,
        mode: Mode,
        ticket: Option<u64>,
    ) -> impl Iterator<Item = HolderId> + '_ {
        let ahead = match ticket {
            Some(t) => self.waiters.range(..t),
            None => self.waiters.range::<u64, _>(..),
        };
        ahead
            .filter(move |(_, w)| w.holder != holder && w.mode.conflicts(mode))
            .map(|(_, w)| w.holder)
    }

    /// The sessions a waiting request waits for.
    fn blockers(&self, holder: HolderId, mode: Mode, ticket: u64) -> Vec<HolderId> {
        let mut out: Vec<HolderId> = self
            .holders
            .iter()
            .filter(|(h, counts)| **h != holder && counts.blocks(mode))
            .map(|(h, _)| *h)
            .collect();
        if !self.holders.contains_key(&holder) {
            out.extend(self.earlier_conflicting(holder, mode, Some(ticket)));
        }
        out
    }

    fn is_unused(&self) -> bool {
        self.holders.is_empty() && self.waiters.is_empty()
    }
}

/// The table's state, under one lock.
#[derive(Debug, Default)]
struct Inner {
    locks: HashMap<LockKey, KeyState>,
    /// Open sessions and the keys each holds.
    sessions: HashMap<HolderId, HashSet<LockKey>>,
    /// (session, key) pairs held, against `held_max`.
    held: usize,
    next_ticket: u64,
}

impl Inner {
    fn check_open(&self, holder: HolderId) -> Result<(), PgError> {
        if self.sessions.contains_key(&holder) {
            Ok(())
        } else {
            Err(PgError::new(
                "08003",
                "the session has ended; its advisory locks are released",
            ))
        }
    }

    fn grantable(&self, key: LockKey, holder: HolderId, mode: Mode, ticket: Option<u64>) -> bool {
        self.locks
            .get(&key)
            .is_none_or(|state| state.grantable(holder, mode, ticket))
    }

    /// Adds one hold; the caller checked that it may be granted.
    fn grant(
        &mut self,
        key: LockKey,
        holder: HolderId,
        mode: Mode,
        scope: Scope,
        held_max: usize,
    ) -> Result<(), PgError> {
        let new_pair = self
            .locks
            .get(&key)
            .is_none_or(|state| !state.holders.contains_key(&holder));
        if new_pair && self.held >= held_max {
            return Err(PgError::new(
                "53200",
                format!(
                    "out of advisory lock slots: the server holds at most {held_max} \
                     (session, key) pairs; release locks with pg_advisory_unlock"
                ),
            ));
        }
        let counts = self
            .locks
            .entry(key)
            .or_default()
            .holders
            .entry(holder)
            .or_default();
        let n = counts.get_mut(mode, scope);
        *n = n.saturating_add(1);
        if new_pair {
            self.held += 1;
            self.sessions.entry(holder).or_default().insert(key);
        }
        Ok(())
    }

    /// Applies `change` to `holder`'s holds of `key`, drops what is left empty and wakes the
    /// key's waiters if `change` says it released something.
    fn change(
        &mut self,
        key: LockKey,
        holder: HolderId,
        change: impl FnOnce(&mut Counts) -> bool,
    ) -> bool {
        let Some(state) = self.locks.get_mut(&key) else {
            return false;
        };
        let Some(counts) = state.holders.get_mut(&holder) else {
            return false;
        };
        let released = change(&mut *counts);
        let emptied = counts.is_empty();
        if emptied {
            state.holders.remove(&holder);
            self.held = self.held.saturating_sub(1);
            if let Some(keys) = self.sessions.get_mut(&holder) {
                keys.remove(&key);
            }
        }
        if released {
            state.wake.notify_waiters();
        }
        if state.is_unused() {
            self.locks.remove(&key);
        }
        released
    }

    /// Takes a request out of the queue, waking the requests behind it.
    fn dequeue(&mut self, key: LockKey, ticket: u64) {
        let Some(state) = self.locks.get_mut(&key) else {
            return;
        };
        if state.waiters.remove(&ticket).is_some() {
            state.wake.notify_waiters();
        }
        if state.is_unused() {
            self.locks.remove(&key);
        }
    }

    /// Whether `start`'s waiting closes a cycle of sessions waiting for each other.
    fn deadlocked(&self, start: HolderId) -> bool {
        let mut waits: HashMap<HolderId, Vec<(LockKey, Mode, u64)>> = HashMap::new();
        for (key, state) in &self.locks {
            for (ticket, w) in &state.waiters {
                waits
                    .entry(w.holder)
                    .or_default()
                    .push((*key, w.mode, *ticket));
            }
        }
        let mut seen = HashSet::new();
        let mut stack = vec![start];
        while let Some(holder) = stack.pop() {
            for (key, mode, ticket) in waits.get(&holder).into_iter().flatten() {
                let Some(state) = self.locks.get(key) else {
                    continue;
                };
                for blocker in state.blockers(holder, *mode, *ticket) {
                    if blocker == start {
                        return true;
                    }
                    if seen.insert(blocker) {
                        stack.push(blocker);
                    }
                }
            }
        }
        false
    }
}

/// The server's advisory locks.
#[derive(Debug)]
pub struct LockTable {
    inner: Mutex<Inner>,
    next_holder: AtomicU64,
    held_max: usize,
    /// Unlocking a lock not held is logged as PostgreSQL's WARNING; a client could repeat it.
    warnings: Mutex<LogLimit>,
}

impl Default for LockTable {
    fn default() -> Self {
        LockTable::with_capacity(HELD_MAX)
    }
}

static GLOBAL: LazyLock<Arc<LockTable>> = LazyLock::new(|| Arc::new(LockTable::default()));

impl LockTable {
    /// A table holding at most `held_max` (session, key) pairs.
    pub fn with_capacity(held_max: usize) -> LockTable {
        LockTable {
            inner: Mutex::new(Inner::default()),
            next_holder: AtomicU64::new(1),
            held_max,
            warnings: Mutex::new(LogLimit::with_burst(20)),
        }
    }

    /// The table of this server (one per process, as a server has one Postgres front end).
    pub fn global() -> Arc<LockTable> {
        GLOBAL.clone()
    }

    /// A new session's identity; [`LockTable::end_session`] ends it.
    pub fn register(&self) -> HolderId {
        let id = self.next_holder.fetch_add(1, Ordering::Relaxed);
        self.inner.lock().sessions.insert(id, HashSet::new());
        id
    }

    /// The session ended: every lock it holds is released and its waits fail.
    pub fn end_session(&self, holder: HolderId) {
        let mut inner = self.inner.lock();
        let keys = inner.sessions.remove(&holder).unwrap_or_default();
        for key in keys {
            inner.change(key, holder, |counts| {
                *counts = Counts::default();
                true
            });
        }
        // Its own waits (a statement still running on the query threads) wake up to fail.
        for state in inner.locks.values() {
            if state.waiters.values().any(|w| w.holder == holder) {
                state.wake.notify_waiters();
            }
        }
    }

    /// `pg_try_advisory_lock`: takes the lock if that is possible without waiting.
    pub fn try_lock(
        &self,
        holder: HolderId,
        key: LockKey,
        mode: Mode,
        scope: Scope,
    ) -> Result<bool, PgError> {
        let mut inner = self.inner.lock();
        inner.check_open(holder)?;
        if !inner.grantable(key, holder, mode, None) {
            return Ok(false);
        }
        inner.grant(key, holder, mode, scope, self.held_max)?;
        Ok(true)
    }

    /// `pg_advisory_lock`: takes the lock, waiting as long as it takes, or until `stop`
    /// resolves (the error it gives is the request's), or until the wait would deadlock.
    pub async fn lock(
        &self,
        holder: HolderId,
        key: LockKey,
        mode: Mode,
        scope: Scope,
        stop: impl Future<Output = PgError>,
    ) -> Result<(), PgError> {
        let (ticket, wake) = {
            let mut inner = self.inner.lock();
            inner.check_open(holder)?;
            if inner.grantable(key, holder, mode, None) {
                return inner.grant(key, holder, mode, scope, self.held_max);
            }
            let ticket = inner.next_ticket;
            inner.next_ticket += 1;
            let state = inner.locks.entry(key).or_default();
            state.waiters.insert(ticket, Waiter { holder, mode });
            (ticket, state.wake.clone())
        };
        // Leaves the queue however the wait ends (granted, stopped, or its future dropped).
        let _queued = Queued {
            table: self,
            key,
            ticket,
        };
        tokio::pin!(stop);
        let deadlock_check = tokio::time::sleep(DEADLOCK_TIMEOUT);
        tokio::pin!(deadlock_check);
        let mut checked = false;
        loop {
            // Registered before the check, so a release between the check and the wait
            // still wakes it.
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut inner = self.inner.lock();
                inner.check_open(holder)?;
                if inner.grantable(key, holder, mode, Some(ticket)) {
                    inner.dequeue(key, ticket);
                    return inner.grant(key, holder, mode, scope, self.held_max);
                }
            }
            tokio::select! {
                () = &mut notified => {}
                e = &mut stop => return Err(e),
                () = &mut deadlock_check, if !checked => {
                    checked = true;
                    let mut inner = self.inner.lock();
                    // Found and left in one step, so the other sessions of the cycle see it
                    // broken and go on waiting.
                    if inner.deadlocked(holder) {
                        inner.dequeue(key, ticket);
                        return Err(PgError::new(
                            "40P01",
                            format!(
                                "deadlock detected: the wait for {} on advisory lock {key} \
                                 closes a cycle of sessions waiting for each other",
                                mode.pg_name()
                            ),
                        ));
                    }
                }
            }
        }
    }

    /// `pg_advisory_unlock`: releases one session-level hold in `mode`; false (and PostgreSQL's
    /// warning, in the log) if the session holds none.
    pub fn unlock(&self, holder: HolderId, key: LockKey, mode: Mode) -> Result<bool, PgError> {
        let released = {
            let mut inner = self.inner.lock();
            inner.check_open(holder)?;
            inner.change(key, holder, |counts| {
                let n = counts.get_mut(mode, Scope::Session);
                if *n == 0 {
                    return false;
                }
                *n -= 1;
                true
            })
        };
        if !released && let Some(suppressed) = self.warnings.lock().ready() {
            tracing::warn!(
                lock = %key,
                suppressed,
                "pg_advisory_unlock: you don't own a lock of type {}",
                mode.pg_name()
            );
        }
        Ok(released)
    }

    /// `pg_advisory_unlock_all()`: releases the session's session-level locks (not its
    /// transaction-level ones, as in PostgreSQL).
    pub fn unlock_all(&self, holder: HolderId) {
        self.release(holder, |counts| {
            std::mem::take(&mut counts.session) != [0, 0]
        });
    }

    /// The session's transaction ended: releases its transaction-level locks.
    pub fn release_transaction(&self, holder: HolderId) {
        self.release(holder, |counts| {
            std::mem::take(&mut counts.transaction) != [0, 0]
        });
    }

    fn release(&self, holder: HolderId, change: impl Fn(&mut Counts) -> bool) {
        let mut inner = self.inner.lock();
        let keys: Vec<LockKey> = match inner.sessions.get(&holder) {
            Some(keys) => keys.iter().copied().collect(),
            None => return,
        };
        for key in keys {
            inner.change(key, holder, &change);
        }
    }

    /// How `holder` holds `key` now.
    #[cfg(test)]
    fn holds(&self, holder: HolderId, key: LockKey) -> Counts {
        self.inner
            .lock()
            .locks
            .get(&key)
            .and_then(|state| state.holders.get(&holder).copied())
            .unwrap_or_default()
    }
}

/// A queued request; dropping it leaves the queue.
struct Queued<'a> {
    table: &'a LockTable,
    key: LockKey,
    ticket: u64,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.table.inner.lock().dequeue(self.key, self.ticket);
    }
}

/// One session's side of the lock table, as its functions and statements use it.
#[derive(Clone)]
pub(crate) struct SessionLocks {
    table: Arc<LockTable>,
    holder: HolderId,
    /// For the log lines of the session's lock waits.
    pid: BackendPid,
    /// For `lock_timeout`, and whether a transaction block (`BEGIN`) is open.
    vars: SessionVars,
    /// What stops the statement running now (cancel request, `statement_timeout`).
    interrupt: Arc<Mutex<Option<Interrupt>>>,
    /// The session may hold transaction-level locks (spares statements a look at the table).
    transaction_locks: Arc<AtomicBool>,
}

impl std::fmt::Debug for SessionLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLocks")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl SessionLocks {
    /// A new session of `table`.
    pub(crate) fn new(table: Arc<LockTable>, pid: BackendPid, vars: SessionVars) -> SessionLocks {
        let holder = table.register();
        SessionLocks {
            table,
            holder,
            pid,
            vars,
            interrupt: Arc::default(),
            transaction_locks: Arc::default(),
        }
    }

    /// A statement starts: a lock wait from now on stops when `interrupt` fires.
    pub(crate) fn statement_started(&self, interrupt: Interrupt) {
        *self.interrupt.lock() = Some(interrupt);
    }

    /// Held while a statement runs (with its rows); see [`StatementLocks`].
    pub(crate) fn statement(&self) -> StatementLocks {
        StatementLocks {
            locks: self.clone(),
        }
    }

    /// `COMMIT` or `ROLLBACK` ended the transaction block: its locks are released.
    pub(crate) fn end_block(&self) {
        self.release_transaction();
    }

    /// Whether a transaction block (`BEGIN`) is open: transaction-level locks are then held
    /// until `COMMIT` or `ROLLBACK`.
    fn in_block(&self) -> bool {
        self.vars.lock().in_block()
    }

    /// `pg_advisory_unlock_all()` (and `DISCARD ALL`).
    pub(crate) fn unlock_all(&self) {
        self.table.unlock_all(self.holder);
    }

    fn release_transaction(&self) {
        if self.transaction_locks.swap(false, Ordering::Relaxed) {
            self.table.release_transaction(self.holder);
        }
    }

    fn try_lock(&self, key: LockKey, mode: Mode, scope: Scope) -> Result<bool, PgError> {
        let taken = self.table.try_lock(self.holder, key, mode, scope)?;
        if taken && scope == Scope::Transaction {
            self.transaction_locks.store(true, Ordering::Relaxed);
        }
        Ok(taken)
    }

    /// Takes a lock, waiting on the calling (query) thread if it must.
    fn lock(&self, key: LockKey, mode: Mode, scope: Scope) -> Result<(), PgError> {
        if !self.try_lock(key, mode, scope)? {
            let started = std::time::Instant::now();
            tracing::debug!(
                pid = self.pid.load(Ordering::Relaxed),
                lock = %key,
                "waiting for advisory {}",
                mode.pg_name()
            );
            let table = self.table.clone();
            let (holder, stop) = (self.holder, self.stop());
            block_on_query_thread(
                async move { table.lock(holder, key, mode, scope, stop).await },
            )??;
            tracing::debug!(
                pid = self.pid.load(Ordering::Relaxed),
                lock = %key,
                waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "acquired advisory {}",
                mode.pg_name()
            );
            if scope == Scope::Transaction {
                self.transaction_locks.store(true, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// What ends a wait early: the statement's interrupt, or `lock_timeout`.
    fn stop(&self) -> impl Future<Output = PgError> {
        let interrupt = self.interrupt.lock().clone();
        let lock_timeout = setting(&self.vars, "lock_timeout")
            .and_then(|v| timeout_millis("lock_timeout", &v).ok())
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        async move {
            let interrupted = async move {
                let Some(mut interrupt) = interrupt else {
                    return std::future::pending::<PgError>().await;
                };
                let never = std::future::pending::<Result<(), PgError>>();
                match crate::cancel::unless_cancelled(&mut interrupt, never).await {
                    Err(e) => e,
                    Ok(()) => crate::cancel::cancelled(),
                }
            };
            let timed_out = async move {
                match lock_timeout {
                    Some(t) => tokio::time::sleep(t).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                e = interrupted => e,
                () = timed_out => PgError::new("55P03", "canceling statement due to lock timeout"),
            }
        }
    }
}

/// Runs `work` to completion on the calling thread, a thread of a multi-thread tokio runtime
/// (the query runtime): `block_in_place` first moves the thread's other tasks elsewhere, so
/// the wait blocks no one else.
fn block_on_query_thread<F: Future>(work: F) -> Result<F::Output, PgError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let cannot = || {
        PgError::new(
            "0A000",
            "pg_advisory_lock cannot wait here (not on the query threads); use \
             pg_try_advisory_lock",
        )
    };
    let handle = Handle::try_current().map_err(|_| cannot())?;
    if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
        return Err(cannot());
    }
    Ok(tokio::task::block_in_place(move || handle.block_on(work)))
}

/// Owned by the session: ends its locks when the session goes (the connection closed, however).
pub(crate) struct SessionGuard(SessionLocks);

impl SessionGuard {
    /// Owns `locks`' session.
    pub(crate) fn new(locks: SessionLocks) -> SessionGuard {
        SessionGuard(locks)
    }

    /// The session's locks.
    pub(crate) fn locks(&self) -> &SessionLocks {
        &self.0
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.table.end_session(self.0.holder);
    }
}

/// Held while one statement runs, rows included: when it is dropped the statement's
/// transaction ends, unless `BEGIN` opened a block, and its transaction-level locks go.
pub struct StatementLocks {
    locks: SessionLocks,
}

impl std::fmt::Debug for StatementLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatementLocks").finish_non_exhaustive()
    }
}

impl Drop for StatementLocks {
    fn drop(&mut self) {
        if !self.locks.in_block() {
            self.locks.release_transaction();
        }
    }
}

/// What an advisory lock function does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Call {
    Lock {
        mode: Mode,
        scope: Scope,
        wait: bool,
    },
    Unlock(Mode),
    UnlockAll,
}

const fn locking(mode: Mode, scope: Scope, wait: bool) -> Call {
    Call::Lock { mode, scope, wait }
}

/// The advisory lock functions, with what each does.
const FUNCTIONS: [(&str, Call); 11] = {
    use Mode::{Exclusive, Shared};
    use Scope::{Session, Transaction};
    [
        ("pg_advisory_lock", locking(Exclusive, Session, true)),
        ("pg_advisory_lock_shared", locking(Shared, Session, true)),
        ("pg_try_advisory_lock", locking(Exclusive, Session, false)),
        (
            "pg_try_advisory_lock_shared",
            locking(Shared, Session, false),
        ),
        (
            "pg_advisory_xact_lock",
            locking(Exclusive, Transaction, true),
        ),
        (
            "pg_advisory_xact_lock_shared",
            locking(Shared, Transaction, true),
        ),
        (
            "pg_try_advisory_xact_lock",
            locking(Exclusive, Transaction, false),
        ),
        (
            "pg_try_advisory_xact_lock_shared",
            locking(Shared, Transaction, false),
        ),
        ("pg_advisory_unlock", Call::Unlock(Exclusive)),
        ("pg_advisory_unlock_shared", Call::Unlock(Shared)),
        ("pg_advisory_unlock_all", Call::UnlockAll),
    ]
};

/// The advisory lock functions of one session (`pg_advisory_lock`, ..., each also under its
/// `pg_catalog.` name).
pub(crate) fn udfs(locks: &SessionLocks) -> Vec<ScalarUDF> {
    FUNCTIONS
        .iter()
        .map(|&(name, call)| {
            ScalarUDF::new_from_impl(AdvisoryFunction {
                name,
                aliases: vec![format!("pg_catalog.{name}")],
                call,
                signature: Signature::user_defined(Volatility::Volatile),
                locks: locks.clone(),
            })
        })
        .collect()
}

/// One advisory lock function of one session.
struct AdvisoryFunction {
    name: &'static str,
    aliases: Vec<String>,
    call: Call,
    signature: Signature,
    locks: SessionLocks,
}

impl std::fmt::Debug for AdvisoryFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdvisoryFunction")
            .field("name", &self.name)
            .field("session", &self.locks.holder)
            .finish_non_exhaustive()
    }
}

impl PartialEq for AdvisoryFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.locks.holder == other.locks.holder
            && Arc::ptr_eq(&self.locks.table, &other.locks.table)
    }
}

impl Eq for AdvisoryFunction {}

impl Hash for AdvisoryFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.locks.holder.hash(state);
    }
}

/// Carries a SQLSTATE through DataFusion (`PgError::from` finds it again).
fn external(e: PgError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl ScalarUDFImpl for AdvisoryFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        // Integers of any width, and text (an untyped parameter a driver sends as text) are
        // read as bigint, like PostgreSQL's casts of an unknown literal.
        let key_like = |t: &DataType| {
            t.is_integer()
                || t.is_null()
                || matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        };
        let arity_ok = match self.call {
            Call::UnlockAll => arg_types.is_empty(),
            _ => matches!(arg_types.len(), 1 | 2),
        };
        if arity_ok && arg_types.iter().all(key_like) {
            return Ok(vec![DataType::Int64; arg_types.len()]);
        }
        let types: Vec<String> = arg_types.iter().map(|t| t.to_string()).collect();
        let expected = match self.call {
            Call::UnlockAll => "no arguments",
            _ => "(bigint) or (integer, integer)",
        };
        Err(DataFusionError::Plan(format!(
            "function {}({}) does not exist; it takes {expected}",
            self.name,
            types.join(", ")
        )))
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match self.call {
            // PostgreSQL's `void`: the column is NULL.
            Call::Lock { wait: true, .. } | Call::UnlockAll => DataType::Null,
            Call::Lock { wait: false, .. } | Call::Unlock(_) => DataType::Boolean,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if self.call == Call::UnlockAll {
            self.locks.unlock_all();
            return Ok(ColumnarValue::Scalar(ScalarValue::Null));
        }
        // A volatile function runs once per row, as in PostgreSQL: `SELECT pg_advisory_lock(1)
        // FROM t` takes the lock once per row of t.
        let keys = keys(&args.args, args.number_rows)?;
        match self.call {
            Call::Lock {
                mode,
                scope,
                wait: true,
            } => {
                for key in keys.into_iter().flatten() {
                    self.locks.lock(key, mode, scope).map_err(external)?;
                }
                Ok(ColumnarValue::Scalar(ScalarValue::Null))
            }
            Call::Lock {
                mode,
                scope,
                wait: false,
            } => {
                let taken = keys
                    .into_iter()
                    .map(|key| key.map(|k| self.locks.try_lock(k, mode, scope)).transpose())
                    .collect::<Result<Vec<Option<bool>>, PgError>>()
                    .map_err(external)?;
                Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(taken))))
            }
            Call::Unlock(mode) => {
                let table = &self.locks.table;
                let released = keys
                    .into_iter()
                    .map(|key| {
                        key.map(|k| table.unlock(self.locks.holder, k, mode))
                            .transpose()
                    })
                    .collect::<Result<Vec<Option<bool>>, PgError>>()
                    .map_err(external)?;
                Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(released))))
            }
            Call::UnlockAll => Ok(ColumnarValue::Scalar(ScalarValue::Null)),
        }
    }
}

/// The lock key of each row (`None` where an argument is NULL: the function then does nothing,
/// as PostgreSQL's strict functions).
fn keys(args: &[ColumnarValue], rows: usize) -> DfResult<Vec<Option<LockKey>>> {
    let int8 = |a: &ColumnarValue| -> DfResult<ArrayRef> {
        let array = a.to_array(rows)?;
        Ok(datafusion::arrow::compute::cast(&array, &DataType::Int64)?)
    };
    let int4 = |v: i64| {
        i32::try_from(v).map_err(|_| external(PgError::new("22003", "integer out of range")))
    };
    match args {
        [k] => {
            let k = int8(k)?;
            Ok(as_int64_array(&k)?
                .iter()
                .map(|k| k.map(LockKey::Int8))
                .collect())
        }
        [a, b] => {
            let (a, b) = (int8(a)?, int8(b)?);
            let (a, b) = (as_int64_array(&a)?, as_int64_array(&b)?);
            if a.len() != b.len() {
                return Err(DataFusionError::Internal(
                    "advisory lock keys of different lengths".into(),
                ));
            }
            a.iter()
                .zip(b.iter())
                .map(|pair| -> DfResult<Option<LockKey>> {
                    match pair {
                        (Some(a), Some(b)) => Ok(Some(LockKey::Pair(int4(a)?, int4(b)?))),
                        _ => Ok(None),
                    }
                })
                .collect()
        }
        _ => Err(DataFusionError::Execution(
            "advisory lock functions take (bigint) or (integer, integer)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: LockKey = LockKey::Int8(42);

    fn never() -> impl Future<Output = PgError> {
        std::future::pending()
    }

    #[test]
    fn session_locks_are_reentrant_and_counted() {
        let t = LockTable::default();
        let (a, b) = (t.register(), t.register());
        assert!(t.try_lock(a, K, Mode::Exclusive, Scope::Session).unwrap());
        assert!(t.try_lock(a, K, Mode::Exclusive, Scope::Session).unwrap());
        assert!(!t.try_lock(b, K, Mode::Exclusive, Scope::Session).unwrap());
        assert!(t.unlock(a, K, Mode::Exclusive).unwrap());
        // Still held once.
        assert!(!t.try_lock(b, K, Mode::Shared, Scope::Session).unwrap());
        assert!(t.unlock(a, K, Mode::Exclusive).unwrap());
        assert!(t.try_lock(b, K, Mode::Exclusive, Scope::Session).unwrap());
        // Not held: false, nothing changes.
        assert!(!t.unlock(a, K, Mode::Exclusive).unwrap());
        assert_eq!(t.holds(b, K).session, [1, 0]);
    }

    #[test]
    fn key_spaces_are_separate() {
        let t = LockTable::default();
        let (a, b) = (t.register(), t.register());
        assert!(
            t.try_lock(a, LockKey::Int8(1), Mode::Exclusive, Scope::Session)
                .unwrap()
        );
        assert!(
            t.try_lock(b, LockKey::Pair(0, 1), Mode::Exclusive, Scope::Session)
                .unwrap()
        );
        assert!(
            !t.try_lock(b, LockKey::Int8(1), Mode::Exclusive, Scope::Session)
                .unwrap()
        );
    }

    #[test]
    fn shared_locks_have_many_holders_and_exclude_exclusive() {
        let t = LockTable::default();
        let (a, b, c) = (t.register(), t.register(), t.register());
        assert!(t.try_lock(a, K, Mode::Shared, Scope::Session).unwrap());
        assert!(t.try_lock(b, K, Mode::Shared, Scope::Session).unwrap());
        assert!(!t.try_lock(c, K, Mode::Exclusive, Scope::Session).unwrap());
        // Unlocking the wrong mode releases nothing.
        assert!(!t.unlock(a, K, Mode::Exclusive).unwrap());
        assert!(t.unlock(a, K, Mode::Shared).unwrap());
        assert!(!t.try_lock(c, K, Mode::Exclusive, Scope::Session).unwrap());
        assert!(t.unlock(b, K, Mode::Shared).unwrap());
        assert!(t.try_lock(c, K, Mode::Exclusive, Scope::Session).unwrap());
        assert!(!t.try_lock(a, K, Mode::Shared, Scope::Session).unwrap());
        // A session does not conflict with itself.
        assert!(t.try_lock(c, K, Mode::Shared, Scope::Session).unwrap());
        assert_eq!(t.holds(c, K).session, [1, 1]);
    }

    #[test]
    fn unlock_all_leaves_transaction_locks_and_ending_the_session_releases_everything() {
        let t = LockTable::default();
        let (a, b) = (t.register(), t.register());
        let k2 = LockKey::Pair(7, 8);
        assert!(t.try_lock(a, K, Mode::Exclusive, Scope::Session).unwrap());
        assert!(t.try_lock(a, K, Mode::Exclusive, Scope::Session).unwrap());
        assert!(
            t.try_lock(a, k2, Mode::Exclusive, Scope::Transaction)
                .unwrap()
        );
        t.unlock_all(a);
        assert!(t.try_lock(b, K, Mode::Exclusive, Scope::Session).unwrap());
        assert!(!t.try_lock(b, k2, Mode::Shared, Scope::Session).unwrap());
        // pg_advisory_unlock does not release a transaction-level lock.
        assert!(!t.unlock(a, k2, Mode::Exclusive).unwrap());
        t.release_transaction(a);
        assert!(t.try_lock(b, k2, Mode::Shared, Scope::Session).unwrap());
        t.end_session(b);
        assert!(t.try_lock(a, K, Mode::Exclusive, Scope::Session).unwrap());
        assert!(t.try_lock(a, k2, Mode::Exclusive, Scope::Session).unwrap());
        // An ended session can take nothing.
        let e = t.try_lock(b, K, Mode::Shared, Scope::Session).unwrap_err();
        assert_eq!(e.sqlstate, "08003");
        t.end_session(a);
        assert!(t.inner.lock().locks.is_empty());
        assert_eq!(t.inner.lock().held, 0);
    }

    #[test]
    fn the_table_is_bounded() {
        let t = LockTable::with_capacity(2);
        let (a, b) = (t.register(), t.register());
        assert!(
            t.try_lock(a, LockKey::Int8(1), Mode::Shared, Scope::Session)
                .unwrap()
        );
        assert!(
            t.try_lock(b, LockKey::Int8(1), Mode::Shared, Scope::Session)
                .unwrap()
        );
        // Holding a key again takes no new slot.
        assert!(
            t.try_lock(a, LockKey::Int8(1), Mode::Shared, Scope::Session)
                .unwrap()
        );
        let e = t
            .try_lock(a, LockKey::Int8(2), Mode::Shared, Scope::Session)
            .unwrap_err();
        assert_eq!(e.sqlstate, "53200");
        t.end_session(b);
        assert!(
            t.try_lock(a, LockKey::Int8(2), Mode::Shared, Scope::Session)
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_waiter_is_woken_when_the_lock_is_released() {
        let t = Arc::new(LockTable::default());
        let (a, b) = (t.register(), t.register());
        assert!(t.try_lock(a, K, Mode::Exclusive, Scope::Session).unwrap());
        let waiter = {
            let t = t.clone();
            tokio::spawn(
                async move { t.lock(b, K, Mode::Exclusive, Scope::Session, never()).await },
            )
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        assert!(t.unlock(a, K, Mode::Exclusive).unwrap());
        let granted = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(matches!(granted, Ok(Ok(Ok(())))), "{granted:?}");
        assert_eq!(t.holds(b, K).session, [1, 0]);
        assert!(!t.try_lock(a, K, Mode::Shared, Scope::Session).unwrap());
    }

    #[tokio::test]
    async fn a_wait_stops_when_told_and_leaves_the_queue() {
        let t = Arc::new(LockTable::default());
        let (a, b, c) = (t.register(), t.register(), t.register());
        assert!(t.try_lock(a, K, Mode::Shared, Scope::Session).unwrap());
        let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
        let stop = async move {
            let _ = cancelled.await;
            crate::cancel::cancelled()
        };
        let waiter = {
            let t = t.clone();
            tokio::spawn(async move { t.lock(b, K, Mode::Exclusive, Scope::Session, stop).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Queued behind b's exclusive request, a new shared request waits.
        assert!(!t.try_lock(c, K, Mode::Shared, Scope::Session).unwrap());
        // a holds the key already: it is not queued behind b.
        assert!(t.try_lock(a, K, Mode::Shared, Scope::Session).unwrap());
        let _ = cancel.send(());
        let stopped = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        let Ok(Ok(Err(e))) = stopped else {
            panic!("the wait did not stop: {stopped:?}");
        };
        assert_eq!(e.sqlstate, "57014");
        assert!(t.try_lock(c, K, Mode::Shared, Scope::Session).unwrap());
        assert_eq!(t.holds(b, K), Counts::default());
    }

    #[tokio::test]
    async fn ending_the_session_ends_its_wait() {
        let t = Arc::new(LockTable::default());
        let (a, b) = (t.register(), t.register());
        assert!(t.try_lock(a, K, Mode::Exclusive, Scope::Session).unwrap());
        let waiter = {
            let t = t.clone();
            tokio::spawn(
                async move { t.lock(b, K, Mode::Exclusive, Scope::Session, never()).await },
            )
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        t.end_session(b);
        let ended = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(
            matches!(&ended, Ok(Ok(Err(e))) if e.sqlstate == "08003"),
            "{ended:?}"
        );
        // The lock was never granted to the ended session.
        assert!(t.unlock(a, K, Mode::Exclusive).unwrap());
        assert!(t.inner.lock().locks.is_empty());
    }

    #[tokio::test]
    async fn a_deadlock_is_detected_and_only_one_side_fails() {
        let t = Arc::new(LockTable::default());
        let (a, b) = (t.register(), t.register());
        let (k1, k2) = (LockKey::Int8(1), LockKey::Int8(2));
        assert!(t.try_lock(a, k1, Mode::Exclusive, Scope::Session).unwrap());
        assert!(t.try_lock(b, k2, Mode::Exclusive, Scope::Session).unwrap());
        let wait = |holder: HolderId, key: LockKey| {
            let t = t.clone();
            tokio::spawn(async move {
                t.lock(holder, key, Mode::Exclusive, Scope::Session, never())
                    .await
            })
        };
        let (wa, wb) = (wait(a, k2), wait(b, k1));
        // One of them finds the cycle after DEADLOCK_TIMEOUT and fails; the other still waits
        // (session-level locks survive the failed statement, as in PostgreSQL).
        let first = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if wa.is_finished() || wb.is_finished() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(first.is_ok(), "no deadlock detected");
        let (failed, other, survivor) = if wa.is_finished() {
            (wa, wb, b)
        } else {
            (wb, wa, a)
        };
        let e = failed.await.unwrap().unwrap_err();
        assert_eq!(e.sqlstate, "40P01");
        tokio::time::sleep(DEADLOCK_TIMEOUT + Duration::from_millis(300)).await;
        assert!(!other.is_finished());
        // The failed side gives up its lock: the survivor gets what it waited for.
        let loser = if survivor == a { b } else { a };
        t.unlock_all(loser);
        let granted = tokio::time::timeout(Duration::from_secs(5), other).await;
        assert!(matches!(granted, Ok(Ok(Ok(())))), "{granted:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_blocks_only_the_calling_thread() {
        // On a worker of a multi-thread runtime, as queries run.
        let r = tokio::spawn(async { block_on_query_thread(async { 7 }) }).await;
        assert!(matches!(r, Ok(Ok(7))), "{r:?}");
    }

    #[tokio::test]
    async fn waiting_is_refused_on_a_current_thread_runtime() {
        let e = block_on_query_thread(async { 7 }).unwrap_err();
        assert_eq!(e.sqlstate, "0A000");
    }
}
