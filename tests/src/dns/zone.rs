//! A small subset of RFC 1035 master-file syntax, enough for the demo zone. CoreDNS serves
//! the same file, so only standard syntax is accepted: `$ORIGIN`, `$TTL`, `;` comments,
//! parentheses spanning lines, an omitted owner (leading blank) meaning the previous one,
//! `NAME [TTL] [IN] TYPE DATA` with TTL and class in either order, types A, AAAA and SRV
//! (SOA and NS are accepted so the file can be a real zone, and only mark the name as existing).

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;

use super::{store::normalize, Srv};
use crate::error::{HarnessError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ZoneData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv(Srv),
    /// SOA or NS: not served, but the name exists.
    Anchor,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ZoneRecord {
    /// Absolute, normalized (lower case, no trailing dot).
    pub(crate) name: String,
    /// `None`: no TTL anywhere in the file so far; the server's default applies.
    pub(crate) ttl: Option<u32>,
    pub(crate) data: ZoneData,
}

#[derive(Debug)]
struct Token<'a> {
    line: usize,
    text: &'a str,
}

/// One logical entry: a line, or several joined by parentheses.
#[derive(Debug)]
struct Entry<'a> {
    line: usize,
    owner_omitted: bool,
    tokens: Vec<Token<'a>>,
}

fn zone_err(line: usize, token: &str, reason: impl Into<String>) -> HarnessError {
    HarnessError::Zone {
        line,
        token: token.to_owned(),
        reason: reason.into(),
    }
}

fn token_err(token: &Token<'_>, reason: impl Into<String>) -> HarnessError {
    zone_err(token.line, token.text, reason)
}

pub(crate) fn parse_zone(text: &str) -> Result<Vec<ZoneRecord>> {
    let mut origin: Option<String> = None;
    let mut dollar_ttl: Option<u32> = None;
    let mut last_ttl: Option<u32> = None;
    let mut last_owner: Option<String> = None;
    let mut records = Vec::new();

    for entry in entries(text)? {
        let Some((first, rest)) = entry.tokens.split_first() else {
            continue;
        };
        if !entry.owner_omitted && first.text.starts_with('$') {
            let [arg] = exact::<1>(first, rest, "one argument")?;
            match first.text.to_ascii_uppercase().as_str() {
                "$ORIGIN" => origin = Some(resolve_name(arg, origin.as_deref())?),
                "$TTL" => dollar_ttl = Some(parse_ttl(arg)?),
                _ => return Err(token_err(first, "unsupported directive")),
            }
            continue;
        }

        let (owner, mut rest) = if entry.owner_omitted {
            let owner = last_owner
                .clone()
                .ok_or_else(|| token_err(first, "no previous owner name to repeat"))?;
            (owner, entry.tokens.as_slice())
        } else {
            (resolve_name(first, origin.as_deref())?, rest)
        };

        // RFC 1035 allows `[TTL] [class]` in either order.
        let mut ttl = None;
        let mut class_seen = false;
        while let Some(token) = rest.first() {
            if ttl.is_none() && token.text.starts_with(|c: char| c.is_ascii_digit()) {
                ttl = Some(parse_ttl(token)?);
            } else if !class_seen && is_class(token.text) {
                if !token.text.eq_ignore_ascii_case("IN") {
                    return Err(token_err(token, "unsupported class (only IN)"));
                }
                class_seen = true;
            } else {
                break;
            }
            rest = &rest[1..];
        }
        let Some((rtype, rdata)) = rest.split_first() else {
            let last = entry.tokens.last().unwrap_or(first);
            return Err(token_err(last, "missing record type"));
        };

        let data = parse_rdata(rtype, rdata, origin.as_deref())?;
        if ttl.is_some() {
            last_ttl = ttl;
        }
        records.push(ZoneRecord {
            name: owner.clone(),
            ttl: ttl.or(dollar_ttl).or(last_ttl),
            data,
        });
        last_owner = Some(owner);
    }
    Ok(records)
}

fn parse_rdata(rtype: &Token<'_>, rdata: &[Token<'_>], origin: Option<&str>) -> Result<ZoneData> {
    Ok(match rtype.text.to_ascii_uppercase().as_str() {
        "A" => {
            let [ip] = exact::<1>(rtype, rdata, "an IPv4 address")?;
            ZoneData::A(
                ip.text
                    .parse()
                    .map_err(|_| token_err(ip, "not an IPv4 address"))?,
            )
        }
        "AAAA" => {
            let [ip] = exact::<1>(rtype, rdata, "an IPv6 address")?;
            ZoneData::Aaaa(
                ip.text
                    .parse()
                    .map_err(|_| token_err(ip, "not an IPv6 address"))?,
            )
        }
        "SRV" => {
            let [priority, weight, port, target] =
                exact::<4>(rtype, rdata, "priority weight port target")?;
            ZoneData::Srv(Srv {
                priority: parse_u16(priority, "priority")?,
                weight: parse_u16(weight, "weight")?,
                port: parse_u16(port, "port")?,
                target: resolve_name(target, origin)?,
            })
        }
        "SOA" => {
            exact::<7>(
                rtype,
                rdata,
                "mname rname serial refresh retry expire minimum",
            )?;
            ZoneData::Anchor
        }
        "NS" => {
            exact::<1>(rtype, rdata, "a name server")?;
            ZoneData::Anchor
        }
        _ => {
            return Err(token_err(
                rtype,
                "unsupported record type (A, AAAA, SRV, SOA, NS)",
            ))
        }
    })
}

/// Splits the text into entries, joining lines inside parentheses and dropping comments.
fn entries(text: &str) -> Result<Vec<Entry<'_>>> {
    let mut out = Vec::new();
    let mut current: Option<Entry<'_>> = None;
    let mut depth = 0usize;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        // No quoted strings in the supported types, so `;` always starts a comment.
        let content = raw.split(';').next().unwrap_or_default();
        if current.is_none() {
            if content.trim().is_empty() {
                continue;
            }
            current = Some(Entry {
                line,
                owner_omitted: content.starts_with([' ', '\t']),
                tokens: Vec::new(),
            });
        }
        let Some(entry) = current.as_mut() else {
            continue;
        };
        for word in content.split_whitespace() {
            let mut start = 0;
            for (i, c) in word.char_indices() {
                if c != '(' && c != ')' {
                    continue;
                }
                if start < i {
                    entry.tokens.push(Token {
                        line,
                        text: &word[start..i],
                    });
                }
                if c == '(' {
                    depth += 1;
                } else {
                    depth = depth
                        .checked_sub(1)
                        .ok_or_else(|| zone_err(line, ")", "unbalanced parenthesis"))?;
                }
                start = i + 1;
            }
            if start < word.len() {
                entry.tokens.push(Token {
                    line,
                    text: &word[start..],
                });
            }
        }
        if depth == 0 {
            if let Some(done) = current.take() {
                out.push(done);
            }
        }
    }
    if let Some(open) = current {
        return Err(zone_err(open.line, "(", "parenthesis never closed"));
    }
    Ok(out)
}

/// Exactly `N` data tokens after `head`, or an error naming the missing or extra token.
fn exact<'t, 'a, const N: usize>(
    head: &'t Token<'a>,
    data: &'t [Token<'a>],
    expected: &str,
) -> Result<[&'t Token<'a>; N]> {
    if let Some(extra) = data.get(N) {
        return Err(token_err(
            extra,
            format!("unexpected token; expected {expected}"),
        ));
    }
    let refs: Vec<&Token<'a>> = data.iter().collect();
    refs.try_into().map_err(|_| {
        let last = data.last().unwrap_or(head);
        token_err(
            last,
            format!("{} needs {N} field(s): {expected}", head.text),
        )
    })
}

fn is_class(text: &str) -> bool {
    ["IN", "CH", "HS", "CS"]
        .iter()
        .any(|class| text.eq_ignore_ascii_case(class))
}

fn parse_u16(token: &Token<'_>, what: &str) -> Result<u16> {
    token
        .text
        .parse()
        .map_err(|_| token_err(token, format!("{what} is not a number in 0..=65535")))
}

/// Seconds, or BIND-style units: `300`, `5m`, `1h30m`, `1w`.
fn parse_ttl(token: &Token<'_>) -> Result<u32> {
    let bad = || token_err(token, "not a TTL (seconds, or units s/m/h/d/w)");
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    let mut used_units = false;
    for c in token.text.chars() {
        if let Some(digit) = c.to_digit(10) {
            let so_far = number.unwrap_or(0);
            number = Some(
                so_far
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(digit)))
                    .ok_or_else(bad)?,
            );
            continue;
        }
        let unit: u64 = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        let value = number.take().ok_or_else(bad)?;
        total = value
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        used_units = true;
    }
    match number {
        Some(_) if used_units => return Err(bad()),
        Some(value) => total = value,
        None if !used_units => return Err(bad()),
        None => {}
    }
    u32::try_from(total).map_err(|_| bad())
}

/// Makes `token` absolute against `origin` and normalizes it.
fn resolve_name(token: &Token<'_>, origin: Option<&str>) -> Result<String> {
    let text = token.text;
    let absolute = if text == "@" {
        origin
            .ok_or_else(|| token_err(token, "`@` used before $ORIGIN"))?
            .to_owned()
    } else if let Some(stripped) = text.strip_suffix('.') {
        stripped.to_owned()
    } else {
        match origin {
            Some("") => text.to_owned(),
            Some(origin) => format!("{text}.{origin}"),
            None => return Err(token_err(token, "relative name used before $ORIGIN")),
        }
    };
    Name::from_ascii(format!("{absolute}."))
        .map_err(|e| token_err(token, format!("invalid domain name: {e}")))?;
    Ok(normalize(&absolute))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> ZoneData {
        ZoneData::Srv(Srv {
            priority,
            weight,
            port,
            target: target.into(),
        })
    }

    fn err_of(text: &str) -> (usize, String, String) {
        match parse_zone(text) {
            Err(HarnessError::Zone {
                line,
                token,
                reason,
            }) => (line, token, reason),
            other => panic!("expected a zone error, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_demo_shape() {
        let zone = "\
$ORIGIN test.
$TTL 5
; the apex, as CoreDNS wants it
@   IN SOA ns.test. admin.test. (
        2024010101 ; serial
        1h 15m 1w 5 )
    IN NS  ns
backend         A     127.0.0.2
                A     127.0.0.3   ; same owner
Backend6  30 IN AAAA  ::1
_http._tcp.api  IN 60 SRV 10 5 8080 api1
_http._tcp.api        SRV 20 0 8081 other.example.
";
        let records = parse_zone(zone).unwrap();
        let got: Vec<_> = records
            .iter()
            .map(|r| (r.name.as_str(), r.ttl, r.data.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("test", Some(5), ZoneData::Anchor),
                ("test", Some(5), ZoneData::Anchor),
                (
                    "backend.test",
                    Some(5),
                    ZoneData::A(Ipv4Addr::new(127, 0, 0, 2))
                ),
                (
                    "backend.test",
                    Some(5),
                    ZoneData::A(Ipv4Addr::new(127, 0, 0, 3))
                ),
                (
                    "backend6.test",
                    Some(30),
                    ZoneData::Aaaa(Ipv6Addr::LOCALHOST)
                ),
                (
                    "_http._tcp.api.test",
                    Some(60),
                    srv(10, 5, 8080, "api1.test")
                ),
                (
                    "_http._tcp.api.test",
                    Some(5),
                    srv(20, 0, 8081, "other.example")
                ),
            ]
        );
    }

    #[test]
    fn origin_can_be_relative_and_ttl_defaults_to_previous() {
        let zone = "$ORIGIN test.\n$ORIGIN sub\na 7 A 10.0.0.1\nb A 10.0.0.2\n";
        let records = parse_zone(zone).unwrap();
        assert_eq!(records[0].name, "a.sub.test");
        assert_eq!(records[1].ttl, Some(7));
    }

    #[test]
    fn no_ttl_anywhere_means_server_default() {
        let records = parse_zone("x.test. A 10.0.0.1").unwrap();
        assert_eq!(records[0].ttl, None);
    }

    #[test]
    fn ttl_units() {
        let tok = |text| Token { line: 1, text };
        assert_eq!(parse_ttl(&tok("300")).unwrap(), 300);
        assert_eq!(parse_ttl(&tok("1h30m")).unwrap(), 5400);
        assert_eq!(parse_ttl(&tok("1W")).unwrap(), 604_800);
        assert!(parse_ttl(&tok("1h30")).is_err());
        assert!(parse_ttl(&tok("h")).is_err());
        assert!(parse_ttl(&tok("99999999999")).is_err());
    }

    #[test]
    fn errors_name_line_and_token() {
        assert_eq!(
            err_of("$ORIGIN test.\n\nbackend A 127.0.0.300\n"),
            (3, "127.0.0.300".into(), "not an IPv4 address".into())
        );
        let (line, token, _) = err_of("$ORIGIN test.\nx CNAME y\n");
        assert_eq!((line, token.as_str()), (2, "CNAME"));
        let (line, token, _) = err_of("backend A 127.0.0.2\n");
        assert_eq!((line, token.as_str()), (1, "backend"));
        let (line, token, _) = err_of("$ORIGIN test.\ns SRV 1 2 3\n");
        assert_eq!((line, token.as_str()), (2, "3"));
        let (line, token, _) = err_of("$ORIGIN test.\ns A 10.0.0.1 10.0.0.2\n");
        assert_eq!((line, token.as_str()), (2, "10.0.0.2"));
        let (line, token, _) = err_of("$ORIGIN test.\ns SRV 1 2 70000 t\n");
        assert_eq!((line, token.as_str()), (2, "70000"));
        let (line, token, _) = err_of("$ORIGIN test.\n@ SOA a b ( 1 2\n3 4 5\n");
        assert_eq!((line, token.as_str()), (2, "("));
        let (line, token, _) = err_of("$INCLUDE other.zone\n");
        assert_eq!((line, token.as_str()), (1, "$INCLUDE"));
        let (line, token, _) = err_of("  A 10.0.0.1\n");
        assert_eq!((line, token.as_str()), (1, "A"));
        let (line, token, _) = err_of("$ORIGIN test.\nx CH A 10.0.0.1\n");
        assert_eq!((line, token.as_str()), (2, "CH"));
        let (line, token, _) = err_of("$ORIGIN test.\nx 5\n");
        assert_eq!((line, token.as_str()), (2, "5"));
        let (line, token, _) = err_of("$ORIGIN test.\nbad..name A 10.0.0.1\n");
        assert_eq!((line, token.as_str()), (2, "bad..name"));
    }

    #[test]
    fn error_message_is_readable() {
        let err = parse_zone("$ORIGIN test.\nx A nope\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "zone line 2: not an IPv4 address (at `nope`)"
        );
    }
}
