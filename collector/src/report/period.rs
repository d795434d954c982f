//! The period a report covers: a calendar month (`2026-11`, UTC) or an explicit `[from, to)`,
//! and the period before it (the service report's comparison).

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use serde::Serialize;

use super::ReportError;

/// A report's period, half-open `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    /// As people read it: `2026-11`, or `2026-11-03T00:00:00Z – 2026-11-10T00:00:00Z`.
    pub label: String,
    /// Start, epoch ms.
    pub from_ms: u64,
    /// End (exclusive), epoch ms.
    pub to_ms: u64,
    /// A whole calendar month (its previous period is the month before).
    pub is_month: bool,
}

fn month_start(year: i32, month: u32) -> Option<u64> {
    let day = NaiveDate::from_ymd_opt(year, month, 1)?;
    let ms = Utc
        .from_utc_datetime(&day.and_hms_opt(0, 0, 0)?)
        .timestamp_millis();
    u64::try_from(ms).ok()
}

fn next_month(year: i32, month: u32) -> (i32, u32) {
    if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    }
}

fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .map_or_else(
            || ms.to_string(),
            |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
}

impl Period {
    /// The calendar month `text` (`YYYY-MM`, UTC), from 1970 on.
    ///
    /// # Errors
    /// [`ReportError::BadParam`] naming `period` and quoting the text.
    pub fn month(text: &str) -> Result<Self, ReportError> {
        let bad = || ReportError::BadParam {
            param: "period",
            message: format!("{text:?} is not a calendar month (YYYY-MM, e.g. 2026-11)"),
        };
        let (y, m) = text.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        let from_ms = month_start(year, month).ok_or_else(bad)?;
        let (ny, nm) = next_month(year, month);
        let to_ms = month_start(ny, nm).ok_or_else(bad)?;
        Ok(Self {
            label: format!("{year:04}-{month:02}"),
            from_ms,
            to_ms,
            is_month: true,
        })
    }

    /// An explicit `[from_ms, to_ms)`.
    ///
    /// # Errors
    /// [`ReportError::BadParam`] naming `from` when it is not before `to`.
    pub fn range(from_ms: u64, to_ms: u64) -> Result<Self, ReportError> {
        if from_ms >= to_ms {
            return Err(ReportError::BadParam {
                param: "from",
                message: format!("from {from_ms} must be before to {to_ms}"),
            });
        }
        Ok(Self {
            label: format!("{} – {}", rfc3339(from_ms), rfc3339(to_ms)),
            from_ms,
            to_ms,
            is_month: false,
        })
    }

    /// The last whole calendar month before `now_ms` (the default period).
    pub fn last_month(now_ms: u64) -> Self {
        let now = i64::try_from(now_ms)
            .ok()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            .unwrap_or_default();
        let (y, m) = if now.month() == 1 {
            (now.year() - 1, 12)
        } else {
            (now.year(), now.month() - 1)
        };
        Self::month(&format!("{y:04}-{m:02}")).unwrap_or(Self {
            label: "1970-01".into(),
            from_ms: 0,
            to_ms: 31 * watchstand_shared::time::DAY_MS,
            is_month: true,
        })
    }

    /// The period just before: the previous calendar month, or a range of the same length
    /// ending where this one starts (`None` when that would start before 1970).
    pub fn previous(&self) -> Option<Self> {
        if self.is_month {
            let start = i64::try_from(self.from_ms)
                .ok()
                .and_then(|ms| Utc.timestamp_millis_opt(ms).single())?;
            let (y, m) = if start.month() == 1 {
                (start.year() - 1, 12)
            } else {
                (start.year(), start.month() - 1)
            };
            return Self::month(&format!("{y:04}-{m:02}")).ok();
        }
        let len = self.to_ms - self.from_ms;
        Self::range(self.from_ms.checked_sub(len)?, self.from_ms).ok()
    }

    /// The part of the period that has happened by `now_ms` (the whole period once it is over).
    ///
    /// # Errors
    /// [`ReportError::BadParam`] naming `period` (or `from`) when the period starts after now.
    pub fn measured(&self, now_ms: u64) -> Result<crate::sla::Span, ReportError> {
        if self.from_ms >= now_ms {
            return Err(ReportError::BadParam {
                param: if self.is_month { "period" } else { "from" },
                message: format!("{} has not started yet", self.label),
            });
        }
        Ok(crate::sla::Span {
            from_ms: self.from_ms,
            to_ms: self.to_ms.min(now_ms),
        })
    }

    /// Length in ms.
    pub fn len_ms(&self) -> u64 {
        self.to_ms - self.from_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_is_its_utc_calendar_month_and_the_previous_one_crosses_the_year() {
        let nov = Period::month("2026-11").unwrap();
        assert_eq!(
            (nov.from_ms, nov.to_ms),
            (1_793_491_200_000, 1_796_083_200_000)
        );
        let jan = Period::month("2027-01").unwrap();
        assert_eq!(jan.previous().unwrap().label, "2026-12");
        assert_eq!(nov.previous().unwrap().label, "2026-10");
    }

    #[test]
    fn a_range_compares_with_the_range_of_the_same_length_before_it() {
        let r = Period::range(10_000, 15_000).unwrap();
        let p = r.previous().unwrap();
        assert_eq!((p.from_ms, p.to_ms), (5_000, 10_000));
        assert!(Period::range(1_000, 5_000).unwrap().previous().is_none());
    }

    #[test]
    fn bad_periods_name_the_parameter_and_quote_the_text() {
        for text in ["2026-13", "2026-1", "nov", "26-11", "2026-00", "1969-12x"] {
            assert_eq!(
                Period::month(text).unwrap_err().to_string(),
                format!("invalid period: {text:?} is not a calendar month (YYYY-MM, e.g. 2026-11)")
            );
        }
        assert_eq!(
            Period::range(5, 5).unwrap_err().to_string(),
            "invalid from: from 5 must be before to 5"
        );
        let dec = Period::month("2026-12").unwrap();
        assert_eq!(
            dec.measured(dec.from_ms).unwrap_err().to_string(),
            "invalid period: 2026-12 has not started yet"
        );
    }

    #[test]
    fn the_default_is_the_last_whole_month() {
        let dec_7 = 1_796_083_200_000 + 6 * watchstand_shared::time::DAY_MS;
        assert_eq!(Period::last_month(dec_7).label, "2026-11");
    }
}
