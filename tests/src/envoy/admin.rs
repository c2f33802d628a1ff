//! Parsing of Envoy admin text output (`/clusters`, `/stats`). Pure functions.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
};

/// Per-host fields of `cluster` from `/clusters` text, keyed by host address.
///
/// Host lines look like `CLUSTER::IP:PORT::FIELD::VALUE` (IPv6 as `[::1]:80`); other lines
/// of the cluster (`CLUSTER::default_priority::...`) and of other clusters are skipped.
pub fn parse_cluster_hosts(
    clusters_text: &str,
    cluster: &str,
) -> BTreeMap<SocketAddr, BTreeMap<String, String>> {
    let prefix = format!("{cluster}::");
    let mut hosts: BTreeMap<SocketAddr, BTreeMap<String, String>> = BTreeMap::new();
    for line in clusters_text.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((host, field)) = split_host(rest) else {
            continue;
        };
        let Ok(addr) = host.parse::<SocketAddr>() else {
            continue;
        };
        let (key, value) = field.split_once("::").unwrap_or((field, ""));
        hosts
            .entry(addr)
            .or_default()
            .insert(key.to_owned(), value.to_owned());
    }
    hosts
}

/// Just the host addresses of `cluster`.
pub fn cluster_host_set(clusters_text: &str, cluster: &str) -> BTreeSet<SocketAddr> {
    parse_cluster_hosts(clusters_text, cluster)
        .into_keys()
        .collect()
}

/// Splits `HOST::rest`, where HOST may be a bracketed IPv6 address containing `::`.
fn split_host(rest: &str) -> Option<(&str, &str)> {
    let search_from = if rest.starts_with('[') {
        rest.find("]:")?
    } else {
        0
    };
    let end = search_from + rest[search_from..].find("::")?;
    Some((&rest[..end], &rest[end + 2..]))
}

/// `/stats` text (`name: value` lines) as a map.
pub fn parse_stats(stats_text: &str) -> BTreeMap<String, String> {
    stats_text
        .lines()
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTERS: &str = "\
dns+backend.test:8080::observability_name::dns+backend.test:8080
dns+backend.test:8080::default_priority::max_connections::1024
dns+backend.test:8080::added_via_api::true
dns+backend.test:8080::127.0.0.2:8080::cx_active::0
dns+backend.test:8080::127.0.0.2:8080::health_flags::healthy
dns+backend.test:8080::127.0.0.3:8080::rq_success::7
dns+backend.test:8080::[::1]:8080::health_flags::/failed_active_hc
dns+backend.test:80::127.0.0.9:80::cx_active::0
dnslb_xds::127.0.0.1:18000::cx_active::1
";

    #[test]
    fn host_set_of_one_cluster() {
        let got = cluster_host_set(CLUSTERS, "dns+backend.test:8080");
        let want: BTreeSet<SocketAddr> = ["127.0.0.2:8080", "127.0.0.3:8080", "[::1]:8080"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(got, want);
        assert!(cluster_host_set(CLUSTERS, "missing").is_empty());
    }

    #[test]
    fn host_fields() {
        let hosts = parse_cluster_hosts(CLUSTERS, "dns+backend.test:8080");
        let v6 = &hosts[&"[::1]:8080".parse().unwrap()];
        assert_eq!(v6["health_flags"], "/failed_active_hc");
        let v4 = &hosts[&"127.0.0.3:8080".parse().unwrap()];
        assert_eq!(v4["rq_success"], "7");
    }

    #[test]
    fn stats_map() {
        let stats = parse_stats("cluster.a.upstream_rq_total: 3\nserver.state: 0\nbogus\n");
        assert_eq!(stats["cluster.a.upstream_rq_total"], "3");
        assert_eq!(stats.len(), 2);
    }
}
