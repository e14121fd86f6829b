//! One MQTT connection over any byte stream: handshake, then a single `select!` loop.
//!
//! The loop owns all of the connection's state, so nothing is shared or locked: it reads and
//! decodes client packets, queues publishes towards the log (up to [`MAX_APPENDS_IN_FLIGHT`]
//! appends queued with the writer, acks in order once durable), answers control packets, delivers from the log while the outgoing window and
//! the write buffer have room, writes, and watches keep-alive, takeover and shutdown.
//!
//! Memory per connection is bounded: reading stops while the publish queue is full or the client
//! is not reading its answers (write buffer above [`OUT_READ_LIMIT`]); deliveries only fill the
//! write buffer up to [`OUT_DELIVERY_LIMIT`]; a half-received packet is at most
//! `max_packet_bytes`.
//!
//! Both MQTT 3.1.1 and 5.0 run through this one loop: the version-specific part is the
//! [`Wire`] (framing and translation to the broker's own packets) and a few decisions in the
//! handlers (negative acks, topic aliases, receive maximum), all keyed on `wire.version`.
//!
//! Any protocol violation closes only this connection, logged with client id, peer and reason;
//! an MQTT 5 client first gets a DISCONNECT with the reason code (see [`Closed::disconnect_reason`]).
//! DISCONNECT, end of stream and shutdown first finish the publishes already received (so a
//! QoS 0 sensor that publishes and hangs up loses nothing), bounded by [`DRAIN_TIMEOUT`]. Then
//! the client's will, if it still has one, is settled ([`will`]): after the drain, so it follows
//! the client's own publishes in the log.
//!
//! Memory while quiet: the state is boxed, the subscriber side ([`outbound`]) exists only from
//! the first SUBSCRIBE, and a connection with nothing to do for [`QUIET_BEFORE_IDLE`] drops the
//! busy loop's future and its buffers. A publish-only connection on plain TCP is then parked
//! ([`park`], [`super::parking`]): its task ends and its socket waits in one shared epoll set
//! (about 1.2 KiB per idle sensor in all); any other waits in [`idle`]'s small future (about
//! 2.3 KiB; 7 KiB before either; see BENCHMARKS.md).
//!
//! A persistent session ([`super::session`]) is opened in the handshake (after the client id's
//! lease, so a connection taken over has saved its state first), saved by a timer in the loop
//! at most every [`super::session::SAVE_INTERVAL`], and saved a last time when the loop ends
//! ([`persist`]).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::ingest::IngestError;
use crate::log::{Appended, LogError};
use crate::mqtt::session_store::SessionError;

use super::auth::{Permissions, Refusal};
use super::codec::CodecError;
use super::link::Link;
use super::packet::{reason, ClientPacket, ConnAckOut, ConnectCode, ServerPacket, Version, WillIn};
use super::peer::Peer;
use super::wire::{Incoming, Wire};

mod buffers;
mod fence;
mod handlers;
mod idle;
mod outbound;
mod park;
mod persist;
use super::delivery::Wake;
use super::inbound::{Ack, Batch, InboundQueue};
use super::inflight::{AwaitingRelease, MAX_AWAITING_PUBREL};
use super::registry::Registration;
use super::session_store::Lease;
use super::topic;
use super::will::{self, Fate};
use super::MqttContext;
use outbound::Outbound;

/// Time a new connection has to send its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries stop filling the write buffer at this size.
pub const OUT_DELIVERY_LIMIT: usize = 64 * 1024;
/// Reading from the client stops while this much is waiting to be written to it.
pub const OUT_READ_LIMIT: usize = 256 * 1024;
/// Bytes reserved per socket read.
/// Longest wait for received publishes to be appended once the connection is ending.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait to write out the last answers (e.g. a refusing CONNACK) before closing.
const FINAL_FLUSH: Duration = Duration::from_secs(2);
/// Append events handled per wake-up before delivering.
const EVENTS_PER_WAKE: usize = 256;
/// Topic Alias Maximum granted to MQTT 5 clients: aliases 1..=this may be set per connection
/// (each holds one topic name, bounded by the packet size).
pub const TOPIC_ALIAS_MAXIMUM: u16 = 64;
/// Receive Maximum announced to MQTT 5 clients: QoS 1 and 2 publishes not yet acknowledged
/// (PUBACK, or PUBCOMP for QoS 2) beyond this are a protocol violation (0x93). Equal to the
/// bound on QoS 2 publishes awaiting PUBREL, which 3.1.1 clients are held to as well.
pub const RECEIVE_MAXIMUM: u16 = MAX_AWAITING_PUBREL as u16;
/// Longest reason string sent in a DISCONNECT.
const MAX_REASON_STRING: usize = 256;

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
    /// An MQTT 5 violation with its own reason code (topic alias, receive maximum, ...).
    #[error("{message} (reason {reason:#04x})")]
    Rejected { reason: u8, message: String },
    #[error("connection refused: {0}")]
    Refused(String),
    #[error("released QoS 2 receipts could not be deleted, PUBCOMP not sent: {0}")]
    Receipts(LogError),
    #[error("session not saved, QoS 2 deliveries not sent: {0}")]
    SessionSave(SessionError),
    #[error("append of MQTT topic {mqtt_topic:?} to log topic {log_topic:?} failed, not acknowledged: {error}")]
    Ingest {
        mqtt_topic: String,
        log_topic: String,
        error: IngestError,
    },
}

/// How a busy stretch of the session ended.
enum Step {
    Closed(Closed),
    /// Nothing to do until the client, the log or a timer says so: wait in [`Connection::idle`].
    Idle,
}

/// How long a connection has nothing to do before it waits in [`Connection::idle`]: a client
/// that is busy (a publisher between two acks, a subscriber between two appends) would
/// otherwise swap its state in and out thousands of times a second, which measurably costs
/// throughput; a sensor between two readings waits far longer than this.
const QUIET_BEFORE_IDLE: Duration = Duration::from_millis(200);

/// A finished append and the acks it owes.
struct AppendDone {
    acks: Vec<Ack>,
    /// Packet ids of the QoS 2 receipts stored with it (see `receipts`).
    receipts: Vec<u16>,
    /// Payload bytes of its records (counted in `Connection::bytes_in_flight`).
    bytes: usize,
    mqtt_topic: String,
    log_topic: String,
    result: Result<Option<Appended>, IngestError>,
}

/// What a queued commit of the connection owes the client once it is done.
enum Done {
    Append(AppendDone),
    /// PUBRELs of a persistent session, whose receipts' deletion is now durable (or failed):
    /// their PUBCOMPs (packet id, reason), in order.
    Released {
        pubcomps: Vec<(u16, u8)>,
        result: Result<(), LogError>,
    },
    /// A save of the session for the output behind the fence (see `fence`): `extra` bytes of
    /// it were beyond the fence when the save was queued.
    Saved {
        extra: usize,
        result: Result<(), SessionError>,
    },
}

type PendingAppend = Pin<Box<dyn Future<Output = Done> + Send>>;

/// Most PUBCOMPs a connection owes while their receipts' deletion is queued: a client sending
/// PUBRELs faster than the disk takes them is slowed by TCP, as a fast publisher is.
const MAX_PUBCOMPS_OWED: usize = 1024;

/// Most appends of one connection queued with the log writer at once: while one batch is being
/// fsync'd the next can join the following group commit, so a single publisher is not held to
/// one commit per window. Acks still go out in order.
const MAX_APPENDS_IN_FLIGHT: usize = 4;

/// Most reads and writes [`Connection::catch_up`] does before an append: the inbound queue's
/// bound stops it sooner when the client sends fast.
const CATCH_UP_ROUNDS: usize = 32;

/// Most appends of one connection queued at once counting those of QoS 0 publishes only: they
/// owe no ack, so they need not wait for the commits before them (a QoS 0 publisher is not
/// held to [`MAX_APPENDS_IN_FLIGHT`] batches per fsync). Memory stays bounded by
/// [`MAX_BYTES_IN_FLIGHT`].
const MAX_QOS0_APPENDS_IN_FLIGHT: usize = 64;
/// Payload bytes of one connection's appends in flight beyond which no other starts (one
/// always may): what a connection holds in the log writer's queue when the disk falls behind.
const MAX_BYTES_IN_FLIGHT: usize = 4 * 1024 * 1024;

/// What a connection holds for as long as it lives, parked or not: its `mqtt.max_connections`
/// permit ([`MqttContext::admit`]) and its listener's count of open connections (which the
/// listener waits for at shutdown).
#[derive(Default)]
pub struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
    _tracked: Option<TaskTrackerToken>,
}

impl Slot {
    pub fn new(permit: Option<OwnedSemaphorePermit>, tracked: Option<TaskTrackerToken>) -> Slot {
        Slot {
            _permit: permit,
            _tracked: tracked,
        }
    }
}

/// Serves one MQTT connection until it ends; never fails (the reason is logged). Used by the
/// TCP listeners (plain, TLS, WebSocket; see [`super::transport`]) and, with one bidirectional
/// stream per connection, by MQTT over QUIC. The connection keeps `slot` until it ends.
pub fn serve_connection<S: Link>(
    stream: S,
    peer: Peer,
    ctx: MqttContext,
    shutdown: CancellationToken,
    slot: Slot,
) -> impl Future<Output = ()> + Send {
    // The state lives on the heap, built before the future (whose arguments would otherwise
    // stay in it), and each phase's future is boxed while it runs: an idle connection holds its
    // state and the small wait of `idle`, not room for the busiest phase.
    let conn = Box::new(Connection::new(stream, peer, ctx, slot));
    drive(conn, shutdown, None)
}

/// Runs a connection from its CONNECT (`resumed: None`) or from where it was parked, until it
/// ends or parks again (then the parking resumes it in a new task: see [`park`]).
async fn drive<S: Link>(
    mut conn: Box<Connection<S>>,
    shutdown: CancellationToken,
    resumed: Option<super::parking::Unparked>,
) {
    let started = match resumed {
        None => Box::pin(conn.handshake(&shutdown)).await,
        Some(why) => conn.unparked(why, &shutdown),
    };
    let mut eager = resumed.is_none();
    let closed = match started {
        Err(closed) => closed,
        Ok(()) => loop {
            // The first quiet moment after CONNACK goes idle at once: a burst of connecting
            // sensors then never holds the busy state of all of them together.
            if let Step::Closed(closed) = Box::pin(conn.session(&shutdown, eager)).await {
                break closed;
            }
            eager = false;
            conn.quiet().await;
            conn = match park::park(conn, &shutdown) {
                Ok(()) => return,
                Err(conn) => conn,
            };
            if let Err(closed) = conn.idle(&shutdown).await {
                break closed;
            }
        },
    };
    Box::pin(conn.finish(closed, &shutdown)).await;
}

struct Connection<S> {
    stream: S,
    /// Bytes read and not yet decoded.
    inbuf: BytesMut,
    /// Bytes to reserve for the next read when nothing is buffered (see [`buffers`]).
    read_hint: usize,
    /// Encoded packets not yet written.
    out: BytesMut,
    /// Bytes were written since the last flush (TLS and QUIC streams buffer).
    needs_flush: bool,
    /// Writing failed while draining: answers are dropped, appends still finish.
    writer_dead: bool,
    /// The protocol version and its packet layer.
    wire: Wire,
    peer: String,
    /// Subject CN of the verified client certificate ([`Peer::cert_identity`]).
    cert_identity: Option<String>,
    /// Empty until CONNECT.
    client_id: String,
    registration: Option<Registration>,
    /// 1.5 x the client's keep-alive; `None` when it asked for none.
    keep_alive: Option<Duration>,
    last_heard: Instant,
    inbound: InboundQueue,
    /// Appends in flight, oldest first.
    pending: VecDeque<PendingAppend>,
    /// Those of them that owe acks (at most [`MAX_APPENDS_IN_FLIGHT`]).
    acked_in_flight: usize,
    /// Their payload bytes (see [`MAX_BYTES_IN_FLIGHT`]).
    bytes_in_flight: usize,
    /// A batch with a retained message, waiting for the appends before it to finish: it is
    /// appended alone (the retained store's index follows commit order under its own lock).
    held: Option<Box<Batch>>,
    /// The one append in flight carries a retained message; nothing else starts meanwhile.
    retained_in_flight: bool,
    disconnect_received: bool,
    awaiting_rel: AwaitingRelease,
    /// Whether the session's QoS 2 receipts are stored ([`crate::mqtt::receipts`]): set for a
    /// session that is kept or was resumed.
    receipts_stored: bool,
    /// PUBRELs read whose PUBCOMP waits for the deletion of stored receipts (packet id,
    /// reason, whether the id was awaiting release), queued by the next turn of the loop.
    releasing: Vec<(u16, u8, bool)>,
    /// PUBCOMPs owed (in `releasing` and in queued deletions): reading stops at
    /// [`MAX_PUBCOMPS_OWED`].
    pubcomps_owed: usize,
    /// Whether QoS 2 PUBLISHes and PUBRELs wait for a save of the session (see `fence`): set
    /// for a session that is kept.
    fence_saves: bool,
    /// Bytes at the front of `out` that may be written; the rest waits for a save. `None`:
    /// all of it.
    fence_len: Option<usize>,
    /// Output was fenced since the last save for the fence was queued.
    unsaved: bool,
    /// A save for the fence is queued (one at a time).
    save_in_flight: bool,
    /// Cancelled when the connection ends: writes waiting to be retried give up.
    closing: CancellationToken,
    /// Most deliveries unacknowledged: `mqtt.max_inflight` capped by the client's Receive
    /// Maximum (set at CONNECT).
    window: usize,
    /// MQTT 5 inbound topic aliases (1..=[`TOPIC_ALIAS_MAXIMUM`]) set by this client.
    /// A vector, not a map: at most 64 entries, and no room taken in clients that set none.
    aliases: Vec<(u16, String)>,
    /// QoS 1 publishes received and not yet acknowledged (with the QoS 2 ones awaiting PUBREL,
    /// what [`RECEIVE_MAXIMUM`] bounds).
    qos1_unacked: usize,
    /// The will from CONNECT; taken away by a normal DISCONNECT.
    will: Option<Box<WillIn>>,
    /// MQTT 5 session expiry interval the client asked for (bounds the will delay).
    session_expiry: Option<u32>,
    /// Exclusive use of this client id's stored session, from CONNECT to the final save.
    lease: Option<Box<Lease>>,
    /// Set when the session outlives the connection (or was resumed by it).
    persist: Option<Box<persist::Persist>>,
    /// Subscriptions and delivery, from the first SUBSCRIBE on.
    outbound: Option<Box<Outbound>>,
    /// What this client may publish and subscribe to (`[mqtt.auth]` ACL), set at CONNECT.
    permissions: Permissions,
    ctx: MqttContext,
    _slot: Slot,
}

impl<S: Link> Connection<S> {
    fn new(stream: S, peer: Peer, ctx: MqttContext, slot: Slot) -> Connection<S> {
        Connection {
            stream,
            inbuf: BytesMut::new(),
            read_hint: buffers::IDLE_READ,
            out: BytesMut::new(),
            needs_flush: false,
            writer_dead: false,
            wire: Wire::new(ctx.inner.max_packet_bytes),
            peer: peer.addr,
            cert_identity: peer.cert_identity,
            client_id: String::new(),
            registration: None,
            keep_alive: None,
            last_heard: Instant::now(),
            inbound: InboundQueue::default(),
            pending: VecDeque::new(),
            acked_in_flight: 0,
            bytes_in_flight: 0,
            held: None,
            retained_in_flight: false,
            disconnect_received: false,
            awaiting_rel: AwaitingRelease::default(),
            receipts_stored: false,
            releasing: Vec::new(),
            pubcomps_owed: 0,
            fence_saves: false,
            fence_len: None,
            unsaved: false,
            save_in_flight: false,
            closing: CancellationToken::new(),
            window: ctx.inner.max_inflight,
            aliases: Vec::new(),
            qos1_unacked: 0,
            will: None,
            session_expiry: None,
            lease: None,
            persist: None,
            outbound: None,
            permissions: Permissions::all(),
            ctx,
            _slot: slot,
        }
    }

    /// Ends the connection: logs why, saves or drops the session, tells an MQTT 5 client the
    /// reason, flushes, settles the will and gives up the client id.
    async fn finish(&mut self, closed: Closed, shutdown: &CancellationToken) {
        self.log_close(&closed);
        self.close_session(&closed).await;
        if self.registration.is_some() && self.wire.version == Version::V5 {
            if let Some(reason) = closed.disconnect_reason() {
                self.send_disconnect(reason, &closed);
            }
        }
        if !matches!(closed, Closed::Io(_)) {
            self.final_flush().await;
        }
        if let Some(w) = self.will.take() {
            let fate = match closed {
                // Only DISCONNECT 0x04 leaves the will in place (see `handlers`).
                Closed::ClientDisconnect => Fate::Publish,
                Closed::Shutdown => Fate::PublishNow,
                Closed::TakenOver => Fate::TakenOver,
                _ => Fate::Publish,
            };
            let delay = will::delay(&w, self.session_expiry);
            will::settle(&self.ctx, &self.client_id, *w, delay, fate, shutdown).await;
        }
        if let Some(r) = &self.registration {
            self.ctx
                .inner
                .clients
                .unregister(&self.client_id, r.connection);
        }
    }

    /// Reads the CONNECT and answers it.
    async fn handshake(&mut self, shutdown: &CancellationToken) -> Result<(), Closed> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let frame = loop {
            if let Some(frame) = self.wire.decode(&mut self.inbuf)? {
                break frame;
            }
            buffers::prepare_read(&mut self.inbuf, buffers::IDLE_READ);
            tokio::select! {
                read = self.stream.read_buf(&mut self.inbuf) => {
                    if read? == 0 {
                        return Err(Closed::PeerClosed);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return Err(Closed::ConnectTimeout),
                _ = shutdown.cancelled() => return Err(Closed::Shutdown),
            }
        };
        let connect = match frame {
            Incoming::Packet(ClientPacket::Connect(c)) => c,
            Incoming::UnsupportedProtocol { name, level } => {
                self.send(&ServerPacket::ConnAck(ConnAckOut::bare(
                    ConnectCode::UnsupportedProtocolVersion,
                )));
                return Err(Closed::Refused(format!(
                    "protocol {name:?} level {level} is not supported (only MQTT 3.1.1 and 5)"
                )));
            }
            Incoming::Packet(other) => {
                return Err(Closed::Protocol(format!(
                    "first packet is {}, not CONNECT",
                    other.name()
                )))
            }
        };
        let refuse = |conn: &mut Self, code: ConnectCode, why: &str| {
            conn.send(&ServerPacket::ConnAck(ConnAckOut::bare(code)));
            Err(Closed::Refused(why.to_string()))
        };
        if let Some(method) = &connect.authentication_method {
            // Enhanced authentication (AUTH exchanges) is not offered (§4.12).
            let why = format!("authentication method {method:?} is not supported");
            return refuse(self, ConnectCode::BadAuthenticationMethod, &why);
        }
        if connect.receive_maximum == Some(0) || connect.maximum_packet_size == Some(0) {
            return refuse(
                self,
                ConnectCode::ProtocolError,
                "receive maximum or maximum packet size of 0",
            );
        }
        if let Some(w) = &connect.will {
            if let Err(e) = topic::validate_topic_name(&w.topic) {
                let why = format!("will topic {:?}: {e}", w.topic);
                return refuse(self, ConnectCode::ProtocolError, &why);
            }
        }
        // Credentials before the client id is registered: a refused login can neither take
        // over a connection nor resume a session (see `auth`).
        let password = connect.password.as_ref().map(|p| &p.0[..]);
        let cert_identity = self.cert_identity.clone();
        let cert_identity = cert_identity.as_deref();
        let login = self.ctx.inner.auth.clone();
        let username = match login
            .authenticate(connect.username.as_deref(), password, cert_identity)
            .await
        {
            Ok(username) => username,
            Err(refusal) => {
                let (code, why) = match refusal {
                    Refusal::BadCredentials => (
                        ConnectCode::BadUsernameOrPassword,
                        "bad user name or password",
                    ),
                    Refusal::NotAuthorized => {
                        (ConnectCode::NotAuthorized, "not authorized (anonymous)")
                    }
                };
                let why = format!(
                    "client id {:?}, user {:?}: {why}",
                    connect.client_id, connect.username
                );
                return refuse(self, code, &why);
            }
        };
        let mut assigned = None;
        if connect.client_id.is_empty() {
            if !connect.clean_start && connect.version == Version::V311 {
                return refuse(
                    self,
                    ConnectCode::ClientIdNotValid,
                    "empty client id with clean_session = false",
                );
            }
            self.client_id = self.ctx.inner.clients.generate_id();
            assigned = Some(self.client_id.clone());
        } else {
            self.client_id = connect.client_id;
        }
        self.permissions = login.permissions(&self.client_id, username.as_deref());
        let identity = self.cert_identity.clone();
        let clients = &self.ctx.inner.clients;
        let (registration, replaced) = clients.register(&self.client_id, identity, shutdown);
        self.registration = Some(registration);
        if let Some(old) = replaced {
            // Its token is cancelled; a parked connection has no task to notice.
            self.ctx.inner.parking.kick(old);
        }
        // A will of this client id waiting out its delay is not published (§3.1.3.2.2).
        self.ctx.inner.wills.cancel(&self.client_id);
        // The client's Receive Maximum bounds our window towards it (set before a resumed
        // session's open deliveries are restored into it), its Maximum Packet Size what we
        // send it.
        let window = self
            .ctx
            .inner
            .max_inflight
            .min(usize::from(connect.receive_maximum.unwrap_or(u16::MAX)));
        self.window = window;
        let opened = match self
            .open_session(connect.clean_start, connect.session_expiry, shutdown)
            .await
        {
            Ok(opened) => opened,
            Err(persist::Refusal::Shutdown) => return Err(Closed::Shutdown),
            Err(persist::Refusal::Code(code, why)) => return refuse(self, code, &why),
        };
        // A will the client may not write is dropped, the connection accepted (as Mosquitto).
        self.will = connect.will.filter(|w| {
            let ok = self.permissions.may_publish(&w.topic);
            if !ok {
                tracing::info!(client_id = %self.client_id, peer = %self.peer, topic = %w.topic, "mqtt: will dropped: no write access (acl_file)");
            }
            ok
        });
        self.session_expiry = connect.session_expiry;
        if connect.keep_alive > 0 {
            self.keep_alive = Some(Duration::from_millis(connect.keep_alive as u64 * 1500));
        }
        self.wire.peer_max = connect.maximum_packet_size;
        let alias_max = connect.topic_alias_maximum.unwrap_or(0);
        self.wire.out_aliases.get_mut().set_max(alias_max);
        self.inbound.set_client_id(&self.client_id);
        self.last_heard = Instant::now();
        let mut ack = ConnAckOut::bare(ConnectCode::Success);
        ack.assigned_client_id = assigned;
        ack.session_present = opened.present;
        ack.session_expiry = opened.expiry;
        ack.receive_maximum = Some(RECEIVE_MAXIMUM);
        ack.maximum_packet_size = Some(advertised_packet_size(self.wire.max_packet_bytes()));
        ack.topic_alias_maximum = Some(TOPIC_ALIAS_MAXIMUM);
        ack.retain_available = true;
        self.send(&ServerPacket::ConnAck(ack));
        // QoS 2 deliveries of the resumed session that were released: PUBREL again (§4.4).
        for pkid in opened.release {
            self.send(&ServerPacket::PubRel { pkid });
        }
        tracing::debug!(client_id = %self.client_id, peer = %self.peer, keep_alive = connect.keep_alive, version = ?connect.version, "mqtt client connected");
        Ok(())
    }

    /// A busy stretch of the connected session: until it ends or has nothing to do but wait for
    /// the client ([`Step::Idle`]).
    async fn session(&mut self, shutdown: &CancellationToken, eager_idle: bool) -> Step {
        let taken_over = match &self.registration {
            Some(r) => r.taken_over.clone(),
            None => CancellationToken::new(),
        };
        // Set once the connection is ending: why, and until when appends may finish.
        let mut draining: Option<(Closed, Instant)> = None;
        // Since when there has been nothing to do (see `QUIET_BEFORE_IDLE`).
        let mut quiet_since: Option<Instant> = None;
        // The keep-alive / quiet-stretch timer and the session-save timer, kept across turns:
        // every packet moves the keep-alive deadline later, which updates the pending sleep in
        // place instead of adding and removing a timer-wheel entry every turn.
        let never = Instant::now() + Duration::from_secs(86_400);
        let mut alarm = Box::pin(tokio::time::sleep_until(never));
        let mut save_alarm = Box::pin(tokio::time::sleep_until(never));
        loop {
            // Complete packets already read are handled even while draining: a client that
            // publishes, sends DISCONNECT and hangs up may be seen at end of stream first.
            if let Err(closed) = self.process_input() {
                // The publishes before the bad packet still go to the log.
                Box::pin(self.start_appends()).await;
                return Step::Closed(closed);
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
            if self.appends_to_start() {
                let caught_up = if draining.is_none() && self.pending.is_empty() {
                    self.catch_up(&mut draining).await
                } else {
                    Ok(())
                };
                // Boxed, like the save below: the loop's own future stays small. Also when
                // catching up failed: what was decoded before still goes to the log.
                Box::pin(self.start_appends()).await;
                if let Err(closed) = caught_up {
                    return Step::Closed(closed);
                }
            }
            // Behind the appends read before them (a receipt is never deleted before it is
            // written).
            if !self.releasing.is_empty() {
                Box::pin(self.start_release()).await;
            }
            let appends_done = self.pending.is_empty() && self.held.is_none();
            if draining.is_some() && appends_done && self.inbound.is_empty() {
                if let Some((closed, _)) = draining.take() {
                    return Step::Closed(closed);
                }
            }
            let mut more = false;
            if let (None, Some(o)) = (&draining, self.outbound.as_deref_mut()) {
                let retained = &self.ctx.inner.retained;
                let (before, qos2) = (self.out.len(), o.outgoing.qos2_opened());
                more = o.pump(retained, &self.wire, &mut self.out, now_ms());
                if o.outgoing.qos2_opened() != qos2 {
                    self.fence_from(before);
                }
            }
            if self.unsaved {
                Box::pin(self.save_for_fence()).await;
            }
            if self.writer_dead {
                self.out.clear();
                self.fence_len = self.fence_len.map(|_| 0);
            }
            let now = Instant::now();
            if draining.is_none() && !more && self.is_quiet() {
                let since = *quiet_since.get_or_insert(now);
                if eager_idle || now >= since + QUIET_BEFORE_IDLE {
                    return Step::Idle;
                }
            } else {
                quiet_since = None;
            }
            let can_read =
                draining.is_none() && !self.input_blocked() && self.out.len() < OUT_READ_LIMIT;
            if can_read {
                buffers::prepare_read(&mut self.inbuf, self.read_hint);
            }
            buffers::release_idle_write(&mut self.out);
            let can_write = self.wants_write();
            let silent_until = self.keep_alive.map(|k| self.last_heard + k);
            // One timer for the keep-alive and the end of a quiet stretch.
            let quiet_until = quiet_since.map(|at| at + QUIET_BEFORE_IDLE);
            let timer_at = match (silent_until, quiet_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let drain_until = draining.as_ref().map(|(_, at)| *at);
            let save_at = self.persist.as_ref().map(|p| p.next_save);
            set_alarm(&mut alarm, timer_at);
            set_alarm(&mut save_alarm, save_at);

            let io = Io {
                stream: &mut self.stream,
                inbuf: &mut self.inbuf,
                out: &mut self.out,
                fence_len: &mut self.fence_len,
                needs_flush: &mut self.needs_flush,
                read: can_read,
                write: can_write,
            };
            tokio::select! {
                done = io, if can_read || can_write => {
                    if let Err(closed) = self.on_io(done, &mut draining) {
                        return Step::Closed(closed);
                    }
                }
                done = wait_append(&mut self.pending) => {
                    self.pending.pop_front();
                    let finished = match done {
                        Done::Append(done) => {
                            self.retained_in_flight = false;
                            Box::pin(self.finish_append(done)).await
                        }
                        Done::Released { pubcomps, result } => self.finish_release(pubcomps, result),
                        Done::Saved { extra, result } => self.finish_save(extra, result),
                    };
                    if let Err(closed) = finished {
                        return Step::Closed(closed);
                    }
                }
                wake = outbound::next_wake(&mut self.outbound), if draining.is_none() => self.on_delivery_wake(wake),
                _ = alarm.as_mut(), if timer_at.is_some() && draining.is_none() => {
                    if silent_until.is_some_and(|at| at <= Instant::now()) {
                        return Step::Closed(Closed::KeepAlive(self.keep_alive.unwrap_or_default()));
                    }
                    // Otherwise the quiet stretch is long enough: the next turn goes idle.
                }
                _ = tokio::time::sleep_until(drain_until.unwrap_or(never)), if drain_until.is_some() => {
                    return Step::Closed(Closed::DrainTimeout);
                }
                _ = shutdown.cancelled(), if draining.is_none() => {
                    draining = Some((Closed::Shutdown, Instant::now() + DRAIN_TIMEOUT));
                }
                _ = save_alarm.as_mut(), if save_at.is_some() && draining.is_none() => {
                    Box::pin(self.save_session()).await;
                }
                // Also cancelled by a shutdown (a child token): that one drains first.
                _ = taken_over.cancelled(), if !shutdown.is_cancelled() => {
                    if !shutdown.is_cancelled() {
                        return Step::Closed(Closed::TakenOver);
                    }
                }
                _ = tokio::task::yield_now(), if more => {}
            }
        }
    }

    /// Whether there is output to write or flush to a client that can still take it.
    fn wants_write(&self) -> bool {
        !self.writer_dead && (self.writable() > 0 || self.needs_flush)
    }

    /// What one turn of [`Io`] did: a failed write ends the connection (or, while draining,
    /// only its writing), end of stream starts draining.
    fn on_io(
        &mut self,
        done: IoDone,
        draining: &mut Option<(Closed, Instant)>,
    ) -> Result<(), Closed> {
        if let Some(Err(e)) = done.wrote {
            if draining.is_none() {
                return Err(Closed::Io(e));
            }
            self.writer_dead = true;
        }
        match done.read {
            Some(Ok(0)) => *draining = Some((Closed::PeerClosed, Instant::now() + DRAIN_TIMEOUT)),
            Some(Ok(n)) => {
                self.read_hint = buffers::next_hint(n, self.read_hint);
                self.last_heard = Instant::now();
            }
            Some(Err(e)) => return Err(Closed::Io(e)),
            None => {}
        }
        Ok(())
    }

    /// Before an append that this task will commit itself (a lone one, see `submit_append`),
    /// during which it neither reads nor writes: sends the acks it owes (the client refills its
    /// window with them) and takes in what the client has sent already, so that the commit
    /// carries all of it. Without this a one-publisher window splits into waves, each waiting
    /// for the commit of the one before. Never waits for the client.
    async fn catch_up(&mut self, draining: &mut Option<(Closed, Instant)>) -> Result<(), Closed> {
        for _ in 0..CATCH_UP_ROUNDS {
            let read = !self.input_blocked()
                && self.out.len() < OUT_READ_LIMIT
                && !self.disconnect_received;
            let write = self.wants_write();
            if read {
                buffers::prepare_read(&mut self.inbuf, self.read_hint);
            }
            let mut io = Io {
                stream: &mut self.stream,
                inbuf: &mut self.inbuf,
                out: &mut self.out,
                fence_len: &mut self.fence_len,
                needs_flush: &mut self.needs_flush,
                read,
                write,
            };
            // Polled once: what the socket holds now, not what may come.
            let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut io).poll(cx))).await;
            let Poll::Ready(done) = polled else {
                return Ok(());
            };
            let got_bytes = matches!(done.read, Some(Ok(n)) if n > 0);
            self.on_io(done, draining)?;
            if draining.is_some() {
                return Ok(());
            }
            if got_bytes {
                self.process_input()?;
            }
        }
        Ok(())
    }

    /// Append events (or a share group's nudge) for this subscriber, and those already queued.
    fn on_delivery_wake(&mut self, wake: Wake) {
        if let Some(o) = self.outbound.as_deref_mut() {
            o.on_wake(wake, &self.ctx.inner.router);
        }
    }

    /// The subscriber side, created on first use.
    fn outbound(&mut self) -> &mut Outbound {
        let (log, window) = (self.ctx.inner.ingest.log(), self.window);
        let (client_id, permissions) = (&self.client_id, &self.permissions);
        let (reads, keep_done) = (&self.ctx.inner.reads, self.fence_saves);
        self.outbound.get_or_insert_with(|| {
            let mut o = Outbound::new(
                log.clone(),
                reads.clone(),
                client_id,
                permissions.clone(),
                window,
            );
            if keep_done {
                o.outgoing.keep_done();
            }
            Box::new(o)
        })
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
            Closed::Ingest { .. } | Closed::Receipts(_) | Closed::SessionSave(_) => {
                tracing::error!(%client_id, %peer, reason = %closed, "mqtt connection closed")
            }
            _ => tracing::warn!(%client_id, %peer, reason = %closed, "mqtt connection closed"),
        }
    }

    /// Queues an MQTT 5 server DISCONNECT; the reason string is dropped if it would make the
    /// packet larger than the client accepts.
    fn send_disconnect(&mut self, reason: u8, closed: &Closed) {
        let mut text = closed.to_string();
        if text.len() > MAX_REASON_STRING {
            let mut end = MAX_REASON_STRING;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        let with_text = ServerPacket::Disconnect {
            reason,
            reason_string: Some(text),
        };
        if self.wire.encode(&with_text, &mut self.out).is_err() {
            self.send(&ServerPacket::Disconnect {
                reason,
                reason_string: None,
            });
        }
    }

    /// Writes what is still buffered (acks, a refusing CONNACK, a DISCONNECT), briefly, then
    /// closes the write side.
    async fn final_flush(&mut self) {
        if self.writer_dead {
            return;
        }
        let writable = self.writable();
        let flush = async {
            self.stream.write_all(&self.out[..writable]).await?;
            self.stream.flush().await?;
            self.stream.shutdown().await
        };
        let _ = tokio::time::timeout(FINAL_FLUSH, flush).await;
    }
}

/// The whole-packet size (MQTT 5 Maximum Packet Size) whose remaining length is at most
/// `max_packet_bytes`, the limit the codec enforces.
fn advertised_packet_size(max_packet_bytes: usize) -> u32 {
    let len_len = match max_packet_bytes {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    u32::try_from(max_packet_bytes.saturating_add(1 + len_len)).unwrap_or(u32::MAX)
}

impl Closed {
    /// The reason code an MQTT 5 client is told in a server DISCONNECT, if it gets one (not
    /// when it left itself or the connection is already broken).
    pub fn disconnect_reason(&self) -> Option<u8> {
        Some(match self {
            Closed::PeerClosed
            | Closed::ClientDisconnect
            | Closed::Io(_)
            | Closed::ConnectTimeout
            | Closed::Refused(_) => return None,
            Closed::Shutdown => reason::SERVER_SHUTTING_DOWN,
            Closed::TakenOver => reason::SESSION_TAKEN_OVER,
            Closed::KeepAlive(_) => reason::KEEP_ALIVE_TIMEOUT,
            Closed::DrainTimeout
            | Closed::Ingest { .. }
            | Closed::Receipts(_)
            | Closed::SessionSave(_) => reason::UNSPECIFIED,
            Closed::Codec(CodecError::TooLarge { .. }) => reason::PACKET_TOO_LARGE,
            Closed::Codec(CodecError::ProtocolV5(_)) => reason::PROTOCOL_ERROR,
            Closed::Codec(_) => reason::MALFORMED_PACKET,
            Closed::Protocol(_) => reason::PROTOCOL_ERROR,
            Closed::Rejected { reason, .. } => *reason,
        })
    }
}

/// What one turn of [`Io`] did; at least one of the two.
struct IoDone {
    /// Some of the output written, or flushed once it was empty.
    wrote: Option<std::io::Result<()>>,
    /// Bytes read into the input buffer (0: end of stream).
    read: Option<std::io::Result<usize>>,
}

/// Writes to the client and reads from it, as far as the stream allows now; ready once either
/// made progress. Both directions are tried in every poll, so a client that always has room for
/// more deliveries is still read (its PINGREQ or DISCONNECT is not left waiting). One future for
/// both directions, so the stream needs no split (a split costs an allocation per connection
/// and a lock per read and write). Cancel-safe: bytes are consumed or appended only in the poll
/// that returns them.
struct Io<'a, S> {
    stream: &'a mut S,
    inbuf: &'a mut BytesMut,
    out: &'a mut BytesMut,
    /// Bytes at the front of `out` that may be written (see `fence`); `None`: all.
    fence_len: &'a mut Option<usize>,
    needs_flush: &'a mut bool,
    read: bool,
    write: bool,
}

impl<S: Link> Future for Io<'_, S> {
    type Output = IoDone;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<IoDone> {
        let io = self.get_mut();
        let mut done = IoDone {
            wrote: None,
            read: None,
        };
        if io.write {
            let polled = poll_write_some(io.stream, cx, io.out, io.fence_len, io.needs_flush);
            if let Poll::Ready(wrote) = polled {
                done.wrote = Some(wrote);
            }
        }
        // Not after a failed write: the connection ends (or stops writing) on it first.
        if io.read && !matches!(done.wrote, Some(Err(_))) {
            let read = tokio_util::io::poll_read_buf(Pin::new(&mut *io.stream), cx, io.inbuf);
            if let Poll::Ready(read) = read {
                done.read = Some(read);
            }
        }
        if done.wrote.is_none() && done.read.is_none() {
            return Poll::Pending;
        }
        Poll::Ready(done)
    }
}

/// Writes some of `out` (up to the fence), or flushes once there is nothing to write.
fn poll_write_some<W: AsyncWrite + Unpin>(
    writer: &mut W,
    cx: &mut Context<'_>,
    out: &mut BytesMut,
    fence_len: &mut Option<usize>,
    needs_flush: &mut bool,
) -> Poll<std::io::Result<()>> {
    let writable = fence_len.map_or(out.len(), |f| f.min(out.len()));
    if writable == 0 {
        ready!(Pin::new(writer).poll_flush(cx))?;
        *needs_flush = false;
        return Poll::Ready(Ok(()));
    }
    let n = ready!(Pin::new(writer).poll_write(cx, &out[..writable]))?;
    if n == 0 {
        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
    }
    out.advance(n);
    if let Some(f) = fence_len {
        *f = f.saturating_sub(n);
    }
    *needs_flush = true;
    Poll::Ready(Ok(()))
}

/// The oldest append in flight, once durable (appends finish in the order they were queued).
async fn wait_append(pending: &mut VecDeque<PendingAppend>) -> Done {
    match pending.front_mut() {
        Some(fut) => fut.as_mut().await,
        None => std::future::pending().await,
    }
}

use super::now_ms;

/// Points `alarm` at `at` (left alone for `None`: its branch is off then). Moving a pending
/// alarm later keeps its timer-wheel entry; an elapsed alarm left at the same instant stays
/// ready, as a new sleep for that instant would be.
fn set_alarm(alarm: &mut Pin<Box<tokio::time::Sleep>>, at: Option<Instant>) {
    if let Some(at) = at {
        if alarm.deadline() != at {
            alarm.as_mut().reset(at);
        }
    }
}
