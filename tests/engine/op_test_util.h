// Helpers shared by the sort, deduplicate and window tests.
#pragma once

#include <algorithm>
#include <set>

#include "engine/scheduler.h"
#include "harness.h"

namespace tidemark::testing {

// Every change as "step:<describe(change)><+|->", sorted, for exact-change assertions.
inline std::vector<std::string> step_changes(const RunOutput& out,
                                             const std::function<std::string(const CapturedChange&)>& describe) {
  std::vector<std::string> got;
  for (const auto& c : out.changes) {
    size_t step = std::find(out.step_times.begin(), out.step_times.end(), c.time) - out.step_times.begin();
    got.push_back(std::to_string(step) + ":" + describe(c) + (c.diff > 0 ? "+" : "-"));
  }
  std::sort(got.begin(), got.end());
  return got;
}

// State export/import check: run the first `split` batches with state tracking, take every
// stateful node's entries, restore them into a freshly built graph and feed the remaining
// batches. The resumed run's output must equal the uninterrupted run's output after the split.
// A garbage entry value is rejected.

inline void expect_state_continuation(const Schema& schema, const std::vector<Batch>& batches, size_t split,
                                      const BuildFn& build) {
  auto whole = run_graph({{schema, batches}}, build);
  ASSERT_TRUE(whole.status.is_ok()) << whole.status.to_string();
  ASSERT_GT(whole.step_times.size(), split);

  std::vector<Batch> first(batches.begin(), batches.begin() + split), second(batches.begin() + split, batches.end());
  std::map<size_t, StateEntries> states;
  engine::Time last_time = 0;
  {
    Graph g;
    std::vector<Table> in{engine::add_source(g, std::make_unique<engine::BatchesSource>(first), schema)};
    build(g, in);
    RunOptions o;
    o.handle_signals = false;
    engine::RunHooks hooks;
    hooks.before_start = [&](engine::RunControl& s) {
      track_state(s);
      return Status();
    };
    hooks.at_end = [&](engine::RunControl& s, bool) {
      last_time = s.last_time();
      for (size_t i = 0; i < g.impl().size(); ++i)
        if (g.impl().node(i).stateful()) take_state(s, i, states[i]);  // every worker's instance
      return Status();
    };
    ASSERT_TRUE(engine::run_with_hooks(g, o, hooks).is_ok());
  }
  ASSERT_FALSE(states.empty());
  for (const auto& [i, s] : states) {
    if (s.empty()) continue;
    Graph g;
    std::vector<Table> in{engine::add_source(g, std::make_unique<engine::BatchesSource>(second), schema)};
    build(g, in);
    EXPECT_FALSE(restore_state(g.impl().node(i), {{s.begin()->first, "\x05garbage"}}).is_ok())
        << g.impl().node(i).label();
  }
  Graph g;
  std::vector<Table> in{engine::add_source(g, std::make_unique<engine::BatchesSource>(second), schema)};
  Table out = build(g, in);
  auto captured = std::make_shared<std::vector<CapturedChange>>();
  engine::add_sink(out, std::make_unique<engine::CaptureSink>(captured));
  RunOptions o;
  o.handle_signals = false;
  engine::RunHooks hooks;
  hooks.before_start = [&](engine::RunControl& s) {  // a resumed run continues the logical clock
    s.observe_time(last_time);
    for (const auto& [i, entries] : states)  // into the instances of this run's worker count
      if (Status st = restore_state(s, i, entries); !st.is_ok()) return st.with_context(s.graph().node(i).label());
    return Status();
  };
  Status resumed = engine::run_with_hooks(g, o, hooks);
  ASSERT_TRUE(resumed.is_ok()) << resumed.to_string();
  std::multiset<std::string> got, want;
  for (const auto& c : *captured) got.insert(c.key.to_string() + row_str(c.row) + std::to_string(c.diff));
  for (const auto& c : whole.changes)
    if (c.time > whole.step_times[split - 1]) want.insert(c.key.to_string() + row_str(c.row) + std::to_string(c.diff));
  EXPECT_EQ(got, want);
  EXPECT_FALSE(got.empty());
}

}  // namespace tidemark::testing
