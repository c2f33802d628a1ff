//! The status path's answer.

use serde_json::json;

use crate::members::WorkerMembership;

/// JSON of what one worker knows: every upstream with its members.
pub fn status_json(membership: &WorkerMembership) -> String {
    let upstreams: Vec<_> = membership
        .clusters()
        .into_iter()
        .map(|(name, c)| {
            let members: Vec<_> = c
                .members()
                .iter()
                .map(|m| {
                    json!({"address": m.address, "weight": m.weight, "priority": m.priority, "draining": m.draining})
                })
                .collect();
            json!({"cluster": name, "members": members})
        })
        .collect();
    let body = json!({
        "eds_version": membership.version(),
        "eds_received": membership.received(),
        "upstreams": upstreams,
    });
    format!("{body}\n")
}
