use super::*;
use crate::model::member::Member;
use crate::model::settings::UpstreamSettings;

fn membership(host: &str, addrs: &[&str]) -> Membership {
    let ips: Vec<std::net::SocketAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
    let members: Vec<Member> = ips
        .iter()
        .map(|addr| Member {
            priority: 0,
            addr: *addr,
            hostname: host.to_string(),
            weight: None,
            draining: false,
        })
        .collect();
    Membership::new(members, UpstreamSettings::default(), None)
}

fn members(entries: &[(&str, &str, &[&str])]) -> BTreeMap<String, Membership> {
    entries
        .iter()
        .map(|(name, host, addrs)| (name.to_string(), membership(host, addrs)))
        .collect()
}

/// `dns+a.test:80` at 10.0.0.1 and `dns+b.test:80` at 10.0.0.2.
fn a_and_b() -> BTreeMap<String, Membership> {
    members(&[
        ("dns+a.test:80", "a.test", &["10.0.0.1:80"]),
        ("dns+b.test:80", "b.test", &["10.0.0.2:80"]),
    ])
}

#[test]
fn builds_one_cluster_and_one_assignment_per_upstream() {
    let snap = Snapshot::build(members(&[
        ("dns+a.test:80", "a.test", &["10.0.0.1:80"]),
        ("dns+b.test:81", "b.test", &[]),
    ]));
    for t in ResourceType::ALL {
        let names: Vec<&String> = snap.resources(t).by_name.keys().collect();
        assert_eq!(names, ["dns+a.test:80", "dns+b.test:81"]);
        assert!(snap
            .resources(t)
            .by_name
            .values()
            .all(|v| v.resource.type_url == t.type_url()));
    }
}

#[test]
fn versions_are_content_derived_and_stable() {
    let a = Snapshot::build(members(&[
        ("dns+a.test:80", "a.test", &["10.0.0.1:80", "10.0.0.2:80"]),
        ("dns+b.test:80", "b.test", &["10.0.0.3:80"]),
    ]));
    // Same content, different address order: same versions.
    let b = Snapshot::build(members(&[
        ("dns+b.test:80", "b.test", &["10.0.0.3:80"]),
        ("dns+a.test:80", "a.test", &["10.0.0.2:80", "10.0.0.1:80"]),
    ]));
    assert_eq!(a, b);
    assert!(!a.versions_differ(&b));
    assert_eq!(a.version(ResourceType::Cluster).len(), 16);

    // A membership change moves EDS only; the cluster set is unchanged.
    let c = Snapshot::build(members(&[
        ("dns+a.test:80", "a.test", &["10.0.0.1:80"]),
        ("dns+b.test:80", "b.test", &["10.0.0.3:80"]),
    ]));
    assert_eq!(moved(&a, &c), (false, true));
    assert!(a.versions_differ(&c));

    // A new upstream moves both.
    let d = Snapshot::build(members(&[
        ("dns+a.test:80", "a.test", &["10.0.0.1:80", "10.0.0.2:80"]),
        ("dns+b.test:80", "b.test", &["10.0.0.3:80"]),
        ("dns+c.test:80", "c.test", &[]),
    ]));
    assert_eq!(moved(&d, &a), (true, true));
}

/// Whether the (CDS, EDS) versions differ between `a` and `b`.
fn moved(a: &Snapshot, b: &Snapshot) -> (bool, bool) {
    let differs = |kind| a.version(kind) != b.version(kind);
    (
        differs(ResourceType::Cluster),
        differs(ResourceType::Endpoint),
    )
}

#[test]
fn version_is_a_known_value_for_a_known_input() {
    // Pins the hash recipe: replicas of different builds must still agree.
    let empty = Snapshot::empty();
    assert_eq!(
        empty.version(ResourceType::Cluster),
        "e3b0c44298fc1c14" // sha256("")
    );
    let one = Snapshot::build(members(&[("dns+a.test:80", "a.test", &["10.0.0.1:80"])]));
    assert_eq!(one.version(ResourceType::Cluster), "a8a0fcac82689527");
    assert_eq!(one.version(ResourceType::Endpoint), "2ebb7b0794f06f7f");
}

#[test]
fn an_update_equals_a_full_build_and_shares_what_did_not_change() {
    let before = a_and_b();
    let old = Snapshot::build(before.clone());
    let mut after = before.clone();
    after.insert(
        "dns+b.test:80".into(),
        membership("b.test", &["10.0.0.3:80", "10.0.0.2:80"]),
    );
    let changed = ("dns+b.test:80".to_string(), after["dns+b.test:80"].clone());
    let new = old.updated([changed]).unwrap();
    assert_eq!(new, Snapshot::build(after));
    // The unchanged cluster's resources are the same allocation; the cluster set is too,
    // since only endpoints moved.
    let a = "dns+a.test:80";
    let eds = |s: &Snapshot| Arc::clone(&s.resources(ResourceType::Endpoint).by_name[a]);
    assert!(Arc::ptr_eq(&eds(&old), &eds(&new)));
    assert!(Arc::ptr_eq(
        &old.resources(ResourceType::Cluster).by_name,
        &new.resources(ResourceType::Cluster).by_name
    ));
    assert_ne!(
        old.version(ResourceType::Endpoint),
        new.version(ResourceType::Endpoint)
    );
    // Nothing new: no snapshot.
    let same = ("dns+a.test:80".to_string(), before["dns+a.test:80"].clone());
    assert!(new.updated([same]).is_none());
}

#[test]
fn a_withdrawn_cluster_leaves_every_set_and_the_change_log() {
    let both = a_and_b();
    let old = Snapshot::build(both.clone());
    let gone = ["dns+b.test:80".to_string()];
    let new = old.updated_withdrawing([], &gone).unwrap();
    let mut only_a = both;
    only_a.remove("dns+b.test:80");
    assert_eq!(new, Snapshot::build(only_a));
    for kind in [ResourceType::Cluster, ResourceType::Endpoint] {
        let since = new
            .resources(kind)
            .changed_since(old.resources(kind).generation());
        assert_eq!(since, Some(BTreeSet::from(["dns+b.test:80"])));
    }
    // Withdrawing what is not served changes nothing.
    assert!(new.updated_withdrawing([], &gone).is_none());
}

#[test]
fn changed_since_follows_descent_and_knows_when_it_cannot() {
    let base = Snapshot::build(a_and_b());
    let eds = |s: &Snapshot| s.resources(ResourceType::Endpoint).clone();
    let change = |s: &Snapshot, name: &str, ip: &str| {
        let host = &name[4..10];
        s.updated([(name.to_string(), membership(host, &[ip]))])
            .unwrap()
    };
    let seen = eds(&base).generation();
    assert_eq!(eds(&base).changed_since(seen), Some(BTreeSet::new()));
    // Two updates made apart from one base: each knows only its own change.
    let left = change(&base, "dns+a.test:80", "10.0.0.9:80");
    let right = change(&base, "dns+b.test:80", "10.0.0.9:80");
    let names = |s: &Snapshot, seen| {
        eds(s)
            .changed_since(seen)
            .map(|n| n.into_iter().map(str::to_string).collect::<Vec<_>>())
    };
    assert_eq!(names(&left, seen), Some(vec!["dns+a.test:80".to_string()]));
    assert_eq!(names(&right, seen), Some(vec!["dns+b.test:80".to_string()]));
    // Not descended from what was seen: unknown, so the caller checks everything.
    assert_eq!(names(&right, eds(&left).generation()), None);
    let further = change(&left, "dns+b.test:80", "10.0.0.8:80");
    assert_eq!(names(&further, seen).map(|n| n.len()), Some(2));
}

#[test]
fn type_urls_round_trip() {
    for t in ResourceType::ALL {
        assert_eq!(ResourceType::from_type_url(t.type_url()), Some(t));
    }
    assert_eq!(
        ResourceType::from_type_url("type.googleapis.com/envoy.config.listener.v3.Listener"),
        None
    );
}
