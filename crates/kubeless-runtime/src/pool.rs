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
//! Queueing a request on a busy worker lets the worker go straight from one
//! request to the next (see [`QUEUE_DEPTH`]). The price is that it waits
//! behind the request in front of it even if another worker frees up
//! first, so it is done only when that wait is short: when requests take
//! under [`QUEUE_BELOW`] on average and the one in front has run for less
//! than [`QUEUE_BEHIND_AT_MOST`]. A handler that hangs can still hold up
//! the one request queued behind it, which then times out with it.
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
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::Error;
use crate::frame::{RequestHead, Response};
use crate::worker::{CallFailure, LivePids, QUEUE_DEPTH, Worker, WorkerSpec, lock};

/// Requests are queued on busy workers only while the function's requests
/// take less than this on average (an exponentially weighted mean).
pub const QUEUE_BELOW: Duration = Duration::from_millis(1);

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
    /// Wakes requests waiting for a worker: one started, failed to start,
    /// or answered a request.
    room: Arc<Notify>,
    /// The mean time from sending a request to its answer, in nanoseconds
    /// (exponentially weighted, 1/8 per sample).
    service_ns: AtomicU64,
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
            room: Arc::new(Notify::new()),
            service_ns: AtomicU64::new(0),
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
            Worker::start(&self.spec, n, self.live.clone(), Arc::clone(&self.room)).await?;
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
        self.room.notify_waiters();
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
                if n < QUEUE_DEPTH && self.fast() && since.elapsed() < QUEUE_BEHIND_AT_MOST =>
            {
                Choice::Worker(Arc::clone(w))
            }
            // Every worker is starting, or busy with requests worth not
            // queueing behind.
            _ => Choice::Wait,
        }
    }

    /// Whether requests are short enough to queue behind one another.
    fn fast(&self) -> bool {
        self.service_ns.load(Ordering::Relaxed) < QUEUE_BELOW.as_nanos() as u64
    }

    fn observe(&self, took: Duration) {
        let sample = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        // Races between requests lose an update now and then; the mean
        // stays a mean.
        let old = self.service_ns.load(Ordering::Relaxed);
        let new = old - old / 8 + sample / 8;
        self.service_ns.store(new, Ordering::Relaxed);
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
                    let room = self.room.notified();
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
            if matches!(result, Ok(_) | Err(CallFailure::TimedOut { .. })) {
                self.observe(sent.elapsed());
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
