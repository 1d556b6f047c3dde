//! The image build step (`enable-build-step: "true"` in `kubeless-config`).
//!
//! For a Function running on a runtime image, the controller plans the
//! function's image before it writes the Deployment:
//!
//! 1. the registry and its credentials come from the Secret
//!    `kubeless-registry-credentials` (a `.dockerconfigjson` with exactly one
//!    registry) in the function's namespace;
//! 2. the tag is computed as `kubeless function build` computes it (the
//!    base is the runtime image; its manifest and config are fetched, its
//!    layers never are);
//! 3. if the registry already has the image, the Deployment uses it and
//!    nothing is built; otherwise the build Job
//!    `build-<function>-<tag[0:10]>` is created (once) and the Deployment
//!    uses the image at once: its pods start when the Job has pushed it.
//!
//! Anything that stops this (no Secret, a registry that is down, a base
//! image that does not exist, a tag written by something else) falls back
//! to the init-container path, with the reason in the Function's status.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use kubeless_builder::auth::DockerConfig;
use kubeless_builder::build::{self, Existing};
use kubeless_builder::function::{Request, build_spec};
use kubeless_builder::reference::{Destination, ImageRef};
use kubeless_builder::registry::{ClientOptions, RegistryClient, RetryPolicy};

use crate::render::{self, FunctionObjects, REGISTRY_SECRET};
use crate::settings::Settings;
use crate::{Error, error_chain};

/// What the build step decided.
#[derive(Debug)]
pub enum Outcome {
    /// The Deployment runs `image`; `job` builds it when it is not in the
    /// registry yet.
    Image {
        image: String,
        job: Option<Box<Job>>,
    },
    /// The init-container path, and why.
    Fallback(String),
}

/// The registry of a `.dockerconfigjson`: its only `auths` entry, with the
/// user name as repository prefix where it is a valid one (as Kubeless's
/// `<registry>/<user>/<function>`).
pub fn destination(config: &DockerConfig) -> Result<Destination, String> {
    let mut auths = config.auths.iter();
    let (Some((host, creds)), None) = (auths.next(), auths.next()) else {
        return Err(format!(
            "the secret {REGISTRY_SECRET} must name exactly one registry in .dockerconfigjson, it names {}",
            config.auths.len()
        ));
    };
    let with_user = format!("{host}/{}", creds.username.to_ascii_lowercase());
    Destination::parse(&with_user)
        .or_else(|_| Destination::parse(host))
        .map_err(|e| e.to_string())
}

/// Plan the image of a rendered Function. `Ok(None)`: the Function has an
/// image of its own (nothing to build). Errors are API-server errors only.
pub async fn plan(
    client: &Client,
    ns: &str,
    objects: &FunctionObjects,
    settings: &Settings,
) -> Result<Option<Outcome>, Error> {
    let Some(inputs) = &objects.build else {
        return Ok(None);
    };
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(REGISTRY_SECRET)
        .await
        .map_err(Error::kube("read secret", REGISTRY_SECRET))?;
    let Some(secret) = secret else {
        return Ok(Some(Outcome::Fallback(format!(
            "image build step skipped: secret {REGISTRY_SECRET} not found in namespace {ns}; using init containers"
        ))));
    };
    let fallback = |why: String| {
        Ok(Some(Outcome::Fallback(format!(
            "image build step failed: {why}; using init containers"
        ))))
    };
    let Some(json) = secret
        .data
        .as_ref()
        .and_then(|d| d.get(".dockerconfigjson"))
    else {
        return fallback(format!(
            "secret {REGISTRY_SECRET} has no .dockerconfigjson key"
        ));
    };
    let origin = format!("secret {ns}/{REGISTRY_SECRET}");
    let config = match DockerConfig::parse(&json.0, &origin) {
        Ok(c) => c,
        Err(e) => return fallback(error_chain(&e)),
    };
    let dest = match destination(&config) {
        Ok(d) => d,
        Err(e) => return fallback(e),
    };
    let base = match ImageRef::parse(&inputs.runtime_image) {
        Ok(b) => b,
        Err(e) => return fallback(error_chain(&e)),
    };
    let insecure: BTreeSet<String> = if settings.registry_tls_verify {
        BTreeSet::new()
    } else {
        [dest.host.clone(), base.host.clone()].into_iter().collect()
    };
    let registry = match RegistryClient::new(ClientOptions {
        credentials: config,
        insecure,
        // A reconcile waits for this: two quick attempts, then the
        // fallback (the next reconcile tries again).
        retry: RetryPolicy {
            attempts: 2,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_millis(500),
        },
    }) {
        Ok(r) => r,
        Err(e) => return fallback(error_chain(&e)),
    };
    let spec = build_spec(&inputs.plan, dest, base);
    let resolved = match build::resolve(&registry, spec).await {
        Ok(r) => r,
        Err(e) => return fallback(error_chain(&e)),
    };
    let image = resolved.target.to_string();
    match build::check(&registry, &resolved).await {
        Ok(Existing::UpToDate { .. }) => Ok(Some(Outcome::Image { image, job: None })),
        Ok(Existing::Absent) => {
            let request = serde_json::to_string(&Request::new(&resolved.spec, &resolved.tag))
                .map_err(|e| Error::Decode(e.to_string()))?;
            match render::build_job(&objects.deployment, &resolved.tag, &request, settings) {
                Ok(job) => Ok(Some(Outcome::Image {
                    image,
                    job: Some(Box::new(job)),
                })),
                Err(e) => fallback(e.to_string()),
            }
        }
        Err(e) => fallback(error_chain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> DockerConfig {
        DockerConfig::parse(json.as_bytes(), "test").expect("docker config")
    }

    #[test]
    fn the_registry_comes_from_the_only_auths_entry() {
        let c = config(r#"{"auths": {"http://10.0.0.1:5000/v2": {"auth": "QnVpbGRlcjpwdw=="}}}"#);
        let d = destination(&c).expect("one registry");
        assert_eq!(d.host, "10.0.0.1:5000");
        assert_eq!(d.prefix, "builder");
        let c = config(
            r#"{"auths": {"https://index.docker.io/v1/": {"username": "me", "password": "x"}}}"#,
        );
        assert_eq!(destination(&c).expect("docker hub").host, "docker.io");
        let c = config(
            r#"{"auths": {"a.io": {"username": "u", "password": "x"}, "b.io": {"username": "u", "password": "x"}}}"#,
        );
        assert!(destination(&c).unwrap_err().contains("exactly one"));
        assert!(destination(&DockerConfig::default()).is_err());
        // A user name that is not a repository component is left out.
        let c = config(r#"{"auths": {"r.io": {"username": "Me@Corp", "password": "x"}}}"#);
        let d = destination(&c).expect("registry");
        assert_eq!((d.host.as_str(), d.prefix.as_str()), ("r.io", ""));
    }
}
