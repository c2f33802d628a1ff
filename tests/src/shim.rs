//! The real `xds-shim` binary as a process of a test.

use std::{net::SocketAddr, path::Path, process::Command, time::Duration};

use dnslb_wire::refresh::{RefreshRequest, RefreshResponse, REFRESH_PATH};
use tonic::codegen::http::uri::PathAndQuery;

use crate::{
    artifacts::{built, shim_binary, LOOPBACK},
    error::{format_log_tail, Result},
    http::http_get,
    process::{free_port, wait_until, ChildGuard},
};

const SHIM_STARTUP: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// The real `xds-shim` binary on free loopback ports; dropping it kills it.
pub struct Shim {
    pub process: ChildGuard,
    pub xds: u16,
    pub admin: SocketAddr,
    /// Every flag it was started with, to start another like it.
    pub args: Vec<String>,
}

impl Shim {
    /// Starts the shim on `upstreams`, asking only `nameserver`, re-resolving every
    /// `interval`, with `extra` flags; its log goes to `dir`. Waits for `/healthz`.
    pub fn start(
        upstreams: &[String],
        nameserver: SocketAddr,
        interval: Duration,
        dir: &Path,
        extra: &[&str],
    ) -> Result<Shim> {
        Self::start_binary(
            &built(shim_binary())?,
            upstreams,
            nameserver,
            interval,
            dir,
            extra,
        )
    }

    /// [`Shim::start`] with the binary at `binary` (the shim's own tests run the one
    /// cargo built for them).
    pub fn start_binary(
        binary: &Path,
        upstreams: &[String],
        nameserver: SocketAddr,
        interval: Duration,
        dir: &Path,
        extra: &[&str],
    ) -> Result<Shim> {
        let xds = free_port(LOOPBACK)?;
        let admin = SocketAddr::new(LOOPBACK, free_port(LOOPBACK)?);
        let mut args = Vec::new();
        for upstream in upstreams {
            args.extend(["--upstream".to_string(), upstream.clone()]);
        }
        args.extend([
            "--nameserver".to_string(),
            nameserver.to_string(),
            "--interval".into(),
            format!("{}ms", interval.as_millis()),
            "--xds-listen".into(),
            SocketAddr::new(LOOPBACK, xds).to_string(),
            "--admin-listen".into(),
            admin.to_string(),
        ]);
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut cmd = Command::new(binary);
        cmd.args(&args);
        let process = ChildGuard::spawn("xds-shim", cmd, dir)?;
        let shim = Shim {
            process,
            xds,
            admin,
            args,
        };
        // The admin port answers after the first round, which thousands of names make long.
        wait_until("xds-shim /healthz", SHIM_STARTUP, POLL, || {
            shim.process.ensure_running()?;
            Ok(http_get(admin, "/healthz", &[]).is_ok_and(|r| r.status == 200))
        })
        .map_err(|e| e.with_detail(&shim.log_tail()))?;
        Ok(shim)
    }

    /// `/status.json`, parsed.
    pub fn status(&self) -> Result<serde_json::Value> {
        http_get(self.admin, "/status.json", &[])?.json()
    }

    /// The `/metrics` exposition text.
    pub fn metrics(&self) -> Result<String> {
        Ok(http_get(self.admin, "/metrics", &[])?.body)
    }

    /// The value of the sample `series` (name and labels as exposed), if there is one.
    pub fn metric(&self, series: &str) -> Result<Option<f64>> {
        Ok(self.metrics()?.lines().find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|value| value.trim().parse().ok())
        }))
    }

    /// Polls `/status.json` until `check` holds and returns that status; on timeout the
    /// error carries the last status seen and the log tail. Stops if the shim exits.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let mut last = serde_json::Value::Null;
        wait_until(what, timeout, POLL, || {
            self.process.ensure_running()?;
            last = self.status()?;
            Ok(check(&last))
        })
        .map_err(|e| e.with_detail(&format!("\nlast status: {last}{}", self.log_tail())))?;
        Ok(last)
    }

    fn log_tail(&self) -> String {
        format_log_tail("xds-shim", &self.process.log_tail(40))
    }
}

/// Calls the shim's `dnslb.v1.Resolver/Refresh` for `cluster` over a new connection to
/// its xDS port, as the filter does; a connection failure is `Unavailable`.
pub async fn refresh(
    xds: SocketAddr,
    cluster: &str,
) -> std::result::Result<RefreshResponse, tonic::Status> {
    let unavailable = |e: tonic::transport::Error| tonic::Status::unavailable(e.to_string());
    let channel = tonic::transport::Channel::from_shared(format!("http://{xds}"))
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
        .connect()
        .await
        .map_err(unavailable)?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(unavailable)?;
    let request = tonic::Request::new(RefreshRequest {
        cluster: cluster.into(),
    });
    let path = PathAndQuery::from_static(REFRESH_PATH);
    grpc.unary(request, path, tonic_prost::ProstCodec::default())
        .await
        .map(tonic::Response::into_inner)
}
