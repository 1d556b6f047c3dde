//! Kafka and NATS triggers in Kubernetes mode: their consumers run inside
//! controller-manager, in the elected leader only.
//!
//! Flow: reflectors keep Functions, their Services (`created-by=kubeless`),
//! KafkaTriggers and NATSTriggers of the watched namespace in memory. Once
//! the three kinds that decide bindings have been listed, every change
//! recomputes the wanted consumers with the pure
//! [`kubeless_events::topic::bind`] (one per trigger and function its
//! `functionSelector` matches), starts a task for each new one and cancels
//! the ones no longer wanted. The consumers, the delivery policy (retries
//! with backoff, dead-letter topic/subject, position committed only after a
//! 2xx or a dead letter) and the counters are `kubeless-events`', the same
//! code embedded mode runs.
//!
//! A function is called at its Service: [`UrlTemplate`] with the function's
//! name, namespace and the Service's first port (8080 without one). The
//! target is looked up on every attempt, so a Service that appears or
//! changes port is picked up; while the Function or its Service does not
//! exist, or nothing answers, events wait (they are not dropped and do not
//! use up retries).
//!
//! Every second each trigger's status is patched when it changed: `state`
//! (`Ready`, `Starting`, `Degraded` naming the failing function and why,
//! `Waiting` when no function matches), a `Ready` condition, and the
//! delivery counters since this controller-manager became leader.
//!
//! Guarantees and caveats: at-least-once, as in embedded mode. Only the
//! leader consumes, so replicas never consume side by side; a new leader
//! resumes from the committed Kafka offsets and the durable JetStream
//! consumers, and messages handled but not yet committed by the previous
//! one are delivered again. Leader election is not fencing: a leader cut
//! off from the API server keeps consuming until its lease has expired
//! unrenewed (at most one renew period longer than the lease), so a
//! standby that took over in that window may deliver some messages twice,
//! never lose them. Stopping (shutdown, lost leadership, namespace change)
//! cancels every consumer and waits for them at most [`STOP_GRACE`]; a
//! delivery cut short is not committed and comes again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use kubeless_api::{TopicTriggerSpec, TriggerStatus};
use kubeless_events::source::{Health, HealthSlot};
use kubeless_events::topic::{
    self, Binding, FunctionRef, Sources, TopicKind, TopicOptions, TriggerRef, Waiting,
};
use kubeless_events::{Resolve, Stats, Target};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::resources::{Function, KafkaTrigger, NatsTrigger};
use crate::{Error, scoped, status};

/// Kubeless's default function address.
pub const DEFAULT_URL_TEMPLATE: &str = "http://{name}.{namespace}.svc.cluster.local:{port}";
/// Kubeless's `KAFKA_BROKERS` default.
pub const DEFAULT_KAFKA_BROKERS: &str = "kafka.kubeless:9092";
/// Kubeless's `NATS_URL` default.
pub const DEFAULT_NATS_URL: &str = "nats://nats.nats-io.svc.cluster.local:4222";
/// How long stopping waits for the consumers.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// Added to the function's timeout before an attempt counts as unanswered.
const TIMEOUT_GRACE: Duration = Duration::from_secs(5);
/// A status write that takes longer is given up (and retried next second).
const STATUS_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a function is called: a URL with `{name}`, `{namespace}` and
/// `{port}` placeholders, checked when parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate(String);

impl Default for UrlTemplate {
    fn default() -> Self {
        UrlTemplate(DEFAULT_URL_TEMPLATE.to_string())
    }
}

impl UrlTemplate {
    /// Accepts an `http://` or `https://` URL whose only `{...}` are the
    /// three placeholders.
    pub fn parse(s: &str) -> Result<UrlTemplate, Error> {
        let bad = |reason: String| Error::InvalidOption {
            option: "--function-url-template",
            reason: format!("{s:?}: {reason}"),
        };
        let rest = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"))
            .ok_or_else(|| bad("must start with http:// or https://".into()))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(bad("has no host".into()));
        }
        if s.contains(char::is_whitespace) {
            return Err(bad("contains white space".into()));
        }
        let mut tail = s;
        while let Some(open) = tail.find('{') {
            let after = &tail[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| bad("has a '{' without '}'".into()))?;
            let name = &after[..close];
            if !matches!(name, "name" | "namespace" | "port") {
                return Err(bad(format!(
                    "unknown placeholder {{{name}}} (known: {{name}}, {{namespace}}, {{port}})"
                )));
            }
            tail = &after[close + 1..];
        }
        if tail.contains('}') {
            return Err(bad("has a '}' without '{'".into()));
        }
        Ok(UrlTemplate(s.to_string()))
    }

    /// The URL of one function.
    pub fn url(&self, name: &str, namespace: &str, port: i64) -> String {
        self.0
            .replace("{name}", name)
            .replace("{namespace}", namespace)
            .replace("{port}", &port.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How controller-manager consumes Kafka and NATS triggers.
#[derive(Debug, Clone)]
pub struct EventOptions {
    /// Brokers and retry policy.
    pub topics: TopicOptions,
    /// Where functions are called.
    pub function_url: UrlTemplate,
}

impl Default for EventOptions {
    /// Kubeless's defaults: brokers at their in-cluster Service names,
    /// JetStream, functions at their Services.
    fn default() -> Self {
        EventOptions {
            topics: TopicOptions {
                nats_url: DEFAULT_NATS_URL.into(),
                kafka_brokers: DEFAULT_KAFKA_BROKERS.into(),
                ..TopicOptions::default()
            },
            function_url: UrlTemplate::default(),
        }
    }
}

impl EventOptions {
    /// Checked before controller-manager does anything.
    pub fn validate(&self) -> Result<(), Error> {
        self.topics
            .validate()
            .map_err(|reason| Error::InvalidOption {
                option: "trigger options",
                reason,
            })
    }
}

/// Finds a function's Service in the reflectors' caches.
struct ServiceResolver {
    functions: Store<Function>,
    services: Store<Service>,
    url: UrlTemplate,
}

impl Resolve for ServiceResolver {
    fn resolve(&self, ns: &str, name: &str) -> Result<Target, String> {
        let f = self
            .functions
            .get(&ObjectRef::new(name).within(ns))
            .ok_or_else(|| format!("function {ns}/{name} does not exist"))?;
        let svc = self
            .services
            .get(&ObjectRef::new(name).within(ns))
            .ok_or_else(|| format!("the Service of function {ns}/{name} does not exist yet"))?;
        let port = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|p| p.first())
            .map_or(i64::from(kubeless_plan::DEFAULT_PORT), |p| {
                i64::from(p.port)
            });
        let secs = kubeless_plan::parse_timeout(&f.spec.timeout)
            .unwrap_or(kubeless_plan::DEFAULT_TIMEOUT_SECS);
        Ok(Target {
            url: self.url.url(name, ns, port),
            timeout: Duration::from_secs(secs) + TIMEOUT_GRACE,
        })
    }
}

/// Which reflector an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Functions,
    Services,
    Kafka,
    Nats,
}

/// One watch event: `Ok(true)` when a (re)list finished.
type Change = (Source, Result<bool, String>);

fn reflect<K>(
    api: Api<K>,
    cfg: watcher::Config,
    which: Source,
) -> (
    Store<K>,
    std::pin::Pin<Box<dyn Stream<Item = Change> + Send>>,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, cfg).default_backoff().modify(|o: &mut K| {
            // Only names, labels and specs are read; keep the cache small.
            o.meta_mut().managed_fields = None;
        }),
    )
    .map(move |ev| match ev {
        Ok(watcher::Event::InitDone) => (which, Ok(true)),
        Ok(_) => (which, Ok(false)),
        Err(e) => (which, Err(e.to_string())),
    });
    (reader, Box::pin(stream))
}

/// A topic trigger as read from its reflector.
struct TriggerView {
    kind: TopicKind,
    meta: ObjectMeta,
    spec: TopicTriggerSpec,
    status: Option<TriggerStatus>,
}

fn views(kafka: &Store<KafkaTrigger>, nats: &Store<NatsTrigger>) -> Vec<TriggerView> {
    let k = kafka.state().into_iter().map(|t| TriggerView {
        kind: TopicKind::Kafka,
        meta: t.metadata.clone(),
        spec: t.spec.clone(),
        status: t.status.clone(),
    });
    let n = nats.state().into_iter().map(|t| TriggerView {
        kind: TopicKind::Nats,
        meta: t.metadata.clone(),
        spec: t.spec.clone(),
        status: t.status.clone(),
    });
    k.chain(n)
        .filter(|t| t.meta.deletion_timestamp.is_none())
        .collect()
}

/// The wanted consumers and the triggers matching no function.
fn wanted(triggers: &[TriggerView], functions: &[Arc<Function>]) -> (Vec<Binding>, Vec<Waiting>) {
    let empty = BTreeMap::new();
    let fns: Vec<FunctionRef<'_>> = functions
        .iter()
        .filter(|f| f.metadata.deletion_timestamp.is_none())
        .map(|f| FunctionRef {
            namespace: f.metadata.namespace.as_deref().unwrap_or(""),
            name: f.metadata.name.as_deref().unwrap_or(""),
            labels: f.metadata.labels.as_ref().unwrap_or(&empty),
        })
        .collect();
    let mut bindings = Vec::new();
    let mut waiting = Vec::new();
    for kind in [TopicKind::Kafka, TopicKind::Nats] {
        let refs: Vec<TriggerRef<'_>> = triggers
            .iter()
            .filter(|t| t.kind == kind)
            .map(|t| TriggerRef {
                namespace: t.meta.namespace.as_deref().unwrap_or(""),
                name: t.meta.name.as_deref().unwrap_or(""),
                uid: t.meta.uid.as_deref().unwrap_or(""),
                spec: &t.spec,
            })
            .collect();
        let (b, w) = topic::bind(kind, &refs, &fns);
        bindings.extend(b);
        waiting.extend(w);
    }
    (bindings, waiting)
}

struct Running {
    cancel: CancellationToken,
    health: HealthSlot,
}

/// Consume the Kafka and NATS triggers of `namespace` ("" = all) until
/// `stop`; then stop every consumer, bounded by [`STOP_GRACE`].
pub async fn run(client: Client, namespace: String, opts: EventOptions, stop: CancellationToken) {
    let ns = namespace.as_str();
    let (functions, fn_changes) = reflect(
        scoped::<Function>(&client, ns),
        watcher::Config::default(),
        Source::Functions,
    );
    let (services, svc_changes) = reflect(
        scoped::<Service>(&client, ns),
        watcher::Config::default().labels("created-by=kubeless"),
        Source::Services,
    );
    let (kafka, kafka_changes) = reflect(
        scoped::<KafkaTrigger>(&client, ns),
        watcher::Config::default(),
        Source::Kafka,
    );
    let (nats, nats_changes) = reflect(
        scoped::<NatsTrigger>(&client, ns),
        watcher::Config::default(),
        Source::Nats,
    );
    let mut changes =
        futures_util::stream::select_all([fn_changes, svc_changes, kafka_changes, nats_changes]);
    let resolver = Arc::new(ServiceResolver {
        functions: functions.clone(),
        services,
        url: opts.function_url.clone(),
    });
    let stats = Stats::default();
    let sources = Sources::new(opts.topics.clone(), resolver, stats.clone());
    tracing::info!(
        kafka = %opts.topics.kafka_brokers,
        nats = %opts.topics.nats_url,
        function_url = %opts.function_url.as_str(),
        "Kafka and NATS trigger consumers started"
    );

    let mut listed = (false, false, false);
    let mut dirty = false;
    let mut running: HashMap<Binding, Running> = HashMap::new();
    let mut waiting: Vec<Waiting> = Vec::new();
    let mut tasks = JoinSet::new();
    let mut written: HashMap<(TopicKind, String, String), TriggerStatus> = HashMap::new();
    let mut last_error: Option<String> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            ev = changes.next() => match ev {
                Some((which, Ok(list_done))) => {
                    last_error = None;
                    if list_done {
                        match which {
                            Source::Functions => listed.0 = true,
                            Source::Kafka => listed.1 = true,
                            Source::Nats => listed.2 = true,
                            Source::Services => {}
                        }
                    }
                    // The resolver reads Services when it delivers.
                    dirty |= which != Source::Services;
                }
                Some((which, Err(e))) => {
                    if last_error.as_ref() != Some(&e) {
                        tracing::warn!(watch = ?which, error = %e, "watching for the trigger consumers failed; retrying");
                        last_error = Some(e);
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                let triggers = views(&kafka, &nats);
                write_statuses(&client, &triggers, &running, &waiting, &stats, &mut written).await;
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
        if dirty && listed == (true, true, true) {
            dirty = false;
            let triggers = views(&kafka, &nats);
            let (want, w) = wanted(&triggers, &functions.state());
            waiting = w;
            let want: HashMap<Binding, ()> = want.into_iter().map(|b| (b, ())).collect();
            running.retain(|b, r| {
                let keep = want.contains_key(b);
                if !keep {
                    tracing::info!(kind = b.kind.kind(), trigger = %b.trigger, namespace = %b.namespace, function = %b.function, topic = %b.topic, "stopping consumer");
                    r.cancel.cancel();
                }
                keep
            });
            for b in want.into_keys() {
                if running.contains_key(&b) {
                    continue;
                }
                tracing::info!(kind = b.kind.kind(), trigger = %b.trigger, namespace = %b.namespace, function = %b.function, topic = %b.topic, "starting consumer");
                let (cancel, health) = (CancellationToken::new(), HealthSlot::default());
                tasks.spawn(sources.task(&b, health.clone(), cancel.clone()));
                running.insert(b, Running { cancel, health });
            }
            let live: Vec<(String, String, String)> = triggers
                .iter()
                .map(|t| {
                    (
                        t.kind.kind().to_string(),
                        t.meta.namespace.clone().unwrap_or_default(),
                        t.meta.name.clone().unwrap_or_default(),
                    )
                })
                .collect();
            stats.retain(|k| live.contains(k));
            written.retain(|(kind, ns, name), _| {
                live.contains(&(kind.kind().to_string(), ns.clone(), name.clone()))
            });
        }
    }
    for r in running.values() {
        r.cancel.cancel();
    }
    let drained = tokio::time::timeout(STOP_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "some trigger consumers did not stop within {STOP_GRACE:?}; aborting them (their messages come again)"
        );
        tasks.shutdown().await;
    }
    tracing::info!("Kafka and NATS trigger consumers stopped");
}

/// The status each trigger should have now.
fn desired(
    t: &TriggerView,
    running: &HashMap<Binding, Running>,
    waiting: &[Waiting],
    stats: &Stats,
) -> TriggerStatus {
    let ns = t.meta.namespace.as_deref().unwrap_or("");
    let name = t.meta.name.as_deref().unwrap_or("");
    let uid = t.meta.uid.as_deref().unwrap_or("");
    let generation = t.meta.generation.unwrap_or_default();
    let previous = t
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let (state, reason, message) = if let Some(w) = waiting
        .iter()
        .find(|w| w.namespace == ns && w.trigger == name && w.uid == uid)
    {
        ("Waiting", "NoFunction", w.message.clone())
    } else {
        let mut fns: Vec<(String, Health)> = running
            .iter()
            .filter(|(b, _)| {
                b.kind == t.kind && b.namespace == ns && b.trigger == name && b.uid == uid
            })
            .map(|(b, r)| (b.function.clone(), r.health.get()))
            .collect();
        if fns.is_empty() {
            ("Starting", "Starting", "starting the consumers".to_string())
        } else {
            let (state, message) = topic::summarize(&mut fns);
            let reason = match state {
                "Ready" => "Consuming",
                "Degraded" => "Degraded",
                _ => "Starting",
            };
            (state, reason, message)
        }
    };
    let mut st = TriggerStatus {
        state: state.to_string(),
        message: message.clone(),
        conditions: vec![status::ready(
            &previous,
            state == "Ready",
            reason,
            &message,
            generation,
        )],
        ..TriggerStatus::default()
    };
    if let Some(c) = stats.get(t.kind.kind(), ns, name) {
        c.write_to(&mut st);
    }
    st
}

async fn write_statuses(
    client: &Client,
    triggers: &[TriggerView],
    running: &HashMap<Binding, Running>,
    waiting: &[Waiting],
    stats: &Stats,
    written: &mut HashMap<(TopicKind, String, String), TriggerStatus>,
) {
    for t in triggers {
        let ns = t.meta.namespace.clone().unwrap_or_default();
        let name = t.meta.name.clone().unwrap_or_default();
        let st = desired(t, running, waiting, stats);
        let key = (t.kind, ns.clone(), name.clone());
        if written.get(&key) == Some(&st) || t.status.as_ref() == Some(&st) {
            written.insert(key, st);
            continue;
        }
        let patch = async {
            match t.kind {
                TopicKind::Kafka => {
                    let api: Api<KafkaTrigger> = Api::namespaced(client.clone(), &ns);
                    status::patch(&api, &name, None, &st).await
                }
                TopicKind::Nats => {
                    let api: Api<NatsTrigger> = Api::namespaced(client.clone(), &ns);
                    status::patch(&api, &name, None, &st).await
                }
            }
        };
        match tokio::time::timeout(STATUS_WRITE_TIMEOUT, patch).await {
            Ok(Ok(())) => {
                written.insert(key, st);
            }
            Ok(Err(e)) => {
                tracing::warn!(kind = t.kind.kind(), trigger = %name, namespace = %ns, error = %crate::error_chain(&e), "could not write the trigger status")
            }
            Err(_) => {
                tracing::warn!(kind = t.kind.kind(), trigger = %name, namespace = %ns, "writing the trigger status timed out")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_templates_are_checked_and_filled() {
        let t = UrlTemplate::default();
        assert_eq!(
            t.url("hello", "prod", 8080),
            "http://hello.prod.svc.cluster.local:8080"
        );
        let local = UrlTemplate::parse("http://127.0.0.1:{port}/").expect("valid");
        assert_eq!(local.url("f", "d", 31000), "http://127.0.0.1:31000/");
        for (bad, why) in [
            ("hello.svc:{port}", "http://"),
            ("http://", "no host"),
            ("http://{name}.{ns}:80", "{ns}"),
            ("http://{name:80", "without '}'"),
            ("http://name}:80", "without '{'"),
            ("http://a b", "white space"),
        ] {
            let e = UrlTemplate::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains("--function-url-template"), "{e}");
        }
    }

    fn trigger(kind: TopicKind, name: &str, selector: &str) -> TriggerView {
        TriggerView {
            kind,
            meta: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("d".into()),
                uid: Some(format!("uid-{name}")),
                ..ObjectMeta::default()
            },
            spec: TopicTriggerSpec {
                topic: "orders".into(),
                function_selector: kubeless_api::selector::parse_selector(selector)
                    .expect("selector"),
            },
            status: None,
        }
    }

    fn function(name: &str, labels: &[(&str, &str)], deleting: bool) -> Arc<Function> {
        let mut f = Function::default();
        f.metadata.name = Some(name.into());
        f.metadata.namespace = Some("d".into());
        f.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        if deleting {
            f.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ));
        }
        Arc::new(f)
    }

    #[test]
    fn both_kinds_bind_their_selected_functions_and_deleting_ones_are_left_out() {
        let triggers = [
            trigger(TopicKind::Kafka, "k", "app=sink"),
            trigger(TopicKind::Nats, "n", "app=sink"),
            trigger(TopicKind::Nats, "lonely", "app=none"),
        ];
        let fns = [
            function("a", &[("app", "sink")], false),
            function("b", &[("app", "sink")], true),
        ];
        let (b, w) = wanted(&triggers, &fns);
        let got: Vec<(&str, &str)> = b
            .iter()
            .map(|b| (b.kind.kind(), b.function.as_str()))
            .collect();
        assert_eq!(got, [("KafkaTrigger", "a"), ("NATSTrigger", "a")]);
        assert_eq!(w.len(), 1);
        let st = desired(&triggers[2], &HashMap::new(), &w, &Stats::default());
        assert_eq!(st.state, "Waiting");
        assert_eq!(st.conditions[0].status, "False");
        assert_eq!(st.conditions[0].reason, "NoFunction");
    }

    #[test]
    fn the_status_follows_the_consumers_health_and_counters() {
        let t = trigger(TopicKind::Kafka, "k", "app=sink");
        let (b, _) = wanted(&[t], &[function("a", &[("app", "sink")], false)]);
        let t = trigger(TopicKind::Kafka, "k", "app=sink");
        let health = HealthSlot::default();
        let running: HashMap<Binding, Running> = b
            .into_iter()
            .map(|b| {
                (
                    b,
                    Running {
                        cancel: CancellationToken::new(),
                        health: health.clone(),
                    },
                )
            })
            .collect();
        let stats = Stats::default();
        kubeless_events::Counters::add(&stats.counters("KafkaTrigger", "d", "k").delivered);
        assert_eq!(desired(&t, &running, &[], &stats).state, "Starting");
        health.set(Health::Degraded("Kafka brokers down".into()));
        let st = desired(&t, &running, &[], &stats);
        assert_eq!(
            (st.state.as_str(), st.message.as_str()),
            ("Degraded", "a: Kafka brokers down")
        );
        health.set(Health::Ready("topic orders".into()));
        let st = desired(&t, &running, &[], &stats);
        assert_eq!(st.state, "Ready");
        assert_eq!(st.conditions[0].status, "True");
        assert_eq!(st.delivered, 1);
    }

    #[test]
    fn the_service_port_and_function_timeout_make_the_target() {
        let (functions, mut fw) = reflector::store::<Function>();
        let (services, mut sw) = reflector::store::<Service>();
        let mut f = (*function("f", &[], false)).clone();
        f.spec.timeout = "7".into();
        fw.apply_watcher_event(&watcher::Event::Apply(f));
        let r = ServiceResolver {
            functions,
            services,
            url: UrlTemplate::default(),
        };
        let e = r.resolve("d", "f").expect_err("no service yet");
        assert!(e.contains("Service"), "{e}");
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "f", "namespace": "d"},
            "spec": {"ports": [{"port": 9090, "targetPort": 8080}]}
        }))
        .expect("service");
        sw.apply_watcher_event(&watcher::Event::Apply(svc));
        let t = r.resolve("d", "f").expect("target");
        assert_eq!(t.url, "http://f.d.svc.cluster.local:9090");
        assert_eq!(t.timeout, Duration::from_secs(12));
        assert!(r.resolve("d", "g").is_err());
    }
}
