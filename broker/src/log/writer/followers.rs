//! How long a group commit waits for the callers the previous one just released.
//!
//! Callers that wait for their commit before sending more (a producer with one request in
//! flight, an MQTT client with a full window) split into waves: while group *k* is being
//! fsync'd, the callers of group *k − 1* send their next commands, which group *k + 1* takes
//! at once, before the callers of group *k* have had time to answer. Two half-full commits per
//! round then, for good: nothing merges the waves again. With 100 one-record producers and a
//! 7 ms fsync, that held commits to ~49 records where 100 were waiting a round trip later.
//!
//! So after a group with commands from `n` callers (tasks), the next group waits until one more
//! command per caller could be there (besides what was already queued), but never longer than
//! half the last commit took, and at most [`MAX_WAIT`]: a wait that saves a whole commit is
//! worth a fraction of one. PostgreSQL's `commit_delay` is the same idea with a fixed delay.
//! The caller committing the next group itself is not waited for (it is not reading while it
//! commits), nor more commands than one group takes. A caller that does not come back (a
//! sensor that sends once a second, a client that stopped) makes at most one group wait, and
//! only if that group starts within the window; a lone caller never waits for itself.
//!
//! Only after commits of at least [`MIN_COMMIT_TO_WAIT`]: where a commit costs about what a
//! caller's round trip does (0.3 ms fsyncs on the test VM), the callers are the bound, not the
//! commits, and waiting for them cost 100 one-record Kafka producers 12% of their rate; with a
//! 7 ms fsync (an SD card, a slow disk) the same wait raised it by 73%.

use std::time::{Duration, Instant};

/// The longest a group waits for followers, however slow the disk.
const MAX_WAIT: Duration = Duration::from_millis(2);
/// Commits quicker than this are not worth waiting for followers (see the module's comment).
const MIN_COMMIT_TO_WAIT: Duration = Duration::from_millis(1);
/// Sleeps while waiting are at most this long, so the group starts soon after the last
/// expected command arrives. (Linux's default timer slack makes them 50–80 µs in practice.)
const POLL: Duration = Duration::from_micros(20);

/// What the last group commit leads the next one to expect. `C` identifies a caller (a tokio
/// task); commands without one count as a caller each.
#[derive(Debug, Clone)]
pub struct Followers<C> {
    /// Commands queued when the last commit ended.
    queued: usize,
    /// The distinct callers of the last group, sorted.
    callers: Vec<C>,
    /// Its commands without a caller.
    anonymous: usize,
    /// Until when to wait.
    deadline: Instant,
}

impl<C: Ord + Copy> Followers<C> {
    /// After a group whose commands came from `callers`, committed in `took` and ended at
    /// `ended`, with `queued` commands already waiting.
    pub fn after(
        callers: impl Iterator<Item = Option<C>>,
        queued: usize,
        took: Duration,
        ended: Instant,
    ) -> Followers<C> {
        if took < MIN_COMMIT_TO_WAIT {
            // Nothing to wait for: no need to count the callers either.
            return Followers {
                queued,
                callers: Vec::new(),
                anonymous: 0,
                deadline: ended,
            };
        }
        let wait = (took / 2).min(MAX_WAIT);
        let mut anonymous = 0;
        let mut known: Vec<C> = callers
            .filter_map(|c| {
                anonymous += usize::from(c.is_none());
                c
            })
            .collect();
        known.sort_unstable();
        known.dedup();
        Followers {
            queued,
            callers: known,
            anonymous,
            deadline: ended + wait,
        }
    }

    /// With `queued` commands at hand (counting the one that starts the group) at `now`, for a
    /// group of at most `max` commands committed by `me`: how long to sleep before looking
    /// again, or `None` to commit now.
    pub fn pause(
        &self,
        queued: usize,
        max: usize,
        me: Option<C>,
        now: Instant,
    ) -> Option<Duration> {
        if now >= self.deadline {
            return None;
        }
        let mine = me.is_some_and(|me| self.callers.binary_search(&me).is_ok());
        let expected =
            (self.queued + self.callers.len() + self.anonymous - usize::from(mine)).min(max);
        if queued >= expected {
            return None;
        }
        Some((self.deadline - now).min(POLL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const MAX: usize = 4096;

    fn callers(ids: &[u64]) -> impl Iterator<Item = Option<u64>> + '_ {
        ids.iter().map(|&i| Some(i))
    }

    #[test]
    fn waits_for_the_released_callers_until_half_a_commit() {
        let ended = Instant::now();
        // 50 callers answered, 50 commands already queued (the other wave): wait for 100.
        let ids: Vec<u64> = (0..50).collect();
        let f = Followers::after(callers(&ids), 50, 8 * MS, ended);
        assert_eq!(f.pause(50, MAX, None, ended), Some(POLL));
        assert_eq!(f.pause(99, MAX, None, ended + MS), Some(POLL));
        assert_eq!(f.pause(100, MAX, None, ended), None, "everyone is here");
        // Half of an 8 ms commit is 4 ms, capped at 2 ms.
        assert_eq!(
            f.pause(60, MAX, None, ended + 2 * MS),
            None,
            "deadline passed"
        );
        let near = ended + 2 * MS - Duration::from_micros(5);
        assert_eq!(f.pause(60, MAX, None, near), Some(Duration::from_micros(5)));
    }

    #[test]
    fn callers_count_once_however_many_commands_they_had() {
        let ended = Instant::now();
        // One pipelining connection's five commands: one follower expected, and it is here.
        let f = Followers::after(callers(&[7, 7, 7, 7, 7]), 0, 8 * MS, ended);
        assert_eq!(f.pause(1, MAX, None, ended), None);
        // Commands without a caller count one each.
        let f = Followers::after([None, None, Some(1)].into_iter(), 0, 8 * MS, ended);
        assert!(f.pause(2, MAX, None, ended).is_some());
        assert_eq!(f.pause(3, MAX, None, ended), None);
    }

    #[test]
    fn the_committing_caller_is_not_waited_for() {
        let ended = Instant::now();
        let f = Followers::after(callers(&[1, 2]), 0, 8 * MS, ended);
        assert!(
            f.pause(1, MAX, Some(3), ended).is_some(),
            "waits for 1 and 2"
        );
        assert_eq!(
            f.pause(1, MAX, Some(1), ended),
            None,
            "1 commits: only 2 expected"
        );
    }

    #[test]
    fn never_waits_for_more_than_a_group_takes() {
        let ended = Instant::now();
        let ids: Vec<u64> = (0..600).collect();
        let f = Followers::after(callers(&ids), 8192, 8 * MS, ended);
        assert_eq!(f.pause(512, 512, None, ended), None, "a full inline group");
        assert!(f.pause(511, 512, None, ended).is_some());
    }

    #[test]
    fn a_short_commit_waits_half_as_long() {
        let ended = Instant::now();
        let f = Followers::after(callers(&[1, 2]), 0, Duration::from_micros(1_200), ended);
        assert!(f
            .pause(1, MAX, None, ended + Duration::from_micros(590))
            .is_some());
        assert_eq!(
            f.pause(1, MAX, None, ended + Duration::from_micros(600)),
            None
        );
    }

    #[test]
    fn a_commit_as_quick_as_a_round_trip_does_not_wait() {
        let ended = Instant::now();
        let ids: Vec<u64> = (0..50).collect();
        let f = Followers::after(callers(&ids), 50, Duration::from_micros(300), ended);
        assert_eq!(f.pause(50, MAX, None, ended), None);
    }

    #[test]
    fn a_lone_caller_never_waits_for_itself() {
        let ended = Instant::now();
        let f = Followers::after(callers(&[1]), 0, 8 * MS, ended);
        assert_eq!(f.pause(1, MAX, None, ended), None);
    }

    #[test]
    fn a_caller_that_comes_back_late_does_not_wait() {
        let ended = Instant::now();
        let ids: Vec<u64> = (0..20).collect();
        let f = Followers::after(callers(&ids), 0, 8 * MS, ended);
        // A sensor's next reading, a second later.
        assert_eq!(f.pause(1, MAX, None, ended + 1000 * MS), None);
    }
}
