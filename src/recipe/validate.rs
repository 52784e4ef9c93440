//! Structural validation of a recipe document against the recipe's JSON schema.
//!
//! serde stops at the first problem and loses positions; this walker checks the whole span-aware
//! document against the schema generated from the recipe types (so the two cannot disagree),
//! collects *every* problem with its span and key path, suggests names for typos, and builds a
//! repaired JSON value (unknown keys and invalid optional values dropped) from which the typed
//! recipe can still be deserialized for the semantic checks.

use std::ops::Range;

use serde_json::{Map, Value as Json};

use super::diagnostic::{Diagnostic, did_you_mean};
use super::doc::{Node, PathSeg, Value, path_string};

/// Nesting deeper than this is refused (no recipe needs it; it protects the stack).
const MAX_DEPTH: usize = 32;

pub struct Validator<'s> {
    root: &'s Json,
    pub diagnostics: Vec<Diagnostic>,
}

impl<'s> Validator<'s> {
    pub fn new(root_schema: &'s Json) -> Self {
        Self { root: root_schema, diagnostics: Vec::new() }
    }

    /// Validate the whole document; returns the repaired value when the root is usable.
    pub fn validate_document(&mut self, doc: &Node) -> Option<Json> {
        let mut path = Vec::new();
        self.check(self.root, doc, &mut path, None)
    }

    fn resolve(&self, mut schema: &'s Json) -> &'s Json {
        for _ in 0..16 {
            let Some(r) = schema.get("$ref").and_then(Json::as_str) else { break };
            let target = r.strip_prefix("#/").map(|p| p.split('/').try_fold(self.root, |s, k| s.get(k)));
            match target.flatten() {
                Some(t) => schema = t,
                None => break,
            }
        }
        schema
    }

    fn report(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    /// Check `node` against `schema`; `key_span` is the span of the key naming it, if any.
    fn check(&mut self, schema: &'s Json, node: &Node, path: &mut Vec<PathSeg>, key_span: Option<Range<usize>>) -> Option<Json> {
        let schema = self.resolve(schema);
        if path.len() > MAX_DEPTH {
            self.report(Diagnostic::new("too-deep", path_string(path), "value is nested too deeply").at(Some(node.span.clone())));
            return None;
        }
        match schema {
            Json::Bool(true) => return self.plain(node, path),
            Json::Bool(false) => {
                self.report(Diagnostic::new("unexpected", path_string(path), "no value is allowed here").at(Some(node.span.clone())));
                return None;
            }
            _ => {}
        }
        if let Some(branches) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Json::as_array) {
            return self.check_union(schema, branches, node, path, key_span);
        }
        if let Some(all) = schema.get("allOf").and_then(Json::as_array) {
            let mut out = None;
            for s in all {
                out = Some(self.check(s, node, path, key_span.clone())?);
            }
            return out;
        }
        if let Some(allowed) = schema.get("enum").and_then(Json::as_array) {
            return self.check_enum(allowed, node, path);
        }
        if let Some(c) = schema.get("const") {
            return self.check_enum(std::slice::from_ref(c), node, path);
        }
        if !self.check_type(schema, node, path) {
            return None;
        }
        match &node.value {
            Value::Table(entries) => self.check_table(schema, node, entries, path, key_span),
            Value::Array(items) => self.check_array(schema, node, items, path),
            Value::Integer(..) | Value::Float(_) => self.check_number(schema, node, path),
            Value::String(s) => {
                let n = s.chars().count() as u64;
                if let Some(min) = schema.get("minLength").and_then(Json::as_u64).filter(|m| n < *m) {
                    let msg = if min == 1 { "must not be empty".to_string() } else { format!("must be at least {min} characters long") };
                    self.report(Diagnostic::new("too-short", path_string(path), msg).at(Some(node.span.clone())));
                    return None;
                }
                if let Some(max) = schema.get("maxLength").and_then(Json::as_u64).filter(|m| n > *m) {
                    self.report(Diagnostic::new("too-long", path_string(path), format!("must be at most {max} characters long")).at(Some(node.span.clone())));
                    return None;
                }
                to_json(node)
            }
            _ => self.plain(node, path),
        }
    }

    fn check_type(&mut self, schema: &Json, node: &Node, path: &[PathSeg]) -> bool {
        let types: Vec<&str> = match schema.get("type") {
            Some(Json::String(t)) => vec![t.as_str()],
            Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).collect(),
            _ => return true,
        };
        let ok = types.iter().any(|t| type_matches(t, &node.value));
        if !ok {
            let wanted: Vec<&str> = types.iter().filter(|t| **t != "null").map(|t| toml_type_name(t)).collect();
            self.report(
                Diagnostic::new("wrong-type", path_string(path), format!("expected {}, found {} {}", join_or(&wanted), article(node.value.type_name()), snippet(node)))
                    .at(Some(node.span.clone())),
            );
        }
        ok
    }

    /// The node as plain JSON, reporting the values JSON cannot hold.
    fn plain(&mut self, node: &Node, path: &mut Vec<PathSeg>) -> Option<Json> {
        if let Some(v) = to_json(node) {
            return Some(v);
        }
        match &node.value {
            Value::Integer(None, text) => {
                self.report(Diagnostic::new("out-of-range", path_string(path), format!("integer {text} does not fit in 64 bits")).at(Some(node.span.clone())));
            }
            Value::Float(_) => {
                self.report(Diagnostic::new("not-finite", path_string(path), format!("{} is not a finite number", snippet(node))).at(Some(node.span.clone())));
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(PathSeg::Index(i));
                    self.plain(item, path);
                    path.pop();
                }
            }
            Value::Table(entries) => {
                for e in entries {
                    path.push(PathSeg::Key(e.key.clone()));
                    self.plain(&e.value, path);
                    path.pop();
                }
            }
            _ => {}
        }
        None
    }

    fn check_enum(&mut self, allowed: &[Json], node: &Node, path: &mut Vec<PathSeg>) -> Option<Json> {
        let value = self.plain(node, path)?;
        if allowed.contains(&value) {
            return Some(value);
        }
        // An integer where a float is listed, etc.: compare numerically.
        if let (Some(v), true) = (value.as_f64(), allowed.iter().any(Json::is_number))
            && allowed.iter().any(|a| a.as_f64() == Some(v)) {
            return Some(value);
        }
        let names: Vec<String> = allowed.iter().map(render_json).collect();
        let help = match &node.value {
            Value::String(s) => did_you_mean(s, allowed.iter().filter_map(Json::as_str)),
            _ => None,
        };
        let msg = if allowed.len() == 1 {
            format!("expected {}, found {}", names[0], snippet(node))
        } else {
            format!("unknown value {}; expected one of {}", snippet(node), names.join(", "))
        };
        self.report(Diagnostic::new("unknown-value", path_string(path), msg).at(Some(node.span.clone())).help_opt(help));
        None
    }

    fn check_union(&mut self, schema: &'s Json, branches: &'s [Json], node: &Node, path: &mut Vec<PathSeg>, key_span: Option<Range<usize>>) -> Option<Json> {
        // TOML has no null: an `Option` is just its inner schema.
        let live: Vec<&'s Json> = branches.iter().filter(|b| !is_null_schema(self.resolve(b))).collect();
        if live.len() == 1 {
            return self.check(live[0], node, path, key_span);
        }
        // Unit enums with documented variants: one `const` per branch.
        let consts: Option<Vec<Json>> = live.iter().map(|b| self.resolve(b).get("const").cloned()).collect();
        if let Some(consts) = consts {
            return self.check_enum(&consts, node, path);
        }
        // Internally tagged enums: every branch fixes the same property to a constant.
        if let Some(tag) = self.discriminator(&live) {
            return self.check_tagged(&tag, &live, node, path, key_span);
        }
        // Otherwise the first branch that accepts the value wins; if none does, report the
        // branch whose type fits, or a type error listing every alternative.
        let saved = std::mem::take(&mut self.diagnostics);
        let mut fitting: Vec<(&'s Json, Vec<Diagnostic>)> = Vec::new();
        for b in &live {
            let out = self.check(b, node, path, key_span.clone());
            let errs = std::mem::take(&mut self.diagnostics);
            if errs.is_empty() {
                self.diagnostics = saved;
                return out;
            }
            let typed_ok = !errs.iter().any(|d| d.code == "wrong-type" && d.path == path_string(path));
            if typed_ok {
                fitting.push((b, errs));
            }
        }
        self.diagnostics = saved;
        if let Some((_, errs)) = fitting.into_iter().next() {
            self.diagnostics.extend(errs);
        } else {
            let wanted: Vec<String> = live.iter().map(|b| describe(self.resolve(b), self)).collect();
            let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
            let _ = schema;
            self.report(
                Diagnostic::new("wrong-type", path_string(path), format!("expected {}, found {} {}", join_or(&wanted), article(node.value.type_name()), snippet(node)))
                    .at(Some(node.span.clone())),
            );
        }
        None
    }

    fn discriminator(&self, branches: &[&'s Json]) -> Option<String> {
        let first = self.resolve(branches[0]).get("properties")?.as_object()?;
        first
            .iter()
            .filter(|(_, s)| s.get("const").is_some())
            .map(|(k, _)| k.clone())
            .find(|k| branches.iter().all(|b| self.resolve(b).pointer(&format!("/properties/{k}/const")).is_some()))
    }

    fn check_tagged(&mut self, tag: &str, branches: &[&'s Json], node: &Node, path: &mut Vec<PathSeg>, key_span: Option<Range<usize>>) -> Option<Json> {
        let names: Vec<&'s str> = branches.iter().filter_map(|b| self.resolve(b).pointer(&format!("/properties/{tag}/const"))?.as_str()).collect();
        let Value::Table(_) = &node.value else {
            self.report(
                Diagnostic::new("wrong-type", path_string(path), format!("expected a table with `{tag}` ({}), found {} {}", names.join(", "), article(node.value.type_name()), snippet(node)))
                    .at(Some(node.span.clone())),
            );
            return None;
        };
        let Some(entry) = node.get(tag) else {
            self.report(
                Diagnostic::new("missing-key", path_string(path), format!("missing key `{tag}`"))
                    .at(Some(key_span.unwrap_or(node.span.clone())))
                    .help(format!("`{tag}` is one of {}", names.join(", "))),
            );
            return None;
        };
        let chosen = match &entry.value.value {
            Value::String(s) => names.iter().position(|n| n == s),
            _ => None,
        };
        let Some(i) = chosen else {
            path.push(PathSeg::Key(tag.to_string()));
            let help = match &entry.value.value {
                Value::String(s) => did_you_mean(s, names.iter().copied()),
                _ => None,
            };
            self.report(
                Diagnostic::new("unknown-value", path_string(path), format!("unknown {tag} {}; expected one of {}", snippet(&entry.value), names.join(", ")))
                    .at(Some(entry.value.span.clone()))
                    .help_opt(help),
            );
            path.pop();
            return None;
        };
        self.check(branches[i], node, path, key_span)
    }

    fn check_table(&mut self, schema: &'s Json, node: &Node, entries: &[super::doc::Entry], path: &mut Vec<PathSeg>, key_span: Option<Range<usize>>) -> Option<Json> {
        let props = schema.get("properties").and_then(Json::as_object);
        let additional = schema.get("additionalProperties");
        let required: Vec<&str> = schema.get("required").and_then(Json::as_array).map(|r| r.iter().filter_map(Json::as_str).collect()).unwrap_or_default();
        let mut out = Map::new();
        let mut valid = true;
        for e in entries {
            path.push(PathSeg::Key(e.key.clone()));
            let prop_schema = props.and_then(|p| p.get(&e.key));
            match (prop_schema, additional) {
                (Some(s), _) => match self.check(s, &e.value, path, Some(e.key_span.clone())) {
                    Some(v) => {
                        out.insert(e.key.clone(), v);
                    }
                    // An invalid required value makes the table unusable; an optional one is dropped.
                    None => valid &= !required.contains(&e.key.as_str()),
                },
                (None, Some(Json::Bool(false))) => {
                    let known: Vec<&str> = props.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
                    let parent = path_string(&path[..path.len() - 1]);
                    let place = if parent.is_empty() { "at the top level".to_string() } else { format!("in `{parent}`") };
                    let help = did_you_mean(&e.key, known.iter().copied())
                        .or_else(|| (!known.is_empty()).then(|| format!("known keys: {}", known.join(", "))));
                    self.report(Diagnostic::new("unknown-key", path_string(path), format!("unknown key `{}` {place}", e.key)).at(Some(e.key_span.clone())).help_opt(help));
                }
                (None, Some(s)) if s.is_object() => match self.check(s, &e.value, path, Some(e.key_span.clone())) {
                    Some(v) => {
                        out.insert(e.key.clone(), v);
                    }
                    // A named entry (dataset, domain, ...) that is invalid would make every
                    // reference to it look wrong: give up on the whole map instead.
                    None => valid = false,
                },
                _ => match self.plain(&e.value, path) {
                    Some(v) => {
                        out.insert(e.key.clone(), v);
                    }
                    None => valid = false,
                },
            }
            path.pop();
        }
        for r in &required {
            if !entries.iter().any(|e| e.key == *r) {
                let what = if path.is_empty() { "the recipe".to_string() } else { format!("`{}`", path_string(path)) };
                let span = key_span.clone().unwrap_or(node.span.start..node.span.start);
                let prop = props.and_then(|p| p.get(*r)).map(|s| self.resolve(s));
                let help = prop.and_then(|s| s.get("description")).and_then(Json::as_str).map(|d| format!("`{r}`: {}", first_sentence(d)));
                self.report(Diagnostic::new("missing-key", path_string(path), format!("missing required key `{r}` in {what}")).at(Some(span)).help_opt(help));
                valid = false;
            }
        }
        valid.then_some(Json::Object(out))
    }

    fn check_array(&mut self, schema: &'s Json, node: &Node, items: &[Node], path: &mut Vec<PathSeg>) -> Option<Json> {
        let n = items.len() as u64;
        let mut ok = true;
        if let Some(min) = schema.get("minItems").and_then(Json::as_u64).filter(|m| n < *m) {
            let msg = if min == 1 { "must not be empty".to_string() } else { format!("needs at least {min} items, found {n}") };
            self.report(Diagnostic::new("too-few", path_string(path), msg).at(Some(node.span.clone())));
            ok = false;
        }
        if let Some(max) = schema.get("maxItems").and_then(Json::as_u64).filter(|m| n > *m) {
            self.report(Diagnostic::new("too-many", path_string(path), format!("takes at most {max} items, found {n}")).at(Some(node.span.clone())));
            ok = false;
        }
        let prefix = schema.get("prefixItems").and_then(Json::as_array);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_schema = prefix.and_then(|p| p.get(i)).or_else(|| schema.get("items"));
            path.push(PathSeg::Index(i));
            let v = match item_schema {
                Some(s) => self.check(s, item, path, None),
                None => self.plain(item, path),
            };
            path.pop();
            match v {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(Json::Array(out))
    }

    fn check_number(&mut self, schema: &Json, node: &Node, path: &[PathSeg]) -> Option<Json> {
        let x = match &node.value {
            Value::Integer(Some(i), _) => *i as f64,
            Value::Integer(None, text) => {
                self.report(Diagnostic::new("out-of-range", path_string(path), format!("integer {text} does not fit in 64 bits")).at(Some(node.span.clone())));
                return None;
            }
            Value::Float(f) => *f,
            _ => unreachable!("check_number on a non-number"),
        };
        if !x.is_finite() {
            self.report(Diagnostic::new("not-finite", path_string(path), format!("{} is not a finite number", snippet(node))).at(Some(node.span.clone())));
            return None;
        }
        let (mut lo, mut hi) = (schema.get("minimum").and_then(Json::as_f64), schema.get("maximum").and_then(Json::as_f64));
        let fmt_bound = match schema.get("format").and_then(Json::as_str) {
            Some("uint8") => Some(u8::MAX as f64),
            Some("uint16") => Some(u16::MAX as f64),
            Some("uint32" | "uint") => Some(u32::MAX as f64),
            _ => None,
        };
        if let Some(b) = fmt_bound {
            hi = Some(hi.map_or(b, |h| h.min(b)));
            lo = Some(lo.map_or(0.0, |l| l.max(0.0)));
        }
        let xlo = schema.get("exclusiveMinimum").and_then(Json::as_f64);
        let xhi = schema.get("exclusiveMaximum").and_then(Json::as_f64);
        let bad = lo.is_some_and(|l| x < l) || hi.is_some_and(|h| x > h) || xlo.is_some_and(|l| x <= l) || xhi.is_some_and(|h| x >= h);
        if bad {
            let range = match (lo, hi) {
                (Some(l), Some(h)) => format!("between {} and {}", num(l), num(h)),
                (Some(l), None) => format!("at least {}", num(l)),
                (None, Some(h)) => format!("at most {}", num(h)),
                (None, None) => String::new(),
            };
            let range = match (xlo, xhi) {
                (Some(l), _) => format!("greater than {}", num(l)),
                (_, Some(h)) => format!("less than {}", num(h)),
                _ => range,
            };
            self.report(Diagnostic::new("out-of-range", path_string(path), format!("{} is out of range: must be {range}", snippet(node))).at(Some(node.span.clone())));
            return None;
        }
        to_json(node)
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    matches!(
        (t, v),
        ("string", Value::String(_))
            | ("integer", Value::Integer(..))
            | ("number", Value::Integer(..) | Value::Float(_))
            | ("boolean", Value::Bool(_))
            | ("array", Value::Array(_))
            | ("object", Value::Table(_))
    )
}

fn is_null_schema(s: &Json) -> bool {
    s.get("type").and_then(Json::as_str) == Some("null") || s.get("const").is_some_and(Json::is_null)
}

fn toml_type_name(json_type: &str) -> &'static str {
    match json_type {
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "a boolean",
        "array" => "an array",
        "object" => "a table",
        _ => "a value",
    }
}

fn describe(s: &Json, v: &Validator<'_>) -> String {
    match s.get("type") {
        Some(Json::String(t)) => toml_type_name(t).to_string(),
        Some(Json::Array(ts)) => join_or(&ts.iter().filter_map(Json::as_str).filter(|t| *t != "null").map(toml_type_name).collect::<Vec<_>>()),
        _ => s.get("$ref").map(|_| describe(v.resolve(s), v)).unwrap_or_else(|| "a value".to_string()),
    }
}

fn join_or(items: &[&str]) -> String {
    match items {
        [] => "a value".to_string(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn article(type_name: &str) -> String {
    let a = if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{a} {type_name}")
}

fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 { format!("{}", x as i64) } else { format!("{x}") }
}

fn first_sentence(d: &str) -> String {
    let line = d.lines().next().unwrap_or("");
    line.split(". ").next().unwrap_or(line).trim_end_matches('.').to_string()
}

fn render_json(v: &Json) -> String {
    match v {
        Json::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

/// A short rendering of a value for messages.
fn snippet(node: &Node) -> String {
    let s = match &node.value {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(_, t) => t.clone(),
        Value::Float(f) => format!("{f}"),
        Value::Bool(b) => b.to_string(),
        Value::Datetime(d) => d.clone(),
        Value::Array(_) => return String::new(),
        Value::Table(_) => return String::new(),
    };
    let short: String = s.chars().take(40).collect();
    if short.len() < s.len() { format!("`{short}...`") } else { format!("`{short}`") }
}

/// Plain JSON of a node (None for values JSON cannot hold: non-finite floats, huge integers).
pub fn to_json(node: &Node) -> Option<Json> {
    Some(match &node.value {
        Value::String(s) => Json::String(s.clone()),
        Value::Integer(i, _) => Json::from((*i)?),
        Value::Float(f) => Json::from(serde_json::Number::from_f64(*f)?),
        Value::Bool(b) => Json::Bool(*b),
        Value::Datetime(d) => Json::String(d.clone()),
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect::<Option<_>>()?),
        Value::Table(entries) => Json::Object(entries.iter().map(|e| Some((e.key.clone(), to_json(&e.value)?))).collect::<Option<_>>()?),
    })
}
