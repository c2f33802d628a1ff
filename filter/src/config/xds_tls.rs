//! `xds_tls`: how the dynamic module's own xDS client reaches the server
//! over TLS (the wasm build's connection is Envoy's `dnslb_xds` cluster).

use serde::Deserialize;

use super::{invalid, ConfigError};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct XdsTlsDto {
    ca_file: Option<String>,
    server_name: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
}

/// How the module's xDS client checks the server (and shows itself): the
/// files are read when the module takes the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsTls {
    /// PEM CA bundle the server's certificate must chain to.
    pub ca_file: String,
    /// The name the certificate must carry (a DNS name, also sent as SNI);
    /// without it, the IP of `xds_address` as an IP SAN.
    pub server_name: Option<String>,
    /// PEM certificate chain and key for mutual TLS.
    pub client_identity: Option<(String, String)>,
}

pub(super) fn xds_tls(dto: XdsTlsDto) -> Result<XdsTls, ConfigError> {
    let ca_file = match dto.ca_file {
        Some(file) if !file.is_empty() => file,
        other => {
            return Err(invalid(
                "xds_tls.ca_file",
                other.unwrap_or_default(),
                "required",
            ))
        }
    };
    let client_identity = match (dto.cert_file, dto.key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((cert, key)),
        (Some(cert), None) => {
            return Err(invalid("xds_tls.key_file", cert, "needed with cert_file"))
        }
        (None, Some(key)) => return Err(invalid("xds_tls.cert_file", key, "needed with key_file")),
    };
    Ok(XdsTls {
        ca_file,
        server_name: dto.server_name,
        client_identity,
    })
}
