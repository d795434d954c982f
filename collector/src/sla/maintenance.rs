//! Maintenance windows: fixed ranges and weekly recurring ones (UTC), expanded into the sorted,
//! merged spans that the SLA arithmetic lays over a service's timeline. Also the small parsers
//! the config layer uses for them (`"sun"`, `"02:00"`, RFC 3339), whose errors quote the input.

use chrono::{DateTime, Weekday};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use watchstand_shared::time::{DAY_MS, MINUTE_MS};

use super::span::{merge_spans, Span};

/// One week in milliseconds.
pub const WEEK_MS: u64 = 7 * DAY_MS;

/// Weekly windows recur up to this instant (10000-01-01T00:00:00Z) and no further. Real data
/// never lies beyond it; the bound keeps the expansion of an absurd query window (say
/// `[0, u64::MAX)`) to a few hundred thousand spans instead of billions.
pub const WEEKLY_RECURRENCE_END_MS: u64 = 253_402_300_800_000;

/// A period in which a service's state does not count against its SLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceWindow {
    /// `[from_ms, to_ms)`, once. Ignored when `from_ms >= to_ms`.
    Fixed {
        /// Start, epoch ms.
        from_ms: u64,
        /// End (exclusive), epoch ms.
        to_ms: u64,
    },
    /// Every week on `weekday` at `start_minute` after midnight UTC, for `duration_ms`. May run
    /// past midnight and past the end of the week (Sunday into Monday).
    Weekly {
        /// Day of the week the window starts on (UTC).
        weekday: Weekday,
        /// Minutes after 00:00 UTC, `0..1440` as [`parse_hh_mm`] gives (larger values simply
        /// move the start into the following days).
        start_minute: u16,
        /// Length; 0 means no window, a week or more covers all time.
        duration_ms: u64,
    },
}

/// Why a maintenance-window field does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MaintenanceParseError {
    /// Not a day of the week.
    #[error("invalid weekday {text:?}: use mon, tue, wed, thu, fri, sat or sun")]
    Weekday {
        /// The text as written.
        text: String,
    },
    /// Not a time of day.
    #[error("invalid time {text:?}: use HH:MM (UTC) between 00:00 and 23:59")]
    TimeOfDay {
        /// The text as written.
        text: String,
    },
    /// Not an RFC 3339 timestamp.
    #[error("invalid timestamp {text:?}: {reason} (use RFC 3339, e.g. \"2026-12-24T22:00:00Z\")")]
    Timestamp {
        /// The text as written.
        text: String,
        /// What chrono found wrong with it.
        reason: String,
    },
    /// A timestamp before the Unix epoch, which epoch milliseconds cannot hold.
    #[error("invalid timestamp {text:?}: before 1970-01-01T00:00:00Z")]
    BeforeEpoch {
        /// The text as written.
        text: String,
    },
}

/// Parses a weekday: `mon` … `sun` or the full English name, any case.
///
/// # Errors
/// [`MaintenanceParseError::Weekday`] quoting the text.
pub fn parse_weekday(text: &str) -> Result<Weekday, MaintenanceParseError> {
    const DAYS: [(&str, &str, Weekday); 7] = [
        ("mon", "monday", Weekday::Mon),
        ("tue", "tuesday", Weekday::Tue),
        ("wed", "wednesday", Weekday::Wed),
        ("thu", "thursday", Weekday::Thu),
        ("fri", "friday", Weekday::Fri),
        ("sat", "saturday", Weekday::Sat),
        ("sun", "sunday", Weekday::Sun),
    ];
    let t = text.trim();
    DAYS.iter()
        .find(|(short, long, _)| t.eq_ignore_ascii_case(short) || t.eq_ignore_ascii_case(long))
        .map(|&(_, _, d)| d)
        .ok_or_else(|| MaintenanceParseError::Weekday {
            text: text.to_owned(),
        })
}

/// Parses a UTC time of day `HH:MM` (`00:00` … `23:59`; a one-digit hour is accepted) into
/// minutes after midnight.
///
/// # Errors
/// [`MaintenanceParseError::TimeOfDay`] quoting the text.
pub fn parse_hh_mm(text: &str) -> Result<u16, MaintenanceParseError> {
    let err = || MaintenanceParseError::TimeOfDay {
        text: text.to_owned(),
    };
    let (h, m) = text.trim().split_once(':').ok_or_else(err)?;
    let digits =
        |s: &str, lens: &[usize]| lens.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h, &[1, 2]) || !digits(m, &[2]) {
        return Err(err());
    }
    let h: u16 = h.parse().map_err(|_| err())?;
    let m: u16 = m.parse().map_err(|_| err())?;
    if h > 23 || m > 59 {
        return Err(err());
    }
    Ok(h * 60 + m)
}

/// Parses an RFC 3339 timestamp (`2026-12-24T22:00:00Z`, `2026-12-24T23:00:00+01:00`) into
/// epoch milliseconds.
///
/// # Errors
/// [`MaintenanceParseError::Timestamp`] for bad text, [`MaintenanceParseError::BeforeEpoch`]
/// for times before 1970.
pub fn parse_rfc3339_ms(text: &str) -> Result<u64, MaintenanceParseError> {
    let t = DateTime::parse_from_rfc3339(text.trim()).map_err(|e| {
        MaintenanceParseError::Timestamp {
            text: text.to_owned(),
            reason: e.to_string(),
        }
    })?;
    u64::try_from(t.timestamp_millis()).map_err(|_| MaintenanceParseError::BeforeEpoch {
        text: text.to_owned(),
    })
}

/// Offset of a weekly window's first occurrence after the epoch (1970-01-01 was a Thursday).
fn weekly_phase_ms(weekday: Weekday, start_minute: u16) -> u64 {
    // Day `d` after the epoch falls on weekday `(d + 3) % 7` counted from Monday, so weekday
    // `w` first falls on day `(w + 4) % 7`.
    let day = (u64::from(weekday.num_days_from_monday()) + 4) % 7;
    (day * DAY_MS + u64::from(start_minute) * MINUTE_MS) % WEEK_MS
}

/// Appends the occurrences of one weekly window that overlap `within`, clipped to it.
fn expand_weekly(
    weekday: Weekday,
    start_minute: u16,
    duration_ms: u64,
    within: Span,
    out: &mut Vec<Span>,
) {
    let within = Span::new(within.from_ms, within.to_ms.min(WEEKLY_RECURRENCE_END_MS));
    if duration_ms == 0 || within.is_empty() {
        return;
    }
    if duration_ms >= WEEK_MS {
        // Each occurrence reaches the next one: the window never closes.
        out.push(within);
        return;
    }
    let phase = i128::from(weekly_phase_ms(weekday, start_minute));
    let week = i128::from(WEEK_MS);
    let d = i128::from(duration_ms);
    // The first occurrence that can still be open at `within.from_ms` starts after
    // `from - d`; start from the week before that and let the clip drop what misses.
    let mut k = (i128::from(within.from_ms) - d - phase).div_euclid(week);
    loop {
        let start = phase + k * week;
        if start >= i128::from(within.to_ms) {
            break;
        }
        // Clip in i128 first: only then do both bounds fit in u64.
        let s = start.max(i128::from(within.from_ms));
        let e = (start + d).min(i128::from(within.to_ms));
        if s < e {
            if let (Ok(s), Ok(e)) = (u64::try_from(s), u64::try_from(e)) {
                out.push(Span::new(s, e));
            }
        }
        k += 1;
    }
}

/// Expands `windows` into sorted, merged (disjoint, non-touching) spans inside `within`.
pub fn expand(windows: &[MaintenanceWindow], within: Span) -> Vec<Span> {
    if within.is_empty() {
        return Vec::new();
    }
    let mut spans = Vec::new();
    for w in windows {
        match *w {
            MaintenanceWindow::Fixed { from_ms, to_ms } => spans.push(Span::new(from_ms, to_ms)),
            MaintenanceWindow::Weekly {
                weekday,
                start_minute,
                duration_ms,
            } => expand_weekly(weekday, start_minute, duration_ms, within, &mut spans),
        }
    }
    merge_spans(spans, within)
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchstand_shared::time::HOUR_MS;

    fn at(text: &str) -> u64 {
        parse_rfc3339_ms(text).unwrap()
    }

    fn s(from: &str, to: &str) -> Span {
        Span::new(at(from), at(to))
    }

    fn weekly(day: &str, hh_mm: &str, duration_ms: u64) -> MaintenanceWindow {
        MaintenanceWindow::Weekly {
            weekday: parse_weekday(day).unwrap(),
            start_minute: parse_hh_mm(hh_mm).unwrap(),
            duration_ms,
        }
    }

    #[test]
    fn weekday_parses_short_and_full_names_in_any_case() {
        let cases = [
            ("mon", Weekday::Mon),
            ("TUE", Weekday::Tue),
            ("Wednesday", Weekday::Wed),
            ("thu", Weekday::Thu),
            ("FRIDAY", Weekday::Fri),
            (" sat ", Weekday::Sat),
            ("sunday", Weekday::Sun),
        ];
        for (text, day) in cases {
            assert_eq!(parse_weekday(text).unwrap(), day, "{text}");
        }
    }

    #[test]
    fn weekday_rejects_bad_text_with_a_message_quoting_it() {
        for text in ["", "mo", "sonntag", "7", "monday!"] {
            assert_eq!(
                parse_weekday(text).unwrap_err().to_string(),
                format!("invalid weekday {text:?}: use mon, tue, wed, thu, fri, sat or sun")
            );
        }
    }

    #[test]
    fn time_of_day_parses_hh_mm_into_minutes() {
        let cases = [
            ("00:00", 0),
            ("02:00", 120),
            ("2:30", 150),
            ("23:59", 1439),
            ("12:05", 725),
        ];
        for (text, minutes) in cases {
            assert_eq!(parse_hh_mm(text).unwrap(), minutes, "{text}");
        }
    }

    #[test]
    fn time_of_day_rejects_bad_text_with_a_message_quoting_it() {
        for text in [
            "", "24:00", "12:60", "1200", "12:5", "123:00", "ab:cd", "-1:00", "12:00:00",
        ] {
            assert_eq!(
                parse_hh_mm(text).unwrap_err().to_string(),
                format!("invalid time {text:?}: use HH:MM (UTC) between 00:00 and 23:59")
            );
        }
    }

    #[test]
    fn rfc3339_parses_to_epoch_ms_with_offsets_and_fractions() {
        assert_eq!(at("1970-01-01T00:00:00Z"), 0);
        assert_eq!(at("2026-12-24T22:00:00Z"), 1_798_149_600_000);
        assert_eq!(at("2026-12-24T23:00:00+01:00"), 1_798_149_600_000);
        assert_eq!(at("2026-12-24T22:00:00.250Z"), 1_798_149_600_250);
    }

    #[test]
    fn rfc3339_rejects_bad_text_with_a_message_quoting_it() {
        let e = parse_rfc3339_ms("2026-12-24 22:00")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid timestamp \"2026-12-24 22:00\": ")
                && e.ends_with("(use RFC 3339, e.g. \"2026-12-24T22:00:00Z\")"),
            "{e}"
        );
        assert_eq!(
            parse_rfc3339_ms("1969-12-31T23:59:59Z")
                .unwrap_err()
                .to_string(),
            "invalid timestamp \"1969-12-31T23:59:59Z\": before 1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn fixed_window_is_clipped_to_the_span() {
        let w = [MaintenanceWindow::Fixed {
            from_ms: at("2026-12-24T22:00:00Z"),
            to_ms: at("2026-12-25T02:00:00Z"),
        }];
        assert_eq!(
            expand(&w, s("2026-12-25T00:00:00Z", "2026-12-26T00:00:00Z")),
            vec![s("2026-12-25T00:00:00Z", "2026-12-25T02:00:00Z")]
        );
        assert!(expand(&w, s("2026-12-26T00:00:00Z", "2026-12-27T00:00:00Z")).is_empty());
    }

    #[test]
    fn inverted_fixed_window_is_ignored() {
        let w = [MaintenanceWindow::Fixed {
            from_ms: 10,
            to_ms: 5,
        }];
        assert!(expand(&w, Span::new(0, 100)).is_empty());
    }

    #[test]
    fn weekly_window_recurs_every_week_on_its_day() {
        // 2026-06-01 is a Monday.
        let w = [weekly("sun", "02:00", HOUR_MS)];
        assert_eq!(
            expand(&w, s("2026-06-01T00:00:00Z", "2026-06-22T00:00:00Z")),
            vec![
                s("2026-06-07T02:00:00Z", "2026-06-07T03:00:00Z"),
                s("2026-06-14T02:00:00Z", "2026-06-14T03:00:00Z"),
                s("2026-06-21T02:00:00Z", "2026-06-21T03:00:00Z"),
            ]
        );
    }

    #[test]
    fn weekly_window_on_every_weekday_lands_on_that_weekday() {
        let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        for (i, day) in days.iter().enumerate() {
            let w = [weekly(day, "00:00", 1)];
            let got = expand(&w, s("2026-06-01T00:00:00Z", "2026-06-08T00:00:00Z"));
            let start = at("2026-06-01T00:00:00Z") + i as u64 * DAY_MS;
            assert_eq!(got, vec![Span::new(start, start + 1)], "{day}");
        }
    }

    #[test]
    fn weekly_window_crossing_midnight() {
        let w = [weekly("sat", "23:00", 2 * HOUR_MS)];
        assert_eq!(
            expand(&w, s("2026-06-01T00:00:00Z", "2026-06-08T00:00:00Z")),
            vec![s("2026-06-06T23:00:00Z", "2026-06-07T01:00:00Z")]
        );
    }

    #[test]
    fn weekly_window_crossing_sunday_into_monday() {
        let w = [weekly("sun", "23:30", HOUR_MS)];
        // A span that starts on Monday 00:00 still catches the tail of Sunday's window.
        assert_eq!(
            expand(&w, s("2026-06-08T00:00:00Z", "2026-06-15T00:00:00Z")),
            vec![
                s("2026-06-08T00:00:00Z", "2026-06-08T00:30:00Z"),
                s("2026-06-14T23:30:00Z", "2026-06-15T00:00:00Z"),
            ]
        );
    }

    #[test]
    fn overlapping_windows_are_merged() {
        let w = [
            weekly("sun", "02:00", 2 * HOUR_MS),
            weekly("sun", "03:00", 2 * HOUR_MS),
            MaintenanceWindow::Fixed {
                from_ms: at("2026-06-07T05:00:00Z"),
                to_ms: at("2026-06-07T06:00:00Z"),
            },
        ];
        assert_eq!(
            expand(&w, s("2026-06-01T00:00:00Z", "2026-06-08T00:00:00Z")),
            vec![s("2026-06-07T02:00:00Z", "2026-06-07T06:00:00Z")]
        );
    }

    #[test]
    fn weekly_window_of_a_week_or_more_covers_everything() {
        let span = s("2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z");
        assert_eq!(expand(&[weekly("wed", "12:00", WEEK_MS)], span), vec![span]);
        assert_eq!(
            expand(&[weekly("wed", "12:00", u64::MAX)], span),
            vec![span]
        );
    }

    #[test]
    fn weekly_window_of_length_zero_is_no_window() {
        let span = s("2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z");
        assert!(expand(&[weekly("wed", "12:00", 0)], span).is_empty());
    }

    #[test]
    fn weekly_window_near_the_epoch_and_before_the_first_occurrence() {
        // 1970-01-01 was a Thursday; the Wednesday-before window would start before the epoch.
        let w = [weekly("wed", "23:00", 2 * HOUR_MS)];
        assert_eq!(
            expand(&w, Span::new(0, DAY_MS)),
            vec![Span::new(0, HOUR_MS)]
        );
    }

    #[test]
    fn start_minute_beyond_a_day_moves_into_the_next_days() {
        let w = [MaintenanceWindow::Weekly {
            weekday: Weekday::Sun,
            start_minute: 1440 + 60,
            duration_ms: HOUR_MS,
        }];
        assert_eq!(
            expand(&w, s("2026-06-01T00:00:00Z", "2026-06-08T00:00:00Z")),
            vec![s("2026-06-01T01:00:00Z", "2026-06-01T02:00:00Z")]
        );
    }

    #[test]
    fn expansion_of_an_absurd_span_is_bounded() {
        let w = [weekly("mon", "00:00", HOUR_MS)];
        let spans = expand(&w, Span::new(0, u64::MAX));
        // One per week from the first Monday, 1970-01-05, to year 10000.
        assert_eq!(
            spans.len() as u64,
            (WEEKLY_RECURRENCE_END_MS - 4 * DAY_MS).div_ceil(WEEK_MS)
        );
        assert_eq!(spans[0], Span::new(4 * DAY_MS, 4 * DAY_MS + HOUR_MS));
        assert!(spans.last().unwrap().to_ms <= WEEKLY_RECURRENCE_END_MS);
    }

    #[test]
    fn windows_serialise_with_snake_case_tags() {
        let w = weekly("sun", "02:00", HOUR_MS);
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(
            json,
            r#"{"weekly":{"weekday":"Sun","start_minute":120,"duration_ms":3600000}}"#
        );
        assert_eq!(serde_json::from_str::<MaintenanceWindow>(&json).unwrap(), w);
    }
}
