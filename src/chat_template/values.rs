//! Template values built from messages and JSON with their keys in the order given.
//!
//! Python dicts keep insertion order, which templates expose through `tojson` and `.items()`: a
//! message prints as `{"role": ..., "content": ...}` in transformers. Maps that reach the template
//! through this module keep their order regardless of MiniJinja's own map type (the crate also
//! enables MiniJinja's `preserve_order`, so maps written in the template keep theirs too).

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectExt, ObjectRepr, Value};
use serde_json::Value as JsonValue;

use super::Message;

/// A mapping that iterates in insertion order. Lookups are linear: template maps are small.
#[derive(Debug)]
struct OrderedMap {
    entries: Vec<(Value, Value)>,
}

impl Object for OrderedMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.entries.iter().find(|(entry_key, _)| entry_key == key).map(|(_, value)| value.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_key_value_enumerator(|map| Box::new(map.entries.iter().cloned()))
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.entries.len())
    }
}

fn ordered_map(entries: impl IntoIterator<Item = (Value, Value)>) -> Value {
    Value::from_object(OrderedMap { entries: entries.into_iter().collect() })
}

/// A message as transformers hands it to the template: `{"role": ..., "content": ...}`.
pub(crate) fn message_value(message: &Message) -> Value {
    ordered_map([
        (Value::from("role"), Value::from(message.role.as_str())),
        (Value::from("content"), Value::from(message.content.as_str())),
    ])
}

/// A JSON value for the template. Objects keep the order of the `serde_json` map, which is the
/// document's order only when `serde_json` is built with `preserve_order`.
pub(crate) fn json_value(json: &JsonValue) -> Value {
    match json {
        JsonValue::Null => Value::from(()),
        JsonValue::Bool(flag) => Value::from(*flag),
        JsonValue::Number(number) => match (number.as_i64(), number.as_u64()) {
            (Some(int), _) => Value::from(int),
            (None, Some(uint)) => Value::from(uint),
            (None, None) => Value::from(number.as_f64().unwrap_or(f64::NAN)),
        },
        JsonValue::String(text) => Value::from(text.as_str()),
        JsonValue::Array(items) => Value::from(items.iter().map(json_value).collect::<Vec<_>>()),
        JsonValue::Object(map) => {
            ordered_map(map.iter().map(|(key, value)| (Value::from(key.as_str()), json_value(value))))
        }
    }
}
