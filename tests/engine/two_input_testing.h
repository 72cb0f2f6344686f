// Helpers for testing two-input operators (join, set operations, ix): random batches over a
// small key pool (so two sources share keys), step-labelled change lists, and a state
// export/import continuation check.
#pragma once

#include <set>

#include "engine/scheduler.h"
#include "harness.h"

namespace tidemark::testing {

inline Key pool_key(uint64_t i) { return Key{i, 0x5eed}; }

// Keys are drawn from pool_key(1..key_pool): an absent key is inserted, a live key is
// retracted or gets a new row (retraction and insertion in one batch). Each key changes at
// most once per step and every step has at least one change.
inline std::vector<Batch> keyed_batches(std::mt19937_64& rng, size_t steps, size_t max_per_step, uint64_t key_pool,
                                        const std::function<Row(std::mt19937_64&)>& make_row) {
  std::vector<Batch> out;
  std::map<uint64_t, Row> live;
  for (size_t s = 0; s < steps; ++s) {
    Batch b;
    std::set<uint64_t> used;
    size_t n = 1 + rng() % max_per_step;
    for (size_t i = 0; i < n; ++i) {
      uint64_t k = 1 + rng() % key_pool;
      if (!used.insert(k).second) continue;
      auto it = live.find(k);
      if (it == live.end()) {
        Row r = make_row(rng);
        b.push_back({pool_key(k), r, 1});
        live.emplace(k, std::move(r));
        continue;
      }
      b.push_back({pool_key(k), it->second, -1});
      Row r = make_row(rng);
      if (rng() % 2 == 0 || r == it->second) {
        live.erase(it);
      } else {
        b.push_back({pool_key(k), r, 1});
        it->second = std::move(r);
      }
    }
    out.push_back(std::move(b));
  }
  return out;
}

// "step:(row)+" / "step:(row)-" for every change, sorted.
inline std::vector<std::string> changes_by_step(const RunOutput& out) {
  std::vector<std::string> got;
  for (const auto& c : out.changes) {
    size_t step = std::find(out.step_times.begin(), out.step_times.end(), c.time) - out.step_times.begin();
    got.push_back(std::to_string(step) + ":" + row_str(c.row) + (c.diff > 0 ? "+" : "-"));
  }
  std::sort(got.begin(), got.end());
  return got;
}

inline std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// Runs the first `split` steps with state tracking, takes the output node's entries, restores
// them into a fresh graph fed with the remaining steps, and expects the same changes as the
// uninterrupted run. A garbage or truncated entry value is rejected.
inline void expect_state_continuation(const std::vector<SourceSpec>& sources, const BuildFn& build, size_t split) {
  auto whole = run_graph(sources, build);
  ASSERT_TRUE(whole.status.is_ok()) << whole.status.to_string();
  ASSERT_GT(whole.step_times.size(), split);
  auto part = [&](bool first) {
    std::vector<SourceSpec> specs;
    for (const auto& s : sources) {
      auto mid = s.batches.begin() + static_cast<std::ptrdiff_t>(split);
      specs.push_back({s.schema, first ? std::vector<Batch>(s.batches.begin(), mid) : std::vector<Batch>(mid, s.batches.end())});
    }
    return specs;
  };
  auto add_inputs = [](Graph& g, const std::vector<SourceSpec>& specs) {
    std::vector<Table> in;
    for (const auto& s : specs) in.push_back(engine::add_source(g, std::make_unique<engine::BatchesSource>(s.batches), s.schema));
    return in;
  };
  RunOptions o;
  o.handle_signals = false;
  StateEntries state;
  engine::Time last_time = 0;
  {
    Graph g;
    auto in = add_inputs(g, part(true));
    Table out = build(g, in);
    engine::RunHooks hooks;
    hooks.before_start = [&](engine::RunControl& s) {
      track_state(s);
      return Status();
    };
    hooks.at_end = [&](engine::RunControl& s, bool) {
      last_time = s.last_time();
      take_state(s, out.node(), state);  // every worker's instance
      return Status();
    };
    ASSERT_TRUE(engine::run_with_hooks(g, o, hooks).is_ok());
    ASSERT_TRUE(g.impl().node(out.node()).stateful());
  }
  ASSERT_FALSE(state.empty());
  const auto& [some_key, some_value] = *state.begin();
  for (const std::string& bad : {std::string("\x05garbage"), some_value.substr(0, some_value.size() - 1)}) {
    Graph g;
    auto in = add_inputs(g, part(false));
    Table out = build(g, in);
    EXPECT_FALSE(restore_state(g.impl().node(out.node()), {{some_key, bad}}).is_ok());
  }
  Graph g;
  auto in = add_inputs(g, part(false));
  Table out = build(g, in);
  auto captured = std::make_shared<std::vector<CapturedChange>>();
  engine::add_sink(out, std::make_unique<engine::CaptureSink>(captured));
  engine::RunHooks hooks;
  hooks.before_start = [&](engine::RunControl& s) {
    s.observe_time(last_time);
    return restore_state(s, out.node(), state);  // into the instances of this run's worker count
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

inline void expect_graph_error(const std::function<void()>& build, const std::vector<std::string>& fragments) {
  try {
    build();
    ADD_FAILURE() << "expected GraphError";
  } catch (const GraphError& e) {
    for (const auto& f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
  }
}

}  // namespace tidemark::testing
