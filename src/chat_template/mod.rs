//! Chat templates rendered the way Hugging Face transformers' `apply_chat_template(...,
//! tokenize=False)` renders them, so that a model sees the same prompt here as under transformers.
//!
//! A model's template is Jinja2 source from its `chat_template.jinja` or `tokenizer_config.json`
//! ([`load_template`]). [`ChatTemplate`] renders it with MiniJinja set up like transformers'
//! sandboxed Jinja2 environment: `trim_blocks`, `lstrip_blocks`, loop controls (`break`,
//! `continue`), the template's trailing newline dropped, no autoescaping, lenient undefined
//! variables, `raise_exception(msg)`, `strftime_now(format)`, transformers' `tojson` (Python's
//! `json.dumps`: no HTML escaping, `indent`, `ensure_ascii`, `separators`, `sort_keys`), Python
//! string/dict/list methods, and Python's spelling of printed values (`None`, `True`).
//!
//! The template sees what transformers gives it: `messages`, `add_generation_prompt`, `tools`
//! and `documents` (`none` unless given), the tokenizer's special tokens that are set
//! (`bos_token`, `eos_token`, `pad_token`, `unk_token`), and any extra variables
//! ([`ChatTemplate::render_with`]), which override the special tokens as in transformers.
//!
//! Known differences from transformers:
//! - Messages are `{role, content}` with string content. Content parts (images, audio) and
//!   assistant `tool_calls` are not representable in [`Message`]; `tools` and other variables
//!   can be passed as JSON through [`ChatTemplate::render_with`].
//! - Key order of JSON objects: `serde_json` and MiniJinja are built with `preserve_order`, so
//!   messages, extra variables (tool schemas) and dicts written in the template keep insertion
//!   order, as Python dicts do (tested).
//! - Python tuples (`dictsort`, `.items()` printed whole) print as lists.
//! - Jinja2 filters that MiniJinja lacks (`center`, `truncate`, `wordcount`, ...) are unknown.
//! - `{{ }}`, `string`, `join`, `trim` and `tojson` print floats and containers as Python does
//!   (`1e-07`, `['a', None]`); the `~` operator and MiniJinja's other filters print floats
//!   outside `1e-5..1e16` and containers the MiniJinja way.
//! - An unknown filter or test is an error when rendering, where Jinja2 fails when compiling.
//! - `{% generation %}` blocks (which transformers uses for assistant-token masks) render their
//!   body, as in transformers; the masks themselves are not computed.

mod environment;
mod json;
mod python;
mod values;

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use minijinja::Environment;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as JsonValue};

use environment::{RaisedException, build_environment, install_clock};

/// The file transformers saves a model's (default) chat template in, beside `tokenizer_config.json`.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// The older processor file of multimodal models: `{"chat_template": "..."}`.
pub const LEGACY_CHAT_TEMPLATE_JSON: &str = "chat_template.json";

/// The name errors give the template.
const TEMPLATE_NAME: &str = "chat_template";

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message { role: role.into(), content: content.into() }
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

/// The tokenizer's special tokens a template can print (`{{ bos_token }}`); unset ones are
/// undefined in the template, as in transformers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    pub unk_token: Option<String>,
}

impl SpecialTokens {
    /// The special tokens named in a `tokenizer_config.json`, written either as a string or as an
    /// added-token object `{"content": "<bos>", ...}`.
    pub fn from_tokenizer_config(config: &JsonValue) -> Self {
        let token = |name: &str| match &config[name] {
            JsonValue::String(text) => Some(text.clone()),
            JsonValue::Object(object) => object.get("content").and_then(JsonValue::as_str).map(str::to_string),
            _ => None,
        };
        SpecialTokens {
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
            pad_token: token("pad_token"),
            unk_token: token("unk_token"),
        }
    }

    fn named(&self) -> [(&'static str, &Option<String>); 4] {
        [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
            ("pad_token", &self.pad_token),
            ("unk_token", &self.unk_token),
        ]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template is not valid Jinja.
    #[error("chat template syntax error: {0}")]
    Syntax(String),
    /// The template called `raise_exception(message)`: it refuses these messages.
    #[error("chat template raised an exception: {0}")]
    Raised(String),
    /// Rendering failed otherwise (an undefined attribute, a type error, ...).
    #[error("chat template rendering failed: {0}")]
    Render(String),
    #[error("cannot read chat template {}: {error}", .path.display())]
    Io { path: PathBuf, error: io::Error },
    /// A template file exists but does not hold a template.
    #[error("invalid chat template file {}: {reason}", .path.display())]
    InvalidFile { path: PathBuf, reason: String },
}

/// What the template's `strftime_now` reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Clock {
    /// The local date and time when rendering, as transformers does.
    #[default]
    Local,
    /// A fixed instant: reproducible prompts, and renderings compared across days.
    Fixed(chrono::NaiveDateTime),
}

/// A parsed chat template with the tokenizer's special tokens, ready to render conversations.
#[derive(Clone)]
pub struct ChatTemplate {
    source: String,
    special: SpecialTokens,
    env: Environment<'static>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate").field("source", &self.source).field("special", &self.special).finish()
    }
}

impl ChatTemplate {
    /// Parses `source`; a syntax error is reported here rather than at the first render.
    pub fn new(source: &str, special: SpecialTokens) -> Result<Self, TemplateError> {
        let env = build_environment(Clock::default());
        let source = rewrite_generation_tags(source).into_owned();
        env.template_from_named_str(TEMPLATE_NAME, &source).map_err(|err| TemplateError::Syntax(err.to_string()))?;
        Ok(ChatTemplate { source, special, env })
    }

    /// The same template with `strftime_now` reading `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        install_clock(&mut self.env, clock);
        self
    }

    /// The template source as rendered (`{% generation %}` tags rewritten, see the module docs).
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// The prompt for `messages`; `add_generation_prompt` appends the header of the assistant's
    /// next turn.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, TemplateError> {
        self.render_with(messages, add_generation_prompt, &Map::new())
    }

    /// Like [`ChatTemplate::render`], with extra template variables (`tools`, `documents`,
    /// `enable_thinking`, `date_string`, ...), as transformers' `apply_chat_template(**kwargs)`.
    /// They override the special tokens of the same name; `messages` and
    /// `add_generation_prompt` always come from the arguments.
    pub fn render_with(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        extra: &Map<String, JsonValue>,
    ) -> Result<String, TemplateError> {
        use minijinja::Value;

        let mut context: Vec<(String, Value)> = Vec::new();
        for (name, token) in self.special.named() {
            if let Some(token) = token {
                context.push((name.to_string(), Value::from(token.as_str())));
            }
        }
        // transformers always passes these two, so `tools is defined` holds and `tools` is `none`.
        context.push(("tools".to_string(), Value::from(())));
        context.push(("documents".to_string(), Value::from(())));
        context.extend(extra.iter().map(|(name, value)| (name.clone(), values::json_value(value))));
        context.push(("messages".to_string(), messages.iter().map(values::message_value).collect()));
        context.push(("add_generation_prompt".to_string(), Value::from(add_generation_prompt)));
        // Later entries win, which gives the precedence described above.
        let context: Value = context.into_iter().collect::<std::collections::BTreeMap<_, _>>().into();

        let template = self
            .env
            .template_from_named_str(TEMPLATE_NAME, &self.source)
            .map_err(|err| TemplateError::Syntax(err.to_string()))?;
        template.render(context).map_err(render_error)
    }
}

/// transformers' `{% generation %}...{% endgeneration %}` extension tag only marks the assistant's
/// text for token masks and renders its body. MiniJinja has no such tag, so each becomes the block
/// tag `{% if true %}` / `{% endif %}` with the same whitespace-control marks (`-`, `+`), which
/// keeps `trim_blocks`/`lstrip_blocks` acting on it exactly as on the original tag.
fn rewrite_generation_tags(source: &str) -> Cow<'_, str> {
    if !source.contains("generation") {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        match parse_generation_tag(tag) {
            Some((replacement, tag_len)) => {
                out.push_str(&replacement);
                rest = &tag[tag_len..];
            }
            None => {
                out.push_str("{%");
                rest = &tag[2..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// If `tag` starts with `{%[-+] generation|endgeneration [-+]%}`, its replacement and length.
fn parse_generation_tag(tag: &str) -> Option<(String, usize)> {
    let inner = &tag[2..];
    let left_mark = inner.strip_prefix(['-', '+']).map_or("", |_| &inner[..1]);
    let after_mark = &inner[left_mark.len()..];
    let name_start = after_mark.trim_start();
    let (name, replacement_name) = if name_start.starts_with("endgeneration") {
        ("endgeneration", "endif")
    } else if name_start.starts_with("generation") {
        ("generation", "if true")
    } else {
        return None;
    };
    let after_name = name_start[name.len()..].trim_start();
    let right_mark = after_name.strip_prefix(['-', '+']).map_or("", |_| &after_name[..1]);
    let after_right_mark = after_name[right_mark.len()..].strip_prefix("%}")?;
    let tag_len = tag.len() - after_right_mark.len();
    Some((format!("{{%{left_mark} {replacement_name} {right_mark}%}}"), tag_len))
}

/// Sorts a MiniJinja error into [`TemplateError::Raised`] when `raise_exception` caused it.
fn render_error(err: minijinja::Error) -> TemplateError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(current) = cause {
        if let Some(raised) = current.downcast_ref::<RaisedException>() {
            return TemplateError::Raised(raised.0.clone());
        }
        cause = current.source();
    }
    TemplateError::Render(err.to_string())
}

/// The chat template in a `tokenizer_config.json`: `chat_template` as a string, or as a list of
/// `{"name": ..., "template": ...}` of which the one named `default` is taken (transformers
/// would pick `tool_use` instead when given tools). `None` when there is none.
pub fn template_from_tokenizer_config(config: &JsonValue) -> Option<String> {
    match config.get("chat_template")? {
        JsonValue::String(template) => Some(template.clone()),
        JsonValue::Array(templates) => templates
            .iter()
            .find(|entry| entry.get("name").and_then(JsonValue::as_str) == Some("default"))
            .and_then(|entry| entry.get("template"))
            .and_then(JsonValue::as_str)
            .map(str::to_string),
        _ => None,
    }
}

/// The chat template of the model in `dir`, looked up as transformers does: `chat_template.jinja`
/// takes precedence over `chat_template` in `tokenizer_config` (the parsed
/// `tokenizer_config.json` of `dir`); the legacy processor file `chat_template.json` comes last.
/// `Ok(None)` when the model has no chat template.
pub fn load_template(dir: &Path, tokenizer_config: Option<&JsonValue>) -> Result<Option<String>, TemplateError> {
    if let Some(template) = read_if_present(&dir.join(CHAT_TEMPLATE_FILE))? {
        return Ok(Some(template));
    }
    if let Some(template) = tokenizer_config.and_then(template_from_tokenizer_config) {
        return Ok(Some(template));
    }
    let legacy_path = dir.join(LEGACY_CHAT_TEMPLATE_JSON);
    let Some(legacy) = read_if_present(&legacy_path)? else {
        return Ok(None);
    };
    let invalid = |reason: String| TemplateError::InvalidFile { path: legacy_path.clone(), reason };
    let legacy: JsonValue = serde_json::from_str(&legacy).map_err(|err| invalid(err.to_string()))?;
    template_from_tokenizer_config(&legacy)
        .map(Some)
        .ok_or_else(|| invalid("no \"chat_template\" string in it".to_string()))
}

fn read_if_present(path: &Path) -> Result<Option<String>, TemplateError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(TemplateError::Io { path: path.to_path_buf(), error }),
    }
}
