//! One language worker process and the socket the host talks to it over.
//!
//! Flow: the host binds a fresh Unix socket in the runtime directory,
//! spawns the worker program (an interpreter on the embedded worker script,
//! or the compiled Go/Java worker) in its own process group, accepts
//! exactly one connection, removes the socket file and waits for the
//! worker's `READY` (or `LOAD_FAILED`). After that the host writes requests
//! (at most [`QUEUE_DEPTH`] unanswered at once) and a reader task takes the
//! answers, which come one per request, in order.
//!
//! Guarantees: a worker's process group is killed when its connection
//! fails, when a request it runs times out, or when the host stops it, and
//! the process is always reaped, so a stuck or broken worker can never
//! outlive the host's handle. The worker itself exits when the socket
//! closes, which covers a host that died without running destructors.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use std::future::Future;

use bytes::{Buf, Bytes, BytesMut};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::compile;
use crate::config::{Config, Language};
use crate::error::Error;
use crate::frame::{self, RequestHead, Response, WorkerMessage};
use crate::log::Log;

const PYTHON_WORKER: &str = include_str!("../../../runtimes/python/kubeless_worker.py");
const NODE_WORKER: &str = include_str!("../../../runtimes/nodejs/kubeless_worker.js");
const RUBY_WORKER: &str = include_str!("../../../runtimes/ruby/kubeless_worker.rb");
const PHP_WORKER: &str = include_str!("../../../runtimes/php/kubeless_worker.php");

/// The file name and source of the worker script for `language`; `None`
/// for the compiled languages, whose worker is built with the function
/// (see [`crate::compile`]).
pub fn script(language: Language) -> Option<(&'static str, &'static str)> {
    match language {
        Language::Python => Some(("kubeless_worker.py", PYTHON_WORKER)),
        Language::Nodejs => Some(("kubeless_worker.js", NODE_WORKER)),
        Language::Ruby => Some(("kubeless_worker.rb", RUBY_WORKER)),
        Language::Php => Some(("kubeless_worker.php", PHP_WORKER)),
        Language::Go | Language::Java => None,
    }
}

/// Process ids of every live worker, so shutdown can reach workers that are
/// busy inside in-flight requests.
pub type LivePids = Arc<Mutex<HashSet<u32>>>;

/// Everything needed to start identical workers.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub language: Language,
    /// The program started for each worker, and its arguments.
    pub program: PathBuf,
    pub args: Vec<std::ffi::OsString>,
    pub socket_dir: PathBuf,
    pub code_dir: PathBuf,
    pub module: String,
    pub handler: String,
    pub env: Vec<(String, String)>,
    pub load_timeout: Duration,
    /// How worker processes are started and where their output goes.
    pub launch: Launch,
}

/// How a host starts its workers. The default suits a host process of its
/// own: workers inherit its environment, stdout and stderr. The embedded
/// server, which runs hosts in process, gives each function a clean
/// environment, its sandbox and memory cgroup (as a wrapper command) and
/// pipes into the function log.
#[derive(Clone, Default, Debug)]
pub struct Launch {
    /// Program and arguments put before each worker's own command line,
    /// e.g. `sh -c 'echo $$ > <cgroup>/cgroup.procs && exec "$@"' <cgroup>`
    /// or `bwrap ... --`. Each must end by `exec`ing (or, like bwrap, by
    /// running and outliving) the rest, in the same process group.
    pub wrapper: Vec<OsString>,
    /// The workers' whole environment, before the host's own variables
    /// (`FUNC_*`, `KUBELESS_WORKER_SOCKET`); `None` inherits the host's.
    pub env: Option<Vec<(String, String)>>,
    /// Where workers' stdout and stderr go; `None` inherits the host's.
    pub output: Option<Output>,
    /// A directory that holds a file named after each live worker's pid
    /// (removed when the worker is dropped), so whoever runs the host can
    /// find workers left behind if it is killed.
    pub pid_dir: Option<PathBuf>,
    /// Where the host's request log and diagnostics go.
    pub log: Log,
}

/// The write ends of the pipes that carry every worker's stdout and
/// stderr; each worker gets its own duplicate of them.
#[derive(Clone, Debug)]
pub struct Output {
    pub stdout: Arc<std::io::PipeWriter>,
    pub stderr: Arc<std::io::PipeWriter>,
}

impl WorkerSpec {
    /// The spec for `config`, with the script (if the language has one)
    /// already written to `script` and `code_dir` made absolute.
    pub fn new(
        config: &Config,
        script: Option<PathBuf>,
        socket_dir: PathBuf,
        code_dir: PathBuf,
    ) -> WorkerSpec {
        let mut env = vec![
            ("FUNC_HANDLER".to_owned(), config.handler.clone()),
            ("MOD_NAME".to_owned(), config.module.clone()),
            ("FUNC_TIMEOUT".to_owned(), config.timeout_text.clone()),
            ("FUNC_RUNTIME".to_owned(), config.runtime.clone()),
            ("FUNC_MEMORY_LIMIT".to_owned(), config.memory_limit.clone()),
            ("FUNC_PORT".to_owned(), config.port.to_string()),
            (
                "KUBELESS_INSTALL_VOLUME".to_owned(),
                code_dir.display().to_string(),
            ),
        ];
        if config.language == Language::Python {
            // Without this, print() output sits in a block buffer because
            // stdout is a pipe, and the function log lags behind.
            env.push(("PYTHONUNBUFFERED".to_owned(), "1".to_owned()));
        }
        let (program, args) = match (config.language, script) {
            (Language::Go, _) => (compile::go_worker(&code_dir), Vec::new()),
            (Language::Java, _) => (
                PathBuf::from(&config.interpreter),
                compile::java_worker_args(&code_dir),
            ),
            (_, script) => (
                PathBuf::from(&config.interpreter),
                script.into_iter().map(PathBuf::into_os_string).collect(),
            ),
        };
        WorkerSpec {
            language: config.language,
            program,
            args,
            socket_dir,
            code_dir,
            module: config.module.clone(),
            handler: config.handler.clone(),
            env,
            load_timeout: config.load_timeout(),
            launch: Launch::default(),
        }
    }

    fn load_error(&self, reason: String) -> Error {
        Error::LoadHandler {
            module: self.module.clone(),
            function: self.handler.clone(),
            reason,
        }
    }
}

/// Why [`Worker::call`] produced no response.
#[derive(Debug, PartialEq, Eq)]
pub enum CallFailure {
    /// The worker never started on the request (it was gone before reading
    /// it, or the request was queued behind one it died on), so the request
    /// can safely go to another worker.
    NotSent(String),
    /// The worker failed with the request (possibly) in its hands.
    Broken(String),
    /// The deadline passed. `killed`: the worker was running the request
    /// and has been killed; otherwise the request was still waiting (for
    /// the connection, or queued behind another request).
    TimedOut { killed: bool },
}

/// Most requests a worker holds at once: the one it runs plus the ones
/// queued in its socket. A queued request is read as soon as the worker
/// has answered the previous one, so a busy worker goes from one request
/// to the next without sleeping in between (a sleep and a wake-up cost
/// more than a small handler does), and reads and answers several
/// requests per system call. The pool queues only as deep as the function
/// is fast (see `crate::pool`).
pub const QUEUE_DEPTH: usize = 8;

/// What a pool's workers tell it: that an answer freed a place in a queue,
/// and how long requests take.
pub struct Feedback {
    /// Notified whenever an answer frees a place in a queue (and by the
    /// pool when a worker starts or fails to).
    pub room: tokio::sync::Notify,
    /// The mean time a worker spends on one request, in nanoseconds: from
    /// when the request is the oldest unanswered one to its answer, so time
    /// spent queued behind another request does not count. Exponentially
    /// weighted, 1/8 per sample.
    service_ns: AtomicU64,
}

impl Feedback {
    /// Starts with `assumed` as the mean service time, until answers say
    /// otherwise.
    pub fn new(assumed: Duration) -> Feedback {
        Feedback {
            room: tokio::sync::Notify::new(),
            service_ns: AtomicU64::new(nanos(assumed)),
        }
    }

    pub fn service_time(&self) -> Duration {
        Duration::from_nanos(self.service_ns.load(Ordering::Relaxed))
    }

    pub fn observe(&self, took: Duration) {
        let sample = nanos(took);
        // Racing updates lose a sample now and then; the mean stays a mean.
        let old = self.service_ns.load(Ordering::Relaxed);
        let new = old - old / 8 + sample / 8;
        self.service_ns.store(new, Ordering::Relaxed);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A running worker with the handler loaded, shared by the pool and the
/// requests queued on it.
///
/// Requests are written in order and the worker answers them in order, one
/// at a time (every worker processes requests sequentially), so the oldest
/// unanswered request is the only one the worker can be running. A task
/// ([`Worker::read_loop`]) reads the answers and hands each to its request;
/// when the connection fails it kills the worker, fails the oldest request
/// as possibly started and every later one as never started.
pub struct Worker {
    pid: u32,
    /// Frames are written under this lock, in the order of `pending`.
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    state: Mutex<State>,
    /// Set once the process has been reaped.
    exited: tokio::sync::watch::Receiver<bool>,
    /// Where answers are reported to the pool.
    feedback: Arc<Feedback>,
    log: Log,
    live: LivePids,
    pid_file: Option<PathBuf>,
}

struct State {
    next_id: u64,
    /// Requests written and not yet answered, oldest first.
    pending: VecDeque<Pending>,
    /// Since when the oldest pending request has been the worker's (it was
    /// written to an idle worker, or the one before it was answered).
    head_since: tokio::time::Instant,
    /// Why the worker takes no more requests.
    closed: Option<String>,
    /// A graceful stop was asked for: the worker may close its socket
    /// before it exits, and must be given the time to.
    stopping: bool,
}

struct Pending {
    id: u64,
    /// Dropped by a request that gave up waiting; the answer is discarded.
    reply: oneshot::Sender<Result<Response, CallFailure>>,
}

/// What [`Worker::start`] returns: the loaded worker and the task that
/// reads its answers, which the caller runs (on its task tracker) for as
/// long as the worker lives.
pub struct Started {
    pub worker: Arc<Worker>,
    pub reader: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Worker {
    /// Starts worker number `n` and waits until it has loaded the handler.
    pub async fn start(
        spec: &WorkerSpec,
        n: u64,
        live: LivePids,
        feedback: Arc<Feedback>,
    ) -> Result<Started, Error> {
        let socket = spec.socket_dir.join(format!("worker-{n}.sock"));
        let spawn_error = |source| Error::SpawnWorker {
            language: spec.language.name(),
            program: spec.program.display().to_string(),
            source,
        };
        // A leftover file from a crashed host would make bind fail.
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).map_err(spawn_error)?;
        let socket_guard = RemoveOnDrop(&socket);

        let launch = &spec.launch;
        let mut command = match launch.wrapper.split_first() {
            Some((wrapper, wrapper_args)) => {
                let mut c = Command::new(wrapper);
                c.args(wrapper_args).arg(&spec.program);
                c
            }
            None => Command::new(&spec.program),
        };
        command.args(&spec.args).current_dir(&spec.code_dir);
        if let Some(env) = &launch.env {
            command.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
        }
        command
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .env("KUBELESS_WORKER_SOCKET", &socket)
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(output) = &launch.output {
            command
                .stdout(output.stdout.try_clone().map_err(spawn_error)?)
                .stderr(output.stderr.try_clone().map_err(spawn_error)?);
        }
        let mut child = command.spawn().map_err(spawn_error)?;
        // The command holds the duplicated pipe ends; the child has its own.
        drop(command);
        let Some(pid) = child.id() else {
            return Err(spawn_error(std::io::Error::other(
                "worker exited immediately",
            )));
        };
        lock(&live).insert(pid);
        let pid_file = launch.pid_dir.as_ref().map(|dir| dir.join(pid.to_string()));
        if let Some(file) = &pid_file {
            // Best effort: without it only a killed server's cleanup of
            // this worker is lost; the worker still exits when its socket
            // closes.
            let _ = tokio::fs::write(file, spec.program.as_os_str().as_encoded_bytes()).await;
        }
        let mut guard = StartGuard {
            pid,
            live: live.clone(),
            pid_file: pid_file.clone(),
            armed: true,
        };

        let mut buf = BytesMut::new();
        let loaded = tokio::time::timeout(spec.load_timeout, async {
            // Biased towards the connection: a worker that reports a load
            // failure and exits at once has connected first, and its reason
            // is worth more than its exit status.
            let stream = tokio::select! {
                biased;
                accepted = listener.accept() => accepted.map(|(s, _)| s).map_err(|e| format!("accept worker connection: {e}"))?,
                status = child.wait() => match tokio::time::timeout(Duration::from_millis(200), listener.accept()).await {
                    Ok(Ok((s, _))) => s,
                    _ => return Err(exited_while_loading(status)),
                },
            };
            drop(socket_guard);
            let mut stream = stream;
            // No race with the process exit here: a worker that reports a
            // failure and exits leaves its message in the socket buffer, and
            // one that dies silently closes the socket.
            match read_message(&mut stream, &mut buf).await {
                Ok(WorkerMessage::Ready) => Ok(Ok(stream)),
                Ok(WorkerMessage::LoadFailed { reason }) => Ok(Err(reason)),
                Ok(WorkerMessage::Response(_)) => Err("worker answered before it was asked".to_owned()),
                Err(failure) => match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
                    Ok(status) => Err(exited_while_loading(status)),
                    Err(_) => Err(failure.reason),
                },
            }
        })
        .await;

        let stream = match loaded {
            Ok(Ok(Ok(stream))) => stream,
            Ok(Ok(Err(reason)) | Err(reason)) => return Err(spec.load_error(reason)),
            Err(_) => {
                return Err(spec.load_error(format!(
                    "module did not finish loading within {} s",
                    spec.load_timeout.as_secs_f64()
                )));
            }
        };
        guard.armed = false;
        let (read_half, write_half) = stream.into_split();
        let (exited_tx, exited) = tokio::sync::watch::channel(false);
        let worker = Arc::new(Worker {
            pid,
            writer: tokio::sync::Mutex::new(write_half),
            state: Mutex::new(State {
                next_id: 1,
                pending: VecDeque::with_capacity(QUEUE_DEPTH),
                head_since: tokio::time::Instant::now(),
                closed: None,
                stopping: false,
            }),
            exited,
            feedback,
            log: spec.launch.log.clone(),
            live,
            pid_file,
        });
        let reader = Box::pin(Arc::clone(&worker).read_loop(read_half, buf, child, exited_tx));
        Ok(Started { worker, reader })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Requests written and not yet answered.
    pub fn outstanding(&self) -> usize {
        lock(&self.state).pending.len()
    }

    /// Requests written and not yet answered, and since when the worker has
    /// had the oldest of them.
    pub fn load(&self) -> (usize, tokio::time::Instant) {
        let state = lock(&self.state);
        (state.pending.len(), state.head_since)
    }

    /// Whether the worker takes no more requests (it died, broke the
    /// protocol, timed out or is stopping).
    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed.is_some()
    }

    /// Sends one request and waits for its answer until `deadline`.
    ///
    /// A request that cannot be written because the worker is gone, or that
    /// was queued behind a request the worker died on, fails with
    /// [`CallFailure::NotSent`]: it may go to another worker. At the
    /// deadline, a request the worker is running kills the worker
    /// (`TimedOut { killed: true }`); a request still queued is given up
    /// (`TimedOut { killed: false }`) and its answer, should it come, is
    /// discarded.
    pub async fn call(
        &self,
        head: &mut RequestHead<'_>,
        body: &Bytes,
        deadline: tokio::time::Instant,
    ) -> Result<Response, CallFailure> {
        let (reply, mut answer) = oneshot::channel();
        let id = {
            let Ok(mut writer) = tokio::time::timeout_at(deadline, self.writer.lock()).await else {
                return Err(CallFailure::TimedOut { killed: false });
            };
            let id = {
                let mut state = lock(&self.state);
                if let Some(reason) = &state.closed {
                    return Err(CallFailure::NotSent(reason.clone()));
                }
                let id = state.next_id;
                state.next_id += 1;
                if state.pending.is_empty() {
                    state.head_since = tokio::time::Instant::now();
                }
                state.pending.push_back(Pending { id, reply });
                id
            };
            head.id = id;
            let encoded = match frame::encode_request_head(head, body.len()) {
                Ok(encoded) => encoded,
                Err(e) => {
                    self.forget_last(id);
                    return Err(CallFailure::Broken(e.to_owned()));
                }
            };
            // One vectored write for head and body: one syscall, and the
            // worker wakes once for the whole frame.
            let total = encoded.len() + body.len();
            let mut frame = Bytes::from(encoded).chain(body.clone());
            let written = tokio::time::timeout_at(deadline, writer.write_all_buf(&mut frame)).await;
            let sent = total - frame.remaining();
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) if sent == 0 => {
                    // The worker was already gone: its socket refused the
                    // first byte. Nothing reached it.
                    self.forget_last(id);
                    return Err(CallFailure::NotSent(format!("worker connection: {e}")));
                }
                failed => {
                    // A frame cut short leaves the connection unusable.
                    let reason = match failed {
                        Ok(Err(e)) => format!("worker connection: {e}"),
                        _ => "request not written before its deadline".to_owned(),
                    };
                    self.close(&reason);
                    return Err(if sent == 0 {
                        self.forget_last(id);
                        CallFailure::TimedOut { killed: false }
                    } else {
                        CallFailure::Broken(reason)
                    });
                }
            }
            id
        };
        match tokio::time::timeout_at(deadline, &mut answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CallFailure::Broken(
                "the worker's reader stopped".to_owned(),
            )),
            Err(_) => {
                let running = {
                    let mut state = lock(&self.state);
                    let running = state.pending.front().is_some_and(|p| p.id == id);
                    if running {
                        state
                            .closed
                            .get_or_insert_with(|| "a request timed out".to_owned());
                    }
                    running
                };
                if running {
                    signal_group(self.pid, Signal::SIGKILL);
                    return Err(CallFailure::TimedOut { killed: true });
                }
                // Answered at the last moment, or still queued.
                match answer.try_recv() {
                    Ok(result) => result,
                    Err(_) => Err(CallFailure::TimedOut { killed: false }),
                }
            }
        }
    }

    /// Removes the newest pending request, `id`, which was never written.
    /// Called with the writer lock held, so nothing was queued after it.
    fn forget_last(&self, id: u64) {
        let mut state = lock(&self.state);
        if state.pending.back().is_some_and(|p| p.id == id) {
            state.pending.pop_back();
        }
    }

    /// Takes no more requests and kills the process group; the reader then
    /// fails whatever is pending.
    fn close(&self, reason: &str) {
        lock(&self.state)
            .closed
            .get_or_insert_with(|| reason.to_owned());
        signal_group(self.pid, Signal::SIGKILL);
    }

    /// Reads answers until the connection ends, then reaps the process and
    /// fails what is still pending.
    async fn read_loop(
        self: Arc<Self>,
        mut reader: OwnedReadHalf,
        mut buf: BytesMut,
        mut child: Child,
        exited: tokio::sync::watch::Sender<bool>,
    ) {
        let failure = loop {
            match read_message(&mut reader, &mut buf).await {
                Ok(WorkerMessage::Response(response)) => {
                    let (next, took) = {
                        let mut state = lock(&self.state);
                        let next = state.pending.pop_front();
                        let now = tokio::time::Instant::now();
                        let took = now - state.head_since;
                        if !state.pending.is_empty() {
                            state.head_since = now;
                        }
                        (next, took)
                    };
                    match next {
                        Some(p) if p.id == response.id => {
                            self.feedback.observe(took);
                            // The receiver is gone if its request gave up.
                            let _ = p.reply.send(Ok(response));
                            self.feedback.room.notify_one();
                        }
                        Some(p) => {
                            let reason =
                                format!("answered request {} instead of {}", response.id, p.id);
                            let _ = p.reply.send(Err(CallFailure::Broken(reason.clone())));
                            break ReadFailure::from(reason);
                        }
                        None => {
                            break ReadFailure::from(
                                "answered a request it was not sent".to_owned(),
                            );
                        }
                    }
                }
                Ok(_) => break ReadFailure::from("sent a load message while serving".to_owned()),
                Err(failure) => break failure,
            }
        };
        let (stopping, unexpected, pending) = {
            let mut state = lock(&self.state);
            let unexpected = state.closed.is_none();
            state.closed.get_or_insert_with(|| failure.reason.clone());
            (
                state.stopping,
                unexpected,
                std::mem::take(&mut state.pending),
            )
        };
        if !stopping {
            signal_group(self.pid, Signal::SIGKILL);
        }
        // A worker asked to stop gets until its stop deadline (which then
        // kills it); any other is dead or dying now.
        let status = child.wait().await;
        let reason = match &status {
            Ok(status) if !stopping => {
                format!("{}; worker {}", failure.reason, describe_exit(status))
            }
            _ => failure.reason.clone(),
        };
        if unexpected && !stopping && pending.is_empty() {
            // Nobody else will say it: no request was in its hands.
            if let Ok(status) = &status {
                self.log.note(&format!(
                    "worker {} {} while idle; the next request starts another",
                    self.pid,
                    describe_exit(status)
                ));
            }
        }
        // Only the oldest request can have been running. It never reached
        // the handler if the worker closed with it unread and nothing else
        // was queued behind it (the kernel's reset says the socket held
        // unread data, which then was this request).
        let oldest_unread = failure.request_unread && pending.len() == 1;
        for (i, p) in pending.into_iter().enumerate() {
            let failed = if i == 0 && !oldest_unread {
                CallFailure::Broken(reason.clone())
            } else {
                CallFailure::NotSent(reason.clone())
            };
            let _ = p.reply.send(Err(failed));
        }
        forget(&self.live, self.pid, self.pid_file.as_deref());
        let _ = exited.send(true);
        self.feedback.room.notify_waiters();
    }

    /// Asks the worker to stop with SIGTERM and kills it if it has not
    /// exited by `deadline`.
    pub async fn stop(&self, deadline: tokio::time::Instant) {
        {
            let mut state = lock(&self.state);
            state.stopping = true;
            state.closed.get_or_insert_with(|| "stopping".to_owned());
        }
        signal_group(self.pid, Signal::SIGTERM);
        let mut exited = self.exited.clone();
        if tokio::time::timeout_at(deadline, exited.wait_for(|done| *done))
            .await
            .is_err()
        {
            signal_group(self.pid, Signal::SIGKILL);
            let _ = exited.wait_for(|done| *done).await;
        }
    }

    /// Kills the worker at once (its requests fail).
    pub fn kill(&self) {
        self.close("killed");
    }

    /// Waits until the process has been reaped.
    pub async fn wait_exited(&self) {
        let mut exited = self.exited.clone();
        let _ = exited.wait_for(|done| *done).await;
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // The reader task holds the worker until the process is reaped, so
        // this only matters for a worker whose reader never ran.
        if !*self.exited.borrow() {
            signal_group(self.pid, Signal::SIGKILL);
            forget(&self.live, self.pid, self.pid_file.as_deref());
        }
    }
}

/// Sends `signal` to the worker's process group (the worker leads it).
pub fn signal_group(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(raw), signal);
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded data (sets and vectors) stays consistent even if a
    // holder panicked, so poisoning is ignored.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// "exited with code 3", "was killed by signal 9 (SIGKILL)".
fn describe_exit(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(name) => format!("was killed by signal {signal} ({name})"),
            Err(_) => format!("was killed by signal {signal}"),
        },
        _ => format!("exited ({status})"),
    }
}

fn exited_while_loading(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => format!("worker exited while loading the module ({status})"),
        Err(e) => format!("worker vanished while loading the module: {e}"),
    }
}

/// Why [`read_message`] returned no message.
struct ReadFailure {
    reason: String,
    /// The worker closed its socket with data it had not read (the kernel
    /// reports that as `ECONNRESET`) and sent no byte of an answer: the
    /// request it was sent never reached its handler in full.
    request_unread: bool,
}

impl From<String> for ReadFailure {
    fn from(reason: String) -> ReadFailure {
        ReadFailure {
            reason,
            request_unread: false,
        }
    }
}

/// Reads one frame and decodes it. Bytes beyond the frame (the start of
/// the next answers, when requests are queued) stay in `buf`.
async fn read_message(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> Result<WorkerMessage, ReadFailure> {
    loop {
        if buf.len() >= 4 {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if len == 0 || len > frame::MAX_WORKER_FRAME {
                return Err(format!("worker sent a frame of {len} bytes").into());
            }
            if buf.len() >= 4 + len {
                buf.advance(4);
                // The payload shares the read buffer's allocation: the body
                // goes out to the client without a copy.
                let payload = buf.split_to(len).freeze();
                return frame::decode_worker_message(payload)
                    .map_err(|e| format!("protocol violation: {e}").into());
            }
            buf.reserve(4 + len - buf.len());
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            // One allocation serves many small responses: each takes its
            // slice and the next one is read behind it.
            buf.reserve(READ_CHUNK);
        }
        let n = stream.read_buf(buf).await.map_err(|e| ReadFailure {
            reason: format!("worker connection: {e}"),
            request_unread: e.kind() == std::io::ErrorKind::ConnectionReset && buf.is_empty(),
        })?;
        if n == 0 {
            return Err(if buf.is_empty() {
                "worker closed the connection".to_owned()
            } else {
                "worker closed the connection mid-frame".to_owned()
            }
            .into());
        }
    }
}

/// How much a read from a worker asks for at least.
const READ_CHUNK: usize = 8 << 10;

/// Kills and forgets a worker whose start did not complete.
struct StartGuard {
    pid: u32,
    live: LivePids,
    pid_file: Option<PathBuf>,
    armed: bool,
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pid, Signal::SIGKILL);
            forget(&self.live, self.pid, self.pid_file.as_deref());
        }
    }
}

/// Takes a worker that is gone (or being killed) off the live list and
/// removes its pid file.
fn forget(live: &LivePids, pid: u32, pid_file: Option<&Path>) {
    lock(live).remove(&pid);
    if let Some(file) = pid_file {
        let _ = std::fs::remove_file(file);
    }
}

struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}
