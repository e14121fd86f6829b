//! Choosing the protocol of a group: one every member supports, by the members' preference.

use super::{Group, JoinParams};

impl Group {
    /// Protocols every member supports, each counted by how many members prefer it most.
    pub(super) fn choose_protocol(&self) -> Option<String> {
        let mut members = self.members.values();
        let first = members.next()?;
        let common: Vec<&str> = first
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            })
            .collect();
        let mut votes: Vec<(usize, &str)> = common.iter().map(|n| (0, *n)).collect();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(p, _)| common.contains(&p.as_str()))
            {
                if let Some(v) = votes.iter_mut().find(|(_, n)| n == name) {
                    v.0 += 1;
                }
            }
        }
        // Most votes wins; on a tie, the first in the first member's order.
        let best = votes.iter().map(|(v, _)| *v).max()?;
        votes
            .iter()
            .find(|(v, _)| *v == best)
            .map(|(_, n)| n.to_string())
    }

    /// Whether a joining member with these protocols could coexist with the current members.
    pub(super) fn compatible(&self, params: &JoinParams) -> bool {
        if params.protocols.is_empty() || params.protocol_type.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(params.protocol_type.as_str()) {
            return false;
        }
        params.protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .filter(|m| m.id != params.member_id)
                .all(|m| m.protocols.iter().any(|(p, _)| p == name))
        })
    }
}
