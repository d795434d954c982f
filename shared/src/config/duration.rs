//! The one duration type of every config file: `"250ms"`, `"10s"`, `"5m"`, `"2h"`, `"30d"`, or
//! compounds such as `"1h30m"`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// A config duration. Serialises back to the shortest exact text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

/// Why a duration text does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid duration {text:?}: {reason}; expected a duration like 500ms, 10s, 5m, 1h")]
pub struct DurationError {
    text: String,
    reason: &'static str,
}

impl DurationError {
    /// Why, without the text or the hint (`"missing unit"`), for messages that quote the text
    /// themselves.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl Duration {
    /// From whole milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    /// From whole seconds.
    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }

    /// Whole milliseconds (saturating).
    pub fn as_millis(&self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    /// The std duration.
    pub const fn get(&self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| DurationError {
            text: text.to_owned(),
            reason,
        };
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(err("empty"));
        }
        let mut total: u64 = 0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(err("expected a number"));
            }
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| err("number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let factor = UNITS
                .iter()
                .find(|(u, _)| *u == unit)
                .map(|(_, f)| *f)
                .ok_or_else(|| {
                    err(if unit.is_empty() {
                        "missing unit"
                    } else {
                        "unknown unit"
                    })
                })?;
            total = n
                .checked_mul(factor)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| err("too large"))?;
        }
        Ok(Duration::from_millis(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, factor) in UNITS {
            if ms >= factor {
                write!(f, "{}{unit}", ms / factor)?;
                ms %= factor;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_compounds() {
        let cases = [
            ("250ms", 250),
            ("10s", 10_000),
            ("5m", 300_000),
            ("2h", 7_200_000),
            ("30d", 2_592_000_000),
            ("1h30m", 5_400_000),
            ("1s500ms", 1_500),
            (" 7s ", 7_000),
        ];
        for (text, ms) in cases {
            assert_eq!(text.parse::<Duration>().unwrap().as_millis(), ms, "{text}");
        }
    }

    #[test]
    fn rejects_bad_text_with_the_reason() {
        let cases = [
            ("", "invalid duration \"\": empty"),
            ("10", "invalid duration \"10\": missing unit"),
            ("10y", "invalid duration \"10y\": unknown unit"),
            ("s", "invalid duration \"s\": expected a number"),
            ("-5s", "invalid duration \"-5s\": expected a number"),
            (
                "99999999999999999999s",
                "invalid duration \"99999999999999999999s\": number too large",
            ),
        ];
        for (text, msg) in cases {
            let e = text.parse::<Duration>().unwrap_err().to_string();
            assert!(e.starts_with(msg), "{text}: {e}");
        }
    }

    #[test]
    fn displays_the_shortest_exact_text() {
        assert_eq!(Duration::from_millis(5_400_000).to_string(), "1h30m");
        assert_eq!(Duration::from_millis(1_500).to_string(), "1s500ms");
        assert_eq!(Duration::from_millis(0).to_string(), "0s");
        assert_eq!(Duration::from_secs(86_400).to_string(), "1d");
    }
}
