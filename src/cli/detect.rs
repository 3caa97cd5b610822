//! `mlxcel detect`: the hardware profile and the execution plan derived from it, as a table or JSON.

use anyhow::Context;
use mlxcel_models::hardware::{self, AppleProfile, CudaProfile, ExecutionPlan, HardwareProfile};
use serde::Serialize;

use super::table::{Section, render_columns, render_sections};

#[derive(Debug, clap::Args)]
pub struct DetectArgs {
    /// Print one JSON object, {"profile": ..., "plan": ...}, instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct DetectReport<'a> {
    profile: &'a HardwareProfile,
    plan: &'a ExecutionPlan,
}

pub fn run(args: &DetectArgs) -> anyhow::Result<()> {
    let profile = hardware::detect().context("hardware detection failed")?;
    let plan = ExecutionPlan::for_profile(&profile).with_env_overrides()?;
    let text = if args.json {
        serde_json::to_string_pretty(&DetectReport { profile: &profile, plan: &plan })? + "\n"
    } else {
        render(&profile, &plan)
    };
    super::print_stdout(&text)
}

fn render(profile: &HardwareProfile, plan: &ExecutionPlan) -> String {
    let mut sections = vec![mlx_section(profile), device_section(profile), cpu_section(profile)];
    sections.extend(profile.apple.as_ref().map(apple_section));
    sections.extend(profile.cuda.as_ref().map(cuda_section));
    let mut out = render_sections(&sections);
    out.push('\n');
    out.push_str(&format!("Execution plan ({})\n", plan.hardware_class));
    let rows: Vec<Vec<String>> = plan
        .settings()
        .iter()
        .map(|setting| {
            let provenance = setting.provenance;
            vec![
                setting.name.to_string(),
                setting.value.clone(),
                provenance.source.to_string(),
                provenance.reason.clone(),
            ]
        })
        .collect();
    out.push_str(&render_columns(&["setting", "value", "source", "reason"], &rows));
    out
}

fn mlx_section(profile: &HardwareProfile) -> Section {
    Section::new("MLX")
        .row("version", &profile.mlx_version)
        .row("package", &profile.mlx_package)
        .row("library", or_unknown(profile.mlx_library.as_deref()))
        .row("BLAS linked", format!("{} (at build time)", profile.blas_linked))
}

fn device_section(profile: &HardwareProfile) -> Section {
    Section::new("Device")
        .row("backend", profile.backend.name())
        .row("name", &profile.device_name)
        .row("memory", memory(profile.memory_bytes))
}

fn cpu_section(profile: &HardwareProfile) -> Section {
    let cpu = &profile.cpu;
    let cores = match cpu.physical_cores {
        Some(physical) => format!("{} logical available, {physical} physical", cpu.cores),
        None => format!("{} logical available", cpu.cores),
    };
    let features = if cpu.features.is_empty() { "none detected".to_string() } else { cpu.features.join(" ") };
    let blas = match &cpu.blas.path {
        Some(path) => format!("{} ({path})", cpu.blas.library),
        None => cpu.blas.library.to_string(),
    };
    Section::new("CPU")
        .row("model", or_unknown(cpu.model.as_deref()))
        .row("arch", &cpu.arch)
        .row("cores", cores)
        .row("features", features)
        .row("BLAS in use", blas)
}

fn apple_section(apple: &AppleProfile) -> Section {
    let chip = match apple.chip_generation {
        Some(generation) => format!("{} (M{generation})", apple.chip),
        None => apple.chip.clone(),
    };
    let gpu = match (&apple.gpu_architecture, apple.gpu_generation, apple.gpu_suffix) {
        (Some(name), Some(generation), Some(suffix)) => format!("{name} (generation {generation}, suffix {suffix})"),
        (Some(name), _, _) => format!("{name} (unrecognised: the brand string decides)"),
        (None, _, _) => "unknown".to_string(),
    };
    let neural_accelerator = format!(
        "{} (GPU has them: {}; macOS 26.2 or later: {})",
        yes_no(apple.neural_accelerator),
        yes_no(apple.has_neural_accelerator),
        yes_no(apple.macos_supports_na)
    );
    Section::new("Apple")
        .row("chip", chip)
        .row("GPU architecture", gpu)
        .row("macOS", or_unknown(apple.macos_version.as_deref()))
        .row("neural accelerator", neural_accelerator)
        .row("MLX NAX kernels", yes_no(apple.mlx_has_nax_kernels))
}

fn cuda_section(cuda: &CudaProfile) -> Section {
    let sm_count = match cuda.sm_count {
        Some(count) => count.to_string(),
        None => "unknown (libcuda.so.1 could not be queried)".to_string(),
    };
    Section::new("CUDA")
        .row("device", or_unknown(cuda.device_name.as_deref()))
        .row("compute capability", &cuda.compute_capability)
        .row("SMs", sm_count)
        .row("memory", memory(cuda.memory_bytes))
}

fn or_unknown(value: Option<&str>) -> String {
    value.unwrap_or("unknown").to_string()
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn memory(bytes: Option<u64>) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    match bytes {
        Some(bytes) => format!("{:.1} GiB", bytes as f64 / GIB),
        None => "unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_in_gibibytes() {
        assert_eq!(memory(Some(135_052_107_776)), "125.8 GiB");
        assert_eq!(memory(None), "unknown");
    }
}
