//! An xDS stream a test drives by hand, as Envoy or the filter would: requests in,
//! responses out. The shim's SotW and Delta tests and bench-shim's clients share it.

use std::{future::Future, time::Duration};

use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::endpoint::v3::LbEndpoint;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Response, Status, Streaming};

use crate::error::{HarnessError, Result};

/// Requests queued before the server reads them; tests send a few at a time.
const QUEUE: usize = 16;

/// One open bidirectional xDS stream.
pub struct XdsStream<Req, Resp> {
    requests: mpsc::Sender<Req>,
    responses: Streaming<Resp>,
}

impl<Req, Resp> XdsStream<Req, Resp> {
    /// Opens the stream with `open`, handed the request half, e.g.
    /// `|rx| async move { client.delta_aggregated_resources(rx).await }`. `first` is
    /// queued before the stream opens (some servers answer nothing until it comes).
    pub async fn open<F, Fut>(first: Option<Req>, open: F) -> Result<Self>
    where
        F: FnOnce(ReceiverStream<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<Response<Streaming<Resp>>, Status>>,
    {
        let (requests, rx) = mpsc::channel(QUEUE);
        if let Some(first) = first {
            requests
                .send(first)
                .await
                .map_err(|_| HarnessError::Xds("request queue closed".into()))?;
        }
        let responses = open(ReceiverStream::new(rx))
            .await
            .map_err(|status| HarnessError::Xds(format!("opening the stream: {status}")))?
            .into_inner();
        Ok(Self {
            requests,
            responses,
        })
    }

    pub async fn send(&self, request: Req) -> Result<()> {
        self.requests
            .send(request)
            .await
            .map_err(|_| HarnessError::Xds("the stream is closed".into()))
    }

    /// The next response; an error when none comes `within`, or the stream fails or ends.
    pub async fn next(&mut self, within: Duration) -> Result<Resp> {
        self.next_or_silence(within)
            .await?
            .ok_or_else(|| HarnessError::Timeout {
                what: "an xDS response".into(),
                waited: within,
                detail: String::new(),
            })
    }

    /// The next response, or `None` when nothing comes within `wait` (to check silence).
    pub async fn next_or_silence(&mut self, wait: Duration) -> Result<Option<Resp>> {
        match tokio::time::timeout(wait, self.responses.message()).await {
            Err(_) => Ok(None),
            Ok(Ok(Some(response))) => Ok(Some(response)),
            Ok(Ok(None)) => Err(HarnessError::Xds("the stream ended".into())),
            Ok(Err(status)) => Err(HarnessError::Xds(format!("the stream failed: {status}"))),
        }
    }
}

/// `address:port` of an endpoint, the form tests compare; `None` unless it is an
/// endpoint with a socket address and a port number.
pub fn endpoint_address(lb: &LbEndpoint) -> Option<String> {
    let Some(HostIdentifier::Endpoint(ep)) = &lb.host_identifier else {
        return None;
    };
    let Some(AddressKind::SocketAddress(sa)) = ep.address.as_ref()?.address.as_ref() else {
        return None;
    };
    let Some(PortSpecifier::PortValue(port)) = sa.port_specifier else {
        return None;
    };
    Some(format!("{}:{port}", sa.address))
}
