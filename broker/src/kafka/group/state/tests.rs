//! The state machine on a virtual clock: `t0 + n` seconds, never a sleep.

use super::*;

const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(30);

fn params(member: &str, protocols: &[(&str, &str)]) -> JoinParams {
    JoinParams {
        member_id: member.to_string(),
        instance_id: None,
        client_id: "client".to_string(),
        client_host: "127.0.0.1".to_string(),
        session_timeout: SESSION,
        rebalance_timeout: REBALANCE,
        protocol_type: "consumer".to_string(),
        protocols: protocols
            .iter()
            .map(|(n, m)| (n.to_string(), Bytes::from(m.to_string())))
            .collect(),
        require_known_member_id: true,
    }
}

fn range(member: &str) -> JoinParams {
    params(member, &[("range", "meta")])
}

/// KIP-394 handshake: the first join gets a member id to come back with.
fn member_id(g: &mut Groups, group: &str, now: Instant) -> String {
    match g.join(group, range(""), now) {
        Joined::MemberIdRequired(id) => id,
        other => panic!("expected MEMBER_ID_REQUIRED, got {other:?}"),
    }
}

fn done(j: Joined) -> JoinAnswer {
    match j {
        Joined::Step(Step::Done(a)) => a,
        other => panic!("expected an answer, got {other:?}"),
    }
}

/// One member forms a group: join, sync as leader, stable.
fn solo(g: &mut Groups, t0: Instant) -> String {
    let a = member_id(g, "g", t0);
    let answer = done(g.join("g", range(&a), t0));
    assert_eq!(answer.generation, 1);
    assert_eq!(answer.leader, a);
    assert_eq!(answer.members.len(), 1);
    assert_eq!(
        g.sync("g", &a, None, 1, vec![(a.clone(), Bytes::from("all"))], t0),
        Step::Done(Bytes::from("all"))
    );
    assert_eq!(g.get("g").unwrap().state, GroupState::Stable);
    a
}

fn secs(t0: Instant, n: u64) -> Instant {
    t0 + Duration::from_secs(n)
}

#[test]
fn first_join_requires_a_member_id_and_unknown_ids_are_refused() {
    let mut g = Groups::new(1);
    let t0 = Instant::now();
    let id = member_id(&mut g, "g", t0);
    assert!(id.starts_with("client-"));
    assert_eq!(
        g.join("g", range("made-up"), t0),
        Joined::Step(Step::Failed(ResponseError::UnknownMemberId))
    );
    // Before v4 the id is handed out with the answer.
    let mut old = range("");
    old.require_known_member_id = false;
    let answer = done(g.join("other", old, t0));
    assert!(!answer.member_id.is_empty());
    // A handed-out id lapses after a session timeout.
    g.tick(secs(t0, 11));
    assert_eq!(
        g.join("g", range(&id), secs(t0, 11)),
        Joined::Step(Step::Failed(ResponseError::UnknownMemberId))
    );
}

#[test]
fn a_single_member_forms_a_stable_group() {
    let mut g = Groups::new(1);
    let t0 = Instant::now();
    let a = solo(&mut g, t0);
    assert_eq!(g.heartbeat("g", &a, None, 1, secs(t0, 5)), Ok(()));
    assert_eq!(
        g.heartbeat("g", &a, None, 0, secs(t0, 5)),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.heartbeat("g", "nobody", None, 1, secs(t0, 5)),
        Err(ResponseError::UnknownMemberId)
    );
    // Heartbeats keep the session alive past its timeout.
    for n in [14, 23, 32] {
        g.tick(secs(t0, n));
        assert_eq!(g.heartbeat("g", &a, None, 1, secs(t0, n)), Ok(()));
    }
}

#[test]
fn a_second_member_triggers_a_rebalance_and_a_new_generation() {
    let mut g = Groups::new(1);
    let t0 = Instant::now();
    let a = solo(&mut g, t0);
    let b = member_id(&mut g, "g", secs(t0, 1));
    // b waits for a to rejoin.
    assert_eq!(g.join("g", range(&b), secs(t0, 1)), Joined::Wait(b.clone()));
    assert_eq!(g.poll_join("g", &b, secs(t0, 1)), Step::Wait);
    assert_eq!(g.get("g").unwrap().state, GroupState::PreparingRebalance);
    // a learns about it from its heartbeat and rejoins; that completes the round.
    assert_eq!(
        g.heartbeat("g", &a, None, 1, secs(t0, 2)),
        Err(ResponseError::RebalanceInProgress)
    );
    let leader = done(g.join("g", range(&a), secs(t0, 3)));
    assert_eq!(leader.generation, 2);
    assert_eq!(leader.leader, a, "the leader stays the leader");
    assert_eq!(leader.members.len(), 2);
    let Step::Done(follower) = g.poll_join("g", &b, secs(t0, 3)) else {
        panic!("b was not answered");
    };
    assert_eq!(follower.generation, 2);
    assert!(follower.members.is_empty(), "only the leader sees members");
    // The follower's sync waits for the leader's.
    assert_eq!(g.sync("g", &b, None, 2, vec![], secs(t0, 3)), Step::Wait);
    let assignments = vec![
        (a.clone(), Bytes::from("p0,p1")),
        (b.clone(), Bytes::from("p2,p3")),
    ];
    assert_eq!(
        g.sync("g", &a, None, 2, assignments, secs(t0, 4)),
        Step::Done(Bytes::from("p0,p1"))
    );
    assert_eq!(
        g.poll_sync("g", &b, 2, secs(t0, 4)),
        Step::Done(Bytes::from("p2,p3"))
    );
    assert_eq!(g.get("g").unwrap().state, GroupState::Stable);
}

#[test]
fn leaving_rebalances_the_rest_and_the_last_one_out_empties_the_group() {
    let mut g = Groups::new(1);
    let t0 = Instant::now();
    let a = solo(&mut g, t0);
    let b = member_id(&mut g, "g", t0);
    assert_eq!(g.join("g", range(&b), t0), Joined::Wait(b.clone()));
    done(g.join("g", range(&a), t0));
    g.sync("g", &a, None, 2, vec![], t0);
    // b leaves: a is told to rejoin and gets generation 3 alone.
    assert_eq!(g.leave("g", &b, None, secs(t0, 1)), Ok(()));
    assert_eq!(
        g.leave("g", &b, None, secs(t0, 1)),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        g.heartbeat("g", &a, None, 2, secs(t0, 2)),
        Err(ResponseError::RebalanceInProgress)
    );
    let answer = done(g.join("g", range(&a), secs(t0, 2)));
    assert_eq!((answer.generation, answer.members.len()), (3, 1));
    g.sync("g", &a, None, 3, vec![], secs(t0, 2));
    assert_eq!(g.leave("g", &a, None, secs(t0, 3)), Ok(()));
    let group = g.get("g").unwrap();
    assert_eq!((group.state, group.generation), (GroupState::Empty, 4));
    assert_eq!(
        group.emptied_at(),
        Some(secs(t0, 3)),
        "retention counts from here"
    );
    assert!(g.delete("g"));
}

#[test]
fn a_silent_member_times_out_and_the_others_rebalance() {
    let mut g = Groups::new(1);
    let t0 = Instant::now();
    let a = solo(&mut g, t0);
    let b = member_id(&mut g, "g", t0);
    assert_eq!(g.join("g", range(&b), t0), Joined::Wait(b.clone()));
    done(g.join("g", range(&a), t0));
    g.sync("g", &a, None, 2, vec![], t0);
    g.sync("g", &b, None, 2, vec![], t0);
    // a keeps heartbeating; b falls silent.
    for n in [4, 8] {
        g.tick(secs(t0, n));
        assert_eq!(g.heartbeat("g", &a, None, 2, secs(t0, n)), Ok(()));
    }
    assert_eq!(g.next_deadline(), Some(t0 + SESSION));
    g.tick(secs(t0, 10));
    assert!(!g.get("g").unwrap().members.contains_key(&b));
    assert_eq!(
        g.heartbeat("g", &a, None, 2, secs(t0, 11)),
        Err(ResponseError::RebalanceInProgress)
    );
    assert_eq!(done(g.join("g", range(&a), secs(t0, 11))).generation, 3);
}

#[test]
fn members_that_do_not_rejoin_within_the_rebalance_timeout_are_dropped() {
    let mut g = Groups::new(1);
    let t0 = Instant::now();
    let a = solo(&mut g, t0);
    let b = member_id(&mut g, "g", t0);
    assert_eq!(g.join("g", range(&b), t0), Joined::Wait(b.clone()));
    // a keeps heartbeating (so its session stays alive) but never rejoins.
    for n in (3..30).step_by(3) {
        g.tick(secs(t0, n));
        let _ = g.heartbeat("g", &a, None, 1, secs(t0, n));
        assert_eq!(g.poll_join("g", &b, secs(t0, n)), Step::Wait);
    }
    g.tick(secs(t0, 30));
    let Step::Done(answer) = g.poll_join("g", &b, secs(t0, 30)) else {
        panic!("the round did not end at the rebalance timeout");
    };
    assert_eq!(answer.generation, 2);
    assert_eq!(answer.leader, b, "the old leader is gone, b leads");
    assert_eq!(
        g.heartbeat("g", &a, None, 1, secs(t0, 31)),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn the_protocol_is_one_every_member_supports() {
    let mut g = Groups::new(1);
    let t0 = Instant::now();
    let a = member_id(&mut g, "g", t0);
    let b = member_id(&mut g, "g", t0);
    let both = [("cooperative-sticky", "a"), ("range", "a")];
    let alone = done(g.join("g", params(&a, &both), t0));
    assert_eq!(alone.protocol, "cooperative-sticky");
    assert_eq!(alone.members[0].2, Bytes::from("a"));
    // b only speaks range: the next round must pick range.
    assert!(matches!(
        g.join("g", params(&b, &[("range", "b")]), t0),
        Joined::Wait(_)
    ));
    let answer = done(g.join("g", params(&a, &both), t0));
    assert_eq!(answer.protocol, "range");
    // Nothing in common is refused.
    let c = member_id(&mut g, "g", t0);
    assert_eq!(
        g.join("g", params(&c, &[("roundrobin", "c")]), t0),
        Joined::Step(Step::Failed(ResponseError::InconsistentGroupProtocol))
    );
}

#[test]
fn an_unchanged_follower_rejoining_a_stable_group_keeps_its_generation() {
    let mut g = Groups::new(1);
    let t0 = Instant::now();
    let a = solo(&mut g, t0);
    let b = member_id(&mut g, "g", t0);
    assert!(matches!(g.join("g", range(&b), t0), Joined::Wait(_)));
    done(g.join("g", range(&a), t0));
    g.sync("g", &a, None, 2, vec![], t0);
    let again = done(g.join("g", range(&b), t0));
    assert_eq!(again.generation, 2);
    assert_eq!(g.get("g").unwrap().state, GroupState::Stable);
    // With new metadata (cooperative: owned partitions changed) it is a new round.
    assert!(matches!(
        g.join("g", params(&b, &[("range", "owns p2")]), t0),
        Joined::Wait(_)
    ));
}

#[test]
fn static_members_take_over_their_old_membership() {
    let mut g = Groups::new(1);
    let t0 = Instant::now();
    let mut p = range("");
    p.instance_id = Some("sensor-7".to_string());
    // Static members get their id without the KIP-394 round trip.
    let first = done(g.join("g", p.clone(), t0));
    g.sync("g", &first.member_id, None, 1, vec![], t0);
    let second = done(g.join("g", p, secs(t0, 1)));
    assert_ne!(first.member_id, second.member_id);
    assert_eq!(g.get("g").unwrap().members.len(), 1);
    assert_eq!(
        g.heartbeat("g", &first.member_id, Some("sensor-7"), 1, secs(t0, 1)),
        Err(ResponseError::FencedInstanceId)
    );
    assert_eq!(g.leave("g", "", Some("sensor-7"), secs(t0, 2)), Ok(()));
    assert!(g.get("g").unwrap().members.is_empty());
}

#[test]
fn commits_are_checked_against_membership() {
    let mut g = Groups::new(1);
    let t0 = Instant::now();
    // No members: a self-assigning consumer may commit.
    assert_eq!(g.check_commit("g", "", None, -1, t0), Ok(()));
    let a = solo(&mut g, t0);
    assert_eq!(g.check_commit("g", &a, None, 1, t0), Ok(()));
    assert_eq!(
        g.check_commit("g", &a, None, 7, t0),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.check_commit("g", "", None, -1, t0),
        Err(ResponseError::UnknownMemberId)
    );
    assert!(!g.delete("g"), "a group with members is not deleted");
}

#[test]
fn groups_are_bounded_in_size() {
    let mut g = Groups::new(1);
    let t0 = Instant::now();
    for _ in 0..MAX_GROUP_SIZE {
        member_id(&mut g, "g", t0);
    }
    assert_eq!(
        g.join("g", range(""), t0),
        Joined::Step(Step::Failed(ResponseError::GroupMaxSizeReached))
    );
    // Handed-out ids lapse, and so does the limit.
    g.tick(secs(t0, 11));
    member_id(&mut g, "g", secs(t0, 11));
}

#[test]
fn session_timeouts_outside_the_allowed_range_are_refused() {
    let mut g = Groups::new(1);
    let mut p = range("");
    p.session_timeout = Duration::from_millis(100);
    assert_eq!(
        g.join("g", p, Instant::now()),
        Joined::Step(Step::Failed(ResponseError::InvalidSessionTimeout))
    );
}

const DELAY: Duration = Duration::from_secs(3);

fn delayed() -> Groups {
    Groups::new(1).with_initial_rebalance_delay(DELAY)
}

#[test]
fn the_first_join_waits_for_the_initial_delay() {
    let mut g = delayed();
    let t0 = Instant::now();
    let a = member_id(&mut g, "g", t0);
    assert_eq!(g.join("g", range(&a), t0), Joined::Wait(a.clone()));
    assert_eq!(g.next_deadline(), Some(t0 + DELAY));
    g.tick(secs(t0, 2));
    assert_eq!(g.poll_join("g", &a, secs(t0, 2)), Step::Wait);
    g.tick(secs(t0, 3));
    let Step::Done(answer) = g.poll_join("g", &a, secs(t0, 3)) else {
        panic!("the delay passed and the round did not end");
    };
    assert_eq!((answer.generation, answer.members.len()), (1, 1));
}

#[test]
fn members_starting_together_form_the_group_in_one_rebalance() {
    let mut g = delayed();
    let t0 = Instant::now();
    let ids: Vec<String> = (0..5).map(|_| member_id(&mut g, "g", t0)).collect();
    // One joins every second; each newcomer earns another wait when the current one ends.
    for (n, id) in ids.iter().enumerate() {
        let at = secs(t0, n as u64);
        g.tick(at);
        assert_eq!(g.join("g", range(id), at), Joined::Wait(id.clone()));
    }
    // Waits: 0–3 (newcomers) → 3–6 (newcomers at 3 and 4) → 6–9 (none) → done at 9.
    for n in 5..9 {
        g.tick(secs(t0, n));
        assert_eq!(g.get("g").unwrap().state, GroupState::PreparingRebalance);
    }
    g.tick(secs(t0, 9));
    for id in &ids {
        let Step::Done(answer) = g.poll_join("g", id, secs(t0, 9)) else {
            panic!("{id} was not answered");
        };
        assert_eq!(answer.generation, 1, "one rebalance for the whole fleet");
    }
    assert_eq!(g.get("g").unwrap().members.len(), 5);
}

#[test]
fn the_initial_delay_stays_within_the_rebalance_timeout() {
    let mut g = delayed();
    let t0 = Instant::now();
    let first = member_id(&mut g, "g", t0);
    assert!(matches!(g.join("g", range(&first), t0), Joined::Wait(_)));
    // A newcomer every 2 s would extend the wait forever; the rebalance timeout (30 s) caps it.
    let mut n = 0;
    loop {
        n += 2;
        let at = secs(t0, n);
        g.tick(at);
        if g.get("g").unwrap().state != GroupState::PreparingRebalance {
            break;
        }
        assert!(n <= 30, "still waiting at {n} s");
        let id = member_id(&mut g, "g", at);
        assert!(matches!(g.join("g", range(&id), at), Joined::Wait(_)));
    }
    assert_eq!(g.get("g").unwrap().generation, 1);
}

#[test]
fn a_group_that_rebalanced_before_gets_one_delay_without_extensions() {
    let mut g = delayed();
    let t0 = Instant::now();
    let a = member_id(&mut g, "g", t0);
    g.join("g", range(&a), t0);
    g.tick(secs(t0, 3));
    g.poll_join("g", &a, secs(t0, 3));
    assert_eq!(g.leave("g", &a, None, secs(t0, 4)), Ok(()));
    assert_eq!(g.get("g").unwrap().state, GroupState::Empty);
    // Generation 2 now: a newcomer during the wait does not extend it.
    let b = member_id(&mut g, "g", secs(t0, 10));
    let c = member_id(&mut g, "g", secs(t0, 10));
    assert!(matches!(
        g.join("g", range(&b), secs(t0, 10)),
        Joined::Wait(_)
    ));
    assert!(matches!(
        g.join("g", range(&c), secs(t0, 12)),
        Joined::Wait(_)
    ));
    g.tick(secs(t0, 13));
    let Step::Done(answer) = g.poll_join("g", &c, secs(t0, 13)) else {
        panic!("the round did not end after one delay");
    };
    assert_eq!(
        (answer.generation, g.get("g").unwrap().members.len()),
        (3, 2)
    );
}

#[test]
fn a_rebalance_of_a_live_group_is_not_delayed() {
    let mut g = delayed();
    let t0 = Instant::now();
    let a = member_id(&mut g, "g", t0);
    g.join("g", range(&a), t0);
    g.tick(secs(t0, 3));
    g.poll_join("g", &a, secs(t0, 3));
    g.sync("g", &a, None, 1, vec![], secs(t0, 3));
    let b = member_id(&mut g, "g", secs(t0, 4));
    assert!(matches!(
        g.join("g", range(&b), secs(t0, 4)),
        Joined::Wait(_)
    ));
    // a rejoins: everyone is in, the round ends at once.
    assert_eq!(done(g.join("g", range(&a), secs(t0, 4))).generation, 2);
}

#[test]
fn the_number_of_groups_is_bounded() {
    let mut g = Groups::new(1);
    let t0 = Instant::now();
    for i in 0..MAX_GROUPS {
        member_id(&mut g, &format!("g{i}"), t0);
    }
    assert_eq!(
        g.join("one-too-many", range(""), t0),
        Joined::Step(Step::Failed(ResponseError::GroupMaxSizeReached))
    );
    // Groups already held are still served.
    member_id(&mut g, "g0", t0);
}
