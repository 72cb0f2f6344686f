#include "persistence/runtime.h"

#include "persistence/runtime_internal.h"

namespace tidemark::persistence {

Runtime::Runtime(Config config) : impl_(std::make_unique<Impl>()) { impl_->cfg = std::move(config); }
Runtime::~Runtime() = default;
const Runtime::Stats& Runtime::stats() const { return impl_->stats; }

engine::RunHooks Runtime::hooks() {
  engine::RunHooks h;
  Impl* p = impl_.get();
  h.before_start = [p](RunControl& s) { return p->before_start(s); };
  h.after_sinks_open = [p](RunControl& s) { return p->after_sinks_open(s); };
  h.after_time = [p](RunControl& s, Time t) { return p->after_time(s, t); };
  h.at_end = [p](RunControl& s, bool stopped) { return p->at_end(s, stopped); };
  h.check = [p]() { return p->check_lease(); };
  return h;
}

}  // namespace tidemark::persistence
