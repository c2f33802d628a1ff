//! The tonic ADS service: one task per stream feeding requests and snapshot changes into a
//! [`StreamState`] and sending what it returns.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::stream_state::{Reply, RequestKind, StreamState};
use crate::shutdown::Shutdown;
use crate::snapshot::{ResourceType, Snapshot};

/// Responses waiting for a slow client; beyond this the stream task waits (backpressure).
const OUTBOUND_BUFFER: usize = 16;
/// Keeps idle ADS connections alive through NATs and notices dead peers.
const HTTP2_KEEPALIVE: Duration = Duration::from_secs(30);

/// Counts open ADS streams for the status page.
#[derive(Debug, Clone, Default)]
pub struct StreamCounter(Arc<AtomicUsize>);

impl StreamCounter {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn open(&self) -> StreamGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        StreamGuard(self.clone())
    }
}

/// Decrements the counter however the stream task ends.
struct StreamGuard(StreamCounter);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct AdsService {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    streams: StreamCounter,
    shutdown: Shutdown,
}

impl AdsService {
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        streams: StreamCounter,
        shutdown: Shutdown,
    ) -> Self {
        AdsService {
            snapshots,
            streams,
            shutdown,
        }
    }
}

/// Serves ADS over plaintext HTTP/2 (h2c) until shutdown, then lets open streams end.
pub async fn serve(
    listener: TcpListener,
    service: AdsService,
    shutdown: Shutdown,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE))
        .add_service(AggregatedDiscoveryServiceServer::new(service))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.wait_owned())
        .await
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsService {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let peer = request.remote_addr();
        let (tx, rx) = mpsc::channel(OUTBOUND_BUFFER);
        let stream = AdsStream {
            inbound: request.into_inner(),
            outbound: tx,
            snapshots: self.snapshots.clone(),
            shutdown: self.shutdown.clone(),
            state: StreamState::new(),
            peer,
        };
        let guard = self.streams.open();
        tokio::spawn(async move {
            let _guard = guard;
            stream.run().await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "delta xDS is not supported yet; use state-of-the-world ADS (api_type: GRPC)",
        ))
    }
}

struct AdsStream {
    inbound: Streaming<DiscoveryRequest>,
    outbound: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    shutdown: Shutdown,
    state: StreamState,
    peer: Option<SocketAddr>,
}

impl AdsStream {
    async fn run(mut self) {
        debug!(peer = ?self.peer, "ADS stream opened");
        // Whatever is current now is what the first requests are answered from.
        self.snapshots.mark_unchanged();
        let end = loop {
            tokio::select! {
                _ = self.shutdown.wait() => break "shutting down",
                message = self.inbound.message() => match message {
                    Ok(Some(request)) => {
                        // `borrow`, not `borrow_and_update`: a snapshot that arrived with
                        // this request must still reach the other subscribed types below.
                        let snapshot = Arc::clone(&self.snapshots.borrow());
                        let reply = self.state.on_request(request, &snapshot);
                        self.log_request(&reply);
                        if let Some(response) = reply.response {
                            if !self.send(response).await {
                                break "client gone";
                            }
                        }
                    }
                    Ok(None) => break "client closed the stream",
                    Err(status) => {
                        debug!(peer = ?self.peer, %status, "ADS stream error");
                        break "stream error";
                    }
                },
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        break "snapshot source gone";
                    }
                    let snapshot = Arc::clone(&self.snapshots.borrow_and_update());
                    let mut gone = false;
                    for response in self.state.on_snapshot(&snapshot) {
                        if !self.send(response).await {
                            gone = true;
                            break;
                        }
                    }
                    if gone {
                        break "client gone";
                    }
                }
            }
        };
        info!(node = self.state.node_id(), peer = ?self.peer, reason = end, "ADS stream closed");
    }

    async fn send(&self, response: DiscoveryResponse) -> bool {
        let kind = ResourceType::from_type_url(&response.type_url)
            .map(ResourceType::short_name)
            .unwrap_or("?");
        info!(
            node = self.state.node_id(),
            r#type = kind,
            version = %response.version_info,
            resources = response.resources.len(),
            nonce = %response.nonce,
            "push"
        );
        self.outbound.send(Ok(response)).await.is_ok()
    }

    fn log_request(&self, reply: &Reply) {
        let node = self.state.node_id();
        match &reply.request {
            RequestKind::Subscribe { kind } => {
                debug!(node, r#type = kind.short_name(), "subscribe");
            }
            RequestKind::Ack { kind, version } => {
                debug!(node, r#type = kind.short_name(), %version, "ack");
            }
            RequestKind::Nack {
                kind,
                rejected_version,
                kept_version,
                message,
            } => warn!(
                node,
                r#type = kind.short_name(),
                rejected_version = %rejected_version,
                kept_version = %kept_version,
                error = %message,
                "client rejected config (NACK)"
            ),
            RequestKind::Stale { kind, nonce } => {
                debug!(node, r#type = kind.short_name(), %nonce, "stale nonce ignored");
            }
            RequestKind::UnknownType { type_url } => {
                warn!(node, %type_url, "request for a type this shim does not serve")
            }
        }
    }
}
