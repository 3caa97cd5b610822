//! Execution-plan flags shared by the commands that run a model. They apply after the
//! `MLXCEL_*` environment overrides, so the command line wins.

use mlx_bridge::Dtype;
use mlxcel::api::{LoadOptions, plan_for};
use mlxcel_models::gguf::KQuants;
use mlxcel_models::hardware::{self, ActivationPrecision, DecodePath, ExecutionPlan, OverrideOrigin, Overrides};

#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Decode path: fused (stacked AltUp, compiled blocks) or split (one op at a time).
    #[arg(long, value_parser = parse_decode_path)]
    pub decode_path: Option<DecodePath>,
    /// Pre-transpose dense MLP and LM-head weights at load: on or off.
    #[arg(long, value_parser = parse_switch)]
    pub pretranspose: Option<bool>,
    /// Dtype for activations and unquantized weights: float32, bfloat16 or float16.
    #[arg(long, value_parser = parse_dtype)]
    pub compute_dtype: Option<Dtype>,
    /// Tokens per prefill step (1 runs every token through the decode step).
    #[arg(long, value_parser = parse_chunk)]
    pub prefill_chunk: Option<u32>,
    /// Unpack quantized weights to dense compute-dtype weights at load: on or off.
    #[arg(long, value_parser = parse_switch)]
    pub dequantize: Option<bool>,
    /// mlxcel's own CPU kernels (norms, RoPE, attention, block-quantized matmul): on or off.
    #[arg(long, value_parser = parse_switch)]
    pub cpu_kernels: Option<bool>,
    /// mlxcel's own NVIDIA kernels (decode attention, one-row affine matmul): on or off.
    #[arg(long, value_parser = parse_switch)]
    pub cuda_kernels: Option<bool>,
    /// Threads for the CPU kernels (default: one per physical core).
    #[arg(long, value_parser = parse_threads)]
    pub threads: Option<u32>,
    /// How the CPU kernels round activations for block-quantized weights: int16 or int8 (llama.cpp's
    /// rounding; faster, a few percent off in the logits).
    #[arg(long, value_parser = parse_activation_precision)]
    pub activation_precision: Option<ActivationPrecision>,
    /// Decode steps with each layer's work around its cache compiled (mx::compile): on or off.
    #[arg(long, value_parser = parse_switch)]
    pub compiled_decode: Option<bool>,
    /// GGUF K-quant tensors where weights stay MLX-quantized: exact (Q4_K/Q5_K as MLX affine,
    /// Q6_K decoded), dequantize (all decoded), or requantize to MLX affine q8 or q4 (group 32;
    /// one more rounding).
    #[arg(long, value_parser = parse_k_quants, default_value = "exact")]
    pub gguf_k_quants: KQuants,
}

impl PlanArgs {
    /// These flags as load options (everything else default).
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions { plan: self.overrides(), k_quants: self.gguf_k_quants, ..Default::default() }
    }

    pub fn overrides(&self) -> Overrides {
        Overrides {
            origin: OverrideOrigin::Cli,
            decode_path: self.decode_path,
            pretranspose: self.pretranspose,
            compute_dtype: self.compute_dtype,
            prefill_chunk: self.prefill_chunk,
            dequantize: self.dequantize,
            cpu_kernels: self.cpu_kernels,
            cuda_kernels: self.cuda_kernels,
            threads: self.threads,
            activation_precision: self.activation_precision,
            compiled_decode: self.compiled_decode,
        }
    }

    /// The plan for this machine: class defaults, then the environment, then these flags.
    pub fn plan(&self) -> anyhow::Result<ExecutionPlan> {
        Ok(plan_for(&self.load_options())?)
    }
}

// clap already says "invalid value 'X' for '--flag'"; these add only what is expected.

pub(super) fn parse_decode_path(value: &str) -> Result<DecodePath, String> {
    value.parse::<DecodePath>().map_err(expected)
}

pub(super) fn parse_switch(value: &str) -> Result<bool, String> {
    hardware::parse_switch(value).map_err(expected)
}

pub(super) fn parse_dtype(value: &str) -> Result<Dtype, String> {
    hardware::parse_compute_dtype(value).map_err(expected)
}

/// One validation for every command that takes --prefill-chunk (generate, run, score, bench).
pub(super) fn parse_chunk(value: &str) -> Result<u32, String> {
    hardware::parse_prefill_chunk(value).map_err(expected)
}

pub(super) fn parse_activation_precision(value: &str) -> Result<ActivationPrecision, String> {
    hardware::parse_activation_precision(value).map_err(expected)
}

pub(super) fn parse_threads(value: &str) -> Result<u32, String> {
    hardware::parse_threads(value).map_err(expected)
}

fn expected(error: hardware::InvalidValue) -> String {
    format!("expected {}", error.accepted)
}

pub(super) fn parse_k_quants(value: &str) -> Result<KQuants, String> {
    KQuants::parse(value).ok_or_else(|| "expected exact, dequantize, q8 or q4".to_string())
}
