//! The Kafka source: a consumer (librdkafka through `rdkafka`) on a thread of its own.
//!
//! Exactly once into Eddy: a batch's offsets are committed with its rows in one WAL record
//! ([`eddy_storage::Db::write_atomic`]). When a partition is assigned, the source starts after
//! the offset storage holds for it, or at the group's committed offset if that is later
//! (another node consumed it meanwhile); messages at or below the durable offset are skipped.
//! Offsets are committed to the group only after they are durable, for lag tools and for the
//! next owner of a partition. On a rebalance, messages read but not yet written are dropped
//! (the new owner reads them from the committed offset); before giving partitions up the
//! source commits its durable offsets synchronously, so a clean hand-over has neither a gap
//! nor a duplicate.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eddy_storage::{Db, SourceProgress};
use parking_lot::Mutex;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use crate::sources::decode::Message;
use crate::sources::options::{KafkaOptions, SourceSpec, Start};
use crate::sources::stats::SourceState;
use crate::sources::{Control, SourceTask, Stopped};

/// Batches decoded and written while the consumer reads the next: one being written, one
/// being decoded. More would only hold more memory; two cores are busy with these two.
const BATCHES_IN_FLIGHT: usize = 2;
/// Longest a batch waits for more messages once it has one.
const LINGER: Duration = Duration::from_millis(50);
/// How often partition lag is refreshed.
const LAG_INTERVAL: Duration = Duration::from_secs(5);
/// Longest the group's committed offsets trail storage's while messages flow.
const GROUP_COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// How long broker requests made inside a rebalance may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// The key a partition's offset is stored under.
fn key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// What the consumer thread and its rebalance callback share.
struct Shared {
    /// Bumped at every rebalance: messages read before it are dropped, not written.
    generation: AtomicU64,
    /// Partitions owned now.
    assigned: Mutex<BTreeSet<i32>>,
    /// Batches being decoded and written (at most `BATCHES_IN_FLIGHT`, oldest first), while
    /// the next one is read. Each writes only after the one before it is durable.
    inflight: Mutex<VecDeque<tokio::task::JoinHandle<Result<u64, Stopped>>>>,
    /// The runtime writes run on.
    handle: tokio::runtime::Handle,
}

impl Shared {
    /// Waits for the batches in flight, if any; `Some(false)` if the source was stopped before
    /// one was durable.
    fn finish_inflight(&self) -> Option<bool> {
        let handles: Vec<_> = self.inflight.lock().drain(..).collect();
        if handles.is_empty() {
            return None;
        }
        let mut durable = true;
        for h in handles {
            durable &= matches!(self.handle.block_on(h), Ok(Ok(_)));
        }
        Some(durable)
    }

    /// Waits for the oldest batch in flight if `BATCHES_IN_FLIGHT` are; as
    /// [`Shared::finish_inflight`].
    fn finish_oldest_if_full(&self) -> Option<bool> {
        let h = {
            let mut inflight = self.inflight.lock();
            if inflight.len() < BATCHES_IN_FLIGHT {
                return None;
            }
            inflight.pop_front()?
        };
        Some(matches!(self.handle.block_on(h), Ok(Ok(_))))
    }
}

/// The consumer's callbacks.
struct EddyContext {
    source: String,
    source_id: u64,
    topic: String,
    start: Start,
    db: Db,
    shared: Arc<Shared>,
}

impl ClientContext for EddyContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(source = %self.source, facility = fac, "{log_message}")
            }
            L::Warning => tracing::warn!(source = %self.source, facility = fac, "{log_message}"),
            _ => tracing::debug!(source = %self.source, facility = fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(source = %self.source, error = %error, "kafka: {reason}");
    }
}

impl EddyContext {
    /// Sets each partition of `tpl` to start after what storage holds, or at the group's
    /// committed offset if that is later.
    fn set_start_offsets(
        &self,
        consumer: &BaseConsumer<EddyContext>,
        tpl: &mut TopicPartitionList,
    ) {
        let durable = self.db.source_offsets(self.source_id);
        let committed = consumer
            .committed_offsets(tpl.clone(), BROKER_TIMEOUT)
            .map(|c| c.to_topic_map())
            .unwrap_or_else(|e| {
                tracing::warn!(source = %self.source, error = %e, "cannot read the group's committed offsets; starting from Eddy's own");
                Default::default()
            });
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        for p in partitions {
            let ours = durable.get(&key(&self.topic, p)).map(|o| o + 1);
            let theirs = match committed.get(&(self.topic.clone(), p)) {
                Some(Offset::Offset(o)) => Some(*o),
                _ => None,
            };
            let offset = match (ours, theirs) {
                (Some(a), Some(b)) => Offset::Offset(a.max(b)),
                (Some(a), None) => Offset::Offset(a),
                (None, Some(b)) => Offset::Offset(b),
                (None, None) => match self.start {
                    Start::Earliest => Offset::Beginning,
                    Start::Latest => Offset::End,
                },
            };
            tracing::info!(source = %self.source, partition = p, offset = ?offset, "partition assigned");
            if let Err(e) = tpl.set_partition_offset(&self.topic, p, offset) {
                tracing::warn!(source = %self.source, partition = p, error = %e, "cannot set the start offset");
            }
        }
    }

    /// Commits storage's offsets of the partitions owned to the group; returns whether it
    /// took them (or there was nothing to commit).
    fn commit_durable(&self, consumer: &BaseConsumer<EddyContext>, mode: CommitMode) -> bool {
        let durable = self.db.source_offsets(self.source_id);
        let mut tpl = TopicPartitionList::new();
        for p in self.shared.assigned.lock().iter() {
            if let Some(o) = durable.get(&key(&self.topic, *p)) {
                let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(o + 1));
            }
        }
        if tpl.count() == 0 {
            return true;
        }
        match consumer.commit(&tpl, mode) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(source = %self.source, error = %e, "cannot commit offsets to the group yet");
                false
            }
        }
    }
}

impl ConsumerContext for EddyContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        // The batch being written is durable (or abandoned) before partitions move, so the
        // offsets committed below are all there is.
        let _ = self.shared.finish_inflight();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.set_start_offsets(consumer, tpl);
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(source = %self.source, error = %e, "cannot take the assigned partitions");
                }
                *self.shared.assigned.lock() =
                    tpl.elements().iter().map(|e| e.partition()).collect();
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if !matches!(
                    self.db.config().wal_sync,
                    eddy_storage::WalSync::IntervalMs(_)
                ) || self.db.sync_wal().is_ok()
                {
                    let _ = self.commit_durable(consumer, CommitMode::Sync);
                }
                tracing::info!(source = %self.source, partitions = tpl.count(), "partitions revoked");
                let _ = consumer.unassign();
                self.shared.assigned.lock().clear();
            }
            other => {
                tracing::warn!(source = %self.source, error = ?other, "rebalance failed; giving up the partitions");
                let _ = consumer.unassign();
                self.shared.assigned.lock().clear();
            }
        }
    }
}

/// Starts the source on a thread of its own; `done` is sent when it has stopped.
pub(crate) fn spawn(task: SourceTask, done: tokio::sync::oneshot::Sender<()>) {
    let task = Arc::new(task);
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::error!(source = %task.def.name, "sources start inside the server's runtime");
        return;
    };
    let name = format!("eddy-kafka-{}", task.def.id);
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        run(&task, handle);
        task.stats.set_state(SourceState::Stopped);
        let _ = done.send(());
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a thread for a Kafka source");
    }
}

fn consumer_config(task: &SourceTask, k: &KafkaOptions) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers)
        .set("group.id", &k.group_id)
        .set("client.id", format!("eddy-{}", task.def.name))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set(
            "auto.offset.reset",
            match k.start {
                Start::Earliest => "earliest",
                Start::Latest => "latest",
            },
        )
        // What librdkafka prefetches is bounded: when storage pushes back the source stops
        // polling, the queue fills, and fetching stops.
        .set("queued.max.messages.kbytes", "65536")
        .set("max.poll.interval.ms", "600000")
        // A node that dies gives its partitions up after 10 s, not Kafka's 45 s.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("log.connection.close", "false");
    if let Some(p) = &k.security_protocol {
        c.set("security.protocol", p);
    }
    if let Some(m) = &k.sasl_mechanism {
        c.set("sasl.mechanism", m);
        if k.security_protocol.is_none() {
            c.set("security.protocol", "sasl_plaintext");
        }
    }
    if let Some(u) = &k.sasl_username {
        c.set("sasl.username", u);
    }
    if let Some(p) = &k.sasl_password {
        c.set("sasl.password", p);
    }
    c
}

fn run(task: &Arc<SourceTask>, handle: tokio::runtime::Handle) {
    let SourceSpec::Kafka(k) = &task.spec else {
        return;
    };
    let name = &task.def.name;
    let shared = Arc::new(Shared {
        generation: AtomicU64::new(0),
        assigned: Mutex::new(BTreeSet::new()),
        inflight: Mutex::new(VecDeque::new()),
        handle: handle.clone(),
    });
    let context = EddyContext {
        source: name.clone(),
        source_id: task.def.id,
        topic: k.topic.clone(),
        start: k.start,
        db: task.ingest.db().clone(),
        shared: shared.clone(),
    };
    let consumer: BaseConsumer<EddyContext> =
        match consumer_config(task, k).create_with_context(context) {
            Ok(c) => c,
            Err(e) => {
                task.stats
                    .error(&format!("cannot create the Kafka consumer: {e}"));
                task.stats.set_state(SourceState::Failed);
                tracing::error!(source = %name, error = %e, "cannot create the Kafka consumer");
                return;
            }
        };
    let started = match &k.partitions {
        Some(partitions) => {
            let mut tpl = TopicPartitionList::new();
            for p in partitions {
                tpl.add_partition(&k.topic, *p);
            }
            consumer.context().set_start_offsets(&consumer, &mut tpl);
            *shared.assigned.lock() = partitions.iter().copied().collect();
            consumer.assign(&tpl)
        }
        None => consumer.subscribe(&[&k.topic]),
    };
    if let Err(e) = started {
        task.stats.error(&format!("cannot subscribe: {e}"));
        task.stats.set_state(SourceState::Failed);
        return;
    }
    tracing::info!(source = %name, topic = %k.topic, group = %k.group_id, "Kafka source started");
    task.stats.set_state(SourceState::Running);
    let mut paused = false;
    let mut last_lag = Instant::now() - LAG_INTERVAL;
    // The group's committed offsets are behind storage's (a commit failed during a rebalance).
    let mut group_behind = false;
    let mut last_commit = Instant::now();
    // Whether the last batch handed off was written, for the next one to wait on.
    let mut previous_done: Option<tokio::sync::oneshot::Receiver<bool>> = None;
    let common = task.spec.common();
    let mut clock = StageClock::new();
    loop {
        match task.wanted() {
            Control::Stop => break,
            Control::Pause => {
                // Every time: a rebalance may have brought partitions that are not paused.
                if let Ok(a) = consumer.assignment() {
                    let _ = consumer.pause(&a);
                }
                if !paused {
                    paused = true;
                    task.stats.set_state(SourceState::Paused);
                }
                // Polling keeps the group membership; paused partitions yield nothing.
                let _ = consumer.poll(Duration::from_millis(200));
                continue;
            }
            Control::Run => {
                if paused {
                    if let Ok(a) = consumer.assignment() {
                        let _ = consumer.resume(&a);
                    }
                    paused = false;
                    task.stats.set_state(SourceState::Running);
                }
            }
        }
        if last_lag.elapsed() >= LAG_INTERVAL {
            refresh_lag(task, &consumer, &k.topic, &shared);
            last_lag = Instant::now();
            clock.report(name);
        }
        let polling = Instant::now();
        // Collect a batch.
        let durable = task.ingest.db().source_offsets(task.def.id);
        let generation = shared.generation.load(Ordering::SeqCst);
        let mut messages: Vec<Message> = Vec::new();
        let mut bytes = 0usize;
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        let mut first_at: Option<Instant> = None;
        while messages.len() < common.batch_messages && bytes < common.batch_bytes {
            let wait = match first_at {
                None => Duration::from_millis(200),
                Some(t) => match LINGER.checked_sub(t.elapsed()) {
                    Some(w) => w,
                    None => break,
                },
            };
            let Some(polled) = consumer.poll(wait) else {
                if first_at.is_none() {
                    break;
                }
                continue;
            };
            let m = match polled {
                Ok(m) => m,
                Err(e) => {
                    task.stats.error(&format!("kafka: {e}"));
                    tracing::warn!(source = %name, error = %e, "Kafka consumer error");
                    break;
                }
            };
            let k_ = key(m.topic(), m.partition());
            if durable.get(&k_).is_some_and(|&o| m.offset() <= o) {
                // Already written (the group's offset was behind storage's).
                continue;
            }
            let payload = m.payload().unwrap_or_default().to_vec();
            bytes += payload.len();
            last.insert(k_.clone(), m.offset());
            messages.push(Message {
                payload,
                tags: Vec::new(),
                partition: k_,
                offset: Some(m.offset()),
            });
            first_at.get_or_insert_with(Instant::now);
            if shared.generation.load(Ordering::SeqCst) != generation {
                break;
            }
        }
        if shared.generation.load(Ordering::SeqCst) != generation {
            // A rebalance happened while the batch was read: the partitions restart from
            // their durable offsets, so what was read is read again.
            continue;
        }
        if messages.is_empty() {
            clock.idle += polling.elapsed();
            match shared.finish_inflight() {
                Some(false) => break,
                Some(true) => group_behind = true,
                None => {}
            }
            // Idle: the group catches up at once.
            if group_behind {
                group_behind = !commit_to_group(task, &consumer);
                last_commit = Instant::now();
            }
            continue;
        }
        let progress = SourceProgress {
            source_id: task.def.id,
            offsets: last,
        };
        clock.poll += polling.elapsed();
        let waiting = Instant::now();
        let finished = shared.finish_oldest_if_full();
        clock.wait += waiting.elapsed();
        clock.batches += 1;
        clock.messages += messages.len() as u64;
        match finished {
            Some(false) => break,
            Some(true) => group_behind = true,
            None => {}
        }
        // A commit to the group is a broker round trip, so while messages flow it is made at
        // most every GROUP_COMMIT_INTERVAL. Exactness does not depend on it (storage's
        // offsets decide where this node resumes); a rebalance and a stop commit first, so a
        // partition that moves starts on the next node after the messages written here.
        if group_behind && last_commit.elapsed() >= GROUP_COMMIT_INTERVAL {
            let committing = Instant::now();
            group_behind = !commit_to_group(task, &consumer);
            clock.commit += committing.elapsed();
            last_commit = Instant::now();
        }
        // Decoded off this thread, which goes on reading, and written once the batch before
        // it is durable: a partition's offsets only ever move forward.
        let (done, next_done) = tokio::sync::oneshot::channel::<bool>();
        let before = previous_done.replace(next_done);
        let writer = task.clone();
        let batch = handle.spawn(async move {
            let decoder = writer.clone();
            let decoded = tokio::task::spawn_blocking(move || {
                let prepared = decoder.prepare(&messages);
                (prepared, messages)
            })
            .await;
            let Ok((prepared, messages)) = decoded else {
                let _ = done.send(false);
                return Err(Stopped);
            };
            if let Some(before) = before
                && before.await != Ok(true)
            {
                let _ = done.send(false);
                return Err(Stopped);
            }
            let written = writer.write(prepared, &messages, Some(progress)).await;
            let _ = done.send(written.is_ok());
            written
        });
        shared.inflight.lock().push_back(batch);
    }
    if shared.finish_inflight() == Some(false) {
        tracing::info!(source = %name, "stopped before the last batch was durable; it is read again at the next start");
    }
    // A clean stop: the group learns the durable offsets before the partitions move.
    if sync_if_interval(task)
        && !consumer
            .context()
            .commit_durable(&consumer, CommitMode::Sync)
    {
        tracing::warn!(source = %name, "cannot commit the durable offsets to the group at stop; the next owner of these partitions may read some messages again");
    }
    consumer.unsubscribe();
    tracing::info!(source = %name, "Kafka source stopped");
}

/// Where the consumer thread's time goes, logged at debug level every `LAG_INTERVAL`: reading
/// messages from librdkafka, waiting for a batch in flight to be written (storage or decoding
/// is slower than reading), committing to the group, and polls that found nothing.
struct StageClock {
    since: Instant,
    poll: Duration,
    wait: Duration,
    commit: Duration,
    idle: Duration,
    batches: u64,
    messages: u64,
}

impl StageClock {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            poll: Duration::ZERO,
            wait: Duration::ZERO,
            commit: Duration::ZERO,
            idle: Duration::ZERO,
            batches: 0,
            messages: 0,
        }
    }

    fn report(&mut self, source: &str) {
        if self.batches > 0 {
            tracing::debug!(
                source,
                elapsed_ms = self.since.elapsed().as_millis() as u64,
                poll_ms = self.poll.as_millis() as u64,
                wait_for_write_ms = self.wait.as_millis() as u64,
                commit_ms = self.commit.as_millis() as u64,
                idle_ms = self.idle.as_millis() as u64,
                batches = self.batches,
                messages = self.messages,
                "Kafka source stages"
            );
        }
        *self = Self::new();
    }
}

/// With `--wal-sync interval` a write returns before its fsync: the WAL is synced first, so
/// the group never holds an offset whose rows a power failure could still take away (the
/// source would resume at the group's offset and skip them). Returns whether the offsets
/// may be committed.
fn sync_if_interval(task: &SourceTask) -> bool {
    let db = task.ingest.db();
    if !matches!(db.config().wal_sync, eddy_storage::WalSync::IntervalMs(_)) {
        return true;
    }
    match db.sync_wal() {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(source = %task.def.name, error = %e, "cannot sync the WAL; offsets are not committed to the group");
            false
        }
    }
}

/// Commits storage's offsets of the owned partitions to the group; returns whether the group
/// took them.
fn commit_to_group(task: &SourceTask, consumer: &BaseConsumer<EddyContext>) -> bool {
    sync_if_interval(task)
        && consumer
            .context()
            .commit_durable(consumer, CommitMode::Sync)
}

/// Refreshes the lag of every owned partition: the high watermark minus the next offset.
fn refresh_lag(
    task: &SourceTask,
    consumer: &BaseConsumer<EddyContext>,
    topic: &str,
    shared: &Shared,
) {
    let durable = task.ingest.db().source_offsets(task.def.id);
    let owned: Vec<i32> = shared.assigned.lock().iter().copied().collect();
    for p in &owned {
        if let Ok((_, high)) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(1)) {
            let k_ = key(topic, *p);
            let next = durable.get(&k_).map(|o| o + 1).unwrap_or(0);
            task.stats.set_lag(&k_, high - next);
        }
    }
    let keys: BTreeSet<String> = owned.iter().map(|p| key(topic, *p)).collect();
    task.stats.retain_lag(|k_| keys.contains(k_));
}
