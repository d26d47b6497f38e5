//! `eddy bench`: a load generator that sends line protocol to a server and reports throughput
//! (and, over HTTP, latency), so anyone can reproduce the published ingest figures.
//!
//! The same data and the same batches (`batch_size` lines each) go to one of four targets:
//!
//! - [`Target::Http`] posts each batch to `/api/v2/write`; the clock stops with the last
//!   response, since a 2xx answer means the rows are stored.
//! - [`Target::Tcp`] writes the batches over plain TCP connections (`eddy serve
//!   --ilp-tcp-addr`).
//! - [`Target::Kafka`] produces each batch as one message to a librdkafka mock cluster run by
//!   this process, then creates a Kafka source on the server that consumes them.
//! - [`Target::Mqtt`] creates an MQTT source on the server, then publishes each batch as one
//!   message to a broker the user runs.
//!
//! The stream targets get no answer that says the rows are stored, so they time until the
//! server's ingest counter (`eddy_ingest_rows_total` at `/metrics`, read every 100 ms) has
//! grown by the number of lines, and then check with `count(*)` that every table has grown by
//! its lines. That assumes every line is a distinct row: lines with duplicate keys (merged by
//! the server) or lines the server rejects keep the count short,
//! and the wait then gives up after [`BenchSpec::timeout`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_postgres::error::SqlState;

/// The Kafka topic the mock cluster holds the data in.
pub const KAFKA_TOPIC: &str = "eddy-bench";

/// Largest MQTT payload sent: Eddy's MQTT source refuses packets over 1 MiB (its
/// `PACKET_BYTES_MAX`), and a packet is the payload plus the topic and a few header bytes.
pub const MQTT_PAYLOAD_MAX: usize = (1 << 20) - 1024;

/// Pause between two readings of the row counts.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Longest wait for an MQTT source to reach `running`.
const SOURCE_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the data goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `POST /api/v2/write` on [`BenchSpec::url`].
    Http,
    /// Line protocol over plain TCP (the server's `--ilp-tcp-addr`).
    Tcp {
        /// `HOST:PORT` to connect to.
        addr: String,
    },
    /// A Kafka source on the server reading a mock cluster that this process runs.
    Kafka {
        /// Partitions of the topic; messages go round-robin over them.
        partitions: i32,
    },
    /// An MQTT source on the server subscribed to a broker this process publishes to.
    Mqtt {
        /// `mqtt://HOST[:PORT]` of the broker, for the source and for the publishers.
        url: String,
        /// QoS of the subscription and of the messages: 0 or 1.
        qos: u8,
    },
}

/// How to reach the server over the Postgres protocol: the stream targets create their
/// sources and count the rows that arrived through it.
#[derive(Debug, Clone)]
pub struct PgSpec {
    /// `HOST:PORT` of the Postgres front end.
    pub addr: String,
    /// User name.
    pub user: String,
    /// Password, when the server asks for one.
    pub password: Option<String>,
}

/// What to send and how.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    /// Where the data goes.
    pub target: Target,
    /// Base URL of the HTTP API.
    pub url: String,
    /// Concurrent connections (HTTP, TCP and MQTT).
    pub connections: usize,
    /// Lines per request or message.
    pub batch_size: usize,
    /// Timestamp precision of the data.
    pub precision: String,
    /// Gzip the request bodies (HTTP only).
    pub gzip: bool,
    /// PID of the server, to report its peak memory.
    pub server_pid: Option<u32>,
    /// The Postgres front end, for the stream targets.
    pub pg: PgSpec,
    /// How long the stream targets wait for the rows to arrive before giving up.
    pub timeout: Duration,
}

/// Splits line protocol into request bodies of `batch_size` lines each.
pub fn batches(data: &[u8], batch_size: usize) -> Vec<(bytes::Bytes, usize)> {
    let data = bytes::Bytes::copy_from_slice(data);
    let mut out = Vec::new();
    let mut start = 0;
    let mut lines = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            lines += 1;
            if lines == batch_size {
                out.push((data.slice(start..=i), lines));
                start = i + 1;
                lines = 0;
            }
        }
    }
    if start < data.len() {
        let tail = data.slice(start..);
        let n = tail
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        out.push((tail, n));
    }
    out
}

/// Runs the load and prints the report.
pub async fn run(spec: BenchSpec, data: Vec<u8>) -> Result<(), String> {
    if spec.gzip && spec.target != Target::Http {
        return Err("--gzip applies to --target http only".into());
    }
    match spec.target.clone() {
        Target::Http => run_http(spec, data).await,
        Target::Tcp { addr } => run_tcp(&spec, &addr, data).await,
        Target::Kafka { partitions } => run_kafka(&spec, partitions, data).await,
        Target::Mqtt { url, qos } => run_mqtt(&spec, &url, qos, data).await,
    }
}

/// Posts the batches over HTTP; the clock stops with the last response.
async fn run_http(spec: BenchSpec, data: Vec<u8>) -> Result<(), String> {
    let total_bytes = data.len();
    let mut bodies = batches(&data, spec.batch_size.max(1));
    drop(data);
    if spec.gzip {
        for (b, _) in &mut bodies {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(b).map_err(|e| e.to_string())?;
            *b = bytes::Bytes::from(enc.finish().map_err(|e| e.to_string())?);
        }
    }
    let total_rows: usize = bodies.iter().map(|(_, n)| n).sum();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(spec.connections)
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!(
        "{}/api/v2/write?bucket=eddy&precision={}",
        spec.url.trim_end_matches('/'),
        spec.precision
    );
    let bar = rows_bar(total_rows as u64)?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..spec.connections.max(1) {
        let (bodies, next, client, url, bar, gzip) = (
            bodies.clone(),
            next.clone(),
            client.clone(),
            url.clone(),
            bar.clone(),
            spec.gzip,
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((body, rows)) = bodies.get(i) else {
                    break;
                };
                let t = Instant::now();
                let mut req = client.post(&url).body(body.clone());
                if gzip {
                    req = req.header("Content-Encoding", "gzip");
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        failures += 1;
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        first_error.get_or_insert(format!("HTTP {status}: {text}"));
                    }
                    Err(e) => {
                        failures += 1;
                        first_error.get_or_insert(e.to_string());
                    }
                }
                latencies.push(t.elapsed());
                bar.inc(*rows as u64);
            }
            (latencies, failures, first_error)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    let mut failures = 0;
    let mut first_error = None;
    for t in tasks {
        let (l, f, e) = t.await.map_err(|e| e.to_string())?;
        latencies.extend(l);
        failures += f;
        if first_error.is_none() {
            first_error = e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    latencies.sort();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i].as_secs_f64() * 1000.0
    };
    println!("rows:            {total_rows}");
    println!("requests:        {} ({failures} failed)", latencies.len());
    println!("elapsed:         {elapsed:.2} s");
    println!("throughput:      {:.0} rows/s", total_rows as f64 / elapsed);
    println!(
        "                 {:.1} MB/s of line protocol",
        total_bytes as f64 / elapsed / 1e6
    );
    println!("latency p50:     {:.1} ms", pct(0.50));
    println!("latency p99:     {:.1} ms", pct(0.99));
    print_peak_rss(spec.server_pid);
    if let Some(e) = first_error {
        return Err(format!("{failures} requests failed; first error: {e}"));
    }
    Ok(())
}

/// Writes the batches over `spec.connections` TCP connections, each its share (every n-th
/// batch), newline-terminated, then shuts its write half down. Timed from the first byte
/// until the rows are readable.
async fn run_tcp(spec: &BenchSpec, addr: &str, data: Vec<u8>) -> Result<(), String> {
    let total_bytes = data.len();
    let expected = expected_rows(&data);
    let bodies = batches(&data, spec.batch_size.max(1));
    drop(data);
    let pg = pg_connect(&spec.pg).await?;
    let tables = table_targets(&pg, &expected).await?;
    announce(&tables, spec.timeout);
    let n = spec.connections.max(1).min(bodies.len().max(1));
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        streams.push(stream);
    }
    let bodies = Arc::new(bodies);
    let started = Instant::now();
    let mut writers = Vec::with_capacity(n);
    for (c, stream) in streams.into_iter().enumerate() {
        let bodies = bodies.clone();
        writers.push(tokio::spawn(async move {
            let mut out = tokio::io::BufWriter::with_capacity(1 << 16, stream);
            for (body, _) in bodies.iter().skip(c).step_by(n) {
                out.write_all(body).await?;
                if !body.ends_with(b"\n") {
                    out.write_all(b"\n").await?;
                }
            }
            // Flushes what is buffered, then shuts the write half down.
            out.shutdown().await
        }));
    }
    let sending = async {
        for (c, writer) in writers.into_iter().enumerate() {
            writer
                .await
                .map_err(|e| format!("TCP connection {c}: {e}"))?
                .map_err(|e| format!("TCP connection {c} to {addr}: {e}"))?;
        }
        Ok::<(), String>(())
    };
    let ((), waited) = alongside(
        sending,
        wait_for_rows(&pg, &spec.url, &tables, started, spec.timeout),
    )
    .await?;
    report_stream(
        spec,
        &format!("tcp {addr}, {n} connections"),
        &tables,
        total_bytes,
        None,
        waited,
    );
    Ok(())
}

/// Produces every batch as one message to a mock cluster in this process (not timed), then
/// creates a Kafka source on the server and times it from its creation until the rows are
/// readable. The source is dropped afterwards; the mock cluster lives until then.
async fn run_kafka(spec: &BenchSpec, partitions: i32, data: Vec<u8>) -> Result<(), String> {
    if partitions < 1 {
        return Err("--kafka-partitions must be at least 1".into());
    }
    let total_bytes = data.len();
    let expected = expected_rows(&data);
    let bodies = batches(&data, spec.batch_size.max(1));
    drop(data);
    let messages = bodies.len();
    let mock =
        MockCluster::new(1).map_err(|e| format!("cannot start the Kafka mock cluster: {e}"))?;
    mock.create_topic(KAFKA_TOPIC, partitions, 1)
        .map_err(|e| format!("cannot create topic {KAFKA_TOPIC} in the mock cluster: {e}"))?;
    let bootstrap = mock.bootstrap_servers();
    let producing = Instant::now();
    produce_all(&bootstrap, partitions, &bodies)?;
    drop(bodies);
    println!(
        "produced:        {messages} messages to the mock cluster at {bootstrap} in {:.2} s \
         (not timed)",
        producing.elapsed().as_secs_f64()
    );
    let pg = pg_connect(&spec.pg).await?;
    let tables = table_targets(&pg, &expected).await?;
    announce(&tables, spec.timeout);
    let pid = std::process::id();
    let name = format!("bench_kafka_{pid}");
    let create = format!(
        "CREATE SOURCE {name} FROM KAFKA (brokers {}, topic {}, group_id {})",
        quote_literal(&bootstrap),
        quote_literal(KAFKA_TOPIC),
        quote_literal(&format!("eddy-bench-{pid}"))
    );
    // The clock starts as the statement is sent: the source may start consuming before the
    // answer is back.
    let started = Instant::now();
    pg.batch_execute(&create)
        .await
        .map_err(|e| format!("{create}: {}", pg_error(&e)))?;
    let waited = wait_for_rows(&pg, &spec.url, &tables, started, spec.timeout).await;
    let dropped = drop_source(&pg, &name).await;
    // Only now: the source read from it until the DROP.
    drop(mock);
    let waited = waited?;
    dropped?;
    report_stream(
        spec,
        &format!("kafka (mock cluster in the bench process, {partitions} partitions)"),
        &tables,
        total_bytes,
        Some(messages),
        waited,
    );
    Ok(())
}

/// Counts the deliveries the mock cluster refused; librdkafka reports them from `poll` and
/// `flush`.
#[derive(Clone, Default)]
struct DeliveryFailures {
    count: Arc<AtomicUsize>,
    first: Arc<Mutex<Option<String>>>,
}

impl rdkafka::ClientContext for DeliveryFailures {}

impl ProducerContext for DeliveryFailures {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((e, _)) = result {
            self.count.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut first) = self.first.lock() {
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Produces every batch as one message to [`KAFKA_TOPIC`], round-robin over the partitions,
/// and waits until the mock cluster has them all.
fn produce_all(bootstrap: &str, partitions: i32, bodies: &[(Bytes, usize)]) -> Result<(), String> {
    let failures = DeliveryFailures::default();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.kbytes", "1048576");
    // librdkafka refuses messages over message.max.bytes (1,000,000 by default): large
    // batches raise it (its maximum is 1,000,000,000).
    let largest = bodies.iter().map(|(b, _)| b.len()).max().unwrap_or(0);
    if largest + 1024 > 1_000_000 {
        config.set(
            "message.max.bytes",
            (largest + 65_536).min(1_000_000_000).to_string(),
        );
    }
    let producer: BaseProducer<DeliveryFailures> = config
        .create_with_context(failures.clone())
        .map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
    let bar = ProgressBar::new(bodies.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("producing {bar:40} {pos}/{len} messages")
            .map_err(|e| e.to_string())?,
    );
    let partitions = partitions as usize;
    for (i, (body, _)) in bodies.iter().enumerate() {
        let partition = (i % partitions) as i32;
        loop {
            let record = BaseRecord::<(), [u8]>::to(KAFKA_TOPIC)
                .partition(partition)
                .payload(&body[..]);
            match producer.send(record) {
                Ok(()) => break,
                // The local queue is full: let it drain.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    bar.abandon();
                    return Err(format!("producing message {i} to the mock cluster: {e}"));
                }
            }
        }
        producer.poll(Duration::ZERO);
        bar.inc(1);
    }
    let flushed = producer.flush(Duration::from_secs(300));
    bar.finish_and_clear();
    flushed.map_err(|e| format!("flushing the Kafka producer: {e}"))?;
    drop(producer);
    let failed = failures.count.load(Ordering::Relaxed);
    if failed > 0 {
        let first = failures
            .first
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        return Err(format!(
            "{failed} messages were not delivered to the mock cluster; first error: {first}"
        ));
    }
    Ok(())
}

/// Creates an MQTT source on the server, waits until it runs, then publishes every batch as
/// one message over `spec.connections` clients (connection `c` on topic
/// `eddy-bench/<pid>/<c>`). Timed from the first message until the rows are readable. The
/// source is dropped afterwards.
async fn run_mqtt(spec: &BenchSpec, url: &str, qos: u8, data: Vec<u8>) -> Result<(), String> {
    let qos_level = match qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        q => return Err(format!("--mqtt-qos must be 0 or 1, got {q}")),
    };
    let (host, port) = parse_mqtt_url(url)?;
    let total_bytes = data.len();
    let expected = expected_rows(&data);
    let bodies = batches(&data, spec.batch_size.max(1));
    drop(data);
    if let Some((i, (body, _))) = bodies
        .iter()
        .enumerate()
        .find(|(_, (b, _))| b.len() > MQTT_PAYLOAD_MAX)
    {
        return Err(format!(
            "message {i} would be {} bytes, and Eddy's MQTT source takes messages of at most \
             1 MiB: lower --batch-size",
            body.len()
        ));
    }
    let pg = pg_connect(&spec.pg).await?;
    let tables = table_targets(&pg, &expected).await?;
    let pid = std::process::id();
    let name = format!("bench_mqtt_{pid}");
    // A clean session: the broker forgets the subscription once the source is dropped.
    let create = format!(
        "CREATE SOURCE {name} FROM MQTT (url {}, topics {}, qos {qos}, clean_session 'true')",
        quote_literal(url),
        quote_literal(&format!("eddy-bench/{pid}/#"))
    );
    pg.batch_execute(&create)
        .await
        .map_err(|e| format!("{create}: {}", pg_error(&e)))?;
    let load = MqttLoad {
        host,
        port,
        qos: qos_level,
        pid,
        connections: spec.connections.max(1).min(bodies.len().max(1)),
    };
    let outcome = mqtt_load(spec, &pg, &name, &load, &tables, bodies).await;
    let dropped = drop_source(&pg, &name).await;
    let (messages, waited) = outcome?;
    dropped?;
    report_stream(
        spec,
        &format!("mqtt {url}, QoS {qos}, {} connections", load.connections),
        &tables,
        total_bytes,
        Some(messages),
        waited,
    );
    Ok(())
}

/// Where and how the MQTT publishers connect.
struct MqttLoad {
    host: String,
    port: u16,
    qos: QoS,
    pid: u32,
    connections: usize,
}

/// The timed part of the MQTT target, once the source exists: returns the messages sent and
/// the time until every row was readable.
async fn mqtt_load(
    spec: &BenchSpec,
    pg: &tokio_postgres::Client,
    source: &str,
    load: &MqttLoad,
    tables: &[TableTarget],
    bodies: Vec<(Bytes, usize)>,
) -> Result<(usize, Waited), String> {
    wait_running(pg, source).await?;
    // The source runs once its subscriptions are sent; give the broker a moment to take them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut connections = Vec::with_capacity(load.connections);
    for c in 0..load.connections {
        let mut opts = MqttOptions::new(
            format!("eddy-bench-{}-{c}", load.pid),
            load.host.clone(),
            load.port,
        );
        opts.set_inflight(1000);
        opts.set_max_packet_size(1 << 24, 1 << 24);
        let (client, mut eventloop) = AsyncClient::new(opts, 10_000);
        // Connected before the clock starts: it times the messages, not the handshakes.
        mqtt_connect(&mut eventloop)
            .await
            .map_err(|e| format!("MQTT connection {c} to {}:{}: {e}", load.host, load.port))?;
        connections.push((client, eventloop));
    }
    announce(tables, spec.timeout);
    let bodies = Arc::new(bodies);
    let n = load.connections;
    let started = Instant::now();
    let mut publishers = Vec::with_capacity(n);
    for (c, (client, eventloop)) in connections.into_iter().enumerate() {
        let share = Share {
            bodies: bodies.clone(),
            first: c,
            step: n,
        };
        let topic = format!("eddy-bench/{}/{c}", load.pid);
        publishers.push(tokio::spawn(publish_share(
            client, eventloop, topic, load.qos, share,
        )));
    }
    let sending = async {
        let mut messages = 0usize;
        for (c, publisher) in publishers.into_iter().enumerate() {
            messages += publisher
                .await
                .map_err(|e| format!("MQTT connection {c}: {e}"))??;
        }
        Ok::<usize, String>(messages)
    };
    alongside(
        sending,
        wait_for_rows(pg, &spec.url, tables, started, spec.timeout),
    )
    .await
}

/// Polls a new connection until the broker accepted it (at most 10 s).
async fn mqtt_connect(eventloop: &mut EventLoop) -> Result<(), String> {
    let connect = async {
        loop {
            match eventloop.poll().await {
                // rumqttc reports a refused CONNACK as an error.
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| "no CONNACK within 10 s".to_string())?
}

/// One connection's batches: every `step`-th, from the `first`.
struct Share {
    bodies: Arc<Vec<(Bytes, usize)>>,
    first: usize,
    step: usize,
}

impl Share {
    fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.bodies
            .iter()
            .skip(self.first)
            .step_by(self.step.max(1))
            .map(|(b, _)| b)
    }
}

/// Publishes a share of the batches on `topic` and drives the connection until the broker
/// took them all (QoS 1: acknowledged; QoS 0: written to the socket), then disconnects.
/// Returns the number of messages.
async fn publish_share(
    client: AsyncClient,
    mut eventloop: EventLoop,
    topic: String,
    qos: QoS,
    share: Share,
) -> Result<usize, String> {
    let want = share.iter().count();
    let publisher = {
        let client = client.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            for body in share.iter() {
                client
                    .publish_bytes(topic.clone(), qos, false, body.clone())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        })
    };
    let mut done = 0usize;
    while done < want {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) if qos == QoS::AtLeastOnce => done += 1,
            Ok(Event::Outgoing(Outgoing::Publish(_))) if qos == QoS::AtMostOnce => done += 1,
            Ok(_) => {}
            Err(e) => {
                publisher.abort();
                return Err(format!("publishing on {topic}: {e}"));
            }
        }
    }
    publisher
        .await
        .map_err(|e| format!("publishing on {topic}: {e}"))?
        .map_err(|e| format!("publishing on {topic}: {e}"))?;
    let _ = client.disconnect().await;
    // Let the DISCONNECT leave before the connection is dropped.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    Ok(want)
}

/// `HOST` and `PORT` of `mqtt://HOST[:PORT]` (1883 by default).
fn parse_mqtt_url(url: &str) -> Result<(String, u16), String> {
    let bad = || format!("--mqtt-url must be mqtt://HOST[:PORT], got \"{url}\"");
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(bad)?
        .trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !rest.ends_with(']') => (h, p.parse::<u16>().map_err(|_| bad())?),
        _ => (rest, 1883),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Rows the data adds to each table: one per line that is neither blank nor a comment, under
/// its measurement (the table's name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// Table name → rows.
    pub tables: BTreeMap<String, u64>,
}

impl Expected {
    /// Rows in all.
    pub fn rows(&self) -> u64 {
        self.tables.values().sum()
    }
}

/// Counts the lines of `data` by measurement, as the server's parser splits them: lines end
/// at `\n` (an `\r` before it is dropped), leading whitespace is skipped, and blank lines and
/// `#` comments are not rows.
pub fn expected_rows(data: &[u8]) -> Expected {
    let mut raw: HashMap<&[u8], u64> = HashMap::new();
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let blank = line.iter().take_while(|c| c.is_ascii_whitespace()).count();
        let line = &line[blank..];
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        *raw.entry(measurement(line)).or_insert(0) += 1;
    }
    let mut tables = BTreeMap::new();
    for (m, n) in raw {
        *tables.entry(unescape_measurement(m)).or_insert(0) += n;
    }
    Expected { tables }
}

/// The measurement of a line, still escaped: everything before the first unescaped `,` or
/// space.
fn measurement(line: &[u8]) -> &[u8] {
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b'\\' if i + 1 < line.len() => i += 2,
            b',' | b' ' => break,
            _ => i += 1,
        }
    }
    &line[..i.min(line.len())]
}

/// A measurement without its escapes (`\,`, `\ ` and `\\`), as the server names the table.
fn unescape_measurement(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && i + 1 < raw.len() && matches!(raw[i + 1], b',' | b' ' | b'\\') {
            out.push(raw[i + 1]);
            i += 2;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A table the load writes: its rows before the load, and the rows the load adds.
struct TableTarget {
    name: String,
    before: u64,
    adds: u64,
}

/// Reads how many rows each table the data writes holds now (0 if it does not exist yet).
async fn table_targets(
    pg: &tokio_postgres::Client,
    expected: &Expected,
) -> Result<Vec<TableTarget>, String> {
    if expected.rows() == 0 {
        return Err("the data has no lines to send".into());
    }
    let mut out = Vec::with_capacity(expected.tables.len());
    for (name, &adds) in &expected.tables {
        let before = match count_rows(pg, name).await {
            Ok(n) => n,
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => 0,
            Err(e) => return Err(format!("counting the rows of {name}: {}", pg_error(&e))),
        };
        out.push(TableTarget {
            name: name.clone(),
            before,
            adds,
        });
    }
    Ok(out)
}

/// Says what the wait waits for, and that it assumes distinct keys.
fn announce(tables: &[TableTarget], timeout: Duration) {
    let rows: u64 = tables.iter().map(|t| t.adds).sum();
    let names: Vec<&str> = tables.iter().take(5).map(|t| t.name.as_str()).collect();
    let more = match tables.len().saturating_sub(5) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    println!(
        "waiting for:     {rows} rows in {} table(s): {}{more}",
        tables.len(),
        names.join(", ")
    );
    println!(
        "                 one row per line: duplicate keys in the data (which the server merges) \
         or rejected lines would make it wait forever; it gives up after {} s (--timeout-s)",
        timeout.as_secs()
    );
}

/// `count(*)` of a table.
async fn count_rows(
    pg: &tokio_postgres::Client,
    table: &str,
) -> Result<u64, tokio_postgres::Error> {
    let sql = format!("SELECT count(*) FROM {}", quote_ident(table));
    let row = pg.query_one(sql.as_str(), &[]).await?;
    Ok(row.try_get::<_, i64>(0)?.max(0) as u64)
}

/// The server's `eddy_ingest_rows_total`, all front ends together: rows acknowledged as
/// durable. Cheap to read, where a `count(*)` every 100 ms would load the server it measures.
async fn ingested_rows(client: &reqwest::Client, url: &str) -> Result<u64, String> {
    let text = client
        .get(format!("{}/metrics", url.trim_end_matches('/')))
        .send()
        .await
        .map_err(|e| format!("GET {url}/metrics: {e}"))?
        .text()
        .await
        .map_err(|e| format!("GET {url}/metrics: {e}"))?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("eddy_ingest_rows_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// When the rows of a streaming load were acknowledged, counted from the start of the load.
#[derive(Debug, Clone, Copy)]
struct Waited {
    /// Until every row was acknowledged.
    elapsed: Duration,
    /// The first poll that saw rows acknowledged, and how many: what precedes it is start-up
    /// (a consumer group's join), not ingest.
    first_rows: Option<(Duration, u64)>,
}

/// Waits until the server has acknowledged the rows the load adds (its ingest counter, read
/// over HTTP at `url` every [`POLL_INTERVAL`]), then checks with `count(*)` (not timed) that
/// every table has grown by its rows; returns the time since `started` when the counter got
/// there. Gives up once `timeout` has passed since `started`.
async fn wait_for_rows(
    pg: &tokio_postgres::Client,
    url: &str,
    tables: &[TableTarget],
    started: Instant,
    timeout: Duration,
) -> Result<Waited, String> {
    let total: u64 = tables.iter().map(|t| t.adds).sum();
    let http = reqwest::Client::new();
    let base = ingested_rows(&http, url).await?;
    let bar = rows_bar(total)?;
    let mut first_rows = None;
    let acknowledged = loop {
        let n = ingested_rows(&http, url).await?.saturating_sub(base);
        bar.set_position(n.min(total));
        if n > 0 && first_rows.is_none() {
            first_rows = Some((started.elapsed(), n));
        }
        if n >= total {
            break started.elapsed();
        }
        if started.elapsed() >= timeout {
            bar.abandon();
            return Err(format!(
                "gave up after {} s: the server acknowledged {n} of {total} rows",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    let mut seen: Vec<u64> = tables.iter().map(|t| t.before).collect();
    let mut last_error = None;
    loop {
        for (t, count) in tables.iter().zip(seen.iter_mut()) {
            if *count >= t.before + t.adds {
                continue;
            }
            // An error (the table does not exist yet) counts as nothing new.
            match count_rows(pg, &t.name).await {
                Ok(n) => *count = n,
                Err(e) => last_error = Some(pg_error(&e)),
            }
        }
        if pg.is_closed() {
            bar.abandon();
            return Err("the Postgres connection to the server closed".into());
        }
        let arrived: u64 = tables
            .iter()
            .zip(&seen)
            .map(|(t, &n)| n.saturating_sub(t.before).min(t.adds))
            .sum();
        bar.set_position(arrived);
        if arrived >= total {
            bar.finish_and_clear();
            // Rows acknowledged by the first poll that saw any are left out of the steady
            // rate along with the time before it.
            let first_rows = first_rows.filter(|&(at, n)| n < total && at < acknowledged);
            return Ok(Waited {
                elapsed: acknowledged,
                first_rows,
            });
        }
        if started.elapsed() >= timeout {
            bar.abandon();
            let last = last_error
                .map(|e| format!("; last error counting rows: {e}"))
                .unwrap_or_default();
            return Err(format!(
                "gave up after {} s: {arrived} of {total} rows arrived (duplicate keys in the \
                 data, which the server merges, or rejected lines keep the count short){last}",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Runs the senders and the wait for the rows side by side: a failed sender ends the wait,
/// and the wait may end before the senders do (their last messages were already counted).
async fn alongside<T>(
    sending: impl Future<Output = Result<T, String>>,
    waiting: impl Future<Output = Result<Waited, String>>,
) -> Result<(T, Waited), String> {
    let mut sending = std::pin::pin!(sending);
    let mut waiting = std::pin::pin!(waiting);
    let mut sent = None;
    let elapsed = loop {
        tokio::select! {
            r = &mut sending, if sent.is_none() => sent = Some(r?),
            r = &mut waiting => break r?,
        }
    };
    let sent = match sent {
        Some(s) => s,
        None => sending.await?,
    };
    Ok((sent, elapsed))
}

/// Waits until the source's state in `eddy_sources` is `running`.
async fn wait_running(pg: &tokio_postgres::Client, source: &str) -> Result<(), String> {
    let sql = format!(
        "SELECT state, last_error FROM eddy_sources WHERE name = {}",
        quote_literal(source)
    );
    let deadline = Instant::now() + SOURCE_START_TIMEOUT;
    loop {
        let row = pg
            .query_opt(sql.as_str(), &[])
            .await
            .map_err(|e| format!("{sql}: {}", pg_error(&e)))?;
        let (state, last_error) = match &row {
            Some(row) => (
                row.try_get::<_, String>(0).unwrap_or_default(),
                row.try_get::<_, Option<String>>(1).ok().flatten(),
            ),
            None => ("absent".to_string(), None),
        };
        if state == "running" {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let why = last_error
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default();
            return Err(format!(
                "source {source} is still {state} after {} s{why}",
                SOURCE_START_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `DROP SOURCE IF EXISTS`.
async fn drop_source(pg: &tokio_postgres::Client, name: &str) -> Result<(), String> {
    pg.batch_execute(&format!("DROP SOURCE IF EXISTS {name}"))
        .await
        .map_err(|e| format!("DROP SOURCE {name}: {}", pg_error(&e)))
}

/// Connects to the server's Postgres front end (database `eddy`, no TLS).
async fn pg_connect(pg: &PgSpec) -> Result<tokio_postgres::Client, String> {
    let (host, port) = split_host_port(&pg.addr)
        .ok_or_else(|| format!("--pg-addr must be HOST:PORT, got \"{}\"", pg.addr))?;
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port)
        .user(pg.user.as_str())
        .dbname("eddy")
        .connect_timeout(Duration::from_secs(10));
    if let Some(password) = &pg.password {
        config.password(password.as_str());
    }
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
        format!(
            "cannot connect to {} over the Postgres protocol: {}",
            pg.addr,
            pg_error(&e)
        )
    })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// `HOST` and `PORT` of `HOST:PORT` or `[V6]:PORT`.
fn split_host_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    Some((host, port.parse().ok()?))
}

/// The server's message for an error it sent, or the client's description otherwise.
fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

/// A SQL identifier in double quotes.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal.
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A progress bar counting rows.
fn rows_bar(total: u64) -> Result<ProgressBar, String> {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} eta {eta}")
            .map_err(|e| e.to_string())?,
    );
    Ok(bar)
}

/// Prints what a stream target measured, in the HTTP report's format.
fn report_stream(
    spec: &BenchSpec,
    target: &str,
    tables: &[TableTarget],
    total_bytes: usize,
    messages: Option<usize>,
    waited: Waited,
) {
    let rows: u64 = tables.iter().map(|t| t.adds).sum();
    let secs = waited.elapsed.as_secs_f64().max(1e-9);
    println!("target:          {target}");
    println!("rows:            {rows}");
    if let Some(m) = messages {
        println!(
            "messages:        {m} ({} lines each at most)",
            spec.batch_size.max(1)
        );
    }
    println!("elapsed:         {secs:.2} s (until every row was readable)");
    println!("throughput:      {:.0} rows/s", rows as f64 / secs);
    println!(
        "                 {:.1} MB/s of line protocol",
        total_bytes as f64 / secs / 1e6
    );
    if let Some(m) = messages {
        println!("                 {:.0} messages/s", m as f64 / secs);
    }
    if let Some((first, seen)) = waited.first_rows {
        // From the first poll that saw rows to the last row: the steady rate, without
        // connection and consumer-group start-up.
        let steady = (waited.elapsed - first).as_secs_f64().max(1e-9);
        println!(
            "steady:          {:.0} rows/s after the first rows ({:.2} s of start-up before them)",
            rows.saturating_sub(seen) as f64 / steady,
            first.as_secs_f64()
        );
    }
    print_peak_rss(spec.server_pid);
}

/// Prints the server's peak RSS when its PID is known.
fn print_peak_rss(server_pid: Option<u32>) {
    if let Some(pid) = server_pid {
        match peak_rss(pid) {
            Some(kb) => println!("server peak RSS: {:.0} MiB", kb as f64 / 1024.0),
            None => println!("server peak RSS: unavailable for pid {pid}"),
        }
    }
}

/// Peak resident memory of a process in KiB (`VmHWM` of /proc/PID/status).
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_rows_counts_lines_by_unescaped_measurement() {
        let data = b"cpu,host=a usage=1 1\n\
                     # a comment\n\
                     \n   \n\
                     cpu usage=2 2\r\n\
                     my\\ meas\\,x,t=1 v=1 3\n\
                     \t mem,host=a used=1 4\n\
                     disk free=1 5";
        let e = expected_rows(data);
        assert_eq!(e.rows(), 5);
        assert_eq!(e.tables.get("cpu"), Some(&2));
        assert_eq!(e.tables.get("my meas,x"), Some(&1));
        assert_eq!(e.tables.get("mem"), Some(&1));
        assert_eq!(e.tables.get("disk"), Some(&1));
    }

    #[test]
    fn addresses_parse() {
        assert_eq!(
            parse_mqtt_url("mqtt://127.0.0.1:1884").expect("url"),
            ("127.0.0.1".to_string(), 1884)
        );
        assert_eq!(
            parse_mqtt_url("mqtt://broker/").expect("url"),
            ("broker".to_string(), 1883)
        );
        assert_eq!(
            parse_mqtt_url("mqtt://[::1]:1885").expect("url"),
            ("::1".to_string(), 1885)
        );
        assert!(parse_mqtt_url("http://x:1").is_err());
        assert_eq!(split_host_port("127.0.0.1:5433"), Some(("127.0.0.1", 5433)));
        assert_eq!(split_host_port("[::1]:5433"), Some(("::1", 5433)));
        assert_eq!(split_host_port("nohost"), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
