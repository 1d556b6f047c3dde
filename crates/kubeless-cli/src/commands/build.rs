//! `kubeless function build NAME`: build a function's OCI image and push it
//! to one or more registries, without a daemon. `kubeless build-image`
//! (hidden) is the same build for a Function read from a file, which is what
//! a Kubernetes build Job runs.
//!
//! Order, so nothing expensive happens when the registry already has the
//! image: validate every flag and read the docker config; plan the
//! Function; per registry, fetch the base image's manifest and config and
//! compute the tag; if the tag exists with the same build key, stop there.
//! Otherwise prepare the artifact (the artifact cache of
//! `$KUBELESS_HOME/server/artifacts`, shared with `kubeless server`, so a
//! function the server already runs is not installed again), make the layer
//! once, and push.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use kubeless_api::{Function, Kind};
use kubeless_builder::auth::DockerConfig;
use kubeless_builder::build::{self, Existing};
use kubeless_builder::function::{Request, build_spec};
use kubeless_builder::layer::{self, Layer};
use kubeless_builder::reference::{Destination, ImageRef};
use kubeless_builder::registry::{ClientOptions, ExtraRoots, RegistryClient};
use kubeless_engine::artifact::{ArtifactCache, Tools};
use kubeless_plan::{Catalogue, FunctionPlan, Settings};

use super::{Context, namespace};
use crate::client::get_as;
use crate::config::{ProcessEnv, kubeless_home};
use crate::log;

/// Flags shared by `function build` and `build-image`.
#[derive(Debug, Args)]
pub struct BuildFlags {
    /// Registry to push to, HOST[:PORT][/PREFIX]; repeat to push to several
    #[arg(long = "registry", env = "KUBELESS_REGISTRY", value_delimiter = ',')]
    registries: Vec<String>,
    /// Speak plain HTTP to the registries (function-registry-tls-verify: "false")
    #[arg(long)]
    insecure: bool,
    /// PEM file of CA certificates trusted for HTTPS registries in addition to the system's roots
    #[arg(long = "ca-file", env = "KUBELESS_REGISTRY_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Docker config JSON with the registry credentials (.dockerconfigjson); default ~/.docker/config.json when it exists
    #[arg(long = "docker-config", env = "KUBELESS_DOCKER_CONFIG")]
    docker_config: Option<PathBuf>,
    /// Base image; default <registry>/kubeless/base-<language>:<version> (e.g. base-python:3.11)
    #[arg(long = "base-image")]
    base_image: Option<String>,
}

/// `kubeless function build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Function to build
    name: String,
    /// Specify namespace for the function
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    #[command(flatten)]
    flags: BuildFlags,
}

/// `kubeless build-image` (the Kubernetes build Job).
#[derive(Debug, Args)]
pub struct BuildImageArgs {
    /// The Function as JSON or YAML
    #[arg(
        long = "function-file",
        conflicts_with = "request",
        required_unless_present = "request"
    )]
    function_file: Option<PathBuf>,
    /// A build planned by controller-manager, as JSON (the build Job passes it in KUBELESS_BUILD_REQUEST)
    #[arg(long, env = "KUBELESS_BUILD_REQUEST", hide_env_values = true)]
    request: Option<String>,
    /// The prepared /kubeless directory that becomes the function layer (with --request)
    #[arg(long = "layer-dir", requires = "request")]
    layer_dir: Option<PathBuf>,
    #[command(flatten)]
    flags: BuildFlags,
}

/// The validated flags.
struct Options {
    destinations: Vec<Destination>,
    insecure: bool,
    extra_roots: ExtraRoots,
    credentials: DockerConfig,
    base_image: Option<ImageRef>,
}

impl BuildFlags {
    fn validate(&self) -> anyhow::Result<Options> {
        let opts = self.validate_credentials()?;
        if opts.destinations.is_empty() {
            bail!("--registry is required");
        }
        Ok(opts)
    }

    fn validate_credentials(&self) -> anyhow::Result<Options> {
        let destinations = self
            .registries
            .iter()
            .filter(|r| !r.trim().is_empty())
            .map(|r| Destination::parse(r.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let base_image = self
            .base_image
            .as_deref()
            .map(ImageRef::parse)
            .transpose()?;
        let credentials = docker_config(self.docker_config.as_deref())?;
        let extra_roots = match &self.ca_file {
            Some(p) => ExtraRoots::load(p)?,
            None => ExtraRoots::default(),
        };
        Ok(Options {
            destinations,
            insecure: self.insecure,
            extra_roots,
            credentials,
            base_image,
        })
    }
}

pub fn run(ctx: &Context, a: BuildArgs) -> anyhow::Result<()> {
    let opts = a.flags.validate()?;
    let ns = namespace(&a.namespace);
    let f: Function = get_as(ctx.backend()?.as_ref(), Kind::Function, &ns, &a.name)?;
    build_function(f, opts)
}

pub fn run_image(a: BuildImageArgs) -> anyhow::Result<()> {
    if let Some(json) = &a.request {
        let request = Request::parse(json)?;
        let spec = request.spec()?;
        let Some(dir) = a.layer_dir else {
            bail!("--layer-dir is required with --request");
        };
        if !dir.is_dir() {
            bail!("--layer-dir {} is not a directory", dir.display());
        }
        let opts = a.flags.validate_credentials()?;
        return build_request(&request, spec, dir, opts);
    }
    let Some(file) = a.function_file else {
        bail!("--function-file or --request is required");
    };
    let opts = a.flags.validate()?;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
    let objects = crate::manifest::parse(&text, None)?;
    let object = objects
        .into_iter()
        .find(|o| o.kind == Kind::Function)
        .ok_or_else(|| anyhow!("{} holds no Function", file.display()))?;
    let f: Function = serde_json::from_value(object.object)?;
    build_function(f, opts)
}

/// The registry credentials: the given docker config, else
/// `~/.docker/config.json` when it exists, else none.
pub(super) fn docker_config(path: Option<&Path>) -> anyhow::Result<DockerConfig> {
    Ok(match path {
        Some(p) => DockerConfig::load(p)?,
        None => match std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".docker/config.json"))
            .filter(|p| p.is_file())
        {
            Some(p) => DockerConfig::load(&p)?,
            None => DockerConfig::default(),
        },
    })
}

fn client(
    opts: Options,
    hosts: impl IntoIterator<Item = String>,
) -> anyhow::Result<RegistryClient> {
    let insecure: BTreeSet<String> = if opts.insecure {
        hosts.into_iter().collect()
    } else {
        BTreeSet::new()
    };
    Ok(RegistryClient::with_extra_roots(
        ClientOptions {
            credentials: opts.credentials,
            insecure,
            retry: Default::default(),
        },
        opts.extra_roots,
    )?)
}

pub(super) fn async_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")
}

/// A build planned by controller-manager: the layer is a directory the
/// Job's init containers prepared; the tag must be the planned one.
fn build_request(
    request: &Request,
    spec: kubeless_builder::build::BuildSpec,
    dir: PathBuf,
    opts: Options,
) -> anyhow::Result<()> {
    let client = client(
        opts,
        [spec.destination.host.clone(), spec.base.host.clone()],
    )?;
    async_runtime()?.block_on(async {
        let resolved = build::resolve(&client, spec).await?;
        if resolved.tag != request.tag {
            bail!(
                "the base image {} changed since this build was planned (it now gives tag {}, the plan says {}); controller-manager plans a new build",
                resolved.spec.base,
                resolved.tag,
                request.tag
            );
        }
        if up_to_date(&client, &resolved).await? {
            return Ok(());
        }
        let layer = tokio::task::spawn_blocking(move || layer::from_dir(&dir, "kubeless"))
            .await
            .context("build the function layer")??;
        push(&client, &resolved, &layer).await
    })
}

async fn up_to_date(client: &RegistryClient, resolved: &build::Resolved) -> anyhow::Result<bool> {
    if let Existing::UpToDate { digest } = build::check(client, resolved).await? {
        log::log(
            log::Level::Info,
            &format!("Image {} is up to date ({digest})", resolved.target),
        );
        println!("{}", resolved.target);
        return Ok(true);
    }
    Ok(false)
}

async fn push(
    client: &RegistryClient,
    resolved: &build::Resolved,
    layer: &Layer,
) -> anyhow::Result<()> {
    // The manifest goes last: a push that fails here leaves no tag, and the
    // error names the image so the next run can be checked against it.
    let report = build::push(client, resolved, layer)
        .await
        .with_context(|| format!("push {}", resolved.target))?;
    let cache = match &report.base_cache {
        Some(cache) if report.cached > 0 => {
            format!("; base copied into {cache}: {} blobs", report.cached)
        }
        Some(cache) => format!("; base layers from {cache}"),
        None => String::new(),
    };
    log::log(
        log::Level::Info,
        &format!(
            "Image {} pushed ({}; {} blobs uploaded, {} mounted, {} already there{cache})",
            report.reference,
            report.manifest_digest,
            report.uploaded,
            report.mounted,
            report.present
        ),
    );
    println!("{}", report.reference);
    Ok(())
}

fn build_function(f: Function, opts: Options) -> anyhow::Result<()> {
    let plan = kubeless_plan::plan(&f, &Catalogue::embedded(), &Settings::default())?;
    let destinations = opts.destinations.clone();
    let base_image = opts.base_image.clone();
    let hosts: Vec<String> = destinations
        .iter()
        .map(|d| d.host.clone())
        .chain(base_image.iter().map(|b| b.host.clone()))
        .collect();
    let client = client(opts, hosts)?;
    async_runtime()?.block_on(async {
        let mut layer: Option<Layer> = None;
        for dest in &destinations {
            let base = match &base_image {
                Some(b) => b.clone(),
                None => ImageRef::parse(&format!(
                    "{}/kubeless/base-{}:{}",
                    dest.host, plan.runtime.id, plan.runtime.version
                ))?,
            };
            let spec = build_spec(&plan, dest.clone(), base);
            let resolved = build::resolve(&client, spec).await?;
            if up_to_date(&client, &resolved).await? {
                continue;
            }
            if layer.is_none() {
                layer = Some(make_layer(&plan).await?);
            }
            let Some(l) = layer.as_ref() else {
                bail!("the function layer was not built");
            };
            push(&client, &resolved, l).await?;
        }
        Ok(())
    })
}

/// Prepare the artifact and tar it as the `/kubeless` layer.
async fn make_layer(plan: &FunctionPlan) -> anyhow::Result<Layer> {
    let home = kubeless_home(&ProcessEnv);
    let cache = ArtifactCache::new(home.join("server").join("artifacts"), local_tools());
    let dir = cache
        .prepare(plan, |msg| log::log(log::Level::Info, msg))
        .await
        .map_err(|e| anyhow!(error_chain(&e)))?;
    let layer = tokio::task::spawn_blocking(move || layer::from_dir(&dir, "kubeless"))
        .await
        .context("build the function layer")??;
    Ok(layer)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The installers and compilers on this machine, as `kubeless server`
/// finds them.
fn local_tools() -> Tools {
    let which = |name: &str| -> String {
        std::env::var_os("PATH")
            .and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
            .map(|p| p.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    let runtime_bin = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("kubeless-runtime")))
        .map(|p| p.to_string_lossy().to_string())
        .unwrap_or_else(|| "kubeless-runtime".into());
    Tools {
        python: which("python3"),
        node: which("node"),
        npm: which("npm"),
        runtime_bin,
        bundle: which("bundle"),
        composer: which("composer"),
        go: which("go"),
        javac: which("javac"),
        mvn: which("mvn"),
    }
}
