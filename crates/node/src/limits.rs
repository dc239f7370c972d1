//! Token buckets for the upload and download caps. One bucket per direction is shared by every bitswap stream of
//! the node, so the cap holds for the node as a whole, not per peer. Rates change live: a stream waiting for
//! tokens re-reads the rate at least every [`MAX_SLEEP`], so a new cap applies within that time and no connection
//! or stream is dropped.
//!
//! The bucket works on debt: a caller asking for `n` bytes gets them as soon as the balance is not negative, and
//! the balance then goes `n` below zero; the next caller waits until the debt is repaid at the configured rate. This
//! keeps the long-run rate exact whatever the chunk size, and a chunk larger than the burst never blocks forever.
//! Traffic that passed outside the bitswap streams (the TCP overhead `tcp_counters` measures) is charged to the same
//! buckets afterwards ([`RateLimiter::charge`]), so blocks wait for it too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest single sleep while waiting for tokens: bounds how late a rate change (or a pause) is noticed.
pub const MAX_SLEEP: Duration = Duration::from_millis(50);
/// Idle time that may be saved up as burst: 100 ms of the rate, at least one write chunk.
const BURST_SECS: f64 = 0.1;
const MIN_BURST_BYTES: f64 = 16.0 * 1024.0;
/// Most debt that charged traffic ([`RateLimiter::charge`]) may leave, in seconds of the rate.
pub const MAX_CHARGED_DEBT_SECS: f64 = 2.0;

/// The node's two buckets: what it sends and what it receives.
#[derive(Debug, Default)]
pub struct Limits {
    pub upload: RateLimiter,
    pub download: RateLimiter,
}

#[derive(Debug)]
pub struct RateLimiter {
    /// Bytes per second; 0 = unlimited.
    rate: AtomicU64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Available bytes; negative while a granted chunk is being paid off.
    balance: f64,
    last: Instant,
}

impl Bucket {
    /// Adds what `rate` earned since the last call, keeping at most the burst.
    fn refill(&mut self, rate: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let burst = (rate * BURST_SECS).max(MIN_BURST_BYTES);
        self.balance = (self.balance + rate * elapsed).min(burst);
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(0)
    }
}

impl RateLimiter {
    pub fn new(bytes_per_sec: u64) -> RateLimiter {
        RateLimiter {
            rate: AtomicU64::new(bytes_per_sec),
            state: Mutex::new(Bucket {
                balance: 0.0,
                last: Instant::now(),
            }),
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::SeqCst)
    }

    /// Changes the rate live (0 = unlimited). Saved burst and outstanding debt are dropped, so the new rate applies
    /// from now on.
    pub fn set_rate(&self, bytes_per_sec: u64) {
        if self.rate.swap(bytes_per_sec, Ordering::SeqCst) != bytes_per_sec {
            let mut bucket = self.state.lock().unwrap();
            bucket.balance = 0.0;
            bucket.last = Instant::now();
        }
    }

    /// Takes `n` bytes now if the balance allows; otherwise says how long to wait before asking again.
    fn try_take(&self, n: usize, now: Instant) -> Result<(), Duration> {
        let rate = self.rate.load(Ordering::SeqCst);
        if rate == 0 {
            return Ok(());
        }
        let rate = rate as f64;
        let mut bucket = self.state.lock().unwrap();
        bucket.refill(rate, now);
        if bucket.balance >= 0.0 {
            bucket.balance -= n as f64;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(-bucket.balance / rate).min(MAX_SLEEP))
        }
    }

    /// Charges `n` bytes that already crossed the wire outside the bucket (the TCP overhead the kernel counted,
    /// `tcp_counters`): the balance goes down by `n`, so the next chunks wait for them, but never below
    /// [`MAX_CHARGED_DEBT_SECS`] of the rate, so a burst of other traffic delays blocks by at most that long.
    pub fn charge(&self, n: u64, now: Instant) {
        let rate = self.rate.load(Ordering::SeqCst);
        if rate == 0 || n == 0 {
            return;
        }
        let rate = rate as f64;
        let mut bucket = self.state.lock().unwrap();
        bucket.refill(rate, now);
        let floor = -rate * MAX_CHARGED_DEBT_SECS;
        if bucket.balance > floor {
            bucket.balance = (bucket.balance - n as f64).max(floor);
        }
    }

    /// Waits until `n` bytes may pass. Returns at once when unlimited. `cancelled` is checked between sleeps (pause
    /// or shutdown): it returns `false` then, `true` when the bytes were granted.
    pub async fn acquire(&self, n: usize, cancelled: impl Fn() -> bool) -> bool {
        loop {
            if cancelled() {
                return false;
            }
            match self.try_take(n, Instant::now()) {
                Ok(()) => return true,
                Err(wait) => tokio::time::sleep(wait.max(Duration::from_millis(1))).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_waits() {
        let limiter = RateLimiter::new(0);
        let now = Instant::now();
        for _ in 0..1000 {
            assert!(limiter.try_take(1 << 20, now).is_ok());
        }
    }

    /// Simulated time: the bytes granted over 10 s are the rate × 10 s, within one chunk.
    #[test]
    fn long_run_rate_is_the_configured_rate() {
        for rate in [256 * 1024u64, 1024 * 1024, 10 * 1024 * 1024] {
            let limiter = RateLimiter::new(rate);
            let start = Instant::now();
            {
                let mut b = limiter.state.lock().unwrap();
                b.last = start;
            }
            let chunk = 16 * 1024;
            let mut now = start;
            let mut granted = 0u64;
            let end = start + Duration::from_secs(10);
            let mut steps = 0;
            while now < end && steps < 10_000_000 {
                steps += 1;
                match limiter.try_take(chunk, now) {
                    Ok(()) => granted += chunk as u64,
                    Err(wait) => now += wait.max(Duration::from_micros(100)),
                }
            }
            let expected = rate as f64 * 10.0;
            let ratio = granted as f64 / expected;
            assert!((0.99..=1.01).contains(&ratio), "rate {rate}: ratio {ratio}");
        }
    }

    #[test]
    fn a_rate_change_drops_the_debt() {
        let limiter = RateLimiter::new(1000);
        let now = Instant::now();
        limiter.try_take(1_000_000, now).unwrap();
        assert!(limiter.try_take(1, now).is_err());
        limiter.set_rate(0);
        assert!(limiter.try_take(1, now).is_ok());
        limiter.set_rate(1000);
        assert!(limiter.try_take(1, Instant::now()).is_ok());
    }

    /// Charged bytes delay the next grants by their time at the rate, bounded by MAX_CHARGED_DEBT_SECS.
    #[test]
    fn charged_bytes_are_paid_for_by_later_chunks() {
        let limiter = RateLimiter::new(1000);
        let start = Instant::now();
        limiter.state.lock().unwrap().last = start;
        limiter.charge(500, start);
        assert_eq!(limiter.try_take(1, start), Err(MAX_SLEEP));
        assert!(limiter
            .try_take(1, start + Duration::from_millis(499))
            .is_err());
        assert!(limiter
            .try_take(1, start + Duration::from_millis(501))
            .is_ok());
        // A huge charge leaves at most MAX_CHARGED_DEBT_SECS of debt.
        let later = start + Duration::from_secs(10);
        limiter.charge(1_000_000, later);
        let balance = limiter.state.lock().unwrap().balance;
        assert_eq!(balance, -1000.0 * MAX_CHARGED_DEBT_SECS);
        // Unlimited: charging does nothing.
        let unlimited = RateLimiter::new(0);
        unlimited.charge(1 << 30, start);
        assert!(unlimited.try_take(1, start).is_ok());
    }

    #[tokio::test]
    async fn acquire_is_cancellable() {
        let limiter = RateLimiter::new(10);
        assert!(limiter.acquire(1000, || false).await);
        assert!(!limiter.acquire(1000, || true).await);
    }
}
