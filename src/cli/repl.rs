//! `mlxcel run`: an interactive chat. History is kept across turns; `/clear` forgets it; Ctrl-C
//! stops the reply being written; Ctrl-D (or `/exit`) leaves.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use mlxcel::api::Event;
use mlxcel::chat_template::Message;
use mlxcel::generate::FinishReason;
use rustyline::error::ReadlineError;

use super::model_args::ModelArgs;
use super::sampling_args::SamplingArgs;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A system message for the whole conversation.
    #[arg(long)]
    system: Option<String>,
    /// Print generation statistics after each reply.
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let options = args.sampling.options()?;
    let model = args.model.load()?;
    if !model.has_chat_template() {
        bail!(
            "{} has no chat template, which `run` needs; use `mlxcel generate --no-chat-template`",
            model.dir().display()
        );
    }
    // While a reply streams the terminal is in cooked mode and Ctrl-C is a signal: it only sets
    // this flag. At the prompt, rustyline reads Ctrl-C as a key instead.
    let stop = Arc::new(AtomicBool::new(false));
    let handler_flag = stop.clone();
    ctrlc::set_handler(move || handler_flag.store(true, Ordering::Relaxed)).context("installing the Ctrl-C handler")?;

    let mut editor = rustyline::DefaultEditor::new().context("starting the line editor")?;
    let mut history = initial_history(args);
    eprintln!(
        "mlxcel chat with {} ({}); /clear forgets the conversation, Ctrl-C stops a reply, Ctrl-D exits.",
        args.model.model,
        model.architecture()
    );
    loop {
        let line = match editor.readline(">>> ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("reading input"),
        };
        let input = line.trim();
        match input {
            "" => continue,
            "/exit" | "/quit" => break,
            "/clear" => {
                history = initial_history(args);
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        let _ = editor.add_history_entry(input);
        history.push(Message::user(input));
        stop.store(false, Ordering::Relaxed);
        let mut reply = String::new();
        let mut stdout = std::io::stdout().lock();
        for event in model.chat_stream(&history, &options)?.cancel_on(stop.clone()) {
            match event? {
                Event::Token { text, .. } | Event::Flush { text } => {
                    reply.push_str(&text);
                    stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).context("writing to stdout")?;
                }
                Event::Done { finish_reason, stats } => {
                    writeln!(stdout)?;
                    if finish_reason == FinishReason::Cancelled {
                        eprintln!("(stopped)");
                    }
                    if args.stats {
                        eprint!("{}", super::generate::summary(&model, &stats));
                    }
                }
            }
        }
        history.push(Message::assistant(&reply));
    }
    Ok(())
}

fn initial_history(args: &RunArgs) -> Vec<Message> {
    args.system.iter().map(Message::system).collect()
}
