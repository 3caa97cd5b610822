// A persistent pool for the block-quantized kernels. The calling thread (MLX's CPU stream
// thread, inside eval_cpu's dispatched task) is worker 0. The others spin briefly after each job
// and then sleep, so the many small GEMVs of one decode step reach them without a futex wake-up
// each, while an idle pool costs nothing.
//
// A job is a number of chunks that threads claim one at a time. A worker that is asleep, or
// preempted on a busy machine, then costs at most the chunk it holds: the others (the caller
// included) take the rest, where a fixed split would wait for its whole share.
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
  using ChunkFn = void (*)(void* ctx, int chunk);

  static Pool& instance();

  // Resizes the pool (n >= 1 threads in all, the caller included). Waits for a running job.
  void set_threads(int n);
  int threads() const { return nthreads_.load(std::memory_order_relaxed); }

  // Runs fn(ctx, k) for every k in [0, chunks) and returns when all are done. Jobs from
  // different callers are serialised.
  void run(int chunks, ChunkFn fn, void* ctx);

  ~Pool();

 private:
  Pool();
  void start(int n);
  void stop();
  void worker(std::uint32_t seen);
  // Claims and runs chunks of job `epoch` until none is left; returns how many it ran.
  int work(std::uint32_t epoch);

  std::mutex run_mutex_;  // one job at a time; also held while resizing
  std::atomic<int> nthreads_{1};
  std::vector<std::thread> workers_;

  // The job: its epoch in the high half of claim_, the next unclaimed chunk in the low half.
  // fn_/ctx_/chunks_ are written before claim_ is released with the new epoch.
  std::atomic<std::uint64_t> claim_{0};
  std::atomic<ChunkFn> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<int> chunks_{0};
  std::atomic<int> done_{0};
  std::atomic<bool> stopping_{false};

  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
  long spin_ns_;
};

// The number of CPUs this process may run on (its affinity mask), at least 1.
int available_parallelism();

}  // namespace mlxcel::bq
