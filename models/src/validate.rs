//! Checks on config values that every family shares.

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
    fn only_positive_finite_values_pass() {
        assert!(positive_finite("eps", 1e-6).is_ok());
        for bad in [0.0, -1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let message = positive_finite("eps", bad).unwrap_err();
            assert!(message.starts_with("eps must be a positive finite number"), "{message}");
        }
    }
}
