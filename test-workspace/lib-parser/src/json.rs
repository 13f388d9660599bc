//! A small JSON document model: a recursive-descent parser that reports
//! errors with line/column positions, compact and pretty printers, and
//! typed accessors including a dotted-path lookup.

use lib_common::Describe;
use std::fmt::{self, Write};

mod parser;
pub use parser::parse_json;

/// A JSON value. Objects keep their members in document order.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Json {
    #[default]
    Null,
    Bool(bool),
    Number(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Look up a key of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follow a dotted path such as `"servers.0.port"`; numeric segments
    /// index into arrays.
    pub fn pointer(&self, path: &str) -> Option<&Json> {
        path.split('.')
            .filter(|s| !s.is_empty())
            .try_fold(self, |cur, seg| match cur {
                Json::Array(v) => seg.parse::<usize>().ok().and_then(|i| v.get(i)),
                _ => cur.get(seg),
            })
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Number of nodes in the tree, including this one.
    pub fn node_count(&self) -> usize {
        1 + match self {
            Json::Array(v) => v.iter().map(Json::node_count).sum(),
            Json::Object(m) => m.iter().map(|(_, v)| v.node_count()).sum(),
            _ => 0,
        }
    }

    /// Render with newlines and `indent` spaces per nesting level.
    pub fn pretty(&self, indent: usize) -> String {
        let mut out = String::new();
        self.write_json(&mut out, Some(indent), 0)
            .expect("writing to a String cannot fail");
        out
    }

    /// Shared printer: compact when `indent` is `None`, multi-line otherwise.
    fn write_json(&self, out: &mut dyn Write, indent: Option<usize>, level: usize) -> fmt::Result {
        let (open, close, entries): (char, char, Vec<(Option<&str>, &Json)>) = match self {
            Json::Null => return out.write_str("null"),
            Json::Bool(b) => return write!(out, "{}", b),
            Json::Number(n) if n.is_finite() => return write!(out, "{}", n),
            Json::Number(_) => return out.write_str("null"),
            Json::Str(s) => return write_escaped(out, s),
            Json::Array(v) => ('[', ']', v.iter().map(|x| (None, x)).collect()),
            Json::Object(m) => (
                '{',
                '}',
                m.iter().map(|(k, x)| (Some(k.as_str()), x)).collect(),
            ),
        };
        out.write_char(open)?;
        for (i, (key, item)) in entries.iter().enumerate() {
            if i > 0 {
                out.write_char(',')?;
            }
            if let Some(n) = indent {
                write!(out, "\n{:w$}", "", w = n * (level + 1))?;
            }
            if let Some(k) = key {
                write_escaped(out, k)?;
                out.write_str(if indent.is_some() { ": " } else { ":" })?;
            }
            item.write_json(out, indent, level + 1)?;
        }
        if let (Some(n), false) = (indent, entries.is_empty()) {
            write!(out, "\n{:w$}", "", w = n * level)?;
        }
        out.write_char(close)
    }
}

fn write_escaped(out: &mut dyn Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

/// Compact single-line rendering; the alternate form `{:#}` pretty-prints
/// with two-space indentation.
impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let indent = f.alternate().then_some(2);
        self.write_json(f, indent, 0)
    }
}

impl Describe for Json {
    fn name(&self) -> String {
        match self {
            Json::Null => "Null".into(),
            Json::Bool(_) => "Bool".into(),
            Json::Number(_) => "Number".into(),
            Json::Str(_) => "Str".into(),
            Json::Array(v) => format!("Array[{}]", v.len()),
            Json::Object(m) => format!("Object{{{}}}", m.len()),
        }
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Self {
        Json::Bool(b)
    }
}

impl From<f64> for Json {
    fn from(n: f64) -> Self {
        Json::Number(n)
    }
}

impl From<&str> for Json {
    fn from(s: &str) -> Self {
        Json::Str(s.to_string())
    }
}

impl<T: Into<Json>> From<Vec<T>> for Json {
    fn from(v: Vec<T>) -> Self {
        Json::Array(v.into_iter().map(Into::into).collect())
    }
}

impl<K: Into<String>, V: Into<Json>> FromIterator<(K, V)> for Json {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Json::Object(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lib_common::AppError;

    #[test]
    fn parses_nested_document() {
        let v = parse_json(r#"{"name": "svc", "ports": [80, 443], "tls": true, "extra": null}"#)
            .unwrap();
        assert_eq!(v.pointer("name").and_then(Json::as_str), Some("svc"));
        assert_eq!(v.pointer("ports.1").and_then(Json::as_f64), Some(443.0));
        assert_eq!(v.get("tls").and_then(Json::as_bool), Some(true));
        assert_eq!(v.get("extra"), Some(&Json::Null));
        assert_eq!(v.node_count(), 7);
        assert_eq!(v.describe(), "<Object{4}>");
    }

    #[test]
    fn round_trips_through_display_and_pretty() {
        let src = r#"{"a": [1, 2.5, -3e2], "b": {"c": "x\"y\n\u0041"}, "d": []}"#;
        let v = parse_json(src).unwrap();
        assert_eq!(
            v.to_string(),
            r#"{"a":[1,2.5,-300],"b":{"c":"x\"y\nA"},"d":[]}"#
        );
        assert_eq!(parse_json(&v.to_string()).unwrap(), v);
        assert_eq!(parse_json(&v.pretty(2)).unwrap(), v);
        assert_eq!(format!("{:#}", v), v.pretty(2));
        assert!(v.pretty(2).contains("\n  \"b\": {\n    \"c\""));
    }

    #[test]
    fn builds_from_rust_values() {
        let v: Json = vec![
            ("n", Json::from(1.0)),
            ("s", "hi".into()),
            ("l", vec![true, false].into()),
        ]
        .into_iter()
        .collect();
        assert_eq!(v.to_string(), r#"{"n":1,"s":"hi","l":[true,false]}"#);
    }

    #[test]
    fn reports_errors_with_position() {
        assert_eq!(parse_json("  "), Err(AppError::Empty));
        let err = parse_json("{\n  \"a\": tru }").unwrap_err().to_string();
        assert!(err.contains("json 2:"), "{}", err);
        assert!(parse_json("[1, 2,]").is_err());
        assert!(parse_json("[1] x").is_err());
        assert!(parse_json("\"open").is_err());
        assert!(parse_json(r#"{"a": 1, "a": 2}"#)
            .unwrap_err()
            .to_string()
            .contains("duplicate key"));
        assert!(parse_json(&"[".repeat(200))
            .unwrap_err()
            .to_string()
            .contains("too deep"));
    }
}
