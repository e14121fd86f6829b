//! One MQTT connection over any byte stream: handshake, then a single `select!` loop.
//!
//! The loop owns all of the connection's state, so nothing is shared or locked: it reads and
//! decodes client packets, queues publishes towards the log (one append in flight, acks in order
//! once durable), answers control packets, delivers from the log while the outgoing window and
//! the write buffer have room, writes, and watches keep-alive, takeover and shutdown.
//!
//! Memory per connection is bounded: reading stops while the publish queue is full or the client
//! is not reading its answers (write buffer above [`OUT_READ_LIMIT`]); deliveries only fill the
//! write buffer up to [`OUT_DELIVERY_LIMIT`]; a half-received packet is at most
//! `max_packet_bytes`.
//!
//! Any protocol violation closes only this connection, logged with client id, peer and reason.
//! DISCONNECT, end of stream and shutdown first finish the publishes already received (so a
//! QoS 0 sensor that publishes and hangs up loses nothing), bounded by [`DRAIN_TIMEOUT`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ingest::IngestError;
use crate::log::Appended;

use super::codec::{packet_name, Codec, CodecError, Frame};

mod handlers;
use super::delivery::Delivery;
use super::inbound::{Ack, InboundQueue};
use super::inflight::{AwaitingRelease, Outgoing};
use super::registry::Registration;
use super::subscriptions::Subscriptions;
use super::MqttContext;

/// Time a new connection has to send its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries stop filling the write buffer at this size.
pub const OUT_DELIVERY_LIMIT: usize = 64 * 1024;
/// Reading from the client stops while this much is waiting to be written to it.
pub const OUT_READ_LIMIT: usize = 256 * 1024;
/// Bytes reserved per socket read.
const READ_CHUNK: usize = 8 * 1024;
/// Longest wait for received publishes to be appended once the connection is ending.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait to write out the last answers (e.g. a refusing CONNACK) before closing.
const FINAL_FLUSH: Duration = Duration::from_secs(2);
/// Append events handled per wake-up before delivering.
const EVENTS_PER_WAKE: usize = 256;

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum Closed {
    #[error("the client closed the connection")]
    PeerClosed,
    #[error("the client sent DISCONNECT")]
    ClientDisconnect,
    #[error("the broker is shutting down")]
    Shutdown,
    #[error("another connection took over this client id")]
    TakenOver,
    #[error("no packet for {0:?} (1.5 x keep-alive)")]
    KeepAlive(Duration),
    #[error("no CONNECT within {CONNECT_TIMEOUT:?}")]
    ConnectTimeout,
    #[error("received publishes were not appended within {DRAIN_TIMEOUT:?} of closing")]
    DrainTimeout,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("connection refused: {0}")]
    Refused(String),
    #[error("append of MQTT topic {mqtt_topic:?} to log topic {log_topic:?} failed, not acknowledged: {error}")]
    Ingest {
        mqtt_topic: String,
        log_topic: String,
        error: IngestError,
    },
}

/// A finished append and the acks it owes.
struct AppendDone {
    acks: Vec<Ack>,
    mqtt_topic: String,
    log_topic: String,
    result: Result<Option<Appended>, IngestError>,
}

type PendingAppend = Pin<Box<dyn Future<Output = AppendDone> + Send>>;

/// Serves one MQTT connection until it ends; never fails (the reason is logged). Used by the
/// TCP listener and, with one bidirectional stream per connection, by MQTT over QUIC. The
/// caller holds a connection slot ([`MqttContext::admit`]) for the duration.
pub async fn serve_connection<S>(
    stream: S,
    peer: String,
    ctx: MqttContext,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let mut conn = Connection {
        reader,
        writer,
        inbuf: BytesMut::with_capacity(READ_CHUNK),
        out: BytesMut::new(),
        needs_flush: false,
        writer_dead: false,
        codec: Codec::new(ctx.inner.max_packet_bytes),
        peer,
        client_id: String::new(),
        registration: None,
        keep_alive: None,
        last_heard: Instant::now(),
        inbound: InboundQueue::default(),
        pending: None,
        disconnect_received: false,
        awaiting_rel: AwaitingRelease::default(),
        outgoing: Outgoing::new(ctx.inner.max_inflight),
        subs: Subscriptions::default(),
        delivery: Delivery::new(ctx.inner.ingest.log().clone()),
        ctx,
    };
    let closed = match conn.handshake(&shutdown).await {
        Ok(()) => conn.session(&shutdown).await,
        Err(closed) => closed,
    };
    conn.log_close(&closed);
    if !matches!(closed, Closed::Io(_)) {
        conn.final_flush().await;
    }
    if let Some(r) = &conn.registration {
        conn.ctx
            .inner
            .clients
            .unregister(&conn.client_id, r.connection);
    }
}

struct Connection<S> {
    reader: ReadHalf<S>,
    writer: WriteHalf<S>,
    /// Bytes read and not yet decoded.
    inbuf: BytesMut,
    /// Encoded packets not yet written.
    out: BytesMut,
    /// Bytes were written since the last flush (TLS and QUIC streams buffer).
    needs_flush: bool,
    /// Writing failed while draining: answers are dropped, appends still finish.
    writer_dead: bool,
    codec: Codec,
    peer: String,
    /// Empty until CONNECT.
    client_id: String,
    registration: Option<Registration>,
    /// 1.5 x the client's keep-alive; `None` when it asked for none.
    keep_alive: Option<Duration>,
    last_heard: Instant,
    inbound: InboundQueue,
    /// The append in flight, if any.
    pending: Option<PendingAppend>,
    disconnect_received: bool,
    awaiting_rel: AwaitingRelease,
    outgoing: Outgoing,
    subs: Subscriptions,
    delivery: Delivery,
    ctx: MqttContext,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection<S> {
    /// Reads the CONNECT and answers it.
    async fn handshake(&mut self, shutdown: &CancellationToken) -> Result<(), Closed> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let frame = loop {
            if let Some(frame) = self.codec.decode(&mut self.inbuf)? {
                break frame;
            }
            self.inbuf.reserve(READ_CHUNK);
            tokio::select! {
                read = self.reader.read_buf(&mut self.inbuf) => {
                    if read? == 0 {
                        return Err(Closed::PeerClosed);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return Err(Closed::ConnectTimeout),
                _ = shutdown.cancelled() => return Err(Closed::Shutdown),
            }
        };
        let connect = match frame {
            Frame::Packet(Packet::Connect(c)) => c,
            Frame::UnsupportedProtocol { name, level } => {
                self.send(&connack(ConnectReturnCode::RefusedProtocolVersion));
                return Err(Closed::Refused(format!(
                    "protocol {name:?} level {level} is not supported (only MQTT 3.1.1)"
                )));
            }
            Frame::Packet(other) => {
                return Err(Closed::Protocol(format!(
                    "first packet is {}, not CONNECT",
                    packet_name(&other)
                )))
            }
        };
        if connect.client_id.is_empty() {
            if !connect.clean_session {
                self.send(&connack(ConnectReturnCode::BadClientId));
                return Err(Closed::Refused(
                    "empty client id with clean_session = false".into(),
                ));
            }
            self.client_id = self.ctx.inner.clients.generate_id();
        } else {
            self.client_id = connect.client_id;
        }
        // Persistent sessions are a later issue: clean_session = false is accepted but served
        // as a clean session (nothing is kept after the connection ends, and CONNACK says no
        // session is present). The will is parsed and not yet published.
        self.registration = Some(self.ctx.inner.clients.register(&self.client_id));
        if connect.keep_alive > 0 {
            self.keep_alive = Some(Duration::from_millis(connect.keep_alive as u64 * 1500));
        }
        self.last_heard = Instant::now();
        self.send(&connack(ConnectReturnCode::Success));
        tracing::debug!(client_id = %self.client_id, peer = %self.peer, keep_alive = connect.keep_alive, "mqtt client connected");
        Ok(())
    }

    /// The connected session, until it ends.
    async fn session(&mut self, shutdown: &CancellationToken) -> Closed {
        let taken_over = match &self.registration {
            Some(r) => r.taken_over.clone(),
            None => CancellationToken::new(),
        };
        // Set once the connection is ending: why, and until when appends may finish.
        let mut draining: Option<(Closed, Instant)> = None;
        loop {
            // Complete packets already read are handled even while draining: a client that
            // publishes, sends DISCONNECT and hangs up may be seen at end of stream first.
            if let Err(closed) = self.process_input() {
                return closed;
            }
            if self.disconnect_received
                && !matches!(
                    draining,
                    Some((Closed::ClientDisconnect | Closed::Shutdown, _))
                )
            {
                let until = draining
                    .as_ref()
                    .map_or_else(|| Instant::now() + DRAIN_TIMEOUT, |(_, at)| *at);
                draining = Some((Closed::ClientDisconnect, until));
            }
            if self.pending.is_none() {
                if let Some(batch) = self.inbound.next_batch() {
                    self.start_append(batch);
                }
            }
            if draining.is_some() && self.pending.is_none() && self.inbound.is_empty() {
                if let Some((closed, _)) = draining.take() {
                    return closed;
                }
            }
            let mut more = false;
            if draining.is_none() {
                more = self.delivery.pump(
                    &self.subs,
                    &mut self.outgoing,
                    &self.codec,
                    &mut self.out,
                    OUT_DELIVERY_LIMIT,
                );
            }
            if self.writer_dead {
                self.out.clear();
            }
            let can_read =
                draining.is_none() && !self.inbound.is_full() && self.out.len() < OUT_READ_LIMIT;
            if can_read {
                self.inbuf.reserve(READ_CHUNK);
            }
            let can_write = !self.writer_dead && (!self.out.is_empty() || self.needs_flush);
            let silent_until = self.keep_alive.map(|k| self.last_heard + k);
            let drain_until = draining.as_ref().map(|(_, at)| *at);
            let far = Instant::now() + Duration::from_secs(86_400);

            tokio::select! {
                read = self.reader.read_buf(&mut self.inbuf), if can_read => match read {
                    Ok(0) => draining = Some((Closed::PeerClosed, Instant::now() + DRAIN_TIMEOUT)),
                    Ok(_) => self.last_heard = Instant::now(),
                    Err(e) => return Closed::Io(e),
                },
                written = write_some(&mut self.writer, &mut self.out, &mut self.needs_flush), if can_write => {
                    if let Err(e) = written {
                        if draining.is_none() {
                            return Closed::Io(e);
                        }
                        self.writer_dead = true;
                    }
                }
                done = wait_append(&mut self.pending) => {
                    self.pending = None;
                    if let Err(closed) = self.finish_append(done) {
                        return closed;
                    }
                }
                wake = self.delivery.wake(), if draining.is_none() => {
                    let router = &self.ctx.inner.router;
                    self.delivery.on_wake(wake, &self.subs, router);
                    for wake in self.delivery.ready_events(EVENTS_PER_WAKE) {
                        self.delivery.on_wake(wake, &self.subs, router);
                    }
                }
                _ = tokio::time::sleep_until(silent_until.unwrap_or(far)), if silent_until.is_some() && draining.is_none() => {
                    return Closed::KeepAlive(self.keep_alive.unwrap_or_default());
                }
                _ = tokio::time::sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() => {
                    return Closed::DrainTimeout;
                }
                _ = shutdown.cancelled(), if draining.is_none() => {
                    draining = Some((Closed::Shutdown, Instant::now() + DRAIN_TIMEOUT));
                }
                _ = taken_over.cancelled() => return Closed::TakenOver,
                _ = tokio::task::yield_now(), if more => {}
            }
        }
    }

    fn log_close(&self, closed: &Closed) {
        let (client_id, peer) = (&self.client_id, &self.peer);
        match closed {
            Closed::PeerClosed | Closed::ClientDisconnect | Closed::Shutdown => {
                tracing::debug!(%client_id, %peer, reason = %closed, "mqtt connection closed")
            }
            Closed::TakenOver | Closed::Io(_) => {
                tracing::info!(%client_id, %peer, reason = %closed, "mqtt connection closed")
            }
            Closed::Ingest { .. } => {
                tracing::error!(%client_id, %peer, reason = %closed, "mqtt connection closed")
            }
            _ => tracing::warn!(%client_id, %peer, reason = %closed, "mqtt connection closed"),
        }
    }

    /// Writes what is still buffered (acks, a refusing CONNACK), briefly, then closes the
    /// write side.
    async fn final_flush(&mut self) {
        if self.writer_dead {
            return;
        }
        let flush = async {
            self.writer.write_all(&self.out).await?;
            self.writer.flush().await?;
            self.writer.shutdown().await
        };
        let _ = tokio::time::timeout(FINAL_FLUSH, flush).await;
    }
}

fn connack(code: ConnectReturnCode) -> Packet {
    // No session is ever kept yet, so session_present is always false.
    Packet::ConnAck(ConnAck::new(code, false))
}

/// Writes some of `out` (cancel-safe: written bytes are consumed before returning), or flushes
/// once it is empty.
async fn write_some<W: AsyncWrite + Unpin>(
    writer: &mut W,
    out: &mut BytesMut,
    needs_flush: &mut bool,
) -> std::io::Result<()> {
    if out.is_empty() {
        writer.flush().await?;
        *needs_flush = false;
        return Ok(());
    }
    let n = writer.write(out).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    out.advance(n);
    *needs_flush = true;
    Ok(())
}

async fn wait_append(pending: &mut Option<PendingAppend>) -> AppendDone {
    match pending {
        Some(fut) => fut.as_mut().await,
        None => std::future::pending().await,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
