//! OpenAI's request and response shapes (as the official `openai` package's types have them),
//! and the checks that turn a request into the engine's terms. A field that would change the
//! result and that this server does not implement is a 400 naming it, never ignored.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::chat_template::Message;
use crate::sampling::SamplingParams;

/// Fields that never change the generated text (bookkeeping the client may send).
const HARMLESS: &[&str] = &["user", "store", "metadata", "service_tier", "stream_options", "parallel_tool_calls"];

/// Rejects the first field outside `HARMLESS`, unless its value is the neutral one.
fn reject_unknown(other: &Map<String, Value>) -> Result<(), ApiError> {
    for (name, value) in other {
        let neutral = match name.as_str() {
            _ if HARMLESS.contains(&name.as_str()) => true,
            "n" => value.as_u64() == Some(1),
            "tool_choice" => value.as_str() == Some("none"),
            "tools" | "functions" => value.as_array().is_some_and(Vec::is_empty),
            "response_format" => value.get("type").and_then(Value::as_str) == Some("text"),
            "modalities" => value.as_array().is_some_and(|m| m.iter().all(|m| m.as_str() == Some("text"))),
            _ => false,
        };
        if !(neutral || value.is_null()) {
            return Err(ApiError::unsupported(name));
        }
    }
    Ok(())
}

/// `stop`: a string or a list of strings.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(untagged)]
pub enum Stop {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::None => Vec::new(),
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// The sampling fields chat and completions share.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct SamplingFields {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub logit_bias: Option<HashMap<String, f32>>,
    #[serde(default)]
    pub stop: Stop,
}

/// OpenAI's default temperature is 1: a request without one samples.
const DEFAULT_TEMPERATURE: f32 = 1.0;

impl SamplingFields {
    pub fn params(&self, vocab: usize) -> Result<SamplingParams, ApiError> {
        let mut logit_bias = HashMap::new();
        for (token, &bias) in self.logit_bias.iter().flatten() {
            let id: u32 = token
                .parse()
                .map_err(|_| ApiError::invalid_param("logit_bias", format!("{token:?} is not a token id")))?;
            if !(-100.0..=100.0).contains(&bias) {
                return Err(ApiError::invalid_param("logit_bias", format!("bias {bias} is outside -100..100")));
            }
            logit_bias.insert(id, bias);
        }
        let params = SamplingParams {
            temperature: self.temperature.unwrap_or(DEFAULT_TEMPERATURE),
            top_k: self.top_k.unwrap_or(0),
            top_p: self.top_p.unwrap_or(1.0),
            min_p: self.min_p.unwrap_or(0.0),
            repetition_penalty: self.repetition_penalty.unwrap_or(1.0),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            logit_bias,
            seed: self.seed.map(|s| s as u64),
            ..SamplingParams::default()
        };
        if self.temperature.is_some_and(|t| t > 2.0) {
            return Err(ApiError::invalid_param("temperature", "temperature must be between 0 and 2"));
        }
        params.validate(vocab).map_err(|e| ApiError::invalid(e.to_string()))?;
        Ok(params)
    }
}

/// A message's content: a string or an array of parts (text only).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

impl Content {
    fn into_text(self) -> Result<String, ApiError> {
        match self {
            Content::Text(text) => Ok(text),
            Content::Parts(parts) => parts
                .into_iter()
                .map(|part| match (part.kind.as_str(), part.text) {
                    ("text" | "input_text", Some(text)) => Ok(text),
                    (kind, _) => Err(ApiError::invalid_param(
                        "messages",
                        format!("content parts of type {kind:?} are not supported (text only)"),
                    )),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

pub fn chat_messages(messages: Vec<ChatMessage>) -> Result<Vec<Message>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid_param("messages", "messages must not be empty"));
    }
    messages
        .into_iter()
        .map(|m| {
            if let Some(field) = m.other.iter().find(|(_, v)| !v.is_null()).map(|(k, _)| k) {
                return Err(ApiError::unsupported(&format!("messages[].{field}")));
            }
            let role = match m.role.as_str() {
                "system" | "user" | "assistant" => m.role,
                // OpenAI's newer name for system instructions.
                "developer" => "system".to_string(),
                other => {
                    return Err(ApiError::invalid_param("messages", format!("role {other:?} is not supported")));
                }
            };
            let content = m.content.map(Content::into_text).transpose()?.unwrap_or_default();
            Ok(Message::new(role, content))
        })
        .collect()
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<u32>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl ChatRequest {
    pub fn check(&self) -> Result<(), ApiError> {
        reject_unknown(&self.other)?;
        if self.top_logprobs.is_some_and(|n| n > 20) {
            return Err(ApiError::invalid_param("top_logprobs", "top_logprobs must be between 0 and 20"));
        }
        if self.top_logprobs.is_some() && !self.logprobs {
            return Err(ApiError::invalid_param("top_logprobs", "top_logprobs needs logprobs: true"));
        }
        Ok(())
    }

    pub fn max_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}

/// `prompt`: a string, a list of one string, token ids, or a list of one id list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptField {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u32>),
    IdLists(Vec<Vec<u32>>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: PromptField,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u64>,
    /// Completions' logprobs: how many top tokens per position (0 = only the chosen one).
    pub logprobs: Option<u32>,
    #[serde(default)]
    pub echo: bool,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// What a completion request's prompt is once a batch of one is unwrapped.
pub enum CompletionPrompt {
    Text(String),
    Ids(Vec<u32>),
}

impl CompletionRequest {
    pub fn check(&self) -> Result<(), ApiError> {
        reject_unknown(&self.other)?;
        if self.echo {
            return Err(ApiError::unsupported("echo"));
        }
        if self.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::unsupported("suffix"));
        }
        if self.logprobs.is_some_and(|n| n > 5) {
            return Err(ApiError::invalid_param("logprobs", "logprobs must be between 0 and 5"));
        }
        Ok(())
    }

    pub fn prompt(&self) -> Result<CompletionPrompt, ApiError> {
        let several = || ApiError::unsupported("prompt (a batch of several prompts)");
        match &self.prompt {
            PromptField::Text(text) => Ok(CompletionPrompt::Text(text.clone())),
            PromptField::Texts(texts) => match texts.as_slice() {
                [one] => Ok(CompletionPrompt::Text(one.clone())),
                _ => Err(several()),
            },
            PromptField::Ids(ids) => Ok(CompletionPrompt::Ids(ids.clone())),
            PromptField::IdLists(lists) => match lists.as_slice() {
                [one] => Ok(CompletionPrompt::Ids(one.clone())),
                _ => Err(several()),
            },
        }
    }
}

/// `input` of the Responses API: text, or a list of messages (text content).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ResponseInput {
    Text(String),
    Items(Vec<ChatMessage>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    pub input: ResponseInput,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub stream: bool,
    pub max_output_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl ResponsesRequest {
    pub fn check(&self) -> Result<(), ApiError> {
        reject_unknown(&self.other)
    }

    pub fn messages(&self) -> Result<Vec<Message>, ApiError> {
        let mut messages = Vec::new();
        if let Some(instructions) = &self.instructions {
            messages.push(Message::system(instructions.clone()));
        }
        match &self.input {
            ResponseInput::Text(text) => messages.push(Message::new("user", text.clone())),
            ResponseInput::Items(items) => {
                let items = items
                    .iter()
                    .cloned()
                    .map(|mut item| {
                        // Input items carry `"type": "message"`; nothing else is supported.
                        match item.other.remove("type") {
                            None => Ok(item),
                            Some(Value::String(kind)) if kind == "message" => Ok(item),
                            Some(kind) => Err(ApiError::invalid_param(
                                "input",
                                format!("input items of type {kind} are not supported"),
                            )),
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                messages.extend(chat_messages(items)?);
            }
        }
        Ok(messages)
    }

    pub fn sampling(&self) -> SamplingFields {
        SamplingFields { temperature: self.temperature, top_p: self.top_p, ..Default::default() }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct TokenizeRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub messages: Option<Vec<ChatMessage>>,
    /// Add the tokenizer's special tokens (BOS) around plain text (default true).
    #[serde(default)]
    pub add_special: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DetokenizeRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub tokens: Vec<u32>,
}

// ---- responses ----

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptTokensDetails,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose keys and values came from the prefix cache.
    pub cached_tokens: usize,
}

impl Usage {
    pub fn new(prompt: usize, completion: usize, cached: usize) -> Self {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: PromptTokensDetails { cached_tokens: cached },
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChoiceLogprobs {
    pub content: Vec<TokenLogprob>,
    pub refusal: Option<Vec<TokenLogprob>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: String,
    pub refusal: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatChoice {
    pub index: usize,
    pub message: AssistantMessage,
    pub logprobs: Option<ChoiceLogprobs>,
    pub finish_reason: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
    pub system_fingerprint: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChunkChoice {
    pub index: usize,
    pub delta: Delta,
    pub logprobs: Option<ChoiceLogprobs>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    pub system_fingerprint: Option<String>,
}

/// Completions' legacy logprobs layout.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f32>,
    pub top_logprobs: Vec<HashMap<String, f32>>,
    pub text_offset: Vec<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompletionChoice {
    pub index: usize,
    pub text: String,
    pub logprobs: Option<CompletionLogprobs>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    pub system_fingerprint: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelObject {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelObject>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: Value) -> Result<ChatRequest, ApiError> {
        let request: ChatRequest = serde_json::from_value(body).map_err(|e| ApiError::invalid(e.to_string()))?;
        request.check()?;
        Ok(request)
    }

    #[test]
    fn result_changing_fields_are_rejected_by_name() {
        let base = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        assert!(chat(base.clone()).is_ok());
        for (field, value) in [
            ("n", serde_json::json!(2)),
            ("tools", serde_json::json!([{"type": "function"}])),
            ("response_format", serde_json::json!({"type": "json_object"})),
            ("made_up", serde_json::json!(1)),
        ] {
            let mut body = base.clone();
            body[field] = value;
            let error = chat(body).unwrap_err();
            assert_eq!(error.param.as_deref(), Some(field));
            assert!(error.message.contains(field), "{}", error.message);
        }
        let mut neutral = base;
        neutral["n"] = 1.into();
        neutral["user"] = "someone".into();
        neutral["stream_options"] = serde_json::json!({"include_usage": true});
        assert!(chat(neutral).is_ok());
    }

    #[test]
    fn text_part_arrays_join_and_images_are_refused() {
        let parts: Vec<ChatMessage> = serde_json::from_value(serde_json::json!([
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]}
        ]))
        .unwrap();
        let messages = chat_messages(parts).unwrap();
        assert_eq!(messages, vec![Message::system("Be brief."), Message::new("user", "Hello there")]);
        let image: Vec<ChatMessage> = serde_json::from_value(serde_json::json!([
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
        ]))
        .unwrap();
        assert!(chat_messages(image).unwrap_err().message.contains("image_url"));
    }

    #[test]
    fn sampling_fields_follow_openai_defaults_and_ranges() {
        let fields: SamplingFields = serde_json::from_value(serde_json::json!({"logit_bias": {"5": 3.0}})).unwrap();
        let params = fields.params(10).unwrap();
        assert_eq!(params.temperature, 1.0);
        assert_eq!(params.logit_bias, HashMap::from([(5, 3.0)]));
        let hot: SamplingFields = serde_json::from_value(serde_json::json!({"temperature": 3.0})).unwrap();
        assert_eq!(hot.params(10).unwrap_err().param.as_deref(), Some("temperature"));
        let stop: SamplingFields = serde_json::from_value(serde_json::json!({"stop": "x"})).unwrap();
        assert_eq!(stop.stop.into_vec(), vec!["x".to_string()]);
    }
}
