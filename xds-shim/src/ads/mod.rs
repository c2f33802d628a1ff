//! Aggregated Discovery Service: the protocol logic (`stream_state`, pure) and the gRPC
//! service that drives it (`service`).

pub mod service;
pub mod stream_state;
