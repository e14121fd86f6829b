//! Will messages (MQTT §3.1.2.5, §3.1.3.2): published for a client whose connection ends
//! without a normal DISCONNECT.
//!
//! The connection keeps the will from its CONNECT and decides at the end ([`fate`]): a
//! DISCONNECT with reason 0x00 (or any code but 0x04 "disconnect with will message") discards
//! it; end of stream, socket errors, keep-alive timeout, protocol errors, takeover, shutdown and
//! DISCONNECT 0x04 publish it. Publishing goes through the same path as a client's PUBLISH
//! ([`MqttContext::append`]): the will becomes a log record with the usual headers (publisher =
//! the client whose will it is), so MQTT subscribers and Kafka consumers see it; a retained will
//! becomes the topic's retained message.
//!
//! MQTT 5 will delay interval: the will waits, in a task, for the delay unless a connection
//! with the same client id arrives first ([`PendingWills::cancel`], called on every CONNECT),
//! in which case it is dropped. The delay is cut to the session expiry interval the client
//! asked for (0 when it asked for none: published at once), as the will goes when the session
//! ends (§3.1.3.2.2). Delayed
//! wills are capped at `mqtt.max_connections`; beyond that one is published at once.
//!
//! Broker shutdown publishes the wills of connected clients (as Mosquitto does) and, at once,
//! wills still waiting out a delay, while the log is still open (the listener waits for its
//! connections before it returns).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::inbound::{record, Inbound};
use super::packet::WillIn;
use super::{now_ms, MqttContext};

/// What happens to a connection's will when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Discard,
    /// Publish after the will delay (or at once).
    Publish,
    /// Publish at once, whatever the delay (broker shutdown).
    PublishNow,
    /// Same client id connected again: published at once without a delay, dropped with one
    /// (the reconnect came before the delay ran out).
    TakenOver,
}

/// Wills waiting out their delay, by client id.
#[derive(Debug)]
pub struct PendingWills {
    max: usize,
    waiting: Mutex<HashMap<String, CancellationToken>>,
}

impl PendingWills {
    pub fn new(max: usize) -> PendingWills {
        PendingWills {
            max,
            waiting: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A client connected: its delayed will, if any, is not published.
    pub fn cancel(&self, client_id: &str) {
        if let Some(token) = self.lock().remove(client_id) {
            token.cancel();
        }
    }

    /// Wills waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A token cancelled if `client_id` reconnects, or `None` when too many wills wait.
    fn defer(&self, client_id: &str) -> Option<CancellationToken> {
        let mut waiting = self.lock();
        if waiting.len() >= self.max && !waiting.contains_key(client_id) {
            return None;
        }
        let token = CancellationToken::new();
        if let Some(old) = waiting.insert(client_id.to_string(), token.clone()) {
            old.cancel();
        }
        Some(token)
    }

    fn done(&self, client_id: &str, token: &CancellationToken) {
        let mut waiting = self.lock();
        if waiting.get(client_id).is_some_and(|t| t == token) {
            waiting.remove(client_id);
        }
    }
}

/// The delay a will waits for: its will delay interval, cut to the session expiry interval the
/// client asked for (the session's end publishes it at the latest).
pub fn delay(will: &WillIn, session_expiry: Option<u32>) -> Duration {
    Duration::from_secs(u64::from(will.delay.min(session_expiry.unwrap_or(0))))
}

/// Carries out `fate` for `will`: publishes it now (awaited), hands it to a delay task, or drops
/// it.
pub async fn settle(
    ctx: &MqttContext,
    client_id: &str,
    will: WillIn,
    delay: Duration,
    fate: Fate,
    shutdown: &CancellationToken,
) {
    match fate {
        Fate::Discard => {}
        Fate::TakenOver if !delay.is_zero() => {
            tracing::debug!(%client_id, "mqtt: will dropped: the client reconnected within its will delay")
        }
        Fate::PublishNow | Fate::TakenOver => publish(ctx, client_id, will).await,
        Fate::Publish if delay.is_zero() || shutdown.is_cancelled() => {
            publish(ctx, client_id, will).await
        }
        Fate::Publish => match ctx.inner.wills.defer(client_id) {
            None => {
                tracing::warn!(%client_id, "mqtt: too many delayed wills; publishing this one now");
                publish(ctx, client_id, will).await
            }
            Some(reconnected) => {
                let (ctx, client_id, shutdown) =
                    (ctx.clone(), client_id.to_string(), shutdown.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = reconnected.cancelled() => {
                            tracing::debug!(%client_id, "mqtt: delayed will dropped: the client reconnected");
                            return;
                        }
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    ctx.inner.wills.done(&client_id, &reconnected);
                    publish(&ctx, &client_id, will).await;
                });
            }
        },
    }
}

/// Publishes a will as if its client had sent it as a PUBLISH. Failures are logged: there is
/// no one to tell.
pub async fn publish(ctx: &MqttContext, client_id: &str, will: WillIn) {
    let m = Inbound {
        topic: will.topic,
        qos: will.qos,
        pkid: 0,
        payload: will.payload,
        store: true,
        refused: None,
        timestamp: now_ms(),
        retain: will.retain,
        props: will.props,
    };
    let rec = record(&m, &Bytes::copy_from_slice(client_id.as_bytes()));
    let retained = m.retain.then(|| rec.clone());
    let log_topic = ctx.inner.router.log_topic(&m.topic);
    match ctx
        .append(&m.topic, &log_topic, vec![rec], retained, Vec::new())
        .await
    {
        Ok(_) => {
            tracing::debug!(%client_id, mqtt_topic = %m.topic, %log_topic, "mqtt: will published")
        }
        Err(error) => {
            tracing::warn!(%client_id, mqtt_topic = %m.topic, %log_topic, %error, "mqtt: will not published")
        }
    }
}
