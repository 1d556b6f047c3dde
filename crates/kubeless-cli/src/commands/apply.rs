//! `kubeless apply -f FILE` and `kubeless delete -f FILE` (`-` = stdin):
//! kubectl-like handling of Kubeless manifests for the embedded platform.
//!
//! Every document is parsed and checked first ([`crate::manifest`]), and
//! `apply` validates every object as the embedded server would
//! ([`manifest::admit`], also against a cluster, whose API server only
//! checks the CRD schema); only then are objects sent, in file order, so
//! one bad object means nothing is applied. Apply creates an object, or
//! replaces it with the server's `resourceVersion` when it exists.

use std::io::Read as _;

use anyhow::{Context as _, anyhow};
use clap::Args;
use kubeless_api::Kind;
use serde_json::Value;

use super::Context;
use crate::client::{Backend, ClientError};
use crate::log;
use crate::manifest::{self, ManifestObject};

/// Flags of `apply` and `delete`.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// File with the objects (YAML or JSON, several documents allowed; - for stdin)
    #[arg(short = 'f', long = "filename", required = true)]
    filename: String,
    /// Namespace for objects that do not name one
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

fn read_input(path: &str) -> anyhow::Result<String> {
    if path == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).map_err(|e| anyhow!("Unable to read file {path}: {e}"))
    }
}

fn parse(a: &FileArgs) -> anyhow::Result<Vec<ManifestObject>> {
    let text = read_input(&a.filename)?;
    manifest::parse(&text, a.namespace.as_deref().filter(|n| !n.is_empty()))
}

/// Create or replace one object; answers kubectl's verb.
fn apply_one(b: &dyn Backend, o: &ManifestObject) -> anyhow::Result<&'static str> {
    match b.get(o.kind, &o.namespace, &o.name) {
        Ok(current) => {
            let mut obj = o.object.clone();
            if let (Some(rv), Some(meta)) = (
                current.pointer("/metadata/resourceVersion").cloned(),
                obj.get_mut("metadata").and_then(Value::as_object_mut),
            ) {
                meta.insert("resourceVersion".to_string(), rv);
            }
            b.replace(o.kind, &o.namespace, &o.name, &obj)?;
            Ok("configured")
        }
        Err(e) if e.is_not_found() => {
            b.create(o.kind, &o.namespace, &o.object)?;
            Ok("created")
        }
        Err(e) => Err(e.into()),
    }
}

/// `kubeless apply -f`.
pub fn apply(ctx: &Context, a: FileArgs) -> anyhow::Result<()> {
    let objects = parse(&a)?;
    let b = ctx.backend()?;
    let config = if objects.iter().any(|o| o.kind == Kind::Function) {
        match b.server_config() {
            Ok(c) => Some(c),
            Err(e @ (ClientError::Unreachable { .. } | ClientError::Unauthorized)) => {
                return Err(e.into());
            }
            Err(e) => {
                log::warn(format!("{e}. Runtime check is disabled."));
                None
            }
        }
    } else {
        None
    };
    for o in &objects {
        manifest::admit(o, config.as_ref())
            .with_context(|| format!("error applying {}", o.display_name()))?;
    }
    for o in &objects {
        let verb = apply_one(b.as_ref(), o)
            .with_context(|| format!("error applying {}", o.display_name()))?;
        crate::output::emit(&format!("{} {verb}\n", o.display_name()));
    }
    Ok(())
}

/// `kubeless delete -f`: a missing object is reported and the others are
/// still deleted; the exit code is then 1. Functions go last, because the
/// server deletes the HTTP and cron triggers naming a deleted Function and
/// those would then be reported missing.
pub fn delete(ctx: &Context, a: FileArgs) -> anyhow::Result<()> {
    let mut objects = parse(&a)?;
    objects.sort_by_key(|o| o.kind == Kind::Function);
    let b = ctx.backend()?;
    let mut failed = 0;
    for o in &objects {
        match b.delete(o.kind, &o.namespace, &o.name) {
            Ok(_) => crate::output::emit(&format!("{} deleted\n", o.display_name())),
            Err(e) if e.is_not_found() => {
                failed += 1;
                log::error(format!("{}: {e}", o.display_name()));
            }
            Err(e) => return Err(anyhow!(e)),
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} object(s) could not be deleted");
    }
    Ok(())
}
