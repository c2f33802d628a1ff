use std::time::Duration;

use super::*;

#[test]
fn parses_both_upstream_forms_and_settings() {
    let file = parse(
        "upstreams:\n  - dns+a.test:80\n  - spec: srv+_h._tcp.b.test\n    interval: 10s\n    \
         connect_timeout: 250ms\n    circuit_breakers: {max_connections: 7}\ninterval: 2s\n",
    )
    .unwrap();
    assert_eq!(file.interval.as_deref(), Some("2s"));
    let ups = upstreams(&file).unwrap();
    assert_eq!(ups[0].0.cluster_name(), "dns+a.test:80");
    assert_eq!(ups[0].1, UpstreamSettings::default());
    assert_eq!(ups[1].0.cluster_name(), "srv+_h._tcp.b.test");
    assert_eq!(ups[1].1.interval, Some(Duration::from_secs(10)));
    assert_eq!(ups[1].1.connect_timeout, Some(Duration::from_millis(250)));
    assert_eq!(ups[1].1.circuit_breakers.unwrap().max_connections, Some(7));
}

#[test]
fn ejection_budget_and_lb_policy_per_upstream() {
    let file = parse(
        "upstreams:\n  - spec: dns+a.test:80\n    lb_policy: maglev\n    \
         outlier_detection: {consecutive_local_origin_failures: 5, base_ejection_time: 2s}\n    \
         circuit_breakers: {retry_budget: {budget_percent: 20, min_retry_concurrency: 4}}\n",
    )
    .unwrap();
    let ups = upstreams(&file).unwrap();
    let settings = &ups[0].1;
    assert_eq!(settings.lb_policy, LbPolicy::Maglev);
    let ejection = settings.outlier_detection.unwrap();
    assert_eq!(ejection.consecutive_local_origin_failures, 5);
    assert_eq!(ejection.base_ejection_time, Duration::from_secs(2));
    assert_eq!(ejection.max_ejection_percent, 50);
    let budget = settings.circuit_breakers.unwrap().retry_budget.unwrap();
    assert_eq!(
        (budget.budget_percent, budget.min_retry_concurrency),
        (20, 4)
    );
    assert!(settings.health_check.is_none());

    let file = parse(
        "upstreams:\n  - spec: dns+a.test:80\n    health_check: {path: /healthz, interval: 2s}\n",
    )
    .unwrap();
    let check = upstreams(&file).unwrap()[0].1.health_check.clone().unwrap();
    assert_eq!(&*check.path, "/healthz");
    assert_eq!(check.interval, Duration::from_secs(2));
    assert_eq!(check.timeout, Duration::from_secs(1));
    assert_eq!((check.healthy_threshold, check.unhealthy_threshold), (2, 3));

    for (text, needles) in [
        (
            "  - spec: dns+a.test:80\n    health_check: {path: healthz}\n",
            &["upstreams[0].health_check.path", "healthz"][..],
        ),
        (
            "  - spec: dns+a.test:80\n    health_check: {path: /h, unhealthy_threshold: 0}\n",
            &["upstreams[0].health_check.unhealthy_threshold", "0"][..],
        ),
        (
            "  - spec: dns+a.test:80\n    health_check: {path: /h, interval: 1s, timeout: 2s}\n",
            &["upstreams[0].health_check.timeout", "2s", "interval"][..],
        ),
        (
            "  - spec: dns+a.test:80\n    lb_policy: random\n",
            &["upstreams[0]", "random"][..],
        ),
        (
            "  - spec: dns+a.test:80\n    outlier_detection: {max_ejection_percent: 101}\n",
            &["upstreams[0].outlier_detection.max_ejection_percent", "101"],
        ),
        (
            "  - spec: dns+a.test:80\n    outlier_detection: {interval: 5}\n",
            &["upstreams[0].outlier_detection.interval", "5"],
        ),
        (
            "  - spec: dns+a.test:80\n    circuit_breakers: \
             {max_retries: 3, retry_budget: {budget_percent: 20, min_retry_concurrency: 3}}\n",
            &[
                "upstreams[0].circuit_breakers",
                "retry_budget replaces max_retries",
            ],
        ),
        (
            "  - spec: dns+a.test:80\n    circuit_breakers: \
             {retry_budget: {budget_percent: 0, min_retry_concurrency: 3}}\n",
            &["budget_percent", "0"],
        ),
    ] {
        let file = parse(&format!("upstreams:\n{text}")).unwrap();
        let err = upstreams(&file).unwrap_err().to_string();
        for needle in needles {
            assert!(err.contains(needle), "{err} lacks {needle}");
        }
    }
}

#[test]
fn errors_name_key_and_value() {
    let err = parse("intervall: 5s\n").unwrap_err();
    assert!(err.contains("unknown field `intervall`"), "{err}");
    let file = parse("upstreams:\n  - spec: dns+a:80\n    colour: red\n").unwrap();
    let err = upstreams(&file).unwrap_err().to_string();
    assert!(
        err.contains("upstreams[0]") && err.contains("colour"),
        "{err}"
    );

    let file = parse("upstreams:\n  - spec: dns+a:80\n    interval: 5\n").unwrap();
    let err = upstreams(&file).unwrap_err().to_string();
    assert!(
        err.contains("upstreams[0].interval") && err.contains("\"5\""),
        "{err}"
    );
    let file = parse("upstreams: [dns+a:80, 'dns+b..c:80']\n").unwrap();
    let err = upstreams(&file).unwrap_err().to_string();
    assert!(
        err.contains("upstreams[1]") && err.contains("dns+b..c:80"),
        "{err}"
    );
}

fn tls_of(entry: &str) -> Result<TlsSettings, String> {
    let file = parse(&format!("upstreams:\n  - {entry}\n")).unwrap();
    upstreams(&file)
        .map(|mut ups| ups.remove(0).1.tls)
        .map_err(|e| e.to_string())
}

#[test]
fn tls_settings_per_upstream() {
    let tls = tls_of("{spec: 'https://srv+_h._tcp.b.test', tls: {ca_file: /ca.pem, sni: B.Test.}}")
        .unwrap();
    assert_eq!(tls.ca_file.as_deref(), Some("/ca.pem"));
    assert_eq!(
        tls.sni.as_deref(),
        Some("b.test"),
        "normalized as hosts are"
    );
    let tls = tls_of("{spec: 'https://dns+a.test:443', tls: {sni: a.example}}").unwrap();
    assert_eq!((tls.ca_file, tls.sni.as_deref()), (None, Some("a.example")));
    assert_eq!(
        tls_of("{spec: 'https://dns+a.test:443', tls: {}}"),
        Ok(TlsSettings::default())
    );
}

#[test]
fn bad_tls_settings_name_key_and_value() {
    for (entry, needles) in [
        (
            "{spec: dns+a.test:80, tls: {ca_file: /ca.pem}}",
            &[
                "upstreams[0].tls",
                "{ca_file: /ca.pem}",
                "https://dns+a.test:80",
            ][..],
        ),
        (
            "{spec: 'https://dns+a.test:443', tls: {cafile: /ca.pem}}",
            &[
                "upstreams[0].tls",
                "{cafile: /ca.pem}",
                "unknown field `cafile`",
            ],
        ),
        (
            "{spec: 'https://dns+a.test:443', tls: {ca_file: ''}}",
            &["upstreams[0].tls.ca_file", "\"\"", "empty"],
        ),
        (
            "{spec: 'https://dns+a.test:443', tls: {sni: 'a b'}}",
            &["upstreams[0].tls.sni", "\"a b\"", "not a DNS name"],
        ),
        (
            "{spec: 'https://dns+a.test:443', tls: {sni: 10.0.0.1}}",
            &["upstreams[0].tls.sni", "10.0.0.1", "IP address"],
        ),
        (
            "{spec: 'https://dns+a.test:443', tls: /ca.pem}",
            &["upstreams[0].tls", "/ca.pem", "expected a mapping"],
        ),
    ] {
        let err = tls_of(entry).unwrap_err();
        for needle in needles {
            assert!(err.contains(needle), "{entry}: {err} lacks {needle}");
        }
    }
}

#[test]
fn empty_file_is_all_defaults() {
    let file = parse("  \n").unwrap();
    assert!(file.upstreams.is_empty() && file.interval.is_none());
}
