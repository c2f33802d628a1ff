use super::*;

fn up(spec: &str) -> Upstream {
    spec.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn a(entries: &[(&str, HostResult)]) -> RoundResults {
    RoundResults {
        a: entries
            .iter()
            .map(|(h, r)| (h.to_string(), r.clone()))
            .collect(),
        srv: HashMap::new(),
    }
}

/// `addr` of each served member, draining ones suffixed with " (draining)".
fn served(state: &DiscoveryState, cluster: &str) -> Vec<String> {
    state.members()[cluster]
        .members()
        .iter()
        .map(|m| {
            let mark = if m.draining { " (draining)" } else { "" };
            format!("{}{mark}", m.addr)
        })
        .collect()
}

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn no_drain() -> Policy {
    Policy {
        drain: Duration::ZERO,
        ..Policy::default()
    }
}

/// A state watching `dns+a.test:80` alone under `policy`.
fn only_a(policy: Policy) -> DiscoveryState {
    DiscoveryState::with_policy([up("dns+a.test:80")], policy)
}

#[test]
fn dedupes_hosts_and_specs() {
    let state = DiscoveryState::new([
        up("dns+a.test:80"),
        up("dns+a.test:81"),
        up("dns+A.test.:80"),
        up("dns+b.test:80"),
        up("srv+_x._tcp.a.test"),
    ]);
    assert_eq!(state.upstreams().count(), 4);
    assert_eq!(
        state.hosts().into_iter().collect::<Vec<_>>(),
        ["a.test", "b.test"]
    );
    assert_eq!(
        state.srv_names().into_iter().collect::<Vec<_>>(),
        ["_x._tcp.a.test"]
    );
}

#[test]
fn success_replaces_members_per_port() {
    let mut state =
        DiscoveryState::with_policy([up("dns+a.test:80"), up("dns+a.test:81")], no_drain());
    let events = state.apply(
        &a(&[("a.test", Ok(vec![ip("10.0.0.2"), ip("10.0.0.1")]))]),
        t(0),
    );
    assert_eq!(
        served(&state, "dns+a.test:80"),
        ["10.0.0.1:80", "10.0.0.2:80"]
    );
    assert_eq!(
        served(&state, "dns+a.test:81"),
        ["10.0.0.1:81", "10.0.0.2:81"]
    );
    assert_eq!(events.len(), 2);

    // Same answer again: nothing to report.
    let events = state.apply(
        &a(&[("a.test", Ok(vec![ip("10.0.0.1"), ip("10.0.0.2")]))]),
        t(5),
    );
    assert!(events.is_empty());
    assert_eq!(state.upstreams().next().unwrap().last_success, Some(t(5)));

    let events = state.apply(&a(&[("a.test", Ok(vec![ip("10.0.0.3")]))]), t(5));
    assert_eq!(
        events[0],
        Event::MembersChanged {
            cluster: "dns+a.test:80".into(),
            added: vec!["10.0.0.3:80".parse().unwrap()],
            removed: vec![
                "10.0.0.1:80".parse().unwrap(),
                "10.0.0.2:80".parse().unwrap()
            ],
        }
    );
    assert_eq!(served(&state, "dns+a.test:80"), ["10.0.0.3:80"]);
}

#[test]
fn removed_addresses_drain_then_go() {
    let mut state = only_a(Policy {
        drain: Duration::from_secs(30),
        ..Policy::default()
    });
    state.apply(
        &a(&[("a.test", Ok(vec![ip("10.0.0.1"), ip("10.0.0.2")]))]),
        t(0),
    );
    state.apply(&a(&[("a.test", Ok(vec![ip("10.0.0.2")]))]), t(5));
    assert_eq!(
        served(&state, "dns+a.test:80"),
        ["10.0.0.1:80 (draining)", "10.0.0.2:80"]
    );
    // Still draining just before its time; gone at it.
    state.apply(&a(&[("a.test", Ok(vec![ip("10.0.0.2")]))]), t(34));
    assert_eq!(served(&state, "dns+a.test:80").len(), 2);
    let events = state.apply(&RoundResults::default(), t(35));
    assert!(matches!(&events[..], [Event::DrainEnded { addrs, .. }] if addrs.len() == 1));
    assert_eq!(served(&state, "dns+a.test:80"), ["10.0.0.2:80"]);

    // An address that comes back stops draining.
    state.apply(&a(&[("a.test", Ok(vec![ip("10.0.0.1")]))]), t(40));
    state.apply(&a(&[("a.test", Ok(vec![ip("10.0.0.2")]))]), t(45));
    assert_eq!(
        served(&state, "dns+a.test:80"),
        ["10.0.0.1:80 (draining)", "10.0.0.2:80"]
    );
}

#[test]
fn drains_of_several_clusters_end_in_deadline_order() {
    let policy = Policy {
        drain: Duration::from_secs(30),
        ..Policy::default()
    };
    let ups = [up("dns+a.test:80"), up("dns+b.test:80")];
    let mut state = DiscoveryState::with_policy(ups, policy);
    let both = |ip_a: &str, ip_b: &str| {
        a(&[
            ("a.test", Ok(vec![ip(ip_a)])),
            ("b.test", Ok(vec![ip(ip_b)])),
        ])
    };
    state.apply(&both("10.0.0.1", "10.0.0.2"), t(0));
    assert_eq!(state.next_drain_end(), None);
    // b's old address drains from 5 s, a's from 10 s: b is due first.
    state.apply(&a(&[("b.test", Ok(vec![ip("10.0.0.3")]))]), t(5));
    state.apply(&a(&[("a.test", Ok(vec![ip("10.0.0.4")]))]), t(10));
    assert_eq!(state.next_drain_end(), Some(t(35)));
    let events = state.apply(&RoundResults::default(), t(35));
    assert!(
        matches!(&events[..], [Event::DrainEnded { cluster, .. }] if cluster == "dns+b.test:80")
    );
    assert_eq!(state.next_drain_end(), Some(t(40)));
    state.apply(&RoundResults::default(), t(40));
    assert_eq!(state.next_drain_end(), None);
    assert_eq!(served(&state, "dns+a.test:80"), ["10.0.0.4:80"]);
    assert_eq!(served(&state, "dns+b.test:80"), ["10.0.0.3:80"]);
}

#[test]
fn unanswered_questions_keep_last_good_and_mark_stale() {
    let mut state = only_a(no_drain());
    state.apply(&a(&[("a.test", Ok(vec![ip("10.0.0.1")]))]), t(0));
    for (i, error) in [
        ResolveError::Timeout,
        ResolveError::ServFail,
        ResolveError::Refused,
    ]
    .into_iter()
    .enumerate()
    {
        let at = t(5 + i as u64);
        let events = state.apply(&a(&[("a.test", Err(error))]), at);
        assert!(matches!(&events[..], [Event::KeptLastGood { kept: 1, .. }]));
        assert_eq!(served(&state, "dns+a.test:80"), ["10.0.0.1:80"]);
        let s = state.upstreams().next().unwrap();
        assert_eq!(s.last_success, Some(t(0)));
        assert_eq!(s.stale_since, Some(t(5)), "since the first failure");
        assert!(matches!(
            s.last_attempt,
            Some(Attempt { outcome: Outcome::Failed(_), at: when }) if when == at
        ));
    }
    state.apply(&a(&[("a.test", Ok(vec![ip("10.0.0.1")]))]), t(9));
    assert_eq!(state.upstreams().next().unwrap().stale_since, None);
}

#[test]
fn max_staleness_drops_stale_members() {
    let mut state = only_a(Policy {
        max_stale: Some(Duration::from_secs(60)),
        ..no_drain()
    });
    state.apply(&a(&[("a.test", Ok(vec![ip("10.0.0.1")]))]), t(0));
    state.apply(&a(&[("a.test", Err(ResolveError::Timeout))]), t(10));
    state.apply(&a(&[("a.test", Err(ResolveError::Timeout))]), t(69));
    assert_eq!(served(&state, "dns+a.test:80"), ["10.0.0.1:80"]);
    let events = state.apply(&a(&[("a.test", Err(ResolveError::Timeout))]), t(70));
    assert!(matches!(events[0], Event::StaleExpired { since, .. } if since == t(10)));
    assert!(served(&state, "dns+a.test:80").is_empty());
}

#[test]
fn nothing_there_empties_only_when_confirmed() {
    let mut state = only_a(Policy {
        empty_after: 3,
        ..no_drain()
    });
    state.apply(&a(&[("a.test", Ok(vec![ip("10.0.0.1")]))]), t(0));
    state.apply(&a(&[("a.test", Err(ResolveError::NxDomain))]), t(1));
    // A transient failure does not break the streak; a real answer does.
    state.apply(&a(&[("a.test", Err(ResolveError::Timeout))]), t(2));
    state.apply(&a(&[("a.test", Ok(vec![]))]), t(3));
    assert_eq!(served(&state, "dns+a.test:80"), ["10.0.0.1:80"]);
    let events = state.apply(&a(&[("a.test", Err(ResolveError::NoRecords))]), t(4));
    assert!(matches!(events[0], Event::Emptied { answers: 3, .. }));
    assert!(served(&state, "dns+a.test:80").is_empty());

    state.apply(&a(&[("a.test", Ok(vec![ip("10.0.0.1")]))]), t(5));
    state.apply(&a(&[("a.test", Err(ResolveError::NxDomain))]), t(6));
    state.apply(&a(&[("a.test", Ok(vec![ip("10.0.0.1")]))]), t(7));
    state.apply(&a(&[("a.test", Err(ResolveError::NxDomain))]), t(8));
    state.apply(&a(&[("a.test", Err(ResolveError::NxDomain))]), t(9));
    assert_eq!(served(&state, "dns+a.test:80"), ["10.0.0.1:80"]);
}

#[test]
fn srv_answers_combine_records_and_target_addresses() {
    let mut state = DiscoveryState::new([up("srv+_h._tcp.api.test")]);
    let srv = |priority, port, target: &str| SrvRecord {
        priority,
        weight: 1,
        port,
        target: target.into(),
    };
    let mut results = a(&[
        ("a.test", Ok(vec![ip("10.0.0.1")])),
        ("b.test", Err(ResolveError::NxDomain)),
    ]);
    results.srv.insert(
        "_h._tcp.api.test".into(),
        Ok(vec![
            srv(1, 80, "a.test"),
            srv(1, 81, "a.test"),
            srv(2, 90, "b.test"),
        ]),
    );
    state.apply(&results, t(0));
    assert_eq!(
        served(&state, "srv+_h._tcp.api.test"),
        ["10.0.0.1:80", "10.0.0.1:81"]
    );

    // A target whose question went unanswered fails the whole answer: last good kept.
    results
        .a
        .insert("b.test".into(), Err(ResolveError::Timeout));
    results
        .srv
        .insert("_h._tcp.api.test".into(), Ok(vec![srv(2, 90, "b.test")]));
    let events = state.apply(&results, t(5));
    assert!(matches!(&events[..], [Event::KeptLastGood { kept: 2, .. }]));
}

#[test]
fn oversized_answers_are_capped_and_reported() {
    let mut state = only_a(Policy {
        max_records: 2,
        ..no_drain()
    });
    let flood = || (1..=5).map(|i| ip(&format!("10.0.0.{i}"))).collect();
    let events = state.apply(&a(&[("a.test", Ok(flood()))]), t(0));
    assert!(events.contains(&Event::Capped {
        cluster: "dns+a.test:80".into(),
        answered: 5,
        kept: 2
    }));
    assert_eq!(
        served(&state, "dns+a.test:80"),
        ["10.0.0.1:80", "10.0.0.2:80"]
    );
    assert_eq!(state.upstreams().next().unwrap().capped_from, Some(5));

    // Every capped answer counts; one within the cap clears the mark, not the count.
    state.apply(&a(&[("a.test", Ok(flood()))]), t(5));
    let events = state.apply(&a(&[("a.test", Ok(vec![ip("10.0.0.9")]))]), t(10));
    assert!(!events.iter().any(|e| matches!(e, Event::Capped { .. })));
    let upstream = state.upstreams().next().unwrap();
    assert_eq!(upstream.capped_from, None);
    assert_eq!(upstream.capped_answers, 2);
    assert_eq!(served(&state, "dns+a.test:80"), ["10.0.0.9:80"]);
}

#[test]
fn readiness_needs_an_answer_for_every_upstream() {
    let mut state = DiscoveryState::new([up("dns+a.test:80"), up("dns+b.test:80")]);
    state.apply(&a(&[("a.test", Ok(vec![ip("10.0.0.1")]))]), t(0));
    assert!(!state.all_resolved_once());
    state.apply(&a(&[("b.test", Err(ResolveError::ServFail))]), t(0));
    assert!(!state.all_resolved_once());
    state.apply(&a(&[("b.test", Ok(vec![ip("10.0.0.2")]))]), t(1));
    assert!(state.all_resolved_once());
}
