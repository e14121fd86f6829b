//! MQTT 5.0 framing over `rumqttc::v5::mqttbytes::v5`, and its packets to and from the broker's
//! own [`packet`](super::packet) types. No I/O.
//!
//! Same contract as the 3.1.1 [`codec`](super::codec): the size is checked from the fixed header
//! alone against `max_packet_bytes` before anything is buffered or allocated, reserved
//! fixed-header flags, the reserved CONNECT flag and reserved subscription-option bits are
//! rejected, and UNSUBSCRIBE needs a filter. rumqttc's reader is a client's, so two server-side
//! cases are handled here first: an AUTH packet (type 15, which its reader does not know) and a
//! DISCONNECT with a body of 0 or 1 byte (no reason code means "normal disconnection", a lone
//! reason code has no properties, §3.14.2.1).
//! Outgoing packets are checked against the client's Maximum Packet Size.

use bytes::{Buf, BytesMut};
use rumqttc::mqttbytes::{self as v4bytes, QoS};
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnAckProperties, ConnectReturnCode, Disconnect, DisconnectProperties,
    DisconnectReasonCode, LastWill, Packet, PingResp, PubAck, PubAckReason, PubComp, PubCompReason,
    PubRec, PubRecReason, PubRel, PubRelReason, Publish, PublishProperties, RetainForwardRule,
    SubAck, SubscribeReasonCode, UnsubAck, UnsubAckReason,
};
use rumqttc::v5::mqttbytes::{self as v5bytes, QoS as QoS5};

use super::codec::{remaining_len, CodecError, MAX_ENCODED};
use super::out_alias::{Naming, OutAliases};
use super::packet::{
    reason, ClientPacket, ConnectCode, ConnectIn, FilterIn, Password, PublishIn, PublishOut,
    ServerPacket, SubscribeIn, Version, WillIn,
};
use super::properties::MessageProps;

/// Takes one MQTT 5 packet off the front of `buf`, or `Ok(None)` until a whole one is there.
pub fn decode(
    buf: &mut BytesMut,
    max_packet_bytes: usize,
) -> Result<Option<ClientPacket>, CodecError> {
    let header = match v4bytes::check(buf.iter(), max_packet_bytes) {
        Ok(h) => h,
        Err(v4bytes::Error::InsufficientBytes(_)) => return Ok(None),
        Err(v4bytes::Error::PayloadSizeLimitExceeded(size)) => {
            return Err(CodecError::TooLarge {
                size,
                max: max_packet_bytes,
            })
        }
        Err(e) => return Err(CodecError::Malformed(e)),
    };
    let frame_len = header.frame_length();
    // `check` succeeded, so `buf` holds at least `frame_len >= 2` bytes.
    let frame = &buf[..frame_len];
    let packet_type = frame[0] >> 4;
    let flags = frame[0] & 0x0F;
    let body_len = remaining_len(frame);
    let body = &frame[frame_len - body_len..];
    let expected = match packet_type {
        3 => None,
        6 | 8 | 10 => Some(0b0010),
        _ => Some(0),
    };
    if expected.is_some_and(|e| e != flags) {
        return Err(CodecError::ReservedFlags { packet_type, flags });
    }
    match packet_type {
        // Protocol name "MQTT" (2 + 4 bytes), level, then the flags.
        1 if body.get(7).is_some_and(|f| f & 1 != 0) => {
            return Err(CodecError::ReservedConnectFlag);
        }
        8 => check_subscribe_options(body)?,
        // §3.14.2.1: no body is a normal disconnection, and a lone reason code has no
        // properties; rumqttc's reader wants a property length in the second case.
        14 if body_len <= 1 => {
            let reason = body.first().copied().unwrap_or(reason::SUCCESS);
            if DisconnectReasonCode::try_from(reason).is_err() {
                return Err(CodecError::ProtocolV5("unknown DISCONNECT reason code"));
            }
            buf.advance(frame_len);
            return Ok(Some(ClientPacket::Disconnect {
                reason,
                session_expiry: None,
            }));
        }
        15 => {
            buf.advance(frame_len);
            return Ok(Some(ClientPacket::Auth));
        }
        _ => {}
    }
    let max = u32::try_from(max_packet_bytes).unwrap_or(u32::MAX);
    let packet = Packet::read(buf, Some(max)).map_err(CodecError::MalformedV5)?;
    from_v5(packet).map(Some)
}

/// §3.8.3.1: bits 6 and 7 of each subscription options byte are reserved.
fn check_subscribe_options(body: &[u8]) -> Result<(), CodecError> {
    let Some(rest) = body.get(2..) else {
        return Ok(()); // truncated: the reader reports it
    };
    let Some((len_len, props_len)) = varint(rest) else {
        return Ok(());
    };
    let mut rest = rest.get(len_len + props_len..).unwrap_or_default();
    while rest.len() >= 2 {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let Some(options) = rest.get(2 + len) else {
            return Ok(());
        };
        if options & 0xC0 != 0 {
            return Err(CodecError::ReservedSubscribeOptions);
        }
        rest = &rest[3 + len..];
    }
    Ok(())
}

/// A variable byte integer: (bytes used, value).
fn varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, b) in bytes.iter().take(4).enumerate() {
        value += ((b & 0x7F) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Some((i + 1, value));
        }
    }
    None
}

fn qos_in(q: QoS5) -> QoS {
    match q {
        QoS5::AtMostOnce => QoS::AtMostOnce,
        QoS5::AtLeastOnce => QoS::AtLeastOnce,
        QoS5::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn qos_out(q: QoS) -> QoS5 {
    match q {
        QoS::AtMostOnce => QoS5::AtMostOnce,
        QoS::AtLeastOnce => QoS5::AtLeastOnce,
        QoS::ExactlyOnce => QoS5::ExactlyOnce,
    }
}

/// The will of a CONNECT, with its properties as a PUBLISH would carry them.
fn will_in(w: LastWill) -> Result<WillIn, CodecError> {
    let topic = String::from_utf8(w.topic.to_vec())
        .map_err(|_| CodecError::MalformedV5(v5bytes::Error::TopicNotUtf8))?;
    let (props, delay) = match w.properties {
        None => (MessageProps::default(), 0),
        Some(p) => (
            MessageProps {
                payload_format: p.payload_format_indicator,
                message_expiry: p.message_expiry_interval,
                content_type: p.content_type,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data,
                user: p.user_properties,
            },
            p.delay_interval.unwrap_or(0),
        ),
    };
    Ok(WillIn {
        topic,
        payload: w.message,
        qos: qos_in(w.qos),
        retain: w.retain,
        props,
        delay,
    })
}

fn from_v5(packet: Packet) -> Result<ClientPacket, CodecError> {
    Ok(match packet {
        Packet::Connect(c, will, login) => {
            let p = c.properties.unwrap_or_default();
            ClientPacket::Connect(ConnectIn {
                version: Version::V5,
                client_id: c.client_id,
                clean_start: c.clean_start,
                keep_alive: c.keep_alive,
                will: will.map(will_in).transpose()?.map(Box::new),
                session_expiry: p.session_expiry_interval,
                receive_maximum: p.receive_maximum,
                maximum_packet_size: p.max_packet_size,
                topic_alias_maximum: p.topic_alias_max,
                authentication_method: p.authentication_method,
                // rumqttc reads both as strings and leaves out a login with neither.
                username: login.as_ref().map(|l| l.username.clone()),
                password: login
                    .filter(|l| !l.password.is_empty())
                    .map(|l| Password(l.password.into())),
            })
        }
        Packet::Publish(p) => {
            let topic = String::from_utf8(p.topic.to_vec())
                .map_err(|_| CodecError::MalformedV5(v5bytes::Error::TopicNotUtf8))?;
            let props = p.properties.unwrap_or_default();
            if !props.subscription_identifiers.is_empty() {
                return Err(CodecError::ProtocolV5(
                    "PUBLISH from a client with a subscription identifier",
                ));
            }
            ClientPacket::Publish(PublishIn {
                dup: p.dup,
                qos: qos_in(p.qos),
                retain: p.retain,
                topic,
                pkid: p.pkid,
                payload: p.payload,
                topic_alias: props.topic_alias,
                props: MessageProps {
                    payload_format: props.payload_format_indicator,
                    message_expiry: props.message_expiry_interval,
                    content_type: props.content_type,
                    response_topic: props.response_topic,
                    correlation_data: props.correlation_data,
                    user: props.user_properties,
                },
            })
        }
        Packet::PubAck(a) => ClientPacket::PubAck { pkid: a.pkid },
        Packet::PubRec(r) => ClientPacket::PubRec {
            pkid: r.pkid,
            reason: match r.reason {
                PubRecReason::Success | PubRecReason::NoMatchingSubscribers => reason::SUCCESS,
                _ => reason::UNSPECIFIED,
            },
        },
        Packet::PubRel(r) => ClientPacket::PubRel { pkid: r.pkid },
        Packet::PubComp(c) => ClientPacket::PubComp { pkid: c.pkid },
        Packet::Subscribe(s) => {
            let id = s.properties.and_then(|p| p.id);
            if id == Some(0) {
                return Err(CodecError::ProtocolV5("subscription identifier 0"));
            }
            ClientPacket::Subscribe(SubscribeIn {
                pkid: s.pkid,
                filters: s
                    .filters
                    .into_iter()
                    .map(|f| FilterIn {
                        path: f.path,
                        qos: qos_in(f.qos),
                        no_local: f.nolocal,
                        retain_as_published: f.preserve_retain,
                        retain_handling: match f.retain_forward_rule {
                            RetainForwardRule::OnEverySubscribe => 0,
                            RetainForwardRule::OnNewSubscribe => 1,
                            RetainForwardRule::Never => 2,
                        },
                    })
                    .collect(),
                id,
            })
        }
        Packet::Unsubscribe(u) => {
            if u.filters.is_empty() {
                return Err(CodecError::EmptyUnsubscribe);
            }
            ClientPacket::Unsubscribe {
                pkid: u.pkid,
                filters: u.filters,
            }
        }
        Packet::PingReq(_) => ClientPacket::PingReq,
        Packet::Disconnect(d) => ClientPacket::Disconnect {
            reason: d.reason_code as u8,
            session_expiry: d.properties.and_then(|p| p.session_expiry_interval),
        },
        Packet::Auth(_) => ClientPacket::Auth,
        Packet::ConnAck(_) => ClientPacket::ServerOnly("CONNACK"),
        Packet::SubAck(_) => ClientPacket::ServerOnly("SUBACK"),
        Packet::UnsubAck(_) => ClientPacket::ServerOnly("UNSUBACK"),
        Packet::PingResp(_) => ClientPacket::ServerOnly("PINGRESP"),
    })
}

/// Appends the MQTT 5 form of `packet` to `out`, unless it is larger than `peer_max` (the
/// client's Maximum Packet Size), in which case nothing is written.
pub fn encode(
    packet: &ServerPacket,
    peer_max: Option<u32>,
    out: &mut BytesMut,
) -> Result<(), CodecError> {
    encode_aliased(packet, peer_max, &mut OutAliases::default(), out)
}

/// [`encode`], naming a PUBLISH's topic by alias where `aliases` allows (and recording an
/// alias it establishes once the packet is written).
pub fn encode_aliased(
    packet: &ServerPacket,
    peer_max: Option<u32>,
    aliases: &mut OutAliases,
    out: &mut BytesMut,
) -> Result<(), CodecError> {
    let max = peer_max.unwrap_or(MAX_ENCODED as u32);
    if let ServerPacket::Disconnect {
        reason,
        reason_string: None,
    } = packet
    {
        // rumqttc writes a reason code without properties as remaining length 1 followed by two
        // bytes; write it by hand: reason code and an empty property list.
        out.extend_from_slice(&[0xE0, 0x02, *reason, 0x00]);
        return Ok(());
    }
    let mut v5 = to_v5(packet);
    let mut established = None;
    if let (ServerPacket::Publish(p), Packet::Publish(publish)) = (packet, &mut v5) {
        let alias = match aliases.naming(&p.topic) {
            Naming::Topic => None,
            Naming::New(alias) => {
                established = Some(alias);
                Some(alias)
            }
            Naming::Alias(alias) => {
                publish.topic = bytes::Bytes::new();
                Some(alias)
            }
        };
        if let Some(alias) = alias {
            let props = publish.properties.get_or_insert_with(Default::default);
            props.topic_alias = Some(alias);
        }
    }
    let size = v5.size();
    if size > max as usize {
        return Err(CodecError::TooLargeForClient {
            packet: packet.name(),
            size,
            max,
        });
    }
    let before = out.len();
    v5.write(out, Some(max)).map_err(|source| {
        out.truncate(before);
        CodecError::EncodeV5 {
            packet: packet.name(),
            source,
        }
    })?;
    if let (Some(alias), ServerPacket::Publish(p)) = (established, packet) {
        aliases.established(&p.topic, alias);
    }
    Ok(())
}

fn to_v5(packet: &ServerPacket) -> Packet {
    match packet {
        ServerPacket::ConnAck(a) => {
            let flag = |b: bool| Some(u8::from(b));
            let code = match a.code {
                ConnectCode::Success => ConnectReturnCode::Success,
                ConnectCode::UnsupportedProtocolVersion => {
                    ConnectReturnCode::UnsupportedProtocolVersion
                }
                ConnectCode::ClientIdNotValid => ConnectReturnCode::ClientIdentifierNotValid,
                ConnectCode::BadAuthenticationMethod => ConnectReturnCode::BadAuthenticationMethod,
                ConnectCode::ProtocolError => ConnectReturnCode::ProtocolError,
                ConnectCode::QuotaExceeded => ConnectReturnCode::QuotaExceeded,
                ConnectCode::ServerUnavailable => ConnectReturnCode::ServerUnavailable,
                ConnectCode::BadUsernameOrPassword => ConnectReturnCode::BadUserNamePassword,
                ConnectCode::NotAuthorized => ConnectReturnCode::NotAuthorized,
            };
            let properties = (a.code == ConnectCode::Success).then(|| ConnAckProperties {
                session_expiry_interval: a.session_expiry,
                receive_max: a.receive_maximum,
                max_qos: None,
                retain_available: flag(a.retain_available),
                max_packet_size: a.maximum_packet_size,
                assigned_client_identifier: a.assigned_client_id.clone(),
                topic_alias_max: a.topic_alias_maximum,
                reason_string: a.reason_string.clone(),
                user_properties: Vec::new(),
                wildcard_subscription_available: flag(a.wildcard_available),
                subscription_identifiers_available: flag(a.subscription_ids_available),
                shared_subscription_available: flag(a.shared_available),
                server_keep_alive: None,
                response_information: None,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            });
            Packet::ConnAck(ConnAck {
                session_present: a.session_present,
                code,
                properties,
            })
        }
        ServerPacket::Publish(p) => Packet::Publish(publish(p)),
        ServerPacket::PubAck { pkid, reason } => Packet::PubAck(PubAck {
            pkid: *pkid,
            reason: ack_reason(*reason),
            properties: None,
        }),
        ServerPacket::PubRec { pkid, reason } => Packet::PubRec(PubRec {
            pkid: *pkid,
            reason: rec_reason(*reason),
            properties: None,
        }),
        ServerPacket::PubRel { pkid } => Packet::PubRel(PubRel {
            pkid: *pkid,
            reason: PubRelReason::Success,
            properties: None,
        }),
        ServerPacket::PubComp { pkid, reason } => Packet::PubComp(PubComp {
            pkid: *pkid,
            reason: if *reason == reason::PACKET_ID_NOT_FOUND {
                PubCompReason::PacketIdentifierNotFound
            } else {
                PubCompReason::Success
            },
            properties: None,
        }),
        ServerPacket::SubAck { pkid, codes } => Packet::SubAck(SubAck {
            pkid: *pkid,
            return_codes: codes.iter().map(|c| sub_reason(*c)).collect(),
            properties: None,
        }),
        ServerPacket::UnsubAck { pkid, reasons } => Packet::UnsubAck(UnsubAck {
            pkid: *pkid,
            reasons: reasons
                .iter()
                .map(|r| match *r {
                    reason::SUCCESS => UnsubAckReason::Success,
                    reason::NO_SUBSCRIPTION_EXISTED => UnsubAckReason::NoSubscriptionExisted,
                    reason::TOPIC_FILTER_INVALID => UnsubAckReason::TopicFilterInvalid,
                    _ => UnsubAckReason::UnspecifiedError,
                })
                .collect(),
            properties: None,
        }),
        ServerPacket::PingResp => Packet::PingResp(PingResp),
        ServerPacket::Disconnect {
            reason,
            reason_string,
        } => Packet::Disconnect(Disconnect {
            reason_code: DisconnectReasonCode::try_from(*reason)
                .unwrap_or(DisconnectReasonCode::UnspecifiedError),
            properties: reason_string.as_ref().map(|s| DisconnectProperties {
                session_expiry_interval: None,
                reason_string: Some(s.clone()),
                user_properties: Vec::new(),
                server_reference: None,
            }),
        }),
    }
}

fn publish(p: &PublishOut) -> Publish {
    let props = &p.props;
    let properties = PublishProperties {
        payload_format_indicator: props.payload_format,
        message_expiry_interval: props.message_expiry,
        topic_alias: None,
        response_topic: props.response_topic.clone(),
        correlation_data: props.correlation_data.clone(),
        user_properties: props.user.clone(),
        subscription_identifiers: p.subscription_ids.clone(),
        content_type: props.content_type.clone(),
    };
    Publish {
        dup: p.dup,
        qos: qos_out(p.qos),
        retain: p.retain,
        topic: bytes::Bytes::copy_from_slice(p.topic.as_bytes()),
        pkid: p.pkid,
        payload: p.payload.clone(),
        properties: (properties != PublishProperties::default()).then_some(properties),
    }
}

fn ack_reason(r: u8) -> PubAckReason {
    match r {
        reason::SUCCESS => PubAckReason::Success,
        reason::TOPIC_NAME_INVALID => PubAckReason::TopicNameInvalid,
        reason::QUOTA_EXCEEDED => PubAckReason::QuotaExceeded,
        reason::NOT_AUTHORIZED => PubAckReason::NotAuthorized,
        _ => PubAckReason::UnspecifiedError,
    }
}

fn rec_reason(r: u8) -> PubRecReason {
    match r {
        reason::SUCCESS => PubRecReason::Success,
        reason::TOPIC_NAME_INVALID => PubRecReason::TopicNameInvalid,
        reason::QUOTA_EXCEEDED => PubRecReason::QuotaExceeded,
        reason::NOT_AUTHORIZED => PubRecReason::NotAuthorized,
        _ => PubRecReason::UnspecifiedError,
    }
}

fn sub_reason(c: u8) -> SubscribeReasonCode {
    match c {
        0 => SubscribeReasonCode::Success(QoS5::AtMostOnce),
        1 => SubscribeReasonCode::Success(QoS5::AtLeastOnce),
        2 => SubscribeReasonCode::Success(QoS5::ExactlyOnce),
        reason::TOPIC_FILTER_INVALID => SubscribeReasonCode::TopicFilterInvalid,
        reason::QUOTA_EXCEEDED => SubscribeReasonCode::QuotaExceeded,
        reason::NOT_AUTHORIZED => SubscribeReasonCode::NotAuthorized,
        reason::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED => {
            SubscribeReasonCode::SharedSubscriptionsNotSupported
        }
        _ => SubscribeReasonCode::Unspecified,
    }
}

#[cfg(test)]
#[path = "v5_tests.rs"]
mod tests;
