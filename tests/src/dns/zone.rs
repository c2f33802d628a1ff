//! Zone files for the test DNS server, read with hickory's RFC 1035 master-file parser
//! (`hickory_proto::serialize::txt::Parser`). CoreDNS serves the demo zone too, so only
//! standard syntax is accepted, and only the types the server answers: A, AAAA and SRV
//! (SOA and NS are accepted so the file can be a real zone, and only mark the name as existing).
//!
//! The thin layer here covers what hickory's parser does not do for us:
//! - a record with no TTL and no `$TTL` before it is an error there; here it takes the
//!   server's default TTL (settable at run time), so a marker record with [`NO_TTL`] goes
//!   first and stands in for "none";
//! - a relative `$ORIGIN` replaces the origin there instead of extending it (RFC 1035
//!   §5.1): it is made absolute before hickory sees it;
//! - a relative name before any `$ORIGIN` is accepted there (and fails only at the end,
//!   naming no record): a marker origin catches it;
//! - `$INCLUDE` would read files from disk: rejected, the zone is one text;
//! - its errors carry no line number: [`locate`] finds the first line at which a prefix
//!   of the file stops parsing.
//!
//! Known leniency kept from hickory: extra data after a record's fields is ignored
//! (`x A 10.0.0.1 10.0.0.2` is one A record), a line with an owner but no type is
//! skipped, and a record repeated with the same data is served once.

use std::collections::BTreeMap;

use hickory_proto::{
    rr::{rdata::A, DNSClass, Name, RData, RecordSet, RrKey},
    serialize::txt::{LexerError, ParseError, Parser},
};

use super::{store::normalize, Srv};
use crate::error::{HarnessError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ZoneData {
    A(std::net::Ipv4Addr),
    Aaaa(std::net::Ipv6Addr),
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

/// TTL of the marker record: a record that inherits it was given no TTL. RFC 2181 §8
/// reads TTLs with the top bit set as 0, so no real zone states this one.
const NO_TTL: u32 = u32::MAX;
/// Owner of the marker record (`.invalid` is reserved, RFC 6761).
const NO_TTL_OWNER: &str = "dnslb-no-ttl.invalid.";
/// Origin in force before the file's first `$ORIGIN`.
const NO_ORIGIN: &str = "dnslb-no-origin.invalid.";

/// Why the zone (or a prefix of it) is not acceptable.
struct Fault {
    reason: String,
    /// The text ended inside parentheses or quotes: a prefix cut there says nothing.
    unclosed: bool,
}

impl Fault {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            unclosed: false,
        }
    }
}

impl From<ParseError> for Fault {
    fn from(error: ParseError) -> Self {
        let unclosed = matches!(
            error,
            ParseError::Lexer(LexerError::UnclosedList | LexerError::UnclosedQuotedString)
        );
        Self {
            reason: error.to_string(),
            unclosed,
        }
    }
}

/// Parses a whole zone; an error names the first bad line and what is wrong with it.
pub(crate) fn parse_zone(text: &str) -> Result<Vec<ZoneRecord>> {
    parse(text).map_err(|fault| locate(text, fault))
}

/// Finds the line a fault comes from: the first line at which the file's prefix fails.
/// Only runs on a bad file, and zones here are short, so re-parsing prefixes is cheap.
fn locate(text: &str, whole: Fault) -> HarnessError {
    let lines: Vec<&str> = text.lines().collect();
    let error = |line: usize, reason: String| HarnessError::Zone {
        line,
        text: lines.get(line - 1).map_or("", |l| l.trim()).to_owned(),
        reason,
    };
    let mut last_good = 0;
    for n in 1..=lines.len() {
        match parse(&lines[..n].join("\n")) {
            Ok(_) => last_good = n,
            Err(fault) if fault.unclosed => {}
            Err(fault) => return error(n, fault.reason),
        }
    }
    // Only an unclosed parenthesis or quote is left: it opens on the line after the last
    // prefix that parsed.
    error((last_good + 1).min(lines.len().max(1)), whole.reason)
}

fn parse(text: &str) -> Result<Vec<ZoneRecord>, Fault> {
    let text = absolute_origins(text)?;
    let input = format!("{NO_TTL_OWNER} {NO_TTL} IN A 0.0.0.0\n{text}");
    let origin = Name::from_ascii(NO_ORIGIN).map_err(|e| Fault::new(e.to_string()))?;
    let (_, rrsets) = Parser::new(input, None, Some(origin)).parse()?;
    records(rrsets)
}

/// Rejects `$INCLUDE` and makes every relative `$ORIGIN` absolute against the one before.
fn absolute_origins(text: &str) -> Result<String, Fault> {
    let mut origin = NO_ORIGIN.to_owned();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with("$INCLUDE") {
            return Err(Fault::new(
                "$INCLUDE is not supported: the zone is one file",
            ));
        }
        if let Some(rest) = line.strip_prefix("$ORIGIN") {
            let rest = rest.trim_start();
            let (name, tail) = rest.split_at(rest.find(char::is_whitespace).unwrap_or(rest.len()));
            if !name.is_empty() {
                origin = if name.ends_with('.') {
                    name.to_owned()
                } else {
                    format!("{name}.{origin}")
                };
                out.push_str(&format!("$ORIGIN {origin}{tail}\n"));
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// Turns hickory's record sets into the server's records, rejecting what it cannot serve.
fn records(rrsets: BTreeMap<RrKey, RecordSet>) -> Result<Vec<ZoneRecord>, Fault> {
    let mut out = Vec::new();
    for rrset in rrsets.values() {
        for record in rrset.records_without_rrsigs() {
            let name = served_name(&record.name)?;
            if name == normalize(NO_TTL_OWNER) {
                if record.data == RData::A(A::new(0, 0, 0, 0)) && record.ttl == NO_TTL {
                    continue;
                }
                return Err(Fault::new("a record with no owner name before it"));
            }
            if record.dns_class != DNSClass::IN {
                return Err(Fault::new(format!(
                    "class {} is not supported (only IN)",
                    record.dns_class
                )));
            }
            let data = match &record.data {
                RData::A(a) => ZoneData::A(a.0),
                RData::AAAA(aaaa) => ZoneData::Aaaa(aaaa.0),
                RData::SRV(srv) => ZoneData::Srv(Srv {
                    priority: srv.priority,
                    weight: srv.weight,
                    port: srv.port,
                    target: served_name(&srv.target)?,
                }),
                RData::SOA(_) | RData::NS(_) => ZoneData::Anchor,
                other => {
                    return Err(Fault::new(format!(
                        "record type {} is not supported (A, AAAA, SRV, SOA, NS)",
                        other.record_type()
                    )))
                }
            };
            out.push(ZoneRecord {
                name,
                ttl: (record.ttl != NO_TTL).then_some(record.ttl),
                data,
            });
        }
    }
    Ok(out)
}

/// The normalized name, or a fault when it was relative with no `$ORIGIN` to complete it.
fn served_name(name: &Name) -> Result<String, Fault> {
    let ascii = name.to_ascii().to_ascii_lowercase();
    if ascii == NO_ORIGIN {
        return Err(Fault::new("`@` used before $ORIGIN"));
    }
    match ascii.strip_suffix(&format!(".{NO_ORIGIN}")) {
        Some(relative) => Err(Fault::new(format!(
            "relative name `{relative}` used before $ORIGIN"
        ))),
        None => Ok(normalize(&ascii)),
    }
}

#[cfg(test)]
mod tests;
