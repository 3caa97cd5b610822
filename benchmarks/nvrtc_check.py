#!/usr/bin/env python3
"""Compiles mlx-bridge's CUDA kernel sources (src/cpp/cuda_fast.cc, cuda_gemv.cc) with NVRTC for sm_90 on a
machine without a GPU: each device function instantiated with the types and template arguments
MLX's generated kernels give it. A compile check only (it runs nothing); the kernels' results are
checked on the GPU by `cuda_kernels`. Exits non-zero when a source does not compile.

    python3 benchmarks/nvrtc_check.py [SOURCE.cc ...]

NVRTC and the CUDA headers come from PyPI (benchmarks/nvrtc.py).
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import nvrtc  # noqa: E402

paths = sys.argv[1:] or ["mlx-bridge/src/cpp/cuda_fast.cc", "mlx-bridge/src/cpp/cuda_gemv.cc"]
strings = nvrtc.kernel_strings("".join(open(path).read() for path in paths))
prelude = nvrtc.PRELUDE


def compile(name, code):  # noqa: A001 (NVRTC's word)
    ok, log, _ = nvrtc.compile(name, code)
    print(f"{name}: {'ok' if ok else 'FAILED'}")
    if not ok or log.strip():
        print(log[:4000])
    return ok


ok = True
H = strings["kRoutedHeader"]
for T in ["__nv_bfloat16", "float"]:
    ok &= compile(f"norm_rope_{T}", prelude + H + strings["kNormRope"] + f"""
__global__ void k(const {T}* x, const {T}* w, const int* offset, {T}* y, Shape x_shape, Shape offset_shape) {{
  mlxcel_rms_norm_rope<{T}, 4>(x, w, offset, y, x_shape[3], x_shape[1], offset_shape[0], 1e-6f, 13.2f, 1.0f);
}}""")
    ok &= compile(f"residual_{T}", prelude + H + strings["kResidualNorm"] + f"""
__global__ void k(const {T}* x, const {T}* w, const {T}* a, const {T}* b, const {T}* w2, {T}* y, {T}* y2) {{
  mlxcel_residual_rms_norm<{T}, false, false, 8>(x, w, a, nullptr, nullptr, y, nullptr, 2048, 1e-6f, 1.0f, 0.0f);
  mlxcel_residual_rms_norm<{T}, true, true, 8>(x, w, a, b, w2, y, y2, 2048, 1e-6f, 0.7f, 1e-6f);
}}""")
    ok &= compile(f"routed_{T}", prelude + H + f"""
template <typename T, int N, int ACTIVE, int EPS_BITS, int DIVISOR_BITS, typename ShapeT>
__device__ void mix(const T* x, const T* norm_weight, const T* router, const float* coefs, T* y, const ShapeT& x_shape, int x_ndim) {{
{strings["kRoutedMix"]}
}}
template <typename T, int N, int ACTIVE, int EPS_BITS, int DIVISOR_BITS, typename ShapeT>
__device__ void corr(const T* p, const T* h, const T* norm_weight, const T* router, const float* coefs, T* y, const ShapeT& h_shape, int h_ndim) {{
{strings["kRoutedCorrection"]}
}}
__global__ void k(const {T}* x, const {T}* nw, const {T}* r, const float* c, {T}* y, Shape s) {{
  mix<{T}, 4, 0, 0x358637bd, 0x3f800000>(x, nw, r, c, y, s, 3);
  corr<{T}, 4, 0, 0x358637bd, 0x3f800000>(x, x, nw, r, c, y, s, 3);
}}""")
sig = "template <typename T, int D, int R, int PART, int SCALE_BITS, typename ShapeT, typename StridesT>\n__device__ __forceinline__ void "
layout = "const ShapeT& k_shape, const StridesT& q_strides, const StridesT& k_strides, const StridesT& v_strides) {"
attention = (strings["kAttentionHeader"] + sig + "attention(const T* q, const T* k, const T* v, T* out, " + layout
             + strings["kAttentionPartial"] + strings["kAttentionWriteOut"] + "}\n" + sig
             + "attention_split(const T* q, const T* k, const T* v, float* part_acc, float* part_ml, " + layout
             + strings["kAttentionPartial"] + strings["kAttentionWriteParts"] + "}\n"
             + "template <typename T, int D, typename ShapeT>\n__device__ __forceinline__ void combine(const float* part_acc, "
             + "const float* part_ml, T* out, const ShapeT& part_acc_shape) {" + strings["kAttentionCombine"] + "}\n")
ok &= compile("attention", prelude + "struct Strides { long long d[8]; __device__ long long operator[](int i) const { return d[i]; } };\n"
              + attention + """
__global__ void k(const __nv_bfloat16* q, const __nv_bfloat16* kk, const __nv_bfloat16* v, __nv_bfloat16* out,
                  float* pa, float* pm, Shape ks, Strides qs, Strides kss, Strides vs) {
  attention<__nv_bfloat16, 256, 4, 128, 0x3f800000>(q, kk, v, out, ks, qs, kss, vs);
  attention_split<__nv_bfloat16, 128, 2, 128, 0x3f800000>(q, kk, v, pa, pm, ks, qs, kss, vs);
  combine<__nv_bfloat16, 256>(pa, pm, out, ks);
}""")
for name, params, extra in [("kGemv", "", ""), ("kGemvPrefetch", "int L2, ", "4, ")]:
    for T in ["__nv_bfloat16", "__half"]:
        ok &= compile(f"{name}_{T}", prelude + strings["kGemvInput"] + f"""
template <typename T, int BITS, int G, int IN, {params}int R, typename ShapeT>
__device__ __forceinline__ void gemv(const T* x, const T* u, const uint32_t* w,
    const T* scales, const T* biases, T* y, const ShapeT& x_shape, int x_ndim, const ShapeT& w_shape) {{
{strings[name]}
}}
__global__ void k(const {T}* x, const {T}* u, const uint32_t* w, const {T}* s, const {T}* b, {T}* y, Shape xs, Shape ws) {{
  gemv<{T}, 4, 64, 0, {extra}8>(x, nullptr, w, s, b, y, xs, 3, ws);
  gemv<{T}, 8, 32, 1, {extra}2>(x, u, w, s, b, y, xs, 3, ws);
  gemv<{T}, 4, 128, 2, {extra}4>(x, u, w, s, b, y, xs, 3, ws);
  gemv<{T}, 8, 64, 3, {extra}8>(x, u, w, s, b, y, xs, 3, ws);
}}""")
sys.exit(0 if ok else 1)
