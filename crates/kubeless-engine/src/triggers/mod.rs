//! Event triggers in embedded mode: the trigger supervisor.
//!
//! Like the reconciler it is level-triggered: on every store change (and
//! once at start) it reads Functions, triggers and Secrets and
//! - rebuilds the gateway's HTTP trigger table ([`http`]);
//! - computes the wanted bindings with the pure [`bindings`]: one per
//!   (CronJobTrigger, its function) and per (NATS/Kafka trigger, every
//!   function its selector matches, including ones deployed later);
//! - starts an [`EventSource`] task for each new binding and cancels the
//!   ones no longer wanted (a changed spec is a new binding).
//!
//! Every second it writes each trigger's status: state, message and the
//! delivery counters of [`kubeless_events::stats`] (also on `/metrics`).
//! Shutdown cancels every source and waits for them, bounded.

pub mod cron;
pub mod htpasswd;
pub mod http;
pub mod tls;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kubeless_api::{
    CronJobTrigger, Function, HttpTrigger, Kind, Secret, TopicTriggerSpec, TriggerStatus,
};
pub use kubeless_events::RetryPolicy;
use kubeless_events::source::{Health, HealthSlot};
use kubeless_events::topic::{self, FunctionRef, TopicKind, TriggerRef};
use kubeless_events::{Invoker, Resolve, Stats, Target};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Ctx;
use crate::gateway::{RouteTable, TIMEOUT_GRACE};

/// Trigger settings of `kubeless server` (brokers and retry policy; the
/// same options controller-manager takes).
pub use kubeless_events::topic::TopicOptions as TriggerOptions;

/// What the gateway and the API share with the supervisor.
#[derive(Clone, Default)]
pub struct TriggerShared {
    pub stats: Stats,
    pub http: http::HttpTriggerTable,
    /// For `/api/v1/config`, so `kubeless topic` finds the brokers.
    pub kafka_brokers: String,
    pub nats_url: String,
}

/// Finds a function's ready instance in the gateway's route table.
pub struct RouteResolver(pub RouteTable);

impl Resolve for RouteResolver {
    fn resolve(&self, ns: &str, name: &str) -> Result<Target, String> {
        let route = self
            .0
            .get(ns, name)
            .ok_or_else(|| format!("function {ns}/{name} is not running"))?;
        let addr = route.pick().ok_or_else(|| {
            format!(
                "function {ns}/{name} has no ready instance: {}",
                route.unavailable.as_deref().unwrap_or("it is starting")
            )
        })?;
        Ok(Target {
            url: format!("http://{addr}/"),
            timeout: route.timeout + TIMEOUT_GRACE,
        })
    }
}

/// The kinds of trigger that run event sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    Cron,
    Nats,
    Kafka,
}

impl SourceKind {
    fn kind(self) -> Kind {
        match self {
            SourceKind::Cron => Kind::CronJobTrigger,
            SourceKind::Nats => Kind::NATSTrigger,
            SourceKind::Kafka => Kind::KafkaTrigger,
        }
    }
}

/// (kind, namespace, name, uid) of a trigger.
pub type TriggerId = (SourceKind, String, String, String);

/// One wanted event source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindingKey {
    pub trigger: TriggerId,
    pub function: String,
    /// The spec the source runs with (schedule+payload or topic), so a
    /// changed trigger is a different binding.
    pub spec: String,
}

/// What [`bindings`] decided for one trigger besides its bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub error: bool,
    pub message: String,
}

/// The wanted bindings, and a note for triggers that have none. Pure.
pub fn bindings(
    functions: &[Function],
    cron: &[CronJobTrigger],
    nats: &[kubeless_api::NatsTrigger],
    kafka: &[kubeless_api::KafkaTrigger],
) -> (BTreeMap<BindingKey, Value>, BTreeMap<TriggerId, Note>) {
    let mut out = BTreeMap::new();
    let mut notes = BTreeMap::new();
    let fn_refs: Vec<FunctionRef<'_>> = functions
        .iter()
        .map(|f| FunctionRef {
            namespace: &f.metadata.namespace,
            name: &f.metadata.name,
            labels: &f.metadata.labels,
        })
        .collect();
    let id =
        |k, m: &kubeless_api::ObjectMeta| (k, m.namespace.clone(), m.name.clone(), m.uid.clone());
    for t in cron {
        let tid = id(SourceKind::Cron, &t.metadata);
        if let Err(e) = kubeless_api::cron::Schedule::parse(&t.spec.schedule) {
            notes.insert(
                tid,
                Note {
                    error: true,
                    message: format!("invalid schedule {:?}: {e}", t.spec.schedule),
                },
            );
            continue;
        }
        let exists = functions.iter().any(|f| {
            f.metadata.namespace == t.metadata.namespace && f.metadata.name == t.spec.function_name
        });
        if !exists {
            notes.insert(
                tid,
                Note {
                    error: true,
                    message: format!("function {} does not exist", t.spec.function_name),
                },
            );
            continue;
        }
        let spec = serde_json::json!({"schedule": t.spec.schedule, "payload": t.spec.payload});
        out.insert(
            BindingKey {
                trigger: tid,
                function: t.spec.function_name.clone(),
                spec: spec.to_string(),
            },
            spec,
        );
    }
    let mut topic =
        |kind: SourceKind, list: &[kubeless_api::Object<TopicTriggerSpec, TriggerStatus>]| {
            let refs: Vec<TriggerRef<'_>> = list
                .iter()
                .map(|t| TriggerRef {
                    namespace: &t.metadata.namespace,
                    name: &t.metadata.name,
                    uid: &t.metadata.uid,
                    spec: &t.spec,
                })
                .collect();
            let topic_kind = match kind {
                SourceKind::Nats => TopicKind::Nats,
                _ => TopicKind::Kafka,
            };
            let (bound, waiting) = topic::bind(topic_kind, &refs, &fn_refs);
            for b in bound {
                out.insert(
                    BindingKey {
                        trigger: (kind, b.namespace, b.trigger, b.uid),
                        function: b.function,
                        spec: b.topic.clone(),
                    },
                    Value::String(b.topic),
                );
            }
            for w in waiting {
                notes.insert(
                    (kind, w.namespace, w.trigger, w.uid),
                    Note {
                        error: false,
                        message: w.message,
                    },
                );
            }
        };
    topic(SourceKind::Nats, nats);
    topic(SourceKind::Kafka, kafka);
    (out, notes)
}

struct Running {
    cancel: CancellationToken,
    health: HealthSlot,
}

/// Everything one supervisor needs to start sources.
struct Starter {
    invoker: Invoker,
    resolver: Arc<dyn Resolve>,
    stats: Stats,
    topics: topic::Sources,
}

impl Starter {
    fn start(&self, key: &BindingKey, spec: &Value, tasks: &mut JoinSet<()>) -> Running {
        let cancel = CancellationToken::new();
        let health = HealthSlot::default();
        let (kind, ns, trigger, uid) = &key.trigger;
        let (h, c) = (health.clone(), cancel.clone());
        let topic_kind = match kind {
            SourceKind::Cron => {
                let schedule = spec.get("schedule").and_then(Value::as_str).unwrap_or("");
                match kubeless_api::cron::Schedule::parse(schedule) {
                    Ok(schedule) => {
                        let src = Box::new(cron::CronSource {
                            schedule,
                            payload: spec.get("payload").cloned().unwrap_or(Value::Null),
                            namespace: ns.clone(),
                            function: key.function.clone(),
                            invoker: self.invoker.clone(),
                            resolver: self.resolver.clone(),
                            counters: self.stats.counters(kind.kind().name(), ns, trigger),
                            clock: Arc::new(cron::SystemClock),
                        });
                        tasks.spawn(topic::run_source(src, h, c));
                    }
                    Err(e) => health.set(Health::Degraded(format!("invalid schedule: {e}"))),
                }
                return Running { cancel, health };
            }
            SourceKind::Nats => TopicKind::Nats,
            SourceKind::Kafka => TopicKind::Kafka,
        };
        let binding = topic::Binding {
            kind: topic_kind,
            namespace: ns.clone(),
            trigger: trigger.clone(),
            uid: uid.clone(),
            function: key.function.clone(),
            topic: spec.as_str().unwrap_or("").to_string(),
        };
        tasks.spawn(self.topics.task(&binding, h, c));
        Running { cancel, health }
    }
}

/// Everything read from the store in one pass.
#[derive(Default)]
struct Snapshot {
    functions: Vec<Function>,
    http: Vec<HttpTrigger>,
    cron: Vec<CronJobTrigger>,
    nats: Vec<kubeless_api::NatsTrigger>,
    kafka: Vec<kubeless_api::KafkaTrigger>,
    secrets: BTreeMap<String, Secret>,
}

fn parse_all<T: serde::de::DeserializeOwned>(items: Vec<Value>) -> Vec<T> {
    items
        .into_iter()
        .filter_map(|v| match serde_json::from_value(v) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "skipping a stored object that does not parse");
                None
            }
        })
        .collect()
}

fn read_snapshot(store: &crate::store::Store) -> Result<Snapshot, crate::store::StoreError> {
    let secrets: Vec<Secret> = parse_all(store.list(Kind::Secret, None)?);
    Ok(Snapshot {
        functions: parse_all(store.list(Kind::Function, None)?),
        http: parse_all(store.list(Kind::HTTPTrigger, None)?),
        cron: parse_all(store.list(Kind::CronJobTrigger, None)?),
        nats: parse_all(store.list(Kind::NATSTrigger, None)?),
        kafka: parse_all(store.list(Kind::KafkaTrigger, None)?),
        secrets: secrets
            .into_iter()
            .map(|s| (format!("{}/{}", s.metadata.namespace, s.metadata.name), s))
            .collect(),
    })
}

/// Run the trigger supervisor until `shutdown`.
pub async fn run(
    ctx: Arc<Ctx>,
    opts: TriggerOptions,
    tls_listener: bool,
    shutdown: CancellationToken,
) {
    let resolver: Arc<dyn Resolve> = Arc::new(RouteResolver(ctx.routes.clone()));
    let stats = ctx.triggers.stats.clone();
    let starter = Starter {
        invoker: Invoker::new(),
        resolver: resolver.clone(),
        stats: stats.clone(),
        topics: topic::Sources::new(opts, resolver, stats),
    };
    let mut changes = ctx.store.subscribe();
    let mut running: HashMap<BindingKey, Running> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut notes = BTreeMap::new();
    let mut http_states = Vec::new();
    let mut written: HashMap<(Kind, String, String), Value> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty = true;
    loop {
        if dirty {
            dirty = false;
            changes.borrow_and_update();
            let store = ctx.store.clone();
            match tokio::task::spawn_blocking(move || read_snapshot(&store)).await {
                Ok(Ok(snap)) => {
                    let names: HashSet<String> = snap
                        .functions
                        .iter()
                        .map(|f| format!("{}/{}", f.metadata.namespace, f.metadata.name))
                        .collect();
                    let (routes, certs, states) =
                        http::build(&snap.http, &snap.secrets, &names, tls_listener);
                    ctx.triggers.http.set(routes, certs);
                    http_states = states;
                    let (want, n) = bindings(&snap.functions, &snap.cron, &snap.nats, &snap.kafka);
                    notes = n;
                    running.retain(|k, r| {
                        let keep = want.contains_key(k);
                        if !keep {
                            r.cancel.cancel();
                        }
                        keep
                    });
                    for (k, spec) in &want {
                        if !running.contains_key(k) {
                            tracing::info!(trigger = %k.trigger.2, namespace = %k.trigger.1, function = %k.function, "starting event source");
                            let r = starter.start(k, spec, &mut tasks);
                            running.insert(k.clone(), r);
                        }
                    }
                    let live: HashSet<(String, String, String)> = snap
                        .cron
                        .iter()
                        .map(|t| ("CronJobTrigger", &t.metadata))
                        .chain(snap.nats.iter().map(|t| ("NATSTrigger", &t.metadata)))
                        .chain(snap.kafka.iter().map(|t| ("KafkaTrigger", &t.metadata)))
                        .map(|(k, m)| (k.to_string(), m.namespace.clone(), m.name.clone()))
                        .collect();
                    starter.stats.retain(|k| live.contains(k));
                    written.retain(|(kind, ns, name), _| {
                        *kind == Kind::HTTPTrigger
                            || live.contains(&(kind.name().to_string(), ns.clone(), name.clone()))
                    });
                }
                Ok(Err(e)) => tracing::error!(error = %e, "could not read triggers"),
                Err(e) => tracing::error!(error = %e, "reading triggers was interrupted"),
            }
        }
        write_statuses(&ctx, &running, &notes, &http_states, &mut written).await;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = changes.changed() => { if r.is_err() { break } dirty = true; }
            _ = tick.tick() => {}
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    for r in running.values() {
        r.cancel.cancel();
    }
    if tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("some event sources did not stop in time");
    }
}

/// The status of every trigger, written when it changed.
async fn write_statuses(
    ctx: &Arc<Ctx>,
    running: &HashMap<BindingKey, Running>,
    notes: &BTreeMap<TriggerId, Note>,
    http_states: &[http::HttpTriggerState],
    written: &mut HashMap<(Kind, String, String), Value>,
) {
    let mut per: BTreeMap<TriggerId, Vec<(String, Health)>> = BTreeMap::new();
    for (k, r) in running {
        per.entry(k.trigger.clone())
            .or_default()
            .push((k.function.clone(), r.health.get()));
    }
    let mut out: Vec<(Kind, String, String, String, TriggerStatus)> = Vec::new();
    for (tid, note) in notes {
        per.remove(tid);
        out.push((
            tid.0.kind(),
            tid.1.clone(),
            tid.2.clone(),
            tid.3.clone(),
            TriggerStatus {
                state: if note.error { "Error" } else { "Waiting" }.into(),
                message: note.message.clone(),
                ..Default::default()
            },
        ));
    }
    for (tid, mut fns) in per {
        let (state, message) = topic::summarize(&mut fns);
        out.push((
            tid.0.kind(),
            tid.1,
            tid.2,
            tid.3,
            TriggerStatus {
                state: state.into(),
                message,
                ..Default::default()
            },
        ));
    }
    for s in http_states {
        out.push((
            Kind::HTTPTrigger,
            s.namespace.clone(),
            s.name.clone(),
            s.uid.clone(),
            TriggerStatus {
                state: if s.ok { "Ready" } else { "Error" }.into(),
                message: s.message.clone(),
                ..Default::default()
            },
        ));
    }
    let mut todo = Vec::new();
    for (kind, ns, name, uid, mut st) in out {
        if let Some(c) = ctx.triggers.stats.get(kind.name(), &ns, &name) {
            c.write_to(&mut st);
        }
        let Ok(v) = serde_json::to_value(&st) else {
            continue;
        };
        let key = (kind, ns.clone(), name.clone());
        if written.get(&key) != Some(&v) {
            todo.push((kind, ns, name, uid, v));
        }
    }
    if todo.is_empty() {
        return;
    }
    let store = ctx.store.clone();
    let done = tokio::task::spawn_blocking(move || {
        let mut done = Vec::new();
        for (kind, ns, name, uid, v) in todo {
            match store.update_status(kind, &ns, &name, Some(&uid), v.clone()) {
                Ok(_) => done.push(((kind, ns, name), v)),
                Err(e) => tracing::warn!(error = %e, "could not write a trigger status"),
            }
        }
        done
    })
    .await
    .unwrap_or_default();
    written.extend(done);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubeless_api::selector::parse_selector;

    fn func(name: &str, labels: &[(&str, &str)]) -> Function {
        let mut f = Function::default();
        f.metadata.name = name.into();
        f.metadata.namespace = "default".into();
        f.metadata.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        f
    }

    fn topic_trigger(name: &str, topic: &str, sel: &str) -> kubeless_api::NatsTrigger {
        let mut t = kubeless_api::NatsTrigger::default();
        t.metadata.name = name.into();
        t.metadata.namespace = "default".into();
        t.metadata.uid = format!("uid-{name}");
        t.spec.topic = topic.into();
        t.spec.function_selector = parse_selector(sel).expect("selector");
        t
    }

    #[test]
    fn selectors_fan_out_to_every_matching_function() {
        let fns = [
            func("a", &[("topic", "t"), ("tier", "gold")]),
            func("b", &[("topic", "t")]),
            func("c", &[("topic", "other")]),
        ];
        let nats = [
            topic_trigger("n1", "t", "topic=t"),
            topic_trigger("n2", "t", "topic=t,tier in (gold)"),
            topic_trigger("lonely", "t", "x=y"),
        ];
        let (b, notes) = bindings(&fns, &[], &nats, &[]);
        let got: Vec<(String, String)> = b
            .keys()
            .map(|k| (k.trigger.2.clone(), k.function.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("n1".into(), "a".into()),
                ("n1".into(), "b".into()),
                ("n2".into(), "a".into())
            ]
        );
        let lonely = notes.values().next().expect("a note");
        assert!(
            !lonely.error && lonely.message.contains("waiting"),
            "{lonely:?}"
        );
    }

    #[test]
    fn cron_bindings_need_a_valid_schedule_and_the_function() {
        let mk = |name: &str, schedule: &str, f: &str| {
            let mut t = CronJobTrigger::default();
            t.metadata.name = name.into();
            t.metadata.namespace = "default".into();
            t.spec.schedule = schedule.into();
            t.spec.function_name = f.into();
            t
        };
        let (b, notes) = bindings(
            &[func("f", &[])],
            &[
                mk("ok", "@every 1s", "f"),
                mk("bad", "61 * * * *", "f"),
                mk("gone", "@hourly", "g"),
            ],
            &[],
            &[],
        );
        assert_eq!(b.len(), 1);
        assert_eq!(notes.len(), 2);
        assert!(notes.values().all(|n| n.error));
    }
}
