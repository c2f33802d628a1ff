//! What a client's Envoy tells about itself: its node id (for logs and status) and, in
//! its node metadata, how the clusters it gets should balance.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value::Kind;

use crate::xds::resources::Balancing;

/// Node metadata key under which `xds-shim envoy-bootstrap` writes dnslb's settings.
pub const METADATA_KEY: &str = "dnslb";
/// Field of [`METADATA_KEY`] naming the [`Balancing`]: [`NATIVE`] or anything else.
pub const BALANCING_FIELD: &str = "balancing";
/// [`BALANCING_FIELD`] value for [`Balancing::Native`].
pub const NATIVE: &str = "native";

/// The client as its requests described it; Envoy may send the node only once per stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Client {
    id: Option<String>,
    balancing: Balancing,
}

impl Client {
    /// Takes what a request's node says, if it carries one.
    pub fn observe(&mut self, node: Option<&Node>) {
        let Some(node) = node else { return };
        if !node.id.is_empty() {
            self.id = Some(node.id.clone());
        }
        self.balancing = balancing(node);
    }

    pub fn id(&self) -> &str {
        self.id.as_deref().unwrap_or("unknown")
    }

    pub fn balancing(&self) -> Balancing {
        self.balancing
    }
}

/// `metadata.dnslb.balancing: native` asks for [`Balancing::Native`]; anything else (no
/// metadata: Envoys configured before it existed) keeps the endpoint header.
fn balancing(node: &Node) -> Balancing {
    let field = node
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get(METADATA_KEY))
        .and_then(|v| match &v.kind {
            Some(Kind::StructValue(s)) => s.fields.get(BALANCING_FIELD),
            _ => None,
        })
        .and_then(|v| match &v.kind {
            Some(Kind::StringValue(s)) => Some(s.as_str()),
            _ => None,
        });
    if field == Some(NATIVE) {
        Balancing::Native
    } else {
        Balancing::EndpointHeader
    }
}

/// A node with `id` and, if given, `metadata.dnslb.balancing`.
#[cfg(test)]
pub(crate) fn test_node(id: &str, balancing: Option<&str>) -> Node {
    use envoy_types::pb::google::protobuf::{Struct, Value};
    let string = |s: &str| Value {
        kind: Some(Kind::StringValue(s.into())),
    };
    Node {
        id: id.into(),
        metadata: balancing.map(|b| Struct {
            fields: [(
                METADATA_KEY.to_string(),
                Value {
                    kind: Some(Kind::StructValue(Struct {
                        fields: [(BALANCING_FIELD.to_string(), string(b))].into(),
                    })),
                },
            )]
            .into(),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use test_node as node;

    #[test]
    fn native_only_when_the_metadata_says_so() {
        let mut client = Client::default();
        assert_eq!(client.id(), "unknown");
        assert_eq!(client.balancing(), Balancing::EndpointHeader);
        client.observe(Some(&node("envoy-1", Some(NATIVE))));
        assert_eq!(
            (client.id(), client.balancing()),
            ("envoy-1", Balancing::Native)
        );
        client.observe(Some(&node("envoy-1", Some("header"))));
        assert_eq!(client.balancing(), Balancing::EndpointHeader);
        client.observe(Some(&node("", None)));
        assert_eq!(
            (client.id(), client.balancing()),
            ("envoy-1", Balancing::EndpointHeader)
        );
    }

    #[test]
    fn a_request_without_a_node_changes_nothing() {
        let mut client = Client::default();
        client.observe(Some(&node("e", Some(NATIVE))));
        client.observe(None);
        assert_eq!(client.balancing(), Balancing::Native);
    }
}
