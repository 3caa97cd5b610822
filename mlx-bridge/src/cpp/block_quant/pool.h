// A persistent pool for the block-quantized kernels. The calling thread (MLX's CPU stream
// thread, inside eval_cpu's dispatched task) is worker 0. The others spin briefly after each job
// and then sleep, so the many small GEMVs of one decode step reach them without a futex wake-up
// each, while an idle pool costs nothing.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace mlxcel::bq {

class Pool {
 public:
  using Job = void (*)(void* ctx, int thread, int nthreads);

  static Pool& instance();

  // Resizes the pool (n >= 1 threads in all, the caller included). Waits for a running job.
  void set_threads(int n);
  int threads() const { return nthreads_.load(std::memory_order_relaxed); }

  // Runs job(ctx, t, n) for t in [0, n), t = 0 on the calling thread; returns when all are done.
  // Jobs from different callers are serialised.
  void run(Job job, void* ctx);

  ~Pool();

 private:
  Pool();
  void start(int n);
  void stop();
  void worker(int index, std::uint64_t seen);

  std::mutex run_mutex_;  // one job at a time; also held while resizing
  std::atomic<int> nthreads_{1};
  std::vector<std::thread> workers_;

  // The current job, published by bumping epoch_.
  Job job_ = nullptr;
  void* ctx_ = nullptr;
  std::atomic<std::uint64_t> epoch_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stopping_{false};

  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
  long spin_ns_;
};

// The number of CPUs this process may run on (its affinity mask), at least 1.
int available_parallelism();

}  // namespace mlxcel::bq
