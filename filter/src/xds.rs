//! The filter's xDS client: it follows EDS over an ADS stream.
//!
//! The filter speaks the xDS protocol itself (state of the world, explicit
//! wildcard subscription `*` to `ClusterLoadAssignment`), so it can follow any
//! EDS server, not only xds-shim. Only the fields the filter reads are
//! declared; prost skips the rest of Envoy's messages on decode. Field numbers
//! are those of envoy/service/discovery/v3/discovery.proto and
//! envoy/config/endpoint/v3/endpoint{,_components}.proto.

use prost::Message;
use thiserror::Error;

use crate::members::Member;

pub const ADS_SERVICE: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
pub const ADS_METHOD: &str = "StreamAggregatedResources";
pub const CLA_TYPE_URL: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// The xDS spec's explicit wildcard: every resource of the type.
pub const WILDCARD: &str = "*";

/// envoy.config.core.v3.HealthStatus
const HEALTH_DRAINING: i32 = 3;
const HEALTH_UNHEALTHY: i32 = 2;
const HEALTH_TIMEOUT: i32 = 4;

/// xds-shim's forced re-resolution, declared once in `dnslb-wire`.
pub use dnslb_wire::refresh::{
    RefreshRequest, RefreshResponse, REFRESH_METHOD, REFRESH_PATH, REFRESH_SERVICE,
};

#[derive(Clone, PartialEq, Message)]
pub struct DiscoveryRequest {
    #[prost(string, tag = "1")]
    pub version_info: String,
    #[prost(message, optional, tag = "2")]
    pub node: Option<Node>,
    #[prost(string, repeated, tag = "3")]
    pub resource_names: Vec<String>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, tag = "5")]
    pub response_nonce: String,
    #[prost(message, optional, tag = "6")]
    pub error_detail: Option<RpcStatus>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Node {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub cluster: String,
    #[prost(string, tag = "6")]
    pub user_agent_name: String,
}

/// google.rpc.Status, carried in a NACK.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct DiscoveryResponse {
    #[prost(string, tag = "1")]
    pub version_info: String,
    #[prost(message, repeated, tag = "2")]
    pub resources: Vec<Any>,
    #[prost(string, tag = "4")]
    pub type_url: String,
    #[prost(string, tag = "5")]
    pub nonce: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ClusterLoadAssignment {
    #[prost(string, tag = "1")]
    pub cluster_name: String,
    #[prost(message, repeated, tag = "2")]
    pub endpoints: Vec<LocalityLbEndpoints>,
}

#[derive(Clone, PartialEq, Message)]
pub struct LocalityLbEndpoints {
    #[prost(message, repeated, tag = "2")]
    pub lb_endpoints: Vec<LbEndpoint>,
    #[prost(uint32, tag = "5")]
    pub priority: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct LbEndpoint {
    #[prost(message, optional, tag = "1")]
    pub endpoint: Option<Endpoint>,
    #[prost(int32, tag = "2")]
    pub health_status: i32,
    #[prost(message, optional, tag = "4")]
    pub load_balancing_weight: Option<UInt32Value>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Endpoint {
    #[prost(message, optional, tag = "1")]
    pub address: Option<Address>,
    #[prost(string, tag = "3")]
    pub hostname: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Address {
    #[prost(message, optional, tag = "1")]
    pub socket_address: Option<SocketAddress>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SocketAddress {
    #[prost(string, tag = "2")]
    pub address: String,
    #[prost(uint32, tag = "3")]
    pub port_value: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct UInt32Value {
    #[prost(uint32, tag = "1")]
    pub value: u32,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum XdsError {
    #[error("undecodable DiscoveryResponse: {0}")]
    Response(String),
    #[error("unexpected type {0:?} (wanted ClusterLoadAssignment)")]
    UnexpectedType(String),
    #[error("undecodable ClusterLoadAssignment #{index}: {why}")]
    Assignment { index: usize, why: String },
    #[error("cluster {0:?} sent twice in one response")]
    DuplicateCluster(String),
}

/// A decoded, accepted EDS update: the full set of clusters.
#[derive(Debug, PartialEq, Eq)]
pub struct Update {
    pub version: String,
    pub clusters: Vec<(String, Vec<Member>)>,
}

/// What the stream should do with a received message.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    /// The update to apply (absent on a NACK).
    pub update: Option<Update>,
    /// The ACK or NACK to send back.
    pub reply: Vec<u8>,
    /// Set on a NACK: why the response was rejected.
    pub rejected: Option<XdsError>,
}

/// The client side of one ADS stream subscribed to every cluster's endpoints.
#[derive(Debug, Clone)]
pub struct EdsSubscription {
    node_id: String,
    /// Last version this client accepted, sent back on reconnect so an
    /// unchanged server does not need to resend.
    accepted_version: String,
}

impl EdsSubscription {
    pub fn new(node_id: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
            accepted_version: String::new(),
        }
    }

    /// The first request on a fresh stream.
    pub fn initial_request(&self) -> Vec<u8> {
        self.request(self.accepted_version.clone(), String::new(), None)
    }

    /// Handles one DiscoveryResponse: decodes it, and says what to apply and
    /// what to answer (ACK with the new version, or NACK keeping the old one).
    pub fn on_response(&mut self, bytes: &[u8]) -> Outcome {
        match DiscoveryResponse::decode(bytes) {
            Ok(response) => self.on_decoded(response),
            // Without a nonce we cannot NACK precisely; re-request.
            Err(e) => self.nack(String::new(), XdsError::Response(e.to_string())),
        }
    }

    /// [`EdsSubscription::on_response`] for a response a gRPC library
    /// already decoded (the dynamic module's client).
    pub fn on_decoded(&mut self, response: DiscoveryResponse) -> Outcome {
        match decode_update(&response) {
            Ok(update) => {
                self.accepted_version = update.version.clone();
                Outcome {
                    reply: self.request(update.version.clone(), response.nonce, None),
                    update: Some(update),
                    rejected: None,
                }
            }
            Err(e) => self.nack(response.nonce, e),
        }
    }

    fn nack(&self, nonce: String, error: XdsError) -> Outcome {
        let detail = RpcStatus {
            code: 3, // INVALID_ARGUMENT, as Envoy sends in its NACKs
            message: error.to_string(),
        };
        Outcome {
            update: None,
            reply: self.request(self.accepted_version.clone(), nonce, Some(detail)),
            rejected: Some(error),
        }
    }

    fn request(&self, version: String, nonce: String, error: Option<RpcStatus>) -> Vec<u8> {
        DiscoveryRequest {
            version_info: version,
            node: Some(Node {
                id: self.node_id.clone(),
                cluster: "dnslb-filter".into(),
                user_agent_name: "dnslb-filter".into(),
            }),
            resource_names: vec![WILDCARD.into()],
            type_url: CLA_TYPE_URL.into(),
            response_nonce: nonce,
            error_detail: error,
        }
        .encode_to_vec()
    }
}

fn decode_update(response: &DiscoveryResponse) -> Result<Update, XdsError> {
    if response.type_url != CLA_TYPE_URL {
        return Err(XdsError::UnexpectedType(response.type_url.clone()));
    }
    let mut clusters: Vec<(String, Vec<Member>)> = Vec::with_capacity(response.resources.len());
    for (index, any) in response.resources.iter().enumerate() {
        if any.type_url != CLA_TYPE_URL {
            return Err(XdsError::UnexpectedType(any.type_url.clone()));
        }
        let cla = ClusterLoadAssignment::decode(any.value.as_slice()).map_err(|e| {
            XdsError::Assignment {
                index,
                why: e.to_string(),
            }
        })?;
        if clusters.iter().any(|(name, _)| *name == cla.cluster_name) {
            return Err(XdsError::DuplicateCluster(cla.cluster_name));
        }
        clusters.push((cla.cluster_name.clone(), members_of(&cla)));
    }
    Ok(Update {
        version: response.version_info.clone(),
        clusters,
    })
}

/// Flattens an assignment into members. Unhealthy endpoints are left out
/// (Envoy would not route to them); draining ones stay, marked, so sticky
/// requests may still reach them while new picks avoid them.
fn members_of(cla: &ClusterLoadAssignment) -> Vec<Member> {
    let mut out = Vec::new();
    for locality in &cla.endpoints {
        for lb in &locality.lb_endpoints {
            if matches!(lb.health_status, HEALTH_UNHEALTHY | HEALTH_TIMEOUT) {
                continue;
            }
            let Some(sock) = lb
                .endpoint
                .as_ref()
                .and_then(|e| e.address.as_ref())
                .and_then(|a| a.socket_address.as_ref())
            else {
                continue;
            };
            let address = if sock.address.contains(':') {
                format!("[{}]:{}", sock.address, sock.port_value)
            } else {
                format!("{}:{}", sock.address, sock.port_value)
            };
            out.push(Member {
                address,
                weight: lb.load_balancing_weight.as_ref().map_or(1, |w| w.value),
                priority: locality.priority,
                draining: lb.health_status == HEALTH_DRAINING,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    // The same tests run natively and, under Node, compiled to wasm32.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn endpoint(ip: &str, port: u32, health: i32) -> LbEndpoint {
        LbEndpoint {
            endpoint: Some(Endpoint {
                address: Some(Address {
                    socket_address: Some(SocketAddress {
                        address: ip.into(),
                        port_value: port,
                    }),
                }),
                hostname: "backend.test".into(),
            }),
            health_status: health,
            load_balancing_weight: None,
        }
    }

    fn response(version: &str, nonce: &str, clas: &[ClusterLoadAssignment]) -> Vec<u8> {
        DiscoveryResponse {
            version_info: version.into(),
            resources: clas
                .iter()
                .map(|c| Any {
                    type_url: CLA_TYPE_URL.into(),
                    value: c.encode_to_vec(),
                })
                .collect(),
            type_url: CLA_TYPE_URL.into(),
            nonce: nonce.into(),
        }
        .encode_to_vec()
    }

    fn cla(name: &str, eps: Vec<LbEndpoint>) -> ClusterLoadAssignment {
        ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: eps,
                priority: 0,
            }],
        }
    }

    #[test]
    fn initial_request_subscribes_to_every_assignment() {
        let sub = EdsSubscription::new("node-1");
        let req = DiscoveryRequest::decode(sub.initial_request().as_slice()).unwrap();
        assert_eq!(req.type_url, CLA_TYPE_URL);
        assert_eq!(req.resource_names, vec!["*"]);
        assert_eq!(req.version_info, "");
        assert_eq!(req.response_nonce, "");
        assert_eq!(req.node.unwrap().id, "node-1");
    }

    #[test]
    fn response_is_applied_and_acked() {
        let mut sub = EdsSubscription::new("n");
        let bytes = response(
            "v1",
            "7",
            &[cla(
                "dns+backend.test:8080",
                vec![endpoint("127.0.0.2", 8080, 1), endpoint("::1", 8080, 3)],
            )],
        );
        let out = sub.on_response(&bytes);
        let update = out.update.unwrap();
        assert_eq!(update.version, "v1");
        assert_eq!(update.clusters[0].0, "dns+backend.test:8080");
        let members = &update.clusters[0].1;
        assert_eq!(members[0].address, "127.0.0.2:8080");
        assert!(!members[0].draining);
        assert_eq!(members[1].address, "[::1]:8080");
        assert!(members[1].draining);
        let ack = DiscoveryRequest::decode(out.reply.as_slice()).unwrap();
        assert_eq!(ack.version_info, "v1");
        assert_eq!(ack.response_nonce, "7");
        assert!(ack.error_detail.is_none());
        // A reconnect resumes from the accepted version.
        let again = DiscoveryRequest::decode(sub.initial_request().as_slice()).unwrap();
        assert_eq!(again.version_info, "v1");
    }

    #[test]
    fn unhealthy_endpoints_are_left_out() {
        let mut sub = EdsSubscription::new("n");
        let bytes = response("v1", "1", &[cla("c", vec![endpoint("10.0.0.1", 1, 2)])]);
        assert!(sub.on_response(&bytes).update.unwrap().clusters[0]
            .1
            .is_empty());
    }

    #[test]
    fn bad_response_is_nacked_and_keeps_the_old_version() {
        let mut sub = EdsSubscription::new("n");
        sub.on_response(&response("v1", "1", &[cla("c", vec![])]));
        let dup = response("v2", "2", &[cla("c", vec![]), cla("c", vec![])]);
        let out = sub.on_response(&dup);
        assert!(out.update.is_none());
        assert_eq!(out.rejected, Some(XdsError::DuplicateCluster("c".into())));
        let nack = DiscoveryRequest::decode(out.reply.as_slice()).unwrap();
        assert_eq!(nack.version_info, "v1");
        assert_eq!(nack.response_nonce, "2");
        assert!(nack.error_detail.unwrap().message.contains("\"c\""));

        let garbage = sub.on_response(&[0xff, 0xff, 0xff]);
        assert!(matches!(garbage.rejected, Some(XdsError::Response(_))));

        let mut wrong = DiscoveryResponse::decode(response("v3", "3", &[]).as_slice()).unwrap();
        wrong.type_url = "type.googleapis.com/envoy.config.cluster.v3.Cluster".into();
        let out = sub.on_response(&wrong.encode_to_vec());
        assert!(matches!(out.rejected, Some(XdsError::UnexpectedType(_))));
    }
}
