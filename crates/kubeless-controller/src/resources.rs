//! The `kubeless.io/v1beta1` kinds as kube-rs resources.
//!
//! The spec and status types are `kubeless-api`'s (the one definition both
//! modes share); this module only wraps them with Kubernetes `ObjectMeta`
//! and implements [`kube::Resource`] so that `Api<Function>`, watchers and
//! controllers work with them. [`to_api`] turns one into the
//! `kubeless-api` object the plan consumes.

use std::borrow::Cow;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kubeless_api::{
    CronJobTriggerSpec, FunctionSpec, FunctionStatus, HttpTriggerSpec, TopicTriggerSpec,
    TriggerStatus,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

macro_rules! kubeless_kind {
    ($(#[$doc:meta])* $name:ident, $spec:ty, $status:ty, $kind:literal, $plural:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            #[serde(default)]
            pub api_version: String,
            #[serde(default)]
            pub kind: String,
            #[serde(default)]
            pub metadata: ObjectMeta,
            #[serde(default)]
            pub spec: $spec,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub status: Option<$status>,
        }

        impl $name {
            /// A new object with `apiVersion` and `kind` set.
            pub fn new(metadata: ObjectMeta, spec: $spec) -> Self {
                $name {
                    api_version: kubeless_api::API_VERSION.to_string(),
                    kind: $kind.to_string(),
                    metadata,
                    spec,
                    status: None,
                }
            }
        }

        impl Resource for $name {
            type DynamicType = ();
            type Scope = NamespaceResourceScope;
            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(kubeless_api::GROUP)
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(kubeless_api::VERSION)
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

kubeless_kind!(
    /// A Function.
    Function, FunctionSpec, FunctionStatus, "Function", "functions"
);
kubeless_kind!(
    /// An HTTPTrigger.
    HttpTrigger, HttpTriggerSpec, TriggerStatus, "HTTPTrigger", "httptriggers"
);
kubeless_kind!(
    /// A CronJobTrigger.
    CronJobTrigger, CronJobTriggerSpec, TriggerStatus, "CronJobTrigger", "cronjobtriggers"
);
kubeless_kind!(
    /// A KafkaTrigger.
    KafkaTrigger, TopicTriggerSpec, TriggerStatus, "KafkaTrigger", "kafkatriggers"
);
kubeless_kind!(
    /// A NATSTrigger.
    NatsTrigger, TopicTriggerSpec, TriggerStatus, "NATSTrigger", "natstriggers"
);

/// Convert between the kube-rs wrapper and the `kubeless-api` object (both
/// serialise to the same JSON). Fails only on metadata the other side cannot
/// hold, which the API server never sends.
pub fn to_api<T: Serialize, U: DeserializeOwned>(obj: &T) -> Result<U, serde_json::Error> {
    serde_json::from_value(serde_json::to_value(obj)?)
}
