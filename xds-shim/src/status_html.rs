//! `/status`: the status report as one HTML page a person reads at a glance. Pure; no
//! scripts, so it shows the same in a browser, `curl` or a headless dump.

use std::fmt::Write;

use crate::status::{ResolutionReport, StatusReport, UpstreamReport};

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em}\
table{border-collapse:collapse;margin:.3em 0 1.2em}\
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}\
.bad{color:#b00;font-weight:bold}.warn{color:#a60}.ok{color:#070}";

pub fn render(report: &StatusReport) -> String {
    let now = report.generated_at_unix_ms;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>xds-shim status</title>\
         <style>{STYLE}</style></head><body><h1>xds-shim</h1>\
         <p>CDS version <code id=\"cds-version\">{}</code> (plain CDS <code>{}</code>, \
         plain Delta CDS <code>{}</code>) · EDS version \
         <code id=\"eds-version\">{}</code> · {} connected stream(s)</p><h2>Upstreams</h2>",
        esc(&report.versions.clusters),
        esc(&report.versions.plain_clusters),
        esc(&report.versions.plain_delta_clusters),
        esc(&report.versions.endpoints),
        report.connected_streams
    );
    if let Some(reload) = &report.last_reload {
        let result = match &reload.error {
            None => "<span class=\"ok\">ok</span>".to_string(),
            Some(error) => format!("<span class=\"bad\">error: {}</span>", esc(error)),
        };
        let _ = write!(
            out,
            "<p id=\"last-reload\">last configuration reload {} ago: {result}</p>",
            age(now, reload.at_unix_ms)
        );
    }
    for upstream in &report.upstreams {
        upstream_section(&mut out, upstream, now);
    }
    out.push_str("<h2>Connected clients</h2>");
    if report.clients.is_empty() {
        out.push_str("<p id=\"no-clients\">none</p>");
    } else {
        out.push_str(
            "<table id=\"clients\"><tr><th>node</th><th>service</th><th>peer</th>\
             <th>ACKed CDS</th><th>ACKed EDS</th><th>last NACK</th></tr>",
        );
        for client in &report.clients {
            let acked = |t| client.acked.get(t).map_or("-", String::as_str);
            let nack = client.last_nack.as_ref().map_or("-".to_string(), |n| {
                format!(
                    "<span class=\"bad\">{} {} {} ago: {}</span>",
                    n.r#type,
                    esc(&n.rejected_version),
                    age(now, n.at_unix_ms),
                    esc(&n.message)
                )
            });
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td>\
                 <td><code>{}</code></td><td>{nack}</td></tr>",
                esc(&client.node),
                client.service,
                esc(client.peer.as_deref().unwrap_or("-")),
                esc(acked("CDS")),
                esc(acked("EDS")),
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</body></html>\n");
    out
}

fn upstream_section(out: &mut String, upstream: &UpstreamReport, now: u64) {
    let _ = write!(
        out,
        "<h3 class=\"upstream\">{}</h3><p>{}",
        esc(&upstream.cluster),
        resolution(upstream.last_resolution.as_ref(), now)
    );
    if let Some(since) = upstream.stale_since_unix_ms {
        let _ = write!(
            out,
            " · <span class=\"warn stale\">STALE for {} (serving the last good answer)</span>",
            age(now, since)
        );
    }
    if upstream.empty_answers > 0 {
        let _ = write!(
            out,
            " · <span class=\"warn\">{} empty answer(s) in a row</span>",
            upstream.empty_answers
        );
    }
    if let Some(total) = upstream.capped_from {
        let _ = write!(
            out,
            " · <span class=\"warn\">answer had {total} records; capped</span>"
        );
    }
    if let Some(at) = upstream.removed_at_unix_ms {
        let _ = write!(
            out,
            " · <span class=\"warn\">removed from the configuration {} ago; draining</span>",
            age(now, at)
        );
    }
    out.push_str("</p>");
    if upstream.members.is_empty() {
        out.push_str("<p class=\"bad\">no endpoints</p>");
        return;
    }
    out.push_str(
        "<table class=\"endpoints\"><tr><th>endpoint</th><th>hostname</th><th>priority</th>\
         <th>weight</th><th>state</th></tr>",
    );
    for m in &upstream.members {
        let state = match m.drain_until_unix_ms {
            Some(until) => format!(
                "<span class=\"warn\">DRAINING</span> ({} left)",
                age(until, now)
            ),
            None => "<span class=\"ok\">serving</span>".to_string(),
        };
        let weight = m.weight.map_or("-".to_string(), |w| w.to_string());
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{weight}</td><td>{state}</td></tr>",
            esc(&m.address),
            esc(&m.hostname),
            m.priority
        );
    }
    out.push_str("</table>");
}

fn resolution(last: Option<&ResolutionReport>, now: u64) -> String {
    match last {
        None => "not resolved yet".to_string(),
        Some(r) => {
            let class = if r.result == "ok" { "ok" } else { "bad" };
            format!(
                "last resolution <span class=\"{class}\">{}</span> {} ago",
                r.result,
                age(now, r.at_unix_ms)
            )
        }
    }
}

/// `later - earlier` as `1.2 s` / `3 min`.
fn age(later: u64, earlier: u64) -> String {
    let ms = later.saturating_sub(earlier);
    if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min", ms / 60_000)
    }
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{MemberReport, ReloadReport, Versions};

    #[test]
    fn shows_members_drain_stale_and_escapes() {
        let report = StatusReport {
            generated_at_unix_ms: 10_000,
            versions: Versions {
                clusters: "c1".into(),
                plain_clusters: "c2".into(),
                plain_delta_clusters: "c3".into(),
                endpoints: "e1".into(),
            },
            connected_streams: 0,
            upstreams: vec![UpstreamReport {
                cluster: "srv+_h._tcp.a.test".into(),
                host: "_h._tcp.a.test".into(),
                endpoints: vec!["10.0.0.1:80".into()],
                members: vec![
                    MemberReport {
                        address: "10.0.0.1:80".into(),
                        hostname: "a.test".into(),
                        priority: 10,
                        weight: Some(5),
                        draining: false,
                        drain_until_unix_ms: None,
                    },
                    MemberReport {
                        address: "10.0.0.2:80".into(),
                        hostname: "<b>".into(),
                        priority: 20,
                        weight: None,
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
            clients: vec![],
            last_reload: Some(ReloadReport {
                at_unix_ms: 4_000,
                result: "error",
                error: Some("config key interval: invalid value \"<soon>\"".into()),
                restart_required: vec![],
            }),
        };
        let html = render(&report);
        for needle in [
            "srv+_h._tcp.a.test",
            "servfail</span> 2.0 s ago",
            "STALE for 5.0 s",
            "<td>10.0.0.1:80</td><td>a.test</td><td>10</td><td>5</td>",
            "DRAINING</span> (30.0 s left)",
            "removed from the configuration 1.0 s ago",
            "reload 6.0 s ago: <span class=\"bad\">error: config key interval: invalid value &quot;&lt;soon&gt;&quot;",
            "&lt;b&gt;",
            "<p id=\"no-clients\">none</p>",
        ] {
            assert!(html.contains(needle), "{needle} not in {html}");
        }
    }
}
