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
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Files in a fresh directory, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir = std::env::temp_dir().join(format!("xds-tls-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }

        fn write(&self, name: &str, text: impl AsRef<[u8]>) -> String {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A self-signed certificate for `localhost` and its key, as PEM.
    fn self_signed() -> (String, String) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        (cert.cert.pem(), cert.signing_key.serialize_pem())
    }

    fn load(dir: &Dir, cert: &str, key: &str, ca: Option<&str>) -> Result<XdsTls, String> {
        let path = |name: &str| dir.0.join(name).display().to_string();
        XdsTls::load(Some(&path(cert)), Some(&path(key)), ca.map(path).as_deref())
            .map(|tls| tls.unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn good_files_load_as_tls_or_mtls() {
        let dir = Dir::new("good");
        let (cert, key) = self_signed();
        dir.write("cert.pem", &cert);
        dir.write("key.pem", &key);
        let tls = load(&dir, "cert.pem", "key.pem", None).unwrap();
        assert_eq!(tls.mode(), "tls");
        // Any PEM of roots will do as client CA; this one names itself.
        let tls = load(&dir, "cert.pem", "key.pem", Some("cert.pem")).unwrap();
        assert_eq!(tls.mode(), "mtls");
        let debug = format!("{tls:?}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
        // A combined file serves as both.
        dir.write("both.pem", format!("{cert}{key}"));
        load(&dir, "both.pem", "both.pem", None).unwrap();
    }

    #[test]
    fn settings_go_together() {
        assert_eq!(XdsTls::load(None, None, None), Ok(None));
        for (cert, key, ca, needles) in [
            (
                Some("/c"),
                None,
                None,
                ["--xds-tls-cert needs --xds-tls-key"],
            ),
            (
                None,
                Some("/k"),
                None,
                ["--xds-tls-key needs --xds-tls-cert"],
            ),
            (None, None, Some("/ca"), ["--xds-tls-client-ca needs"]),
        ] {
            let err = XdsTls::load(cert, key, ca).unwrap_err().to_string();
            for needle in needles {
                assert!(err.contains(needle), "{err}");
            }
        }
    }

    #[test]
    fn bad_files_name_flag_and_path() {
        let dir = Dir::new("bad");
        let (cert, key) = self_signed();
        let (other_cert, _) = self_signed();
        dir.write("cert.pem", &cert);
        dir.write("key.pem", &key);
        dir.write("other.pem", &other_cert);
        dir.write("junk.pem", "not pem at all\n");
        dir.write(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        dir.write(
            "garbage-der.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        for (cert, key, ca, needles) in [
            (
                "missing.pem",
                "key.pem",
                None,
                &["--xds-tls-cert", "missing.pem", "cannot read"][..],
            ),
            (
                "junk.pem",
                "key.pem",
                None,
                &["--xds-tls-cert", "junk.pem", "no PEM CERTIFICATE"],
            ),
            (
                "broken.pem",
                "key.pem",
                None,
                &["--xds-tls-cert", "broken.pem", "bad PEM"],
            ),
            (
                "cert.pem",
                "junk.pem",
                None,
                &["--xds-tls-key", "junk.pem", "no PEM PRIVATE KEY"],
            ),
            (
                "cert.pem",
                "missing.pem",
                None,
                &["--xds-tls-key", "missing.pem", "cannot read"],
            ),
            // Well-formed PEM, but not a certificate, or not the key's.
            (
                "garbage-der.pem",
                "key.pem",
                None,
                &["--xds-tls-cert", "garbage-der.pem", "--xds-tls-key"],
            ),
            (
                "other.pem",
                "key.pem",
                None,
                &["other.pem", "key.pem", "KeyMismatch"],
            ),
            (
                "cert.pem",
                "key.pem",
                Some("missing.pem"),
                &["--xds-tls-client-ca", "missing.pem", "cannot read"],
            ),
            (
                "cert.pem",
                "key.pem",
                Some("junk.pem"),
                &["--xds-tls-client-ca", "junk.pem", "no PEM CERTIFICATE"],
            ),
            (
                "cert.pem",
                "key.pem",
                Some("garbage-der.pem"),
                &["--xds-tls-client-ca", "garbage-der.pem"],
            ),
        ] {
            let err = load(&dir, cert, key, ca).unwrap_err();
            for needle in needles {
                assert!(
                    err.contains(needle),
                    "{cert} {key} {ca:?}: {err} lacks {needle}"
                );
            }
        }
    }
}
