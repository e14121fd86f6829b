//! The passage of time: session expiry, lapsed member ids, rebalance timeouts and initial
//! rebalance delays.

use std::time::Instant;

use super::{GroupState, Groups};

impl Groups {
    /// Applies the passage of time: expires sessions and lapsed member ids, ends join phases
    /// whose rebalance timeout has passed.
    pub fn tick(&mut self, now: Instant) {
        for group in self.groups.values_mut() {
            group.pending.retain(|_, lapses| *lapses > now);
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| !m.awaiting_join && m.last_seen + m.session_timeout <= now)
                .map(|m| m.id.clone())
                .collect();
            for id in expired {
                group.remove_member(&id, now);
            }
            group.maybe_complete_join(now);
        }
        // Groups that are empty, never rebalanced and hold no pending ids carry no state.
        self.groups.retain(|_, g| {
            !(g.members.is_empty() && g.pending.is_empty() && g.state == GroupState::Empty)
                || g.generation > 0
        });
    }

    /// Forgets idle Empty groups unless `keep` says otherwise (groups with committed offsets
    /// stay, for DescribeGroups and ListGroups, until their offsets expire). `tick` keeps
    /// groups that have rebalanced, so their generation survives a quick return; this bounds
    /// them. Returns how many went.
    pub fn forget_idle(&mut self, keep: impl Fn(&str) -> bool) -> usize {
        let before = self.groups.len();
        self.groups
            .retain(|name, g| !(g.is_idle() && g.state == GroupState::Empty) || keep(name));
        before - self.groups.len()
    }

    /// The next moment at which [`Groups::tick`] would change something.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.groups
            .values()
            .flat_map(|g| {
                let sessions = g
                    .members
                    .values()
                    .filter(|m| !m.awaiting_join)
                    .map(|m| m.last_seen + m.session_timeout);
                // During an initial delay, the join phase ends when the delay says.
                let join_ends = g.initial_delay_until().or(g.rebalance_deadline);
                sessions.chain(join_ends)
            })
            .min()
    }
}
