//! Capped exponential backoff with full jitter, for MQTT reconnects and webhook retries.
//!
//! rumqttc retries immediately when `poll()` is called after an error, so the caller must wait
//! (rumqtt issues #703 and #918); this is that wait.

use rand::Rng;
use std::time::Duration;

/// Backoff state: the next delay grows ×2 per failure from `min` up to `max`, and resets on
/// success. Each returned delay is drawn uniformly from [delay/2, delay] so that many agents
/// that lost the same broker do not reconnect in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// A backoff between `min` and `max` (`max` is raised to `min` if smaller).
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        Self {
            min,
            max: max.max(min),
            current: min,
        }
    }

    /// The delay before the next attempt; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.current;
        self.current = (self.current * 2).min(self.max);
        let floor = ceiling / 2;
        let span = ceiling.saturating_sub(floor).as_millis() as u64;
        floor + Duration::from_millis(rand::thread_rng().gen_range(0..=span))
    }

    /// Back to `min` after a success.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset_after_success() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1_000));
        let ceilings = [100, 200, 400, 800, 1_000, 1_000];
        for ceiling in ceilings {
            let d = b.next_delay().as_millis() as u64;
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d} not in [{}, {ceiling}]",
                ceiling / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
