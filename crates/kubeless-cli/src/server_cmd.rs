//! `kubeless server`: runs the embedded platform in this process.
//!
//! Configuration precedence is flag > environment > default, and everything
//! is validated (by the engine) before any file is written or port bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kubeless_engine::ServerOptions;
use kubeless_engine::server::Toolchains;
use tokio_util::sync::CancellationToken;

/// Flags of `kubeless server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address of the local API (token-protected)
    #[arg(long, env = "KUBELESS_API_ADDR", default_value = "127.0.0.1:8079")]
    api_addr: SocketAddr,
    /// Address of the function gateway
    #[arg(long, env = "KUBELESS_GATEWAY_ADDR", default_value = "127.0.0.1:8080")]
    gateway_addr: SocketAddr,
    /// Directory for the store, artifacts and client config [default: ~/.kubeless]
    #[arg(long, env = "KUBELESS_HOME")]
    home: Option<PathBuf>,
    /// Allow listening on addresses other than loopback
    #[arg(long)]
    allow_remote: bool,
    /// The runtime host binary [default: kubeless-runtime next to this program]
    #[arg(long, env = "KUBELESS_RUNTIME_BIN")]
    runtime_bin: Option<PathBuf>,
    /// Python interpreter for python runtimes [default: python3 on PATH]
    #[arg(long, env = "KUBELESS_PYTHON")]
    python: Option<String>,
    /// Node.js for nodejs runtimes [default: node on PATH]
    #[arg(long, env = "KUBELESS_NODE")]
    node: Option<String>,
    /// npm for nodejs dependencies [default: npm on PATH]
    #[arg(long, env = "KUBELESS_NPM")]
    npm: Option<String>,
    /// Ruby for ruby runtimes [default: ruby on PATH]
    #[arg(long, env = "KUBELESS_RUBY")]
    ruby: Option<String>,
    /// PHP CLI for php runtimes [default: php on PATH]
    #[arg(long, env = "KUBELESS_PHP")]
    php: Option<String>,
    /// Go toolchain for go runtimes [default: go on PATH]
    #[arg(long, env = "KUBELESS_GO")]
    go: Option<String>,
    /// Java launcher for java runtimes; javac and mvn are found on PATH [default: java on PATH]
    #[arg(long, env = "KUBELESS_JAVA")]
    java: Option<String>,
    /// Bytes of log kept per function
    #[arg(long, default_value_t = 1024 * 1024)]
    log_bytes: usize,
    /// Seconds open connections get to finish on shutdown
    #[arg(long, default_value_t = 10)]
    shutdown_grace: u64,
    /// HTTPS address for HTTP triggers with --tls-secret [default: no HTTPS]
    #[arg(long, env = "KUBELESS_GATEWAY_TLS_ADDR")]
    gateway_tls_addr: Option<SocketAddr>,
    /// NATS server for NATS triggers
    #[arg(
        long,
        env = "KUBELESS_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: String,
    /// Kafka brokers (host:port,...) for Kafka triggers and `kubeless topic`
    #[arg(long, env = "KUBELESS_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    kafka_brokers: String,
    #[command(flatten)]
    delivery: DeliveryArgs,
}

/// How Kafka and NATS trigger events are delivered; the same flags for
/// `kubeless server` and `kubeless controller-manager`.
#[derive(Debug, Args)]
pub struct DeliveryArgs {
    /// Use core NATS subscriptions (at-most-once) instead of JetStream durable consumers
    #[arg(long, env = "KUBELESS_NATS_CORE")]
    nats_core: bool,
    /// Retries of an event the function answered with an error, before it goes to the dead-letter topic/subject
    #[arg(long, env = "KUBELESS_TRIGGER_RETRIES", default_value_t = 5)]
    trigger_retries: u32,
    /// First wait before a retry, in milliseconds (doubles on each retry)
    #[arg(long, env = "KUBELESS_TRIGGER_BACKOFF_MS", default_value_t = 200)]
    trigger_backoff_ms: u64,
    /// Longest wait between retries, in milliseconds
    #[arg(
        long,
        env = "KUBELESS_TRIGGER_MAX_BACKOFF_MS",
        default_value_t = 30_000
    )]
    trigger_max_backoff_ms: u64,
}

impl DeliveryArgs {
    /// The broker options with these delivery settings.
    pub fn topic_options(
        &self,
        nats_url: String,
        kafka_brokers: String,
    ) -> kubeless_events::topic::TopicOptions {
        kubeless_events::topic::TopicOptions {
            nats_url,
            nats_jetstream: !self.nats_core,
            kafka_brokers,
            retry: kubeless_events::RetryPolicy {
                max_retries: self.trigger_retries,
                initial_backoff: Duration::from_millis(self.trigger_backoff_ms),
                max_backoff: Duration::from_millis(self.trigger_max_backoff_ms),
            },
        }
    }
}

fn which(name: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().to_string())
}

fn default_home() -> anyhow::Result<PathBuf> {
    let home =
        std::env::var_os("HOME").context("HOME is not set; pass --home or set KUBELESS_HOME")?;
    Ok(Path::new(&home).join(".kubeless"))
}

fn default_runtime_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("kubeless-runtime")))
        .unwrap_or_else(|| PathBuf::from("kubeless-runtime"))
}

/// Run the embedded server until SIGTERM/SIGINT; a second signal forces exit.
pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KUBELESS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let opts = ServerOptions {
        home: match args.home {
            Some(h) => h,
            None => default_home()?,
        },
        api_addr: args.api_addr,
        gateway_addr: args.gateway_addr,
        allow_remote: args.allow_remote,
        runtime_bin: args.runtime_bin.unwrap_or_else(default_runtime_bin),
        python: args.python.or_else(|| which("python3")),
        node: args.node.or_else(|| which("node")),
        npm: args.npm.or_else(|| which("npm")),
        toolchains: Toolchains {
            ruby: args.ruby.or_else(|| which("ruby")),
            bundle: which("bundle"),
            php: args.php.or_else(|| which("php")),
            composer: which("composer"),
            go: args.go.or_else(|| which("go")),
            java: args.java.or_else(|| which("java")),
            javac: which("javac"),
            mvn: which("mvn"),
        },
        bwrap: which("bwrap").map(PathBuf::from),
        log_bytes: args.log_bytes,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        gateway_tls_addr: args.gateway_tls_addr,
        triggers: args
            .delivery
            .topic_options(args.nats_url, args.kafka_brokers),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Half the CPUs, but at least two where there are two, unless
    // TOKIO_WORKER_THREADS says otherwise: the server only moves bytes, and
    // the function workers need the other CPUs. With a single runtime
    // thread every request stalls while the scheduler runs something else
    // on it; on 2 CPUs two threads gave the same throughput through the
    // gateway and a shorter p99 at concurrency 64 (bench/README.md).
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        builder.worker_threads((cpus / 2).max(2).min(cpus));
    }
    let rt = builder
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let signals = watch_signals(shutdown.clone());
        let result = tokio::select! {
            r = kubeless_engine::serve(opts, shutdown.clone()) => r,
            // Keep watching for the second signal while draining.
            _ = signals => Ok(()),
        };
        result.map_err(anyhow::Error::from)
    })
}

async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for signals; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!("shutting down (send the signal again to force)");
    shutdown.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::warn!("second signal: exiting now");
    std::process::exit(130);
}
