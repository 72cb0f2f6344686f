#include <gtest/gtest.h>

#include "engine/scheduler.h"
#include "harness.h"

namespace tidemark::testing {
namespace {

Schema kSchema{{"g", t_str()}, {"v", t_int()}, {"f", t_float()}};

Row random_row(std::mt19937_64& rng) {
  static const char* groups[] = {"a", "b", "c", "d"};
  return Row{Value(groups[rng() % 4]), Value(static_cast<int64_t>(rng() % 10)),
             Value(static_cast<double>(rng() % 8) / 4.0)};
}

TEST(GroupBy, CountsWordsIncrementally) {
  SourceSpec s{Schema{{"word", t_str()}},
               {{{Key{1, 0}, {Value("a")}, 1}, {Key{2, 0}, {Value("b")}, 1}},
                {{Key{3, 0}, {Value("a")}, 1}},
                {{Key{1, 0}, {Value("a")}, -1}, {Key{2, 0}, {Value("b")}, -1}}}};
  auto out = run_graph({s}, [](Graph&, std::vector<Table>& in) {
    return in[0].groupby({"word"}).reduce({{"word", col("word")}, {"count", reducers::count()}});
  });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  ASSERT_EQ(out.step_times.size(), 3u);
  std::vector<std::string> got;
  for (const auto& c : out.changes) {
    size_t step = std::find(out.step_times.begin(), out.step_times.end(), c.time) - out.step_times.begin();
    got.push_back(std::to_string(step) + ":" + row_str(c.row) + (c.diff > 0 ? "+" : "-"));
  }
  std::sort(got.begin(), got.end());
  std::vector<std::string> want = {"0:(a, 1)+", "0:(b, 1)+", "1:(a, 1)-", "1:(a, 2)+", "2:(a, 1)+", "2:(a, 2)-",
                                   "2:(b, 1)-"};
  EXPECT_EQ(got, want);
}

TEST(GroupBy, EveryReducerMatchesRecompute) {
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    std::mt19937_64 rng(seed);
    SourceSpec s{kSchema, random_batches(rng, 25, 6, random_row)};
    expect_incremental_matches_recompute({s}, [](Graph&, std::vector<Table>& in) {
      return in[0].groupby({"g"}).reduce({
          {"g", col("g")},
          {"count", reducers::count()},
          {"sum", reducers::sum(col("v"))},
          {"fsum", reducers::sum(col("f"))},
          {"min", reducers::min(col("v"))},
          {"max", reducers::max(col("v"))},
          {"avg", reducers::avg(col("v"))},
          {"distinct", reducers::count_distinct(col("v"))},
          {"any", reducers::any(col("v"))},
          {"tuple", reducers::tuple(col("v"))},
          {"sorted", reducers::sorted_tuple(col("v"))},
          {"twice", reducers::count() * 2 + reducers::max(col("v"))},
      });
    });
    if (HasFatalFailure()) return;
  }
}

// count, sum and avg only: at several workers each worker pre-aggregates the rows it reads
// and only per-group partials cross the exchange (Node::combines). Many rows per step over few
// groups, so a worker's rows of a group insert and retract in the same step and cancel out;
// optional ints (None is skipped by sum/avg), floats, durations, a computed argument, groups by
// an int (the fixed-width key path), by two columns and over the whole table.
TEST(GroupBy, CountSumAndAvgCombinedAcrossWorkersMatchRecompute) {
  const Schema schema{{"g", t_int()}, {"h", t_str()}, {"v", Type{DType::kInt, true}}, {"f", t_float()},
                      {"d", Type{DType::kDuration}}};
  auto row = [](std::mt19937_64& rng) {
    int64_t v = static_cast<int64_t>(rng() % 100) - 50;
    return Row{Value(static_cast<int64_t>(rng() % 5)), Value(rng() % 2 ? "x" : "y"),
               rng() % 5 == 0 ? Value() : Value(v), Value(static_cast<double>(rng() % 16) / 8.0),
               Value(Duration{static_cast<int64_t>(rng() % 1000)})};
  };
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    SourceSpec s{schema, random_batches(rng, 12, 60, row, 0.45)};
    auto reducers_of = [](const std::vector<NamedExpr>& group_outputs) {
      std::vector<NamedExpr> o = group_outputs;
      o.push_back({"n", reducers::count()});
      o.push_back({"s", reducers::sum(col("v"))});
      o.push_back({"fs", reducers::sum(col("f"))});
      o.push_back({"a", reducers::avg(col("v"))});
      o.push_back({"ds", reducers::sum(col("d"))});
      o.push_back({"e", reducers::sum(col("g") * 3 + 1)});
      o.push_back({"mix", reducers::count() * 10 + reducers::sum(col("g"))});
      return o;
    };
    expect_incremental_matches_recompute({s}, [&](Graph&, std::vector<Table>& in) {
      return in[0].groupby({"g"}).reduce(reducers_of({{"g", col("g")}}));
    });
    if (HasFatalFailure()) return;
    expect_incremental_matches_recompute({s}, [&](Graph&, std::vector<Table>& in) {
      return in[0].groupby({"h", "g"}).reduce(reducers_of({{"h", col("h")}, {"g", col("g")}}));
    });
    if (HasFatalFailure()) return;
    expect_incremental_matches_recompute({s}, [&](Graph&, std::vector<Table>& in) { return in[0].reduce(reducers_of({})); });
    if (HasFatalFailure()) return;
  }
}

// More groups than a worker's combiner keeps between times (65,536 slots for groups of other
// owners): at 2 and 3 workers the combiner frees all its foreign slots after a time and reuses
// them in the next, for other groups, while groups die and come back.
TEST(GroupBy, CombinerBeyondItsGroupLimitMatchesRecompute) {
  const Schema schema{{"g", t_int()}, {"v", t_int()}};
  std::mt19937_64 rng(7);
  // Five times of 100k inserted rows over 300k group values, each time after the first also
  // retracting 40k live rows: every worker's combiner meets more than 65,536 foreign groups by the fourth time and starts over.
  std::vector<Batch> batches;
  std::vector<std::pair<Key, Row>> live;
  uint64_t next_key = 1;
  for (int step = 0; step < 5; ++step) {
    Batch b;
    for (int i = 0; i < 40'000 && step > 0; ++i) {
      const size_t j = rng() % live.size();
      b.push_back({live[j].first, live[j].second, -1});
      live[j] = live.back();
      live.pop_back();
    }
    for (int i = 0; i < 100'000; ++i) {
      Row r{Value(static_cast<int64_t>(rng() % 300'000)), Value(static_cast<int64_t>(rng() % 100))};
      Key k{next_key++, 3};
      b.push_back({k, r, 1});
      live.emplace_back(k, r);
    }
    batches.push_back(std::move(b));
  }
  expect_incremental_matches_recompute({SourceSpec{schema, batches}}, [](Graph&, std::vector<Table>& in) {
    return in[0].groupby({"g"}).reduce({{"g", col("g")}, {"n", reducers::count()}, {"s", reducers::sum(col("v"))}});
  });
}

// One int grouping column: groups are found by the int itself (an index by value beside the
// index by group key). An optional column mixes None (found by its key) with ints; groups die
// (all rows retracted) and come back, with count/sum (combined across workers) and with
// reducers fed per row; a float column with integral values must not share the ints' groups.
TEST(GroupBy, SingleIntGroupColumnWithNoneAndGroupsComingAndGoing) {
  const Schema schema{{"g", Type{DType::kInt, true}}, {"v", t_int()}, {"x", t_float()}};
  auto row = [](std::mt19937_64& rng) {
    const int64_t g = static_cast<int64_t>(rng() % 40) - 20;
    return Row{rng() % 7 == 0 ? Value() : Value(g * (rng() % 3 == 0 ? int64_t{1} << 40 : 1)),
               Value(static_cast<int64_t>(rng() % 100)), Value(static_cast<double>(rng() % 4))};
  };
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    SourceSpec s{schema, random_batches(rng, 30, 40, row, 0.5)};
    expect_incremental_matches_recompute({s}, [](Graph&, std::vector<Table>& in) {
      return in[0].groupby({"g"}).reduce({{"g", col("g")}, {"n", reducers::count()}, {"s", reducers::sum(col("v"))}});
    });
    if (HasFatalFailure()) return;
    expect_incremental_matches_recompute({s}, [](Graph&, std::vector<Table>& in) {
      return in[0].groupby({"g"}).reduce({{"g", col("g")}, {"n", reducers::count()}, {"m", reducers::max(col("v"))}});
    });
    if (HasFatalFailure()) return;
    expect_incremental_matches_recompute({s}, [](Graph&, std::vector<Table>& in) {
      return in[0].groupby({"x"}).reduce({{"x", col("x")}, {"n", reducers::count()}, {"s", reducers::sum(col("v"))}});
    });
    if (HasFatalFailure()) return;
  }
}

// One string grouping column: strings of up to 15 bytes find their group by their inline
// bytes (an index beside the index by group key), longer ones by their key. Strings one byte
// apart in length (around the 15-byte limit), with embedded NULs, empty, None; groups dying and
// coming back. Checked against recomputation and against counts and sums computed here from
// the live rows (the recomputation goes through the same indexes).
TEST(GroupBy, SingleStringGroupColumnShortAndLongStrings) {
  const Schema schema{{"g", Type{DType::kString, true}}, {"v", t_int()}};
  const std::vector<std::string> words = {"",
                                          std::string(1, '\0'),
                                          std::string("a\0", 2),
                                          "a",
                                          "ab",
                                          std::string(14, 'x'),
                                          std::string(15, 'x'),
                                          std::string(16, 'x'),
                                          std::string(15, 'x') + '\0',
                                          "fifteen-bytes!!",
                                          "sixteen-bytes!!!",
                                          "w12345",
                                          "w12346",
                                          "a much longer word than any inline text"};
  auto row = [&](std::mt19937_64& rng) {
    const size_t i = rng() % (words.size() + 1);
    return Row{i == words.size() ? Value() : Value(words[i]), Value(static_cast<int64_t>(rng() % 100))};
  };
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    SourceSpec s{schema, random_batches(rng, 30, 60, row, 0.5)};
    auto build = [](Graph&, std::vector<Table>& in) {
      return in[0].groupby({"g"}).reduce({{"g", col("g")}, {"n", reducers::count()}, {"s", reducers::sum(col("v"))}});
    };
    expect_incremental_matches_recompute({s}, build);
    if (HasFatalFailure()) return;
    // Expected from the live rows: count and sum per group value.
    std::map<Key, std::pair<Row, int64_t>> live;  // row key -> (row, multiplicity)
    for (const Batch& b : s.batches)
      for (const Update& u : b) {
        auto& e = live[u.key];
        e.first = u.row;
        e.second += u.diff;
      }
    std::map<std::string, std::pair<int64_t, int64_t>> expected;  // group (None as "<none>") -> (count, sum)
    for (const auto& [k, e] : live) {
      if (e.second == 0) continue;
      const std::string g = e.first[0].is_none() ? std::string("<none>") : std::string(e.first[0].as_string());
      expected[g].first += e.second;
      expected[g].second += e.second * e.first[1].as_int();
    }
    for (size_t workers : kWorkerCounts) {
      RunOutput out = run_graph({s}, build, RunOptions{}.pipeline_slice_rows, workers);
      ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
      std::map<std::string, std::pair<int64_t, int64_t>> got;
      for (const auto& [k, r] : final_snapshot(out)) {
        const std::string g = r[0].is_none() ? std::string("<none>") : std::string(r[0].as_string());
        EXPECT_TRUE(got.emplace(g, std::make_pair(r[1].as_int(), r[2].as_int())).second) << "group twice: " << g;
      }
      EXPECT_EQ(got, expected) << workers << " workers";
    }
  }
}

TEST(GroupBy, EarliestAndLatestFollowArrival) {
  SourceSpec s{kSchema,
               {{{Key{1, 0}, {Value("a"), Value(5), Value(0.0)}, 1}},
                {{Key{2, 0}, {Value("a"), Value(7), Value(0.0)}, 1}},
                {{Key{1, 0}, {Value("a"), Value(5), Value(0.0)}, -1}}}};
  auto out = run_graph({s}, [](Graph&, std::vector<Table>& in) {
    return in[0].groupby({"g"}).reduce({{"e", reducers::earliest(col("v"))}, {"l", reducers::latest(col("v"))}});
  });
  ASSERT_TRUE(out.status.is_ok());
  auto snap = final_snapshot(out);
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(row_str(snap.begin()->second), "(7, 7)");
}

TEST(GroupBy, WholeTableReduce) {
  std::mt19937_64 rng(42);
  SourceSpec s{kSchema, random_batches(rng, 30, 5, random_row, 0.45)};
  expect_incremental_matches_recompute({s}, [](Graph&, std::vector<Table>& in) {
    return in[0].reduce({{"n", reducers::count()}, {"s", reducers::sum(col("v"))}});
  });
}

TEST(GroupBy, GraphErrorsNameColumnAndOperator) {
  Graph g;
  Table t = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), kSchema);
  try {
    t.groupby({"nope"}).reduce({{"c", reducers::count()}});
    FAIL() << "expected GraphError";
  } catch (const GraphError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown grouping column 'nope'"), std::string::npos) << e.what();
  }
  try {
    t.groupby({"g"}).reduce({{"v", col("v")}});
    FAIL() << "expected GraphError";
  } catch (const GraphError& e) {
    EXPECT_NE(std::string(e.what()).find("'v' is not a grouping column"), std::string::npos) << e.what();
  }
  try {
    t.groupby({"g"}).reduce({{"s", reducers::sum(col("g"))}});
    FAIL() << "expected GraphError";
  } catch (const GraphError& e) {
    EXPECT_NE(std::string(e.what()).find("sum() needs a number"), std::string::npos) << e.what();
  }
}

TEST(GroupBy, StateExportImportContinuesIdentically) {
  // Run the first half, export the groupby state, import it into a fresh graph and feed the
  // second half: the second half's output must equal the uninterrupted run's.
  std::mt19937_64 rng(7);
  auto batches = random_batches(rng, 20, 6, random_row);
  auto build = [](Graph&, std::vector<Table>& in) {
    return in[0].groupby({"g"}).reduce({{"g", col("g")}, {"n", reducers::count()}, {"m", reducers::max(col("v"))},
                                        {"l", reducers::latest(col("v"))}});
  };
  auto whole = run_graph({{kSchema, batches}}, build);
  ASSERT_TRUE(whole.status.is_ok());

  std::vector<Batch> first(batches.begin(), batches.begin() + 10), second(batches.begin() + 10, batches.end());
  StateEntries state;
  engine::Time last_time = 0;
  {
    Graph g;
    std::vector<Table> in{engine::add_source(g, std::make_unique<engine::BatchesSource>(first), kSchema)};
    Table out = build(g, in);
    RunOptions o;
    o.handle_signals = false;
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
  {
    Graph g;
    std::vector<Table> in{engine::add_source(g, std::make_unique<engine::BatchesSource>(second), kSchema)};
    Table out = build(g, in);
    EXPECT_FALSE(restore_state(g.impl().node(out.node()), {{state.begin()->first, "\x05garbage"}}).is_ok());
  }
  Graph g;
  std::vector<Table> in{engine::add_source(g, std::make_unique<engine::BatchesSource>(second), kSchema)};
  Table out = build(g, in);
  auto captured = std::make_shared<std::vector<CapturedChange>>();
  engine::add_sink(out, std::make_unique<engine::CaptureSink>(captured));
  RunOptions o;
  o.handle_signals = false;
  // A resumed run continues the logical clock after the last committed time.
  engine::RunHooks hooks;
  hooks.before_start = [&](engine::RunControl& s) {
    s.observe_time(last_time);
    return restore_state(s, out.node(), state);  // into the instances of this run's worker count
  };
  Status resumed = engine::run_with_hooks(g, o, hooks);
  ASSERT_TRUE(resumed.is_ok()) << resumed.to_string();
  // Compare multisets of (row, diff) of the second half.
  std::multiset<std::string> got, want;
  for (const auto& c : *captured) got.insert(row_str(c.row) + std::to_string(c.diff));
  for (const auto& c : whole.changes)
    if (c.time > whole.step_times[9]) want.insert(row_str(c.row) + std::to_string(c.diff));
  EXPECT_EQ(got, want);
  EXPECT_FALSE(got.empty());
}

}  // namespace
}  // namespace tidemark::testing
