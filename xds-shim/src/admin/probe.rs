//! `xds-shim probe URL`: one HTTP GET (or empty POST), exit 0 on a 2xx answer. A health check for images
//! with no shell and no curl (distroless): compose runs it against the shim's `/readyz`
//! and, from the same image, Envoy's `/ready`. Plain `http://` over std's blocking
//! sockets: no runtime, nothing else to ship.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// An `http://HOST[:PORT][/PATH]` URL, checked when the flag is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeUrl {
    host: String,
    port: u16,
    path: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("invalid URL {0:?}: only http://HOST[:PORT][/PATH] is supported")]
    Scheme(String),
    #[error("invalid URL {0:?}: no host")]
    NoHost(String),
    #[error("invalid URL {0:?}: bad port")]
    Port(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{url}: cannot resolve {host}: {source}")]
    Resolve {
        url: String,
        host: String,
        source: std::io::Error,
    },
    #[error("{url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{url}: answered {status}")]
    Status { url: String, status: String },
    #[error("{url}: not an HTTP answer: {line:?}")]
    Malformed { url: String, line: String },
}

impl std::str::FromStr for ProbeUrl {
    type Err = UrlError;

    fn from_str(text: &str) -> Result<Self, UrlError> {
        let rest = text
            .strip_prefix("http://")
            .ok_or_else(|| UrlError::Scheme(text.into()))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        // `[v6]:port`, `host:port`, or a host alone (port 80).
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                (host, port.parse().map_err(|_| UrlError::Port(text.into()))?)
            }
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(UrlError::NoHost(text.into()));
        }
        Ok(ProbeUrl {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

impl std::fmt::Display for ProbeUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            write!(f, "http://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// The request a probe sends: a GET, or an empty POST (Envoy's admin takes only POST for
/// what changes its state, e.g. `/drain_listeners` from a preStop hook).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// Sends `method` to `url` within `timeout` (per connect, write and read); `Ok` on a 2xx
/// status.
pub fn probe(url: &ProbeUrl, method: Method, timeout: Duration) -> Result<(), ProbeError> {
    let io = |source| ProbeError::Io {
        url: url.to_string(),
        source,
    };
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|source| ProbeError::Resolve {
            url: url.to_string(),
            host: url.host.clone(),
            source,
        })?
        .collect();
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut stream = stream.ok_or_else(|| {
        io(last.unwrap_or_else(|| std::io::Error::other("the name has no address")))
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let request = match method {
        Method::Get => "GET",
        Method::Post => "POST",
    };
    let length = match method {
        Method::Get => "",
        Method::Post => "Content-Length: 0\r\n",
    };
    write!(
        stream,
        "{request} {} HTTP/1.1\r\nHost: {host}:{}\r\n{length}Connection: close\r\nUser-Agent: xds-shim-probe\r\n\r\n",
        url.path, url.port
    )
    .map_err(io)?;
    // The status line is all we read; it fits in the first bytes of the answer.
    let mut head = [0u8; 256];
    let mut len = 0;
    while len < head.len() && !head[..len].contains(&b'\n') {
        match stream.read(&mut head[len..]).map_err(io)? {
            0 => break,
            n => len += n,
        }
    }
    let line = String::from_utf8_lossy(&head[..len]);
    let line = line.lines().next().unwrap_or("").trim();
    check_status_line(line).map_err(|status| match status {
        Some(status) => ProbeError::Status {
            url: url.to_string(),
            status,
        },
        None => ProbeError::Malformed {
            url: url.to_string(),
            line: line.to_string(),
        },
    })
}

/// `Ok` for `HTTP/1.x 2xx ...`; `Err(Some(status))` for another status, `Err(None)` for
/// anything else.
fn check_status_line(line: &str) -> Result<(), Option<String>> {
    let mut parts = line.splitn(2, ' ');
    let (version, status) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let code = status.get(..3).and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(200..=299) if version.starts_with("HTTP/1.") => Ok(()),
        Some(_) if version.starts_with("HTTP/1.") => Err(Some(status.to_string())),
        _ => Err(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Result<ProbeUrl, UrlError> {
        text.parse()
    }

    #[test]
    fn urls() {
        let u = url("http://127.0.0.1:18001/readyz").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 18001, "/readyz")
        );
        let u = url("http://xds-shim").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("xds-shim", 80, "/")
        );
        let u = url("http://[::1]:9901/ready?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 9901, "/ready?x=1")
        );
        assert_eq!(u.to_string(), "http://[::1]:9901/ready?x=1");
        assert!(matches!(url("https://a/"), Err(UrlError::Scheme(_))));
        assert!(matches!(url("http://:80/"), Err(UrlError::NoHost(_))));
        assert!(matches!(url("http://a:http/"), Err(UrlError::Port(_))));
        assert!(url("http://a:99999/")
            .unwrap_err()
            .to_string()
            .contains("\"http://a:99999/\""));
    }

    #[test]
    fn status_lines() {
        assert_eq!(check_status_line("HTTP/1.1 200 OK"), Ok(()));
        assert_eq!(check_status_line("HTTP/1.0 204 No Content"), Ok(()));
        assert_eq!(
            check_status_line("HTTP/1.1 503 Service Unavailable"),
            Err(Some("503 Service Unavailable".into()))
        );
        assert_eq!(check_status_line("SSH-2.0-OpenSSH"), Err(None));
        assert_eq!(check_status_line(""), Err(None));
    }
}
