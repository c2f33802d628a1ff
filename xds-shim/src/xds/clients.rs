//! Who is connected: one entry per open xDS stream, with what it ACKed and the last NACK.
//! Streams update their own entry; the entry goes when the stream's handle drops.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    pub r#type: &'static str,
    pub rejected_version: String,
    pub message: String,
    pub at: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// `ADS`, `CDS` or `EDS`, with ` delta` for incremental streams: which service the
    /// stream uses.
    pub service: &'static str,
    pub node: String,
    pub peer: Option<SocketAddr>,
    pub connected_at: SystemTime,
    /// ACKed version by type (`CDS`, `EDS`).
    pub acked: BTreeMap<&'static str, String>,
    pub last_nack: Option<Nack>,
}

#[derive(Debug, Clone, Default)]
pub struct Clients {
    next_id: Arc<AtomicU64>,
    open: Arc<Mutex<BTreeMap<u64, ClientInfo>>>,
}

impl Clients {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, ClientInfo>> {
        // A panic elsewhere mid-update leaves a usable map; keep serving it.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(&self, service: &'static str, peer: Option<SocketAddr>) -> ClientHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let info = ClientInfo {
            service,
            node: String::new(),
            peer,
            connected_at: SystemTime::now(),
            acked: BTreeMap::new(),
            last_nack: None,
        };
        self.lock().insert(id, info);
        ClientHandle {
            id,
            clients: self.clone(),
        }
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Every open stream, oldest first.
    pub fn list(&self) -> Vec<ClientInfo> {
        self.lock().values().cloned().collect()
    }
}

/// One stream's entry; removed on drop however the stream ends.
pub struct ClientHandle {
    id: u64,
    clients: Clients,
}

impl ClientHandle {
    pub fn update(&self, change: impl FnOnce(&mut ClientInfo)) {
        if let Some(info) = self.clients.lock().get_mut(&self.id) {
            change(info);
        }
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        self.clients.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_as_long_as_their_handle() {
        let clients = Clients::default();
        let a = clients.register("ADS", None);
        let b = clients.register("EDS", None);
        a.update(|info| {
            info.node = "envoy-1".into();
            info.acked.insert("CDS", "v1".into());
        });
        assert_eq!(clients.count(), 2);
        assert_eq!(clients.list()[0].node, "envoy-1");
        assert_eq!(clients.list()[0].acked["CDS"], "v1");
        drop(a);
        assert_eq!(clients.count(), 1);
        assert_eq!(clients.list()[0].service, "EDS");
        drop(b);
        assert_eq!(clients.count(), 0);
    }
}
