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
    hooks.before_start = [&](engine::Scheduler&) {
      track_state(g);
      return Status();
    };
    hooks.at_end = [&](engine::Scheduler& s, bool) {
      last_time = s.last_time();
      return Status();
    };
    ASSERT_TRUE(engine::run_with_hooks(g, o, hooks).is_ok());
    for (size_t i = 0; i < g.impl().size(); ++i)
      if (g.impl().node(i).stateful()) take_state(g.impl().node(i), states[i]);
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
  for (const auto& [i, s] : states) {
    Status st = restore_state(g.impl().node(i), s);
    ASSERT_TRUE(st.is_ok()) << g.impl().node(i).label() << ": " << st.to_string();
  }
  auto captured = std::make_shared<std::vector<CapturedChange>>();
  engine::add_sink(out, std::make_unique<engine::CaptureSink>(captured));
  RunOptions o;
  o.handle_signals = false;
  engine::RunHooks hooks;
  hooks.before_start = [&](engine::Scheduler& s) {  // a resumed run continues the logical clock
    s.observe_time(last_time);
    return Status();
  };
  ASSERT_TRUE(engine::run_with_hooks(g, o, hooks).is_ok());
  std::multiset<std::string> got, want;
  for (const auto& c : *captured) got.insert(c.key.to_string() + row_str(c.row) + std::to_string(c.diff));
  for (const auto& c : whole.changes)
    if (c.time > whole.step_times[split - 1]) want.insert(c.key.to_string() + row_str(c.row) + std::to_string(c.diff));
  EXPECT_EQ(got, want);
  EXPECT_FALSE(got.empty());
}

}  // namespace tidemark::testing
