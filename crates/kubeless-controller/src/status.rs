//! Status conditions written by the reconcilers (Kubeless had none).

use kube::Api;
use kube::api::{Patch, PatchParams};
use kubeless_api::Condition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::Error;

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A `Ready` condition; the transition time is kept when the status did
/// not change.
pub fn ready(
    previous: &[Condition],
    ready: bool,
    reason: &str,
    message: &str,
    generation: i64,
) -> Condition {
    let status = if ready { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(now);
    Condition {
        type_: "Ready".to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time,
        observed_generation: generation,
    }
}

/// Merge-patch the status subresource, skipping the write when unchanged.
pub async fn patch<K, S>(
    api: &Api<K>,
    name: &str,
    current: Option<&S>,
    status: &S,
) -> Result<(), Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + DeserializeOwned,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(());
    }
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map_err(Error::kube("write status of", name))?;
    Ok(())
}
