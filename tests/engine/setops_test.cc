#include <gtest/gtest.h>

#include "two_input_testing.h"

namespace tidemark::testing {
namespace {

const Schema kAB{{"a", t_str()}, {"b", t_int()}};

Update row(uint64_t key, Row r, int64_t diff = 1) { return {pool_key(key), std::move(r), diff}; }

Row random_ab(std::mt19937_64& rng) {
  static const char* words[] = {"x", "y", "z"};
  return Row{Value(words[rng() % 3]), Value(static_cast<int64_t>(rng() % 5))};
}

// Two sources over the same key pool (keys overlap, come back after retraction, change rows).
std::vector<SourceSpec> random_pair(uint64_t seed, const Schema& second, const std::function<Row(std::mt19937_64&)>& make) {
  std::mt19937_64 rng(seed);
  SourceSpec a{kAB, keyed_batches(rng, 15, 5, 8, random_ab)};
  SourceSpec b{second, keyed_batches(rng, 15, 5, 8, make)};
  return {a, b};
}

void expect_matches_recompute_for_seeds(const Schema& second, const std::function<Row(std::mt19937_64&)>& make,
                                        const BuildFn& build) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    expect_incremental_matches_recompute(random_pair(seed, second, make), build);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

Table source(Graph& g, const Schema& s) {
  return engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), s);
}

TEST(UpdateRows, OtherRowsOverrideAndAdd) {
  // Other's columns in another order: matched by name.
  Schema other{{"b", t_int()}, {"a", t_str()}};
  SourceSpec a{kAB, {{row(1, {"a", 1}), row(2, {"b", 2})}, {}, {row(2, {"b", 2}, -1)}}};
  SourceSpec b{other, {{row(2, {20, "B"}), row(3, {30, "C"})}, {row(2, {20, "B"}, -1)}, {}}};
  auto out = run_graph({a, b}, [](Graph&, std::vector<Table>& in) { return in[0].update_rows(in[1]); });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  EXPECT_EQ(changes_by_step(out),
            sorted({"0:(a, 1)+", "0:(B, 20)+", "0:(C, 30)+", "1:(B, 20)-", "1:(b, 2)+", "2:(b, 2)-"}));
}

TEST(UpdateCells, OverridesCellsOfSharedKeysOnly) {
  Schema other{{"b", t_int()}};
  SourceSpec a{kAB, {{row(1, {"a", 1}), row(2, {"b", 2})}, {}, {row(1, {"a", 1}, -1), row(1, {"A", 1})}}};
  SourceSpec b{other, {{row(1, {10}), row(3, {30})}, {row(1, {10}, -1), row(1, {11})}, {}}};
  auto out = run_graph({a, b}, [](Graph&, std::vector<Table>& in) { return in[0].update_cells(in[1]); });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  EXPECT_EQ(changes_by_step(out),
            sorted({"0:(a, 10)+", "0:(b, 2)+", "1:(a, 10)-", "1:(a, 11)+", "2:(a, 11)-", "2:(A, 11)+"}));
}

TEST(SetOps, RestrictIntersectDifferenceScenario) {
  Schema keys_only{{"other", t_int()}};
  SourceSpec a{kAB, {{row(1, {"a", 1}), row(2, {"b", 2}), row(3, {"c", 3})}, {row(4, {"d", 4})}}};
  SourceSpec b{keys_only, {{row(2, {0}), row(3, {0}), row(4, {0})}, {row(2, {0}, -1)}}};
  auto run = [&](const std::function<Table(const Table&, const Table&)>& op) {
    auto out = run_graph({a, b}, [&](Graph&, std::vector<Table>& in) { return op(in[0], in[1]); });
    EXPECT_TRUE(out.status.is_ok()) << out.status.to_string();
    return changes_by_step(out);
  };
  EXPECT_EQ(run([](const Table& x, const Table& y) { return x.intersect(y); }),
            sorted({"0:(b, 2)+", "0:(c, 3)+", "1:(b, 2)-", "1:(d, 4)+"}));
  EXPECT_EQ(run([](const Table& x, const Table& y) { return x.restrict(y); }),
            sorted({"0:(b, 2)+", "0:(c, 3)+", "1:(b, 2)-", "1:(d, 4)+"}));
  EXPECT_EQ(run([](const Table& x, const Table& y) { return x.difference(y); }), sorted({"0:(a, 1)+", "1:(b, 2)+"}));
}

// Target rows t1 -> (x), t2 -> (y); sources s11 -> t1, s12 -> t3 (absent), s13 -> None.
std::vector<SourceSpec> ix_sources() {
  Schema target{{"v", t_str()}};
  Schema src{{"p", optional(t_pointer())}};
  SourceSpec t{target, {{row(1, {"x"}), row(2, {"y"})}, {row(3, {"z"})}, {}, {row(2, {"y"}, -1), row(2, {"y2"})},
                        {row(2, {"y2"}, -1)}}};
  SourceSpec s{src, {{row(11, {pool_key(1)}), row(12, {pool_key(3)}), row(13, {Value()})},
                     {},
                     {row(11, {pool_key(1)}, -1), row(11, {pool_key(2)})},
                     {},
                     {}}};
  return {t, s};
}

TEST(Ix, FollowsPointerAndTargetChanges) {
  auto out = run_graph(ix_sources(), [](Graph&, std::vector<Table>& in) { return in[0].ix(in[1], col("p")); });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  EXPECT_EQ(changes_by_step(out), sorted({"0:(x)+", "1:(z)+", "2:(x)-", "2:(y)+", "3:(y)-", "3:(y2)+", "4:(y2)-"}));
  auto snap = final_snapshot(out);
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap.begin()->first, pool_key(12));  // keyed by the source row
}

TEST(Ix, OptionalGivesNoneRows) {
  Schema schema;
  auto out = run_graph(ix_sources(), [&](Graph&, std::vector<Table>& in) {
    Table t = in[0].ix(in[1], col("p"), /*optional=*/true);
    schema = t.schema();
    return t;
  });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  EXPECT_EQ(schema, (Schema{{"v", optional(t_str())}}));
  EXPECT_EQ(changes_by_step(out), sorted({"0:(x)+", "0:(None)+", "0:(None)+", "1:(None)-", "1:(z)+", "2:(x)-",
                                          "2:(y)+", "3:(y)-", "3:(y2)+", "4:(y2)-", "4:(None)+"}));
}

TEST(SetOps, UpdateRowsMatchesRecompute) {
  expect_matches_recompute_for_seeds(kAB, random_ab, [](Graph&, std::vector<Table>& in) { return in[0].update_rows(in[1]); });
}

TEST(SetOps, UpdateCellsMatchesRecompute) {
  expect_matches_recompute_for_seeds(Schema{{"b", t_int()}}, [](std::mt19937_64& r) { return Row{Value(int64_t(10 + r() % 3))}; },
                                     [](Graph&, std::vector<Table>& in) { return in[0].update_cells(in[1]); });
}

TEST(SetOps, DifferenceIntersectRestrictMatchRecompute) {
  Schema other{{"o", t_int()}};
  auto make = [](std::mt19937_64& r) { return Row{Value(int64_t(r() % 3))}; };
  expect_matches_recompute_for_seeds(other, make, [](Graph&, std::vector<Table>& in) { return in[0].difference(in[1]); });
  expect_matches_recompute_for_seeds(other, make, [](Graph&, std::vector<Table>& in) { return in[0].intersect(in[1]); });
  expect_matches_recompute_for_seeds(other, make, [](Graph&, std::vector<Table>& in) { return in[0].restrict(in[1]); });
}

Row random_pointer(std::mt19937_64& rng) {
  uint64_t k = rng() % 10;  // 0: None; 9, 10: keys the target rarely or never has
  return Row{k == 0 ? Value() : Value(pool_key(k)), Value(static_cast<int64_t>(rng() % 3))};
}

TEST(Ix, MatchesRecompute) {
  Schema src{{"p", optional(t_pointer())}, {"n", t_int()}};
  for (bool opt : {false, true})
    expect_matches_recompute_for_seeds(src, random_pointer, [opt](Graph&, std::vector<Table>& in) {
      // The pointer depends on the row: n == 2 redirects to the next key's row.
      Expr p = if_else(col("n") == 2, apply([](const std::vector<Value>& v) {
                         return v[0].is_none() ? Value() : Value(pool_key(v[0].as_pointer().lo % 8 + 1));
                       }, {col("p")}, optional(t_pointer())), col("p"));
      return in[0].ix(in[1], p, opt);
    });
}

TEST(SetOps, StateExportImportContinuesIdentically) {
  expect_state_continuation(random_pair(11, Schema{{"b", t_int()}},
                                        [](std::mt19937_64& r) { return Row{Value(int64_t(r() % 4))}; }),
                            [](Graph&, std::vector<Table>& in) { return in[0].update_cells(in[1]); }, 7);
  expect_state_continuation(random_pair(12, Schema{{"p", optional(t_pointer())}, {"n", t_int()}}, random_pointer),
                            [](Graph&, std::vector<Table>& in) { return in[0].ix(in[1], col("p"), true); }, 7);
}

TEST(SetOps, GraphErrorsNameOperatorAndColumn) {
  Graph g;
  Table a = source(g, kAB);
  expect_graph_error([&] { a.update_rows(source(g, Schema{{"a", t_str()}, {"c", t_int()}})); },
                     {"in update_rows", "column sets differ (a, b vs a, c)"});
  expect_graph_error([&] { a.update_rows(source(g, Schema{{"a", t_str()}, {"b", t_str()}})); },
                     {"in update_rows", "column 'b' is int in this table and str in the other"});
  expect_graph_error([&] { a.update_cells(source(g, Schema{{"zz", t_int()}})); },
                     {"in update_cells", "column 'zz' of the other table is not a column of this table"});
  expect_graph_error([&] { a.ix(a, col("b")); }, {"in ix", "must be a pointer, got int"});
  expect_graph_error([&] { a.ix(a, col("nope")); }, {"in ix", "unknown column 'nope'"});
  Graph other;
  expect_graph_error([&] { a.difference(source(other, kAB)); }, {"in difference", "different graphs"});
}

}  // namespace
}  // namespace tidemark::testing
