//! Topic triggers (Kafka and NATS) as both modes run them: which (trigger,
//! function) pairs consume ([`bind`], pure), the task that consumes for one
//! pair ([`Sources::task`]), and the state a trigger reports from the health
//! of its pairs ([`summarize`]).
//!
//! The owner (the embedded trigger supervisor, controller-manager's event
//! module) keeps the loop around these: it diffs the wanted bindings with
//! the running ones, spawns [`Sources::task`] for each new binding in its
//! own `JoinSet`, cancels the ones no longer wanted and waits for them,
//! and writes each trigger's status. A changed topic or trigger uid is a
//! different [`Binding`], so it stops the old consumer and starts a new
//! one.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use kubeless_api::TopicTriggerSpec;
use kubeless_api::selector::{format_selector, matches};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::deliver::RetryPolicy;
use crate::invoke::{Invoker, Resolve};
use crate::source::{EventSource, Health, HealthSlot};
use crate::stats::Stats;

/// The two kinds of topic trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicKind {
    Nats,
    Kafka,
}

impl TopicKind {
    /// The trigger's `kind`.
    pub fn kind(self) -> &'static str {
        match self {
            TopicKind::Nats => "NATSTrigger",
            TopicKind::Kafka => "KafkaTrigger",
        }
    }
}

/// A topic trigger as [`bind`] reads it.
#[derive(Debug, Clone, Copy)]
pub struct TriggerRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub spec: &'a TopicTriggerSpec,
}

/// A function as [`bind`] reads it.
#[derive(Debug, Clone, Copy)]
pub struct FunctionRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// One wanted consumer: a trigger and one function its selector matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Binding {
    pub kind: TopicKind,
    pub namespace: String,
    pub trigger: String,
    pub uid: String,
    pub function: String,
    pub topic: String,
}

/// A trigger whose selector matches no function (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub namespace: String,
    pub trigger: String,
    pub uid: String,
    pub message: String,
}

/// The consumers `triggers` want: one per (trigger, function in the
/// trigger's namespace matched by its `functionSelector`), and the triggers
/// that match nothing. Pure.
pub fn bind(
    kind: TopicKind,
    triggers: &[TriggerRef<'_>],
    functions: &[FunctionRef<'_>],
) -> (Vec<Binding>, Vec<Waiting>) {
    let mut out = Vec::new();
    let mut waiting = Vec::new();
    for t in triggers {
        let before = out.len();
        for f in functions
            .iter()
            .filter(|f| f.namespace == t.namespace && matches(&t.spec.function_selector, f.labels))
        {
            out.push(Binding {
                kind,
                namespace: t.namespace.to_string(),
                trigger: t.name.to_string(),
                uid: t.uid.to_string(),
                function: f.name.to_string(),
                topic: t.spec.topic.clone(),
            });
        }
        if out.len() == before {
            waiting.push(Waiting {
                namespace: t.namespace.to_string(),
                trigger: t.name.to_string(),
                uid: t.uid.to_string(),
                message: format!(
                    "no function in namespace {} matches the selector {:?}; waiting for one",
                    t.namespace,
                    format_selector(&t.spec.function_selector)
                ),
            });
        }
    }
    (out, waiting)
}

/// Where the brokers are and how deliveries are retried.
#[derive(Debug, Clone)]
pub struct TopicOptions {
    /// NATS server for NATS triggers.
    pub nats_url: String,
    /// JetStream durable consumers (at-least-once) instead of core NATS.
    pub nats_jetstream: bool,
    /// Kafka bootstrap brokers (`host:port,...`).
    pub kafka_brokers: String,
    pub retry: RetryPolicy,
}

impl Default for TopicOptions {
    /// Brokers on this machine (embedded mode's defaults).
    fn default() -> Self {
        TopicOptions {
            nats_url: "nats://127.0.0.1:4222".into(),
            nats_jetstream: true,
            kafka_brokers: "127.0.0.1:9092".into(),
            retry: RetryPolicy::default(),
        }
    }
}

impl TopicOptions {
    /// Checked before anything starts; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        let nats = self.nats_url.trim();
        if nats.is_empty() || nats.contains(char::is_whitespace) {
            return Err(format!("--nats-url {:?} is not a NATS URL", self.nats_url));
        }
        if self
            .kafka_brokers
            .split(',')
            .any(|b| b.trim().is_empty() || !b.contains(':'))
        {
            return Err(format!(
                "--kafka-brokers {:?} must be a comma-separated list of host:port",
                self.kafka_brokers
            ));
        }
        if self.retry.initial_backoff.is_zero()
            || self.retry.max_backoff < self.retry.initial_backoff
        {
            return Err("the retry backoff must be positive and not above its maximum".into());
        }
        Ok(())
    }
}

/// Builds the consumer task of a binding. One per owner: its NATS
/// connection is opened on first use and shared by every NATS binding.
pub struct Sources {
    opts: TopicOptions,
    invoker: Invoker,
    resolver: Arc<dyn Resolve>,
    stats: Stats,
    nats: Arc<OnceCell<async_nats::Client>>,
}

impl Sources {
    pub fn new(opts: TopicOptions, resolver: Arc<dyn Resolve>, stats: Stats) -> Sources {
        Sources {
            opts,
            invoker: Invoker::new(),
            resolver,
            stats,
            nats: Arc::new(OnceCell::new()),
        }
    }

    /// The task consuming for `b` until `cancel`. It never fails: what
    /// goes wrong is reported through `health` (and retried inside the
    /// source when retrying can help). Counters go to the trigger's entry
    /// in the shared [`Stats`].
    pub fn task(
        &self,
        b: &Binding,
        health: HealthSlot,
        cancel: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let counters = self.stats.counters(b.kind.kind(), &b.namespace, &b.trigger);
        let (invoker, resolver, policy) =
            (self.invoker.clone(), self.resolver.clone(), self.opts.retry);
        let (kind, namespace, trigger, function, topic) = (
            b.kind,
            b.namespace.clone(),
            b.trigger.clone(),
            b.function.clone(),
            b.topic.clone(),
        );
        let (cell, url, jetstream) = (
            self.nats.clone(),
            self.opts.nats_url.clone(),
            self.opts.nats_jetstream,
        );
        let brokers = self.opts.kafka_brokers.clone();
        async move {
            let src: Box<dyn EventSource> = match kind {
                TopicKind::Nats => {
                    let client = tokio::select! {
                        _ = cancel.cancelled() => return,
                        r = cell.get_or_try_init(|| crate::nats::connect(&url)) => r,
                    };
                    let client = match client {
                        Ok(cl) => cl.clone(),
                        Err(e) => {
                            health.set(Health::Degraded(crate::chain(&e)));
                            return;
                        }
                    };
                    Box::new(crate::nats::NatsSource {
                        client,
                        jetstream,
                        namespace,
                        trigger,
                        function,
                        topic,
                        invoker,
                        resolver,
                        policy,
                        counters,
                    })
                }
                TopicKind::Kafka => Box::new(crate::kafka::KafkaSource {
                    brokers,
                    namespace,
                    trigger,
                    function,
                    topic,
                    invoker,
                    resolver,
                    policy,
                    counters,
                }),
            };
            run_source(src, health, cancel).await;
        }
    }
}

/// Run a source until `cancel`; a configuration error it returns is shown
/// as `Degraded`.
pub async fn run_source(src: Box<dyn EventSource>, health: HealthSlot, cancel: CancellationToken) {
    if let Err(e) = src.run(health.clone(), cancel).await {
        health.set(Health::Degraded(crate::chain(&e)));
    }
}

/// A trigger's state and message from the health of its consumers
/// (function name, health): `Degraded` when any is (naming each), else
/// `Starting` while any is, else `Ready` with what each consumes.
pub fn summarize(fns: &mut [(String, Health)]) -> (&'static str, String) {
    fns.sort_by(|a, b| a.0.cmp(&b.0));
    let degraded: Vec<String> = fns
        .iter()
        .filter_map(|(f, h)| match h {
            Health::Degraded(why) => Some(format!("{f}: {why}")),
            _ => None,
        })
        .collect();
    if !degraded.is_empty() {
        return ("Degraded", degraded.join("; "));
    }
    if fns.iter().any(|(_, h)| *h == Health::Starting) {
        return ("Starting", "connecting".to_string());
    }
    let mut ready: Vec<String> = fns
        .iter()
        .filter_map(|(f, h)| match h {
            Health::Ready(what) => Some(format!("{f}: {what}")),
            _ => None,
        })
        .collect();
    ready.dedup();
    ("Ready", ready.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubeless_api::selector::parse_selector;

    #[test]
    fn a_trigger_binds_every_matching_function_of_its_namespace() {
        let labels = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let (gold, plain, other) = (
            labels(&[("topic", "t"), ("tier", "gold")]),
            labels(&[("topic", "t")]),
            labels(&[("topic", "other")]),
        );
        let fns = [
            FunctionRef {
                namespace: "a",
                name: "gold",
                labels: &gold,
            },
            FunctionRef {
                namespace: "a",
                name: "plain",
                labels: &plain,
            },
            FunctionRef {
                namespace: "a",
                name: "other",
                labels: &other,
            },
            FunctionRef {
                namespace: "b",
                name: "elsewhere",
                labels: &plain,
            },
        ];
        let all = TopicTriggerSpec {
            topic: "t".into(),
            function_selector: parse_selector("topic=t").expect("selector"),
        };
        let none = TopicTriggerSpec {
            topic: "t".into(),
            function_selector: parse_selector("x=y").expect("selector"),
        };
        let (b, waiting) = bind(
            TopicKind::Kafka,
            &[
                TriggerRef {
                    namespace: "a",
                    name: "all",
                    uid: "u1",
                    spec: &all,
                },
                TriggerRef {
                    namespace: "a",
                    name: "none",
                    uid: "u2",
                    spec: &none,
                },
            ],
            &fns,
        );
        let got: Vec<(&str, &str)> = b
            .iter()
            .map(|b| (b.trigger.as_str(), b.function.as_str()))
            .collect();
        assert_eq!(got, [("all", "gold"), ("all", "plain")]);
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].trigger, "none");
        assert!(
            waiting[0].message.contains("\"x=y\""),
            "{}",
            waiting[0].message
        );
    }

    #[test]
    fn degraded_wins_over_starting_over_ready() {
        let mut fns = vec![
            ("b".to_string(), Health::Ready("topic t".into())),
            ("a".to_string(), Health::Starting),
        ];
        assert_eq!(summarize(&mut fns).0, "Starting");
        fns.push(("c".to_string(), Health::Degraded("broker down".into())));
        assert_eq!(
            summarize(&mut fns),
            ("Degraded", "c: broker down".to_string())
        );
        let mut ok = vec![
            ("b".to_string(), Health::Ready("x".into())),
            ("a".to_string(), Health::Ready("y".into())),
        ];
        assert_eq!(summarize(&mut ok), ("Ready", "a: y; b: x".to_string()));
    }

    #[test]
    fn broker_options_are_checked() {
        assert!(TopicOptions::default().validate().is_ok());
        let bad = TopicOptions {
            kafka_brokers: "kafka".into(),
            ..TopicOptions::default()
        };
        assert!(
            bad.validate().is_err_and(|e| e.contains("--kafka-brokers")),
            "{:?}",
            bad.validate()
        );
    }
}
