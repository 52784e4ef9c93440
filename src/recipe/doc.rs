//! A recipe document as a tree of values that remember their source spans.
//!
//! Built from toml's span-preserving parser; used by the structural validator and to point
//! semantic problems (found on the typed recipe) back at the right line.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

#[derive(Debug, Clone)]
pub struct Node {
    pub span: Range<usize>,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub enum Value {
    String(String),
    /// The value, or `None` when it does not fit in an i64 (kept as text for the message).
    Integer(Option<i64>, String),
    Float(f64),
    Bool(bool),
    Datetime(String),
    Array(Vec<Node>),
    Table(Vec<Entry>),
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub key_span: Range<usize>,
    pub value: Node,
}

impl Value {
    /// The TOML type name, as used in messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::Integer(..) => "integer",
            Value::Float(_) => "float",
            Value::Bool(_) => "boolean",
            Value::Datetime(_) => "datetime",
            Value::Array(_) => "array",
            Value::Table(_) => "table",
        }
    }
}

impl Node {
    pub fn from_table(span: Range<usize>, table: &DeTable<'_>) -> Node {
        let entries = table
            .iter()
            .map(|(k, v)| Entry { key: k.get_ref().to_string(), key_span: k.span(), value: Node::from_value(v) })
            .collect();
        Node { span, value: Value::Table(entries) }
    }

    fn from_value(v: &Spanned<DeValue<'_>>) -> Node {
        let span = v.span();
        let value = match v.get_ref() {
            DeValue::String(s) => Value::String(s.to_string()),
            DeValue::Integer(i) => {
                let text = i.to_string();
                Value::Integer(i64::from_str_radix(i.as_str(), i.radix()).ok(), text)
            }
            DeValue::Float(f) => Value::Float(f.as_str().parse::<f64>().unwrap_or(f64::NAN)),
            DeValue::Boolean(b) => Value::Bool(*b),
            DeValue::Datetime(d) => Value::Datetime(d.to_string()),
            DeValue::Array(a) => Value::Array(a.iter().map(Node::from_value).collect()),
            DeValue::Table(t) => return Node::from_table(span, t),
        };
        Node { span, value }
    }

    /// Entry `key` of a table node.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Table(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    /// The node at a path of keys and indices (`["arms", "1", "merge"]`); returns the deepest
    /// node reached and whether the whole path was found.
    pub fn lookup(&self, path: &[PathSeg]) -> (Span, bool) {
        let mut node = self;
        let mut span = Span { value: self.span.clone(), key: None };
        for seg in path {
            let next = match (seg, &node.value) {
                (PathSeg::Key(k), Value::Table(_)) => node.get(k).map(|e| {
                    (&e.value, Span { value: e.value.span.clone(), key: Some(e.key_span.clone()) })
                }),
                (PathSeg::Index(i), Value::Array(items)) => {
                    items.get(*i).map(|n| (n, Span { value: n.span.clone(), key: None }))
                }
                _ => None,
            };
            match next {
                Some((n, s)) => {
                    node = n;
                    span = s;
                }
                None => return (span, false),
            }
        }
        (span, true)
    }
}

/// Where a value sits: its own span and, for table entries, its key's span.
#[derive(Debug, Clone)]
pub struct Span {
    pub value: Range<usize>,
    pub key: Option<Range<usize>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// Render a path as `a.b[2]."odd key"`.
pub fn path_string(path: &[PathSeg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if bare {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
            PathSeg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Shorthand for building paths in semantic checks.
pub fn p(segs: &[&dyn PathPart]) -> Vec<PathSeg> {
    segs.iter().map(|s| s.seg()).collect()
}

pub trait PathPart {
    fn seg(&self) -> PathSeg;
}
impl PathPart for &str {
    fn seg(&self) -> PathSeg {
        PathSeg::Key(self.to_string())
    }
}
impl PathPart for String {
    fn seg(&self) -> PathSeg {
        PathSeg::Key(self.clone())
    }
}
impl PathPart for usize {
    fn seg(&self) -> PathSeg {
        PathSeg::Index(*self)
    }
}
