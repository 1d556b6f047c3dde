//! The Kubeless runtime host: the process that runs inside every function
//! instance (a pod's main process in Kubernetes, a local process under the
//! embedded server).
//!
//! The host owns everything that is the same in every language: the HTTP
//! contract on `FUNC_PORT`, `/healthz`, Prometheus `/metrics`, timeouts,
//! body limits, CORS and the request log. The user's code runs in small,
//! persistent language workers (`runtimes/<language>/`) that import the
//! handler once and answer framed requests over a Unix socket.
//!
//! Modules:
//! - [`config`]: the validated configuration `main` builds from the env;
//! - [`compile`]: the build step of the compiled languages (Go, Java),
//!   run once per artifact as `kubeless-runtime compile`;
//! - [`frame`]: the host-worker wire format (pure encode/decode);
//! - [`worker`]: one worker process and its socket;
//! - [`pool`]: how many workers, which one serves a request, replacement;
//! - [`server`]: HTTP routing and translation to and from frames;
//! - [`log`]: where the request log and diagnostics go;
//! - [`metrics`] and [`access_log`]: what the host reports;
//! - [`error`]: the crate's error type.
//!
//! [`Host`] is a started pool with its request handling state; [`run`]
//! binds one to `FUNC_PORT` as a process of its own, and the embedded
//! server runs one in process per function instance.
//! docs/runtime-host.md is the contract.

pub mod access_log;
pub mod compile;
pub mod config;
pub mod error;
pub mod frame;
pub mod log;
pub mod metrics;
pub mod pool;
pub mod server;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Config, Language};
pub use error::Error;
pub use log::Log;
pub use server::App;
pub use worker::{Launch, Output};

use std::future::Future;

use pool::Pool;
use worker::WorkerSpec;

/// How long killed workers and the requests they were serving get to wind
/// down after the grace period.
const FINAL_WAIT: Duration = Duration::from_secs(2);

/// A started host: its worker pool (the first worker has loaded the
/// handler) and the request handling state, not yet bound to any port.
///
/// [`run`] binds it to `FUNC_PORT` as a process of its own. The embedded
/// server holds one per function instance in its own process and calls
/// [`server::handle`] from its gateway, which saves a process hop per
/// request. Dropping a `Host` kills its workers; [`Host::close`] stops
/// them gracefully.
pub struct Host {
    app: Arc<App>,
    pool: Arc<Pool>,
    tracker: TaskTracker,
    runtime_dir: RuntimeDir,
}

impl Host {
    /// Writes the worker script, starts the first worker and waits until it
    /// has loaded the handler ([`Error::LoadHandler`] if it cannot).
    /// `shutdown` stops replacement workers from being started.
    pub async fn start(
        config: &Config,
        launch: Launch,
        shutdown: CancellationToken,
    ) -> Result<Host, Error> {
        let runtime_dir = prepare_runtime_dir(config.runtime_dir.clone()).await?;
        let script = match worker::script(config.language) {
            Some((script_name, script_source)) => {
                let script = runtime_dir.path().join(script_name);
                tokio::fs::write(&script, script_source)
                    .await
                    .map_err(|source| Error::PrepareRuntimeDir {
                        path: script.clone(),
                        source,
                    })?;
                Some(script)
            }
            None => None,
        };

        // Workers chdir into the code dir, so it must be absolute and exist.
        let code_dir = tokio::fs::canonicalize(&config.code_dir)
            .await
            .map_err(|e| Error::LoadHandler {
                module: config.module.clone(),
                function: config.handler.clone(),
                reason: format!("code directory {}: {e}", config.code_dir.display()),
            })?;

        // A compiled language without its build output would fail every
        // start the same way; say what is missing instead of "No such file".
        if let Some(missing) = compile::missing_output(config.language, &code_dir) {
            return Err(Error::LoadHandler {
                module: config.module.clone(),
                function: config.handler.clone(),
                reason: format!(
                    "{} not found: the function was not compiled (run `kubeless-runtime compile` in {})",
                    missing.display(),
                    code_dir.display()
                ),
            });
        }

        let log = launch.log.clone();
        let mut spec = WorkerSpec::new(config, script, runtime_dir.path().to_owned(), code_dir);
        spec.launch = launch;
        let tracker = TaskTracker::new();
        let pool = tokio::select! {
            pool = Pool::start(spec, config.max_workers, tracker.clone(), shutdown.clone()) => pool?,
            _ = shutdown.cancelled() => return Err(Error::Stopped),
        };
        let app = Arc::new(App {
            pool: Arc::clone(&pool),
            metrics: metrics::Metrics::default(),
            body_limit: config.body_limit,
            timeout: config.timeout,
            tracker: tracker.clone(),
            access: Arc::new(access_log::Batch::default()),
            log,
        });
        Ok(Host {
            app,
            pool,
            tracker,
            runtime_dir,
        })
    }

    /// What [`server::handle`] and [`server::serve`] need.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Where connection and invocation tasks run; [`Host::close`] waits
    /// for them.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Writes the request log every few milliseconds until `stop`, then
    /// what is left. Run it beside the host (it is not spawned, so nothing
    /// outlives its owner).
    pub fn flush_requests(&self, stop: CancellationToken) -> impl Future<Output = ()> + use<> {
        access_log::flush_loop(Arc::clone(&self.app.access), self.app.log.clone(), stop)
    }

    /// Drains: in-flight requests get `grace` (cut short by `force`), then
    /// every worker is stopped. Whoever serves connections must have
    /// stopped accepting first.
    pub async fn close(self, grace: Duration, force: &CancellationToken) {
        self.tracker.close();
        tokio::select! {
            _ = self.tracker.wait() => {}
            _ = tokio::time::sleep(grace) => {
                self.app.log.note(&format!("requests still running after {} s; stopping workers", grace.as_secs_f64()));
            }
            _ = force.cancelled() => {}
        }
        self.pool.close(FINAL_WAIT).await;
        let _ = tokio::time::timeout(FINAL_WAIT, self.tracker.wait()).await;
        drop(self.runtime_dir);
    }
}

/// Runs the host until `shutdown` fires, then drains: in-flight requests
/// get [`Config::shutdown_grace`] (cut short by `force`), then every worker
/// is stopped. Returns [`Error::LoadHandler`] when the first worker cannot
/// load the handler; the port is only bound after that worker is ready.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    force: CancellationToken,
) -> Result<(), Error> {
    let host = match Host::start(&config, Launch::default(), shutdown.clone()).await {
        Ok(host) => host,
        Err(Error::Stopped) => return Ok(()),
        Err(e) => return Err(e),
    };

    let addr = std::net::SocketAddr::new(config.bind, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    let unix = match &config.socket {
        Some(path) => Some(bind_unix(path)?),
        None => None,
    };
    host.app().log.note(&format!(
        "serving {}.{} ({}) on http://{local}{} with up to {} workers",
        config.module,
        config.handler,
        config.language.name(),
        config
            .socket
            .as_ref()
            .map(|p| format!(" and unix:{}", p.display()))
            .unwrap_or_default(),
        config.max_workers
    ));

    let log_stop = CancellationToken::new();
    let flush = host.flush_requests(log_stop.clone());
    let app = Arc::clone(host.app());
    let tracker = host.tracker().clone();
    let serving = async {
        let tcp = server::serve(
            listener,
            Arc::clone(&app),
            tracker.clone(),
            shutdown.clone(),
        );
        let unix_serving = async {
            if let Some(unix) = unix {
                server::serve_unix(unix, Arc::clone(&app), tracker.clone(), shutdown.clone()).await;
            }
        };
        tokio::join!(tcp, unix_serving);
        if let Some(path) = &config.socket {
            let _ = std::fs::remove_file(path);
        }
        host.close(config.shutdown_grace(), &force).await;
        // The request log goes last, so it has the lines of drained requests.
        log_stop.cancel();
    };
    // The flusher runs beside the server in this task rather than as a
    // spawned one, so nothing outlives `run`.
    tokio::join!(flush, serving);
    Ok(())
}

/// Binds the Unix socket of `KUBELESS_SOCKET`, replacing a file a killed
/// host left behind (bind fails on an existing path).
fn bind_unix(path: &std::path::Path) -> Result<UnixListener, Error> {
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent()
        && let Err(source) = std::fs::create_dir_all(dir)
    {
        return Err(Error::BindSocket {
            path: path.to_owned(),
            source,
        });
    }
    UnixListener::bind(path).map_err(|source| Error::BindSocket {
        path: path.to_owned(),
        source,
    })
}

/// The directory for worker scripts and sockets; a temporary one is
/// removed when dropped.
enum RuntimeDir {
    Given(PathBuf),
    Temporary(tempfile::TempDir),
}

impl RuntimeDir {
    fn path(&self) -> &std::path::Path {
        match self {
            RuntimeDir::Given(p) => p,
            RuntimeDir::Temporary(t) => t.path(),
        }
    }
}

async fn prepare_runtime_dir(given: Option<PathBuf>) -> Result<RuntimeDir, Error> {
    let created = tokio::task::spawn_blocking(move || match given {
        Some(path) => match std::fs::create_dir_all(&path) {
            Ok(()) => Ok(RuntimeDir::Given(path)),
            Err(source) => Err(Error::PrepareRuntimeDir { path, source }),
        },
        None => tempfile::Builder::new()
            .prefix("kubeless-runtime-")
            .tempdir()
            .map(RuntimeDir::Temporary)
            .map_err(|source| Error::PrepareRuntimeDir {
                path: std::env::temp_dir(),
                source,
            }),
    })
    .await;
    match created {
        Ok(result) => result,
        Err(join) => Err(Error::PrepareRuntimeDir {
            path: PathBuf::new(),
            source: std::io::Error::other(join),
        }),
    }
}
