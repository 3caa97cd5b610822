//! Token sampling on the device: penalties and logit bias, then temperature, top-k, top-p and
//! min-p filtering, then a categorical draw from a seeded key stream (or argmax at temperature 0).

use std::collections::HashMap;

use mlx_bridge::{Array, Dtype, random};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SamplingError {
    #[error("{name} = {value} is out of range: {expected}")]
    OutOfRange { name: &'static str, value: String, expected: &'static str },
    #[error("logit bias for token {token}: the vocabulary has {vocab} tokens")]
    BiasToken { token: u32, vocab: usize },
    #[error(
        "logit bias {value:?} for token {token} is out of range: a bias must lie in [-100, 100], as in OpenAI's API"
    )]
    BiasValue { token: u32, value: f32 },
    #[error(transparent)]
    Mlx(#[from] mlx_bridge::Error),
}

/// How the next token is chosen. The defaults are greedy decoding with no penalties.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 picks the most likely token; higher flattens the distribution.
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: u32,
    /// Keep the smallest set of tokens whose probabilities add up to p (1 = off).
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely one (0 = off).
    pub min_p: f32,
    /// Divide positive / multiply negative logits of recent tokens by this (1 = off), as transformers does.
    pub repetition_penalty: f32,
    /// Subtracted from the logit of every token seen in the window (0 = off).
    pub presence_penalty: f32,
    /// Subtracted once per occurrence in the window (0 = off).
    pub frequency_penalty: f32,
    /// How many recent tokens (prompt included) the penalties look at.
    pub penalty_window: usize,
    /// Added to the given tokens' logits.
    pub logit_bias: HashMap<u32, f32>,
    /// The same seed and inputs give the same tokens.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_window: 64,
            logit_bias: HashMap::new(),
            seed: None,
        }
    }
}

fn out_of_range(name: &'static str, value: impl ToString, expected: &'static str) -> SamplingError {
    SamplingError::OutOfRange { name, value: value.to_string(), expected }
}

impl SamplingParams {
    /// Rejects values no sampler could honour (e.g. `top_p = 7`), naming the parameter.
    pub fn validate(&self, vocab: usize) -> Result<(), SamplingError> {
        if !(self.temperature.is_finite() && (0.0..=100.0).contains(&self.temperature)) {
            return Err(out_of_range("temperature", self.temperature, "0 to 100"));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(out_of_range("top_p", self.top_p, "greater than 0 and at most 1"));
        }
        if !(0.0..1.0).contains(&self.min_p) {
            return Err(out_of_range("min_p", self.min_p, "0 (off) up to, not including, 1"));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(out_of_range("repetition_penalty", self.repetition_penalty, "greater than 0 (1 = off)"));
        }
        for (name, value) in
            [("presence_penalty", self.presence_penalty), ("frequency_penalty", self.frequency_penalty)]
        {
            if !(value.is_finite() && (-100.0..=100.0).contains(&value)) {
                return Err(out_of_range(name, value, "-100 to 100"));
            }
        }
        if self.top_k as usize > vocab {
            return Err(out_of_range("top_k", self.top_k, "0 (off) up to the vocabulary size"));
        }
        if let Some(&token) = self.logit_bias.keys().find(|&&t| t as usize >= vocab) {
            return Err(SamplingError::BiasToken { token, vocab });
        }
        // Larger biases overflow float32 once divided by a temperature below 1, and the biased
        // token's logit becomes infinite (never drawn) instead of certain.
        if let Some((&token, &value)) =
            self.logit_bias.iter().find(|(_, value)| !(value.is_finite() && (-100.0..=100.0).contains(*value)))
        {
            return Err(SamplingError::BiasValue { token, value });
        }
        Ok(())
    }

    /// Whether any penalty is on (they need the generated tokens on the host).
    pub fn uses_penalties(&self) -> bool {
        self.repetition_penalty != 1.0 || self.presence_penalty != 0.0 || self.frequency_penalty != 0.0
    }
}

/// Applies [`SamplingParams`] step after step; owns the key stream.
pub struct Sampler {
    params: SamplingParams,
    key: Option<Array>,
    bias: Option<Array>,
}

impl Sampler {
    pub fn new(params: SamplingParams, vocab: usize) -> Result<Self, SamplingError> {
        params.validate(vocab)?;
        let key = params.seed.map(random::key).transpose()?;
        let bias = if params.logit_bias.is_empty() {
            None
        } else {
            let mut dense = vec![0f32; vocab];
            for (&token, &value) in &params.logit_bias {
                dense[token as usize] = value;
            }
            Some(Array::from_slice(&dense, &[vocab as i32])?)
        };
        Ok(Sampler { params, key, bias })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// The next token `[1]` (uint32, lazy) from `logits` `[1, vocab]`, given the tokens so far
    /// (`history`, prompt included) for the penalties.
    pub fn sample(&mut self, logits: &Array, history: &[u32]) -> Result<Array, SamplingError> {
        let mut logits = logits.astype(Dtype::F32)?;
        if let Some(bias) = &self.bias {
            logits = logits.add(bias)?;
        }
        if self.params.uses_penalties() {
            logits = self.penalize(&logits, history)?;
        }
        if self.params.temperature == 0.0 {
            return Ok(logits.argmax(-1, false)?.astype(Dtype::U32)?);
        }
        let logits = logits.mul_scalar(1.0 / self.params.temperature as f64)?;
        let mut logprobs = logits.sub(&logits.logsumexp(&[-1], true)?)?;
        let masked = Array::full(&[], f64::NEG_INFINITY, Dtype::F32)?;
        if self.params.top_k > 0 {
            // Everything below the k-th largest value goes.
            let kth = logprobs.topk(self.params.top_k as i32, -1)?.min(&[-1], true)?;
            logprobs = mlx_bridge::where_select(&logprobs.less(&kth)?, &masked, &logprobs)?;
        }
        if self.params.min_p > 0.0 {
            let floor = logprobs.max(&[-1], true)?.add_scalar((self.params.min_p as f64).ln())?;
            logprobs = mlx_bridge::where_select(&logprobs.less(&floor)?, &masked, &logprobs)?;
        }
        if self.params.top_p < 1.0 {
            logprobs = top_p(&logprobs, self.params.top_p, &masked)?;
        }
        let key = match &self.key {
            Some(key) => {
                let pair = random::split(key, 2)?;
                self.key = Some(pair.slice_axis(0, 0, 1)?.squeeze(&[0])?);
                Some(pair.slice_axis(0, 1, 2)?.squeeze(&[0])?)
            }
            None => None,
        };
        Ok(random::categorical(&logprobs, -1, key.as_ref())?.astype(Dtype::U32)?)
    }

    /// Penalties over the last `penalty_window` tokens, applied only at the tokens that occurred
    /// (gathered and scattered back), so the cost does not grow with the vocabulary.
    fn penalize(&self, logits: &Array, history: &[u32]) -> Result<Array, SamplingError> {
        let window = &history[history.len().saturating_sub(self.params.penalty_window)..];
        if window.is_empty() {
            return Ok(logits.clone());
        }
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for &token in window {
            *counts.entry(token).or_default() += 1;
        }
        let mut tokens: Vec<u32> = counts.keys().copied().collect();
        tokens.sort_unstable();
        let frequency: Vec<f32> = tokens.iter().map(|t| counts[t] as f32).collect();
        let n = tokens.len() as i32;
        let index = Array::from_slice(&tokens, &[1, n])?;
        let mut seen = logits.take_along_axis(&index, -1)?;
        let p = self.params.repetition_penalty as f64;
        if p != 1.0 {
            let zero = seen.scalar_like(0.0)?;
            seen = mlx_bridge::where_select(&seen.greater(&zero)?, &seen.div_scalar(p)?, &seen.mul_scalar(p)?)?;
        }
        if self.params.presence_penalty != 0.0 {
            seen = seen.sub_scalar(self.params.presence_penalty as f64)?;
        }
        if self.params.frequency_penalty != 0.0 {
            let frequency = Array::from_slice(&frequency, &[1, n])?;
            seen = seen.sub(&frequency.mul_scalar(self.params.frequency_penalty as f64)?)?;
        }
        Ok(logits.put_along_axis(&index, &seen, -1)?)
    }
}

/// Keeps the most likely tokens whose cumulative probability reaches `p` (always at least one).
fn top_p(logprobs: &Array, p: f32, masked: &Array) -> Result<Array, SamplingError> {
    let order = logprobs.neg()?.argsort(-1)?;
    let sorted = logprobs.take_along_axis(&order, -1)?;
    let probs = sorted.exp()?;
    // Exclusive cumulative mass before each token: a token stays while that mass is below p.
    let before = probs.cumsum(-1, false, false)?;
    let keep = before.less(&Array::full(&[], p as f64, Dtype::F32)?)?;
    let filtered = mlx_bridge::where_select(&keep, &sorted, masked)?;
    Ok(logprobs.put_along_axis(&order, &filtered, -1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[f32]) -> Array {
        Array::from_slice(values, &[1, values.len() as i32]).unwrap()
    }

    fn draw(sampler: &mut Sampler, logits: &Array, history: &[u32], times: usize) -> Vec<u32> {
        (0..times).map(|_| sampler.sample(logits, history).unwrap().item::<u32>().unwrap()).collect()
    }

    #[test]
    fn greedy_picks_the_argmax_and_bias_moves_it() {
        let logits = row(&[0.1, 3.0, 2.0, -1.0]);
        let mut greedy = Sampler::new(SamplingParams::default(), 4).unwrap();
        assert_eq!(draw(&mut greedy, &logits, &[], 1), vec![1]);
        let params = SamplingParams { logit_bias: HashMap::from([(3, 10.0)]), ..Default::default() };
        assert_eq!(draw(&mut Sampler::new(params, 4).unwrap(), &logits, &[], 1), vec![3]);
    }

    #[test]
    fn penalties_follow_their_definitions() {
        let logits = row(&[2.0, 1.8, -1.0, 0.0]);
        // transformers' repetition penalty: 2.0 / 2 = 1.0 < 1.8, so token 1 wins.
        let params = SamplingParams { repetition_penalty: 2.0, ..Default::default() };
        assert_eq!(draw(&mut Sampler::new(params, 4).unwrap(), &logits, &[0], 1), vec![1]);
        // Negative logits are multiplied: -1 * 2 = -2 stays below token 3's 0.
        let sampler = Sampler::new(SamplingParams { repetition_penalty: 2.0, ..Default::default() }, 4).unwrap();
        let penalized = sampler.penalize(&logits, &[2, 0]).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(penalized, vec![1.0, 1.8, -2.0, 0.0]);
        let sampler =
            Sampler::new(SamplingParams { frequency_penalty: 0.5, presence_penalty: 0.25, ..Default::default() }, 4)
                .unwrap();
        let penalized = sampler.penalize(&logits, &[0, 0, 1]).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(penalized, vec![2.0 - 1.0 - 0.25, 1.8 - 0.5 - 0.25, -1.0, 0.0]);
        // Outside the window nothing is penalized.
        let sampler =
            Sampler::new(SamplingParams { presence_penalty: 5.0, penalty_window: 1, ..Default::default() }, 4).unwrap();
        assert_eq!(sampler.penalize(&logits, &[0, 1]).unwrap().to_vec::<f32>().unwrap(), vec![2.0, -3.2, -1.0, 0.0]);
    }

    #[test]
    fn filters_restrict_the_draw_and_seeds_reproduce_it() {
        let logits = row(&[1.0, 0.9, 0.8, -5.0, 0.7]);
        let hot = |extra: SamplingParams| SamplingParams { temperature: 1.0, seed: Some(7), ..extra };
        let mut top2 = Sampler::new(hot(SamplingParams { top_k: 2, ..Default::default() }), 5).unwrap();
        assert!(draw(&mut top2, &logits, &[], 200).iter().all(|&t| t < 2));
        // top_p 0.3: token 0 alone holds ~27%, so tokens 0 and 1 are needed to reach 0.3.
        let mut nucleus = Sampler::new(hot(SamplingParams { top_p: 0.3, ..Default::default() }), 5).unwrap();
        let drawn = draw(&mut nucleus, &logits, &[], 200);
        assert!(drawn.iter().all(|&t| t < 2) && drawn.contains(&1), "{drawn:?}");
        let mut floor = Sampler::new(hot(SamplingParams { min_p: 0.5, ..Default::default() }), 5).unwrap();
        assert!(draw(&mut floor, &logits, &[], 200).iter().all(|&t| t != 3));
        let run = |seed| {
            draw(
                &mut Sampler::new(SamplingParams { seed: Some(seed), ..hot(Default::default()) }, 5).unwrap(),
                &logits,
                &[],
                50,
            )
        };
        assert_eq!(run(11), run(11));
        assert_ne!(run(11), run(12));
    }

    #[test]
    fn out_of_range_parameters_are_rejected_by_name() {
        let bad = [
            SamplingParams { top_p: 7.0, ..Default::default() },
            SamplingParams { temperature: -1.0, ..Default::default() },
            SamplingParams { min_p: 1.5, ..Default::default() },
            SamplingParams { repetition_penalty: 0.0, ..Default::default() },
            SamplingParams { top_k: 100, ..Default::default() },
        ];
        for (params, name) in bad.into_iter().zip(["top_p", "temperature", "min_p", "repetition_penalty", "top_k"]) {
            let err = params.validate(10).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
        let bias = SamplingParams { logit_bias: HashMap::from([(10, 1.0)]), ..Default::default() };
        assert!(matches!(bias.validate(10), Err(SamplingError::BiasToken { token: 10, vocab: 10 })));
        for value in [3e38, -100.5, f32::NAN, f32::INFINITY] {
            let bias = SamplingParams { logit_bias: HashMap::from([(2, value)]), ..Default::default() };
            let message = bias.validate(10).unwrap_err().to_string();
            assert!(message.contains("[-100, 100]") && message.contains("token 2"), "{message}");
        }
        for value in [-100.0, 0.0, 100.0] {
            let bias = SamplingParams { logit_bias: HashMap::from([(2, value)]), ..Default::default() };
            assert!(bias.validate(10).is_ok(), "{value}");
        }
    }
}
