//! `/status`: the status report as one HTML page a person reads at a glance, and the
//! index at `/`. Pure; no scripts (the page reloads itself with a meta refresh), so it
//! shows the same in a browser, `curl` or a headless dump.

use std::fmt::Write;

use crate::admin::status::{ResolutionReport, StatusReport, UpstreamReport};

/// Seconds between the page's own reloads.
pub const REFRESH_SECONDS: u32 = 5;

const LINKS: &str =
    "<a href=\"/status.json\">/status.json</a> · <a href=\"/metrics\">/metrics</a> · \
<a href=\"/http_sd\">/http_sd</a> · <a href=\"/readyz\">/readyz</a>";

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em}\
table{border-collapse:collapse;margin:.3em 0 1.2em}\
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}\
.bad{color:#b00;font-weight:bold}.warn{color:#a60}.ok{color:#070}";

/// `/`: what the admin port serves.
pub fn index() -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>xds-shim</title>\
         <style>{STYLE}</style></head><body><h1>xds-shim</h1><p>{}</p>\
         <p><a href=\"/status\">/status</a> · {LINKS} · <a href=\"/healthz\">/healthz</a></p>\
         </body></html>\n",
        esc(crate::VERSION)
    )
}

pub fn render(report: &StatusReport) -> String {
    let now = report.generated_at_unix_ms;
    let shim = &report.shim;
    let nameservers = if shim.nameservers.is_empty() {
        "the system resolver".to_string()
    } else {
        esc(&shim.nameservers.join(", "))
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\"><title>xds-shim status</title>\
         <style>{STYLE}</style></head><body><h1>xds-shim</h1><p>{LINKS}</p>\
         <p id=\"shim\">{} · up {} · interval {} at start · nameservers: {nameservers} · \
         drain {} · this page reloads every {REFRESH_SECONDS} s</p>{}\
         <p>CDS version <code id=\"cds-version\">{}</code> (plain CDS <code>{}</code>, \
         plain Delta CDS <code>{}</code>) · EDS version \
         <code id=\"eds-version\">{}</code> · {} connected stream(s)</p><h2>Upstreams</h2>",
        esc(shim.version),
        age(now, shim.started_at_unix_ms),
        millis(shim.start_interval_ms),
        millis(shim.drain_ms),
        summary(report),
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

/// `4 upstreams: 1 stale, 1 empty, 1 not resolved yet · 2 endpoints draining`, the
/// counts at zero left out.
fn summary(report: &StatusReport) -> String {
    let upstreams = &report.upstreams;
    let resolved = |u: &&UpstreamReport| u.last_success_unix_ms.is_some();
    let count = |f: &dyn Fn(&&UpstreamReport) -> bool| upstreams.iter().filter(f).count();
    let problems: Vec<String> = [
        (
            count(&|u| resolved(u) && u.stale_since_unix_ms.is_some()),
            "stale",
        ),
        (count(&|u| resolved(u) && u.endpoints.is_empty()), "empty"),
        (count(&|u| !resolved(u)), "not resolved yet"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("<span class=\"warn\">{n} {what}</span>"))
    .collect();
    let draining: usize = upstreams
        .iter()
        .map(|u| u.members.iter().filter(|m| m.draining).count())
        .sum();
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let mut line = format!(
        "{} upstream{}: {}",
        upstreams.len(),
        plural(upstreams.len()),
        if problems.is_empty() {
            "<span class=\"ok\">all in DNS</span>".to_string()
        } else {
            problems.join(", ")
        }
    );
    let _ = write!(line, " · {draining} endpoint{} draining", plural(draining));
    format!("<p id=\"summary\">{line}</p>")
}

fn upstream_section(out: &mut String, upstream: &UpstreamReport, now: u64) {
    let _ = write!(
        out,
        "<h3 class=\"upstream\">{}</h3><p>{}",
        esc(&upstream.cluster),
        resolution(upstream.last_resolution.as_ref(), now)
    );
    // Stale means "serving the last good answer": an upstream never resolved has none.
    if upstream.last_success_unix_ms.is_none() {
        out.push_str(" · <span class=\"warn\">not resolved yet</span></p>");
        return;
    }
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
        "<table class=\"endpoints\"><tr><th>endpoint</th><th>hostname</th>\
         <th>level</th><th>weight</th><th>state</th></tr>",
    );
    for m in &upstream.members {
        let state = match m.drain_until_unix_ms {
            Some(until) => format!(
                "<span class=\"warn\">DRAINING</span> ({} left)",
                age(until, now)
            ),
            // The shim knows DNS, not whether the backend answers: Envoy's health does.
            None => "<span class=\"ok\">in DNS</span>".to_string(),
        };
        // SRV rows: Envoy's level, as Envoy and the filter's status show it.
        let (weight, level) = match m.weight {
            Some(w) => (
                w.to_string(),
                format!("<td title=\"SRV priority {}\">{}</td>", m.priority, m.level),
            ),
            None => ("-".to_string(), format!("<td>{}</td>", m.level)),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td>{level}<td>{weight}</td><td>{state}</td></tr>",
            esc(&m.address),
            esc(&m.hostname),
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

/// A duration in milliseconds as `500 ms`, `5 s`, `1.5 s`.
fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// `later - earlier` as `1.2 s` / `3 min`.
fn age(later: u64, earlier: u64) -> String {
    let ms = later.saturating_sub(earlier);
    if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min", ms / 60_000)
    } else {
        format!("{:.1} h", ms as f64 / 3_600_000.0)
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
mod tests;
