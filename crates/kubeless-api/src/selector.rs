//! Label selectors of Kafka and NATS triggers (`functionSelector`): parsing
//! the CLI syntax, matching function labels, and printing them back.
//!
//! Syntax (as `kubectl -l`): comma-separated requirements `k=v`, `k==v`,
//! `k!=v`, `k in (a,b)`, `k notin (a)`, `k` (exists) and `!k` (does not
//! exist). Equalities become `matchLabels`; everything else becomes
//! `matchExpressions`.
//!
//! Unlike Kubernetes, where an empty selector selects everything, **an empty
//! selector matches nothing here**: a trigger without a selector must not
//! fan out to every function in the namespace.

use std::collections::BTreeMap;

use crate::types::{LabelSelector, LabelSelectorRequirement};
use crate::validate::{validate_label_key, validate_label_value};

/// Why a selector string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("invalid selector requirement {requirement:?}: {reason}")]
    Requirement { requirement: String, reason: String },
    #[error("invalid selector {selector:?}: unbalanced parentheses")]
    Parentheses { selector: String },
}

/// Split on commas outside parentheses.
fn split_requirements(s: &str) -> Result<Vec<&str>, SelectorError> {
    let mut parts = Vec::new();
    let mut depth = 0_usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| SelectorError::Parentheses {
                        selector: s.to_string(),
                    })?;
            }
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(SelectorError::Parentheses {
            selector: s.to_string(),
        });
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// Parse the CLI selector syntax into a [`LabelSelector`]. The empty
/// string gives the empty selector (which matches nothing).
pub fn parse_selector(s: &str) -> Result<LabelSelector, SelectorError> {
    let mut selector = LabelSelector::default();
    if s.trim().is_empty() {
        return Ok(selector);
    }
    for raw in split_requirements(s)? {
        let requirement = raw.trim();
        let fail = |reason: String| SelectorError::Requirement {
            requirement: requirement.to_string(),
            reason,
        };
        if requirement.is_empty() {
            return Err(fail("empty requirement".to_string()));
        }
        let check_key = |key: &str| validate_label_key(key).map_err(fail);
        let check_value = |value: &str| validate_label_value(value).map_err(fail);

        if let Some(key) = requirement.strip_prefix('!') {
            let key = key.trim();
            check_key(key)?;
            selector
                .match_expressions
                .push(requirement_of(key, "DoesNotExist", vec![]));
        } else if let Some(open) = requirement.find('(') {
            let Some(inner) = requirement[open + 1..].strip_suffix(')') else {
                return Err(fail("expected a closing ')' at the end".to_string()));
            };
            let mut head = requirement[..open].split_whitespace();
            let (Some(key), Some(op), None) = (head.next(), head.next(), head.next()) else {
                return Err(fail(
                    "expected <key> in (<values>) or <key> notin (<values>)".to_string(),
                ));
            };
            let operator = match op {
                "in" => "In",
                "notin" => "NotIn",
                other => return Err(fail(format!("unknown operator {other:?}; use in or notin"))),
            };
            check_key(key)?;
            let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
            for value in &values {
                check_value(value)?;
            }
            selector
                .match_expressions
                .push(requirement_of(key, operator, values));
        } else if let Some((key, value)) = requirement.split_once("!=") {
            let (key, value) = (key.trim(), value.trim());
            check_key(key)?;
            check_value(value)?;
            selector
                .match_expressions
                .push(requirement_of(key, "NotIn", vec![value.to_string()]));
        } else if let Some((key, value)) = requirement
            .split_once("==")
            .or_else(|| requirement.split_once('='))
        {
            let (key, value) = (key.trim(), value.trim());
            check_key(key)?;
            check_value(value)?;
            match selector.match_labels.get(key) {
                Some(existing) if existing != value => {
                    // k=a,k=b can never match; keep it faithful rather than
                    // silently overwriting.
                    selector.match_expressions.push(requirement_of(
                        key,
                        "In",
                        vec![value.to_string()],
                    ));
                }
                _ => {
                    selector
                        .match_labels
                        .insert(key.to_string(), value.to_string());
                }
            }
        } else {
            check_key(requirement)?;
            selector
                .match_expressions
                .push(requirement_of(requirement, "Exists", vec![]));
        }
    }
    Ok(selector)
}

fn requirement_of(key: &str, operator: &str, values: Vec<String>) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_string(),
        operator: operator.to_string(),
        values,
    }
}

/// Whether `labels` satisfy `sel`. An empty selector matches nothing; an
/// unknown operator never matches.
pub fn matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if sel.match_labels.is_empty() && sel.match_expressions.is_empty() {
        return false;
    }
    let labels_ok = sel
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
        && sel.match_expressions.iter().all(|req| {
            let value = labels.get(&req.key);
            match req.operator.as_str() {
                "In" => value.is_some_and(|v| req.values.contains(v)),
                "NotIn" => value.is_none_or(|v| !req.values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// `matchLabels` as `k=v,k2=v2` (keys sorted), as `kubeless trigger kafka
/// list` shows them.
pub fn format_match_labels(sel: &LabelSelector) -> String {
    sel.match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The whole selector in the CLI syntax (`matchLabels` first, then the
/// expressions in order); [`parse_selector`] reads it back.
pub fn format_selector(sel: &LabelSelector) -> String {
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for req in &sel.match_expressions {
        parts.push(match req.operator.as_str() {
            "In" => format!("{} in ({})", req.key, req.values.join(",")),
            "NotIn" if req.values.len() == 1 => format!("{}!={}", req.key, req.values[0]),
            "NotIn" => format!("{} notin ({})", req.key, req.values.join(",")),
            "Exists" => req.key.clone(),
            "DoesNotExist" => format!("!{}", req.key),
            other => format!("{} {other} ({})", req.key, req.values.join(",")),
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equality_selectors_become_match_labels() {
        let sel = parse_selector("topic=s3-python, function==get").unwrap();
        assert_eq!(
            sel.match_labels,
            labels(&[("topic", "s3-python"), ("function", "get")])
        );
        assert!(sel.match_expressions.is_empty());
        assert_eq!(format_match_labels(&sel), "function=get,topic=s3-python");
    }

    #[test]
    fn set_and_existence_selectors() {
        let sel =
            parse_selector("env in (prod, staging),tier notin (db),app,!legacy,k!=v").unwrap();
        let ops: Vec<(&str, &str, usize)> = sel
            .match_expressions
            .iter()
            .map(|r| (r.key.as_str(), r.operator.as_str(), r.values.len()))
            .collect();
        assert_eq!(
            ops,
            vec![
                ("env", "In", 2),
                ("tier", "NotIn", 1),
                ("app", "Exists", 0),
                ("legacy", "DoesNotExist", 0),
                ("k", "NotIn", 1),
            ]
        );
        assert_eq!(
            format_selector(&sel),
            "env in (prod,staging),tier!=db,app,!legacy,k!=v"
        );
        assert_eq!(parse_selector(&format_selector(&sel)).unwrap(), sel);
    }

    #[test]
    fn matching() {
        let sel = parse_selector("topic=t,env in (prod,staging),tier notin (db),!legacy").unwrap();
        assert!(matches(&sel, &labels(&[("topic", "t"), ("env", "prod")])));
        assert!(matches(
            &sel,
            &labels(&[("topic", "t"), ("env", "staging"), ("tier", "web")])
        ));
        assert!(!matches(&sel, &labels(&[("topic", "t"), ("env", "dev")])));
        assert!(!matches(
            &sel,
            &labels(&[("topic", "t"), ("env", "prod"), ("tier", "db")])
        ));
        assert!(!matches(
            &sel,
            &labels(&[("topic", "t"), ("env", "prod"), ("legacy", "")])
        ));
        assert!(!matches(&sel, &labels(&[("env", "prod")])));
    }

    #[test]
    fn empty_selector_matches_nothing() {
        let sel = parse_selector("").unwrap();
        assert_eq!(sel, LabelSelector::default());
        assert!(!matches(&sel, &labels(&[])));
        assert!(!matches(&sel, &labels(&[("a", "b")])));
        assert_eq!(format_match_labels(&sel), "");
    }

    #[test]
    fn conflicting_equalities_never_match() {
        let sel = parse_selector("k=a,k=b").unwrap();
        assert!(!matches(&sel, &labels(&[("k", "a")])));
        assert!(!matches(&sel, &labels(&[("k", "b")])));
    }

    #[test]
    fn invalid_selectors() {
        for bad in [
            "a b=c",
            "k=v v",
            "k in (a",
            "k in a)",
            "k between (a)",
            "k=v,,x",
            "=v",
            "!",
            "k in (a b)",
        ] {
            assert!(parse_selector(bad).is_err(), "{bad}");
        }
        let err = parse_selector("k between (a)").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid selector requirement \"k between (a)\": unknown operator \"between\"; use in or notin"
        );
    }
}
