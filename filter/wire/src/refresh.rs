//! xds-shim's forced re-resolution RPC, `dnslb.v1.Resolver/Refresh`.

use prost::Message;

/// These messages and names are the only declaration of that RPC: the shim serves
/// them, the filter and the module call them, and so do the tests and benchmarks.
pub const REFRESH_SERVICE: &str = "dnslb.v1.Resolver";
pub const REFRESH_METHOD: &str = "Refresh";
/// The gRPC path of [`REFRESH_METHOD`].
pub const REFRESH_PATH: &str = "/dnslb.v1.Resolver/Refresh";

/// Asks the shim to re-resolve one cluster now (coalesced, at most once a
/// second per name on the shim's side).
#[derive(Clone, PartialEq, Message)]
pub struct RefreshRequest {
    #[prost(string, tag = "1")]
    pub cluster: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct RefreshResponse {
    /// Whether the re-resolution changed what is served.
    #[prost(bool, tag = "1")]
    pub changed: bool,
    /// The endpoints (EDS) version served afterwards.
    #[prost(string, tag = "2")]
    pub version: String,
}
