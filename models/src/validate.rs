//! Checks on config values that every family shares.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// A config section as `T`; an error names the field it is about (`vocab_size: invalid value:
/// integer 99999999999, expected i32`), which serde_json alone leaves out.
pub(crate) fn from_json<T: DeserializeOwned>(value: &Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|error| match error.path().to_string() {
        path if path == "." => error.inner().to_string(),
        path => format!("{path}: {}", error.inner()),
    })
}

/// `value` as a config field that divides, or is raised to a power, in the forward pass (a norm
/// epsilon, a RoPE base, a soft cap): zero, negative, NaN or infinite values give NaN logits.
pub(crate) fn positive_finite(name: &str, value: f32) -> Result<(), String> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be a positive finite number, got {value}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_errors_name_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Config {
            hidden_size: i32,
        }
        let error = from_json::<Config>(&serde_json::json!({"hidden_size": 99_999_999_999u64})).unwrap_err();
        assert!(error.starts_with("hidden_size: invalid value"), "{error}");
        assert!(from_json::<Config>(&serde_json::json!({})).unwrap_err().contains("missing field `hidden_size`"));
    }

    #[test]
    fn only_positive_finite_values_pass() {
        assert!(positive_finite("eps", 1e-6).is_ok());
        for bad in [0.0, -1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let message = positive_finite("eps", bad).unwrap_err();
            assert!(message.starts_with("eps must be a positive finite number"), "{message}");
        }
    }
}
