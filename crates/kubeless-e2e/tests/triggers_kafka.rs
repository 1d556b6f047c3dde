//! Kafka triggers end to end against a real Kafka-protocol broker (tansu):
//! `kubeless topic`, selector fan-out and headers, ordering and delivery
//! through function restarts and a server `kill -9`, and the dead-letter
//! topic after the configured retries.

mod common;
mod triggers_support;

use std::time::{Duration, Instant};

use common::Server;
use triggers_support::*;

fn server(kafka: &Broker, extra: &[&str]) -> Server {
    let b = kafka.brokers();
    let mut args = vec!["--kafka-brokers", b.as_str()];
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

#[test]
fn kafka_topics_and_messages_reach_every_selected_function_with_headers() {
    let kafka = Broker::tansu();
    let s = server(&kafka, &[]);
    s.ok(&["topic", "create", "orders"]);
    let list = s.ok(&["topic", "list"]).stdout;
    assert!(list.lines().any(|l| l == "orders"), "{list}");
    let a = deploy_sink(&s, "fan-a", &["topic=orders"], false);
    let b = deploy_sink(&s, "fan-b", &["topic=orders"], false);
    let other = deploy_sink(&s, "other", &["topic=else"], false);
    create_trigger(&s, "kafka", "orders", "orders", "topic=orders");
    // A topic that does not exist is reported, not created.
    create_trigger(&s, "kafka", "ghost", "no-such-topic", "topic=orders");
    wait_trigger_ready(&s, "kafkatriggers", "orders");
    let st = wait_until(
        "the missing topic in the status",
        Duration::from_secs(30),
        || {
            let st = status(&s, "kafkatriggers", "ghost");
            st["message"]
                .as_str()
                .unwrap_or("")
                .contains("does not exist")
                .then_some(st)
        },
    );
    assert_eq!(st["state"], "Degraded", "{st}");

    s.ok(&[
        "topic",
        "publish",
        "--topic",
        "orders",
        "--data",
        r#"{"seq": 0}"#,
    ]);
    wait_all(&a, 1, Duration::from_secs(60), "fan-a");
    wait_all(&b, 1, Duration::from_secs(60), "fan-b");
    for e in received(&a).iter().chain(received(&b).iter()) {
        assert_eq!(e["ns"], "kafkatriggers.kubeless.io", "{e}");
        assert_eq!(e["topic"], "orders", "{e}");
        assert_eq!(e["type"], "application/json", "{e}");
        assert!(e["time"].as_str().unwrap_or("").ends_with("UTC"), "{e}");
        assert_eq!(e["id"].as_str().map(str::len), Some(15), "{e}");
    }
    assert!(
        received(&other).is_empty(),
        "an unselected function got messages"
    );

    s.ok(&["topic", "create", "scratch"]);
    s.ok(&["topic", "delete", "scratch"]);
    let list = s.ok(&["topic", "list"]).stdout;
    assert!(!list.lines().any(|l| l == "scratch"), "{list}");
    assert!(!s.fails(&["topic", "delete", "scratch"]).stderr.is_empty());
}

#[test]
fn kafka_thousand_messages_through_a_function_restart_lose_nothing_and_keep_order() {
    let kafka = Broker::tansu();
    let s = server(&kafka, &[]);
    s.ok(&["topic", "create", "load"]);
    let sink = deploy_sink(&s, "sink", &["app=sink"], false);
    create_trigger(&s, "kafka", "load", "load", "app=sink");
    wait_trigger_ready(&s, "kafkatriggers", "load");
    let brokers = kafka.brokers();
    let start = Instant::now();
    produce(&brokers, "load", 0..500);
    wait_until(
        "some deliveries before the kill",
        Duration::from_secs(60),
        || (seq_counts(&sink).len() >= 100).then_some(()),
    );
    assert!(kill_instances(&s) >= 1, "no instance to kill");
    produce(&brokers, "load", 500..1000);
    let dups = wait_all(
        &sink,
        1000,
        Duration::from_secs(180),
        "Kafka through a function restart",
    );
    println!(
        "Kafka: 1000 messages, function killed midway: all delivered, {dups} duplicates, {:?}",
        start.elapsed()
    );
    // One partition: first deliveries come in publish order.
    let mut firsts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for e in received(&sink) {
        if let Some(n) = e["data"]["seq"].as_u64()
            && seen.insert(n)
        {
            firsts.push(n);
        }
    }
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "partition order was not kept"
    );
}

#[test]
fn kafka_always_failing_function_ends_in_the_dead_letter_topic() {
    let kafka = Broker::tansu();
    let s = server(
        &kafka,
        &["--trigger-retries", "2", "--trigger-backoff-ms", "50"],
    );
    s.ok(&["topic", "create", "doomed"]);
    deploy_sink(&s, "broken", &["app=broken"], true);
    create_trigger(&s, "kafka", "doomed", "doomed", "app=broken");
    wait_trigger_ready(&s, "kafkatriggers", "doomed");
    let brokers = kafka.brokers();
    produce(&brokers, "doomed", 0..3);
    let st = wait_until("three dead letters", Duration::from_secs(60), || {
        let st = status(&s, "kafkatriggers", "doomed");
        (st["deadLettered"].as_u64() == Some(3)).then_some(st)
    });
    assert_eq!(st["retried"].as_u64(), Some(6), "{st}");
    let dead = dead_letters(&brokers, "doomed.deadletter", 3);
    for (body, h) in &dead {
        assert!(body.contains("seq"), "{body}");
        assert!(
            h.get("kubeless-dead-letter-reason")
                .is_some_and(|r| r.contains("HTTP 500")),
            "{h:?}"
        );
        assert_eq!(
            h.get("kubeless-dead-letter-attempts").map(String::as_str),
            Some("3"),
            "{h:?}"
        );
        assert_eq!(
            h.get("kubeless-original-topic").map(String::as_str),
            Some("doomed"),
            "{h:?}"
        );
    }
}

#[test]
fn kafka_consumption_resumes_from_the_committed_offset_after_kill_9() {
    let kafka = Broker::tansu();
    let mut s = server(&kafka, &[]);
    s.ok(&["topic", "create", "durable"]);
    let sink = deploy_sink_env(&s, "sink", &["app=sink"], &["SLOW=0.02"]);
    create_trigger(&s, "kafka", "durable", "durable", "app=sink");
    wait_trigger_ready(&s, "kafkatriggers", "durable");
    let brokers = kafka.brokers();
    let start = Instant::now();
    produce(&brokers, "durable", 0..300);
    // The sink takes 20 ms a message: after 150 the first offsets have
    // been committed (every second) and the stream is still going.
    wait_until(
        "some deliveries before the kill",
        Duration::from_secs(60),
        || (seq_counts(&sink).len() >= 150).then_some(()),
    );
    s.kill9();
    produce(&brokers, "durable", 300..600);
    s.restart();
    let dups = wait_all(&sink, 600, Duration::from_secs(180), "Kafka after kill -9");
    let redelivered_from_start = seq_counts(&sink).get(&0).copied().unwrap_or(0) > 1;
    println!(
        "Kafka: server kill -9 mid-stream: 600 messages delivered, {dups} duplicates, {:?}",
        start.elapsed()
    );
    assert!(
        dups < 300 && !redelivered_from_start,
        "consumption restarted from the beginning instead of the committed offset ({dups} duplicates)"
    );
}
