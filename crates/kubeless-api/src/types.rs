//! The `kubeless.io/v1beta1` object types.
//!
//! JSON names are exactly those of the original Kubeless CRDs (hyphenated
//! `function-content-type`, `function-name`, ...; camelCase
//! `horizontalPodAutoscaler`, `functionSelector`). Function spec fields have
//! no `omitempty` in Kubeless, so they are always serialised. Embedded
//! Kubernetes objects (`deployment`, `service`, `horizontalPodAutoscaler`)
//! are kept as raw JSON so that no field a user wrote is ever dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `apiVersion` of every Kubeless object.
pub const API_VERSION: &str = "kubeless.io/v1beta1";
/// API group of every Kubeless object.
pub const GROUP: &str = "kubeless.io";
/// API version (without group).
pub const VERSION: &str = "v1beta1";

/// Standard object metadata (the subset Kubeless objects use).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<Value>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A Kubeless object: `apiVersion`, `kind`, `metadata`, `spec`, `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Object<S, St> {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<St>,
}

/// `spec` of a Function. Every field is always serialised, as Kubeless does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FunctionSpec {
    #[serde(default)]
    pub handler: String,
    #[serde(default)]
    pub function: String,
    #[serde(default, rename = "function-content-type")]
    pub function_content_type: String,
    #[serde(default)]
    pub checksum: String,
    #[serde(default)]
    pub runtime: String,
    #[serde(default)]
    pub timeout: String,
    #[serde(default)]
    pub deps: String,
    /// A whole apps/v1 Deployment used as a template.
    #[serde(default)]
    #[schemars(schema_with = "crate::crd::embedded_object")]
    pub deployment: Value,
    /// A core/v1 ServiceSpec.
    #[serde(default)]
    #[schemars(schema_with = "crate::crd::embedded_object")]
    pub service: Value,
    /// A whole autoscaling HorizontalPodAutoscaler.
    #[serde(default, rename = "horizontalPodAutoscaler")]
    #[schemars(schema_with = "crate::crd::embedded_object")]
    pub horizontal_pod_autoscaler: Value,
}

/// Where a function is in its life, as shown by `kubeless function ls`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FunctionPhase {
    #[default]
    Pending,
    Building,
    Starting,
    Ready,
    Failed,
}

impl fmt::Display for FunctionPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            FunctionPhase::Pending => "Pending",
            FunctionPhase::Building => "Building",
            FunctionPhase::Starting => "Starting",
            FunctionPhase::Ready => "Ready",
            FunctionPhase::Failed => "Failed",
        };
        f.write_str(s)
    }
}

/// A status condition (`Ready`, ...), as Kubernetes conditions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub observed_generation: i64,
}

/// `status` of a Function (an addition of ours: Kubeless had none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    #[serde(default)]
    pub phase: FunctionPhase,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub observed_generation: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Image built for this function, when the build step ran.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
}

/// `spec` of an HTTPTrigger.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HttpTriggerSpec {
    #[serde(default, rename = "function-name")]
    pub function_name: String,
    #[serde(default, rename = "host-name")]
    pub host_name: String,
    #[serde(default)]
    pub tls: bool,
    #[serde(default, rename = "tls-secret")]
    pub tls_secret: String,
    #[serde(default)]
    pub path: String,
    #[serde(default, rename = "basic-auth-secret")]
    pub basic_auth_secret: String,
    #[serde(default)]
    pub gateway: String,
    #[serde(default, rename = "cors-enable")]
    pub cors_enable: bool,
}

/// `spec` of a CronJobTrigger. `payload` is any JSON; `null` means a GET.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CronJobTriggerSpec {
    #[serde(default)]
    pub schedule: String,
    #[serde(default, rename = "function-name")]
    pub function_name: String,
    #[serde(default)]
    #[schemars(schema_with = "crate::crd::any_value")]
    pub payload: Value,
}

/// A label selector requirement (`matchExpressions` item).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LabelSelectorRequirement {
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// metav1 LabelSelector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// `spec` of a KafkaTrigger or NATSTrigger.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicTriggerSpec {
    #[serde(default)]
    pub topic: String,
    #[serde(default)]
    pub function_selector: LabelSelector,
}

/// `spec` of a KinesisTrigger.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KinesisTriggerSpec {
    #[serde(default, rename = "function-name")]
    pub function_name: String,
    #[serde(default, rename = "aws-region")]
    pub aws_region: String,
    #[serde(default)]
    pub secret: String,
    #[serde(default)]
    pub stream: String,
    #[serde(default)]
    pub shard: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
}

/// `status` of a trigger (an addition of ours): health and delivery counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Events the function answered with 2xx (since the server started).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub delivered: u64,
    /// Deliveries retried after the function answered with an error.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub retried: u64,
    /// Events written to the dead-letter topic or subject.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub dead_lettered: u64,
    /// Events being delivered now.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub in_flight: u64,
    /// Cron runs skipped because the previous run was still going.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub skipped: u64,
    /// Cron runs that failed (error answer or function unavailable).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub failed: u64,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

pub type Function = Object<FunctionSpec, FunctionStatus>;
pub type HttpTrigger = Object<HttpTriggerSpec, TriggerStatus>;
pub type CronJobTrigger = Object<CronJobTriggerSpec, TriggerStatus>;
pub type KafkaTrigger = Object<TopicTriggerSpec, TriggerStatus>;
pub type NatsTrigger = Object<TopicTriggerSpec, TriggerStatus>;
pub type KinesisTrigger = Object<KinesisTriggerSpec, TriggerStatus>;

/// The kinds the platform stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    Function,
    HTTPTrigger,
    CronJobTrigger,
    KafkaTrigger,
    NATSTrigger,
    KinesisTrigger,
    Secret,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Function,
        Kind::HTTPTrigger,
        Kind::CronJobTrigger,
        Kind::KafkaTrigger,
        Kind::NATSTrigger,
        Kind::KinesisTrigger,
        Kind::Secret,
    ];

    /// The `kind` string.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Function => "Function",
            Kind::HTTPTrigger => "HTTPTrigger",
            Kind::CronJobTrigger => "CronJobTrigger",
            Kind::KafkaTrigger => "KafkaTrigger",
            Kind::NATSTrigger => "NATSTrigger",
            Kind::KinesisTrigger => "KinesisTrigger",
            Kind::Secret => "Secret",
        }
    }

    /// The plural resource name used in API paths (`functions`, ...).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Function => "functions",
            Kind::HTTPTrigger => "httptriggers",
            Kind::CronJobTrigger => "cronjobtriggers",
            Kind::KafkaTrigger => "kafkatriggers",
            Kind::NATSTrigger => "natstriggers",
            Kind::KinesisTrigger => "kinesistriggers",
            Kind::Secret => "secrets",
        }
    }

    /// The `apiVersion` objects of this kind carry.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Secret => "v1",
            _ => API_VERSION,
        }
    }

    /// Look a kind up by its plural resource name.
    pub fn from_plural(plural: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.plural() == plural)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `kind` string that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kind {0:?}")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s) || k.plural() == s.to_ascii_lowercase())
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}
