//! The MiniJinja environment that imitates the Jinja2 environment transformers renders chat
//! templates in (`_cached_compile_jinja_template` in `transformers/utils/chat_template_utils.py`):
//! `trim_blocks` and `lstrip_blocks`, loop controls, the trailing newline dropped, no
//! autoescaping, `raise_exception`, `strftime_now`, transformers' `tojson`, Python string, dict
//! and list methods, and Python's spelling of printed values.

use std::fmt::{self, Write as _};

use chrono::format::{Item, StrftimeItems};
use minijinja::value::{Value, from_args};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior};

use super::Clock;
use super::json::tojson_filter;
use super::python::{StripSide, python_str, python_strip, write_python_str};

/// The error `raise_exception(message)` attaches as the source of the MiniJinja error, so that
/// rendering can tell a template's deliberate refusal from a failure of the engine.
#[derive(Debug)]
pub(crate) struct RaisedException(pub String);

impl fmt::Display for RaisedException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedException {}

pub(crate) fn build_environment(clock: Clock) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    // Jinja2's default, which transformers keeps: a single newline ending the template is dropped.
    env.set_keep_trailing_newline(false);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // Jinja2's default `Undefined`: printing, iterating and testing an undefined value is fine,
    // reading an attribute of one is an error.
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_unknown_method_callback(python_method);
    env.set_formatter(python_formatter);

    env.add_function("raise_exception", raise_exception);
    install_clock(&mut env, clock);
    env.add_filter("tojson", tojson_filter);
    // Jinja2 filters that MiniJinja spells differently on edge cases: Python's whitespace and
    // `str()` of non-strings, and `len(Undefined) == 0`.
    env.add_filter("trim", trim_filter);
    env.add_filter("string", string_filter);
    env.add_filter("join", join_filter);
    env.add_filter("replace", replace_filter);
    env.add_filter("length", length_filter);
    env.add_filter("count", length_filter);
    env
}

/// `{{ value }}` prints `str(value)` as Python would: `None`, `True`, `['a', 1]`, `1e-05`.
fn python_formatter(out: &mut Output, _state: &State, value: &Value) -> Result<(), Error> {
    let mut text = String::new();
    write_python_str(&mut text, value);
    out.write_str(&text).map_err(|_| Error::from(ErrorKind::WriteFailure))
}

/// Python methods on values (`.strip()`, `.split()`, `.items()`, `.get()`, ...). The strip family
/// (Python's idea of whitespace) and `find`/`rfind` (character indices) are done here; the rest
/// comes from `minijinja_contrib`.
fn python_method(state: &State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if let Some(text) = value.as_str() {
        let side = match method {
            "strip" => Some(StripSide::Both),
            "lstrip" => Some(StripSide::Start),
            "rstrip" => Some(StripSide::End),
            _ => None,
        };
        if let Some(side) = side {
            let (chars,): (Option<Option<&str>>,) = from_args(args)?;
            return Ok(Value::from(python_strip(text, chars.flatten(), side)));
        }
        // Python counts characters where `minijinja_contrib` reports byte offsets.
        let found = match method {
            "find" => Some(text.find(from_args::<(&str,)>(args)?.0)),
            "rfind" => Some(text.rfind(from_args::<(&str,)>(args)?.0)),
            _ => None,
        };
        if let Some(found) = found {
            return Ok(Value::from(found.map_or(-1, |byte| text[..byte].chars().count() as i64)));
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// `raise_exception(message)`: the template refuses its input (a role order it cannot format,
/// say); [`super::ChatTemplate::render`] turns this into [`super::TemplateError::Raised`].
fn raise_exception(message: Value) -> Result<Value, Error> {
    let message = python_str(&message);
    Err(Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(RaisedException(message)))
}

/// (Re)defines `strftime_now(format)`: the date and time `clock` reads, in a C `strftime` format,
/// as transformers provides it (Llama 3.2 writes today's date into its system prompt with it).
pub(crate) fn install_clock(env: &mut Environment<'static>, clock: Clock) {
    env.add_function("strftime_now", move |format: &str| strftime_now(clock, format));
}

fn strftime_now(clock: Clock, format: &str) -> Result<String, Error> {
    let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
    if items.iter().any(|item| matches!(item, Item::Error)) {
        return Err(Error::new(ErrorKind::InvalidOperation, format!("invalid strftime format {format:?}")));
    }
    let mut text = String::new();
    let written = match clock {
        Clock::Local => write!(text, "{}", chrono::Local::now().format_with_items(items.into_iter())),
        Clock::Fixed(instant) => write!(text, "{}", instant.format_with_items(items.into_iter())),
    };
    written.map_err(|_| Error::new(ErrorKind::InvalidOperation, format!("cannot format the date as {format:?}")))?;
    Ok(text)
}

/// Jinja2's `trim(value, chars=None)`: `str(value).strip(chars)`.
fn trim_filter(value: &Value, chars: Option<Option<&str>>) -> String {
    python_strip(&python_str(value), chars.flatten(), StripSide::Both).to_string()
}

/// Jinja2's `string`: `str(value)`.
fn string_filter(value: &Value) -> String {
    python_str(value)
}

/// Jinja2's `replace(s, old, new, count=None)`: `str.replace`, the first `count` occurrences only
/// when `count` is given (MiniJinja's `replace` has no `count`).
fn replace_filter(value: &Value, old: &str, new: &str, count: Option<i64>) -> String {
    let text = python_str(value);
    match count.and_then(|count| usize::try_from(count).ok()) {
        Some(count) => text.replacen(old, new, count),
        None => text.replace(old, new),
    }
}

/// Jinja2's `join(value, d='')`, with items printed by `str()`.
fn join_filter(value: &Value, separator: Option<&str>) -> Result<String, Error> {
    let mut text = String::new();
    for (index, item) in value.try_iter()?.enumerate() {
        if index > 0 {
            text.push_str(separator.unwrap_or_default());
        }
        write_python_str(&mut text, &item);
    }
    Ok(text)
}

/// Jinja2's `length`/`count`: `len(value)`, which is 0 for an undefined value.
fn length_filter(value: &Value) -> Result<usize, Error> {
    if value.is_undefined() {
        return Ok(0);
    }
    value
        .len()
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, format!("object of type {} has no len()", value.kind())))
}
