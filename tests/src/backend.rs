//! A fake HTTP/1.1 backend that reports what it received, so a test can tell which
//! backend served a request and what Envoy sent it.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::{BodyExt, Full};
use hyper::{
    body::{Bytes, Incoming},
    header::{HeaderValue, CONTENT_TYPE, HOST},
    server::conn::http1,
    service::service_fn,
    Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::{
    background::Background,
    error::{HarnessError, Result},
};

/// Response header naming the backend (`ip:port` it listens on).
pub const HEADER_BACKEND: &str = "x-backend";
/// Response header echoing the request's Host header.
pub const HEADER_SEEN_HOST: &str = "x-seen-host";
/// Response header echoing the request's `x-dnslb-endpoint` header (empty when absent).
pub const HEADER_SEEN_ENDPOINT: &str = "x-seen-dnslb-endpoint";
/// Response header with the backend's `--name`, when it has one.
pub const HEADER_BACKEND_NAME: &str = "x-backend-name";

/// The JSON body of every response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendReport {
    /// `ip:port` the backend listens on.
    pub backend: String,
    /// Host header received (or the authority of an absolute-form target).
    pub host: String,
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub body_len: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Serves every connection accepted on `listener` until the future is dropped. Requests
/// for one of `fail_paths` get 503 (a member that is up but reports itself unhealthy).
pub async fn serve(
    listener: TcpListener,
    name: Option<String>,
    fail_paths: Arc<[String]>,
) -> Result<()> {
    let local = listener
        .local_addr()
        .map_err(HarnessError::io("read backend listener address"))?;
    let name: Option<Arc<str>> = name.map(Arc::from);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Usually fd exhaustion under load: back off instead of spinning.
                tracing::warn!(%error, %local, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let name = name.clone();
        let fail_paths = Arc::clone(&fail_paths);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                respond(request, local, name.clone(), Arc::clone(&fail_paths))
            });
            // Clients resetting connections is normal in failover tests; nothing to report.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(
    request: Request<Incoming>,
    local: SocketAddr,
    name: Option<Arc<str>>,
    fail_paths: Arc<[String]>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    if fail_paths.iter().any(|p| p == parts.uri.path()) {
        return Ok(plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "failing on purpose\n".into(),
        ));
    }
    let body_len = match body.collect().await {
        Ok(collected) => collected.to_bytes().len(),
        Err(error) => {
            return Ok(plain(
                StatusCode::BAD_REQUEST,
                format!("reading body: {error}"),
            ))
        }
    };
    let host = parts
        .headers
        .get(HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let endpoint = parts
        .headers
        .get("x-dnslb-endpoint")
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(""));
    let report = BackendReport {
        backend: local.to_string(),
        host: host.clone(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        body_len,
        name: name.as_deref().map(str::to_owned),
    };
    let json = match serde_json::to_vec(&report) {
        Ok(json) => json,
        Err(error) => return Ok(plain(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())),
    };
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/json")
        .header(HEADER_BACKEND, local.to_string())
        .header(HEADER_SEEN_HOST, host)
        .header(HEADER_SEEN_ENDPOINT, endpoint);
    if let Some(name) = &name {
        builder = builder.header(HEADER_BACKEND_NAME, name.as_ref());
    }
    Ok(builder
        .body(Full::new(Bytes::from(json)))
        .unwrap_or_else(|error| plain(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())))
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
}

/// An in-process fake backend, for tests that do not need a separate process.
pub struct Backend {
    addr: SocketAddr,
    _runtime: Background,
}

impl Backend {
    /// Listens on `addr` (port 0 picks one) until dropped.
    pub fn start(addr: SocketAddr, name: Option<&str>) -> Result<Self> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(HarnessError::io(format!("bind backend {addr}")))?;
        let addr = listener
            .local_addr()
            .map_err(HarnessError::io("read backend address"))?;
        listener
            .set_nonblocking(true)
            .map_err(HarnessError::io(format!("set {addr} non-blocking")))?;
        let runtime = Background::start(&format!("backend {addr}"))?;
        let listener = {
            let _context = runtime.handle().enter();
            TcpListener::from_std(listener)
                .map_err(HarnessError::io(format!("register backend {addr}")))?
        };
        let name = name.map(str::to_owned);
        runtime.handle().spawn(async move {
            if let Err(error) = serve(listener, name, Arc::from([])).await {
                tracing::warn!(%error, "backend stopped");
            }
        });
        Ok(Self {
            addr,
            _runtime: runtime,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
