//! The record store behind the DNS server: plain data, no I/O.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr},
};

use super::Srv;

/// Canonical key for a name: lower case, no trailing dot (the root is "").
pub(crate) fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The records of one type at one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RrSet<T> {
    pub(crate) items: Vec<T>,
    /// `None`: answer with the server's current default TTL.
    pub(crate) ttl: Option<u32>,
}

impl<T> Default for RrSet<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            ttl: None,
        }
    }
}

impl<T> RrSet<T> {
    pub(crate) fn replace(&mut self, items: Vec<T>) {
        self.items = items;
        self.ttl = None;
    }

    /// Adds one zone-file record; an RRset answers with the smallest TTL given for it.
    pub(crate) fn push(&mut self, item: T, ttl: Option<u32>) {
        self.items.push(item);
        self.ttl = match (self.ttl, ttl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Everything known at one name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) a: RrSet<Ipv4Addr>,
    pub(crate) aaaa: RrSet<Ipv6Addr>,
    pub(crate) srv: RrSet<Srv>,
    /// The zone file had records here that we do not serve (SOA, NS): the name exists.
    pub(crate) anchored: bool,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.a.items.is_empty()
            && self.aaaa.items.is_empty()
            && self.srv.items.is_empty()
            && !self.anchored
    }
}

/// What a name resolves to in the store.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup<'a> {
    Found(&'a Node),
    /// No records here, but names below exist (e.g. `api.test` under `_http._tcp.api.test`).
    EmptyNonTerminal,
    NxDomain,
}

#[derive(Debug)]
pub(crate) struct Store {
    names: HashMap<String, Node>,
    pub(crate) default_ttl: u32,
    pub(crate) servfail: bool,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            names: HashMap::new(),
            default_ttl: 1,
            servfail: false,
        }
    }
}

impl Store {
    /// Applies `change` to the node at `name`, creating it if needed and dropping it when
    /// it ends up empty (so that a name with no records left answers NXDOMAIN).
    pub(crate) fn update(&mut self, name: &str, change: impl FnOnce(&mut Node)) {
        let key = normalize(name);
        let node = self.names.entry(key.clone()).or_default();
        change(node);
        if node.is_empty() {
            self.names.remove(&key);
        }
    }

    /// Drops every name (settings stay).
    pub(crate) fn clear(&mut self) {
        self.names.clear();
    }

    pub(crate) fn lookup(&self, name: &str) -> Lookup<'_> {
        let key = normalize(name);
        if let Some(node) = self.names.get(&key) {
            return Lookup::Found(node);
        }
        let suffix = format!(".{key}");
        let has_children = self
            .names
            .keys()
            .any(|known| key.is_empty() || known.ends_with(&suffix));
        if has_children {
            Lookup::EmptyNonTerminal
        } else {
            Lookup::NxDomain
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_and_dot_insensitive() {
        let mut store = Store::default();
        store.update("Backend.TEST.", |n| {
            n.a.replace(vec![Ipv4Addr::new(127, 0, 0, 2)])
        });
        assert!(matches!(store.lookup("backend.test"), Lookup::Found(_)));
        assert!(matches!(store.lookup("BACKEND.test."), Lookup::Found(_)));
    }

    #[test]
    fn emptied_name_disappears() {
        let mut store = Store::default();
        store.update("a.test", |n| n.a.replace(vec![Ipv4Addr::LOCALHOST]));
        store.update("a.test", |n| n.a.replace(Vec::new()));
        assert_eq!(store.lookup("a.test"), Lookup::NxDomain);
    }

    #[test]
    fn parents_of_known_names_exist_without_records() {
        let mut store = Store::default();
        store.update("_http._tcp.api.test", |n| {
            n.srv.replace(vec![Srv {
                priority: 0,
                weight: 0,
                port: 80,
                target: "a.test".into(),
            }])
        });
        assert_eq!(store.lookup("api.test"), Lookup::EmptyNonTerminal);
        assert_eq!(store.lookup("pi.test"), Lookup::NxDomain);
        assert_eq!(store.lookup("other.test"), Lookup::NxDomain);
    }

    #[test]
    fn rrset_ttl_is_the_smallest_given() {
        let mut set = RrSet::default();
        set.push(1u8, Some(30));
        set.push(2, None);
        set.push(3, Some(10));
        assert_eq!(set.ttl, Some(10));
    }
}
