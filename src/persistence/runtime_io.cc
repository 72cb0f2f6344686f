#include "persistence/runtime_io.h"

#include <algorithm>
#include <atomic>

namespace tidemark::persistence {

void parallel_for(size_t n, size_t width, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < n;) fn(i);
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < std::min(n, width); ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
}

size_t io_cpu_slots(size_t workers) {
  const size_t cores = std::max<size_t>(1, std::thread::hardware_concurrency());
  return cores > workers ? cores - workers : 1;
}

}  // namespace tidemark::persistence
