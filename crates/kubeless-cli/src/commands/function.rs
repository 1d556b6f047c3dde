//! `kubeless function deploy|update|delete|list|describe|call|logs|top`
//! (spec 1.1), against any [`Backend`].
//!
//! Differences from Kubeless, on purpose:
//! - `update` keeps every setting no flag was given for (see [`crate::build`]).
//! - `ls -o wide` prints one value under each header
//!   (`NAME NAMESPACE HANDLER RUNTIME DEPENDENCIES STATUS MEMORY ENV LABEL`);
//!   Kubeless printed 12 headers over 9 values.
//! - STATUS comes from the Function's `status`; `Failed` adds why, in one
//!   line: the `Ready` condition's message (in Kubernetes mode the
//!   controller's reading of the pods: `ImagePullBackOff`, a crash loop, a
//!   failed init container, a secret that cannot be mounted, no node that
//!   fits). `describe` adds `Status:`, `Reason:` and `Message:` rows.
//! - `deploy --wait` waits until the function is ready or failed.
//! - `deploy --dryrun` still works when the server cannot be reached: the
//!   runtime check is then skipped with a warning, as Kubeless did.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use base64::Engine as _;
use clap::{Args, Subcommand};
use kubeless_api::content::{encode_file, encode_url};
use kubeless_api::{
    CronJobTrigger, CronJobTriggerSpec, Function, FunctionPhase, FunctionStatus, Kind, ObjectMeta,
};
use rand::RngCore as _;
use serde_json::Value;

use super::{Context, is_url, namespace, one_name, read_source};
use crate::build::{self, FunctionFlags, split_all};
use crate::client::{Backend, CallRequest, ClientError, ServerConfig, encode, get_as, list_as};
use crate::metrics::{self, TopRow};
use crate::output::{Table, print_structured};
use crate::{log, schedule};

/// function specific operations
#[derive(Debug, Subcommand)]
pub enum FunctionCommand {
    /// deploy a function to Kubeless
    Deploy(DeployArgs),
    /// update a function on Kubeless
    Update(UpdateArgs),
    /// delete a function from Kubeless
    Delete(NameArgs),
    /// list deployed functions
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// describe a function deployed to Kubeless
    Describe(DescribeArgs),
    /// call function from cli
    Call(CallArgs),
    /// get logs from a running function
    Logs(LogsArgs),
    /// Print the metrics of the functions
    #[command(visible_alias = "stats")]
    Top(TopArgs),
    /// build the function's OCI image and push it to a registry
    Build(super::build::BuildArgs),
}

/// Flags shared by deploy and update.
#[derive(Debug, Args)]
pub struct CommonFlags {
    /// Specify runtime
    #[arg(short = 'r', long)]
    runtime: Option<String>,
    /// Specify handler
    #[arg(long)]
    handler: Option<String>,
    /// Specify code file or a URL to the code file
    #[arg(short = 'f', long = "from-file")]
    from_file: Option<String>,
    /// Specify labels of the function. Both separator ':' and '=' are allowed. For example: --label foo1=bar1,foo2:bar2
    #[arg(short = 'l', long)]
    label: Vec<String>,
    /// Specify Secrets to be mounted to the functions container. For example: --secrets mySecret
    #[arg(long)]
    secrets: Vec<String>,
    /// Specify environment variable of the function. Both separator ':' and '=' are allowed. For example: --env foo1=bar1,foo2:bar2
    #[arg(short = 'e', long)]
    env: Vec<String>,
    /// Specify node selectors for the function. Both separator ':' and '=' are allowed. For example: --node-selectors foo1=bar1,foo2:bar2
    #[arg(long = "node-selectors")]
    node_selectors: Vec<String>,
    /// Specify the serviceAccountName of the function
    #[arg(long = "service-account")]
    service_account: Option<String>,
    /// Specify namespace for the function
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Specify a file containing list of dependencies for the function
    #[arg(short = 'd', long)]
    dependencies: Option<String>,
    /// Request amount of memory, which is measured in bytes, for the function. It is expressed as a plain integer or a fixed-point interger with one of these suffies: E, P, T, G, M, K, Ei, Pi, Ti, Gi, Mi, Ki
    #[arg(long)]
    memory: Option<String>,
    /// Request amount of cpu for the function, which is measured in units of cores. Please see the following link for more information: https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/#meaning-of-cpu
    #[arg(long)]
    cpu: Option<String>,
    /// Custom runtime image
    #[arg(long = "runtime-image")]
    runtime_image: Option<String>,
    /// Image pull policy: IfNotPresent, Always or Never (deploy default: Always; update keeps the current one)
    #[arg(long = "image-pull-policy")]
    image_pull_policy: Option<String>,
    /// Maximum timeout (in seconds) for the function to complete its execution (deploy default: 180; update keeps the current one)
    #[arg(long)]
    timeout: Option<String>,
    /// Output format
    #[arg(short = 'o', long, default_value = "yaml")]
    output: String,
    /// Deploy http-based function without a single service IP and load balancing support from Kubernetes. See: https://kubernetes.io/docs/concepts/services-networking/service/#headless-services
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    headless: Option<bool>,
    /// Output JSON manifest of the function without creating it
    #[arg(long)]
    dryrun: bool,
    /// Deploy http-based function with a custom port (deploy default: 8080; update keeps the current one)
    #[arg(long)]
    port: Option<i32>,
    /// Deploy http-based function with a custom service port. If not provided the value of 'port' will be used
    #[arg(long = "servicePort")]
    service_port: Option<i32>,
}

/// `function deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Function name
    names: Vec<String>,
    #[command(flatten)]
    common: CommonFlags,
    /// Specify schedule in cron format for scheduled function
    #[arg(long)]
    schedule: Option<String>,
    /// Wait until the function is ready (or failed)
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, e.g. 120s, 2m
    #[arg(long = "wait-timeout", default_value = "120s", value_parser = parse_duration)]
    wait_timeout: Duration,
}

/// `function update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Function name
    names: Vec<String>,
    #[command(flatten)]
    common: CommonFlags,
    /// Wait until the function is ready (or failed)
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, e.g. 120s, 2m
    #[arg(long = "wait-timeout", default_value = "120s", value_parser = parse_duration)]
    wait_timeout: Duration,
}

/// A name and a namespace.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// Function name
    names: Vec<String>,
    /// Specify namespace for the function
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

/// `function list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Function names (all when none)
    names: Vec<String>,
    /// Specify namespace for the function
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Output format. One of: json|yaml|wide
    #[arg(short = 'o', long = "out")]
    out: Option<String>,
}

/// `function describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Function name
    names: Vec<String>,
    /// Specify namespace for the function
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Output format. One of: json|yaml
    #[arg(short = 'o', long = "out")]
    out: Option<String>,
}

/// `function call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// Function name
    names: Vec<String>,
    /// Specify data for function
    #[arg(short = 'd', long)]
    data: Option<String>,
    /// Specify namespace for the function
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

/// `function logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Function name
    names: Vec<String>,
    /// Specify namespace for the function
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Specify if the logs should be streamed.
    #[arg(short = 'f', long)]
    follow: bool,
}

/// `function top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Specify the function
    #[arg(short = 'f', long = "function")]
    function: Option<String>,
    /// Specify namespace for the function
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Output format. One of: json|yaml
    #[arg(short = 'o', long = "out")]
    out: Option<String>,
}

/// `120s`, `2m`, `1h`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 120s or 2m)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

/// Run a `function` subcommand.
pub fn run(ctx: &Context, cmd: FunctionCommand) -> anyhow::Result<()> {
    match cmd {
        FunctionCommand::Deploy(a) => deploy(ctx, a),
        FunctionCommand::Update(a) => update(ctx, a),
        FunctionCommand::Delete(a) => delete(ctx, a),
        FunctionCommand::List(a) => list(ctx, a),
        FunctionCommand::Describe(a) => describe(ctx, a),
        FunctionCommand::Call(a) => call(ctx, a),
        FunctionCommand::Logs(a) => logs(ctx, a),
        FunctionCommand::Top(a) => top(ctx, a),
        FunctionCommand::Build(a) => super::build::run(ctx, a),
    }
}

/// Read the code/deps files named by the flags and collect the flags.
fn collect_flags(name: &str, ns: &str, c: &CommonFlags) -> anyhow::Result<FunctionFlags> {
    let code = match c.from_file.as_deref().filter(|f| !f.is_empty()) {
        Some(src) => {
            let bytes = read_source(src)?;
            Some(if is_url(src) {
                encode_url(src, &bytes)
            } else {
                encode_file(src, &bytes)
            })
        }
        None => None,
    };
    let deps = match c.dependencies.as_deref().filter(|d| !d.is_empty()) {
        Some(src) => {
            let bytes = read_source(src)?;
            Some(match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(e) => base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
            })
        }
        None => None,
    };
    let env = split_all(&c.env);
    let node_selectors = split_all(&c.node_selectors);
    Ok(FunctionFlags {
        name: name.to_string(),
        namespace: ns.to_string(),
        runtime: c.runtime.clone(),
        handler: c.handler.clone(),
        code,
        deps,
        labels: split_all(&c.label),
        secrets: split_all(&c.secrets),
        env: (!c.env.is_empty()).then_some(env),
        node_selectors: (!c.node_selectors.is_empty()).then_some(node_selectors),
        service_account: c.service_account.clone(),
        memory: c.memory.clone(),
        cpu: c.cpu.clone(),
        runtime_image: c.runtime_image.clone(),
        image_pull_policy: c.image_pull_policy.clone(),
        timeout: c.timeout.clone(),
        headless: c.headless,
        port: c.port,
        service_port: c.service_port,
    })
}

/// Kubeless's runtime check against the server's runtime list; a known
/// runtime whose toolchain is missing says how to install it instead.
fn check_runtime(runtime: &str, cfg: &ServerConfig) -> anyhow::Result<()> {
    let runtimes = &cfg.runtimes;
    if let Some(reason) = cfg.unavailable_reason(runtime) {
        bail!("{reason}");
    }
    if !runtime.is_empty() && !runtimes.iter().any(|r| r == runtime) {
        bail!(
            "Invalid runtime: {runtime}. Supported runtimes are: {}",
            runtimes.join(", ")
        );
    }
    Ok(())
}

/// Connection and token errors pass through unchanged (one clear line);
/// other failures get Kubeless's wording.
fn wrap_failure(e: ClientError, what: String) -> anyhow::Error {
    match e {
        ClientError::Unreachable { .. } | ClientError::Unauthorized => anyhow!(e),
        other => anyhow!("{what}. Received:\n{other}"),
    }
}

fn status_hint(name: &str, ns_flag: &Option<String>) -> String {
    match ns_flag {
        Some(ns) if !ns.is_empty() => {
            format!("Check the deployment status executing 'kubeless function ls {name} -n {ns}'")
        }
        _ => format!("Check the deployment status executing 'kubeless function ls {name}'"),
    }
}

/// `Output format needs to be yaml or json` is informational in Kubeless:
/// nothing is printed or created and the exit code is 0.
fn dry_run_print(f: &Function, output: &str) -> anyhow::Result<()> {
    match output {
        "json" | "yaml" => print_structured(f, output, 4),
        _ => {
            log::info("Output format needs to be yaml or json");
            Ok(())
        }
    }
}

fn deploy(ctx: &Context, a: DeployArgs) -> anyhow::Result<()> {
    let name = one_name(&a.names, "function name")?.to_string();
    kubeless_api::validate::validate_name(&name)
        .map_err(|e| anyhow!("Invalid function name: {e}"))?;
    let ns = namespace(&a.common.namespace);
    let backend = ctx.backend()?;
    let runtime = a.common.runtime.clone().unwrap_or_default();
    let mut runtimes = Vec::new();
    if !runtime.is_empty() {
        match backend.server_config() {
            Ok(cfg) => {
                check_runtime(&runtime, &cfg)?;
                runtimes = cfg.runtimes;
            }
            Err(e) if a.common.dryrun => log::warn(format!("{e}. Runtime check is disabled.")),
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(s) = a.schedule.as_deref().filter(|s| !s.is_empty()) {
        schedule::check(s).map_err(|e| anyhow!("Invalid value for --schedule. {e}"))?;
    }
    let flags = collect_flags(&name, &ns, &a.common)?;
    build::validate(&flags, true)?;
    let f = build::new_function(&flags);
    // What the embedded server would refuse is refused here, for every
    // backend and in its words (a cluster only checks the CRD schema).
    kubeless_api::validate::validate_function(&f, &runtimes)
        .map_err(|e| wrap_failure(e.into(), format!("Failed to deploy {name}")))?;
    if a.common.dryrun {
        return dry_run_print(&f, &a.common.output);
    }
    log::info("Deploying function...");
    let created = backend
        .create(Kind::Function, &ns, &encode(&f)?)
        .map_err(|e| wrap_failure(e, format!("Failed to deploy {name}")))?;
    if let Some(s) = a.schedule.as_deref().filter(|s| !s.is_empty()) {
        let trigger = CronJobTrigger {
            api_version: kubeless_api::API_VERSION.to_string(),
            kind: Kind::CronJobTrigger.name().to_string(),
            metadata: ObjectMeta {
                name: name.clone(),
                namespace: ns.clone(),
                labels: BTreeMap::from([
                    ("created-by".to_string(), "kubeless".to_string()),
                    ("function".to_string(), name.clone()),
                ]),
                ..ObjectMeta::default()
            },
            spec: CronJobTriggerSpec {
                schedule: s.to_string(),
                function_name: name.clone(),
                payload: Value::Null,
            },
            status: None,
        };
        backend
            .create(Kind::CronJobTrigger, &ns, &encode(&trigger)?)
            .map_err(|e| wrap_failure(e, format!("Failed to deploy cron job trigger {name}")))?;
    }
    log::info(format!("Function {name} submitted for deployment"));
    log::info(status_hint(&name, &a.common.namespace));
    if a.wait {
        let generation = created
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        wait_ready(backend.as_ref(), &ns, &name, generation, a.wait_timeout)?;
    }
    Ok(())
}

fn update(ctx: &Context, a: UpdateArgs) -> anyhow::Result<()> {
    let name = one_name(&a.names, "function name")?.to_string();
    let ns = namespace(&a.common.namespace);
    let backend = ctx.backend()?;
    let runtime = a.common.runtime.clone().unwrap_or_default();
    let cfg = backend.server_config().map_err(|e| match e {
        ClientError::Unreachable { .. } | ClientError::Unauthorized => anyhow!(e),
        other => anyhow!("Unable to read the configmap: {other}"),
    })?;
    check_runtime(&runtime, &cfg)?;
    let flags = collect_flags(&name, &ns, &a.common)?;
    build::validate(&flags, false)?;
    let previous: Function = match get_as(backend.as_ref(), Kind::Function, &ns, &name) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => bail!("Function {name} is not found"),
        Err(e) => return Err(e.into()),
    };
    let f = build::updated_function(&previous, &flags);
    kubeless_api::validate::validate_function(&f, &cfg.runtimes)
        .map_err(|e| wrap_failure(e.into(), format!("Failed to update {name}")))?;
    if a.common.dryrun {
        return dry_run_print(&f, &a.common.output);
    }
    log::info("Redeploying function...");
    let stored = backend
        .replace(Kind::Function, &ns, &name, &encode(&f)?)
        .map_err(|e| wrap_failure(e, format!("Failed to update {name}")))?;
    log::info(format!("Function {name} submitted for deployment"));
    log::info(status_hint(&name, &a.common.namespace));
    if a.wait {
        let generation = stored
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        wait_ready(backend.as_ref(), &ns, &name, generation, a.wait_timeout)?;
    }
    Ok(())
}

/// What `--wait` sees in a Function's status.
#[derive(Debug, PartialEq, Eq)]
enum Readiness {
    Ready,
    Failed(String),
    Waiting(String),
}

/// Pure: judge a status against the generation we wrote.
fn readiness(f: &Function, generation: i64) -> Readiness {
    let Some(st) = &f.status else {
        return Readiness::Waiting("Pending".to_string());
    };
    // A status for an older generation says nothing about our change.
    if st.observed_generation != 0 && st.observed_generation < generation {
        return Readiness::Waiting(st.phase.to_string());
    }
    match st.phase {
        FunctionPhase::Ready if st.ready_replicas > 0 => Readiness::Ready,
        FunctionPhase::Failed => Readiness::Failed(failure_text(&st.reason, &st.message)),
        phase => Readiness::Waiting(phase.to_string()),
    }
}

fn failure_text(reason: &str, message: &str) -> String {
    match (reason.is_empty(), message.is_empty()) {
        (false, false) => format!("{reason}: {message}"),
        (false, true) => reason.to_string(),
        (true, false) => message.to_string(),
        (true, true) => "unknown reason".to_string(),
    }
}

fn wait_ready(
    b: &dyn Backend,
    ns: &str,
    name: &str,
    generation: i64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let f: Function = get_as(b, Kind::Function, ns, name)?;
        match readiness(&f, generation) {
            Readiness::Ready => {
                log::info(format!("Function {name} is ready"));
                return Ok(());
            }
            Readiness::Failed(why) => bail!("Function {name} failed: {why}"),
            Readiness::Waiting(phase) => {
                if Instant::now() >= deadline {
                    bail!(
                        "Function {name} is not ready after {}s (phase: {phase})",
                        timeout.as_secs()
                    );
                }
            }
        }
        // Polling the API: the local API has no watch.
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn delete(ctx: &Context, a: NameArgs) -> anyhow::Result<()> {
    let name = one_name(&a.names, "function name")?;
    let ns = namespace(&a.namespace);
    ctx.backend()?.delete(Kind::Function, &ns, name)?;
    Ok(())
}

/// STATUS column: from the Function's status (see module docs).
pub fn status_text(f: &Function) -> String {
    let Some(st) = &f.status else {
        return "0/1 NOT READY".to_string();
    };
    let mut s = if st.ready_replicas > 0 {
        format!("{}/{} READY", st.ready_replicas, st.replicas)
    } else {
        format!("{}/{} NOT READY", st.ready_replicas, st.replicas)
    };
    if st.phase == FunctionPhase::Failed {
        let first = why_not_ready(st).lines().next().unwrap_or("").trim();
        let mut short: String = first.chars().take(STATUS_WHY_MAX).collect();
        if first.chars().count() > STATUS_WHY_MAX {
            short.push_str("...");
        }
        if !short.is_empty() {
            s.push_str(": ");
            s.push_str(&short);
        }
    }
    s
}

/// How much of the reason STATUS shows (`describe` shows all of it).
const STATUS_WHY_MAX: usize = 50;

/// The `Ready` condition's message when it is `False` (both modes put the
/// readable reason there: embedded mode its `reason`, Kubernetes mode its
/// `message`), else the reason, else the message.
fn why_not_ready(st: &FunctionStatus) -> &str {
    match not_ready_message(st) {
        Some(m) => m,
        None if st.reason.is_empty() => &st.message,
        None => &st.reason,
    }
}

/// The message of a `Ready=False` condition, when it has one.
fn not_ready_message(st: &FunctionStatus) -> Option<&str> {
    st.conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "False" && !c.message.is_empty())
        .map(|c| c.message.as_str())
}

/// DEPENDENCIES column: package.json dependencies as `name: version` lines
/// for nodejs runtimes, the raw deps otherwise.
pub fn deps_text(f: &Function) -> String {
    if f.spec.runtime.contains("nodejs")
        && !f.spec.deps.is_empty()
        && let Ok(Value::Object(pkg)) = serde_json::from_str::<Value>(&f.spec.deps)
        && let Some(Value::Object(deps)) = pkg.get("dependencies")
    {
        return deps
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.as_str().map_or(v.to_string(), str::to_string)))
            .collect::<Vec<_>>()
            .join("\n");
    }
    f.spec.deps.clone()
}

fn container0(f: &Function) -> &Value {
    f.spec
        .deployment
        .pointer("/spec/template/spec/containers/0")
        .unwrap_or(&Value::Null)
}

fn memory_request(f: &Function) -> String {
    container0(f)
        .pointer("/resources/requests/memory")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn env_pairs(f: &Function) -> Vec<(String, String)> {
    container0(f)
        .get("env")
        .and_then(Value::as_array)
        .map(|vars| {
            vars.iter()
                .map(|v| {
                    (
                        v.get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        v.get("value")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `function ls` table (`wide` adds MEMORY, ENV, LABEL).
pub fn list_table(functions: &[Function], wide: bool) -> Table {
    // STATUS stays one line, however long its reason.
    let mut t = Table::new(50).whole_column(5);
    let mut header = vec![
        "NAME",
        "NAMESPACE",
        "HANDLER",
        "RUNTIME",
        "DEPENDENCIES",
        "STATUS",
    ];
    if wide {
        header.extend(["MEMORY", "ENV", "LABEL"]);
    }
    t.row(header);
    for f in functions {
        let mut row = vec![
            f.metadata.name.clone(),
            f.metadata.namespace.clone(),
            f.spec.handler.clone(),
            f.spec.runtime.clone(),
            deps_text(f),
            status_text(f),
        ];
        if wide {
            row.push(memory_request(f));
            row.push(
                env_pairs(f)
                    .iter()
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
            row.push(
                f.metadata
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k} : {v}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
        t.row(row);
    }
    t
}

fn list(ctx: &Context, a: ListArgs) -> anyhow::Result<()> {
    let ns = namespace(&a.namespace);
    let out = a.out.unwrap_or_default();
    if !matches!(out.as_str(), "" | "wide" | "json" | "yaml") {
        bail!("Wrong output format. Please use only json|yaml");
    }
    let backend = ctx.backend()?;
    let functions: Vec<Function> = if a.names.is_empty() {
        list_as(backend.as_ref(), Kind::Function, &ns)?
    } else {
        a.names
            .iter()
            .map(|n| {
                get_as(backend.as_ref(), Kind::Function, &ns, n)
                    .map_err(|e| anyhow!("Error listing function {n}: {e}"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    match out.as_str() {
        "json" | "yaml" => print_structured(&functions, &out, 2),
        wide => {
            list_table(&functions, wide == "wide").print();
            Ok(())
        }
    }
}

/// The `function describe` table.
pub fn describe_table(f: &Function) -> anyhow::Result<Table> {
    let mut t = Table::new(80);
    let env = container0(f).get("env").cloned().unwrap_or(Value::Null);
    let memory = match memory_request(f) {
        m if m.is_empty() => "0".to_string(),
        m => m,
    };
    t.row(["Name:", f.metadata.name.as_str()]);
    t.row(["Namespace:", f.metadata.namespace.as_str()]);
    t.row(["Handler:", f.spec.handler.as_str()]);
    t.row(["Runtime:", f.spec.runtime.as_str()]);
    t.row([
        "Label:".to_string(),
        serde_json::to_string(&f.metadata.labels)?,
    ]);
    t.row(["Envvar:".to_string(), serde_json::to_string(&env)?]);
    t.row(["Memory:".to_string(), memory]);
    t.row(["Dependencies:", f.spec.deps.as_str()]);
    let Some(st) = &f.status else {
        t.row(["Status:".to_string(), FunctionPhase::Pending.to_string()]);
        return Ok(t);
    };
    t.row(["Status:".to_string(), st.phase.to_string()]);
    // Each on one line, however long.
    if !st.reason.is_empty() {
        t.row_whole(["Reason:", st.reason.as_str()]);
    }
    // Kubernetes mode: the reason is a word (`CrashLoopBackOff`), the
    // Ready condition's message says what it means and what to do.
    // (Embedded mode's reason is that message already.)
    let why = not_ready_message(st).filter(|m| *m != st.reason);
    if let Some(m) = why {
        t.row_whole(["Message:", m]);
    }
    if !st.message.is_empty() && why != Some(st.message.as_str()) {
        t.row(["Warnings:", st.message.as_str()]);
    }
    Ok(t)
}

fn describe(ctx: &Context, a: DescribeArgs) -> anyhow::Result<()> {
    let name = one_name(&a.names, "function name")?;
    let ns = namespace(&a.namespace);
    let out = a.out.unwrap_or_default();
    let f: Function = get_as(ctx.backend()?.as_ref(), Kind::Function, &ns, name)?;
    match out.as_str() {
        "" => describe_table(&f)?.print(),
        "json" | "yaml" => print_structured(&f, &out, 2)?,
        _ => crate::output::emit("Wrong output format. Please use only json|yaml\n"),
    }
    Ok(())
}

/// Headers and body of `function call` (spec 4.2).
pub fn call_request(data: Option<&str>) -> CallRequest {
    let mut id = [0u8; 11];
    rand::thread_rng().fill_bytes(&mut id);
    let mut headers = vec![
        (
            "event-id".to_string(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id),
        ),
        ("event-time".to_string(), log::now_rfc3339()),
        ("event-namespace".to_string(), "cli.kubeless.io".to_string()),
    ];
    if let Some(d) = data {
        let is_object = matches!(serde_json::from_str::<Value>(d), Ok(Value::Object(_)));
        let ct = if is_object {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        headers.push(("Content-Type".to_string(), ct.to_string()));
        headers.push(("event-type".to_string(), ct.to_string()));
    }
    CallRequest {
        body: data.map(str::to_string),
        headers,
    }
}

fn call(ctx: &Context, a: CallArgs) -> anyhow::Result<()> {
    let name = one_name(&a.names, "function name")?;
    let ns = namespace(&a.namespace);
    let backend = ctx.backend()?;
    let resp = backend.call_function(&ns, name, &call_request(a.data.as_deref()))?;
    let body = String::from_utf8_lossy(&resp.body);
    if (200..300).contains(&resp.status) {
        let mut answer = resp.body.clone();
        answer.push(b'\n');
        crate::output::emit_bytes(&answer);
        return Ok(());
    }
    let first = body.lines().next().unwrap_or("").trim().to_string();
    match resp.status {
        408 => {
            if !body.is_empty() {
                log::error(&body);
            }
            bail!("Request timeout exceeded")
        }
        // The gateway's own answers: no such function / not ready.
        404 | 503 => bail!(
            "{}",
            if first.is_empty() {
                format!("the gateway answered {}", resp.status)
            } else {
                first
            }
        ),
        code => {
            if !body.is_empty() {
                log::error(&body);
            }
            bail!("the function answered {code}: {first}")
        }
    }
}

fn logs(ctx: &Context, a: LogsArgs) -> anyhow::Result<()> {
    let name = one_name(&a.names, "function name")?;
    let ns = namespace(&a.namespace);
    let mut out = std::io::stdout();
    ctx.backend()?
        .function_logs(&ns, name, a.follow, &mut out)?;
    Ok(())
}

/// Fetch every function's metrics in parallel (each request is bounded by
/// the backend's metrics timeout, so the whole takes about that long at
/// most) and aggregate them.
fn top_rows(b: &dyn Backend, functions: &[Function]) -> Vec<TopRow> {
    let mut rows: Vec<TopRow> = std::thread::scope(|s| {
        let handles: Vec<_> = functions
            .iter()
            .map(|f| {
                let ns = f.metadata.namespace.clone();
                let name = f.metadata.name.clone();
                s.spawn(move || {
                    let text = b.function_metrics(&ns, &name);
                    metrics::rows_for(&name, &ns, text.as_deref().map_err(|_| ()))
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    // Stable sort: methods stay in their order within a function.
    rows.sort_by(|a, b| a.function.cmp(&b.function));
    rows
}

fn top(ctx: &Context, a: TopArgs) -> anyhow::Result<()> {
    let ns = namespace(&a.namespace);
    let out = a.out.unwrap_or_default();
    if !matches!(out.as_str(), "" | "json" | "yaml") {
        bail!("Wrong output format. Please use only json|yaml");
    }
    let backend = ctx.backend()?;
    let functions: Vec<Function> = match a.function.as_deref().filter(|f| !f.is_empty()) {
        Some(name) => vec![get_as(backend.as_ref(), Kind::Function, &ns, name)?],
        None => list_as(backend.as_ref(), Kind::Function, &ns)?,
    };
    let rows = top_rows(backend.as_ref(), &functions);
    match out.as_str() {
        "json" | "yaml" => print_structured(&rows, &out, 2),
        _ => {
            metrics::table(&rows).print();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn func(name: &str, status: Option<FunctionStatus>) -> Function {
        let mut f = build::new_function(&FunctionFlags {
            name: name.into(),
            namespace: "default".into(),
            runtime: Some("nodejs14".into()),
            handler: Some("h.f".into()),
            deps: Some(r#"{"dependencies": {"test": "^1.0.0"}}"#.into()),
            env: Some(vec!["foo=bar".into()]),
            memory: Some("128Mi".into()),
            ..FunctionFlags::default()
        });
        f.status = status;
        f
    }

    #[test]
    fn status_strings() {
        let ready = FunctionStatus {
            phase: FunctionPhase::Ready,
            replicas: 1,
            ready_replicas: 1,
            ..FunctionStatus::default()
        };
        assert_eq!(status_text(&func("foo", Some(ready))), "1/1 READY");
        let starting = FunctionStatus {
            phase: FunctionPhase::Starting,
            replicas: 2,
            ..FunctionStatus::default()
        };
        assert_eq!(status_text(&func("bar", Some(starting))), "0/2 NOT READY");
        assert_eq!(status_text(&func("new", None)), "0/1 NOT READY");
        let failed = FunctionStatus {
            phase: FunctionPhase::Failed,
            replicas: 1,
            reason: format!("{}\nsecond line", "x".repeat(60)),
            ..FunctionStatus::default()
        };
        assert_eq!(
            status_text(&func("bad", Some(failed))),
            format!("0/1 NOT READY: {}...", "x".repeat(50))
        );
        // Kubernetes mode: the reason is a word, the condition says why.
        let message =
            "keeps crashing (exit code 3), restarting; see kubeless function logs f -n ns";
        let crashing = FunctionStatus {
            phase: FunctionPhase::Failed,
            replicas: 1,
            reason: "CrashLoopBackOff".into(),
            message: message.into(),
            conditions: vec![kubeless_api::Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: "CrashLoopBackOff".into(),
                message: message.into(),
                ..kubeless_api::Condition::default()
            }],
            ..FunctionStatus::default()
        };
        let f = func("f", Some(crashing));
        assert_eq!(
            status_text(&f),
            "0/1 NOT READY: keeps crashing (exit code 3), restarting; see kube..."
        );
        let ls = list_table(std::slice::from_ref(&f), false).render();
        assert_eq!(ls.lines().count(), 2, "{ls}");
        let out = describe_table(&f).expect("table").render();
        let rows: Vec<&str> = out.lines().map(str::trim_end).collect();
        assert!(rows.contains(&"Status:      \tFailed"), "{out}");
        assert!(rows.contains(&"Reason:      \tCrashLoopBackOff"), "{out}");
        assert!(
            rows.contains(&format!("Message:     \t{message}").as_str()),
            "{out}"
        );
        assert!(!out.contains("Warnings:"), "{out}");
        assert_eq!(rows.len(), 11, "one line each: {out}");
    }

    #[test]
    fn list_tables() {
        let fs = vec![func("foo", None)];
        let out = list_table(&fs, false).render();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "NAME\tNAMESPACE\tHANDLER\tRUNTIME \tDEPENDENCIES\tSTATUS       "
        );
        assert_eq!(
            lines[1],
            "foo \tdefault  \th.f    \tnodejs14\ttest: ^1.0.0\t0/1 NOT READY"
        );
        let wide = list_table(&fs, true).render();
        let lines: Vec<&str> = wide.lines().collect();
        let header: Vec<&str> = lines[0].split('\t').map(str::trim).collect();
        assert_eq!(
            header,
            [
                "NAME",
                "NAMESPACE",
                "HANDLER",
                "RUNTIME",
                "DEPENDENCIES",
                "STATUS",
                "MEMORY",
                "ENV",
                "LABEL"
            ]
        );
        let row: Vec<&str> = lines[1].split('\t').map(str::trim).collect();
        assert_eq!(row[6], "128Mi");
        assert_eq!(row[7], "foo = bar");
        assert_eq!(row[8], "created-by : kubeless");
        assert!(lines[2].trim_end().ends_with("function : foo"));
    }

    #[test]
    fn describe_rows() {
        let out = describe_table(&func("foo", None)).expect("table").render();
        assert!(out.contains("Label:       \t{\"created-by\":\"kubeless\",\"function\":\"foo\"}"));
        assert!(out.contains("Envvar:      \t[{\"name\":\"foo\",\"value\":\"bar\"}]"));
        assert!(out.contains("Memory:      \t128Mi"));
        assert!(out.contains("Status:      \tPending"));
        assert!(!out.contains("Reason:"));
    }

    #[test]
    fn call_headers() {
        let r = call_request(Some(r#"{"a": 1}"#));
        let h: BTreeMap<_, _> = r.headers.iter().cloned().collect();
        assert_eq!(h["Content-Type"], "application/json");
        assert_eq!(h["event-type"], "application/json");
        assert_eq!(h["event-namespace"], "cli.kubeless.io");
        assert_eq!(h["event-id"].len(), 15);
        assert!(h["event-time"].ends_with('Z'));
        let r = call_request(Some("[1,2]"));
        let h: BTreeMap<_, _> = r.headers.iter().cloned().collect();
        assert_eq!(h["Content-Type"], "application/x-www-form-urlencoded");
        let r = call_request(None);
        assert!(r.body.is_none());
        assert!(!r.headers.iter().any(|(k, _)| k == "Content-Type"));
    }

    #[test]
    fn readiness_rules() {
        let mut f = func("f", None);
        assert!(matches!(readiness(&f, 1), Readiness::Waiting(_)));
        f.status = Some(FunctionStatus {
            phase: FunctionPhase::Ready,
            ready_replicas: 1,
            replicas: 1,
            observed_generation: 1,
            ..FunctionStatus::default()
        });
        assert_eq!(readiness(&f, 1), Readiness::Ready);
        assert!(matches!(readiness(&f, 2), Readiness::Waiting(_)));
        f.status = Some(FunctionStatus {
            phase: FunctionPhase::Failed,
            reason: "BuildFailed".into(),
            ..FunctionStatus::default()
        });
        assert_eq!(readiness(&f, 1), Readiness::Failed("BuildFailed".into()));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("120s"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("x").is_err());
    }
}
