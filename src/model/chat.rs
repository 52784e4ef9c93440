//! A model's own chat template (HF Jinja `chat_template`, from tokenizer_config.json or GGUF
//! metadata) rendered with minijinja the way transformers' `apply_chat_template` renders it:
//! `trim_blocks` and `lstrip_blocks` on, loop controls, `raise_exception(msg)`,
//! `strftime_now(fmt)`, `tojson` with Python's `json.dumps` spacing, Python string and dict
//! methods (`.strip()`, `.startswith()`, `.items()`, ...; minijinja-contrib's pycompat), and the
//! variables `messages`, `add_generation_prompt`, `bos_token`, `eos_token`.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("chat template does not parse: {0}")]
    Syntax(String),
    /// The template itself refused the conversation (`raise_exception`).
    #[error("chat template refused the conversation: {0}")]
    Raised(String),
    #[error("chat template failed to render: {0}")]
    Render(String),
    #[error("no chat template: {0}")]
    Missing(String),
}

const NAME: &str = "chat_template";
const RAISED: &str = "raise_exception: ";

/// A compiled chat template with the special tokens it may refer to.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: Option<String>,
    eos: Option<String>,
    source: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("bos", &self.bos).field("eos", &self.eos).field("source", &self.source).finish()
    }
}

fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

impl ChatTemplate {
    pub fn new(template: &str, bos: Option<String>, eos: Option<String>) -> Result<Self, ChatError> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build().map_err(|e| ChatError::Syntax(describe(&e)))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, format!("{RAISED}{msg}")))
        });
        env.add_function("strftime_now", |fmt: String| -> Result<Value, Error> { Ok(Value::from(strftime_utc_now(&fmt))) });
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, template.to_string()).map_err(|e| ChatError::Syntax(describe(&e)))?;
        Ok(ChatTemplate { env, bos, eos, source: template.to_string() })
    }

    /// From an HF `tokenizer_config.json` value: its `chat_template` (a string, or a list of named
    /// templates of which `default` is taken) and its `bos_token` / `eos_token`.
    pub fn from_tokenizer_config(cfg: &serde_json::Value) -> Result<Self, ChatError> {
        let template = match cfg.get("chat_template") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")?.as_str().map(str::to_string))
                .ok_or_else(|| ChatError::Missing("tokenizer_config.json lists chat templates but none named `default`".into()))?,
            _ => return Err(ChatError::Missing("tokenizer_config.json has no `chat_template`".into())),
        };
        let token = |k: &str| match cfg.get(k) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Object(o)) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
            _ => None,
        };
        Self::new(&template, token("bos_token"), token("eos_token"))
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Render a conversation; with `add_generation_prompt`, the opening of the assistant's turn.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, ChatError> {
        let tmpl = self.env.get_template(NAME).map_err(|e| ChatError::Syntax(describe(&e)))?;
        let ctx = minijinja::context! {
            messages => Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos.clone().unwrap_or_default(),
            eos_token => self.eos.clone().unwrap_or_default(),
        };
        tmpl.render(ctx).map_err(|e| match e.detail().and_then(|d| d.strip_prefix(RAISED)) {
            Some(msg) if e.kind() == ErrorKind::InvalidOperation => ChatError::Raised(msg.to_string()),
            _ => ChatError::Render(describe(&e)),
        })
    }
}

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False, indent=indent,
/// separators=separators, sort_keys=sort_keys)`, i.e. `", "` and `": "` unless indented.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(value).map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    py_dumps(&json, indent, sort_keys.unwrap_or(false), 0, &mut out);
    Ok(Value::from_safe_string(out))
}

fn py_dumps(v: &serde_json::Value, indent: Option<usize>, sort: bool, depth: usize, out: &mut String) {
    use serde_json::Value as J;
    let (item_sep, key_sep) = if indent.is_some() { (",", ": ") } else { (", ", ": ") };
    let newline = |out: &mut String, d: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * d));
        }
    };
    match v {
        J::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                py_dumps(x, indent, sort, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        J::Object(o) if !o.is_empty() => {
            out.push('{');
            let mut keys: Vec<&String> = o.keys().collect();
            if sort {
                keys.sort();
            }
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push_str(key_sep);
                py_dumps(&o[k], indent, sort, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap_or_default()),
    }
}

/// `strftime(fmt)` of the current UTC time, for the directives chat templates use
/// (`%Y %m %d %e %H %I %M %S %p %y %b %B %a %A %j %%`, and glibc's `%-d` / `%-m` unpadded).
pub fn strftime_utc_now(fmt: &str) -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    strftime_utc(secs, fmt)
}

/// `strftime` of a Unix time (UTC).
pub fn strftime_utc(unix_secs: i64, fmt: &str) -> String {
    const MONTHS: [&str; 12] = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    let days = unix_secs.div_euclid(86_400);
    let sod = unix_secs.rem_euclid(86_400);
    let (h, mi, s) = (sod / 3600, sod % 3600 / 60, sod % 60);
    let (y, m, d) = crate::civil::civil_from_days(days);
    let (m, d) = (i64::from(m), i64::from(d));
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = cum[(m - 1) as usize] + d + i64::from(leap && m > 2);
    let wday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday (Monday = 0)
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let unpadded = chars.peek() == Some(&'-');
        if unpadded {
            chars.next();
        }
        let pad2 = |n: i64| if unpadded { n.to_string() } else { format!("{n:02}") };
        match chars.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&pad2(y % 100)),
            Some('m') => out.push_str(&pad2(m)),
            Some('d') => out.push_str(&pad2(d)),
            Some('e') => out.push_str(&format!("{d:>2}")),
            Some('H') => out.push_str(&pad2(h)),
            Some('I') => out.push_str(&pad2(if h % 12 == 0 { 12 } else { h % 12 })),
            Some('p') => out.push_str(if h < 12 { "AM" } else { "PM" }),
            Some('M') => out.push_str(&pad2(mi)),
            Some('S') => out.push_str(&pad2(s)),
            Some('j') => out.push_str(&if unpadded { yday.to_string() } else { format!("{yday:03}") }),
            Some('b') => out.push_str(&MONTHS[(m - 1) as usize][..3]),
            Some('B') => out.push_str(MONTHS[(m - 1) as usize]),
            Some('a') => out.push_str(&DAYS[wday][..3]),
            Some('A') => out.push_str(DAYS[wday]),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                if unpadded {
                    out.push('-');
                }
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chatml_with_generation_prompt() {
        let t = ChatTemplate::new(CHATML, None, None).unwrap();
        let out = t.render(&[ChatMessage::user("hi")], true).unwrap();
        assert_eq!(out, "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
        let out = t.render(&[ChatMessage::system("S"), ChatMessage::user("hi")], false).unwrap();
        assert_eq!(out, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n");
    }

    #[test]
    fn helpers_python_methods_and_whitespace() {
        let src = "{{ bos_token }}\n{% for m in messages %}\n  {% if m.role not in ['user', 'assistant'] %}{{ raise_exception('bad role ' + m.role) }}{% endif %}\n  {% if m.content.strip().startswith('x') %}X{% else %}{{ m.content.strip() }}{% endif %}{{ eos_token }}\n{% endfor %}";
        let t = ChatTemplate::new(src, Some("<s>".into()), Some("</s>".into())).unwrap();
        assert_eq!(t.render(&[ChatMessage::user("  a  "), ChatMessage::assistant("xy")], false).unwrap(), "<s>\na</s>\nX</s>\n"); // as jinja2 renders it
        match t.render(&[ChatMessage::system("s")], false) {
            Err(ChatError::Raised(m)) => assert_eq!(m, "bad role system"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(ChatTemplate::new("{% for %}", None, None), Err(ChatError::Syntax(_))));
    }

    #[test]
    fn loop_controls_tojson_and_dates() {
        let src = "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ {'b': [1, 2], 'a': m.content} | tojson }}{% endfor %}|{{ strftime_now('%Y') | length }}";
        let t = ChatTemplate::new(src, None, None).unwrap();
        assert_eq!(t.render(&[ChatMessage::user("é<"), ChatMessage::user("z")], false).unwrap(), "{\"b\": [1, 2], \"a\": \"é<\"}|4");
        // 2024-07-26 13:05:09 UTC was a Friday, day 208.
        assert_eq!(strftime_utc(1_721_999_109, "%d %b %Y %A %j %H:%M:%S %-d/%-m %y%%"), "26 Jul 2024 Friday 208 13:05:09 26/7 24%");
        assert_eq!(strftime_utc(0, "%Y-%m-%d %a"), "1970-01-01 Thu");
        assert_eq!(strftime_utc(951_782_400, "%Y-%m-%d %j"), "2000-02-29 060");
    }

    /// Renders recorded with jinja2 configured as transformers' apply_chat_template
    /// (scripts/fixtures/make_smollm2_tokenizer_fixture.py).
    #[test]
    fn matches_jinja2_renders() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chat_templates.json");
        let fx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let tok = |k: &str| fx[k].as_str().map(str::to_string);
        let template = |name: &str| ChatTemplate::new(fx["templates"][name].as_str().unwrap(), tok("bos_token"), tok("eos_token")).unwrap();
        let messages = |v: &serde_json::Value| -> Vec<ChatMessage> { serde_json::from_value(v["messages"].clone()).unwrap() };
        let renders = fx["renders"].as_array().unwrap();
        assert_eq!(renders.len(), 6);
        for r in renders {
            let t = template(r["template"].as_str().unwrap());
            let got = t.render(&messages(r), r["add_generation_prompt"].as_bool().unwrap()).unwrap();
            assert_eq!(got, r["text"].as_str().unwrap(), "template {}", r["template"]);
        }
        for e in fx["errors"].as_array().unwrap() {
            let t = template(e["template"].as_str().unwrap());
            match t.render(&messages(e), false) {
                Err(ChatError::Raised(m)) => assert_eq!(m, e["error"].as_str().unwrap()),
                other => panic!("expected the template to raise, got {other:?}"),
            }
        }
    }

    #[test]
    fn from_tokenizer_config_reads_tokens() {
        let cfg = serde_json::json!({"chat_template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}", "bos_token": {"content": "<s>"}, "eos_token": "</s>"});
        let t = ChatTemplate::from_tokenizer_config(&cfg).unwrap();
        assert_eq!(t.render(&[ChatMessage::user("q")], false).unwrap(), "<s>q</s>");
        assert!(matches!(ChatTemplate::from_tokenizer_config(&serde_json::json!({})), Err(ChatError::Missing(_))));
    }
}
