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
};

// Blocks until every source finished (static) or a stop was requested (streaming), then flushes
// outputs and returns. Errors (unreadable file, bad row, failing user function) come back as a
// Status naming the source, file and line or the operator. A graph can be run once.
Status run(Graph& graph, const RunOptions& options = {});

}  // namespace tidemark
