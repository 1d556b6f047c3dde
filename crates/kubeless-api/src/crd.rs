//! CustomResourceDefinitions (`apiextensions.k8s.io/v1`) for the six
//! `kubeless.io` kinds, generated from the Rust types.
//!
//! The `spec`/`status` schemas are derived with `schemars` from
//! [`crate::types`] (so renaming or adding a field changes the CRD) and then
//! made *structural*, as Kubernetes requires for v1 CRDs: subschemas are
//! inlined, JSON-Schema-only keywords are dropped, and no defaults are
//! declared (the API server must not invent values Kubeless never had).
//! The embedded Kubernetes objects of a Function (`deployment`, `service`,
//! `horizontalPodAutoscaler`) are `type: object` with
//! `x-kubernetes-preserve-unknown-fields`, and a cron `payload` is any JSON
//! value, so nothing a user wrote is pruned.
//!
//! Where a rule of [`crate::validate`] is a plain pattern, the schema
//! carries it too ([`with_patterns`]), so the API server refuses what
//! embedded mode refuses even for objects that never pass through the CLI
//! (`kubectl apply`): the handler's `<module>.<function>` shape (empty
//! allowed: a custom image needs none), the checksum, the timeout, the
//! content type and the HTTP trigger's gateway. Rules that need the
//! runtime catalogue or look into the embedded objects stay with the CLI
//! and the controller.
//!
//! Output is deterministic (keys sorted, kinds in a fixed order) and
//! checked byte for byte against `tests/golden/crds.yaml`.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value, json};

use crate::types::{
    CronJobTriggerSpec, FunctionSpec, FunctionStatus, GROUP, HttpTriggerSpec, Kind,
    KinesisTriggerSpec, TopicTriggerSpec, TriggerStatus, VERSION,
};

/// Schema of an embedded Kubernetes object kept verbatim
/// (`spec.deployment`, `spec.service`, `spec.horizontalPodAutoscaler`).
pub(crate) fn embedded_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Schema of an arbitrary JSON value (`spec.payload` of a CronJobTrigger).
pub(crate) fn any_value(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A structural OpenAPI v3 schema for `T`.
fn schema_of<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(object) = schema.as_object_mut() {
        // The type's own doc comment and name describe Rust, not the API.
        object.remove("title");
        object.remove("description");
    }
    structural(schema)
}

/// Keep only the keywords Kubernetes structural schemas understand, drop
/// defaults, and recurse into subschemas.
fn structural(schema: Value) -> Value {
    const KEPT: [&str; 12] = [
        "type",
        "format",
        "description",
        "enum",
        "nullable",
        "minimum",
        "maximum",
        "items",
        "properties",
        "additionalProperties",
        "required",
        "x-kubernetes-preserve-unknown-fields",
    ];
    let Value::Object(object) = schema else {
        return schema;
    };
    let mut out = Map::new();
    for (key, value) in object {
        if !KEPT.contains(&key.as_str()) {
            continue;
        }
        let value = match key.as_str() {
            "properties" => match value {
                Value::Object(props) => Value::Object(
                    props
                        .into_iter()
                        .map(|(name, sub)| (name, structural(sub)))
                        .collect(),
                ),
                other => other,
            },
            "items" | "additionalProperties" => structural(value),
            _ => value,
        };
        out.insert(key, value);
    }
    Value::Object(out)
}

/// Recursively sort object keys so output does not depend on whether
/// `serde_json` preserves insertion order in this build.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(object) => {
            let mut entries: Vec<(String, Value)> = object.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The patterns of [`crate::validate`] the API server can check itself,
/// per `spec` field. Each accepts the empty string, which the validators
/// accept too (an unset field).
pub const FUNCTION_PATTERNS: [(&str, &str); 4] = [
    // check_handler: module [A-Za-z0-9_-]+, one dot, function [A-Za-z0-9_$]+.
    ("handler", r"^([A-Za-z0-9_-]+\.[A-Za-z0-9_$]+)?$"),
    // validate_checksum.
    ("checksum", r"^(sha256:[0-9a-fA-F]{64})?$"),
    // check_timeout: a positive whole number of seconds.
    ("timeout", r"^(0*[1-9][0-9]*)?$"),
    // ContentType::from_str: a base, at most one archive, at most one +deps.
    (
        "function-content-type",
        r"^((text|base64|url)(\+(zip|compressedtar))?(\+deps)?|(text|base64|url)\+deps\+(zip|compressedtar))?$",
    ),
];

/// Gateways an HTTPTrigger may name (`""` means nginx).
pub const GATEWAYS: [&str; 4] = ["", "nginx", "traefik", "kong"];

/// Add `pattern`s to the string properties of a `spec` schema.
fn with_patterns(mut spec: Value, patterns: &[(&str, &str)]) -> Value {
    for (field, pattern) in patterns {
        if let Some(p) = spec
            .pointer_mut(&format!("/properties/{field}"))
            .and_then(Value::as_object_mut)
        {
            p.insert("pattern".to_string(), json!(pattern));
        }
    }
    spec
}

fn column(name: &str, type_: &str, json_path: &str) -> Value {
    json!({"name": name, "type": type_, "jsonPath": json_path})
}

fn age() -> Value {
    column("Age", "date", ".metadata.creationTimestamp")
}

fn crd(kind: Kind, spec: Value, status: Value, columns: Vec<Value>) -> Value {
    let plural = kind.plural();
    let singular = kind.name().to_ascii_lowercase();
    sorted(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{GROUP}")},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.name(),
                "listKind": format!("{}List", kind.name()),
                "plural": plural,
                "singular": singular,
            },
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec,
                        "status": status,
                    },
                }},
            }],
        },
    }))
}

/// The six Kubeless CRDs: Function, HTTPTrigger, CronJobTrigger,
/// KafkaTrigger, NATSTrigger, KinesisTrigger (in that order).
pub fn crds() -> Vec<Value> {
    let trigger_status = schema_of::<TriggerStatus>;
    let state = || column("State", "string", ".status.state");
    vec![
        crd(
            Kind::Function,
            with_patterns(schema_of::<FunctionSpec>(), &FUNCTION_PATTERNS),
            schema_of::<FunctionStatus>(),
            vec![
                column("Runtime", "string", ".spec.runtime"),
                column("Handler", "string", ".spec.handler"),
                column("Phase", "string", ".status.phase"),
                column("Ready", "integer", ".status.readyReplicas"),
                age(),
            ],
        ),
        crd(
            Kind::HTTPTrigger,
            {
                let mut spec = schema_of::<HttpTriggerSpec>();
                if let Some(g) = spec
                    .pointer_mut("/properties/gateway")
                    .and_then(Value::as_object_mut)
                {
                    g.insert("enum".to_string(), json!(GATEWAYS));
                }
                spec
            },
            trigger_status(),
            vec![
                column("Function", "string", ".spec.function-name"),
                column("Host", "string", ".spec.host-name"),
                column("Path", "string", ".spec.path"),
                column("Gateway", "string", ".spec.gateway"),
                age(),
            ],
        ),
        crd(
            Kind::CronJobTrigger,
            schema_of::<CronJobTriggerSpec>(),
            trigger_status(),
            vec![
                column("Function", "string", ".spec.function-name"),
                column("Schedule", "string", ".spec.schedule"),
                state(),
                age(),
            ],
        ),
        crd(
            Kind::KafkaTrigger,
            schema_of::<TopicTriggerSpec>(),
            trigger_status(),
            vec![column("Topic", "string", ".spec.topic"), state(), age()],
        ),
        crd(
            Kind::NATSTrigger,
            schema_of::<TopicTriggerSpec>(),
            trigger_status(),
            vec![column("Topic", "string", ".spec.topic"), state(), age()],
        ),
        crd(
            Kind::KinesisTrigger,
            schema_of::<KinesisTriggerSpec>(),
            trigger_status(),
            vec![
                column("Function", "string", ".spec.function-name"),
                column("Stream", "string", ".spec.stream"),
                column("Shard", "string", ".spec.shard"),
                state(),
                age(),
            ],
        ),
    ]
}

/// [`crds`] as one multi-document YAML stream (`---` before each
/// document), ready for `kubectl apply -f -`.
pub fn crds_yaml() -> String {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        // Serialising a serde_json::Value to YAML cannot fail: keys are
        // strings and there are no non-finite numbers.
        match serde_yaml::to_string(&crd) {
            Ok(doc) => out.push_str(&doc),
            Err(e) => out.push_str(&format!("# unable to render CRD: {e}\n")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_kind(kind: &str) -> Value {
        crds()
            .into_iter()
            .find(|c| c["spec"]["names"]["kind"] == kind)
            .unwrap()
    }

    fn spec_props(kind: &str) -> Map<String, Value> {
        by_kind(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn names_and_versions() {
        let expected = [
            ("Function", "functions", "function"),
            ("HTTPTrigger", "httptriggers", "httptrigger"),
            ("CronJobTrigger", "cronjobtriggers", "cronjobtrigger"),
            ("KafkaTrigger", "kafkatriggers", "kafkatrigger"),
            ("NATSTrigger", "natstriggers", "natstrigger"),
            ("KinesisTrigger", "kinesistriggers", "kinesistrigger"),
        ];
        let all = crds();
        assert_eq!(all.len(), 6);
        for (crd, (kind, plural, singular)) in all.iter().zip(expected) {
            assert_eq!(crd["metadata"]["name"], format!("{plural}.kubeless.io"));
            let names = &crd["spec"]["names"];
            assert_eq!(names["kind"], kind);
            assert_eq!(names["plural"], plural);
            assert_eq!(names["singular"], singular);
            assert_eq!(crd["spec"]["scope"], "Namespaced");
            let version = &crd["spec"]["versions"][0];
            assert_eq!(version["name"], "v1beta1");
            assert_eq!(version["served"], true);
            assert_eq!(version["storage"], true);
            assert_eq!(version["subresources"], json!({"status": {}}));
        }
    }

    #[test]
    fn function_schema_follows_the_types() {
        let props = spec_props("Function");
        let keys: Vec<&str> = props.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            vec![
                "checksum",
                "deployment",
                "deps",
                "function",
                "function-content-type",
                "handler",
                "horizontalPodAutoscaler",
                "runtime",
                "service",
                "timeout"
            ]
        );
        for embedded in ["deployment", "service", "horizontalPodAutoscaler"] {
            assert_eq!(props[embedded]["type"], "object");
            assert_eq!(
                props[embedded]["x-kubernetes-preserve-unknown-fields"],
                true
            );
        }
        assert_eq!(props["handler"]["type"], "string");
    }

    #[test]
    fn trigger_schemas_keep_json_names() {
        let http = spec_props("HTTPTrigger");
        for key in [
            "function-name",
            "host-name",
            "tls",
            "tls-secret",
            "path",
            "basic-auth-secret",
            "gateway",
            "cors-enable",
        ] {
            assert!(http.contains_key(key), "{key}");
        }
        assert_eq!(http["tls"]["type"], "boolean");
        let cron = spec_props("CronJobTrigger");
        assert_eq!(
            cron["payload"],
            json!({"x-kubernetes-preserve-unknown-fields": true})
        );
        let kafka = spec_props("KafkaTrigger");
        let selector = &kafka["functionSelector"];
        assert_eq!(selector["type"], "object");
        assert_eq!(
            selector["properties"]["matchLabels"]["additionalProperties"]["type"],
            "string"
        );
        assert!(spec_props("KinesisTrigger").contains_key("aws-region"));
    }

    /// Every schema node is structural: no refs, no JSON-Schema-only
    /// keywords, no defaults, and a type unless it preserves unknown fields.
    #[test]
    fn schemas_are_structural() {
        fn walk(node: &Value, path: &str) {
            let obj = node.as_object().unwrap();
            for key in obj.keys() {
                assert!(
                    ![
                        "$ref", "$defs", "default", "anyOf", "oneOf", "allOf", "$schema", "title"
                    ]
                    .contains(&key.as_str()),
                    "{path} has {key}"
                );
            }
            assert!(
                obj.contains_key("type")
                    || obj.contains_key("x-kubernetes-preserve-unknown-fields"),
                "{path} has no type"
            );
            if let Some(props) = obj.get("properties").and_then(Value::as_object) {
                for (name, sub) in props {
                    walk(sub, &format!("{path}.{name}"));
                }
            }
            for key in ["items", "additionalProperties"] {
                if let Some(sub) = obj.get(key).filter(|v| v.is_object()) {
                    walk(sub, &format!("{path}.{key}"));
                }
            }
        }
        for crd in crds() {
            walk(
                &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
                "root",
            );
        }
    }

    /// What the schema patterns must accept and refuse: the validators'
    /// verdict on each sample of `tests/fixtures/function-field-samples.json`
    /// (k8s_controller.rs sends the same samples to a real API server).
    #[test]
    fn patterns_follow_the_validators() {
        use crate::validate::validate_function;
        let samples: Vec<(String, String, bool)> = serde_json::from_str(include_str!(
            "../tests/fixtures/function-field-samples.json"
        ))
        .unwrap();
        let props = spec_props("Function");
        for (field, value, ok) in &samples {
            let field = field.as_str();
            assert!(props[field]["pattern"].is_string(), "{field} has a pattern");
            let mut f: crate::Function = serde_json::from_value(json!({
                "metadata": {"name": "f", "namespace": "default"},
                "spec": {"handler": "hello.handler", "runtime": "python3.8",
                         "deployment": {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}}
            }))
            .unwrap();
            let mut spec = serde_json::to_value(&f.spec).unwrap();
            spec[field] = json!(value);
            f.spec = serde_json::from_value(spec).unwrap();
            let verdict = validate_function(&f, &[]);
            let flagged = verdict
                .as_ref()
                .err()
                .is_some_and(|e| e.iter().any(|e| e.field == format!("spec.{field}")));
            assert_eq!(!flagged, *ok, "{field} = {value:?}: {verdict:?}");
        }
        let http = spec_props("HTTPTrigger");
        assert_eq!(
            http["gateway"]["enum"],
            json!(["", "nginx", "traefik", "kong"])
        );
    }

    #[test]
    fn golden_yaml() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/crds.yaml");
        let actual = crds_yaml();
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path)
            .expect("golden file missing: run UPDATE_GOLDEN=1 cargo test -p kubeless-api");
        assert!(
            actual == expected,
            "CRDs differ from {}; if the change is intended, regenerate with UPDATE_GOLDEN=1 cargo test -p kubeless-api",
            path.display()
        );
    }

    #[test]
    fn yaml_round_trips() {
        let docs: Vec<Value> = crds_yaml()
            .split("---\n")
            .filter(|d| !d.is_empty())
            .map(|d| serde_yaml::from_str(d).unwrap())
            .collect();
        assert_eq!(docs, crds());
    }
}
