//! The tonic xDS services on one port: ADS, and plain CDS and EDS for meshes that keep
//! their own ADS, each in state-of-the-world and Delta flavours. One task per stream feeds
//! requests and snapshot changes into a [`StreamState`] or [`DeltaState`] and sends what it
//! returns; the services differ only in the state's protocol and scope.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_server::{
    ClusterDiscoveryService, ClusterDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::endpoint::v3::endpoint_discovery_service_server::{
    EndpointDiscoveryService, EndpointDiscoveryServiceServer,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::delta_state::DeltaState;
use super::stream_state::{Reply, RequestKind, StreamState};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::xds::clients::{ClientHandle, Clients, Nack};
use crate::xds::refresh_service::ResolverService;
use crate::xds::server_tls::XdsTls;
use crate::xds::snapshot::{ResourceType, Snapshot};

/// Responses waiting for a slow client; beyond this the stream task waits (backpressure).
const OUTBOUND_BUFFER: usize = 16;
/// Keeps idle ADS connections alive through NATs and notices dead peers.
const HTTP2_KEEPALIVE: Duration = Duration::from_secs(30);

type SotwStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
type DeltaStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

#[derive(Clone)]
pub struct XdsService {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    clients: Clients,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
}

impl XdsService {
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        clients: Clients,
        shutdown: Shutdown,
        metrics: Arc<Metrics>,
    ) -> Self {
        XdsService {
            snapshots,
            clients,
            shutdown,
            metrics,
        }
    }

    /// Starts the task that drives one stream, state of the world or Delta.
    fn open_stream<P: Protocol>(
        &self,
        request: Request<Streaming<P::Request>>,
        state: P,
        service: &'static str,
    ) -> Response<ReceiverStream<Result<P::Response, Status>>> {
        let peer = request.remote_addr();
        let client = self.clients.register(service, peer);
        let (tx, rx) = mpsc::channel(OUTBOUND_BUFFER);
        let stream = XdsStream {
            inbound: request.into_inner(),
            outbound: tx,
            snapshots: self.snapshots.clone(),
            shutdown: self.shutdown.clone(),
            metrics: Arc::clone(&self.metrics),
            client,
            state,
            peer,
        };
        tokio::spawn(stream.run());
        Response::new(ReceiverStream::new(rx))
    }

    /// The unary `Fetch*` call: one answer from the current snapshot, as for a fresh stream.
    fn fetch(
        &self,
        request: Request<DiscoveryRequest>,
        kind: ResourceType,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let snapshot = Arc::clone(&self.snapshots.borrow());
        let mut request = request.into_inner();
        request.response_nonce.clear();
        StreamState::single_type(kind)
            .on_request(request, &snapshot)
            .response
            .map(Response::new)
            .ok_or_else(|| Status::invalid_argument("nothing requested, or not a served type"))
    }
}

/// Serves ADS, CDS and EDS until shutdown, then lets open streams end: over TLS (ALPN
/// `h2`) when `tls` is given, requiring client certificates when it has a client CA, else
/// over plaintext HTTP/2 (h2c). Every service on the port is behind the same TLS.
pub async fn serve(
    listener: TcpListener,
    service: XdsService,
    resolver: ResolverService,
    tls: Option<XdsTls>,
    shutdown: Shutdown,
) -> Result<(), tonic::transport::Error> {
    let mut builder = tonic::transport::Server::builder();
    match &tls {
        Some(tls) => {
            match &tls.client_ca {
                Some(ca) => info!(cert = %tls.cert.path, client_ca = %ca.path,
                    "xDS over TLS (mtls): client certificates required"),
                None => info!(cert = %tls.cert.path, "xDS over TLS (tls)"),
            }
            builder = builder.tls_config(tls.server_config())?;
        }
        None => info!("xDS over plaintext HTTP/2 (h2c)"),
    }
    builder
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE))
        // Forced re-resolution for the dnslb filter, on the same port.
        .add_service(resolver)
        .add_service(AggregatedDiscoveryServiceServer::new(service.clone()))
        .add_service(ClusterDiscoveryServiceServer::new(service.clone()))
        .add_service(EndpointDiscoveryServiceServer::new(service))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.wait_owned())
        .await
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for XdsService {
    type StreamAggregatedResourcesStream = SotwStream;
    type DeltaAggregatedResourcesStream = DeltaStream;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwStream>, Status> {
        Ok(self.open_stream(request, StreamState::new(), "ADS"))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaStream>, Status> {
        Ok(self.open_stream(request, DeltaState::new(), "ADS delta"))
    }
}

#[tonic::async_trait]
impl ClusterDiscoveryService for XdsService {
    type StreamClustersStream = SotwStream;
    type DeltaClustersStream = DeltaStream;

    async fn stream_clusters(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwStream>, Status> {
        let state = StreamState::single_type(ResourceType::Cluster);
        Ok(self.open_stream(request, state, "CDS"))
    }

    async fn delta_clusters(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaStream>, Status> {
        let state = DeltaState::single_type(ResourceType::Cluster);
        Ok(self.open_stream(request, state, "CDS delta"))
    }

    async fn fetch_clusters(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        self.fetch(request, ResourceType::Cluster)
    }
}

#[tonic::async_trait]
impl EndpointDiscoveryService for XdsService {
    type StreamEndpointsStream = SotwStream;
    type DeltaEndpointsStream = DeltaStream;

    async fn stream_endpoints(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwStream>, Status> {
        let state = StreamState::single_type(ResourceType::Endpoint);
        Ok(self.open_stream(request, state, "EDS"))
    }

    async fn delta_endpoints(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaStream>, Status> {
        let state = DeltaState::single_type(ResourceType::Endpoint);
        Ok(self.open_stream(request, state, "EDS delta"))
    }

    async fn fetch_endpoints(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        self.fetch(request, ResourceType::Endpoint)
    }
}

/// What differs between state-of-the-world and Delta streams: the messages and the
/// protocol state; the task around them is shared.
trait Protocol: Send + Sync + 'static {
    type Request: Send + Sync + 'static;
    type Response: Send + Sync + 'static;
    fn on_request(
        &mut self,
        request: Self::Request,
        snapshot: &Snapshot,
    ) -> (RequestKind, Vec<Self::Response>);
    fn on_snapshot(&mut self, snapshot: &Snapshot) -> Vec<Self::Response>;
    fn node_id(&self) -> &str;
    /// (type URL, version, resource count, nonce) for logs and metrics.
    fn describe(response: &Self::Response) -> (&str, &str, usize, &str);
}

impl Protocol for StreamState {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    fn on_request(
        &mut self,
        request: DiscoveryRequest,
        snapshot: &Snapshot,
    ) -> (RequestKind, Vec<DiscoveryResponse>) {
        let Reply { request, response } = StreamState::on_request(self, request, snapshot);
        (request, response.into_iter().collect())
    }
    fn on_snapshot(&mut self, snapshot: &Snapshot) -> Vec<DiscoveryResponse> {
        StreamState::on_snapshot(self, snapshot)
    }
    fn node_id(&self) -> &str {
        StreamState::node_id(self)
    }
    fn describe(r: &DiscoveryResponse) -> (&str, &str, usize, &str) {
        (&r.type_url, &r.version_info, r.resources.len(), &r.nonce)
    }
}

impl Protocol for DeltaState {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    fn on_request(
        &mut self,
        request: DeltaDiscoveryRequest,
        snapshot: &Snapshot,
    ) -> (RequestKind, Vec<DeltaDiscoveryResponse>) {
        DeltaState::on_request(self, request, snapshot)
    }
    fn on_snapshot(&mut self, snapshot: &Snapshot) -> Vec<DeltaDiscoveryResponse> {
        DeltaState::on_snapshot(self, snapshot)
    }
    fn node_id(&self) -> &str {
        DeltaState::node_id(self)
    }
    fn describe(r: &DeltaDiscoveryResponse) -> (&str, &str, usize, &str) {
        let changes = r.resources.len() + r.removed_resources.len();
        (&r.type_url, &r.system_version_info, changes, &r.nonce)
    }
}

struct XdsStream<P: Protocol> {
    inbound: Streaming<P::Request>,
    outbound: mpsc::Sender<Result<P::Response, Status>>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
    /// This stream's entry in the status page's client list.
    client: ClientHandle,
    state: P,
    peer: Option<SocketAddr>,
}

impl<P: Protocol> XdsStream<P> {
    async fn run(mut self) {
        debug!(peer = ?self.peer, "xDS stream opened");
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
                        let (request, responses) = self.state.on_request(request, &snapshot);
                        self.log_request(&request);
                        if !self.send_all(responses, false).await {
                            break "client gone";
                        }
                    }
                    Ok(None) => break "client closed the stream",
                    Err(status) => {
                        debug!(peer = ?self.peer, %status, "xDS stream error");
                        break "stream error";
                    }
                },
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        break "snapshot source gone";
                    }
                    let snapshot = Arc::clone(&self.snapshots.borrow_and_update());
                    let responses = self.state.on_snapshot(&snapshot);
                    if !self.send_all(responses, true).await {
                        break "client gone";
                    }
                }
            }
        };
        info!(node = self.state.node_id(), peer = ?self.peer, reason = end, "xDS stream closed");
    }

    /// False once the client is gone.
    async fn send_all(&self, responses: Vec<P::Response>, after_publish: bool) -> bool {
        for response in responses {
            if !self.send(response, after_publish).await {
                return false;
            }
        }
        true
    }

    /// `after_publish`: pushed because a snapshot was published (for the latency metric).
    async fn send(&self, response: P::Response, after_publish: bool) -> bool {
        let (type_url, version, resources, nonce) = P::describe(&response);
        let kind = ResourceType::from_type_url(type_url)
            .map(ResourceType::short_name)
            .unwrap_or("?");
        self.metrics.push(kind, after_publish);
        info!(
            node = self.state.node_id(),
            r#type = kind,
            version,
            resources,
            nonce,
            "push"
        );
        self.outbound.send(Ok(response)).await.is_ok()
    }

    fn log_request(&self, request: &RequestKind) {
        let node = self.state.node_id();
        self.client.update(|info| {
            info.node = node.to_string();
            match request {
                RequestKind::Ack { kind, version } => {
                    info.acked.insert(kind.short_name(), version.clone());
                }
                RequestKind::Nack {
                    kind,
                    rejected_version,
                    message,
                    ..
                } => {
                    info.last_nack = Some(Nack {
                        r#type: kind.short_name(),
                        rejected_version: rejected_version.clone(),
                        message: message.clone(),
                        at: SystemTime::now(),
                    });
                }
                _ => {}
            }
        });
        match request {
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
            } => {
                self.metrics.nack();
                warn!(
                node,
                r#type = kind.short_name(),
                rejected_version = %rejected_version,
                kept_version = %kept_version,
                error = %message,
                "client rejected config (NACK)"
                )
            }
            RequestKind::Stale { kind, nonce } => {
                debug!(node, r#type = kind.short_name(), %nonce, "stale nonce ignored");
            }
            RequestKind::UnknownType { type_url } => {
                warn!(node, %type_url, "request for a type this shim does not serve")
            }
        }
    }
}
