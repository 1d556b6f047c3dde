//! The cron scheduler: one time-driven loop per CronJobTrigger, shaped like
//! mini-redis's purge task: `sleep_until(next)` raced against the shutdown
//! signal and the end of the run in flight, tested with paused time.
//!
//! Policy:
//! - times are UTC; `next` is the first firing time strictly after now;
//! - at most one run per trigger is in flight: a firing while the previous
//!   run is still going is skipped and counted (`skipped`), so a slow
//!   function never stacks up copies;
//! - runs missed while the server was down (or while the machine slept)
//!   are not replayed: after a start or a jump of the clock the schedule
//!   resumes at its next firing time;
//! - each run is one request (like Kubeless's `curl` job): a run that fails
//!   or finds the function unavailable is counted as failed, not retried;
//!   the next run comes at its time.

use std::sync::Arc;
use std::time::Duration;

use kubeless_api::cron::Schedule;
use kubeless_events::event::new_event_id;
use kubeless_events::invoke::Attempt;
use kubeless_events::source::{EventSource, Health, HealthSlot, SourceFuture};
use kubeless_events::{Counters, Event, Invoker, Resolve};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Wall-clock time, read through a trait so tests run on paused time.
pub trait Clock: Send + Sync + 'static {
    /// Unix time in milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }
}

/// One CronJobTrigger's schedule.
pub struct CronSource {
    pub schedule: Schedule,
    pub payload: serde_json::Value,
    pub namespace: String,
    pub function: String,
    pub invoker: Invoker,
    pub resolver: Arc<dyn Resolve>,
    pub counters: Arc<Counters>,
    pub clock: Arc<dyn Clock>,
}

/// The next firing after `now_ms`, as unix seconds.
fn next_fire(schedule: &Schedule, now_ms: i64) -> Option<i64> {
    schedule.next_after(now_ms.div_euclid(1000))
}

impl CronSource {
    async fn fire(
        invoker: Invoker,
        resolver: Arc<dyn Resolve>,
        counters: Arc<Counters>,
        event: Event,
        ns: String,
        function: String,
    ) {
        let _in_flight = counters.in_flight();
        let attempt = match resolver.resolve(&ns, &function) {
            Ok(t) => invoker.attempt(&t, &event).await,
            Err(why) => Attempt::Unavailable(why),
        };
        match attempt {
            Attempt::Delivered { .. } => Counters::add(&counters.delivered),
            Attempt::Unavailable(why) | Attempt::Failed(why) => {
                Counters::add(&counters.failed);
                tracing::warn!(namespace = %ns, function = %function, reason = %why, "scheduled run failed");
            }
        }
    }
}

impl EventSource for CronSource {
    fn run(self: Box<Self>, health: HealthSlot, shutdown: CancellationToken) -> SourceFuture {
        Box::pin(async move {
            let mut running: JoinSet<()> = JoinSet::new();
            let mut now = self.clock.now_ms();
            loop {
                let Some(next) = next_fire(&self.schedule, now) else {
                    health.set(Health::Degraded(format!(
                        "the schedule {} never fires",
                        self.schedule
                    )));
                    shutdown.cancelled().await;
                    break;
                };
                health.set(Health::Ready(format!(
                    "schedule {} (UTC) calls {}",
                    self.schedule, self.function
                )));
                let wait =
                    u64::try_from(next.saturating_mul(1000).saturating_sub(now)).unwrap_or(0);
                let deadline = Instant::now() + Duration::from_millis(wait);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => {
                            running.shutdown().await;
                            return Ok(());
                        }
                        _ = tokio::time::sleep_until(deadline) => break,
                        Some(_) = running.join_next(), if !running.is_empty() => {}
                    }
                }
                if running.is_empty() {
                    let event = Event::cron(
                        &self.payload,
                        new_event_id(),
                        time::OffsetDateTime::from_unix_timestamp(next)
                            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
                    );
                    running.spawn(CronSource::fire(
                        self.invoker.clone(),
                        self.resolver.clone(),
                        self.counters.clone(),
                        event,
                        self.namespace.clone(),
                        self.function.clone(),
                    ));
                } else {
                    Counters::add(&self.counters.skipped);
                    tracing::warn!(namespace = %self.namespace, function = %self.function, "scheduled run skipped: the previous run is still going");
                }
                // Missed firings (clock jump, long pause) are not replayed.
                now = self.clock.now_ms().max(next.saturating_mul(1000));
            }
            running.shutdown().await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Wall clock that follows tokio's (paused) time.
    struct TokioClock {
        start_ms: i64,
        start: Instant,
    }
    impl Clock for TokioClock {
        fn now_ms(&self) -> i64 {
            self.start_ms + i64::try_from(self.start.elapsed().as_millis()).unwrap_or(0)
        }
    }

    /// A resolver whose every call is counted and never reachable, so a run
    /// ends at once as failed; or, with `hang`, points at a listener that
    /// never answers so a run stays in flight.
    struct Counting {
        calls: Arc<AtomicUsize>,
        hang: Option<String>,
    }
    impl Resolve for Counting {
        fn resolve(&self, _: &str, _: &str) -> Result<kubeless_events::Target, String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            match &self.hang {
                Some(url) => Ok(kubeless_events::Target {
                    url: url.clone(),
                    timeout: Duration::from_secs(3600),
                }),
                None => Err("down".into()),
            }
        }
    }

    fn source(
        schedule: &str,
        calls: Arc<AtomicUsize>,
        hang: Option<String>,
        counters: Arc<Counters>,
    ) -> Box<CronSource> {
        Box::new(CronSource {
            schedule: Schedule::parse(schedule).expect("schedule"),
            payload: serde_json::Value::Null,
            namespace: "default".into(),
            function: "f".into(),
            invoker: Invoker::new(),
            resolver: Arc::new(Counting { calls, hang }),
            counters,
            // 2021-01-01T00:00:30Z
            clock: Arc::new(TokioClock {
                start_ms: 1_609_459_230_000,
                start: Instant::now(),
            }),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn fires_on_every_tick_of_its_schedule() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counters = Arc::new(Counters::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(
            source("@every 10s", calls.clone(), None, counters.clone())
                .run(HealthSlot::default(), stop.clone()),
        );
        tokio::time::sleep(Duration::from_millis(35_500)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3, "10 s, 20 s, 30 s");
        assert_eq!(counters.snapshot().failed, 3);
        stop.cancel();
        task.await.expect("join").expect("run");
    }

    #[tokio::test(start_paused = true)]
    async fn five_field_schedules_fire_at_the_minute() {
        let calls = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let task = tokio::spawn(
            source(
                "* * * * *",
                calls.clone(),
                None,
                Arc::new(Counters::default()),
            )
            .run(HealthSlot::default(), stop.clone()),
        );
        // Start is at :30; the first run is 30 s later, the next a minute after.
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        stop.cancel();
        task.await.expect("join").expect("run");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_run_is_never_stacked_and_skips_are_counted() {
        // A listener that accepts and never answers keeps the run in flight.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let calls = Arc::new(AtomicUsize::new(0));
        let counters = Arc::new(Counters::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(
            source("@every 1s", calls.clone(), Some(url), counters.clone())
                .run(HealthSlot::default(), stop.clone()),
        );
        let _conn = listener.accept().await.expect("first run connects");
        tokio::time::sleep(Duration::from_millis(5_200)).await;
        let s = counters.snapshot();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one run at a time");
        assert_eq!(s.in_flight, 1);
        assert!(s.skipped >= 4, "{s:?}");
        stop.cancel();
        task.await.expect("join").expect("run");
        assert_eq!(counters.snapshot().in_flight, 0, "shutdown ends the run");
    }
}
