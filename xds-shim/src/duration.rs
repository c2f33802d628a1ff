//! Human durations for flags: `500ms`, `5s`, `1m`, `1h`.
//!
//! A unit is required: a bare `5` is rejected rather than guessed, so `--interval 500`
//! cannot silently mean eight minutes.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration (expected e.g. 500ms, 5s, 1m)")]
    Empty,
    #[error("{0:?} has no unit (expected ms, s, m or h, e.g. 5s)")]
    MissingUnit(String),
    #[error("{0:?} has an unknown unit (expected ms, s, m or h)")]
    UnknownUnit(String),
    #[error("{0:?} does not start with a whole number (expected e.g. 500ms, 5s, 1m)")]
    BadNumber(String),
    #[error("{0:?} must be greater than zero")]
    Zero(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(DurationError::BadNumber(text.to_string()));
    }
    let millis_per_unit: u64 = match unit {
        "" => return Err(DurationError::MissingUnit(text.to_string())),
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(DurationError::UnknownUnit(text.to_string())),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| DurationError::TooLarge(text.to_string()))?;
    let millis = value
        .checked_mul(millis_per_unit)
        .ok_or_else(|| DurationError::TooLarge(text.to_string()))?;
    if millis == 0 {
        return Err(DurationError::Zero(text.to_string()));
    }
    Ok(Duration::from_millis(millis))
}

/// `5s`, `250ms`, `0s`: the syntax the flags and the file accept.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// [`human`] for `#[serde(serialize_with)]`.
pub fn serialize_human<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&human(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration(" 5s "), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(
            parse_duration("5"),
            Err(DurationError::MissingUnit("5".into()))
        );
        assert_eq!(
            parse_duration("5sec"),
            Err(DurationError::UnknownUnit("5sec".into()))
        );
        assert_eq!(
            parse_duration("1.5s"),
            Err(DurationError::UnknownUnit("1.5s".into()))
        );
        assert_eq!(
            parse_duration("s"),
            Err(DurationError::BadNumber("s".into()))
        );
        assert_eq!(
            parse_duration("-1s"),
            Err(DurationError::BadNumber("-1s".into()))
        );
        assert_eq!(parse_duration("0s"), Err(DurationError::Zero("0s".into())));
        assert_eq!(
            parse_duration("0ms"),
            Err(DurationError::Zero("0ms".into()))
        );
        assert!(matches!(
            parse_duration("99999999999999999999h"),
            Err(DurationError::TooLarge(_))
        ));
        assert!(matches!(
            parse_duration("9999999999999999h"),
            Err(DurationError::TooLarge(_))
        ));
    }

    #[test]
    fn errors_name_the_value() {
        let msg = parse_duration("10 parsecs").unwrap_err().to_string();
        assert!(msg.contains("\"10 parsecs\""), "{msg}");
    }
}
