//! `kubeless autoscale create|list|delete` (spec 1.3).
//!
//! The autoscaler lives in the Function's `spec.horizontalPodAutoscaler`
//! (a full update of the Function); the controller turns it into an
//! autoscaling/v2 HorizontalPodAutoscaler. We store the v2 shape directly
//! (`target: {type: Utilization|Value}`, `describedObject`), where Kubeless
//! stored v2beta1, which current clusters no longer serve; the controller
//! still accepts v2beta1 metrics in objects written by old clients.

use anyhow::bail;
use clap::{Args, Subcommand};
use kubeless_api::Kind;
use serde_json::{Value, json};

use super::{Context, namespace, one_name};
use crate::log;
use crate::output::{Table, print_structured};

#[derive(Debug, Subcommand)]
pub enum AutoscaleCommand {
    /// automatically scale function based on monitored metrics
    Create(CreateArgs),
    /// list all autoscales in a namespace
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// delete an autoscale from Kubeless
    Delete(NameArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    names: Vec<String>,
    /// Specify namespace for the autoscale
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// minimum number of replicas
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    min: i32,
    /// maximum number of replicas
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    max: i32,
    /// metric to use for calculating the autoscale. Supported metrics: cpu, qps
    #[arg(long, default_value = "cpu")]
    metric: String,
    /// value of the average of the metric across all replicas. If metric is cpu, value is a number represented as percentage. If metric is qps, value must be in format of Quantity
    #[arg(long, required = true)]
    value: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Specify namespace for the autoscale
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Output format. One of: json|yaml
    #[arg(short = 'o', long)]
    out: Option<String>,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    names: Vec<String>,
    /// Specify namespace for the autoscale
    #[arg(short = 'n', long)]
    namespace: Option<String>,
}

pub fn run(ctx: &Context, cmd: AutoscaleCommand) -> anyhow::Result<()> {
    match cmd {
        AutoscaleCommand::Create(a) => create(ctx, a),
        AutoscaleCommand::List(a) => list(ctx, a),
        AutoscaleCommand::Delete(a) => delete(ctx, a),
    }
}

/// Pure: the autoscaler of `function` (its metadata and labels) from the
/// flags, or Kubeless's message for bad flags.
pub fn autoscaler(
    function: &Value,
    min: i32,
    max: i32,
    metric: &str,
    value: &str,
) -> anyhow::Result<Value> {
    if min <= 0 {
        bail!("min can't be negative or zero");
    }
    if max < min {
        bail!("max must be greater than or equal to min");
    }
    let name = function
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let metric = match metric {
        "cpu" => {
            let Ok(v) = value.parse::<i32>() else {
                bail!("value must be an integer percentage for the cpu metric, got {value:?}");
            };
            json!({"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": v}}})
        }
        "qps" => {
            if kubeless_plan::quantity::parse_bytes(value).is_none() {
                bail!("value must be a quantity for the qps metric, got {value:?}");
            }
            json!({"type": "Object", "object": {
                "metric": {"name": "function_calls"},
                "describedObject": {"apiVersion": "v1", "kind": "Service", "name": name},
                "target": {"type": "Value", "value": value}}})
        }
        _ => bail!("only supported metrics: cpu, qps"),
    };
    let mut metadata = json!({"name": name});
    if let Some(ns) = function.pointer("/metadata/namespace") {
        metadata["namespace"] = ns.clone();
    }
    if let Some(l) = function.pointer("/metadata/labels") {
        metadata["labels"] = l.clone();
    }
    Ok(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": min,
            "maxReplicas": max,
            "metrics": [metric],
        },
    }))
}

fn create(ctx: &Context, a: CreateArgs) -> anyhow::Result<()> {
    let name = one_name(&a.names, "function name")?;
    let ns = namespace(&a.namespace);
    let backend = ctx.backend()?;
    let mut f = backend.get(Kind::Function, &ns, name)?;
    let hpa = autoscaler(&f, a.min, a.max, &a.metric, &a.value)?;
    log::info("Adding autoscaling rule to the function...");
    f["spec"]["horizontalPodAutoscaler"] = hpa;
    backend.replace(Kind::Function, &ns, name, &f)?;
    log::info(format!(
        "Autoscaling rule for {name} submitted for deployment"
    ));
    Ok(())
}

/// Pure: METRIC and VALUE of an autoscaler (autoscaling/v2 or the
/// v2beta1 shape), `None` without metrics.
pub fn metric_cells(hpa: &Value) -> Option<(String, String)> {
    let m = hpa.pointer("/spec/metrics/0")?;
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    Some(match m.get("type").and_then(Value::as_str) {
        Some("Object") => {
            let o = &m["object"];
            let metric = o.pointer("/metric/name").or_else(|| o.get("metricName"));
            let value = o
                .pointer("/target/value")
                .or_else(|| o.pointer("/target/averageValue"))
                .or_else(|| o.get("targetValue"));
            (text(metric), text(value))
        }
        _ => {
            let r = &m["resource"];
            let value = r
                .pointer("/target/averageUtilization")
                .or_else(|| r.pointer("/target/averageValue"))
                .or_else(|| r.get("targetAverageUtilization"));
            (text(r.get("name")), text(value))
        }
    })
}

/// The `autoscale list` table; autoscalers without metrics are reported
/// and skipped.
pub fn list_table(hpas: &[Value]) -> Table {
    let mut t = Table::new(50);
    t.row([
        "NAME",
        "NAMESPACE",
        "TARGET",
        "MIN",
        "MAX",
        "METRIC",
        "VALUE",
    ]);
    for h in hpas {
        let s = |p: &str| {
            h.pointer(p)
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default()
        };
        let Some((metric, value)) = metric_cells(h) else {
            log::error(format!(
                "The function {} has an autoscaler without metrics",
                s("/metadata/name")
            ));
            continue;
        };
        t.row([
            s("/metadata/name"),
            s("/metadata/namespace"),
            s("/spec/scaleTargetRef/name"),
            s("/spec/minReplicas"),
            s("/spec/maxReplicas"),
            metric,
            value,
        ]);
    }
    t
}

fn list(ctx: &Context, a: ListArgs) -> anyhow::Result<()> {
    let ns = namespace(&a.namespace);
    let out = a.out.unwrap_or_default();
    let hpas = ctx.backend()?.list_autoscalers(&ns)?;
    match out.as_str() {
        "json" | "yaml" => {
            for h in &hpas {
                print_structured(h, &out, 2)?;
            }
            Ok(())
        }
        _ => {
            list_table(&hpas).print();
            Ok(())
        }
    }
}

fn delete(ctx: &Context, a: NameArgs) -> anyhow::Result<()> {
    let name = one_name(&a.names, "function name")?;
    let ns = namespace(&a.namespace);
    let backend = ctx.backend()?;
    let mut f = backend.get(Kind::Function, &ns, name)?;
    let named = f
        .pointer("/spec/horizontalPodAutoscaler/metadata/name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if !named {
        bail!("Not found an autoscale definition for {name}");
    }
    f["spec"]["horizontalPodAutoscaler"] = json!({});
    backend.replace(Kind::Function, &ns, name, &f)?;
    log::info(format!(
        "Removing autoscaling rule from the function {name}"
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn func() -> Value {
        json!({"metadata": {"name": "get-python", "namespace": "default",
            "labels": {"created-by": "kubeless", "function": "get-python"}}})
    }

    #[test]
    fn cpu_autoscaler_is_autoscaling_v2() {
        let h = autoscaler(&func(), 3, 3, "cpu", "10").expect("hpa");
        assert_eq!(h["apiVersion"], "autoscaling/v2");
        assert_eq!(h["metadata"]["labels"]["function"], "get-python");
        assert_eq!(
            h["spec"]["scaleTargetRef"],
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "get-python"})
        );
        assert_eq!(
            h["spec"]["metrics"][0]["resource"]["target"],
            json!({"type": "Utilization", "averageUtilization": 10})
        );
        assert_eq!(
            metric_cells(&h),
            Some(("cpu".to_string(), "10".to_string()))
        );
    }

    #[test]
    fn qps_autoscaler_targets_the_service() {
        let h = autoscaler(&func(), 1, 5, "qps", "2k").expect("hpa");
        assert_eq!(
            h["spec"]["metrics"][0]["object"]["describedObject"]["name"],
            "get-python"
        );
        assert_eq!(
            metric_cells(&h),
            Some(("function_calls".to_string(), "2k".to_string()))
        );
    }

    #[test]
    fn bad_flags_have_kubeless_messages() {
        let e = |min, max, metric| {
            autoscaler(&func(), min, max, metric, "10")
                .expect_err("bad")
                .to_string()
        };
        assert_eq!(e(0, 1, "cpu"), "min can't be negative or zero");
        assert_eq!(e(3, 2, "cpu"), "max must be greater than or equal to min");
        assert_eq!(e(1, 1, "memory"), "only supported metrics: cpu, qps");
    }

    #[test]
    fn v2beta1_cells_still_read() {
        let h = json!({"spec": {"metrics": [{"type": "Resource",
            "resource": {"name": "cpu", "targetAverageUtilization": 70}}]}});
        assert_eq!(
            metric_cells(&h),
            Some(("cpu".to_string(), "70".to_string()))
        );
        assert_eq!(metric_cells(&json!({"spec": {}})), None);
    }
}
