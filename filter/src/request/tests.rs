use super::*;
use crate::test_support::*;
// The same tests run natively and, under Node, compiled to wasm32.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn dns_authority_is_routed_rewritten_and_retried() {
    let c = config("{}");
    let mut m = membership();
    let mut h = get(CLUSTER.as_bytes());
    assert!(matches!(run(&c, &mut m, &mut h), Verdict::Continue(_)));
    assert_eq!(h.text("x-dnslb-cluster").unwrap(), CLUSTER);
    assert_eq!(h.text(AUTHORITY).unwrap(), "backend.test:8080");
    assert_eq!(
        h.text("x-dnslb-endpoint").unwrap(),
        "127.0.0.2:8080,127.0.0.3:8080,127.0.0.4:8080"
    );
    assert_eq!(h.text(MAX_RETRIES).unwrap(), "2");
    assert_eq!(h.text(RETRY_ON).unwrap(), RETRY_ON_IDEMPOTENT);
    assert_eq!(h.count_of(Counter::Rewrites), 1);
    let mut h = get(CLUSTER.as_bytes());
    run(&c, &mut m, &mut h);
    assert!(h
        .text("x-dnslb-endpoint")
        .unwrap()
        .starts_with("127.0.0.3:8080,"));
}

#[test]
fn a_retried_request_asks_for_a_refresh() {
    let c = config("{}");
    let mut m = membership();
    let mut h = get(CLUSTER.as_bytes());
    let Verdict::Continue(pending) = run(&c, &mut m, &mut h) else {
        panic!()
    };
    let answered = |upstream: &str| {
        let mut r = FakeHost::with(&[]);
        r.upstream = Some(upstream.into());
        on_response_headers(&mut r, &pending, &c, &keys());
        r.refreshes
    };
    assert!(answered("127.0.0.2:8080").is_empty());
    assert_eq!(answered("127.0.0.3:8080"), [CLUSTER]);
    // Without a pick (plain authority) there is nothing to refresh.
    let mut h = get(b"plain.test");
    let Verdict::Continue(pending) = run(&c, &mut m, &mut h) else {
        panic!()
    };
    let mut r = FakeHost::with(&[]);
    r.upstream = Some("10.0.0.1:80".into());
    on_response_headers(&mut r, &pending, &c, &keys());
    assert!(r.refreshes.is_empty());
}

#[test]
fn post_retries_only_when_the_request_was_not_sent() {
    let mut h = FakeHost::with(&[(":method", b"POST"), (":authority", CLUSTER.as_bytes())]);
    run(&config("{}"), &mut membership(), &mut h);
    assert_eq!(h.text(RETRY_ON).unwrap(), RETRY_ON_ANY);
    let mut h = get(CLUSTER.as_bytes());
    run(&config(r#"{"retries": 0}"#), &mut membership(), &mut h);
    assert!(h.text(RETRY_ON).is_none());
    assert_eq!(h.text("x-dnslb-endpoint").unwrap(), "127.0.0.2:8080");
}

#[test]
fn client_headers_cannot_steer() {
    let mut h = FakeHost::with(&[
        (":authority", b"plain.test"),
        ("x-dnslb-endpoint", b"10.9.9.9:80"),
        ("X-Dnslb-Cluster", b"evil"),
        ("x-other", b"kept"),
        ("x-envoy-max-retries", b"9"),
    ]);
    run(&config("{}"), &mut membership(), &mut h);
    let names: Vec<_> = h.headers.iter().map(|(k, _)| k.as_str()).collect();
    // Retry headers of a request dnslb does not route are Envoy's business.
    assert_eq!(names, [":authority", "x-other", "x-envoy-max-retries"]);

    let mut h = get(CLUSTER.as_bytes());
    h.headers
        .push(("x-envoy-max-retries".into(), b"9".to_vec()));
    h.headers.push(("x-envoy-retry-on".into(), b"5xx".to_vec()));
    h.headers
        .push(("x-dnslb-endpoint".into(), b"10.9.9.9:80".to_vec()));
    run(&config(r#"{"retries": 1}"#), &mut membership(), &mut h);
    assert_eq!(h.text(MAX_RETRIES).unwrap(), "1");
    assert!(!h.text("x-dnslb-endpoint").unwrap().contains("10.9.9.9"));
}

#[test]
fn aliases_route_plain_authorities() {
    let c = config(r#"{"aliases": {"backend:8080": "dns+backend.test:8080"}}"#);
    let mut h = get(b"Backend:8080");
    run(&c, &mut membership(), &mut h);
    assert_eq!(h.text("x-dnslb-cluster").unwrap(), CLUSTER);
    assert_eq!(h.text(AUTHORITY).unwrap(), "Backend:8080");
}

#[test]
fn bad_input_gets_a_short_4xx() {
    let c = config("{}");
    for (authority, status, why) in [
        (&b"dns+backend.test:0"[..], 400, "\"0\""),
        (b"dns+:80", 400, "empty name"),
        (b"srv+", 400, "empty name"),
        (b"dns+a\xffb:80", 400, "UTF-8"),
        (
            b"dns+unknown.test:80",
            404,
            "unknown upstream dns+unknown.test:80",
        ),
        (
            b"dns+empty.test:80",
            503,
            "no members for dns+empty.test:80",
        ),
    ] {
        let mut h = get(authority);
        assert_eq!(run(&c, &mut membership(), &mut h), Verdict::Stop);
        let (got, body) = h.reply.clone().unwrap();
        assert_eq!(got, status, "{body}");
        assert!(body.starts_with("dnslb: ") && body.contains(why), "{body}");
        assert!(h.text("x-dnslb-endpoint").is_none());
    }
    // Before the first EDS update an unknown upstream is Envoy's to route.
    let mut h = get(b"dns+unknown.test:80");
    assert!(matches!(
        run(&c, &mut WorkerMembership::default(), &mut h),
        Verdict::Continue(_)
    ));
    assert!(h.text("x-dnslb-endpoint").is_none());
}

#[test]
fn hash_affinity_is_sticky_per_key() {
    let c = config(r#"{"affinity": {"mode": "hash", "key": "header:x-user"}}"#);
    let mut m = membership();
    let pick = |m: &mut WorkerMembership, user: &[u8]| {
        let mut h = get(CLUSTER.as_bytes());
        h.headers.push(("x-user".into(), user.to_vec()));
        run(&c, m, &mut h);
        h.text("x-dnslb-endpoint").unwrap()
    };
    let first = pick(&mut m, b"alice");
    for _ in 0..5 {
        assert_eq!(pick(&mut m, b"alice"), first);
    }
    let users: std::collections::HashSet<String> = (0..50)
        .map(|i| pick(&mut m, format!("u{i}").as_bytes())[..14].to_string())
        .collect();
    assert_eq!(users.len(), 3, "keys spread over all members");
    let c = config(r#"{"affinity": {"mode": "hash"}}"#);
    let mut h = get(CLUSTER.as_bytes());
    run(&c, &mut m, &mut h);
    assert_eq!(h.count_of(Counter::PicksHash), 1);
}

#[test]
fn cookie_affinity_sticks_and_fails_over() {
    let c = cookie_config();
    let mut m = membership();
    // No cookie: a round-robin pick and a cookie for whoever answered.
    let mut h = get(CLUSTER.as_bytes());
    let Verdict::Continue(pending) = run(&c, &mut m, &mut h) else {
        panic!()
    };
    assert_eq!(h.count_of(Counter::AffinityMisses), 1);
    let set = respond(&c, &pending, "127.0.0.3:8080").unwrap();
    assert!(set.contains("HttpOnly; SameSite=Lax"), "{set}");
    let value = cookie_value(&set);

    // With it: that endpoint first, then its failover chain; no new cookie.
    for _ in 0..3 {
        let mut h = get(CLUSTER.as_bytes());
        h.headers
            .push(("cookie".into(), format!("a=b; dnslb={value}").into_bytes()));
        let Verdict::Continue(pending) = run(&c, &mut m, &mut h) else {
            panic!()
        };
        assert!(h
            .text("x-dnslb-endpoint")
            .unwrap()
            .starts_with("127.0.0.3:8080,"));
        assert_eq!(h.count_of(Counter::AffinityHits), 1);
        assert!(respond(&c, &pending, "127.0.0.3:8080").is_none());
        // The retry landed elsewhere: the cookie follows it.
        assert!(respond(&c, &pending, "127.0.0.4:8080").is_some());
    }

    // Its endpoint leaves: a new pick, counted as a failover.
    m.replace(
        "v2".into(),
        vec![(
            CLUSTER.into(),
            vec![member("127.0.0.2:8080"), member("127.0.0.4:8080")],
        )],
    );
    let mut h = get(CLUSTER.as_bytes());
    h.headers
        .push(("cookie".into(), format!("dnslb={value}").into_bytes()));
    let Verdict::Continue(_) = run(&c, &mut m, &mut h) else {
        panic!()
    };
    assert_eq!(h.count_of(Counter::AffinityFailovers), 1);
    assert!(!h.text("x-dnslb-endpoint").unwrap().contains("127.0.0.3"));

    // Strict mode answers 503 instead.
    let strict = config(r#"{"affinity": {"mode": "cookie", "strict": true}}"#);
    let mut h = get(CLUSTER.as_bytes());
    h.headers
        .push(("cookie".into(), format!("dnslb={value}").into_bytes()));
    assert_eq!(run(&strict, &mut m, &mut h), Verdict::Stop);
    assert_eq!(h.reply.unwrap().0, 503);
}

#[test]
fn bad_cookies_are_ignored_or_refused() {
    let c = cookie_config();
    let mut m = membership();
    let (foreign, expired) = foreign_and_expired();
    // Sealed by the version-1 codec for 127.0.0.2:8080 of CLUSTER, expiry 5000.
    let v1 = "AQAAAAAAABOIBoCJD3I1biKfpxyi6w1HcSYZ2TIHqr4";
    for bad in ["garbage", foreign.as_str(), expired.as_str(), v1] {
        let mut h = get(CLUSTER.as_bytes());
        h.headers
            .push(("cookie".into(), format!("dnslb={bad}").into_bytes()));
        let Verdict::Continue(pending) = run(&c, &mut m, &mut h) else {
            panic!("{bad}")
        };
        assert_eq!(h.count_of(Counter::CookiesRejected), 1, "{bad}");
        // A new pick, and a new cookie even from the endpoint it named.
        assert_eq!(h.count_of(Counter::PicksRoundRobin), 1, "{bad}");
        assert!(respond(&c, &pending, "127.0.0.2:8080").is_some(), "{bad}");
    }
    // Two cookies of our name (in one header or two): which one? 400.
    let mut h = get(CLUSTER.as_bytes());
    h.headers.push(("cookie".into(), b"dnslb=a".to_vec()));
    h.headers.push(("cookie".into(), b"dnslb=b".to_vec()));
    assert_eq!(run(&c, &mut m, &mut h), Verdict::Stop);
    assert!(h.reply.unwrap().1.contains("more than once"));
    let mut h = get(CLUSTER.as_bytes());
    h.headers.push((
        "cookie".into(),
        format!("dnslb={}", "A".repeat(2000)).into_bytes(),
    ));
    assert_eq!(run(&c, &mut m, &mut h), Verdict::Stop);
    assert!(h.reply.unwrap().1.contains("oversized"));
}

#[test]
fn status_path_answers_allowed_sources_only() {
    let c = config("{}");
    let mut m = membership();
    let mut h = FakeHost::with(&[(":path", b"/dnslb/status?x=1"), (":authority", b"any")]);
    assert_eq!(run(&c, &mut m, &mut h), Verdict::Stop);
    let (status, body) = h.reply.clone().unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["eds_version"], "v1");
    assert_eq!(v["upstreams"][0]["cluster"], CLUSTER);
    assert_eq!(v["upstreams"][0]["members"][1]["address"], "127.0.0.3:8080");
    let mut h = FakeHost::with(&[(":path", b"/dnslb/status")]);
    h.source = Some("10.1.1.1".parse().unwrap());
    assert_eq!(run(&c, &mut m, &mut h), Verdict::Stop);
    assert_eq!(h.reply.unwrap().0, 403);
}
