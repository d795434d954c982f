//! Wall-clock time in Unix epoch milliseconds, the unit of every `*_ms` field on the wire.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds in one second, minute, hour and day, so that arithmetic reads as units.
pub const SECOND_MS: u64 = 1_000;
/// Milliseconds in one minute.
pub const MINUTE_MS: u64 = 60 * SECOND_MS;
/// Milliseconds in one hour.
pub const HOUR_MS: u64 = 60 * MINUTE_MS;
/// Milliseconds in one day.
pub const DAY_MS: u64 = 24 * HOUR_MS;

/// The current wall-clock time as Unix epoch milliseconds.
///
/// A clock set before 1970 reads as 0 rather than panicking: the collector's timestamp checks
/// then reject what such an agent sends, which is the visible failure an operator can act on.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
