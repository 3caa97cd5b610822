//! Reuse of key/value caches across requests: a multi-turn chat re-sends its history, so a new
//! prompt often starts with the tokens of an earlier one (and of its answer). Snapshots of whole
//! per-layer cache sets are kept, keyed by the tokens they hold, least recently used first out,
//! within a byte budget.
//!
//! What is reused:
//! - Full-attention layers keep every position, so a snapshot serves any prompt that shares a
//!   prefix with it: the caches are cut back to the common prefix ([`KvCache::truncate`]).
//! - Sliding-window layers keep only the last `window` positions, and cutting them back would
//!   need entries the window has already dropped. A snapshot of a model with any sliding layer
//!   is therefore reused only when its tokens are all a prefix of the new prompt (then every
//!   window is intact, as the new prompt's next position needs it). The server snapshots such
//!   models at the end of each prompt as well as at the end of each answer, so a second chat
//!   turn, whose prompt starts with the first turn's prompt, always finds one.
//!
//! A snapshot is cheap to take: MLX arrays are immutable and shared, so it costs no copy until
//! the live sequence writes its next position (one buffer copy, then in place again).

use mlxcel_models::layers::KvCache;

struct Entry {
    tokens: Vec<u32>,
    caches: Vec<KvCache>,
    bytes: usize,
    sliding: bool,
    last_used: u64,
}

/// A prefix-cache hit: caches holding the first `reused` tokens of the prompt.
pub struct Hit {
    pub caches: Vec<KvCache>,
    pub reused: usize,
}

pub struct PrefixCache {
    entries: Vec<Entry>,
    budget: usize,
    bytes: usize,
    clock: u64,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixCache {
    /// A cache holding at most `budget` bytes of keys and values (0 disables it).
    pub fn new(budget: usize) -> Self {
        PrefixCache { entries: Vec::new(), budget, bytes: 0, clock: 0 }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caches of the longest reusable prefix of `prompt`, leaving at least one prompt token
    /// to compute (its logits choose the first new token).
    pub fn lookup(&mut self, prompt: &[u32]) -> Option<Hit> {
        let limit = prompt.len().saturating_sub(1);
        let (index, reused) = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, entry)| {
                let shared = common_prefix(&entry.tokens, prompt).min(limit);
                let usable = if entry.sliding { shared == entry.tokens.len() } else { shared > 0 };
                usable.then_some((i, shared))
            })
            .max_by_key(|&(_, shared)| shared)?;
        if reused == 0 {
            return None;
        }
        self.clock += 1;
        let entry = &mut self.entries[index];
        entry.last_used = self.clock;
        let mut caches = entry.caches.clone();
        for cache in &mut caches {
            if !cache.truncate(reused as i32) {
                return None;
            }
        }
        Some(Hit { caches, reused })
    }

    /// Keeps `caches`, which hold exactly `tokens`, evicting the least recently used snapshots
    /// beyond the budget. A snapshot that a full-attention entry already covers is dropped, and
    /// so are full-attention entries that the new one covers.
    pub fn insert(&mut self, tokens: Vec<u32>, caches: Vec<KvCache>) {
        if self.budget == 0 || tokens.is_empty() || caches.iter().any(|c| c.offset() as usize != tokens.len()) {
            return;
        }
        let sliding = caches.iter().any(|c| c.window().is_some());
        let bytes = caches.iter().map(KvCache::nbytes).sum();
        if bytes > self.budget {
            return;
        }
        let covered_by = |entry: &Entry, tokens: &[u32]| {
            entry.tokens.len() >= tokens.len()
                && entry.tokens[..tokens.len()] == *tokens
                && (!entry.sliding || entry.tokens.len() == tokens.len())
        };
        if self.entries.iter().any(|entry| covered_by(entry, &tokens)) {
            return;
        }
        self.entries.retain(|entry| {
            // A full-attention entry that the new one extends serves nothing the new one cannot.
            let superseded = !sliding
                && !entry.sliding
                && entry.tokens.len() <= tokens.len()
                && tokens[..entry.tokens.len()] == *entry.tokens;
            let keep = !superseded;
            if !keep {
                self.bytes -= entry.bytes;
            }
            keep
        });
        self.clock += 1;
        self.bytes += bytes;
        self.entries.push(Entry { tokens, caches, bytes, sliding, last_used: self.clock });
        while self.bytes > self.budget {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(i, _)| i)
                .expect("over budget means not empty");
            let entry = self.entries.swap_remove(oldest);
            self.bytes -= entry.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use mlx_bridge::Array;

    use super::*;

    /// Caches holding `tokens.len()` positions whose keys are the token ids.
    fn caches_for(tokens: &[u32], make: fn() -> KvCache) -> Vec<KvCache> {
        let mut cache = make();
        let values: Vec<f32> = tokens.iter().map(|&t| t as f32).collect();
        let kv = Array::from_slice(&values, &[1, 1, tokens.len() as i32, 1]).unwrap();
        cache.update(&kv, &kv).unwrap();
        vec![cache]
    }

    #[test]
    fn full_attention_snapshots_serve_any_shared_prefix() {
        let mut cache = PrefixCache::new(1 << 20);
        cache.insert(vec![1, 2, 3, 4, 5], caches_for(&[1, 2, 3, 4, 5], KvCache::growing));
        let hit = cache.lookup(&[1, 2, 3, 9, 9]).unwrap();
        assert_eq!(hit.reused, 3);
        assert_eq!(hit.caches[0].offset(), 3);
        // A prompt equal to the snapshot still leaves its last token to compute.
        assert_eq!(cache.lookup(&[1, 2, 3, 4, 5]).unwrap().reused, 4);
        assert!(cache.lookup(&[7, 1, 2]).is_none());
        // The longer snapshot replaces the one it extends.
        cache.insert(vec![1, 2, 3, 4, 5, 6], caches_for(&[1, 2, 3, 4, 5, 6], KvCache::growing));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn sliding_snapshots_serve_only_prompts_they_prefix_whole() {
        let mut cache = PrefixCache::new(1 << 20);
        let sliding = || KvCache::sliding(2);
        cache.insert(vec![1, 2, 3, 4], caches_for(&[1, 2, 3, 4], sliding));
        assert!(cache.lookup(&[1, 2, 3, 9, 9]).is_none(), "the window lost position 1's neighbours");
        assert_eq!(cache.lookup(&[1, 2, 3, 4, 8]).unwrap().reused, 4);
        assert!(cache.lookup(&[1, 2, 3, 4]).is_none(), "the last token must be recomputed, which needs a cut");
    }

    #[test]
    fn the_least_recently_used_snapshot_leaves_first() {
        let one = caches_for(&[1, 2], KvCache::growing);
        let size: usize = one.iter().map(KvCache::nbytes).sum();
        let mut cache = PrefixCache::new(2 * size);
        cache.insert(vec![1, 2], one);
        cache.insert(vec![3, 4], caches_for(&[3, 4], KvCache::growing));
        assert!(cache.lookup(&[1, 2, 0]).is_some());
        cache.insert(vec![5, 6], caches_for(&[5, 6], KvCache::growing));
        assert!(cache.lookup(&[3, 4, 0]).is_none(), "evicted");
        assert!(cache.lookup(&[1, 2, 0]).is_some() && cache.lookup(&[5, 6, 0]).is_some());
        assert!(cache.bytes() <= 2 * size);
    }
}
