#include "engine/scheduler.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>
#include <variant>

namespace tidemark::engine {

namespace {
std::atomic<bool> g_signal_stop{false};
extern "C" void on_stop_signal(int) { g_signal_stop.store(true); }

uint64_t now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

class SignalGuard {
 public:
  explicit SignalGuard(bool enable) : enabled_(enable) {
    if (!enabled_) return;
    g_signal_stop.store(false);
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalGuard() {
    if (!enabled_) return;
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  bool enabled_;
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};
}  // namespace

Scheduler::Scheduler(internal::GraphImpl& graph, const RunOptions& options) : graph_(graph), options_(options) {
  consumers_.resize(graph_.size());
  for (size_t i = 0; i < graph_.size(); ++i) {
    Node& n = graph_.node(i);
    for (size_t in : n.inputs()) consumers_[in].push_back(i);
    if (auto* s = dynamic_cast<SourceNode*>(&n)) sources_.push_back(s);
    if (auto* s = dynamic_cast<SinkNode*>(&n)) sinks_.push_back(s);
  }
  is_sink_.resize(graph_.size());
  consolidate_output_.assign(graph_.size(), false);
  for (size_t i = 0; i < graph_.size(); ++i) {
    Node& n = graph_.node(i);
    is_sink_[i] = dynamic_cast<SinkNode*>(&n) != nullptr;
    for (size_t in : n.inputs())
      if (is_sink_[i] || n.needs_consolidated_input()) consolidate_output_[in] = true;
  }
}

void Scheduler::log(const std::string& msg) const {
  if (options_.log) options_.log(msg);
  else std::fprintf(stderr, "[tidemark] %s\n", msg.c_str());
}

Time Scheduler::next_time() {
  Time t = std::max<Time>(now_ms(), last_time_ + 1);
  last_time_ = t;
  return t;
}

Status Scheduler::step(Time t, bool suppress_sinks) {
  observe_time(t);
  ++times_;
  size_t n = graph_.size();
  if (outputs_.size() != n) outputs_.resize(n);
  std::vector<Batch>& outputs = outputs_;
  std::vector<size_t> remaining(n);
  for (size_t i = 0; i < n; ++i) remaining[i] = consumers_[i].size();
  std::vector<Batch*> ins;
  for (size_t i = 0; i < n; ++i) {
    Node& node = graph_.node(i);
    bool is_source = node.inputs().empty();
    bool is_sink = is_sink_[i];
    ins.clear();
    bool any = false;
    // A node that is the last reader of each of its inputs (each read once) may take them.
    bool owns_inputs = true;
    for (size_t in : node.inputs()) {
      ins.push_back(&outputs[in]);
      any = any || !outputs[in].empty();
      owns_inputs = owns_inputs && remaining[in] == 1;
    }
    if (is_source) {
      auto* src = static_cast<SourceNode*>(&node);
      any = !src->pending.empty();
      rows_in_ += src->pending.size();
    }
    if (any && !(is_sink && suppress_sinks)) {
      if (is_sink) rows_out_ += ins[0]->size();
      try {
        if (owns_inputs) node.process_consuming(t, ins, outputs[i]);
        else node.process(t, std::span<const Batch* const>(const_cast<const Batch* const*>(ins.data()), ins.size()), outputs[i]);
      } catch (const StatusError& e) {
        return e.status().with_context(node.label());
      } catch (const std::bad_variant_access& e) {
        return Status::invalid_argument(node.label() + ": a value of an unexpected type reached the operator (" +
                                        e.what() + ")");
      } catch (const std::exception& e) {
        return Status::invalid_argument(node.label() + ": " + e.what());
      }
      // Consolidate only where a consumer needs it (sinks, stateful inputs); linear stateless
      // operators pass their batches on as they are.
      if (consolidate_output_[i]) consolidate(outputs[i]);
      if (node.tracking_state()) node.mark_processed();
    }
    // Free inputs nobody else needs.
    for (size_t in : node.inputs())
      if (--remaining[in] == 0) Batch().swap(outputs[in]);
  }
  for (auto& b : outputs) Batch().swap(b);
  if (!suppress_sinks && output_gate_) TM_RETURN_IF_ERROR(output_gate_());
  if (!suppress_sinks)
    for (SinkNode* s : sinks_) {
      Status st = s->sink().time_end(t);
      if (!st.is_ok()) return st.with_context(s->label());
    }
  return {};
}

Status run_with_hooks(Graph& graph, const RunOptions& options, const RunHooks& hooks) {
  auto& g = graph.impl();
  if (g.ran) return Status::failed_precondition("this graph has already been run; build a new Graph");
  g.ran = true;
  Scheduler sched(g, options);
  if (sched.sources().empty()) return Status::invalid_argument("the graph has no input sources");
  SignalGuard guard(options.handle_signals);

  if (hooks.check) sched.set_output_gate(hooks.check);
  if (hooks.before_start) TM_RETURN_IF_ERROR(hooks.before_start(sched));
  for (SinkNode* s : sched.sinks()) TM_RETURN_IF_ERROR(s->sink().open().with_context(s->label()));
  if (hooks.after_sinks_open) TM_RETURN_IF_ERROR(hooks.after_sinks_open(sched));
  // Sources a replay marked finished (continue_after_replay = false) are never opened.
  for (SourceNode* s : sched.sources())
    if (!s->finished) TM_RETURN_IF_ERROR(s->source().open().with_context(s->label()));

  auto stop_requested = [&] {
    return (options.handle_signals && g_signal_stop.load()) || (options.stop && options.stop->load());
  };
  // Outputs are not flushed when this run may no longer act (its storage lock is lost):
  // what is buffered must not reach files a successor now writes.
  bool may_act = true;
  auto finish = [&](Status st, bool stopped) -> Status {
    for (SinkNode* s : sched.sinks()) {
      if (!may_act) break;
      Status f = s->sink().flush();
      if (st.is_ok() && !f.is_ok()) st = f.with_context(s->label());
    }
    if (st.is_ok() && hooks.at_end) st = hooks.at_end(sched, stopped);
    for (SinkNode* s : sched.sinks()) {
      Status c = s->sink().close();
      if (st.is_ok() && !c.is_ok()) st = c.with_context(s->label());
    }
    return st;
  };

  std::vector<uint64_t> next_poll(sched.sources().size(), 0);
  auto last_progress = std::chrono::steady_clock::now();
  for (;;) {
    if (hooks.check) {
      Status c = hooks.check();
      if (!c.is_ok()) {
        may_act = false;
        return finish(c, false);
      }
    }
    if (stop_requested()) return finish({}, true);
    uint64_t now = now_ms();
    bool have = false;
    bool all_finished = true;
    for (size_t i = 0; i < sched.sources().size(); ++i) {
      SourceNode* s = sched.sources()[i];
      if (s->finished) continue;
      all_finished = false;
      if (now < next_poll[i]) continue;
      bool fin = false;
      Status st = s->source().poll(s->pending, &fin);
      if (!st.is_ok()) return finish(st.with_context(s->label()), false);
      s->finished = fin;
      next_poll[i] = now + s->source().autocommit_ms();
      have = have || !s->pending.empty();
    }
    if (have) {
      Time t = sched.next_time();
      Status st = sched.step(t);
      if (st.is_ok() && hooks.after_time) st = hooks.after_time(sched, t);
      if (!st.is_ok()) {
        if (hooks.check && !hooks.check().is_ok()) may_act = false;
        return finish(st, false);
      }
    }
    bool done = true;
    for (SourceNode* s : sched.sources()) done = done && s->finished;
    if (done || all_finished) return finish({}, false);
    if (options.progress_interval_s > 0) {
      auto n = std::chrono::steady_clock::now();
      if (std::chrono::duration<double>(n - last_progress).count() >= options.progress_interval_s) {
        last_progress = n;
        sched.log("progress: " + std::to_string(sched.times()) + " times, " + std::to_string(sched.rows_in()) +
                  " rows in, " + std::to_string(sched.rows_out()) + " changes out");
      }
    }
    if (!have) {
      // Wait until the earliest streaming poll is due (bounded, to notice stop requests).
      uint64_t wait = 50;
      now = now_ms();
      for (size_t i = 0; i < sched.sources().size(); ++i) {
        if (sched.sources()[i]->finished) continue;
        wait = std::min<uint64_t>(wait, next_poll[i] > now ? next_poll[i] - now : 0);
      }
      if (wait > 0) {
        // Push sources wake us as soon as data is committed.
        SourceNode* first_live = nullptr;
        for (SourceNode* s : sched.sources())
          if (!s->finished) first_live = s;
        first_live->source().wait_for_data(wait);
      }
    }
  }
}

}  // namespace tidemark::engine

