#include <gtest/gtest.h>

#include "harness.h"
#include "op_test_util.h"

namespace tidemark::testing {
namespace {

Schema kSchema{{"g", t_str()}, {"v", t_int()}};

// Rows keyed by their value, so pointers read back as values.
Update row(int64_t v, int64_t diff = 1) { return {Key{static_cast<uint64_t>(v), 0}, {Value("a"), Value(v)}, diff}; }

std::string ptr(const Value& p) { return p.is_none() ? "-" : std::to_string(p.as_pointer().lo); }

std::string describe(const CapturedChange& c) {
  return std::to_string(c.key.lo) + "(" + ptr(c.row[0]) + "," + ptr(c.row[1]) + ")";
}

Row random_row(std::mt19937_64& rng) {
  static const char* groups[] = {"a", "b", "c"};
  return Row{Value(groups[rng() % 3]), Value(static_cast<int64_t>(rng() % 8))};  // ties are common
}

TEST(Sort, EmitsOnlyTheNeighboursThatChange) {
  SourceSpec s{kSchema, {{row(1), row(6)}, {row(3)}, {row(4), row(5)}, {row(3, -1)}, {row(2)}}};
  auto out = run_graph({s}, [](Graph&, std::vector<Table>& in) { return in[0].sort(col("v")); });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  std::vector<std::string> want = {
      "0:1(-,6)+", "0:6(1,-)+",                                          // [1, 6]
      "1:1(-,3)+", "1:1(-,6)-", "1:3(1,6)+", "1:6(1,-)-", "1:6(3,-)+",   // add 3
      "2:3(1,4)+", "2:3(1,6)-", "2:4(3,5)+", "2:5(4,6)+", "2:6(3,-)-", "2:6(5,-)+",  // add 4, 5
      "3:1(-,3)-", "3:1(-,4)+", "3:3(1,4)-", "3:4(1,5)+", "3:4(3,5)-",   // delete 3
      "4:1(-,2)+", "4:1(-,4)-", "4:2(1,4)+", "4:4(1,5)-", "4:4(2,5)+",   // add 2
  };
  std::sort(want.begin(), want.end());
  EXPECT_EQ(step_changes(out, describe), want);
}

TEST(Sort, InstancesAreIndependentAndTiesBreakByKey) {
  auto r = [](uint64_t k, const char* g, int64_t v) { return Update{Key{k, 0}, {Value(g), Value(v)}, 1}; };
  SourceSpec s{kSchema, {{r(1, "a", 5), r(2, "b", 5), r(3, "a", 5), r(4, "b", 1)}}};
  auto out = run_graph({s}, [](Graph&, std::vector<Table>& in) { return in[0].sort(col("v"), col("g")); });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  std::vector<std::string> want = {"0:1(-,3)+", "0:2(4,-)+", "0:3(1,-)+", "0:4(-,2)+"};
  EXPECT_EQ(step_changes(out, describe), want);
}

TEST(Sort, IncrementalMatchesRecomputeWithInstances) {
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    std::mt19937_64 rng(seed);
    SourceSpec s{kSchema, random_batches(rng, 25, 6, random_row, 0.4)};
    expect_incremental_matches_recompute({s}, [](Graph&, std::vector<Table>& in) {
      return in[0].sort(col("v") * -1, col("g"));
    });
    if (HasFatalFailure()) return;
  }
}

TEST(Sort, StateExportImportContinuesIdentically) {
  std::mt19937_64 rng(11);
  auto batches = random_batches(rng, 20, 6, random_row, 0.4);
  expect_state_continuation(kSchema, batches, 10,
                            [](Graph&, std::vector<Table>& in) { return in[0].sort(col("v"), col("g")); });
}

TEST(Sort, GraphErrorsNameTheColumn) {
  Graph g;
  Table t = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), kSchema);
  EXPECT_THROW(
      {
        try {
          t.sort(col("nope"));
        } catch (const GraphError& e) {
          EXPECT_NE(std::string(e.what()).find("in sort: unknown column 'nope'"), std::string::npos) << e.what();
          throw;
        }
      },
      GraphError);
  EXPECT_THROW(t.sort(col("v"), col("missing")), GraphError);
  Table sorted = t.sort(col("v"));
  EXPECT_EQ(sorted.schema().names(), "prev, next");
  EXPECT_EQ(sorted.schema()[0].type, optional(t_pointer()));
}

}  // namespace
}  // namespace tidemark::testing
