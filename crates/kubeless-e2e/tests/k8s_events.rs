//! Kafka and NATS triggers consumed by controller-manager (Kubernetes mode)
//! against real parts: the harness kube-apiserver, a tansu Kafka broker and
//! a nats-server with JetStream, and the function served by a real
//! `kubeless-runtime` host with a Python handler on a loopback port (the
//! harness has no kubelet, so pods never run). `--function-url-template
//! http://127.0.0.1:{port}` sends events there; `{port}` is the function
//! Service's port, which the Function sets to the host's port.
//!
//! Each test runs two in-process controller-managers with leader election
//! on a short lease, kills the leader in the middle of a stream (its task
//! is aborted: the lease is not released and in-flight deliveries are cut;
//! dropping the Kafka consumer still lets librdkafka commit what was
//! stored, so a process `kill -9` is harsher, see triggers_kafka.rs for
//! that against the same consumer code), and checks
//! that the standby takes over and every message arrives (duplicates are
//! counted, not failed), that a poison message ends in the dead-letter
//! topic/subject with the trigger's counters, and that deleting the
//! trigger stops its consumer.
//!
//! Without `KUBECONFIG` the tests are skipped, except when `REQUIRE_K8S=1`
//! or `CI` is set: then they fail. A missing broker or binary fails.

mod common;
mod k8s_support;
mod triggers_support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::host::Host;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use kubeless_controller::events::{EventOptions, UrlTemplate};
use kubeless_controller::lease::Timing;
use kubeless_controller::resources::{Function, KafkaTrigger, NatsTrigger};
use kubeless_events::RetryPolicy;
use kubeless_events::topic::TopicOptions;
use serde_json::{Value, json};
use triggers_support::{Broker, SINK, seq_counts};

/// How many messages each test streams through the leader change.
const MESSAGES: u64 = 300;

/// The sink function served by a `kubeless-runtime` host on a loopback
/// port; it appends every event to the returned file (in the returned
/// directory, which must outlive the host).
struct SinkHost {
    host: Host,
    sink: PathBuf,
    _dir: tempfile::TempDir,
}

fn start_host() -> SinkHost {
    let dir = tempfile::tempdir().expect("sink dir");
    let sink = dir.path().join("sink.jsonl");
    let host = Host::python(
        "127.0.0.1",
        "sink",
        "handler",
        SINK,
        &[("SINK", &sink.to_string_lossy()), ("ME", "sink")],
    );
    SinkHost {
        host,
        sink,
        _dir: dir,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Kafka,
    Nats,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Kafka => "kafka",
            Kind::Nats => "nats",
        }
    }
}

/// The broker of a test and how to talk to it.
struct Bus {
    kind: Kind,
    broker: Broker,
}

impl Bus {
    fn start(kind: Kind) -> Bus {
        let broker = match kind {
            Kind::Kafka => Broker::tansu(),
            Kind::Nats => Broker::nats(),
        };
        Bus { kind, broker }
    }

    fn options(&self) -> EventOptions {
        let (brokers, url) = match self.kind {
            Kind::Kafka => (self.broker.brokers(), "nats://127.0.0.1:1".to_string()),
            Kind::Nats => ("127.0.0.1:1".to_string(), self.broker.nats_url()),
        };
        EventOptions {
            topics: TopicOptions {
                nats_url: url,
                nats_jetstream: true,
                kafka_brokers: brokers,
                retry: RetryPolicy {
                    max_retries: 2,
                    initial_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_millis(400),
                },
            },
            function_url: UrlTemplate::parse("http://127.0.0.1:{port}").expect("template"),
        }
    }

    async fn create_topic(&self, topic: &str) {
        if self.kind == Kind::Kafka {
            kubeless_events::kafka::create_topic(&self.broker.brokers(), topic, 2, false)
                .await
                .expect("create the Kafka topic");
        }
    }

    async fn publish(&self, topic: &str, range: std::ops::Range<u64>) {
        let (kind, addr, topic) = (self.kind, self.address(), topic.to_string());
        tokio::task::spawn_blocking(move || match kind {
            Kind::Kafka => triggers_support::produce(&addr, &topic, range),
            Kind::Nats => triggers_support::publish_many(&addr, &topic, range),
        })
        .await
        .expect("publish");
    }

    fn address(&self) -> String {
        match self.kind {
            Kind::Kafka => self.broker.brokers(),
            Kind::Nats => self.broker.nats_url(),
        }
    }

    /// Publish one poison message and read it back from the dead-letter
    /// topic/subject: (body, headers).
    async fn poison_to_dead_letter(&self, topic: &str) -> (String, BTreeMap<String, String>) {
        let body = r#"{"seq": 5000, "poison": true}"#.to_string();
        let dl = format!("{topic}.deadletter");
        match self.kind {
            Kind::Kafka => {
                let (addr, topic) = (self.address(), topic.to_string());
                tokio::task::spawn_blocking(move || {
                    triggers_support::produce_bodies(&addr, &topic, &[body]);
                    triggers_support::dead_letters(&addr, &dl, 1).remove(0)
                })
                .await
                .expect("dead letter")
            }
            Kind::Nats => {
                let c = async_nats::connect(self.address())
                    .await
                    .expect("connect to nats");
                c.publish(topic.to_string(), body.into())
                    .await
                    .expect("publish");
                c.flush().await.expect("flush");
                // The dead-letter subject is kept in a stream: read its last
                // message once it is there.
                let js = async_nats::jetstream::new(c);
                let stream = format!("KUBELESS_DL_{topic}");
                let m = k8s_support::eventually("the dead letter", 60, || async {
                    js.get_stream(&stream)
                        .await
                        .ok()?
                        .get_last_raw_message_by_subject(&dl)
                        .await
                        .ok()
                })
                .await;
                let headers = m
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            v.first()
                                .map(|v| v.as_str().to_string())
                                .unwrap_or_default(),
                        )
                    })
                    .collect();
                (String::from_utf8_lossy(&m.payload).to_string(), headers)
            }
        }
    }

    fn trigger(&self, name: &str, topic: &str) -> Value {
        let kind = match self.kind {
            Kind::Kafka => "KafkaTrigger",
            Kind::Nats => "NATSTrigger",
        };
        json!({
            "apiVersion": "kubeless.io/v1beta1", "kind": kind,
            "metadata": {"name": name, "labels": {"created-by": "kubeless"}},
            "spec": {"topic": topic, "functionSelector": {"matchLabels": {"app": "sink"}}}
        })
    }

    fn event_namespace(&self) -> &'static str {
        match self.kind {
            Kind::Kafka => "kafkatriggers.kubeless.io",
            Kind::Nats => "natstriggers.kubeless.io",
        }
    }
}

/// The trigger as JSON (both kinds have the same shape), if it exists.
async fn trigger(c: &Client, kind: Kind, ns: &str, name: &str) -> Option<Value> {
    match kind {
        Kind::Kafka => Api::<KafkaTrigger>::namespaced(c.clone(), ns)
            .get_opt(name)
            .await
            .expect("read trigger")
            .map(|t| serde_json::to_value(t).expect("json")),
        Kind::Nats => Api::<NatsTrigger>::namespaced(c.clone(), ns)
            .get_opt(name)
            .await
            .expect("read trigger")
            .map(|t| serde_json::to_value(t).expect("json")),
    }
}

async fn create_trigger(c: &Client, bus: &Bus, ns: &str, name: &str, topic: &str) {
    let obj = bus.trigger(name, topic);
    let pp = PostParams::default();
    match bus.kind {
        Kind::Kafka => {
            let t: KafkaTrigger = serde_json::from_value(obj).expect("trigger");
            Api::<KafkaTrigger>::namespaced(c.clone(), ns)
                .create(&pp, &t)
                .await
                .map(|_| ())
        }
        Kind::Nats => {
            let t: NatsTrigger = serde_json::from_value(obj).expect("trigger");
            Api::<NatsTrigger>::namespaced(c.clone(), ns)
                .create(&pp, &t)
                .await
                .map(|_| ())
        }
    }
    .expect("create trigger");
}

async fn delete_trigger(c: &Client, kind: Kind, ns: &str, name: &str) {
    let dp = DeleteParams::default();
    match kind {
        Kind::Kafka => Api::<KafkaTrigger>::namespaced(c.clone(), ns)
            .delete(name, &dp)
            .await
            .map(|_| ()),
        Kind::Nats => Api::<NatsTrigger>::namespaced(c.clone(), ns)
            .delete(name, &dp)
            .await
            .map(|_| ()),
    }
    .expect("delete trigger");
}

fn sink_function(port: u16) -> Function {
    serde_json::from_value(json!({
        "apiVersion": "kubeless.io/v1beta1", "kind": "Function",
        "metadata": {"name": "sink", "labels": {"created-by": "kubeless", "app": "sink"}},
        "spec": {
            "handler": "sink.handler", "runtime": "python3.11", "timeout": "30",
            "function": SINK, "function-content-type": "text", "checksum": "", "deps": "",
            "deployment": {},
            "service": {"ports": [{"name": "http-function-port", "protocol": "TCP",
                                   "port": port, "targetPort": 8080}],
                        "type": "ClusterIP"},
            "horizontalPodAutoscaler": {}
        }
    }))
    .expect("function")
}

/// A controller-manager that leads on a short lease.
fn manager(
    c: &Client,
    ns: &str,
    identity: &str,
    events: EventOptions,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let mut opts = k8s_support::options(ns, identity);
    opts.leader_election = Some(Timing {
        lease: Duration::from_secs(4),
        renew: Duration::from_secs(1),
        retry: Duration::from_millis(500),
    });
    opts.events = events;
    k8s_support::spawn_controller(c.clone(), opts)
}

async fn holder(c: &Client, ns: &str) -> Option<String> {
    Api::<Lease>::namespaced(c.clone(), ns)
        .get_opt(kubeless_controller::LEASE_NAME)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

async fn received(sink: &std::path::Path) -> BTreeMap<u64, usize> {
    let sink = sink.to_path_buf();
    tokio::task::spawn_blocking(move || seq_counts(&sink))
        .await
        .expect("read the sink")
}

async fn stream_through_a_leader_change(kind: Kind) {
    let Some(c) = k8s_support::client().await else {
        return;
    };
    let started = Instant::now();
    let bus = Bus::start(kind);
    let host = tokio::task::spawn_blocking(start_host)
        .await
        .expect("start the runtime host");
    let sink = host.sink.clone();
    k8s_support::install_crds(&c).await;
    let ns = format!("ev-{}-{}", kind.name(), std::process::id());
    k8s_support::namespace(&c, &ns).await;
    let fns: Api<Function> = Api::namespaced(c.clone(), &ns);
    fns.create(&PostParams::default(), &sink_function(host.host.port))
        .await
        .expect("create function");

    // A leads (its function controller creates the Service); B waits.
    let (a_stop, a_task) = manager(&c, &ns, "manager-a", bus.options());
    let svcs: Api<Service> = Api::namespaced(c.clone(), &ns);
    k8s_support::eventually("the function's Service", 60, || async {
        svcs.get_opt("sink").await.ok().flatten()
    })
    .await;
    assert_eq!(holder(&c, &ns).await.as_deref(), Some("manager-a"));
    let (b_stop, b_task) = manager(&c, &ns, "manager-b", bus.options());

    bus.create_topic("orders").await;
    create_trigger(&c, &bus, &ns, "orders", "orders").await;
    let st = k8s_support::eventually("the trigger to be Ready", 60, || async {
        let t = trigger(&c, kind, &ns, "orders").await?;
        (t["status"]["state"] == "Ready").then_some(t["status"].clone())
    })
    .await;
    assert_eq!(st["conditions"][0]["status"], "True", "{st}");

    let t0 = Instant::now();
    let half = MESSAGES / 2;
    bus.publish("orders", 0..half).await;
    let at_kill = k8s_support::eventually("deliveries before the kill", 60, || async {
        let n = received(&sink).await.len() as u64;
        (n >= half / 5).then_some(n)
    })
    .await;
    // The leader dies: the lease is not given up, deliveries are cut.
    a_task.abort();
    let _ = a_task.await;
    drop(a_stop);
    bus.publish("orders", half..MESSAGES).await;
    let sink_file = sink.clone();
    let dups = tokio::task::spawn_blocking(move || {
        triggers_support::wait_all(
            &sink_file,
            MESSAGES,
            Duration::from_secs(180),
            "events through a leader change",
        )
    })
    .await
    .expect("wait");
    let took = t0.elapsed();
    assert_eq!(holder(&c, &ns).await.as_deref(), Some("manager-b"));
    println!(
        "{}: {MESSAGES} messages, leader killed with {at_kill} of the first {half} delivered: all delivered, {dups} duplicates, {took:?}",
        kind.name()
    );
    // Had the standby consumed too, every message before the kill would
    // have come twice.
    assert!(
        (dups as u64) < half,
        "{dups} duplicates: both replicas consumed"
    );
    let sample = triggers_support::received(&sink);
    for e in &sample {
        assert_eq!(e["ns"], bus.event_namespace(), "{e}");
        assert_eq!(e["id"].as_str().map(str::len), Some(15), "{e}");
    }

    // A message the function always fails on goes to the dead letters.
    let (body, headers) = bus.poison_to_dead_letter("orders").await;
    assert!(body.contains("poison"), "{body}");
    assert!(
        headers
            .get("kubeless-dead-letter-reason")
            .is_some_and(|r| r.contains("HTTP 500")),
        "{headers:?}"
    );
    assert_eq!(
        headers
            .get("kubeless-dead-letter-attempts")
            .map(String::as_str),
        Some("3"),
        "{headers:?}"
    );
    assert_eq!(
        headers.get("kubeless-function").map(String::as_str),
        Some(format!("{ns}/sink").as_str()),
        "{headers:?}"
    );
    let st = k8s_support::eventually("the dead letter in the status", 30, || async {
        let t = trigger(&c, kind, &ns, "orders").await?;
        (t["status"]["deadLettered"].as_u64() == Some(1)).then_some(t["status"].clone())
    })
    .await;
    assert_eq!(st["retried"].as_u64(), Some(2), "{st}");
    assert!(st["delivered"].as_u64().unwrap_or(0) > 0, "{st}");

    // Deleting the trigger stops its consumer.
    delete_trigger(&c, kind, &ns, "orders").await;
    k8s_support::eventually("the trigger to be gone", 30, || async {
        trigger(&c, kind, &ns, "orders")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    // The controller sees the deletion through its watch (milliseconds on
    // loopback); give it a second before publishing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    bus.publish("orders", 9000..9010).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let late: Vec<u64> = received(&sink)
        .await
        .into_keys()
        .filter(|n| *n >= 9000)
        .collect();
    assert!(
        late.is_empty(),
        "a deleted trigger still delivered {late:?}"
    );

    b_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), b_task).await;
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(c.clone())
        .delete(&ns, &DeleteParams::default())
        .await;
    println!("{}: test took {:?}", kind.name(), started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_trigger_consumed_by_controller_manager_loses_nothing_through_a_leader_change() {
    stream_through_a_leader_change(Kind::Kafka).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_trigger_consumed_by_controller_manager_loses_nothing_through_a_leader_change() {
    stream_through_a_leader_change(Kind::Nats).await;
}
