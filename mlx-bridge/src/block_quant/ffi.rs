//! The cxx bridge of the block-quantized kernels (C++ in `src/cpp/block_quant/`). It reuses the
//! main bridge's opaque `Array` and `ArrayList` handles.

#[cxx::bridge(namespace = "mlxcel")]
pub(crate) mod bridge {
    /// One matrix as the C++ side sees it. `fmt` and `ptype` are the C++ enums' values
    /// (`bq::Fmt`, `bq::ParamType` in layout.h).
    #[derive(Debug, Clone)]
    struct BlockSpec {
        name: String,
        fmt: u8,
        ptype: u8,
        group: u16,
        rows: usize,
        cols: usize,
    }

    unsafe extern "C++" {
        include!("mlx-bridge/src/cpp/block_quant/bridge.h");

        type Array = crate::ffi::bridge::Array;
        type ArrayList = crate::ffi::bridge::ArrayList;

        fn bq_pack_gguf(spec: &BlockSpec, bytes: &[u8]) -> Result<UniquePtr<Array>>;
        fn bq_pack_affine(spec: &BlockSpec, w: &Array, scales: &Array, biases: &Array) -> Result<UniquePtr<Array>>;
        fn bq_matmul_many(
            specs: &[BlockSpec],
            packed: &ArrayList,
            x: &Array,
            precision: u8,
        ) -> Result<UniquePtr<ArrayList>>;
        fn bq_gather_rows(spec: &BlockSpec, packed: &Array, ids: &Array) -> Result<UniquePtr<Array>>;
        fn bq_dequantize(spec: &BlockSpec, packed: &Array) -> Result<UniquePtr<Array>>;

        fn bq_set_num_threads(n: usize) -> Result<()>;
        fn bq_num_threads() -> usize;
        fn bq_set_isa(isa: u8) -> Result<()>;
        fn bq_isa() -> u8;
        fn bq_isa_supported(isa: u8) -> bool;
    }
}
