//! Shared by the message-trigger tests: real brokers (nats-server, tansu)
//! started on free loopback ports and stopped by PID, the sink function
//! that appends every event it gets to a file, and bounded waits.
//!
//! A missing broker binary fails the test with the install command; nothing
//! here skips.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::Server;

/// A free loopback port (bound, then released for the broker).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn find_bin(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    extra
        .iter()
        .cloned()
        .chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join(name)),
        )
        .chain([
            PathBuf::from("/usr/sbin").join(name),
            PathBuf::from("/usr/bin").join(name),
        ])
        .find(|p| p.is_file())
}

fn wait_port(addr: SocketAddr, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "{what} exited ({st}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {addr} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A broker process, killed (by its PID) on drop.
pub struct Broker {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    /// `nats-server` with JetStream on a free loopback port.
    pub fn nats() -> Broker {
        let bin = find_bin("nats-server", &[]).expect(
            "nats-server is not installed: run scripts/setup.sh (scripts/deps/nats.sh installs it with apt)",
        );
        let dir = tempfile::tempdir().expect("nats dir");
        let port = free_port();
        let log = dir.path().join("nats.log");
        let mut child = Command::new(bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "--jetstream",
                "--store_dir",
            ])
            .arg(dir.path().join("js"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("nats.err")).expect("log"),
            ))
            .spawn()
            .expect("start nats-server");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        wait_port(addr, &mut child, "nats-server", &log);
        Broker { child, addr, dir }
    }

    pub fn nats_url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// A tansu Kafka-protocol broker on a free loopback port.
    pub fn tansu() -> Broker {
        let cache = std::env::var_os("KUBELESS_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/kubeless-dev")))
            .unwrap_or_default();
        let bin = find_bin("tansu", &[cache.join("tansu-0.6.0/bin/tansu")]).expect(
            "tansu is not installed: run scripts/setup.sh (scripts/deps/kafka.sh builds it into the cache)",
        );
        let dir = tempfile::tempdir().expect("tansu dir");
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = dir.path().join("tansu.log");
        let mut child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("tansu.err")).expect("log"),
            ))
            .spawn()
            .expect("start tansu");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        wait_port(addr, &mut child, "tansu", &log);
        Broker { child, addr, dir }
    }

    pub fn brokers(&self) -> String {
        self.addr.to_string()
    }
}

/// Appends one JSON line per event to `$SINK`; `$FAIL` makes it answer
/// 500, `$SLOW` sleeps that many seconds first; a `{"poison": true}`
/// message always gets 500.
pub const SINK: &str = r#"import json, os, time

def handler(event, context):
    if os.environ.get('SLOW'):
        time.sleep(float(os.environ['SLOW']))
    if os.environ.get('FAIL'):
        raise Exception('this function always fails')
    d = event['data']
    if isinstance(d, bytes):
        d = d.decode()
    if isinstance(d, dict) and d.get('poison'):
        raise Exception('poison message')
    h = event['extensions']['request'].headers
    line = json.dumps({'data': d, 'ns': event['event-namespace'], 'type': event['event-type'],
        'time': event['event-time'], 'id': event['event-id'], 'topic': h.get('event-topic'),
        'fn': os.environ.get('ME')})
    with open(os.environ['SINK'], 'a') as f:
        f.write(line + '\n')
    return 'ok'
"#;

/// Deploy the sink as `name` with labels, writing to `<home>/sink-<name>`.
/// `kubeless trigger <kind> create NAME --trigger-topic T --function-selector SEL`.
pub fn create_trigger(s: &Server, kind: &str, name: &str, topic: &str, selector: &str) {
    s.ok(&[
        "trigger",
        kind,
        "create",
        name,
        "--trigger-topic",
        topic,
        "--function-selector",
        selector,
    ]);
}

pub fn deploy_sink(s: &Server, name: &str, labels: &[&str], fail: bool) -> PathBuf {
    deploy_sink_env(s, name, labels, if fail { &["FAIL=1"] } else { &[] })
}

/// Deploy the sink with extra `--env` values.
pub fn deploy_sink_env(s: &Server, name: &str, labels: &[&str], env: &[&str]) -> PathBuf {
    let code = s.file("sink.py", SINK);
    let sink = s.home.path().join(format!("sink-{name}"));
    let sink_env = format!("SINK={}", sink.display());
    let me = format!("ME={name}");
    let mut args = vec![
        "function",
        "deploy",
        name,
        "--runtime",
        "python3.11",
        "--handler",
        "sink.handler",
        "--from-file",
        &code,
        "--env",
        &sink_env,
        "--env",
        &me,
    ];
    for e in env {
        args.extend(["--env", e]);
    }
    for l in labels {
        args.extend(["--label", l]);
    }
    s.ok(&args);
    s.wait_ready(name);
    sink
}

/// Every event a sink received.
pub fn received(sink: &Path) -> Vec<Value> {
    std::fs::read_to_string(sink)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// How often each `seq` arrived (messages are `{"seq": N}`).
pub fn seq_counts(sink: &Path) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for e in received(sink) {
        if let Some(n) = e["data"]["seq"].as_u64() {
            *m.entry(n).or_insert(0) += 1;
        }
    }
    m
}

/// Wait until `seq` 0..n all arrived; returns (duplicates, elapsed).
pub fn wait_all(sink: &Path, n: u64, timeout: Duration, what: &str) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let counts = seq_counts(sink);
        let missing: Vec<u64> = (0..n).filter(|i| !counts.contains_key(i)).collect();
        if missing.is_empty() {
            return counts.values().map(|c| c - 1).sum();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {n} messages never arrived within {timeout:?} (first missing: {:?})",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A trigger's stored status.
pub fn status(s: &Server, plural: &str, name: &str) -> Value {
    let v: Value = reqwest::blocking::Client::new()
        .get(format!(
            "{}/apis/kubeless.io/v1beta1/namespaces/default/{plural}/{name}",
            s.api()
        ))
        .bearer_auth(s.token())
        .send()
        .expect("read trigger")
        .json()
        .expect("trigger JSON");
    v["status"].clone()
}

/// Wait until a trigger's status is Ready (its consumers are in place).
pub fn wait_trigger_ready(s: &Server, plural: &str, name: &str) -> Value {
    wait_until(
        &format!("{plural}/{name} to be Ready"),
        Duration::from_secs(60),
        || {
            let st = status(s, plural, name);
            (st["state"] == "Ready").then_some(st)
        },
    )
}

/// SIGKILL every instance of the server's functions (the supervisor
/// restarts them).
pub fn kill_instances(s: &Server) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(s.home.path().join("server/run/pids"))
        .expect("pids")
        .flatten()
    {
        if let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            n += 1;
        }
    }
    n
}

/// A tokio runtime for the test's own broker clients.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Publish `{"seq": N}` for every N in `range` to a Kafka topic and wait
/// for the broker's acks.
pub fn produce(brokers: &str, topic: &str, range: std::ops::Range<u64>) {
    let bodies: Vec<String> = range.map(|i| format!("{{\"seq\": {i}}}")).collect();
    produce_bodies(brokers, topic, &bodies);
}

/// Publish each body as one Kafka message and wait for the broker's acks.
pub fn produce_bodies(brokers: &str, topic: &str, bodies: &[String]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    rt().block_on(async {
        let p: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        let mut pending = Vec::new();
        for body in bodies {
            pending.push(
                p.send_result(FutureRecord::<(), _>::to(topic).payload(body))
                    .expect("queue"),
            );
        }
        for d in pending {
            d.await.expect("delivery").expect("broker ack");
        }
    });
}

/// Read `n` messages of a Kafka dead-letter topic from its start: (body,
/// headers).
pub fn dead_letters(
    brokers: &str,
    topic: &str,
    n: usize,
) -> Vec<(String, BTreeMap<String, String>)> {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Headers;
    rt().block_on(async {
        let c: StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("test-dead-letters-{topic}"))
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        c.subscribe(&[topic]).expect("subscribe");
        let mut got = Vec::new();
        while got.len() < n {
            match tokio::time::timeout(Duration::from_secs(60), c.recv()).await {
                Ok(Ok(m)) => {
                    let mut h = BTreeMap::new();
                    if let Some(hs) = m.headers() {
                        for x in hs.iter() {
                            h.insert(
                                x.key.to_string(),
                                String::from_utf8_lossy(x.value.unwrap_or_default()).to_string(),
                            );
                        }
                    }
                    got.push((
                        String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string(),
                        h,
                    ));
                }
                Ok(Err(e)) => panic!("reading the dead-letter topic: {e}"),
                Err(_) => panic!("only {} dead letters in the topic", got.len()),
            }
        }
        got
    })
}

/// Publish `{"seq": N}` for every N in `range` to a NATS subject.
pub fn publish_many(url: &str, subject: &str, range: std::ops::Range<u64>) {
    rt().block_on(async {
        let c = async_nats::connect(url).await.expect("connect to nats");
        for i in range {
            c.publish(subject.to_string(), format!("{{\"seq\": {i}}}").into())
                .await
                .expect("publish");
        }
        c.flush().await.expect("flush");
    });
}
