//! Multi-head attention for every family: grouped- and multi-query heads, optional q/k/v biases,
//! q/k (and weightless v) RMSNorms per head, RoPE (or none), a score scale, optional logit
//! soft-capping, and the KV cache with its chunked-prefill and sliding-window masks.

use mlx_bridge::{Array, Dtype, fast, where_select};

use crate::error::Result;
use crate::layers::cache::visible_keys;
use crate::layers::{AttentionInputs, AttentionMask, LayerCache, Linear, Positions, RmsNorm, Rope};

/// A projection and its optional bias.
pub struct Projection {
    pub linear: Linear,
    pub bias: Option<Array>,
}

impl Projection {
    pub fn new(linear: Linear, bias: Option<Array>) -> Projection {
        Projection { linear, bias }
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        self.biased(self.linear.forward(x)?)
    }

    fn biased(&self, y: Array) -> Result<Array> {
        Ok(match &self.bias {
            Some(bias) => y.add(bias)?,
            None => y,
        })
    }
}

/// Keys and values a layer computes itself (kv-shared layers have none).
pub struct KvProjection {
    pub k: Projection,
    pub v: Projection,
    pub k_norm: Option<RmsNorm>,
    pub v_norm: Option<RmsNorm>,
}

pub struct Attention {
    pub q: Projection,
    pub kv: Option<KvProjection>,
    pub o: Projection,
    pub q_norm: Option<RmsNorm>,
    /// `None`: the layer uses no positional encoding (SmolLM3's NoPE layers).
    pub rope: Option<Rope>,
    pub heads: i32,
    pub kv_heads: i32,
    pub head_dim: i32,
    /// Multiplies `q k^T` (typically `head_dim^-1/2`); RoPE's attention factor is folded in.
    pub scale: f32,
    /// `cap * tanh(scores / cap)` before the softmax (Gemma 2's attention soft-capping).
    pub softcap: Option<f32>,
}

/// A step's queries, keys and values as heads `[B, n, L, D]`, not yet rotated (normed, except a
/// decode step's queries and keys with RoPE, which [`Attention::heads`] leaves to the rotation): what
/// a compiled decode block computes before the cache (kv-shared layers have no keys or values).
pub struct Heads {
    pub queries: Array,
    pub kv: Option<(Array, Array)>,
}

impl Heads {
    /// As arrays (a compiled block's outputs): queries, then keys and values if any.
    pub fn into_arrays(self) -> Vec<Array> {
        let mut arrays = vec![self.queries];
        if let Some((keys, values)) = self.kv {
            arrays.extend([keys, values]);
        }
        arrays
    }

    /// From [`Heads::into_arrays`]'s order.
    pub fn from_arrays(arrays: Vec<Array>) -> Result<Heads> {
        let mut arrays = arrays.into_iter();
        let queries = arrays.next().ok_or_else(|| crate::ModelError::Input("no query heads".into()))?;
        let kv = match (arrays.next(), arrays.next()) {
            (Some(keys), Some(values)) => Some((keys, values)),
            _ => None,
        };
        Ok(Heads { queries, kv })
    }
}

impl Attention {
    /// Attends with keys and values computed from `x` and appended to `cache`; `positions` are
    /// where `x`'s tokens sit (the cache's [`LayerCache::positions`] before this step).
    pub fn forward(&self, x: &Array, cache: &mut impl LayerCache, positions: &Positions) -> Result<Array> {
        Ok(self.forward_keeping_kv(x, cache, positions)?.0)
    }

    /// [`Attention::forward`], also returning what was attended over, for layers that share it.
    pub fn forward_keeping_kv(
        &self,
        x: &Array,
        cache: &mut impl LayerCache,
        positions: &Positions,
    ) -> Result<(Array, AttentionInputs)> {
        let (attended, inputs) = self.attend_own(self.heads(x)?, cache, positions)?;
        Ok((self.output(&attended)?, inputs))
    }

    /// Attends over keys and values another layer computed this step.
    pub fn forward_shared(&self, x: &Array, inputs: &AttentionInputs, positions: &Positions) -> Result<Array> {
        self.output(&self.attend_shared(self.heads(x)?, inputs, positions)?)
    }

    /// The step's heads from `x` `[B, L, hidden]`: projections and per-head norms, no rotation
    /// (nothing here depends on the positions, so it can run inside a compiled block). A decode
    /// step with RoPE leaves the query and key norms to the rotation, which runs both as one
    /// kernel where the bridge has one.
    pub fn heads(&self, x: &Array) -> Result<Heads> {
        let norms_here = !self.norms_at_rotation(x.dim(1)?);
        let q_norm = self.q_norm.as_ref().filter(|_| norms_here);
        let Some(kv) = &self.kv else {
            let q = self.q.forward(x)?;
            return Ok(Heads { queries: self.split_heads(&q, self.heads, q_norm)?, kv: None });
        };
        let mut out = Linear::forward_many(&[&self.q.linear, &kv.k.linear, &kv.v.linear], x)?.into_iter();
        let mut next = |projection: &Projection| projection.biased(out.next().expect("three projections"));
        let (q, k, v) = (next(&self.q)?, next(&kv.k)?, next(&kv.v)?);
        Ok(Heads {
            queries: self.split_heads(&q, self.heads, q_norm)?,
            kv: Some((
                self.split_heads(&k, self.kv_heads, kv.k_norm.as_ref().filter(|_| norms_here))?,
                self.split_heads(&v, self.kv_heads, kv.v_norm.as_ref())?,
            )),
        })
    }

    /// Whether a step of `length` positions norms its queries and keys at the rotation rather
    /// than in [`Attention::heads`]: the same ops either way, and where the heads are one position
    /// they need no transpose between the two.
    fn norms_at_rotation(&self, length: i32) -> bool {
        length == 1 && self.rope.is_some()
    }

    /// `heads` rotated to `positions`, their keys and values appended to `cache`, attended:
    /// `[B, H, L, D]`, and what was attended over.
    pub fn attend_own(
        &self,
        heads: Heads,
        cache: &mut impl LayerCache,
        positions: &Positions,
    ) -> Result<(Array, AttentionInputs)> {
        let (keys, values) =
            heads.kv.ok_or_else(|| crate::ModelError::Input("a layer with its own cache has keys".into()))?;
        let k_norm = self.kv.as_ref().and_then(|kv| kv.k_norm.as_ref());
        let inputs = cache.update(&self.rotate(keys, k_norm, positions)?, &values)?;
        let queries = self.rotate(heads.queries, self.q_norm.as_ref(), positions)?;
        Ok((self.attend(&queries, &inputs)?, inputs))
    }

    /// `heads`' queries rotated to `positions` and attended over another layer's keys and values.
    pub fn attend_shared(&self, heads: Heads, inputs: &AttentionInputs, positions: &Positions) -> Result<Array> {
        self.attend(&self.rotate(heads.queries, self.q_norm.as_ref(), positions)?, inputs)
    }

    /// The attended heads `[B, H, L, D]` through the output projection: `[B, L, hidden]`.
    pub fn output(&self, attended: &Array) -> Result<Array> {
        let [b, _, l, _] = attended.shape()[..] else { unreachable!("attention output is [B, H, L, D]") };
        // With one position, swapping the head and position axes keeps the element order: a reshape.
        let positions_first = if l == 1 { attended.clone() } else { attended.transpose(&[0, 2, 1, 3])? };
        self.o.forward(&positions_first.reshape(&[b, l, self.heads * self.head_dim])?)
    }

    /// `[B, L, n * D]` to `[B, n, L, D]`, normed per head (a decode step's one position needs no
    /// transpose: a graph node fewer per projection).
    fn split_heads(&self, y: &Array, n: i32, norm: Option<&RmsNorm>) -> Result<Array> {
        let (b, l) = (y.dim(0)?, y.dim(1)?);
        let one_position = l == 1;
        let y = y.reshape(&if one_position { [b, n, 1, self.head_dim] } else { [b, l, n, self.head_dim] })?;
        let y = match norm {
            Some(norm) => norm.forward(&y)?,
            None => y,
        };
        Ok(if one_position { y } else { y.transpose(&[0, 2, 1, 3])? })
    }

    /// `y` `[B, H, L, D]` rotated to `positions`, normed first by `norm` where
    /// [`Attention::heads`] left the norm to the rotation.
    fn rotate(&self, y: Array, norm: Option<&RmsNorm>, positions: &Positions) -> Result<Array> {
        let Some(rope) = &self.rope else { return Ok(y) };
        match norm {
            Some(norm) if self.norms_at_rotation(y.dim(2)?) => rope.apply_after_norm(&y, norm, positions),
            _ => rope.apply(&y, positions),
        }
    }

    fn attend(&self, queries: &Array, inputs: &AttentionInputs) -> Result<Array> {
        match self.softcap {
            None => Ok(fast::scaled_dot_product_attention(
                queries,
                &inputs.keys,
                &inputs.values,
                self.scale,
                inputs.mask.as_fast(),
            )?),
            Some(cap) => softcapped_attention(queries, inputs, self.scale, cap),
        }
    }
}

/// Attention with `cap * tanh(scores / cap)` on the scores, which MLX's fused kernel cannot do:
/// queries grouped per key head, scores in float32, the mask applied after the cap.
fn softcapped_attention(queries: &Array, inputs: &AttentionInputs, scale: f32, cap: f32) -> Result<Array> {
    let [b, hq, l, d] = queries.shape()[..] else { unreachable!("queries are [B, H, L, D]") };
    let hkv = inputs.keys.dim(1)?;
    let s = inputs.keys.dim(2)?;
    let grouped = queries.reshape(&[b, hkv, hq / hkv, l, d])?;
    let keys = inputs.keys.expand_dims(&[2])?;
    let values = inputs.values.expand_dims(&[2])?;
    let scores = grouped.mul_scalar(scale as f64)?.matmul(&keys.swapaxes(-1, -2)?)?.astype(Dtype::F32)?;
    let scores = scores.div_scalar(cap as f64)?.tanh()?.mul_scalar(cap as f64)?;
    let allowed = match &inputs.mask {
        AttentionMask::None => None,
        AttentionMask::Causal => Some(visible_keys(s - l, l, s, None)?),
        // A batch's `[B, 1, L, S]` mask gets the query-group axis the scores have here.
        AttentionMask::Array(mask) if mask.ndim() == 4 => Some(mask.expand_dims(&[2])?),
        AttentionMask::Array(mask) => Some(mask.clone()),
    };
    let scores = match allowed {
        Some(allowed) => where_select(&allowed, &scores, &Array::scalar(f32::NEG_INFINITY))?,
        None => scores,
    };
    let probs = scores.softmax(&[-1], true)?.astype(values.dtype())?;
    Ok(probs.matmul(&values)?.reshape(&[b, hq, l, d])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::KvCache;
    use mlx_bridge::concatenate;

    const D: i32 = 16;

    fn linear(rows: i32, cols: i32, seed: i32) -> Linear {
        let data: Vec<f32> = (0..rows * cols).map(|i| (((i * 37 + seed * 11) % 29) as f32 - 14.0) / 30.0).collect();
        Linear::dense(Array::from_slice(&data, &[rows, cols]).unwrap()).unwrap()
    }

    fn bias(n: i32, seed: i32) -> Option<Array> {
        let data: Vec<f32> = (0..n).map(|i| ((i * 5 + seed) % 7) as f32 / 10.0).collect();
        Some(Array::from_slice(&data, &[n]).unwrap())
    }

    /// 4 query heads over 2 key heads of 4 features, biases, q/k norms, RoPE.
    fn attention(softcap: Option<f32>) -> Attention {
        let (hq, hkv, hd) = (4, 2, 4);
        let norm = || Some(RmsNorm::new(Array::from_slice(&[1.0f32, 0.5, 2.0, 1.5], &[hd]).unwrap(), 1e-6));
        Attention {
            q: Projection::new(linear(hq * hd, D, 1), bias(hq * hd, 1)),
            kv: Some(KvProjection {
                k: Projection::new(linear(hkv * hd, D, 2), bias(hkv * hd, 2)),
                v: Projection::new(linear(hkv * hd, D, 3), bias(hkv * hd, 3)),
                k_norm: norm(),
                v_norm: None,
            }),
            o: Projection::new(linear(D, hq * hd, 4), None),
            q_norm: norm(),
            rope: Some(Rope::plain(hd, 100.0, 1.0)),
            heads: hq,
            kv_heads: hkv,
            head_dim: hd,
            scale: 0.5,
            softcap,
        }
    }

    fn tokens(l: i32) -> Array {
        let data: Vec<f32> = (0..l * D).map(|i| ((i * 13 % 17) as f32 - 8.0) / 8.0).collect();
        Array::from_slice(&data, &[1, l, D]).unwrap()
    }

    /// Outputs for 7 tokens run `chunk` at a time through `cache`.
    fn run(attention: &Attention, mut cache: KvCache, chunk: i32) -> Vec<f32> {
        let x = tokens(7);
        let mut outs = Vec::new();
        let mut at = 0;
        while at < 7 {
            let end = (at + chunk).min(7);
            outs.push(
                attention.forward(&x.slice_axis(1, at, end).unwrap(), &mut cache, &Positions::Shared(at)).unwrap(),
            );
            at = end;
        }
        concatenate(&outs.iter().collect::<Vec<_>>(), 1).unwrap().to_vec::<f32>().unwrap()
    }

    fn worst(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn chunked_prefill_and_decode_match_the_whole_prompt() {
        for softcap in [None, Some(2.0)] {
            let a = attention(softcap);
            let whole = run(&a, KvCache::growing(), 7);
            for chunk in [3, 1] {
                assert!(worst(&run(&a, KvCache::growing(), chunk), &whole) < 1e-5, "{softcap:?} chunk {chunk}");
            }
            let window = run(&a, KvCache::sliding(3), 7);
            assert!(worst(&window, &whole) > 1e-3, "a window of 3 changes later positions");
            for chunk in [2, 1] {
                assert!(worst(&run(&a, KvCache::sliding(3), chunk), &window) < 1e-5, "window, chunk {chunk}");
            }
        }
    }

    #[test]
    fn softcapping_with_a_huge_cap_is_plain_attention() {
        let plain = run(&attention(None), KvCache::growing(), 7);
        assert!(worst(&run(&attention(Some(1e6)), KvCache::growing(), 7), &plain) < 1e-4);
        assert!(worst(&run(&attention(Some(0.5)), KvCache::growing(), 7), &plain) > 1e-3);
    }

    /// One decode step against the textbook formula: scores, softmax, weighted values, GQA.
    #[test]
    fn grouped_query_heads_read_their_key_head() {
        let mut a = attention(None);
        (a.rope, a.q_norm, a.q.bias) = (None, None, None);
        let kv = a.kv.as_mut().unwrap();
        (kv.k_norm, kv.k.bias, kv.v.bias) = (None, None, None);
        let x = tokens(3);
        let mut cache = KvCache::growing();
        let got = a.forward(&x, &mut cache, &Positions::Shared(0)).unwrap();
        let o_in = |b: &Attention| {
            let kv = b.kv.as_ref().unwrap();
            let f = |l: &Linear| l.forward(&x).unwrap().to_vec::<f32>().unwrap();
            (f(&b.q.linear), f(&kv.k.linear), f(&kv.v.linear))
        };
        let (q, k, v) = o_in(&a);
        let (hq, hkv, hd, l) = (4usize, 2usize, 4usize, 3usize);
        let mut heads = vec![0f32; l * hq * hd];
        for t in 0..l {
            for h in 0..hq {
                let g = h / (hq / hkv);
                let score = |s: usize| -> f64 {
                    (0..hd).map(|i| (q[t * hq * hd + h * hd + i] * k[s * hkv * hd + g * hd + i]) as f64).sum::<f64>()
                        * 0.5
                };
                let scores: Vec<f64> = (0..=t).map(score).collect();
                let top = scores.iter().cloned().fold(f64::MIN, f64::max);
                let total: f64 = scores.iter().map(|s| (s - top).exp()).sum();
                for i in 0..hd {
                    heads[t * hq * hd + h * hd + i] = (0..=t)
                        .map(|s| (scores[s] - top).exp() / total * v[s * hkv * hd + g * hd + i] as f64)
                        .sum::<f64>() as f32;
                }
            }
        }
        let want =
            a.o.linear.forward(&Array::from_slice(&heads, &[1, 3, 16]).unwrap()).unwrap().to_vec::<f32>().unwrap();
        assert!(worst(&got.to_vec::<f32>().unwrap(), &want) < 1e-5);
    }
}
