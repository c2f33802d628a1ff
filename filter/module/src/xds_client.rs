//! One background thread per filter configuration (so one per Envoy with
//! one dnslb listener) that keeps an ADS stream to the xDS server, follows
//! EDS with the filter crate's [`EdsSubscription`] (the protocol logic the
//! wasm build uses) and publishes each accepted update to the [`Feed`]. It
//! also sends the forced refreshes the requests ask for. The thread ends
//! when its [`XdsClient`] is dropped (Envoy destroyed the configuration).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dnslb_filter::root::TICK;
use dnslb_filter::xds::{self, DiscoveryRequest, DiscoveryResponse, EdsSubscription};
use dnslb_wire::refresh::{RefreshRequest, RefreshResponse, REFRESH_PATH};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_prost::ProstCodec;

use crate::feed::{Feed, Snapshot};
use crate::gauges::Notify;
use crate::log::{log, LogLevel};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const KEEPALIVE: Duration = Duration::from_secs(30);

/// The handle the filter configuration keeps.
pub struct XdsClient {
    refreshes: mpsc::UnboundedSender<String>,
}

impl XdsClient {
    /// Starts the thread; it connects to `addr` (HTTP/2, over `tls` when
    /// given) and retries every [`TICK`] while the server is away.
    /// `updated` is told after each published update.
    pub fn start(
        addr: SocketAddr,
        tls: Option<ClientTlsConfig>,
        node_id: String,
        feed: Arc<Feed>,
        updated: Option<Arc<dyn Notify>>,
    ) -> std::io::Result<Self> {
        let (refreshes, requested) = mpsc::unbounded_channel();
        let client = Client {
            addr,
            tls,
            subscription: EdsSubscription::new(node_id),
            feed,
            updated,
            requested,
            refreshed: HashMap::new(),
            reported: false,
        };
        std::thread::Builder::new()
            .name("dnslb-xds".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => runtime.block_on(client.run()),
                    Err(e) => log(
                        LogLevel::Error,
                        &format!("no runtime for the xDS client: {e}"),
                    ),
                }
            })?;
        Ok(Self { refreshes })
    }

    /// Asks the xDS server to re-resolve `cluster` soon; false if the
    /// thread is gone.
    pub fn refresh(&self, cluster: &str) -> bool {
        self.refreshes.send(cluster.to_string()).is_ok()
    }
}

/// Why a stream ended.
enum Ended {
    /// The configuration is gone: stop the thread.
    Stopped,
    Failed(String),
}

struct Client {
    addr: SocketAddr,
    /// Plaintext HTTP/2 without it.
    tls: Option<ClientTlsConfig>,
    subscription: EdsSubscription,
    feed: Arc<Feed>,
    updated: Option<Arc<dyn Notify>>,
    requested: mpsc::UnboundedReceiver<String>,
    /// When each cluster was last refreshed: at most once per [`TICK`].
    refreshed: HashMap<String, Instant>,
    /// Log a failing stream once per outage, not every retry.
    reported: bool,
}

fn path(service: &str, method: &str) -> Result<PathAndQuery, String> {
    format!("/{service}/{method}")
        .parse()
        .map_err(|e| format!("bad gRPC path: {e}"))
}

/// Our own encoding of a request, as the typed message tonic sends.
fn request(bytes: &[u8]) -> DiscoveryRequest {
    DiscoveryRequest::decode(bytes).unwrap_or_default()
}

impl Client {
    /// Follows the server until the configuration is gone, reconnecting
    /// every [`TICK`].
    async fn run(mut self) {
        loop {
            match self.follow().await {
                Ended::Stopped => return,
                Ended::Failed(why) => {
                    if !self.reported {
                        let addr = self.addr;
                        let every = TICK.as_secs();
                        log(
                            LogLevel::Warn,
                            &format!("xDS stream to {addr}: {why}; retrying every {every}s"),
                        );
                        self.reported = true;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                // Refreshes need the server too: drop them while it is away.
                cluster = self.requested.recv() => if cluster.is_none() { return },
            }
        }
    }

    /// Opens the stream and follows it until it fails or the client stops.
    async fn follow(&mut self) -> Ended {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{}", self.addr)).and_then(|e| {
            match &self.tls {
                Some(tls) => e.tls_config(tls.clone()),
                None => Ok(e),
            }
        });
        let channel = match endpoint {
            // Bounded, so that a gone configuration stops the thread soon; keepalives
            // notice a server that vanished without closing the connection.
            Ok(endpoint) => match endpoint
                .connect_timeout(CONNECT_TIMEOUT)
                .http2_keep_alive_interval(KEEPALIVE)
                .keep_alive_timeout(CONNECT_TIMEOUT)
                .connect()
                .await
            {
                Ok(channel) => channel,
                Err(e) => return Ended::Failed(format!("cannot connect: {e}")),
            },
            Err(e) => return Ended::Failed(e.to_string()),
        };
        let mut grpc = Grpc::new(channel);
        let ads = match path(xds::ADS_SERVICE, xds::ADS_METHOD) {
            Ok(path) => path,
            Err(e) => return Ended::Failed(e),
        };
        if let Err(e) = grpc.ready().await {
            return Ended::Failed(e.to_string());
        }
        let (outbound, queued) = mpsc::channel::<DiscoveryRequest>(4);
        if outbound
            .send(request(&self.subscription.initial_request()))
            .await
            .is_err()
        {
            return Ended::Failed("the request queue closed".into());
        }
        let codec = ProstCodec::<DiscoveryRequest, DiscoveryResponse>::default();
        let response = grpc
            .streaming(tonic::Request::new(ReceiverStream::new(queued)), ads, codec)
            .await;
        let mut inbound = match response {
            Ok(response) => response.into_inner(),
            Err(status) => return Ended::Failed(format!("gRPC status {:?}", status.code())),
        };
        if self.reported {
            log(LogLevel::Info, "xDS stream reopened");
            self.reported = false;
        }
        loop {
            tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(response)) => {
                        let reply = self.apply(response);
                        if outbound.send(request(&reply)).await.is_err() {
                            return Ended::Failed("the request queue closed".into());
                        }
                    }
                    Ok(None) => return Ended::Failed("the server ended the stream".into()),
                    Err(status) => {
                        return Ended::Failed(format!("gRPC status {:?}", status.code()))
                    }
                },
                cluster = self.requested.recv() => match cluster {
                    None => return Ended::Stopped,
                    Some(cluster) => self.refresh(&grpc, cluster),
                },
            }
        }
    }

    /// Applies one EDS response; the ACK or NACK to send back.
    fn apply(&mut self, response: DiscoveryResponse) -> Vec<u8> {
        let outcome = self.subscription.on_decoded(response);
        if let Some(update) = outcome.update {
            log(
                LogLevel::Debug,
                &format!(
                    "EDS version {} with {} clusters",
                    update.version,
                    update.clusters.len()
                ),
            );
            self.feed.publish(Snapshot {
                version: update.version,
                clusters: update.clusters,
            });
            if let Some(updated) = &self.updated {
                updated.notify();
            }
        }
        if let Some(error) = outcome.rejected {
            log(LogLevel::Warn, &format!("rejected EDS update: {error}"));
        }
        outcome.reply
    }

    /// Sends a forced refresh in the background, at most once per [`TICK`]
    /// per cluster.
    fn refresh(&mut self, grpc: &Grpc<Channel>, cluster: String) {
        let now = Instant::now();
        if self
            .refreshed
            .get(&cluster)
            .is_some_and(|at| now.duration_since(*at) < TICK)
        {
            return;
        }
        self.refreshed
            .retain(|_, at| now.duration_since(*at) < TICK);
        self.refreshed.insert(cluster.clone(), now);
        let mut grpc = grpc.clone();
        tokio::spawn(async move {
            // Its effect arrives over EDS; only a failure is news, once.
            static REPORTED: AtomicBool = AtomicBool::new(false);
            let sent = async {
                let path = PathAndQuery::from_static(REFRESH_PATH);
                grpc.ready().await.map_err(|e| e.to_string())?;
                let codec = ProstCodec::<RefreshRequest, RefreshResponse>::default();
                grpc.unary(tonic::Request::new(RefreshRequest { cluster }), path, codec)
                    .await
                    .map_err(|s| format!("gRPC status {:?} ({})", s.code(), s.message()))
            };
            if let Err(why) = sent.await {
                if !REPORTED.swap(true, Ordering::Relaxed) {
                    log(
                        LogLevel::Warn,
                        &format!("forced refresh failed: {why}; is the xDS server xds-shim?"),
                    );
                }
            }
        });
    }
}
