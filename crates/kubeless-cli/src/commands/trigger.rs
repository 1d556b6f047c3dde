//! `kubeless trigger http|cronjob|kafka|nats|kinesis create|update|delete|list`
//! (spec 1.2).
//!
//! Differences from Kubeless, on purpose:
//! - `http create` with the nginx gateway and no `--hostname` stores an
//!   empty host, which the embedded server's routes match for any host
//!   (Kubeless invented `<function>.<apiserver host>.nip.io`).
//! - `cronjob create` without a payload stores `null` (the schedule then
//!   sends a GET, as `function deploy --schedule` does) and an invalid
//!   payload is an error; Kubeless stored `{}` in both cases.
//! - `cronjob update` changes only the given flags; Kubeless overwrote
//!   schedule, function and payload with empty values.
//! - `kafka|nats --function-selector` keeps set-based requirements
//!   (`matchExpressions`); Kubeless stored only `matchLabels`.
//! - `kinesis update` has `-n` and applies `--function-name` (Kubeless
//!   registered no `--namespace` flag and only checked the function).
//!   KinesisTriggers are stored and listed but not consumed: this product
//!   does not talk to AWS, so `kinesis publish` and `create-stream` answer
//!   one line saying so and exit 1.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use kubeless_api::{
    API_VERSION, CronJobTrigger, CronJobTriggerSpec, HttpTrigger, HttpTriggerSpec, Kind,
    KinesisTrigger, KinesisTriggerSpec, LabelSelector, Object, ObjectMeta, TopicTriggerSpec,
    TriggerStatus,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Context, namespace, one_name, read_source};
use kubeless_api::selector::{format_selector, parse_selector};

use crate::client::{Backend, encode, get_as, list_as};
use crate::output::{Table, print_structured};
use crate::{log, schedule};

/// trigger specific operations
#[derive(Debug, Subcommand)]
pub enum TriggerCommand {
    /// http trigger specific operations
    #[command(arg_required_else_help = true)]
    Http {
        #[command(subcommand)]
        cmd: HttpCommand,
    },
    /// cronjob trigger specific operations
    #[command(arg_required_else_help = true)]
    Cronjob {
        #[command(subcommand)]
        cmd: CronCommand,
    },
    /// kafka trigger specific operations
    #[command(arg_required_else_help = true)]
    Kafka {
        #[command(subcommand)]
        cmd: TopicCommand,
    },
    /// nats trigger specific operations
    #[command(arg_required_else_help = true)]
    Nats {
        #[command(subcommand)]
        cmd: TopicCommand,
    },
    /// kinesis trigger specific operations
    #[command(arg_required_else_help = true)]
    Kinesis {
        #[command(subcommand)]
        cmd: KinesisCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KinesisCommand {
    /// Create a Kinesis trigger
    Create(KinesisWrite),
    /// Update a Kinesis trigger
    Update(KinesisWrite),
    /// Delete a Kinesis trigger
    Delete(TriggerName),
    /// list all Kinesis triggers deployed to Kubeless
    #[command(visible_alias = "ls")]
    List(ListFlags),
    /// publish records to an AWS Kinesis stream (not supported: no AWS access)
    Publish(KinesisPublish),
    /// create an AWS Kinesis stream (not supported: no AWS access)
    #[command(name = "create-stream")]
    CreateStream(KinesisCreateStream),
}

#[derive(Debug, Args)]
pub struct KinesisWrite {
    /// Trigger name
    names: Vec<String>,
    #[command(flatten)]
    write: WriteFlags,
    /// Name of the AWS Kinesis stream
    #[arg(long)]
    stream: Option<String>,
    /// AWS region in which the stream is available
    #[arg(long = "aws-region")]
    aws_region: Option<String>,
    /// Shard-ID of the AWS Kinesis stream
    #[arg(long = "shard-id")]
    shard_id: Option<String>,
    /// Name of the function to be associated with trigger
    #[arg(long = "function-name")]
    function_name: Option<String>,
    /// Kubernetes secret that has AWS access key and secret key
    #[arg(long)]
    secret: Option<String>,
    /// Override AWS's default service URL with the given URL
    #[arg(long)]
    endpoint: Option<String>,
}

#[derive(Debug, Args)]
pub struct KinesisPublish {
    /// Name of the AWS Kinesis stream
    #[arg(long)]
    stream: Option<String>,
    /// AWS region in which the stream is available
    #[arg(long = "aws-region")]
    aws_region: Option<String>,
    /// Partition key
    #[arg(long = "partition-key")]
    partition_key: Option<String>,
    /// Records to publish
    #[arg(long)]
    records: Vec<String>,
    /// Override AWS's default service URL with the given URL
    #[arg(long)]
    endpoint: Option<String>,
    /// Kubernetes secret that has AWS access key and secret key
    #[arg(long)]
    secret: Option<String>,
    /// Namespace of the secret
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

#[derive(Debug, Args)]
pub struct KinesisCreateStream {
    /// Name of the AWS Kinesis stream
    #[arg(long = "stream-name")]
    stream_name: Option<String>,
    /// AWS region in which the stream is to be created
    #[arg(long = "aws-region")]
    aws_region: Option<String>,
    /// Number of shards
    #[arg(long = "shard-count", default_value_t = 1)]
    shard_count: i64,
    /// Override AWS's default service URL with the given URL
    #[arg(long)]
    endpoint: Option<String>,
    /// Kubernetes secret that has AWS access key and secret key
    #[arg(long)]
    secret: Option<String>,
    /// Namespace of the secret
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

/// What `kinesis publish` and `create-stream` answer.
pub const NO_AWS: &str = "this Kubeless does not talk to AWS: KinesisTriggers are stored and listed but not consumed, and streams cannot be created or published to (use the AWS CLI)";

/// Flags every create/update has.
#[derive(Debug, Args)]
pub struct WriteFlags {
    /// Specify namespace for the trigger
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Output JSON manifest of the trigger without creating it
    #[arg(long)]
    dryrun: bool,
    /// Output format
    #[arg(short = 'o', long, default_value = "yaml")]
    output: String,
}

/// A name and a namespace.
#[derive(Debug, Args)]
pub struct TriggerName {
    /// Trigger name
    names: Vec<String>,
    /// Specify namespace for the trigger
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

/// Namespace and output format of `list`.
#[derive(Debug, Args)]
pub struct ListFlags {
    /// Specify namespace for the trigger
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Output format: `wide` adds the trigger's state and delivery counters
    #[arg(short = 'o', long)]
    output: Option<String>,
}

impl ListFlags {
    fn wide(&self) -> anyhow::Result<bool> {
        match self.output.as_deref() {
            None | Some("") => Ok(false),
            Some("wide") => Ok(true),
            Some(o) => bail!("Wrong output format {o:?}: only wide is supported for trigger lists"),
        }
    }
}

/// The columns `-o wide` adds: state, counters, message.
const WIDE_HEADER: [&str; 7] = [
    "STATE",
    "DELIVERED",
    "RETRIED",
    "DEAD-LETTERED",
    "IN-FLIGHT",
    "SKIPPED",
    "MESSAGE",
];

fn wide_cells(status: &Option<TriggerStatus>) -> [String; 7] {
    let s = status.clone().unwrap_or_default();
    [
        if s.state.is_empty() {
            "Pending".to_string()
        } else {
            s.state
        },
        s.delivered.to_string(),
        s.retried.to_string(),
        s.dead_lettered.to_string(),
        s.in_flight.to_string(),
        s.skipped.to_string(),
        s.message,
    ]
}

fn with_wide(wide: bool, cells: Vec<String>, status: &Option<TriggerStatus>) -> Vec<String> {
    let mut cells = cells;
    if wide {
        cells.extend(wide_cells(status));
    }
    cells
}

fn header(wide: bool, cells: &[&str]) -> Vec<String> {
    let mut h: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
    if wide {
        h.extend(WIDE_HEADER.iter().map(|c| c.to_string()));
    }
    h
}

#[derive(Debug, Subcommand)]
pub enum HttpCommand {
    /// Create a http trigger
    Create(HttpCreate),
    /// Update a http trigger
    Update(HttpUpdate),
    /// Delete a http trigger
    Delete(TriggerName),
    /// list all http triggers deployed to Kubeless
    #[command(visible_alias = "ls")]
    List(ListFlags),
}

#[derive(Debug, Args)]
pub struct HttpCreate {
    /// Trigger name
    names: Vec<String>,
    #[command(flatten)]
    write: WriteFlags,
    /// Name of the function to be associated with trigger
    #[arg(long = "function-name")]
    function_name: Option<String>,
    /// Ingress path for the function
    #[arg(long)]
    path: Option<String>,
    /// Specify a valid hostname for the function (empty: any host)
    #[arg(long)]
    hostname: Option<String>,
    /// If true, routing rule will be configured for use with kube-lego
    #[arg(long = "enableTLSAcme")]
    enable_tls_acme: bool,
    /// Specify a valid gateway for the Ingress. Supported: nginx, traefik, kong
    #[arg(long, default_value = "nginx")]
    gateway: String,
    /// Specify an existing secret name for basic authentication
    #[arg(long = "basic-auth-secret")]
    basic_auth_secret: Option<String>,
    /// Specify an existing secret name for TLS
    #[arg(long = "tls-secret")]
    tls_secret: Option<String>,
    /// If true, cors will be enabled on Http Trigger
    #[arg(long = "cors-enable")]
    cors_enable: bool,
}

#[derive(Debug, Args)]
pub struct HttpUpdate {
    /// Trigger name
    names: Vec<String>,
    #[command(flatten)]
    write: WriteFlags,
    /// Name of the function to be associated with trigger
    #[arg(long = "function-name")]
    function_name: Option<String>,
    /// Ingress path for the function
    #[arg(long)]
    path: Option<String>,
    /// Specify a valid hostname for the function
    #[arg(long)]
    hostname: Option<String>,
    /// If true, routing rule will be configured for use with kube-lego
    #[arg(long = "enableTLSAcme")]
    enable_tls_acme: bool,
    /// Specify a valid gateway for the Ingress. Supported: nginx, traefik, kong
    #[arg(long)]
    gateway: Option<String>,
    /// Specify an existing secret name for basic authentication
    #[arg(long = "basic-auth-secret")]
    basic_auth_secret: Option<String>,
    /// Specify an existing secret name for TLS
    #[arg(long = "tls-secret")]
    tls_secret: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CronCommand {
    /// Create a cron job trigger
    Create(CronFlags),
    /// Update a cron job trigger
    Update(CronFlags),
    /// Delete a cronjob trigger
    Delete(TriggerName),
    /// list all cronjob triggers deployed to Kubeless
    #[command(visible_alias = "ls")]
    List(ListFlags),
}

#[derive(Debug, Args)]
pub struct CronFlags {
    /// Trigger name
    names: Vec<String>,
    #[command(flatten)]
    write: WriteFlags,
    /// Specify schedule in cron format for scheduled function
    #[arg(long)]
    schedule: Option<String>,
    /// Name of the function to be associated with trigger
    #[arg(long)]
    function: Option<String>,
    /// Specify a stringified JSON data to pass to function upon execution
    #[arg(short = 'p', long)]
    payload: Option<String>,
    /// Specify a payload file to use. It must be a JSON file
    #[arg(short = 'f', long = "payload-from-file")]
    payload_from_file: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a trigger
    Create(TopicFlags),
    /// Update a trigger
    Update(TopicFlags),
    /// Delete a trigger
    Delete(TriggerName),
    /// list all triggers deployed to Kubeless
    #[command(visible_alias = "ls")]
    List(ListFlags),
    /// Publish a message to a NATS subject (nats only; for Kafka use 'kubeless topic publish')
    Publish(PublishFlags),
}

#[derive(Debug, Args)]
pub struct PublishFlags {
    /// NATS server URL [default: the server's --nats-url]
    #[arg(long)]
    url: Option<String>,
    /// Subject to publish to
    #[arg(long, default_value = "kubeless")]
    topic: String,
    /// Message to publish
    #[arg(long)]
    message: String,
}

#[derive(Debug, Args)]
pub struct TopicFlags {
    /// Trigger name
    names: Vec<String>,
    #[command(flatten)]
    write: WriteFlags,
    /// Specify topic name
    #[arg(long = "trigger-topic")]
    trigger_topic: Option<String>,
    /// Selector (label query) to select function on (e.g. --function-selector key1=value1,key2=value2)
    #[arg(long = "function-selector")]
    function_selector: Option<String>,
}

/// Run a `trigger` subcommand.
pub fn run(ctx: &Context, cmd: TriggerCommand) -> anyhow::Result<()> {
    match cmd {
        TriggerCommand::Http { cmd } => http(ctx, cmd),
        TriggerCommand::Cronjob { cmd } => cron(ctx, cmd),
        TriggerCommand::Kafka { cmd } => topic(ctx, cmd, Kind::KafkaTrigger, "Kafka"),
        TriggerCommand::Nats { cmd } => topic(ctx, cmd, Kind::NATSTrigger, "NATS"),
        TriggerCommand::Kinesis { cmd } => kinesis(ctx, cmd),
    }
}

fn non_empty(o: &Option<String>) -> Option<&str> {
    o.as_deref().filter(|s| !s.is_empty())
}

fn new_trigger<S>(kind: Kind, name: &str, ns: &str, spec: S) -> Object<S, TriggerStatus> {
    Object {
        api_version: API_VERSION.to_string(),
        kind: kind.name().to_string(),
        metadata: ObjectMeta {
            name: name.to_string(),
            namespace: ns.to_string(),
            labels: BTreeMap::from([("created-by".to_string(), "kubeless".to_string())]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

fn check_output(w: &WriteFlags) -> anyhow::Result<()> {
    if w.dryrun && !matches!(w.output.as_str(), "json" | "yaml") {
        bail!("Output format needs to be yaml or json");
    }
    Ok(())
}

/// Print (dry run) or create/replace; logs Kubeless's success line.
fn write<T: Serialize>(
    b: &dyn Backend,
    w: &WriteFlags,
    kind: Kind,
    object: &Object<T, TriggerStatus>,
    create: bool,
    label: &str,
) -> anyhow::Result<()> {
    if w.dryrun {
        return print_structured(object, &w.output, 4);
    }
    let (name, ns) = (&object.metadata.name, &object.metadata.namespace);
    let value = encode(object)?;
    if create {
        b.create(kind, ns, &value)?;
        log::info(format!(
            "{label} trigger {name} created in namespace {ns} successfully!"
        ));
    } else {
        b.replace(kind, ns, name, &value)?;
        log::info(format!(
            "{label} trigger {name} updated in namespace {ns} successfully!"
        ));
    }
    Ok(())
}

fn existing<T: DeserializeOwned>(
    b: &dyn Backend,
    kind: Kind,
    ns: &str,
    name: &str,
    label: &str,
) -> anyhow::Result<T> {
    get_as(b, kind, ns, name).map_err(|e| {
        if e.is_not_found() {
            anyhow!("Unable to find {label} trigger {name} in namespace {ns}")
        } else {
            anyhow!(e)
        }
    })
}

fn function_must_exist(b: &dyn Backend, ns: &str, name: &str) -> anyhow::Result<()> {
    b.get(Kind::Function, ns, name).map(drop).map_err(|e| {
        if e.is_not_found() {
            anyhow!("Unable to find Function {name} in namespace {ns}. Error {e}")
        } else {
            anyhow!(e)
        }
    })
}

fn delete(ctx: &Context, kind: Kind, a: TriggerName) -> anyhow::Result<()> {
    let name = one_name(&a.names, "trigger name")?;
    let ns = namespace(&a.namespace);
    ctx.backend()?.delete(kind, &ns, name)?;
    Ok(())
}

fn check_gateway(g: &str) -> anyhow::Result<()> {
    if !matches!(g, "nginx" | "traefik" | "kong") {
        bail!("Unsupported gateway {g}");
    }
    Ok(())
}

fn http(ctx: &Context, cmd: HttpCommand) -> anyhow::Result<()> {
    match cmd {
        HttpCommand::Create(a) => {
            let name = one_name(&a.names, "trigger name")?;
            let ns = namespace(&a.write.namespace);
            check_output(&a.write)?;
            let function = non_empty(&a.function_name)
                .ok_or_else(|| anyhow!("required flag(s) \"function-name\" not set"))?;
            check_gateway(&a.gateway)?;
            if a.enable_tls_acme && non_empty(&a.tls_secret).is_some() {
                bail!("Cannot specify both --enableTLSAcme and --tls-secret");
            }
            let hostname = a.hostname.clone().unwrap_or_default();
            if hostname.is_empty() && a.gateway != "nginx" {
                bail!("The --hostname flag is required");
            }
            let b = ctx.backend()?;
            function_must_exist(b.as_ref(), &ns, function)?;
            let t = new_trigger(
                Kind::HTTPTrigger,
                name,
                &ns,
                HttpTriggerSpec {
                    function_name: function.to_string(),
                    host_name: hostname,
                    tls: a.enable_tls_acme,
                    tls_secret: a.tls_secret.clone().unwrap_or_default(),
                    path: a.path.clone().unwrap_or_default(),
                    basic_auth_secret: a.basic_auth_secret.clone().unwrap_or_default(),
                    gateway: a.gateway.clone(),
                    cors_enable: a.cors_enable,
                },
            );
            write(b.as_ref(), &a.write, Kind::HTTPTrigger, &t, true, "HTTP")
        }
        HttpCommand::Update(a) => {
            let name = one_name(&a.names, "trigger name")?;
            let ns = namespace(&a.write.namespace);
            check_output(&a.write)?;
            if let Some(g) = non_empty(&a.gateway) {
                check_gateway(g)?;
            }
            if a.enable_tls_acme && non_empty(&a.tls_secret).is_some() {
                bail!("Cannot specify both --enableTLSAcme and --tls-secret");
            }
            let b = ctx.backend()?;
            let mut t: HttpTrigger = existing(b.as_ref(), Kind::HTTPTrigger, &ns, name, "HTTP")?;
            if let Some(f) = non_empty(&a.function_name) {
                function_must_exist(b.as_ref(), &ns, f)?;
                t.spec.function_name = f.to_string();
            }
            overwrite(&mut t.spec.host_name, &a.hostname);
            overwrite(&mut t.spec.path, &a.path);
            overwrite(&mut t.spec.gateway, &a.gateway);
            overwrite(&mut t.spec.basic_auth_secret, &a.basic_auth_secret);
            overwrite(&mut t.spec.tls_secret, &a.tls_secret);
            t.spec.tls = a.enable_tls_acme;
            t.status = None;
            write(b.as_ref(), &a.write, Kind::HTTPTrigger, &t, false, "HTTP")
        }
        HttpCommand::Delete(a) => delete(ctx, Kind::HTTPTrigger, a),
        HttpCommand::List(a) => {
            let ns = namespace(&a.namespace);
            let wide = a.wide()?;
            let items: Vec<HttpTrigger> = list_as(ctx.backend()?.as_ref(), Kind::HTTPTrigger, &ns)?;
            let mut t = Table::new(if wide { 120 } else { 50 });
            t.row(header(wide, &["NAME", "NAMESPACE", "FUNCTION NAME"]));
            for i in &items {
                t.row(with_wide(
                    wide,
                    vec![
                        i.metadata.name.clone(),
                        i.metadata.namespace.clone(),
                        i.spec.function_name.clone(),
                    ],
                    &i.status,
                ));
            }
            t.print();
            Ok(())
        }
    }
}

/// The payload flags: `Ok(None)` when neither is given.
fn payload(a: &CronFlags) -> anyhow::Result<Option<Value>> {
    let text = match (non_empty(&a.payload), non_empty(&a.payload_from_file)) {
        (Some(_), Some(_)) => bail!("You can't provide both raw payload and a payload file"),
        (Some(p), None) => p.to_string(),
        (None, Some(file)) => {
            let path = file.split('?').next().unwrap_or(file);
            if !path.ends_with(".json") {
                bail!("Payload file must be a .json file: {file}");
            }
            String::from_utf8(read_source(file)?)
                .map_err(|_| anyhow!("Payload file {file} is not UTF-8 text"))?
        }
        (None, None) => return Ok(None),
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => Ok(Some(v)),
        Ok(_) => bail!("Invalid payload: a JSON object is expected"),
        Err(e) => bail!("Invalid payload: {e}"),
    }
}

fn cron(ctx: &Context, cmd: CronCommand) -> anyhow::Result<()> {
    match cmd {
        CronCommand::Create(a) => {
            let name = one_name(&a.names, "trigger name")?;
            let ns = namespace(&a.write.namespace);
            check_output(&a.write)?;
            let sched = non_empty(&a.schedule)
                .ok_or_else(|| anyhow!("required flag(s) \"schedule\" not set"))?;
            let function = non_empty(&a.function)
                .ok_or_else(|| anyhow!("required flag(s) \"function\" not set"))?;
            schedule::check(sched).map_err(|e| anyhow!("Invalid value for --schedule. {e}"))?;
            let payload = payload(&a)?.unwrap_or(Value::Null);
            let b = ctx.backend()?;
            function_must_exist(b.as_ref(), &ns, function)?;
            let t = new_trigger(
                Kind::CronJobTrigger,
                name,
                &ns,
                CronJobTriggerSpec {
                    schedule: sched.to_string(),
                    function_name: function.to_string(),
                    payload,
                },
            );
            write(
                b.as_ref(),
                &a.write,
                Kind::CronJobTrigger,
                &t,
                true,
                "Cronjob",
            )
        }
        CronCommand::Update(a) => {
            let name = one_name(&a.names, "trigger name")?;
            let ns = namespace(&a.write.namespace);
            check_output(&a.write)?;
            if let Some(s) = non_empty(&a.schedule) {
                schedule::check(s).map_err(|e| anyhow!("Invalid value for --schedule. {e}"))?;
            }
            let payload = payload(&a)?;
            let b = ctx.backend()?;
            let mut t: CronJobTrigger =
                existing(b.as_ref(), Kind::CronJobTrigger, &ns, name, "Cronjob")?;
            if let Some(f) = non_empty(&a.function) {
                function_must_exist(b.as_ref(), &ns, f)?;
                t.spec.function_name = f.to_string();
            }
            if let Some(s) = non_empty(&a.schedule) {
                t.spec.schedule = s.to_string();
            }
            if let Some(p) = payload {
                t.spec.payload = p;
            }
            t.status = None;
            write(
                b.as_ref(),
                &a.write,
                Kind::CronJobTrigger,
                &t,
                false,
                "Cronjob",
            )
        }
        CronCommand::Delete(a) => delete(ctx, Kind::CronJobTrigger, a),
        CronCommand::List(a) => {
            let ns = namespace(&a.namespace);
            let wide = a.wide()?;
            let items: Vec<CronJobTrigger> =
                list_as(ctx.backend()?.as_ref(), Kind::CronJobTrigger, &ns)?;
            let mut t = Table::new(if wide { 120 } else { 50 });
            t.row(header(
                wide,
                &["NAME", "NAMESPACE", "SCHEDULE", "FUNCTION NAME"],
            ));
            for i in &items {
                t.row(with_wide(
                    wide,
                    vec![
                        i.metadata.name.clone(),
                        i.metadata.namespace.clone(),
                        i.spec.schedule.clone(),
                        i.spec.function_name.clone(),
                    ],
                    &i.status,
                ));
            }
            t.print();
            Ok(())
        }
    }
}

/// Parse `--function-selector`. Kubeless kept only the `matchLabels` of
/// the parsed selector; set-based requirements (`k in (a,b)`, `k!=v`,
/// `!k`) are kept here too, since the server matches them.
pub fn parse_function_selector(s: &str) -> anyhow::Result<LabelSelector> {
    Ok(parse_selector(s)?)
}

fn topic(ctx: &Context, cmd: TopicCommand, kind: Kind, label: &str) -> anyhow::Result<()> {
    type TopicTrigger = Object<TopicTriggerSpec, TriggerStatus>;
    match cmd {
        TopicCommand::Create(a) => {
            let name = one_name(&a.names, "trigger name")?;
            let ns = namespace(&a.write.namespace);
            check_output(&a.write)?;
            let topic = non_empty(&a.trigger_topic)
                .ok_or_else(|| anyhow!("required flag(s) \"trigger-topic\" not set"))?;
            let selector = non_empty(&a.function_selector)
                .ok_or_else(|| anyhow!("required flag(s) \"function-selector\" not set"))?;
            let selector = parse_function_selector(selector)?;
            let b = ctx.backend()?;
            let t = new_trigger(
                kind,
                name,
                &ns,
                TopicTriggerSpec {
                    topic: topic.to_string(),
                    function_selector: selector,
                },
            );
            write(b.as_ref(), &a.write, kind, &t, true, label)
        }
        TopicCommand::Update(a) => {
            let name = one_name(&a.names, "trigger name")?;
            let ns = namespace(&a.write.namespace);
            check_output(&a.write)?;
            let selector = non_empty(&a.function_selector)
                .map(parse_function_selector)
                .transpose()?;
            let b = ctx.backend()?;
            let mut t: TopicTrigger = existing(b.as_ref(), kind, &ns, name, label)?;
            if let Some(topic) = non_empty(&a.trigger_topic) {
                t.spec.topic = topic.to_string();
            }
            if let Some(sel) = selector {
                t.spec.function_selector = sel;
            }
            t.status = None;
            write(b.as_ref(), &a.write, kind, &t, false, label)
        }
        TopicCommand::Delete(a) => delete(ctx, kind, a),
        TopicCommand::Publish(a) => {
            if kind != Kind::NATSTrigger {
                bail!(
                    "publish is for NATS triggers; publish to Kafka with 'kubeless topic publish --topic {} --data ...'",
                    a.topic
                );
            }
            let url = match a.url.filter(|u| !u.is_empty()) {
                Some(u) => u,
                None => ctx.backend()?.server_config()?.nats_url,
            };
            if url.is_empty() {
                bail!("required flag(s) \"url\" not set");
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let client = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    async_nats::connect(url.as_str()),
                )
                .await
                .map_err(|_| anyhow!("could not reach the NATS server at {url} within 10 s"))?
                .map_err(|e| anyhow!("connect to the NATS server at {url}: {e}"))?;
                kubeless_events::nats::publish(
                    &client,
                    &a.topic,
                    a.message.clone().into_bytes().into(),
                )
                .await?;
                anyhow::Ok(())
            })?;
            log::info(format!("Published [{}] : '{}'", a.topic, a.message));
            Ok(())
        }
        TopicCommand::List(a) => {
            let ns = namespace(&a.namespace);
            let wide = a.wide()?;
            let items: Vec<TopicTrigger> = list_as(ctx.backend()?.as_ref(), kind, &ns)?;
            let mut t = Table::new(if wide { 120 } else { 50 });
            t.row(header(
                wide,
                &["NAME", "NAMESPACE", "TOPIC", "FUNCTION SELECTOR"],
            ));
            for i in &items {
                t.row(with_wide(
                    wide,
                    vec![
                        i.metadata.name.clone(),
                        i.metadata.namespace.clone(),
                        i.spec.topic.clone(),
                        format_selector(&i.spec.function_selector),
                    ],
                    &i.status,
                ));
            }
            t.print();
            Ok(())
        }
    }
}

fn required<'a>(o: &'a Option<String>, flag: &str) -> anyhow::Result<&'a str> {
    non_empty(o).ok_or_else(|| anyhow!("required flag(s) \"{flag}\" not set"))
}

/// `--endpoint`: an `http(s)://` URL with a host.
fn check_endpoint(e: &str) -> anyhow::Result<()> {
    let host = e
        .strip_prefix("https://")
        .or_else(|| e.strip_prefix("http://"))
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
    match host {
        Some(h) if !h.is_empty() && !h.contains(char::is_whitespace) => Ok(()),
        _ => bail!("Invalid value for --endpoint: {e:?} is not an http(s) URL"),
    }
}

fn secret_must_exist(b: &dyn Backend, ns: &str, name: &str) -> anyhow::Result<()> {
    b.get(Kind::Secret, ns, name).map(drop).map_err(|e| {
        if e.is_not_found() {
            anyhow!("Unable to find Secret {name} in namespace {ns}. Error {e}")
        } else {
            anyhow!(e)
        }
    })
}

/// `update`'s rule for a string flag: given and not empty, it replaces
/// the field; otherwise the field stays.
fn overwrite(field: &mut String, flag: &Option<String>) {
    if let Some(v) = non_empty(flag) {
        *field = v.to_string();
    }
}

/// Check a trigger as the server would before it is sent (or printed).
fn admit_kinesis(t: &KinesisTrigger) -> anyhow::Result<()> {
    kubeless_api::validate::validate_kinesis_trigger(t)
        .map_err(|e| anyhow!(crate::client::ClientError::from(e)))
}

fn kinesis(ctx: &Context, cmd: KinesisCommand) -> anyhow::Result<()> {
    const LABEL: &str = "Kinesis";
    match cmd {
        KinesisCommand::Create(a) => {
            let name = one_name(&a.names, "trigger name")?;
            let ns = namespace(&a.write.namespace);
            check_output(&a.write)?;
            let stream = required(&a.stream, "stream")?;
            let region = required(&a.aws_region, "aws-region")?;
            let shard = required(&a.shard_id, "shard-id")?;
            let function = required(&a.function_name, "function-name")?;
            let secret = required(&a.secret, "secret")?;
            let endpoint = non_empty(&a.endpoint).unwrap_or("");
            if !endpoint.is_empty() {
                check_endpoint(endpoint)?;
            }
            let t = new_trigger(
                Kind::KinesisTrigger,
                name,
                &ns,
                KinesisTriggerSpec {
                    function_name: function.to_string(),
                    aws_region: region.to_string(),
                    secret: secret.to_string(),
                    stream: stream.to_string(),
                    shard: shard.to_string(),
                    endpoint: endpoint.to_string(),
                },
            );
            admit_kinesis(&t)?;
            let b = ctx.backend()?;
            if !a.write.dryrun {
                function_must_exist(b.as_ref(), &ns, function)?;
                secret_must_exist(b.as_ref(), &ns, secret)?;
            }
            write(b.as_ref(), &a.write, Kind::KinesisTrigger, &t, true, LABEL)
        }
        KinesisCommand::Update(a) => {
            let name = one_name(&a.names, "trigger name")?;
            let ns = namespace(&a.write.namespace);
            check_output(&a.write)?;
            if let Some(e) = non_empty(&a.endpoint) {
                check_endpoint(e)?;
            }
            let b = ctx.backend()?;
            let mut t: KinesisTrigger =
                existing(b.as_ref(), Kind::KinesisTrigger, &ns, name, LABEL)?;
            if let Some(f) = non_empty(&a.function_name) {
                function_must_exist(b.as_ref(), &ns, f)?;
                t.spec.function_name = f.to_string();
            }
            if let Some(s) = non_empty(&a.secret) {
                secret_must_exist(b.as_ref(), &ns, s)?;
                t.spec.secret = s.to_string();
            }
            overwrite(&mut t.spec.stream, &a.stream);
            overwrite(&mut t.spec.aws_region, &a.aws_region);
            overwrite(&mut t.spec.shard, &a.shard_id);
            overwrite(&mut t.spec.endpoint, &a.endpoint);
            t.status = None;
            admit_kinesis(&t)?;
            write(b.as_ref(), &a.write, Kind::KinesisTrigger, &t, false, LABEL)
        }
        KinesisCommand::Delete(a) => delete(ctx, Kind::KinesisTrigger, a),
        KinesisCommand::List(a) => {
            let ns = namespace(&a.namespace);
            let wide = a.wide()?;
            let items: Vec<KinesisTrigger> =
                list_as(ctx.backend()?.as_ref(), Kind::KinesisTrigger, &ns)?;
            print_kinesis(&items, wide);
            Ok(())
        }
        KinesisCommand::Publish(_) | KinesisCommand::CreateStream(_) => bail!("{NO_AWS}"),
    }
}

/// `trigger kinesis ls`: Kubeless's columns.
fn print_kinesis(items: &[KinesisTrigger], wide: bool) {
    let mut t = Table::new(if wide { 120 } else { 50 });
    t.row(header(
        wide,
        &[
            "NAME",
            "NAMESPACE",
            "REGION",
            "STREAM",
            "SHARD",
            "FUNCTION NAME",
        ],
    ));
    for i in items {
        t.row(with_wide(
            wide,
            vec![
                i.metadata.name.clone(),
                i.metadata.namespace.clone(),
                i.spec.aws_region.clone(),
                i.spec.stream.clone(),
                i.spec.shard.clone(),
                i.spec.function_name.clone(),
            ],
            &i.status,
        ));
    }
    t.print();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinesis_endpoints_are_urls() {
        check_endpoint("https://kinesis.us-east-1.amazonaws.com").expect("https");
        check_endpoint("http://localhost:4567/").expect("http");
        for bad in ["kinesis.example.com", "ftp://x", "http://", "https:// x"] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kinesis_publish_and_create_stream_say_why_in_one_line() {
        assert!(!NO_AWS.contains('\n'));
        assert!(NO_AWS.contains("AWS"));
    }

    #[test]
    fn selectors() {
        let s = parse_function_selector("a=1,b==2").expect("selector");
        assert_eq!(format_selector(&s), "a=1,b=2");
        assert!(parse_function_selector("a in (x").is_err());
    }
}
