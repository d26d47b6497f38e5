//! Kafka sources against librdkafka's mock cluster, which runs inside this test process (no
//! broker to install): exactly once across kill -9, a hand-over between two servers in one
//! consumer group, malformed messages and dead letters, JSON, and a burst under backpressure.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};

use crate::common::{Server, data_dir};

type Mock = MockCluster<'static, DefaultProducerContext>;

/// A mock cluster of one broker with `topic` of `partitions` partitions.
fn cluster(topic: &str, partitions: i32) -> Mock {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic(topic, partitions, 1).expect("topic");
    mock
}

fn producer(mock: &Mock) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Produces every message to its partition and waits until the broker has them all.
fn produce(p: &BaseProducer, topic: &str, messages: &[(i32, Vec<u8>)]) {
    for (partition, payload) in messages {
        loop {
            match p.send(
                BaseRecord::<(), [u8]>::to(topic)
                    .partition(*partition)
                    .payload(payload.as_slice()),
            ) {
                Ok(()) => break,
                Err((e, _)) => {
                    // The local queue is full: let it drain.
                    assert!(
                        matches!(
                            e,
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull
                            )
                        ),
                        "produce: {e}"
                    );
                    p.poll(Duration::from_millis(10));
                }
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60))
        .expect("flush the producer");
}

/// Line-protocol messages of `per_message` lines each, ids `from..from + n`, round-robin over
/// `partitions`. No timestamps: every line is its own series (tag `id`), so a duplicate would
/// show as a second row, which storage's last-write-wins on keys would hide otherwise.
fn lp_messages(from: usize, n: usize, per_message: usize, partitions: i32) -> Vec<(i32, Vec<u8>)> {
    (from..from + n)
        .collect::<Vec<_>>()
        .chunks(per_message)
        .enumerate()
        .map(|(i, ids)| {
            let body: String = ids
                .iter()
                .map(|id| format!("events,id={id} v={id}i\n"))
                .collect();
            ((i as i32) % partitions, body.into_bytes())
        })
        .collect()
}

async fn scalar(s: &Server, sql: &str) -> i64 {
    let c = s.pg().await;
    c.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Rows of `events` so far; 0 before the source created the table.
async fn events(s: &Server) -> i64 {
    match s
        .pg()
        .await
        .query_one("SELECT count(*) FROM events", &[])
        .await
    {
        Ok(r) => r.get(0),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => 0,
        Err(e) => panic!("count events: {e}"),
    }
}

/// Waits until `sql` answers `want`, failing with the last answer after `secs`.
fn create_source(s: &Server, name: &str, mock: &Mock, topic: &str, extra: &str) {
    s.psql(&format!(
        "CREATE SOURCE {name} FROM KAFKA (brokers '{}', topic '{topic}', group_id 'eddy-test-{name}'{extra})",
        mock.bootstrap_servers()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_exactly_once_across_kill_9() {
    let mock = cluster("lp", 4);
    let p = producer(&mock);
    let total = 40_000usize;
    produce(&p, "lp", &lp_messages(0, total, 50, 4));
    let dir = data_dir();
    let log = dir.path().join("server.log");
    let mut s = Server::start_logged(dir.path(), &[], &log);
    // Small batches: many commits, so a kill lands between some of them.
    create_source(&s, "lp_src", &mock, "lp", ", batch_messages 5");
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while kills < 3 {
        let n = events(&s).await;
        if n as usize >= total {
            break;
        }
        if n > 0 {
            // Somewhere in the middle of consumption.
            tokio::time::sleep(Duration::from_millis(37 * (kills + 1))).await;
            s.kill9();
            kills += 1;
            // More messages while the server is down.
            produce(
                &p,
                "lp",
                &lp_messages(total + (kills as usize - 1) * 1000, 1000, 50, 4),
            );
            s.restart();
        }
        assert!(Instant::now() < deadline, "consumption never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = total + kills as usize * 1000;
    s.wait_for("SELECT count(*) FROM events", all as i64, 120)
        .await;
    assert_eq!(
        scalar(&s, "SELECT count(DISTINCT id) FROM events").await,
        all as i64,
        "every message once"
    );
    assert_eq!(
        scalar(&s, "SELECT sum(v) FROM events").await,
        (0..all as i64).sum::<i64>()
    );
    // The offsets were committed to the group as well (for lag tools): eddy_sources shows no
    // lag once everything is in.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lag = scalar(
            &s,
            "SELECT coalesce(lag, -1) FROM eddy_sources WHERE name = 'lp_src'",
        )
        .await;
        if lag == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "lag is still {lag}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_in_one_group_split_partitions_and_hand_over_cleanly() {
    let mock = cluster("shared", 4);
    let p = producer(&mock);
    let (da, db) = (data_dir(), data_dir());
    let a = Server::start_logged_at(
        da.path(),
        &[],
        &da.path().join("a.log"),
        Some("warn,eddy_ingest=info"),
    );
    let b = Server::start_logged_at(
        db.path(),
        &[],
        &db.path().join("b.log"),
        Some("warn,eddy_ingest=info"),
    );
    let source = |s: &Server| {
        s.psql(&format!(
            "CREATE SOURCE shared_src FROM KAFKA (brokers '{}', topic 'shared', group_id 'eddy-shared', batch_messages 20)",
            mock.bootstrap_servers()
        ))
    };
    source(&a);
    produce(&p, "shared", &lp_messages(0, 4_000, 20, 4));
    a.wait_for("SELECT count(*) FROM events", 4_000, 60).await;
    // A commits its durable offsets to the group within a poll interval of going idle. (The
    // mock cluster refuses commits once a rebalance has begun, so a batch written in the same
    // instant as B joins would be read again by B: see docs/sources.md.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // B joins: the group rebalances and the two split the partitions (B's partition lag
    // shows once it owns some).
    source(&b);
    let deadline = Instant::now() + Duration::from_secs(90);
    while b
        .psql("SELECT coalesce(partition_lag, '') FROM eddy_sources")
        .trim()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "B never got a partition:\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut next = 4_000usize;
    produce(&p, "shared", &lp_messages(next, 4_000, 20, 4));
    next += 4_000;
    let both = async || events(&a).await + events(&b).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while both().await < next as i64 {
        assert!(
            Instant::now() < deadline,
            "the two servers stopped short of {next}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A's source stops (as at a shutdown): it commits, hands its partitions back, and B takes
    // every partition from where A's durable writes ended.
    a.psql("DROP SOURCE shared_src");
    produce(&p, "shared", &lp_messages(next, 4_000, 20, 4));
    next += 4_000;
    let deadline = Instant::now() + Duration::from_secs(90);
    while both().await < next as i64 {
        assert!(
            Instant::now() < deadline,
            "B did not take over A's partitions:\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = async |s: &Server| -> Vec<i64> {
        s.pg()
            .await
            .query("SELECT v FROM events", &[])
            .await
            .expect("ids")
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .collect()
    };
    let (ia, ib) = (ids(&a).await, ids(&b).await);
    let mut seen = BTreeSet::new();
    for id in ia.iter().chain(&ib) {
        assert!(
            seen.insert(*id),
            "message {id} was written twice:\nA:\n{}\nB:\n{}",
            a.log_text(),
            b.log_text()
        );
    }
    assert_eq!(seen.len(), next, "no message lost");
    assert!(!ia.is_empty() && !ib.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_go_to_dead_letters_and_json_is_read() {
    let mock = cluster("mixed", 1);
    let p = producer(&mock);
    let dir = data_dir();
    let s = Server::start_logged(dir.path(), &[], &dir.path().join("server.log"));
    // Line protocol: a good message, a bad one, one with a good and a bad line, then good.
    produce(
        &p,
        "mixed",
        &[
            (0, b"m,host=a v=1 1000\n".to_vec()),
            (0, b"this is not line protocol".to_vec()),
            (0, b"m,host=a v=2 2000\nm,host=a v=\"text\" 3000\n".to_vec()),
            (0, vec![0xff, 0xfe, b'\n']),
            (0, b"m,host=b v=3 4000".to_vec()),
        ],
    );
    create_source(&s, "lp_mixed", &mock, "mixed", "");
    s.wait_for("SELECT count(*) FROM m", 3, 60).await;
    s.wait_for(
        "SELECT count(*) FROM eddy_dead_letters WHERE source = 'lp_mixed'",
        3,
        30,
    )
    .await;
    let c = s.pg().await;
    let rows = c
        .query(
            "SELECT partition, \"offset\", error, payload, payload_bytes FROM eddy_dead_letters \
             WHERE source = 'lp_mixed' ORDER BY \"offset\"",
            &[],
        )
        .await
        .expect("dead letters");
    let offsets: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(offsets, vec![1, 2, 3]);
    assert_eq!(rows[0].get::<_, String>(0), "mixed/0");
    assert_eq!(rows[0].get::<_, String>(3), "this is not line protocol");
    assert!(
        rows[1].get::<_, String>(2).contains("line 2"),
        "{}",
        rows[1].get::<_, String>(2)
    );
    assert!(
        rows[2].get::<_, String>(2).contains("UTF-8"),
        "{}",
        rows[2].get::<_, String>(2)
    );
    assert_eq!(rows[2].get::<_, i64>(4), 3);
    let status = c
        .query_one(
            "SELECT state, messages, dead_letters, last_error IS NOT NULL FROM eddy_sources WHERE name = 'lp_mixed'",
            &[],
        )
        .await
        .expect("eddy_sources");
    assert_eq!(status.get::<_, String>(0), "running");
    assert_eq!(status.get::<_, i64>(1), 5);
    assert_eq!(status.get::<_, i64>(2), 3);
    assert!(status.get::<_, bool>(3));

    // JSON: the table, the time key in milliseconds and the tag keys come from the options.
    let mock2 = cluster("readings", 2);
    let p2 = producer(&mock2);
    produce(
        &p2,
        "readings",
        &[
            (0, br#"{"ts": 1700000000000, "site": "paris", "temp": 21.5, "ok": true}"#.to_vec()),
            (1, br#"[{"ts": 1700000001000, "site": "oslo", "temp": 3, "note": "cold"}, {"ts": 1700000002000, "site": "oslo", "temp": 4}]"#.to_vec()),
            (0, br#"{"ts": 1700000003000, "site": "rome", "temp": {"nested": 1}}"#.to_vec()),
            (1, br#"{"site": "rome", "temp": 30}"#.to_vec()),
            (0, b"{not json".to_vec()),
        ],
    );
    s.psql(&format!(
        "CREATE SOURCE json_src FROM KAFKA (brokers '{}', topic 'readings', format 'json', \
         table 'readings', time_key 'ts', time_format 'unix_ms', tag_keys 'site')",
        mock2.bootstrap_servers()
    ));
    s.wait_for("SELECT count(*) FROM readings", 3, 60).await;
    s.wait_for(
        "SELECT count(*) FROM eddy_dead_letters WHERE source = 'json_src'",
        3,
        30,
    )
    .await;
    let r = c
        .query(
            "SELECT site, temp, CAST(time AS TEXT) AS t FROM readings ORDER BY time",
            &[],
        )
        .await
        .expect("readings");
    let got: Vec<(String, f64)> = r.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![
            ("paris".into(), 21.5),
            ("oslo".into(), 3.0),
            ("oslo".into(), 4.0)
        ]
    );
    assert!(
        r[0].get::<_, String>(2).starts_with("2023-11-14T22:13:20"),
        "{}",
        r[0].get::<_, String>(2)
    );
    let errors: Vec<String> = c
        .query(
            "SELECT error FROM eddy_dead_letters WHERE source = 'json_src' ORDER BY time",
            &[],
        )
        .await
        .expect("errors")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let all = errors.join(" | ");
    assert!(all.contains("nested"), "{all}");
    assert!(all.contains("no time key"), "{all}");
    assert!(all.contains("not JSON"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_definitions_are_checked_kept_and_secrets_hidden() {
    let mock = cluster("defs", 1);
    let dir = data_dir();
    let mut s = Server::start(dir.path());
    let c = s.pg().await;
    for (sql, code, needle) in [
        ("CREATE SOURCE x FROM KAFKA (topic 't')", "22023", "brokers"),
        (
            "CREATE SOURCE x FROM KAFKA (brokers 'b', topic 't', colour 'red')",
            "22023",
            "colour",
        ),
        (
            "CREATE SOURCE x FROM KAFKA (brokers 'b' topic 't')",
            "42601",
            "after option brokers",
        ),
        ("CREATE SOURCE x FROM PIGEON (a 'b')", "22023", "PIGEON"),
        (
            "CREATE SOURCE x FROM MQTT (url 'mqtt://h', topics 'a/#/b')",
            "22023",
            "topic filter",
        ),
        ("DROP SOURCE nope", "42704", "nope"),
        ("ALTER SOURCE nope PAUSE", "42704", "nope"),
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        let db = e.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), code, "{sql}: {}", db.message());
        assert!(
            db.message().to_lowercase().contains(&needle.to_lowercase()),
            "{sql}: {}",
            db.message()
        );
    }
    s.psql(&format!(
        "CREATE SOURCE secret FROM KAFKA (brokers '{}', topic 'defs', sasl_mechanism 'PLAIN', \
         sasl_username 'u', sasl_password 'hunter2')",
        mock.bootstrap_servers()
    ));
    s.psql("DROP SOURCE IF EXISTS nope");
    s.psql("CREATE SOURCE IF NOT EXISTS secret FROM KAFKA (brokers 'x', topic 'y')");
    let shown = s.psql("SELECT options FROM eddy_sources WHERE name = 'secret'");
    assert!(shown.contains("sasl_password '********'"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    s.psql("ALTER SOURCE secret PAUSE");
    s.stop();
    s.restart();
    // Kept across the restart, paused still.
    assert_eq!(
        s.psql("SELECT name || ' ' || kind || ' ' || state FROM eddy_sources")
            .trim(),
        "secret kafka paused"
    );
    s.psql("DROP SOURCE secret");
    assert_eq!(s.psql("SELECT count(*) FROM eddy_sources").trim(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_under_backpressure_arrives_whole_in_bounded_memory() {
    let mock = cluster("burst", 2);
    let p = producer(&mock);
    let total = 300_000usize;
    produce(&p, "burst", &lp_messages(0, total, 1_000, 2));
    let dir = data_dir();
    // A small memtable budget: writers wait for flushes, so the source is held back.
    let s = Server::start_with(
        dir.path(),
        &[
            "--memtable-bytes-max",
            "16000000",
            "--memtable-flush-bytes",
            "4000000",
        ],
    );
    create_source(&s, "burst_src", &mock, "burst", "");
    s.wait_for("SELECT count(*) FROM events", total as i64, 300)
        .await;
    assert_eq!(
        scalar(&s, "SELECT count(DISTINCT id) FROM events").await,
        total as i64
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).expect("status");
    let hwm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    // librdkafka's prefetch is capped at 64 MiB and the memtables at 16 MB: the server's peak
    // stays far below what 300,000 series held at once would take unbounded.
    assert!(hwm_kb < 1_500_000, "peak RSS {hwm_kb} kB");
}
