//! How long a group commit waits for the callers the previous one just released.
//!
//! Callers that wait for their commit before sending more (a producer with one request in
//! flight, an MQTT client with a full window) split into waves: while group *k* is being
//! fsync'd, the callers of group *k − 1* send their next commands, which group *k + 1* takes
//! at once, before the callers of group *k* have had time to answer. Two half-full commits per
//! round then, for good: nothing merges the waves again. With 100 one-record producers and a
//! 7 ms fsync, that held commits to ~49 records where 100 were waiting a round trip later.
//!
//! So after a group of `n` commands, the next group waits until the `n` callers' next commands
//! could be there (the queue holds what was already waiting plus `n`), but never longer than
//! half the last commit took, and at most [`MAX_WAIT`]: a wait that saves a whole commit is
//! worth a fraction of one. PostgreSQL's `commit_delay` is the same idea with a fixed delay.
//! Callers that do not come back within that time (a sensor that sends once a second, a client
//! that stopped) cost nothing: the wait ends at the deadline, which has passed by the time their
//! next command arrives, and a lone caller is expected only once, so it never waits for itself.
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
/// expected command arrives.
const POLL: Duration = Duration::from_micros(20);

/// What the last group commit leads the next one to expect.
#[derive(Debug, Clone, Copy)]
pub struct Followers {
    /// Commands the next group may wait for (those queued when the last commit ended, plus one
    /// per command it answered).
    expected: usize,
    /// Until when.
    deadline: Instant,
}

impl Followers {
    /// After a group of `released` commands, committed in `took` and ended at `ended`, with
    /// `queued` commands already waiting.
    pub fn after(released: usize, queued: usize, took: Duration, ended: Instant) -> Followers {
        let wait = if took >= MIN_COMMIT_TO_WAIT {
            (took / 2).min(MAX_WAIT)
        } else {
            Duration::ZERO
        };
        Followers {
            expected: queued.saturating_add(released),
            deadline: ended + wait,
        }
    }

    /// With `queued` commands at hand (counting the one that starts the group) at `now`: how
    /// long to sleep before looking again, or `None` to commit now.
    pub fn pause(&self, queued: usize, now: Instant) -> Option<Duration> {
        if queued >= self.expected || now >= self.deadline {
            return None;
        }
        Some((self.deadline - now).min(POLL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_for_the_released_callers_until_half_a_commit() {
        let ended = Instant::now();
        // 50 answered, 50 already queued (the other wave): wait for 100.
        let f = Followers::after(50, 50, 8 * MS, ended);
        assert_eq!(f.pause(50, ended), Some(POLL));
        assert_eq!(f.pause(99, ended + MS), Some(POLL));
        assert_eq!(f.pause(100, ended), None, "everyone is here");
        // Half of an 8 ms commit is 4 ms, capped at 2 ms.
        assert_eq!(f.pause(60, ended + 2 * MS), None, "deadline passed");
        let near = ended + 2 * MS - Duration::from_micros(5);
        assert_eq!(f.pause(60, near), Some(Duration::from_micros(5)));
    }

    #[test]
    fn a_short_commit_waits_half_as_long() {
        let ended = Instant::now();
        let f = Followers::after(10, 0, Duration::from_micros(1_200), ended);
        assert!(f.pause(1, ended + Duration::from_micros(590)).is_some());
        assert_eq!(f.pause(1, ended + Duration::from_micros(600)), None);
    }

    #[test]
    fn a_commit_as_quick_as_a_round_trip_does_not_wait() {
        let ended = Instant::now();
        let f = Followers::after(50, 50, Duration::from_micros(300), ended);
        assert_eq!(f.pause(50, ended), None);
    }

    #[test]
    fn a_lone_caller_never_waits_for_itself() {
        let ended = Instant::now();
        // One command answered, nothing queued: its next command alone is all that is expected.
        let f = Followers::after(1, 0, 8 * MS, ended);
        assert_eq!(f.pause(1, ended), None);
    }

    #[test]
    fn a_caller_that_comes_back_late_does_not_wait() {
        let ended = Instant::now();
        let f = Followers::after(20, 0, 8 * MS, ended);
        // A sensor's next reading, a second later.
        assert_eq!(f.pause(1, ended + 1000 * MS), None);
    }
}
