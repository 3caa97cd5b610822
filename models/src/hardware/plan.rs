//! The execution plan: which code paths and precisions the model runners use on this machine.
//!
//! Defaults come from the hardware class alone ([`ExecutionPlan::for_class`], a pure function);
//! overrides are layered on top from the environment and, later, the command line. Every setting
//! carries its [`Provenance`], so `mlxcel detect` (and any log that records a plan) can say why
//! each choice was made.

use std::fmt;

use mlx_bridge::Dtype;
pub use mlx_bridge::block_quant::Precision as ActivationPrecision;
use serde::{Serialize, Serializer};

use super::{Backend, HardwareProfile};

/// The hardware classes that have their own defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HardwareClass {
    /// MLX's CPU backend; `arch` is `std::env::consts::ARCH`.
    Cpu { arch: String },
    /// MLX's CUDA backend; the compute capability when the device reported one.
    Cuda { compute_capability: Option<(u32, u32)> },
    /// An Apple GPU whose Neural Accelerators MLX can use (M5 or later on macOS 26.2 or later).
    AppleNeuralAccelerator,
    /// Any other Apple GPU.
    AppleGpu,
}

impl HardwareClass {
    pub fn of(profile: &HardwareProfile) -> Self {
        match profile.backend {
            Backend::Cpu => HardwareClass::Cpu { arch: profile.cpu.arch.clone() },
            Backend::Cuda => HardwareClass::Cuda {
                compute_capability: profile
                    .cuda
                    .as_ref()
                    .map(|cuda| (cuda.compute_capability_major, cuda.compute_capability_minor)),
            },
            Backend::Metal if profile.apple.as_ref().is_some_and(|apple| apple.neural_accelerator) => {
                HardwareClass::AppleNeuralAccelerator
            }
            Backend::Metal => HardwareClass::AppleGpu,
        }
    }
}

/// `cpu-x86_64`, `cuda-sm90` (`cuda` without a compute capability), `apple-neural-accelerator`,
/// `apple-gpu`.
impl fmt::Display for HardwareClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HardwareClass::Cpu { arch } => write!(f, "cpu-{arch}"),
            HardwareClass::Cuda { compute_capability: Some((major, minor)) } => write!(f, "cuda-sm{major}{minor}"),
            HardwareClass::Cuda { compute_capability: None } => f.write_str("cuda"),
            HardwareClass::AppleNeuralAccelerator => f.write_str("apple-neural-accelerator"),
            HardwareClass::AppleGpu => f.write_str("apple-gpu"),
        }
    }
}

impl Serialize for HardwareClass {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// How a decode step runs the decoder layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DecodePath {
    /// Each layer as one compiled block: fewer ops to build and launch per token.
    Fused,
    /// Each layer as separate ops, leaving MLX free to pick its own kernels for every matmul.
    Split,
}

impl DecodePath {
    pub fn name(self) -> &'static str {
        match self {
            DecodePath::Fused => "fused",
            DecodePath::Split => "split",
        }
    }
}

impl fmt::Display for DecodePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingSource {
    Default(HardwareClass),
    Env(&'static str),
    Cli,
}

/// `default (cpu-x86_64)`, `env MLXCEL_DECODE_PATH`, `cli`.
impl fmt::Display for SettingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingSource::Default(class) => write!(f, "default ({class})"),
            SettingSource::Env(variable) => write!(f, "env {variable}"),
            SettingSource::Cli => f.write_str("cli"),
        }
    }
}

impl Serialize for SettingSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Where a setting came from, and why it has its value (one line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    pub source: SettingSource,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanProvenance {
    pub decode_path: Provenance,
    pub pretranspose: Provenance,
    pub compute_dtype: Provenance,
    pub prefill_chunk: Provenance,
    pub dequantize: Provenance,
    pub cpu_kernels: Provenance,
    pub cuda_kernels: Provenance,
    pub threads: Provenance,
    pub activation_precision: Provenance,
    pub compiled_decode: Provenance,
}

/// The code paths and precision to run with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionPlan {
    pub hardware_class: HardwareClass,
    pub decode_path: DecodePath,
    /// Store every dense projection and the LM head transposed at load, in every family, so decode
    /// matmuls read them in the layout the kernels prefer instead of through a transposed view.
    pub pretranspose: bool,
    /// The dtype activations and unquantized weights compute in: float32, bfloat16 or float16.
    #[serde(serialize_with = "serialize_dtype")]
    pub compute_dtype: Dtype,
    /// Tokens per prefill step; longer prompts run in chunks of this many.
    pub prefill_chunk: u32,
    /// Unpack quantized checkpoints (MLX affine, GGUF) to dense compute-dtype weights at load,
    /// where the backend's dense matmul outruns its quantized one enough to pay for the memory.
    pub dequantize: bool,
    /// mlxcel's own CPU kernels (norms, RoPE, attention, and block-quantized matmul for weights
    /// kept quantized) instead of MLX's op-by-op CPU fallbacks. Only CPU work is affected.
    pub cpu_kernels: bool,
    /// mlxcel's own NVIDIA kernels (single-position attention of any head size up to 256,
    /// one-row affine 4/8-bit matmul) instead of MLX's ops for those calls. Only CUDA work is
    /// affected.
    pub cuda_kernels: bool,
    /// Threads for mlxcel's CPU kernels.
    pub threads: u32,
    /// How mlxcel's CPU kernels round activations before their integer dot products with
    /// block-quantized weights: int8 per block of 32 (llama.cpp's scheme) or int16.
    #[serde(serialize_with = "serialize_precision")]
    pub activation_precision: ActivationPrecision,
    /// Decode steps run each layer's work before its cache (norms, projections, a family's
    /// residual mixing) and after its attention (output projection, residuals, feed-forward) as
    /// graphs compiled once with mx::compile, in every family; prefill runs op by op.
    pub compiled_decode: bool,
    pub provenance: PlanProvenance,
}

fn serialize_precision<S: Serializer>(precision: &ActivationPrecision, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(precision.name())
}

fn serialize_dtype<S: Serializer>(dtype: &Dtype, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(dtype.name())
}

/// One row of the plan, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSetting<'a> {
    pub name: &'static str,
    pub value: String,
    pub provenance: &'a Provenance,
}

/// A class default and the reason for it.
struct ClassDefault<T> {
    value: T,
    reason: &'static str,
}

struct ClassDefaults {
    decode_path: ClassDefault<DecodePath>,
    pretranspose: ClassDefault<bool>,
    compute_dtype: ClassDefault<Dtype>,
    prefill_chunk: ClassDefault<u32>,
    dequantize: ClassDefault<bool>,
    cpu_kernels: ClassDefault<bool>,
    cuda_kernels: ClassDefault<bool>,
    compiled_decode: ClassDefault<bool>,
}

const APPLE_HALF_PRECISION: &str = "half the weight bytes of float32, and bandwidth-bound decode reads every weight per token; bf16 keeps fp32's range";
const APPLE_KEEP_QUANTIZED: &str = "MLX's Metal quantized matmul is mlx-lm's path for 4/8-bit models; dense weights would \
     read 2-4x the bytes per token";
const GPU_KEEP_QUANTIZED: &str = "keeps the memory a quantized checkpoint was chosen for; speed is a wash, measured on H100: \
     Gemma 3n E2B 4-bit decoded 74.8 tok/s vs 66.4 bf16 in one session, 52.8 vs 68.0 in another";
const CPU_KERNELS: &str = "measured (SmolLM2 Q4_1, mlxcel bench --breakdown): MLX's CPU fallbacks build 3919 graph nodes \
     per decode token, mlxcel's kernels 1299";
const ACTIVATION_PRECISION: &str = "measured (SmolLM2 Q4_1, 2-core x86): int8 activations, as llama.cpp rounds them, \
     turn SmolLM2's greedy answer to \"What is the capital of France?\" into French nonsense where float32 and int16 \
     say Paris, and move Gemma 3 270M's logits by 2.35% of the largest (int16: 0.0075%); int16 costs SmolLM2 15% of \
     decode (84.0 vs 98.6 tok/s) and 23% of prefill (536 vs 692), Gemma 3 270M 1% and 8%, in one mlxcel bench run (docs/benchmarks/cpu-x86_64.md)";
const COMPILED_DECODE_UNMEASURED: &str = "provisional until measured on this class: off runs every op as built";
const CPU_COMPILED_DECODE: &str = "measured (2-core x86, mlxcel bench --compiled-decode off,on --breakdown, one run): \
     mlxcel's CPU kernels already run a step's norms, RoPE, attention and gating as single ops, so compiling leaves \
     SmolLM2 Q4_1 at 816 graph nodes per token and decodes 89.7 tok/s vs 97.2 off; Gemma 3n e2b-mini 4-bit 972 vs \
     1102 nodes, 31.7 vs 30.8 tok/s, within the spread (benchmarks/results/cpu-x86_64/compiled-decode-*.json)";
const CUDA_KERNELS_MEASURED: &str = "measured (H200, Gemma 3n E2B, mlxcel bench tg128 with compiled decode \
                                     steps, benchmarks/results/h200-2026-12-03-d85ca73/): bf16 127.0 tok/s with mlxcel's kernels vs \
                                     69.3 without, 4-bit 101.5 vs 72.8 (one session; sessions before, bf16 132.0 vs \
                                     108.0 and 111.0 vs 64.8); prefill does not use them";
const NO_CUDA_KERNELS: &str = "the model does not run on an NVIDIA GPU";
const GPU_NO_CPU_KERNELS: &str = "the model runs on the GPU, where MLX's fused kernels serve these ops";
const GPU_PREFILL_CHUNK: &str =
    "provisional until measured: 2048-token chunks should keep the matmul units busy while bounding attention scratch";

impl ClassDefaults {
    fn of(class: &HardwareClass) -> Self {
        match class {
            HardwareClass::Cpu { .. } => ClassDefaults {
                decode_path: ClassDefault {
                    value: DecodePath::Fused,
                    reason: "measured (Gemma 3n e2b-mini fp32, 2-core x86): fused decodes 5.08 tok/s vs split 4.88 \
                             with pre-transposition, equal without",
                },
                pretranspose: ClassDefault {
                    value: true,
                    reason: "measured (Gemma 3n e2b-mini fp32, 2-core x86, OpenBLAS): pre-transposed weights decode \
                             5.08 tok/s vs 3.78 (+34%)",
                },
                compute_dtype: ClassDefault {
                    value: Dtype::F32,
                    reason: "MLX's CPU bf16/f16 matmul runs ~5 GFLOP/s whatever the BLAS; fp32 with OpenBLAS \
                             runs ~120-160 GFLOP/s",
                },
                prefill_chunk: ClassDefault {
                    value: 512,
                    reason: "provisional until measured: 512-row fp32 GEMMs should already keep every core busy; larger \
                             chunks mostly grow activation memory",
                },
                dequantize: ClassDefault {
                    value: false,
                    reason: "measured (2-core x86, mlxcel bench, one run): weights kept in their block formats on \
                             mlxcel's CPU kernels decode SmolLM2 Q4_1 at 84.0 tok/s vs 14.4 dequantized to float32 and \
                             prefill 536 vs 279, in 216 MiB peak RSS vs 779; Gemma 3 270M Q4_K_M 52.9 vs 5.4, 608 vs 393, \
                             403 MiB vs 2100 (docs/benchmarks/cpu-x86_64.md)",
                },
                cpu_kernels: ClassDefault { value: true, reason: CPU_KERNELS },
                cuda_kernels: ClassDefault { value: false, reason: NO_CUDA_KERNELS },
                compiled_decode: ClassDefault { value: false, reason: CPU_COMPILED_DECODE },
            },
            HardwareClass::Cuda { .. } => ClassDefaults {
                decode_path: ClassDefault {
                    value: DecodePath::Fused,
                    reason: "measured (Gemma 3n E2B bf16, H100): fused decodes 66.4 tok/s vs split 37.1; E4B 57.3 vs \
                             26.2; E2B 4-bit 74.8 vs 43.6",
                },
                pretranspose: ClassDefault {
                    value: false,
                    reason: "measured (Gemma 3n fused bf16, H100): pre-transposed weights decode slower, E2B 64.7 vs \
                             66.4 tok/s, E4B 51.0 vs 57.3",
                },
                compute_dtype: ClassDefault {
                    value: Dtype::BF16,
                    reason: "bf16 tensor-core matmuls at half fp32's weight bytes; bf16 keeps fp32's range",
                },
                prefill_chunk: ClassDefault {
                    value: 2048,
                    reason: "measured (H200, Gemma 3n E2B bf16, mlxcel bench pp2048, one session): 2048-token \
                             chunks prefill 39.3k tok/s, 1024 30.6k, 512 23.4k (with the sliding-window masks \
                             built on the device; building them on the host made large chunks the slowest)",
                },
                dequantize: ClassDefault { value: false, reason: GPU_KEEP_QUANTIZED },
                cpu_kernels: ClassDefault { value: false, reason: GPU_NO_CPU_KERNELS },
                cuda_kernels: ClassDefault { value: true, reason: CUDA_KERNELS_MEASURED },
                compiled_decode: ClassDefault {
                    value: true,
                    reason: "measured (H200, Gemma 3n E2B, mlxcel bench tg128, 9 samples per variant over three runs in \
                             one session): compiled steps decode bf16 at a median 85.1 tok/s vs 54.7 op by op, 4-bit \
                             80.4 vs 71.6, with 3624 graph nodes per token vs 4264 (bf16, depth 2048)",
                },
            },
            HardwareClass::AppleNeuralAccelerator => ClassDefaults {
                decode_path: ClassDefault {
                    value: DecodePath::Split,
                    reason: "published M5 Max results: fused per-layer decode regressed M5 decode by 6.3% (it \
                             helped M1 Ultra by 3.6%)",
                },
                pretranspose: ClassDefault {
                    value: true,
                    reason: "published M5 Max results: pre-transposed dense MLP/LM-head weights helped M5 decode",
                },
                compute_dtype: ClassDefault { value: Dtype::BF16, reason: APPLE_HALF_PRECISION },
                prefill_chunk: ClassDefault { value: 2048, reason: GPU_PREFILL_CHUNK },
                dequantize: ClassDefault { value: false, reason: APPLE_KEEP_QUANTIZED },
                cpu_kernels: ClassDefault { value: false, reason: GPU_NO_CPU_KERNELS },
                cuda_kernels: ClassDefault { value: false, reason: NO_CUDA_KERNELS },
                compiled_decode: ClassDefault { value: false, reason: COMPILED_DECODE_UNMEASURED },
            },
            HardwareClass::AppleGpu => ClassDefaults {
                decode_path: ClassDefault {
                    value: DecodePath::Fused,
                    reason: "published results: fused per-layer decode helped M1 Ultra decode by 3.6%",
                },
                pretranspose: ClassDefault {
                    value: false,
                    reason: "the published pre-transpose gain was on M5's Neural Accelerators; none is shown \
                             without them",
                },
                compute_dtype: ClassDefault { value: Dtype::BF16, reason: APPLE_HALF_PRECISION },
                prefill_chunk: ClassDefault { value: 2048, reason: GPU_PREFILL_CHUNK },
                dequantize: ClassDefault { value: false, reason: APPLE_KEEP_QUANTIZED },
                cpu_kernels: ClassDefault { value: false, reason: GPU_NO_CPU_KERNELS },
                cuda_kernels: ClassDefault { value: false, reason: NO_CUDA_KERNELS },
                compiled_decode: ClassDefault { value: false, reason: COMPILED_DECODE_UNMEASURED },
            },
        }
    }
}

impl ExecutionPlan {
    /// The defaults for the profile's hardware class and core count.
    pub fn for_profile(profile: &HardwareProfile) -> Self {
        let cores = profile.cpu.physical_cores.unwrap_or(profile.cpu.cores).max(1);
        Self::for_class(HardwareClass::of(profile), u32::try_from(cores).unwrap_or(u32::MAX))
    }

    /// The defaults for `class` on a machine with `physical_cores`.
    pub fn for_class(class: HardwareClass, physical_cores: u32) -> Self {
        let defaults = ClassDefaults::of(&class);
        let provenance =
            |reason: &str| Provenance { source: SettingSource::Default(class.clone()), reason: reason.to_string() };
        ExecutionPlan {
            provenance: PlanProvenance {
                decode_path: provenance(defaults.decode_path.reason),
                pretranspose: provenance(defaults.pretranspose.reason),
                compute_dtype: provenance(defaults.compute_dtype.reason),
                prefill_chunk: provenance(defaults.prefill_chunk.reason),
                dequantize: provenance(defaults.dequantize.reason),
                cpu_kernels: provenance(defaults.cpu_kernels.reason),
                cuda_kernels: provenance(defaults.cuda_kernels.reason),
                threads: provenance(
                    "one per physical core: the kernels are bound by memory bandwidth and each core's vector \
                     units, which hyper-threads share",
                ),
                activation_precision: provenance(ACTIVATION_PRECISION),
                compiled_decode: provenance(defaults.compiled_decode.reason),
            },
            hardware_class: class,
            decode_path: defaults.decode_path.value,
            pretranspose: defaults.pretranspose.value,
            compute_dtype: defaults.compute_dtype.value,
            prefill_chunk: defaults.prefill_chunk.value,
            dequantize: defaults.dequantize.value,
            cpu_kernels: defaults.cpu_kernels.value,
            cuda_kernels: defaults.cuda_kernels.value,
            threads: physical_cores.max(1),
            activation_precision: ActivationPrecision::Int16,
            compiled_decode: defaults.compiled_decode.value,
        }
    }

    /// The settings in display order, with their values as text.
    pub fn settings(&self) -> [PlanSetting<'_>; 10] {
        [
            PlanSetting {
                name: "decode_path",
                value: self.decode_path.to_string(),
                provenance: &self.provenance.decode_path,
            },
            PlanSetting {
                name: "pretranspose",
                value: on_off(self.pretranspose).to_string(),
                provenance: &self.provenance.pretranspose,
            },
            PlanSetting {
                name: "compute_dtype",
                value: self.compute_dtype.name().to_string(),
                provenance: &self.provenance.compute_dtype,
            },
            PlanSetting {
                name: "prefill_chunk",
                value: self.prefill_chunk.to_string(),
                provenance: &self.provenance.prefill_chunk,
            },
            PlanSetting {
                name: "dequantize",
                value: on_off(self.dequantize).to_string(),
                provenance: &self.provenance.dequantize,
            },
            PlanSetting {
                name: "cpu_kernels",
                value: on_off(self.cpu_kernels).to_string(),
                provenance: &self.provenance.cpu_kernels,
            },
            PlanSetting {
                name: "cuda_kernels",
                value: on_off(self.cuda_kernels).to_string(),
                provenance: &self.provenance.cuda_kernels,
            },
            PlanSetting { name: "threads", value: self.threads.to_string(), provenance: &self.provenance.threads },
            PlanSetting {
                name: "activation_precision",
                value: self.activation_precision.name().to_string(),
                provenance: &self.provenance.activation_precision,
            },
            PlanSetting {
                name: "compiled_decode",
                value: on_off(self.compiled_decode).to_string(),
                provenance: &self.provenance.compiled_decode,
            },
        ]
    }
}

pub(super) fn on_off(enabled: bool) -> &'static str {
    if enabled { "on" } else { "off" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::{AppleProfile, BlasLibrary, BlasProfile, CpuProfile, CudaProfile};

    fn cpu_profile(arch: &str) -> CpuProfile {
        CpuProfile {
            model: None,
            arch: arch.to_string(),
            cores: 8,
            physical_cores: Some(4),
            features: Vec::new(),
            blas: BlasProfile { library: BlasLibrary::OpenBlas, path: None },
        }
    }

    fn profile(backend: Backend) -> HardwareProfile {
        HardwareProfile {
            backend,
            device_name: "test device".to_string(),
            memory_bytes: Some(1 << 30),
            mlx_version: "0.32.4".to_string(),
            mlx_package: "mlx-cpu".to_string(),
            mlx_library: None,
            blas_linked: "openblas".to_string(),
            cpu: cpu_profile("x86_64"),
            apple: None,
            cuda: None,
        }
    }

    fn apple_profile(chip: &str, architecture: &str, macos: &str) -> HardwareProfile {
        HardwareProfile {
            apple: Some(AppleProfile::from_reported(chip, Some(architecture), Some(macos), true)),
            cpu: cpu_profile("aarch64"),
            ..profile(Backend::Metal)
        }
    }

    /// (class, decode path, pretranspose, compute dtype, prefill chunk)
    fn defaults(class: HardwareClass) -> (String, DecodePath, bool, Dtype, u32) {
        let plan = ExecutionPlan::for_class(class, 4);
        (plan.hardware_class.to_string(), plan.decode_path, plan.pretranspose, plan.compute_dtype, plan.prefill_chunk)
    }

    #[test]
    fn defaults_per_hardware_class() {
        let cpu = HardwareClass::Cpu { arch: "x86_64".to_string() };
        assert_eq!(defaults(cpu), ("cpu-x86_64".to_string(), DecodePath::Fused, true, Dtype::F32, 512));
        let hopper = HardwareClass::Cuda { compute_capability: Some((9, 0)) };
        assert_eq!(defaults(hopper.clone()), ("cuda-sm90".to_string(), DecodePath::Fused, false, Dtype::BF16, 2048));
        let unknown_cuda = HardwareClass::Cuda { compute_capability: None };
        assert_eq!(defaults(unknown_cuda), ("cuda".to_string(), DecodePath::Fused, false, Dtype::BF16, 2048));
        assert!(ExecutionPlan::for_class(hopper, 4).cuda_kernels);
        assert_eq!(
            defaults(HardwareClass::AppleNeuralAccelerator),
            ("apple-neural-accelerator".to_string(), DecodePath::Split, true, Dtype::BF16, 2048)
        );
        assert_eq!(
            defaults(HardwareClass::AppleGpu),
            ("apple-gpu".to_string(), DecodePath::Fused, false, Dtype::BF16, 2048)
        );
    }

    #[test]
    fn every_default_says_which_class_chose_it() {
        for class in [
            HardwareClass::Cpu { arch: "aarch64".to_string() },
            HardwareClass::Cuda { compute_capability: Some((10, 0)) },
            HardwareClass::AppleNeuralAccelerator,
            HardwareClass::AppleGpu,
        ] {
            let plan = ExecutionPlan::for_class(class.clone(), 4);
            for setting in plan.settings() {
                assert_eq!(setting.provenance.source, SettingSource::Default(class.clone()), "{}", setting.name);
                assert_eq!(setting.provenance.source.to_string(), format!("default ({class})"));
                let reason = &setting.provenance.reason;
                assert!(!reason.is_empty() && !reason.contains('\n'), "{class} {}: {reason:?}", setting.name);
            }
        }
    }

    #[test]
    fn measured_defaults_say_so_and_the_rest_are_provisional() {
        let cpu = ExecutionPlan::for_class(HardwareClass::Cpu { arch: "x86_64".to_string() }, 4);
        let cuda = ExecutionPlan::for_class(HardwareClass::Cuda { compute_capability: Some((9, 0)) }, 4);
        for plan in [&cpu, &cuda] {
            let p = &plan.provenance;
            for reason in [&p.decode_path.reason, &p.pretranspose.reason, &p.dequantize.reason] {
                assert!(reason.starts_with("measured") || reason.contains("measured on"), "{reason}");
            }
        }
        assert!(cpu.provenance.prefill_chunk.reason.contains("provisional until measured"));
        assert!(cuda.provenance.prefill_chunk.reason.starts_with("measured"));
        assert!(cpu.pretranspose && !cuda.pretranspose);
        assert!(cpu.provenance.compute_dtype.reason.contains("5 GFLOP/s"));
    }

    #[test]
    fn class_from_profile() {
        assert_eq!(HardwareClass::of(&profile(Backend::Cpu)), HardwareClass::Cpu { arch: "x86_64".to_string() });

        let cuda = CudaProfile {
            device_name: Some("NVIDIA H100".to_string()),
            compute_capability: "9.0".to_string(),
            compute_capability_major: 9,
            compute_capability_minor: 0,
            sm_count: Some(132),
            memory_bytes: None,
        };
        let hopper = HardwareProfile { cuda: Some(cuda), ..profile(Backend::Cuda) };
        assert_eq!(HardwareClass::of(&hopper).to_string(), "cuda-sm90");
        assert_eq!(HardwareClass::of(&profile(Backend::Cuda)).to_string(), "cuda");

        let m5_pro = apple_profile("Apple M5 Pro", "applegpu_g17s", "26.2");
        assert_eq!(HardwareClass::of(&m5_pro), HardwareClass::AppleNeuralAccelerator);
        assert_eq!(ExecutionPlan::for_profile(&m5_pro).decode_path, DecodePath::Split);
        let m5_old_macos = apple_profile("Apple M5", "applegpu_g17g", "26.1");
        assert_eq!(HardwareClass::of(&m5_old_macos), HardwareClass::AppleGpu);
        let m1_max = apple_profile("Apple M1 Max", "applegpu_g13s", "26.2");
        assert_eq!(HardwareClass::of(&m1_max), HardwareClass::AppleGpu);
        // Metal without an Apple profile cannot claim Neural Accelerators.
        assert_eq!(HardwareClass::of(&profile(Backend::Metal)), HardwareClass::AppleGpu);
    }

    #[test]
    fn plan_json_shape() {
        let plan = ExecutionPlan::for_class(HardwareClass::Cpu { arch: "x86_64".to_string() }, 4);
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["hardware_class"], "cpu-x86_64");
        assert_eq!(json["decode_path"], "fused");
        assert_eq!(json["pretranspose"], true);
        assert_eq!(json["compute_dtype"], "float32");
        assert_eq!(json["prefill_chunk"], 512);
        for setting in ["decode_path", "pretranspose", "compute_dtype", "prefill_chunk"] {
            assert_eq!(json["provenance"][setting]["source"], "default (cpu-x86_64)", "{setting}");
            assert!(json["provenance"][setting]["reason"].is_string(), "{setting}");
        }
        let apple = serde_json::to_value(ExecutionPlan::for_class(HardwareClass::AppleNeuralAccelerator, 4)).unwrap();
        assert_eq!((&apple["decode_path"], &apple["compute_dtype"]), (&"split".into(), &"bfloat16".into()));
    }

    #[test]
    fn settings_rows_in_display_order() {
        let plan = ExecutionPlan::for_class(HardwareClass::AppleNeuralAccelerator, 4);
        let rows: Vec<(&str, String)> = plan.settings().iter().map(|row| (row.name, row.value.clone())).collect();
        let expected = [
            ("decode_path", "split"),
            ("pretranspose", "on"),
            ("compute_dtype", "bfloat16"),
            ("prefill_chunk", "2048"),
            ("dequantize", "off"),
            ("cpu_kernels", "off"),
            ("cuda_kernels", "off"),
            ("threads", "4"),
            ("activation_precision", "int16"),
            ("compiled_decode", "off"),
        ];
        assert_eq!(rows, expected.map(|(name, value)| (name, value.to_string())));
    }
}
