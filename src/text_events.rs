//! Tokens to text events: incremental detokenization, end-of-sequence ids and stop strings, with
//! text held back while it might be the start of a stop string. One assembler per sequence, fed
//! by whatever produces its tokens (the Rust API's stream, the server's scheduler).

use std::collections::VecDeque;

use crate::api::Event;
use crate::generate::{FinishReason, GenerationStats};
use crate::pipeline::SampledToken;
use crate::tokenizer::{StreamDecoder, Tokenizer, TokenizerError};

pub struct TextAssembler<'t> {
    decoder: StreamDecoder<'t>,
    eos: &'t [u32],
    stop: Vec<String>,
    held: String,
    outbox: VecDeque<Event>,
    finished: Option<FinishReason>,
}

impl<'t> TextAssembler<'t> {
    pub fn new(tokenizer: &'t Tokenizer, eos: &'t [u32], stop: &[String]) -> Self {
        TextAssembler {
            decoder: tokenizer.stream_decoder(true),
            eos,
            stop: stop.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
            outbox: VecDeque::new(),
            finished: None,
        }
    }

    /// Why the sequence ended, once it has.
    pub fn finished(&self) -> Option<&FinishReason> {
        self.finished.as_ref()
    }

    /// Takes in the next token; returns the finish reason when it ends the sequence (an EOS id,
    /// or a stop string in the text). The events go to the outbox.
    pub fn push(&mut self, token: SampledToken) -> Result<Option<FinishReason>, TokenizerError> {
        if self.eos.contains(&token.id) {
            self.finished = Some(FinishReason::Eos);
            self.flush()?;
            return Ok(self.finished.clone());
        }
        if let Some(text) = self.decoder.push(token.id)? {
            self.held.push_str(&text);
        }
        let SampledToken { id, logprob, top_logprobs } = token;
        if let Some(at) = self.stop.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let text = self.held[..at].to_string();
            self.held.clear();
            self.outbox.push_back(Event::Token { id, text, logprob, top_logprobs });
            self.finished = Some(FinishReason::Stop);
            return Ok(self.finished.clone());
        }
        let keep = self.stop_prefix_len();
        let text = self.held[..self.held.len() - keep].to_string();
        self.held.drain(..self.held.len() - keep);
        self.outbox.push_back(Event::Token { id, text, logprob, top_logprobs });
        Ok(None)
    }

    /// Ends the sequence for a reason from outside the text (length, cancellation), flushing
    /// the held text; a sequence that already ended keeps its reason.
    pub fn end(&mut self, reason: FinishReason) -> Result<FinishReason, TokenizerError> {
        if self.finished.is_none() {
            self.finished = Some(reason);
            self.flush()?;
        }
        Ok(self.finished.clone().expect("set above"))
    }

    fn flush(&mut self) -> Result<(), TokenizerError> {
        let mut rest = std::mem::take(&mut self.held);
        if let Some(tail) = self.decoder.finish()? {
            rest.push_str(&tail);
        }
        if !rest.is_empty() {
            self.outbox.push_back(Event::Flush { text: rest });
        }
        Ok(())
    }

    /// The closing event, after the last token's.
    pub fn done(&mut self, stats: GenerationStats) {
        let finish_reason = self.finished.clone().unwrap_or(FinishReason::Length);
        self.outbox.push_back(Event::Done { finish_reason, stats });
    }

    pub fn pop(&mut self) -> Option<Event> {
        self.outbox.pop_front()
    }

    /// Length of the longest suffix of the held text that begins some stop string.
    fn stop_prefix_len(&self) -> usize {
        let held = &self.held;
        held.char_indices()
            .map(|(i, _)| &held[i..])
            .find(|suffix| self.stop.iter().any(|s| s.starts_with(suffix)))
            .map_or(0, str::len)
    }
}
