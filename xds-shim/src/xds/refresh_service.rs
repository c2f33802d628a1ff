//! Forced re-resolution, `dnslb.v1.Resolver/Refresh`: the dnslb filter calls it
//! when the member it picked first did not answer, because DNS may already
//! know that member is gone. The refresh loop re-resolves the cluster's name
//! at once (coalesced, at most once a second per name, see
//! [`discovery::refresh::forced`](crate::discovery::refresh::forced)) and pushes the new
//! set if it changed; the call returns whether it did. gRPC statuses are made here only.
//!
//! The messages and the service are written by hand (there is no protoc
//! here); the filter declares the same two messages.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, oneshot};
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::{Request, Response, Status};

/// The gRPC service name the filter dials on the `dnslb_xds` cluster.
pub const SERVICE_NAME: &str = REFRESH_SERVICE;
/// Requests waiting for the refresh loop; more are refused, not queued.
const QUEUE: usize = 1_024;

// The messages are the filter's, which calls this RPC: one declaration for both ends.
pub use dnslb_wire::refresh::{RefreshRequest, RefreshResponse};
use dnslb_wire::refresh::{REFRESH_PATH, REFRESH_SERVICE};

use crate::discovery::refresh::{Ask, Refreshed};

/// The channel between the gRPC service and the refresh loop.
pub fn channel() -> (ResolverService, mpsc::Receiver<Ask>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (ResolverService { asks: tx }, rx)
}

/// The `dnslb.v1.Resolver` gRPC service.
#[derive(Debug, Clone)]
pub struct ResolverService {
    asks: mpsc::Sender<Ask>,
}

impl ResolverService {
    pub(crate) async fn refresh(
        &self,
        request: Request<RefreshRequest>,
    ) -> Result<Response<RefreshResponse>, Status> {
        let cluster = request.into_inner().cluster;
        let (reply, answer) = oneshot::channel();
        self.asks
            .try_send(Ask { cluster, reply })
            .map_err(|_| Status::resource_exhausted("too many refreshes waiting"))?;
        let Refreshed { changed, version } = answer
            .await
            .map_err(|_| Status::unavailable("the refresh loop has stopped"))?
            .map_err(|not_served| Status::not_found(not_served.to_string()))?;
        Ok(Response::new(RefreshResponse { changed, version }))
    }
}

impl tonic::server::NamedService for ResolverService {
    const NAME: &'static str = SERVICE_NAME;
}

struct RefreshMethod(Arc<ResolverService>);

impl tonic::server::UnaryService<RefreshRequest> for RefreshMethod {
    type Response = RefreshResponse;
    type Future = BoxFuture<Response<RefreshResponse>, Status>;

    fn call(&mut self, request: Request<RefreshRequest>) -> Self::Future {
        let service = Arc::clone(&self.0);
        Box::pin(async move { service.refresh(request).await })
    }
}

impl<B> Service<http::Request<B>> for ResolverService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != REFRESH_PATH {
            let status = Status::unimplemented(format!("no method {}", request.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let method = RefreshMethod(Arc::new(self.clone()));
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(method, request).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn asks_reach_the_loop_and_answers_come_back() {
        let (service, mut asks) = channel();
        let call = tokio::spawn(async move {
            service
                .refresh(Request::new(RefreshRequest {
                    cluster: "dns+a.test:80".into(),
                }))
                .await
        });
        let ask = asks.recv().await.unwrap();
        assert_eq!(ask.cluster, "dns+a.test:80");
        ask.reply
            .send(Ok(Refreshed {
                changed: true,
                version: "v2".into(),
            }))
            .unwrap();
        let response = call.await.unwrap().unwrap().into_inner();
        assert!(response.changed);
        assert_eq!(response.version, "v2");
    }
}
