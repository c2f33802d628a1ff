use super::*;
use crate::admin::status::{MemberReport, ReloadReport, ShimReport, Versions};

fn upstream(cluster: &str, members: Vec<MemberReport>) -> UpstreamReport {
    UpstreamReport {
        cluster: cluster.into(),
        host: cluster.into(),
        endpoints: members
            .iter()
            .filter(|m| !m.draining)
            .map(|m| m.address.clone())
            .collect(),
        members,
        last_resolution: Some(ResolutionReport {
            at_unix_ms: 9_000,
            result: "ok",
            error: None,
        }),
        last_success_unix_ms: Some(9_000),
        stale_since_unix_ms: None,
        empty_answers: 0,
        capped_from: None,
        removed_at_unix_ms: None,
    }
}

fn report(upstreams: Vec<UpstreamReport>) -> StatusReport {
    StatusReport {
        generated_at_unix_ms: 7_210_000,
        shim: ShimReport {
            version: "0.1.0 (commit abc)",
            started_at_unix_ms: 10_000,
            nameservers: vec![],
            start_interval_ms: 5_000,
            drain_ms: 1_500,
        },
        versions: Versions {
            clusters: "c1".into(),
            plain_clusters: "c2".into(),
            plain_delta_clusters: "c3".into(),
            endpoints: "e1".into(),
        },
        connected_streams: 0,
        upstreams,
        clients: vec![],
        last_reload: None,
    }
}

#[test]
fn summary_settings_refresh_and_links() {
    let member = |address: &str, draining| MemberReport {
        address: address.into(),
        hostname: "a.test".into(),
        priority: 0,
        level: 0,
        weight: None,
        draining,
        drain_until_unix_ms: draining.then_some(7_211_000),
    };
    let ok = upstream("dns+a.test:80", vec![member("10.0.0.1:80", false)]);
    let stale = UpstreamReport {
        stale_since_unix_ms: Some(9_500),
        ..upstream("dns+b.test:80", vec![member("10.0.0.2:80", false)])
    };
    let empty = upstream(
        "dns+c.test:80",
        vec![member("10.0.0.3:80", true), member("10.0.0.4:80", true)],
    );
    let never = UpstreamReport {
        last_success_unix_ms: None,
        stale_since_unix_ms: Some(9_000),
        last_resolution: Some(ResolutionReport {
            at_unix_ms: 9_000,
            result: "servfail",
            error: None,
        }),
        ..upstream("dns+d.test:80", vec![])
    };
    let html = render(&report(vec![ok, stale, empty, never]));
    for needle in [
        "<p id=\"summary\">4 upstreams: <span class=\"warn\">1 stale</span>, \
         <span class=\"warn\">1 empty</span>, <span class=\"warn\">1 not resolved yet</span> \
         · 2 endpoints draining</p>",
        "<meta http-equiv=\"refresh\" content=\"5\">",
        "<a href=\"/status.json\">",
        "<a href=\"/metrics\">",
        "<a href=\"/http_sd\">",
        "0.1.0 (commit abc) · up 2.0 h · interval 5 s at start · \
         nameservers: the system resolver · drain 1.5 s",
        "<td>10.0.0.1:80</td><td>a.test</td><td>0</td><td>-</td>\
         <td><span class=\"ok\">in DNS</span></td>",
        "servfail</span> 2.0 h ago · <span class=\"warn\">not resolved yet</span></p>",
    ] {
        assert!(html.contains(needle), "{needle} not in {html}");
    }
    assert_eq!(html.matches("STALE").count(), 1, "{html}");
    let all_fine = render(&report(vec![upstream(
        "dns+a.test:80",
        vec![member("10.0.0.1:80", false)],
    )]));
    assert!(all_fine
        .contains("1 upstream: <span class=\"ok\">all in DNS</span> · 0 endpoints draining"));
    assert!(index().contains("<a href=\"/status\">/status</a>"));
}

#[test]
fn shows_members_drain_stale_and_escapes() {
    let report = StatusReport {
        generated_at_unix_ms: 10_000,
        upstreams: vec![UpstreamReport {
            cluster: "srv+_h._tcp.a.test".into(),
            host: "_h._tcp.a.test".into(),
            endpoints: vec!["10.0.0.1:80".into()],
            members: vec![
                MemberReport {
                    address: "10.0.0.1:80".into(),
                    hostname: "a.test".into(),
                    priority: 10,
                    level: 0,
                    weight: Some(5),
                    draining: false,
                    drain_until_unix_ms: None,
                },
                MemberReport {
                    address: "10.0.0.2:80".into(),
                    hostname: "<b>".into(),
                    priority: 20,
                    level: 1,
                    weight: Some(0),
                    draining: true,
                    drain_until_unix_ms: Some(40_000),
                },
            ],
            last_resolution: Some(ResolutionReport {
                at_unix_ms: 8_000,
                result: "servfail",
                error: None,
            }),
            last_success_unix_ms: Some(1_000),
            stale_since_unix_ms: Some(5_000),
            empty_answers: 0,
            capped_from: None,
            removed_at_unix_ms: Some(9_000),
        }],
        last_reload: Some(ReloadReport {
            at_unix_ms: 4_000,
            result: "error",
            error: Some("config key interval: invalid value \"<soon>\"".into()),
            restart_required: vec![],
        }),
        ..report(vec![])
    };
    let html = render(&report);
    for needle in [
        "srv+_h._tcp.a.test",
        "servfail</span> 2.0 s ago",
        "STALE for 5.0 s",
        "<td>10.0.0.1:80</td><td>a.test</td><td title=\"SRV priority 10\">0</td><td>5</td>",
        "<td title=\"SRV priority 20\">1</td><td>0</td>",
        "DRAINING</span> (30.0 s left)",
        "removed from the configuration 1.0 s ago",
        "reload 6.0 s ago: <span class=\"bad\">error: config key interval: invalid value &quot;&lt;soon&gt;&quot;",
        "&lt;b&gt;",
        "<p id=\"no-clients\">none</p>",
    ] {
        assert!(html.contains(needle), "{needle} not in {html}");
    }
}
