//! MQTT 5 topic aliases from the broker to a client (§3.3.2.3.4): a client that announces a
//! Topic Alias Maximum gets each of up to that many topics once in full with an alias, and
//! after that the alias alone, which saves the topic's bytes on every further delivery (on a
//! metered link to a device, most of a small message). No I/O.
//!
//! Aliases are handed out first come, first served and never reassigned: the first topics a
//! subscriber receives keep theirs for the connection (a new connection starts empty, as the
//! specification requires). At most [`MAX_OUT_ALIASES`] are kept per connection, whatever the
//! client allows, to bound the memory a connection holds.

use std::collections::HashMap;

/// Most aliases kept per connection (each costs its topic's bytes plus a map entry).
pub const MAX_OUT_ALIASES: u16 = 256;

#[derive(Debug, Clone, Default)]
pub struct OutAliases {
    /// Aliases the client accepts, capped at [`MAX_OUT_ALIASES`]; 0 means none.
    max: u16,
    by_topic: HashMap<String, u16>,
}

/// How a PUBLISH names its topic.
#[derive(Debug, PartialEq, Eq)]
pub enum Naming {
    /// The topic in full, no alias.
    Topic,
    /// The topic in full, establishing this alias ([`OutAliases::established`] once sent).
    New(u16),
    /// The alias alone (empty topic).
    Alias(u16),
}

impl OutAliases {
    /// The client's Topic Alias Maximum from CONNECT.
    pub fn set_max(&mut self, client_max: u16) {
        self.max = client_max.min(MAX_OUT_ALIASES);
    }

    /// How to name `topic` in the next PUBLISH.
    pub fn naming(&self, topic: &str) -> Naming {
        if let Some(&alias) = self.by_topic.get(topic) {
            return Naming::Alias(alias);
        }
        let used = self.by_topic.len() as u16;
        if used < self.max {
            Naming::New(used + 1)
        } else {
            Naming::Topic
        }
    }

    /// A PUBLISH establishing `alias` for `topic` was written: later ones may use the alias.
    pub fn established(&mut self, topic: &str, alias: u16) {
        self.by_topic.insert(topic.to_string(), alias);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_get_aliases_up_to_the_clients_maximum_then_keep_them() {
        let mut a = OutAliases::default();
        assert_eq!(a.naming("x"), Naming::Topic, "no maximum: no aliases");
        a.set_max(2);
        assert_eq!(a.naming("a/1"), Naming::New(1));
        // Not sent (e.g. too large for the client): the alias is offered again.
        assert_eq!(a.naming("a/1"), Naming::New(1));
        a.established("a/1", 1);
        assert_eq!(a.naming("a/1"), Naming::Alias(1));
        assert_eq!(a.naming("a/2"), Naming::New(2));
        a.established("a/2", 2);
        assert_eq!(a.naming("a/3"), Naming::Topic, "maximum reached");
        assert_eq!(a.naming("a/2"), Naming::Alias(2));
        a.set_max(u16::MAX);
        assert_eq!(a.max, MAX_OUT_ALIASES);
    }
}
