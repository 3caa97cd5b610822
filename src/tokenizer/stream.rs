//! Streaming detokenization: text for a sequence that grows one token at a time.
//!
//! Decoding each token alone goes wrong in two ways. A character can span several tokens
//! (byte-level BPE and SentencePiece byte fallback both split emoji and CJK into bytes), so a
//! lone token may decode to a piece of a character, U+FFFD. And decoders treat the start of the
//! text specially (SentencePiece's Metaspace drops the first `▁`, Llama's `Strip` the first
//! space), so a token decodes differently at the start than after others.
//!
//! This is the "prefix offset / read offset" technique of text-generation-inference (also
//! `tokenizers`' `DecodeStream`): keep the ids of the last emitted chunk as context, decode
//! context + new ids, and emit what extends the context's own decoding, once it no longer ends
//! in U+FFFD. Both decodings start at the same id, so whatever the decoder does to the start
//! happens to both and cancels out; and since the context is only the last chunk, each step
//! decodes a bounded window.

use super::{Tokenizer, TokenizerError};

/// How many ids may wait for the text to become complete before they are emitted anyway. A
/// UTF-8 character is at most four bytes, so a valid sequence never waits this long; a model
/// emitting stray partial bytes would otherwise keep the window (and each step's cost) growing.
const MAX_PENDING_IDS: usize = 16;

/// Turns ids pushed one at a time into text deltas whose concatenation is
/// [`Tokenizer::decode`] of all of them (for sequences that decode to valid text), never
/// splitting a character. Make one with [`Tokenizer::stream_decoder`].
#[derive(Debug)]
pub struct StreamDecoder<'t> {
    tokenizer: &'t Tokenizer,
    skip_special_tokens: bool,
    /// The ids of the last emitted chunk (`window[..read]`), then the ids not yet emitted.
    window: Vec<u32>,
    read: usize,
    /// `decode(window[..read])`: the emitted chunk as it decodes at the start of the window.
    prefix_text: String,
}

impl<'t> StreamDecoder<'t> {
    pub(super) fn new(tokenizer: &'t Tokenizer, skip_special_tokens: bool) -> Self {
        Self { tokenizer, skip_special_tokens, window: Vec::new(), read: 0, prefix_text: String::new() }
    }

    /// Adds one id; returns the text it completes, if any (`None` while a character is still
    /// incomplete, or when the id adds no text).
    pub fn push(&mut self, id: u32) -> Result<Option<String>, TokenizerError> {
        // `decode` leaves these out entirely, so leaving them out of the window is exact, and
        // keeps runs of them from growing it.
        let dropped_by_decode =
            (self.skip_special_tokens && self.tokenizer.is_special(id)) || self.tokenizer.id_to_token(id).is_none();
        if dropped_by_decode {
            return Ok(None);
        }
        self.window.push(id);
        self.emit(false)
    }

    /// Emits what is left (with U+FFFD for a character the ids never completed). Pushing more
    /// afterwards goes on from here.
    pub fn finish(&mut self) -> Result<Option<String>, TokenizerError> {
        if self.window.len() == self.read {
            return Ok(None);
        }
        self.emit(true)
    }

    fn emit(&mut self, force: bool) -> Result<Option<String>, TokenizerError> {
        let text = self.tokenizer.decode(&self.window, self.skip_special_tokens)?;
        let pending = self.window.len() - self.read;
        let may_wait = !force && pending < MAX_PENDING_IDS;
        if may_wait && text.ends_with(char::REPLACEMENT_CHARACTER) {
            return Ok(None);
        }
        let delta = match text.strip_prefix(self.prefix_text.as_str()) {
            Some(delta) => delta.to_string(),
            None => {
                // Only for sequences that are not valid text: with byte fallback, bytes that
                // cannot complete a character turn the whole run of byte tokens, text already
                // emitted included, into U+FFFD. What was emitted stays; go on after as many
                // characters as it had.
                tracing::debug!(emitted = self.prefix_text, decoded = text, "stream decode diverged from its prefix");
                text.chars().skip(self.prefix_text.chars().count()).collect()
            }
        };
        if delta.is_empty() && may_wait {
            // Nothing new yet; keep the ids, a later id may make them show.
            return Ok(None);
        }
        // The newly emitted ids become the context for the next step.
        self.window.drain(..self.read);
        self.read = self.window.len();
        self.prefix_text = self.tokenizer.decode(&self.window, self.skip_special_tokens)?;
        Ok((!delta.is_empty()).then_some(delta))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn window_stays_bounded_over_a_long_stream() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer-tiny");
        let tokenizer = Tokenizer::from_dir(&dir).unwrap();
        let text = "The quick brown fox 🦊 jumps over the lazy dog; 日本語のテキスト. ".repeat(40);
        let ids = tokenizer.encode(&text, false).unwrap();
        let mut decoder = tokenizer.stream_decoder(false);
        let mut streamed = String::new();
        for &id in &ids {
            streamed.extend(decoder.push(id).unwrap());
            // The last emitted chunk plus what waits: never the whole history.
            assert!(decoder.window.len() <= 2 * MAX_PENDING_IDS, "window of {} ids", decoder.window.len());
        }
        streamed.extend(decoder.finish().unwrap());
        assert_eq!(streamed, text);
    }
}
