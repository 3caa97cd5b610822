//! How Python prints values, for the places where Jinja2 (and so transformers) calls `str()` or
//! `repr()` and MiniJinja would otherwise print its own spelling (`none`, `true`, `["a"]`).

use std::fmt::Write as _;

use minijinja::value::{Value, ValueKind};

/// Python's `str.isspace()`: Rust's `char::is_whitespace` plus the four ASCII information
/// separators (U+001C..U+001F), which Python counts as whitespace and Unicode does not.
pub(crate) fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Which ends of a string `str.strip` and its siblings remove characters from.
#[derive(Clone, Copy)]
pub(crate) enum StripSide {
    Both,
    Start,
    End,
}

/// Python's `str.strip(chars)` / `lstrip` / `rstrip`: whitespace when `chars` is `None`,
/// otherwise any character of `chars`.
pub(crate) fn python_strip<'a>(text: &'a str, chars: Option<&str>, side: StripSide) -> &'a str {
    let strip_char = |c: char| match chars {
        Some(chars) => chars.contains(c),
        None => is_python_whitespace(c),
    };
    match side {
        StripSide::Both => text.trim_matches(strip_char),
        StripSide::Start => text.trim_start_matches(strip_char),
        StripSide::End => text.trim_end_matches(strip_char),
    }
}

/// Python's `str(value)`, which is what Jinja2 prints for `{{ value }}`.
pub(crate) fn python_str(value: &Value) -> String {
    let mut out = String::new();
    write_python_str(&mut out, value);
    out
}

pub(crate) fn write_python_str(out: &mut String, value: &Value) {
    match value.kind() {
        // Jinja2's `Undefined` prints as the empty string.
        ValueKind::Undefined => {}
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        _ => write_python_repr(out, value),
    }
}

/// Python's `repr(value)`: what `str()` gives for containers and their items.
pub(crate) fn write_python_repr(out: &mut String, value: &Value) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => write_python_number(out, value),
        ValueKind::String => write_python_string_repr(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq => {
            out.push('[');
            for (index, item) in value.try_iter().into_iter().flatten().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_python_repr(out, &item);
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            let pairs = value.as_object().and_then(|object| object.try_iter_pairs());
            for (index, (key, item)) in pairs.into_iter().flatten().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_python_repr(out, &key);
                out.push_str(": ");
                write_python_repr(out, &item);
            }
            out.push('}');
        }
        // Bytes, iterators, namespaces, functions: no Python spelling worth imitating.
        _ => {
            let _ = write!(out, "{value}");
        }
    }
}

/// Integers as digits; floats as Python's `repr(float)` (`1.0`, `1e-05`, `1e+16`, `nan`, `inf`).
fn write_python_number(out: &mut String, value: &Value) {
    match as_float(value) {
        Some(float) if float.is_nan() => out.push_str("nan"),
        Some(float) if float.is_infinite() => out.push_str(if float > 0.0 { "inf" } else { "-inf" }),
        Some(float) => out.push_str(&python_float_repr(float)),
        None => {
            let _ = write!(out, "{value}");
        }
    }
}

/// The value of a float number; `None` for integers (and anything else), which print as digits.
pub(crate) fn as_float(value: &Value) -> Option<f64> {
    if value.kind() != ValueKind::Number || value.is_integer() {
        return None;
    }
    f64::try_from(value.clone()).ok()
}

/// `repr()` of a finite float, as CPython writes it: the shortest digits that round-trip, in
/// positional notation when the decimal exponent is in `-5 < exponent < 16`, else scientific
/// notation with a signed exponent of at least two digits.
pub(crate) fn python_float_repr(value: f64) -> String {
    // Rust's `{:e}` gives the same shortest round-trip digits, as `d.ddde<exp>`.
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();

    let mut out = String::from(sign);
    if (-4..16).contains(&exponent) {
        // Position of the decimal point counted from the start of `digits`.
        let point = exponent + 1;
        if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
            out.push_str(&digits);
        } else {
            let point = point as usize;
            if digits.len() <= point {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', point - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.unsigned_abs());
    }
    out
}

/// Python's `repr(str)`: single quotes unless the text has a single quote and no double quote,
/// with backslash escapes for the quote, backslashes and characters Python does not print.
fn write_python_string_repr(out: &mut String, text: &str) {
    let quote = if text.contains('\'') && !text.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !is_python_printable(c) => {
                let code = c as u32;
                let _ = if code <= 0xff {
                    write!(out, "\\x{code:02x}")
                } else if code <= 0xffff {
                    write!(out, "\\u{code:04x}")
                } else {
                    write!(out, "\\U{code:08x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// An approximation of Python's `str.isprintable()` for one character: control characters,
/// the separators other than the ASCII space and the common format characters are escaped.
/// (Python also escapes unassigned and private-use code points, which this does not know.)
fn is_python_printable(c: char) -> bool {
    !(c.is_control()
        || matches!(
            c,
            '\u{a0}'
                | '\u{ad}'
                | '\u{1680}'
                | '\u{2000}'..='\u{200f}'
                | '\u{2028}'..='\u{202f}'
                | '\u{205f}'..='\u{2064}'
                | '\u{3000}'
                | '\u{feff}'
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456.789, "123456.789"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e100, "1.2345e+100"),
            (-2.5, "-2.5"),
        ];
        for (value, expected) in cases {
            assert_eq!(python_float_repr(value), expected, "{value}");
        }
    }

    #[test]
    fn repr_of_containers_matches_python() {
        let value = Value::from_serialize(serde_json::json!(["a", 1, null, true, "it's", 2.0]));
        let mut out = String::new();
        write_python_repr(&mut out, &value);
        assert_eq!(out, r#"['a', 1, None, True, "it's", 2.0]"#);
    }

    #[test]
    fn strip_uses_python_whitespace() {
        assert_eq!(python_strip("\u{1f} x \u{a0}\n", None, StripSide::Both), "x");
        assert_eq!(python_strip("xxaxx", Some("x"), StripSide::Start), "axx");
        assert_eq!(python_strip("xxaxx", Some("x"), StripSide::End), "xxa");
    }
}
