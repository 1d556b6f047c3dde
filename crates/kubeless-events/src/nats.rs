//! NATS triggers: one queue subscription (core NATS) or one durable pull
//! consumer (JetStream) per (trigger, function), named
//! `<namespace>_<trigger>_<function>_<topic>`, so replicas of a consumer
//! share the work and every selected function gets every message once.
//!
//! With JetStream (the default) delivery is at-least-once: the subject is
//! captured by a stream (`KUBELESS_<subject>`), a message is acked only
//! after the function answered 2xx or the message was published to the
//! dead-letter subject `<topic>.deadletter` (itself kept in a stream) with
//! the failure in `kubeless-dead-letter-*` headers. A message not acked
//! (crash, shutdown) is delivered again after [`ACK_WAIT`]. A new consumer
//! starts with messages published after it was created.
//!
//! Core NATS (`jetstream: false`) is at-most-once across a crash: messages
//! buffered in the server process are lost with it; the retry and
//! dead-letter policy still applies while it runs.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::deliver::{Destination, Outcome, RetryPolicy, deliver};
use crate::event::{Event, EventSourceKind};
use crate::invoke::{Invoker, Resolve};
use crate::source::{EventSource, Health, HealthSlot, SourceFuture};
use crate::stats::Counters;
use crate::{EventsError, chain};

/// How long JetStream waits for an ack before delivering a message again.
/// A delivery in progress extends it every [`PROGRESS_EVERY`].
pub const ACK_WAIT: Duration = Duration::from_secs(15);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Retry interval while the server or the stream is unavailable.
const RECONNECT: Duration = Duration::from_secs(2);

/// Connect to a NATS server; reconnects in the background for ever, so the
/// call returns even when the server is not up yet.
pub async fn connect(url: &str) -> Result<async_nats::Client, EventsError> {
    async_nats::ConnectOptions::new()
        .name("kubeless")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(url)
        .await
        .map_err(|e| EventsError::NatsConnect {
            url: url.to_string(),
            source: Box::new(e),
        })
}

/// The dead-letter subject of a topic.
pub fn dead_letter_subject(topic: &str) -> String {
    format!("{topic}.deadletter")
}

/// A name usable for JetStream streams and consumers.
pub fn js_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Publish one message (what `kubeless trigger nats publish` does).
pub async fn publish(
    client: &async_nats::Client,
    subject: &str,
    body: Bytes,
) -> Result<(), EventsError> {
    client
        .publish(subject.to_string(), body)
        .await
        .map_err(|e| EventsError::nats(format!("publish to {subject}"), e))?;
    client
        .flush()
        .await
        .map_err(|e| EventsError::nats(format!("flush publish to {subject}"), e))
}

/// One NATS trigger bound to one function.
pub struct NatsSource {
    pub client: async_nats::Client,
    pub jetstream: bool,
    pub namespace: String,
    pub trigger: String,
    pub function: String,
    pub topic: String,
    pub invoker: Invoker,
    pub resolver: Arc<dyn Resolve>,
    pub policy: RetryPolicy,
    pub counters: Arc<Counters>,
}

impl NatsSource {
    /// `<namespace>_<trigger>_<function>_<topic>`.
    pub fn group(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.namespace, self.trigger, self.function, self.topic
        )
    }

    fn dead_letter_headers(&self, reason: &str, attempts: u32) -> async_nats::HeaderMap {
        let mut h = async_nats::HeaderMap::new();
        h.insert("kubeless-dead-letter-reason", header_safe(reason).as_str());
        h.insert(
            "kubeless-dead-letter-attempts",
            attempts.to_string().as_str(),
        );
        h.insert(
            "kubeless-trigger",
            format!("{}/{}", self.namespace, self.trigger).as_str(),
        );
        h.insert(
            "kubeless-function",
            format!("{}/{}", self.namespace, self.function).as_str(),
        );
        h.insert("kubeless-original-subject", self.topic.as_str());
        h
    }

    async fn handle(&self, payload: Bytes, cancel: &CancellationToken) -> Option<Outcome> {
        let event = Event::message(
            EventSourceKind::Nats,
            &self.topic,
            payload,
            time::OffsetDateTime::now_utc(),
        );
        deliver(
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
        .await
    }

    async fn run_core(
        &self,
        health: &HealthSlot,
        cancel: &CancellationToken,
    ) -> Result<(), EventsError> {
        let mut sub = self
            .client
            .queue_subscribe(self.topic.clone(), self.group())
            .await
            .map_err(|e| EventsError::nats(format!("subscribe to {}", self.topic), e))?;
        health.set(Health::Ready(format!(
            "subscribed to {} (core NATS, at-most-once across a crash)",
            self.topic
        )));
        loop {
            let msg = tokio::select! {
                _ = cancel.cancelled() => break,
                m = sub.next() => match m { Some(m) => m, None => break },
            };
            match self.handle(msg.payload.clone(), cancel).await {
                None => break,
                Some(Outcome::Delivered { .. }) => {}
                Some(Outcome::DeadLetter { reason, attempts }) => {
                    let h = self.dead_letter_headers(&reason, attempts);
                    let dl = dead_letter_subject(&self.topic);
                    if let Err(e) = self
                        .client
                        .publish_with_headers(dl.clone(), h, msg.payload.clone())
                        .await
                    {
                        tracing::error!(subject = %dl, error = %chain(&e), "dead-letter publish failed; message dropped (core NATS)");
                    } else {
                        Counters::add(&self.counters.dead_lettered);
                    }
                }
            }
        }
        let _ = sub.unsubscribe().await;
        Ok(())
    }

    async fn run_jetstream(
        &self,
        health: &HealthSlot,
        cancel: &CancellationToken,
    ) -> Result<(), EventsError> {
        let js = jetstream::new(self.client.clone());
        let stream = js
            .get_or_create_stream(stream::Config {
                name: format!("KUBELESS_{}", js_name(&self.topic)),
                subjects: vec![self.topic.clone()],
                ..Default::default()
            })
            .await
            .map_err(|e| EventsError::nats(format!("create the JetStream stream for {} (is JetStream enabled on the NATS server? it needs --jetstream)", self.topic), e))?;
        let dl = dead_letter_subject(&self.topic);
        js.get_or_create_stream(stream::Config {
            name: format!("KUBELESS_DL_{}", js_name(&self.topic)),
            subjects: vec![dl.clone()],
            ..Default::default()
        })
        .await
        .map_err(|e| EventsError::nats(format!("create the JetStream stream for {dl}"), e))?;
        let name = js_name(&self.group());
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    deliver_policy: consumer::DeliverPolicy::New,
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: 64,
                    filter_subject: self.topic.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| EventsError::nats(format!("create the durable consumer {name}"), e))?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(16)
            .messages()
            .await
            .map_err(|e| EventsError::nats(format!("consume with {name}"), e))?;
        health.set(Health::Ready(format!(
            "JetStream consumer {name} on {} (at-least-once)",
            self.topic
        )));
        loop {
            let msg = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                m = messages.next() => match m {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        // Heartbeat misses and server restarts: the stream
                        // keeps going (it reconnects itself).
                        health.set(Health::Degraded(format!("consuming {}: {}", self.topic, chain(&e))));
                        continue;
                    }
                    None => return Err(EventsError::Config(format!("the consumer {name} was closed"))),
                },
            };
            health.set(Health::Ready(format!(
                "JetStream consumer {name} on {} (at-least-once)",
                self.topic
            )));
            // Tell JetStream the message is being worked on while a slow or
            // unavailable function delays it, so it is not handed out again.
            let outcome = {
                let work = self.handle(msg.payload.clone(), cancel);
                tokio::pin!(work);
                let mut tick = tokio::time::interval(PROGRESS_EVERY);
                tick.tick().await;
                loop {
                    tokio::select! {
                        o = &mut work => break o,
                        _ = tick.tick() => { let _ = msg.ack_with(jetstream::AckKind::Progress).await; }
                    }
                }
            };
            match outcome {
                None => return Ok(()),
                Some(Outcome::Delivered { .. }) => {}
                Some(Outcome::DeadLetter { reason, attempts }) => {
                    let h = self.dead_letter_headers(&reason, attempts);
                    // Wait for the stream's ack: only then is it safe to ack
                    // the original.
                    loop {
                        let r = match js
                            .publish_with_headers(dl.clone(), h.clone(), msg.payload.clone())
                            .await
                        {
                            Ok(ack) => ack.await.map(|_| ()).map_err(|e| chain(&e)),
                            Err(e) => Err(chain(&e)),
                        };
                        match r {
                            Ok(()) => break,
                            Err(e) => {
                                health.set(Health::Degraded(format!(
                                    "publish to dead-letter subject {dl}: {e}"
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
            if let Err(e) = msg.double_ack().await {
                // Not acked: JetStream delivers it again (a duplicate).
                tracing::warn!(subject = %self.topic, error = %chain(e.as_ref()), "ack failed; the message will be delivered again");
            }
        }
    }
}

fn header_safe(s: &str) -> String {
    let mut s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    s.truncate(512);
    s
}

impl EventSource for NatsSource {
    fn run(self: Box<Self>, health: HealthSlot, shutdown: CancellationToken) -> SourceFuture {
        Box::pin(async move {
            loop {
                if self.client.connection_state() != async_nats::connection::State::Connected {
                    health.set(Health::Degraded(
                        "the NATS server is unreachable; reconnecting".into(),
                    ));
                }
                let r = if self.jetstream {
                    self.run_jetstream(&health, &shutdown).await
                } else {
                    self.run_core(&health, &shutdown).await
                };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_for_jetstream() {
        assert_eq!(
            js_name("default_t_f_orders.eu.*"),
            "default_t_f_orders_eu__"
        );
        assert_eq!(dead_letter_subject("orders"), "orders.deadletter");
    }
}
