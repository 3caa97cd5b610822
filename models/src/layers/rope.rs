//! Rotary position embeddings: one parser for every way a checkpoint describes them
//! (transformers' `rope_parameters`, the older `rope_theta` + `rope_scaling`, GGUF metadata and
//! its `rope_freqs` / `rope_factors_*` tensors) and one implementation over MLX's fused kernel,
//! numerically following transformers' `modeling_rope_utils.py`.

use mlx_bridge::{Array, fast, where_select};
use serde_json::Value;

use crate::error::Result;
use crate::layers::{Positions, RmsNorm};
use crate::validate::positive_finite;

/// How the base frequencies are rescaled for a longer context.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    Default,
    /// Positions divided by `factor`.
    Linear {
        factor: f64,
    },
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
    Yarn {
        factor: f64,
        original_max_position_embeddings: f64,
        beta_fast: f64,
        beta_slow: f64,
        attention_factor: f64,
        truncate: bool,
    },
    /// Phi-3's LongRoPE: per-pair divisors, `short` up to `original_max_position_embeddings`
    /// positions and `long` beyond, chosen per forward call as transformers does.
    LongRope {
        short: Vec<f64>,
        long: Vec<f64>,
        original_max_position_embeddings: i32,
        attention_factor: f64,
    },
    /// Per-pair divisors of the frequencies (llama.cpp's `rope_freqs` tensor).
    Factors(Vec<f64>),
}

/// A family's RoPE, resolved from its config.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    pub theta: f64,
    /// Features rotated per head (`head_dim * partial_rotary_factor`); the rest pass through.
    pub dims: i32,
    pub head_dim: i32,
    pub scaling: RopeScaling,
}

fn number(entry: &Value, key: &str) -> Option<f64> {
    entry.get(key).and_then(Value::as_f64)
}

impl RopeConfig {
    /// From a config.json root: `rope_parameters` (transformers 5) or `rope_theta` and
    /// `rope_scaling` (earlier saves), with `partial_rotary_factor` and
    /// `original_max_position_embeddings` read from either place.
    pub fn from_hf(
        root: &Value,
        head_dim: i32,
        max_position_embeddings: i32,
        default_theta: f64,
    ) -> std::result::Result<RopeConfig, String> {
        let params = root.get("rope_parameters").filter(|p| p.is_object());
        let entry = params.or(root.get("rope_scaling").filter(|s| s.is_object()));
        let theta =
            params.and_then(|p| number(p, "rope_theta")).or(number(root, "rope_theta")).unwrap_or(default_theta);
        Self::from_entry(entry, root, theta, head_dim, max_position_embeddings)
    }

    /// One `rope_parameters`-style entry (`rope_type`, `factor`, ...), with `fallback` (the config
    /// root) for the fields older saves keep at the top level.
    pub fn from_entry(
        entry: Option<&Value>,
        fallback: &Value,
        theta: f64,
        head_dim: i32,
        max_position_embeddings: i32,
    ) -> std::result::Result<RopeConfig, String> {
        let empty = Value::Null;
        let entry = entry.unwrap_or(&empty);
        let field = |key: &str| number(entry, key).or(number(fallback, key));
        let partial = field("partial_rotary_factor").unwrap_or(1.0);
        if !(partial > 0.0 && partial <= 1.0) {
            return Err(format!("partial_rotary_factor {partial} must lie in (0, 1]"));
        }
        let dims = (head_dim as f64 * partial) as i32;
        if dims % 2 != 0 || dims <= 0 {
            return Err(format!("{dims} rotated features per head (head_dim {head_dim} x {partial}) must be even"));
        }
        // Float32 is what the kernels compute in: a base past its range is as bad as zero.
        positive_finite("rope_theta", theta as f32)?;
        let kind = entry.get("rope_type").or_else(|| entry.get("type")).and_then(Value::as_str).unwrap_or("default");
        let need = |key: &str| {
            let value = field(key).ok_or_else(|| format!("{kind} RoPE scaling needs {key}"))?;
            let name = if key == "factor" { "RoPE scale factor".to_string() } else { key.to_string() };
            positive_finite(&name, value as f32).map(|_| value)
        };
        let scaling = match kind {
            "default" => RopeScaling::Default,
            "linear" => RopeScaling::Linear { factor: need("factor")? },
            "llama3" => RopeScaling::Llama3 {
                factor: need("factor")?,
                low_freq_factor: need("low_freq_factor")?,
                high_freq_factor: need("high_freq_factor")?,
                original_max_position_embeddings: need("original_max_position_embeddings")?,
            },
            "yarn" => {
                let original = need("original_max_position_embeddings")?;
                let factor = field("factor").unwrap_or(max_position_embeddings as f64 / original);
                let mscale = |scale: f64, m: f64| if scale <= 1.0 { 1.0 } else { 0.1 * m * scale.ln() + 1.0 };
                let attention_factor = match (field("attention_factor"), field("mscale"), field("mscale_all_dim")) {
                    (Some(a), _, _) => a,
                    (None, Some(m), Some(all)) if m != 0.0 && all != 0.0 => mscale(factor, m) / mscale(factor, all),
                    _ => mscale(factor, 1.0),
                };
                RopeScaling::Yarn {
                    factor,
                    original_max_position_embeddings: original,
                    beta_fast: field("beta_fast").filter(|b| *b != 0.0).unwrap_or(32.0),
                    beta_slow: field("beta_slow").filter(|b| *b != 0.0).unwrap_or(1.0),
                    attention_factor,
                    truncate: entry.get("truncate").and_then(Value::as_bool).unwrap_or(true),
                }
            }
            "longrope" | "su" => {
                let original = need("original_max_position_embeddings")?;
                let factors = |key: &str| -> std::result::Result<Vec<f64>, String> {
                    let list = entry.get(key).and_then(Value::as_array).ok_or(format!("longrope needs {key}"))?;
                    let list: Option<Vec<f64>> = list.iter().map(Value::as_f64).collect();
                    let list = list.ok_or(format!("{key} must be a list of numbers"))?;
                    if list.len() != (dims / 2) as usize {
                        return Err(format!("{key} has {} entries, expected {}", list.len(), dims / 2));
                    }
                    Ok(list)
                };
                let factor = field("factor").unwrap_or(max_position_embeddings as f64 / original);
                let attention_factor = field("attention_factor").unwrap_or(if factor <= 1.0 {
                    1.0
                } else {
                    (1.0 + factor.ln() / original.ln()).sqrt()
                });
                RopeScaling::LongRope {
                    short: factors("short_factor")?,
                    long: factors("long_factor")?,
                    original_max_position_embeddings: original as i32,
                    attention_factor,
                }
            }
            other => return Err(format!("RoPE scaling type {other:?} is not supported")),
        };
        Ok(RopeConfig { theta, dims, head_dim, scaling })
    }

    /// The base frequencies' periods `theta^(2i/dims)`, one per rotated pair.
    fn base_periods(&self) -> Vec<f64> {
        (0..self.dims / 2).map(|i| self.theta.powf(2.0 * i as f64 / self.dims as f64)).collect()
    }

    /// Per-pair periods (MLX's `freqs`, the inverse of transformers' `inv_freq`) when the scaling
    /// needs explicit ones; `None` for plain `theta` (MLX computes those itself).
    fn periods(&self, factors: &[f64]) -> Vec<f32> {
        self.base_periods().iter().zip(factors).map(|(p, f)| (p * f) as f32).collect()
    }

    /// The rotary layer this config describes.
    pub fn build(&self) -> Result<Rope> {
        let d = self.dims as f64;
        let plain = |scale: f32| fast::Rope { scale, ..fast::Rope::new(self.dims, self.theta as f32) };
        let with_periods = |periods: Vec<f32>| -> Result<fast::Rope> {
            let freqs = Array::from_slice(&periods, &[periods.len() as i32])?;
            freqs.eval()?;
            Ok(fast::Rope { freqs: Some(freqs), ..fast::Rope::new(self.dims, self.theta as f32) })
        };
        let (rope, long, attention_factor) = match &self.scaling {
            RopeScaling::Default => (plain(1.0), None, 1.0),
            RopeScaling::Linear { factor } => (plain((1.0 / factor) as f32), None, 1.0),
            RopeScaling::Factors(factors) => (with_periods(self.periods(factors))?, None, 1.0),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: original,
            } => {
                let (low_wavelen, high_wavelen) = (original / low, original / high);
                let periods = self.base_periods().into_iter().map(|period| {
                    let (inv_freq, wavelen) = (1.0 / period, 2.0 * std::f64::consts::PI * period);
                    let scaled = if wavelen > low_wavelen {
                        inv_freq / factor
                    } else if wavelen < high_wavelen {
                        inv_freq
                    } else {
                        let smooth = (original / wavelen - low) / (high - low);
                        (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
                    };
                    (1.0 / scaled) as f32
                });
                (with_periods(periods.collect())?, None, 1.0)
            }
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                attention_factor,
                truncate,
            } => {
                let correction = |rotations: f64| {
                    d * (original_max_position_embeddings / (rotations * 2.0 * std::f64::consts::PI)).ln()
                        / (2.0 * self.theta.ln())
                };
                let (mut low, mut high) = (correction(*beta_fast), correction(*beta_slow));
                if *truncate {
                    (low, high) = (low.floor(), high.ceil());
                }
                let (low, high) = (low.max(0.0), high.min(d - 1.0));
                let high = if low == high { high + 0.001 } else { high };
                let periods = self.base_periods().into_iter().enumerate().map(|(i, period)| {
                    // transformers' ramp runs in float32.
                    let ramp = (((i as f32 - low as f32) / (high - low) as f32).clamp(0.0, 1.0)) as f64;
                    let extrapolation = 1.0 - ramp;
                    let inv_freq = (1.0 / (factor * period)) * (1.0 - extrapolation) + (1.0 / period) * extrapolation;
                    (1.0 / inv_freq) as f32
                });
                (with_periods(periods.collect())?, None, *attention_factor)
            }
            RopeScaling::LongRope { short, long, original_max_position_embeddings, attention_factor } => {
                let long = with_periods(self.periods(long))?;
                (with_periods(self.periods(short))?, Some((long, *original_max_position_embeddings)), *attention_factor)
            }
        };
        // A rotation preserves norms, so scaling cos/sin (transformers' attention factor) scales
        // the rotated features: with every feature rotated that is a factor on the scores, free
        // to fold into the attention scale; otherwise only the rotated features are multiplied.
        let (score_scale, feature_scale) = if attention_factor == 1.0 {
            (1.0, None)
        } else if self.dims == self.head_dim {
            ((attention_factor * attention_factor) as f32, None)
        } else {
            let scale: Vec<f32> =
                (0..self.head_dim).map(|i| if i < self.dims { attention_factor as f32 } else { 1.0 }).collect();
            let scale = Array::from_slice(&scale, &[self.head_dim])?;
            scale.eval()?;
            (1.0, Some(scale))
        };
        Ok(Rope { rope, long, feature_scale, score_scale })
    }
}

/// A built rotary embedding for `[B, H, L, D]` queries and keys.
#[derive(Debug, Clone)]
pub struct Rope {
    rope: fast::Rope,
    /// LongRoPE's long-context frequencies and the position count beyond which they apply.
    long: Option<(fast::Rope, i32)>,
    feature_scale: Option<Array>,
    score_scale: f32,
}

impl Rope {
    /// A plain RoPE over all `dims` features with base `theta` and position scale `scale`.
    pub fn plain(dims: i32, theta: f32, scale: f32) -> Rope {
        Rope {
            rope: fast::Rope { scale, ..fast::Rope::new(dims, theta) },
            long: None,
            feature_scale: None,
            score_scale: 1.0,
        }
    }

    /// Rotates `x` (`[B, H, L, D]`): row `b` for positions `p_b..p_b + L`, `p_b` its position.
    pub fn apply(&self, x: &Array, positions: &Positions) -> Result<Array> {
        let length = x.dim(-2)?;
        let x = match &self.feature_scale {
            Some(scale) => x.mul(&scale.astype(x.dtype())?)?,
            None => x.clone(),
        };
        let (offsets, array) = match positions {
            Positions::Shared(offset) => return Ok(self.frequencies(offset + length).apply(&x, *offset)?),
            Positions::PerRow { offsets, array } => (offsets, array),
        };
        let Some((long, original)) = &self.long else { return Ok(self.rope.apply_dynamic(&x, array)?) };
        // LongRoPE picks its frequencies by each sequence's own length: rows on both sides of the
        // switch get both rotations and keep their own.
        let uses_long: Vec<bool> = offsets.iter().map(|&offset| offset + length > *original).collect();
        if uses_long.iter().all(|&l| l == uses_long[0]) {
            return Ok(self.frequencies(offsets[0] + length).apply_dynamic(&x, array)?);
        }
        let rows = Array::from_slice(&uses_long, &[uses_long.len() as i32, 1, 1, 1])?;
        Ok(where_select(&rows, &long.apply_dynamic(&x, array)?, &self.rope.apply_dynamic(&x, array)?)?)
    }

    /// `self.apply(&norm.forward(x)?, positions)`: one kernel where the bridge has one for the
    /// call (a decode step's heads on CUDA), else the norm and the rotation.
    pub fn apply_after_norm(&self, x: &Array, norm: &RmsNorm, positions: &Positions) -> Result<Array> {
        if let (None, None, Some(weight)) = (&self.feature_scale, &self.long, norm.weight()) {
            let offset = match positions {
                Positions::Shared(offset) => fast::RopeOffset::Shared(*offset),
                Positions::PerRow { array, .. } => fast::RopeOffset::PerRow(array),
            };
            if let Some(y) = self.rope.apply_after_rms_norm(x, fast::NormWeight { weight, eps: norm.eps() }, offset)? {
                return Ok(y);
            }
        }
        self.apply(&norm.forward(x)?, positions)
    }

    /// The frequencies for a sequence that will have `length` positions after this step.
    fn frequencies(&self, length: i32) -> &fast::Rope {
        match &self.long {
            Some((long, original)) if length > *original => long,
            _ => &self.rope,
        }
    }

    /// The factor this RoPE puts on attention scores (folded into the attention scale).
    pub fn score_scale(&self) -> f32 {
        self.score_scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(root: Value) -> std::result::Result<RopeConfig, String> {
        RopeConfig::from_hf(&root, 8, 64, 10_000.0)
    }

    /// transformers' rotation `x cos + rotate_half(x) sin` with `inv_freq`, in f64.
    fn reference(x: &[f32], positions: std::ops::Range<i32>, inv_freq: &[f64], dims: usize, scale: f64) -> Vec<f64> {
        let head = x.len() / positions.len();
        let mut out = Vec::new();
        for (row, p) in x.chunks(head).zip(positions) {
            let half = dims / 2;
            for i in 0..head {
                out.push(if i < dims {
                    let f = inv_freq[i % half] * p as f64;
                    let rotated = if i < half { -(row[i + half] as f64) } else { row[i - half] as f64 };
                    (row[i] as f64 * f.cos() + rotated * f.sin()) * scale
                } else {
                    row[i] as f64
                });
            }
        }
        out
    }

    fn check(config: &RopeConfig, inv_freq: &[f64], offset: i32, scale: f64) {
        let (l, d) = (3, config.head_dim);
        let data: Vec<f32> = (0..l * d).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect();
        let x = Array::from_slice(&data, &[1, 1, l, d]).unwrap();
        let rope = config.build().unwrap();
        let got = rope.apply(&x, &Positions::Shared(offset)).unwrap().to_vec::<f32>().unwrap();
        // A factor folded into the attention scale is not applied to the features.
        let scale = scale / (rope.score_scale() as f64).sqrt();
        let want = reference(&data, offset..offset + l, inv_freq, config.dims as usize, scale);
        let worst = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-5, "{:?}: worst difference {worst}", config.scaling);
    }

    fn inv_freq(theta: f64, dims: i32) -> Vec<f64> {
        (0..dims / 2).map(|i| 1.0 / theta.powf(2.0 * i as f64 / dims as f64)).collect()
    }

    #[test]
    fn default_linear_and_partial_rotary() {
        let c = config(json!({"rope_theta": 100.0})).unwrap();
        check(&c, &inv_freq(100.0, 8), 5, 1.0);
        let c = config(json!({"rope_parameters": {"rope_type": "linear", "factor": 4.0, "rope_theta": 50.0}})).unwrap();
        let f: Vec<f64> = inv_freq(50.0, 8).iter().map(|f| f / 4.0).collect();
        check(&c, &f, 2, 1.0);
        let c = config(json!({"rope_theta": 100.0, "partial_rotary_factor": 0.5})).unwrap();
        assert_eq!(c.dims, 4);
        check(&c, &inv_freq(100.0, 4), 3, 1.0);
    }

    #[test]
    fn llama3_and_yarn_follow_transformers_formulas() {
        let c = config(json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 32}, "rope_theta": 500000.0}))
        .unwrap();
        let want: Vec<f64> = inv_freq(500_000.0, 8)
            .iter()
            .map(|&f| {
                let wavelen = 2.0 * std::f64::consts::PI / f;
                if wavelen > 32.0 {
                    f / 8.0
                } else if wavelen < 8.0 {
                    f
                } else {
                    let s = (32.0 / wavelen - 1.0) / 3.0;
                    (1.0 - s) * f / 8.0 + s * f
                }
            })
            .collect();
        check(&c, &want, 4, 1.0);
        let c = config(json!({"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0,
            "original_max_position_embeddings": 16}}))
        .unwrap();
        let RopeScaling::Yarn { attention_factor, .. } = c.scaling else { panic!() };
        assert!((attention_factor - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-12);
        assert!((c.build().unwrap().score_scale() as f64 - attention_factor.powi(2)).abs() < 1e-6);
        // transformers' correction range for dim 8, base 1e4, 16 positions: low 0, high 1.
        let ramp = [0.0, 1.0, 1.0, 1.0];
        let want: Vec<f64> =
            inv_freq(10_000.0, 8).iter().zip(ramp).map(|(&f, r)| f / 4.0 * r + f * (1.0 - r)).collect();
        check(&c, &want, 7, attention_factor);
    }

    #[test]
    fn longrope_switches_to_long_factors_past_the_original_context() {
        let root = json!({"rope_parameters": {"rope_type": "longrope", "rope_theta": 100.0,
            "short_factor": [1.0, 2.0], "long_factor": [3.0, 5.0], "partial_rotary_factor": 0.5},
            "original_max_position_embeddings": 4});
        let c = RopeConfig::from_hf(&root, 8, 16, 10_000.0).unwrap();
        let attention = (1.0 + 4f64.ln() / 4f64.ln()).sqrt();
        let base = inv_freq(100.0, 4);
        check(&c, &[base[0] / 1.0, base[1] / 2.0], 0, attention);
        check(&c, &[base[0] / 3.0, base[1] / 5.0], 2, attention);
    }

    #[test]
    fn per_row_positions_rotate_each_row_as_alone() {
        let longrope = json!({"rope_parameters": {"rope_type": "longrope", "rope_theta": 100.0,
            "short_factor": [1.0, 2.0], "long_factor": [3.0, 5.0], "partial_rotary_factor": 0.5},
            "original_max_position_embeddings": 4});
        let configs =
            [config(json!({"rope_theta": 100.0})).unwrap(), RopeConfig::from_hf(&longrope, 8, 16, 1e4).unwrap()];
        // Two positions per row: row 0 stays within LongRoPE's original 4 positions, rows 1 and 2 pass it.
        let offsets = [0, 3, 6];
        let data: Vec<f32> = (0..3 * 2 * 8).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect();
        let x = Array::from_slice(&data, &[3, 1, 2, 8]).unwrap();
        for config in &configs {
            let rope = config.build().unwrap();
            let batched = rope.apply(&x, &Positions::from_offsets(offsets.to_vec()).unwrap()).unwrap();
            for (b, &offset) in offsets.iter().enumerate() {
                let b = b as i32;
                let alone = rope.apply(&x.slice_axis(0, b, b + 1).unwrap(), &Positions::Shared(offset)).unwrap();
                let row = batched.slice_axis(0, b, b + 1).unwrap().to_vec::<f32>().unwrap();
                let alone = alone.to_vec::<f32>().unwrap();
                let worst = row.iter().zip(&alone).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                assert!(worst < 1e-6, "{:?} row {b}: {worst}", config.scaling);
            }
        }
    }

    #[test]
    fn bad_scaling_is_named() {
        assert!(
            config(json!({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}})).unwrap_err().contains("dynamic")
        );
        assert!(config(json!({"rope_scaling": {"rope_type": "linear"}})).unwrap_err().contains("factor"));
        let short = json!({"rope_scaling": {"rope_type": "longrope", "short_factor": [1.0], "long_factor": [1.0],
            "original_max_position_embeddings": 4}});
        assert!(config(short).unwrap_err().contains("short_factor has 1 entries"));
    }
}
