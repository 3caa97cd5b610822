//! AltUp (alternating updates): the model carries `N` streams of the hidden state; each layer
//! runs on the active one and a learned map predicts and corrects the others.

use mlx_bridge::fast::{self, StreamRouter};
use mlx_bridge::{Array, Dtype, stack};

use super::config::Config;
use crate::error::Result;
use crate::hardware::DecodePath;
use crate::layers::{Linear, RmsNorm};
use crate::weights::WeightStore;

/// The AltUp streams: one array per stream (split path) or stacked `[N, B, L, D]` (fused path).
pub(super) enum Streams {
    Split(Vec<Array>),
    Stacked(Array),
}

/// Rescales `x` to the root-mean-square of `target_rms` (transformers clamps the mean square at 1e-5).
fn match_magnitude(x: &Array, target_rms: &Array) -> Result<Array> {
    let rms = x.square()?.mean(&[-1], true)?.maximum_scalar(1e-5)?.sqrt()?;
    Ok(x.mul(target_rms)?.div(&rms)?)
}

fn rms(x: &Array) -> Result<Array> {
    Ok(x.square()?.mean(&[-1], true)?.sqrt()?)
}

impl Streams {
    /// Stream 0 is `h0`; stream `i` is `projections[i-1](h0)` at `h0`'s magnitude.
    pub(super) fn initial(h0: &Array, projections: &[Linear], path: DecodePath) -> Result<Streams> {
        let target = rms(h0)?;
        let mut streams = vec![h0.clone()];
        for projection in projections {
            streams.push(match_magnitude(&projection.forward(h0)?, &target)?);
        }
        Ok(match path {
            DecodePath::Split => Streams::Split(streams),
            DecodePath::Fused => Streams::Stacked(stack(&streams.iter().collect::<Vec<_>>(), 0)?),
        })
    }

    pub(super) fn get(&self, index: usize) -> Result<Array> {
        Ok(match self {
            Streams::Split(streams) => streams[index].clone(),
            Streams::Stacked(x) => x.slice_axis(0, index as i32, index as i32 + 1)?.squeeze(&[0])?,
        })
    }

    fn len(&self) -> Result<usize> {
        Ok(match self {
            Streams::Split(streams) => streams.len(),
            Streams::Stacked(x) => x.dim(0)? as usize,
        })
    }

    /// Streams `1..` through `projections` at stream 0's magnitude, then the mean of all streams.
    pub(super) fn unembed(&self, projections: &[Linear]) -> Result<Array> {
        let first = self.get(0)?;
        let target = rms(&first)?;
        let mut total = first.clone();
        for (i, projection) in projections.iter().enumerate() {
            total = total.add(&match_magnitude(&projection.forward(&self.get(i + 1)?)?, &target)?)?;
        }
        Ok(total.div_scalar(self.len()? as f64)?)
    }
}

pub(super) struct AltUp {
    correct_output_scale: Array,
    /// `[N, N]`, float32, clipped to ±altup_coef_clip, applied to the modalities as a layer.
    correction_coefs: Linear,
    /// `[N*N, N]`, float32, clipped to ±altup_coef_clip.
    prediction_coefs: Linear,
    modality_router: Linear,
    /// The router's `[N, D]` weight, dense (dequantized if the checkpoint quantized it: 16 KiB at
    /// E2B's shapes), for the one-kernel mixes, which read it directly.
    modality_router_dense: Array,
    /// The router's norm; its weight also carries the `1/D` scaling when that is exact (`D` a
    /// power of two, as in every Gemma 3n checkpoint), which saves a graph node per use.
    router_norm: RmsNorm,
    /// `D` when the norm does not carry the `1/D`.
    router_divisor: Option<f64>,
    /// `[N, 1, 1, 1]`: 0 for stream 0, 1 for the others.
    later_streams: Array,
    num_streams: usize,
    active: usize,
}

impl AltUp {
    pub(super) fn load(c: &Config, w: &WeightStore, prefix: &str) -> Result<Self> {
        let n = c.altup_num_inputs as i32;
        let coefs = |name: &str, rows: i32| -> Result<Linear> {
            let coefs = w.tensor(&format!("{prefix}.altup.{name}.weight"), &[rows, n])?.astype(Dtype::F32)?;
            Linear::dense(match c.altup_coef_clip {
                Some(clip) => coefs.clip_scalar(-clip as f64, clip as f64)?,
                None => coefs,
            })
        };
        let router_weight = w.tensor(&format!("{prefix}.altup.router_norm.weight"), &[c.hidden_size])?;
        // Dividing by a power of two only moves the exponent: the norm's single rounding then
        // gives exactly the rounded norm divided by D.
        let exact = (c.hidden_size as u32).is_power_of_two();
        let router_weight = if exact { router_weight.mul_scalar(1.0 / c.hidden_size as f64)? } else { router_weight };
        router_weight.eval()?;
        let later: Vec<f32> = (0..n).map(|i| if i == 0 { 0.0 } else { 1.0 }).collect();
        let later_streams = Array::from_slice(&later, &[n, 1, 1, 1])?.astype(router_weight.dtype())?;
        later_streams.eval()?;
        let modality_router = w.linear(&format!("{prefix}.altup.modality_router"), n, c.hidden_size)?;
        let modality_router_dense = modality_router.dense_weight()?;
        modality_router_dense.eval()?;
        Ok(AltUp {
            correct_output_scale: w.tensor(&format!("{prefix}.altup.correct_output_scale"), &[c.hidden_size])?,
            correction_coefs: coefs("correction_coefs", n)?,
            prediction_coefs: coefs("prediction_coefs", n * n)?,
            modality_router,
            modality_router_dense,
            router_norm: RmsNorm::new(router_weight, c.rms_norm_eps),
            router_divisor: (!exact).then_some(c.hidden_size as f64),
            later_streams,
            num_streams: c.altup_num_inputs,
            active: c.altup_active_idx,
        })
    }

    /// Adds `x` to every stream but stream 0.
    pub(super) fn add_to_later_streams(&self, streams: Streams, x: &Array) -> Result<Streams> {
        Ok(match streams {
            Streams::Split(streams) => Streams::Split(
                streams
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| if i == 0 { Ok(s) } else { s.add(x) })
                    .collect::<mlx_bridge::Result<_>>()?,
            ),
            // A 0/1 weight per stream rather than slices and a concatenation: one elementwise
            // node (fused with whatever computed `x`), where a concatenation is a copy kernel.
            // Adding 0 * x leaves stream 0 exactly as it was.
            Streams::Stacked(s) => {
                Streams::Stacked(s.add(&self.later_streams.astype(x.dtype())?.mul(&x.expand_dims(&[0])?)?)?)
            }
        })
    }

    pub(super) fn correct_output_scale(&self) -> &Array {
        &self.correct_output_scale
    }

    /// `tanh(router(router_norm(x) / D))` in float32, `[B, L, N]` (1/D, not 1/sqrt(D)).
    fn modalities(&self, x: &Array) -> Result<Array> {
        let normed = self.router_norm.forward(x)?;
        let normed = match self.router_divisor {
            Some(d) => normed.div_scalar(d)?,
            None => normed,
        };
        Ok(self.modality_router.forward(&normed)?.astype(Dtype::F32)?.tanh()?)
    }

    /// The router for the one-kernel mixes: what [`AltUp::modalities`] computes.
    fn router(&self) -> Option<StreamRouter<'_>> {
        Some(StreamRouter {
            norm_weight: self.router_norm.weight()?,
            eps: self.router_norm.eps(),
            divisor: self.router_divisor.unwrap_or(1.0) as f32,
            router: &self.modality_router_dense,
        })
    }

    /// `pred[i] = x[i] + sum_j M[i][j] x[j]` with `M = reshape(prediction_coefs @ m, N x N)`.
    pub(super) fn predict(&self, streams: &Streams) -> Result<Streams> {
        if let (Streams::Stacked(x), Some(router)) = (streams, self.router()) {
            let coefs = self.prediction_coefs.dense_weight()?;
            if let Some(mixed) = fast::routed_stream_mix(x, router, &coefs, self.active)? {
                return Ok(Streams::Stacked(mixed));
            }
        }
        let n = self.num_streams;
        let modalities = self.modalities(&streams.get(self.active)?)?;
        let coefs = self.prediction_coefs.forward(&modalities)?; // [B, L, N*N]
        match streams {
            Streams::Split(x) => {
                let dtype = x[0].dtype();
                let mut out = Vec::with_capacity(n);
                for i in 0..n {
                    let mut acc = x[i].astype(Dtype::F32)?;
                    for (j, xj) in x.iter().enumerate() {
                        let m = coefs.slice_axis(-1, (i * n + j) as i32, (i * n + j) as i32 + 1)?;
                        acc = acc.add(&m.mul(&xj.astype(Dtype::F32)?)?)?;
                    }
                    out.push(acc.astype(dtype)?);
                }
                Ok(Streams::Split(out))
            }
            Streams::Stacked(x) => {
                let mut shape = modalities.shape();
                shape.push(n as i32);
                // Per position, the mix M [N, N] @ streams [N, D], written as N broadcast
                // products (`M[:, j] * x[j]`) so that it and the residual fuse into one
                // elementwise kernel: a 4x4 matmul is a cuBLASLt call, ~4x an elementwise
                // node's host time on CUDA (cuda_probe nodes).
                let by_stream = coefs.reshape(&shape)?.transpose(&[2, 0, 1, 3])?; // [N_i, B, L, N_j]
                let mut acc = x.astype(Dtype::F32)?;
                for j in 0..n as i32 {
                    let m = by_stream.slice_axis(3, j, j + 1)?; // [N, B, L, 1]
                    acc = acc.add(&m.mul(&x.slice_axis(0, j, j + 1)?.astype(Dtype::F32)?)?)?;
                }
                Ok(Streams::Stacked(acc.astype(x.dtype())?))
            }
        }
    }

    /// `corr[i] = pred[i] + (correction_coefs @ m + 1)[i] * (activated - pred[active])`.
    pub(super) fn correct(&self, predictions: Streams, activated: &Array) -> Result<Streams> {
        if let (Streams::Stacked(p), Some(router)) = (&predictions, self.router()) {
            let coefs = self.correction_coefs.dense_weight()?;
            if let Some(corrected) = fast::routed_stream_correction(p, activated, router, &coefs, self.active)? {
                return Ok(Streams::Stacked(corrected));
            }
        }
        let modalities = self.modalities(activated)?;
        let coefs = self.correction_coefs.forward(&modalities)?; // [B, L, N], before the + 1 (each path adds it)
        let dtype = activated.dtype();
        match predictions {
            Streams::Split(p) => {
                let innovation = activated.sub(&p[self.active])?.astype(Dtype::F32)?;
                let coefs = coefs.add_scalar(1.0)?;
                Ok(Streams::Split(
                    p.iter()
                        .enumerate()
                        .map(|(i, pi)| {
                            let c = coefs.slice_axis(-1, i as i32, i as i32 + 1)?;
                            pi.astype(Dtype::F32)?.add(&c.mul(&innovation)?)?.astype(dtype)
                        })
                        .collect::<mlx_bridge::Result<_>>()?,
                ))
            }
            Streams::Stacked(p) => {
                // Views first, arithmetic after: the whole update is then one fused kernel.
                let c = coefs.transpose(&[2, 0, 1])?.expand_dims(&[3])?; // [N, B, L, 1]
                let active = self.active as i32;
                let innovation =
                    activated.expand_dims(&[0])?.sub(&p.slice_axis(0, active, active + 1)?)?.astype(Dtype::F32)?;
                let corrected = p.astype(Dtype::F32)?.add(&c.add_scalar(1.0)?.mul(&innovation)?)?;
                Ok(Streams::Stacked(corrected.astype(dtype)?))
            }
        }
    }
}
