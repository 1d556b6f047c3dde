//! Kubernetes mode: `kubeless controller-manager`.
//!
//! Reconciles the `kubeless.io/v1beta1` objects into Kubernetes objects
//! with kube-rs, in one process with leader election:
//!
//! - [`resources`]: the Kubeless kinds as kube-rs resources (the spec and
//!   status types are `kubeless-api`'s).
//! - [`settings`]: the `kubeless-config` ConfigMap, parsed and validated;
//!   watched, so a change applies without a restart.
//! - [`render`]: pure rendering of a function's plan (`kubeless-plan`) into
//!   ConfigMap/Service/Deployment/HPA, of HTTP triggers into Ingresses and
//!   of cron triggers into CronJobs. Golden-tested.
//! - [`apply`]: writes rendered objects (server-side apply), never over an
//!   object Kubeless did not create.
//! - [`function`], [`triggers`]: the reconcilers (idempotent, return an
//!   `Action`; retry policy is [`error_policy`], exponential per object).
//! - [`pods`]: pure reading of a function's pods and their Warning events
//!   into the reason its status shows when they do not run.
//! - [`lease`]: leader election on a `coordination.k8s.io/v1` Lease.
//! - [`events`]: the Kafka and NATS trigger consumers (`kubeless-events`,
//!   the code embedded mode runs), in the leader only, calling functions at
//!   their Services.
//!
//! [`run`] ties them together under one cancellation token: shutdown stops
//! the controllers (in-flight reconciles finish) and the trigger consumers
//! (bounded by [`STOP_GRACE`]), releases the lease and returns.

pub mod apply;
pub mod build;
pub mod events;
pub mod function;
pub mod install;
pub mod lease;
pub mod pods;
pub mod render;
pub mod resources;
pub mod settings;
mod status;
pub mod triggers;

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::resources::{CronJobTrigger, Function, HttpTrigger};
pub use crate::settings::Settings;

/// What can go wrong while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("{action} {name}")]
    Kube {
        action: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("finalizer")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("decode object: {0}")]
    Decode(String),
    #[error("kubeless-config is invalid")]
    Settings(#[source] settings::SettingsError),
    #[error("invalid {option}: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },
}

impl Error {
    /// `map_err` helper naming the action and object.
    pub fn kube(action: &'static str, name: &str) -> impl FnOnce(kube::Error) -> Error {
        let name = name.to_string();
        move |source| Error::Kube {
            action,
            name,
            source,
        }
    }
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    settings: watch::Receiver<Arc<Settings>>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// The current settings (the last valid `kubeless-config`).
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.borrow().clone()
    }

    fn key<K: Resource<DynamicType = ()>>(o: &K) -> String {
        format!(
            "{}/{}/{}",
            K::kind(&()),
            o.namespace().unwrap_or_default(),
            o.name_any()
        )
    }
}

/// Retry policy: exponential per object (1 s, 2 s, 4 s ... 5 min), reset by
/// a successful reconcile.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    o: Arc<K>,
    e: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = Context::key(o.as_ref());
    let n = {
        let mut f = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay =
        Duration::from_secs(1u64 << n.min(9).saturating_sub(1)).min(Duration::from_secs(300));
    tracing::warn!(object = %key, error = %error_chain(e), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

async fn tracked<K, F, Fut>(o: Arc<K>, ctx: Arc<Context>, f: F) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action, Error>>,
{
    let key = Context::key(o.as_ref());
    let r = f(o, ctx.clone()).await;
    if r.is_ok() {
        ctx.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }
    r
}

/// How controller-manager runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where `kubeless-config` and the lease live.
    pub namespace: String,
    pub config_map: String,
    /// `None` = no leader election (a single replica).
    pub leader_election: Option<lease::Timing>,
    pub identity: String,
    /// Kafka/NATS brokers and where functions are called.
    pub events: events::EventOptions,
}

/// Name of the leader-election Lease.
pub const LEASE_NAME: &str = "kubeless-controller-manager";
/// How long stopping waits for the controllers and trigger consumers.
pub const STOP_GRACE: Duration = Duration::from_secs(8);

fn parse_config(cm: &ConfigMap) -> Result<Settings, Error> {
    Settings::from_config_map(&cm.data.clone().unwrap_or_default()).map_err(Error::Settings)
}

/// Read `kubeless-config` once: the controller refuses to start on an
/// invalid one; a missing one means the defaults.
pub async fn load_settings(client: &Client, opts: &Options) -> Result<Settings, Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &opts.namespace);
    match api
        .get_opt(&opts.config_map)
        .await
        .map_err(Error::kube("read", &opts.config_map))?
    {
        Some(cm) => parse_config(&cm),
        None => {
            tracing::warn!(configmap = %opts.config_map, namespace = %opts.namespace, "configmap not found; using the defaults");
            Ok(Settings::default())
        }
    }
}

/// Longest wait between two attempts to read `kubeless-config` at start.
pub const START_RETRY_MAX: Duration = Duration::from_secs(30);

/// Read `kubeless-config` at start, retrying while the API server cannot
/// answer (down, not reachable yet, RBAC not applied yet): exponential
/// backoff from 1 s up to [`START_RETRY_MAX`], one log line per attempt.
/// An invalid ConfigMap is not retried: it stops the controller with the
/// key named. `None` when `shutdown` came first.
async fn load_settings_retrying(
    client: &Client,
    opts: &Options,
    shutdown: &CancellationToken,
) -> Result<Option<Settings>, Error> {
    let mut delay = Duration::from_secs(1);
    loop {
        match load_settings(client, opts).await {
            Ok(s) => return Ok(Some(s)),
            Err(e @ Error::Settings(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(
                    configmap = %format!("{}/{}", opts.namespace, opts.config_map),
                    error = %error_chain(&e),
                    retry_in = ?delay,
                    "cannot read kubeless-config from the API server; retrying"
                );
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(START_RETRY_MAX);
    }
}

/// Run controller-manager until `shutdown` is cancelled (returns `Ok`) or
/// leadership is lost (returns `Err`-free but early: the caller exits).
/// An API server that cannot be reached at start is waited for (see
/// [`load_settings_retrying`]); an invalid `kubeless-config` is an error.
pub async fn run(client: Client, opts: Options, shutdown: CancellationToken) -> Result<(), Error> {
    opts.events.validate()?;
    let Some(initial) = load_settings_retrying(&client, &opts, &shutdown).await? else {
        return Ok(());
    };
    let elector = opts.leader_election.map(|t| {
        lease::Elector::new(
            client.clone(),
            &opts.namespace,
            LEASE_NAME,
            &opts.identity,
            t,
        )
    });
    if let Some(e) = &elector
        && !e.acquire(&shutdown).await
    {
        return Ok(());
    }
    let (tx, rx) = watch::channel(Arc::new(initial));
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings: rx.clone(),
        failures: Mutex::new(HashMap::new()),
    });
    let work = CancellationToken::new();
    let hold = async {
        match &elector {
            Some(e) => e.hold(&shutdown).await,
            None => shutdown.cancelled().await,
        }
    };
    let running = controllers(ctx.clone(), rx, work.clone(), opts.events.clone());
    tokio::pin!(running);
    let finished = tokio::select! {
        _ = &mut running => true,
        _ = watch_config(client.clone(), &opts, tx) => false,
        _ = hold => false,
    };
    work.cancel();
    // Let in-flight reconciles finish and the consumers commit what they
    // handled before the lease goes.
    if !finished && tokio::time::timeout(STOP_GRACE, running).await.is_err() {
        tracing::warn!("controllers did not stop within {STOP_GRACE:?}");
    }
    if let Some(e) = &elector {
        e.release().await;
    }
    tracing::info!("controller-manager stopped");
    Ok(())
}

/// Watch `kubeless-config`; valid changes are published, invalid ones are
/// logged and ignored (the last good settings stay).
async fn watch_config(client: Client, opts: &Options, tx: watch::Sender<Arc<Settings>>) {
    let api: Api<ConfigMap> = Api::namespaced(client, &opts.namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={}", opts.config_map));
    let mut stream = std::pin::pin!(watcher(api, cfg).default_backoff().applied_objects());
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(cm) => match parse_config(&cm) {
                Ok(s) => {
                    if **tx.borrow() != s {
                        tracing::info!("kubeless-config changed; reconciling everything");
                        tx.send_replace(Arc::new(s));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %error_chain(&e), "ignoring invalid kubeless-config; keeping the previous settings")
                }
            },
            Err(e) => tracing::warn!(error = %e, "watching kubeless-config failed; retrying"),
        }
    }
}

fn changes(
    rx: watch::Receiver<Arc<Settings>>,
) -> impl futures_util::Stream<Item = ()> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    })
}

fn scoped<K>(client: &Client, ns: &str) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    if ns.is_empty() {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), ns)
    }
}

/// The triggers of `store` that name `function` (in its namespace).
fn naming<T, F>(store: &Store<T>, function: &F, name_of: fn(&T) -> &str) -> Vec<ObjectRef<T>>
where
    T: Resource<DynamicType = ()> + Clone,
    F: Resource,
{
    let ns = function.namespace();
    let name = function.name_any();
    store
        .state()
        .into_iter()
        .filter(|t| t.namespace() == ns && name_of(t) == name)
        .map(|t| ObjectRef::from_obj(t.as_ref()))
        .collect()
}

/// Run the controllers; restart them when `functions-namespace` changes.
///
/// What wakes a reconcile, besides the object itself changing:
/// - Function: any change of its ConfigMap, Service, Deployment, HPA or
///   build Job (a deleted or edited child is put back at once, not at the
///   next 5-minute requeue), and of its pods (labelled `function: <name>`),
///   so a pod that cannot pull its image or crash-loops shows in the
///   status at once;
/// - HTTPTrigger: its Ingress, and the Service of the function it names
///   (created later, port changed);
/// - CronJobTrigger: its CronJob, and the Function it names (timeout and
///   Service port are part of the CronJob);
/// - Function and cron trigger: a valid `kubeless-config` change.
async fn controllers(
    ctx: Arc<Context>,
    mut rx: watch::Receiver<Arc<Settings>>,
    stop: CancellationToken,
    event_opts: events::EventOptions,
) {
    loop {
        let ns = rx.borrow().functions_namespace.clone();
        let round = stop.child_token();
        let client = &ctx.client;
        let owned = watcher::Config::default().labels("created-by=kubeless");
        let function = Controller::new(scoped::<Function>(client, &ns), watcher::Config::default())
            .owns(scoped::<Deployment>(client, &ns), owned.clone())
            .owns(scoped::<Job>(client, &ns), owned.clone())
            .owns(scoped::<ConfigMap>(client, &ns), owned.clone())
            .owns(scoped::<Service>(client, &ns), owned.clone())
            .owns(
                scoped::<HorizontalPodAutoscaler>(client, &ns),
                owned.clone(),
            )
            .watches(scoped::<Pod>(client, &ns), owned.clone(), |pod| {
                let function = pod.labels().get("function")?;
                Some(ObjectRef::<Function>::new(function).within(&pod.namespace()?))
            })
            .reconcile_all_on(changes(rx.clone()))
            .graceful_shutdown_on(round.clone().cancelled_owned())
            .run(
                |o, c| tracked(o, c, function::reconcile),
                error_policy,
                ctx.clone(),
            )
            .for_each(|_| async {});
        let http = Controller::new(
            scoped::<HttpTrigger>(client, &ns),
            watcher::Config::default(),
        );
        let http_triggers = http.store();
        let http = http
            .owns(scoped::<Ingress>(client, &ns), owned.clone())
            .watches(scoped::<Service>(client, &ns), owned.clone(), move |svc| {
                naming(&http_triggers, &svc, |t: &HttpTrigger| {
                    &t.spec.function_name
                })
            })
            .graceful_shutdown_on(round.clone().cancelled_owned())
            .run(
                |o, c| tracked(o, c, triggers::reconcile_http),
                error_policy,
                ctx.clone(),
            )
            .for_each(|_| async {});
        let cron = Controller::new(
            scoped::<CronJobTrigger>(client, &ns),
            watcher::Config::default(),
        );
        let cron_triggers = cron.store();
        let cron = cron
            .owns(scoped::<CronJob>(client, &ns), owned)
            .watches(
                scoped::<Function>(client, &ns),
                watcher::Config::default(),
                move |f| {
                    naming(&cron_triggers, &f, |t: &CronJobTrigger| {
                        &t.spec.function_name
                    })
                },
            )
            .reconcile_all_on(changes(rx.clone()))
            .graceful_shutdown_on(round.clone().cancelled_owned())
            .run(
                |o, c| tracked(o, c, triggers::reconcile_cron),
                error_policy,
                ctx.clone(),
            )
            .for_each(|_| async {});
        let consumers = events::run(
            client.clone(),
            ns.clone(),
            event_opts.clone(),
            round.clone(),
        );
        tracing::info!(namespace = %if ns.is_empty() { "(all)" } else { &ns }, "controllers started");
        let namespace_changed = async {
            loop {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                if rx.borrow().functions_namespace != ns {
                    return;
                }
            }
        };
        let all = futures_util::future::join4(function, http, cron, consumers);
        tokio::pin!(all);
        tokio::select! {
            _ = &mut all => return,
            _ = namespace_changed => {
                tracing::info!("functions-namespace changed; restarting the controllers");
                round.cancel();
                all.await;
            }
        }
        if stop.is_cancelled() {
            return;
        }
    }
}
