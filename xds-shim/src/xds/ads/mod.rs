//! xDS serving: the protocol logic (`stream_state` for state of the world, `delta_state`
//! for incremental; both pure) and the gRPC services that drive them (`service`).

pub mod delta_state;
pub mod node;
pub mod service;
pub mod stream_state;
