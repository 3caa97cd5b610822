use mlx_bridge::Array;
use mlx_bridge::block_quant::BlockMatrix;
use mlx_bridge::quant::Quantized;

use crate::error::Result;

/// A `[vocab, dim]` table, dense or quantized, optionally also used as the (tied) output head.
#[derive(Debug, Clone)]
pub enum Embedding {
    Dense {
        table: Array,
        /// `table^T` for the head: an evaluated view (no copy), or a contiguous copy when the plan
        /// pre-transposes the LM head.
        head_t: Array,
    },
    Quantized(Quantized),
    /// Kept in its block format: lookups dequantize only the rows they read, and the tied head
    /// runs on mlxcel's CPU kernels.
    Block(BlockMatrix),
}

impl Embedding {
    /// A dense table whose head reads an evaluated transposed view.
    pub fn dense(table: Array) -> Result<Embedding> {
        let head_t = table.t()?;
        mlx_bridge::eval(&[&table, &head_t])?;
        Ok(Embedding::Dense { table, head_t })
    }

    /// Rows for `ids` (any shape); quantized tables dequantize only the gathered rows.
    pub fn lookup(&self, ids: &Array) -> Result<Array> {
        Ok(match self {
            Embedding::Dense { table, .. } => table.take(ids, 0)?,
            Embedding::Quantized(q) => Quantized {
                weight: q.weight.take(ids, 0)?,
                scales: q.scales.take(ids, 0)?,
                biases: q.biases.as_ref().map(|b| b.take(ids, 0)).transpose()?,
                spec: q.spec,
            }
            .dequantize()?,
            Embedding::Block(matrix) => matrix.gather_rows(ids)?,
        })
    }

    /// `x @ table^T`: the tied LM head.
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        Ok(match self {
            Embedding::Dense { head_t, .. } => x.matmul(head_t)?,
            Embedding::Quantized(q) => q.matmul(x, true)?,
            Embedding::Block(matrix) => matrix.matmul_t(x)?,
        })
    }

    /// Keeps a contiguous transposed copy for the head (dense tables only).
    pub fn with_pretransposed_head(self) -> Result<Embedding> {
        Ok(match self {
            Embedding::Dense { table, .. } => {
                let head_t = table.t()?.contiguous()?;
                head_t.eval()?;
                Embedding::Dense { table, head_t }
            }
            other => other,
        })
    }

    /// The scalar dtype rows come out in (the scales' dtype when quantized).
    pub fn dtype(&self) -> mlx_bridge::Dtype {
        match self {
            Embedding::Dense { table, .. } => table.dtype(),
            Embedding::Quantized(q) => q.scales.dtype(),
            Embedding::Block(_) => mlx_bridge::Dtype::F32,
        }
    }
}
