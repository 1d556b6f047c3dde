//! Sending one event to a function over HTTP.
//!
//! Where a function lives is asked through [`Resolve`] on every attempt, so
//! an instance replaced by an update or a restart is picked up without the
//! source knowing. The answer is classified for the delivery policy:
//! [`Attempt::Unavailable`] (no instance, connection refused or cut: the
//! function is down or restarting) is waited out, [`Attempt::Failed`] (the
//! function answered non-2xx or did not answer in time) counts as a retry.

use std::time::Duration;

use crate::event::Event;

/// Where to send a function's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Base URL of one ready instance or Service, e.g. `http://127.0.0.1:4711`.
    pub url: String,
    /// How long to wait for the answer.
    pub timeout: Duration,
}

/// Finds a function's target. `Err` carries why it is not reachable now.
pub trait Resolve: Send + Sync + 'static {
    fn resolve(&self, namespace: &str, function: &str) -> Result<Target, String>;
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx.
    Delivered { status: u16 },
    /// The function is not there to answer (down, starting, restarting).
    Unavailable(String),
    /// The function answered with an error or not in time.
    Failed(String),
}

/// Sends events; cheap to clone.
#[derive(Clone)]
pub struct Invoker {
    http: reqwest::Client,
}

impl Default for Invoker {
    fn default() -> Self {
        Invoker::new()
    }
}

impl Invoker {
    pub fn new() -> Invoker {
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Invoker { http }
    }

    /// One attempt to deliver `event` to `target`.
    pub async fn attempt(&self, target: &Target, event: &Event) -> Attempt {
        let mut req = match &event.body {
            Some(b) => self.http.post(&target.url).body(b.clone()),
            None => self.http.get(&target.url),
        };
        for (k, v) in &event.headers {
            req = req.header(k, v);
        }
        match req.timeout(target.timeout).send().await {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    // Read the body so the connection goes back to the pool.
                    let _ = resp.bytes().await;
                    Attempt::Delivered {
                        status: status.as_u16(),
                    }
                } else {
                    let mut body = resp.text().await.unwrap_or_default();
                    body.truncate(200);
                    let body = body.trim().replace('\n', " ");
                    Attempt::Failed(format!("HTTP {}: {body}", status.as_u16()))
                }
            }
            Err(e) if e.is_timeout() => Attempt::Failed(format!(
                "no answer within {} s",
                target.timeout.as_secs_f32()
            )),
            Err(e) => Attempt::Unavailable(crate::chain(&e)),
        }
    }
}
