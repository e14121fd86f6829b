//! MQTT 5 message properties and the record headers that carry them through the log. No I/O.
//!
//! A v5 PUBLISH's application properties are stored with the record as headers under the
//! `mqtt.` prefix (see the table in [`super`]), so Kafka consumers can read them and so they
//! come back out to MQTT 5 subscribers, whichever protocol wrote the record. The message expiry
//! interval is stored as published; on delivery the time the record spent in the log (from its
//! timestamp) is subtracted, and a record whose interval has run out is not delivered.

use bytes::Bytes;

/// Payload format indicator (0 = bytes, 1 = UTF-8), as the publisher sent it.
pub const HEADER_PAYLOAD_FORMAT: &str = "mqtt.payload_format";
/// Message expiry interval in seconds (decimal), as the publisher sent it.
pub const HEADER_MESSAGE_EXPIRY: &str = "mqtt.message_expiry";
pub const HEADER_CONTENT_TYPE: &str = "mqtt.content_type";
pub const HEADER_RESPONSE_TOPIC: &str = "mqtt.response_topic";
/// Correlation data, raw bytes.
pub const HEADER_CORRELATION_DATA: &str = "mqtt.correlation_data";
/// Prefix of user properties: property `unit=C` is header `mqtt.user.unit` = `C`, in order;
/// a name repeated in one PUBLISH (which MQTT 5 allows) is a repeated header.
pub const HEADER_USER_PREFIX: &str = "mqtt.user.";

/// The application properties of a PUBLISH (MQTT 5, §3.3.2.3), minus what is per hop (topic
/// alias, subscription identifiers).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageProps {
    pub payload_format: Option<u8>,
    /// Seconds.
    pub message_expiry: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user: Vec<(String, String)>,
}

type Headers = Vec<(String, Option<Bytes>)>;

impl MessageProps {
    pub fn is_empty(&self) -> bool {
        *self == MessageProps::default()
    }

    /// Appends the headers carrying these properties.
    pub fn to_headers(&self, headers: &mut Headers) {
        let text = |s: &str| Some(Bytes::copy_from_slice(s.as_bytes()));
        if let Some(f) = self.payload_format {
            headers.push((HEADER_PAYLOAD_FORMAT.into(), text(&f.to_string())));
        }
        if let Some(e) = self.message_expiry {
            headers.push((HEADER_MESSAGE_EXPIRY.into(), text(&e.to_string())));
        }
        if let Some(c) = &self.content_type {
            headers.push((HEADER_CONTENT_TYPE.into(), text(c)));
        }
        if let Some(r) = &self.response_topic {
            headers.push((HEADER_RESPONSE_TOPIC.into(), text(r)));
        }
        if let Some(d) = &self.correlation_data {
            headers.push((HEADER_CORRELATION_DATA.into(), Some(d.clone())));
        }
        for (k, v) in &self.user {
            headers.push((format!("{HEADER_USER_PREFIX}{k}"), text(v)));
        }
    }

    /// The properties stored in a record's headers. Headers that do not parse (e.g. written by
    /// a Kafka producer) are left out rather than failing the delivery.
    pub fn from_headers(headers: &[(String, Option<Bytes>)]) -> MessageProps {
        let mut props = MessageProps::default();
        for (name, value) in headers {
            let Some(value) = value else { continue };
            let text = || std::str::from_utf8(value).ok().map(str::to_string);
            match name.as_str() {
                HEADER_PAYLOAD_FORMAT => {
                    props.payload_format = text().and_then(|t| t.parse().ok()).filter(|f| *f <= 1)
                }
                HEADER_MESSAGE_EXPIRY => props.message_expiry = parse_expiry(value),
                HEADER_CONTENT_TYPE => props.content_type = text(),
                HEADER_RESPONSE_TOPIC => props.response_topic = text(),
                HEADER_CORRELATION_DATA => props.correlation_data = Some(value.clone()),
                _ => {
                    if let (Some(key), Some(v)) = (name.strip_prefix(HEADER_USER_PREFIX), text()) {
                        props.user.push((key.to_string(), v));
                    }
                }
            }
        }
        props
    }
}

/// The message expiry interval stored in a record's headers, read as [`MessageProps::from_headers`]
/// reads it (the last such header with a value counts).
pub fn message_expiry(headers: &[(String, Option<Bytes>)]) -> Option<u32> {
    let value = headers
        .iter()
        .rev()
        .find_map(|(name, value)| value.as_ref().filter(|_| name == HEADER_MESSAGE_EXPIRY))?;
    parse_expiry(value)
}

fn parse_expiry(value: &[u8]) -> Option<u32> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Seconds left of a message expiry `interval` for a record appended at `timestamp_ms`, at
/// `now_ms`; `None` once it has expired (§3.3.2.3.3: the forwarded interval is the received one
/// minus the time spent waiting in the server).
pub fn remaining_expiry(interval: u32, timestamp_ms: i64, now_ms: i64) -> Option<u32> {
    let waited_s = (now_ms.saturating_sub(timestamp_ms)).max(0) / 1000;
    let left = i64::from(interval) - waited_s;
    (left > 0).then_some(left as u32)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn expiry_counts_down_and_runs_out() {
        assert_eq!(remaining_expiry(10, 1_000, 1_000), Some(10));
        assert_eq!(remaining_expiry(10, 1_000, 4_999), Some(7));
        assert_eq!(remaining_expiry(10, 1_000, 11_000), None);
        assert_eq!(remaining_expiry(10, 5_000, 1_000), Some(10), "clock behind");
    }

    #[test]
    fn foreign_headers_do_not_become_properties() {
        let headers = vec![
            ("unit".to_string(), Some(Bytes::from("C"))),
            (HEADER_PAYLOAD_FORMAT.to_string(), Some(Bytes::from("7"))),
            (HEADER_MESSAGE_EXPIRY.to_string(), Some(Bytes::from("soon"))),
            (HEADER_CONTENT_TYPE.to_string(), None),
        ];
        assert!(MessageProps::from_headers(&headers).is_empty());
    }

    /// Any message properties; also used by the MQTT 5 codec's tests.
    pub(crate) fn props() -> impl Strategy<Value = MessageProps> {
        (
            prop::option::of(0u8..=1),
            prop::option::of(any::<u32>()),
            prop::option::of("[ -~]{0,12}"),
            prop::option::of("[a-z/]{1,12}"),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..12)),
            prop::collection::vec(("[a-z.]{0,6}", "\\PC{0,6}"), 0..4),
        )
            .prop_map(|(f, e, c, r, d, user)| MessageProps {
                payload_format: f,
                message_expiry: e,
                content_type: c,
                response_topic: r,
                correlation_data: d.map(Bytes::from),
                user,
            })
    }

    proptest! {
        #[test]
        fn headers_round_trip(p in props()) {
            let mut headers = vec![("mqtt.topic".to_string(), Some(Bytes::from("t")))];
            p.to_headers(&mut headers);
            prop_assert_eq!(MessageProps::from_headers(&headers), p);
        }

        /// The delivery's shortcut reads the expiry exactly as the full parse does, whatever
        /// mix of valid, invalid, null and repeated expiry headers a Kafka producer wrote.
        #[test]
        fn message_expiry_agrees_with_the_full_parse(
            values in proptest::collection::vec(
                proptest::option::of(prop_oneof![
                    any::<u32>().prop_map(|n| n.to_string().into_bytes()),
                    proptest::collection::vec(any::<u8>(), 0..4),
                ]),
                0..4,
            )
        ) {
            let headers: Vec<(String, Option<Bytes>)> = values
                .into_iter()
                .map(|v| (HEADER_MESSAGE_EXPIRY.to_string(), v.map(Bytes::from)))
                .collect();
            prop_assert_eq!(
                message_expiry(&headers),
                MessageProps::from_headers(&headers).message_expiry
            );
        }
    }
}
