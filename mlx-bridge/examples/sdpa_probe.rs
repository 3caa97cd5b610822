//! Which single-query attention calls MLX runs as its fused kernel on this device, and which it
//! decomposes into matmul + softmax: prints the operations each variant's graph would run.
//!
//!   cargo run --release -p mlx-bridge --example sdpa_probe

use mlx_bridge::fast::{self, AttentionMask};
use mlx_bridge::{Array, Dtype, pending_graph_ops, random};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = random::key(0)?;
    for (dtype, head_dim, kv_heads, keys, sliced, scale) in [
        (Dtype::BF16, 256, 2, 512, false, 1.0f32),
        (Dtype::BF16, 256, 2, 512, true, 1.0),
        (Dtype::BF16, 128, 2, 512, false, 1.0),
        (Dtype::BF16, 256, 8, 512, false, 1.0),
        (Dtype::BF16, 256, 2, 512, false, 0.0625),
        (Dtype::F32, 256, 2, 512, false, 1.0),
        (Dtype::BF16, 64, 3, 512, false, 0.125),
    ] {
        let q = random::normal(&[1, 8, 1, head_dim], dtype, 0.0, 1.0, Some(&key))?;
        let capacity = if sliced { keys + 256 } else { keys };
        let k = random::normal(&[1, kv_heads, capacity, head_dim], dtype, 0.0, 1.0, Some(&key))?;
        let v = random::normal(&[1, kv_heads, capacity, head_dim], dtype, 0.0, 1.0, Some(&key))?;
        mlx_bridge::eval(&[&q, &k, &v])?;
        let (k, v) = if sliced { (k.slice_axis(2, 0, keys)?, v.slice_axis(2, 0, keys)?) } else { (k, v) };
        let out = fast::scaled_dot_product_attention(&q, &k, &v, scale, AttentionMask::None)?;
        let ops: Vec<String> = pending_graph_ops(&[&out]).iter().map(|(n, c)| format!("{n}x{c}")).collect();
        println!(
            "{dtype} D={head_dim} kv_heads={kv_heads} keys={keys} sliced={sliced} scale={scale}: {}",
            ops.join(" ")
        );
        let _ = Array::scalar(0.0f32);
    }
    Ok(())
}
