//! The shim's `/status` page as a person sees it: rendered by headless Chromium (Debian's
//! `chromium`, installed by `just chromium`) while a real Envoy is connected, and reloading
//! itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::PathBuf,
    process::Command,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use dnslb_tests::{
    free_port, http_get, wait_until, ChildGuard, DnsServer, Shim, Stack, StackOptions, TempDir,
};

const WAIT: Duration = Duration::from_secs(30);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// Headless Chromium with a fresh profile in `profile`.
fn chromium(profile: &TempDir) -> Command {
    let mut command = Command::new("chromium");
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    command
}

/// The DOM of `url` after Chromium rendered it.
fn chromium_dump(url: &str) -> String {
    let profile = TempDir::new("chromium").unwrap();
    let output = chromium(&profile)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium must be installed (just chromium)");
    assert!(output.status.success(), "chromium failed: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn status_page_shows_endpoints_draining_and_connected_envoy() {
    let port = free_port(ip(2).into()).unwrap();
    let (a, b) = (
        SocketAddr::new(ip(2).into(), port),
        SocketAddr::new(ip(3).into(), port),
    );
    let cluster = format!("dns+backend.test:{port}");
    let opts = StackOptions {
        interval: Duration::from_secs(1),
        ..StackOptions::new(
            vec![cluster.clone()],
            vec![a, b],
            PathBuf::from(env!("CARGO_BIN_EXE_fake-backend")),
        )
    };
    let stack = Stack::start(opts, |dns| dns.set_a("backend.test", &[ip(2), ip(3)])).unwrap();
    stack
        .envoy
        .wait_cluster_hosts(&cluster, &[a, b], WAIT)
        .unwrap();

    // One address leaves DNS: it is shown draining.
    stack.dns.set_a("backend.test", &[ip(2)]);
    let status = || stack.shim.status().unwrap();
    wait_until(
        "the removed address to drain",
        WAIT,
        Duration::from_millis(100),
        || {
            let s = status();
            let draining = s["upstreams"][0]["members"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["draining"] == true));
            // Envoy ACKed the assignment that carries the draining member.
            let acked = s["clients"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["acked"]["EDS"] == s["versions"]["endpoints"])
            });
            Ok(draining && acked)
        },
    )
    .unwrap();

    let eds_version = status()["versions"]["endpoints"]
        .as_str()
        .unwrap()
        .to_string();
    let dom = chromium_dump(&format!("http://{}/status", stack.shim.admin));
    for needle in [
        format!("<h3 class=\"upstream\">{cluster}</h3>"),
        format!("<td>{a}</td><td>backend.test</td><td>0</td><td>-</td><td><span class=\"ok\">in DNS</span>"),
        format!("<td>{b}</td><td>backend.test</td><td>0</td><td>-</td><td><span class=\"warn\">DRAINING</span>"),
        "last resolution <span class=\"ok\">ok</span>".to_string(),
        "<td>dnslb-demo</td><td>ADS</td>".to_string(),
        format!("<code>{eds_version}</code>"),
        "<p id=\"summary\">1 upstream: <span class=\"ok\">all in DNS</span> · 1 endpoint draining</p>".to_string(),
    ] {
        assert!(dom.contains(&needle), "{needle}\nnot in the rendered page:\n{dom}");
    }
}

/// Serves `page` to every connection on a free loopback port, counting the requests.
fn counting_server(page: String) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 4096];
            let n = stream.read(&mut request).unwrap_or(0);
            if request[..n].starts_with(b"GET /status ") {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    (addr, hits)
}

#[test]
fn status_page_summarizes_and_reloads_itself() {
    let port = free_port(ip(2).into()).unwrap();
    let dns = DnsServer::start().unwrap();
    dns.set_a("backend.test", &[ip(2), ip(3)]);
    let dir = TempDir::new("status-page").unwrap();
    // No answer at all (SERVFAIL) until later: never resolved.
    dns.set_servfail(true);
    let shim = Shim::start(
        &[format!("dns+backend.test:{port}")],
        dns.addr(),
        Duration::from_secs(1),
        dir.path(),
        &[],
    )
    .unwrap();
    let page = http_get(shim.admin, "/status", &[]).unwrap().body;
    let dom = chromium_dump(&format!("http://{}/status", shim.admin));
    for needle in [
        "<p id=\"summary\">1 upstream: <span class=\"warn\">1 not resolved yet</span> \
         · 0 endpoints draining</p>",
        "<span class=\"warn\">not resolved yet</span>",
        "nameservers: ",
        "<a href=\"/http_sd\">/http_sd</a>",
    ] {
        assert!(
            dom.contains(needle),
            "{needle}\nnot in the rendered page:\n{dom}"
        );
    }
    assert!(!dom.contains("STALE"), "{dom}");

    // Answers come: the summary turns.
    dns.set_servfail(false);
    shim.wait_status("the upstream to resolve", WAIT, |s| {
        s["upstreams"][0]["endpoints"]
            .as_array()
            .is_some_and(|e| e.len() == 2)
    })
    .unwrap();
    let dom = chromium_dump(&format!("http://{}/status", shim.admin));
    let all_in_dns = "1 upstream: <span class=\"ok\">all in DNS</span> · 0 endpoints draining";
    assert!(dom.contains(all_in_dns), "{dom}");

    // The page reloads itself: Chromium, left on it, asks for it again and again.
    let (addr, hits) = counting_server(page);
    let profile = TempDir::new("chromium").unwrap();
    let mut open = chromium(&profile);
    open.arg("--remote-debugging-port=0")
        .arg(format!("http://{addr}/status"));
    let browser = ChildGuard::spawn("chromium", open, dir.path()).unwrap();
    wait_until(
        "Chromium to load the page a third time",
        WAIT,
        Duration::from_millis(200),
        || {
            browser.ensure_running()?;
            Ok(hits.load(Ordering::SeqCst) >= 3)
        },
    )
    .unwrap();
    drop(browser);
    // `/` links to the page.
    let index = chromium_dump(&format!("http://{}/", shim.admin));
    assert!(index.contains("<a href=\"/status\">/status</a>"), "{index}");
}
