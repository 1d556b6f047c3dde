//! The function worker: one task per Function that makes its instances match
//! its spec and reports how that goes.
//!
//! Flow for each new spec: plan it; prepare the artifact (the running
//! version keeps serving meanwhile); start a new set of instances; when the
//! whole new set is ready, route to it and stop the old set. This is
//! Kubeless's rolling update with `maxUnavailable: 0`: a new version that
//! never becomes ready (a missing handler, say) leaves the old one serving,
//! with the failure in the status. A spec that cannot be planned or prepared
//! is retried with backoff, and at once when the spec changes again.
//!
//! Status (`phase`, `replicas`, `readyReplicas`, `reason`, the `Ready`
//! condition) is written to the store whenever it changes; the gateway route
//! is updated with every ready/down event, so requests never go to an
//! instance known to be down.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kubeless_api::{Condition, Function, FunctionPhase, FunctionStatus, Kind};
use kubeless_plan::FunctionPlan;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Ctx;
use crate::artifact::ArtifactError;
use crate::gateway::{Endpoint, Route};
use crate::instance::{self, InstanceEvent, InstanceSpec};

struct Set {
    id: u64,
    plan: Arc<FunctionPlan>,
    cancel: CancellationToken,
    /// Ready instances by slot, as the gateway reaches them.
    ready: BTreeMap<usize, Endpoint>,
    failure: Option<(String, bool)>,
}

type Preparing = Pin<
    Box<dyn Future<Output = (Arc<FunctionPlan>, Result<std::path::PathBuf, ArtifactError>)> + Send>,
>;

struct Worker {
    ctx: Arc<Ctx>,
    ns: String,
    name: String,
    uid: String,
    generation: i64,
    active: Option<Set>,
    candidate: Option<Set>,
    /// The plan being prepared or the last one that failed before instances.
    wanted: Option<Arc<FunctionPlan>>,
    error: Option<String>,
    building: bool,
    next_id: u64,
    tasks: JoinSet<()>,
    events: mpsc::Sender<InstanceEvent>,
}

/// Run a Function until `cancel`.
pub async fn run(ctx: Arc<Ctx>, mut desired: watch::Receiver<Function>, cancel: CancellationToken) {
    let first = desired.borrow_and_update().clone();
    let (tx, mut rx) = mpsc::channel(64);
    let mut w = Worker {
        ctx,
        ns: first.metadata.namespace.clone(),
        name: first.metadata.name.clone(),
        uid: first.metadata.uid.clone(),
        generation: first.metadata.generation,
        active: None,
        candidate: None,
        wanted: None,
        error: None,
        building: false,
        next_id: 1,
        tasks: JoinSet::new(),
        events: tx,
    };
    let mut preparing: Option<Preparing> = None;
    let mut retry: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut failures: u32 = 0;
    let mut pending = Some(first);
    loop {
        if let Some(f) = pending.take() {
            preparing = w.apply(f);
            retry = None;
            w.publish().await;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            changed = desired.changed() => match changed {
                Ok(()) => pending = Some(desired.borrow_and_update().clone()),
                Err(_) => break,
            },
            Some(ev) = rx.recv() => {
                w.on_event(ev);
                w.publish().await;
            }
            (plan, result) = async { preparing.as_mut().expect("guarded by the select condition").await }, if preparing.is_some() => {
                preparing = None;
                w.building = false;
                match result {
                    Ok(dir) => {
                        failures = 0;
                        w.error = None;
                        w.start_candidate(plan, dir);
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        let delay = Duration::from_secs(5).saturating_mul(1 << failures.min(6)).min(Duration::from_secs(300));
                        let msg = error_chain(&e);
                        w.log(&format!("kubeless: preparing the function failed: {msg}"));
                        w.error = Some(msg);
                        retry = Some(Box::pin(tokio::time::sleep(delay)));
                    }
                }
                w.publish().await;
            }
            _ = async { retry.as_mut().expect("guarded by the select condition").await }, if retry.is_some() => {
                retry = None;
                if let Some(plan) = w.wanted.clone() {
                    w.building = true;
                    preparing = Some(w.prepare(plan));
                    w.publish().await;
                }
            }
            Some(_) = w.tasks.join_next(), if !w.tasks.is_empty() => {}
        }
    }
    w.shutdown().await;
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

impl Worker {
    fn log(&self, line: &str) {
        self.ctx.logs.push(&self.ns, &self.name, line.as_bytes());
    }

    /// Act on a (possibly) new spec; returns the artifact preparation to await.
    fn apply(&mut self, f: Function) -> Option<Preparing> {
        self.generation = f.metadata.generation;
        let planned = crate::image::plan(&f, &self.ctx.catalogue, &self.ctx.settings)
            .unwrap_or_else(|| kubeless_plan::plan(&f, &self.ctx.catalogue, &self.ctx.settings));
        let plan = match planned {
            Ok(p) => Arc::new(p),
            Err(e) => {
                self.error = Some(e.to_string());
                self.wanted = None;
                return None;
            }
        };
        let same = |s: &Option<Set>| s.as_ref().is_some_and(|s| same_plan(&s.plan, &plan));
        if same(&self.candidate) || (self.candidate.is_none() && same(&self.active)) {
            // Nothing that shapes the instances changed (labels, say).
            self.error = None;
            return None;
        }
        if let Some(c) = self.candidate.take() {
            c.cancel.cancel();
        }
        for w in &plan.warnings {
            self.log(&format!("kubeless: warning: {w}"));
        }
        self.error = None;
        self.wanted = Some(plan.clone());
        self.building = true;
        Some(self.prepare(plan))
    }

    fn prepare(&self, plan: Arc<FunctionPlan>) -> Preparing {
        let ctx = self.ctx.clone();
        let (ns, name) = (self.ns.clone(), self.name.clone());
        Box::pin(async move {
            let note = |msg: &str| {
                ctx.logs
                    .push(&ns, &name, format!("kubeless: {msg}").as_bytes())
            };
            let result = if crate::image::image_of(&plan).is_some() {
                crate::image::prepare(&ctx, &plan, note)
                    .await
                    .map_err(ArtifactError::from)
            } else {
                ctx.artifacts.prepare(&plan, note).await
            };
            (plan, result)
        })
    }

    fn start_candidate(&mut self, plan: Arc<FunctionPlan>, dir: std::path::PathBuf) {
        let id = self.next_id;
        self.next_id += 1;
        let cancel = CancellationToken::new();
        for slot in 0..plan.replicas as usize {
            let spec = InstanceSpec {
                plan: plan.clone(),
                artifact: dir.clone(),
                set: id,
                slot,
            };
            self.tasks.spawn(instance::run(
                self.ctx.instance.clone(),
                spec,
                self.events.clone(),
                cancel.clone(),
            ));
        }
        self.candidate = Some(Set {
            id,
            plan,
            cancel,
            ready: BTreeMap::new(),
            failure: None,
        });
    }

    fn on_event(&mut self, ev: InstanceEvent) {
        let set_id = match &ev {
            InstanceEvent::Ready { set, .. } | InstanceEvent::Down { set, .. } => *set,
        };
        let set = [&mut self.active, &mut self.candidate]
            .into_iter()
            .flatten()
            .find(|s| s.id == set_id);
        let Some(set) = set else { return };
        match ev {
            InstanceEvent::Ready { slot, endpoint, .. } => {
                set.ready.insert(slot, endpoint);
                if set.ready.len() >= set.plan.replicas as usize {
                    set.failure = None;
                }
            }
            InstanceEvent::Down {
                slot,
                reason,
                load_failure,
                ..
            } => {
                set.ready.remove(&slot);
                set.failure = Some((reason, load_failure));
            }
        }
        let promote = self
            .candidate
            .as_ref()
            .is_some_and(|c| c.ready.len() >= c.plan.replicas as usize);
        if promote {
            if let Some(old) = self.active.take() {
                old.cancel.cancel();
            }
            self.active = self.candidate.take();
            self.wanted = None;
        }
    }

    fn status(&self) -> FunctionStatus {
        let replicas = self
            .candidate
            .as_ref()
            .or(self.active.as_ref())
            .map(|s| s.plan.replicas as i32)
            .or(self.wanted.as_ref().map(|p| p.replicas as i32))
            .unwrap_or(1);
        let ready = self
            .active
            .as_ref()
            .map(|s| s.ready.len() as i32)
            .unwrap_or(0);
        let candidate_failure = self.candidate.as_ref().and_then(|c| c.failure.clone());
        let active_failure = self.active.as_ref().and_then(|a| a.failure.clone());
        let (phase, reason) = if ready > 0 {
            let note = self
                .error
                .clone()
                .or(candidate_failure.map(|(r, _)| r))
                .map(|r| format!("the new version is not running: {r}"))
                .or(active_failure.map(|(r, _)| r))
                .unwrap_or_default();
            (FunctionPhase::Ready, note)
        } else if let Some(e) = &self.error {
            (FunctionPhase::Failed, e.clone())
        } else if let Some((r, _)) = candidate_failure.or(active_failure) {
            (FunctionPhase::Failed, r)
        } else if self.building {
            (FunctionPhase::Building, String::new())
        } else {
            (FunctionPhase::Starting, String::new())
        };
        let cond_reason = match phase {
            FunctionPhase::Ready => "InstancesReady",
            FunctionPhase::Failed => "Failed",
            FunctionPhase::Building => "Building",
            _ => "Starting",
        };
        FunctionStatus {
            phase,
            replicas,
            ready_replicas: ready,
            reason: reason.clone(),
            // What the plan could not honour (a legacy runtime id on the
            // installed toolchain, say), for `describe`.
            message: self
                .active
                .as_ref()
                .map(|s| &s.plan)
                .or(self.wanted.as_ref())
                .map(|p| p.warnings.join("; "))
                .unwrap_or_default(),
            observed_generation: self.generation,
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: if ready > 0 { "True" } else { "False" }.into(),
                reason: cond_reason.into(),
                message: reason,
                last_transition_time: String::new(),
                observed_generation: self.generation,
            }],
            image: String::new(),
        }
    }

    async fn publish(&self) {
        let status = self.status();
        let plan = self
            .active
            .as_ref()
            .map(|s| &s.plan)
            .or(self.wanted.as_ref());
        let (timeout, limit) = plan
            .map(|p| (Duration::from_secs(p.timeout_secs), p.request_limit_bytes))
            .unwrap_or((
                Duration::from_secs(kubeless_plan::DEFAULT_TIMEOUT_SECS),
                1024 * 1024,
            ));
        let endpoints: Vec<Endpoint> = self
            .active
            .iter()
            .flat_map(|s| s.ready.values().cloned())
            .collect();
        let unavailable = if endpoints.is_empty() {
            Some(if status.reason.is_empty() {
                format!("it is {}", status.phase.to_string().to_lowercase())
            } else {
                status.reason.clone()
            })
        } else {
            None
        };
        self.ctx.routes.set(
            &self.ns,
            &self.name,
            Route::new(&self.uid, endpoints, timeout, limit, unavailable),
        );
        let value = match serde_json::to_value(&status) {
            Ok(v) => v,
            Err(_) => return,
        };
        let store = self.ctx.store.clone();
        let (ns, name, uid) = (self.ns.clone(), self.name.clone(), self.uid.clone());
        let res = tokio::task::spawn_blocking(move || {
            store.update_status(Kind::Function, &ns, &name, Some(&uid), value)
        })
        .await;
        if let Ok(Err(e)) = res {
            tracing::warn!(function = %self.name, error = %e, "could not record the function status");
        }
    }

    async fn shutdown(mut self) {
        for s in self.active.iter().chain(self.candidate.iter()) {
            s.cancel.cancel();
        }
        let bound = instance::STOP_GRACE + Duration::from_secs(3);
        if tokio::time::timeout(bound, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(function = %self.name, "instances did not stop in time");
            self.tasks.abort_all();
        }
        self.ctx.routes.remove(&self.ns, &self.name, &self.uid);
    }
}

/// Two plans run the same instances when they differ at most in generation
/// and labels.
fn same_plan(a: &FunctionPlan, b: &FunctionPlan) -> bool {
    let strip = |p: &FunctionPlan| {
        let mut p = p.clone();
        p.generation = 0;
        p.labels.clear();
        p
    };
    strip(a) == strip(b)
}
