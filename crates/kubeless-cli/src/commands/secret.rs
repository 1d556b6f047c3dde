//! `kubeless secret create|list|delete`: Secrets of the embedded platform
//! (with Kubernetes one would use kubectl). Values are never printed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail};
use base64::Engine as _;
use clap::{Args, Subcommand};
use kubeless_api::{Kind, ObjectMeta, Secret};

use super::{Context, namespace, one_name};
use crate::client::{encode, list_as};
use crate::output::Table;

/// secret specific operations
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// create a secret from literal values and files
    Create(CreateArgs),
    /// list secrets (names and key counts, never values)
    #[command(visible_alias = "ls")]
    List(NsArgs),
    /// delete a secret
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Secret name
    names: Vec<String>,
    /// Specify namespace for the secret
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// A key and literal value, e.g. --from-literal user=admin (repeatable)
    #[arg(long = "from-literal")]
    from_literal: Vec<String>,
    /// A file whose content becomes a value: [key=]path; the key defaults to the file name (repeatable)
    #[arg(long = "from-file")]
    from_file: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NsArgs {
    /// Specify namespace for the secrets
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Secret name
    names: Vec<String>,
    /// Specify namespace for the secret
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

/// Run a `secret` subcommand.
pub fn run(ctx: &Context, cmd: SecretCommand) -> anyhow::Result<()> {
    match cmd {
        SecretCommand::Create(a) => create(ctx, a),
        SecretCommand::List(a) => list(ctx, a),
        SecretCommand::Delete(a) => {
            let name = one_name(&a.names, "secret name")?;
            let ns = namespace(&a.namespace);
            ctx.backend()?.delete(Kind::Secret, &ns, name)?;
            crate::output::emit(&format!("secret \"{name}\" deleted\n"));
            Ok(())
        }
    }
}

/// The `data` map of a new Secret (values base64-encoded).
pub fn secret_data(
    literals: &[String],
    files: &[(String, Vec<u8>)],
) -> anyhow::Result<BTreeMap<String, String>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut data = BTreeMap::new();
    for l in literals {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid literal source {l}, expected key=value"))?;
        if k.is_empty() {
            bail!("invalid literal source {l}, expected key=value");
        }
        if data.insert(k.to_string(), b64.encode(v)).is_some() {
            bail!("cannot add key {k}, another key by that name already exists");
        }
    }
    for (k, bytes) in files {
        if data.insert(k.clone(), b64.encode(bytes)).is_some() {
            bail!("cannot add key {k}, another key by that name already exists");
        }
    }
    Ok(data)
}

/// `[key=]path` → (key, path).
fn file_source(s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, p)) if !k.is_empty() && !p.is_empty() => Ok((k.to_string(), p.to_string())),
        Some(_) => bail!("invalid file source {s}, expected [key=]path"),
        None => {
            let key = Path::new(s)
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .ok_or_else(|| anyhow!("invalid file source {s}: no file name"))?;
            Ok((key, s.to_string()))
        }
    }
}

fn create(ctx: &Context, a: CreateArgs) -> anyhow::Result<()> {
    let name = one_name(&a.names, "secret name")?;
    let ns = namespace(&a.namespace);
    let mut files = Vec::new();
    for src in &a.from_file {
        let (key, path) = file_source(src)?;
        let bytes = std::fs::read(&path).map_err(|e| anyhow!("Unable to read file {path}: {e}"))?;
        files.push((key, bytes));
    }
    let secret = Secret {
        api_version: "v1".to_string(),
        kind: "Secret".to_string(),
        metadata: ObjectMeta {
            name: name.to_string(),
            namespace: ns.clone(),
            ..ObjectMeta::default()
        },
        data: secret_data(&a.from_literal, &files)?,
        string_data: BTreeMap::new(),
        type_: "Opaque".to_string(),
    };
    ctx.backend()?
        .create(Kind::Secret, &ns, &encode(&secret)?)?;
    crate::output::emit(&format!("secret/{name} created\n"));
    Ok(())
}

fn list(ctx: &Context, a: NsArgs) -> anyhow::Result<()> {
    let ns = namespace(&a.namespace);
    let secrets: Vec<Secret> = list_as(ctx.backend()?.as_ref(), Kind::Secret, &ns)?;
    list_table(&secrets).print();
    Ok(())
}

/// `NAME NAMESPACE TYPE DATA`: DATA is the number of keys.
pub fn list_table(secrets: &[Secret]) -> Table {
    let mut t = Table::new(50);
    t.row(["NAME", "NAMESPACE", "TYPE", "DATA"]);
    for s in secrets {
        let keys: std::collections::BTreeSet<&String> =
            s.data.keys().chain(s.string_data.keys()).collect();
        t.row([
            s.metadata.name.clone(),
            s.metadata.namespace.clone(),
            if s.type_.is_empty() {
                "Opaque".to_string()
            } else {
                s.type_.clone()
            },
            keys.len().to_string(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_from_literals_and_files() {
        let d = secret_data(
            &["user=admin".into(), "pw=a=b".into()],
            &[("cert".into(), b"xyz".to_vec())],
        )
        .expect("data");
        assert_eq!(d["user"], "YWRtaW4=");
        assert_eq!(d["pw"], "YT1i");
        assert_eq!(d["cert"], "eHl6");
        assert!(secret_data(&["novalue".into()], &[]).is_err());
        assert!(secret_data(&["a=1".into(), "a=2".into()], &[]).is_err());
    }

    #[test]
    fn file_sources() {
        assert_eq!(
            file_source("/tmp/x/ca.crt").expect("src"),
            ("ca.crt".to_string(), "/tmp/x/ca.crt".to_string())
        );
        assert_eq!(
            file_source("key=/tmp/x").expect("src"),
            ("key".to_string(), "/tmp/x".to_string())
        );
    }

    #[test]
    fn list_never_shows_values() {
        let s = Secret {
            metadata: ObjectMeta {
                name: "s".into(),
                namespace: "default".into(),
                ..ObjectMeta::default()
            },
            data: BTreeMap::from([("k".to_string(), "c2VjcmV0".to_string())]),
            ..Secret::default()
        };
        let out = list_table(&[s]).render();
        assert!(!out.contains("c2VjcmV0"));
        assert!(out.contains("Opaque\t1"));
    }
}
