//! `mlxcel run`: an interactive chat. History is kept across turns; `/clear` forgets it; Ctrl-C
//! stops the reply being written; Ctrl-D (or `/exit`) leaves. When the conversation outgrows the
//! context the oldest exchanges are dropped; a turn that cannot fit alone is refused. Neither, nor
//! a line that is not text, ends the chat.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use mlxcel::api::{Event, Model};
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
            // The line was read and dropped; the next one is unaffected.
            Err(ReadlineError::Io(error)) if error.kind() == io::ErrorKind::InvalidData => {
                eprintln!("(that line is not valid UTF-8; not sent)");
                continue;
            }
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
        let mut turn = history.clone();
        turn.push(Message::user(input));
        let context = model.context_length();
        let ids = match fit_context(&mut turn, context, options.max_tokens, |messages| chat_ids(&model, messages))? {
            Fit::Send { ids, dropped } => {
                if dropped > 0 {
                    eprintln!(
                        "(the conversation outgrew the context of {context} tokens: dropped the {dropped} oldest messages)"
                    );
                }
                ids
            }
            Fit::TooLong { tokens } => {
                eprintln!(
                    "(that message makes a prompt of {tokens} tokens, and the context holds {context}; not sent)"
                );
                continue;
            }
        };
        history = turn;
        stop.store(false, Ordering::Relaxed);
        let mut reply = String::new();
        let mut stdout = std::io::stdout().lock();
        for event in model.stream_ids(&ids, &options)?.cancel_on(stop.clone()) {
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

fn chat_ids(model: &Model, messages: &[Message]) -> anyhow::Result<Vec<u32>> {
    Ok(model.chat_ids(messages)?)
}

/// What to do with the newest turn.
#[derive(Debug, PartialEq)]
enum Fit {
    /// Send these prompt ids; `dropped` old messages made room.
    Send { ids: Vec<u32>, dropped: usize },
    /// The newest message does not fit even alone (with the system message): a prompt of `tokens`.
    TooLong { tokens: usize },
}

/// Drops the oldest exchanges from `history` (a user message and the reply to it; a system
/// message and the newest message stay) until the prompt leaves room for a reply of
/// `max_tokens`, or for half the context if that is less.
fn fit_context(
    history: &mut Vec<Message>,
    context: usize,
    max_tokens: usize,
    mut encode: impl FnMut(&[Message]) -> anyhow::Result<Vec<u32>>,
) -> anyhow::Result<Fit> {
    let reply_room = max_tokens.min(context / 2).max(1);
    let mut dropped = 0;
    loop {
        let ids = encode(history)?;
        if ids.len() + reply_room <= context {
            return Ok(Fit::Send { ids, dropped });
        }
        match history.iter().position(|message| message.role != "system") {
            Some(oldest) if oldest + 1 < history.len() => {
                history.remove(oldest);
                dropped += 1;
                // Its reply goes too: templates insist that user and assistant alternate.
                if history[oldest].role == "assistant" && oldest + 1 < history.len() {
                    history.remove(oldest);
                    dropped += 1;
                }
            }
            // Nothing left to drop: a prompt that fits at all is answered, in what room is left.
            _ if ids.len() < context => return Ok(Fit::Send { ids, dropped }),
            _ => return Ok(Fit::TooLong { tokens: ids.len() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One token per character of every message, as a stand-in for a template and tokenizer.
    fn encode(messages: &[Message]) -> anyhow::Result<Vec<u32>> {
        Ok(messages.iter().flat_map(|m| m.content.chars()).map(|c| c as u32).collect())
    }

    fn chat(turns: &[(&str, &str)]) -> Vec<Message> {
        turns.iter().map(|(role, content)| Message::new(*role, *content)).collect()
    }

    #[test]
    fn the_oldest_exchanges_go_first_and_the_system_message_stays() {
        let mut history = chat(&[
            ("system", "sys"),
            ("user", "aaaa"),
            ("assistant", "bbbb"),
            ("user", "cccc"),
            ("assistant", "dddd"),
            ("user", "eeee"),
        ]);
        // 23 tokens, context 20, room 4 for the reply: the first exchange goes (15 left).
        let fit = fit_context(&mut history, 20, 4, encode).unwrap();
        assert!(matches!(fit, Fit::Send { dropped: 2, .. }), "{fit:?}");
        assert_eq!(history, chat(&[("system", "sys"), ("user", "cccc"), ("assistant", "dddd"), ("user", "eeee")]));
        let mut fits = history.clone();
        assert_eq!(
            fit_context(&mut fits, 100, 4, encode).unwrap(),
            Fit::Send { ids: encode(&history).unwrap(), dropped: 0 }
        );
    }

    #[test]
    fn a_turn_too_long_alone_is_refused_and_one_that_barely_fits_is_sent() {
        let mut history = chat(&[("user", "aaaa"), ("assistant", "bbbb"), ("user", &"x".repeat(30))]);
        assert_eq!(fit_context(&mut history, 20, 4, encode).unwrap(), Fit::TooLong { tokens: 30 });
        // 18 tokens in a context of 20: no room for 4 reply tokens, but an answer beats none.
        let mut history = chat(&[("user", &"x".repeat(18))]);
        assert!(matches!(fit_context(&mut history, 20, 4, encode).unwrap(), Fit::Send { dropped: 0, .. }));
    }
}
