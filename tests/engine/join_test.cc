#include <gtest/gtest.h>

#include "two_input_testing.h"

namespace tidemark::testing {
namespace {

const Schema kLeft{{"k", t_int()}, {"v", t_int()}};
const Schema kRight{{"k", t_int()}, {"w", t_int()}};

Update row(uint64_t key, Row r, int64_t diff = 1) { return {Key{key, 0}, std::move(r), diff}; }

Table select_kvw(const JoinResult& j) { return j.select({{"k", left("k")}, {"v", col("v")}, {"w", col("w")}}); }

TEST(Join, ReferenceScenario) {
  SourceSpec l{kLeft, {{row(1, {1, 2}), row(2, {2, 4})}, {row(3, {3, 3})}, {}}};
  SourceSpec r{kRight, {{row(11, {1, 3})}, {row(12, {2, 6}), row(13, {1, 4})}, {row(11, {1, 3}, -1)}}};
  auto out = run_graph({l, r}, [](Graph&, std::vector<Table>& in) { return select_kvw(in[0].join(in[1], {{"k", "k"}})); });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  EXPECT_EQ(changes_by_step(out), sorted({"0:(1, 2, 3)+", "1:(2, 4, 6)+", "1:(1, 2, 4)+", "2:(1, 2, 3)-"}));
}

// Left rows: 1 -> k=1, 2 -> k=None; right rows: 11 -> k=1, 12 -> k=None (never matches).
std::vector<SourceSpec> outer_sources() {
  Schema ls{{"k", optional(t_int())}, {"s", t_str()}};
  Schema rs{{"k", optional(t_int())}, {"t", t_str()}};
  SourceSpec l{ls, {{row(1, {1, "a"}), row(2, {Value(), "b"})}, {}, {}, {row(1, {1, "a"}, -1), row(1, {1, "A"})}}};
  SourceSpec r{rs, {{}, {row(11, {1, "x"}), row(12, {Value(), "y"})}, {row(11, {1, "x"}, -1)}, {row(13, {1, "z"})}}};
  return {l, r};
}

std::vector<std::string> run_outer(JoinMode mode) {
  auto out = run_graph(outer_sources(), [mode](Graph&, std::vector<Table>& in) {
    return in[0].join(in[1], {{"k", "k"}}, mode).select({{"s", col("s")}, {"t", col("t")}});
  });
  EXPECT_TRUE(out.status.is_ok()) << out.status.to_string();
  return changes_by_step(out);
}

TEST(Join, InnerLeftRightOuterWithNoneKeys) {
  EXPECT_EQ(run_outer(JoinMode::kInner), sorted({"1:(a, x)+", "2:(a, x)-", "3:(A, z)+"}));
  EXPECT_EQ(run_outer(JoinMode::kLeft), sorted({"0:(a, None)+", "0:(b, None)+", "1:(a, None)-", "1:(a, x)+",
                                                "2:(a, x)-", "2:(a, None)+", "3:(a, None)-", "3:(A, z)+"}));
  EXPECT_EQ(run_outer(JoinMode::kRight),
            sorted({"1:(a, x)+", "1:(None, y)+", "2:(a, x)-", "3:(A, z)+"}));
  EXPECT_EQ(run_outer(JoinMode::kOuter),
            sorted({"0:(a, None)+", "0:(b, None)+", "1:(a, None)-", "1:(a, x)+", "1:(None, y)+", "2:(a, x)-",
                    "2:(a, None)+", "3:(a, None)-", "3:(A, z)+"}));
}

TEST(Join, OutputKeysIdsAndOptionalTypes) {
  SourceSpec l{kLeft, {{row(1, {1, 10}), row(2, {2, 20})}}};
  SourceSpec r{kRight, {{row(11, {1, 30}), row(12, {3, 40})}}};
  Schema schema;
  auto out = run_graph({l, r}, [&](Graph&, std::vector<Table>& in) {
    Table t = in[0].join_outer(in[1], {{"k", "k"}}).select({{"lid", left_id()}, {"rid", right_id()}, {"w", col("w")}});
    schema = t.schema();
    return t;
  });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  EXPECT_EQ(schema[2].type, optional(t_int()));
  auto snap = final_snapshot(out);
  Key l1{1, 0}, l2{2, 0}, r1{11, 0}, r2{12, 0};
  ASSERT_EQ(snap.size(), 3u);
  EXPECT_EQ(row_str(snap.at(key_combine(l1, r1))), row_str({l1, r1, 30}));
  EXPECT_EQ(row_str(snap.at(key_combine(l2, Key{}))), row_str({l2, Value(), Value()}));
  EXPECT_EQ(row_str(snap.at(key_combine(Key{}, r2))), row_str({Value(), r2, 40}));

  Graph g;
  Table a = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), kLeft);
  Table b = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), kRight);
  Table inner = a.join(b, {{"k", "k"}}).select({{"v", col("v")}, {"w", col("w")}});
  EXPECT_EQ(inner.schema(), (Schema{{"v", t_int()}, {"w", t_int()}}));
  Table lj = a.join_left(b, {{"k", "k"}}).select({{"v", col("v")}, {"w", col("w")}});
  EXPECT_EQ(lj.schema(), (Schema{{"v", t_int()}, {"w", optional(t_int())}}));
  Table rj = a.join_right(b, {{"k", "k"}}).select({{"v", col("v")}, {"w", col("w")}});
  EXPECT_EQ(rj.schema(), (Schema{{"v", optional(t_int())}, {"w", t_int()}}));
}

TEST(Join, IntMatchesIntegralFloatAndMultiColumnOn) {
  Schema rs{{"k", t_float()}, {"w", t_int()}};
  SourceSpec l{kLeft, {{row(1, {1, 5}), row(2, {2, 5})}}};
  SourceSpec r{rs, {{row(11, {1.0, 5}), row(12, {2.5, 5}), row(13, {2.0, 6})}}};
  auto out = run_graph({l, r}, [](Graph&, std::vector<Table>& in) {
    return in[0].join(in[1], {{"k", "k"}, {"v", "w"}}).select({{"v", col("v")}, {"rk", right("k")}});
  });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  EXPECT_EQ(changes_by_step(out), std::vector<std::string>{"0:(5, 1.0)+"});
}

Row random_side_row(std::mt19937_64& rng) {
  uint64_t k = rng() % 5;  // 0 stands for None
  return Row{k == 0 ? Value() : Value(static_cast<int64_t>(k)), Value(static_cast<int64_t>(rng() % 100))};
}

TEST(Join, EveryModeMatchesRecompute) {
  Schema ls{{"k", optional(t_int())}, {"v", t_int()}};
  Schema rs{{"k", optional(t_int())}, {"w", t_int()}};
  for (JoinMode mode : {JoinMode::kInner, JoinMode::kLeft, JoinMode::kRight, JoinMode::kOuter})
    for (uint64_t seed = 1; seed <= 4; ++seed) {
      SCOPED_TRACE("mode " + std::to_string(static_cast<int>(mode)) + " seed " + std::to_string(seed));
      std::mt19937_64 rng(seed);
      SourceSpec l{ls, keyed_batches(rng, 15, 5, 8, random_side_row)};
      SourceSpec r{rs, keyed_batches(rng, 15, 5, 8, random_side_row)};
      expect_incremental_matches_recompute({l, r}, [mode](Graph&, std::vector<Table>& in) {
        return in[0].join(in[1], {{"k", "k"}}, mode).select({{"lid", left_id()}, {"rid", right_id()}, {"oid", id()},
                                                             {"lk", left("k")}, {"v", col("v")}, {"w", col("w")}});
      });
      if (HasFatalFailure()) return;
    }
}

TEST(Join, CrossJoinWithEmptyOnMatchesRecompute) {
  std::mt19937_64 rng(9);
  SourceSpec l{kLeft, keyed_batches(rng, 12, 3, 5, [](std::mt19937_64& r) { return Row{1, Value(int64_t(r() % 9))}; })};
  SourceSpec r{kRight, keyed_batches(rng, 12, 3, 5, [](std::mt19937_64& r) { return Row{2, Value(int64_t(r() % 9))}; })};
  expect_incremental_matches_recompute({l, r}, [](Graph&, std::vector<Table>& in) {
    return in[0].join_left(in[1], {}).select({{"v", col("v")}, {"w", col("w")}});
  });
}

TEST(Join, NonDeterministicOutputsRetractWhatWasEmitted) {
  std::mt19937_64 rng(3);
  Schema ls{{"k", optional(t_int())}, {"v", t_int()}};
  Schema rs{{"k", optional(t_int())}, {"w", t_int()}};
  SourceSpec l{ls, keyed_batches(rng, 15, 5, 6, random_side_row)};
  SourceSpec r{rs, keyed_batches(rng, 15, 5, 6, random_side_row)};
  auto counter = std::make_shared<int64_t>(0);
  auto out = run_graph({l, r}, [counter](Graph&, std::vector<Table>& in) {
    // Not thread-safe (a shared counter): marked so, its calls are serialized at several workers.
    Expr tick = apply([counter](const std::vector<Value>&) { return Value((*counter)++); }, {}, t_int(),
                      ApplyOptions{.deterministic = false, .thread_safe = false});
    return in[0].join_outer(in[1], {{"k", "k"}}).select({{"v", col("v")}, {"n", tick}});
  });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  final_snapshot(out);  // fails on a retraction that differs from the emitted row
  EXPECT_GT(*counter, 10);
}

TEST(Join, StateExportImportContinuesIdentically) {
  Schema ls{{"k", optional(t_int())}, {"v", t_int()}};
  Schema rs{{"k", optional(t_int())}, {"w", t_int()}};
  std::mt19937_64 rng(5);
  SourceSpec l{ls, keyed_batches(rng, 16, 5, 8, random_side_row)};
  SourceSpec r{rs, keyed_batches(rng, 16, 5, 8, random_side_row)};
  expect_state_continuation({l, r}, [](Graph&, std::vector<Table>& in) {
    return in[0].join_outer(in[1], {{"k", "k"}}).select({{"v", col("v")}, {"w", col("w")}});
  }, 8);
}

// Times of thousands of updates: the join groups a time's updates by bucket with a radix sort
// (below 512 updates it uses std::sort), and a restore stages thousands of stored rows the same
// way. Many rows share a join value, so chains reach RowStore::kLongChain and are indexed by
// row key, and rows move between such buckets within a time (an insertion into the new bucket
// used to find the row still in the side's index under its old bucket: a multiplicity error).
TEST(Join, LargeTimesMatchRecomputeAndRestore) {
  Schema ls{{"k", optional(t_int())}, {"v", t_int()}};
  Schema rs{{"k", optional(t_int())}, {"w", t_int()}};
  auto side_row = [](std::mt19937_64& r) {
    return Row{r() % 50 == 0 ? Value() : Value(static_cast<int64_t>(r() % 700)), Value(static_cast<int64_t>(r() % 5))};
  };
  std::mt19937_64 rng(17);
  SourceSpec l{ls, keyed_batches(rng, 5, 4000, 5000, side_row)};
  SourceSpec r{rs, keyed_batches(rng, 5, 4000, 5000, side_row)};
  auto build = [](Graph&, std::vector<Table>& in) {
    return in[0].join_outer(in[1], {{"k", "k"}}).select({{"k", left("k")}, {"v", col("v")}, {"w", col("w")}});
  };
  expect_incremental_matches_recompute({l, r}, build);
  if (HasFatalFailure()) return;
  expect_state_continuation({l, r}, build, 2);
}

TEST(Join, GraphErrorsNameOperatorAndColumn) {
  Graph g;
  Table a = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), kLeft);
  Table b = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}),
                               Schema{{"k", t_int()}, {"name", t_str()}});
  expect_graph_error([&] { a.join(b, {{"nope", "k"}}); }, {"in join", "unknown column 'nope' in the left table"});
  expect_graph_error([&] { a.join(b, {{"k", "kk"}}); }, {"in join", "unknown column 'kk' in the right table"});
  expect_graph_error([&] { a.join(b, {{"v", "name"}}); }, {"in join", "'v' (int)", "'name' (str)"});
  expect_graph_error([&] { a.join(b, {{"k", "k"}}).select({{"k", col("k")}}); }, {"join", "'k' is ambiguous"});
  expect_graph_error([&] { a.join(b, {{"k", "k"}}).select({{"x", right("v")}}); },
                     {"join", "unknown column 'v' in the right table"});
}

}  // namespace
}  // namespace tidemark::testing
