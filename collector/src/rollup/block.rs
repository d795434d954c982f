//! The stored form of per-minute rollups: one record per probe and hour holding the hour's sum
//! and its minutes. Keying by hour instead of by minute spends the key once per 60 buckets and
//! lets the read path take a whole hour from its sum.
//!
//! Layout: version byte (1), a 64-bit little-endian mask of the minutes present, the hour's sum
//! ([`Rollup::encode_into`], full = one hour), then each present minute in order (full = one
//! minute).

use watchstand_shared::time::MINUTE_MS;

use super::bucket::Rollup;
use super::codec::Reader;

const VERSION: u8 = 2;

/// One probe-hour of minute rollups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourBlock {
    /// Always 60 slots.
    minutes: Vec<Option<Rollup>>,
}

impl Default for HourBlock {
    fn default() -> Self {
        Self {
            minutes: vec![None; 60],
        }
    }
}

impl HourBlock {
    /// The minute at index `i` (0..60) of the hour.
    pub fn minute(&self, i: usize) -> Option<&Rollup> {
        self.minutes.get(i).and_then(Option::as_ref)
    }

    /// The minutes present, with their index.
    pub fn minutes(&self) -> impl Iterator<Item = (usize, &Rollup)> {
        self.minutes
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().map(|m| (i, m)))
    }

    /// Sets the minute at index `i` (ignored outside 0..60).
    pub fn set(&mut self, i: usize, rollup: Rollup) {
        if let Some(slot) = self.minutes.get_mut(i) {
            *slot = Some(rollup);
        }
    }

    /// The sum of the hour's minutes.
    pub fn sum(&self) -> Rollup {
        Rollup::sum_of(self.minutes.iter().flatten())
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1_024);
        out.push(VERSION);
        let mask = self.minutes().fold(0u64, |mask, (i, _)| mask | (1u64 << i));
        out.extend_from_slice(&mask.to_le_bytes());
        for (_, m) in self.minutes() {
            m.encode_into(&mut out, MINUTE_MS);
        }
        out
    }

    /// The hour's sum as stored in `rollup_hour_sums` and added into day sums: latency in coarse
    /// buckets ([`crate::sla::latency::COARSE_SUB_BUCKET_BITS`]).
    pub fn coarse_sum(&self) -> Rollup {
        let mut sum = self.sum();
        sum.latency = sum.latency.coarsened();
        sum
    }

    fn header(r: &mut Reader<'_>) -> Result<u64, String> {
        let version = r.u8()?;
        if version != VERSION {
            return Err(format!("hour block version {version}, expected {VERSION}"));
        }
        r.u64_le().map(|mask| mask & ((1u64 << 60) - 1))
    }

    /// Decodes a whole block.
    ///
    /// # Errors
    /// The bytes are not an hour block.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader::new(bytes);
        let mask = Self::header(&mut r)?;
        let mut block = Self::default();
        for i in 0..60 {
            if mask & (1u64 << i) != 0 {
                block.set(i, Rollup::decode_from(&mut r, MINUTE_MS)?);
            }
        }
        if !r.is_done() {
            return Err("trailing bytes after the hour block".to_owned());
        }
        Ok(block)
    }
}

pub use crate::store::trees::{bucket_key, parse_bucket_key};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sla::LatencyCounts;
    use watchstand_shared::time::HOUR_MS;

    fn minute(checks: u64, latency: u64) -> Rollup {
        Rollup {
            up: checks,
            up_ms: MINUTE_MS,
            latency: LatencyCounts::from_latencies((0..checks).map(|i| latency + i * 11)),
            ..Rollup::default()
        }
    }

    #[test]
    fn a_block_round_trips_with_holes_and_its_sum() {
        let mut b = HourBlock::default();
        b.set(0, minute(6, 1_500));
        b.set(17, minute(3, 900));
        b.set(59, minute(6, 2_000));
        b.set(60, minute(1, 1)); // outside the hour: ignored
        let bytes = b.encode();
        let back = HourBlock::decode(&bytes).expect("decodes");
        assert_eq!(back, b);
        let sum = back.coarse_sum();
        assert_eq!((sum.up, sum.up_ms), (15, 3 * MINUTE_MS));
        assert_eq!(sum.latency.total(), 15);
        assert!(HourBlock::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(HourBlock::decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn a_full_hour_of_steady_minutes_is_compact() {
        let mut b = HourBlock::default();
        for i in 0..60 {
            b.set(i, minute(6, 1_400 + i as u64 * 3));
        }
        let per_minute = b.encode().len() as f64 / 60.0;
        assert!(per_minute < 20.0, "{per_minute} bytes per minute");
    }

    #[test]
    fn keys_parse_back() {
        let k = bucket_key("agent-1", "web", 42 * HOUR_MS);
        assert_eq!(
            parse_bucket_key(&k),
            Some(("agent-1".into(), "web".into(), 42 * HOUR_MS))
        );
        assert_eq!(parse_bucket_key(b"no-nul"), None);
    }
}
