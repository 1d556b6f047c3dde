//! The worker pool: one request in flight per worker, grown on demand.
//!
//! A semaphore with one permit per allowed worker bounds concurrency. A
//! request holds a permit for its whole invocation; with a permit in hand
//! it takes an idle worker or, when none is idle, starts one. Because every
//! busy worker holds a permit, starting a worker never exceeds the maximum.
//! A worker that timed out, died or broke the protocol is killed and a
//! replacement is started in a tracked background task that keeps the
//! permit until the replacement is idle, so the pool size stays stable.
//!
//! Caveat: a request that arrives while all workers are busy waits for a
//! permit, and that wait counts against its timeout (the client sees one
//! deadline, not two).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::Error;
use crate::frame::{RequestHead, Response};
use crate::worker::{CallFailure, LivePids, Worker, WorkerSpec, lock, signal_group};

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
    permits: Arc<Semaphore>,
    idle: std::sync::Mutex<Vec<Worker>>,
    live: LivePids,
    started: AtomicU64,
    closed: AtomicBool,
    tracker: TaskTracker,
    shutdown: CancellationToken,
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
            permits: Arc::new(Semaphore::new(max_workers)),
            idle: std::sync::Mutex::new(Vec::with_capacity(max_workers)),
            live: LivePids::default(),
            started: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            tracker,
            shutdown,
        });
        let first = pool.start_worker().await?;
        lock(&pool.idle).push(first);
        Ok(pool)
    }

    async fn start_worker(&self) -> Result<Worker, Error> {
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        Worker::start(&self.spec, n, self.live.clone()).await
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
            let mut worker = match self.take_idle() {
                Some(worker) => worker,
                None => match timeout_at(deadline, self.start_worker()).await {
                    Err(_) => return Err(CallError::Timeout { killed: false }),
                    Ok(Err(e)) => return Err(CallError::Unavailable(error_chain(&e))),
                    Ok(Ok(worker)) => worker,
                },
            };
            return match timeout_at(deadline, worker.call(&mut head, body)).await {
                Ok(Ok(response)) => {
                    self.give_back(worker);
                    Ok(response)
                }
                Ok(Err(CallFailure::NotSent(reason))) => {
                    // It died while idle (a stray timer in the user's code,
                    // say). Dropping it reaps it; this request, which it
                    // never saw, goes to the next worker under the same
                    // permit.
                    self.spec.launch.log.note(&format!(
                        "worker {} was gone ({reason}); using another",
                        worker.pid()
                    ));
                    drop(worker);
                    continue;
                }
                Ok(Err(CallFailure::Broken(reason))) => {
                    let reason = format!("worker {}: {reason}", worker.pid());
                    drop(worker);
                    self.replace(permit);
                    Err(CallError::WorkerFailed(reason))
                }
                Err(_) => {
                    drop(worker);
                    self.replace(permit);
                    Err(CallError::Timeout { killed: true })
                }
            };
        }
    }

    /// An idle worker that is still alive. A worker killed while idle may
    /// not yet fail the first write on its socket (the kernel can accept the
    /// frame before the close is seen), so its socket's hang-up is checked
    /// here (no syscall: see [`Worker::hung_up`]); a request that no worker
    /// saw never turns into a 500.
    fn take_idle(&self) -> Option<Worker> {
        loop {
            let worker = lock(&self.idle).pop()?;
            if !worker.hung_up() {
                return Some(worker);
            }
            self.spec.launch.log.note(&format!(
                "worker {} had exited while idle; using another",
                worker.pid()
            ));
        }
    }

    fn give_back(&self, worker: Worker) {
        if self.closed.load(Ordering::Acquire) {
            return; // dropped, which kills it
        }
        lock(&self.idle).push(worker);
    }

    /// Starts a replacement in the background, holding `permit` until it is
    /// idle so no request starts a second one meanwhile.
    fn replace(self: &Arc<Self>, permit: OwnedSemaphorePermit) {
        if self.closed.load(Ordering::Acquire) || self.shutdown.is_cancelled() {
            return;
        }
        let pool = Arc::clone(self);
        self.tracker.spawn(async move {
            let _permit = permit;
            tokio::select! {
                started = pool.start_worker() => match started {
                    Ok(worker) => pool.give_back(worker),
                    Err(e) => pool.spec.launch.log.note(&format!("cannot start a replacement worker: {}", error_chain(&e))),
                },
                _ = pool.shutdown.cancelled() => {}
            }
        });
    }

    /// Stops every worker: idle ones get SIGTERM and `grace` to exit, busy
    /// ones (still inside in-flight requests) are killed outright, which
    /// completes those requests with an error.
    pub async fn close(&self, grace: Duration) {
        self.closed.store(true, Ordering::Release);
        self.permits.close();
        let idle: Vec<Worker> = lock(&self.idle).drain(..).collect();
        let busy: Vec<u32> = {
            let live = lock(&self.live);
            live.iter()
                .copied()
                .filter(|pid| !idle.iter().any(|w| w.pid() == *pid))
                .collect()
        };
        for pid in busy {
            signal_group(pid, nix::sys::signal::Signal::SIGKILL);
        }
        for worker in &idle {
            signal_group(worker.pid(), nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        for worker in idle {
            worker.stop(deadline).await;
        }
    }

    /// Number of worker processes alive right now.
    pub fn live_workers(&self) -> usize {
        lock(&self.live).len()
    }
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
