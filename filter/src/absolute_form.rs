//! Absolute-form `dns+`/`srv+` requests from HTTP/1 proxy clients.
//!
//! An application with `HTTP_PROXY=http://envoy:10000` sends
//! `GET http://dns+vminsert:8480/api/v1/write HTTP/1.1`. Envoy's HTTP/1 codec
//! rejects the `+` in that URL's host with a bare 400 (`http1.invalid_url`)
//! before any HTTP filter runs, and with `allow_absolute_url: false` the
//! connection manager rejects the non-relative path instead. So a network
//! filter in front of the connection manager rewrites such request heads to
//! origin form (`GET /api/v1/write`, `Host: dns+vminsert:8480`), as RFC 9112
//! §3.2.2 tells a proxy to treat them; the HTTP filter then sees an ordinary
//! `dns+` authority. Everything else passes byte for byte.
//!
//! The rewriter follows HTTP/1 message framing (Content-Length, chunked) so it
//! only ever looks at request heads, never at bodies. Anything it does not
//! understand switches it to pass-through for the rest of the connection, and
//! Envoy's codec judges those bytes as it would without the filter.

use crate::authority::split_absolute_form;

/// The `root_id` that selects this network filter in Envoy's configuration.
pub const ABSOLUTE_FORM_ROOT_ID: &str = "dnslb_absolute_form";

/// Longest request head held back while waiting for its end; Envoy's own
/// default limit on request headers is 60 KiB.
const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size or trailer line held back.
const MAX_LINE: usize = 4 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a request head.
    Head,
    /// Inside a Content-Length body: this many bytes left.
    Body(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside chunk data (plus its CRLF): this many bytes left.
    ChunkData(u64),
    /// Reading trailer lines after the last chunk.
    Trailers,
    /// Not HTTP/1 we follow (CONNECT, Upgrade, malformed): bytes pass as-is.
    Passthrough,
}

/// What to do with the bytes just received.
#[derive(Debug, PartialEq, Eq)]
pub enum Fed {
    /// Forward them as they are.
    Unchanged,
    /// Forward these bytes instead (possibly fewer: some are held back).
    Replaced(Vec<u8>),
}

/// Per-connection rewriter of the downstream byte stream.
#[derive(Debug)]
pub struct AbsoluteFormRewriter {
    state: State,
    /// Bytes received but not yet forwarded (an incomplete head or line).
    pending: Vec<u8>,
}

impl Default for AbsoluteFormRewriter {
    fn default() -> Self {
        Self {
            state: State::Head,
            pending: Vec::new(),
        }
    }
}

impl AbsoluteFormRewriter {
    /// Feeds bytes from the client; at `end_of_stream` nothing is held back.
    pub fn feed(&mut self, input: &[u8], end_of_stream: bool) -> Fed {
        if self.state == State::Passthrough && self.pending.is_empty() {
            return Fed::Unchanged;
        }
        let data = if self.pending.is_empty() {
            input.to_vec()
        } else {
            let mut d = std::mem::take(&mut self.pending);
            d.extend_from_slice(input);
            d
        };
        let mut out = Vec::with_capacity(data.len());
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            let used = match self.state {
                State::Passthrough => {
                    out.extend_from_slice(rest);
                    rest.len()
                }
                State::Body(left) | State::ChunkData(left) => {
                    let n = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&rest[..n]);
                    let left = left - n as u64;
                    self.state = match (self.state, left) {
                        (State::Body(_), 0) => State::Head,
                        (State::ChunkData(_), 0) => State::ChunkSize,
                        (State::Body(_), l) => State::Body(l),
                        (_, l) => State::ChunkData(l),
                    };
                    n
                }
                State::Head => match find(rest, b"\r\n\r\n") {
                    // Empty lines before a request line are allowed (RFC 9112 §2.2).
                    _ if rest.starts_with(b"\r\n") => {
                        out.extend_from_slice(b"\r\n");
                        2
                    }
                    Some(end) => {
                        let head = &rest[..end + 4];
                        let (bytes, next) = rewrite_head(head);
                        out.extend_from_slice(&bytes);
                        self.state = next;
                        head.len()
                    }
                    None if rest.len() > MAX_HEAD => {
                        self.state = State::Passthrough;
                        0
                    }
                    None => break,
                },
                State::ChunkSize | State::Trailers => match find(rest, b"\r\n") {
                    Some(end) => {
                        let line = &rest[..end];
                        out.extend_from_slice(&rest[..end + 2]);
                        self.state = if self.state == State::Trailers {
                            if line.is_empty() {
                                State::Head
                            } else {
                                State::Trailers
                            }
                        } else {
                            match parse_chunk_size(line) {
                                Some(0) => State::Trailers,
                                Some(size) => State::ChunkData(size.saturating_add(2)),
                                None => State::Passthrough,
                            }
                        };
                        end + 2
                    }
                    None if rest.len() > MAX_LINE => {
                        self.state = State::Passthrough;
                        0
                    }
                    None => break,
                },
            };
            pos += used;
        }
        if pos < data.len() {
            if end_of_stream {
                out.extend_from_slice(&data[pos..]);
            } else {
                self.pending = data[pos..].to_vec();
            }
        }
        if out == input {
            Fed::Unchanged
        } else {
            Fed::Replaced(out)
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next()?;
    let text = std::str::from_utf8(digits).ok()?.trim_matches([' ', '\t']);
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// Rewrites one complete request head (ending in CRLF CRLF) if its target is
/// an absolute-form `dns+`/`srv+` URL, and says how its body is framed.
fn rewrite_head(head: &[u8]) -> (Vec<u8>, State) {
    let unchanged = |state| (head.to_vec(), state);
    let Ok(text) = std::str::from_utf8(head) else {
        return unchanged(State::Passthrough);
    };
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return unchanged(State::Passthrough);
    };
    let headers: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    let Some(next) = framing(method, &headers) else {
        return unchanged(State::Passthrough);
    };
    let Some((authority, path)) = split_absolute_form(target) else {
        return unchanged(next);
    };
    let lower = authority.to_ascii_lowercase();
    if !(lower.starts_with("dns+") || lower.starts_with("srv+")) {
        return unchanged(next);
    }
    // The absolute-form authority replaces any Host header (RFC 9112 §3.2.2).
    let mut out = format!("{method} {path} {version}\r\nhost: {authority}\r\n");
    for h in headers.iter().filter(|h| !header_is(h, "host")) {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    (out.into_bytes(), next)
}

fn header_is(line: &str, name: &str) -> bool {
    line.split_once(':')
        .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
}

fn header_value(line: &str) -> &str {
    line.split_once(':').map_or("", |(_, v)| v.trim())
}

/// How the body after this head is framed; `None` when the rest of the
/// connection is not request heads and bodies we can follow.
fn framing(method: &str, headers: &[&str]) -> Option<State> {
    if method.eq_ignore_ascii_case("CONNECT") || headers.iter().any(|h| header_is(h, "upgrade")) {
        return None;
    }
    let chunked = headers
        .iter()
        .filter(|h| header_is(h, "transfer-encoding"))
        .any(|h| header_value(h).to_ascii_lowercase().contains("chunked"));
    let lengths: Vec<&str> = headers
        .iter()
        .filter(|h| header_is(h, "content-length"))
        .map(|h| header_value(h))
        .collect();
    match (chunked, lengths.as_slice()) {
        (true, []) => Some(State::ChunkSize),
        (false, []) => Some(State::Head),
        (false, [len]) => match len.parse::<u64>() {
            Ok(0) => Some(State::Head),
            Ok(n) if len.bytes().all(|b| b.is_ascii_digit()) => Some(State::Body(n)),
            _ => None,
        },
        // Both, or several lengths: Envoy rejects it; do not guess.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The same tests run natively and, under Node, compiled to wasm32.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Feeds `input` in pieces of `step` bytes and returns what is forwarded.
    fn run(input: &[u8], step: usize) -> Vec<u8> {
        let mut r = AbsoluteFormRewriter::default();
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = input.chunks(step).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            match r.feed(chunk, i + 1 == chunks.len()) {
                Fed::Unchanged => out.extend_from_slice(chunk),
                Fed::Replaced(b) => out.extend_from_slice(&b),
            }
        }
        out
    }

    fn all_steps(input: &str, expected: &str) {
        for step in 1..=input.len() {
            assert_eq!(
                String::from_utf8(run(input.as_bytes(), step)).unwrap(),
                expected,
                "step {step}"
            );
        }
    }

    #[test]
    fn dns_absolute_form_is_rewritten_to_origin_form() {
        all_steps(
            "GET http://dns+vminsert:8480/api/v1/write?x=1 HTTP/1.1\r\nHost: dns+vminsert:8480\r\nAccept: */*\r\n\r\n",
            "GET /api/v1/write?x=1 HTTP/1.1\r\nhost: dns+vminsert:8480\r\nAccept: */*\r\n\r\n",
        );
        all_steps(
            "GET HTTP://SRV+_http._tcp.api.test HTTP/1.1\r\nHost: other\r\n\r\n",
            "GET / HTTP/1.1\r\nhost: SRV+_http._tcp.api.test\r\n\r\n",
        );
    }

    #[test]
    fn other_requests_pass_unchanged() {
        let plain = "GET /x HTTP/1.1\r\nHost: dns+a.test:80\r\n\r\nGET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n";
        all_steps(plain, plain);
        let mut r = AbsoluteFormRewriter::default();
        assert_eq!(r.feed(plain.as_bytes(), false), Fed::Unchanged);
    }

    #[test]
    fn bodies_are_never_rewritten() {
        // A Content-Length body that looks like a request head.
        let body = "GET http://dns+evil:1/ HTTP/1.1\r\n\r\n";
        let input = format!(
            "POST http://dns+a.test:80/w HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}GET http://dns+b.test:80/ HTTP/1.1\r\n\r\n",
            body.len()
        );
        let expected = format!(
            "POST /w HTTP/1.1\r\nhost: dns+a.test:80\r\nContent-Length: {}\r\n\r\n{body}GET / HTTP/1.1\r\nhost: dns+b.test:80\r\n\r\n",
            body.len()
        );
        all_steps(&input, &expected);
    }

    #[test]
    fn chunked_bodies_are_followed() {
        let input = "POST http://dns+a.test:80/w HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                     5;ext=1\r\nGET h\r\n1b\r\nttp://dns+x:1/ HTTP/1.1\r\n\r\n\r\n0\r\nTrailer: t\r\n\r\n\
                     GET http://dns+b.test:80/n HTTP/1.1\r\n\r\n";
        let expected = "POST /w HTTP/1.1\r\nhost: dns+a.test:80\r\nTransfer-Encoding: chunked\r\n\r\n\
                        5;ext=1\r\nGET h\r\n1b\r\nttp://dns+x:1/ HTTP/1.1\r\n\r\n\r\n0\r\nTrailer: t\r\n\r\n\
                        GET /n HTTP/1.1\r\nhost: dns+b.test:80\r\n\r\n";
        all_steps(input, expected);
    }

    #[test]
    fn what_it_cannot_follow_passes_through() {
        // CONNECT and Upgrade turn the connection into a tunnel.
        let connect = "CONNECT a:443 HTTP/1.1\r\n\r\nGET http://dns+a.test:80/ HTTP/1.1\r\n\r\n";
        all_steps(connect, connect);
        let upgrade = "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\nGET http://dns+a.test:80/ HTTP/1.1\r\n\r\n";
        all_steps(upgrade, upgrade);
        // Conflicting framing is Envoy's to reject, untouched.
        let both = "POST http://dns+a.test:80/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        all_steps(both, both);
        let bad_size = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET http://dns+a.test:80/ HTTP/1.1\r\n\r\n";
        all_steps(bad_size, bad_size);
        let bad_line = "GARBAGE\r\n\r\nGET http://dns+a.test:80/ HTTP/1.1\r\n\r\n";
        all_steps(bad_line, bad_line);
    }

    #[test]
    fn incomplete_head_is_held_back_until_it_ends() {
        let mut r = AbsoluteFormRewriter::default();
        assert_eq!(
            r.feed(b"GET http://dns+a.test:80/x HT", false),
            Fed::Replaced(vec![])
        );
        assert_eq!(
            r.feed(b"TP/1.1\r\n\r\n", false),
            Fed::Replaced(b"GET /x HTTP/1.1\r\nhost: dns+a.test:80\r\n\r\n".to_vec())
        );
        // At the end of the stream nothing is kept.
        assert_eq!(r.feed(b"GET /partial", true), Fed::Unchanged);
    }

    #[test]
    fn oversized_head_stops_rewriting() {
        let mut r = AbsoluteFormRewriter::default();
        let huge = vec![b'a'; MAX_HEAD + 1];
        assert_eq!(r.feed(&huge, false), Fed::Unchanged);
        let later = b"GET http://dns+a.test:80/ HTTP/1.1\r\n\r\n";
        assert_eq!(r.feed(later, false), Fed::Unchanged);
    }
}
