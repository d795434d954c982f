//! Times and durations for people, in the CLI: `--from`/`--to` accept a date (`2026-12-07`),
//! RFC 3339, epoch milliseconds or a relative form (`-24h`, `-7d`, `now`); tables show times in
//! RFC 3339 (UTC, or local time with `--local`) and durations as `1h 2m`. JSON and CSV keep the
//! API's numbers.

use chrono::{DateTime, Local, NaiveDate, SecondsFormat, TimeZone as _, Utc};
use watchstand_shared::config::Duration;

/// Parses a `--from`/`--to` value into epoch ms; dates are midnight UTC, or local midnight with
/// `local`.
///
/// # Errors
/// A sentence naming the accepted forms.
pub fn parse_when(text: &str, now_ms: u64, local: bool) -> Result<u64, String> {
    let t = text.trim();
    if t == "now" {
        return Ok(now_ms);
    }
    if let Ok(ms) = t.parse::<u64>() {
        return Ok(ms);
    }
    if let Some(ago) = t.strip_prefix('-') {
        if let Ok(d) = ago.parse::<Duration>() {
            return now_ms.checked_sub(d.as_millis()).ok_or_else(|| {
                format!("{text:?} reaches before 1970-01-01T00:00:00Z, the earliest time there is")
            });
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(t) {
        return u64::try_from(t.timestamp_millis()).map_err(|_| {
            format!("{text:?} is before 1970-01-01T00:00:00Z, the earliest time there is")
        });
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        let ms = if local {
            Local
                .from_local_datetime(&midnight)
                .earliest()
                .map(|t| t.timestamp_millis())
        } else {
            Some(midnight.and_utc().timestamp_millis())
        };
        return ms.and_then(|ms| u64::try_from(ms).ok()).ok_or_else(|| {
            format!("{text:?} is before 1970-01-01T00:00:00Z, the earliest time there is")
        });
    }
    Err(format!(
        "{text:?} is not a time; use a date (2026-12-07), RFC 3339 (2026-12-07T09:00:00Z), \
         epoch milliseconds, now, or a time ago such as -24h or -7d"
    ))
}

/// Epoch ms as RFC 3339 to the second: `2026-12-07T09:00:00Z`, or with the local offset.
pub fn format_time(ms: u64, local: bool) -> String {
    let Some(t) = i64::try_from(ms)
        .ok()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
    else {
        return ms.to_string();
    };
    if local {
        t.with_timezone(&Local)
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    } else {
        t.to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

/// Seconds as the two largest units: `1h 2m`, `28d 22h`, `45s`, `250ms`, `0s`; negative with `-`.
pub fn format_seconds(seconds: f64) -> String {
    if !seconds.is_finite() {
        return seconds.to_string();
    }
    let sign = if seconds < 0.0 { "-" } else { "" };
    let abs = seconds.abs();
    if abs < 1.0 {
        let ms = (abs * 1_000.0).round() as u64;
        return if ms == 0 {
            "0s".to_owned()
        } else {
            format!("{sign}{ms}ms")
        };
    }
    let mut rest = abs.round() as u64;
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= size {
            parts.push(format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    // The largest unit and the next one that is not zero.
    let shown: Vec<String> = parts.into_iter().take(2).collect();
    format!("{sign}{}", shown.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_796_634_000_000; // 2026-12-07T09:00:00Z

    #[test]
    fn from_and_to_accept_dates_rfc3339_epoch_ms_and_relative_forms() {
        let cases: &[(&str, u64)] = &[
            ("2026-12-07", 1_796_601_600_000),
            ("2026-12-07T09:00:00Z", NOW),
            ("2026-12-07T10:00:00+01:00", NOW),
            ("1796634000000", NOW),
            ("0", 0),
            ("now", NOW),
            ("-24h", NOW - 86_400_000),
            ("-7d", NOW - 7 * 86_400_000),
            ("-90m", NOW - 5_400_000),
            ("-1h30m", NOW - 5_400_000),
        ];
        for (text, want) in cases {
            assert_eq!(parse_when(text, NOW, false), Ok(*want), "{text}");
        }
    }

    #[test]
    fn bad_times_say_which_forms_work() {
        let cases: &[(&str, &str)] = &[
            ("yesterday", "\"yesterday\" is not a time; use a date (2026-12-07), RFC 3339 (2026-12-07T09:00:00Z), epoch milliseconds, now, or a time ago such as -24h or -7d"),
            ("2026-13-01", "\"2026-13-01\" is not a time; use a date (2026-12-07), RFC 3339 (2026-12-07T09:00:00Z), epoch milliseconds, now, or a time ago such as -24h or -7d"),
            ("1969-07-20T20:17:00Z", "\"1969-07-20T20:17:00Z\" is before 1970-01-01T00:00:00Z, the earliest time there is"),
            ("-100000d", "\"-100000d\" reaches before 1970-01-01T00:00:00Z, the earliest time there is"),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_when(text, NOW, false),
                Err((*want).to_owned()),
                "{text}"
            );
        }
    }

    #[test]
    fn times_show_as_rfc3339_utc() {
        assert_eq!(format_time(NOW, false), "2026-12-07T09:00:00Z");
        assert_eq!(format_time(0, false), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(NOW + 999, false), "2026-12-07T09:00:00Z");
    }

    #[test]
    fn durations_show_as_their_two_largest_units() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0s"),
            (0.25, "250ms"),
            (45.0, "45s"),
            (59.6, "1m"),
            (75.0, "1m 15s"),
            (3_600.0, "1h"),
            (3_725.0, "1h 2m"),
            (86_400.0, "1d"),
            (2_500_000.0, "28d 22h"),
            (-3_725.0, "-1h 2m"),
        ];
        for (s, want) in cases {
            assert_eq!(format_seconds(*s), *want, "{s}");
        }
    }
}
