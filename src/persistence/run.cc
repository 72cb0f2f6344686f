// tidemark::run: the engine's run loop, with persistence hooks when configured.
#include <cstdio>

#include "engine/workers.h"
#include "persistence/runtime.h"
#include "tidemark/run.h"

namespace tidemark {

Status run(Graph& graph, const RunOptions& options) {
  std::optional<persistence::Config> cfg = options.persistence_config;
  if (!cfg) {
    auto env = persistence::Config::from_env();
    if (!env.is_ok()) return env.status();
    cfg = *env;
  }
  if (!cfg) return engine::run_with_hooks(graph, options, {});
  // Persistence runs on one worker for now (src/engine/README.md, "Workers").
  Result<size_t> workers = engine::resolve_workers(options);
  if (!workers.is_ok()) return workers.status();
  RunOptions one = options;
  if (*workers > 1) {
    std::string msg = "warning: persistence is configured: running on 1 worker instead of " +
                      std::to_string(*workers) + " (several workers do not support persistence yet)";
    if (options.log) options.log(msg);
    else std::fprintf(stderr, "[tidemark] %s\n", msg.c_str());
    one.workers = 1;
  }
  persistence::Runtime runtime(*cfg);
  return engine::run_with_hooks(graph, one, runtime.hooks());
}

}  // namespace tidemark
