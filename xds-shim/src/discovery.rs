//! DNS discovery: [`refresh`] resolves every name through [`resolve`] on the
//! [`schedule`], and folds the answers into the [`state`] under its drain and staleness
//! policy.

pub mod names;
pub mod reconfigure;
pub mod refresh;
pub mod resolv_conf;
pub mod resolve;
pub mod schedule;
pub mod state;

pub use state::{
    Attempt, DiscoveryState, Draining, Event, HostResult, Outcome, Policy, RoundResults, SrvResult,
    UpstreamState,
};
