//! What the dnslb filter, its dynamic module, xds-shim and the tests must
//! agree on, declared once: the upstream-spec grammar and its validation
//! ([`authority`]), the names on the wire ([`names`]) and the Refresh RPC
//! ([`refresh`]). Pure, and small enough for every side to depend on.

pub mod authority;
pub mod names;
pub mod refresh;
