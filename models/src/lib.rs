//! Model architectures for mlxcel: one file per family over the shared decoder and layers, the
//! family table the loaders read, the weights loaders, and the hardware profile and execution
//! plan the models follow.

mod causal_lm;
pub mod config;
pub mod decoder;
mod error;
pub mod families;
pub mod gguf;
pub mod hardware;
pub mod layers;
pub mod load;
mod validate;
pub mod weights;

pub use causal_lm::{CausalLm, Logits, Prefill, PrefillStep, non_finite};
pub use error::{ModelError, Result};
pub use families::{gemma3, gemma3n, llama};
pub use load::LoadOptions;
