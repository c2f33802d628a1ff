//! xDS serving: Envoy resources built from the discovered memberships ([`resources`]),
//! versioned into immutable [`snapshot`]s that the [`publisher`] hands to every [`ads`]
//! stream, plus the `dnslb.v1.Resolver/Refresh` gRPC service ([`refresh_service`]).

pub mod ads;
pub mod clients;
pub mod publisher;
pub mod refresh_service;
pub mod resources;
pub mod server_tls;
pub mod snapshot;
