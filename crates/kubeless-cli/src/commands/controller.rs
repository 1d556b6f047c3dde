//! `kubeless controller-manager` (Kubernetes mode) and `kubeless
//! cron-invoke`, the command CronJobs run to call a function.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use kubeless_controller::events;
use kubeless_controller::lease::Timing;
use kubeless_controller::settings::{CONFIG_MAP, INSTALL_NAMESPACE};
use tokio_util::sync::CancellationToken;

use crate::server_cmd::DeliveryArgs;

/// Flags of `kubeless controller-manager`.
#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Namespace of kubeless-config and the leader-election Lease
    #[arg(long, env = "KUBELESS_NAMESPACE", default_value = INSTALL_NAMESPACE)]
    namespace: String,
    /// Name of the configuration ConfigMap
    #[arg(long, env = "KUBELESS_CONFIG", default_value = CONFIG_MAP)]
    config: String,
    /// Run without leader election (only for a single replica)
    #[arg(long)]
    no_leader_elect: bool,
    /// Identity in the Lease (defaults to the pod name or host name)
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds to finish in-flight reconciles on SIGTERM
    #[arg(long, default_value_t = 10)]
    shutdown_grace: u64,
    /// Kafka brokers (host:port,...) for Kafka triggers
    #[arg(long, env = "KAFKA_BROKERS", default_value = events::DEFAULT_KAFKA_BROKERS)]
    kafka_brokers: String,
    /// NATS server for NATS triggers
    #[arg(long, env = "NATS_URL", default_value = events::DEFAULT_NATS_URL)]
    nats_url: String,
    /// Where Kafka/NATS events are sent: {name}, {namespace} and {port} (the function Service's first port) are filled in
    #[arg(
        long,
        env = "KUBELESS_FUNCTION_URL_TEMPLATE",
        default_value = events::DEFAULT_URL_TEMPLATE
    )]
    function_url_template: String,
    #[command(flatten)]
    delivery: DeliveryArgs,
}

/// Run the controllers until SIGTERM/SIGINT (a second signal exits at once).
pub fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let identity = args
        .identity
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("kubeless-{}", std::process::id()));
    let events = events::EventOptions {
        topics: args
            .delivery
            .topic_options(args.nats_url, args.kafka_brokers),
        function_url: events::UrlTemplate::parse(&args.function_url_template)
            .map_err(|e| anyhow::anyhow!(kubeless_controller::error_chain(&e)))?,
    };
    events
        .validate()
        .map_err(|e| anyhow::anyhow!(kubeless_controller::error_chain(&e)))?;
    let opts = kubeless_controller::Options {
        namespace: args.namespace,
        config_map: args.config,
        leader_election: (!args.no_leader_elect).then(Timing::default),
        identity,
        events,
    };
    let grace = Duration::from_secs(args.shutdown_grace);
    let rt = tokio::runtime::Runtime::new().context("start the async runtime")?;
    rt.block_on(async move {
        let client = kube::Client::try_default()
            .await
            .context("connect to the Kubernetes API server (kubeconfig or in-cluster)")?;
        let shutdown = CancellationToken::new();
        let run = kubeless_controller::run(client, opts, shutdown.clone());
        tokio::pin!(run);
        tokio::select! {
            r = &mut run => return r.map_err(|e| anyhow::anyhow!(kubeless_controller::error_chain(&e))),
            _ = signal() => {}
        }
        tracing::info!("stopping (a second signal exits at once)");
        shutdown.cancel();
        tokio::select! {
            r = &mut run => r.map_err(|e| anyhow::anyhow!(kubeless_controller::error_chain(&e))),
            _ = signal() => Ok(()),
            _ = tokio::time::sleep(grace) => {
                tracing::warn!("shutdown grace period over");
                Ok(())
            }
        }
    })
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Flags of `kubeless cron-invoke`.
#[derive(Debug, Args)]
pub struct CronInvokeArgs {
    /// The function's Service URL
    #[arg(long)]
    url: String,
    /// JSON payload to POST (none: GET)
    #[arg(long)]
    payload: Option<String>,
    /// Seconds to wait for the answer
    #[arg(long, default_value_t = 180)]
    timeout: u64,
}

/// Call a function the way Kubeless's cron job did (spec 4.2 headers), and
/// fail unless it answers 2xx so the Job records the failure.
pub fn cron_invoke(args: CronInvokeArgs) -> anyhow::Result<()> {
    let now = time::OffsetDateTime::now_utc();
    let fmt =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]+00:00");
    let event_time = now.format(fmt).context("format the event time")?;
    let event_id =
        std::env::var("POD_UID").unwrap_or_else(|_| format!("{}", now.unix_timestamp_nanos()));
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .build()
        .context("build the HTTP client")?;
    let req = match &args.payload {
        Some(p) => client.post(&args.url).body(p.clone()),
        None => client.get(&args.url),
    };
    let resp = req
        .header("event-id", event_id)
        .header("event-time", event_time)
        .header("event-namespace", "cronjobtrigger.kubeless.io")
        .header("event-type", "application/json")
        .header("content-type", "application/json")
        .send()
        .with_context(|| format!("call {}", args.url))?;
    let status = resp.status();
    let body = resp.text().unwrap_or_default();
    println!("{body}");
    if !status.is_success() {
        anyhow::bail!("the function answered {status}");
    }
    Ok(())
}
