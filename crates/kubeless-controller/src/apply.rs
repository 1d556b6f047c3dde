//! Writing rendered objects: never over someone else's object.
//!
//! [`ensure`] reads the object first. One that exists without the
//! `created-by: kubeless` label belongs to someone else: it is left alone and
//! reported as [`Conflict`] (spec 3.3), which the reconciler turns into a
//! status condition. Ours, or absent, is written with server-side apply
//! (field manager `kubeless-controller`), which is idempotent: an unchanged
//! object is not rewritten, and fields we stopped rendering are removed.

use std::fmt::Debug;

use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "kubeless-controller";

/// An object with our name that Kubeless did not create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl Conflict {
    /// Kubeless's message, kept because users grep for it.
    pub fn message(&self) -> String {
        format!(
            "Found a conflicting {} object {}/{}. Aborting",
            self.kind.to_ascii_lowercase(),
            self.namespace,
            self.name
        )
    }
}

/// True when the object carries `created-by: kubeless`.
pub fn is_ours<K: Resource>(o: &K) -> bool {
    o.labels().get("created-by").map(String::as_str) == Some("kubeless")
}

/// Create or update `desired` unless a foreign object holds its name.
pub async fn ensure<K>(api: &Api<K>, desired: &K) -> Result<Result<K, Conflict>, Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = desired.name_any();
    if let Some(existing) = api
        .get_opt(&name)
        .await
        .map_err(Error::kube("read", &name))?
        && !is_ours(&existing)
    {
        return Ok(Err(Conflict {
            kind: K::kind(&()).to_string(),
            namespace: existing.namespace().unwrap_or_default(),
            name,
        }));
    }
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api
        .patch(&name, &pp, &Patch::Apply(desired))
        .await
        .map_err(Error::kube("apply", &name))?;
    Ok(Ok(applied))
}

/// Delete an object if it exists and is ours (background propagation).
pub async fn delete_ours<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let Some(existing) = api.get_opt(name).await.map_err(Error::kube("read", name))? else {
        return Ok(());
    };
    if !is_ours(&existing) {
        return Ok(());
    }
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube("delete", name)(e)),
    }
}
