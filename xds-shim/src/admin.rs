//! Admin HTTP: `GET /` (an index), `GET /healthz` (the process serves), `GET /readyz` (every upstream has been
//! answered once), `GET /metrics` (Prometheus text), `GET /status` (HTML),
//! `GET /status.json` and `GET /http_sd` (Prometheus HTTP service discovery).

pub mod http_sd;
pub mod metrics;
pub mod probe;
pub mod status;
pub mod status_html;

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::admin::status::{ShimInfo, StatusReport};
use crate::discovery::DiscoveryState;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::xds::clients::Clients;
use crate::xds::snapshot::Snapshot;

/// Everything the admin pages read; cheap to clone per connection.
#[derive(Clone)]
pub struct AdminState {
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub discovery: watch::Receiver<Arc<DiscoveryState>>,
    pub clients: Clients,
    pub metrics: Arc<Metrics>,
    pub shim: ShimInfo,
}

/// Accepts connections until shutdown. Open connections are not waited for: admin requests
/// are short and losing one on exit is harmless.
pub async fn serve(listener: TcpListener, state: AdminState, mut shutdown: Shutdown) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(error) => {
                // Typically EMFILE; keep serving rather than take the admin port down.
                warn!(%error, "admin accept failed");
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = route(&request, &state);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%peer, %error, "admin connection ended with an error");
            }
        });
    }
}

fn route(request: &Request<Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => with_type(
            StatusCode::OK,
            status_html::index().into_bytes(),
            "text/html; charset=utf-8",
        ),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok"),
        (&Method::GET, "/readyz") => {
            if state.discovery.borrow().all_resolved_once() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: some upstreams have not been resolved yet\n",
                )
            }
        }
        (&Method::GET, "/metrics") => {
            let discovery = Arc::clone(&state.discovery.borrow());
            let body = state.metrics.render(&discovery, state.clients.count());
            with_type(
                StatusCode::OK,
                body.into_bytes(),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        }
        (&Method::GET, "/status") => {
            let html = status_html::render(&report(state));
            with_type(
                StatusCode::OK,
                html.into_bytes(),
                "text/html; charset=utf-8",
            )
        }
        (&Method::GET, "/status.json") => json(serde_json::to_vec_pretty(&report(state))),
        (&Method::GET, "/http_sd") => {
            let memberships = state.discovery.borrow().members();
            json(serde_json::to_vec(&http_sd::target_groups(&memberships)))
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn report(state: &AdminState) -> StatusReport {
    let snapshot = Arc::clone(&state.snapshots.borrow());
    let discovery = Arc::clone(&state.discovery.borrow());
    let last_reload = state.metrics.last_reload();
    StatusReport::new(
        &state.shim,
        &discovery,
        &snapshot,
        &state.clients.list(),
        last_reload.as_ref(),
    )
}

fn json(encoded: serde_json::Result<Vec<u8>>) -> Response<Full<Bytes>> {
    match encoded {
        Ok(body) => with_type(StatusCode::OK, body, "application/json"),
        Err(error) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode the document: {error}\n"),
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    with_type(
        status,
        body.as_bytes().to_vec(),
        "text/plain; charset=utf-8",
    )
}

fn with_type(
    status: StatusCode,
    body: Vec<u8>,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
