//! mlxcel: LLM inference on MLX's C++ API, with code paths chosen per hardware class.
//!
//! The engine side: loading a checkpoint folder into the right architecture under an
//! [`ExecutionPlan`](mlxcel_models::hardware::ExecutionPlan), and the outputs the CLI writes.

pub mod model;
pub mod npy;
