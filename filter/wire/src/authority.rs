//! Parsing of request authorities that name a dnslb upstream.
//!
//! `dns+HOST:PORT` and `srv+NAME` follow VictoriaMetrics' upstream syntax. The
//! Envoy cluster is named exactly like the spec (without scheme), so the filter
//! needs no lookup table: the authority itself names the cluster.

use thiserror::Error;

/// Longest DNS name in presentation form (RFC 1035 §2.3.4, without the root dot).
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// A request authority that names a dnslb upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Envoy cluster name, e.g. `dns+backend.test:8080`.
    pub cluster: String,
    /// What the backend sees as `:authority`, e.g. `backend.test:8080`.
    pub authority: String,
}

/// Why an authority that starts with `dns+` or `srv+` is not usable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthorityError {
    #[error("empty name in {0:?}")]
    EmptyName(String),
    #[error("missing port in {0:?}: dns+ needs HOST:PORT")]
    MissingPort(String),
    #[error("invalid port {port:?} in {authority:?}: must be 1-65535")]
    BadPort { authority: String, port: String },
    #[error("name too long in {0:?}: at most 253 characters")]
    NameTooLong(String),
    #[error("invalid DNS name {name:?}: {why}")]
    BadName { name: String, why: NameError },
    #[error("srv+ takes no port: {0:?}")]
    SrvWithPort(String),
}

/// Classifies an authority: `Ok(None)` for ordinary authorities (not ours),
/// `Ok(Some(_))` for a valid dnslb upstream, `Err` for a malformed one.
///
/// Names are case-insensitive and a trailing dot is dropped, so
/// `dns+Backend.Test.:8080` and `dns+backend.test:8080` are one cluster.
pub fn parse(authority: &str) -> Result<Option<Upstream>, AuthorityError> {
    let lower = authority.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("dns+") {
        parse_dns(authority, rest).map(Some)
    } else if let Some(rest) = lower.strip_prefix("srv+") {
        parse_srv(authority, rest).map(Some)
    } else {
        Ok(None)
    }
}

fn parse_dns(original: &str, rest: &str) -> Result<Upstream, AuthorityError> {
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| AuthorityError::MissingPort(original.to_string()))?;
    let host = authority_name(original, host)?;
    let port = parse_port(original, port)?;
    Ok(Upstream {
        cluster: format!("dns+{host}:{port}"),
        authority: format!("{host}:{port}"),
    })
}

fn parse_srv(original: &str, rest: &str) -> Result<Upstream, AuthorityError> {
    if rest.contains(':') {
        return Err(AuthorityError::SrvWithPort(original.to_string()));
    }
    let name = authority_name(original, rest)?;
    Ok(Upstream {
        cluster: format!("srv+{name}"),
        authority: name,
    })
}

fn parse_port(original: &str, port: &str) -> Result<u16, AuthorityError> {
    let bad = || AuthorityError::BadPort {
        authority: original.to_string(),
        port: port.to_string(),
    };
    // `u16::from_str` accepts a leading '+'; a port is digits only.
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(p) => Ok(p),
    }
}

/// Why a name is not a usable DNS name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than 253 characters")]
    TooLong,
    #[error("it has an empty label")]
    EmptyLabel,
    #[error("a label is longer than 63 characters")]
    LabelTooLong,
    #[error("a label starts or ends with '-'")]
    LabelHyphen,
    #[error("only letters, digits, '-' and '_' are allowed in labels")]
    BadCharacter,
}

/// dnslb's one check of a name (the filter's authorities, the shim's upstreams and SNI
/// names, and the recommended bootstrap's authority regex agree with it): lowercased,
/// trailing dot removed, RFC 1123 labels, plus `_`, which SRV names (`_http._tcp`) and
/// internal names (compose services like `my_app`) use.
pub fn normalize_name(name: &str) -> Result<String, NameError> {
    let lower = name.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong);
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(NameError::BadCharacter);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(NameError::LabelHyphen);
        }
    }
    Ok(name.to_string())
}

/// [`normalize_name`] of the name in `original`, as an authority error.
fn authority_name(original: &str, name: &str) -> Result<String, AuthorityError> {
    normalize_name(name).map_err(|why| match why {
        NameError::Empty => AuthorityError::EmptyName(original.to_string()),
        NameError::TooLong => AuthorityError::NameTooLong(original.to_string()),
        why => AuthorityError::BadName {
            name: name.to_string(),
            why,
        },
    })
}

/// Splits an absolute-form request target (`http://dns+b.test:8080/x?y`)
/// into its authority and origin-form path; `None` when the target is not an
/// `http`/`https` absolute URL.
pub fn split_absolute_form(target: &str) -> Option<(&str, String)> {
    let scheme_len = ["http://", "https://"]
        .iter()
        .find(|s| {
            target
                .get(..s.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(s))
        })?
        .len();
    let rest = &target[scheme_len..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() {
        return None;
    }
    let path = match tail.chars().next() {
        Some('/') => tail.to_string(),
        Some(_) => format!("/{tail}"),
        None => "/".to_string(),
    };
    Some((authority, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    // The same tests run natively and, under Node, compiled to wasm32.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn ok(a: &str) -> Upstream {
        parse(a).unwrap().unwrap()
    }

    #[test]
    fn plain_authorities_are_not_ours() {
        assert_eq!(parse("backend.test:8080"), Ok(None));
        assert_eq!(parse("example.com"), Ok(None));
        assert_eq!(parse(""), Ok(None));
    }

    #[test]
    fn dns_upstream() {
        let u = ok("dns+backend.test:8080");
        assert_eq!(u.cluster, "dns+backend.test:8080");
        assert_eq!(u.authority, "backend.test:8080");
    }

    #[test]
    fn case_and_trailing_dot_are_normalized() {
        let u = ok("DNS+Backend.TEST.:8080");
        assert_eq!(u.cluster, "dns+backend.test:8080");
        assert_eq!(u.authority, "backend.test:8080");
    }

    #[test]
    fn srv_upstream() {
        let u = ok("srv+_http._tcp.api.test");
        assert_eq!(u.cluster, "srv+_http._tcp.api.test");
        assert_eq!(u.authority, "_http._tcp.api.test");
    }

    #[test]
    fn bad_ports() {
        for a in [
            "dns+b.test:0",
            "dns+b.test:65536",
            "dns+b.test:",
            "dns+b.test:+80",
            "dns+b.test:8o",
        ] {
            assert!(
                matches!(parse(a), Err(AuthorityError::BadPort { .. })),
                "{a}"
            );
        }
        assert_eq!(
            parse("dns+b.test"),
            Err(AuthorityError::MissingPort("dns+b.test".into()))
        );
    }

    #[test]
    fn bad_names() {
        assert!(matches!(
            parse("dns+:80"),
            Err(AuthorityError::EmptyName(_))
        ));
        assert!(matches!(parse("srv+"), Err(AuthorityError::EmptyName(_))));
        assert!(matches!(
            parse("dns+a..b:80"),
            Err(AuthorityError::BadName { .. })
        ));
        assert!(matches!(
            parse("dns+-a.b:80"),
            Err(AuthorityError::BadName { .. })
        ));
        assert!(matches!(
            parse("dns+a b:80"),
            Err(AuthorityError::BadName { .. })
        ));
        assert!(matches!(
            parse("dns+a/b:80"),
            Err(AuthorityError::BadName { .. })
        ));
        let long_label = format!("dns+{}.test:80", "a".repeat(64));
        assert!(matches!(
            parse(&long_label),
            Err(AuthorityError::BadName { .. })
        ));
        let long_name = format!("dns+{}:80", ["abcdefghi"; 26].join("."));
        assert!(matches!(
            parse(&long_name),
            Err(AuthorityError::NameTooLong(_))
        ));
        assert!(matches!(
            parse("srv+_x._tcp.a:80"),
            Err(AuthorityError::SrvWithPort(_))
        ));
    }

    #[test]
    fn absolute_form_targets_are_split() {
        assert_eq!(
            split_absolute_form("http://dns+vminsert:8480/api/v1/write?x=1"),
            Some(("dns+vminsert:8480", "/api/v1/write?x=1".to_string()))
        );
        assert_eq!(
            split_absolute_form("HTTPS://a.test"),
            Some(("a.test", "/".to_string()))
        );
        assert_eq!(
            split_absolute_form("http://a.test?q"),
            Some(("a.test", "/?q".to_string()))
        );
        assert_eq!(split_absolute_form("/plain"), None);
        assert_eq!(split_absolute_form("*"), None);
        assert_eq!(split_absolute_form("ftp://a.test/"), None);
        assert_eq!(split_absolute_form("http:///x"), None);
    }

    #[test]
    fn error_names_the_value() {
        let e = parse("dns+b.test:99999").unwrap_err().to_string();
        assert!(e.contains("99999"), "{e}");
    }
}
