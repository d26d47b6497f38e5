//! MQTT sources against a real mosquitto broker (Debian's package, started here on a free
//! port): wildcards, topic levels as tags, QoS 1 messages published while Eddy was down, and
//! bad payloads to dead letters.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::common::{Server, data_dir, free_port};

/// A mosquitto broker on a free loopback port, killed when dropped.
struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nmax_queued_messages 100000\nmax_inflight_messages 1000\n\
                 log_dest none\n",
                dir.display()
            ),
        )
        .expect("mosquitto.conf");
        let bin = if Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (install the mosquitto package)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker { child, port }
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes every (topic, payload) at `qos` and waits until the broker acknowledged them.
async fn publish(port: u16, qos: QoS, messages: &[(String, Vec<u8>)]) {
    let mut opts = MqttOptions::new(format!("pub-{}", free_port()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(500);
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    let want = messages.len();
    let driver = tokio::spawn(async move {
        let mut acked = 0usize;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(Event::Outgoing(rumqttc::Outgoing::Publish(_))) if qos == QoS::AtMostOnce => {
                    acked += 1
                }
                Ok(_) => {}
                Err(e) => panic!("publisher: {e}"),
            }
            if acked >= want {
                // Let the last packets leave before the connection closes.
                let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
                return;
            }
        }
    });
    for (topic, payload) in messages {
        client
            .publish(topic.clone(), qos, false, payload.clone())
            .await
            .expect("publish");
    }
    tokio::time::timeout(Duration::from_secs(60), driver)
        .await
        .expect("the broker acknowledged every message")
        .expect("publisher task");
    let _ = client.disconnect().await;
}

async fn wait_state(s: &Server, name: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = s.psql(&format!(
            "SELECT state FROM eddy_sources WHERE name = '{name}'"
        ));
        if got.trim() == state {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {got}, not {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_wildcards_topic_tags_and_qos1_while_eddy_is_down() {
    let broker_dir = data_dir();
    let broker = Broker::start(broker_dir.path());
    let dir = data_dir();
    let log = dir.path().join("server.log");
    let mut s = Server::start_logged(dir.path(), &[], &log);
    s.psql(&format!(
        "CREATE SOURCE sensors FROM MQTT (url '{}', topics 'sensors/+/+/temp, alerts/#', qos 1, \
         topic_tags 'sensors/{{site}}/{{device}}/+', client_id 'eddy-test-sensors')",
        broker.url()
    ));
    wait_state(&s, "sensors", "running").await;
    // Subscriptions are in place once the source runs; give the SUBACK a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut messages = Vec::new();
    for i in 0..300i64 {
        let site = ["paris", "oslo", "rome"][i as usize % 3];
        messages.push((
            format!("sensors/{site}/d{}/temp", i % 7),
            format!("temp value={i} {}", 1_700_000_000_000_000_000 + i).into_bytes(),
        ));
    }
    // Not matched by any filter: never arrives.
    messages.push((
        "sensors/paris/d1/humidity".into(),
        b"temp value=-1 1".to_vec(),
    ));
    messages.push(("other/x".into(), b"temp value=-2 2".to_vec()));
    publish(broker.port, QoS::AtLeastOnce, &messages).await;
    s.wait_for("SELECT count(*) FROM temp", 300, 60).await;
    assert_eq!(
        s.psql("SELECT site || ':' || count(*) FROM temp GROUP BY site ORDER BY site")
            .split_whitespace()
            .collect::<Vec<_>>(),
        vec!["oslo:100", "paris:100", "rome:100"]
    );
    assert_eq!(
        s.psql("SELECT count(DISTINCT device) FROM temp").trim(),
        "7"
    );
    assert_eq!(s.psql("SELECT min(value) FROM temp").trim(), "0");

    // Eddy goes down; QoS 1 messages published meanwhile wait in the broker's persistent
    // session and arrive after the restart.
    s.stop();
    let later: Vec<(String, Vec<u8>)> = (300..500i64)
        .map(|i| {
            (
                "alerts/fire".to_string(),
                format!(
                    "alerts,kind=fire level={i} {}",
                    1_700_000_000_000_000_000 + i
                )
                .into_bytes(),
            )
        })
        .collect();
    publish(broker.port, QoS::AtLeastOnce, &later).await;
    s.restart();
    s.wait_for("SELECT count(*) FROM alerts", 200, 60).await;
    assert_eq!(
        s.psql("SELECT sum(level) FROM alerts").trim(),
        (300..500).sum::<i64>().to_string()
    );

    // A bad payload is a dead letter with its topic; the source goes on.
    publish(
        broker.port,
        QoS::AtLeastOnce,
        &[
            ("alerts/x".into(), b"no fields here".to_vec()),
            ("alerts/y".into(), b"alerts,kind=y level=1 5".to_vec()),
        ],
    )
    .await;
    s.wait_for("SELECT count(*) FROM alerts", 201, 30).await;
    s.wait_for(
        "SELECT count(*) FROM eddy_dead_letters WHERE source = 'sensors' AND partition = 'alerts/x'",
        1,
        30,
    )
    .await;
    s.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_reconnects_when_the_broker_comes_back_and_pauses_on_request() {
    let broker_dir = data_dir();
    let mut broker = Broker::start(broker_dir.path());
    let port = broker.port;
    let dir = data_dir();
    let s = Server::start_logged(dir.path(), &[], &dir.path().join("server.log"));
    s.psql(&format!(
        "CREATE SOURCE q0 FROM MQTT (url '{}', topics 'm/#', qos 0)",
        broker.url()
    ));
    wait_state(&s, "q0", "running").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let msgs = |from: i64, n: i64| -> Vec<(String, Vec<u8>)> {
        (from..from + n)
            .map(|i| {
                (
                    "m/a".to_string(),
                    format!("q v={i} {}", 1_000 + i).into_bytes(),
                )
            })
            .collect()
    };
    publish(port, QoS::AtMostOnce, &msgs(0, 50)).await;
    s.wait_for("SELECT count(*) FROM q", 50, 30).await;
    // The broker goes away and comes back on the same port.
    let _ = broker.child.kill();
    let _ = broker.child.wait();
    wait_state(&s, "q0", "connecting").await;
    let conf = broker_dir.path().join("mosquitto.conf");
    let bin = if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    };
    broker.child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("restart mosquitto");
    wait_state(&s, "q0", "running").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    publish(port, QoS::AtMostOnce, &msgs(50, 50)).await;
    s.wait_for("SELECT count(*) FROM q", 100, 30).await;
    s.psql("ALTER SOURCE q0 PAUSE");
    wait_state(&s, "q0", "paused").await;
    s.psql("ALTER SOURCE q0 RESUME");
    wait_state(&s, "q0", "running").await;
    s.psql("DROP SOURCE q0");
    assert_eq!(s.psql("SELECT count(*) FROM eddy_sources").trim(), "0");
}
