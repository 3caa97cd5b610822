//! mlxcel: LLM inference on MLX's C++ API, with code paths chosen per hardware class.
//!
//! The engine side: loading a checkpoint folder into the right architecture under an
//! [`ExecutionPlan`](mlxcel_models::hardware::ExecutionPlan), tokenization and chat templates,
//! sampling and the generation loop, and the outputs the CLI writes.

pub mod api;
pub mod bench;
pub mod chat_template;
pub mod generate;
pub mod hub;
pub mod model;
pub mod npy;
pub mod pipeline;
pub mod registry;
pub mod sampling;
pub mod server;
pub mod text_events;
pub mod tokenizer;

pub use api::{Event, GenerateOptions, Generation, LoadOptions, Model};
pub use chat_template::Message;
