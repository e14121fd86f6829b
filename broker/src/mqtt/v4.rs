//! MQTT 3.1.1 packets to and from the broker's own [`packet`](super::packet) types. No I/O;
//! framing and the broker-side checks are in [`super::codec`].
//!
//! 3.1.1 cannot say what MQTT 5 adds, so this layer drops it: properties are left out, every
//! failed SUBACK entry is 0x80, negative PUBACKs and server DISCONNECTs do not exist (the
//! session code closes the connection instead, see `connection`).

use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, PubRel, Publish, SubAck,
    SubscribeReasonCode, UnsubAck,
};

use super::codec::packet_name;
use super::packet::{
    ClientPacket, ConnectCode, ConnectIn, FilterIn, Password, PublishIn, ServerPacket, SubscribeIn,
    Version, WillIn,
};
use super::properties::MessageProps;

/// A decoded 3.1.1 packet as the session code sees it.
pub fn from_v4(packet: Packet) -> ClientPacket {
    match packet {
        Packet::Connect(c) => ClientPacket::Connect(ConnectIn {
            version: Version::V311,
            client_id: c.client_id,
            clean_start: c.clean_session,
            keep_alive: c.keep_alive,
            // rumqttc reads both as strings and leaves out a login with neither.
            username: c.login.as_ref().map(|l| l.username.clone()),
            password: c
                .login
                .filter(|l| !l.password.is_empty())
                .map(|l| Password(l.password.into())),
            will: c.last_will.map(|w| {
                Box::new(WillIn {
                    topic: w.topic,
                    payload: w.message,
                    qos: w.qos,
                    retain: w.retain,
                    props: MessageProps::default(),
                    delay: 0,
                })
            }),
            ..ConnectIn::default()
        }),
        Packet::Publish(p) => ClientPacket::Publish(PublishIn {
            dup: p.dup,
            qos: p.qos,
            retain: p.retain,
            topic: p.topic,
            pkid: p.pkid,
            payload: p.payload,
            topic_alias: None,
            props: MessageProps::default(),
        }),
        Packet::PubAck(a) => ClientPacket::PubAck { pkid: a.pkid },
        Packet::PubRec(r) => ClientPacket::PubRec {
            pkid: r.pkid,
            reason: 0,
        },
        Packet::PubRel(r) => ClientPacket::PubRel { pkid: r.pkid },
        Packet::PubComp(c) => ClientPacket::PubComp { pkid: c.pkid },
        Packet::Subscribe(s) => ClientPacket::Subscribe(SubscribeIn {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| FilterIn {
                    path: f.path,
                    qos: f.qos,
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: 0,
                })
                .collect(),
            id: None,
        }),
        Packet::Unsubscribe(u) => ClientPacket::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
        },
        Packet::PingReq => ClientPacket::PingReq,
        Packet::Disconnect => ClientPacket::Disconnect {
            reason: 0,
            session_expiry: None,
        },
        other @ (Packet::ConnAck(_)
        | Packet::SubAck(_)
        | Packet::UnsubAck(_)
        | Packet::PingResp) => ClientPacket::ServerOnly(packet_name(&other)),
    }
}

/// The 3.1.1 form of a server packet; `None` for what 3.1.1 has no packet for (DISCONNECT).
pub fn to_v4(packet: &ServerPacket) -> Option<Packet> {
    Some(match packet {
        ServerPacket::ConnAck(a) => {
            let code = match a.code {
                ConnectCode::Success => ConnectReturnCode::Success,
                ConnectCode::UnsupportedProtocolVersion => {
                    ConnectReturnCode::RefusedProtocolVersion
                }
                ConnectCode::ClientIdNotValid => ConnectReturnCode::BadClientId,
                ConnectCode::BadUsernameOrPassword => ConnectReturnCode::BadUserNamePassword,
                ConnectCode::NotAuthorized => ConnectReturnCode::NotAuthorized,
                // Not produced for 3.1.1 clients; the closest 3.1.1 refusal.
                ConnectCode::BadAuthenticationMethod
                | ConnectCode::ProtocolError
                | ConnectCode::QuotaExceeded
                | ConnectCode::ServerUnavailable => ConnectReturnCode::ServiceUnavailable,
            };
            Packet::ConnAck(ConnAck::new(code, a.session_present))
        }
        ServerPacket::Publish(p) => Packet::Publish(Publish {
            dup: p.dup,
            qos: p.qos,
            retain: p.retain,
            topic: p.topic.clone(),
            pkid: p.pkid,
            payload: p.payload.clone(),
        }),
        ServerPacket::PubAck { pkid, .. } => Packet::PubAck(PubAck::new(*pkid)),
        ServerPacket::PubRec { pkid, .. } => Packet::PubRec(PubRec::new(*pkid)),
        ServerPacket::PubRel { pkid } => Packet::PubRel(PubRel::new(*pkid)),
        ServerPacket::PubComp { pkid, .. } => Packet::PubComp(PubComp::new(*pkid)),
        ServerPacket::SubAck { pkid, codes } => Packet::SubAck(SubAck::new(
            *pkid,
            codes
                .iter()
                .map(|c| match c {
                    0 => SubscribeReasonCode::Success(rumqttc::mqttbytes::QoS::AtMostOnce),
                    1 => SubscribeReasonCode::Success(rumqttc::mqttbytes::QoS::AtLeastOnce),
                    2 => SubscribeReasonCode::Success(rumqttc::mqttbytes::QoS::ExactlyOnce),
                    _ => SubscribeReasonCode::Failure,
                })
                .collect(),
        )),
        ServerPacket::UnsubAck { pkid, .. } => Packet::UnsubAck(UnsubAck::new(*pkid)),
        ServerPacket::PingResp => Packet::PingResp,
        ServerPacket::Disconnect { .. } => return None,
    })
}
