use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};

use super::*;
use crate::discovery::reconfigure::apply;
use crate::discovery::{DiscoveryState, RoundResults};
use crate::model::settings::LbPolicy;
use crate::model::upstream::Upstream;

fn source(args: &[&str]) -> Source {
    let args = std::iter::once("xds-shim").chain(args.iter().copied());
    let matches = Cli::command().try_get_matches_from(args).unwrap();
    let cli = Cli::from_arg_matches(&matches).unwrap();
    Source::new(cli, &matches)
}

struct File(std::path::PathBuf);

impl File {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "xds-shim-reload-{}-{name}.yaml",
            std::process::id()
        ));
        File(path)
    }

    fn write(&self, text: &str) -> &Self {
        std::fs::write(&self.0, text).unwrap();
        self
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn flags_still_win_over_the_file_on_reload() {
    let file = File::new("flags");
    file.write("upstreams: [dns+a.test:80]\ninterval: 2s\ndrain: 1s\n");
    let source = source(&["--config", file.path(), "--interval", "7s"]);
    let first = source.load().unwrap();
    assert_eq!(first.interval, Duration::from_secs(7));
    assert_eq!(first.policy.drain, Duration::from_secs(1));

    file.write("upstreams: [dns+a.test:80, dns+b.test:80]\ninterval: 3s\ndrain: 4s\n");
    let second = source.load().unwrap();
    assert_eq!(second.interval, Duration::from_secs(7), "the flag wins");
    assert_eq!(
        second.policy.drain,
        Duration::from_secs(4),
        "the file fills in"
    );
    assert_eq!(second.upstreams.len(), 2);
}

#[test]
fn settings_bound_at_start_are_kept_and_named() {
    let file = File::new("bound");
    let source = source(&["--config", file.path()]);
    file.write("upstreams: [dns+a.test:80]\n");
    let running = source.load().unwrap();
    file.write(
        "upstreams: [dns+b.test:80]\nxds_listen: 127.0.0.1:9\nadmin_listen: 127.0.0.1:8\n\
         nameservers: [10.0.0.53]\nipv6: true\ndns_timeout: 1s\nmax_in_flight: 8\n\
         log_format: json\ninterval: 1s\ndrain: 1s\nca_file: /x.pem\nttl_floor: 1s\n",
    );
    let planned = plan(&running, &source.load().unwrap());
    assert_eq!(
        planned.restart_required,
        [
            "nameservers",
            "ipv6",
            "dns_timeout",
            "max_in_flight",
            "xds_listen",
            "admin_listen",
            "log_format"
        ]
    );
    assert_eq!(planned.config.xds_listen, running.xds_listen);
    assert_eq!(planned.config.nameservers, running.nameservers);
    assert_eq!(planned.config.log_format, running.log_format);
    assert_eq!(planned.config.resolver, running.resolver);
    assert_eq!(planned.config.interval, Duration::from_secs(1));
    assert_eq!(planned.config.policy.drain, Duration::from_secs(1));
    assert_eq!(planned.config.ca_file, "/x.pem");
    assert_eq!(planned.config.ttl_floor, Some(Duration::from_secs(1)));
    let upstreams: Vec<&Upstream> = planned
        .config
        .upstreams
        .iter()
        .map(|c| &c.upstream)
        .collect();
    assert_eq!(upstreams, [&"dns+b.test:80".parse().unwrap()]);
    assert!(plan(&running, &running).restart_required.is_empty());
}

fn config(file: &str) -> Config {
    let file = file::parse(file).unwrap();
    source(&[]).cli.to_config_with(&file, |_| false).unwrap()
}

#[test]
fn apply_adds_removes_and_changes_upstreams() {
    let old = config(
        "upstreams: [dns+a.test:80, dns+gone.test:80, https://dns+tls.test:443]\n\
         drain: 30s\n",
    );
    let mut state = DiscoveryState::from_wanted(&old.wanted());
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
    let ip = "10.0.0.1".parse().unwrap();
    let results = RoundResults {
        a: ["a.test", "gone.test", "tls.test"]
            .map(|h| (h.to_string(), Ok(vec![ip])))
            .into(),
        srv: Default::default(),
    };
    state.apply(&results, at);

    let new = config(
        "upstreams:\n  - {spec: dns+a.test:80, connect_timeout: 2s, lb_policy: maglev}\n  \
         - https://dns+tls.test:443\n  - dns+new.test:80\nca_file: /other.pem\n\
         drain: 10s\n",
    );
    let applied = apply(&mut state, &new.wanted(), at);
    assert_eq!(applied.added, ["dns+new.test:80"]);
    assert_eq!(applied.removed, ["dns+gone.test:80"]);
    assert_eq!(applied.changed, ["dns+a.test:80", "dns+tls.test:443"]);
    assert_eq!(
        applied.touched,
        [
            "dns+a.test:80",
            "dns+gone.test:80",
            "dns+new.test:80",
            "dns+tls.test:443"
        ]
    );
    let a = state.membership("dns+a.test:80").unwrap();
    assert_eq!(a.settings.connect_timeout, Some(Duration::from_secs(2)));
    assert_eq!(a.settings.lb_policy, LbPolicy::Maglev);
    assert_eq!(a.members().len(), 1, "members stay");
    let tls = state.membership("dns+tls.test:443").unwrap().tls.unwrap();
    assert_eq!(tls.ca_file, "/other.pem");
    // The new drain policy applies to the removed upstream's members.
    let gone = state.membership("dns+gone.test:80").unwrap();
    assert!(gone.members().iter().all(|m| m.draining));
    assert_eq!(state.next_drain_end(), Some(at + Duration::from_secs(10)));
    assert!(state.hosts().contains("new.test") && !state.hosts().contains("gone.test"));

    // The same configuration again: nothing added, removed or changed.
    let again = apply(&mut state, &new.wanted(), at);
    assert!(again.added.is_empty() && again.removed.is_empty() && again.changed.is_empty());
}

#[tokio::test]
async fn a_bad_file_keeps_the_running_configuration_and_counts_an_error() {
    let file = File::new("bad");
    file.write("upstreams: [dns+a.test:80]\n");
    let source = source(&["--config", file.path()]);
    let mut running = source.load().unwrap();
    let metrics = Metrics::default();
    let (refresh, mut requests) = mpsc::channel(1);

    file.write("upstreams:\n  - {spec: dns+a.test:80, interval: soon}\n");
    let err = reload(&source, &mut running, &refresh, &metrics)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("upstreams[0].interval") && err.contains("\"soon\""),
        "{err}"
    );
    assert!(requests.try_recv().is_err(), "nothing reached the loop");
    let last = metrics.last_reload().unwrap();
    assert_eq!(last.error, Some(err));
    let state = DiscoveryState::new([]);
    let text = metrics.render(&state, 0);
    assert!(text.contains("dnslb_config_reloads_total{result=\"error\"} 1"));

    // A good file reaches the loop; the reload counts once the loop answered.
    file.write("upstreams: [dns+a.test:80, dns+b.test:80]\n");
    let refresh_loop = tokio::spawn(async move {
        let request = requests.recv().await.unwrap();
        assert_eq!(request.wanted.upstreams.len(), 2);
        request.reply.send(Applied::default()).unwrap();
    });
    reload(&source, &mut running, &refresh, &metrics)
        .await
        .unwrap();
    refresh_loop.await.unwrap();
    assert_eq!(running.upstreams.len(), 2);
    assert_eq!(metrics.last_reload().unwrap().error, None);
    let text = metrics.render(&state, 0);
    assert!(text.contains("dnslb_config_reloads_total{result=\"ok\"} 1"));
}
