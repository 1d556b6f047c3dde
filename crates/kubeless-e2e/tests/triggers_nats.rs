//! NATS triggers end to end against a real nats-server with JetStream:
//! selector fan-out, headers, delivery through function restarts and a
//! server `kill -9`, and dead letters after the configured retries.

mod common;
mod triggers_support;

use std::time::{Duration, Instant};

use common::Server;
use futures_util::StreamExt;
use triggers_support::*;

fn server(nats: &Broker, extra: &[&str]) -> Server {
    let url = nats.nats_url();
    let mut args = vec!["--nats-url", url.as_str()];
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

#[test]
fn nats_messages_reach_every_selected_function_with_headers() {
    let nats = Broker::nats();
    let s = server(&nats, &[]);
    let a = deploy_sink(&s, "fan-a", &["topic=orders"], false);
    let b = deploy_sink(&s, "fan-b", &["topic=orders", "tier=gold"], false);
    let other = deploy_sink(&s, "other", &["topic=else"], false);
    create_trigger(&s, "nats", "orders", "orders", "topic=orders");
    // A selector that matches nothing waits and says so.
    create_trigger(&s, "nats", "nobody", "orders", "team=none");
    wait_trigger_ready(&s, "natstriggers", "orders");
    let st = wait_until(
        "the waiting trigger's status",
        Duration::from_secs(10),
        || {
            let st = status(&s, "natstriggers", "nobody");
            (st["state"] == "Waiting").then_some(st)
        },
    );
    assert!(
        st["message"]
            .as_str()
            .unwrap_or("")
            .contains("matches the selector"),
        "{st}"
    );

    let url = nats.nats_url();
    let r = s.ok(&[
        "trigger",
        "nats",
        "publish",
        "--url",
        &url,
        "--topic",
        "orders",
        "--message",
        r#"{"seq": 0}"#,
    ]);
    assert!(r.stderr.contains("Published [orders]"), "{r}");
    wait_all(&a, 1, Duration::from_secs(20), "fan-a");
    wait_all(&b, 1, Duration::from_secs(20), "fan-b");
    for e in received(&a).iter().chain(received(&b).iter()) {
        assert_eq!(e["ns"], "natstriggers.kubeless.io", "{e}");
        assert_eq!(e["type"], "application/json", "{e}");
        assert!(e["time"].as_str().unwrap_or("").ends_with("UTC"), "{e}");
        assert_eq!(e["id"].as_str().map(str::len), Some(15), "{e}");
        assert!(e["topic"].is_null(), "NATS sends no event-topic: {e}");
    }

    // A function deployed later that matches is picked up.
    let late = deploy_sink(&s, "fan-late", &["topic=orders"], false);
    wait_until(
        "the late function's consumer",
        Duration::from_secs(30),
        || {
            let st = status(&s, "natstriggers", "orders");
            (st["state"] == "Ready" && st["message"].as_str().unwrap_or("").contains("fan-late"))
                .then_some(())
        },
    );
    publish_many(&url, "orders", 1..2);
    wait_until(
        "the late function's first message",
        Duration::from_secs(20),
        || seq_counts(&late).contains_key(&1).then_some(()),
    );
    wait_all(&a, 2, Duration::from_secs(20), "fan-a");
    assert!(
        received(&other).is_empty(),
        "an unselected function got messages"
    );
    wait_until(
        "5 deliveries in the status",
        Duration::from_secs(10),
        || {
            (status(&s, "natstriggers", "orders")["delivered"]
                .as_u64()
                .unwrap_or(0)
                >= 5)
                .then_some(())
        },
    );
}

#[test]
fn nats_thousand_messages_through_a_function_restart_lose_nothing() {
    let nats = Broker::nats();
    let s = server(&nats, &[]);
    let sink = deploy_sink(&s, "sink", &["app=sink"], false);
    create_trigger(&s, "nats", "load", "load", "app=sink");
    wait_trigger_ready(&s, "natstriggers", "load");
    let url = nats.nats_url();
    let start = Instant::now();
    publish_many(&url, "load", 0..500);
    wait_until(
        "some deliveries before the kill",
        Duration::from_secs(30),
        || (seq_counts(&sink).len() >= 100).then_some(()),
    );
    assert!(kill_instances(&s) >= 1, "no instance to kill");
    publish_many(&url, "load", 500..1000);
    let dups = wait_all(
        &sink,
        1000,
        Duration::from_secs(120),
        "NATS through a function restart",
    );
    println!(
        "NATS: 1000 messages, function killed midway: all delivered, {dups} duplicates, {:?}",
        start.elapsed()
    );
    let st = status(&s, "natstriggers", "load");
    assert_eq!(st["deadLettered"].as_u64().unwrap_or(0), 0, "{st}");
}

#[test]
fn nats_always_failing_function_ends_in_the_dead_letter_subject() {
    let nats = Broker::nats();
    let s = server(
        &nats,
        &["--trigger-retries", "2", "--trigger-backoff-ms", "50"],
    );
    deploy_sink(&s, "broken", &["app=broken"], true);
    create_trigger(&s, "nats", "doomed", "doomed", "app=broken");
    wait_trigger_ready(&s, "natstriggers", "doomed");
    let url = nats.nats_url();
    let dead = rt().block_on(async {
        let c = async_nats::connect(url.as_str()).await.expect("connect");
        let mut sub = c.subscribe("doomed.deadletter").await.expect("subscribe");
        c.flush().await.expect("flush");
        for i in 0..3 {
            c.publish("doomed", format!("{{\"seq\": {i}}}").into())
                .await
                .expect("publish");
        }
        c.flush().await.expect("flush");
        let mut got = Vec::new();
        while got.len() < 3 {
            match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
                Ok(Some(m)) => got.push(m),
                _ => panic!("only {} dead letters arrived", got.len()),
            }
        }
        got
    });
    for m in &dead {
        let h = m.headers.as_ref().expect("dead letters carry headers");
        let reason = h
            .get("kubeless-dead-letter-reason")
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        assert!(reason.contains("HTTP 500"), "reason: {reason}");
        assert_eq!(
            h.get("kubeless-dead-letter-attempts").map(|v| v.as_str()),
            Some("3")
        );
        assert_eq!(
            h.get("kubeless-function").map(|v| v.as_str()),
            Some("default/broken")
        );
    }
    let st = wait_until("the dead-letter counters", Duration::from_secs(10), || {
        let st = status(&s, "natstriggers", "doomed");
        (st["deadLettered"].as_u64() == Some(3)).then_some(st)
    });
    assert_eq!(st["retried"].as_u64(), Some(6), "{st}");
    let metrics = reqwest::blocking::get(format!("{}/metrics", s.api()))
        .expect("metrics")
        .text()
        .expect("text");
    assert!(
        metrics.contains(r#"kubeless_trigger_dead_lettered_total{kind="NATSTrigger",namespace="default",trigger="doomed"} 3"#),
        "{metrics}"
    );
    // The consumer keeps moving: a message after the dead letters is handled too.
    assert_eq!(st["inFlight"].as_u64().unwrap_or(0), 0, "{st}");
}

#[test]
fn nats_consumption_resumes_after_the_server_is_killed() {
    let nats = Broker::nats();
    let mut s = server(&nats, &[]);
    let sink = deploy_sink(&s, "sink", &["app=sink"], false);
    create_trigger(&s, "nats", "durable", "durable", "app=sink");
    wait_trigger_ready(&s, "natstriggers", "durable");
    let url = nats.nats_url();
    let start = Instant::now();
    publish_many(&url, "durable", 0..300);
    wait_until(
        "some deliveries before the kill",
        Duration::from_secs(30),
        || (!seq_counts(&sink).is_empty()).then_some(()),
    );
    s.kill9();
    // Published while no server is running: JetStream keeps them.
    publish_many(&url, "durable", 300..600);
    s.restart();
    let dups = wait_all(&sink, 600, Duration::from_secs(120), "NATS after kill -9");
    println!(
        "NATS: server kill -9 mid-stream: 600 messages delivered, {dups} duplicates, {:?}",
        start.elapsed()
    );
}
