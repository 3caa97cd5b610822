//! Model architectures for mlxcel (one module per family over shared layers), the weights
//! loader, and the hardware profile and execution plan the models follow.

mod causal_lm;
mod error;
pub mod gemma3;
pub mod gemma3n;
pub mod gguf;
pub mod hardware;
pub mod layers;
pub mod llama;
mod validate;
pub mod weights;

pub use causal_lm::{CausalLm, Logits, Prefill, PrefillStep, non_finite};
pub use error::{ModelError, Result};
