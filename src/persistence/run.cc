// tidemark::run: the engine's run loop, with persistence hooks when configured.
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
  persistence::Runtime runtime(*cfg);
  return engine::run_with_hooks(graph, options, runtime.hooks());
}

}  // namespace tidemark
