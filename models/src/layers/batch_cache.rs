//! Batched key/value caches for one forward pass over several sequences at different positions:
//! mlx-lm's `BatchKVCache` and `BatchRotatingKVCache` (`mlx_lm/models/cache.py`) in one type.
//!
//! Rows share one buffer `[B, H, S, D]`, right-aligned: every row's newest entry is at the same
//! buffer index, and a shorter row is padded on the left. Row `b`'s buffer index `j` holds its
//! position `j + base[b]` (negative: padding). So a query at buffer index `q` may see key `j`
//! when `j <= q` (causal), `q - j < window` (sliding layers) and `j + base[b] >= 0` (not padding):
//! the first two are the same for every row, only the padding differs. Each row's RoPE offset is
//! its own position, [`BatchKvCache::offsets`].
//!
//! Sliding layers keep the window and no more: entries no future query can see are cut from the
//! left, as are leading entries that every row pads. Sequences join ([`BatchKvCache::extend`],
//! [`BatchKvCache::merge`] from single caches) and leave ([`BatchKvCache::filter`]) between steps.

use mlx_bridge::{Array, Dtype, concatenate};

use super::cache::{
    AttentionInputs, AttentionMask, CACHE_STEP, KvCache, LayerCache, Positions, grow, visible_keys, write,
};
use crate::error::{ModelError, Result};

#[derive(Debug, Clone)]
pub struct BatchKvCache {
    window: Option<i32>,
    keys: Option<Array>,
    values: Option<Array>,
    /// Buffer positions in use (the same for every row).
    len: i32,
    /// Per row: its position at buffer index 0.
    base: Vec<i32>,
}

impl BatchKvCache {
    /// An empty cache for a batch prefill of prompts left-padded by `left_padding[b]` tokens.
    pub fn new(window: Option<i32>, left_padding: &[i32]) -> Self {
        BatchKvCache {
            window: window.map(|w| w.max(1)),
            keys: None,
            values: None,
            len: 0,
            base: left_padding.iter().map(|&p| -p).collect(),
        }
    }

    /// One batch of the sequences that `caches` (one per sequence, of one layer) hold.
    pub fn merge(caches: &[KvCache]) -> Result<Self> {
        let window = caches.first().and_then(KvCache::window);
        if caches.iter().any(|c| c.window() != window) {
            return Err(ModelError::Input("merging caches of different attention windows".into()));
        }
        let entries = caches.iter().map(KvCache::entries).collect::<Result<Vec<_>>>()?;
        let lengths: Vec<i32> = entries
            .iter()
            .map(|e| e.as_ref().map_or(Ok(0), |(k, _)| k.dim(2)))
            .collect::<std::result::Result<_, _>>()?;
        let len = lengths.iter().copied().max().unwrap_or(0);
        let mut merged = BatchKvCache {
            window,
            keys: None,
            values: None,
            len,
            base: caches.iter().map(|c| c.offset() - len).collect(),
        };
        let Some((like, _)) = entries.iter().flatten().next() else { return Ok(merged) };
        let mut shape = like.shape();
        let mut rows_k = Vec::with_capacity(caches.len());
        let mut rows_v = Vec::with_capacity(caches.len());
        for (entry, &n) in entries.iter().zip(&lengths) {
            shape[2] = len;
            shape[0] = 1;
            let zeros = Array::zeros(&shape, like.dtype())?;
            let (k, v) = match entry {
                Some((k, v)) => (write(&zeros, k, len - n)?, write(&zeros, v, len - n)?),
                None => (zeros.clone(), zeros),
            };
            rows_k.push(k);
            rows_v.push(v);
        }
        merged.keys = Some(concatenate(&rows_k.iter().collect::<Vec<_>>(), 0)?);
        merged.values = Some(concatenate(&rows_v.iter().collect::<Vec<_>>(), 0)?);
        Ok(merged)
    }

    /// The key and value buffers (for evaluating a merge before it is timed).
    pub fn buffers(&self) -> impl Iterator<Item = &Array> {
        self.keys.iter().chain(&self.values)
    }

    pub fn batch_size(&self) -> usize {
        self.base.len()
    }

    /// Each row's position for the next token: its RoPE offset.
    pub fn offsets(&self) -> Vec<i32> {
        self.base.iter().map(|&base| self.len + base).collect()
    }

    /// [`BatchKvCache::offsets`] as an int32 array `[B]`, for RoPE with per-row offsets.
    pub fn offsets_array(&self) -> Result<Array> {
        let offsets = self.offsets();
        Ok(Array::from_slice(&offsets, &[offsets.len() as i32])?)
    }

    /// Appends `keys`/`values` (`[B, H, L, D]`, the same `L` new positions for every row) and
    /// returns what this step's queries attend over, with the mask `[B, 1, L, S]` (none when
    /// every key is visible to every query).
    pub fn update(&mut self, keys: &Array, values: &Array) -> Result<AttentionInputs> {
        let steps = keys.dim(2)?;
        if keys.dim(0)? as usize != self.base.len() || steps < 1 || values.dim(2)? != steps {
            return Err(ModelError::Input(format!(
                "batch cache of {} rows updated with keys {:?} and values {:?}",
                self.base.len(),
                keys.shape(),
                values.shape()
            )));
        }
        let end = self.len + steps;
        let capacity = self.keys.as_ref().map_or(Ok(0), |k| k.dim(2))?;
        if end > capacity {
            let capacity = (end + CACHE_STEP - 1) / CACHE_STEP * CACHE_STEP;
            self.keys = Some(grow(self.keys.take(), keys, capacity, self.len)?);
            self.values = Some(grow(self.values.take(), values, capacity, self.len)?);
        }
        let k = write(self.keys.as_ref().expect("allocated above"), keys, self.len)?;
        let v = write(self.values.as_ref().expect("allocated above"), values, self.len)?;
        // One token per row, no row padded and the window not yet passed: every key is visible,
        // and the attention needs no mask (a lone row, or rows of one length).
        let padded = self.base.iter().any(|&base| base < 0);
        let mask = if steps == 1 && !padded && self.window.is_none_or(|window| end <= window) {
            AttentionMask::None
        } else {
            AttentionMask::Array(self.mask(self.len, steps, end)?)
        };
        let inputs = AttentionInputs { keys: k.slice_axis(2, 0, end)?, values: v.slice_axis(2, 0, end)?, mask };
        self.keys = Some(k);
        self.values = Some(v);
        self.len = end;
        self.trim()?;
        Ok(inputs)
    }

    /// Which of the `total` keys each of the `steps` queries (from buffer index `from`) sees.
    fn mask(&self, from: i32, steps: i32, total: i32) -> Result<Array> {
        let visible = visible_keys(from, steps, total, self.window)?.reshape(&[1, 1, steps, total])?;
        let key = Array::arange(0.0, total as f64, 1.0, Dtype::I32)?.reshape(&[1, 1, 1, total])?;
        // Row b's padding is buffer indices below -base[b].
        let padding: Vec<i32> = self.base.iter().map(|&base| (-base).max(0)).collect();
        let padding = Array::from_slice(&padding, &[padding.len() as i32, 1, 1, 1])?;
        Ok(visible.logical_and(&key.greater_equal(&padding)?)?)
    }

    /// Cuts leading entries no row will attend to again: padding common to every row, and for a
    /// sliding window what has fallen out of it (the last `window` stay, as a single sliding
    /// cache keeps them, so a row can leave as one).
    fn trim(&mut self) -> Result<()> {
        let padding = self.base.iter().map(|&base| (-base).max(0)).min().unwrap_or(0);
        let expired = self.window.map_or(0, |window| (self.len - window).max(0));
        let cut = padding.max(expired).min(self.len);
        if cut == 0 {
            return Ok(());
        }
        let keep = |buffer: &Option<Array>| -> Result<Option<Array>> {
            buffer.as_ref().map(|b| Ok(b.slice_axis(2, cut, self.len)?)).transpose()
        };
        self.keys = keep(&self.keys)?;
        self.values = keep(&self.values)?;
        self.len -= cut;
        for base in &mut self.base {
            *base += cut;
        }
        Ok(())
    }

    /// Keeps only the rows `keep` (in that order): sequences that finished leave the batch.
    pub fn filter(&mut self, keep: &[usize]) -> Result<()> {
        if let Some(&bad) = keep.iter().find(|&&row| row >= self.base.len()) {
            return Err(ModelError::Input(format!("row {bad} of a batch of {}", self.base.len())));
        }
        // Every row kept in order: nothing to change, and taking the rows would copy the cache.
        if keep.iter().copied().eq(0..self.base.len()) {
            return Ok(());
        }
        let rows: Vec<i32> = keep.iter().map(|&row| row as i32).collect();
        let index = Array::from_slice(&rows, &[rows.len() as i32])?;
        let take = |buffer: &Option<Array>| -> Result<Option<Array>> {
            buffer.as_ref().map(|b| Ok(b.take(&index, 0)?)).transpose()
        };
        self.keys = take(&self.keys)?;
        self.values = take(&self.values)?;
        self.base = keep.iter().map(|&row| self.base[row]).collect();
        self.trim()
    }

    /// Adds `other`'s rows after these: the shorter buffer is padded on the left so both end at
    /// the same index.
    pub fn extend(&mut self, other: BatchKvCache) -> Result<()> {
        if self.window != other.window {
            return Err(ModelError::Input("extending a batch cache with one of another attention window".into()));
        }
        let len = self.len.max(other.len);
        let mut ours = self.aligned(len)?;
        let theirs = other.aligned(len)?;
        ours.base.extend(theirs.base);
        ours.keys = join(ours.keys, theirs.keys)?;
        ours.values = join(ours.values, theirs.values)?;
        *self = ours;
        self.trim()
    }

    /// This cache padded on the left to `len` buffer positions (buffers cut to their used part).
    fn aligned(&self, len: i32) -> Result<BatchKvCache> {
        let pad = len - self.len;
        let resize = |buffer: &Option<Array>| -> Result<Option<Array>> {
            let Some(buffer) = buffer else { return Ok(None) };
            let used = buffer.slice_axis(2, 0, self.len)?;
            if pad == 0 {
                return Ok(Some(used));
            }
            let mut shape = used.shape();
            shape[2] = pad;
            Ok(Some(concatenate(&[&Array::zeros(&shape, used.dtype())?, &used], 2)?))
        };
        Ok(BatchKvCache {
            window: self.window,
            keys: resize(&self.keys)?,
            values: resize(&self.values)?,
            len,
            base: self.base.iter().map(|&base| base - pad).collect(),
        })
    }

    /// Row `row` as a single-sequence cache (for a prefix-cache snapshot, or to leave the batch
    /// and go on alone).
    pub fn extract(&self, row: usize) -> Result<KvCache> {
        let offset = self.len + self.base[row];
        let (Some(keys), Some(values)) = (&self.keys, &self.values) else {
            return Ok(match self.window {
                Some(window) => KvCache::sliding(window),
                None => KvCache::growing(),
            });
        };
        // Growing rows never start before buffer index 0; sliding rows keep their last `window`.
        let kept = match self.window {
            Some(window) => offset.min(window).min(self.len),
            None => offset,
        };
        let rows = |buffer: &Array| -> Result<Array> {
            Ok(buffer.slice_axis(0, row as i32, row as i32 + 1)?.slice_axis(2, self.len - kept, self.len)?)
        };
        KvCache::from_entries(self.window, rows(keys)?, rows(values)?, offset)
    }
}

impl LayerCache for BatchKvCache {
    fn update(&mut self, keys: &Array, values: &Array) -> Result<AttentionInputs> {
        BatchKvCache::update(self, keys, values)
    }

    fn positions(&self) -> Result<Positions> {
        Positions::from_offsets(self.offsets())
    }
}

fn join(a: Option<Array>, b: Option<Array>) -> Result<Option<Array>> {
    Ok(match (a, b) {
        (Some(a), Some(b)) => Some(concatenate(&[&a, &b], 0)?),
        (a, b) => a.or(b),
    })
}

#[cfg(test)]
mod tests {
    use mlx_bridge::{fast, random};

    use super::*;

    const HEADS: i32 = 2;
    const DIM: i32 = 4;

    /// Random `[1, H, L, D]` keys, values and queries for `steps` positions of one sequence.
    fn qkv(seed: u64, steps: i32) -> (Array, Array, Array) {
        let key = random::key(seed).unwrap();
        let all = random::normal(&[3, 1, HEADS, steps, DIM], Dtype::F32, 0.0, 1.0, Some(&key)).unwrap();
        let part = |i| all.slice_axis(0, i, i + 1).unwrap().squeeze(&[0]).unwrap();
        (part(0), part(1), part(2))
    }

    fn attend(q: &Array, inputs: &AttentionInputs) -> Array {
        fast::scaled_dot_product_attention(q, &inputs.keys, &inputs.values, 0.5, inputs.mask.as_fast()).unwrap()
    }

    fn assert_close(a: &Array, b: &Array, what: &str) {
        let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
        assert_eq!(a.len(), b.len(), "{what}");
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5, "{what}: worst difference {worst}");
    }

    fn row(x: &Array, b: i32) -> Array {
        x.slice_axis(0, b, b + 1).unwrap()
    }

    /// Prompts of `lengths` prefilled alone and as one left-padded batch, then `decode` steps
    /// of both: every row's attention output equals its sequence's own.
    fn batch_equals_single(window: Option<i32>, lengths: &[i32], decode: i32) {
        let make = || window.map_or_else(KvCache::growing, KvCache::sliding);
        let longest = *lengths.iter().max().unwrap();
        let padding: Vec<i32> = lengths.iter().map(|&n| longest - n).collect();
        let mut batch = BatchKvCache::new(window, &padding);
        let mut singles: Vec<KvCache> = lengths.iter().map(|_| make()).collect();
        let data: Vec<_> = lengths.iter().enumerate().map(|(i, &n)| qkv(i as u64, n + decode)).collect();
        // Prefill: left-pad each prompt to the longest with zeros.
        let padded = |x: &Array, b: usize| -> Array {
            let prompt = x.slice_axis(2, 0, lengths[b]).unwrap();
            if padding[b] == 0 {
                return prompt;
            }
            let zeros = Array::zeros(&[1, HEADS, padding[b], DIM], Dtype::F32).unwrap();
            concatenate(&[&zeros, &prompt], 2).unwrap()
        };
        let stack = |pick: fn(&(Array, Array, Array)) -> &Array| -> Array {
            let rows: Vec<Array> = data.iter().enumerate().map(|(b, d)| padded(pick(d), b)).collect();
            concatenate(&rows.iter().collect::<Vec<_>>(), 0).unwrap()
        };
        let (k, v, q) = (stack(|d| &d.0), stack(|d| &d.1), stack(|d| &d.2));
        let out = attend(&q, &batch.update(&k, &v).unwrap());
        for (b, single) in singles.iter_mut().enumerate() {
            let (k, v, q) = &data[b];
            let n = lengths[b];
            let alone = attend(
                &q.slice_axis(2, 0, n).unwrap(),
                &single.update(&k.slice_axis(2, 0, n).unwrap(), &v.slice_axis(2, 0, n).unwrap()).unwrap(),
            );
            let batched = row(&out, b as i32).slice_axis(2, padding[b], longest).unwrap();
            assert_close(&batched, &alone, &format!("prefill row {b}"));
        }
        assert_eq!(batch.offsets(), lengths.to_vec());
        for step in 0..decode {
            let pick = |x: &Array, b: usize| x.slice_axis(2, lengths[b] + step, lengths[b] + step + 1).unwrap();
            let stack = |i: usize| -> Array {
                let rows: Vec<Array> = data.iter().enumerate().map(|(b, d)| pick([&d.0, &d.1, &d.2][i], b)).collect();
                concatenate(&rows.iter().collect::<Vec<_>>(), 0).unwrap()
            };
            let out = attend(&stack(2), &batch.update(&stack(0), &stack(1)).unwrap());
            for (b, single) in singles.iter_mut().enumerate() {
                let (k, v, q) = &data[b];
                let alone = attend(&pick(q, b), &single.update(&pick(k, b), &pick(v, b)).unwrap());
                assert_close(&row(&out, b as i32), &alone, &format!("decode step {step} row {b}"));
            }
        }
        // Each row leaves as the single cache it equals.
        for (b, single) in singles.iter().enumerate() {
            let extracted = batch.extract(b).unwrap();
            assert_eq!(extracted.offset(), single.offset());
            let (ek, _) = extracted.entries().unwrap().unwrap();
            let (sk, _) = single.entries().unwrap().unwrap();
            assert_close(&ek, &sk, &format!("extracted row {b}"));
        }
    }

    #[test]
    fn batched_attention_equals_each_sequence_alone() {
        batch_equals_single(None, &[5, 2, 7], 4);
    }

    #[test]
    fn batched_sliding_attention_equals_each_sequence_alone() {
        // Window 3: prompts longer and shorter than it, decode past it.
        batch_equals_single(Some(3), &[5, 2, 7], 6);
    }

    #[test]
    fn merged_filtered_and_extended_batches_keep_each_row() {
        for window in [None, Some(3)] {
            let make = || window.map_or_else(KvCache::growing, KvCache::sliding);
            let lengths = [4, 1, 6];
            let data: Vec<_> = lengths.iter().enumerate().map(|(i, &n)| qkv(10 + i as u64, n + 2)).collect();
            let mut singles: Vec<KvCache> = lengths.iter().map(|_| make()).collect();
            for (b, single) in singles.iter_mut().enumerate() {
                let (k, v, _) = &data[b];
                single
                    .update(&k.slice_axis(2, 0, lengths[b]).unwrap(), &v.slice_axis(2, 0, lengths[b]).unwrap())
                    .unwrap();
            }
            // Rows 0 and 2 merged, row 1 joins later, row 0 leaves.
            let mut batch = BatchKvCache::merge(&[singles[0].clone(), singles[2].clone()]).unwrap();
            batch.extend(BatchKvCache::merge(&[singles[1].clone()]).unwrap()).unwrap();
            batch.filter(&[1, 2]).unwrap();
            let order = [2usize, 1];
            assert_eq!(batch.offsets(), vec![6, 1]);
            let pick = |x: &Array, b: usize| x.slice_axis(2, lengths[b], lengths[b] + 1).unwrap();
            let stack = |i: usize| -> Array {
                let rows: Vec<Array> =
                    order.iter().map(|&b| pick([&data[b].0, &data[b].1, &data[b].2][i], b)).collect();
                concatenate(&rows.iter().collect::<Vec<_>>(), 0).unwrap()
            };
            let out = attend(&stack(2), &batch.update(&stack(0), &stack(1)).unwrap());
            for (r, &b) in order.iter().enumerate() {
                let (k, v, q) = &data[b];
                let alone = attend(&pick(q, b), &singles[b].update(&pick(k, b), &pick(v, b)).unwrap());
                assert_close(&row(&out, r as i32), &alone, &format!("window {window:?} row {b}"));
            }
        }
    }
}
