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

use crate::config::Route;

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

    /// The log topic a PUBLISH to `mqtt_topic` (a valid topic name) is written to.
    pub fn log_topic(&self, mqtt_topic: &str) -> String {
        self.routes
            .iter()
            .find(|r| topic::matches(mqtt_topic, &r.filter))
            .map(|r| r.topic.clone())
            .unwrap_or_else(|| sanitize_level(topic::first_level(mqtt_topic)))
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
            filter: filter.into(),
            topic: topic.into(),
        }
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
