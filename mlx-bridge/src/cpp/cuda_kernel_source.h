// Where a custom CUDA kernel's code lives for NVRTC. MLX's CUDA backend hashes a custom kernel's
// whole generated source on every evaluation to find its compiled module (and builds that source
// on every call outside `mx::compile`): host time that grows with the code's length, on each of
// the hundreds of kernel nodes a decode step runs. So the code goes into a content-addressed file
// in the user's cache directory, which NVRTC includes by absolute path, and the source MLX sees
// is a one-line call of a device function. Where no cache directory can be written, the same
// definitions are inlined into the kernel's header instead: slower to launch, identical code.
#pragma once

#include <string>

namespace mlxcel::cuda_fast {

struct KernelSource {
  // For mx::fast::cuda_kernel's `header`: an #include of the code's file, or the code itself.
  std::string header;
  // For its `source`: the body of the generated __global__ function.
  std::string source;
};

// Where the code files go (the Rust side passes `<cache root>/cuda-kernels`, resolved once in
// mlx_bridge::cache_root); until it is set, code is inlined.
void set_kernel_code_dir(const std::string& dir);

// `definitions` are the device functions (templates) the kernel calls; `call` is its body.
KernelSource kernel_source(const std::string& name, const std::string& definitions, const std::string& call);

}  // namespace mlxcel::cuda_fast
