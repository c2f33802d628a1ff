//! TLS on the xDS port (`--xds-tls-cert`, `--xds-tls-key`, optionally
//! `--xds-tls-client-ca` for mutual TLS). The files are read and checked when the
//! configuration is built, so a missing or bad one exits 2 naming the flag and the path
//! before anything is served; the server is then built from the bytes read then.

use std::fmt;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use tonic::transport::server::ServerTlsConfig;
use tonic::transport::{Certificate, Identity, Server};

pub const CERT_FLAG: &str = "--xds-tls-cert";
pub const KEY_FLAG: &str = "--xds-tls-key";
pub const CLIENT_CA_FLAG: &str = "--xds-tls-client-ca";

/// A client that connects and never finishes its handshake would otherwise hold a task
/// for ever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One PEM file as read at configuration time. Its bytes (a private key, for one) never
/// show in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct PemFile {
    pub path: String,
    pem: Vec<u8>,
}

impl fmt::Debug for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemFile").field("path", &self.path).finish()
    }
}

/// The xDS port's TLS settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsTls {
    pub cert: PemFile,
    pub key: PemFile,
    /// Set: clients must present a certificate signed by one of these roots.
    pub client_ca: Option<PemFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XdsTlsError {
    #[error("{given} needs {missing} as well: the xDS port's certificate and its key go together")]
    Pair {
        given: &'static str,
        missing: &'static str,
    },
    #[error("--xds-tls-client-ca needs --xds-tls-cert and --xds-tls-key: client certificates are checked only over TLS")]
    ClientCaWithoutTls,
    #[error("{flag} {path:?}: cannot read: {reason}")]
    Read {
        flag: &'static str,
        path: String,
        reason: String,
    },
    #[error("{flag} {path:?}: {why}")]
    Invalid {
        flag: &'static str,
        path: String,
        why: String,
    },
    #[error("--xds-tls-cert {cert:?} with --xds-tls-key {key:?}: {why}")]
    Identity {
        cert: String,
        key: String,
        why: String,
    },
}

impl XdsTls {
    /// Reads and checks the files named; `None` when no TLS setting is given. Beyond the
    /// PEM syntax, the key must load and match the certificate and the client CA must hold
    /// a usable root: the server is built once here, as it will be at start.
    pub fn load(
        cert: Option<&str>,
        key: Option<&str>,
        client_ca: Option<&str>,
    ) -> Result<Option<XdsTls>, XdsTlsError> {
        let (cert, key) = match (cert, key) {
            (None, None) if client_ca.is_some() => return Err(XdsTlsError::ClientCaWithoutTls),
            (None, None) => return Ok(None),
            (Some(_), None) => return Err(pair(CERT_FLAG, KEY_FLAG)),
            (None, Some(_)) => return Err(pair(KEY_FLAG, CERT_FLAG)),
            (Some(cert), Some(key)) => (cert, key),
        };
        let cert = read(CERT_FLAG, cert)?;
        certificates(CERT_FLAG, &cert)?;
        let key = read(KEY_FLAG, key)?;
        match PrivateKeyDer::from_pem_slice(&key.pem) {
            Ok(_) => {}
            Err(rustls_pki_types::pem::Error::NoItemsFound) => {
                let why = "no PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY in it";
                return Err(invalid(KEY_FLAG, &key, why));
            }
            Err(e) => return Err(invalid(KEY_FLAG, &key, format!("bad PEM: {e}"))),
        }
        let identity_only = XdsTls {
            cert,
            key,
            client_ca: None,
        };
        if let Err(why) = identity_only.check() {
            return Err(XdsTlsError::Identity {
                cert: identity_only.cert.path,
                key: identity_only.key.path,
                why,
            });
        }
        let Some(client_ca) = client_ca else {
            return Ok(Some(identity_only));
        };
        let client_ca = read(CLIENT_CA_FLAG, client_ca)?;
        certificates(CLIENT_CA_FLAG, &client_ca)?;
        let tls = XdsTls {
            client_ca: Some(client_ca),
            ..identity_only
        };
        if let (Err(why), Some(ca)) = (tls.check(), &tls.client_ca) {
            return Err(invalid(CLIENT_CA_FLAG, ca, why));
        }
        Ok(Some(tls))
    }

    /// tonic's TLS settings: this identity, and client certificates required when a
    /// client CA is set.
    pub fn server_config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert.pem, &self.key.pem))
            .timeout(HANDSHAKE_TIMEOUT);
        match &self.client_ca {
            Some(ca) => config.client_ca_root(Certificate::from_pem(&ca.pem)),
            None => config,
        }
    }

    /// `tls` or `mtls`, for the log and `xds-shim check`.
    pub fn mode(&self) -> &'static str {
        match self.client_ca {
            Some(_) => "mtls",
            None => "tls",
        }
    }

    /// The paths, for `xds-shim check`.
    pub fn effective(&self) -> EffectiveXdsTls {
        EffectiveXdsTls {
            mode: self.mode(),
            cert: self.cert.path.clone(),
            key: self.key.path.clone(),
            client_ca: self.client_ca.as_ref().map(|ca| ca.path.clone()),
        }
    }

    /// Builds the server's TLS acceptor, as `serve` will; the error is rustls's message.
    fn check(&self) -> Result<(), String> {
        Server::builder()
            .tls_config(self.server_config())
            .map(drop)
            .map_err(|e| match std::error::Error::source(&e) {
                Some(source) => source.to_string(),
                None => e.to_string(),
            })
    }
}

/// What `xds-shim check` prints under `xds_tls`.
#[derive(Debug, Serialize)]
pub struct EffectiveXdsTls {
    pub mode: &'static str,
    pub cert: String,
    pub key: String,
    /// Clients must present a certificate signed by this CA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<String>,
}

fn pair(given: &'static str, missing: &'static str) -> XdsTlsError {
    XdsTlsError::Pair { given, missing }
}

fn read(flag: &'static str, path: &str) -> Result<PemFile, XdsTlsError> {
    match std::fs::read(path) {
        Ok(pem) => Ok(PemFile {
            path: path.to_string(),
            pem,
        }),
        Err(e) => Err(XdsTlsError::Read {
            flag,
            path: path.to_string(),
            reason: e.to_string(),
        }),
    }
}

/// At least one PEM `CERTIFICATE`, every one of them well-formed.
fn certificates(flag: &'static str, file: &PemFile) -> Result<(), XdsTlsError> {
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&file.pem) {
        if let Err(e) = cert {
            return Err(invalid(flag, file, format!("bad PEM: {e}")));
        }
        count += 1;
    }
    if count == 0 {
        return Err(invalid(flag, file, "no PEM CERTIFICATE in it"));
    }
    Ok(())
}

fn invalid(flag: &'static str, file: &PemFile, why: impl Into<String>) -> XdsTlsError {
    XdsTlsError::Invalid {
        flag,
        path: file.path.clone(),
        why: why.into(),
    }
}

#[cfg(test)]
mod tests;
