//! `kubeless function top`: a small Prometheus text-format parser and the
//! per-method aggregation Kubeless shows (calls, failures, total and average
//! duration from `function_calls_total`, `function_failures_total` and the
//! `function_duration_seconds` histogram sum).
//!
//! The local API concatenates the metrics of every ready instance, so equal
//! series appear several times: their samples are summed.

use std::collections::BTreeMap;

use serde::Serialize;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parse Prometheus text exposition format (comments and blank lines are
/// skipped). Errors name the offending line number.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).map_err(|e| format!("line {}: {e}", i + 1))?);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("sample without value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("sample without value")?;
    let value = parse_value(value)?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("invalid timestamp {ts:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing text after sample".to_string());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parse `k="v",...}`; returns the labels and the text after `}`.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without value")?;
        let key = rest[..eq].trim();
        if key.is_empty() {
            return Err("empty label name".to_string());
        }
        let after_eq = rest[eq + 1..].trim_start();
        let body = after_eq.strip_prefix('"').ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut end = None;
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".to_string()),
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.ok_or("unterminated label value")?;
        labels.insert(key.to_string(), value);
        rest = body[end + 1..].trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start();
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' in labels".to_string());
        }
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|_| format!("invalid value {s:?}")),
    }
}

/// One line of `kubeless function top`. JSON keys as Kubeless's, each
/// omitted when empty or zero.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TopRow {
    #[serde(rename = "function", skip_serializing_if = "String::is_empty")]
    pub function: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub method: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "is_zero", serialize_with = "go_number")]
    pub total_calls: f64,
    #[serde(skip_serializing_if = "is_zero", serialize_with = "go_number")]
    pub total_failures: f64,
    #[serde(skip_serializing_if = "is_zero", serialize_with = "go_number")]
    pub total_duration_seconds: f64,
    #[serde(skip_serializing_if = "is_zero", serialize_with = "go_number")]
    pub avg_duration_seconds: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// Whole numbers as integers (`3`, not `3.0`), as Go's encoder writes them.
fn go_number<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

/// Message of a function whose metrics could not be fetched.
pub const NO_METRICS: &str = "Function does not expose metrics";
/// Message of a function whose metrics could not be parsed.
pub const BAD_METRICS: &str = "Unable to get function metrics";

/// Rows of one function from its metrics text (or fetch error).
pub fn rows_for(function: &str, namespace: &str, fetched: Result<&str, ()>) -> Vec<TopRow> {
    let base = TopRow {
        function: function.to_string(),
        namespace: namespace.to_string(),
        ..TopRow::default()
    };
    let text = match fetched {
        Ok(t) => t,
        Err(()) => {
            return vec![TopRow {
                message: NO_METRICS.to_string(),
                ..base
            }];
        }
    };
    let samples = match parse(text) {
        Ok(s) => s,
        Err(_) => {
            return vec![TopRow {
                message: BAD_METRICS.to_string(),
                ..base
            }];
        }
    };
    let mut by_method: BTreeMap<String, TopRow> = BTreeMap::new();
    for s in samples {
        let field: fn(&mut TopRow) -> &mut f64 = match s.name.as_str() {
            "function_calls_total" => |r| &mut r.total_calls,
            "function_failures_total" => |r| &mut r.total_failures,
            "function_duration_seconds_sum" => |r| &mut r.total_duration_seconds,
            _ => continue,
        };
        let method = s.labels.get("method").cloned().unwrap_or_default();
        let row = by_method.entry(method.clone()).or_insert_with(|| TopRow {
            method,
            ..base.clone()
        });
        *field(row) += s.value;
    }
    if by_method.is_empty() {
        return vec![base];
    }
    by_method
        .into_values()
        .map(|mut r| {
            if r.total_calls > 0.0 {
                r.avg_duration_seconds = r.total_duration_seconds / r.total_calls;
            }
            r
        })
        .collect()
}

/// A float as Go's `%v` prints it: shortest digits, exponent form when the
/// exponent is below -4 or at least 6 (`1e+06`).
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

/// A cell of the top table: empty for zero, as Kubeless leaves it.
fn cell(v: f64) -> String {
    if v == 0.0 { String::new() } else { go_float(v) }
}

/// The `top` table, header included.
pub fn table(rows: &[TopRow]) -> crate::output::Table {
    let mut t = crate::output::Table::new(50);
    t.row([
        "NAME",
        "NAMESPACE",
        "METHOD",
        "TOTAL_CALLS",
        "TOTAL_FAILURES",
        "TOTAL_DURATION_SECONDS",
        "AVG_DURATION_SECONDS",
        "MESSAGE",
    ]);
    for r in rows {
        t.row([
            r.function.clone(),
            r.namespace.clone(),
            r.method.clone(),
            cell(r.total_calls),
            cell(r.total_failures),
            cell(r.total_duration_seconds),
            cell(r.avg_duration_seconds),
            r.message.clone(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP function_duration_seconds Duration of user function in seconds
# TYPE function_duration_seconds histogram
function_duration_seconds_bucket{le="0.005",method="GET"} 1
function_duration_seconds_bucket{le="+Inf",method="GET"} 2
function_duration_seconds_sum{method="GET"} 1.5
function_duration_seconds_count{method="GET"} 2
function_duration_seconds_sum{method="POST"} 3
# TYPE function_calls_total counter
function_calls_total{method="GET"} 2
function_calls_total{method="POST"} 1
function_failures_total{method="POST"} 1
function_calls_total{method="GET"} 2
function_duration_seconds_sum{method="GET"} 0.5
"#;

    #[test]
    fn parses_labels_and_escapes() {
        let s = parse("m{a=\"x\\\"y\",b=\"1\\n2\",} 3 1700000000\nn 4e-3\n").expect("parse");
        assert_eq!(s[0].labels["a"], "x\"y");
        assert_eq!(s[0].labels["b"], "1\n2");
        assert_eq!(s[0].value, 3.0);
        assert_eq!(s[1].name, "n");
        assert_eq!(s[1].value, 0.004);
        assert!(parse("m{a=x} 1").is_err());
        assert!(parse("m 1 2 3").is_err());
        assert!(parse("m abc").is_err());
    }

    #[test]
    fn aggregates_per_method_summing_duplicates() {
        let rows = rows_for("foo", "default", Ok(TEXT));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].method, "GET");
        assert_eq!(rows[0].total_calls, 4.0);
        assert_eq!(rows[0].total_duration_seconds, 2.0);
        assert_eq!(rows[0].avg_duration_seconds, 0.5);
        assert_eq!(rows[0].total_failures, 0.0);
        assert_eq!(rows[1].method, "POST");
        assert_eq!(rows[1].total_failures, 1.0);
        assert_eq!(rows[1].avg_duration_seconds, 3.0);
    }

    #[test]
    fn messages_for_missing_and_bad_metrics() {
        assert_eq!(rows_for("f", "ns", Err(()))[0].message, NO_METRICS);
        assert_eq!(
            rows_for("f", "ns", Ok("bad line here x"))[0].message,
            BAD_METRICS
        );
        let none = rows_for("f", "ns", Ok("other_metric 1\n"));
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].method, "");
    }

    #[test]
    fn json_omits_zero_and_empty() {
        let rows = rows_for("foo", "default", Ok(TEXT));
        let json = crate::output::to_json(&rows[0], 2).expect("json");
        assert_eq!(
            json,
            "{\n  \"function\": \"foo\",\n  \"namespace\": \"default\",\n  \"method\": \"GET\",\n  \"total_calls\": 4,\n  \"total_duration_seconds\": 2,\n  \"avg_duration_seconds\": 0.5\n}"
        );
        let yaml = crate::output::to_yaml(&rows).expect("yaml");
        assert!(yaml.contains("total_calls: 4\n"), "{yaml}");
    }

    #[test]
    fn top_table() {
        let rows = rows_for("foo", "default", Ok(TEXT));
        let out = table(&rows).render();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("NAME\tNAMESPACE\tMETHOD\tTOTAL_CALLS\t"));
        assert!(lines[1].starts_with("foo \tdefault  \tGET   \t4          \t"));
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(3.0), "3");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(1_000_000.0), "1e+06");
        assert_eq!(go_float(123_456.0), "123456");
    }
}
