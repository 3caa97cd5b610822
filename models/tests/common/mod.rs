//! Reading the fixture generators' `reference.json` (prompt ids and transformers' logits).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

pub struct Reference {
    pub prompt: Vec<i32>,
    /// Flattened `[L, vocab]` float32 logits by variant (`fp32`, `q4`, ...).
    pub logits: HashMap<String, Vec<f32>>,
}

pub fn reference(dir: &Path) -> Reference {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    let prompt = json["prompt"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap() as i32).collect();
    let logits = json["logits"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, rows)| {
            let flat = rows
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32));
            (k.clone(), flat.collect())
        })
        .collect();
    Reference { prompt, logits }
}

pub fn read_config(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
