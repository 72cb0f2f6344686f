// Several worker threads for one run (RunOptions::workers; model in src/engine/README.md,
// "Workers"). Every worker runs its own instance of each operator (Node::clone) over its shard
// of the keys; rows move between workers through an Exchange before each stateful operator.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/node.h"
#include "engine/scheduler.h"
#include "tidemark/run.h"

namespace tidemark::engine {

// RunOptions::workers, or TIDEMARK_THREADS when it is 0 (unset: 1). InvalidArgument for a
// value that is not a whole number from 1 to 256.
Result<size_t> resolve_workers(const RunOptions& options);
// Parses a worker count ("2"); InvalidArgument naming `what` otherwise.
Result<size_t> parse_workers(const std::string& text, const std::string& what);

// Moves rows and small control messages between the workers of one run. Collective: every
// worker calls the same operations in the same order (the graph fixes it), each from its own
// thread (or process). The in-process implementation hands batches over through shared slots;
// another implementation could serialize them (codec::put_row) over sockets.
class Exchange {
 public:
  virtual ~Exchange() = default;
  virtual size_t workers() const = 0;
  // `out[d]` are the rows worker `self` sends to worker d (taken; left empty). On return
  // `in[s]` holds what worker s sent to `self`, for every s (in[self]: its own rows).
  virtual void exchange(size_t self, std::vector<Batch>& out, std::vector<Batch>& in) = 0;
  // As exchange(), for bytes (`out[d]` taken; `in[s]` what worker s sent to `self`).
  virtual void exchange_bytes(size_t self, std::vector<std::string>& out, std::vector<std::string>& in) = 0;
  // Every worker's message (all[s] from worker s).
  virtual void all_gather(size_t self, std::string message, std::vector<std::string>& all) = 0;
};
// Workers as threads of this process.
std::unique_ptr<Exchange> make_thread_exchange(size_t workers);

// The worker picked by a routing key (its top bits, mixed with the low word).
inline size_t worker_of(const Key& k, size_t workers) {
  uint64_t h = k.hi ^ (k.lo * 0x9E3779B97F4A7C15ULL);
  return static_cast<size_t>((static_cast<unsigned __int128>(h) * workers) >> 64);
}

// Routing::By::kColumns: key_from_values of the cells `cols` of `row` (the group key of a
// groupby by those columns). `buf` is scratch.
Key columns_route_key(const Row& row, const std::vector<size_t>& cols, std::string& buf);

// Runs the graph on `workers` (> 1) threads. `stop_requested` is polled by worker 0 at every
// turn of the loop. The hooks (persistence) run on worker 0, the calling thread, while the
// other workers wait: recovery before the loop (its replay steps run on every worker), after
// each time, at the end; they see the run through RunControl.
Status run_workers(internal::GraphImpl& graph, const RunOptions& options, size_t workers,
                   const std::function<bool()>& stop_requested, const RunHooks& hooks);

}  // namespace tidemark::engine
