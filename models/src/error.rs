use std::path::PathBuf;

use thiserror::Error;

/// Errors from loading or running a model. Each names what was wrong and where.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error(transparent)]
    Mlx(#[from] mlx_bridge::Error),
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{}: invalid config: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("unsupported model_type {found:?}; supported: {supported}")]
    UnsupportedModelType { found: String, supported: String },
    #[error("weights: missing tensor {name}")]
    MissingTensor { name: String },
    #[error("weights: tensor {name} has shape {actual:?}, expected {expected:?}")]
    TensorShape { name: String, expected: Vec<i32>, actual: Vec<i32> },
    #[error("weights: {0}")]
    Weights(String),
    #[error("input: {0}")]
    Input(String),
    /// NaN or infinite logits: the model computes garbage, so no token or score from it means
    /// anything.
    #[error(
        "the model produced NaN or infinite logits at position {position}: its weights are likely corrupt or \
         mis-converted, or its config yields NaN (check rms_norm_eps and the RoPE bases)"
    )]
    NonFiniteLogits { position: usize },
}

pub type Result<T> = std::result::Result<T, ModelError>;
