//! Event sources used by both modes (embedded engine and Kubernetes
//! controllers): everything between "a message arrived" and "the function
//! answered".
//!
//! - [`event`]: the event a source hands over, with the Kubeless headers of
//!   each source (spec 4.2);
//! - [`invoke`]: POSTs an event to a function over HTTP; where the function
//!   lives is asked through [`invoke::Resolve`], so the embedded engine
//!   points at a local instance and Kubernetes mode at a Service;
//! - [`deliver`]: the delivery policy shared by every message trigger:
//!   a function that is down delays an event but never drops it, a function
//!   that answers with an error is retried with exponential backoff up to a
//!   limit, then the event goes to a dead-letter destination;
//! - [`stats`]: per-trigger counters (delivered, retried, dead-lettered,
//!   in flight, skipped) and their Prometheus text;
//! - [`source`]: the one trait every trigger implements, and the health a
//!   running source reports;
//! - [`nats`] and [`kafka`]: the NATS (core or JetStream) and Kafka
//!   consumers and publishers;
//! - [`topic`]: what both modes' trigger owners share about Kafka and NATS
//!   triggers: which (trigger, function) pairs consume, the consumer task
//!   of one pair, and the state a trigger reports.
//!
//! Guarantee: at-least-once. A position (Kafka offset, JetStream ack) is
//! committed only after the function answered 2xx or the event was written
//! to the dead-letter destination; a crash between the answer and the
//! commit delivers the event again (a duplicate).

pub mod deliver;
pub mod event;
pub mod invoke;
pub mod kafka;
pub mod nats;
pub mod source;
pub mod stats;
pub mod topic;

pub use deliver::{Outcome, RetryPolicy};
pub use event::{Event, EventSourceKind};
pub use invoke::{Invoker, Resolve, Target};
pub use source::{EventSource, Health};
pub use stats::{Counters, Stats};

/// What went wrong in an event source.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("connect to the NATS server at {url}")]
    NatsConnect {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{action} (NATS)")]
    Nats {
        action: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{action} (Kafka brokers {brokers})")]
    Kafka {
        action: String,
        brokers: String,
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
    #[error("Kafka topic {topic} does not exist; create it with 'kubeless topic create {topic}'")]
    NoSuchTopic { topic: String },
    #[error("invalid event source configuration: {0}")]
    Config(String),
}

impl EventsError {
    pub(crate) fn nats(
        action: impl Into<String>,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> EventsError {
        EventsError::Nats {
            action: action.into(),
            source: Box::new(e),
        }
    }
}

/// The error and its causes on one line, for statuses and logs.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
