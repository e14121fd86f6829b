//! The topic filters one connection is subscribed to. No I/O.
//!
//! Each subscription remembers, per log partition, the high watermark at the moment it was made:
//! a record is delivered for a filter only if it was appended after the filter was subscribed,
//! even when the connection's cursor on that partition is still behind (an older filter's
//! backlog). Partitions created after the subscription start at 0.

use std::collections::HashMap;

use rumqttc::mqttbytes::QoS;

use super::routing::Router;
use super::topic;

/// Most filters per connection; more are refused in SUBACK (0x80). Every record read is matched
/// against each filter, so this bounds the work per record as well as the memory.
pub const MAX_SUBSCRIPTIONS: usize = 1024;

#[derive(Debug, Clone)]
struct Subscription {
    filter: String,
    qos: QoS,
    /// High watermark of each partition (by store id) when subscribed.
    since: HashMap<u32, i64>,
}

#[derive(Debug, Default)]
pub struct Subscriptions {
    subs: Vec<Subscription>,
}

/// Outcome of adding a filter.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    New,
    /// Already subscribed: the QoS is replaced and delivery continues uninterrupted (§3.8.4).
    Replaced,
    Full,
}

impl Subscriptions {
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.subs.len()
    }

    pub fn contains(&self, filter: &str) -> bool {
        self.subs.iter().any(|s| s.filter == filter)
    }

    /// Adds a valid filter with its start offsets (used only if it is new).
    pub fn subscribe(&mut self, filter: &str, qos: QoS, since: HashMap<u32, i64>) -> Added {
        if let Some(s) = self.subs.iter_mut().find(|s| s.filter == filter) {
            s.qos = qos;
            return Added::Replaced;
        }
        if self.subs.len() >= MAX_SUBSCRIPTIONS {
            return Added::Full;
        }
        self.subs.push(Subscription {
            filter: filter.to_string(),
            qos,
            since,
        });
        Added::New
    }

    pub fn unsubscribe(&mut self, filter: &str) -> bool {
        let before = self.subs.len();
        self.subs.retain(|s| s.filter != filter);
        self.subs.len() != before
    }

    /// Whether any filter can match records stored in `log_topic`.
    pub fn selects(&self, router: &Router, log_topic: &str) -> bool {
        self.subs
            .iter()
            .any(|s| router.may_hold(&s.filter, log_topic))
    }

    /// The QoS granted for a record with MQTT topic `mqtt_topic` at `offset` of partition
    /// `partition_id`: the highest of the matching filters subscribed before it was appended.
    pub fn granted(&self, mqtt_topic: &str, partition_id: u32, offset: i64) -> Option<QoS> {
        let mut best: Option<QoS> = None;
        for s in &self.subs {
            let since = s.since.get(&partition_id).copied().unwrap_or(0);
            if offset >= since && topic::matches(mqtt_topic, &s.filter) {
                best = Some(match best {
                    Some(b) if b >= s.qos => b,
                    _ => s.qos,
                });
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_qos_of_filters_subscribed_before_the_record() {
        let mut s = Subscriptions::default();
        assert_eq!(
            s.subscribe("a/#", QoS::AtMostOnce, HashMap::from([(1, 0)])),
            Added::New
        );
        assert_eq!(
            s.subscribe("a/+", QoS::ExactlyOnce, HashMap::from([(1, 10)])),
            Added::New
        );
        assert_eq!(s.granted("a/b", 1, 5), Some(QoS::AtMostOnce));
        assert_eq!(s.granted("a/b", 1, 10), Some(QoS::ExactlyOnce));
        assert_eq!(s.granted("a/b/c", 1, 10), Some(QoS::AtMostOnce));
        assert_eq!(s.granted("b", 1, 10), None);
        assert_eq!(
            s.granted("a/b", 2, 0),
            Some(QoS::ExactlyOnce),
            "new partition"
        );
        assert_eq!(
            s.subscribe("a/#", QoS::AtLeastOnce, HashMap::new()),
            Added::Replaced
        );
        assert_eq!(s.granted("a/b", 1, 5), Some(QoS::AtLeastOnce));
        assert!(s.unsubscribe("a/+"));
        assert!(!s.unsubscribe("a/+"));
        assert_eq!(s.granted("a/b", 1, 10), Some(QoS::AtLeastOnce));
        assert!(s.contains("a/#"));
    }

    #[test]
    fn subscriptions_are_bounded() {
        let mut s = Subscriptions::default();
        for i in 0..MAX_SUBSCRIPTIONS {
            assert_eq!(
                s.subscribe(&format!("t/{i}"), QoS::AtMostOnce, HashMap::new()),
                Added::New
            );
        }
        assert_eq!(
            s.subscribe("x", QoS::AtMostOnce, HashMap::new()),
            Added::Full
        );
        assert_eq!(
            s.subscribe("t/0", QoS::AtLeastOnce, HashMap::new()),
            Added::Replaced
        );
    }
}
