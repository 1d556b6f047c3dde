//! Kafka triggers (librdkafka, bundled): one consumer group per (trigger,
//! function), named `<namespace>_<trigger>_<function>_<topic>`, plus the
//! topic administration behind `kubeless topic`.
//!
//! The group holds the committed offsets; the consumer assigns itself every
//! partition of the topic (looked up again every [`PARTITION_CHECK`])
//! instead of joining the group's rebalance protocol. A restarted server
//! therefore resumes at once from the committed offsets, without waiting
//! for the killed consumer's session to expire, and a delivery that waits
//! for an unavailable function never makes the consumer drop out of a
//! group.
//!
//! Delivery is at-least-once and ordered per partition: messages are handled
//! one at a time, and a message's offset is stored for commit only after
//! the function answered 2xx or the message was written (and acknowledged
//! by the broker) to the dead-letter topic `<topic>.deadletter` with the
//! failure in `kubeless-dead-letter-*` headers. Stored offsets are committed
//! every [`COMMIT_EVERY`] and on shutdown; after `kill -9` the messages
//! handled since the last commit are delivered again (duplicates).
//!
//! A new consumer group starts at the earliest retained offset (Kubeless
//! started at the newest and lost what was published while the group was
//! being created). A topic that does not exist is reported, not created.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::deliver::{Destination, Outcome, RetryPolicy, deliver};
use crate::event::{Event, EventSourceKind};
use crate::invoke::{Invoker, Resolve};
use crate::source::{EventSource, Health, HealthSlot, SourceFuture};
use crate::stats::Counters;
use crate::{EventsError, chain};

/// How often stored offsets are committed.
pub const COMMIT_EVERY: Duration = Duration::from_secs(1);
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the topic's partitions are looked up again.
pub const PARTITION_CHECK: Duration = Duration::from_secs(30);
/// How long a partition resumed from a committed offset may deliver nothing
/// (while messages are there) before it is read again from its start.
const RESUME_STALL: Duration = Duration::from_secs(3);
const RECONNECT: Duration = Duration::from_secs(2);

/// The dead-letter topic of a topic.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.deadletter")
}

fn kafka_err(action: impl Into<String>, brokers: &str) -> impl FnOnce(KafkaError) -> EventsError {
    let action = action.into();
    let brokers = brokers.to_string();
    move |source| EventsError::Kafka {
        action,
        brokers,
        source: Box::new(source),
    }
}

fn base_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", "kubeless")
        .set("socket.timeout.ms", "10000")
        .set("log_level", "3");
    c
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EventsError> + Send + 'static,
) -> Result<T, EventsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EventsError::Config(format!("a Kafka call was interrupted: {e}")))?
}

/// Topic names on the brokers, sorted.
pub async fn list_topics(brokers: &str) -> Result<Vec<String>, EventsError> {
    let b = brokers.to_string();
    blocking(move || {
        let c: BaseConsumer = base_config(&b)
            .create()
            .map_err(kafka_err("create a client", &b))?;
        let md = c
            .fetch_metadata(None, METADATA_TIMEOUT)
            .map_err(kafka_err("list topics", &b))?;
        let mut names: Vec<String> = md.topics().iter().map(|t| t.name().to_string()).collect();
        names.sort();
        Ok(names)
    })
    .await
}

/// The partition ids of `topic`; empty when it does not exist.
pub async fn partitions(brokers: &str, topic: &str) -> Result<Vec<i32>, EventsError> {
    let b = brokers.to_string();
    let t = topic.to_string();
    blocking(move || {
        let c: BaseConsumer = base_config(&b)
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(kafka_err("create a client", &b))?;
        let md = c
            .fetch_metadata(Some(&t), METADATA_TIMEOUT)
            .map_err(kafka_err(format!("look up topic {t}"), &b))?;
        let mut ids: Vec<i32> = md
            .topics()
            .iter()
            .filter(|m| m.name() == t && m.error().is_none())
            .flat_map(|m| m.partitions().iter().map(|p| p.id()))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    })
    .await
}

/// Whether `topic` exists.
pub async fn topic_exists(brokers: &str, topic: &str) -> Result<bool, EventsError> {
    Ok(!partitions(brokers, topic).await?.is_empty())
}

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>, EventsError> {
    base_config(brokers)
        .create()
        .map_err(kafka_err("create an admin client", brokers))
}

/// Create a topic. With `exist_ok`, a topic that is already there is fine.
pub async fn create_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    exist_ok: bool,
) -> Result<(), EventsError> {
    let a = admin(brokers)?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let res = a
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .map_err(kafka_err(format!("create topic {topic}"), brokers))?;
    for r in res {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) if exist_ok => {}
            Err((t, code)) => {
                return Err(kafka_err(format!("create topic {t}"), brokers)(
                    KafkaError::AdminOp(code),
                ));
            }
        }
    }
    Ok(())
}

/// Delete a topic.
pub async fn delete_topic(brokers: &str, topic: &str) -> Result<(), EventsError> {
    let a = admin(brokers)?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let res = a
        .delete_topics(&[topic], &opts)
        .await
        .map_err(kafka_err(format!("delete topic {topic}"), brokers))?;
    for r in res {
        if let Err((t, code)) = r {
            if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                return Err(EventsError::NoSuchTopic { topic: t });
            }
            return Err(kafka_err(format!("delete topic {t}"), brokers)(
                KafkaError::AdminOp(code),
            ));
        }
    }
    Ok(())
}

/// A producer for `kubeless topic publish` and dead letters.
pub fn producer(brokers: &str) -> Result<FutureProducer, EventsError> {
    base_config(brokers)
        .set("message.timeout.ms", "30000")
        .set("acks", "all")
        .create()
        .map_err(kafka_err("create a producer", brokers))
}

/// Publish one message and wait for the broker's ack.
pub async fn publish(
    producer: &FutureProducer,
    brokers: &str,
    topic: &str,
    headers: Option<OwnedHeaders>,
    body: &[u8],
) -> Result<(), EventsError> {
    let mut rec: FutureRecord<'_, (), [u8]> = FutureRecord::to(topic).payload(body);
    if let Some(h) = headers {
        rec = rec.headers(h);
    }
    producer
        .send(rec, Duration::from_secs(30))
        .await
        .map(|_| ())
        .map_err(|(e, _)| match e {
            KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                EventsError::NoSuchTopic {
                    topic: topic.to_string(),
                }
            }
            e => kafka_err(format!("publish to {topic}"), brokers)(e),
        })
}

/// One Kafka trigger bound to one function.
pub struct KafkaSource {
    pub brokers: String,
    pub namespace: String,
    pub trigger: String,
    pub function: String,
    pub topic: String,
    pub invoker: Invoker,
    pub resolver: Arc<dyn Resolve>,
    pub policy: RetryPolicy,
    pub counters: Arc<Counters>,
}

impl KafkaSource {
    /// `<namespace>_<trigger>_<function>_<topic>`.
    pub fn group(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.namespace, self.trigger, self.function, self.topic
        )
    }

    fn consumer(&self) -> Result<StreamConsumer, EventsError> {
        base_config(&self.brokers)
            .set("group.id", self.group())
            .set("enable.auto.commit", "true")
            .set(
                "auto.commit.interval.ms",
                COMMIT_EVERY.as_millis().to_string(),
            )
            // Only offsets we stored (handled messages) are committed.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(kafka_err("create a consumer", &self.brokers))
    }

    fn dead_letter_headers(
        &self,
        reason: &str,
        attempts: u32,
        partition: i32,
        offset: i64,
    ) -> OwnedHeaders {
        let reason: String = reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(512)
            .collect();
        let pairs = [
            ("kubeless-dead-letter-reason", reason),
            ("kubeless-dead-letter-attempts", attempts.to_string()),
            (
                "kubeless-trigger",
                format!("{}/{}", self.namespace, self.trigger),
            ),
            (
                "kubeless-function",
                format!("{}/{}", self.namespace, self.function),
            ),
            ("kubeless-original-topic", self.topic.clone()),
            ("kubeless-original-partition", partition.to_string()),
            ("kubeless-original-offset", offset.to_string()),
        ];
        let mut h = OwnedHeaders::new_with_capacity(pairs.len());
        for (k, v) in &pairs {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_str()),
            });
        }
        h
    }

    async fn consume(
        &self,
        health: &HealthSlot,
        cancel: &CancellationToken,
    ) -> Result<(), EventsError> {
        let parts = partitions(&self.brokers, &self.topic).await?;
        if parts.is_empty() {
            return Err(EventsError::NoSuchTopic {
                topic: self.topic.clone(),
            });
        }
        let dl = dead_letter_topic(&self.topic);
        create_topic(&self.brokers, &dl, 1, true).await?;
        let producer = producer(&self.brokers)?;
        let consumer = self.consumer()?;
        // Every partition, each from the group's committed offset (the
        // earliest retained one for a new group).
        let mut wanted = TopicPartitionList::new();
        for p in &parts {
            wanted.add_partition(&self.topic, *p);
        }
        let committed =
            tokio::task::block_in_place(|| consumer.committed_offsets(wanted, METADATA_TIMEOUT))
                .map_err(kafka_err(
                    format!("read the committed offsets of group {}", self.group()),
                    &self.brokers,
                ))?;
        let mut tpl = TopicPartitionList::new();
        // Partitions resumed from a committed offset, and that offset.
        let mut resume: HashMap<i32, i64> = HashMap::new();
        for e in committed.elements() {
            let start = match e.offset() {
                Offset::Offset(o) if o >= 0 => {
                    resume.insert(e.partition(), o);
                    Offset::Offset(o)
                }
                _ => Offset::Beginning,
            };
            tracing::info!(group = %self.group(), topic = %self.topic, partition = e.partition(), offset = ?start, "resuming");
            tpl.add_partition_offset(&self.topic, e.partition(), start)
                .map_err(kafka_err(format!("assign {}", self.topic), &self.brokers))?;
        }
        consumer
            .assign(&tpl)
            .map_err(kafka_err(format!("assign {}", self.topic), &self.brokers))?;
        let group = self.group();
        health.set(Health::Ready(format!(
            "consumer group {group} on {}",
            self.topic
        )));
        let mut check = tokio::time::interval(PARTITION_CHECK);
        check.tick().await;
        // Some brokers (tansu 0.6) answer a fetch from an offset inside a
        // record batch with the next batch, or nothing: a partition resumed
        // mid-batch would skip or stall. A resumed partition whose first
        // message is past the committed offset, or that delivers nothing
        // for RESUME_STALL although messages are there, is read again from
        // its first retained offset, skipping what is below the committed
        // offset (handled before).
        let mut moving: HashSet<i32> = HashSet::new();
        let stall = tokio::time::sleep(RESUME_STALL);
        tokio::pin!(stall);
        let mut stall_checked = resume.is_empty();
        let result = loop {
            let msg = tokio::select! {
                _ = cancel.cancelled() => break Ok(()),
                _ = &mut stall, if !stall_checked => {
                    stall_checked = true;
                    for (p, o) in &resume {
                        if moving.contains(p) {
                            continue;
                        }
                        let marks = tokio::task::block_in_place(|| {
                            consumer.fetch_watermarks(&self.topic, *p, METADATA_TIMEOUT)
                        });
                        if let Ok((low, high)) = marks
                            && high > *o
                            && low < *o
                        {
                            tracing::info!(topic = %self.topic, partition = p, from = low, committed = o, "resumed partition stalled; reading it again from its first offset");
                            let seek = tokio::task::block_in_place(|| {
                                consumer.seek(&self.topic, *p, Offset::Offset(low), METADATA_TIMEOUT)
                            });
                            if let Err(e) = seek {
                                tracing::warn!(topic = %self.topic, partition = p, error = %chain(&e), "seek failed");
                            }
                        }
                    }
                    continue;
                }
                _ = check.tick() => {
                    // New partitions: start over (after committing) so they
                    // are assigned too.
                    match partitions(&self.brokers, &self.topic).await {
                        Ok(now) if now.is_empty() => break Err(EventsError::NoSuchTopic { topic: self.topic.clone() }),
                        Ok(now) if now != parts => break Ok(()),
                        _ => continue,
                    }
                }
                m = consumer.recv() => match m {
                    Ok(m) => m,
                    Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                        break Err(EventsError::NoSuchTopic { topic: self.topic.clone() });
                    }
                    Err(e) => {
                        health.set(Health::Degraded(format!("consuming {}: {}", self.topic, chain(&e))));
                        tokio::select! {
                            _ = cancel.cancelled() => break Ok(()),
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        }
                        continue;
                    }
                },
            };
            if let Some(o) = resume.get(&msg.partition()) {
                if msg.offset() < *o {
                    // Handled before the restart.
                    continue;
                }
                if msg.offset() > *o && moving.insert(msg.partition()) {
                    // The first message after resuming is past the committed
                    // offset: the broker skipped the rest of the batch the
                    // offset is in. Read the partition again from its start.
                    tracing::info!(topic = %self.topic, partition = msg.partition(), committed = o, got = msg.offset(), "resumed partition skipped messages; reading it again from its first offset");
                    let p = msg.partition();
                    drop(msg);
                    let seek = tokio::task::block_in_place(|| {
                        consumer.seek(&self.topic, p, Offset::Beginning, METADATA_TIMEOUT)
                    });
                    if let Err(e) = seek {
                        tracing::warn!(topic = %self.topic, partition = p, error = %chain(&e), "seek failed");
                    }
                    continue;
                }
            }
            moving.insert(msg.partition());
            health.set(Health::Ready(format!(
                "consumer group {group} on {}",
                self.topic
            )));
            let payload = Bytes::copy_from_slice(msg.payload().unwrap_or_default());
            let event = Event::message(
                EventSourceKind::Kafka,
                &self.topic,
                payload.clone(),
                time::OffsetDateTime::now_utc(),
            );
            let outcome = deliver(
                &self.invoker,
                self.resolver.as_ref(),
                Destination {
                    namespace: &self.namespace,
                    function: &self.function,
                },
                &event,
                &self.policy,
                &self.counters,
                cancel,
            )
            .await;
            match outcome {
                // Not stored: whoever consumes next gets it again.
                None => break Ok(()),
                Some(Outcome::Delivered { .. }) => {}
                Some(Outcome::DeadLetter { reason, attempts }) => {
                    loop {
                        let h = self.dead_letter_headers(
                            &reason,
                            attempts,
                            msg.partition(),
                            msg.offset(),
                        );
                        match publish(&producer, &self.brokers, &dl, Some(h), &payload).await {
                            Ok(()) => break,
                            Err(e) => {
                                health.set(Health::Degraded(format!(
                                    "write to dead-letter topic {dl}: {}",
                                    chain(&e)
                                )));
                                tokio::select! {
                                    _ = cancel.cancelled() => return Ok(()),
                                    _ = tokio::time::sleep(RECONNECT) => {}
                                }
                            }
                        }
                    }
                    Counters::add(&self.counters.dead_lettered);
                }
            }
            if let Err(e) = consumer.store_offset_from_message(&msg) {
                tracing::warn!(topic = %self.topic, error = %chain(&e), "could not store the offset; the message may be delivered again");
            }
        };
        // Commit what was handled before leaving the group.
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync)
            && !matches!(e, KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))
        {
            tracing::warn!(group = %group, error = %chain(&e), "final offset commit failed");
        }
        result
    }
}

impl EventSource for KafkaSource {
    fn run(self: Box<Self>, health: HealthSlot, shutdown: CancellationToken) -> SourceFuture {
        Box::pin(async move {
            loop {
                let r = self.consume(&health, &shutdown).await;
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                if let Err(e) = r {
                    health.set(Health::Degraded(chain(&e)));
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(RECONNECT) => {}
                }
            }
        })
    }
}
