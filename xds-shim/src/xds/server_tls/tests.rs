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
