//! The Function reconciler.
//!
//! Flow (idempotent; every step is safe to repeat):
//! 1. The `kubeless.io/function` finalizer is added before anything is
//!    created, so a deletion always passes through [`cleanup`].
//! 2. [`render`](crate::render::function_objects) the plan into ConfigMap,
//!    Service, Deployment and optional HPA. A Function that cannot be
//!    rendered (bad handler, unknown runtime, bad checksum) gets a
//!    `Ready=False` condition and waits for a change: no retry loop.
//! 3. Each object is [`ensure`]d; an object of ours is updated in place
//!    (server-side apply), a foreign one is never touched and is reported
//!    as a `Conflict` condition (retried every 30 s, so deleting the
//!    foreign object unblocks the function).
//! 4. The status mirrors the Deployment (ready/desired replicas), with
//!    `observedGeneration`. While the Deployment is not ready, the
//!    function's pods say why ([`pods::problem`](crate::pods::problem):
//!    an image that cannot be pulled, a crash loop, a failed init
//!    container, a volume that cannot be mounted, no node that fits): the
//!    status is then `Failed` with that reason and message, and returns to
//!    `Starting`/`Ready` by itself when the pods recover. A build Job still
//!    running is `Building`; one that failed is `BuildFailed`. Not ready
//!    is looked at again every 10 s (events do not wake a reconcile; pod
//!    changes do).
//!
//! Errors talking to the API server are returned; the error policy
//! requeues with exponential backoff per object.
//!
//! Cleanup deletes the children we created (owner references also let
//! kube-controller-manager's garbage collector remove them), the build
//! Jobs, and the HTTP and cron triggers naming the function, then the
//! finalizer is removed.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event as PodEvent, Pod, Service};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams, PropagationPolicy,
};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Api, ResourceExt};
use kubeless_api::{FunctionPhase, FunctionStatus};

use crate::apply::{self, delete_ours, ensure};
use crate::resources::{CronJobTrigger, Function, HttpTrigger, to_api};
use crate::{Context, Error, build, error_chain, pods, render, status};

/// Finalizer of Functions.
pub const FINALIZER: &str = "kubeless.io/function";

/// Reconcile one Function.
pub async fn reconcile(f: Arc<Function>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = f.namespace().unwrap_or_default();
    let api: Api<Function> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, f, |event| async {
        match event {
            Event::Apply(f) => apply(&f, &ctx).await,
            Event::Cleanup(f) => cleanup(&f, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

async fn apply(f: &Function, ctx: &Context) -> Result<Action, Error> {
    let name = f.name_any();
    let ns = f.namespace().unwrap_or_default();
    let generation = f.metadata.generation.unwrap_or_default();
    let api: Api<Function> = Api::namespaced(ctx.client.clone(), &ns);
    let settings = ctx.settings();
    let current = f.status.clone();
    let previous = current.clone().unwrap_or_default().conditions;
    let fail = |reason: &str, message: String| FunctionStatus {
        phase: FunctionPhase::Failed,
        reason: reason.to_string(),
        message: message.clone(),
        observed_generation: generation,
        conditions: vec![status::ready(
            &previous, false, reason, &message, generation,
        )],
        ..current.clone().unwrap_or_default()
    };

    let plain: kubeless_api::Function = to_api(f).map_err(|e| Error::Decode(e.to_string()))?;
    let mut objects = match render::function_objects(&plain, &settings) {
        Ok(o) => o,
        Err(e) => {
            tracing::info!(function = %name, namespace = %ns, error = %e, "function cannot be rendered");
            status::patch(
                &api,
                &name,
                current.as_ref(),
                &fail("InvalidFunction", e.to_string()),
            )
            .await?;
            return Ok(Action::await_change());
        }
    };

    // The image build step: plan the image before the Deployment is
    // written, so the Deployment points at it from the start.
    let mut image = String::new();
    let mut build_job = None;
    if settings.enable_build_step {
        match build::plan(&ctx.client, &ns, &objects, &settings).await? {
            Some(build::Outcome::Image { image: i, job }) => {
                render::use_image(&mut objects, &i);
                image = i;
                build_job = job;
            }
            Some(build::Outcome::Fallback(why)) => {
                tracing::warn!(function = %name, namespace = %ns, "{why}");
                objects.warnings.push(why);
            }
            None => {}
        }
    }

    let client = ctx.client.clone();
    let mut job_conflict = None;
    // The build Job still running, or why it failed.
    let mut building = None;
    let mut build_failure = None;
    if let Some(job) = &build_job {
        let jobs = Api::<Job>::namespaced(client.clone(), &ns);
        let job_name = job.metadata.name.clone().unwrap_or_default();
        match jobs
            .get_opt(&job_name)
            .await
            .map_err(Error::kube("read", &job_name))?
        {
            None => {
                jobs.create(&PostParams::default(), job.as_ref())
                    .await
                    .map_err(Error::kube("create", &job_name))?;
                tracing::info!(function = %name, namespace = %ns, job = %job_name, image = %image, "image build started");
                building = Some(job_name);
            }
            Some(existing) if !apply::is_ours(&existing) => {
                job_conflict = Some(apply::Conflict {
                    kind: "Job".into(),
                    namespace: ns.clone(),
                    name: job_name,
                });
            }
            Some(existing) => {
                if job_condition(&existing, "Failed") {
                    build_failure = Some(format!(
                        "the image build Job {job_name} failed; see its logs: kubectl logs -n {ns} job/{job_name} --all-containers"
                    ));
                } else if !job_condition(&existing, "Complete") {
                    building = Some(job_name);
                }
            }
        }
    }
    let mut monitor_warning = None;
    let conflict = async {
        if let Some(c) = job_conflict {
            return Ok::<_, Error>(Some(c));
        }
        if let Err(c) = ensure(
            &Api::<ConfigMap>::namespaced(client.clone(), &ns),
            &objects.config_map,
        )
        .await?
        {
            return Ok(Some(c));
        }
        if let Err(c) = ensure(
            &Api::<Service>::namespaced(client.clone(), &ns),
            &objects.service,
        )
        .await?
        {
            return Ok(Some(c));
        }
        if let Err(c) = ensure(
            &Api::<Deployment>::namespaced(client.clone(), &ns),
            &objects.deployment,
        )
        .await?
        {
            return Ok(Some(c));
        }
        let hpas = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &ns);
        match &objects.hpa {
            Some(h) => {
                if let Err(c) = ensure(&hpas, h).await? {
                    return Ok(Some(c));
                }
            }
            None => delete_ours(&hpas, &name).await?,
        }
        if let Some(w) =
            ensure_monitor(&client, &ns, &name, objects.service_monitor.as_ref()).await?
        {
            monitor_warning = Some(w);
        }
        Ok(None)
    }
    .await?;
    if let Some(c) = conflict {
        status::patch(
            &api,
            &name,
            current.as_ref(),
            &fail("Conflict", c.message()),
        )
        .await?;
        return Ok(Action::requeue(Duration::from_secs(30)));
    }

    objects.warnings.extend(monitor_warning);
    let dep = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get_opt(&name)
        .await
        .map_err(Error::kube("read", &name))?;
    let ds = dep.and_then(|d| d.status).unwrap_or_default();
    let desired = ds.replicas.unwrap_or_default();
    let ready = ds.ready_replicas.unwrap_or_default();
    let is_ready = ready > 0 && ready >= desired;
    let replicas = format!("{ready}/{desired} replicas ready");
    let (phase, reason, message) = if is_ready {
        objects.warnings.extend(build_failure);
        (FunctionPhase::Ready, "Deployed".to_string(), replicas)
    } else if let Some(why) = build_failure {
        (FunctionPhase::Failed, "BuildFailed".to_string(), why)
    } else if let Some(job) = building {
        // Its pods wait for the image the Job pushes: no problem yet.
        (
            FunctionPhase::Building,
            "Building".to_string(),
            format!("building the image {image} in Job {job}"),
        )
    } else {
        match diagnose(&client, &ns, &name).await {
            Some(p) => (FunctionPhase::Failed, p.reason, p.message),
            None => (FunctionPhase::Starting, "NotReady".to_string(), replicas),
        }
    };
    let mut message = message;
    if !objects.warnings.is_empty() {
        message = format!("{message}; {}", objects.warnings.join("; "));
    }
    let new = FunctionStatus {
        phase,
        replicas: desired,
        ready_replicas: ready,
        reason: reason.clone(),
        message: message.clone(),
        observed_generation: generation,
        conditions: vec![status::ready(
            &previous, is_ready, &reason, &message, generation,
        )],
        image,
    };
    status::patch(&api, &name, current.as_ref(), &new).await?;
    Ok(Action::requeue(if is_ready {
        Duration::from_secs(300)
    } else {
        NOT_READY_REQUEUE
    }))
}

/// How often a function that is not ready is looked at again: the
/// kubelet's events (a volume that cannot be mounted) wake no reconcile.
const NOT_READY_REQUEUE: Duration = Duration::from_secs(10);

/// Why the function's pods do not run ([`pods::problem`]), from its pods
/// and, for pods stuck before any container started, their Warning events.
/// Best effort: reads the API server refuses (the RBAC of an older
/// install) give `None` and a log line, and the status says only how many
/// replicas are ready.
async fn diagnose(client: &kube::Client, ns: &str, name: &str) -> Option<pods::Problem> {
    let refused = |what: &str, e: kube::Error| {
        tracing::warn!(
            function = %name, namespace = %ns, error = %error_chain(&e),
            "cannot list the function's {what} to say why it is not ready (the ClusterRole of `kubeless install` grants it)"
        );
    };
    let lp = ListParams::default().labels(&format!("created-by=kubeless,function={name}"));
    let pods = match Api::<Pod>::namespaced(client.clone(), ns).list(&lp).await {
        Ok(l) => l.items,
        Err(e) => {
            refused("pods", e);
            return None;
        }
    };
    if let Some(p) = pods::problem(name, ns, &pods, &[]) {
        return Some(p);
    }
    let events_api = Api::<PodEvent>::namespaced(client.clone(), ns);
    let mut events = Vec::new();
    // Replicas stuck together are stuck for the same reason: a few do.
    for pod in pods::stuck(&pods).iter().take(3) {
        let lp = ListParams::default().fields(&pods::warning_events_of(pod));
        match events_api.list(&lp).await {
            Ok(l) => events.extend(l.items),
            Err(e) => {
                refused("events", e);
                break;
            }
        }
    }
    pods::problem(name, ns, &pods, &events)
}

async fn cleanup(f: &Function, ctx: &Context) -> Result<Action, Error> {
    let name = f.name_any();
    let ns = f.namespace().unwrap_or_default();
    let c = ctx.client.clone();
    delete_ours(&Api::<Deployment>::namespaced(c.clone(), &ns), &name).await?;
    delete_ours(&Api::<Service>::namespaced(c.clone(), &ns), &name).await?;
    delete_ours(&Api::<ConfigMap>::namespaced(c.clone(), &ns), &name).await?;
    delete_ours(
        &Api::<HorizontalPodAutoscaler>::namespaced(c.clone(), &ns),
        &name,
    )
    .await?;
    let jobs = Api::<Job>::namespaced(c.clone(), &ns);
    let lp = ListParams::default().labels(&format!("created-by=kubeless,function={name}"));
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    jobs.delete_collection(&dp, &lp)
        .await
        .map_err(Error::kube("delete jobs of", &name))?;
    // Triggers naming the function go with it.
    let http = Api::<HttpTrigger>::namespaced(c.clone(), &ns);
    for t in http
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("list HTTP triggers for", &name))?
    {
        if t.spec.function_name == name {
            delete_trigger(&http, &t.name_any()).await?;
        }
    }
    let cron = Api::<CronJobTrigger>::namespaced(c, &ns);
    for t in cron
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("list cron triggers for", &name))?
    {
        if t.spec.function_name == name {
            delete_trigger(&cron, &t.name_any()).await?;
        }
    }
    tracing::info!(function = %name, namespace = %ns, "function deleted");
    Ok(Action::await_change())
}

/// prometheus-operator's ServiceMonitor, which the cluster may not have.
fn service_monitors(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor");
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "servicemonitors"),
    )
}

/// Create, update or delete the function's ServiceMonitor. A cluster
/// without prometheus-operator (no ServiceMonitor CRD) or a ServiceMonitor
/// someone else owns gives a warning for the status, not an error: the
/// rest of the function is unaffected.
async fn ensure_monitor(
    client: &kube::Client,
    ns: &str,
    name: &str,
    desired: Option<&serde_json::Value>,
) -> Result<Option<String>, Error> {
    let api = service_monitors(client, ns);
    let existing = match api.get_opt(name).await {
        Ok(e) => e,
        Err(kube::Error::Api(s)) if s.code == 404 => {
            return Ok(desired.map(|_| {
                "qps autoscaling needs prometheus-operator: the ServiceMonitor kind (monitoring.coreos.com/v1) is not installed, so the function's metrics are not scraped".to_string()
            }));
        }
        Err(e) => return Err(Error::kube("read ServiceMonitor", name)(e)),
    };
    let ours = existing.as_ref().is_none_or(apply::is_ours);
    match desired {
        Some(_) if !ours => Ok(Some(format!(
            "Found a conflicting servicemonitor object {ns}/{name}: not modified"
        ))),
        Some(v) => {
            let obj: DynamicObject =
                serde_json::from_value(v.clone()).map_err(|e| Error::Decode(e.to_string()))?;
            let pp = PatchParams::apply(apply::FIELD_MANAGER).force();
            api.patch(name, &pp, &Patch::Apply(&obj))
                .await
                .map_err(Error::kube("apply ServiceMonitor", name))?;
            Ok(None)
        }
        None if existing.is_some() && ours => {
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => Ok(None),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
                Err(e) => Err(Error::kube("delete ServiceMonitor", name)(e)),
            }
        }
        None => Ok(None),
    }
}

/// Whether a Job has the condition (`Failed`: given up, `Complete`)
/// `True`.
fn job_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

async fn delete_trigger<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube("delete trigger", name)(e)),
    }
}
