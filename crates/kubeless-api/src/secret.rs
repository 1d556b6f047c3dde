//! The subset of core/v1 `Secret` the embedded server stores.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::ObjectMeta;

/// A named set of keys; values are base64 in `data` as in Kubernetes, plain
/// text in `stringData` (folded into `data` on write).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    #[serde(default = "secret_api_version")]
    pub api_version: String,
    #[serde(default = "secret_kind")]
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub type_: String,
}

fn secret_api_version() -> String {
    "v1".to_string()
}
fn secret_kind() -> String {
    "Secret".to_string()
}
