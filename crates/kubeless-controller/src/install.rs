//! The installation manifests (`kubeless install`, `deploy/kubeless.yaml`)
//! and applying them to a cluster.
//!
//! Objects, in apply order: the six CRDs (`kubeless_api::crd`), namespace
//! `kubeless`, ServiceAccount `controller-acct`, a least-privilege
//! ClusterRole/Binding for what the controllers touch, a Role/Binding for
//! the Lease and `kubeless-config` in the install namespace, the default
//! ConfigMap and the `kubeless-controller-manager` Deployment (one container
//! running `kubeless controller-manager`; two replicas elect a leader).
//!
//! [`uninstall_plan`] is the reverse, derived from the same list so the two
//! cannot drift: what `kubeless uninstall` removes and in which order. The
//! order is what keeps removal from hanging on finalizers that outlive the
//! controller (the original Kubeless's problem):
//!
//! 1. the controller-manager Deployment, so no controller re-adds a
//!    finalizer or recreates a child while the rest goes;
//! 2. every Kubeless object in every namespace, triggers before functions:
//!    deleted, then stripped of the `kubeless.io/` finalizers
//!    ([`without_kubeless_finalizers`]) whose controller is gone. Deleting
//!    first matters: once an object has a deletion timestamp the API server
//!    refuses new finalizers, so even a controller still running elsewhere
//!    cannot block it again;
//! 3. the objects the controllers created for them ([`UninstallPlan::children`],
//!    labelled `created-by: kubeless` and owned by a `kubeless.io` object,
//!    see [`owned_by_kubeless`]): deleted explicitly rather than left to the
//!    garbage collector, so nothing lingers where the collector is slow;
//! 4. the CRDs, waited for until gone (the API server deletes any instance
//!    left, which no longer carries a finalizer of ours);
//! 5. the rest of the installation in reverse apply order, the namespace
//!    last.

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::settings::{CONFIG_MAP, INSTALL_NAMESPACE, default_config_data, default_image};

/// The controller-manager Deployment (in [`INSTALL_NAMESPACE`]).
pub const CONTROLLER_DEPLOYMENT: &str = "kubeless-controller-manager";
/// Label selector of the controller-manager pods.
pub const CONTROLLER_SELECTOR: &str = "kubeless=controller";
/// Label selector of the objects the controllers create.
pub const CHILD_SELECTOR: &str = "created-by=kubeless";
/// Prefix of every finalizer the controllers set (`kubeless.io/function`,
/// `kubeless.io/httptrigger`, `kubeless.io/cronjobtrigger`, ...).
pub const FINALIZER_PREFIX: &str = "kubeless.io/";
use crate::{Error, LEASE_NAME};

/// Every installation object, in apply order.
pub fn manifests(image: &str) -> Vec<Value> {
    let ns = INSTALL_NAMESPACE;
    let mut out = kubeless_api::crd::crds();
    for crd in &mut out {
        if crd.pointer("/spec/names/kind") == Some(&json!("Function")) {
            crd["metadata"]["annotations"] =
                json!({"kubeless.io/namespace": ns, "kubeless.io/config": CONFIG_MAP});
        }
    }
    out.extend([
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "controller-acct", "namespace": ns}}),
        controller_cluster_role(),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "kubeless-controller-deployer"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubeless-controller-deployer"},
               "subjects": [{"kind": "ServiceAccount", "name": "controller-acct", "namespace": ns}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "kubeless-controller-manager", "namespace": ns},
               "rules": [
                   {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
                   {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [LEASE_NAME],
                    "verbs": ["get", "update"]},
               ]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "kubeless-controller-manager", "namespace": ns},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kubeless-controller-manager"},
               "subjects": [{"kind": "ServiceAccount", "name": "controller-acct", "namespace": ns}]}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": CONFIG_MAP, "namespace": ns},
               "data": default_config_data()}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "kubeless-controller-manager", "namespace": ns,
                            "labels": {"kubeless": "controller"}},
               "spec": {
                   "replicas": 1,
                   "selector": {"matchLabels": {"kubeless": "controller"}},
                   "template": {
                       "metadata": {"labels": {"kubeless": "controller"}},
                       "spec": {
                           "serviceAccountName": "controller-acct",
                           "securityContext": {"runAsNonRoot": true, "runAsUser": 1000},
                           "containers": [{
                               "name": "kubeless-controller-manager",
                               "image": image,
                               "imagePullPolicy": "IfNotPresent",
                               "args": ["controller-manager"],
                               "env": [
                                   {"name": "KUBELESS_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                                   {"name": "KUBELESS_CONFIG", "value": CONFIG_MAP},
                                   {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                               ],
                               "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                             "limits": {"memory": "256Mi"}},
                               "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                                   "capabilities": {"drop": ["ALL"]}},
                           }],
                       },
                   },
               }}),
    ]);
    out
}

/// The ClusterRole of controller-manager: exactly the verbs its code uses,
/// per resource (a test runs the controller with this role's token).
///
/// - children (ConfigMap, Service, Deployment, HPA, Ingress, CronJob):
///   read and watched (`get`, `list`, `watch`), written by server-side
///   apply (`patch`; `create` for a new one), removed (`delete`);
/// - build Jobs: created with POST, listed and watched, deleted one by
///   one or as a collection; never patched;
/// - ServiceMonitors: read, applied and deleted by name (never listed);
/// - the registry credentials: read by name only;
/// - Functions, HTTP and cron triggers: read, watched and patched (the
///   finalizer is a JSON patch); HTTP and cron triggers are deleted with
///   their function; Kafka and NATS triggers are read and watched by the
///   consumers; every status is written with a merge patch;
/// - pods: listed and watched, never read one by one or written: a
///   function's pods say why it is not ready (image pull, crash loop,
///   failed init container, no node), and a change of them wakes its
///   reconcile; events: listed (a pod's Warning events, by field
///   selector), for a pod stuck before its containers start (a secret
///   that cannot be mounted).
///
/// Not granted (the original Kubeless's role had them): pod `get`,
/// `create` or `delete`, the CRDs, KinesisTriggers (not consumed),
/// `update` anywhere (no PUT is sent).
/// `kubeless-config` is read through `configmaps`; the Lease has a Role
/// of its own in the install namespace.
pub fn controller_cluster_role() -> Value {
    let write = json!(["create", "get", "list", "watch", "patch", "delete"]);
    let read = json!(["get", "list", "watch"]);
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
    "metadata": {"name": "kubeless-controller-deployer"},
    "rules": [
        {"apiGroups": [""], "resources": ["services", "configmaps"], "verbs": write},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": write},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": write},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": write},
        {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": write},
        {"apiGroups": ["batch"], "resources": ["jobs"],
         "verbs": ["create", "get", "list", "watch", "delete", "deletecollection"]},
        {"apiGroups": ["monitoring.coreos.com"], "resources": ["servicemonitors"],
         "verbs": ["create", "get", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["secrets"],
         "resourceNames": ["kubeless-registry-credentials"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
        {"apiGroups": ["kubeless.io"], "resources": ["functions"],
         "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["kubeless.io"], "resources": ["httptriggers", "cronjobtriggers"],
         "verbs": ["get", "list", "watch", "patch", "delete"]},
        {"apiGroups": ["kubeless.io"], "resources": ["kafkatriggers", "natstriggers"],
         "verbs": read},
        {"apiGroups": ["kubeless.io"],
         "resources": ["functions/status", "httptriggers/status", "cronjobtriggers/status",
                       "kafkatriggers/status", "natstriggers/status"],
         "verbs": ["patch"]},
    ]})
}

/// The manifests as one YAML stream (what `deploy/kubeless.yaml` holds).
pub fn manifests_yaml(image: &str) -> String {
    let mut out =
        String::from("# Generated by `kubeless install --dry-run`; kept in sync by a test.\n");
    for m in manifests(image) {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&m).unwrap_or_default());
    }
    out
}

/// The default manifests with the project's image.
pub fn default_manifests_yaml() -> String {
    manifests_yaml(&default_image())
}

fn api_resource(obj: &Value) -> Result<ApiResource, Error> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let plural = match kind {
        "CustomResourceDefinition" => "customresourcedefinitions",
        "Namespace" => "namespaces",
        "ServiceAccount" => "serviceaccounts",
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "ConfigMap" => "configmaps",
        "Deployment" => "deployments",
        other => return Err(Error::Decode(format!("no resource for kind {other}"))),
    };
    Ok(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        plural,
    ))
}

/// Apply `objects` in order with server-side apply (idempotent).
pub async fn apply(client: &Client, objects: &[Value]) -> Result<Vec<String>, Error> {
    let pp = PatchParams::apply("kubeless-install").force();
    let mut done = Vec::new();
    for obj in objects {
        let ar = api_resource(obj)?;
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let api: Api<DynamicObject> = match obj["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        api.patch(&name, &pp, &Patch::Apply(obj))
            .await
            .map_err(Error::kube("apply", &name))?;
        done.push(format!("{}/{name}", ar.kind));
    }
    Ok(done)
}

/// One object, named.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRef {
    pub resource: ApiResource,
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.resource.kind, self.name),
            None => write!(f, "{} {}", self.resource.kind, self.name),
        }
    }
}

/// What `kubeless uninstall` removes, step by step (module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct UninstallPlan {
    /// Step 1: the controller-manager Deployment; its pods carry
    /// [`CONTROLLER_SELECTOR`].
    pub controller: ObjectRef,
    /// Step 2: the Kubeless kinds, triggers first, Function last.
    pub kinds: Vec<ApiResource>,
    /// Step 3: the kinds of the objects the controllers create, listed with
    /// [`CHILD_SELECTOR`] in every namespace and deleted when
    /// [`owned_by_kubeless`].
    pub children: Vec<ApiResource>,
    /// Step 4: the CRDs.
    pub crds: Vec<ObjectRef>,
    /// Step 5: the other installation objects, reverse apply order; the
    /// namespace is last.
    pub rest: Vec<ObjectRef>,
}

fn object_ref(obj: &Value) -> Result<ObjectRef, Error> {
    Ok(ObjectRef {
        resource: api_resource(obj)?,
        namespace: obj["metadata"]["namespace"].as_str().map(str::to_string),
        name: obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    })
}

/// The uninstall steps for what [`manifests`] installs.
pub fn uninstall_plan() -> Result<UninstallPlan, Error> {
    let objects = manifests(&default_image());
    let mut crds = Vec::new();
    let mut kinds = Vec::new();
    let mut rest = Vec::new();
    let mut controller = None;
    for obj in &objects {
        let r = object_ref(obj)?;
        match r.resource.kind.as_str() {
            "CustomResourceDefinition" => {
                let group = obj.pointer("/spec/group").and_then(Value::as_str);
                let version = obj.pointer("/spec/versions/0/name").and_then(Value::as_str);
                let kind = obj.pointer("/spec/names/kind").and_then(Value::as_str);
                let plural = obj.pointer("/spec/names/plural").and_then(Value::as_str);
                let (Some(g), Some(v), Some(k), Some(p)) = (group, version, kind, plural) else {
                    return Err(Error::Decode(format!("CRD {} has no names", r.name)));
                };
                kinds.push(ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk(g, v, k),
                    p,
                ));
                crds.push(r);
            }
            "Deployment" if r.name == CONTROLLER_DEPLOYMENT => controller = Some(r),
            _ => rest.push(r),
        }
    }
    // Functions last: a trigger names its function, never the reverse.
    kinds.sort_by_key(|k| k.kind == "Function");
    rest.reverse();
    // The namespace goes last whatever the apply order was: deleting it
    // deletes what is still inside.
    rest.sort_by_key(|r| r.resource.kind == "Namespace");
    let controller = controller.ok_or_else(|| {
        Error::Decode("the manifests have no controller-manager Deployment".into())
    })?;
    let child = |group: &str, version: &str, kind: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    };
    Ok(UninstallPlan {
        controller,
        kinds,
        // Owners before what they own: a CronJob's Jobs, a Deployment's
        // pods go with it.
        children: vec![
            child("networking.k8s.io", "v1", "Ingress", "ingresses"),
            child("batch", "v1", "CronJob", "cronjobs"),
            child("batch", "v1", "Job", "jobs"),
            child(
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
            ),
            child("apps", "v1", "Deployment", "deployments"),
            child("", "v1", "Service", "services"),
            child("", "v1", "ConfigMap", "configmaps"),
        ],
        crds,
        rest,
    })
}

/// `finalizers` without the Kubeless ones, or `None` when there is none of
/// ours (nothing to patch). Other finalizers are kept: they belong to
/// controllers that are still running.
pub fn without_kubeless_finalizers(finalizers: &[String]) -> Option<Vec<String>> {
    let kept: Vec<String> = finalizers
        .iter()
        .filter(|f| !f.starts_with(FINALIZER_PREFIX))
        .cloned()
        .collect();
    (kept.len() != finalizers.len()).then_some(kept)
}

/// True for an object the controllers created: labelled `created-by:
/// kubeless` and owned by a `kubeless.io` object (a Function or trigger).
/// A user's object that merely carries the label is not touched.
pub fn owned_by_kubeless(meta: &kube::core::ObjectMeta) -> bool {
    let labelled = meta
        .labels
        .as_ref()
        .and_then(|l| l.get("created-by"))
        .is_some_and(|v| v == "kubeless");
    let owned = meta.owner_references.as_ref().is_some_and(|owners| {
        owners.iter().any(|o| {
            o.api_version
                .split_once('/')
                .is_some_and(|(g, _)| g == kubeless_api::GROUP)
        })
    });
    labelled && owned
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn uninstall_removes_everything_install_creates_in_order() {
        let plan = super::uninstall_plan().expect("plan");
        let installed: Vec<String> = super::manifests("img")
            .iter()
            .map(|o| super::object_ref(o).expect("known kind").to_string())
            .collect();
        let mut removed: Vec<String> = std::iter::once(plan.controller.to_string())
            .chain(plan.crds.iter().map(ToString::to_string))
            .chain(plan.rest.iter().map(ToString::to_string))
            .collect();
        let mut want = installed.clone();
        want.sort();
        removed.sort();
        assert_eq!(
            removed, want,
            "uninstall and install cover the same objects"
        );
        assert_eq!(
            plan.controller.to_string(),
            "Deployment kubeless/kubeless-controller-manager"
        );
        let kinds: Vec<&str> = plan.kinds.iter().map(|k| k.kind.as_str()).collect();
        assert_eq!(kinds.len(), 6);
        assert_eq!(kinds.last(), Some(&"Function"));
        assert!(kinds.contains(&"HTTPTrigger") && kinds.contains(&"CronJobTrigger"));
        assert!(
            plan.kinds
                .iter()
                .all(|k| k.api_version == "kubeless.io/v1beta1")
        );
        let rest: Vec<String> = plan.rest.iter().map(ToString::to_string).collect();
        assert_eq!(
            rest,
            [
                "ConfigMap kubeless/kubeless-config",
                "RoleBinding kubeless/kubeless-controller-manager",
                "Role kubeless/kubeless-controller-manager",
                "ClusterRoleBinding kubeless-controller-deployer",
                "ClusterRole kubeless-controller-deployer",
                "ServiceAccount kubeless/controller-acct",
                "Namespace kubeless",
            ]
        );
    }

    #[test]
    fn only_kubeless_finalizers_are_removed() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            super::without_kubeless_finalizers(&f(&["kubeless.io/function", "example.com/x"])),
            Some(f(&["example.com/x"]))
        );
        assert_eq!(
            super::without_kubeless_finalizers(&f(&["kubeless.io/httptrigger"])),
            Some(vec![])
        );
        assert_eq!(
            super::without_kubeless_finalizers(&f(&["example.com/x"])),
            None
        );
        assert_eq!(super::without_kubeless_finalizers(&[]), None);
    }

    #[test]
    fn children_are_labelled_and_owned_by_a_kubeless_object() {
        let meta = |v: serde_json::Value| -> kube::core::ObjectMeta {
            serde_json::from_value(v).expect("meta")
        };
        let owner = json!([{"apiVersion": "kubeless.io/v1beta1", "kind": "Function",
                            "name": "f", "uid": "u"}]);
        assert!(super::owned_by_kubeless(&meta(json!({
            "labels": {"created-by": "kubeless"}, "ownerReferences": owner}))));
        // The user's own object with the label, or ours without owner: kept.
        assert!(!super::owned_by_kubeless(&meta(json!({
            "labels": {"created-by": "kubeless"}}))));
        assert!(!super::owned_by_kubeless(&meta(
            json!({"ownerReferences": owner})
        )));
        assert!(!super::owned_by_kubeless(&meta(json!({
            "labels": {"created-by": "kubeless"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                 "name": "f", "uid": "u"}]}))));
    }

    #[test]
    fn deploy_manifest_is_in_sync() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/kubeless.yaml");
        let got = super::default_manifests_yaml();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(path, &got).expect("write deploy/kubeless.yaml");
        }
        let want = std::fs::read_to_string(path).expect("deploy/kubeless.yaml exists");
        assert_eq!(
            got, want,
            "deploy/kubeless.yaml is stale: run UPDATE_GOLDEN=1 cargo test -p kubeless-controller"
        );
    }
}
