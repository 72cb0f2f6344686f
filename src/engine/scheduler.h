// The run loop. Exposed to the persistence layer, which drives replay and commits through it.
#pragma once

#include <functional>
#include <vector>

#include "engine/node.h"
#include "tidemark/run.h"

namespace tidemark::engine {

// What the persistence layer sees of a run: the narrow recovery and commit interface, the same
// at 1 worker (Scheduler) and at several (workers.cc). Every call comes from the thread that
// called run(), while no worker processes (before the loop, between two times, at the end).
class RunControl {
 public:
  virtual ~RunControl() = default;
  // The plan: node i of the graph as built (ids, labels, signatures; at 1 worker also the
  // running instance).
  virtual internal::GraphImpl& graph() = 0;
  virtual size_t workers() const = 0;
  // The graph's sources, in graph order (prototypes: describe(), name, schema).
  virtual const std::vector<SourceNode*>& sources() const = 0;
  // The running instances of sources()[k]: one per worker when the source splits, else one.
  virtual const std::vector<SourceNode*>& source_shards(size_t k) const = 0;
  virtual const std::vector<SinkNode*>& sinks() const = 0;
  // The instances of node i, indexed by worker (nullptr where none runs: only worker 0 holds
  // pinned nodes). A stored state entry goes to the instance of worker
  // worker_of(node.state_entry_route(...), workers()).
  virtual std::vector<Node*> instances(size_t i) = 0;
  // Pushes one time through the graph: the shards' `pending` batches must be filled. Sinks see
  // the changes unless `suppress_sinks` (persistence replay rebuilding state).
  virtual Status step(Time t, bool suppress_sinks) = 0;
  // Next logical time: wall-clock milliseconds, strictly greater than every earlier time.
  virtual Time next_time() = 0;
  virtual Time last_time() const = 0;
  virtual void observe_time(Time t) = 0;
  virtual void log(const std::string& msg) const = 0;

  // Recovery and recording on the shards of sources()[k] (seek(), replayed(), offset() and the
  // content archive are the Source interface of each shard):
  // rows for the next step() (a replayed time), spread over the shards by row key (every
  // stateful operator's input is exchanged by its own key, whichever shard a row enters by);
  void feed(size_t k, const Batch& rows);
  // the source reads nothing more in this run and is never opened (no continue_after_replay);
  void finish_source(size_t k);
  // every change a shard emits from now on is also appended to (*per_shard)[w] (one batch
  // per shard of source_shards(k)).
  void record_source(size_t k, std::vector<Batch>* per_shard);
};

class Scheduler final : public RunControl {
 public:
  Scheduler(internal::GraphImpl& graph, const RunOptions& options);

  // Pushes one time through the graph: sources' `pending` batches must be filled.
  // Sinks see the changes unless `suppress_sinks` (persistence replay rebuilding state).
  Status step(Time t, bool suppress_sinks = false) override;
  // Next logical time: wall-clock milliseconds, strictly greater than every earlier time.
  Time next_time() override;
  Time last_time() const override { return last_time_; }
  void observe_time(Time t) override { if (t > last_time_) last_time_ = t; }

  internal::GraphImpl& graph() override { return graph_; }
  size_t workers() const override { return 1; }
  const std::vector<SourceNode*>& sources() const override { return sources_; }
  const std::vector<SourceNode*>& source_shards(size_t k) const override { return shards_[k]; }
  const std::vector<SinkNode*>& sinks() const override { return sinks_; }
  std::vector<Node*> instances(size_t i) override;
  void log(const std::string& msg) const override;

  uint64_t rows_in() const { return rows_in_; }
  uint64_t rows_out() const { return rows_out_; }
  uint64_t times() const { return times_; }
  // Checked right before the sinks write a time (RunHooks::check).
  void set_output_gate(std::function<Status()> gate) { output_gate_ = std::move(gate); }

 private:
  std::function<Status()> output_gate_;
  internal::GraphImpl& graph_;
  const RunOptions& options_;
  std::vector<SourceNode*> sources_;
  std::vector<std::vector<SourceNode*>> shards_;  // {sources_[k]}
  std::vector<SinkNode*> sinks_;
  std::vector<std::vector<size_t>> consumers_;
  std::vector<bool> is_sink_;
  // Whether node i's output is consolidated (some consumer needs it).
  std::vector<bool> consolidate_output_;
  std::vector<Batch> outputs_;  // per node, within step()
  // Pipelined prefix (Node::accepts_partial_input): nodes fed only by sources or other
  // pipelined nodes. A time's source rows go through them in slices
  // (RunOptions::pipeline_slice_rows), so the
  // rows a slice fans out to (split + flatten) stay in cache and no whole-time intermediate
  // batch is materialized; their outputs accumulate only for consumers outside the prefix.
  std::vector<bool> pipelined_;
  std::vector<bool> feeds_rest_;      // pipelined node with a consumer outside the prefix
  std::vector<bool> touched_;         // pipelined node that processed a part at this time
  std::vector<Batch> accumulated_;    // per pipelined node feeding the rest: this time's output
  bool any_pipelined_ = false;        // some node besides the sources is pipelined
  Status run_node(size_t i, Time t, std::span<Batch* const> ins, bool owns_inputs);
  void run_slice(Time t, size_t source_index, Batch& slice);
  Time last_time_ = 0;
  uint64_t rows_in_ = 0, rows_out_ = 0, times_ = 0;
};

// Hooks the persistence layer installs into run(); all optional.
struct RunHooks {
  // After sinks and sources are created, before anything opens: lock, fence, truncate sinks.
  std::function<Status(RunControl&)> before_start;
  // After sinks opened, before sources open: replay (replay modes emit to the sinks), seek.
  std::function<Status(RunControl&)> after_sinks_open;
  // After each completed time (all sinks written), while no worker runs.
  std::function<Status(RunControl&, Time)> after_time;
  // Once all sources finished or a stop was requested, after the final flush.
  std::function<Status(RunControl&, bool stopped)> at_end;
  // May this run still act (read on, write outputs)? Called at every loop turn and before the
  // sinks write a time. An error stops the run at once, without flushing outputs (persistence:
  // the storage lock was lost or its lease may have lapsed).
  std::function<Status()> check;
};

Status run_with_hooks(Graph& graph, const RunOptions& options, const RunHooks& hooks);

}  // namespace tidemark::engine
