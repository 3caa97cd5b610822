//! The generation core's batched step ([`DecodeBatch`]) against each pipeline decoding alone
//! ([`Pipeline::next_token`]): requests with their own sampling parameters (greedy, seeded
//! temperature with top-p / top-k, penalties, logit bias), prompt lengths and token budgets, two
//! of them joining mid-way, get the same tokens, the same log-probabilities (within float32
//! rounding) and the same caches afterwards.

mod common;

use std::collections::HashMap;

use mlxcel::LoadOptions;
use mlxcel::api::plan_for;
use mlxcel::model::{LoadedModel, ModelSource};
use mlxcel::pipeline::{DecodeBatch, LogprobRequest, Pipeline, Sampled, SampledToken};
use mlxcel::sampling::{Sampler, SamplingParams};

/// Sequences 3 and 4 join before this step.
const JOIN: usize = 2;

fn requests() -> Vec<(SamplingParams, usize)> {
    let hot = |seed| SamplingParams { temperature: 0.9, seed: Some(seed), ..Default::default() };
    vec![
        (SamplingParams::default(), 9),
        (SamplingParams { top_p: 0.8, ..hot(5) }, 12),
        // Penalties read the previous token: that row waits for it before the step.
        (SamplingParams { repetition_penalty: 1.3, presence_penalty: 0.5, ..Default::default() }, 7),
        (SamplingParams { top_k: 20, logit_bias: HashMap::from([(17, 4.0)]), ..hot(9) }, 3),
        (SamplingParams { frequency_penalty: 0.7, ..hot(3) }, 10),
    ]
}

fn pipeline<'m>(model: &'m LoadedModel, prompt: &[u32], params: &SamplingParams, max: usize) -> Pipeline<'m, Sampled> {
    let choice = Sampled {
        sampler: Sampler::new(params.clone(), model.vocab_size()).unwrap(),
        logprobs: LogprobRequest::Chosen { top: 3 },
    };
    let mut pipeline = Pipeline::new(model, prompt, model.make_caches(), 0, choice, max, 4).unwrap();
    pipeline.prefill_all().unwrap();
    pipeline
}

fn prompt(length: usize, seed: usize) -> Vec<u32> {
    (0..length).map(|i| ((i * 31 + seed * 57) % 500 + 3) as u32).collect()
}

fn assert_same(batched: &[SampledToken], alone: &[SampledToken], what: &str) {
    let ids = |tokens: &[SampledToken]| tokens.iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(batched), ids(alone), "{what}");
    for (b, a) in batched.iter().zip(alone) {
        assert!((b.logprob.unwrap() - a.logprob.unwrap()).abs() < 1e-4, "{what}: {b:?} vs {a:?}");
        let top = |t: &SampledToken| t.top_logprobs.iter().map(|&(id, _)| id).collect::<Vec<_>>();
        assert_eq!(top(b), top(a), "{what}");
    }
}

fn check(fixture: &str) {
    let dir = common::model_dir(fixture);
    let plan = plan_for(&LoadOptions::default()).unwrap();
    let model = LoadedModel::load(&ModelSource::Folder(dir.path().to_path_buf()), &plan, Default::default()).unwrap();
    let requests = requests();
    let prompts: Vec<Vec<u32>> = (0..requests.len()).map(|i| prompt(3 + 4 * i % 11, i)).collect();

    let mut expected = Vec::new();
    for (prompt, (params, max)) in prompts.iter().zip(&requests) {
        let mut alone = pipeline(&model, prompt, params, *max);
        let tokens: Vec<SampledToken> = std::iter::from_fn(|| alone.next_token().unwrap()).collect();
        expected.push((tokens, alone.into_caches()));
    }

    let mut pipelines: Vec<_> =
        prompts.iter().zip(&requests).map(|(prompt, (params, max))| pipeline(&model, prompt, params, *max)).collect();
    let mut produced: Vec<Vec<SampledToken>> = vec![Vec::new(); pipelines.len()];
    let mut done = vec![false; pipelines.len()];
    let mut batch = DecodeBatch::new();
    for (id, pipeline) in pipelines.iter_mut().enumerate().take(3) {
        batch.join(id as u64, pipeline).unwrap();
    }
    let mut step = 0;
    while !batch.is_empty() {
        if step == JOIN {
            for (id, pipeline) in pipelines.iter_mut().enumerate().skip(3) {
                batch.join(id as u64, pipeline).unwrap();
            }
        }
        let members: Vec<usize> = batch.members().iter().map(|&id| id as usize).collect();
        let mut rows: Vec<_> = pipelines.iter_mut().enumerate().filter(|(i, _)| members.contains(i)).collect();
        rows.sort_by_key(|(i, _)| members.iter().position(|m| m == i));
        let mut rows: Vec<_> = rows.into_iter().map(|(_, p)| p).collect();
        let outcomes = batch.step(&model, &mut rows).unwrap();
        for (&member, outcome) in members.iter().zip(outcomes) {
            match outcome.unwrap() {
                Some(token) => produced[member].push(token),
                None => done[member] = true,
            }
            if !batch.contains(member as u64) {
                done[member] = true;
            }
        }
        step += 1;
    }
    assert!(done.iter().all(|&d| d));
    for (i, (pipeline, (tokens, (caches, history)))) in pipelines.into_iter().zip(&expected).enumerate() {
        let what = format!("{fixture} request {i}");
        assert_same(&produced[i], tokens, &what);
        assert_eq!(produced[i].len(), requests[i].1, "{what}");
        // It left the batch with its own caches, holding what it holds alone.
        let (batched_caches, batched_history) = pipeline.into_caches();
        assert_eq!(&batched_history, history, "{what}");
        for (b, a) in batched_caches.iter().zip(caches) {
            assert_eq!((b.offset(), b.window()), (a.offset(), a.window()), "{what}");
            let (bk, _) = b.entries().unwrap().unwrap();
            let (ak, _) = a.entries().unwrap().unwrap();
            let (bk, ak) = (bk.to_vec::<f32>().unwrap(), ak.to_vec::<f32>().unwrap());
            let worst = bk.iter().zip(&ak).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            assert!(bk.len() == ak.len() && worst < 1e-4, "{what}: cached keys differ by {worst}");
        }
    }
}

#[test]
fn batched_steps_give_each_request_its_tokens_alone_llama() {
    check("llama-tiny");
}

#[test]
fn batched_steps_give_each_request_its_tokens_alone_gemma3n() {
    // Sliding-window and kv-shared layers.
    check("gemma3n-tiny");
}
