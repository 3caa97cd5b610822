//! Stream a sampled reply token by token, with its log-probabilities.
//!
//!   cargo run --release --example stream -- [MODEL] [PROMPT]

use std::io::Write;

use mlxcel::sampling::SamplingParams;
use mlxcel::{Event, GenerateOptions, Message, Model};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let spec = args.next().unwrap_or_else(|| "gemma-3n".to_string());
    let prompt = args.next().unwrap_or_else(|| "Tell me a short story.".to_string());

    let model = Model::load(&spec)?;
    let sampling = SamplingParams { temperature: 0.7, top_p: 0.95, seed: Some(0), ..Default::default() };
    let options = GenerateOptions { max_tokens: 200, sampling, logprobs: true, ..Default::default() };
    let messages = [Message::system("You are concise."), Message::user(&prompt)];
    let mut total_logprob = 0.0;
    for event in model.chat_stream(&messages, &options)? {
        match event? {
            Event::Token { text, logprob, .. } => {
                total_logprob += logprob.unwrap_or(0.0);
                print!("{text}");
                std::io::stdout().flush()?;
            }
            Event::Flush { text } => print!("{text}"),
            Event::Done { finish_reason, stats } => {
                println!();
                eprintln!("{finish_reason:?}: {} tokens, log-probability {total_logprob:.2}", stats.generated_tokens);
            }
        }
    }
    Ok(())
}
