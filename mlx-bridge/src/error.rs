use thiserror::Error;

/// Errors from the bridge. MLX's C++ exceptions arrive as [`Error::Mlx`] with MLX's message.
#[derive(Debug, Error)]
pub enum Error {
    /// MLX threw while building or evaluating `op`.
    #[error("MLX {op}: {message}")]
    Mlx { op: &'static str, message: String },
    /// An argument was rejected before reaching MLX.
    #[error("{op}: {message}")]
    InvalidArgument { op: &'static str, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn invalid(op: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidArgument { op, message: message.into() }
    }
}

/// Attaches the op name to a caught C++ exception.
pub(crate) fn mlx<T>(op: &'static str, result: std::result::Result<T, cxx::Exception>) -> Result<T> {
    result.map_err(|e| Error::Mlx { op, message: e.what().to_string() })
}
