//! Building blocks shared by the model families: linear layers (dense, pre-transposed or
//! quantized), embeddings, RMSNorm, KV caches and attention masks.

mod activation;
mod batch_cache;
mod cache;
mod embedding;
mod linear;
mod norm;

pub use activation::gelu_tanh;
pub use batch_cache::BatchKvCache;
pub use cache::{AttentionInputs, AttentionMask, CACHE_STEP, KvCache};
pub use embedding::Embedding;
pub use linear::Linear;
pub use norm::RmsNorm;
