//! Where decode's host time goes: samples every thread of the process (SIGPROF, pprof) while it
//! decodes random-weight Gemma 3n at the machine's class defaults through the generation core,
//! and writes folded stacks (`thread;outer;...;inner count` lines, flamegraph.pl's input).
//!
//!   cargo run --release --example decode_profile -- e2b [BITS] OUT.folded
//!
//! BITS is 4 or 8 (affine, group 64) or `-` for the compute dtype. An example rather than a bench
//! flag: the sampler is a development dependency, not part of the product.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use mlxcel::api::{LoadOptions, plan_for};
use mlxcel::bench::{self, BenchSettings, Test};
use mlxcel_models::gguf::KQuants;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [shape, bits, out] = args.as_slice() else {
        bail!("usage: decode_profile SHAPE BITS|- OUT.folded");
    };
    let bits: Option<i32> = match bits.as_str() {
        "-" => None,
        b => Some(b.parse().with_context(|| format!("BITS is 4, 8 or -, not {b}"))?),
    };
    let plan = plan_for(&LoadOptions::default())?;
    let model = bench::random_gemma3n(shape, bits, &plan, KQuants::default(), 0)?.model;

    let test = Test::Generate { tokens: 128, depth: 0, batch: 1 };
    let settings = BenchSettings { repetitions: 1, warmup: 1, prefill_chunk: plan.prefill_chunk as usize, seed: 0 };
    bench::measure(&model, test, settings)?;
    let guard = pprof::ProfilerGuardBuilder::default().frequency(2000).build().context("starting the sampler")?;
    let measured = bench::measure(&model, test, BenchSettings { repetitions: 3, warmup: 0, ..settings })?;
    let report = guard.report().build().context("building the profile")?;
    eprintln!("tg128 while sampled: {:.2} t/s", measured.tokens_per_second.mean);

    let mut folded = String::new();
    for (frames, count) in &report.data {
        let mut stack = vec![frames.thread_name.replace(';', ":")];
        // pprof lists the innermost frame first; a frame inlines several symbols, innermost first.
        for frame in frames.frames.iter().rev() {
            stack.extend(frame.iter().rev().map(|symbol| symbol.name().replace(';', ":")));
        }
        writeln!(folded, "{} {count}", stack.join(";"))?;
    }
    std::fs::write(out, folded).with_context(|| format!("writing {out}"))?;
    Ok(())
}
