// Test harness for operators: drive a graph with prepared batches, capture its output, and
// check incremental results against recomputation from scratch.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/collection_io.h"
#include "engine/scheduler.h"
#include "tidemark/tidemark.h"

namespace tidemark::testing {

using engine::Batch;
using engine::CapturedChange;
using engine::Update;

struct SourceSpec {
  Schema schema;
  std::vector<Batch> batches;  // batches[i] is delivered at step i (one logical time per step)
};

using BuildFn = std::function<Table(Graph&, std::vector<Table>&)>;

struct RunOutput {
  std::vector<CapturedChange> changes;
  std::vector<engine::Time> step_times;  // logical time of each step, in order
  Status status;
};

// Table contents: key -> row. accumulate() fails the test on a retraction of a missing row,
// a duplicate key, or a multiplicity other than 0/1.
using Snapshot = std::map<Key, Row>;

inline std::string row_str(const Row& r) {
  std::string s = "(";
  for (size_t i = 0; i < r.size(); ++i) s += (i ? ", " : "") + r[i].to_string();
  return s + ")";
}

class StepRecorder final : public engine::Sink {
 public:
  explicit StepRecorder(std::vector<engine::Time>* times) : times_(times) {}
  std::string describe() const override { return "step recorder"; }
  Status open() override { return {}; }
  Status write(engine::Time, const Batch&, const Schema&) override { return {}; }
  Status time_end(engine::Time t) override {
    times_->push_back(t);
    return {};
  }
  Status flush() override { return {}; }

 private:
  std::vector<engine::Time>* times_;
};

// An operator's state as its persistent entries (Node as a PersistentState): key -> value.
using StateEntries = std::map<std::string, std::string>;

// Starts change tracking on every stateful node, as persistence does before the first time.
inline void track_state(Graph& g) {
  for (size_t i = 0; i < g.impl().size(); ++i)
    if (g.impl().node(i).stateful()) g.impl().node(i).track_state_changes();
}

// Applies the node's state changes since the previous take to `entries`.
inline void take_state(engine::Node& n, StateEntries& entries) {
  engine::StateChanges changes;
  n.take_state_changes(changes);
  for (auto& c : changes) {
    if (c.erase) entries.erase(c.key);
    else entries[c.key] = std::move(c.value);
  }
}

// Restores a node that has not processed anything yet: every entry, then finish.
inline Status restore_state(engine::Node& n, const StateEntries& entries) {
  for (const auto& [k, v] : entries)
    if (Status s = n.restore_state_entry(k, v); !s.is_ok()) return s;
  return n.finish_state_restore();
}

// The same through a run's RunControl (from its hooks), over every worker's instance of a node
// as the persistence layer does it (engine::take_instance_changes, restore_instance_entry), so
// state taken at one worker count is restored at whatever count the environment gives.
inline std::vector<engine::PersistentState*> state_instances(engine::RunControl& s, size_t i) {
  std::vector<engine::PersistentState*> out;
  for (engine::Node* n : s.instances(i))
    if (n) out.push_back(n);
  return out;
}
inline void track_state(engine::RunControl& s) {
  for (size_t i = 0; i < s.graph().size(); ++i)
    if (s.graph().node(i).stateful())
      for (auto* inst : state_instances(s, i)) inst->track_state_changes();
}
inline void take_state(engine::RunControl& s, size_t i, StateEntries& entries) {
  engine::StateChanges changes;
  engine::take_instance_changes(state_instances(s, i), changes);
  for (auto& c : changes) {
    if (c.erase) entries.erase(c.key);
    else entries[c.key] = std::move(c.value);
  }
}
inline Status restore_state(engine::RunControl& s, size_t i, const StateEntries& entries) {
  auto instances = state_instances(s, i);
  for (const auto& [k, v] : entries)
    if (Status st = engine::restore_instance_entry(s.graph().node(i), instances, k, v); !st.is_ok()) return st;
  for (auto* inst : instances)
    if (Status st = inst->finish_state_restore(); !st.is_ok()) return st;
  return {};
}

// `slice_rows`: RunOptions::pipeline_slice_rows; `workers`: RunOptions::workers (0: the
// environment's TIDEMARK_THREADS, else 1). The in-memory sources split across workers by key.
inline RunOutput run_graph(const std::vector<SourceSpec>& sources, const BuildFn& build,
                           size_t slice_rows = RunOptions{}.pipeline_slice_rows, size_t workers = 0) {
  Graph g;
  std::vector<Table> inputs;
  for (size_t i = 0; i < sources.size(); ++i)
    inputs.push_back(engine::add_source(
        g, std::make_unique<engine::BatchesSource>(sources[i].batches, "in" + std::to_string(i)), sources[i].schema));
  Table out = build(g, inputs);
  auto captured = std::make_shared<std::vector<CapturedChange>>();
  RunOutput res;
  engine::add_sink(out, std::make_unique<engine::CaptureSink>(captured));
  engine::add_sink(out, std::make_unique<StepRecorder>(&res.step_times));
  RunOptions opts;
  opts.handle_signals = false;
  opts.progress_interval_s = 0;
  opts.pipeline_slice_rows = slice_rows;
  opts.workers = workers;
  res.status = run(g, opts);
  res.changes = *captured;
  return res;
}

inline void apply_changes(Snapshot& snap, const std::vector<CapturedChange>& changes, engine::Time upto,
                          engine::Time from = 0) {
  // Retractions first within a time, so an update of a key is -old then +new.
  std::map<engine::Time, std::vector<const CapturedChange*>> by_time;
  for (const auto& c : changes)
    if (c.time >= from && c.time <= upto) by_time[c.time].push_back(&c);
  for (auto& [t, cs] : by_time) {
    std::stable_sort(cs.begin(), cs.end(), [](auto* a, auto* b) { return a->diff < b->diff; });
    for (const auto* c : cs) {
      if (c->diff == -1) {
        auto it = snap.find(c->key);
        ASSERT_TRUE(it != snap.end()) << "retraction of missing key " << c->key.to_string() << " row " << row_str(c->row);
        ASSERT_EQ(row_str(it->second), row_str(c->row)) << "retraction of a row that is not the current one";
        snap.erase(it);
      } else {
        ASSERT_EQ(c->diff, 1) << "multiplicity " << c->diff << " for key " << c->key.to_string();
        ASSERT_TRUE(snap.find(c->key) == snap.end())
            << "duplicate key " << c->key.to_string() << " row " << row_str(c->row);
        snap[c->key] = c->row;
      }
    }
  }
}

inline Snapshot final_snapshot(const RunOutput& r) {
  Snapshot s;
  apply_changes(s, r.changes, ~engine::Time{0});
  return s;
}

// Consolidated contents of a source after the first `steps` batches, as a single batch.
inline Batch prefix(const SourceSpec& s, size_t steps) {
  Batch all;
  for (size_t i = 0; i < steps && i < s.batches.size(); ++i)
    for (const auto& u : s.batches[i]) all.push_back(u);
  engine::consolidate(all);
  return all;
}

// The worker counts the property tests run at; every count must give the results of 1 worker.
inline constexpr size_t kWorkerCounts[] = {1, 2, 3};

// The property every stateful operator must have: after every step, the incremental output
// equals the output computed from scratch over the consolidated input so far. Checked at 1, 2
// and 3 workers (kWorkerCounts) against the recomputation at 1 worker: several workers give
// the same table after every step as one.
inline void expect_incremental_matches_recompute(const std::vector<SourceSpec>& sources, const BuildFn& build) {
  std::vector<Snapshot> expected_after;  // per step, from scratch at 1 worker
  for (size_t workers : kWorkerCounts) {
    SCOPED_TRACE("workers = " + std::to_string(workers));
    RunOutput inc = run_graph(sources, build, RunOptions{}.pipeline_slice_rows, workers);
    ASSERT_TRUE(inc.status.is_ok()) << inc.status.to_string();
    size_t steps = inc.step_times.size();
    if (workers == 1) {
      for (size_t k = 0; k < steps; ++k) {
        std::vector<SourceSpec> scratch;
        for (const auto& s : sources) {
          Batch b = prefix(s, k + 1);
          scratch.push_back({s.schema, b.empty() ? std::vector<Batch>{} : std::vector<Batch>{b}});
        }
        bool any = false;
        for (const auto& s : scratch) any = any || !s.batches.empty();
        Snapshot expected;
        if (any) {
          RunOutput full = run_graph(scratch, build, RunOptions{}.pipeline_slice_rows, 1);
          ASSERT_TRUE(full.status.is_ok()) << full.status.to_string();
          expected = final_snapshot(full);
        }
        expected_after.push_back(std::move(expected));
      }
    }
    ASSERT_EQ(steps, expected_after.size()) << "a different number of times than at 1 worker";
    Snapshot state;
    engine::Time prev = 0;
    for (size_t k = 0; k < steps; ++k) {
      apply_changes(state, inc.changes, inc.step_times[k], prev + 1);
      prev = inc.step_times[k];
      const Snapshot& expected = expected_after[k];
      ASSERT_EQ(state.size(), expected.size()) << "after step " << k;
      for (const auto& [key, row] : expected) {
        auto it = state.find(key);
        ASSERT_TRUE(it != state.end()) << "after step " << k << ": missing row " << row_str(row);
        ASSERT_EQ(row_str(it->second), row_str(row)) << "after step " << k;
      }
    }
  }
}

// Random insert/retract batches over rows produced by `make_row(rng)`. Every step has at least
// one change; retractions only remove live rows; keys are fresh for each insertion unless
// `reuse_keys`, in which case a retracted key may come back with a new row.
inline std::vector<Batch> random_batches(std::mt19937_64& rng, size_t steps, size_t max_per_step,
                                         const std::function<Row(std::mt19937_64&)>& make_row,
                                         double retract_prob = 0.3) {
  std::vector<Batch> out;
  std::vector<std::pair<Key, Row>> live;
  uint64_t next_key = 1;
  for (size_t s = 0; s < steps; ++s) {
    Batch b;
    size_t n = 1 + rng() % max_per_step;
    for (size_t i = 0; i < n; ++i) {
      bool retract = !live.empty() && std::uniform_real_distribution<>(0, 1)(rng) < retract_prob;
      if (retract) {
        size_t j = rng() % live.size();
        b.push_back({live[j].first, live[j].second, -1});
        live[j] = live.back();
        live.pop_back();
      } else {
        Key k{next_key++, 0x5eed};
        Row r = make_row(rng);
        b.push_back({k, r, 1});
        live.emplace_back(k, r);
      }
    }
    out.push_back(std::move(b));
  }
  return out;
}

}  // namespace tidemark::testing
