//! Checkpoint tensor names to the decoder's own (`layers.{i}.self_attn.q_proj.weight`, ...):
//! transformers' and MLX's names, and llama.cpp's GGUF names (its `llama-arch.cpp` table).

/// HF and MLX names: the text model's prefix dropped (`model.`, `model.language_model.`,
/// `language_model.model.`), vision and audio towers and rotary caches dropped, MLX's
/// `switch_mlp` expert stacks and transformers 5's fused expert parameters named like the rest.
pub fn hf_name(name: &str) -> Option<String> {
    let local = crate::weights::text_model_name(name);
    let dropped = ["vision_tower.", "multi_modal_projector.", "vision_model.", "audio_tower.", "embed_vision."];
    if dropped.iter().any(|p| local.starts_with(p)) || local.contains("rotary_emb.") {
        return None;
    }
    let local = local.replace(".mlp.switch_mlp.", ".mlp.experts.");
    if local.ends_with(".mlp.experts.gate_up_proj") || local.ends_with(".mlp.experts.down_proj") {
        return Some(format!("{local}.weight"));
    }
    Some(local)
}

/// llama.cpp's names. `gemma`: `ffn_norm` is the pre-feed-forward norm of a sandwich-normed
/// block; otherwise it is the one after attention. RoPE tensors (`rope_freqs`, `rope_factors_*`)
/// are read with the config, not loaded as weights.
pub fn gguf_name(name: &str, gemma: bool) -> Option<String> {
    match name {
        "token_embd.weight" => return Some("embed_tokens.weight".into()),
        "output_norm.weight" => return Some("norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let (index, tensor) = name.strip_prefix("blk.")?.split_once('.')?;
    let (module, suffix) = tensor.rsplit_once('.')?;
    if !matches!(suffix, "weight" | "bias") {
        return None;
    }
    let module = match module {
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_qkv" => "self_attn.qkv_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "attn_norm" => "input_layernorm",
        "ffn_norm" if gemma => "pre_feedforward_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "post_attention_norm" => "post_attention_layernorm",
        "post_ffw_norm" => "post_feedforward_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        "ffn_gate_inp" => "mlp.gate",
        "ffn_gate_exps" => "mlp.experts.gate_proj",
        "ffn_up_exps" => "mlp.experts.up_proj",
        "ffn_down_exps" => "mlp.experts.down_proj",
        _ => return None,
    };
    Some(format!("layers.{index}.{module}.{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layout_maps_to_one_name() {
        for name in [
            "model.layers.1.mlp.up_proj.weight",
            "model.language_model.layers.1.mlp.up_proj.weight",
            "language_model.model.layers.1.mlp.up_proj.weight",
        ] {
            assert_eq!(hf_name(name).as_deref(), Some("layers.1.mlp.up_proj.weight"));
        }
        assert_eq!(hf_name("lm_head.weight").as_deref(), Some("lm_head.weight"));
        assert_eq!(hf_name("model.vision_tower.x.weight"), None);
        assert_eq!(hf_name("model.layers.0.self_attn.rotary_emb.inv_freq"), None);
        assert_eq!(
            hf_name("model.layers.2.mlp.switch_mlp.gate_proj.scales").as_deref(),
            Some("layers.2.mlp.experts.gate_proj.scales")
        );
        assert_eq!(
            hf_name("model.layers.2.mlp.experts.gate_up_proj").as_deref(),
            Some("layers.2.mlp.experts.gate_up_proj.weight")
        );
    }

    #[test]
    fn gguf_names_follow_llama_cpp() {
        assert_eq!(gguf_name("blk.3.attn_q.weight", false).as_deref(), Some("layers.3.self_attn.q_proj.weight"));
        assert_eq!(gguf_name("blk.3.attn_k.bias", false).as_deref(), Some("layers.3.self_attn.k_proj.bias"));
        assert_eq!(
            gguf_name("blk.0.ffn_norm.weight", false).as_deref(),
            Some("layers.0.post_attention_layernorm.weight")
        );
        assert_eq!(
            gguf_name("blk.0.ffn_norm.weight", true).as_deref(),
            Some("layers.0.pre_feedforward_layernorm.weight")
        );
        assert_eq!(
            gguf_name("blk.2.post_ffw_norm.weight", true).as_deref(),
            Some("layers.2.post_feedforward_layernorm.weight")
        );
        assert_eq!(
            gguf_name("blk.1.ffn_down_exps.weight", false).as_deref(),
            Some("layers.1.mlp.experts.down_proj.weight")
        );
        assert_eq!(gguf_name("token_embd.weight", false).as_deref(), Some("embed_tokens.weight"));
        assert_eq!(gguf_name("rope_freqs.weight", false), None);
        assert_eq!(gguf_name("blk.0.unknown.weight", false), None);
    }
}
