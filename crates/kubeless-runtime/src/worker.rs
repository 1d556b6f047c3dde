//! One language worker process and the socket the host talks to it over.
//!
//! Flow: the host binds a fresh Unix socket in the runtime directory,
//! spawns the worker program (an interpreter on the embedded worker script,
//! or the compiled Go/Java worker) in its own process group, accepts exactly one connection, removes the socket file and
//! waits for the worker's `READY` (or `LOAD_FAILED`). After that the host
//! sends one request at a time and reads one response per request.
//!
//! Guarantees: a `Worker` value owns its process; dropping it kills the
//! whole process group (the user's code may have started children), so a
//! stuck or broken worker can never outlive the handle. The worker itself
//! exits when the socket closes, which covers a host that died without
//! running destructors.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};

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
    /// Not a byte of the request was written: the worker was already gone,
    /// so the request can safely go to another worker.
    NotSent(String),
    /// The worker failed with the request (possibly) in its hands.
    Broken(String),
}

/// A running worker with the handler loaded.
pub struct Worker {
    pid: u32,
    child: Child,
    stream: UnixStream,
    /// Bytes read from the worker and not yet decoded. Frames are read
    /// with as few `recv`s as the kernel allows (usually one per response)
    /// instead of one for the length and one for the payload.
    buf: BytesMut,
    next_id: u64,
    live: LivePids,
    pid_file: Option<PathBuf>,
}

impl Worker {
    /// Starts worker number `n` and waits until it has loaded the handler.
    pub async fn start(spec: &WorkerSpec, n: u64, live: LivePids) -> Result<Worker, Error> {
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
        Ok(Worker {
            pid,
            child,
            stream,
            buf,
            next_id: 1,
            live,
            pid_file,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends one request and waits for its response. An error means the
    /// worker is unusable and must be dropped.
    ///
    /// The pool skips idle workers that [hung up](Worker::hung_up); a
    /// worker that died after that check has closed its socket, so the
    /// write fails with `EPIPE` before any of the request reached anyone,
    /// and [`CallFailure::NotSent`] tells the caller it may try another
    /// worker.
    pub async fn call(
        &mut self,
        head: &mut RequestHead<'_>,
        body: &Bytes,
    ) -> Result<Response, CallFailure> {
        let id = self.next_id;
        self.next_id += 1;
        head.id = id;
        let encoded = frame::encode_request_head(head, body.len())
            .map_err(|e| CallFailure::Broken(e.to_owned()))?;
        // One vectored write for head and body: one syscall, and the worker
        // wakes once for the whole frame.
        let total = encoded.len() + body.len();
        let mut frame = Bytes::from(encoded).chain(body.clone());
        if let Err(e) = self.stream.write_all_buf(&mut frame).await {
            let reason = format!("worker connection: {e}");
            return Err(if frame.remaining() == total {
                CallFailure::NotSent(reason)
            } else {
                CallFailure::Broken(reason)
            });
        }
        match read_message(&mut self.stream, &mut self.buf).await {
            Ok(WorkerMessage::Response(response)) if response.id == id => Ok(response),
            Ok(WorkerMessage::Response(response)) => Err(CallFailure::Broken(format!(
                "answered request {} instead of {id}",
                response.id
            ))),
            Ok(_) => Err(CallFailure::Broken(
                "sent a load message while serving".to_owned(),
            )),
            // It closed its socket with the request still queued: it died
            // before reading it (or all of it), so no handler ran and
            // another worker may take it. This is the race a hang-up check
            // cannot close: a process's sockets close only when its last
            // thread has exited, a moment after it was killed.
            Err(ReadFailure {
                reason,
                request_unread: true,
            }) => Err(CallFailure::NotSent(reason)),
            Err(ReadFailure { reason, .. }) => {
                Err(CallFailure::Broken(match self.child.try_wait() {
                    Ok(Some(status)) => format!("worker exited ({status})"),
                    _ => reason,
                }))
            }
        }
    }

    /// Whether the worker's end of the socket is closed: it exited (or was
    /// killed) while idle. This costs no syscall: the socket is registered
    /// with the runtime's epoll for `EPOLLRDHUP`, so the hang-up was
    /// recorded when the event loop last polled, and closed states are
    /// never cleared. The kernel closes a process's sockets when its last
    /// thread exits, which is also when `wait4` would first report it, so
    /// this sees a dead worker as soon as an exit-status check would,
    /// without a `wait4` per request.
    pub fn hung_up(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let ready = pin!(self.stream.ready(Interest::READABLE));
        match ready.poll(&mut cx) {
            Poll::Ready(Ok(ready)) => ready.is_read_closed(),
            Poll::Ready(Err(_)) => true,
            Poll::Pending => false,
        }
    }

    /// Asks the worker to stop with SIGTERM and kills it if it has not
    /// exited by `deadline`.
    pub async fn stop(mut self, deadline: tokio::time::Instant) {
        signal_group(self.pid, Signal::SIGTERM);
        let _ = tokio::time::timeout_at(deadline, self.child.wait()).await;
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        signal_group(self.pid, Signal::SIGKILL);
        lock(&self.live).remove(&self.pid);
        if let Some(file) = &self.pid_file {
            let _ = std::fs::remove_file(file);
        }
        // `kill_on_drop` then has tokio reap the process in the background.
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

/// Reads one frame and decodes it. Bytes beyond the frame stay in `buf`
/// (a worker sends nothing unasked, so there are none in practice).
async fn read_message(
    stream: &mut UnixStream,
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
            lock(&self.live).remove(&self.pid);
            if let Some(file) = &self.pid_file {
                let _ = std::fs::remove_file(file);
            }
        }
    }
}

struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}
