//! The worker pool: how many workers, which one takes a request, and
//! replacing the ones that fail.
//!
//! A semaphore with [`QUEUE_DEPTH`] permits per allowed worker bounds the
//! requests in the host's hands. A request holds a permit for its whole
//! invocation and goes to the worker with the fewest requests: an idle one
//! if there is one, else a new worker while fewer than the maximum are
//! alive, else, for a fast function, a busy one with room in its queue;
//! otherwise it waits until a worker has room.
//!
//! Queueing requests on a busy worker lets the worker go straight from one
//! request to the next (see [`QUEUE_DEPTH`]). The price is that a queued
//! request waits behind the ones in front of it even if another worker
//! frees up first, so the pool queues only as deep as that wait stays
//! short: behind `n` requests only while `n` times the function's mean
//! service time is under [`QUEUE_WAIT_BELOW`], and only behind a request
//! that has run for less than [`QUEUE_BEHIND_AT_MOST`]. Until answers say
//! otherwise, requests are assumed to take [`QUEUE_WAIT_BELOW`] (nothing is
//! queued). A handler that is usually fast and then hangs can still hold up
//! the requests already queued behind it, which then time out with it.
//!
//! A worker that timed out, died or broke the protocol is killed; requests
//! queued behind the one it was running never reached a handler and are
//! sent to another worker under the same deadline. A replacement is
//! started in a tracked background task that keeps the failed request's
//! permit until the replacement is ready.
//!
//! Caveat: waiting for a permit, a worker or a queued turn counts against
//! the request's timeout (the client sees one deadline, not two).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::Error;
use crate::frame::{RequestHead, Response};
use crate::worker::{CallFailure, Feedback, LivePids, QUEUE_DEPTH, Worker, WorkerSpec, lock};

/// A request is queued on a busy worker only while the requests ahead of
/// it there, times the function's mean service time, come to less than
/// this.
pub const QUEUE_WAIT_BELOW: Duration = Duration::from_millis(1);

/// ... and only behind a request that has run for less than this.
pub const QUEUE_BEHIND_AT_MOST: Duration = Duration::from_millis(5);

/// Why an invocation produced no worker response.
#[derive(Debug, PartialEq, Eq)]
pub enum CallError {
    /// The deadline passed; `killed` says whether a worker was running the
    /// request (it has been killed and is being replaced).
    Timeout { killed: bool },
    /// The worker died or broke the protocol mid-request; it was replaced.
    WorkerFailed(String),
    /// No worker could be started for this request.
    Unavailable(String),
    /// The host is shutting down.
    ShuttingDown,
}

pub struct Pool {
    spec: WorkerSpec,
    max_workers: usize,
    permits: Arc<Semaphore>,
    /// Workers that have loaded the handler, closed ones included until a
    /// request notices and removes them.
    workers: Mutex<Vec<Arc<Worker>>>,
    /// Workers alive or starting: never more than `max_workers`.
    count: AtomicUsize,
    /// What the workers report: room in their queues (which wakes requests
    /// waiting for a worker; the pool notifies it too when a worker started
    /// or failed to) and the function's mean service time.
    feedback: Arc<Feedback>,
    live: LivePids,
    started: AtomicU64,
    closed: AtomicBool,
    /// Replacement starts, which the host's drain waits for.
    tracker: TaskTracker,
    /// The workers' readers, which live as long as the workers: apart from
    /// `tracker` so a drain does not wait for idle workers.
    readers: TaskTracker,
    shutdown: CancellationToken,
}

/// Where a request goes.
enum Choice {
    Worker(Arc<Worker>),
    /// Start a worker (one of `count` has been reserved for it).
    Start,
    /// Every worker is starting: wait for one.
    Wait,
}

impl Pool {
    /// Starts the first worker and returns once it has loaded the handler.
    pub async fn start(
        spec: WorkerSpec,
        max_workers: usize,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Arc<Pool>, Error> {
        let pool = Arc::new(Pool {
            spec,
            max_workers,
            permits: Arc::new(Semaphore::new(max_workers * QUEUE_DEPTH)),
            workers: Mutex::new(Vec::with_capacity(max_workers)),
            count: AtomicUsize::new(1),
            feedback: Arc::new(Feedback::new(QUEUE_WAIT_BELOW)),
            live: LivePids::default(),
            started: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            tracker,
            readers: TaskTracker::new(),
            shutdown,
        });
        let first = match pool.start_worker().await {
            Ok(worker) => worker,
            Err(e) => {
                pool.count.fetch_sub(1, Ordering::AcqRel);
                return Err(e);
            }
        };
        lock(&pool.workers).push(first);
        Ok(pool)
    }

    /// Starts a worker (its slot in `count` already reserved) and runs its
    /// reader on the tracker.
    async fn start_worker(&self) -> Result<Arc<Worker>, Error> {
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        let started =
            Worker::start(&self.spec, n, self.live.clone(), Arc::clone(&self.feedback)).await?;
        self.readers.spawn(started.reader);
        Ok(started.worker)
    }

    /// Adds a started worker, or gives its slot back if starting failed.
    fn add(&self, started: &Result<Arc<Worker>, Error>) {
        match started {
            Ok(worker) if !self.closed.load(Ordering::Acquire) => {
                lock(&self.workers).push(Arc::clone(worker));
            }
            Ok(worker) => worker.kill(),
            Err(_) => {
                self.count.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.feedback.room.notify_waiters();
    }

    fn choose(&self) -> Choice {
        let mut workers = lock(&self.workers);
        let before = workers.len();
        workers.retain(|w| !w.is_closed());
        let removed = before - workers.len();
        if removed > 0 {
            self.count.fetch_sub(removed, Ordering::AcqRel);
        }
        let mut best: Option<(usize, Instant, &Arc<Worker>)> = None;
        for w in workers.iter() {
            let (n, since) = w.load();
            if best.is_none_or(|(b, _, _)| n < b) {
                best = Some((n, since, w));
            }
        }
        match best {
            Some((0, _, w)) => Choice::Worker(Arc::clone(w)),
            _ if self.reserve() => Choice::Start,
            Some((n, since, w))
                if n < QUEUE_DEPTH
                    && self.wait_is_short(n)
                    && since.elapsed() < QUEUE_BEHIND_AT_MOST =>
            {
                Choice::Worker(Arc::clone(w))
            }
            // Every worker is starting, or busy with requests worth not
            // queueing behind.
            _ => Choice::Wait,
        }
    }

    fn wait_is_short(&self, ahead: usize) -> bool {
        wait_is_short(self.feedback.service_time(), ahead)
    }

    /// Reserves a slot for a new worker, if fewer than the maximum exist.
    fn reserve(&self) -> bool {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_workers).then_some(n + 1)
            })
            .is_ok()
    }

    /// Runs one invocation on some worker, all within `deadline`.
    pub async fn call(
        self: &Arc<Self>,
        mut head: RequestHead<'_>,
        body: &Bytes,
        deadline: Instant,
    ) -> Result<Response, CallError> {
        let permit = match timeout_at(deadline, self.permits.clone().acquire_owned()).await {
            Err(_) => return Err(CallError::Timeout { killed: false }),
            Ok(Err(_closed)) => return Err(CallError::ShuttingDown),
            Ok(Ok(permit)) => permit,
        };
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(CallError::ShuttingDown);
            }
            let worker = match self.choose() {
                Choice::Worker(worker) => worker,
                Choice::Start => {
                    let started = match timeout_at(deadline, self.start_worker()).await {
                        Ok(started) => started,
                        Err(_) => {
                            self.count.fetch_sub(1, Ordering::AcqRel);
                            return Err(CallError::Timeout { killed: false });
                        }
                    };
                    self.add(&started);
                    match started {
                        Ok(worker) => worker,
                        Err(e) => return Err(CallError::Unavailable(error_chain(&e))),
                    }
                }
                Choice::Wait => {
                    let room = self.feedback.room.notified();
                    tokio::pin!(room);
                    room.as_mut().enable();
                    // A worker may have been added or freed since `choose`.
                    match self.choose() {
                        Choice::Wait => {
                            if timeout_at(deadline, room).await.is_err() {
                                return Err(CallError::Timeout { killed: false });
                            }
                            continue;
                        }
                        Choice::Worker(worker) => worker,
                        Choice::Start => {
                            // Give the reservation back and take the usual path.
                            self.count.fetch_sub(1, Ordering::AcqRel);
                            continue;
                        }
                    }
                }
            };
            let sent = Instant::now();
            let result = worker.call(&mut head, body, deadline).await;
            if let Err(CallFailure::TimedOut { killed: true }) = result {
                // Answers report their own service time; a request that
                // ran into its deadline has none.
                self.feedback.observe(sent.elapsed());
            }
            return match result {
                Ok(response) => Ok(response),
                Err(CallFailure::NotSent(reason)) => {
                    // It died before reaching this request (a stray timer
                    // in the user's code, say, or a request queued ahead
                    // of this one that killed it). No handler saw this
                    // request: the next worker takes it.
                    self.spec.launch.log.note(&format!(
                        "worker {} was gone ({reason}); using another",
                        worker.pid()
                    ));
                    continue;
                }
                Err(CallFailure::Broken(reason)) => {
                    self.replace(permit);
                    Err(CallError::WorkerFailed(format!(
                        "worker {}: {reason}",
                        worker.pid()
                    )))
                }
                Err(CallFailure::TimedOut { killed: true }) => {
                    self.replace(permit);
                    Err(CallError::Timeout { killed: true })
                }
                Err(CallFailure::TimedOut { killed: false }) => {
                    Err(CallError::Timeout { killed: false })
                }
            };
        }
    }

    /// Starts a replacement in the background, holding `permit` until it is
    /// ready so no request starts a second one meanwhile. The failed worker
    /// is closed; its slot goes to the replacement once a request (or this
    /// task) removes it from the list.
    fn replace(self: &Arc<Self>, permit: OwnedSemaphorePermit) {
        if self.closed.load(Ordering::Acquire) || self.shutdown.is_cancelled() {
            return;
        }
        let pool = Arc::clone(self);
        self.tracker.spawn(async move {
            let _permit = permit;
            // Drop closed workers first, so their slots can be reserved.
            if !matches!(pool.choose(), Choice::Start) {
                return; // enough workers, or a request is starting one
            }
            tokio::select! {
                started = pool.start_worker() => {
                    if let Err(e) = &started {
                        pool.spec.launch.log.note(&format!("cannot start a replacement worker: {}", error_chain(e)));
                    }
                    pool.add(&started);
                }
                _ = pool.shutdown.cancelled() => {
                    pool.count.fetch_sub(1, Ordering::AcqRel);
                }
            }
        });
    }

    /// Stops every worker: idle ones get SIGTERM and `grace` to exit, busy
    /// ones (still inside in-flight requests) are killed outright, which
    /// completes those requests with an error.
    pub async fn close(&self, grace: Duration) {
        self.closed.store(true, Ordering::Release);
        self.permits.close();
        let workers: Vec<Arc<Worker>> = lock(&self.workers).drain(..).collect();
        let deadline = Instant::now() + grace;
        let mut idle = Vec::new();
        for worker in workers {
            if worker.outstanding() == 0 {
                idle.push(worker);
            } else {
                worker.kill();
                // Reaped by its reader; waiting here keeps shutdown honest.
                let _ = timeout_at(deadline, worker.wait_exited()).await;
            }
        }
        join_all(idle.iter().map(|w| w.stop(deadline))).await;
        // A worker started while closing is killed by `add`; its reader
        // ends when the process is gone.
        self.readers.close();
        let _ = timeout_at(deadline + Duration::from_secs(1), self.readers.wait()).await;
    }

    /// Number of worker processes alive right now.
    pub fn live_workers(&self) -> usize {
        lock(&self.live).len()
    }
}

/// Whether a request queued behind `ahead` others, each taking `service`,
/// would wait briefly.
fn wait_is_short(service: Duration, ahead: usize) -> bool {
    let ahead = u32::try_from(ahead).unwrap_or(u32::MAX);
    service.saturating_mul(ahead) < QUEUE_WAIT_BELOW
}

/// Runs the futures to completion, side by side.
async fn join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        futures.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if futures.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

/// Renders an error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_as_deep_as_the_wait_stays_short() {
        let us = Duration::from_micros;
        let deepest = |service| {
            (1..QUEUE_DEPTH)
                .take_while(|&n| wait_is_short(service, n))
                .last()
        };
        assert_eq!(deepest(us(30)), Some(QUEUE_DEPTH - 1), "hello world");
        assert_eq!(deepest(us(200)), Some(4));
        assert_eq!(deepest(us(600)), Some(1));
        assert_eq!(deepest(us(1000)), None, "a 1 ms function is never queued");
        assert!(!wait_is_short(Duration::MAX, usize::MAX));
    }

    #[test]
    fn a_new_function_is_not_queued_until_its_answers_are_fast() {
        let feedback = Feedback::new(QUEUE_WAIT_BELOW);
        assert!(!wait_is_short(feedback.service_time(), 1));
        for _ in 0..6 {
            feedback.observe(Duration::from_micros(30));
        }
        assert!(wait_is_short(feedback.service_time(), 1));
        for _ in 0..20 {
            feedback.observe(Duration::from_micros(30));
        }
        assert!(wait_is_short(feedback.service_time(), QUEUE_DEPTH - 1));
        // A slow stretch stops the queueing again.
        for _ in 0..10 {
            feedback.observe(Duration::from_millis(5));
        }
        assert!(!wait_is_short(feedback.service_time(), 1));
    }
}
