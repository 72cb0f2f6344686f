// I/O parallelism of the runtime: object-store requests have high latency, so a commit's or a
// restore's objects go in parallel (parallel_for), and archived contents upload on a standing
// pool (IoPool) while the run loop goes on.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <semaphore>
#include <thread>
#include <vector>

namespace tidemark::persistence {

inline constexpr std::ptrdiff_t kMaxCpuSlots = 256;

// Runs fn(0..n-1) on at most `width` threads (the calling one included); object-store
// requests have high latency, so a commit's or a restore's objects go in parallel, but a
// commit with thousands of objects must not start thousands of threads.
void parallel_for(size_t n, size_t width, const std::function<void(size_t)>& fn);
constexpr size_t kIoParallelism = 16;

// A standing pool of I/O threads, started once per run: work submitted to it (compressing
// and writing archived contents) overlaps the run loop's processing instead of stalling the
// next commit. Jobs queued but not started when the pool is destroyed are dropped (their
// objects were never referenced by a manifest).
//
// CPU-bound parts of the jobs (compression) take one of `cpu_slots` slots (cpu_slot()): the
// threads overlap uploads, which wait on the network, but compressing on more threads than the
// cores the run's workers leave idle only takes cores from the workers.
class IoPool {
 public:
  IoPool(size_t threads, size_t cpu_slots) : cpu_(static_cast<std::ptrdiff_t>(std::max<size_t>(1, cpu_slots))) {
    for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { loop(); });
  }
  // Held while a job computes (RAII).
  class CpuSlot {
   public:
    explicit CpuSlot(std::counting_semaphore<kMaxCpuSlots>& s) : s_(s) { s_.acquire(); }
    ~CpuSlot() { s_.release(); }
    CpuSlot(const CpuSlot&) = delete;
    CpuSlot& operator=(const CpuSlot&) = delete;

   private:
    std::counting_semaphore<kMaxCpuSlots>& s_;
  };
  CpuSlot cpu_slot() { return CpuSlot(cpu_); }
  ~IoPool() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  IoPool(const IoPool&) = delete;
  IoPool& operator=(const IoPool&) = delete;
  template <typename R>
  std::shared_future<R> submit(std::function<R()> fn) {
    auto task = std::make_shared<std::packaged_task<R()>>(std::move(fn));
    std::shared_future<R> f = task->get_future().share();
    {
      std::lock_guard<std::mutex> l(mu_);
      queue_.push_back([task] { (*task)(); });
    }
    cv_.notify_one();
    return f;
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      job();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::counting_semaphore<kMaxCpuSlots> cpu_;
  std::vector<std::thread> threads_;
};
constexpr size_t kIoPoolThreads = 2;
// The pool's compression slots for a run of `workers` worker threads: the cores they leave
// idle (at least 1).
size_t io_cpu_slots(size_t workers);

}  // namespace tidemark::persistence
