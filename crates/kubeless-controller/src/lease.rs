//! Leader election with a `coordination.k8s.io/v1` Lease.
//!
//! Contract: [`Elector::acquire`] returns once this process holds the
//! lease (it creates the lease, takes over an expired one, or waits).
//! [`Elector::hold`] renews it every `renew` and returns when renewal has
//! failed for longer than the lease duration, or another holder took it:
//! the caller must then stop reconciling (controller-manager exits and is
//! restarted). [`Elector::release`] clears the holder on shutdown so a
//! standby takes over at once. Writes use the lease's resourceVersion, so
//! two candidates can never both win one round.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

use crate::Error;

/// Timing of the election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub lease: Duration,
    pub renew: Duration,
    pub retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease: Duration::from_secs(15),
            renew: Duration::from_secs(5),
            retry: Duration::from_secs(2),
        }
    }
}

/// One candidate.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl Elector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Self {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
        }
    }

    fn expired(&self, spec: &LeaseSpec) -> bool {
        let holder = spec.holder_identity.as_deref().unwrap_or("");
        if holder.is_empty() {
            return true;
        }
        let secs = spec
            .lease_duration_seconds
            .map(i64::from)
            .unwrap_or(self.timing.lease.as_secs() as i64);
        match &spec.renew_time {
            Some(t) => Timestamp::now().as_second() > t.0.as_second() + secs,
            None => true,
        }
    }

    /// One attempt; true when we hold the lease afterwards.
    async fn try_acquire(&self) -> Result<bool, Error> {
        let secs = i32::try_from(self.timing.lease.as_secs()).unwrap_or(15);
        match self
            .api
            .get_opt(&self.name)
            .await
            .map_err(Error::kube("read lease", &self.name))?
        {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(secs),
                        acquire_time: Some(now()),
                        renew_time: Some(now()),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(Error::kube("create lease", &self.name)(e)),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
                if !mine && !self.expired(&spec) {
                    return Ok(false);
                }
                let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
                lease.spec = Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: if mine {
                        spec.acquire_time.clone()
                    } else {
                        Some(now())
                    },
                    renew_time: Some(now()),
                    lease_transitions: Some(transitions),
                    ..spec
                });
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(Error::kube("renew lease", &self.name)(e)),
                }
            }
        }
    }

    /// Wait until this candidate leads, or `shutdown` (then `false`).
    pub async fn acquire(&self, shutdown: &CancellationToken) -> bool {
        loop {
            match self.try_acquire().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                    return true;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(self.timing.retry) => {}
            }
        }
    }

    /// Renew until the lease is lost (returns) or `shutdown`.
    pub async fn hold(&self, shutdown: &CancellationToken) {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.timing.renew) => {}
            }
            match self.try_acquire().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.name, "another controller-manager took the lease");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the lease; retrying");
                    if last_ok.elapsed() > self.timing.lease {
                        tracing::error!(lease = %self.name, "lease expired without renewal");
                        return;
                    }
                }
            }
        }
    }

    /// Give the lease up (best effort, bounded by the caller).
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = None;
            spec.renew_time = None;
            let _ = self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await;
        }
    }
}
