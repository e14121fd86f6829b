//! The topic filters one connection is subscribed to. No I/O.
//!
//! Shared subscriptions (`$share/...`) are kept here with their options, so sessions save them
//! like any filter, but they never match a record directly: their group hands records out
//! (see [`super::shared`]).
//!
//! Each subscription remembers, per log partition, the high watermark at the moment it was made:
//! a record is delivered for a filter only if it was appended after the filter was subscribed,
//! even when the connection's cursor on that partition is still behind (an older filter's
//! backlog). Partitions created after the subscription start at 0.
//!
//! MQTT 5 subscription options live here too: no-local filters skip the connection's own
//! publishes, retain-as-published keeps the published retain flag, and the identifiers of all
//! matching filters go out with the delivery (§3.3.4).

use std::collections::HashMap;

use rumqttc::mqttbytes::QoS;

use super::routing::Router;
use super::{shared, topic};

/// Most filters per connection; more are refused in SUBACK (0x80). Every record read is matched
/// against each filter, so this bounds the work per record as well as the memory.
pub const MAX_SUBSCRIPTIONS: usize = 1024;

/// What a filter was subscribed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubOptions {
    pub qos: QoS,
    /// MQTT 5: do not deliver this connection's own publishes.
    pub no_local: bool,
    /// MQTT 5: keep the retain flag a message was published with.
    pub retain_as_published: bool,
    /// MQTT 5 subscription identifier.
    pub id: Option<usize>,
}

impl SubOptions {
    /// A 3.1.1 subscription: only a QoS.
    pub fn qos(qos: QoS) -> SubOptions {
        SubOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            id: None,
        }
    }
}

/// How a record goes out to this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// The highest QoS of the matching filters.
    pub qos: QoS,
    /// Identifiers of the matching filters that have one, in subscription order.
    pub ids: Vec<usize>,
    /// Whether any matching filter has retain-as-published.
    pub retain_as_published: bool,
}

#[derive(Debug, Clone)]
struct Subscription {
    filter: String,
    options: SubOptions,
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
    pub fn subscribe(
        &mut self,
        filter: &str,
        options: SubOptions,
        since: HashMap<u32, i64>,
    ) -> Added {
        if let Some(s) = self.subs.iter_mut().find(|s| s.filter == filter) {
            s.options = options;
            return Added::Replaced;
        }
        if self.subs.len() >= MAX_SUBSCRIPTIONS {
            return Added::Full;
        }
        self.subs.push(Subscription {
            filter: filter.to_string(),
            options,
            since,
        });
        Added::New
    }

    /// Every filter with its options and start offsets (by partition store id), in
    /// subscription order: what a persistent session saves.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SubOptions, &HashMap<u32, i64>)> {
        self.subs
            .iter()
            .map(|s| (s.filter.as_str(), &s.options, &s.since))
    }

    pub fn unsubscribe(&mut self, filter: &str) -> bool {
        let before = self.subs.len();
        self.subs.retain(|s| s.filter != filter);
        self.subs.len() != before
    }

    /// The options `filter` was subscribed with.
    pub fn options(&self, filter: &str) -> Option<SubOptions> {
        self.subs
            .iter()
            .find(|s| s.filter == filter)
            .map(|s| s.options)
    }

    /// Whether any plain filter can match records stored in `log_topic` (shared subscriptions
    /// read through their group, see [`super::shared`]).
    pub fn selects(&self, router: &Router, log_topic: &str) -> bool {
        self.subs
            .iter()
            .any(|s| !shared::is_shared(&s.filter) && router.may_hold(&s.filter, log_topic))
    }

    /// How a record with MQTT topic `mqtt_topic` at `offset` of partition `partition_id` is
    /// delivered, from the matching filters subscribed before it was appended; `own` says it
    /// was published by this connection's client (no-local filters skip it).
    pub fn granted(
        &self,
        mqtt_topic: &str,
        partition_id: u32,
        offset: i64,
        own: bool,
    ) -> Option<Granted> {
        let mut best: Option<Granted> = None;
        for s in &self.subs {
            let since = s.since.get(&partition_id).copied().unwrap_or(0);
            let o = &s.options;
            if offset < since
                || (own && o.no_local)
                || shared::is_shared(&s.filter)
                || !topic::matches(mqtt_topic, &s.filter)
            {
                continue;
            }
            let g = best.get_or_insert(Granted {
                qos: o.qos,
                ids: Vec::new(),
                retain_as_published: false,
            });
            if o.qos > g.qos {
                g.qos = o.qos;
            }
            g.ids.extend(o.id);
            g.retain_as_published |= o.retain_as_published;
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
            s.subscribe(
                "a/#",
                SubOptions::qos(QoS::AtMostOnce),
                HashMap::from([(1, 0)])
            ),
            Added::New
        );
        assert_eq!(
            s.subscribe(
                "a/+",
                SubOptions::qos(QoS::ExactlyOnce),
                HashMap::from([(1, 10)])
            ),
            Added::New
        );
        assert_eq!(
            s.granted("a/b", 1, 5, false).map(|g| g.qos),
            Some(QoS::AtMostOnce)
        );
        assert_eq!(
            s.granted("a/b", 1, 10, false).map(|g| g.qos),
            Some(QoS::ExactlyOnce)
        );
        assert_eq!(
            s.granted("a/b/c", 1, 10, false).map(|g| g.qos),
            Some(QoS::AtMostOnce)
        );
        assert_eq!(s.granted("b", 1, 10, false).map(|g| g.qos), None);
        assert_eq!(
            s.granted("a/b", 2, 0, false).map(|g| g.qos),
            Some(QoS::ExactlyOnce),
            "new partition"
        );
        assert_eq!(
            s.subscribe("a/#", SubOptions::qos(QoS::AtLeastOnce), HashMap::new()),
            Added::Replaced
        );
        assert_eq!(
            s.granted("a/b", 1, 5, false).map(|g| g.qos),
            Some(QoS::AtLeastOnce)
        );
        assert!(s.unsubscribe("a/+"));
        assert!(!s.unsubscribe("a/+"));
        assert_eq!(
            s.granted("a/b", 1, 10, false).map(|g| g.qos),
            Some(QoS::AtLeastOnce)
        );
        assert!(s.contains("a/#"));
    }

    #[test]
    fn v5_options_no_local_identifiers_and_retain_as_published() {
        let mut s = Subscriptions::default();
        let opts = |qos, no_local, rap, id| SubOptions {
            qos,
            no_local,
            retain_as_published: rap,
            id,
        };
        s.subscribe(
            "a/#",
            opts(QoS::AtMostOnce, true, false, Some(4)),
            HashMap::new(),
        );
        s.subscribe(
            "a/+",
            opts(QoS::AtLeastOnce, false, true, None),
            HashMap::new(),
        );
        s.subscribe(
            "+/b",
            opts(QoS::ExactlyOnce, false, false, Some(9)),
            HashMap::new(),
        );
        assert_eq!(
            s.granted("a/b", 1, 0, false),
            Some(Granted {
                qos: QoS::ExactlyOnce,
                ids: vec![4, 9],
                retain_as_published: true
            })
        );
        // Its own publish: the no-local filter does not match.
        assert_eq!(
            s.granted("a/b", 1, 0, true),
            Some(Granted {
                qos: QoS::ExactlyOnce,
                ids: vec![9],
                retain_as_published: true
            })
        );
        assert_eq!(s.granted("a/c/d", 1, 0, true), None);
        assert_eq!(
            s.granted("a/c/d", 1, 0, false).map(|g| g.ids),
            Some(vec![4])
        );
    }

    #[test]
    fn subscriptions_are_bounded() {
        let mut s = Subscriptions::default();
        for i in 0..MAX_SUBSCRIPTIONS {
            assert_eq!(
                s.subscribe(
                    &format!("t/{i}"),
                    SubOptions::qos(QoS::AtMostOnce),
                    HashMap::new()
                ),
                Added::New
            );
        }
        assert_eq!(
            s.subscribe("x", SubOptions::qos(QoS::AtMostOnce), HashMap::new()),
            Added::Full
        );
        assert_eq!(
            s.subscribe("t/0", SubOptions::qos(QoS::AtLeastOnce), HashMap::new()),
            Added::Replaced
        );
    }
}
