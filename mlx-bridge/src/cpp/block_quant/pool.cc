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
  // The epoch is read here, not by the new thread, so a job published before it first runs
  // still wakes it.
  const auto epoch = static_cast<std::uint32_t>(claim_.load() >> 32);
  for (int i = 1; i < n; ++i) workers_.emplace_back([this, epoch] { worker(epoch); });
}

void Pool::stop() {
  {
    std::lock_guard<std::mutex> lock(sleep_mutex_);
    stopping_.store(true);
    chunks_.store(0);
    claim_.store(((claim_.load() >> 32) + 1) << 32);
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

// The chunk index of a closed epoch: past any job's chunk count.
constexpr std::uint64_t kClosed = 0x7fffffff;

int Pool::work(std::uint32_t epoch) {
  int ran = 0;
  std::uint64_t w = claim_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<std::uint32_t>(w >> 32) != epoch) break;
    const auto k = static_cast<std::uint32_t>(w);
    // Read before the claim, with acquire: run() closes the finished job's epoch before it
    // writes the next job's fields, so a field read here that is already the next job's makes
    // the claim below fail. A successful claim thus proves all three belong to this epoch.
    if (static_cast<int>(k) >= chunks_.load(std::memory_order_acquire)) break;
    const ChunkFn fn = fn_.load(std::memory_order_acquire);
    void* ctx = ctx_.load(std::memory_order_acquire);
    if (claim_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
      fn(ctx, static_cast<int>(k));
      ++ran;
      done_.fetch_add(1, std::memory_order_release);
      w = claim_.load(std::memory_order_acquire);
    }
  }
  return ran;
}

void Pool::worker(std::uint32_t seen) {
  auto epoch_now = [this] { return static_cast<std::uint32_t>(claim_.load(std::memory_order_acquire) >> 32); };
  for (;;) {
    std::uint32_t now = epoch_now();
    if (now == seen) {
      const std::int64_t until = now_ns() + spin_ns_;
      int spins = 0;
      while ((now = epoch_now()) == seen) {
        cpu_relax();
        if (++spins % 64 == 0 && now_ns() > until) break;
      }
      if (now == seen) {
        std::unique_lock<std::mutex> lock(sleep_mutex_);
        // seq_cst on both sides: either run() sees this sleeper or this thread sees the new epoch.
        sleepers_.fetch_add(1);
        wake_.wait(lock, [&] { return (now = static_cast<std::uint32_t>(claim_.load() >> 32)) != seen; });
        sleepers_.fetch_sub(1);
      }
    }
    seen = now;
    if (stopping_.load()) return;
    work(now);
  }
}

void Pool::run(int chunks, ChunkFn fn, void* ctx) {
  if (chunks <= 0) return;
  std::lock_guard<std::mutex> lock(run_mutex_);
  if (threads() == 1 || chunks == 1) {
    for (int k = 0; k < chunks; ++k) fn(ctx, k);
    return;
  }
  // First close the previous job's epoch: a worker that read its claim word but not yet the
  // fields could otherwise pair the old claim with this job's chunk count and function (it
  // crashed that way, running a stale context). The closed epoch has no chunk to claim.
  const auto previous = static_cast<std::uint32_t>(claim_.load(std::memory_order_relaxed) >> 32);
  claim_.store((static_cast<std::uint64_t>(previous + 1) << 32) | kClosed);
  std::atomic_thread_fence(std::memory_order_release);
  fn_.store(fn, std::memory_order_relaxed);
  ctx_.store(ctx, std::memory_order_relaxed);
  chunks_.store(chunks, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  const auto epoch = previous + 2;
  claim_.store(static_cast<std::uint64_t>(epoch) << 32);  // seq_cst: publishes, and orders against sleepers_
  if (sleepers_.load() > 0) {
    { std::lock_guard<std::mutex> sl(sleep_mutex_); }
    wake_.notify_all();
  }
  work(epoch);
  // Whatever is left is a chunk another thread holds. If that thread was preempted, yielding
  // soon gives it this core back.
  int spins = 0;
  while (done_.load(std::memory_order_acquire) < chunks) {
    cpu_relax();
    if (++spins > 4096) std::this_thread::yield();
  }
}

}  // namespace mlxcel::bq
