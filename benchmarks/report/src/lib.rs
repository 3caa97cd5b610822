//! Benchmark page generator: reads "mlxcel-bench/1" result files (one per engine run), merges them
//! and renders a Markdown page with SVG charts in which every number comes from the files.

pub mod charts;
pub mod page;
pub mod schema;
pub mod tables;

pub use page::{Bandwidth, NodeCost, Page, PageOptions};
pub use schema::{ReportError, SCHEMA};
pub use tables::Dataset;

/// Loads `inputs`, renders the page and writes it with its charts; returns the paths written.
pub fn generate(
    inputs: &[std::path::PathBuf],
    baseline: Option<&str>,
    opts: &PageOptions,
) -> Result<Vec<std::path::PathBuf>, ReportError> {
    let sources = schema::load(inputs)?;
    let data = Dataset::new(&sources, baseline)?;
    let page = page::render(&data, opts)?;
    page::write(&page, opts)
}
