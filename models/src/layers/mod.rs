//! Building blocks shared by the model families: linear layers (dense, pre-transposed or
//! quantized), embeddings, RMSNorm, RoPE, attention with its KV caches and masks, the gated MLP
//! and the sparse mixture of experts.

mod activation;
mod attention;
mod batch_cache;
mod cache;
mod compiled;
mod embedding;
mod linear;
mod mlp;
mod moe;
mod norm;
mod rope;

pub use activation::gelu_tanh;
pub use attention::{Attention, Heads, KvProjection, Projection};
pub use batch_cache::BatchKvCache;
pub use cache::{AttentionInputs, AttentionMask, CACHE_STEP, KvCache, LayerCache, Positions};
pub use compiled::{CompiledStep, is_decode_step};
pub use embedding::Embedding;
pub use linear::Linear;
pub use mlp::{Activation, GatedMlp};
pub use moe::{Experts, SparseMoe};
pub use norm::RmsNorm;
pub use rope::{Rope, RopeConfig, RopeScaling};
