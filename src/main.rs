//! `mlxcel`: LLM inference on MLX's C++ API, with code paths chosen per hardware class.

mod cli;

use std::io::Write;

fn main() {
    let code = match cli::run() {
        Ok(()) => 0,
        // `mlxcel generate | head`: the reader took what it wanted.
        Err(error) if cli::is_broken_pipe(&error) => 0,
        Err(error) => {
            // `{:#}` keeps anyhow's context chain on one line ("outer: inner"), so scripts can grep it.
            eprintln!("mlxcel: error: {error:#}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // Leave without running shared-library destructors: OpenBLAS 0.3.21 (Debian 12's) can
    // deadlock in its exit handler joining worker threads once MLX has run multithreaded GEMMs
    // (seen in 3 of 4 `generate` runs on the 2-core CI class). Everything the process wrote is
    // flushed above, and the OS reclaims the rest.
    // SAFETY: `_exit` ends the process immediately; no Rust state is used afterwards.
    unsafe { libc::_exit(code) }
}
