//! What happens after a failed delivery: retry with exponential backoff and full jitter, or park
//! the event in the dead-letter queue (DESIGN §4 invariant 5). Pure decisions, shared by every
//! handler kind that consumes partitions (projectors now; policies and sagas later).

use std::time::Duration;

use rand::Rng;

use crate::plugin::{CallFailure, Rejection};

/// Retries of one event, per handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Ceiling of the first delay.
    pub base: Duration,
    /// Largest ceiling, however many attempts failed.
    pub cap: Duration,
    /// Calls of the event in all (the first one included) before it is parked; at least 1.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(30),
            max_attempts: 5,
        }
    }
}

impl RetryPolicy {
    /// The delay after `failures` failed attempts (≥ 1): uniform in `[0, min(cap, base·2^(failures-1))]`
    /// ("full jitter"), so handlers retrying after a shared outage do not retry in lockstep.
    pub fn backoff(&self, failures: u32, rng: &mut impl Rng) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let ceiling = self.base.saturating_mul(1u32 << doublings).min(self.cap);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=nanos))
    }

    /// What to do after a delivery failed for the `attempts`-th time.
    pub fn next(&self, attempts: u32, error: &DeliveryError, rng: &mut impl Rng) -> NextStep {
        if !error.is_retryable() || attempts >= self.max_attempts.max(1) {
            NextStep::Park
        } else {
            NextStep::RetryAfter(self.backoff(attempts, rng))
        }
    }
}

/// Whether a parked event stops its partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeadLetterPolicy {
    /// Park the event and move the offset past it in the same transaction; the partition goes on.
    #[default]
    Skip,
    /// Park the event and keep the offset at it: the partition waits until the dead letter is
    /// retried or discarded.
    Block,
}

/// Why a delivery did not succeed, as the retry logic sees it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Trap, memory or time limit, host error, the guest's own failure: retried.
    #[error(transparent)]
    Failed(#[from] CallFailure),
    /// A business outcome (policies and sagas; projectors have none): never retried.
    #[error(transparent)]
    Rejected(#[from] Rejection),
}

impl DeliveryError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, DeliveryError::Failed(_))
    }
}

/// The decision of [`RetryPolicy::next`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    RetryAfter(Duration),
    Park,
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::plugin::FailureKind;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(50),
            max_attempts: 4,
        }
    }

    fn trap() -> DeliveryError {
        DeliveryError::Failed(CallFailure {
            kind: FailureKind::Trap,
            message: "trap".into(),
            backtrace: None,
            event_index: None,
        })
    }

    #[test]
    fn backoff_is_jittered_under_an_exponential_ceiling_capped() {
        let mut rng = StdRng::seed_from_u64(7);
        let p = policy();
        for (failures, ceiling) in [(1, 10), (2, 20), (3, 40), (4, 50), (40, 50)] {
            let delays: Vec<Duration> = (0..200).map(|_| p.backoff(failures, &mut rng)).collect();
            let max = Duration::from_millis(ceiling);
            assert!(delays.iter().all(|d| *d <= max), "{failures}: {delays:?}");
            // Full jitter spreads over the whole range, not just near the ceiling.
            assert!(delays.iter().any(|d| *d < max / 4), "{failures}");
            assert!(delays.iter().any(|d| *d > max * 3 / 4), "{failures}");
        }
    }

    #[test]
    fn failures_retry_until_the_last_attempt_and_rejections_park_at_once() {
        let mut rng = StdRng::seed_from_u64(1);
        let p = policy();
        for attempts in 1..4 {
            assert!(matches!(
                p.next(attempts, &trap(), &mut rng),
                NextStep::RetryAfter(_)
            ));
        }
        assert_eq!(p.next(4, &trap(), &mut rng), NextStep::Park);
        let rejected = DeliveryError::Rejected(Rejection {
            code: "no".into(),
            message: "no".into(),
        });
        assert_eq!(p.next(1, &rejected, &mut rng), NextStep::Park);
        let once = RetryPolicy {
            max_attempts: 0,
            ..p
        };
        assert_eq!(once.next(1, &trap(), &mut rng), NextStep::Park);
    }
}
