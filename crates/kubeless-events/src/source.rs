//! The one trait every trigger's event source implements, and the health it
//! reports while running.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::EventsError;

/// A running source's health, shown in the trigger's status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Health {
    /// Connecting or preparing (stream, consumer group, topic).
    #[default]
    Starting,
    /// Consuming.
    Ready(String),
    /// Not consuming now; retrying in the background.
    Degraded(String),
}

/// Shared slot a source writes its health into.
#[derive(Debug, Clone, Default)]
pub struct HealthSlot(Arc<Mutex<Health>>);

impl HealthSlot {
    pub fn set(&self, h: Health) {
        let mut cur = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if *cur != h {
            match &h {
                Health::Degraded(why) => tracing::warn!(reason = %why, "event source degraded"),
                Health::Ready(what) => tracing::info!(source = %what, "event source ready"),
                Health::Starting => {}
            }
            *cur = h;
        }
    }
    pub fn get(&self) -> Health {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

pub type SourceFuture = Pin<Box<dyn Future<Output = Result<(), EventsError>> + Send>>;

/// An event source for one (trigger, function) pair: cron schedule, NATS
/// subscription or Kafka consumer group. `run` consumes until `shutdown`
/// and reports its health through `health`; an `Err` is a configuration
/// problem that retrying cannot fix (the owner shows it in the status).
/// Transient problems (broker unreachable) are retried inside `run`.
pub trait EventSource: Send + 'static {
    fn run(self: Box<Self>, health: HealthSlot, shutdown: CancellationToken) -> SourceFuture;
}
