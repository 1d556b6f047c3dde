//! Running a function from an OCI image in embedded mode: the proof that a
//! built image works, without a container runtime.
//!
//! A Function runs from an image when its container 0 has an `image` (what
//! `--runtime-image` writes, and what Kubeless's build step gives the
//! Deployment) **and** it carries the annotation
//! `kubeless.io/run-image: "true"`. Without the annotation such a Function
//! keeps failing with "custom runtime image cannot run in embedded mode", as
//! before: pulling and running registry content is opt-in.
//!
//! Flow: [`plan`] turns the Function into a plan whose code source is the
//! image (content type [`CONTENT_TYPE`]); [`prepare`] pulls the image with
//! the `kubeless-builder` registry client (credentials from the secret
//! `kubeless-registry-credentials` in the function's namespace, plain HTTP
//! when `kubeless.io/registry-tls-verify: "false"`), applies its layers
//! safely into `<home>/server/images/<key>/rootfs` (built in a temporary
//! directory, renamed when complete) and keeps the image config beside it;
//! [`command`] starts the image's entrypoint under bubblewrap with that
//! root as `/` (read-only, fresh `/proc`, `/dev` and `/tmp`, the network
//! shared so the host is reachable on loopback), with the image's
//! environment plus the Function's env and the instance's port.
//!
//! Caveats: images are cached by reference, so a moved tag is not pulled
//! again (function image tags are content checksums and never move; pin
//! other images by digest); secrets are not mounted into image instances;
//! bubblewrap is required.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine;
use kubeless_api::{Function, Kind, Secret};
use kubeless_builder::BuildError;
use kubeless_builder::auth::DockerConfig;
use kubeless_builder::reference::ImageRef;
use kubeless_builder::registry::{ClientOptions, RegistryClient};
use kubeless_builder::unpack::{self, UnpackLimits, Usage};
use kubeless_plan::{Catalogue, CodeSource, FunctionPlan, PlanError, Settings};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::Ctx;
use crate::instance::{InstanceCtx, InstanceSpec};

/// The annotation that allows a Function to run from its image.
pub const RUN_IMAGE_ANNOTATION: &str = "kubeless.io/run-image";
/// `"false"` pulls over plain HTTP (`function-registry-tls-verify`).
pub const TLS_VERIFY_ANNOTATION: &str = "kubeless.io/registry-tls-verify";
/// The docker-registry secret with the pull credentials (as in Kubeless).
pub const CREDENTIALS_SECRET: &str = "kubeless-registry-credentials";
/// Code source content type of a plan that runs an image.
pub const CONTENT_TYPE: &str = "oci-image";
const CONTENT_TYPE_INSECURE: &str = "oci-image+insecure";
const READY_MARK: &str = ".kubeless-image";
const CONFIG_FILE: &str = "config.json";
/// Largest layer pulled.
const MAX_LAYER: u64 = 2 * 1024 * 1024 * 1024;
/// Where the runtime host keeps its worker scripts and sockets inside the
/// sandbox (a fresh tmpfs).
const SANDBOX_RUN_DIR: &str = "/tmp/kubeless-run";

/// Why an image could not be prepared for running.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("running a function from an image needs bubblewrap (bwrap), which is not installed")]
    NoSandbox,
    #[error("pull the function image {reference}")]
    Pull {
        reference: String,
        #[source]
        source: BuildError,
    },
    #[error("read the registry credentials secret {secret}: {reason}")]
    Credentials { secret: String, reason: String },
    #[error("write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image preparation was interrupted")]
    Interrupted,
}

/// The image a Function asks to run from, when it is allowed to.
fn requested(f: &Function) -> Option<String> {
    let allowed = f
        .metadata
        .annotations
        .get(RUN_IMAGE_ANNOTATION)
        .is_some_and(|v| v == "true");
    if !allowed {
        return None;
    }
    f.spec
        .deployment
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The plan of a Function that runs from its image, or `None` when it does
/// not. Timeout, memory, replicas, port and user env come from the Function
/// as usual; everything the image defines (handler, runtime, code) comes
/// from the image when it starts.
pub fn plan(
    f: &Function,
    catalogue: &Catalogue,
    settings: &Settings,
) -> Option<Result<FunctionPlan, PlanError>> {
    let image = requested(f)?;
    Some(plan_image(f, &image, catalogue, settings))
}

fn plan_image(
    f: &Function,
    image: &str,
    catalogue: &Catalogue,
    settings: &Settings,
) -> Result<FunctionPlan, PlanError> {
    if let Err(e) = ImageRef::parse(image) {
        return Err(PlanError::CustomImage(e.to_string()));
    }
    let mut g = f.clone();
    if let Some(c0) = g
        .spec
        .deployment
        .pointer_mut("/spec/template/spec/containers/0")
        .and_then(Value::as_object_mut)
    {
        c0.remove("image");
    }
    // The image knows its handler and runtime; the plan only needs valid
    // stand-ins to compute everything else.
    if kubeless_plan::split_handler(&g.spec.handler).is_err() {
        g.spec.handler = "image.handler".into();
    }
    if catalogue.resolve(&g.spec.runtime).is_none()
        && let Some(first) = catalogue.names().into_iter().next()
    {
        g.spec.runtime = first;
    }
    let mut p = kubeless_plan::plan(&g, catalogue, settings)?;
    let insecure = f
        .metadata
        .annotations
        .get(TLS_VERIFY_ANNOTATION)
        .is_some_and(|v| v == "false");
    let content_type = if insecure {
        CONTENT_TYPE_INSECURE
    } else {
        CONTENT_TYPE
    };
    let mut env: Vec<_> = p
        .env
        .iter()
        .take_while(|e| e.name != "FUNC_HANDLER")
        .cloned()
        .collect();
    for (name, set) in [
        ("FUNC_TIMEOUT", !f.spec.timeout.trim().is_empty()),
        ("FUNC_MEMORY_LIMIT", p.memory_limit != "0"),
    ] {
        if set && let Some(v) = p.env.iter().find(|e| e.name == name) {
            env.push(v.clone());
        }
    }
    if !p.secrets.is_empty() {
        p.warnings
            .push("secrets are not mounted into functions run from an image".into());
        p.secrets.clear();
    }
    let mut h = Sha256::new();
    h.update(content_type.as_bytes());
    h.update([0]);
    h.update(image.as_bytes());
    p.artifact_key = hex::encode(h.finalize());
    p.code = CodeSource {
        content_type: content_type.to_string(),
        function: image.to_string(),
        checksum: String::new(),
    };
    p.deps = String::new();
    p.install = None;
    p.compile = None;
    p.env = env;
    Ok(p)
}

/// The image reference of a plan that runs an image.
pub fn image_of(plan: &FunctionPlan) -> Option<&str> {
    matches!(
        plan.code.content_type.as_str(),
        CONTENT_TYPE | CONTENT_TYPE_INSECURE
    )
    .then_some(plan.code.function.as_str())
}

/// Whether an instance's artifact directory is an unpacked image root.
pub fn is_image_root(dir: &Path) -> bool {
    dir.file_name().is_some_and(|n| n == "rootfs")
        && dir.parent().is_some_and(|p| p.join(READY_MARK).is_file())
}

/// Pull and unpack the image of a plan (or return the cached root).
pub async fn prepare(
    ctx: &Ctx,
    plan: &FunctionPlan,
    note: impl Fn(&str),
) -> Result<PathBuf, ImageError> {
    if ctx.instance.bwrap.is_none() {
        return Err(ImageError::NoSandbox);
    }
    let reference = image_of(plan).unwrap_or_default().to_string();
    let pull_err = |source| ImageError::Pull {
        reference: reference.clone(),
        source,
    };
    let root = ctx.home.join("server").join("images");
    let dir = root.join(&plan.artifact_key);
    if dir.join(READY_MARK).is_file() {
        return Ok(dir.join("rootfs"));
    }
    let image = ImageRef::parse(&reference).map_err(pull_err)?;
    let mut opts = ClientOptions {
        credentials: credentials(ctx, &plan.namespace).await?,
        ..ClientOptions::default()
    };
    if plan.code.content_type == CONTENT_TYPE_INSECURE {
        opts.insecure.insert(image.host.clone());
    }
    let client = RegistryClient::new(opts).map_err(pull_err)?;
    note(&format!("pulling image {reference}"));
    let (manifest, _) = client.resolve(&image).await.map_err(pull_err)?;
    let config = client
        .get_config(&image.host, &image.repository, &manifest.config.digest)
        .await
        .map_err(pull_err)?;
    let tmp = root.join(format!(
        ".pull-{}-{}-{}",
        plan.artifact_key,
        std::process::id(),
        rand::random::<u32>()
    ));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImageError::Io { path, source }
    };
    let rootfs = tmp.join("rootfs");
    tokio::fs::create_dir_all(&rootfs)
        .await
        .map_err(io(&rootfs))?;
    let result = async {
        let mut usage = Usage::default();
        for layer in &manifest.layers {
            let blob = client
                .get_blob(&image.host, &image.repository, &layer.digest, MAX_LAYER)
                .await
                .map_err(pull_err)?;
            let (dest, digest) = (rootfs.clone(), layer.digest.clone());
            let so_far = usage;
            usage = tokio::task::spawn_blocking(move || {
                let mut u = so_far;
                unpack::apply_layer(&dest, &blob, &digest, &UnpackLimits::default(), &mut u)
                    .map(|()| u)
            })
            .await
            .map_err(|_| ImageError::Interrupted)?
            .map_err(pull_err)?;
        }
        // bubblewrap mounts /proc, /dev and /tmp on the read-only root, so
        // their mount points must exist (container runtimes add them too).
        // Only missing ones are made: an existing link is resolved by
        // bubblewrap inside the sandbox, never here.
        for d in ["proc", "dev", "tmp"] {
            let p = rootfs.join(d);
            if tokio::fs::symlink_metadata(&p).await.is_err() {
                tokio::fs::create_dir(&p).await.map_err(io(&p))?;
            }
        }
        let cfg = serde_json::to_vec(&config).unwrap_or_default();
        tokio::fs::write(tmp.join(CONFIG_FILE), cfg)
            .await
            .map_err(io(&tmp))?;
        tokio::fs::write(tmp.join(READY_MARK), reference.as_bytes())
            .await
            .map_err(io(&tmp))?;
        Ok::<(), ImageError>(())
    }
    .await;
    if let Err(e) = result {
        remove_tree(&tmp).await;
        return Err(e);
    }
    match tokio::fs::rename(&tmp, &dir).await {
        Ok(()) => {}
        // Another function pulled the same image meanwhile.
        Err(_) if dir.join(READY_MARK).is_file() => remove_tree(&tmp).await,
        Err(source) => {
            remove_tree(&tmp).await;
            return Err(ImageError::Io { path: dir, source });
        }
    }
    Ok(dir.join("rootfs"))
}

async fn remove_tree(p: &Path) {
    // The unpacker keeps directories writable by their owner, so this works
    // on any root it made.
    if let Err(e) = tokio::fs::remove_dir_all(p).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %p.display(), error = %e, "could not remove a partly pulled image");
    }
}

async fn credentials(ctx: &Ctx, ns: &str) -> Result<DockerConfig, ImageError> {
    let store = ctx.store.clone();
    let ns2 = ns.to_string();
    let bad = |reason: String| ImageError::Credentials {
        secret: format!("{ns}/{CREDENTIALS_SECRET}"),
        reason,
    };
    let obj =
        tokio::task::spawn_blocking(move || store.get(Kind::Secret, &ns2, CREDENTIALS_SECRET))
            .await
            .map_err(|_| ImageError::Interrupted)?
            .map_err(|e| bad(e.to_string()))?;
    let Some(obj) = obj else {
        return Ok(DockerConfig::default());
    };
    let secret: Secret = serde_json::from_value(obj).map_err(|e| bad(e.to_string()))?;
    let Some(data) = secret.data.get(".dockerconfigjson") else {
        return Err(bad("it has no .dockerconfigjson key".into()));
    };
    let json = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| bad(format!(".dockerconfigjson is not base64: {e}")))?;
    DockerConfig::parse(&json, &format!("secret {ns}/{CREDENTIALS_SECRET}"))
        .map_err(|e| bad(e.to_string()))
}

/// The instance command for an image root: the image's entrypoint inside
/// bubblewrap with the root as `/`.
pub async fn command(
    ctx: &InstanceCtx,
    spec: &InstanceSpec,
    port: u16,
    scratch: &Path,
) -> Result<Command, String> {
    let plan = &spec.plan;
    let bwrap = ctx
        .bwrap
        .as_ref()
        .ok_or("running a function from an image needs bubblewrap (bwrap)")?;
    let image_dir = spec
        .artifact
        .parent()
        .ok_or("the image root has no parent directory")?;
    let cfg_path = image_dir.join(CONFIG_FILE);
    let cfg: Value = serde_json::from_slice(
        &tokio::fs::read(&cfg_path)
            .await
            .map_err(|e| format!("read {}: {e}", cfg_path.display()))?,
    )
    .map_err(|e| format!("read {}: {e}", cfg_path.display()))?;
    let strings = |ptr: &str| -> Vec<String> {
        cfg.pointer(ptr)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut program = strings("/config/Entrypoint");
    program.extend(strings("/config/Cmd"));
    if program.is_empty() {
        return Err(format!(
            "image {} has no entrypoint or command",
            plan.code.function
        ));
    }
    let workdir = cfg
        .pointer("/config/WorkingDir")
        .and_then(Value::as_str)
        .filter(|s| s.starts_with('/'))
        .unwrap_or("/")
        .to_string();
    let mut env: Vec<(String, String)> = vec![(
        "PATH".into(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    )];
    let mut set = |k: &str, v: String| match env.iter_mut().find(|(ek, _)| ek == k) {
        Some(slot) => slot.1 = v,
        None => env.push((k.to_string(), v)),
    };
    for kv in strings("/config/Env") {
        let (k, v) = kv.split_once('=').unwrap_or((&kv, ""));
        set(k, v.to_string());
    }
    for e in &plan.env {
        set(&e.name, e.value.clone());
    }
    set("FUNC_PORT", port.to_string());
    set("KUBELESS_BIND", "127.0.0.1".into());
    set("KUBELESS_RUNTIME_DIR", SANDBOX_RUN_DIR.into());
    set("KUBELESS_EXIT_ON_STDIN_EOF", "1".into());
    set("HOME", "/tmp".into());
    set("PYTHONUNBUFFERED", "1".into());
    set(
        "REQ_MB_LIMIT",
        (plan.request_limit_bytes / (1024 * 1024))
            .max(1)
            .to_string(),
    );
    tokio::fs::create_dir_all(scratch)
        .await
        .map_err(|e| format!("create {}: {e}", scratch.display()))?;
    let name = scratch
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut argv = ctx
        .limits
        .wrapper(&name, plan.memory_limit_bytes)
        .await
        .unwrap_or_default();
    argv.push(bwrap.clone().into_os_string());
    argv.extend(sandbox_args(&spec.artifact, &workdir));
    argv.extend(program.into_iter().map(Into::into));
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(env)
        .current_dir(scratch)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    Ok(cmd)
}

/// bubblewrap arguments: the image root read-only as `/`, fresh `/proc`,
/// `/dev` and `/tmp`, every namespace but the network unshared, and the
/// sandbox killed with its parent.
fn sandbox_args(root: &Path, workdir: &str) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = Vec::new();
    for s in [
        "--unshare-all",
        "--share-net",
        "--die-with-parent",
        "--ro-bind",
    ] {
        a.push(s.into());
    }
    a.push(root.as_os_str().to_os_string());
    for s in [
        "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--chdir",
    ] {
        a.push(s.into());
    }
    a.push(workdir.into());
    a.push("--".into());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(annotations: &[(&str, &str)], image: &str) -> Function {
        let mut f: Function = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubeless.io/v1beta1",
            "kind": "Function",
            "metadata": {"name": "hello", "namespace": "default"},
            "spec": {
                "handler": "",
                "runtime": "",
                "function": "",
                "timeout": "30",
                "deployment": {"spec": {"template": {"spec": {"containers": [
                    {"image": image, "env": [{"name": "GREETING", "value": "hi"}]}
                ]}}}}
            }
        }))
        .unwrap();
        for (k, v) in annotations {
            f.metadata.annotations.insert(k.to_string(), v.to_string());
        }
        f
    }

    #[test]
    fn only_annotated_functions_run_images() {
        let cat = Catalogue::embedded();
        let s = Settings::default();
        assert!(plan(&function(&[], "127.0.0.1:5000/x:1"), &cat, &s).is_none());
        let f = function(
            &[
                (RUN_IMAGE_ANNOTATION, "true"),
                (TLS_VERIFY_ANNOTATION, "false"),
            ],
            "127.0.0.1:5000/x:1",
        );
        let p = plan(&f, &cat, &s).unwrap().unwrap();
        assert_eq!(image_of(&p), Some("127.0.0.1:5000/x:1"));
        assert_eq!(p.code.content_type, CONTENT_TYPE_INSECURE);
        let names: Vec<_> = p.env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["GREETING", "FUNC_TIMEOUT"]);
        assert!(p.install.is_none() && p.compile.is_none());
        let bad = function(&[(RUN_IMAGE_ANNOTATION, "true")], "Bad//Ref");
        assert!(plan(&bad, &cat, &s).unwrap().is_err());
    }

    #[test]
    fn the_sandbox_makes_the_image_root_slash() {
        let a = sandbox_args(Path::new("/images/k/rootfs"), "/kubeless");
        let s: Vec<_> = a.iter().map(|x| x.to_string_lossy().to_string()).collect();
        let i = s.iter().position(|x| x == "--ro-bind").unwrap();
        assert_eq!(&s[i + 1..i + 3], ["/images/k/rootfs", "/"]);
        assert!(s.contains(&"--share-net".to_string()));
        assert_eq!(s.last().unwrap(), "--");
    }
}
