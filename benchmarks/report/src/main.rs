use std::path::PathBuf;

use anyhow::{Context, Result};
use bench_report::PageOptions;
use clap::Parser;

/// Writes a Markdown benchmark page and SVG charts from mlxcel-bench/1 result files.
#[derive(Debug, Parser)]
#[command(name = "bench-report", version)]
struct Cli {
    /// Page title, usually the machine ("NVIDIA H100").
    #[arg(long)]
    title: String,
    /// Markdown file to write.
    #[arg(long)]
    out: PathBuf,
    /// Folder for the SVG charts [default: the --out path without its extension].
    #[arg(long)]
    charts_dir: Option<PathBuf>,
    /// Engine that mlxcel is divided by in the ratio column [default: mlx-lm if present, else the
    /// first other engine].
    #[arg(long)]
    baseline: Option<String>,
    /// Markdown inserted verbatim after the methodology paragraph.
    #[arg(long)]
    notes: Option<PathBuf>,
    /// Per-node costs to show with the decode breakdown (`cuda_probe nodes --json` output).
    #[arg(long)]
    node_costs: Option<PathBuf>,
    /// The memory bandwidth decode is measured against: `cuda_kernels --json` output, whose copy
    /// row (a STREAM-style copy, read + write) gives it.
    #[arg(long)]
    bandwidth: Option<PathBuf>,
    /// Generation date shown on the page [default: today, UTC].
    #[arg(long)]
    date: Option<String>,
    /// Result files (one per engine run); all must come from one hardware class.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let notes = match &cli.notes {
        Some(path) => Some(std::fs::read_to_string(path).with_context(|| format!("reading notes {}", path.display()))?),
        None => None,
    };
    let node_costs = match &cli.node_costs {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading node costs {}", path.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{}: not cuda_probe nodes JSON", path.display()))?,
            )
        }
        None => None,
    };
    let bandwidth = match &cli.bandwidth {
        Some(path) => Some(bench_report::Bandwidth::from_kernels_json(path)?),
        None => None,
    };
    let opts = PageOptions {
        node_costs,
        bandwidth,
        title: cli.title,
        charts_dir: cli.charts_dir.unwrap_or_else(|| cli.out.with_extension("")),
        out: cli.out,
        notes,
        generated: cli.date.unwrap_or_else(|| chrono::Utc::now().format("%Y-%m-%d").to_string()),
    };
    let written = bench_report::generate(&cli.inputs, cli.baseline.as_deref(), &opts)?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}
