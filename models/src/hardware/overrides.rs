//! Overrides of the execution plan's defaults, from the environment (`MLXCEL_*`) or the command
//! line. Parsing is strict: a set variable with a value outside its accepted set is an error that
//! names the variable, the value and what it accepts, never a silent fall back to the default.

use std::str::FromStr;

use mlx_bridge::Dtype;

use super::plan::{ActivationPrecision, DecodePath, ExecutionPlan, Provenance, SettingSource, on_off};

pub const DECODE_PATH_VAR: &str = "MLXCEL_DECODE_PATH";
pub const PRETRANSPOSE_VAR: &str = "MLXCEL_PRETRANSPOSE";
pub const COMPUTE_DTYPE_VAR: &str = "MLXCEL_COMPUTE_DTYPE";
pub const PREFILL_CHUNK_VAR: &str = "MLXCEL_PREFILL_CHUNK";
pub const DEQUANTIZE_VAR: &str = "MLXCEL_DEQUANTIZE";
pub const CPU_KERNELS_VAR: &str = "MLXCEL_CPU_KERNELS";
pub const CUDA_KERNELS_VAR: &str = "MLXCEL_CUDA_KERNELS";
pub const THREADS_VAR: &str = "MLXCEL_THREADS";
pub const ACTIVATION_PRECISION_VAR: &str = "MLXCEL_ACTIVATION_PRECISION";
pub const COMPILED_DECODE_VAR: &str = "MLXCEL_COMPILED_DECODE";
/// More threads than this is a typo, not a machine.
pub const MAX_THREADS: u32 = 1024;
/// A million tokens per prefill step is already past any context length a model here supports.
pub const MAX_PREFILL_CHUNK: u32 = 1_048_576;

impl FromStr for DecodePath {
    type Err = InvalidValue;

    fn from_str(value: &str) -> Result<Self, InvalidValue> {
        match normalized(value).as_str() {
            "fused" => Ok(DecodePath::Fused),
            "split" => Ok(DecodePath::Split),
            _ => Err(InvalidValue::new(value, DECODE_PATH_ACCEPTS)),
        }
    }
}

const DECODE_PATH_ACCEPTS: &str = "fused or split";
const SWITCH_ACCEPTS: &str = "on, off, true, false, 1 or 0";
const COMPUTE_DTYPE_ACCEPTS: &str = "float32 (f32), bfloat16 (bf16) or float16 (f16)";
const PREFILL_CHUNK_ACCEPTS: &str = "an integer from 1 to 1048576";
const THREADS_ACCEPTS: &str = "an integer from 1 to 1024";
const ACTIVATION_PRECISION_ACCEPTS: &str = "int8 or int16";

/// A setting's value was not one it accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {value:?}: expected {accepted}")]
pub struct InvalidValue {
    pub value: String,
    pub accepted: &'static str,
}

impl InvalidValue {
    fn new(value: &str, accepted: &'static str) -> Self {
        InvalidValue { value: value.to_string(), accepted }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("invalid {variable}={value:?}: expected {accepted}")]
    InvalidOverride { variable: &'static str, value: String, accepted: &'static str },
}

/// Case and surrounding whitespace are forgiven; anything else is not.
fn normalized(value: &str) -> String {
    value.trim().to_ascii_lowercase()
}

/// `on|off|true|false|1|0`.
pub fn parse_switch(value: &str) -> Result<bool, InvalidValue> {
    match normalized(value).as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(InvalidValue::new(value, SWITCH_ACCEPTS)),
    }
}

/// The floating-point dtypes a model can compute in: `float32|f32|bfloat16|bf16|float16|f16`.
pub fn parse_compute_dtype(value: &str) -> Result<Dtype, InvalidValue> {
    match normalized(value).as_str() {
        "float32" | "f32" => Ok(Dtype::F32),
        "bfloat16" | "bf16" => Ok(Dtype::BF16),
        "float16" | "f16" => Ok(Dtype::F16),
        _ => Err(InvalidValue::new(value, COMPUTE_DTYPE_ACCEPTS)),
    }
}

/// Tokens per prefill step: an integer in `1..=1_048_576`.
pub fn parse_prefill_chunk(value: &str) -> Result<u32, InvalidValue> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|chunk| (1..=MAX_PREFILL_CHUNK).contains(chunk))
        .ok_or_else(|| InvalidValue::new(value, PREFILL_CHUNK_ACCEPTS))
}

/// How the CPU kernels round activations: int8 or int16.
pub fn parse_activation_precision(value: &str) -> Result<ActivationPrecision, InvalidValue> {
    ActivationPrecision::parse(&normalized(value)).ok_or_else(|| InvalidValue::new(value, ACTIVATION_PRECISION_ACCEPTS))
}

/// Threads for the CPU kernels: an integer in `1..=1024`.
pub fn parse_threads(value: &str) -> Result<u32, InvalidValue> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|threads| (1..=MAX_THREADS).contains(threads))
        .ok_or_else(|| InvalidValue::new(value, THREADS_ACCEPTS))
}

/// Where a set of overrides came from; decides each overridden setting's [`SettingSource`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideOrigin {
    Env,
    Cli,
}

/// Values that replace the class defaults. `None` leaves a setting as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overrides {
    pub origin: OverrideOrigin,
    pub decode_path: Option<DecodePath>,
    pub pretranspose: Option<bool>,
    pub compute_dtype: Option<Dtype>,
    pub prefill_chunk: Option<u32>,
    pub dequantize: Option<bool>,
    pub cpu_kernels: Option<bool>,
    pub cuda_kernels: Option<bool>,
    pub threads: Option<u32>,
    pub activation_precision: Option<ActivationPrecision>,
    pub compiled_decode: Option<bool>,
}

impl Default for Overrides {
    /// Nothing overridden, as if from the command line.
    fn default() -> Self {
        Overrides::none(OverrideOrigin::Cli)
    }
}

impl Overrides {
    pub fn none(origin: OverrideOrigin) -> Self {
        Overrides {
            origin,
            decode_path: None,
            pretranspose: None,
            compute_dtype: None,
            prefill_chunk: None,
            dequantize: None,
            cpu_kernels: None,
            cuda_kernels: None,
            threads: None,
            activation_precision: None,
            compiled_decode: None,
        }
    }

    /// Reads the `MLXCEL_*` variables of this process.
    pub fn from_env() -> Result<Self, PlanError> {
        // A value that is not UTF-8 cannot be a valid setting; lossy conversion keeps it failing
        // loudly, with something printable in the message.
        Self::from_lookup(|variable| std::env::var_os(variable).map(|value| value.to_string_lossy().into_owned()))
    }

    /// Parses the `MLXCEL_*` variables through `lookup` (the environment, or a map in tests).
    /// A set variable must hold a valid value, even an empty one: a typo never falls back silently.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, PlanError> {
        fn read<T>(
            lookup: &impl Fn(&str) -> Option<String>,
            variable: &'static str,
            parse: impl Fn(&str) -> Result<T, InvalidValue>,
        ) -> Result<Option<T>, PlanError> {
            let Some(value) = lookup(variable) else { return Ok(None) };
            parse(&value).map(Some).map_err(|invalid| PlanError::InvalidOverride {
                variable,
                value: invalid.value,
                accepted: invalid.accepted,
            })
        }
        Ok(Overrides {
            origin: OverrideOrigin::Env,
            decode_path: read(&lookup, DECODE_PATH_VAR, DecodePath::from_str)?,
            pretranspose: read(&lookup, PRETRANSPOSE_VAR, parse_switch)?,
            compute_dtype: read(&lookup, COMPUTE_DTYPE_VAR, parse_compute_dtype)?,
            prefill_chunk: read(&lookup, PREFILL_CHUNK_VAR, parse_prefill_chunk)?,
            dequantize: read(&lookup, DEQUANTIZE_VAR, parse_switch)?,
            cpu_kernels: read(&lookup, CPU_KERNELS_VAR, parse_switch)?,
            cuda_kernels: read(&lookup, CUDA_KERNELS_VAR, parse_switch)?,
            threads: read(&lookup, THREADS_VAR, parse_threads)?,
            activation_precision: read(&lookup, ACTIVATION_PRECISION_VAR, parse_activation_precision)?,
            compiled_decode: read(&lookup, COMPILED_DECODE_VAR, parse_switch)?,
        })
    }
}

impl ExecutionPlan {
    /// Applies the process's `MLXCEL_*` overrides; an invalid value is an error.
    pub fn with_env_overrides(self) -> Result<Self, PlanError> {
        Ok(self.apply_overrides(&Overrides::from_env()?))
    }

    /// Replaces every setting `overrides` sets, recording where it came from and what it replaced.
    pub fn apply_overrides(mut self, overrides: &Overrides) -> Self {
        let class = self.hardware_class.clone();
        let overridden = |variable: &'static str, previous: String, previous_source: &SettingSource| {
            let source = match overrides.origin {
                OverrideOrigin::Env => SettingSource::Env(variable),
                OverrideOrigin::Cli => SettingSource::Cli,
            };
            let reason = match previous_source {
                SettingSource::Default(_) => format!("overrides the {class} default ({previous})"),
                earlier => format!("overrides {previous} from {earlier}"),
            };
            Provenance { source, reason }
        };
        if let Some(decode_path) = overrides.decode_path {
            let previous = self.decode_path.to_string();
            self.provenance.decode_path = overridden(DECODE_PATH_VAR, previous, &self.provenance.decode_path.source);
            self.decode_path = decode_path;
        }
        if let Some(pretranspose) = overrides.pretranspose {
            let previous = on_off(self.pretranspose).to_string();
            self.provenance.pretranspose = overridden(PRETRANSPOSE_VAR, previous, &self.provenance.pretranspose.source);
            self.pretranspose = pretranspose;
        }
        if let Some(compute_dtype) = overrides.compute_dtype {
            let previous = self.compute_dtype.name().to_string();
            self.provenance.compute_dtype =
                overridden(COMPUTE_DTYPE_VAR, previous, &self.provenance.compute_dtype.source);
            self.compute_dtype = compute_dtype;
        }
        if let Some(prefill_chunk) = overrides.prefill_chunk {
            let previous = self.prefill_chunk.to_string();
            self.provenance.prefill_chunk =
                overridden(PREFILL_CHUNK_VAR, previous, &self.provenance.prefill_chunk.source);
            self.prefill_chunk = prefill_chunk;
        }
        if let Some(dequantize) = overrides.dequantize {
            let previous = on_off(self.dequantize).to_string();
            self.provenance.dequantize = overridden(DEQUANTIZE_VAR, previous, &self.provenance.dequantize.source);
            self.dequantize = dequantize;
        }
        if let Some(cpu_kernels) = overrides.cpu_kernels {
            let previous = on_off(self.cpu_kernels).to_string();
            self.provenance.cpu_kernels = overridden(CPU_KERNELS_VAR, previous, &self.provenance.cpu_kernels.source);
            self.cpu_kernels = cpu_kernels;
        }
        if let Some(cuda_kernels) = overrides.cuda_kernels {
            let previous = on_off(self.cuda_kernels).to_string();
            self.provenance.cuda_kernels = overridden(CUDA_KERNELS_VAR, previous, &self.provenance.cuda_kernels.source);
            self.cuda_kernels = cuda_kernels;
        }
        if let Some(threads) = overrides.threads {
            let previous = self.threads.to_string();
            self.provenance.threads = overridden(THREADS_VAR, previous, &self.provenance.threads.source);
            self.threads = threads;
        }
        if let Some(precision) = overrides.activation_precision {
            let previous = self.activation_precision.name().to_string();
            self.provenance.activation_precision =
                overridden(ACTIVATION_PRECISION_VAR, previous, &self.provenance.activation_precision.source);
            self.activation_precision = precision;
        }
        if let Some(compiled) = overrides.compiled_decode {
            let previous = on_off(self.compiled_decode).to_string();
            self.provenance.compiled_decode =
                overridden(COMPILED_DECODE_VAR, previous, &self.provenance.compiled_decode.source);
            self.compiled_decode = compiled;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::hardware::HardwareClass;

    fn from_vars(vars: &[(&str, &str)]) -> Result<Overrides, PlanError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Overrides::from_lookup(|name| vars.get(name).cloned())
    }

    fn cpu_plan() -> ExecutionPlan {
        ExecutionPlan::for_class(HardwareClass::Cpu { arch: "x86_64".to_string() }, 4)
    }

    #[test]
    fn accepted_spellings() {
        assert_eq!("fused".parse(), Ok(DecodePath::Fused));
        assert_eq!(" Split\n".parse(), Ok(DecodePath::Split));
        for on in ["on", "true", "1", "ON", "True"] {
            assert_eq!(parse_switch(on), Ok(true), "{on}");
        }
        for off in ["off", "false", "0", "OFF", " false "] {
            assert_eq!(parse_switch(off), Ok(false), "{off}");
        }
        for (spelling, dtype) in [
            ("float32", Dtype::F32),
            ("f32", Dtype::F32),
            ("bfloat16", Dtype::BF16),
            ("BF16", Dtype::BF16),
            ("float16", Dtype::F16),
            ("f16", Dtype::F16),
        ] {
            assert_eq!(parse_compute_dtype(spelling), Ok(dtype), "{spelling}");
        }
        assert_eq!(parse_prefill_chunk("1"), Ok(1));
        assert_eq!(parse_prefill_chunk(" 64 "), Ok(64));
        assert_eq!(parse_prefill_chunk("1048576"), Ok(MAX_PREFILL_CHUNK));
    }

    #[test]
    fn rejected_values() {
        for bad in ["", "fuse", "fused,split", "both"] {
            assert_eq!(bad.parse::<DecodePath>(), Err(InvalidValue::new(bad, DECODE_PATH_ACCEPTS)), "{bad:?}");
        }
        for bad in ["", "yes", "2", "enabled"] {
            assert!(parse_switch(bad).is_err(), "{bad:?}");
        }
        // Dtypes MLX knows but a model does not compute in are refused too.
        for bad in ["", "float64", "int8", "fp32", "half", "bfloat"] {
            assert!(parse_compute_dtype(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "0", "-1", "1048577", "4294967296", "1e3", "512 tokens", "0x200"] {
            assert_eq!(parse_prefill_chunk(bad), Err(InvalidValue::new(bad, PREFILL_CHUNK_ACCEPTS)), "{bad:?}");
        }
    }

    #[test]
    fn unset_variables_override_nothing() {
        assert_eq!(from_vars(&[]), Ok(Overrides::none(OverrideOrigin::Env)));
        assert_eq!(cpu_plan().apply_overrides(&Overrides::none(OverrideOrigin::Env)), cpu_plan());
    }

    #[test]
    fn all_variables_parsed() {
        let overrides = from_vars(&[
            (DECODE_PATH_VAR, "split"),
            (PRETRANSPOSE_VAR, "on"),
            (COMPUTE_DTYPE_VAR, "bf16"),
            (PREFILL_CHUNK_VAR, "64"),
            (DEQUANTIZE_VAR, "off"),
            (CPU_KERNELS_VAR, "off"),
            (CUDA_KERNELS_VAR, "on"),
            (THREADS_VAR, "3"),
            (ACTIVATION_PRECISION_VAR, "INT8"),
            (COMPILED_DECODE_VAR, "on"),
        ]);
        let expected = Overrides {
            origin: OverrideOrigin::Env,
            decode_path: Some(DecodePath::Split),
            pretranspose: Some(true),
            compute_dtype: Some(Dtype::BF16),
            prefill_chunk: Some(64),
            dequantize: Some(false),
            cpu_kernels: Some(false),
            cuda_kernels: Some(true),
            threads: Some(3),
            activation_precision: Some(ActivationPrecision::Int8),
            compiled_decode: Some(true),
        };
        assert_eq!(overrides, Ok(expected));
    }

    #[test]
    fn invalid_variable_is_an_error_naming_it() {
        let error = from_vars(&[(PRETRANSPOSE_VAR, "off"), (DECODE_PATH_VAR, "bogus")]).unwrap_err();
        assert_eq!(
            error,
            PlanError::InvalidOverride {
                variable: DECODE_PATH_VAR,
                value: "bogus".to_string(),
                accepted: DECODE_PATH_ACCEPTS
            }
        );
        assert_eq!(error.to_string(), "invalid MLXCEL_DECODE_PATH=\"bogus\": expected fused or split");

        let cases = [
            (PRETRANSPOSE_VAR, "maybe", SWITCH_ACCEPTS),
            (COMPUTE_DTYPE_VAR, "int4", COMPUTE_DTYPE_ACCEPTS),
            (PREFILL_CHUNK_VAR, "0", PREFILL_CHUNK_ACCEPTS),
            (PREFILL_CHUNK_VAR, "", PREFILL_CHUNK_ACCEPTS),
            (THREADS_VAR, "0", THREADS_ACCEPTS),
            (THREADS_VAR, "two", THREADS_ACCEPTS),
            (CPU_KERNELS_VAR, "fast", SWITCH_ACCEPTS),
        ];
        for (variable, value, accepted) in cases {
            let message = from_vars(&[(variable, value)]).unwrap_err().to_string();
            assert!(message.contains(variable) && message.contains(accepted), "{message}");
            assert!(message.contains(&format!("{value:?}")), "{message}");
        }
    }

    #[test]
    fn env_overrides_replace_values_and_record_the_variable() {
        let overrides = from_vars(&[(PREFILL_CHUNK_VAR, "64"), (COMPUTE_DTYPE_VAR, "bfloat16")]).unwrap();
        let plan = cpu_plan().apply_overrides(&overrides);
        assert_eq!((plan.prefill_chunk, plan.compute_dtype), (64, Dtype::BF16));
        assert_eq!(plan.provenance.prefill_chunk.source, SettingSource::Env(PREFILL_CHUNK_VAR));
        assert_eq!(plan.provenance.prefill_chunk.source.to_string(), "env MLXCEL_PREFILL_CHUNK");
        assert_eq!(plan.provenance.prefill_chunk.reason, "overrides the cpu-x86_64 default (512)");
        assert_eq!(plan.provenance.compute_dtype.reason, "overrides the cpu-x86_64 default (float32)");
        // Untouched settings keep their defaults and reasons.
        assert_eq!(
            (plan.decode_path, &plan.provenance.decode_path),
            (DecodePath::Fused, &cpu_plan().provenance.decode_path)
        );
    }

    #[test]
    fn cli_overrides_layer_over_env_overrides() {
        let env = from_vars(&[(DECODE_PATH_VAR, "split")]).unwrap();
        let cli = Overrides {
            decode_path: Some(DecodePath::Fused),
            pretranspose: Some(false),
            ..Overrides::none(OverrideOrigin::Cli)
        };
        let plan = cpu_plan().apply_overrides(&env).apply_overrides(&cli);
        assert_eq!((plan.decode_path, plan.pretranspose), (DecodePath::Fused, false));
        assert_eq!(plan.provenance.decode_path.source, SettingSource::Cli);
        assert_eq!(plan.provenance.decode_path.reason, "overrides split from env MLXCEL_DECODE_PATH");
        assert_eq!(plan.provenance.pretranspose.reason, "overrides the cpu-x86_64 default (on)");
        assert_eq!(serde_json::to_value(&plan).unwrap()["provenance"]["decode_path"]["source"], "cli");
    }
}
