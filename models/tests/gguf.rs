//! The GGUF container parser against the `gguf` Python package's reading of a file it wrote
//! (`tests/fixtures/gguf/gen_gguf.py`), and against malformed input: every truncation and random
//! corruption of the header must be an error, and random tensor data must convert, never panic.

use std::path::{Path, PathBuf};

use mlxcel_models::gguf::{GgmlType, GgufFile, GgufTensor, Value, parse_header};
use serde_json::Value as Json;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/gguf")
}

fn same(value: &Value, expected: &Json) -> bool {
    match (value, expected) {
        (Value::String(s), Json::String(e)) => s == e,
        (Value::Bool(b), Json::Bool(e)) => b == e,
        (Value::Array(values), Json::Array(items)) => {
            values.len() == items.len() && values.iter().zip(items).all(|(v, e)| same(v, e))
        }
        (Value::F32(_) | Value::F64(_), Json::Number(n)) => value.as_f64() == n.as_f64(),
        (_, Json::Number(n)) => value.as_i64().is_some_and(|v| Some(v) == n.as_i64()),
        _ => false,
    }
}

#[test]
fn header_matches_the_reference_reader() {
    let expected: Json =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json")).unwrap()).unwrap();
    let file = GgufFile::open(&fixture().join("tiny.gguf")).unwrap();
    let header = file.header();
    assert_eq!(header.version, 3);
    assert_eq!(header.data_offset, expected["data_offset"].as_u64().unwrap());
    let metadata = expected["metadata"].as_object().unwrap();
    assert_eq!(header.metadata.len(), metadata.len());
    for (key, value) in metadata {
        let got = header.get(key).unwrap_or_else(|| panic!("missing {key}"));
        assert!(same(got, value), "{key}: {got:?} vs {value}");
    }
    // Integer widths survive (not just the values).
    assert_eq!(header.get("test.u8"), Some(&Value::U8(200)));
    assert_eq!(header.get("test.i64"), Some(&Value::I64(-(1 << 40))));
    let tensors = expected["tensors"].as_array().unwrap();
    assert_eq!(header.tensors.len(), tensors.len());
    for (info, e) in header.tensors.iter().zip(tensors) {
        assert_eq!(info.name, e["name"].as_str().unwrap());
        let dims: Vec<u64> = e["dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
        assert_eq!(info.dims, dims, "{}", info.name);
        assert_eq!(GgmlType::from_id(e["type"].as_u64().unwrap() as u32), info.ggml_type);
        assert_eq!((info.offset, info.n_bytes), (e["offset"].as_u64().unwrap(), e["n_bytes"].as_u64().unwrap()));
    }
    let f32_tensor = header.tensor("f32.weight").unwrap();
    assert_eq!(f32_tensor.shape(), vec![3, 4]);
    assert_eq!(file.tensor_bytes(f32_tensor).len(), 48);
    assert_eq!(header.tensor("q4_k.weight").unwrap().ggml_type, GgmlType::Q4K);
    assert_eq!(header.tensor("q5_0.weight").unwrap().ggml_type, GgmlType::Q5_0);
}

#[test]
fn every_truncation_that_loses_data_is_an_error() {
    let bytes = std::fs::read(fixture().join("tiny.gguf")).unwrap();
    let header = parse_header(&bytes).unwrap();
    // The writer pads the file after the last tensor; cutting that padding loses nothing.
    let data_end = header.tensors.iter().map(|t| header.data_offset + t.offset + t.n_bytes).max().unwrap() as usize;
    for end in 0..data_end {
        assert!(parse_header(&bytes[..end]).is_err(), "a file cut at byte {end} parsed");
    }
    for end in data_end..=bytes.len() {
        assert!(parse_header(&bytes[..end]).is_ok(), "cut at {end}, after all tensor data");
    }
}

/// A deterministic stream of pseudo-random numbers (xorshift64).
fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

#[test]
fn random_corruption_never_panics() {
    let original = std::fs::read(fixture().join("tiny.gguf")).unwrap();
    // Corrupt only the part the parser reads (before the data section).
    let header_len = parse_header(&original).unwrap().data_offset;
    let mut next = xorshift(0x9E37_79B9_7F4A_7C15u64);
    for _ in 0..20_000 {
        let mut bytes = original.clone();
        for _ in 0..(next() % 4 + 1) {
            let at = (next() % header_len) as usize;
            bytes[at] = next() as u8;
        }
        // Errors are fine; panics, hangs and huge allocations are not.
        let _ = parse_header(&bytes);
    }
}

#[test]
fn random_tensor_data_never_panics_in_any_type() {
    // The header stays intact; every tensor's bytes (F32, F16, BF16, Q4_0..Q8_0, Q4_K..Q6_K) may
    // be garbage, including NaN and infinite scales: converting them must not panic or read out
    // of bounds, whatever values come out.
    let original = std::fs::read(fixture().join("tiny.gguf")).unwrap();
    let header = parse_header(&original).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut next = xorshift(0xD1B5_4A32_D192_ED03u64);
    for round in 0..200 {
        let mut bytes = original.clone();
        let data = header.data_offset as usize..original.len();
        for _ in 0..(next() % 32 + 1) {
            let at = data.start + (next() % data.len() as u64) as usize;
            bytes[at] = next() as u8;
        }
        let path = dir.path().join(format!("{round}.gguf"));
        std::fs::write(&path, &bytes).unwrap();
        let file = GgufFile::open(&path).unwrap();
        for info in &file.header().tensors {
            let values = match file.load_tensor(info).unwrap() {
                GgufTensor::Dense(array) => array.to_vec::<f32>().unwrap(),
                GgufTensor::Quantized(q) => q.dequantize().unwrap().to_vec::<f32>().unwrap(),
                GgufTensor::Blocks(_) => unreachable!("load_tensor converts every tensor"),
            };
            assert_eq!(values.len() as u64, info.elements(), "{}", info.name);
        }
    }
}

#[test]
fn hostile_counts_and_sizes_are_rejected_before_allocating() {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(u64::MAX.to_le_bytes()); // tensors
    bytes.extend(u64::MAX.to_le_bytes()); // metadata entries
    assert!(parse_header(&bytes).is_err());
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.push(b'k');
    bytes.extend(8u32.to_le_bytes()); // a string value...
    bytes.extend(u64::MAX.to_le_bytes()); // ...claiming 2^64 bytes
    assert!(parse_header(&bytes).is_err());
    assert!(matches!(parse_header(b"GGML\x03\x00\x00\x00"), Err(mlxcel_models::gguf::GgufError::BadMagic(_))));
    assert!(matches!(
        parse_header(b"GGUF\x09\x00\x00\x00"),
        Err(mlxcel_models::gguf::GgufError::UnsupportedVersion(9))
    ));
}

#[test]
fn float_and_exactly_mapped_quantized_tensors_match_the_reference_dequantization() {
    check_against_reference(false);
}

#[test]
fn k_quants_kept_as_exact_affine_groups_match_the_reference_dequantization() {
    check_against_reference(true);
}

/// Every fixture tensor against the `gguf` package's dequantization; `k_quants_as_affine` loads
/// Q4_K and Q5_K as MLX affine groups (which must then be quantized, not decoded).
fn check_against_reference(k_quants_as_affine: bool) {
    let expected: Json =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json")).unwrap()).unwrap();
    let file = GgufFile::open(&fixture().join("tiny.gguf")).unwrap();
    for e in expected["tensors"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let info = file.header().tensor(name).unwrap();
        let values = e["values"].as_array().unwrap();
        let want: Vec<f32> = values.iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let loaded = if k_quants_as_affine { file.load_tensor_exact(info) } else { file.load_tensor(info) };
        let loaded = loaded.unwrap();
        if k_quants_as_affine && matches!(info.ggml_type, GgmlType::Q4K | GgmlType::Q5K) {
            let GgufTensor::Quantized(q) = &loaded else { panic!("{name} was decoded, not kept quantized") };
            let bits = if info.ggml_type == GgmlType::Q4K { 4 } else { 5 };
            assert_eq!((q.spec.group_size, q.spec.bits), (32, bits), "{name}");
        }
        let got = match loaded {
            GgufTensor::Dense(array) => array.to_vec::<f32>().unwrap(),
            GgufTensor::Quantized(q) => {
                assert_eq!((q.spec.group_size, q.weight.dtype()), (32, mlx_bridge::Dtype::U32), "{name}");
                // Kept quantized: the matmul kernel must see the same matrix.
                let cols = info.dims[0] as i32;
                let x = mlx_bridge::Array::ones(&[1, cols], mlx_bridge::Dtype::F32).unwrap();
                let row_sums = q.matmul(&x, true).unwrap().to_vec::<f32>().unwrap();
                for (r, sum) in row_sums.iter().enumerate() {
                    let want_sum: f32 = want[r * cols as usize..(r + 1) * cols as usize].iter().sum();
                    assert!((sum - want_sum).abs() < 1e-3, "{name} row {r}: {sum} vs {want_sum}");
                }
                q.dequantize().unwrap().to_vec::<f32>().unwrap()
            }
            GgufTensor::Blocks(_) => unreachable!("load_tensor converts every tensor"),
        };
        assert_eq!(got.len(), want.len(), "{name}");
        if matches!(info.ggml_type, GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K) {
            // Float32 products of the two-level scales may round differently from numpy's order.
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0.0f32, f32::max);
            assert!(worst <= 1e-6, "{name} differs from the gguf package's dequantization by {worst}");
        } else {
            assert_eq!(got, want, "{name} differs from the gguf package's dequantization");
        }
    }
}
