//! `kubeless apply -f` / `kubeless delete -f` input: one or more YAML or
//! JSON documents (separated by `---`), each a Kubeless object or a `v1`
//! Secret (a `List` with `items` is expanded).
//!
//! Every document is parsed and checked before anything is sent, so a
//! malformed one means nothing is applied. [`admit`] then runs the
//! validation the embedded server runs on a write (`kubeless_api::validate`),
//! for every backend: a cluster's API server only checks the CRD schema.

use anyhow::{Context as _, anyhow, bail};
use kubeless_api::validate;
use kubeless_api::{Function, Kind, Secret};
use serde::Deserialize;
use serde_json::Value;

use crate::client::{ApiStatus, ClientError, ServerConfig};

/// One object ready to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestObject {
    pub kind: Kind,
    pub name: String,
    pub namespace: String,
    pub object: Value,
}

impl ManifestObject {
    /// How kubectl names the object in its output (`function.kubeless.io/x`).
    pub fn display_name(&self) -> String {
        match self.kind {
            Kind::Secret => format!("secret/{}", self.name),
            k => format!(
                "{}.kubeless.io/{}",
                k.name().to_ascii_lowercase(),
                self.name
            ),
        }
    }
}

/// Parse every document of `text`. `namespace` is the `-n` flag value
/// (`None` when not given; objects without a namespace then go to
/// `default`).
pub fn parse(text: &str, namespace: Option<&str>) -> anyhow::Result<Vec<ManifestObject>> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let yaml = serde_yaml::Value::deserialize(doc)
            .map_err(|e| anyhow!("error parsing document {index}: {e}"))?;
        if yaml.is_null() {
            continue;
        }
        let value: Value = serde_json::to_value(&yaml)
            .map_err(|e| anyhow!("error parsing document {index}: {e}"))?;
        let items = match value.get("kind").and_then(Value::as_str) {
            Some(k) if k == "List" || k.ends_with("List") => value
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .ok_or_else(|| anyhow!("error parsing document {index}: a {k} needs items"))?,
            _ => vec![value],
        };
        for item in items {
            out.push(
                check(item, namespace)
                    .with_context(|| format!("error parsing document {index}"))?,
            );
        }
    }
    if out.is_empty() {
        bail!("no objects passed to apply");
    }
    Ok(out)
}

fn check(mut value: Value, namespace: Option<&str>) -> anyhow::Result<ManifestObject> {
    if !value.is_object() {
        bail!("an object (mapping) is expected");
    }
    let kind_str = value.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind_str.is_empty() {
        bail!("'kind' is missing");
    }
    let kind = Kind::ALL
        .into_iter()
        .find(|k| k.name() == kind_str)
        .ok_or_else(|| anyhow!("unsupported kind {kind_str:?}"))?;
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if api_version != kind.api_version() {
        bail!(
            "{kind_str} needs apiVersion {:?}, found {api_version:?}",
            kind.api_version()
        );
    }
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty() {
        bail!("{kind_str} without metadata.name");
    }
    let doc_ns = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ns = match (namespace, doc_ns.as_str()) {
        (Some(flag), d) if !d.is_empty() && d != flag => bail!(
            "the namespace from the provided object {d:?} does not match the namespace {flag:?}. You must pass '--namespace={d}' to perform this operation."
        ),
        (_, d) if !d.is_empty() => d.to_string(),
        (Some(flag), _) => flag.to_string(),
        (None, _) => "default".to_string(),
    };
    let meta = value
        .as_object_mut()
        .map(|m| {
            m.entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()))
        })
        .and_then(Value::as_object_mut)
        .ok_or_else(|| anyhow!("metadata must be a mapping"))?;
    meta.insert("namespace".into(), Value::String(ns.clone()));
    if kind == Kind::Function {
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()))
            .as_object_mut()
            .ok_or_else(|| anyhow!("metadata.labels must be a mapping"))?;
        labels
            .entry("created-by")
            .or_insert_with(|| Value::String("kubeless".into()));
        labels
            .entry("function")
            .or_insert_with(|| Value::String(name.clone()));
    }
    // Decoding into the typed object catches wrongly-typed fields now.
    match kind {
        Kind::Function => drop(serde_json::from_value::<Function>(value.clone())?),
        Kind::HTTPTrigger => drop(serde_json::from_value::<kubeless_api::HttpTrigger>(
            value.clone(),
        )?),
        Kind::CronJobTrigger => drop(serde_json::from_value::<kubeless_api::CronJobTrigger>(
            value.clone(),
        )?),
        Kind::KafkaTrigger | Kind::NATSTrigger => drop(serde_json::from_value::<
            kubeless_api::KafkaTrigger,
        >(value.clone())?),
        Kind::KinesisTrigger => drop(serde_json::from_value::<kubeless_api::KinesisTrigger>(
            value.clone(),
        )?),
        Kind::Secret => drop(serde_json::from_value::<Secret>(value.clone())?),
    }
    Ok(ManifestObject {
        kind,
        name,
        namespace: ns,
        object: value,
    })
}

/// Check an object as the embedded server does before storing it, with
/// the same messages. `config` is the platform's runtime list; `None`
/// (not readable) checks only the shape of a Function's runtime, as
/// Kubeless did when its runtime check was disabled.
pub fn admit(o: &ManifestObject, config: Option<&ServerConfig>) -> Result<(), ClientError> {
    let malformed = |e: serde_json::Error| {
        ClientError::Other(format!("the {} object is malformed: {e}", o.kind))
    };
    match o.kind {
        Kind::Function => {
            let f: Function = serde_json::from_value(o.object.clone()).map_err(malformed)?;
            let runtimes = config.map(|c| c.runtimes.clone()).unwrap_or_default();
            if validate::custom_image(&f).is_none()
                && let Some(reason) = config.and_then(|c| c.unavailable_reason(&f.spec.runtime))
            {
                return Err(ClientError::Status(ApiStatus {
                    code: 422,
                    reason: "Invalid".to_string(),
                    message: reason,
                    causes: Vec::new(),
                }));
            }
            validate::validate_function(&f, &runtimes)?;
        }
        Kind::HTTPTrigger => validate::validate_http_trigger(
            &serde_json::from_value(o.object.clone()).map_err(malformed)?,
        )?,
        Kind::CronJobTrigger => validate::validate_cronjob_trigger(
            &serde_json::from_value(o.object.clone()).map_err(malformed)?,
        )?,
        Kind::KafkaTrigger | Kind::NATSTrigger => validate::validate_topic_trigger(
            &serde_json::from_value(o.object.clone()).map_err(malformed)?,
        )?,
        Kind::KinesisTrigger => validate::validate_kinesis_trigger(
            &serde_json::from_value(o.object.clone()).map_err(malformed)?,
        )?,
        Kind::Secret => validate::validate_secret(
            &serde_json::from_value(o.object.clone()).map_err(malformed)?,
        )?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &str = r#"
apiVersion: kubeless.io/v1beta1
kind: Function
metadata:
  name: hello
spec:
  runtime: python3.8
  handler: hello.foo
  function: "def foo(e, c): return 'hi'"
---
apiVersion: kubeless.io/v1beta1
kind: HTTPTrigger
metadata:
  name: hello
  namespace: other
spec:
  function-name: hello
---
{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}}
---
"#;

    #[test]
    fn multi_document() {
        let objs = parse(MULTI, None).expect("parse");
        assert_eq!(objs.len(), 3);
        assert_eq!(objs[0].kind, Kind::Function);
        assert_eq!(objs[0].namespace, "default");
        assert_eq!(
            objs[0].object["metadata"]["labels"],
            serde_json::json!({"created-by": "kubeless", "function": "hello"})
        );
        assert_eq!(objs[0].display_name(), "function.kubeless.io/hello");
        assert_eq!(objs[1].namespace, "other");
        assert_eq!(objs[1].display_name(), "httptrigger.kubeless.io/hello");
        assert_eq!(objs[2].kind, Kind::Secret);
        assert_eq!(objs[2].display_name(), "secret/s");
    }

    #[test]
    fn namespace_flag_fills_and_conflicts() {
        let objs = parse(
            "apiVersion: kubeless.io/v1beta1\nkind: Function\nmetadata: {name: a}\n",
            Some("team"),
        )
        .expect("parse");
        assert_eq!(objs[0].namespace, "team");
        assert_eq!(objs[0].object["metadata"]["namespace"], "team");
        assert!(parse(MULTI, Some("team")).is_err());
    }

    #[test]
    fn malformed_document_names_index() {
        let text = "apiVersion: kubeless.io/v1beta1\nkind: Function\nmetadata: {name: a}\n---\nkind: Function\napiVersion: kubeless.io/v1beta1\nmetadata: {name: b}\nspec: {handler: [1]}\n";
        let err = format!("{:#}", parse(text, None).expect_err("bad"));
        assert!(err.starts_with("error parsing document 2:"), "{err}");
        let err = format!("{:#}", parse("a: [", None).expect_err("bad yaml"));
        assert!(err.starts_with("error parsing document 1:"), "{err}");
        let err = format!(
            "{:#}",
            parse("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n", None).expect_err("kind")
        );
        assert!(err.contains("unsupported kind \"Pod\""), "{err}");
    }

    #[test]
    fn admission_reads_like_the_embedded_server() {
        let config = ServerConfig {
            runtimes: vec!["python3.11".into()],
            ..ServerConfig::default()
        };
        let text = "apiVersion: kubeless.io/v1beta1\nkind: Function\nmetadata: {name: x}\nspec: {handler: nodot, runtime: python3.11, function: x, timeout: \"-1\"}\n";
        let objs = parse(text, None).expect("parses");
        let e = admit(&objs[0], Some(&config)).expect_err("invalid");
        assert_eq!(
            e.to_string(),
            "Function \"x\" is invalid:\nspec.handler: \"nodot\" must be exactly <module>.<function> with one dot, e.g. \"hello.handler\" (module: letters, digits, '_' or '-'; function: letters, digits or '_')\nspec.timeout: \"-1\" must be a positive whole number of seconds (default 180)"
        );
        // Unknown runtimes need the list; without it only the shape counts.
        let text = "apiVersion: kubeless.io/v1beta1\nkind: Function\nmetadata: {name: x}\nspec: {handler: a.b, runtime: cobol85, function: x}\n";
        let objs = parse(text, None).expect("parses");
        let e = admit(&objs[0], Some(&config)).expect_err("unknown runtime");
        assert!(e.to_string().contains("unknown runtime \"cobol85\""), "{e}");
        admit(&objs[0], None).expect("shape only");
        // Triggers too.
        let text = "apiVersion: kubeless.io/v1beta1\nkind: HTTPTrigger\nmetadata: {name: h}\nspec: {function-name: f, gateway: envoy}\n";
        let objs = parse(text, None).expect("parses");
        let e = admit(&objs[0], None).expect_err("gateway");
        assert!(
            e.to_string()
                .contains("spec.gateway: unknown gateway \"envoy\""),
            "{e}"
        );
        let ok = parse(MULTI, None).expect("parses");
        for o in &ok[1..] {
            admit(o, None).expect("valid");
        }
    }

    #[test]
    fn list_is_expanded() {
        let objs = parse(
            r#"{"apiVersion":"kubeless.io/v1beta1","kind":"FunctionList","items":[
                {"apiVersion":"kubeless.io/v1beta1","kind":"Function","metadata":{"name":"a"}},
                {"apiVersion":"kubeless.io/v1beta1","kind":"Function","metadata":{"name":"b"}}]}"#,
            None,
        )
        .expect("parse");
        assert_eq!(objs.len(), 2);
    }
}
