//! Where MQTT topics live in the log, in both directions.
//!
//! Ingest: a PUBLISH goes to the log topic of the first configured route whose filter matches
//! its MQTT topic, else to the log topic named after the MQTT topic's first level, made a legal
//! Kafka name. So `factory1/line2/temp` lands in `factory1`, and Kafka consumers can read all of
//! one site from one topic, partitioned by device (the record key is the full MQTT topic).
//!
//! Delivery: a subscription must know which log topics can hold matching records, so that a
//! subscriber to `factory1/#` does not decode every topic of the broker. [`Router::may_hold`]
//! answers that from the same rules, erring on the side of "yes".

use bytes::Bytes;

use crate::config::{Route, RouteKey};

use super::topic::{self, TopicError};

/// Longest Kafka topic name.
const MAX_LOG_TOPIC: usize = 249;

#[derive(Debug, thiserror::Error)]
#[error("mqtt route {filter:?}: {source}")]
pub struct RouteError {
    filter: String,
    source: TopicError,
}

/// The configured routes, checked once.
#[derive(Debug, Clone, Default)]
pub struct Router {
    /// `mqtt.routes` in order: the first match wins.
    routes: Vec<Route>,
}

impl Router {
    pub fn new(routes: &[Route]) -> Result<Router, RouteError> {
        for r in routes {
            topic::validate_filter(&r.filter).map_err(|source| RouteError {
                filter: r.filter.clone(),
                source,
            })?;
        }
        Ok(Router {
            routes: routes.to_vec(),
        })
    }

    fn route(&self, mqtt_topic: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| topic::matches(mqtt_topic, &r.filter))
    }

    /// The log topic a PUBLISH to `mqtt_topic` (a valid topic name) is written to.
    pub fn log_topic(&self, mqtt_topic: &str) -> String {
        self.route(mqtt_topic)
            .map(|r| r.topic.clone())
            .unwrap_or_else(|| sanitize_level(topic::first_level(mqtt_topic)))
    }

    /// How records of `mqtt_topic` are keyed: as its route says, by the topic without one.
    pub fn key_choice(&self, mqtt_topic: &str) -> RouteKey {
        self.route(mqtt_topic).map_or(RouteKey::Topic, |r| r.key)
    }

    /// The record key of a PUBLISH to `mqtt_topic` by `client_id`, as its route says (the
    /// full MQTT topic without a route).
    pub fn record_key(&self, mqtt_topic: &str, client_id: &str) -> Bytes {
        let key = self.key_choice(mqtt_topic);
        let text = match key {
            RouteKey::Topic => mqtt_topic,
            RouteKey::ClientId => client_id,
            RouteKey::Level(n) => n
                .checked_sub(1)
                .and_then(|i| mqtt_topic.split('/').nth(i))
                .unwrap_or(mqtt_topic),
        };
        Bytes::copy_from_slice(text.as_bytes())
    }

    /// Whether log topic `log_topic` can hold records a subscription to `filter` (valid) must
    /// see: records published over MQTT to a matching topic (routed or not), or records written
    /// over Kafka, whose MQTT topic is the log topic's own name.
    pub fn may_hold(&self, filter: &str, log_topic: &str) -> bool {
        if topic::starts_with_wildcard(filter) {
            return true;
        }
        sanitize_level(topic::first_level(filter)) == log_topic
            || topic::matches(log_topic, filter)
            || self
                .routes
                .iter()
                .any(|r| r.topic == log_topic && topic::overlap(&r.filter, filter))
    }
}

/// An MQTT topic level as a Kafka topic name: every character outside `[a-zA-Z0-9._-]` becomes
/// `_`, an empty level is `_`, `.` and `..` (reserved by Kafka) become `_` and `__`, and names are
/// cut at Kafka's 249 characters (so very long first levels can share a topic; their records stay
/// apart by key and header).
pub fn sanitize_level(level: &str) -> String {
    if level.is_empty() {
        return "_".to_string();
    }
    let mut name: String = level
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_LOG_TOPIC)
        .collect();
    if name == "." || name == ".." {
        name = name.replace('.', "_");
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn route(filter: &str, topic: &str) -> Route {
        Route {
            key: RouteKey::Topic,
            filter: filter.into(),
            topic: topic.into(),
        }
    }

    #[test]
    fn routes_choose_the_record_key() {
        let keyed = |filter: &str, key| Route {
            key,
            ..route(filter, "t")
        };
        let r = Router::new(&[
            keyed("plant/+/temp", RouteKey::Level(2)),
            keyed("fleet/#", RouteKey::ClientId),
            keyed("deep/#", RouteKey::Level(5)),
        ])
        .unwrap();
        assert_eq!(r.record_key("plant/boiler-7/temp", "c1"), "boiler-7");
        assert_eq!(r.record_key("fleet/truck/gps", "truck-12"), "truck-12");
        assert_eq!(r.record_key("deep/a", "c"), "deep/a", "too few levels");
        assert_eq!(
            r.record_key("other/x", "c"),
            "other/x",
            "no route: the topic"
        );
        let parse = |s: &str| RouteKey::try_from(s.to_string());
        assert_eq!(parse("level:3"), Ok(RouteKey::Level(3)));
        assert_eq!(parse("client_id"), Ok(RouteKey::ClientId));
        assert!(parse("level:0").is_err() && parse("device").is_err());
    }

    #[test]
    fn first_route_wins_else_first_level() {
        let r = Router::new(&[
            route("plant/+/temp", "temps"),
            route("plant/#", "plant-all"),
        ])
        .unwrap();
        assert_eq!(r.log_topic("plant/a/temp"), "temps");
        assert_eq!(r.log_topic("plant/a/hum"), "plant-all");
        assert_eq!(r.log_topic("a/b/c"), "a");
        assert_eq!(r.log_topic("/x"), "_");
        assert_eq!(r.log_topic("$SYS/x"), "_SYS");
        assert_eq!(r.log_topic("caf\u{e9} 1/x"), "caf__1");
        assert_eq!(r.log_topic(".."), "__");
        assert!(Router::new(&[route("a/#/b", "t")]).is_err());
    }

    #[test]
    fn subscriptions_read_only_topics_that_can_match() {
        let r = Router::new(&[route("plant/+/temp", "temps")]).unwrap();
        assert!(r.may_hold("a/b", "a"));
        assert!(!r.may_hold("a/b", "b"));
        assert!(r.may_hold("plant/x/temp", "temps"));
        assert!(r.may_hold("plant/#", "temps"));
        assert!(!r.may_hold("plant/x/hum", "temps"));
        assert!(r.may_hold("alerts", "alerts"));
        assert!(r.may_hold("#", "anything"));
        assert!(r.may_hold("+/b", "anything"));
        assert!(r.may_hold("caf\u{e9}/#", "caf_"));
    }

    proptest! {
        #[test]
        fn sanitized_levels_are_kafka_topic_names(level in "\\PC{0,300}") {
            let name = sanitize_level(&level);
            prop_assert!(crate::log::validate_topic_name(&name).is_ok(), "{:?} -> {:?}", level, name);
        }

        #[test]
        fn a_publish_lands_where_its_subscribers_look(
            levels in prop::collection::vec("[a-c$ ]{0,2}", 1..4),
            wild in any::<prop::sample::Index>(),
            use_route in any::<bool>(),
        ) {
            let mqtt_topic = levels.join("/");
            prop_assume!(topic::validate_topic_name(&mqtt_topic).is_ok());
            let routes = if use_route { vec![route("a/#", "routed")] } else { vec![] };
            let r = Router::new(&routes).unwrap();
            let written_to = r.log_topic(&mqtt_topic);
            // Any filter matching the topic must select the log topic it was written to.
            let mut f: Vec<&str> = mqtt_topic.split('/').collect();
            let i = wild.index(f.len());
            f[i] = "+";
            for filter in [mqtt_topic.clone(), f.join("/"), "#".to_string()] {
                if topic::matches(&mqtt_topic, &filter) {
                    prop_assert!(r.may_hold(&filter, &written_to), "{} in {} for {}", mqtt_topic, written_to, filter);
                }
            }
        }
    }
}
