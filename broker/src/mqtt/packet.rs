//! The broker's own view of MQTT packets, shared by MQTT 3.1.1 and 5.0.
//!
//! The session code (handshake, handlers, delivery) works only with these types; [`super::v4`]
//! and [`super::v5`] translate them to and from rumqttc's packets, and [`super::wire`] picks the
//! translation from the CONNECT's protocol level. Everything MQTT 5 adds (reason codes,
//! properties, topic aliases, subscription options) is carried here; the 3.1.1 layer drops what
//! its wire format cannot say (a failed SUBACK entry becomes 0x80, DISCONNECT is never sent by a
//! 3.1.1 server, properties are left out), so the session code does not branch on the version
//! except where the two protocols behave differently.

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;

use super::properties::MessageProps;

/// The protocol a connection speaks, from its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    #[default]
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

/// MQTT 5 reason codes the broker uses (§2.4). 3.1.1 has no reason codes except in CONNACK and
/// SUBACK; its layer maps them.
pub mod reason {
    pub const SUCCESS: u8 = 0x00;
    /// Client DISCONNECT: "disconnect with will message".
    pub const DISCONNECT_WITH_WILL: u8 = 0x04;
    pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    pub const UNSPECIFIED: u8 = 0x80;
    pub const MALFORMED_PACKET: u8 = 0x81;
    pub const PROTOCOL_ERROR: u8 = 0x82;
    pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
    pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
    pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    pub const SESSION_TAKEN_OVER: u8 = 0x8E;
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    pub const PACKET_ID_NOT_FOUND: u8 = 0x92;
    pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    /// Refused by the ACL (`mqtt.auth.acl_file`), or an anonymous client not allowed.
    pub const NOT_AUTHORIZED: u8 = 0x87;
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    pub const RETAIN_NOT_SUPPORTED: u8 = 0x9A;
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0x9E;
}

/// What a CONNECT asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectIn {
    pub version: Version,
    pub client_id: String,
    /// `clean_session` in 3.1.1, `clean_start` in 5.
    pub clean_start: bool,
    pub keep_alive: u16,
    /// The will message, published if the connection ends without a normal DISCONNECT (boxed:
    /// it would double the size of every decoded packet).
    pub will: Option<Box<WillIn>>,
    // MQTT 5 only (always `None` from a 3.1.1 client):
    pub session_expiry: Option<u32>,
    /// Most QoS 1/2 deliveries the client accepts unacknowledged.
    pub receive_maximum: Option<u16>,
    /// Largest packet (whole, with fixed header) the client accepts.
    pub maximum_packet_size: Option<u32>,
    pub topic_alias_maximum: Option<u16>,
    /// Enhanced authentication: not supported, refused in CONNACK.
    pub authentication_method: Option<String>,
    /// User name, if the CONNECT has one (see `auth`).
    pub username: Option<String>,
    pub password: Option<Password>,
}

/// A CONNECT's password; its `Debug` does not show it, so logging a packet never leaks one.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Password(pub Bytes);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// The will of a CONNECT (§3.1.2.5): a message the broker publishes for the client when its
/// connection ends abnormally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WillIn {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 will properties that travel with the message (as a PUBLISH's would).
    pub props: MessageProps,
    /// MQTT 5 will delay interval in seconds (0 from a 3.1.1 client).
    pub delay: u32,
}

/// A PUBLISH from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishIn {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Empty when a v5 client names the topic by alias only.
    pub topic: String,
    pub pkid: u16,
    pub payload: Bytes,
    pub topic_alias: Option<u16>,
    pub props: MessageProps,
}

/// One filter of a SUBSCRIBE with its options (3.1.1 has only the QoS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterIn {
    pub path: String,
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// MQTT 5 retain handling: 0 send retained messages on subscribe, 1 only if the
    /// subscription is new, 2 never (always 0 from a 3.1.1 client).
    pub retain_handling: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeIn {
    pub pkid: u16,
    pub filters: Vec<FilterIn>,
    /// MQTT 5 subscription identifier, returned with every matching delivery.
    pub id: Option<usize>,
}

/// A packet a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientPacket {
    Connect(ConnectIn),
    Publish(PublishIn),
    PubAck {
        pkid: u16,
    },
    PubRec {
        pkid: u16,
        reason: u8,
    },
    PubRel {
        pkid: u16,
    },
    PubComp {
        pkid: u16,
    },
    Subscribe(SubscribeIn),
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    Disconnect {
        reason: u8,
        /// MQTT 5: a new session expiry interval (§3.14.2.2.2).
        session_expiry: Option<u32>,
    },
    /// MQTT 5 AUTH: enhanced authentication, which the broker does not offer.
    Auth,
    /// A packet only servers send (CONNACK, SUBACK, ...), named for the log.
    ServerOnly(&'static str),
}

impl ClientPacket {
    pub fn name(&self) -> &'static str {
        match self {
            ClientPacket::Connect(_) => "CONNECT",
            ClientPacket::Publish(_) => "PUBLISH",
            ClientPacket::PubAck { .. } => "PUBACK",
            ClientPacket::PubRec { .. } => "PUBREC",
            ClientPacket::PubRel { .. } => "PUBREL",
            ClientPacket::PubComp { .. } => "PUBCOMP",
            ClientPacket::Subscribe(_) => "SUBSCRIBE",
            ClientPacket::Unsubscribe { .. } => "UNSUBSCRIBE",
            ClientPacket::PingReq => "PINGREQ",
            ClientPacket::Disconnect { .. } => "DISCONNECT",
            ClientPacket::Auth => "AUTH",
            ClientPacket::ServerOnly(name) => name,
        }
    }
}

/// CONNACK outcomes; each protocol layer writes its own code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectCode {
    Success,
    UnsupportedProtocolVersion,
    ClientIdNotValid,
    BadAuthenticationMethod,
    ProtocolError,
    /// No room for another stored session (`mqtt.max_sessions`).
    QuotaExceeded,
    /// The session store could not be read or written.
    ServerUnavailable,
    /// Unknown user or wrong password (3.1.1 0x04, MQTT 5 0x86).
    BadUsernameOrPassword,
    /// Anonymous client not allowed, or no client certificate identity (3.1.1 0x05, MQTT 5 0x87).
    NotAuthorized,
}

/// CONNACK. Properties are written to MQTT 5 clients only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAckOut {
    pub code: ConnectCode,
    /// A stored session was resumed (see `session`).
    pub session_present: bool,
    pub assigned_client_id: Option<String>,
    pub session_expiry: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_packet_size: Option<u32>,
    pub topic_alias_maximum: Option<u16>,
    pub retain_available: bool,
    pub wildcard_available: bool,
    pub subscription_ids_available: bool,
    pub shared_available: bool,
    pub reason_string: Option<String>,
}

impl ConnAckOut {
    /// A CONNACK with `code` and nothing else to say.
    pub fn bare(code: ConnectCode) -> ConnAckOut {
        ConnAckOut {
            code,
            session_present: false,
            assigned_client_id: None,
            session_expiry: None,
            receive_maximum: None,
            maximum_packet_size: None,
            topic_alias_maximum: None,
            retain_available: false,
            wildcard_available: true,
            subscription_ids_available: true,
            shared_available: true,
            reason_string: None,
        }
    }
}

/// A PUBLISH to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOut {
    pub qos: QoS,
    pub retain: bool,
    pub topic: String,
    pub pkid: u16,
    pub payload: Bytes,
    pub props: MessageProps,
    /// Identifiers of the subscriptions that matched (MQTT 5).
    pub subscription_ids: Vec<usize>,
    /// A re-send, to a resumed session, of a delivery its previous connection did not see
    /// acknowledged (same packet id).
    pub dup: bool,
}

/// A packet the broker sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerPacket {
    ConnAck(ConnAckOut),
    Publish(PublishOut),
    PubAck {
        pkid: u16,
        reason: u8,
    },
    PubRec {
        pkid: u16,
        reason: u8,
    },
    PubRel {
        pkid: u16,
    },
    PubComp {
        pkid: u16,
        reason: u8,
    },
    /// Per filter: the granted QoS (0..=2) or a failure reason (>= 0x80).
    SubAck {
        pkid: u16,
        codes: Vec<u8>,
    },
    UnsubAck {
        pkid: u16,
        reasons: Vec<u8>,
    },
    PingResp,
    /// MQTT 5 only: the server closes with a reason.
    Disconnect {
        reason: u8,
        reason_string: Option<String>,
    },
}

impl ServerPacket {
    pub fn name(&self) -> &'static str {
        match self {
            ServerPacket::ConnAck(_) => "CONNACK",
            ServerPacket::Publish(_) => "PUBLISH",
            ServerPacket::PubAck { .. } => "PUBACK",
            ServerPacket::PubRec { .. } => "PUBREC",
            ServerPacket::PubRel { .. } => "PUBREL",
            ServerPacket::PubComp { .. } => "PUBCOMP",
            ServerPacket::SubAck { .. } => "SUBACK",
            ServerPacket::UnsubAck { .. } => "UNSUBACK",
            ServerPacket::PingResp => "PINGRESP",
            ServerPacket::Disconnect { .. } => "DISCONNECT",
        }
    }
}

pub fn qos_from(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    }
}
