//! The function plan: the one place that decides how a Function runs.
//!
//! A pure function, [`plan`], turns a [`Function`](kubeless_api::Function),
//! the [`Catalogue`] of runtimes and the platform [`Settings`] into a
//! [`FunctionPlan`]: code source and checksum, the artifact key, dependency
//! install commands, the environment (`FUNC_*` and the runtime's own), port,
//! timeout, memory limit, secret mounts and replica count. The embedded engine
//! executes a plan with local processes; Kubernetes mode renders the same plan
//! into objects. Neither re-derives what the plan decided.
//!
//! - [`catalogue`]: the runtimes this build can run and how.
//! - [`quantity`]: Kubernetes resource quantities (`128Mi`, `1G`).
//! - [`expand`]: `$(VAR)` expansion, the same rule Kubernetes applies to env.
//! - [`images`]: the Kubernetes runtime images (`runtime-images` format).

pub mod catalogue;
pub mod expand;
pub mod images;
pub mod quantity;

use std::collections::BTreeMap;

use kubeless_api::Function;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use catalogue::{Catalogue, Language, ResolvedRuntime};

/// Default `FUNC_TIMEOUT` in seconds when `spec.timeout` is empty.
pub const DEFAULT_TIMEOUT_SECS: u64 = 180;
/// Default container/target port.
pub const DEFAULT_PORT: u16 = 8080;

/// Platform-wide settings that shape every plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Request body limit in MiB (`REQ_MB_LIMIT`) when the function sets none.
    pub request_mb_limit: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            request_mb_limit: 1,
        }
    }
}

/// One environment variable; values may contain `$(VAR)` references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// A secret the function reads as files under `mount_path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretMount {
    pub secret: String,
    pub mount_path: String,
}

/// A command line; arguments and env values may contain `$(VAR)`
/// references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandLine {
    pub program: String,
    pub args: Vec<String>,
    /// Set on top of the installer's inherited environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

/// Where the function's code comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeSource {
    pub content_type: String,
    /// Inline text, base64, or a URL, depending on `content_type`.
    pub function: String,
    /// `sha256:<hex>` or empty (no verification).
    pub checksum: String,
}

/// Everything needed to run one Function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionPlan {
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    pub runtime: ResolvedRuntime,
    /// The module part of the handler (file name without suffix).
    pub module: String,
    /// The function part of the handler.
    pub function_name: String,
    pub code: CodeSource,
    /// Content of the dependency file (`spec.deps`).
    pub deps: String,
    /// Hex SHA-256 over everything that shapes the prepared artifact: code,
    /// deps, content type, module and runtime. Equal keys share one artifact.
    pub artifact_key: String,
    /// Dependency install command, run in the artifact directory when a
    /// non-empty dependency file is present.
    pub install: Option<CommandLine>,
    /// Build command of compiled languages (Go, Java), run in the artifact
    /// directory after any install, once per artifact. A failure is the
    /// artifact's error (the compiler's output), not a crash loop.
    pub compile: Option<CommandLine>,
    pub timeout_secs: u64,
    /// The port the function serves on (`FUNC_PORT`, the Service target port).
    pub port: u16,
    /// The Service port (`spec.service.ports[0].port`).
    pub service_port: u16,
    /// Memory limit as written (`FUNC_MEMORY_LIMIT`), `0` when unset.
    pub memory_limit: String,
    pub memory_limit_bytes: Option<u64>,
    /// Request body limit in bytes.
    pub request_limit_bytes: u64,
    /// The runtime container environment, in Kubeless order: user env, then
    /// `FUNC_*`, then `KUBELESS_INSTALL_VOLUME` and the runtime's env.
    pub env: Vec<EnvVar>,
    pub secrets: Vec<SecretMount>,
    pub replicas: u32,
    pub labels: BTreeMap<String, String>,
    /// Things the plan could not honour here, for the function's status.
    pub warnings: Vec<String>,
    /// The function's own server (runtime `custom`), started in place of
    /// the runtime host with the same environment, in the artifact
    /// directory. `None` for the built-in languages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<CommandLine>,
}

/// Why a Function cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("handler {0:?} must be <module>.<function>")]
    Handler(String),
    #[error("unknown runtime {runtime:?}; supported runtimes are: {supported}")]
    UnknownRuntime { runtime: String, supported: String },
    /// A known runtime whose toolchain is not installed here; the message
    /// says how to install it.
    #[error("{0}")]
    Unavailable(String),
    #[error(
        "custom runtime image {0:?} cannot run in embedded mode; deploy with --runtime, or use Kubernetes mode"
    )]
    CustomImage(String),
    #[error("spec.timeout {0:?} is not a positive number of seconds")]
    Timeout(String),
    #[error("memory limit {0:?} is not a valid quantity")]
    Memory(String),
}

fn container0(f: &Function) -> Option<&Value> {
    f.spec
        .deployment
        .pointer("/spec/template/spec/containers/0")
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Resolve a Function into its plan.
pub fn plan(
    f: &Function,
    catalogue: &Catalogue,
    settings: &Settings,
) -> Result<FunctionPlan, PlanError> {
    let c0 = container0(f);
    if let Some(image) = c0.and_then(|c| str_at(c, "/image")) {
        return Err(PlanError::CustomImage(image.to_string()));
    }
    let (module, function_name) = split_handler(&f.spec.handler)?;
    let runtime = catalogue.resolve(&f.spec.runtime).ok_or_else(|| {
        match catalogue.unavailable_reason(&f.spec.runtime) {
            Some(reason) => PlanError::Unavailable(reason),
            None => PlanError::UnknownRuntime {
                runtime: f.spec.runtime.clone(),
                supported: catalogue.names().join(", "),
            },
        }
    })?;
    let timeout_secs = parse_timeout(&f.spec.timeout)?;
    let mut warnings = Vec::new();
    if let Some(installed) = catalogue.installed.get(&runtime.language)
        && runtime.language.is_legacy(&runtime.version)
    {
        let lang = runtime.language.display_name();
        let on = if installed.is_empty() {
            format!("the installed {lang}")
        } else {
            format!("the installed {lang} {installed}")
        };
        warnings.push(format!(
            "runtime {} runs on {on} (Kubeless's older versions all run on the toolchain installed here)",
            runtime.runtime
        ));
    }
    let custom = runtime.language == Language::Custom;
    // The module names the executable in the code directory; a path there
    // could start a program outside it.
    if custom && (module.contains('/') || module.contains('\\')) {
        return Err(PlanError::Handler(f.spec.handler.clone()));
    }
    if custom && !f.spec.deps.trim().is_empty() {
        warnings.push(
            "spec.deps is ignored by the custom runtime: ship the server's dependencies in the code archive".into(),
        );
    }

    let memory_limit = c0
        .and_then(|c| str_at(c, "/resources/limits/memory"))
        .unwrap_or("0")
        .to_string();
    let memory_limit_bytes = if memory_limit == "0" {
        None
    } else {
        Some(
            quantity::parse_bytes(&memory_limit)
                .ok_or_else(|| PlanError::Memory(memory_limit.clone()))?,
        )
    };

    let port = service_port_field(&f.spec.service, "targetPort").unwrap_or(DEFAULT_PORT);
    let service_port = service_port_field(&f.spec.service, "port").unwrap_or(port);

    let mut env = Vec::new();
    let mut request_mb = settings.request_mb_limit;
    if let Some(list) = c0.and_then(|c| c.get("env")).and_then(Value::as_array) {
        for item in list {
            let Some(name) = item.get("name").and_then(Value::as_str) else {
                continue;
            };
            match item.get("value").and_then(Value::as_str) {
                Some(value) => {
                    if name == "REQ_MB_LIMIT"
                        && let Ok(mb) = value.parse::<u64>()
                    {
                        request_mb = mb;
                    }
                    env.push(EnvVar {
                        name: name.to_string(),
                        value: value.to_string(),
                    });
                }
                None if item.get("valueFrom").is_some() => {
                    warnings.push(format!("env {name}: valueFrom is not supported in embedded mode; the variable is not set"));
                }
                None => env.push(EnvVar {
                    name: name.to_string(),
                    value: String::new(),
                }),
            }
        }
    }
    let user_env = env.clone();
    for (k, v) in [
        ("FUNC_HANDLER", function_name.clone()),
        ("MOD_NAME", module.clone()),
        ("FUNC_TIMEOUT", timeout_secs.to_string()),
        ("FUNC_RUNTIME", f.spec.runtime.clone()),
        ("FUNC_MEMORY_LIMIT", memory_limit.clone()),
        ("FUNC_PORT", port.to_string()),
        ("KUBELESS_INSTALL_VOLUME", "/kubeless".to_string()),
    ] {
        env.push(EnvVar {
            name: k.to_string(),
            value: v,
        });
    }
    env.extend(runtime.language.runtime_env());

    let secrets = secret_mounts(f, &mut warnings);
    let replicas = f
        .spec
        .deployment
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .map(|r| r.clamp(1, 64) as u32)
        .unwrap_or(1);

    let install = runtime.language.install_command(&user_env);
    let compile = runtime.language.compile_command(&module, &function_name);
    // The Go worker calls the handler by name, so the name is part of what
    // the artifact is; every other language looks it up at start.
    let compiled_handler = (runtime.language == Language::Go).then_some(function_name.as_str());
    let artifact_key = artifact_key(f, &runtime, &module, compiled_handler);
    let server = custom.then(|| CommandLine {
        program: format!("$(KUBELESS_INSTALL_VOLUME)/{module}"),
        args: Vec::new(),
        env: Vec::new(),
    });

    Ok(FunctionPlan {
        namespace: f.metadata.namespace.clone(),
        name: f.metadata.name.clone(),
        generation: f.metadata.generation,
        runtime,
        module,
        function_name,
        code: CodeSource {
            content_type: f.spec.function_content_type.clone(),
            function: f.spec.function.clone(),
            checksum: f.spec.checksum.clone(),
        },
        deps: f.spec.deps.clone(),
        artifact_key,
        install,
        compile,
        timeout_secs,
        port,
        service_port,
        memory_limit,
        memory_limit_bytes,
        request_limit_bytes: request_mb.saturating_mul(1024 * 1024),
        env,
        secrets,
        replicas,
        labels: f.metadata.labels.clone(),
        warnings,
        server,
    })
}

/// Split `module.function`; exactly one dot, both parts non-empty.
pub fn split_handler(handler: &str) -> Result<(String, String), PlanError> {
    match handler.split_once('.') {
        Some((m, f)) if !m.is_empty() && !f.is_empty() && !f.contains('.') => {
            Ok((m.to_string(), f.to_string()))
        }
        _ => Err(PlanError::Handler(handler.to_string())),
    }
}

/// `spec.timeout`: empty means the default; otherwise positive whole seconds.
pub fn parse_timeout(s: &str) -> Result<u64, PlanError> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(DEFAULT_TIMEOUT_SECS);
    }
    match t.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(PlanError::Timeout(s.to_string())),
    }
}

fn service_port_field(service: &Value, field: &str) -> Option<u16> {
    let v = service.pointer(&format!("/ports/0/{field}"))?;
    let n = v
        .as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))?;
    u16::try_from(n).ok().filter(|p| *p > 0)
}

fn secret_mounts(f: &Function, warnings: &mut Vec<String>) -> Vec<SecretMount> {
    let pod = f.spec.deployment.pointer("/spec/template/spec");
    let volumes: BTreeMap<&str, &str> = pod
        .and_then(|p| p.get("volumes"))
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(|v| {
                    Some((
                        v.get("name")?.as_str()?,
                        v.pointer("/secret/secretName")?.as_str()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    if let Some(mounts) = container0(f)
        .and_then(|c| c.get("volumeMounts"))
        .and_then(Value::as_array)
    {
        for m in mounts {
            let (Some(name), Some(path)) = (
                m.get("name").and_then(Value::as_str),
                m.get("mountPath").and_then(Value::as_str),
            ) else {
                continue;
            };
            match volumes.get(name) {
                Some(secret) => {
                    let mount = SecretMount {
                        secret: secret.to_string(),
                        mount_path: path.to_string(),
                    };
                    if !out.contains(&mount) {
                        out.push(mount);
                    }
                }
                None => warnings.push(format!(
                    "volume mount {name}: only secret volumes are supported in embedded mode"
                )),
            }
        }
    }
    out
}

fn artifact_key(
    f: &Function,
    runtime: &ResolvedRuntime,
    module: &str,
    compiled_handler: Option<&str>,
) -> String {
    let mut h = Sha256::new();
    if let Some(handler) = compiled_handler {
        h.update((handler.len() as u64).to_le_bytes());
        h.update(handler.as_bytes());
    }
    for part in [
        runtime.language.as_str(),
        runtime.suffix.as_str(),
        runtime.dep_name.as_deref().unwrap_or(""),
        module,
        &f.spec.function_content_type,
        &f.spec.checksum,
        &f.spec.function,
        &f.spec.deps,
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests;
