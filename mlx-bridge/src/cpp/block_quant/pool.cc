#include "pool.h"

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace mlxcel::bq {

namespace {

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Long enough to bridge the gap between the GEMVs of one layer (norms, rope and attention run
// in between), short enough that an idle pool does not hold a core a BLAS thread wants.
constexpr long kDefaultSpinUs = 50;

}  // namespace

int available_parallelism() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

Pool& Pool::instance() {
  static Pool pool;
  return pool;
}

Pool::Pool() {
  long spin_us = kDefaultSpinUs;
  if (const char* env = std::getenv("MLXCEL_POOL_SPIN_US")) spin_us = std::strtol(env, nullptr, 10);
  spin_ns_ = spin_us < 0 ? 0 : spin_us * 1000;
  int n = available_parallelism();
  if (const char* env = std::getenv("MLXCEL_THREADS")) {
    const long v = std::strtol(env, nullptr, 10);
    if (v >= 1) n = static_cast<int>(v);
  }
  start(n);
}

Pool::~Pool() { stop(); }

void Pool::start(int n) {
  stopping_.store(false);
  nthreads_.store(n);
  workers_.reserve(static_cast<std::size_t>(n - 1));
  // The epoch is read here, not by the new thread: a job published before it first runs is
  // still its to do.
  const std::uint64_t epoch = epoch_.load();
  for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, epoch] { worker(i, epoch); });
}

void Pool::stop() {
  {
    std::lock_guard<std::mutex> lock(sleep_mutex_);
    stopping_.store(true);
    epoch_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void Pool::set_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: need at least 1 thread, got " + std::to_string(n));
  std::lock_guard<std::mutex> lock(run_mutex_);
  if (n == threads()) return;
  stop();
  start(n);
}

void Pool::worker(int index, std::uint64_t seen) {
  for (;;) {
    std::uint64_t now = epoch_.load(std::memory_order_acquire);
    if (now == seen) {
      const std::int64_t until = now_ns() + spin_ns_;
      int spins = 0;
      while ((now = epoch_.load(std::memory_order_acquire)) == seen) {
        cpu_relax();
        if (++spins % 64 == 0 && now_ns() > until) break;
      }
      if (now == seen) {
        std::unique_lock<std::mutex> lock(sleep_mutex_);
        // seq_cst on both sides: either run() sees this sleeper or this thread sees the new epoch.
        sleepers_.fetch_add(1);
        wake_.wait(lock, [&] { return (now = epoch_.load()) != seen; });
        sleepers_.fetch_sub(1);
      }
    }
    seen = now;
    if (stopping_.load()) return;
    const int n = nthreads_.load(std::memory_order_relaxed);
    job_(ctx_, index, n);
    pending_.fetch_sub(1, std::memory_order_release);
  }
}

void Pool::run(Job job, void* ctx) {
  std::lock_guard<std::mutex> lock(run_mutex_);
  const int n = threads();
  if (n == 1) {
    job(ctx, 0, 1);
    return;
  }
  job_ = job;
  ctx_ = ctx;
  pending_.store(n - 1, std::memory_order_relaxed);
  epoch_.fetch_add(1);  // seq_cst: publishes job_/ctx_ and orders against sleepers_ below
  if (sleepers_.load() > 0) {
    { std::lock_guard<std::mutex> sl(sleep_mutex_); }
    wake_.notify_all();
  }
  job(ctx, 0, n);
  // The others got equal shares of the work; they finish about when this thread does.
  int spins = 0;
  while (pending_.load(std::memory_order_acquire) != 0) {
    cpu_relax();
    if (++spins > (1 << 16)) std::this_thread::yield();
  }
}

}  // namespace mlxcel::bq
