//! Expected tokenizer encodings and decodings (the fixtures' `cases`), checked all at once.

use mlxcel::tokenizer::Tokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Case {
    pub text: String,
    pub reference: String,
    pub ids: Vec<u32>,
    pub ids_without_special: Vec<u32>,
    pub decoded: String,
    pub decoded_skip_special: String,
}

#[derive(Deserialize)]
pub struct Expected {
    pub vocab_size: usize,
    pub cases: Vec<Case>,
}

/// Checks every case and reports every mismatch at once (`what` names the tokenizer).
pub fn check(tokenizer: &Tokenizer, expected: &Expected, what: &str) {
    let mut failures = Vec::new();
    if tokenizer.vocab_size() != expected.vocab_size {
        failures.push(format!("vocab_size {} != {}", tokenizer.vocab_size(), expected.vocab_size));
    }
    for case in &expected.cases {
        let text = &case.text;
        let mut compare = |field: &str, ours: String, theirs: String| {
            if ours != theirs {
                failures.push(format!(
                    "{text:?} {field} (reference {}):\n    ours   {ours}\n    theirs {theirs}",
                    case.reference
                ));
            }
        };
        compare("ids", format!("{:?}", tokenizer.encode(text, true).unwrap()), format!("{:?}", case.ids));
        let plain = tokenizer.encode(text, false).unwrap();
        compare("ids_without_special", format!("{plain:?}"), format!("{:?}", case.ids_without_special));
        compare("decoded", format!("{:?}", tokenizer.decode(&case.ids, false).unwrap()), format!("{:?}", case.decoded));
        let skipped = tokenizer.decode(&case.ids, true).unwrap();
        compare("decoded_skip_special", format!("{skipped:?}"), format!("{:?}", case.decoded_skip_special));
    }
    assert!(failures.is_empty(), "{what}: {} mismatches\n{}", failures.len(), failures.join("\n"));
}
