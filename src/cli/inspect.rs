//! `mlxcel inspect`: architecture, size, dtypes and quantization of a checkpoint, the memory its
//! weights and KV cache take, and the execution plan it would run under.

use mlxcel::api::plan_for;
use mlxcel::hub::{self, HubOptions, ModelSpec};
use mlxcel::model::ModelSummary;

use super::model_args::ModelArgs;
use super::table::{Section, render_sections};

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Context length for the KV-cache estimate (default: the model's maximum).
    #[arg(long)]
    context: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let spec = ModelSpec::parse(&args.model.model)?;
    let dir = hub::resolve(&spec, &HubOptions::from_env(args.model.offline))?;
    let summary = ModelSummary::read(&dir)?;
    let plan = plan_for(&args.model.load_options())?;
    let context = args.context.unwrap_or(summary.context_length as usize);
    let kv_bytes = summary.kv_cache_bytes(context, plan.compute_dtype);
    if args.json {
        let report =
            serde_json::json!({"model": summary, "kv_cache_bytes": kv_bytes, "context": context, "plan": plan});
        return super::print_stdout(&(serde_json::to_string_pretty(&report)? + "\n"));
    }
    let gib = |bytes: u64| human(bytes as f64, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB"]);
    let dtypes = summary.dtypes.iter().map(|(d, n)| format!("{d} x{n}")).collect::<Vec<_>>().join(", ");
    let quantization = summary.quantization.as_ref().map_or("none".to_string(), |q| match q.get("gguf_blocks") {
        Some(serde_json::Value::Array(blocks)) => {
            let names: Vec<&str> = blocks.iter().filter_map(serde_json::Value::as_str).collect();
            format!("GGUF blocks {}", names.join(", "))
        }
        _ => format!(
            "{}-bit, group {}",
            q.get("bits").unwrap_or(&serde_json::Value::Null),
            q.get("group_size").unwrap_or(&serde_json::Value::Null)
        ),
    });
    let model = Section::new("Model")
        .row("path", summary.dir.display().to_string())
        .row("architecture", summary.model_type.clone())
        .row("layers", summary.layers.to_string())
        .row("hidden size", summary.hidden_size.to_string())
        .row("vocabulary", summary.vocab_size.to_string())
        .row("context", summary.context_length.to_string())
        .row("parameters", human(summary.parameters as f64, 1000.0, &["", "K", "M", "B", "T"]))
        .row("tensor dtypes", dtypes)
        .row("quantization", quantization);
    let memory = Section::new("Memory")
        .row("weights (files)", gib(summary.weight_file_bytes))
        .row(&format!("KV cache at {context}"), format!("{} ({})", gib(kv_bytes as u64), plan.compute_dtype));
    let plan_section =
        plan.settings().iter().fold(Section::new(format!("Execution plan ({})", plan.hardware_class)), |section, s| {
            section.row(s.name, format!("{} ({})", s.value, s.provenance.source))
        });
    let sections = [model, memory, plan_section];
    super::print_stdout(&render_sections(&sections))
}

/// `value` in the largest unit it reaches, three significant digits: 1.23 GiB, 415 K.
fn human(value: f64, base: f64, units: &[&str]) -> String {
    let mut value = value;
    let mut unit = 0;
    while value >= base && unit + 1 < units.len() {
        value /= base;
        unit += 1;
    }
    let digits = if value >= 100.0 || unit == 0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {}", units[unit]).trim_end().to_string()
}
