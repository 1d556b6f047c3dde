//! HTTPTrigger → Ingress and CronJobTrigger → CronJob reconcilers.
//!
//! Same shape as the Function reconciler: a finalizer
//! (`kubeless.io/httptrigger`, `kubeless.io/cronjobtrigger`), a pure render,
//! [`ensure`] (never over a foreign object), a `Ready` condition. A trigger
//! whose function (or its Service) does not exist yet waits with
//! `Ready=False` and is retried every 10 s. Fix: annotations are updated on
//! every change (Kubeless set them only on create).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Api, ResourceExt};
use kubeless_api::TriggerStatus;

use crate::apply::{delete_ours, ensure};
use crate::resources::{CronJobTrigger, Function, HttpTrigger, to_api};
use crate::{Context, Error, render, status};

pub const HTTP_FINALIZER: &str = "kubeless.io/httptrigger";
pub const CRON_FINALIZER: &str = "kubeless.io/cronjobtrigger";

fn trigger_status(
    current: Option<&TriggerStatus>,
    ok: bool,
    reason: &str,
    message: String,
    generation: i64,
) -> TriggerStatus {
    let previous = current.map(|s| s.conditions.clone()).unwrap_or_default();
    TriggerStatus {
        state: if ok { "Ready" } else { "NotReady" }.to_string(),
        message: message.clone(),
        conditions: vec![status::ready(&previous, ok, reason, &message, generation)],
        ..current.cloned().unwrap_or_default()
    }
}

/// Reconcile one HTTPTrigger.
pub async fn reconcile_http(t: Arc<HttpTrigger>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = t.namespace().unwrap_or_default();
    let api: Api<HttpTrigger> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, HTTP_FINALIZER, t, |event| async {
        match event {
            Event::Apply(t) => apply_http(&t, &ctx, &api).await,
            Event::Cleanup(t) => {
                let ingresses = Api::<Ingress>::namespaced(ctx.client.clone(), &ns);
                delete_ours(&ingresses, &t.name_any()).await?;
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

async fn apply_http(
    t: &HttpTrigger,
    ctx: &Context,
    api: &Api<HttpTrigger>,
) -> Result<Action, Error> {
    let name = t.name_any();
    let ns = t.namespace().unwrap_or_default();
    let generation = t.metadata.generation.unwrap_or_default();
    let current = t.status.as_ref();
    let services = Api::<Service>::namespaced(ctx.client.clone(), &ns);
    let fname = &t.spec.function_name;
    let Some(svc) = services
        .get_opt(fname)
        .await
        .map_err(Error::kube("read", fname))?
    else {
        let s = trigger_status(
            current,
            false,
            "FunctionNotFound",
            format!("unable to find the service of function {fname}"),
            generation,
        );
        status::patch(api, &name, current, &s).await?;
        return Ok(Action::requeue(Duration::from_secs(10)));
    };
    let port = svc
        .spec
        .and_then(|s| s.ports)
        .and_then(|p| p.first().map(|p| i64::from(p.port)))
        .unwrap_or(8080);
    let plain: kubeless_api::HttpTrigger = to_api(t).map_err(|e| Error::Decode(e.to_string()))?;
    let ingress = match render::ingress(&plain, port) {
        Ok(i) => i,
        Err(e) => {
            let s = trigger_status(current, false, "InvalidTrigger", e.to_string(), generation);
            status::patch(api, &name, current, &s).await?;
            return Ok(Action::await_change());
        }
    };
    let s = match ensure(
        &Api::<Ingress>::namespaced(ctx.client.clone(), &ns),
        &ingress,
    )
    .await?
    {
        Ok(_) => trigger_status(
            current,
            true,
            "Exposed",
            format!("Ingress {name} routes to {fname}:{port}"),
            generation,
        ),
        Err(c) => trigger_status(current, false, "Conflict", c.message(), generation),
    };
    let retry = s.state != "Ready";
    status::patch(api, &name, current, &s).await?;
    Ok(if retry {
        Action::requeue(Duration::from_secs(30))
    } else {
        Action::requeue(Duration::from_secs(300))
    })
}

/// Reconcile one CronJobTrigger.
pub async fn reconcile_cron(t: Arc<CronJobTrigger>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = t.namespace().unwrap_or_default();
    let api: Api<CronJobTrigger> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, CRON_FINALIZER, t, |event| async {
        match event {
            Event::Apply(t) => apply_cron(&t, &ctx, &api).await,
            Event::Cleanup(t) => {
                let jobs = Api::<CronJob>::namespaced(ctx.client.clone(), &ns);
                delete_ours(&jobs, &render::cron_job_name(&t.name_any())).await?;
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

async fn apply_cron(
    t: &CronJobTrigger,
    ctx: &Context,
    api: &Api<CronJobTrigger>,
) -> Result<Action, Error> {
    let name = t.name_any();
    let ns = t.namespace().unwrap_or_default();
    let generation = t.metadata.generation.unwrap_or_default();
    let current = t.status.as_ref();
    let fname = &t.spec.function_name;
    let functions = Api::<Function>::namespaced(ctx.client.clone(), &ns);
    let Some(f) = functions
        .get_opt(fname)
        .await
        .map_err(Error::kube("read", fname))?
    else {
        let s = trigger_status(
            current,
            false,
            "FunctionNotFound",
            format!("function {fname} not found"),
            generation,
        );
        status::patch(api, &name, current, &s).await?;
        return Ok(Action::requeue(Duration::from_secs(10)));
    };
    let plain_t: kubeless_api::CronJobTrigger =
        to_api(t).map_err(|e| Error::Decode(e.to_string()))?;
    let plain_f: kubeless_api::Function = to_api(&f).map_err(|e| Error::Decode(e.to_string()))?;
    let settings = ctx.settings();
    let cj = match render::cron_job(&plain_t, &plain_f, &settings) {
        Ok(c) => c,
        Err(e) => {
            let s = trigger_status(current, false, "InvalidTrigger", e.to_string(), generation);
            status::patch(api, &name, current, &s).await?;
            return Ok(Action::await_change());
        }
    };
    let cj_name = cj.name_any();
    let s = match ensure(&Api::<CronJob>::namespaced(ctx.client.clone(), &ns), &cj).await? {
        Ok(_) => trigger_status(
            current,
            true,
            "Scheduled",
            format!("CronJob {cj_name} runs {fname} on {:?}", t.spec.schedule),
            generation,
        ),
        Err(c) => trigger_status(current, false, "Conflict", c.message(), generation),
    };
    let retry = s.state != "Ready";
    status::patch(api, &name, current, &s).await?;
    Ok(if retry {
        Action::requeue(Duration::from_secs(30))
    } else {
        Action::requeue(Duration::from_secs(300))
    })
}
