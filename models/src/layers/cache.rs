//! Per-layer key/value caches, kept outside the model (mlx-lm's discipline) and owned by the
//! generation loop. Keys and values are `[batch, kv_heads, positions, head_dim]`, already
//! position-encoded.
//!
//! The layers hold a cache through [`LayerCache`]: a [`KvCache`] (one sequence, or rows all at
//! one position) or a [`super::BatchKvCache`] (rows at their own positions), so one forward pass
//! serves a single sequence and a batch of them alike.

use mlx_bridge::{Array, Dtype, concatenate, fast};

use crate::error::{ModelError, Result};

/// Full-attention caches grow in steps of this many positions, preallocated like mlx-lm's: MLX's
/// CUDA attention path keys on that layout, and it avoids a reallocation per token.
pub const CACHE_STEP: i32 = 256;

/// Which keys each query of a step may see.
#[derive(Debug, Clone)]
pub enum AttentionMask {
    /// Every key (a single decode step over a cache that holds only visible positions).
    None,
    /// Query `i` of `L` sees keys `0..=S-L+i`.
    Causal,
    /// Explicit boolean `[L, S]` mask (true = attend), e.g. a sliding window crossed by a chunk.
    Array(Array),
}

impl AttentionMask {
    pub fn as_fast(&self) -> fast::AttentionMask<'_> {
        match self {
            AttentionMask::None => fast::AttentionMask::None,
            AttentionMask::Causal => fast::AttentionMask::Causal,
            AttentionMask::Array(mask) => fast::AttentionMask::Array(mask),
        }
    }
}

/// What an attention layer attends over after appending this step's keys and values.
#[derive(Debug, Clone)]
pub struct AttentionInputs {
    pub keys: Array,
    pub values: Array,
    pub mask: AttentionMask,
}

/// Where a step's tokens sit: the positions RoPE rotates them to.
#[derive(Debug, Clone)]
pub enum Positions {
    /// Every row's first token at this position.
    Shared(i32),
    /// Row `b`'s first token at `offsets[b]` (sequences of different lengths decoded together);
    /// `array` holds the same offsets as int32 `[B]`, for RoPE's per-row offsets.
    PerRow { offsets: Vec<i32>, array: Array },
}

impl Positions {
    /// `Shared` when every row is at the same position (the exact single-sequence path).
    pub fn from_offsets(offsets: Vec<i32>) -> Result<Positions> {
        match offsets.first() {
            Some(&first) if offsets.iter().all(|&o| o == first) => Ok(Positions::Shared(first)),
            _ => {
                let array = Array::from_slice(&offsets, &[offsets.len() as i32])?;
                Ok(Positions::PerRow { offsets, array })
            }
        }
    }
}

/// What an attention layer needs from its cache: append this step's keys and values, and say
/// where the step's tokens sit.
pub trait LayerCache {
    /// Appends `keys`/`values` (`[B, H, L, D]`) and returns what this step's queries attend over.
    fn update(&mut self, keys: &Array, values: &Array) -> Result<AttentionInputs>;

    /// The positions of the next tokens.
    fn positions(&self) -> Result<Positions>;
}

impl LayerCache for KvCache {
    fn update(&mut self, keys: &Array, values: &Array) -> Result<AttentionInputs> {
        KvCache::update(self, keys, values)
    }

    fn positions(&self) -> Result<Positions> {
        Ok(Positions::Shared(self.offset))
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Every position is kept (full attention).
    Growing,
    /// Only the last `window` positions matter: query `q` sees keys `k` with `q - window < k <= q`.
    Sliding { window: i32 },
}

#[derive(Debug, Clone)]
pub struct KvCache {
    kind: Kind,
    keys: Option<Array>,
    values: Option<Array>,
    /// Positions seen so far: the position of the next token.
    offset: i32,
    /// Valid entries in the buffers.
    len: i32,
    /// Sliding caches only, once full: the ring slot the next single-token step overwrites (the
    /// oldest entry). Entries are in temporal order starting here.
    head: i32,
}

impl KvCache {
    pub fn growing() -> Self {
        Self::new(Kind::Growing)
    }

    pub fn sliding(window: i32) -> Self {
        Self::new(Kind::Sliding { window: window.max(1) })
    }

    fn new(kind: Kind) -> Self {
        KvCache { kind, keys: None, values: None, offset: 0, len: 0, head: 0 }
    }

    /// Positions processed so far.
    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// The attention window of a sliding cache; `None` for full attention.
    pub fn window(&self) -> Option<i32> {
        match self.kind {
            Kind::Growing => None,
            Kind::Sliding { window } => Some(window),
        }
    }

    /// Forgets the positions from `positions` on, so the next update continues there (a prefix
    /// cache reusing the start of a longer snapshot). Full-attention caches can always do it; a
    /// sliding cache only when nothing is forgotten, since the window has already dropped the
    /// older entries that the earlier position would need. Returns whether the cache now ends at
    /// `positions`.
    pub fn truncate(&mut self, positions: i32) -> bool {
        if positions == self.offset {
            return true;
        }
        match self.kind {
            Kind::Growing if (0..self.offset).contains(&positions) => {
                self.offset = positions;
                self.len = positions;
                true
            }
            _ => false,
        }
    }

    /// Bytes held by the buffers.
    pub fn nbytes(&self) -> usize {
        self.keys.as_ref().map_or(0, Array::nbytes) + self.values.as_ref().map_or(0, Array::nbytes)
    }

    /// Appends `keys`/`values` (`[B, H, L, D]`) and returns what this step's queries attend over.
    pub fn update(&mut self, keys: &Array, values: &Array) -> Result<AttentionInputs> {
        let steps = keys.dim(2)?;
        if steps < 1 || values.dim(2)? != steps {
            return Err(ModelError::Input(format!(
                "cache update with keys {:?} and values {:?}",
                keys.shape(),
                values.shape()
            )));
        }
        match self.kind {
            Kind::Growing => self.update_growing(keys, values, steps),
            Kind::Sliding { window } if steps == 1 => self.update_ring(keys, values, window),
            Kind::Sliding { window } => self.update_window_chunk(keys, values, steps, window),
        }
    }

    fn update_growing(&mut self, keys: &Array, values: &Array, steps: i32) -> Result<AttentionInputs> {
        let end = self.offset + steps;
        let capacity = self.keys.as_ref().map_or(Ok(0), |k| k.dim(2))?;
        if end > capacity {
            let capacity = (end + CACHE_STEP - 1) / CACHE_STEP * CACHE_STEP;
            self.keys = Some(grow(self.keys.take(), keys, capacity, self.offset)?);
            self.values = Some(grow(self.values.take(), values, capacity, self.offset)?);
        }
        let k = write(self.keys.as_ref().expect("allocated above"), keys, self.offset)?;
        let v = write(self.values.as_ref().expect("allocated above"), values, self.offset)?;
        let inputs = AttentionInputs {
            keys: k.slice_axis(2, 0, end)?,
            values: v.slice_axis(2, 0, end)?,
            mask: if steps > 1 { AttentionMask::Causal } else { AttentionMask::None },
        };
        self.keys = Some(k);
        self.values = Some(v);
        self.offset = end;
        self.len = end;
        Ok(inputs)
    }

    /// One token: write it into a ring of `window` slots. Every stored entry is then within the
    /// window of the new query, so no mask is needed and the order of entries does not matter.
    fn update_ring(&mut self, keys: &Array, values: &Array, window: i32) -> Result<AttentionInputs> {
        let capacity = self.keys.as_ref().map_or(Ok(0), |k| k.dim(2))?;
        if capacity < window {
            // Room for the whole window, entries kept in place (they are in temporal order from 0).
            self.keys = Some(grow(self.keys.take(), keys, window, self.len)?);
            self.values = Some(grow(self.values.take(), values, window, self.len)?);
        }
        let slot = if self.len < window { self.len } else { self.head };
        let k = write(self.keys.as_ref().expect("allocated above"), keys, slot)?;
        let v = write(self.values.as_ref().expect("allocated above"), values, slot)?;
        if self.len < window {
            self.len += 1;
        } else {
            self.head = (self.head + 1) % window;
        }
        let inputs = AttentionInputs {
            keys: k.slice_axis(2, 0, self.len)?,
            values: v.slice_axis(2, 0, self.len)?,
            mask: AttentionMask::None,
        };
        self.keys = Some(k);
        self.values = Some(v);
        self.offset += 1;
        Ok(inputs)
    }

    /// Several tokens: attend over the last `window - 1` stored positions plus the whole chunk,
    /// so every new token sees its full window however long the chunk is; an explicit mask
    /// applies the window where the chunk crosses it. Afterwards keep the last `window` entries.
    fn update_window_chunk(
        &mut self,
        keys: &Array,
        values: &Array,
        steps: i32,
        window: i32,
    ) -> Result<AttentionInputs> {
        let history = (window - 1).min(self.len);
        let (full_k, full_v) = match (self.temporal(&self.keys)?, self.temporal(&self.values)?) {
            (Some(old_k), Some(old_v)) if history > 0 => {
                let from = self.len - history;
                (
                    concatenate(&[&old_k.slice_axis(2, from, self.len)?, keys], 2)?,
                    concatenate(&[&old_v.slice_axis(2, from, self.len)?, values], 2)?,
                )
            }
            _ => (keys.clone(), values.clone()),
        };
        let total = history + steps;
        let mask = if total <= window {
            AttentionMask::Causal
        } else {
            // Query i is at position offset + i; key j at offset - history + j.
            AttentionMask::Array(visible_keys(history, steps, total, Some(window))?)
        };
        let kept = total.min(window);
        self.keys = Some(full_k.slice_axis(2, total - kept, total)?);
        self.values = Some(full_v.slice_axis(2, total - kept, total)?);
        self.len = kept;
        self.head = 0;
        self.offset += steps;
        Ok(AttentionInputs { keys: full_k, values: full_v, mask })
    }

    /// The stored keys and values in temporal order (`[B, H, n, D]`: every position for full
    /// attention, the last `window` for a sliding cache), or `None` before the first update.
    pub fn entries(&self) -> Result<Option<(Array, Array)>> {
        Ok(self.temporal(&self.keys)?.zip(self.temporal(&self.values)?))
    }

    /// A cache holding `keys`/`values` (`[B, H, n, D]`, temporal order) as the last `n` of
    /// `offset` positions: what [`KvCache::entries`] gave, for a sliding cache at most `window`.
    pub fn from_entries(window: Option<i32>, keys: Array, values: Array, offset: i32) -> Result<Self> {
        let len = keys.dim(2)?;
        let kind = match window {
            None if len == offset => Kind::Growing,
            Some(window) if len == offset.min(window) => Kind::Sliding { window },
            _ => {
                return Err(ModelError::Input(format!(
                    "{len} cache entries cannot be the last of {offset} positions{}",
                    window.map_or(String::new(), |w| format!(" in a window of {w}"))
                )));
            }
        };
        Ok(KvCache { kind, keys: Some(keys), values: Some(values), offset, len, head: 0 })
    }

    /// The valid entries of a buffer in temporal order.
    fn temporal(&self, buffer: &Option<Array>) -> Result<Option<Array>> {
        let Some(buffer) = buffer else { return Ok(None) };
        if self.head == 0 {
            return Ok(Some(buffer.slice_axis(2, 0, self.len)?));
        }
        let newer = buffer.slice_axis(2, 0, self.head)?;
        let older = buffer.slice_axis(2, self.head, self.len)?;
        Ok(Some(concatenate(&[&older, &newer], 2)?))
    }
}

/// `[steps, total]`: whether query `i`, at key index `first_query + i`, sees key `j`: causal, and
/// within `window` positions if given. Built on the device: a host-side loop over a 2048-token
/// chunk's 4M pairs, once per layer, costs more than the chunk's attention.
pub(crate) fn visible_keys(first_query: i32, steps: i32, total: i32, window: Option<i32>) -> Result<Array> {
    let key = Array::arange(0.0, total as f64, 1.0, Dtype::I32)?.reshape(&[1, total])?;
    let query =
        Array::arange(first_query as f64, (first_query + steps) as f64, 1.0, Dtype::I32)?.reshape(&[steps, 1])?;
    let causal = key.less_equal(&query)?;
    Ok(match window {
        Some(window) => causal.logical_and(&query.sub(&key)?.less(&Array::scalar(window))?)?,
        None => causal,
    })
}

/// A zeroed buffer of `capacity` positions shaped like `like`, holding the first `keep` entries of `old`.
pub(crate) fn grow(old: Option<Array>, like: &Array, capacity: i32, keep: i32) -> Result<Array> {
    let mut shape = like.shape();
    shape[2] = capacity;
    let buffer = Array::zeros(&shape, like.dtype())?;
    match old {
        Some(old) if keep > 0 => write(&buffer, &old.slice_axis(2, 0, keep)?, 0),
        _ => Ok(buffer),
    }
}

/// `buffer[:, :, at:at+L] = update`.
pub(crate) fn write(buffer: &Array, update: &Array, at: i32) -> Result<Array> {
    let shape = update.shape();
    let start = [0, 0, at, 0];
    let stop = [shape[0], shape[1], at + shape[2], shape[3]];
    Ok(buffer.slice_update(update, &start, &stop)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(cache: &mut KvCache, from: i32, steps: i32) -> AttentionInputs {
        let values: Vec<f32> = (from..from + steps).map(|p| p as f32).collect();
        let kv = Array::from_slice(&values, &[1, 1, steps, 1]).unwrap();
        cache.update(&kv, &kv).unwrap()
    }

    fn positions(inputs: &AttentionInputs) -> Vec<f32> {
        inputs.keys.to_vec::<f32>().unwrap()
    }

    #[test]
    fn a_truncated_growing_cache_continues_from_the_earlier_position() {
        let mut cache = KvCache::growing();
        step(&mut cache, 0, 6);
        assert!(cache.truncate(4));
        assert_eq!(cache.offset(), 4);
        // Position 4 again: the stale entries 4 and 5 are overwritten, never attended to.
        assert_eq!(positions(&step(&mut cache, 4, 1)), vec![0.0, 1.0, 2.0, 3.0, 4.0]);
        assert!(!cache.truncate(9), "cannot extend");
    }

    #[test]
    fn a_sliding_cache_truncates_only_to_its_own_end() {
        let mut cache = KvCache::sliding(4);
        step(&mut cache, 0, 6);
        assert!(cache.truncate(6));
        assert!(!cache.truncate(5), "position 5's window needs entry 2, already dropped");
        assert_eq!(cache.window(), Some(4));
    }

    #[test]
    fn a_cloned_cache_is_a_snapshot() {
        let mut cache = KvCache::growing();
        step(&mut cache, 0, 3);
        let snapshot = cache.clone();
        step(&mut cache, 3, 2);
        let mut resumed = snapshot;
        assert_eq!(resumed.offset(), 3);
        assert_eq!(positions(&step(&mut resumed, 3, 1)), vec![0.0, 1.0, 2.0, 3.0]);
    }
}
