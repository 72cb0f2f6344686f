// Running a graph.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "tidemark/persistence.h"
#include "tidemark/status.h"
#include "tidemark/table.h"

namespace tidemark {

struct RunOptions {
  // Persistence (see persistence.h). When unset, TIDEMARK_REPLAY_STORAGE and friends may
  // configure it from the environment.
  std::optional<persistence::Config> persistence_config;
  // Stop on SIGINT / SIGTERM (streaming sources run until then). The previous handlers are
  // restored when run() returns.
  bool handle_signals = true;
  // An external stop flag (optional): set it to stop a streaming run cleanly.
  std::atomic<bool>* stop = nullptr;
  // Progress and warnings (skipped rows, commits). Default: stderr with a "[tidemark]" prefix.
  std::function<void(const std::string&)> log;
  // Seconds between progress lines on long runs (0 = off).
  double progress_interval_s = 5.0;
  // Source rows per slice pushed through the pipelined operators within one time (select,
  // filter, flatten, groupby without order-dependent reducers): a time's intermediate rows
  // then never exist all at once. 0 = one slice per time. Results do not depend on it.
  size_t pipeline_slice_rows = 2048;
  // Worker threads. 0 = the environment variable TIDEMARK_THREADS if set (a whole number from
  // 1 to 256; anything else fails the run with InvalidArgument), else 1. With N > 1 every
  // worker runs its own instance of each operator over its shard of the keys (rows are
  // exchanged by routing key before each stateful operator), file sources split their files
  // across the workers, and each sink still gets one consolidated batch per time, equal in
  // content to what 1 worker writes (src/engine/README.md, "Workers"). User functions are then
  // called from worker threads (contract: include/tidemark/expr.h). With persistence
  // configured the run uses 1 worker (a warning is logged).
  size_t workers = 0;
};

// Blocks until every source finished (static) or a stop was requested (streaming), then flushes
// outputs and returns. Errors (unreadable file, bad row, failing user function) come back as a
// Status naming the source, file and line or the operator. A graph can be run once.
Status run(Graph& graph, const RunOptions& options = {});

}  // namespace tidemark
