//! The command line. Each subcommand lives in its own module with its own `Args` and `run`.

mod detect;
mod plan_args;
mod score;
mod table;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "mlxcel", version, about = "LLM inference on MLX, with code paths chosen per hardware class")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the detected hardware and the execution plan chosen for it.
    Detect(detect::DetectArgs),
    /// Teacher-forced pass over token ids: all logits to .npy, per-position log-probs as JSON.
    Score(score::ScoreArgs),
}

/// Writes to stdout; a reader that went away (`| head`) ends the output quietly, not with a panic.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

pub fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Detect(args) => detect::run(&args),
        Command::Score(args) => score::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
