//! Benchmark page generator: reads "mlxcel-bench/1" result files (one per engine run), merges them
//! and renders a Markdown page with SVG charts in which every number comes from the files.

pub mod schema;
pub mod tables;

pub use schema::{ReportError, SCHEMA};
pub use tables::Dataset;
