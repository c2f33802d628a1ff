//! A tiny blocking HTTP/1.1 client: one request per connection, sent exactly as given,
//! so tests control the Host header and can use absolute-form targets.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use crate::error::{HarnessError, Result};

/// Connect, read and write timeout of every request.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Lower-case names; repeated headers (`set-cookie`) keep every value in order.
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: String,
}

impl HttpResponse {
    /// First value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .and_then(|values| values.first())
            .map(String::as_str)
    }

    /// Every value of header `name` (any case).
    pub fn header_all(&self, name: &str) -> &[String] {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(&self.body).map_err(|e| HarnessError::Http {
            target: "response body".into(),
            reason: format!("not the expected JSON ({e}): {}", self.body),
        })
    }
}

/// `GET target`; see [`http_request`].
pub fn http_get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Result<HttpResponse> {
    http_request(addr, "GET", target, headers, b"")
}

/// Sends one request to `addr` and reads the response until the server closes.
///
/// `target` is sent verbatim: `/path` or absolute-form `http://dns+backend.test:8080/x`.
/// `Host` defaults to `addr` unless `headers` has one; `Connection: close` and
/// `Content-Length` are added unless given.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    let what = format!("{method} {target} via {addr}");
    let has = |name: &str| headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    let bodyless = matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS");
    if !has("content-length") && !has("transfer-encoding") && (!body.is_empty() || !bodyless) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");

    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)
        .map_err(HarnessError::io(format!("connect for {what}")))?;
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(HTTP_TIMEOUT)))
        .map_err(HarnessError::io(format!("set timeouts for {what}")))?;
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(HarnessError::io(format!("send {what}")))?;
    // Read until the response is complete rather than until EOF, so a server that keeps
    // the connection open despite `Connection: close` does not cost a timeout.
    let head_request = method == "HEAD";
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream
            .read(&mut buf)
            .map_err(HarnessError::io(format!("read response to {what}")))?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(response) = complete_response(&raw, head_request) {
            return Ok(response);
        }
    }
    parse_response(&raw, head_request).map_err(|reason| HarnessError::Http {
        target: what,
        reason,
    })
}

/// The response, if `raw` already holds all of it by its own framing.
fn complete_response(raw: &[u8], head_request: bool) -> Option<HttpResponse> {
    let response = parse_response(raw, head_request).ok()?;
    let framed = head_request
        || matches!(response.status, 100..=199 | 204 | 304)
        || response.header("content-length").is_some()
        || response
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
    framed.then_some(response)
}

/// Parses a complete response (the connection was read to EOF).
fn parse_response(raw: &[u8], head_request: bool) -> Result<HttpResponse, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {:?}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .filter(|_| status_line.starts_with("HTTP/1."))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers
            .entry(name.trim().to_ascii_lowercase())
            .or_default()
            .push(value.trim().to_owned());
    }
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    };
    let body = if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if first("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(length) = first("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| format!("bad content-length {length:?}"))?;
        rest.get(..length)
            .ok_or_else(|| format!("body shorter than content-length {length}"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).ok_or("truncated chunk end")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_repeated_headers() {
        let raw = b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 5\r\n\r\nhello";
        let response = parse_response(raw, false).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header_all("SET-COOKIE"), ["a=1", "b=2"]);
        assert_eq!(response.header("content-length"), Some("5"));
        assert_eq!(response.body, "hello");
    }

    #[test]
    fn parses_chunked() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nLIVE\r\n3;x=y\r\n!!!\r\n0\r\n\r\n";
        let response = parse_response(raw, false).unwrap();
        assert_eq!(response.status, 503);
        assert_eq!(response.body, "LIVE!!!");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", false).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n", false).is_err());
    }
}
