// Single-thread throughput of the block-quantized kernels alone (no MLX, no pool), for tuning
// them in isolation. Thread CPU time is reported beside wall time so a busy machine still gives
// comparable numbers.
//
//   mlx-bridge/tests/cpp/build.sh && /tmp/bq-tools/kernel_bench [formats] [M list] [isa list]
//   BIG=1 /tmp/bq-tools/kernel_bench ...   (matrices larger than the caches, and the read rate)
//   SHAPES=4096:1024,16384:1024 /tmp/bq-tools/kernel_bench ...
//
// Arguments: [formats=Q4_0,Q4_K,Q6_K,Q8_0] [M list=1,16,512] [isa list=avx2,avxvnni,avx512vnni]
//            [activation precisions=int8,int16]
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels.h"
#include "layout.h"

using namespace mlxcel::bq;

namespace {

double now(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct FmtInfo {
  const char* name;
  Fmt fmt;
  int block;     // GGUF block length (group for affine)
  int bytes;     // stored bytes per block (affine: codes + f16 scale and bias)
};

const FmtInfo kFormats[] = {
    {"Q8_0", Fmt::Q8_0, 32, 34},    {"Q4_0", Fmt::Q4_0, 32, 18},     {"Q4_1", Fmt::Q4_1, 32, 20},
    {"Q5_0", Fmt::Q5_0, 32, 22},    {"Q5_1", Fmt::Q5_1, 32, 24},     {"Q4_K", Fmt::Q4K, 256, 144},
    {"Q5_K", Fmt::Q5K, 256, 176},   {"Q6_K", Fmt::Q6K, 256, 210},    {"A4g64", Fmt::Affine4, 64, 36},
    {"A8g64", Fmt::Affine8, 64, 68},
};

std::uint64_t rng_state = 0x9e3779b97f4a7c15ull;
std::uint8_t rnd() {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return static_cast<std::uint8_t>(rng_state >> 24);
}

std::vector<std::string> split(const char* s) {
  std::vector<std::string> out;
  std::string cur;
  for (; *s; ++s) {
    if (*s == ',') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += *s;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const auto formats = split(argc > 1 ? argv[1] : "Q4_0,Q4_K,Q6_K,Q8_0");
  std::vector<int> ms;
  for (const auto& m : split(argc > 2 ? argv[2] : "1,16,512")) ms.push_back(std::atoi(m.c_str()));
  const auto isas = split(argc > 3 ? argv[3] : "avx2,avxvnni,avx512vnni");
  const auto precisions = split(argc > 4 ? argv[4] : "int8,int16");
  struct Shape {
    int rows, cols;
  };
  const bool big = std::getenv("BIG") != nullptr;
  std::vector<Shape> shapes = {{1536, 576}, {640, 2048}, {4096, 1024}};
  if (const char* env = std::getenv("SHAPES")) {  // rows:cols,rows:cols,...
    shapes.clear();
    for (const auto& item : split(env)) {
      const auto colon = item.find(':');
      shapes.push_back({std::atoi(item.substr(0, colon).c_str()), std::atoi(item.substr(colon + 1).c_str())});
    }
  } else if (big) {
    shapes = {{262144, 640}, {65536, 2048}};
    // The memory's streaming read rate, for comparison: 512 MiB summed with 256-bit loads.
    std::vector<std::uint64_t> buf((512u << 20) / 8, 1);
    double best = 1e9;
    std::uint64_t sink = 0;
    for (int r = 0; r < 5; ++r) {
      const double t0 = now(CLOCK_MONOTONIC);
      std::uint64_t acc[8] = {0};
      for (std::size_t i = 0; i < buf.size(); i += 8)
        for (int j = 0; j < 8; ++j) acc[j] += buf[i + j];
      for (int j = 0; j < 8; ++j) sink += acc[j];
      const double t1 = now(CLOCK_MONOTONIC);
      if (t1 - t0 < best) best = t1 - t0;
    }
    std::printf("read bandwidth (1 thread, 512 MiB): %.1f GB/s (%llu)\n", buf.size() * 8 / best / 1e9,
                static_cast<unsigned long long>(sink & 1));
  }
  for (const auto& fname : formats) {
    const FmtInfo* fi = nullptr;
    for (const auto& f : kFormats)
      if (fname == f.name) fi = &f;
    if (!fi) {
      std::fprintf(stderr, "unknown format %s\n", fname.c_str());
      return 1;
    }
    for (const Shape& sh : shapes) {
      if (sh.cols % fi->block) continue;
      const Layout l = layout_of(fi->fmt, ParamType::F16, fi->block, sh.rows, sh.cols);
      std::vector<std::uint8_t> buf(l.total);
      for (auto& b : buf) b = rnd();
      // Parameters: small positive halves (0x1c00..0x23ff) everywhere f16 lives.
      for (std::size_t i = l.params_offset; i + 1 < l.total; i += 2) {
        buf[i] = rnd();
        buf[i + 1] = static_cast<std::uint8_t>(0x1c + (rnd() & 7));
      }
      const MatView w{fi->fmt, ParamType::F16, fi->block, sh.rows, sh.cols, l.groups, l.nb,
                      buf.data(), buf.data() + l.params_offset, l.code_group_bytes, l.param_group_bytes};
      for (int M : ms)
        for (const auto& prec : precisions) {
          const bool wide = prec == "int16";
          std::vector<float> x(static_cast<std::size_t>(M) * sh.cols);
          for (auto& v : x) v = (rnd() - 128) / 64.0f;
          std::vector<const void*> rows(M);
          for (int m = 0; m < M; ++m) rows[m] = &x[static_cast<std::size_t>(m) * sh.cols];
          std::vector<std::int8_t> q(x.size()), q2(x.size());
          std::vector<float> d(x.size() / 32), xs(x.size() / 32);
          std::vector<std::int32_t> s(x.size() / 32), s16(x.size() / 16);
          std::vector<float> y(static_cast<std::size_t>(M) * sh.rows);
          const ActOut out{q.data(), wide ? q2.data() : nullptr, d.data(), s.data(), s16.data(), xs.data()};
          const ActView act{q.data(), out.q2, d.data(), s.data(), s16.data(), xs.data(), M, sh.cols, sh.cols / 32};
          std::printf("%-6s %5dx%-5d M=%-4d %-5s", fi->name, sh.rows, sh.cols, M, prec.c_str());
          for (const auto& iname : isas) {
            const KernelTable* kt = iname == "avx2"         ? avx2_kernels()
                                    : iname == "avxvnni"    ? avxvnni_kernels()
                                    : iname == "avx512vnni" ? avx512vnni_kernels()
                                                            : scalar_kernels();
            kt->quantize(XRows{rows.data(), XType::F32, sh.cols}, 0, M, out);
            double best_wall = 1e9, best_cpu = 1e9;
            const double flops = 2.0 * M * sh.rows * sh.cols;
            const int reps = big ? 5 : flops > 1e9 ? 5 : flops > 1e7 ? 40 : 400;
            for (int r = 0; r < reps; ++r) {
              const double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_THREAD_CPUTIME_ID);
              kt->gemm(w, act, 0, l.groups, y.data(), sh.rows);
              const double w1 = now(CLOCK_MONOTONIC), c1 = now(CLOCK_THREAD_CPUTIME_ID);
              if (w1 - w0 < best_wall) best_wall = w1 - w0;
              if (c1 - c0 < best_cpu) best_cpu = c1 - c0;
            }
            const double bytes = static_cast<double>(sh.rows) * sh.cols / fi->block * fi->bytes;
            if (M == 1)
              std::printf(" | %s %6.1f GB/s (cpu %6.1f)", iname.c_str(), bytes / best_wall / 1e9,
                          bytes / best_cpu / 1e9);
            else
              std::printf(" | %s %6.1f GF/s (cpu %6.1f)", iname.c_str(), flops / best_wall / 1e9,
                          flops / best_cpu / 1e9);
          }
          std::printf("\n");
        }
    }
  }
  return 0;
}
