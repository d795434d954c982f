//! SLO windows: the period an availability target is judged over, either rolling (`"30d"`: the
//! last 30 days up to now) or the calendar month so far (`"month"`, in UTC).
//!
//! "Now" is always a parameter, so the arithmetic stays pure and testable at any date.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;
use watchstand_shared::config::Duration;

use super::span::Span;

/// An SLO window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// The last this-many milliseconds up to now: `[now − d, now)`. Never 0.
    Rolling(u64),
    /// The current UTC calendar month so far: `[first instant of the month, now)`.
    CalendarMonth,
}

/// Why an SLO window does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid SLO window {text:?}: {reason} (use a duration such as \"30d\", \"7d\" or \"24h\", or \"month\" for the calendar month)")]
pub struct WindowError {
    /// The text as written.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Window {
    /// The span this window covers at `now_ms`. A calendar month whose start cannot be computed
    /// (a `now` past chrono's range, year 262143) gives the empty span `[now, now)`.
    pub fn resolve(&self, now_ms: u64) -> Span {
        match *self {
            Window::Rolling(ms) => Span::new(now_ms.saturating_sub(ms), now_ms),
            Window::CalendarMonth => Span::new(month_start_ms(now_ms).unwrap_or(now_ms), now_ms),
        }
    }
}

impl Window {
    /// Length of the whole period the error budget is for, at `now_ms`: the rolling length, or
    /// the whole calendar month containing `now_ms` (not only the part elapsed), so that early
    /// in a month one outage does not spend the month's budget.
    pub fn period_ms(&self, now_ms: u64) -> u64 {
        match *self {
            Window::Rolling(ms) => ms,
            Window::CalendarMonth => month_start_ms(now_ms)
                .zip(next_month_start_ms(now_ms))
                .map_or(0, |(a, b)| b.saturating_sub(a)),
        }
    }
}

/// The first instant (UTC) of the calendar month after the one containing `now_ms`.
fn next_month_start_ms(now_ms: u64) -> Option<u64> {
    let now = DateTime::<Utc>::from_timestamp_millis(i64::try_from(now_ms).ok()?)?;
    let (year, month) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    let start = NaiveDate::from_ymd_opt(year, month, 1)?
        .and_hms_opt(0, 0, 0)?
        .and_utc()
        .timestamp_millis();
    u64::try_from(start).ok()
}

/// The first instant (UTC) of the calendar month containing `now_ms`.
pub fn month_start_ms(now_ms: u64) -> Option<u64> {
    let now = DateTime::<Utc>::from_timestamp_millis(i64::try_from(now_ms).ok()?)?;
    let start = NaiveDate::from_ymd_opt(now.year(), now.month(), 1)?
        .and_hms_opt(0, 0, 0)?
        .and_utc()
        .timestamp_millis();
    u64::try_from(start).ok()
}

impl FromStr for Window {
    type Err = WindowError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| WindowError {
            text: text.to_owned(),
            reason,
        };
        let t = text.trim();
        if t.eq_ignore_ascii_case("month") {
            return Ok(Window::CalendarMonth);
        }
        if t.is_empty() {
            return Err(err("empty".into()));
        }
        if !t.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(err("not a duration or \"month\"".into()));
        }
        let d: Duration = t
            .parse()
            // The duration error quotes the text again; keep only its reason.
            .map_err(|e: watchstand_shared::config::DurationError| err(e.reason().to_owned()))?;
        match d.as_millis() {
            0 => Err(err("must be longer than zero".into())),
            ms => Ok(Window::Rolling(ms)),
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::Rolling(ms) => Duration::from_millis(*ms).fmt(f),
            Window::CalendarMonth => f.write_str("month"),
        }
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchstand_shared::time::{DAY_MS, HOUR_MS};

    /// Epoch ms of an RFC 3339 time, for readable tests.
    fn at(text: &str) -> u64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
            .try_into()
            .unwrap()
    }

    #[test]
    fn window_parses_rolling_durations_and_month() {
        let cases = [
            ("30d", Window::Rolling(30 * DAY_MS)),
            ("7d", Window::Rolling(7 * DAY_MS)),
            ("24h", Window::Rolling(24 * HOUR_MS)),
            ("1h30m", Window::Rolling(90 * 60_000)),
            ("month", Window::CalendarMonth),
            (" Month ", Window::CalendarMonth),
        ];
        for (text, w) in cases {
            assert_eq!(text.parse::<Window>().unwrap(), w, "{text}");
        }
    }

    #[test]
    fn window_rejects_bad_text_with_a_message_quoting_it() {
        let hint = "(use a duration such as \"30d\", \"7d\" or \"24h\", or \"month\" for the calendar month)";
        let cases = [
            ("", "invalid SLO window \"\": empty"),
            ("30", "invalid SLO window \"30\": missing unit"),
            ("30x", "invalid SLO window \"30x\": unknown unit"),
            (
                "monthly",
                "invalid SLO window \"monthly\": not a duration or \"month\"",
            ),
            (
                "-30d",
                "invalid SLO window \"-30d\": not a duration or \"month\"",
            ),
            ("30d!", "invalid SLO window \"30d!\": expected a number"),
            ("0d", "invalid SLO window \"0d\": must be longer than zero"),
        ];
        for (text, msg) in cases {
            let e = text.parse::<Window>().unwrap_err().to_string();
            assert_eq!(e, format!("{msg} {hint}"), "{text}");
        }
    }

    #[test]
    fn window_displays_and_serialises_as_written() {
        for text in ["30d", "12h", "month"] {
            let w: Window = text.parse().unwrap();
            assert_eq!(w.to_string(), text);
            assert_eq!(serde_json::to_string(&w).unwrap(), format!("\"{text}\""));
            assert_eq!(
                serde_json::from_str::<Window>(&format!("\"{text}\"")).unwrap(),
                w
            );
        }
    }

    #[test]
    fn the_budget_period_is_the_rolling_length_or_the_whole_calendar_month() {
        let day = 86_400_000;
        assert_eq!(Window::Rolling(30 * day).period_ms(5), 30 * day);
        // 2026-12-07T11:00:00Z: December has 31 days; 2028-02-10: February of a leap year, 29.
        assert_eq!(Window::CalendarMonth.period_ms(1_796_641_200_000), 31 * day);
        assert_eq!(Window::CalendarMonth.period_ms(1_833_753_600_000), 29 * day);
    }

    #[test]
    fn rolling_window_ends_at_now() {
        let now = at("2026-06-15T12:00:00Z");
        assert_eq!(
            Window::Rolling(30 * DAY_MS).resolve(now),
            Span::new(at("2026-05-16T12:00:00Z"), now)
        );
    }

    #[test]
    fn rolling_window_longer_than_time_since_epoch_starts_at_zero() {
        assert_eq!(
            Window::Rolling(30 * DAY_MS).resolve(1_000),
            Span::new(0, 1_000)
        );
    }

    #[test]
    fn calendar_month_starts_at_the_first_instant_of_the_month() {
        let now = at("2026-06-15T12:34:56.789Z");
        assert_eq!(
            Window::CalendarMonth.resolve(now),
            Span::new(at("2026-06-01T00:00:00Z"), now)
        );
    }

    #[test]
    fn calendar_month_across_the_year_boundary_december_to_january() {
        let last = at("2026-12-31T23:59:59.999Z");
        assert_eq!(
            Window::CalendarMonth.resolve(last),
            Span::new(at("2026-12-01T00:00:00Z"), last)
        );
        let first = at("2027-01-01T00:00:00Z");
        assert_eq!(
            Window::CalendarMonth.resolve(first),
            Span::new(first, first)
        );
        let next = first + 1;
        assert_eq!(Window::CalendarMonth.resolve(next), Span::new(first, next));
    }

    #[test]
    fn calendar_month_february_in_leap_year_2028() {
        let leap_day = at("2028-02-29T23:59:59.999Z");
        assert_eq!(
            Window::CalendarMonth.resolve(leap_day),
            Span::new(at("2028-02-01T00:00:00Z"), leap_day)
        );
        assert_eq!(
            Window::CalendarMonth.resolve(leap_day).len_ms(),
            29 * DAY_MS - 1
        );
        let march = at("2028-03-01T00:00:00.001Z");
        assert_eq!(
            Window::CalendarMonth.resolve(march),
            Span::new(at("2028-03-01T00:00:00Z"), march)
        );
    }

    #[test]
    fn calendar_month_at_the_epoch_and_out_of_range_does_not_panic() {
        assert_eq!(Window::CalendarMonth.resolve(0), Span::new(0, 0));
        assert_eq!(Window::CalendarMonth.resolve(DAY_MS), Span::new(0, DAY_MS));
        assert_eq!(
            Window::CalendarMonth.resolve(u64::MAX),
            Span::new(u64::MAX, u64::MAX)
        );
    }
}
