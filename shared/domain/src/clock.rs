//! Time, injected: every rule that depends on it (token expiry, login
//! locks, task timestamps, a delay's progress and due time) asks a
//! [`Clock`], so tests move time on with a [`ManualClock`] instead of
//! sleeping, and production uses the [`SystemClock`].

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

/// Where "now" comes from.
#[async_trait]
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time, truncated to whole milliseconds (see [`crate::now`]).
    fn now(&self) -> OffsetDateTime;
    /// Returns once `now() >= at`.
    async fn sleep_until(&self, at: OffsetDateTime);
}

/// The machine's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        crate::now()
    }

    async fn sleep_until(&self, at: OffsetDateTime) {
        loop {
            let remaining = at - self.now();
            if remaining <= time::Duration::ZERO {
                return;
            }
            // Re-check at least every minute, so a changed wall clock is noticed.
            let step = remaining.unsigned_abs().min(Duration::from_secs(60));
            tokio::time::sleep(step).await;
        }
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: tokio::sync::watch::Sender<OffsetDateTime>,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            now: tokio::sync::watch::Sender::new(start),
        }
    }

    /// Moves the clock on by `by`, waking whatever sleeps until then.
    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|now| *now += by);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.borrow()
    }

    async fn sleep_until(&self, at: OffsetDateTime) {
        let mut now = self.now.subscribe();
        let _ = now.wait_for(|now| *now >= at).await;
    }
}
