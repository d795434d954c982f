//! The bound on refusal acks: a token bucket of `refusal_acks_per_second` tokens, refilled
//! continuously, holding at most one second's worth. Refusals beyond it are still logged and
//! counted in `/health`, but not answered, so a flood of bad commands cannot turn into a flood
//! of acks. (Refusals never enter any durable store, so the outbox cannot fill either way.)

use tokio::time::Instant;

/// A token bucket.
#[derive(Debug)]
pub struct RefusalLimiter {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RefusalLimiter {
    /// A full bucket of `per_second` tokens.
    pub fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        Self {
            rate,
            tokens: rate,
            last: Instant::now(),
        }
    }

    /// Takes a token if there is one.
    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_gets_one_seconds_worth_then_the_rate() {
        let mut l = RefusalLimiter::new(10);
        assert_eq!((0..100).filter(|_| l.allow()).count(), 10);
        tokio::time::advance(std::time::Duration::from_millis(500)).await;
        assert_eq!((0..100).filter(|_| l.allow()).count(), 5);
        tokio::time::advance(std::time::Duration::from_secs(60)).await;
        assert_eq!((0..100).filter(|_| l.allow()).count(), 10);
    }
}
