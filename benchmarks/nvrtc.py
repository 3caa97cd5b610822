"""NVRTC and the CUDA headers from PyPI (nvidia-cuda-nvrtc, -runtime, -cccl; cuobjdump and nvdisasm on demand),
fetched once into ~/.cache/mlxcel/nvrtc (or $MLXCEL_NVRTC_DIR), for compiling mlx-bridge's CUDA
kernel sources for sm_90 on a machine without a GPU (benchmarks/nvrtc_check.py, gemv_sass_check.py)."""
import ctypes
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import zipfile

ROOT = pathlib.Path(os.environ.get("MLXCEL_NVRTC_DIR", pathlib.Path.home() / ".cache/mlxcel/nvrtc"))
PACKAGES = ["nvidia-cuda-nvrtc", "nvidia-cuda-runtime", "nvidia-cuda-cccl"]
PRELUDE = """
#include <cuda_bf16.h>
#include <cuda_fp16.h>
typedef unsigned int uint32_t; typedef long long int64_t;
struct Shape { int d[8]; __device__ int operator[](int i) const { return d[i]; } };
"""


def fetch(packages, marker):
    if not (ROOT / marker).exists():
        ROOT.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *packages, "-d", str(ROOT)], check=True)
        # Only these packages' wheels: re-extracting a loaded libnvrtc would pull it from under us.
        for package in packages:
            for wheel in ROOT.glob(package.replace("-", "_") + "-*.whl"):
                zipfile.ZipFile(wheel).extractall(ROOT / "x")
        for tool in (ROOT / "x/nvidia/cu13/bin").glob("*"):
            tool.chmod(0o755)  # zipfile drops the mode bits
    return ROOT / "x/nvidia/cu13"


def cuda_dir():
    return fetch(PACKAGES, "x/nvidia/cu13/lib/libnvrtc.so.13")


def kernel_strings(source):
    """The `constexpr const char* kName = R"(...)";` kernel bodies of a C++ source, by name."""
    return dict(re.findall(r'constexpr const char\* (k\w+) = R"\((.*?)\)";', source, re.S))


_nvrtc = None


def compile(name, code, arch="compute_90"):  # noqa: A001 (NVRTC's word)
    """Compiles `code` for `arch`; returns (ok, log, binary: PTX for compute_*, a cubin for sm_*)."""
    global _nvrtc
    cuda = cuda_dir()
    if _nvrtc is None:
        _nvrtc = ctypes.CDLL(str(cuda / "lib/libnvrtc.so.13"))
    lib = _nvrtc
    inc = str(cuda / "include")
    prog = ctypes.c_void_p()
    r = lib.nvrtcCreateProgram(ctypes.byref(prog), code.encode(), name.encode(), 0, None, None)
    assert r == 0, r
    opts = [f"--gpu-architecture={arch}".encode(), b"-std=c++17", ("-I" + inc).encode(), ("-I" + inc + "/cccl").encode()]
    r = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    binary = b""
    if r == 0:
        # NVRTC's getters take the program handle by value.
        cubin = arch.startswith("sm_")
        get_size, get = (lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN) if cubin else (lib.nvrtcGetPTXSize, lib.nvrtcGetPTX)
        get_size(prog, ctypes.byref(size))
        out = ctypes.create_string_buffer(size.value)
        get(prog, out)
        binary = out.raw
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    return r == 0, log.value.decode(), binary


def sass(cubin):
    """The instructions of a cubin's SASS (cuobjdump from PyPI), addresses left out."""
    bin_dir = fetch(["nvidia-cuda-cuobjdump", "nvidia-cuda-nvdisasm"], "x/nvidia/cu13/bin/nvdisasm") / "bin"
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ.get('PATH', '')}")  # cuobjdump runs nvdisasm
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([str(bin_dir / "cuobjdump"), "-sass", f.name], capture_output=True, text=True, check=True,
                             env=env).stdout
    return [re.sub(r"/\*[0-9a-f]{4}\*/", "", line.split(";")[0]).strip()
            for line in out.splitlines() if re.match(r"\s+/\*[0-9a-f]{4}\*/", line)]
