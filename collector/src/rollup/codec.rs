//! The compact byte encoding of rollups: LEB128 varints, presence masks, and latency counts as
//! delta-coded bucket values. A typical minute of six up checks takes about a dozen bytes.

use crate::sla::LatencyCounts;

/// Appends `n` as an unsigned LEB128 varint (the store's one codec).
pub use crate::store::varint::put as put_varint;
use crate::store::varint::{self, VarintError};

/// Reads what [`put_varint`] and friends wrote; every read says what was wrong.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// True when every byte was read.
    pub fn is_done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, String> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| format!("ends at byte {}", self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    /// Eight little-endian bytes.
    pub fn u64_le(&mut self) -> Result<u64, String> {
        let end = self.pos + 8;
        let chunk = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| format!("ends at byte {} inside a u64", self.pos))?;
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        self.pos = end;
        Ok(u64::from_le_bytes(b))
    }

    /// One LEB128 varint (at most 10 bytes).
    pub fn varint(&mut self) -> Result<u64, String> {
        let mut rest = self.bytes.get(self.pos..).unwrap_or_default();
        let before = rest.len();
        let read = varint::take(&mut rest);
        self.pos += before - rest.len();
        read.map_err(|e| match e {
            VarintError::Truncated => format!("ends at byte {}", self.pos),
            VarintError::TooLong => format!("varint too long at byte {}", self.pos),
        })
    }
}

/// Appends latency counts: the number of buckets, then per bucket `delta × 2 + (count ≠ 1)` and
/// the count when it is not 1 (most buckets of a minute hold one check).
pub fn put_latency(out: &mut Vec<u8>, latency: &LatencyCounts) {
    put_varint(out, latency.pairs().len() as u64);
    let mut prev = 0;
    for &(value, count) in latency.pairs() {
        let delta = value - prev;
        prev = value;
        put_varint(out, delta * 2 + u64::from(count != 1));
        if count != 1 {
            put_varint(out, count);
        }
    }
}

/// Reads what [`put_latency`] wrote, handing each `(bucket value, count)` to `f` without
/// collecting them (the read path's hot loop).
pub fn read_latency_each(r: &mut Reader<'_>, mut f: impl FnMut(u64, u64)) -> Result<(), String> {
    let n = r.varint()?;
    let mut prev = 0u64;
    for i in 0..n {
        let d = r.varint()?;
        if i > 0 && d / 2 == 0 {
            return Err("latency buckets out of order".to_owned());
        }
        let value = prev
            .checked_add(d / 2)
            .ok_or_else(|| "latency bucket overflows".to_owned())?;
        let count = if d % 2 == 1 { r.varint()? } else { 1 };
        if count == 0 {
            return Err("a latency bucket with no checks".to_owned());
        }
        f(value, count);
        prev = value;
    }
    Ok(())
}

/// Reads what [`put_latency`] wrote.
pub fn read_latency(r: &mut Reader<'_>) -> Result<LatencyCounts, String> {
    let n = r.varint()?;
    let mut pairs = Vec::with_capacity(usize::try_from(n.min(4_096)).unwrap_or(0));
    let mut prev = 0u64;
    for _ in 0..n {
        let d = r.varint()?;
        let value = prev
            .checked_add(d / 2)
            .ok_or_else(|| "latency bucket overflows".to_owned())?;
        let count = if d % 2 == 1 { r.varint()? } else { 1 };
        pairs.push((value, count));
        prev = value;
    }
    LatencyCounts::from_pairs(pairs).ok_or_else(|| "latency buckets out of order".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_their_edges() {
        for n in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            60_000,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, n);
            let mut r = Reader::new(&out);
            assert_eq!(r.varint(), Ok(n));
            assert!(r.is_done());
        }
        let mut out = Vec::new();
        put_varint(&mut out, 60_000);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn truncated_and_overlong_input_is_an_error_not_a_panic() {
        assert!(Reader::new(&[0x80]).varint().is_err());
        assert!(Reader::new(&[0xff; 11]).varint().is_err());
        assert!(Reader::new(&[1, 2]).u64_le().is_err());
        assert!(read_latency(&mut Reader::new(&[3, 2])).is_err());
    }

    #[test]
    fn latency_counts_round_trip() {
        let l = LatencyCounts::from_latencies([1_500, 1_520, 1_500, 3_000_000, 7]);
        let mut out = Vec::new();
        put_latency(&mut out, &l);
        let back = read_latency(&mut Reader::new(&out)).expect("decodes");
        assert_eq!(back, l);
        assert_eq!(back.total(), 5);
    }
}
