//! How long repacking takes at load, per format, for the largest tensors of the target models.
//!
//!   cargo run --release -p mlx-bridge --example block_pack_time

use std::time::Instant;

use mlx_bridge::block_quant::{BlockFormat, BlockMatrix};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for (format, rows, cols) in [
        (BlockFormat::Q8_0, 262144, 640),
        (BlockFormat::Q6K, 65536, 2048),
        (BlockFormat::Q4K, 65536, 2048),
        (BlockFormat::Q4_1, 49152, 576),
        (BlockFormat::Q5_0, 49152, 576),
    ] {
        let bytes = vec![0x11u8; rows * cols / format.block_len() * format.block_bytes()];
        let start = Instant::now();
        let m = BlockMatrix::from_gguf("pack", format, &bytes, rows, cols)?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{:>6} {rows}x{cols}: {:.3} s, {:.0} MB/s of stored bytes, packed {:.4}x the stored size",
            format.name(),
            secs,
            bytes.len() as f64 / secs / 1e6,
            m.nbytes() as f64 / bytes.len() as f64
        );
    }
    Ok(())
}
