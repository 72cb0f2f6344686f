#include "engine/scheduler.h"

#include "engine/workers.h"

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
    if (auto* s = dynamic_cast<SourceNode*>(&n)) {
      sources_.push_back(s);
      shards_.push_back({s});
    }
    if (auto* s = dynamic_cast<SinkNode*>(&n)) sinks_.push_back(s);
  }
  is_sink_.resize(graph_.size());
  consolidate_output_.assign(graph_.size(), false);
  for (size_t i = 0; i < graph_.size(); ++i) {
    Node& n = graph_.node(i);
    is_sink_[i] = dynamic_cast<SinkNode*>(&n) != nullptr;
    for (size_t in : n.inputs())
      if ((is_sink_[i] || n.needs_consolidated_input()) && !graph_.node(in).output_consolidated())
        consolidate_output_[in] = true;
  }
  // The pipelined prefix; nodes are in topological order (inputs have smaller indexes).
  pipelined_.assign(graph_.size(), false);
  feeds_rest_.assign(graph_.size(), false);
  for (size_t i = 0; i < graph_.size(); ++i) {
    Node& n = graph_.node(i);
    if (n.inputs().empty()) {
      pipelined_[i] = !is_sink_[i];
    } else if (n.inputs().size() == 1 && !is_sink_[i] && n.accepts_partial_input()) {
      size_t in = n.inputs()[0];
      pipelined_[i] = pipelined_[in] && !graph_.node(in).emits_at_end_of_time();
      any_pipelined_ = any_pipelined_ || pipelined_[i];
    }
  }
  for (size_t i = 0; i < graph_.size(); ++i)
    for (size_t c : consumers_[i])
      if (pipelined_[i] && !pipelined_[c]) feeds_rest_[i] = true;
}

void RunControl::feed(size_t k, const Batch& rows) {
  const std::vector<SourceNode*>& shards = source_shards(k);
  for (const Update& u : rows) shards[worker_of(u.key, shards.size())]->pending.push_back(u);
}

void RunControl::finish_source(size_t k) {
  for (SourceNode* s : source_shards(k)) s->finished = true;
}

void RunControl::record_source(size_t k, std::vector<Batch>* per_shard) {
  const std::vector<SourceNode*>& shards = source_shards(k);
  per_shard->resize(shards.size());
  for (size_t w = 0; w < shards.size(); ++w) shards[w]->record = &(*per_shard)[w];
}

std::vector<Node*> Scheduler::instances(size_t i) { return {&graph_.node(i)}; }

void Scheduler::log(const std::string& msg) const {
  if (options_.log) options_.log(msg);
  else std::fprintf(stderr, "[tidemark] %s\n", msg.c_str());
}

Time Scheduler::next_time() {
  Time t = std::max<Time>(now_ms(), last_time_ + 1);
  last_time_ = t;
  return t;
}

Status Scheduler::run_node(size_t i, Time t, std::span<Batch* const> ins, bool owns_inputs) {
  Node& node = graph_.node(i);
  return call_operator(node, [&] {
    // A part read by several pipelined nodes is nobody's to take: linear nodes then process()
    // it (their output for a part is process() of it), end-of-time nodes read it in place.
    if (pipelined_[i] && !node.inputs().empty() && (owns_inputs || node.emits_at_end_of_time()))
      node.process_part(t, ins, outputs_[i]);
    else if (owns_inputs && !pipelined_[i]) node.process_consuming(t, ins, outputs_[i]);
    else node.process(t, std::span<const Batch* const>(const_cast<const Batch* const*>(ins.data()), ins.size()), outputs_[i]);
  });
}

Status Scheduler::step(Time t, bool suppress_sinks) {
  observe_time(t);
  ++times_;
  size_t n = graph_.size();
  if (outputs_.size() != n) {
    outputs_.resize(n);
    accumulated_.resize(n);
  }
  std::vector<Batch>& outputs = outputs_;
  touched_.assign(n, false);
  std::vector<Batch*> ins;

  // 1. The pipelined prefix, slice by slice of each source's rows.
  std::vector<uint32_t> reached(n, 0);
  uint32_t slice_no = 0;
  for (SourceNode* src : sources_) {
    size_t si = src->index();
    if (src->pending.empty()) continue;
    rows_in_ += src->pending.size();
    touched_[si] = true;
    bool slice = false;
    for (size_t c : consumers_[si]) slice = slice || pipelined_[c];
    if (!slice) {  // nothing pipelined behind it: its rows go to the rest whole
      TM_RETURN_IF_ERROR(run_node(si, t, {}, true));
      continue;
    }
    Batch all;
    all.swap(src->pending);
    // Slices are small enough that what they fan out to (split + flatten) stays in the caches,
    // large enough to amortize the calls per node. They only bound fan-out: when every
    // pipelined reader of the source emits only at the end of the time (a groupby right behind
    // it), the batch goes whole.
    bool fans_out = false;
    for (size_t c : consumers_[si]) fans_out = fans_out || (pipelined_[c] && !graph_.node(c).emits_at_end_of_time());
    const size_t total = all.size();
    const size_t slice_rows = options_.pipeline_slice_rows && fans_out ? options_.pipeline_slice_rows : total;
    for (size_t off = 0; off < total; off += slice_rows) {
      size_t end = std::min(total, off + slice_rows);
      ++slice_no;
      reached[si] = slice_no;
      src->process_slice(all, off, end, outputs[si]);
      for (size_t j = si + 1; j < n; ++j) {
        if (!pipelined_[j] || graph_.node(j).inputs().empty() || reached[graph_.node(j).inputs()[0]] != slice_no) continue;
        size_t in = graph_.node(j).inputs()[0];
        if (outputs[in].empty()) continue;
        reached[j] = slice_no;
        touched_[j] = true;
        Batch* p = &outputs[in];
        TM_RETURN_IF_ERROR(run_node(j, t, std::span<Batch* const>(&p, 1), consumers_[in].size() == 1));
      }
      for (size_t j = si; j < n; ++j) {
        if (reached[j] != slice_no) continue;
        if (feeds_rest_[j]) {
          Batch& acc = accumulated_[j];
          if (acc.empty()) acc.swap(outputs[j]);
          else acc.insert(acc.end(), std::make_move_iterator(outputs[j].begin()), std::make_move_iterator(outputs[j].end()));
        }
        outputs[j].clear();
      }
    }
    src->pending.clear();
  }

  // 2. The end of the time for the prefix, then every other node once, in topological order.
  std::vector<size_t> remaining(n);
  for (size_t i = 0; i < n; ++i)
    for (size_t c : consumers_[i]) remaining[i] += pipelined_[c] ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    Node& node = graph_.node(i);
    if (pipelined_[i]) {
      if (!touched_[i]) continue;
      if (!accumulated_[i].empty()) {
        if (outputs[i].empty()) outputs[i].swap(accumulated_[i]);
        else outputs[i].insert(outputs[i].end(), std::make_move_iterator(accumulated_[i].begin()),
                               std::make_move_iterator(accumulated_[i].end()));
        accumulated_[i].clear();
      }
      if (!node.inputs().empty()) TM_RETURN_IF_ERROR(call_operator(node, [&] { node.end_time(t, outputs[i]); }));
      if (!feeds_rest_[i]) outputs[i].clear();
      else if (consolidate_output_[i]) consolidate(outputs[i]);
      continue;
    }
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
    if (any && !(is_sink && suppress_sinks)) {
      if (is_sink) rows_out_ += ins[0]->size();
      TM_RETURN_IF_ERROR(run_node(i, t, ins, owns_inputs));
      // Consolidate only where a consumer needs it (sinks, stateful inputs); linear stateless
      // operators pass their batches on as they are.
      if (consolidate_output_[i]) consolidate(outputs[i]);
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
  // Several workers: src/engine/workers.cc (the hooks see the run through RunControl there too).
  Result<size_t> workers = resolve_workers(options);
  if (!workers.is_ok()) return workers.status();
  if (*workers > 1) {
    SignalGuard guard(options.handle_signals);
    return run_workers(
        g, options, *workers,
        [&] { return (options.handle_signals && g_signal_stop.load()) || (options.stop && options.stop->load()); },
        hooks);
  }
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

