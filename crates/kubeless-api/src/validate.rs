//! Admission checks for Kubeless objects, run before anything is stored.
//!
//! Every validator collects *all* problems of an object into
//! [`ValidationErrors`], each tied to a field path such as
//! `spec.service.ports[0].port` or `metadata.labels["a b"]`, so a user can
//! fix a manifest in one go. The rules follow what Kubernetes and the
//! Kubeless controllers would eventually reject (names, labels, ports,
//! quantities, env names) plus the Kubeless contract itself (handler shape,
//! known runtimes, content types, checksums, trigger fields).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::content::ContentType;
use crate::cron::Schedule;
use crate::runtime::parse_runtime_id;
use crate::secret::Secret;
use crate::types::{
    CronJobTrigger, Function, HttpTrigger, KinesisTrigger, LabelSelector, Object, ObjectMeta,
    TopicTriggerSpec, TriggerStatus,
};

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.handler`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in one object. Displayed as
/// `<Kind> "<name>" is invalid: <field>: <message>; <field>: <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors {
    /// The object's kind (`Function`, `HTTPTrigger`, ...).
    pub kind: String,
    /// The object's `metadata.name` (possibly empty or invalid).
    pub name: String,
    /// Never empty.
    pub errors: Vec<FieldError>,
}

impl ValidationErrors {
    /// The individual field errors.
    pub fn iter(&self) -> std::slice::Iter<'_, FieldError> {
        self.errors.iter()
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} is invalid: ", self.kind, self.name)?;
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Collects field errors for one object.
struct Collector {
    errors: Vec<FieldError>,
}

impl Collector {
    fn new() -> Self {
        Collector { errors: Vec::new() }
    }

    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn check(&mut self, field: impl Into<String>, result: Result<(), String>) {
        if let Err(message) = result {
            self.add(field, message);
        }
    }

    fn finish(self, kind: &str, name: &str) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors {
                kind: kind.to_string(),
                name: name.to_string(),
                errors: self.errors,
            })
        }
    }
}

fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// A DNS-1123 label: lowercase letters, digits and `-`, starting and
/// ending with a letter or digit, at most 63 characters. Used for object
/// names (they become Service, Deployment and ConfigMap names) and
/// namespaces.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if name.len() > 63 {
        return Err(format!(
            "must be no more than 63 characters, got {}",
            name.len()
        ));
    }
    let starts_ends_ok = name.starts_with(is_alnum_lower) && name.ends_with(is_alnum_lower);
    if !starts_ends_ok || !name.chars().all(|c| is_alnum_lower(c) || c == '-') {
        return Err(format!(
            "{name:?} must consist of lower case letters, digits or '-', and must start and end with a letter or digit (e.g. \"my-name\" or \"123-abc\")"
        ));
    }
    Ok(())
}

/// A DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253
/// characters. Used for Secret names, label key prefixes and host names.
pub fn validate_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_string());
    }
    if name.len() > 253 {
        return Err(format!(
            "must be no more than 253 characters, got {}",
            name.len()
        ));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.starts_with(is_alnum_lower)
            && label.ends_with(is_alnum_lower)
            && label.chars().all(|c| is_alnum_lower(c) || c == '-')
    };
    if !name.split('.').all(label_ok) {
        return Err(format!(
            "{name:?} must consist of lower case letters, digits, '-' or '.', and each dot-separated part must start and end with a letter or digit (e.g. \"example.com\")"
        ));
    }
    Ok(())
}

/// The name part of a label key, and label values: at most 63 characters,
/// letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit.
fn qualified_name_part(s: &str) -> bool {
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A Kubernetes label key: `[prefix/]name`, prefix a DNS-1123 subdomain.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && let Err(message) = validate_subdomain(prefix)
    {
        return Err(format!("prefix {message}"));
    }
    if !qualified_name_part(name) {
        return Err(format!(
            "label key {key:?} must be a name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, with an optional DNS subdomain prefix and '/' (e.g. \"example.com/my-key\")"
        ));
    }
    Ok(())
}

/// A Kubernetes label value: empty, or at most 63 letters, digits, `-`,
/// `_`, `.`, starting and ending with a letter or digit.
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || qualified_name_part(value) {
        Ok(())
    } else {
        Err(format!(
            "label value {value:?} must be empty or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

/// An environment variable name: letters, digits, `_`, `-`, `.`, not
/// starting with a digit (the Kubernetes rule).
pub fn validate_env_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid environment variable name: use letters, digits, '_', '-' or '.', not starting with a digit"
        ))
    }
}

/// A Kubernetes resource quantity (`128Mi`, `0.5`, `100m`, `1e3`, `2G`),
/// which must not be negative.
pub fn validate_quantity(q: &str) -> Result<(), String> {
    let invalid = || {
        format!(
            "{q:?} is not a valid quantity: expected a number with an optional suffix such as 100m, 0.5, 128Mi or 1G"
        )
    };
    let (negative, rest) = match q.as_bytes().first() {
        Some(b'-') => (true, &q[1..]),
        Some(b'+') => (false, &q[1..]),
        _ => (false, q),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    let number_ok = match number.split_once('.') {
        None => !number.is_empty(),
        Some((int, frac)) => (!int.is_empty() || !frac.is_empty()) && !frac.contains('.'),
    };
    let suffix_ok = match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T"
        | "P" | "E" => true,
        _ => match suffix.strip_prefix(['e', 'E']) {
            Some(exp) => {
                let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
            }
            None => false,
        },
    };
    if !number_ok || !suffix_ok {
        return Err(invalid());
    }
    let zero = number.chars().all(|c| c == '0' || c == '.');
    if negative && !zero {
        return Err(format!("{q:?} must not be negative"));
    }
    Ok(())
}

fn check_meta(c: &mut Collector, meta: &ObjectMeta, name_rule: fn(&str) -> Result<(), String>) {
    c.check("metadata.name", name_rule(&meta.name));
    if !meta.namespace.is_empty() {
        c.check("metadata.namespace", validate_name(&meta.namespace));
    }
    check_labels(c, "metadata.labels", &meta.labels);
}

fn check_labels(c: &mut Collector, path: &str, labels: &BTreeMap<String, String>) {
    for (key, value) in labels {
        let field = format!("{path}[{key:?}]");
        c.check(&field, validate_label_key(key));
        c.check(&field, validate_label_value(value));
    }
}

/// Path of the runtime container inside `spec.deployment`.
const CONTAINER0: &str = "spec.deployment.spec.template.spec.containers[0]";

fn container0(function: &Function) -> Option<&Value> {
    function
        .spec
        .deployment
        .pointer("/spec/template/spec/containers/0")
}

/// The custom image of a Function (`--runtime-image`), if any.
pub fn custom_image(function: &Function) -> Option<&str> {
    container0(function)?
        .get("image")?
        .as_str()
        .filter(|image| !image.is_empty())
}

fn check_handler(c: &mut Collector, handler: &str, required: bool) {
    if handler.is_empty() {
        if required {
            c.add(
                "spec.handler",
                "required: set it to <module>.<function>, e.g. \"hello.handler\"",
            );
        }
        return;
    }
    let module_ok = |m: &str| {
        !m.is_empty()
            && m.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-'))
    };
    let function_ok = |f: &str| {
        !f.is_empty()
            && f.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '$'))
    };
    let valid = match handler.split_once('.') {
        Some((module, function)) => module_ok(module) && function_ok(function),
        None => false,
    };
    if !valid {
        c.add(
            "spec.handler",
            format!(
                "{handler:?} must be exactly <module>.<function> with one dot, e.g. \"hello.handler\" (module: letters, digits, '_' or '-'; function: letters, digits or '_')"
            ),
        );
    }
}

fn check_runtime(c: &mut Collector, runtime: &str, known: &[String], custom_image: bool) {
    if custom_image && runtime.is_empty() {
        return;
    }
    if known.is_empty() {
        // No runtime catalogue to check against (Kubeless: "Runtime check
        // is disabled"); still require a well-formed runtime string.
        if custom_image || parse_runtime_id(runtime).is_some() {
            return;
        }
        let message = if runtime.is_empty() {
            "required unless a custom image is set in spec.deployment.spec.template.spec.containers[0].image".to_string()
        } else {
            format!("{runtime:?} is not a runtime ID followed by a version, e.g. \"python3.8\"")
        };
        c.add("spec.runtime", message);
        return;
    }
    if custom_image || known.iter().any(|k| k == runtime) {
        return;
    }
    c.add(
        "spec.runtime",
        format!(
            "unknown runtime {runtime:?}; supported runtimes are: {}",
            known.join(", ")
        ),
    );
}

fn check_timeout(c: &mut Collector, timeout: &str) {
    if timeout.is_empty() {
        return;
    }
    match timeout.parse::<u64>() {
        Ok(seconds) if seconds > 0 => {}
        _ => c.add(
            "spec.timeout",
            format!("{timeout:?} must be a positive whole number of seconds (default 180)"),
        ),
    }
}

/// Check a `spec.checksum`: empty, or `sha256:` followed by 64 hex digits.
pub fn validate_checksum(checksum: &str) -> Result<(), String> {
    if checksum.is_empty() {
        return Ok(());
    }
    match checksum.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) => Ok(()),
        _ => Err(format!(
            "{checksum:?} must be empty or \"sha256:\" followed by 64 hex digits"
        )),
    }
}

fn port_number(value: &Value) -> Option<i64> {
    value.as_i64()
}

fn check_port(c: &mut Collector, field: String, value: &Value, allow_name: bool) {
    match value {
        Value::String(name) if allow_name => {
            if name.is_empty() {
                c.add(field, "a named port must not be empty");
            }
        }
        _ => match port_number(value) {
            Some(1..=65535) => {}
            _ => c.add(
                field,
                format!("{value} must be a port number between 1 and 65535"),
            ),
        },
    }
}

fn check_service(c: &mut Collector, service: &Value) {
    match service {
        Value::Null => return,
        Value::Object(_) => {}
        _ => {
            c.add(
                "spec.service",
                "must be an object (a Kubernetes ServiceSpec)",
            );
            return;
        }
    }
    let Some(ports) = service.get("ports") else {
        return;
    };
    let Some(ports) = ports.as_array() else {
        if !ports.is_null() {
            c.add("spec.service.ports", "must be a list");
        }
        return;
    };
    for (i, port) in ports.iter().enumerate() {
        let base = format!("spec.service.ports[{i}]");
        match port.get("port") {
            Some(value) => check_port(c, format!("{base}.port"), value, false),
            None => c.add(format!("{base}.port"), "required"),
        }
        if let Some(target) = port.get("targetPort") {
            // 0 means "same as port" in a Kubernetes ServiceSpec.
            if target.as_i64() != Some(0) {
                check_port(c, format!("{base}.targetPort"), target, true);
            }
        }
    }
}

fn check_container0(c: &mut Collector, function: &Function) {
    let Some(container) = container0(function) else {
        return;
    };
    if let Some(env) = container.get("env").and_then(Value::as_array) {
        for (i, var) in env.iter().enumerate() {
            let name = var.get("name").and_then(Value::as_str).unwrap_or_default();
            c.check(
                format!("{CONTAINER0}.env[{i}].name"),
                validate_env_name(name),
            );
        }
    }
    let Some(resources) = container.get("resources") else {
        return;
    };
    for section in ["limits", "requests"] {
        let Some(map) = resources.get(section).and_then(Value::as_object) else {
            continue;
        };
        for (resource, value) in map {
            let field = format!("{CONTAINER0}.resources.{section}.{resource}");
            match value {
                Value::String(q) => c.check(field, validate_quantity(q)),
                Value::Number(n) if n.as_f64().is_some_and(|v| v >= 0.0) => {}
                _ => c.add(field, format!("{value} is not a valid quantity")),
            }
        }
    }
}

/// Validate a Function against the Kubeless contract.
///
/// `known_runtimes` are the runtime strings of the catalogue (`python3.8`,
/// ...). When it is empty the membership check is skipped (as the Kubeless
/// CLI does when it cannot read the catalogue) and only the shape of the
/// runtime string is checked. A Function with a custom image
/// (`spec.deployment.spec.template.spec.containers[0].image`) needs neither
/// handler nor a known runtime.
pub fn validate_function(
    function: &Function,
    known_runtimes: &[String],
) -> Result<(), ValidationErrors> {
    let mut c = Collector::new();
    let spec = &function.spec;
    let custom = custom_image(function).is_some();
    check_meta(&mut c, &function.metadata, validate_name);
    check_handler(&mut c, &spec.handler, !custom);
    check_runtime(&mut c, &spec.runtime, known_runtimes, custom);
    check_timeout(&mut c, &spec.timeout);
    if let Err(e) = spec.function_content_type.parse::<ContentType>() {
        c.add("spec.function-content-type", e.to_string());
    }
    c.check("spec.checksum", validate_checksum(&spec.checksum));
    for (field, value) in [
        ("spec.deployment", &spec.deployment),
        (
            "spec.horizontalPodAutoscaler",
            &spec.horizontal_pod_autoscaler,
        ),
    ] {
        if !(value.is_null() || value.is_object()) {
            c.add(field, "must be an object");
        }
    }
    check_service(&mut c, &spec.service);
    check_container0(&mut c, function);
    c.finish("Function", &function.metadata.name)
}

fn check_function_name(c: &mut Collector, name: &str) {
    if name.is_empty() {
        c.add("spec.function-name", "required");
    } else {
        c.check("spec.function-name", validate_name(name));
    }
}

/// Validate a CronJobTrigger: a function name and a schedule that parses
/// (5-field cron, `@daily`-style descriptor or `@every <duration>`).
pub fn validate_cronjob_trigger(trigger: &CronJobTrigger) -> Result<(), ValidationErrors> {
    let mut c = Collector::new();
    check_meta(&mut c, &trigger.metadata, validate_name);
    check_function_name(&mut c, &trigger.spec.function_name);
    if trigger.spec.schedule.is_empty() {
        c.add("spec.schedule", "required, e.g. \"*/5 * * * *\"");
    } else if let Err(e) = Schedule::parse(&trigger.spec.schedule) {
        c.add("spec.schedule", e.to_string());
    }
    c.finish("CronJobTrigger", &trigger.metadata.name)
}

/// Validate an HTTPTrigger: function name, gateway, TLS settings, host.
pub fn validate_http_trigger(trigger: &HttpTrigger) -> Result<(), ValidationErrors> {
    let mut c = Collector::new();
    let spec = &trigger.spec;
    check_meta(&mut c, &trigger.metadata, validate_name);
    check_function_name(&mut c, &spec.function_name);
    match spec.gateway.as_str() {
        "" | "nginx" | "traefik" => {}
        "kong" => {
            if !spec.basic_auth_secret.is_empty() {
                c.add(
                    "spec.basic-auth-secret",
                    "Setting basic authentication with Kong is not yet supported",
                );
            }
        }
        other => c.add(
            "spec.gateway",
            format!("unknown gateway {other:?}; supported gateways are: nginx, traefik, kong"),
        ),
    }
    if spec.tls && !spec.tls_secret.is_empty() {
        c.add(
            "spec.tls-secret",
            "cannot be combined with spec.tls: use either ACME (tls: true) or an existing certificate secret",
        );
    }
    if !spec.tls_secret.is_empty() {
        c.check("spec.tls-secret", validate_subdomain(&spec.tls_secret));
    }
    if !spec.basic_auth_secret.is_empty() {
        c.check(
            "spec.basic-auth-secret",
            validate_subdomain(&spec.basic_auth_secret),
        );
    }
    if !spec.host_name.is_empty() {
        let host = spec.host_name.strip_prefix("*.").unwrap_or(&spec.host_name);
        c.check("spec.host-name", validate_subdomain(host));
    }
    if spec
        .path
        .chars()
        .any(|ch| ch.is_whitespace() || ch == '?' || ch == '#')
    {
        c.add(
            "spec.path",
            format!(
                "{:?} must be a URL path without spaces, query or fragment",
                spec.path
            ),
        );
    }
    c.finish("HTTPTrigger", &trigger.metadata.name)
}

fn check_selector(c: &mut Collector, path: &str, selector: &LabelSelector) {
    if selector.match_labels.is_empty() && selector.match_expressions.is_empty() {
        c.add(
            path,
            "must select functions by at least one label (an empty selector matches nothing)",
        );
    }
    check_labels(c, &format!("{path}.matchLabels"), &selector.match_labels);
    for (i, expr) in selector.match_expressions.iter().enumerate() {
        let base = format!("{path}.matchExpressions[{i}]");
        c.check(format!("{base}.key"), validate_label_key(&expr.key));
        match expr.operator.as_str() {
            "In" | "NotIn" => {
                if expr.values.is_empty() {
                    c.add(
                        format!("{base}.values"),
                        format!("must not be empty for operator {}", expr.operator),
                    );
                }
            }
            "Exists" | "DoesNotExist" => {
                if !expr.values.is_empty() {
                    c.add(
                        format!("{base}.values"),
                        format!("must be empty for operator {}", expr.operator),
                    );
                }
            }
            other => c.add(
                format!("{base}.operator"),
                format!(
                    "unknown operator {other:?}; valid operators are: In, NotIn, Exists, DoesNotExist"
                ),
            ),
        }
        for (j, value) in expr.values.iter().enumerate() {
            c.check(format!("{base}.values[{j}]"), validate_label_value(value));
        }
    }
}

/// Validate a KafkaTrigger or NATSTrigger (they share one spec): a topic
/// without whitespace and a non-empty, well-formed function selector.
pub fn validate_topic_trigger(
    trigger: &Object<TopicTriggerSpec, TriggerStatus>,
) -> Result<(), ValidationErrors> {
    let mut c = Collector::new();
    check_meta(&mut c, &trigger.metadata, validate_name);
    let topic = &trigger.spec.topic;
    if topic.is_empty() {
        c.add("spec.topic", "required");
    } else if topic.chars().any(char::is_whitespace) {
        c.add(
            "spec.topic",
            format!("{topic:?} must not contain whitespace"),
        );
    }
    check_selector(
        &mut c,
        "spec.functionSelector",
        &trigger.spec.function_selector,
    );
    let kind = if trigger.kind.is_empty() {
        "Trigger"
    } else {
        trigger.kind.as_str()
    };
    c.finish(kind, &trigger.metadata.name)
}

/// Validate a KinesisTrigger: every field but `endpoint` is required.
pub fn validate_kinesis_trigger(trigger: &KinesisTrigger) -> Result<(), ValidationErrors> {
    let mut c = Collector::new();
    let spec = &trigger.spec;
    check_meta(&mut c, &trigger.metadata, validate_name);
    check_function_name(&mut c, &spec.function_name);
    for (field, value) in [
        ("spec.aws-region", &spec.aws_region),
        ("spec.stream", &spec.stream),
        ("spec.shard", &spec.shard),
    ] {
        if value.is_empty() {
            c.add(field, "required");
        }
    }
    if spec.secret.is_empty() {
        c.add(
            "spec.secret",
            "required: name of a Secret with aws_access_key_id and aws_secret_access_key",
        );
    } else {
        c.check("spec.secret", validate_subdomain(&spec.secret));
    }
    c.finish("KinesisTrigger", &trigger.metadata.name)
}

fn validate_secret_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{key:?} must consist of letters, digits, '-', '_' or '.' (at most 253 characters)"
        ))
    }
}

/// Validate a Secret: DNS-subdomain name, key syntax, base64 `data`.
pub fn validate_secret(secret: &Secret) -> Result<(), ValidationErrors> {
    use base64::Engine as _;
    let mut c = Collector::new();
    check_meta(&mut c, &secret.metadata, validate_subdomain);
    for (key, value) in &secret.data {
        let field = format!("data[{key:?}]");
        c.check(&field, validate_secret_key(key));
        if base64::engine::general_purpose::STANDARD
            .decode(value)
            .is_err()
        {
            c.add(&field, "value must be base64-encoded");
        }
    }
    for key in secret.string_data.keys() {
        c.check(format!("stringData[{key:?}]"), validate_secret_key(key));
    }
    c.finish("Secret", &secret.metadata.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{FunctionSpec, HttpTriggerSpec, LabelSelectorRequirement};
    use serde_json::json;

    fn runtimes() -> Vec<String> {
        vec!["python3.8".to_string(), "nodejs14".to_string()]
    }

    fn function() -> Function {
        Function {
            api_version: crate::types::API_VERSION.into(),
            kind: "Function".into(),
            metadata: ObjectMeta {
                name: "get-python".into(),
                namespace: "default".into(),
                labels: [("created-by", "kubeless"), ("function", "get-python")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..ObjectMeta::default()
            },
            spec: FunctionSpec {
                handler: "helloget.foo".into(),
                function: "def foo(event, context):\n  return 'hello world'\n".into(),
                function_content_type: "text".into(),
                checksum: crate::content::sha256_checksum(b"x"),
                runtime: "python3.8".into(),
                timeout: "180".into(),
                deps: String::new(),
                deployment: json!({"spec": {"template": {"spec": {"containers": [{
                    "imagePullPolicy": "Always", "name": "", "resources": {},
                    "env": [{"name": "FOO", "value": "bar"}]
                }]}}}}),
                service: json!({"ports": [{"name": "http-function-port", "port": 8080,
                    "protocol": "TCP", "targetPort": 8080}], "type": "ClusterIP"}),
                horizontal_pod_autoscaler: json!({}),
            },
            status: None,
        }
    }

    fn fields(result: Result<(), ValidationErrors>) -> Vec<String> {
        result
            .unwrap_err()
            .iter()
            .map(|e| e.field.clone())
            .collect()
    }

    #[test]
    fn valid_function_passes() {
        validate_function(&function(), &runtimes()).unwrap();
        let mut f = function();
        f.spec.timeout = String::new();
        f.spec.checksum = String::new();
        f.spec.function_content_type = String::new();
        f.spec.service = Value::Null;
        f.spec.deployment = Value::Null;
        validate_function(&f, &runtimes()).unwrap();
    }

    #[test]
    fn names() {
        for ok in ["a", "get-python", "123-abc", &"a".repeat(63)] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        validate_subdomain("example.com").unwrap();
        assert!(validate_subdomain("example..com").is_err());
    }

    #[test]
    fn reports_every_problem() {
        let mut f = function();
        f.metadata.name = "Bad_Name".into();
        f.metadata.namespace = "Default".into();
        f.metadata.labels.insert("a b".into(), "ok".into());
        f.metadata.labels.insert("k".into(), "bad value!".into());
        f.spec.handler = "nodot".into();
        f.spec.runtime = "cobol1".into();
        f.spec.timeout = "3m".into();
        f.spec.function_content_type = "zip".into();
        f.spec.checksum = "sha256:xyz".into();
        f.spec.service = json!({"ports": [{"port": 0, "targetPort": 70000}, {"port": 80, "targetPort": "http"}]});
        f.spec.deployment = json!({"spec": {"template": {"spec": {"containers": [{
            "env": [{"name": "OK"}, {"name": "1BAD"}],
            "resources": {"limits": {"memory": "128Mi", "cpu": "lots"}, "requests": {"memory": "-1Gi"}}
        }]}}}});
        let err = validate_function(&f, &runtimes()).unwrap_err();
        let got: Vec<&str> = err.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            got,
            vec![
                "metadata.name",
                "metadata.namespace",
                "metadata.labels[\"a b\"]",
                "metadata.labels[\"k\"]",
                "spec.handler",
                "spec.runtime",
                "spec.timeout",
                "spec.function-content-type",
                "spec.checksum",
                "spec.service.ports[0].port",
                "spec.service.ports[0].targetPort",
                "spec.deployment.spec.template.spec.containers[0].env[1].name",
                "spec.deployment.spec.template.spec.containers[0].resources.limits.cpu",
                "spec.deployment.spec.template.spec.containers[0].resources.requests.memory",
            ]
        );
        let text = err.to_string();
        assert!(
            text.starts_with("Function \"Bad_Name\" is invalid: metadata.name: "),
            "{text}"
        );
        assert!(
            text.contains(
                "; spec.runtime: unknown runtime \"cobol1\"; supported runtimes are: python3.8, nodejs14"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "spec.function-content-type: Unable to prepare function of type zip: Unknown format"
            ),
            "{text}"
        );
    }

    #[test]
    fn handler_shapes() {
        for ok in [
            "hello.foo",
            "handler.Foo",
            "hello-world.handler",
            "my_mod.my_fn",
        ] {
            let mut f = function();
            f.spec.handler = ok.into();
            validate_function(&f, &runtimes()).unwrap();
        }
        for bad in ["", "hello", "a.b.c", ".foo", "hello.", "a/b.foo", "a.b c"] {
            let mut f = function();
            f.spec.handler = bad.into();
            assert_eq!(
                fields(validate_function(&f, &runtimes())),
                vec!["spec.handler"],
                "{bad}"
            );
        }
    }

    #[test]
    fn custom_image_skips_handler_and_runtime() {
        let mut f = function();
        f.spec.handler = String::new();
        f.spec.runtime = String::new();
        f.spec.deployment =
            json!({"spec": {"template": {"spec": {"containers": [{"image": "me/fn:1"}]}}}});
        validate_function(&f, &runtimes()).unwrap();
        f.spec.runtime = "whatever".into();
        validate_function(&f, &runtimes()).unwrap();
    }

    #[test]
    fn runtime_without_catalogue() {
        let mut f = function();
        f.spec.runtime = "ruby2.6".into();
        validate_function(&f, &[]).unwrap();
        f.spec.runtime = "ruby".into();
        assert_eq!(fields(validate_function(&f, &[])), vec!["spec.runtime"]);
        f.spec.runtime = String::new();
        assert_eq!(
            fields(validate_function(&f, &runtimes())),
            vec!["spec.runtime"]
        );
    }

    #[test]
    fn timeouts_and_checksums() {
        for (timeout, ok) in [
            ("", true),
            ("1", true),
            ("180", true),
            ("0", false),
            ("-5", false),
            ("1.5", false),
            ("3m", false),
        ] {
            let mut f = function();
            f.spec.timeout = timeout.into();
            assert_eq!(validate_function(&f, &runtimes()).is_ok(), ok, "{timeout}");
        }
        validate_checksum(&format!("sha256:{}", "aB".repeat(32))).unwrap();
        assert!(validate_checksum("sha256:abc").is_err());
        assert!(validate_checksum(&format!("md5:{}", "a".repeat(64))).is_err());
    }

    #[test]
    fn content_types_from_spec() {
        for ct in [
            "",
            "text",
            "base64",
            "base64+zip",
            "url+compressedtar",
            "url+zip+deps",
        ] {
            let mut f = function();
            f.spec.function_content_type = ct.into();
            validate_function(&f, &runtimes()).unwrap();
        }
    }

    #[test]
    fn quantities() {
        for ok in [
            "128Mi", "0", "0.5", "100m", "1e3", "2G", ".5", "1.", "+1Ki", "1E-2", "-0",
        ] {
            validate_quantity(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "Mi", "1MB", "lots", "1..2", "-1", "1e", "1 Mi", "1mi"] {
            assert!(validate_quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_keys() {
        for ok in ["app", "kubeless.io/function", "a.b_c-d", "A1"] {
            validate_label_key(ok).unwrap();
        }
        for bad in ["", "a b", "-a", "/a", "Example.com/a", &"a".repeat(64)] {
            assert!(validate_label_key(bad).is_err(), "{bad}");
        }
    }

    fn http(spec: HttpTriggerSpec) -> HttpTrigger {
        HttpTrigger {
            metadata: ObjectMeta {
                name: "get-python".into(),
                ..ObjectMeta::default()
            },
            spec,
            ..HttpTrigger::default()
        }
    }

    #[test]
    fn http_triggers() {
        let ok = HttpTriggerSpec {
            function_name: "get-python".into(),
            host_name: "get-python.1.2.3.4.nip.io".into(),
            gateway: "nginx".into(),
            path: "echo".into(),
            ..HttpTriggerSpec::default()
        };
        validate_http_trigger(&http(ok.clone())).unwrap();
        let bad = HttpTriggerSpec {
            function_name: String::new(),
            gateway: "envoy".into(),
            tls: true,
            tls_secret: "cert".into(),
            ..ok.clone()
        };
        let err = validate_http_trigger(&http(bad)).unwrap_err();
        assert_eq!(
            err.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
            vec!["spec.function-name", "spec.gateway", "spec.tls-secret"]
        );
        assert!(
            err.to_string()
                .starts_with("HTTPTrigger \"get-python\" is invalid: ")
        );
        let kong = HttpTriggerSpec {
            gateway: "kong".into(),
            basic_auth_secret: "auth".into(),
            ..ok
        };
        assert_eq!(
            fields(validate_http_trigger(&http(kong))),
            vec!["spec.basic-auth-secret"]
        );
    }

    #[test]
    fn cronjob_triggers() {
        let mut t = CronJobTrigger {
            metadata: ObjectMeta {
                name: "scheduled".into(),
                ..ObjectMeta::default()
            },
            ..CronJobTrigger::default()
        };
        t.spec.function_name = "get-python".into();
        t.spec.schedule = "*/5 * * * *".into();
        validate_cronjob_trigger(&t).unwrap();
        t.spec.schedule = "@every 30s".into();
        validate_cronjob_trigger(&t).unwrap();
        t.spec.schedule = "* * *".into();
        let err = validate_cronjob_trigger(&t).unwrap_err();
        assert_eq!(err.errors[0].field, "spec.schedule");
        assert!(
            err.errors[0]
                .message
                .contains("expected exactly 5 fields, found 3")
        );
    }

    #[test]
    fn topic_triggers() {
        let mut t = Object::<TopicTriggerSpec, TriggerStatus> {
            kind: "KafkaTrigger".into(),
            metadata: ObjectMeta {
                name: "s3".into(),
                ..ObjectMeta::default()
            },
            ..Default::default()
        };
        let err = validate_topic_trigger(&t).unwrap_err();
        assert_eq!(
            err.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
            vec!["spec.topic", "spec.functionSelector"]
        );
        assert!(
            err.to_string()
                .starts_with("KafkaTrigger \"s3\" is invalid")
        );
        t.spec.topic = "s3-python".into();
        t.spec
            .function_selector
            .match_labels
            .insert("topic".into(), "s3-python".into());
        validate_topic_trigger(&t).unwrap();
        t.spec.function_selector.match_expressions = vec![
            LabelSelectorRequirement {
                key: "env".into(),
                operator: "In".into(),
                values: vec![],
            },
            LabelSelectorRequirement {
                key: "env".into(),
                operator: "Exists".into(),
                values: vec!["x".into()],
            },
            LabelSelectorRequirement {
                key: "env".into(),
                operator: "Equals".into(),
                values: vec!["x".into()],
            },
        ];
        assert_eq!(
            fields(validate_topic_trigger(&t)),
            vec![
                "spec.functionSelector.matchExpressions[0].values",
                "spec.functionSelector.matchExpressions[1].values",
                "spec.functionSelector.matchExpressions[2].operator",
            ]
        );
    }

    #[test]
    fn kinesis_triggers() {
        let mut t = KinesisTrigger::default();
        t.metadata.name = "k".into();
        assert_eq!(
            fields(validate_kinesis_trigger(&t)),
            vec![
                "spec.function-name",
                "spec.aws-region",
                "spec.stream",
                "spec.shard",
                "spec.secret"
            ]
        );
    }

    #[test]
    fn secrets() {
        let mut s = Secret {
            metadata: ObjectMeta {
                name: "kubeless-registry-credentials".into(),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        };
        s.data.insert("auth".into(), "Zm9v".into());
        validate_secret(&s).unwrap();
        s.data.insert("bad key".into(), "not base64!".into());
        s.string_data.insert("ok.txt".into(), "x".into());
        let err = validate_secret(&s).unwrap_err();
        assert_eq!(err.errors.len(), 2);
        assert!(err.errors.iter().all(|e| e.field == "data[\"bad key\"]"));
    }
}
