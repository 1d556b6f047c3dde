//! The delivery policy every message trigger shares.
//!
//! Flow for one event: resolve the function and attempt delivery.
//! - 2xx: [`Outcome::Delivered`].
//! - The function is unavailable (no ready instance, connection refused or
//!   cut): wait (backoff capped at [`UNAVAILABLE_POLL_MAX`]) and try again,
//!   for as long as it takes. A function that is down, being updated or
//!   restarting delays events but never loses them; this does not use up
//!   retries.
//! - The function answered non-2xx or not in time: count a retry, wait
//!   `initial_backoff * 2^n` (capped at `max_backoff`), and try again, at
//!   most `max_retries` times; then [`Outcome::DeadLetter`] with the last
//!   failure as the reason. The caller writes the event to its dead-letter
//!   destination and only then commits its position.
//!
//! Cancellation (shutdown, trigger deleted) returns `None`: the event was
//! not committed and will be delivered again by whoever consumes next.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::event::Event;
use crate::invoke::{Attempt, Invoker, Resolve};
use crate::stats::Counters;

/// Longest wait between two looks at an unavailable function.
pub const UNAVAILABLE_POLL_MAX: Duration = Duration::from_secs(1);

/// How failed deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first failed answer before dead-lettering.
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `n` (0-based).
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.min(20));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// How an event's delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        attempts: u32,
    },
    /// Retries exhausted; `reason` is the last failure.
    DeadLetter {
        reason: String,
        attempts: u32,
    },
}

/// Who gets the event.
pub struct Destination<'a> {
    pub namespace: &'a str,
    pub function: &'a str,
}

/// Deliver `event` under `policy`; `None` when cancelled first.
pub async fn deliver(
    invoker: &Invoker,
    resolver: &dyn Resolve,
    to: Destination<'_>,
    event: &Event,
    policy: &RetryPolicy,
    counters: &Arc<Counters>,
    cancel: &CancellationToken,
) -> Option<Outcome> {
    let _in_flight = counters.in_flight();
    let mut failures: u32 = 0;
    let mut waits: u32 = 0;
    let mut last_unavailable = String::new();
    loop {
        let attempt = match resolver.resolve(to.namespace, to.function) {
            Ok(target) => tokio::select! {
                _ = cancel.cancelled() => return None,
                a = invoker.attempt(&target, event) => a,
            },
            Err(why) => Attempt::Unavailable(why),
        };
        let wait = match attempt {
            Attempt::Delivered { .. } => {
                Counters::add(&counters.delivered);
                return Some(Outcome::Delivered {
                    attempts: failures + 1,
                });
            }
            Attempt::Unavailable(why) => {
                if why != last_unavailable {
                    tracing::debug!(function = to.function, namespace = to.namespace, reason = %why, "function unavailable; waiting");
                    last_unavailable = why;
                }
                waits = waits.saturating_add(1);
                policy
                    .backoff(waits.saturating_sub(1))
                    .min(UNAVAILABLE_POLL_MAX)
            }
            Attempt::Failed(why) => {
                if failures >= policy.max_retries {
                    return Some(Outcome::DeadLetter {
                        reason: why,
                        attempts: failures + 1,
                    });
                }
                tracing::debug!(function = to.function, namespace = to.namespace, reason = %why, retry = failures + 1, "delivery failed; retrying");
                Counters::add(&counters.retried);
                let w = policy.backoff(failures);
                failures += 1;
                waits = 0;
                w
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        let got: Vec<u128> = (0..5).map(|n| p.backoff(n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
        assert_eq!(p.backoff(u32::MAX), Duration::from_millis(500));
    }

    struct Nowhere;
    impl Resolve for Nowhere {
        fn resolve(&self, _: &str, _: &str) -> Result<crate::Target, String> {
            Err("no instance".into())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unavailable_function_is_waited_for_until_cancelled() {
        let cancel = CancellationToken::new();
        let counters = Arc::new(Counters::default());
        let ev = Event::cron(
            &serde_json::Value::Null,
            "x".into(),
            time::OffsetDateTime::UNIX_EPOCH,
        );
        let c2 = cancel.clone();
        let stop = async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            c2.cancel();
        };
        let (invoker, policy) = (Invoker::new(), RetryPolicy::default());
        let (out, ()) = tokio::join!(
            deliver(
                &invoker,
                &Nowhere,
                Destination {
                    namespace: "d",
                    function: "f"
                },
                &ev,
                &policy,
                &counters,
                &cancel,
            ),
            stop
        );
        assert_eq!(out, None);
        let s = counters.snapshot();
        assert_eq!((s.retried, s.dead_lettered, s.in_flight), (0, 0, 0));
    }
}
