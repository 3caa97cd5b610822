//! `tojson` as transformers defines it for chat templates: Python's `json.dumps` with
//! `ensure_ascii=False` by default, `indent`, `separators` and `sort_keys`, and no HTML escaping
//! (Jinja2's own `tojson`, which MiniJinja copies, escapes `<`, `>`, `&` and `'`).

use std::cmp::Ordering;
use std::fmt::Write as _;

use minijinja::value::{Kwargs, Rest, Value, ValueKind};
use minijinja::{Error, ErrorKind};

use super::python::{as_float, python_float_repr};

/// The arguments of `json.dumps` that transformers' `tojson` passes on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JsonOptions {
    pub ensure_ascii: bool,
    /// The text of one indentation level; `None` writes everything on one line.
    pub indent: Option<String>,
    pub item_separator: String,
    pub key_separator: String,
    pub sort_keys: bool,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions {
            ensure_ascii: false,
            indent: None,
            item_separator: ", ".to_string(),
            key_separator: ": ".to_string(),
            sort_keys: false,
        }
    }
}

/// The `tojson` filter: `value | tojson(ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`, with the arguments by position or by name as in transformers' signature.
pub(crate) fn tojson_filter(value: &Value, positional: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    const PARAMETERS: [&str; 4] = ["ensure_ascii", "indent", "separators", "sort_keys"];
    if positional.len() > PARAMETERS.len() {
        return Err(Error::new(ErrorKind::TooManyArguments, "tojson() takes at most 4 arguments"));
    }
    let argument = |index: usize| positional_or_keyword(positional.get(index).cloned(), &kwargs, PARAMETERS[index]);
    let ensure_ascii = argument(0)?;
    let indent = argument(1)?;
    let separators = argument(2)?;
    let sort_keys = argument(3)?;
    kwargs.assert_all_used()?;

    let indent = match indent {
        None => None,
        Some(indent) if indent.is_none() => None,
        Some(indent) => Some(indent_text(&indent)?),
    };
    // Like `json.dumps`: without explicit separators, indented output ends lines with a bare comma.
    let (item_separator, key_separator) = match separators {
        Some(separators) if !separators.is_none() => separator_pair(&separators)?,
        _ if indent.is_some() => (",".to_string(), ": ".to_string()),
        _ => (", ".to_string(), ": ".to_string()),
    };
    let options = JsonOptions {
        ensure_ascii: ensure_ascii.is_some_and(|flag| flag.is_true()),
        indent,
        item_separator,
        key_separator,
        sort_keys: sort_keys.is_some_and(|flag| flag.is_true()),
    };
    python_json_dumps(value, &options).map(Value::from)
}

fn positional_or_keyword(positional: Option<Value>, kwargs: &Kwargs, name: &str) -> Result<Option<Value>, Error> {
    let keyword: Option<Value> = kwargs.get(name)?;
    match (positional, keyword) {
        (Some(_), Some(_)) => {
            Err(Error::new(ErrorKind::TooManyArguments, format!("tojson() got multiple values for argument '{name}'")))
        }
        (positional, keyword) => Ok(positional.or(keyword)),
    }
}

/// `json.dumps` takes an indent as a number of spaces or as the text itself.
fn indent_text(indent: &Value) -> Result<String, Error> {
    if let Some(text) = indent.as_str() {
        return Ok(text.to_string());
    }
    match indent.as_i64() {
        Some(spaces) => Ok(" ".repeat(usize::try_from(spaces).unwrap_or(0))),
        None => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson indent must be an integer or a string, not {}", indent.kind()),
        )),
    }
}

fn separator_pair(separators: &Value) -> Result<(String, String), Error> {
    let items: Vec<Value> = separators.try_iter().map(Iterator::collect).unwrap_or_default();
    match items.as_slice() {
        [item, key] if item.as_str().is_some() && key.as_str().is_some() => {
            Ok((item.as_str().unwrap_or_default().to_string(), key.as_str().unwrap_or_default().to_string()))
        }
        _ => Err(Error::new(ErrorKind::InvalidOperation, "tojson separators must be a pair of strings")),
    }
}

/// Python's `json.dumps(value, ...)` with the given options.
pub(crate) fn python_json_dumps(value: &Value, options: &JsonOptions) -> Result<String, Error> {
    let mut out = String::new();
    write_value(&mut out, value, options, 0)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &Value, options: &JsonOptions, depth: usize) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(out, value),
        ValueKind::String => write_string(out, value.as_str().unwrap_or_default(), options.ensure_ascii),
        ValueKind::Seq => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, '[', ']', items.len(), options, depth, |out, index| {
                write_value(out, &items[index], options, depth + 1)
            })?;
        }
        ValueKind::Map => {
            let mut pairs = map_pairs(value);
            if options.sort_keys {
                sort_pairs(&mut pairs)?;
            }
            write_container(out, '{', '}', pairs.len(), options, depth, |out, index| {
                let (key, item) = &pairs[index];
                write_key(out, key, options.ensure_ascii)?;
                out.push_str(&options.key_separator);
                write_value(out, item, options, depth + 1)
            })?;
        }
        kind => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("object of type {kind} is not JSON serializable"),
            ));
        }
    }
    Ok(())
}

/// Writes `open item, item close`, or one item a line when indenting, as `json.dumps` does.
fn write_container(
    out: &mut String,
    open: char,
    close: char,
    len: usize,
    options: &JsonOptions,
    depth: usize,
    mut write_item: impl FnMut(&mut String, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if len == 0 {
        out.push(close);
        return Ok(());
    }
    let newline_indent = |level: usize| options.indent.as_ref().map(|indent| format!("\n{}", indent.repeat(level)));
    let inner = newline_indent(depth + 1).unwrap_or_default();
    out.push_str(&inner);
    for index in 0..len {
        if index > 0 {
            out.push_str(&options.item_separator);
            out.push_str(&inner);
        }
        write_item(out, index)?;
    }
    out.push_str(&newline_indent(depth).unwrap_or_default());
    out.push(close);
    Ok(())
}

fn map_pairs(value: &Value) -> Vec<(Value, Value)> {
    value.as_object().and_then(|object| object.try_iter_pairs()).into_iter().flatten().collect()
}

/// `sorted(dict.items())`: Python orders keys of one kind and refuses to compare mixed kinds.
fn sort_pairs(pairs: &mut [(Value, Value)]) -> Result<(), Error> {
    let all_strings = pairs.iter().all(|(key, _)| key.kind() == ValueKind::String);
    let all_numbers = pairs.iter().all(|(key, _)| matches!(key.kind(), ValueKind::Number | ValueKind::Bool));
    if !all_strings && !all_numbers {
        return Err(Error::new(ErrorKind::InvalidOperation, "tojson(sort_keys=True) cannot order keys of mixed types"));
    }
    // Rust orders strings by UTF-8 bytes, which is the same as Python's code point order.
    pairs.sort_by(|(a, _), (b, _)| a.partial_cmp(b).unwrap_or(Ordering::Equal));
    Ok(())
}

/// JSON object keys: `json.dumps` turns numbers, booleans and None into strings and rejects the rest.
fn write_key(out: &mut String, key: &Value, ensure_ascii: bool) -> Result<(), Error> {
    match key.kind() {
        ValueKind::String => write_string(out, key.as_str().unwrap_or_default(), ensure_ascii),
        ValueKind::None | ValueKind::Bool | ValueKind::Number => {
            let mut text = String::new();
            write_value(&mut text, key, &JsonOptions::default(), 0)?;
            write_string(out, &text, ensure_ascii);
        }
        kind => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("keys must be str, int, float, bool or None, not {kind}"),
            ));
        }
    }
    Ok(())
}

fn write_number(out: &mut String, value: &Value) {
    match as_float(value) {
        // `json.dumps` has `allow_nan=True`: it writes JavaScript's names for these.
        Some(float) if float.is_nan() => out.push_str("NaN"),
        Some(float) if float.is_infinite() => out.push_str(if float > 0.0 { "Infinity" } else { "-Infinity" }),
        Some(float) => out.push_str(&python_float_repr(float)),
        None => {
            let _ = write!(out, "{value}");
        }
    }
}

/// A JSON string as `json.dumps` writes it: `\"`, `\\` and the short escapes, `\u00XX` for other
/// control characters, and with `ensure_ascii` every non-ASCII character as `\uXXXX` (UTF-16).
fn write_string(out: &mut String, text: &str, ensure_ascii: bool) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if c < ' ' || (ensure_ascii && !(' '..='~').contains(&c)) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dumps(json: serde_json::Value, options: &JsonOptions) -> String {
        python_json_dumps(&Value::from_serialize(json), options).unwrap()
    }

    #[test]
    fn compact_output_uses_python_separators() {
        let out = dumps(serde_json::json!({"a": [1, 2.5, null, true], "b": {}}), &JsonOptions::default());
        assert_eq!(out, r#"{"a": [1, 2.5, null, true], "b": {}}"#);
    }

    #[test]
    fn indented_output_matches_json_dumps() {
        let options = JsonOptions { indent: Some("  ".into()), item_separator: ",".into(), ..Default::default() };
        let out = dumps(serde_json::json!({"a": [1, []], "b": "x"}), &options);
        assert_eq!(out, "{\n  \"a\": [\n    1,\n    []\n  ],\n  \"b\": \"x\"\n}");
    }

    #[test]
    fn ensure_ascii_escapes_as_utf16() {
        let options = JsonOptions { ensure_ascii: true, ..Default::default() };
        assert_eq!(dumps(serde_json::json!("é😀\u{7f}"), &options), r#""\u00e9\ud83d\ude00\u007f""#);
        assert_eq!(dumps(serde_json::json!("é😀\u{1}"), &JsonOptions::default()), "\"é😀\\u0001\"");
    }
}
