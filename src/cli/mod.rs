//! The command line. Each subcommand lives in its own module with its own `Args` and `run`.

mod detect;
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
}

pub fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Detect(args) => detect::run(&args),
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
