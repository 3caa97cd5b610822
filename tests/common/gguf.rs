//! Rewrites a GGUF file's metadata (tensor infos and data kept byte for byte), to make files the
//! loader must reject: a NaN epsilon, a block count below the tensors' layers, and so on.

use mlxcel_models::gguf::{Value, parse_header};

/// `bytes` (a GGUF file) with its metadata changed by `edit`.
pub fn with_metadata(bytes: &[u8], edit: impl FnOnce(&mut Vec<(String, Value)>)) -> Vec<u8> {
    let header = parse_header(bytes).expect("a valid GGUF to start from");
    let mut metadata = header.metadata.clone();
    edit(&mut metadata);
    let mut out = b"GGUF".to_vec();
    out.extend(header.version.to_le_bytes());
    out.extend((header.tensors.len() as u64).to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (key, value) in &metadata {
        string(&mut out, key);
        out.extend(type_id(value).to_le_bytes());
        write_value(&mut out, value);
    }
    for tensor in &header.tensors {
        string(&mut out, &tensor.name);
        out.extend((tensor.dims.len() as u32).to_le_bytes());
        for dim in &tensor.dims {
            out.extend(dim.to_le_bytes());
        }
        out.extend(tensor.ggml_type.id().to_le_bytes());
        out.extend(tensor.offset.to_le_bytes());
    }
    out.resize((out.len() as u64).div_ceil(header.alignment) as usize * header.alignment as usize, 0);
    out.extend(&bytes[header.data_offset as usize..]);
    out
}

/// Sets `key` to `value`, adding it if absent.
pub fn set(metadata: &mut Vec<(String, Value)>, key: &str, value: Value) {
    match metadata.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => metadata.push((key.to_string(), value)),
    }
}

fn string(out: &mut Vec<u8>, text: &str) {
    out.extend((text.len() as u64).to_le_bytes());
    out.extend(text.as_bytes());
}

fn type_id(value: &Value) -> u32 {
    match value {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.extend(v.to_le_bytes()),
        Value::U16(v) => out.extend(v.to_le_bytes()),
        Value::I16(v) => out.extend(v.to_le_bytes()),
        Value::U32(v) => out.extend(v.to_le_bytes()),
        Value::I32(v) => out.extend(v.to_le_bytes()),
        Value::F32(v) => out.extend(v.to_le_bytes()),
        Value::Bool(v) => out.push(*v as u8),
        Value::String(v) => string(out, v),
        Value::Array(items) => {
            out.extend(items.first().map_or(0, type_id).to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                write_value(out, item);
            }
        }
        Value::U64(v) => out.extend(v.to_le_bytes()),
        Value::I64(v) => out.extend(v.to_le_bytes()),
        Value::F64(v) => out.extend(v.to_le_bytes()),
    }
}
