//! What the shim serves, independent of DNS and of Envoy's types: upstreams and the
//! members their answers yield.

pub mod member;
pub mod membership;
pub mod settings;
pub mod tls;
pub mod upstream;
