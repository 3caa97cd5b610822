//! `mlxcel`: LLM inference on MLX's C++ API, with code paths chosen per hardware class.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` keeps anyhow's context chain on one line ("outer: inner"), so scripts can grep it.
            eprintln!("mlxcel: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
