//! Randomised corruption of whole models, seeded so every run is the same: random bytes in GGUF
//! tensor data (every type the tiny GGUFs hold), in safetensors headers, and hostile values in
//! config.json fields. Loading may fail, and a model may produce garbage, but never a crash or a
//! panic, and never NaN that goes unnoticed: a score or a generated token comes from finite logits,
//! or the run fails with the non-finite-logits error.

mod common;

use mlxcel::generate::{GenerateError, TokenGenerator};
use mlxcel::model::{LoadedModel, ModelSource};
use mlxcel::sampling::SamplingParams;
use mlxcel_models::ModelError;
use mlxcel_models::hardware::ExecutionPlan;

/// xorshift64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn plan() -> ExecutionPlan {
    mlxcel::api::plan_for(&Default::default()).unwrap()
}

const IDS: [i32; 6] = [1, 17, 300, 45, 9, 256];

/// What a (possibly corrupt) model at `source` does: load, score `IDS`, generate a few tokens.
/// Returns how it ended; panics on what must never happen (non-finite logits passed on).
fn exercise(source: &ModelSource, what: &str) -> &'static str {
    let plan = plan();
    let Ok(model) = LoadedModel::load(source, &plan, Default::default()) else { return "load error" };
    let ids: Vec<i32> = IDS.iter().map(|&id| id % model.vocab_size() as i32).collect();
    match model.teacher_forced_logits(&ids, 4) {
        Ok(logits) => {
            let non_finite = mlxcel_models::non_finite(&logits, &[0, 1]).unwrap().item::<bool>().unwrap();
            assert!(!non_finite, "{what}: score returned non-finite logits");
        }
        Err(ModelError::NonFiniteLogits { .. }) => return "non-finite, reported",
        // A context too short for the ids, an allocation MLX refused: errors, not crashes.
        Err(_) => return "score error",
    }
    let prompt: Vec<u32> = ids.iter().map(|&id| id as u32).collect();
    let sampling = SamplingParams { temperature: 0.7, seed: Some(5), ..Default::default() };
    let tokens = TokenGenerator::new(&model, &prompt, sampling, 3, 4, false)
        .and_then(|tokens| tokens.collect::<Result<Vec<_>, _>>());
    match tokens {
        // Drawn from logits the generator checked.
        Ok(_) => "finite",
        // The prompt's logits were finite, a generated token's need not be.
        Err(GenerateError::Model(ModelError::NonFiniteLogits { .. })) => "non-finite, reported",
        Err(_) => "generation error",
    }
}

fn tally(outcomes: &mut std::collections::BTreeMap<&'static str, usize>, outcome: &'static str) {
    *outcomes.entry(outcome).or_default() += 1;
}

#[test]
fn random_bytes_in_gguf_tensor_data() {
    let scratch = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for (fixture, rounds) in [("llama-tiny/tiny.gguf", 16), ("gemma3-tiny/tiny.gguf", 8)] {
        let original = std::fs::read(common::fixtures().join(fixture)).unwrap();
        let header = mlxcel_models::gguf::parse_header(&original).unwrap();
        let mut outcomes = Default::default();
        for round in 0..rounds {
            let mut bytes = original.clone();
            // A few tensors each get a burst of random bytes somewhere in their data.
            for _ in 0..1 + rng.below(4) {
                let tensor = &header.tensors[rng.below(header.tensors.len())];
                let start = (header.data_offset + tensor.offset) as usize;
                let at = start + rng.below(tensor.n_bytes as usize);
                let end = (at + 1 + rng.below(64)).min(start + tensor.n_bytes as usize);
                for byte in &mut bytes[at..end] {
                    *byte = rng.next() as u8;
                }
            }
            let path = scratch.path().join(format!("{round}.gguf"));
            std::fs::write(&path, &bytes).unwrap();
            tally(&mut outcomes, exercise(&ModelSource::Gguf(path), &format!("{fixture} round {round}")));
        }
        eprintln!("{fixture}: {outcomes:?}");
    }
}

#[test]
fn random_bytes_in_safetensors_headers() {
    let dir = common::model_dir("llama-tiny");
    let weights = dir.path().join("model.safetensors");
    let original = std::fs::read(&weights).unwrap();
    let header_end = 8 + u64::from_le_bytes(original[..8].try_into().unwrap()) as usize;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut outcomes = Default::default();
    for round in 0..150 {
        let mut bytes = original.clone();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(header_end);
            // Half the time a digit or a JSON character, which is likelier to parse than noise.
            bytes[at] = if rng.below(2) == 0 { b"0123456789[]{},:\"-e."[rng.below(20)] } else { rng.next() as u8 };
        }
        std::fs::write(&weights, &bytes).unwrap();
        tally(
            &mut outcomes,
            exercise(&ModelSource::Folder(dir.path().to_path_buf()), &format!("header round {round}")),
        );
    }
    eprintln!("safetensors headers: {outcomes:?}");
}

/// Values a config field should never crash on.
fn hostile_value(rng: &mut Rng) -> serde_json::Value {
    use serde_json::json;
    let values = [
        json!(0),
        json!(-1),
        json!(1),
        json!(3),
        json!(2_147_483_647),
        json!(-2_147_483_648),
        json!(4_294_967_296u64),
        json!(1e39),
        json!(-1e39),
        json!(1e-45),
        json!(0.5),
        json!(65_536),
        json!("abc"),
        json!(null),
        json!(true),
        json!([]),
        json!({}),
        json!([0, -1]),
    ];
    values[rng.below(values.len())].clone()
}

/// Every path to a scalar or a list in `value` (object keys and array indexes).
fn leaves(value: &serde_json::Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        serde_json::Value::Object(fields) => {
            for (key, field) in fields {
                prefix.push(key.clone());
                out.push(prefix.clone());
                leaves(field, prefix, out);
                prefix.pop();
            }
        }
        serde_json::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                prefix.push(index.to_string());
                out.push(prefix.clone());
                leaves(item, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn at_path<'v>(value: &'v mut serde_json::Value, path: &[String]) -> &'v mut serde_json::Value {
    path.iter().fold(value, |value, key| match value {
        serde_json::Value::Array(items) => &mut items[key.parse::<usize>().unwrap()],
        other => &mut other[key.as_str()],
    })
}

#[test]
fn hostile_values_in_config_json() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for (model, rounds) in [("llama-tiny", 60), ("gemma3-tiny", 50), ("gemma3n-tiny", 50)] {
        let dir = common::model_dir(model);
        let config_path = dir.path().join("config.json");
        let original: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
        let mut paths = Vec::new();
        leaves(&original, &mut Vec::new(), &mut paths);
        let mut outcomes = Default::default();
        for _ in 0..rounds {
            let mut config = original.clone();
            let path = &paths[rng.below(paths.len())];
            *at_path(&mut config, path) = hostile_value(&mut rng);
            std::fs::write(&config_path, config.to_string()).unwrap();
            let what = format!("{model} {} = {}", path.join("."), at_path(&mut config, path));
            tally(&mut outcomes, exercise(&ModelSource::Folder(dir.path().to_path_buf()), &what));
        }
        eprintln!("{model} config: {outcomes:?}");
    }
}
