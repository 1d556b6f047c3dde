//! One function instance, supervised. Two shapes:
//!
//! - **In process** (every function on a language runtime): the runtime
//!   host's pool runs inside this server ([`kubeless_runtime::Host`]); its
//!   worker processes are started with the function's clean environment,
//!   memory cgroup and sandbox, their output piped into the function log,
//!   and the gateway calls the host directly. A handler that cannot be
//!   loaded is a load failure with the host's one-line reason, retried
//!   slowly. See [`run_in_process`].
//! - **A process of its own** (a function run from an image, or a custom
//!   runtime's server): start it in its own process group, pump its
//!   stdout/stderr into the function log, wait for `/healthz`, report
//!   `Ready`, and when it exits report `Down` and start it again after an
//!   exponential backoff (reset after a minute of healthy running). A host
//!   that exits with code 3 could not load the handler.
//!
//! Stopping (cancellation) drains in-flight requests for up to
//! [`STOP_GRACE`], then kills: a process's whole group, or every worker of
//! an in-process host; no worker is ever orphaned. Pids are recorded under
//! `<run root>/pids` so a server restarted after `kill -9` can clear
//! processes the old server left behind ([`reap_leftovers`]); workers also
//! exit by themselves when their socket to the server closes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubeless_plan::FunctionPlan;
use kubeless_plan::expand::expand;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::gateway::Endpoint;
use crate::logs::{FunctionLog, LogHub};

/// How long a stopping instance gets before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a new instance may take to answer `/healthz`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a starting instance's `/healthz` is polled every 5 ms.
const FAST_POLL: Duration = Duration::from_secs(3);
/// Exit code of the runtime host when the handler cannot be loaded.
pub const EXIT_LOAD_FAILURE: i32 = 3;

/// What an instance tells its function.
#[derive(Debug, Clone)]
pub enum InstanceEvent {
    Ready {
        set: u64,
        slot: usize,
        endpoint: Endpoint,
    },
    Down {
        set: u64,
        slot: usize,
        reason: String,
        load_failure: bool,
    },
}

/// Shared, read-only context for instances.
#[derive(Clone)]
pub struct InstanceCtx {
    pub runtime_bin: PathBuf,
    pub python: String,
    pub node: String,
    /// Further interpreter variables for the host (`KUBELESS_RUBY`, ...).
    pub interpreters: Vec<(&'static str, String)>,
    pub logs: LogHub,
    /// `<home>/server/run`: per-instance scratch dirs and pid files.
    pub run_root: PathBuf,
    pub secrets: crate::secrets::SecretFiles,
    pub limits: crate::limits::MemoryLimits,
    /// bubblewrap, used to mount secrets at their paths.
    pub bwrap: Option<PathBuf>,
}

/// What one instance runs.
#[derive(Clone)]
pub struct InstanceSpec {
    pub plan: Arc<FunctionPlan>,
    pub artifact: PathBuf,
    pub set: u64,
    pub slot: usize,
}

/// Supervise one instance until cancelled.
pub async fn run(
    ctx: InstanceCtx,
    spec: InstanceSpec,
    events: mpsc::Sender<InstanceEvent>,
    cancel: CancellationToken,
) {
    let plan = &spec.plan;
    let mut failures: u32 = 0;
    loop {
        let outcome = run_once(&ctx, &spec, &events, &cancel).await;
        let (reason, load_failure, healthy_for) = match outcome {
            Outcome::Cancelled => return,
            Outcome::Down {
                reason,
                load_failure,
                healthy_for,
            } => (reason, load_failure, healthy_for),
        };
        let _ = events
            .send(InstanceEvent::Down {
                set: spec.set,
                slot: spec.slot,
                reason: reason.clone(),
                load_failure,
            })
            .await;
        if healthy_for > Duration::from_secs(60) {
            failures = 0;
        }
        failures = failures.saturating_add(1);
        let (base, cap) = if load_failure {
            (Duration::from_secs(5), Duration::from_secs(300))
        } else {
            (Duration::from_millis(250), Duration::from_secs(30))
        };
        let delay = base
            .saturating_mul(1u32 << failures.min(10).saturating_sub(1))
            .min(cap);
        ctx.logs.push(
            &plan.namespace,
            &plan.name,
            format!(
                "kubeless: instance {} stopped ({reason}); restarting in {:.1} s",
                spec.slot,
                delay.as_secs_f64()
            )
            .as_bytes(),
        );
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

enum Outcome {
    Cancelled,
    Down {
        reason: String,
        load_failure: bool,
        healthy_for: Duration,
    },
}

async fn run_once(
    ctx: &InstanceCtx,
    spec: &InstanceSpec,
    events: &mpsc::Sender<InstanceEvent>,
    cancel: &CancellationToken,
) -> Outcome {
    if !crate::image::is_image_root(&spec.artifact) && spec.plan.server.is_none() {
        return run_in_process(ctx, spec, events, cancel).await;
    }
    let plan = &spec.plan;
    let port = match free_port().await {
        Ok(p) => p,
        Err(e) => return down(format!("no free loopback port: {e}"), false, Duration::ZERO),
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let scratch = ctx.run_root.join(format!(
        "{}_{}_{}_{}",
        plan.namespace, plan.name, spec.set, spec.slot
    ));
    let mut cmd = match command(ctx, spec, port, &scratch).await {
        Ok(c) => c,
        Err(reason) => return down(reason, false, Duration::ZERO),
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return down(
                format!("start {}: {e}", ctx.runtime_bin.display()),
                false,
                Duration::ZERO,
            );
        }
    };
    let pid = child.id();
    let pid_file = pid.map(|p| ctx.run_root.join("pids").join(p.to_string()));
    if let Some(f) = &pid_file {
        let _ = tokio::fs::write(f, ctx.runtime_bin.to_string_lossy().as_bytes()).await;
    }
    // Holding the write end of stdin: when this server dies the host sees EOF and exits.
    let stdin = child.stdin.take();

    let last_err = Arc::new(Mutex::new(String::new()));
    let mut pumps = JoinSet::new();
    let log = ctx.logs.handle(&plan.namespace, &plan.name);
    if let Some(out) = child.stdout.take() {
        pumps.spawn(pump(out, log.clone(), None));
    }
    if let Some(err) = child.stderr.take() {
        pumps.spawn(pump(err, log, Some(last_err.clone())));
    }

    let socket = host_socket(&scratch);
    let outcome = supervise(&mut child, addr, &socket, spec, events, cancel, &last_err).await;
    stop(&mut child, pid).await;
    drop(stdin);
    // The pipes close with the process group; the pumps end by themselves.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while pumps.join_next().await.is_some() {}
    })
    .await;
    pumps.abort_all();
    if let Some(f) = pid_file {
        let _ = tokio::fs::remove_file(f).await;
    }
    ctx.limits.release(&scratch_name(&scratch)).await;
    let _ = tokio::fs::remove_dir_all(&scratch).await;
    match outcome {
        Outcome::Down {
            reason,
            load_failure,
            healthy_for,
        } => {
            let reason = match last_line(&last_err) {
                Some(l) if !reason.contains(&l) => format!("{reason}: {l}"),
                _ => reason,
            };
            Outcome::Down {
                reason,
                load_failure,
                healthy_for,
            }
        }
        other => other,
    }
}

/// An instance whose runtime host runs inside this server: the worker
/// processes are started here (in the function's cgroup and sandbox, with
/// its clean environment) and the gateway hands requests straight to the
/// host, one process hop less than a host process of its own. The host
/// still serves loopback HTTP on the instance's port for event deliveries
/// and `function top`.
///
/// Once ready it stays up until cancelled: a worker that dies is replaced
/// by the host's pool, as in a host process.
async fn run_in_process(
    ctx: &InstanceCtx,
    spec: &InstanceSpec,
    events: &mpsc::Sender<InstanceEvent>,
    cancel: &CancellationToken,
) -> Outcome {
    let plan = &spec.plan;
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
        Ok(l) => l,
        Err(e) => return down(format!("no free loopback port: {e}"), false, Duration::ZERO),
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return down(format!("no free loopback port: {e}"), false, Duration::ZERO),
    };
    let scratch = ctx.run_root.join(format!(
        "{}_{}_{}_{}",
        plan.namespace, plan.name, spec.set, spec.slot
    ));
    let log = ctx.logs.handle(&plan.namespace, &plan.name);
    let mut pumps = JoinSet::new();
    let outcome = async {
        let launching = launching(ctx, spec, addr.port(), &scratch)
            .await
            .map_err(|reason| (reason, false))?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let config = kubeless_runtime::Config::from_lookup(|k| launching.get(k), cpus)
            .map_err(|e| (e.to_string(), true))?;
        let output = output_pipes(&log, &mut pumps).map_err(|e| (e, false))?;
        let sink = log.clone();
        let launch = kubeless_runtime::Launch {
            wrapper: launching.wrapper,
            env: Some(launching.env),
            output: Some(output),
            pid_dir: Some(ctx.run_root.join("pids")),
            log: kubeless_runtime::Log::Sink(Arc::new(move |chunk: &[u8]| {
                let chunk = chunk.strip_suffix(b"\n").unwrap_or(chunk);
                sink.push_lines(chunk.split(|&b| b == b'\n'));
            })),
        };
        let starting = kubeless_runtime::Host::start(&config, launch, cancel.clone());
        match starting.await {
            Ok(host) => Ok(host),
            Err(kubeless_runtime::Error::Stopped) => Err((String::new(), false)),
            Err(e @ kubeless_runtime::Error::LoadHandler { .. }) => {
                let reason = e.to_string();
                log.push_lines([format!("kubeless-runtime: {reason}").as_bytes()]);
                Err((reason, true))
            }
            Err(e) => Err((kubeless_runtime::pool::error_chain(&e), false)),
        }
    }
    .await;
    let result = match outcome {
        Err(_) if cancel.is_cancelled() => Outcome::Cancelled,
        Err((reason, load_failure)) => down(reason, load_failure, Duration::ZERO),
        Ok(host) => {
            let app = Arc::clone(host.app());
            let _ = events
                .send(InstanceEvent::Ready {
                    set: spec.set,
                    slot: spec.slot,
                    endpoint: Endpoint {
                        addr,
                        socket: None,
                        host: Some(Arc::clone(&app)),
                    },
                })
                .await;
            let flushed = CancellationToken::new();
            let flush = host.flush_requests(flushed.clone());
            let serving = async {
                // Returns when `cancel` fires; its connections drain on
                // the host's tracker, which `close` waits for.
                kubeless_runtime::server::serve(
                    listener,
                    app,
                    host.tracker().clone(),
                    cancel.clone(),
                )
                .await;
                host.close(STOP_GRACE, &CancellationToken::new()).await;
                flushed.cancel();
            };
            tokio::join!(flush, serving);
            Outcome::Cancelled
        }
    };
    // Every write end of the output pipes is closed now (the workers are
    // gone and the host dropped its copies), so the pumps end by themselves.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while pumps.join_next().await.is_some() {}
    })
    .await;
    pumps.abort_all();
    ctx.limits.release(&scratch_name(&scratch)).await;
    let _ = tokio::fs::remove_dir_all(&scratch).await;
    result
}

/// Pipes for the workers' stdout and stderr, each pumped into the
/// function log by a task in `pumps`.
fn output_pipes(
    log: &FunctionLog,
    pumps: &mut JoinSet<()>,
) -> Result<kubeless_runtime::Output, String> {
    let mut pipe = || -> Result<_, String> {
        let (reader, writer) =
            std::io::pipe().map_err(|e| format!("create an output pipe: {e}"))?;
        let reader =
            tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(reader))
                .map_err(|e| format!("create an output pipe: {e}"))?;
        pumps.spawn(pump(reader, log.clone(), None));
        Ok(Arc::new(writer))
    };
    Ok(kubeless_runtime::Output {
        stdout: pipe()?,
        stderr: pipe()?,
    })
}

fn scratch_name(scratch: &Path) -> String {
    scratch
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

fn down(reason: String, load_failure: bool, healthy_for: Duration) -> Outcome {
    Outcome::Down {
        reason,
        load_failure,
        healthy_for,
    }
}

fn last_line(last: &Mutex<String>) -> Option<String> {
    let l = last
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .trim()
        .to_string();
    (!l.is_empty()).then_some(l)
}

async fn supervise(
    child: &mut Child,
    addr: SocketAddr,
    socket: &Path,
    spec: &InstanceSpec,
    events: &mpsc::Sender<InstanceEvent>,
    cancel: &CancellationToken,
    last_err: &Mutex<String>,
) -> Outcome {
    let started = Instant::now();
    let mut delay = Duration::from_millis(5);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Outcome::Cancelled,
            status = child.wait() => {
                let code = status.as_ref().ok().and_then(|s| s.code());
                let load_failure = code == Some(EXIT_LOAD_FAILURE);
                let reason = if load_failure {
                    last_line(last_err).unwrap_or_else(|| "the handler could not be loaded".into())
                } else {
                    describe_exit(&status)
                };
                return down(reason, load_failure, Duration::ZERO);
            }
            _ = tokio::time::sleep(delay) => {
                if healthy(addr).await {
                    break;
                }
                if started.elapsed() > STARTUP_TIMEOUT {
                    return down(format!("did not answer /healthz within {} s", STARTUP_TIMEOUT.as_secs()), false, Duration::ZERO);
                }
                // A host is usually up within 50-150 ms: poll every 5 ms
                // for the first seconds (a refused loopback connect costs
                // microseconds) so deploy-to-first-response is not rounded
                // up to a doubling backoff step, then back off for slow
                // loaders.
                if started.elapsed() > FAST_POLL {
                    delay = (delay * 2).min(Duration::from_millis(200));
                }
            }
        }
    }
    // Only a host started with `KUBELESS_SOCKET` has bound it (a sandboxed
    // image host, say, is not given one); without it TCP is the way in.
    let socket = tokio::fs::symlink_metadata(socket)
        .await
        .is_ok()
        .then(|| socket.to_path_buf());
    let _ = events
        .send(InstanceEvent::Ready {
            set: spec.set,
            slot: spec.slot,
            endpoint: Endpoint {
                addr,
                socket,
                host: None,
            },
        })
        .await;
    let ready_at = Instant::now();
    tokio::select! {
        _ = cancel.cancelled() => Outcome::Cancelled,
        status = child.wait() => down(describe_exit(&status), false, ready_at.elapsed()),
    }
}

fn describe_exit(status: &std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("the function process exited with code {c}"),
            (None, Some(9)) => {
                "the function process was killed (SIGKILL; out of memory?)".to_string()
            }
            (None, Some(sig)) => format!("the function process was killed by signal {sig}"),
            _ => "the function process exited".to_string(),
        },
        Err(e) => format!("waiting for the function process failed: {e}"),
    }
}

/// Server environment variables a function inherits: locale, time zone,
/// proxies and CA bundles, so outbound calls work as they do for the user.
/// Nothing else of the server's environment reaches a function.
const PASSED_ENV: &[&str] = &[
    "LANG",
    "TZ",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
];

/// Where the host serves HTTP on a Unix socket for the gateway (loopback
/// TCP costs about twice the CPU per request). It sits in the host's
/// runtime dir, whose path the host already keeps short enough for socket
/// names.
fn host_socket(scratch: &Path) -> PathBuf {
    scratch.join("run").join("http.sock")
}

/// What an instance's processes are started with: the whole environment
/// (see [`PASSED_ENV`]; nothing else of the server's reaches a function)
/// and the wrapper that puts them in the function's memory cgroup and
/// sandbox.
struct Launching {
    env: Vec<(String, String)>,
    /// `sh -c ...` joining the cgroup, then `bwrap ... --`; either may be
    /// absent.
    wrapper: Vec<std::ffi::OsString>,
}

impl Launching {
    fn get(&self, name: &str) -> Option<String> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// Environment and wrapper of an instance serving `port` from `scratch`.
async fn launching(
    ctx: &InstanceCtx,
    spec: &InstanceSpec,
    port: u16,
    scratch: &Path,
) -> Result<Launching, String> {
    let plan = &spec.plan;
    tokio::fs::create_dir_all(scratch.join("home"))
        .await
        .map_err(|e| format!("create {}: {e}", scratch.display()))?;
    let artifact = spec.artifact.to_string_lossy().to_string();
    let mut plan_env: Vec<(String, String)> = Vec::new();
    for var in &plan.env {
        let value = match var.name.as_str() {
            "FUNC_PORT" => port.to_string(),
            "KUBELESS_INSTALL_VOLUME" => artifact.clone(),
            _ => expand(&var.value, |name| match name {
                "KUBELESS_INSTALL_VOLUME" => Some(artifact.clone()),
                other => plan_env
                    .iter()
                    .rev()
                    .find(|(k, _)| k == other)
                    .map(|(_, v)| v.clone()),
            }),
        };
        plan_env.push((var.name.clone(), value));
    }
    let secret_root = ctx
        .secrets
        .materialize(&plan.namespace, &plan.secrets, &scratch.join("secrets"))
        .await?;

    let mut wrapper: Vec<std::ffi::OsString> = ctx
        .limits
        .wrapper(&scratch_name(scratch), plan.memory_limit_bytes)
        .await
        .unwrap_or_default();
    // Inside bubblewrap when the function mounts secrets, so it reads them
    // at their Kubernetes paths (`/NAME/key`).
    if let Some(root) = &secret_root {
        match sandbox_args(ctx, &plan.secrets, root) {
            Ok(args) => wrapper.extend(args),
            Err(why) => ctx.logs.push(
                &plan.namespace,
                &plan.name,
                format!(
                    "kubeless: warning: {why}; the function finds its secrets under $KUBELESS_SECRETS_ROOT (<mount path>/<key>) instead"
                )
                .as_bytes(),
            ),
        }
    }

    let mut env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| PASSED_ENV.contains(&k.as_str()) || k.starts_with("LC_"))
        .collect();
    let fixed = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("HOME", scratch.join("home").to_string_lossy().to_string()),
        ("LANG", "C.UTF-8".to_owned()),
        ("PYTHONUNBUFFERED", "1".to_owned()),
    ];
    env.extend(fixed.into_iter().map(|(k, v)| (k.to_owned(), v)));
    env.extend(plan_env);
    let run_dir = scratch.join("run").to_string_lossy().to_string();
    let host = [
        ("KUBELESS_BIND", "127.0.0.1".to_owned()),
        (
            "KUBELESS_RUNTIME_LANGUAGE",
            plan.runtime.language.as_str().to_owned(),
        ),
        ("KUBELESS_RUNTIME_DIR", run_dir),
        (
            "KUBELESS_SOCKET",
            host_socket(scratch).to_string_lossy().to_string(),
        ),
        ("KUBELESS_PYTHON", ctx.python.clone()),
        ("KUBELESS_NODE", ctx.node.clone()),
    ];
    env.extend(host.into_iter().map(|(k, v)| (k.to_owned(), v)));
    env.extend(
        ctx.interpreters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone())),
    );
    env.push(("KUBELESS_EXIT_ON_STDIN_EOF".to_owned(), "1".to_owned()));
    env.push((
        "REQ_MB_LIMIT".to_owned(),
        (plan.request_limit_bytes / (1024 * 1024))
            .max(1)
            .to_string(),
    ));
    if let Some(root) = secret_root {
        env.push((
            "KUBELESS_SECRETS_ROOT".to_owned(),
            root.to_string_lossy().to_string(),
        ));
    }
    Ok(Launching { env, wrapper })
}

/// Build the host process's command line and environment (an image
/// instance's, or a custom runtime's server in the host's place).
async fn command(
    ctx: &InstanceCtx,
    spec: &InstanceSpec,
    port: u16,
    scratch: &Path,
) -> Result<Command, String> {
    if crate::image::is_image_root(&spec.artifact) {
        return crate::image::command(ctx, spec, port, scratch).await;
    }
    let launching = launching(ctx, spec, port, scratch).await?;
    let mut argv = launching.wrapper;
    match &spec.plan.server {
        Some(server) => argv.extend(custom_server(server, &spec.artifact).await?),
        None => argv.push(ctx.runtime_bin.clone().into_os_string()),
    }
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(launching.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&spec.artifact)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    Ok(cmd)
}

/// bubblewrap arguments that show the host the machine as it is, plus each
/// secret read-only at its mount path. The host's own filesystem is left
/// untouched: top-level directories are bound one by one onto a fresh root,
/// so a new top-level mount point needs no directory on the real disk.
fn sandbox_args(
    ctx: &InstanceCtx,
    mounts: &[kubeless_plan::SecretMount],
    root: &Path,
) -> Result<Vec<std::ffi::OsString>, String> {
    let bwrap = ctx.bwrap.as_ref().ok_or(
        "bubblewrap (bwrap) is not installed, so secrets cannot be mounted at their paths",
    )?;
    let mut tops = Vec::new();
    for m in mounts {
        let rel: Vec<_> = Path::new(&m.mount_path)
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(n) => Some(n.to_os_string()),
                _ => None,
            })
            .collect();
        if rel.len() != 1 || Path::new("/").join(&rel[0]).exists() {
            return Err(format!(
                "secret mount path {} is not a new top-level directory",
                m.mount_path
            ));
        }
        tops.push(rel[0].clone());
    }
    let mut a: Vec<std::ffi::OsString> = vec![bwrap.clone().into_os_string()];
    let mut push = |xs: &[&std::ffi::OsStr]| a.extend(xs.iter().map(|x| x.to_os_string()));
    let entries = std::fs::read_dir("/").map_err(|e| format!("read /: {e}"))?;
    for e in entries.flatten() {
        let name = e.file_name();
        if ["proc", "dev", "sys", "tmp"].iter().any(|n| name == *n) {
            continue;
        }
        let path = e.path();
        match std::fs::read_link(&path) {
            Ok(target) => push(&["--symlink".as_ref(), target.as_os_str(), path.as_os_str()]),
            Err(_) => push(&["--dev-bind".as_ref(), path.as_os_str(), path.as_os_str()]),
        }
    }
    for (d, how) in [
        ("/dev", "--dev-bind"),
        ("/sys", "--bind"),
        ("/tmp", "--bind"),
    ] {
        push(&[how.as_ref(), d.as_ref(), d.as_ref()]);
    }
    push(&[
        "--proc".as_ref(),
        "/proc".as_ref(),
        "--die-with-parent".as_ref(),
    ]);
    for top in &tops {
        let src = root.join(top);
        let dst = Path::new("/").join(top);
        push(&["--ro-bind".as_ref(), src.as_os_str(), dst.as_os_str()]);
    }
    push(&["--".as_ref()]);
    Ok(a)
}

/// Longest piece of a line read at once; an endless line is cut into
/// pieces of this size instead of growing without bound.
const MAX_PIECE: usize = 64 * 1024;

/// Copy lines of one stream into the function log. Every read's complete
/// lines go in together (one lock), so a busy function costs a wake-up per
/// batch, not per line.
async fn pump(
    stream: impl tokio::io::AsyncRead + Unpin,
    log: FunctionLog,
    last: Option<Arc<Mutex<String>>>,
) {
    let mut reader = BufReader::with_capacity(MAX_PIECE, stream);
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) if !buf.is_empty() => buf,
            _ => {
                if !partial.is_empty() {
                    record(&log, last.as_deref(), [partial.as_slice()]);
                }
                return;
            }
        };
        let taken = buf.len();
        match buf.iter().rposition(|&b| b == b'\n') {
            None => {
                partial.extend_from_slice(buf);
                if partial.len() >= MAX_PIECE {
                    record(&log, last.as_deref(), [partial.as_slice()]);
                    partial.clear();
                }
            }
            Some(end) => {
                let (complete, rest) = (&buf[..end], &buf[end + 1..]);
                let mut lines = complete.split(|&b| b == b'\n');
                let first = lines.next().unwrap_or_default();
                if partial.is_empty() {
                    record(&log, last.as_deref(), std::iter::once(first).chain(lines));
                } else {
                    partial.extend_from_slice(first);
                    record(
                        &log,
                        last.as_deref(),
                        std::iter::once(partial.as_slice()).chain(lines),
                    );
                    partial.clear();
                }
                partial.extend_from_slice(rest);
            }
        }
        reader.consume(taken);
    }
}

/// Appends `lines` (without newlines) to the log and remembers the last
/// non-blank one in `last`.
fn record<'a>(
    log: &FunctionLog,
    last: Option<&Mutex<String>>,
    lines: impl IntoIterator<Item = &'a [u8]>,
) {
    let mut latest: Option<&[u8]> = None;
    log.push_lines(lines.into_iter().map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.iter().all(u8::is_ascii_whitespace) {
            latest = Some(line);
        }
        line
    }));
    if let (Some(last), Some(line)) = (last, latest) {
        *last.lock().unwrap_or_else(|p| p.into_inner()) = String::from_utf8_lossy(line).to_string();
    }
}

/// SIGTERM the process group, then SIGKILL it after [`STOP_GRACE`].
async fn stop(child: &mut Child, pid: Option<u32>) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    let pg = Pid::from_raw(pid);
    if matches!(child.try_wait(), Ok(None)) {
        let _ = killpg(pg, Signal::SIGTERM);
        if tokio::time::timeout(STOP_GRACE, child.wait())
            .await
            .is_err()
        {
            let _ = killpg(pg, Signal::SIGKILL);
            let _ = child.wait().await;
        }
    }
    // Workers the host started live in the same group; make sure none stays.
    let _ = killpg(pg, Signal::SIGKILL);
}

/// Kill instances a previous server left running (after `kill -9`).
pub async fn reap_leftovers(run_root: &Path) {
    let pids = run_root.join("pids");
    let Ok(mut dir) = tokio::fs::read_dir(&pids).await else {
        return;
    };
    while let Ok(Some(entry)) = dir.next_entry().await {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Ok(pid) = name.parse::<i32>() {
            let cmdline = tokio::fs::read(format!("/proc/{pid}/cmdline"))
                .await
                .unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            // A custom runtime's server, a Go worker or a Java worker's
            // classpath names the artifact directory; a script worker of a
            // host run in process names its script in the instance's
            // scratch directory under `run_root`.
            let artifacts = run_root.with_file_name("artifacts");
            if cmdline.contains("kubeless-runtime")
                || cmdline.contains(artifacts.to_string_lossy().as_ref())
                || cmdline.contains(run_root.to_string_lossy().as_ref())
            {
                tracing::info!(pid, "stopping an instance left by a previous server");
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = tokio::fs::remove_file(entry.path()).await;
    }
}

async fn free_port() -> std::io::Result<u16> {
    let l = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    Ok(l.local_addr()?.port())
}

/// One cheap `GET /healthz` over a fresh connection.
async fn healthy(addr: SocketAddr) -> bool {
    let check = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = [0u8; 16];
        let mut n = 0;
        while n < 12 {
            let m = s.read(&mut buf[n..]).await.ok()?;
            if m == 0 {
                break;
            }
            n += m;
        }
        Some(buf[..n].starts_with(b"HTTP/1.1 200") || buf[..n].starts_with(b"HTTP/1.0 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), check).await,
        Ok(Some(true))
    )
}

/// The program line of a custom runtime's server: the function's
/// executable in the artifact directory, then the plan's arguments.
async fn custom_server(
    server: &kubeless_plan::CommandLine,
    artifact: &Path,
) -> Result<Vec<std::ffi::OsString>, String> {
    let dir = artifact.to_string_lossy().to_string();
    let lookup = |name: &str| (name == "KUBELESS_INSTALL_VOLUME").then(|| dir.clone());
    let program = PathBuf::from(expand(&server.program, lookup));
    let shown = program
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let meta = tokio::fs::metadata(&program)
        .await
        .ok()
        .filter(|m| m.is_file())
        .ok_or_else(|| {
            format!(
                "custom runtime: the code has no file {shown:?} to run; the handler's module names the server executable"
            )
        })?;
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        // Code deployed as a single file is written without execute bits;
        // the `custom` runtime says it is the program to run.
        if mode & 0o111 == 0 {
            tokio::fs::set_permissions(&program, std::fs::Permissions::from_mode(mode | 0o755))
                .await
                .map_err(|e| format!("custom runtime: make {shown} executable: {e}"))?;
        }
    }
    let mut argv = vec![program.into_os_string()];
    argv.extend(server.args.iter().map(|a| expand(a, lookup).into()));
    Ok(argv)
}
