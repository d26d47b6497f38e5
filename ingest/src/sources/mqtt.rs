//! The MQTT source (MQTT 3.1.1 through `rumqttc`): subscribes to topic filters, turns topic
//! levels into tags, and acknowledges a QoS 1 message to the broker only after its rows are
//! durable. A persistent session (the default, `clean_session false`) makes the broker keep
//! QoS 1 messages published while Eddy was away, and deliver them when it is back. A message
//! redelivered after a crash between the write and the acknowledgement is written again: with
//! explicit timestamps that rewrites the same keys, so the table is unchanged.
//!
//! One task drives the connection and hands publishes over a bounded channel to the task
//! that writes them: when storage pushes back, the channel fills, the connection task stops
//! reading the socket, and the broker holds the rest.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Packet, Publish, QoS, SubscribeFilter};
use tokio::sync::mpsc;

use crate::sources::decode::Message;
use crate::sources::options::{MqttOptions, SourceSpec};
use crate::sources::stats::SourceState;
use crate::sources::{BACKOFF_MAX, Control, SourceTask};

/// Longest a batch waits for more messages once it has one.
const LINGER: Duration = Duration::from_millis(20);
/// Publishes buffered between the connection and the writer.
const CHANNEL_MESSAGES: usize = 16_384;
/// Largest MQTT packet accepted.
const PACKET_BYTES_MAX: usize = 1 << 20;

/// Starts the source as a task; `done` is sent when it has stopped.
pub(crate) fn spawn(task: SourceTask, done: tokio::sync::oneshot::Sender<()>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::error!(source = %task.def.name, "sources start inside the server's runtime");
        return;
    };
    handle.spawn(async move {
        run(&task).await;
        task.stats.set_state(SourceState::Stopped);
        let _ = done.send(());
    });
}

fn client_options(m: &MqttOptions) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(&m.client_id, &m.host, m.port);
    o.set_keep_alive(m.keep_alive)
        .set_clean_session(m.clean_session)
        .set_manual_acks(true)
        .set_max_packet_size(PACKET_BYTES_MAX, PACKET_BYTES_MAX);
    if let Some(u) = &m.username {
        o.set_credentials(u, m.password.clone().unwrap_or_default());
    }
    o
}

async fn run(task: &SourceTask) {
    let SourceSpec::Mqtt(m) = &task.spec else {
        return;
    };
    let name = task.def.name.clone();
    let (client, mut eventloop) = AsyncClient::new(client_options(m), 1024);
    let (tx, mut rx) = mpsc::channel::<Publish>(CHANNEL_MESSAGES);
    let qos = if m.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    let filters: Vec<SubscribeFilter> = m
        .topics
        .iter()
        .map(|t| SubscribeFilter::new(t.clone(), qos))
        .collect();
    // The connection: reconnects with backoff, subscribes when the broker has no session.
    let connection = {
        let client = client.clone();
        let stats = task.stats.clone();
        let name = name.clone();
        let host = format!("{}:{}", m.host, m.port);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        backoff = Duration::from_millis(200);
                        tracing::info!(source = %name, broker = %host, session_present = ack.session_present, "MQTT connected");
                        // Also when the broker kept the session: the source's topics may have
                        // changed since (subscribing again to the same filter is harmless).
                        if let Err(e) = client.subscribe_many(filters.clone()).await {
                            stats.error(&format!("cannot subscribe: {e}"));
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        if ack
                            .return_codes
                            .iter()
                            .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                        {
                            stats.error("the broker refused a subscription");
                            tracing::warn!(source = %name, "the broker refused a subscription");
                        }
                        // Running once the subscriptions are in place.
                        if stats.state() == SourceState::Connecting {
                            stats.set_state(SourceState::Running);
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send(p).await.is_err() {
                            break;
                        }
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(e) => {
                        if tx.is_closed() {
                            break;
                        }
                        stats.error(&format!("MQTT connection to {host}: {e}"));
                        if stats.state() != SourceState::Paused {
                            stats.set_state(SourceState::Connecting);
                        }
                        tracing::warn!(source = %name, broker = %host, error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection failed; reconnecting");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
        })
    };
    let mut control = task.control.clone();
    let common = task.spec.common();
    loop {
        let wanted = *control.borrow_and_update();
        match wanted {
            Control::Stop => break,
            Control::Pause => {
                task.stats.set_state(SourceState::Paused);
                if control.changed().await.is_err() {
                    break;
                }
                continue;
            }
            Control::Run => {
                if task.stats.state() == SourceState::Paused {
                    task.stats.set_state(SourceState::Running);
                }
            }
        }
        let first = tokio::select! {
            p = rx.recv() => match p {
                Some(p) => p,
                None => break,
            },
            changed = control.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
        };
        let mut batch = vec![first];
        let mut bytes = batch[0].payload.len();
        let deadline = Instant::now() + LINGER;
        while batch.len() < common.batch_messages && bytes < common.batch_bytes {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.payload.len();
                    batch.push(p);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some(p)) => {
                    bytes += p.payload.len();
                    batch.push(p);
                }
                _ => break,
            }
        }
        let messages: Vec<Message> = batch
            .iter()
            .map(|p| Message {
                payload: p.payload.to_vec(),
                tags: m
                    .topic_tags
                    .as_ref()
                    .and_then(|t| t.tags(&p.topic))
                    .unwrap_or_default(),
                partition: p.topic.clone(),
                offset: None,
            })
            .collect();
        if task.commit(&messages, None).await.is_err() {
            // Stopped before the batch was durable: not acknowledged, so the broker
            // delivers it again (QoS 1).
            break;
        }
        for p in batch.iter().filter(|p| p.qos != QoS::AtMostOnce) {
            if let Err(e) = client.ack(p).await {
                tracing::debug!(source = %name, error = %e, "cannot acknowledge a message");
            }
        }
    }
    drop(rx);
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
    tracing::info!(source = %name, "MQTT source stopped");
}
