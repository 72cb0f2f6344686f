// Pipelining within a time (Node::accepts_partial_input, RunOptions::pipeline_slice_rows):
// pushing a time's source rows through select/filter/flatten/groupby in slices of any size
// gives exactly the changes of one whole batch per time, including where a pipelined node also
// feeds operators outside the prefix (join, concat, sinks) and where several pipelined nodes
// read one input.
#include <gtest/gtest.h>

#include <algorithm>

#include "harness.h"

namespace tidemark::testing {
namespace {

Schema kLines{{"line", t_str()}, {"v", t_int()}};

Row random_line(std::mt19937_64& rng) {
  static const char* words[] = {"a", "b", "c", "dd", "e", "ff", "g"};
  std::string line;
  size_t n = rng() % 5;  // empty lines too
  for (size_t i = 0; i < n; ++i) line += std::string(i ? " " : "") + words[rng() % 7];
  return Row{Value(line), Value(static_cast<int64_t>(rng() % 13) - 4)};
}

// The changes of each step, as sorted strings (times differ between runs; steps do not).
std::vector<std::vector<std::string>> by_step(const RunOutput& out) {
  std::vector<std::vector<std::string>> steps(out.step_times.size());
  for (const auto& c : out.changes) {
    size_t step = std::find(out.step_times.begin(), out.step_times.end(), c.time) - out.step_times.begin();
    EXPECT_LT(step, steps.size());
    if (step < steps.size())
      steps[step].push_back(c.key.to_string() + " " + row_str(c.row) + " " + std::to_string(c.diff));
  }
  for (auto& s : steps) std::sort(s.begin(), s.end());
  return steps;
}

void expect_slice_independent(const std::vector<SourceSpec>& sources, const BuildFn& build) {
  RunOutput whole = run_graph(sources, build, 0, 1);
  ASSERT_TRUE(whole.status.is_ok()) << whole.status.to_string();
  auto want = by_step(whole);
  size_t changes = 0;
  for (const auto& s : want) changes += s.size();
  ASSERT_GT(changes, 0u);
  for (size_t workers : {1, 2, 3})
    for (size_t slice : {1, 2, 3, 7, 64, 2048}) {
      RunOutput sliced = run_graph(sources, build, slice, workers);
      ASSERT_TRUE(sliced.status.is_ok()) << sliced.status.to_string();
      ASSERT_EQ(by_step(sliced), want) << "slices of " << slice << " rows, " << workers << " workers";
    }
}

TEST(Pipeline, SplitFlattenGroupByIsSliceIndependent) {
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    std::mt19937_64 rng(seed);
    SourceSpec s{kLines, random_batches(rng, 8, 40, random_line)};
    expect_slice_independent({s}, [](Graph&, std::vector<Table>& in) {
      Table words = in[0].select({{"word", str::split(col("line"))}, {"v", col("v")}}).flatten("word");
      return words.filter(col("v") != 0).groupby({"word"}).reduce({
          {"word", col("word")},
          {"count", reducers::count()},
          {"sum", reducers::sum(col("v"))},
          {"avg", reducers::avg(col("v"))},
          {"min", reducers::min(col("v"))},
          {"max", reducers::max(col("v"))},
          {"distinct", reducers::count_distinct(col("v"))},
          {"sorted", reducers::sorted_tuple(col("v"))},
      });
    });
    if (HasFatalFailure()) return;
  }
}

TEST(Pipeline, PipelinedNodeAlsoFeedingTheRestAndTwoPipelinedReaders) {
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    std::mt19937_64 rng(100 + seed);
    SourceSpec a{kLines, random_batches(rng, 8, 40, random_line)};
    SourceSpec b{kLines, random_batches(rng, 8, 40, random_line)};
    expect_slice_independent({a, b}, [](Graph&, std::vector<Table>& in) {
      // `words` has two pipelined readers (two groupbys) and one outside the prefix (join);
      // the groupbys' outputs are read by a select (after the end of the time), then joined.
      Table words = in[0].select({{"word", str::split(col("line"))}, {"v", col("v")}}).flatten("word");
      Table counts = words.groupby({"word"}).reduce({{"word", col("word")}, {"n", reducers::count()}});
      Table sums = words.groupby({"word"}).reduce({{"word", col("word")}, {"s", reducers::sum(col("v"))}});
      Table both = counts.select({{"word", col("word")}, {"n2", col("n") * 2}})
                       .join(sums, {{"word", "word"}})
                       .select({{"word", left("word")}, {"n2", left("n2")}, {"s", right("s")}});
      // The other source through its own pipelined select, then a join with the raw words.
      Table other = in[1].select({{"w", str::split(col("line"))}}).flatten("w");
      Table matched = words.join(other, {{"word", "w"}}).select({{"word", left("word")}, {"v", left("v")}});
      return both.join(matched.groupby({"word"}).reduce({{"word", col("word")}, {"m", reducers::count()}}),
                       {{"word", "word"}})
          .select({{"word", left("word")}, {"n2", left("n2")}, {"s", left("s")}, {"m", right("m")}});
    });
    if (HasFatalFailure()) return;
  }
}

TEST(Pipeline, ReadersThatMoveCellsDoNotTakeAnInputOthersRead) {
  // Projections and flatten move cells out of an input they own; an input read by several
  // pipelined nodes is nobody's to take.
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    std::mt19937_64 rng(300 + seed);
    SourceSpec s{kLines, random_batches(rng, 6, 40, random_line)};
    expect_slice_independent({s}, [](Graph&, std::vector<Table>& in) {
      Table lines = in[0].select({{"v", col("v")}, {"line", col("line")}});  // a permutation: moves cells
      Table a = lines.select({{"line", col("line")}});
      Table b = lines.select({{"v", col("v")}, {"line", col("line")}});
      Table w = lines.select({{"word", str::split(col("line"))}, {"line", col("line")}}).flatten("word");
      Table na = a.groupby({"line"}).reduce({{"line", col("line")}, {"n", reducers::count()}});
      Table nb = b.groupby({"line"}).reduce({{"line", col("line")}, {"s", reducers::sum(col("v"))}});
      Table nw = w.groupby({"line"}).reduce({{"line", col("line")}, {"n", reducers::count()}});
      return na.join(nb, {{"line", "line"}})
          .select({{"line", left("line")}, {"n", left("n")}, {"s", right("s")}})
          .join(nw, {{"line", "line"}})
          .select({{"line", left("line")}, {"n", left("n")}, {"s", left("s")}, {"m", right("n")}});
    });
    if (HasFatalFailure()) return;
  }
}

TEST(Pipeline, AnErrorInALaterSliceStopsTheRunNamingTheOperator) {
  SourceSpec s{Schema{{"x", t_int()}}, {{}}};
  for (int64_t i = 0; i < 100; ++i) s.batches[0].push_back({Key{static_cast<uint64_t>(i + 1), 0}, {Value(i)}, 1});
  auto out = run_graph(
      {s},
      [](Graph&, std::vector<Table>& in) {
        return in[0].select({{"t", make_tuple({col("x"), col("x") / (col("x") - 77)})}}).flatten("t")
            .groupby({"t"}).reduce({{"t", col("t")}, {"n", reducers::count()}});
      },
      10);
  ASSERT_FALSE(out.status.is_ok());
  EXPECT_NE(out.status.to_string().find("select"), std::string::npos) << out.status.to_string();
  EXPECT_TRUE(out.changes.empty());
}

}  // namespace
}  // namespace tidemark::testing
