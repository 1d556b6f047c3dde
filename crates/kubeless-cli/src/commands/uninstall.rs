//! `kubeless uninstall`: remove Kubeless from the cluster of the current
//! kubeconfig context, functions and triggers present or not.
//!
//! What is removed and in which order is decided by
//! [`kubeless_controller::install::uninstall_plan`] (derived from the
//! install manifests, with the reasons for the order); this module only
//! does it: it deletes, strips the finalizers whose controller is gone,
//! and waits, each wait bounded by `--timeout` with a progress message
//! every few seconds. Every step is idempotent: a second run finds nothing
//! and succeeds, and a run cut short is finished by the next one.
//!
//! `--dry-run` reads the cluster and prints what would be deleted, one
//! object a line, without changing anything.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};
use kubeless_controller::install::{
    CHILD_SELECTOR, CONTROLLER_SELECTOR, ObjectRef, UninstallPlan, owned_by_kubeless,
    uninstall_plan, without_kubeless_finalizers,
};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::log::{Level, log};

/// How often a wait reports that it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How often a wait looks again.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// The first request (is the API server there?) gives up after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Flags of `kubeless uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Print what would be deleted instead of deleting it
    #[arg(long)]
    dry_run: bool,
    /// Seconds to wait for each step (controller stop, objects, CRDs,
    /// namespace) before giving up
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    timeout: u64,
}

pub fn run(args: UninstallArgs) -> anyhow::Result<()> {
    let plan = uninstall_plan().map_err(|e| anyhow!(kubeless_controller::error_chain(&e)))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async {
        let config = Config::infer()
            .await
            .map_err(|e| anyhow!("cannot load the kubeconfig: {e}"))?;
        let server = config.cluster_url.to_string();
        let client =
            Client::try_from(config).map_err(|e| anyhow!("cannot build the kube client: {e}"))?;
        match tokio::time::timeout(CONNECT_TIMEOUT, client.apiserver_version()).await {
            Ok(Ok(_)) => {}
            Ok(Err(kube::Error::Api(s))) => bail!(
                "the Kubernetes API server at {server} refused the request: {} ({})",
                s.message,
                s.code
            ),
            Ok(Err(e)) => bail!(
                "cannot reach the Kubernetes API server at {server}: {}",
                root_cause(&e)
            ),
            Err(_) => bail!("cannot reach the Kubernetes API server at {server}: timed out"),
        }
        let mut u = Uninstaller {
            client,
            dry_run: args.dry_run,
            timeout: Duration::from_secs(args.timeout),
            deleted: 0,
        };
        u.run(&plan).await?;
        if u.deleted == 0 {
            log(Level::Info, "Kubeless is not installed: nothing to delete");
        } else if !args.dry_run {
            log(
                Level::Info,
                &format!("Kubeless is uninstalled ({} objects deleted)", u.deleted),
            );
        }
        Ok(())
    })
}

/// The innermost cause, which is what a user can act on ("connection
/// refused", "certificate ...").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The API server's answer to a failed request, on one line.
fn api_error(action: &str, what: &str, e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(s) => anyhow!("{action} {what}: {} ({})", s.message, s.code),
        other => anyhow!("{action} {what}: {}", root_cause(&other)),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// What a terminating namespace still waits for, from its status
/// conditions (`NamespaceContentRemaining`, `NamespaceFinalizersRemaining`,
/// ...), so a namespace held by someone else's finalizer says so.
fn namespace_state(ns: &DynamicObject) -> String {
    let pending: Vec<String> = ns
        .data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "True")
        .filter_map(|c| c["message"].as_str().map(str::to_string))
        .collect();
    if pending.is_empty() {
        "terminating".to_string()
    } else {
        format!("terminating: {}", pending.join("; "))
    }
}

fn describe(o: &DynamicObject, ar: &ApiResource) -> String {
    match &o.metadata.namespace {
        Some(ns) => format!(
            "{} {ns}/{}",
            ar.kind,
            o.metadata.name.as_deref().unwrap_or("")
        ),
        None => format!("{} {}", ar.kind, o.metadata.name.as_deref().unwrap_or("")),
    }
}

struct Uninstaller {
    client: Client,
    dry_run: bool,
    timeout: Duration,
    /// Objects deleted (or, with `--dry-run`, that would be).
    deleted: usize,
}

impl Uninstaller {
    fn api(&self, ar: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, ar),
            None => Api::all_with(self.client.clone(), ar),
        }
    }

    async fn run(&mut self, plan: &UninstallPlan) -> anyhow::Result<()> {
        self.stop_controller(plan).await?;
        for kind in &plan.kinds {
            self.delete_kubeless_objects(kind).await?;
        }
        for kind in &plan.children {
            self.delete_children(kind).await?;
        }
        self.delete_crds(plan).await?;
        for r in &plan.rest {
            if self.delete_named(r).await? && !self.dry_run && r.resource.kind == "Namespace" {
                let api = &self.api(&r.resource, None);
                let name = r.name.as_str();
                self.wait(
                    &format!("namespace {name} to be deleted"),
                    move || async move {
                        match api.get_opt(name).await {
                            Ok(None) => Ok(None),
                            Ok(Some(ns)) => Ok(Some(namespace_state(&ns))),
                            Err(e) => Err(api_error("read", &format!("namespace {name}"), e)),
                        }
                    },
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Report one deletion (or, with `--dry-run`, print it).
    fn report(&mut self, what: &str) {
        self.deleted += 1;
        if self.dry_run {
            println!("{what}");
        } else {
            log(Level::Info, &format!("deleted {what}"));
        }
    }

    /// Delete one named object; `Ok(false)` when it was not there.
    async fn delete_named(&mut self, r: &ObjectRef) -> anyhow::Result<bool> {
        let api = self.api(&r.resource, r.namespace.as_deref());
        let what = r.to_string();
        if self.dry_run {
            return match api.get_opt(&r.name).await {
                Ok(Some(_)) => {
                    self.report(&what);
                    Ok(true)
                }
                Ok(None) => Ok(false),
                Err(e) => Err(api_error("read", &what, e)),
            };
        }
        match api.delete(&r.name, &DeleteParams::background()).await {
            Ok(_) => {
                self.report(&what);
                Ok(true)
            }
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(api_error("delete", &what, e)),
        }
    }

    /// Step 1: no controller may act while the objects go.
    async fn stop_controller(&mut self, plan: &UninstallPlan) -> anyhow::Result<()> {
        let r = &plan.controller;
        self.delete_named(r).await?;
        if self.dry_run {
            return Ok(());
        }
        // Waited for even when the Deployment was already gone: a run cut
        // short may have left its pods terminating.
        let pod =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Pod"), "pods");
        let pods = &self.api(&pod, r.namespace.as_deref());
        let lp = &ListParams::default().labels(CONTROLLER_SELECTOR);
        self.wait("the controller-manager pods to stop", move || async move {
            let list = pods
                .list(lp)
                .await
                .map_err(|e| api_error("list", "the controller-manager pods", e))?;
            Ok((!list.items.is_empty()).then(|| {
                format!(
                    "{} controller-manager pod(s) still running",
                    list.items.len()
                )
            }))
        })
        .await
    }

    /// Step 2: delete every object of a Kubeless kind, then strip the
    /// finalizers no controller will remove, and wait until they are gone.
    async fn delete_kubeless_objects(&mut self, kind: &ApiResource) -> anyhow::Result<()> {
        let api = self.api(kind, None);
        let plural = &kind.plural;
        let items = match api.list(&ListParams::default()).await {
            Ok(l) => l.items,
            // The CRD is not installed (or already gone).
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(api_error("list", plural, e)),
        };
        if items.is_empty() {
            return Ok(());
        }
        for o in &items {
            let what = describe(o, kind);
            if self.dry_run {
                self.report(&what);
                continue;
            }
            let ns_api = self.api(kind, o.metadata.namespace.as_deref());
            let name = o.metadata.name.clone().unwrap_or_default();
            if o.metadata.deletion_timestamp.is_none() {
                match ns_api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => continue,
                    Err(e) => return Err(api_error("delete", &what, e)),
                }
            }
            self.strip_finalizers(&ns_api, &name, &what).await?;
            self.report(&what);
        }
        if self.dry_run {
            return Ok(());
        }
        let what = format!("{plural} to be deleted");
        let this = &*self;
        this.wait(&what, move || async move {
            let left = this.strip_all(kind).await?;
            Ok((left > 0).then(|| format!("{left} {plural} left")))
        })
        .await
    }

    /// Remove the Kubeless finalizers of one object (retried on a
    /// concurrent change); gone is fine.
    async fn strip_finalizers(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        what: &str,
    ) -> anyhow::Result<()> {
        for _ in 0..10 {
            let o = match api.get_opt(name).await {
                Ok(Some(o)) => o,
                Ok(None) => return Ok(()),
                Err(e) => return Err(api_error("read", what, e)),
            };
            let current = o.metadata.finalizers.clone().unwrap_or_default();
            let Some(kept) = without_kubeless_finalizers(&current) else {
                return Ok(());
            };
            // The resource version makes this a compare-and-swap: another
            // writer's finalizer is never dropped by accident.
            let patch = json!({"metadata": {
                "resourceVersion": o.metadata.resource_version,
                "finalizers": kept,
            }});
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    log(
                        Level::Info,
                        &format!("removed the Kubeless finalizers of {what}"),
                    );
                    return Ok(());
                }
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(api_error("remove the finalizers of", what, e)),
            }
        }
        bail!("remove the finalizers of {what}: the object keeps changing")
    }

    /// Strip the Kubeless finalizers of whatever is left of `kind`;
    /// answers how many objects are left.
    async fn strip_all(&self, kind: &ApiResource) -> anyhow::Result<usize> {
        let items = match self.api(kind, None).list(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(e) if is_not_found(&e) => return Ok(0),
            Err(e) => return Err(api_error("list", &kind.plural, e)),
        };
        for o in &items {
            let api = self.api(kind, o.metadata.namespace.as_deref());
            let name = o.metadata.name.clone().unwrap_or_default();
            self.strip_finalizers(&api, &name, &describe(o, kind))
                .await?;
        }
        Ok(items.len())
    }

    /// Step 3: the objects the controllers created, in every namespace.
    async fn delete_children(&mut self, kind: &ApiResource) -> anyhow::Result<()> {
        let lp = ListParams::default().labels(CHILD_SELECTOR);
        let items = match self.api(kind, None).list(&lp).await {
            Ok(l) => l.items,
            Err(e) => return Err(api_error("list", &kind.plural, e)),
        };
        for o in items.iter().filter(|o| owned_by_kubeless(&o.metadata)) {
            let what = describe(o, kind);
            if self.dry_run {
                self.report(&what);
                continue;
            }
            let api = self.api(kind, o.metadata.namespace.as_deref());
            let name = o.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => self.report(&what),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(api_error("delete", &what, e)),
            }
        }
        Ok(())
    }

    /// Step 4: the CRDs, waited for until the API server has removed them.
    async fn delete_crds(&mut self, plan: &UninstallPlan) -> anyhow::Result<()> {
        let mut any = false;
        for r in &plan.crds {
            any |= self.delete_named(r).await?;
        }
        if !any || self.dry_run {
            return Ok(());
        }
        let this = &*self;
        this.wait("the CRDs to be deleted", move || async move {
            let mut left = Vec::new();
            for r in &plan.crds {
                match this.api(&r.resource, None).get_opt(&r.name).await {
                    Ok(None) => {}
                    Ok(Some(_)) => left.push(r.name.clone()),
                    Err(e) => return Err(api_error("read", &r.to_string(), e)),
                }
            }
            if !left.is_empty() {
                // An object created while we went (by a controller running
                // elsewhere) must not hold a CRD with its finalizer.
                for kind in &plan.kinds {
                    this.strip_all(kind).await?;
                }
            }
            Ok((!left.is_empty()).then(|| format!("still there: {}", left.join(", "))))
        })
        .await
    }

    /// Poll `check` until it answers `None` (done), at most `--timeout`,
    /// saying every few seconds what it is waiting for.
    async fn wait<F, Fut>(&self, what: &str, mut check: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Option<String>>>,
    {
        let start = Instant::now();
        let mut next_report = start + PROGRESS_EVERY;
        loop {
            let Some(state) = check().await? else {
                return Ok(());
            };
            let now = Instant::now();
            if now.duration_since(start) >= self.timeout {
                bail!(
                    "timed out after {}s waiting for {what} ({state}); run `kubeless uninstall` again to continue",
                    self.timeout.as_secs()
                );
            }
            if now >= next_report {
                log(Level::Info, &format!("waiting for {what}: {state}"));
                next_report = now + PROGRESS_EVERY;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::api::DynamicObject;
    use serde_json::json;

    #[test]
    fn a_terminating_namespace_says_what_holds_it() {
        let ns: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kubeless"},
            "status": {"phase": "Terminating", "conditions": [
                {"type": "NamespaceDeletionDiscoveryFailure", "status": "False",
                 "message": "All resources successfully discovered"},
                {"type": "NamespaceFinalizersRemaining", "status": "True",
                 "message": "Some content in the namespace has finalizers remaining: example.com/x in 1 resource instances"},
            ]},
        }))
        .expect("namespace");
        assert_eq!(
            super::namespace_state(&ns),
            "terminating: Some content in the namespace has finalizers remaining: example.com/x in 1 resource instances"
        );
        let fresh: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kubeless"},
        }))
        .expect("namespace");
        assert_eq!(super::namespace_state(&fresh), "terminating");
    }
}
