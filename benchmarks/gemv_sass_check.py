#!/usr/bin/env python3
"""Whether mlx-bridge's default one-row affine product (`kGemv` in src/cpp/cuda_gemv.cc, 8 rows per
warp) compiles to the same sm_90 SASS as the variant an H200 A/B measured at commit 828d345
(`kGemvRows` with R 8 and exact codes, `benchmarks/results/h200-2026-12-04-gemv/`): the measured
numbers then describe the shipped kernel. For every bit width, group size and input form the
product takes, in bf16 and fp16. Needs no GPU (NVRTC and cuobjdump from PyPI,
benchmarks/nvrtc.py) and the repository's history. Exits non-zero on a difference.

    python3 benchmarks/gemv_sass_check.py
"""
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import nvrtc  # noqa: E402

MEASURED = "828d345"
SOURCE = "mlx-bridge/src/cpp/cuda_gemv.cc"


def instructions(strings, body, params, args, T):
    code = nvrtc.PRELUDE + strings["kGemvInput"] + f"""
template <typename T, int BITS, int G, int IN, int R, {params}typename ShapeT>
__device__ __forceinline__ void gemv(const T* x, const T* u, const uint32_t* w, const T* scales, const T* biases,
    T* y, const ShapeT& x_shape, int x_ndim, const ShapeT& w_shape) {{ {strings[body]} }}
extern "C" __global__ void k(const {T}* x, const {T}* u, const uint32_t* w, const {T}* s, const {T}* b, {T}* y,
    Shape xs, Shape ws) {{ gemv<{T}, {args}>(x, u, w, s, b, y, xs, 3, ws); }}"""
    ok, log, cubin = nvrtc.compile("gemv", code, "sm_90")
    if not ok:
        sys.exit(f"{body} <{args}> does not compile: {log[:2000]}")
    return nvrtc.sass(cubin)


def main():
    measured = nvrtc.kernel_strings(subprocess.run(["git", "show", f"{MEASURED}:{SOURCE}"], capture_output=True,
                                                   text=True, check=True).stdout)
    current = nvrtc.kernel_strings(open(SOURCE).read())
    same = True
    for T in ["__nv_bfloat16", "__half"]:
        for bits, group, form in [(4, 64, 0), (8, 64, 0), (4, 32, 0), (4, 128, 0), (8, 32, 0), (4, 64, 1), (4, 64, 2),
                                  (4, 64, 3), (8, 64, 2)]:
            args = f"{bits}, {group}, {form}, 8"
            old = instructions(measured, "kGemvRows", "bool FOLD, ", args + ", false", T)
            new = instructions(current, "kGemv", "", args, T)
            same &= old == new
            print(f"{T} {bits}-bit g{group} input {form}: {'same' if old == new else 'DIFFERENT'} "
                  f"({len(new)} instructions)")
    sys.exit(0 if same else 1)


main()
