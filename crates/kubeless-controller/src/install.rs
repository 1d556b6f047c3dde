//! The installation manifests (`kubeless install`, `deploy/kubeless.yaml`)
//! and applying them to a cluster.
//!
//! Objects, in apply order: the six CRDs (`kubeless_api::crd`), namespace
//! `kubeless`, ServiceAccount `controller-acct`, a least-privilege
//! ClusterRole/Binding for what the controllers touch, a Role/Binding for
//! the Lease and `kubeless-config` in the install namespace, the default
//! ConfigMap and the `kubeless-controller-manager` Deployment (one container
//! running `kubeless controller-manager`; two replicas elect a leader).

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::settings::{CONFIG_MAP, INSTALL_NAMESPACE, default_config_data, default_image};
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
    let rw = json!([
        "create", "get", "list", "watch", "update", "patch", "delete"
    ]);
    out.extend([
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "controller-acct", "namespace": ns}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "kubeless-controller-deployer"},
               "rules": [
                   {"apiGroups": [""], "resources": ["services", "configmaps"], "verbs": rw},
                   {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": rw},
                   {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
                   {"apiGroups": ["batch"], "resources": ["cronjobs", "jobs"],
                    "verbs": ["create", "get", "list", "watch", "update", "patch", "delete", "deletecollection"]},
                   {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": rw},
                   {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": rw},
                   {"apiGroups": ["kubeless.io"],
                    "resources": ["functions", "httptriggers", "cronjobtriggers", "kafkatriggers", "natstriggers", "kinesistriggers"],
                    "verbs": ["get", "list", "watch", "update", "patch", "delete"]},
                   {"apiGroups": ["kubeless.io"],
                    "resources": ["functions/status", "httptriggers/status", "cronjobtriggers/status",
                                  "kafkatriggers/status", "natstriggers/status", "kinesistriggers/status"],
                    "verbs": ["get", "update", "patch"]},
                   {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["get", "list"]},
               ]}),
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

#[cfg(test)]
mod tests {
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
