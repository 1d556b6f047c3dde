//! What a function image is made of, derived from the function's plan:
//! the image environment, the entrypoint, and the [`BuildSpec`]. Shared by
//! `kubeless function build` and the Kubernetes controller, which plans a
//! build and hands it to a build Job as a [`Request`] (so the Job builds
//! exactly the image the controller already pointed the Deployment at).

use kubeless_plan::FunctionPlan;
use kubeless_plan::expand::expand;
use serde::{Deserialize, Serialize};

use crate::BuildError;
use crate::build::BuildSpec;
use crate::reference::{Destination, ImageRef};

/// Where the base images put the runtime host.
pub const ENTRYPOINT: &str = "/usr/local/bin/kubeless-runtime";
/// Where the function layer puts the artifact.
pub const INSTALL_VOLUME: &str = "/kubeless";

/// The image's environment: the plan's, `$(VAR)` references expanded the
/// way Kubernetes does, with the install volume at `/kubeless`.
pub fn image_env(plan: &FunctionPlan) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for var in &plan.env {
        let value = match var.name.as_str() {
            "KUBELESS_INSTALL_VOLUME" => INSTALL_VOLUME.to_string(),
            _ => expand(&var.value, |name| {
                env.iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            }),
        };
        env.push((var.name.clone(), value));
    }
    env.push((
        "KUBELESS_RUNTIME_LANGUAGE".into(),
        plan.runtime.language.as_str().into(),
    ));
    env
}

/// The build of `plan` on `base`, pushed under `destination`.
pub fn build_spec(plan: &FunctionPlan, destination: Destination, base: ImageRef) -> BuildSpec {
    BuildSpec {
        namespace: plan.namespace.clone(),
        name: plan.name.clone(),
        destination,
        base,
        artifact_key: plan.artifact_key.clone(),
        runtime: plan.runtime.runtime.clone(),
        env: image_env(plan),
        entrypoint: vec![ENTRYPOINT.to_string()],
        working_dir: INSTALL_VOLUME.to_string(),
    }
}

/// A planned build as JSON: what the Kubernetes build Job receives. `tag`
/// is the tag the planner computed; the Job refuses to push under another
/// one (the base image moved in between), so the Deployment never points
/// at an image whose content differs from its tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub namespace: String,
    pub name: String,
    /// `HOST[:PORT][/PREFIX]`.
    pub registry: String,
    /// The base image reference, as resolved (by digest where known).
    pub base: String,
    pub artifact_key: String,
    pub runtime: String,
    pub env: Vec<(String, String)>,
    pub entrypoint: Vec<String>,
    pub working_dir: String,
    pub tag: String,
}

impl Request {
    /// The request for a resolved build.
    pub fn new(spec: &BuildSpec, tag: &str) -> Request {
        let d = &spec.destination;
        Request {
            namespace: spec.namespace.clone(),
            name: spec.name.clone(),
            registry: if d.prefix.is_empty() {
                d.host.clone()
            } else {
                format!("{}/{}", d.host, d.prefix)
            },
            base: spec.base.to_string(),
            artifact_key: spec.artifact_key.clone(),
            runtime: spec.runtime.clone(),
            env: spec.env.clone(),
            entrypoint: spec.entrypoint.clone(),
            working_dir: spec.working_dir.clone(),
            tag: tag.to_string(),
        }
    }

    /// Parse and validate a request.
    pub fn parse(json: &str) -> Result<Request, BuildError> {
        serde_json::from_str(json).map_err(|e| BuildError::Request(e.to_string()))
    }

    /// The build it describes (references validated).
    pub fn spec(&self) -> Result<BuildSpec, BuildError> {
        if self.tag.len() != 64 || !self.tag.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BuildError::Request(format!(
                "tag {:?} is not a SHA-256 hex digest",
                self.tag
            )));
        }
        Ok(BuildSpec {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            destination: Destination::parse(&self.registry)?,
            base: ImageRef::parse(&self.base)?,
            artifact_key: self.artifact_key.clone(),
            runtime: self.runtime.clone(),
            env: self.env.clone(),
            entrypoint: self.entrypoint.clone(),
            working_dir: self.working_dir.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubeless_plan::{Catalogue, Settings};

    fn plan() -> FunctionPlan {
        let f: kubeless_api::Function = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "hello", "namespace": "default"},
            "spec": {"handler": "hello.foo", "runtime": "python3.11", "function": "x",
                     "deployment": {"spec": {"template": {"spec": {"containers": [
                        {"env": [{"name": "A", "value": "1"}]}]}}}}}
        }))
        .expect("function");
        kubeless_plan::plan(&f, &Catalogue::embedded(), &Settings::default()).expect("plan")
    }

    #[test]
    fn image_env_expands_the_install_volume() {
        let env = image_env(&plan());
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("A"), Some("1"));
        assert_eq!(get("FUNC_HANDLER"), Some("foo"));
        assert_eq!(get("KUBELESS_INSTALL_VOLUME"), Some("/kubeless"));
        assert_eq!(
            get("PYTHONPATH"),
            Some("/kubeless/.python_packages:/kubeless")
        );
        assert_eq!(get("KUBELESS_RUNTIME_LANGUAGE"), Some("python"));
    }

    #[test]
    fn a_request_round_trips_and_is_validated() {
        let spec = build_spec(
            &plan(),
            Destination::parse("registry.local:5000/team").expect("destination"),
            ImageRef::parse("registry.local:5000/kubeless/base-python:3.11").expect("base"),
        );
        let tag = "a".repeat(64);
        let r = Request::new(&spec, &tag);
        let json = serde_json::to_string(&r).expect("json");
        let back = Request::parse(&json).expect("parse");
        assert_eq!(back, r);
        let s = back.spec().expect("spec");
        assert_eq!(s.destination, spec.destination);
        assert_eq!(s.base, spec.base);
        assert_eq!(s.env, spec.env);
        let bad = Request {
            tag: "../x".into(),
            ..r.clone()
        };
        assert!(bad.spec().is_err());
        let bad = Request {
            registry: "Bad Host".into(),
            ..r
        };
        assert!(bad.spec().is_err());
        assert!(Request::parse("{").is_err());
    }
}
