//! Data output on stdout, shaped like the original CLI's: gosuri/uitable
//! tables, JSON with 2-space (`ls`, `describe`, `top`) or 4-space
//! (`--dryrun`) indentation, and YAML with alphabetically sorted keys (the
//! original converted JSON to YAML).

use serde::Serialize;
use serde_json::Value;

/// A table rendered like gosuri/uitable with `Wrap = true`: every cell is
/// padded to its column's width, cells are joined by a tab, a multi-line
/// cell spreads its row over several lines, and lines longer than
/// `max_col_width` are word-wrapped, except in the columns and rows kept
/// whole (a status line reads as one line).
#[derive(Debug, Clone)]
pub struct Table {
    rows: Vec<(Vec<String>, bool)>,
    max_col_width: usize,
    whole_columns: Vec<usize>,
}

impl Table {
    /// A table whose columns are at most `max_col_width` wide.
    pub fn new(max_col_width: usize) -> Table {
        Table {
            rows: Vec::new(),
            max_col_width,
            whole_columns: Vec::new(),
        }
    }

    /// Never wrap column `i` (0-based).
    pub fn whole_column(mut self, i: usize) -> Table {
        self.whole_columns.push(i);
        self
    }

    /// Append a row.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows
            .push((cells.into_iter().map(Into::into).collect(), false));
    }

    /// Append a row whose cells are never wrapped.
    pub fn row_whole<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows
            .push((cells.into_iter().map(Into::into).collect(), true));
    }

    /// The rendered table without a final newline.
    pub fn render(&self) -> String {
        // Wrap first, then size columns on the wrapped lines.
        let wrapped: Vec<Vec<Vec<String>>> = self
            .rows
            .iter()
            .map(|(r, whole)| {
                r.iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if *whole || self.whole_columns.contains(&i) {
                            wrap_cell(c, 0)
                        } else {
                            wrap_cell(c, self.max_col_width)
                        }
                    })
                    .collect()
            })
            .collect();
        let ncols = wrapped.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0usize; ncols];
        for row in &wrapped {
            for (i, cell) in row.iter().enumerate() {
                for line in cell {
                    widths[i] = widths[i].max(line.chars().count());
                }
            }
        }
        let mut out: Vec<String> = Vec::new();
        for row in &wrapped {
            let height = row.iter().map(Vec::len).max().unwrap_or(1).max(1);
            for l in 0..height {
                let parts: Vec<String> = row
                    .iter()
                    .enumerate()
                    .map(|(i, cell)| {
                        let text = cell.get(l).map(String::as_str).unwrap_or("");
                        pad(text, widths[i])
                    })
                    .collect();
                out.push(parts.join("\t"));
            }
        }
        out.join("\n")
    }

    /// Print the table and a newline to stdout (nothing for no rows).
    pub fn print(&self) {
        emit(&format!("{}\n", self.render()));
    }
}

fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    let mut out = s.to_string();
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(n)));
    out
}

/// Split a cell into lines, word-wrapping lines longer than `max`. Words
/// longer than `max` are kept whole, as go-wordwrap does.
fn wrap_cell(cell: &str, max: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for line in cell.split('\n') {
        if max == 0 || line.chars().count() <= max {
            lines.push(line.to_string());
            continue;
        }
        let mut cur = String::new();
        for word in line.split(' ') {
            if cur.is_empty() {
                cur = word.to_string();
            } else if cur.chars().count() + 1 + word.chars().count() <= max {
                cur.push(' ');
                cur.push_str(word);
            } else {
                lines.push(std::mem::take(&mut cur));
                cur = word.to_string();
            }
        }
        lines.push(cur);
    }
    lines
}

/// Write data to stdout. A closed pipe (`kubeless function ls | head -1`)
/// is not an error worth a message: the reader is gone.
pub fn emit(text: &str) {
    emit_bytes(text.as_bytes());
}

/// [`emit`] for raw bytes.
pub fn emit_bytes(bytes: &[u8]) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|_| out.flush());
}

/// JSON with the given indentation width.
pub fn to_json<T: Serialize>(value: &T, indent: usize) -> anyhow::Result<String> {
    let indent = " ".repeat(indent);
    let fmt = serde_json::ser::PrettyFormatter::with_indent(indent.as_bytes());
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    value.serialize(&mut ser)?;
    Ok(String::from_utf8(buf)?)
}

/// YAML with keys sorted alphabetically at every level.
pub fn to_yaml<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let v = serde_json::to_value(value)?;
    Ok(serde_yaml::to_string(&sorted_yaml(&v))?)
}

fn sorted_yaml(v: &Value) -> serde_yaml::Value {
    match v {
        Value::Null => serde_yaml::Value::Null,
        Value::Bool(b) => serde_yaml::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                serde_yaml::Value::Number(i.into())
            } else if let Some(u) = n.as_u64() {
                serde_yaml::Value::Number(u.into())
            } else {
                serde_yaml::Value::Number(n.as_f64().unwrap_or(0.0).into())
            }
        }
        Value::String(s) => serde_yaml::Value::String(s.clone()),
        Value::Array(a) => serde_yaml::Value::Sequence(a.iter().map(sorted_yaml).collect()),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = serde_yaml::Mapping::new();
            for k in keys {
                if let Some(val) = m.get(k) {
                    out.insert(serde_yaml::Value::String(k.clone()), sorted_yaml(val));
                }
            }
            serde_yaml::Value::Mapping(out)
        }
    }
}

/// Print `value` as JSON (`indent` spaces) or YAML on stdout.
pub fn print_structured<T: Serialize>(
    value: &T,
    format: &str,
    indent: usize,
) -> anyhow::Result<()> {
    match format {
        "json" => emit(&format!("{}\n", to_json(value, indent)?)),
        _ => emit(&to_yaml(value)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_and_separates_with_tabs() {
        let mut t = Table::new(50);
        t.row(["NAME", "NAMESPACE", "STATUS"]);
        t.row(["foo", "default", "1/1 READY"]);
        t.row(["longer-name", "ns", "0/1 NOT READY"]);
        assert_eq!(
            t.render(),
            "NAME       \tNAMESPACE\tSTATUS       \n\
             foo        \tdefault  \t1/1 READY    \n\
             longer-name\tns       \t0/1 NOT READY"
        );
    }

    #[test]
    fn table_multiline_cells_spread_rows() {
        let mut t = Table::new(50);
        t.row(["A", "B"]);
        t.row(["x", "k = v\nk2 = v2"]);
        assert_eq!(t.render(), "A\tB      \nx\tk = v  \n \tk2 = v2");
    }

    #[test]
    fn table_wraps_long_lines_on_words() {
        let mut t = Table::new(10);
        t.row(["aaa bbb ccc ddd"]);
        assert_eq!(t.render(), "aaa bbb\nccc ddd");
    }

    #[test]
    fn whole_columns_and_rows_are_not_wrapped() {
        let mut t = Table::new(10).whole_column(1);
        t.row(["aaa bbb ccc", "xxx yyy zzz"]);
        t.row_whole(["ddd eee fff", "1"]);
        assert_eq!(
            t.render(),
            "aaa bbb    \txxx yyy zzz\nccc        \t           \nddd eee fff\t1          "
        );
    }

    #[test]
    fn yaml_keys_sorted() {
        let v = serde_json::json!({"b": 1, "a": {"d": "x", "c": ""}});
        assert_eq!(to_yaml(&v).expect("yaml"), "a:\n  c: ''\n  d: x\nb: 1\n");
    }

    #[test]
    fn json_indent() {
        let v = serde_json::json!({"a": [1]});
        assert_eq!(
            to_json(&v, 4).expect("json"),
            "{\n    \"a\": [\n        1\n    ]\n}"
        );
        assert_eq!(
            to_json(&v, 2).expect("json"),
            "{\n  \"a\": [\n    1\n  ]\n}"
        );
    }
}
