#!/usr/bin/env python3
"""Compiles mlx-bridge's CUDA kernel sources (src/cpp/cuda_fast.cc, cuda_gemv.cc) with NVRTC for sm_90 on a
machine without a GPU: each device function instantiated with the types and template arguments
MLX's generated kernels give it. A compile check only (it runs nothing); the kernels' results are
checked on the GPU by `cuda_kernels`. Exits non-zero when a source does not compile.

    python3 benchmarks/nvrtc_check.py [SOURCE.cc ...]

NVRTC and the CUDA headers come from PyPI (nvidia-cuda-nvrtc, -runtime, -cccl), fetched once into
~/.cache/mlxcel/nvrtc (or $MLXCEL_NVRTC_DIR).
"""
import ctypes
import os
import pathlib
import re
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(os.environ.get("MLXCEL_NVRTC_DIR", pathlib.Path.home() / ".cache/mlxcel/nvrtc"))
PACKAGES = ["nvidia-cuda-nvrtc", "nvidia-cuda-runtime", "nvidia-cuda-cccl"]


def cuda_dir():
    lib = ROOT / "x/nvidia/cu13/lib/libnvrtc.so.13"
    if not lib.exists():
        ROOT.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *PACKAGES, "-d", str(ROOT)], check=True)
        for wheel in ROOT.glob("*.whl"):
            zipfile.ZipFile(wheel).extractall(ROOT / "x")
    return ROOT / "x/nvidia/cu13"


paths = sys.argv[1:] or ["mlx-bridge/src/cpp/cuda_fast.cc", "mlx-bridge/src/cpp/cuda_gemv.cc"]
src = "".join(open(path).read() for path in paths)
strings = dict(re.findall(r'constexpr const char\* (k\w+) = R"\((.*?)\)";', src, re.S))
cuda = cuda_dir()
lib = ctypes.CDLL(str(cuda / "lib/libnvrtc.so.13"))
inc = str(cuda / "include")
prelude = """
#include <cuda_bf16.h>
#include <cuda_fp16.h>
typedef unsigned int uint32_t; typedef long long int64_t;
struct Shape { int d[8]; __device__ int operator[](int i) const { return d[i]; } };
"""
def compile(name, code):  # noqa: A001 (NVRTC's word)
    prog = ctypes.c_void_p()
    r = lib.nvrtcCreateProgram(ctypes.byref(prog), code.encode(), name.encode(), 0, None, None)
    assert r == 0, r
    opts = [b"--gpu-architecture=compute_90", b"-std=c++17", ("-I" + inc).encode(), ("-I" + inc + "/cccl").encode()]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    r = lib.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    print(f"{name}: {'ok' if r == 0 else 'FAILED'}")
    if r != 0 or log.value.strip():
        print(log.value.decode()[:4000])
    return r == 0
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
for T in ["__nv_bfloat16"]:
    ok &= compile(f"gemv_{T}", prelude + strings["kGemvInput"] + f"""
template <typename T, int BITS, int G, int IN, typename ShapeT>
__device__ __forceinline__ void mlxcel_affine_gemv(const T* x, const T* u, const uint32_t* w,
    const T* scales, const T* biases, T* y, const ShapeT& x_shape, int x_ndim, const ShapeT& w_shape) {{
{strings["kGemv"]}
}}
__global__ void k(const {T}* x, const {T}* u, const uint32_t* w, const {T}* s, const {T}* b, {T}* y, Shape xs, Shape ws) {{
  mlxcel_affine_gemv<{T}, 4, 64, 0>(x, nullptr, w, s, b, y, xs, 3, ws);
  mlxcel_affine_gemv<{T}, 8, 32, 1>(x, u, w, s, b, y, xs, 3, ws);
  mlxcel_affine_gemv<{T}, 4, 128, 2>(x, u, w, s, b, y, xs, 3, ws);
  mlxcel_affine_gemv<{T}, 4, 64, 3>(x, u, w, s, b, y, xs, 3, ws);
}}""")
ok &= compile("gemv_rows", prelude + strings["kGemvInput"] + f"""
template <typename T, int BITS, int G, int IN, int R, bool FOLD, typename ShapeT>
__device__ __forceinline__ void mlxcel_affine_gemv_rows(const T* x, const T* u, const uint32_t* w,
    const T* scales, const T* biases, T* y, const ShapeT& x_shape, int x_ndim, const ShapeT& w_shape) {{
{strings["kGemvRows"]}
}}
__global__ void k(const __nv_bfloat16* x, const __nv_bfloat16* u, const uint32_t* w, const __nv_bfloat16* s,
                  const __nv_bfloat16* b, __nv_bfloat16* y, Shape xs, Shape ws) {{
  mlxcel_affine_gemv_rows<__nv_bfloat16, 4, 64, 0, 4, false>(x, nullptr, w, s, b, y, xs, 3, ws);
  mlxcel_affine_gemv_rows<__nv_bfloat16, 4, 64, 0, 8, true>(x, nullptr, w, s, b, y, xs, 3, ws);
  mlxcel_affine_gemv_rows<__nv_bfloat16, 8, 32, 1, 2, true>(x, u, w, s, b, y, xs, 3, ws);
  mlxcel_affine_gemv_rows<__nv_bfloat16, 8, 64, 0, 1, false>(x, nullptr, w, s, b, y, xs, 3, ws);
  mlxcel_affine_gemv_rows<__nv_bfloat16, 4, 128, 2, 4, false>(x, u, w, s, b, y, xs, 3, ws);
}}""")
for T in ["__nv_bfloat16", "__half"]:
    ok &= compile(f"gemv_mma_{T}", prelude + strings["kGemvInput"] + strings["kMmaHelpers"] + f"""
template <typename T, int G, int IN, int XCAP, typename ShapeT>
__device__ __forceinline__ void mlxcel_affine_gemv_mma(const T* x, const T* u, const uint32_t* w,
    const T* scales, const T* biases, T* y, const ShapeT& x_shape, int x_ndim, const ShapeT& w_shape) {{
{strings["kGemvMma"]}
}}
__global__ void k(const {T}* x, const {T}* u, const uint32_t* w, const {T}* s, const {T}* b, {T}* y, Shape xs, Shape ws) {{
  mlxcel_affine_gemv_mma<{T}, 64, 0, 2048>(x, nullptr, w, s, b, y, xs, 3, ws);
  mlxcel_affine_gemv_mma<{T}, 32, 1, 8192>(x, u, w, s, b, y, xs, 3, ws);
  mlxcel_affine_gemv_mma<{T}, 128, 3, 16384>(x, u, w, s, b, y, xs, 3, ws);
}}""")
sys.exit(0 if ok else 1)
