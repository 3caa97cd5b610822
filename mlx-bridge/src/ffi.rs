//! The raw cxx bridge. Every function that can reach an MLX exception is declared `-> Result<..>`:
//! cxx catches the C++ exception and hands back its message instead of aborting the process.
//! Optional array arguments travel as nullable raw pointers (cxx has no `Option<&T>`); the safe
//! wrappers in this crate are the only callers.

use crate::compile::{TracedFn, call_traced};

#[allow(clippy::too_many_arguments)]
#[cxx::bridge(namespace = "mlxcel")]
pub(crate) mod bridge {
    #[derive(Debug, Hash)]
    #[repr(u8)]
    enum Dtype {
        Bool,
        U8,
        U16,
        U32,
        U64,
        I8,
        I16,
        I32,
        I64,
        F16,
        F32,
        F64,
        BF16,
        C64,
    }

    #[derive(Debug, Hash)]
    #[repr(u8)]
    enum DeviceKind {
        Cpu,
        Gpu,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    struct Device {
        kind: DeviceKind,
        index: i32,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    struct Stream {
        index: i32,
        device: Device,
    }

    #[repr(u8)]
    enum UnaryOp {
        Neg,
        Abs,
        Sign,
        Exp,
        Log,
        Log1p,
        Sqrt,
        Rsqrt,
        Square,
        Reciprocal,
        Tanh,
        Sigmoid,
        Erf,
        ErfInv,
        Sin,
        Cos,
        Floor,
        Ceil,
        Round,
        LogicalNot,
        IsNan,
        IsInf,
        StopGradient,
    }

    #[repr(u8)]
    enum BinaryOp {
        Add,
        Subtract,
        Multiply,
        Divide,
        FloorDivide,
        Remainder,
        Power,
        Maximum,
        Minimum,
        Equal,
        NotEqual,
        Less,
        LessEqual,
        Greater,
        GreaterEqual,
        LogicalAnd,
        LogicalOr,
    }

    #[repr(u8)]
    enum ReduceOp {
        Sum,
        Mean,
        Max,
        Min,
        Prod,
        All,
        Any,
        LogSumExp,
    }

    #[derive(Debug)]
    #[repr(u8)]
    enum FusedBlock {
        /// `gelu_tanh(x)`
        GeluTanh,
        /// `gelu_tanh(gate) * up`
        GeluTanhGate,
        /// `tanh(x / cap) * cap` with `cap` a scalar array
        Softcap,
        /// `gelu_tanh(relu(gate - (mean(gate) + std(gate) * k))) * up` over the last axis: the
        /// Gaussian top-k gated activation of Gemma 3n's sparse MLP layers; `k` a scalar array.
        GaussianTopkGeluGate,
        /// `down(gelu_tanh(gate(x)) * up(x))`, each weight given as `W^T` (`[in, out]`, or
        /// `[1, in, out]` for one sequence `[1, L, in]`): inputs `x, gate_wt, up_wt, down_wt`.
        GeluGatedMlp,
        /// The same with the Gaussian top-k cut on the gate: inputs `x, gate_wt, up_wt, down_wt, k`.
        GeluGatedMlpSparse,
        /// `silu(gate) * up`
        SiluGate,
        /// `down(silu(gate(x)) * up(x))`, weights as for `GeluGatedMlp`: inputs `x, gate_wt, up_wt, down_wt`.
        SiluGatedMlp,
    }

    extern "Rust" {
        /// A Rust function of arrays that `mx::compile` traces.
        type TracedFn<'a>;
        fn call_traced(f: &TracedFn<'_>, inputs: &ArrayList) -> Result<UniquePtr<ArrayList>>;
    }

    unsafe extern "C++" {
        include!("mlx-bridge/src/cpp/shim.h");

        type Array;
        type ArrayList;
        type TensorMap;

        // Arrays and host data.
        fn array_clone(a: &Array) -> UniquePtr<Array>;
        fn array_from_bytes(data: &[u8], shape: &[i32], dtype: Dtype) -> Result<UniquePtr<Array>>;
        fn array_full(shape: &[i32], value: f64, dtype: Dtype) -> Result<UniquePtr<Array>>;
        fn array_arange(start: f64, stop: f64, step: f64, dtype: Dtype) -> Result<UniquePtr<Array>>;
        fn array_shape(a: &Array) -> Vec<i32>;
        fn array_dtype(a: &Array) -> Dtype;
        fn array_size(a: &Array) -> usize;
        fn array_nbytes(a: &Array) -> usize;
        fn array_read_into(a: &Array, out: &mut [u8]) -> Result<()>;
        fn array_describe(a: &Array) -> Result<String>;

        fn array_list_new() -> UniquePtr<ArrayList>;
        fn array_list_push(list: Pin<&mut ArrayList>, a: &Array);
        fn array_list_len(list: &ArrayList) -> usize;
        fn array_list_get(list: &ArrayList, index: usize) -> Result<UniquePtr<Array>>;

        // Evaluation.
        fn eval(list: &ArrayList) -> Result<()>;
        fn async_eval(list: &ArrayList) -> Result<()>;
        fn pending_graph_nodes(list: &ArrayList) -> usize;
        fn pending_graph_ops(list: &ArrayList) -> String;
        fn synchronize(stream: &Stream) -> Result<()>;
        fn synchronize_default() -> Result<()>;

        // Element-wise, reductions, indexing, shapes.
        fn unary(op: UnaryOp, a: &Array) -> Result<UniquePtr<Array>>;
        fn binary(op: BinaryOp, a: &Array, b: &Array) -> Result<UniquePtr<Array>>;
        fn where_select(cond: &Array, x: &Array, y: &Array) -> Result<UniquePtr<Array>>;
        unsafe fn clip(a: &Array, lo: *const Array, hi: *const Array) -> Result<UniquePtr<Array>>;
        fn astype(a: &Array, dtype: Dtype) -> Result<UniquePtr<Array>>;
        fn reduce(op: ReduceOp, a: &Array, axes: &[i32], keepdims: bool) -> Result<UniquePtr<Array>>;
        fn variance(a: &Array, axes: &[i32], keepdims: bool, ddof: i32, std: bool) -> Result<UniquePtr<Array>>;
        fn softmax(a: &Array, axes: &[i32], precise: bool) -> Result<UniquePtr<Array>>;
        fn argmax(a: &Array, axis: i32, keepdims: bool) -> Result<UniquePtr<Array>>;
        fn argmin(a: &Array, axis: i32, keepdims: bool) -> Result<UniquePtr<Array>>;
        fn argpartition(a: &Array, kth: i32, axis: i32) -> Result<UniquePtr<Array>>;
        fn sort(a: &Array, axis: i32) -> Result<UniquePtr<Array>>;
        fn argsort(a: &Array, axis: i32) -> Result<UniquePtr<Array>>;
        fn topk(a: &Array, k: i32, axis: i32) -> Result<UniquePtr<Array>>;
        fn cumsum(a: &Array, axis: i32, reverse: bool, inclusive: bool) -> Result<UniquePtr<Array>>;
        fn reshape(a: &Array, shape: &[i32]) -> Result<UniquePtr<Array>>;
        fn transpose(a: &Array, axes: &[i32]) -> Result<UniquePtr<Array>>;
        fn swapaxes(a: &Array, axis1: i32, axis2: i32) -> Result<UniquePtr<Array>>;
        fn expand_dims(a: &Array, axes: &[i32]) -> Result<UniquePtr<Array>>;
        fn squeeze(a: &Array, axes: &[i32]) -> Result<UniquePtr<Array>>;
        fn broadcast_to(a: &Array, shape: &[i32]) -> Result<UniquePtr<Array>>;
        fn contiguous(a: &Array) -> Result<UniquePtr<Array>>;
        fn slice(a: &Array, start: &[i32], stop: &[i32], strides: &[i32]) -> Result<UniquePtr<Array>>;
        fn slice_dynamic(a: &Array, start: &Array, axes: &[i32], sizes: &[i32]) -> Result<UniquePtr<Array>>;
        fn slice_update(
            src: &Array,
            update: &Array,
            start: &[i32],
            stop: &[i32],
            strides: &[i32],
        ) -> Result<UniquePtr<Array>>;
        fn slice_update_dynamic(src: &Array, update: &Array, start: &Array, axes: &[i32]) -> Result<UniquePtr<Array>>;
        fn concatenate(list: &ArrayList, axis: i32) -> Result<UniquePtr<Array>>;
        fn stack(list: &ArrayList, axis: i32) -> Result<UniquePtr<Array>>;
        fn split_sections(a: &Array, sections: i32, axis: i32) -> Result<UniquePtr<ArrayList>>;
        fn split_at(a: &Array, indices: &[i32], axis: i32) -> Result<UniquePtr<ArrayList>>;
        fn take(a: &Array, indices: &Array, axis: i32) -> Result<UniquePtr<Array>>;
        fn take_along_axis(a: &Array, indices: &Array, axis: i32) -> Result<UniquePtr<Array>>;
        fn put_along_axis(a: &Array, indices: &Array, values: &Array, axis: i32) -> Result<UniquePtr<Array>>;
        fn matmul(a: &Array, b: &Array) -> Result<UniquePtr<Array>>;
        fn addmm(c: &Array, a: &Array, b: &Array, alpha: f32, beta: f32) -> Result<UniquePtr<Array>>;

        // Random numbers; `key` may be null (MLX's global generator).
        fn random_key(seed: u64) -> Result<UniquePtr<Array>>;
        fn random_seed(seed: u64);
        fn random_split(key: &Array, num: i32) -> Result<UniquePtr<Array>>;
        unsafe fn random_uniform(
            low: f64,
            high: f64,
            shape: &[i32],
            dtype: Dtype,
            key: *const Array,
        ) -> Result<UniquePtr<Array>>;
        unsafe fn random_normal(
            shape: &[i32],
            dtype: Dtype,
            loc: f32,
            scale: f32,
            key: *const Array,
        ) -> Result<UniquePtr<Array>>;
        unsafe fn random_randint(
            low: i64,
            high: i64,
            shape: &[i32],
            dtype: Dtype,
            key: *const Array,
        ) -> Result<UniquePtr<Array>>;
        unsafe fn random_categorical(logits: &Array, axis: i32, key: *const Array) -> Result<UniquePtr<Array>>;

        // mlx::core::fast.
        unsafe fn rms_norm(x: &Array, weight: *const Array, eps: f32) -> Result<UniquePtr<Array>>;
        unsafe fn layer_norm(x: &Array, weight: *const Array, bias: *const Array, eps: f32)
        -> Result<UniquePtr<Array>>;
        unsafe fn rope(
            x: &Array,
            dims: i32,
            traditional: bool,
            base: f32,
            scale: f32,
            offset: i32,
            freqs: *const Array,
        ) -> Result<UniquePtr<Array>>;
        unsafe fn rope_dynamic(
            x: &Array,
            dims: i32,
            traditional: bool,
            base: f32,
            scale: f32,
            offset: &Array,
            freqs: *const Array,
        ) -> Result<UniquePtr<Array>>;
        unsafe fn scaled_dot_product_attention(
            q: &Array,
            k: &Array,
            v: &Array,
            scale: f32,
            mask_mode: &str,
            mask: *const Array,
        ) -> Result<UniquePtr<Array>>;

        // mlxcel's fused kernels that have no MLX op to fall back to: an empty list when the
        // call is not one a kernel takes (the caller then runs the composite).
        fn routed_stream_mix(
            streams: &Array,
            norm_weight: &Array,
            eps: f32,
            divisor: f32,
            router: &Array,
            coefs: &Array,
            active: i32,
        ) -> Result<UniquePtr<ArrayList>>;
        fn routed_stream_correction(
            predictions: &Array,
            activated: &Array,
            norm_weight: &Array,
            eps: f32,
            divisor: f32,
            router: &Array,
            coefs: &Array,
            active: i32,
        ) -> Result<UniquePtr<ArrayList>>;

        fn rms_norm_add(x: &Array, weight: &Array, eps: f32, residual: &Array) -> Result<UniquePtr<ArrayList>>;
        #[allow(clippy::too_many_arguments)]
        fn rms_norm_add_then_norm(
            x: &Array,
            weight: &Array,
            eps: f32,
            residual: &Array,
            extra: &Array,
            scale: f32,
            next_weight: &Array,
            next_eps: f32,
        ) -> Result<UniquePtr<ArrayList>>;

        #[allow(clippy::too_many_arguments)]
        unsafe fn rms_norm_rope(
            x: &Array,
            weight: &Array,
            eps: f32,
            dims: i32,
            traditional: bool,
            base: f32,
            scale: f32,
            offset: i32,
            offsets: *const Array,
            freqs: *const Array,
        ) -> Result<UniquePtr<ArrayList>>;

        // Quantization (affine and MLX's other modes), group 32/64/128, 2..8 bits.
        fn quantize(w: &Array, group_size: i32, bits: i32, mode: &str) -> Result<UniquePtr<ArrayList>>;
        unsafe fn dequantize(
            w: &Array,
            scales: &Array,
            biases: *const Array,
            group_size: i32,
            bits: i32,
            mode: &str,
        ) -> Result<UniquePtr<Array>>;
        unsafe fn quantized_matmul(
            x: &Array,
            w: &Array,
            scales: &Array,
            biases: *const Array,
            transpose: bool,
            group_size: i32,
            bits: i32,
            mode: &str,
        ) -> Result<UniquePtr<Array>>;

        // `f(x, u) @ W^T` for one row in one kernel (mlxcel's CUDA gemv); empty where it does not apply.
        #[allow(clippy::too_many_arguments)]
        unsafe fn quantized_matmul_of(
            input: i32,
            x: &Array,
            u: &Array,
            w: &Array,
            scales: &Array,
            biases: *const Array,
            group_size: i32,
            bits: i32,
            mode: &str,
        ) -> Result<UniquePtr<ArrayList>>;

        // Matmuls over gathered matrices (mixture-of-experts): `rhs_indices` picks `b`'s matrices.
        unsafe fn gather_mm(
            a: &Array,
            b: &Array,
            lhs_indices: *const Array,
            rhs_indices: *const Array,
            sorted_indices: bool,
        ) -> Result<UniquePtr<Array>>;
        unsafe fn gather_qmm(
            x: &Array,
            w: &Array,
            scales: &Array,
            biases: *const Array,
            lhs_indices: *const Array,
            rhs_indices: *const Array,
            transpose: bool,
            group_size: i32,
            bits: i32,
            mode: &str,
            sorted_indices: bool,
        ) -> Result<UniquePtr<Array>>;

        // Blocks compiled once with mx::compile.
        fn fused(block: FusedBlock, inputs: &ArrayList) -> Result<UniquePtr<ArrayList>>;
        fn set_compile_enabled(enabled: bool);
        // A Rust function compiled with mx::compile under `id` (traced when first called with
        // these input shapes), and the forgetting of its compiled graphs.
        fn compiled_call(f: &TracedFn<'_>, id: u64, inputs: &ArrayList) -> Result<UniquePtr<ArrayList>>;
        fn compiled_forget(id: u64);
        fn set_cpu_kernels(enabled: bool);
        fn cpu_kernels() -> bool;
        fn set_cuda_kernels(enabled: bool);
        fn set_cuda_gemv_prefetch(rows: i32, l2_ahead: i32);
        fn set_cuda_kernel_code_dir(dir: &str);
        fn cuda_kernels() -> bool;

        // Safetensors (lazy: a tensor is read when first evaluated).
        fn load_safetensors(path: &str) -> Result<UniquePtr<TensorMap>>;
        fn tensor_map_keys(map: &TensorMap) -> Vec<String>;
        fn tensor_map_get(map: &TensorMap, name: &str) -> Result<UniquePtr<Array>>;
        fn tensor_map_metadata(map: &TensorMap) -> Vec<String>;
        fn save_safetensors(path: &str, names: &[String], arrays: &ArrayList, metadata: &[String]) -> Result<()>;

        // Memory.
        fn get_active_memory() -> usize;
        fn get_peak_memory() -> usize;
        fn get_cache_memory() -> usize;
        fn reset_peak_memory();
        fn get_memory_limit() -> usize;
        fn set_memory_limit(limit: usize) -> usize;
        fn set_cache_limit(limit: usize) -> usize;
        fn set_wired_limit(limit: usize) -> Result<usize>;
        fn clear_cache();

        // Devices, streams, versions.
        fn mlx_version() -> String;
        fn default_device() -> Device;
        fn set_default_device(device: &Device) -> Result<()>;
        fn device_available(device: &Device) -> bool;
        fn device_count(kind: DeviceKind) -> i32;
        fn device_info(device: &Device) -> Result<Vec<String>>;
        fn default_stream(device: &Device) -> Result<Stream>;
        fn new_stream(device: &Device) -> Result<Stream>;
        fn set_default_stream(stream: &Stream) -> Result<()>;
        fn metal_nax_available() -> bool;
    }
}
