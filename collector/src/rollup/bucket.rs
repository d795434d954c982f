//! One rollup bucket — a probe's minute, hour or day: checks counted by state, time by state
//! and the up/degraded checks' latencies by histogram bucket. A minute is recounted from raw
//! results; hours and days are sums of their minutes, so every level equals a recount.

use watchstand_shared::time::MINUTE_MS;
use watchstand_shared::wire::v1::ProbeState;

use super::codec::{put_latency, put_varint, read_latency, read_latency_each, Reader};
use crate::sla::{probe_timeline, LatencyCounts, Observation, ProbeClass, ProbeInput, Span};

/// Checks, time by state and latency over one bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollup {
    /// Checks that said up.
    pub up: u64,
    /// Checks that said degraded.
    pub degraded: u64,
    /// Checks that said down.
    pub down: u64,
    /// Time held up, ms.
    pub up_ms: u64,
    /// Time held degraded, ms.
    pub degraded_ms: u64,
    /// Time held down, ms.
    pub down_ms: u64,
    /// Time unknown (no result holds), ms.
    pub unknown_ms: u64,
    /// Latency of the up and degraded checks (a down check's latency is mostly its timeout).
    pub latency: LatencyCounts,
}

/// A minute recounted from raw results: its rollup and its timeline (for the state index).
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteRecount {
    /// Minute start, epoch ms.
    pub minute_ms: u64,
    /// The bucket.
    pub rollup: Rollup,
    /// The probe's classes over the minute, covering it exactly.
    pub timeline: Vec<(Span, ProbeClass)>,
}

impl MinuteRecount {
    /// Recounts one minute from `observations` (sorted; may include the one before the minute,
    /// which may still hold into it).
    pub fn compute(observations: &[Observation], minute_ms: u64) -> Self {
        let span = Span::new(minute_ms, minute_ms + MINUTE_MS);
        let mut r = Rollup::default();
        let inside = || observations.iter().filter(|o| span.contains(o.at_ms));
        for o in inside() {
            match o.state {
                ProbeState::Up => r.up += 1,
                ProbeState::Degraded => r.degraded += 1,
                ProbeState::Down => r.down += 1,
            }
        }
        r.latency = LatencyCounts::from_latencies(
            inside()
                .filter(|o| o.state != ProbeState::Down)
                .map(|o| o.latency_us),
        );
        let input = ProbeInput {
            observations: observations.to_vec(),
            lost: Vec::new(),
        };
        let timeline = probe_timeline(&input, span);
        for (s, class) in &timeline {
            r.add_time(*class, s.len_ms());
        }
        Self {
            minute_ms,
            rollup: r,
            timeline,
        }
    }

    /// A minute held in one class throughout, with the given checks — what a history loader
    /// writes for the common minute without a change.
    pub fn steady(minute_ms: u64, class: ProbeClass, checks: Rollup) -> Self {
        let mut rollup = Rollup {
            up_ms: 0,
            degraded_ms: 0,
            down_ms: 0,
            unknown_ms: 0,
            ..checks
        };
        rollup.add_time(class, MINUTE_MS);
        Self {
            minute_ms,
            rollup,
            timeline: vec![(Span::new(minute_ms, minute_ms + MINUTE_MS), class)],
        }
    }
}

/// Bits of the encoding's first byte.
mod tag {
    /// Bits 0–3: which of up/degraded/down/unknown time are non-zero.
    pub const TIME_MASK: u8 = 0x0f;
    /// Bits 4–6: which of the up/degraded/down counts are non-zero.
    pub const COUNT_SHIFT: u8 = 4;
    /// Bit 7: the one non-zero time is the whole bucket (its value is not written).
    pub const FULL: u8 = 0x80;
}

impl Rollup {
    /// Adds `ms` of time in `class`.
    pub fn add_time(&mut self, class: ProbeClass, ms: u64) {
        match class {
            ProbeClass::Up => self.up_ms += ms,
            ProbeClass::Degraded => self.degraded_ms += ms,
            ProbeClass::Down => self.down_ms += ms,
            ProbeClass::Unknown => self.unknown_ms += ms,
        }
    }

    /// Adds another bucket (an hour is the sum of its minutes, a day of its hours).
    pub fn add(&mut self, other: &Rollup) {
        self.up += other.up;
        self.degraded += other.degraded;
        self.down += other.down;
        self.up_ms += other.up_ms;
        self.degraded_ms += other.degraded_ms;
        self.down_ms += other.down_ms;
        self.unknown_ms += other.unknown_ms;
        self.latency.merge(&other.latency);
    }

    /// The sum of many buckets (latency counts combined in one sort).
    pub fn sum_of<'a>(all: impl IntoIterator<Item = &'a Rollup> + Clone) -> Rollup {
        let mut sum = Rollup::default();
        for r in all.clone() {
            sum.up += r.up;
            sum.degraded += r.degraded;
            sum.down += r.down;
            sum.up_ms += r.up_ms;
            sum.degraded_ms += r.degraded_ms;
            sum.down_ms += r.down_ms;
            sum.unknown_ms += r.unknown_ms;
        }
        sum.latency = LatencyCounts::sum_of(all.into_iter().map(|r| &r.latency));
        sum
    }

    /// Checks of every state.
    pub fn checks(&self) -> u64 {
        self.up + self.degraded + self.down
    }

    /// Appends the encoding; `full_ms` is the bucket's length (a time equal to it alone is
    /// written as one bit).
    pub fn encode_into(&self, out: &mut Vec<u8>, full_ms: u64) {
        let times = [self.up_ms, self.degraded_ms, self.down_ms, self.unknown_ms];
        let counts = [self.up, self.degraded, self.down];
        let mut t = 0u8;
        for (i, v) in times.iter().enumerate() {
            if *v != 0 {
                t |= 1 << i;
            }
        }
        for (i, v) in counts.iter().enumerate() {
            if *v != 0 {
                t |= 1 << (tag::COUNT_SHIFT + i as u8);
            }
        }
        let full = (t & tag::TIME_MASK).count_ones() == 1 && times.contains(&full_ms);
        out.push(if full { t | tag::FULL } else { t });
        if !full {
            for v in times.into_iter().filter(|v| *v != 0) {
                put_varint(out, v);
            }
        }
        for v in counts.into_iter().filter(|v| *v != 0) {
            put_varint(out, v);
        }
        put_latency(out, &self.latency);
    }

    /// Reads what [`Rollup::encode_into`] wrote with the same `full_ms`.
    ///
    /// # Errors
    /// The bytes are not a rollup.
    pub fn decode_from(r: &mut Reader<'_>, full_ms: u64) -> Result<Self, String> {
        let t = r.u8()?;
        let mut times = [0u64; 4];
        for (i, v) in times.iter_mut().enumerate() {
            if t & (1 << i) != 0 {
                *v = if t & tag::FULL != 0 {
                    full_ms
                } else {
                    r.varint()?
                };
            }
        }
        let mut counts = [0u64; 3];
        for (i, v) in counts.iter_mut().enumerate() {
            if t & (1 << (tag::COUNT_SHIFT + i as u8)) != 0 {
                *v = r.varint()?;
            }
        }
        let latency = read_latency(r)?;
        Ok(Self {
            up: counts[0],
            degraded: counts[1],
            down: counts[2],
            up_ms: times[0],
            degraded_ms: times[1],
            down_ms: times[2],
            unknown_ms: times[3],
            latency,
        })
    }

    /// Reads an encoded bucket (exactly one, as [`Rollup::encode`] wrote it) for its checks and
    /// latencies only, without building it: `checks` gets the count of every state, `latency`
    /// each `(bucket value, count)`.
    ///
    /// # Errors
    /// The bytes are not a rollup.
    pub fn visit_checks(
        bytes: &[u8],
        checks: impl FnOnce(u64),
        latency: impl FnMut(u64, u64),
    ) -> Result<(), String> {
        let mut r = Reader::new(bytes);
        let t = r.u8()?;
        if t & tag::FULL == 0 {
            for i in 0..4 {
                if t & (1 << i) != 0 {
                    r.varint()?;
                }
            }
        }
        let mut total = 0u64;
        for i in 0..3 {
            if t & (1 << (tag::COUNT_SHIFT + i)) != 0 {
                total = total.saturating_add(r.varint()?);
            }
        }
        checks(total);
        read_latency_each(&mut r, latency)?;
        if r.is_done() {
            Ok(())
        } else {
            Err("trailing bytes after the rollup".to_owned())
        }
    }

    /// The encoding on its own.
    pub fn encode(&self, full_ms: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        self.encode_into(&mut out, full_ms);
        out
    }

    /// Decodes bytes holding exactly one rollup.
    ///
    /// # Errors
    /// The bytes are not a rollup, or there is more.
    pub fn decode(bytes: &[u8], full_ms: u64) -> Result<Self, String> {
        let mut r = Reader::new(bytes);
        let out = Self::decode_from(&mut r, full_ms)?;
        if r.is_done() {
            Ok(out)
        } else {
            Err("trailing bytes after the rollup".to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(at_ms: u64, state: ProbeState, latency_us: u64) -> Observation {
        Observation {
            at_ms,
            state,
            latency_us,
            interval_ms: 10_000,
        }
    }

    #[test]
    fn a_minute_counts_checks_and_time_by_state_with_the_hold_from_before() {
        let m = 10 * MINUTE_MS;
        // Down at m-5s holds into the minute until the up at m+15s; down at m+45s holds to the end.
        let o = [
            obs(m - 5_000, ProbeState::Down, 900),
            obs(m + 15_000, ProbeState::Up, 1_000),
            obs(m + 25_000, ProbeState::Up, 2_000),
            obs(m + 35_000, ProbeState::Degraded, 3_000),
            obs(m + 45_000, ProbeState::Down, 4_000),
        ];
        let c = MinuteRecount::compute(&o, m);
        let r = &c.rollup;
        assert_eq!((r.up, r.degraded, r.down), (2, 1, 1));
        assert_eq!(
            (r.up_ms, r.degraded_ms, r.down_ms, r.unknown_ms),
            (20_000, 10_000, 30_000, 0)
        );
        // The down check's latency is left out.
        assert_eq!(r.latency.total(), 3);
        assert_eq!(c.timeline.len(), 4);
        assert_eq!(c.timeline[0], (Span::new(m, m + 15_000), ProbeClass::Down));
    }

    #[test]
    fn time_past_twice_the_interval_is_unknown() {
        let c = MinuteRecount::compute(&[obs(1_000, ProbeState::Up, 10)], 0);
        assert_eq!((c.rollup.up_ms, c.rollup.unknown_ms), (20_000, 40_000));
    }

    #[test]
    fn rollups_round_trip_and_a_steady_minute_is_small() {
        let m = 5 * MINUTE_MS;
        let o: Vec<_> = (0..6)
            .map(|i| obs(m + i * 10_000, ProbeState::Up, 1_400 + i * 37))
            .collect();
        let r = MinuteRecount::compute(&o, m).rollup;
        let bytes = r.encode(MINUTE_MS);
        assert!(bytes.len() <= 16, "{} bytes", bytes.len());
        assert_eq!(Rollup::decode(&bytes, MINUTE_MS), Ok(r.clone()));
        // Mixed times are written out.
        let mut mixed = r;
        mixed.up_ms = 59_000;
        mixed.down_ms = 1_000;
        assert_eq!(
            Rollup::decode(&mixed.encode(MINUTE_MS), MINUTE_MS),
            Ok(mixed)
        );
        assert!(Rollup::decode(&[0x01], MINUTE_MS).is_err());
        assert!(Rollup::decode(&[0x00, 0x00, 0x07], MINUTE_MS).is_err());
    }

    #[test]
    fn visiting_an_encoded_bucket_sees_what_decoding_it_gives() {
        let o: Vec<_> = (0..6)
            .map(|i| obs(i * 10_000, ProbeState::Up, 1_400 + i * 997))
            .chain([obs(55_000, ProbeState::Down, 9)])
            .collect();
        let r = MinuteRecount::compute(&o, 0).rollup;
        let bytes = r.encode(MINUTE_MS);
        let (mut checks, mut pairs) = (0, Vec::new());
        Rollup::visit_checks(&bytes, |n| checks = n, |v, n| pairs.push((v, n))).expect("visit");
        assert_eq!(checks, 7);
        assert_eq!(pairs, r.latency.pairs());
        assert!(Rollup::visit_checks(&bytes[..bytes.len() - 1], |_| {}, |_, _| {}).is_err());
    }

    #[test]
    fn adding_buckets_adds_everything() {
        let m = 0;
        let a = MinuteRecount::compute(&[obs(m, ProbeState::Up, 100)], m).rollup;
        let b = MinuteRecount::compute(&[obs(m + 1, ProbeState::Down, 100)], m).rollup;
        let mut sum = a.clone();
        sum.add(&b);
        assert_eq!((sum.up, sum.down, sum.checks()), (1, 1, 2));
        assert_eq!(sum.up_ms + sum.down_ms + sum.unknown_ms, 2 * MINUTE_MS);
        assert_eq!(sum.latency.total(), 1);
    }
}
