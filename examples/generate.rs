//! Complete a prompt with the Rust API.
//!
//!   cargo run --release --example generate -- [MODEL] [PROMPT]
//!
//! MODEL is a local folder, an alias such as `gemma-3n`, or a Hugging Face repo id.

use mlxcel::{GenerateOptions, Message, Model};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let spec = args.next().unwrap_or_else(|| "gemma-3n".to_string());
    let prompt = args.next().unwrap_or_else(|| "Write a haiku about the sea.".to_string());

    let model = Model::load(&spec)?;
    let options = GenerateOptions { max_tokens: 128, ..Default::default() };
    let reply = if model.has_chat_template() {
        model.chat(&[Message::user(&prompt)], &options)?
    } else {
        model.generate(&prompt, &options)?
    };
    println!("{}", reply.text);
    eprintln!(
        "{} tokens at {:.1} tok/s ({:?})",
        reply.stats.generated_tokens, reply.stats.generation_tokens_per_second, reply.finish_reason
    );
    Ok(())
}
