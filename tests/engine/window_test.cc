#include <gtest/gtest.h>

#include "harness.h"
#include "op_test_util.h"

namespace tidemark::testing {
namespace {

Schema kSchema{{"g", t_str()}, {"t", t_int()}, {"f", t_float()}};

Update at(uint64_t k, int64_t t, int64_t diff = 1) { return {Key{k, 0}, {Value("a"), Value(t), Value(0.0)}, diff}; }

std::vector<NamedExpr> counts() {
  return {{"start", col("_pw_window_start")}, {"end", col("_pw_window_end")}, {"n", reducers::count()}};
}

std::string describe(const CapturedChange& c) { return row_str(c.row); }

Row random_row(std::mt19937_64& rng) {
  static const char* groups[] = {"a", "b"};
  return Row{Value(groups[rng() % 2]), Value(static_cast<int64_t>(rng() % 30) - 5),
             Value(static_cast<double>(rng() % 40) / 4.0)};
}

TEST(Window, TumblingCountsPerWindow) {
  SourceSpec s{kSchema,
               {{at(1, 0), at(2, 1), at(3, 2), at(4, 5), at(5, 7), at(6, 10), at(7, 11)}, {at(8, 3)}, {at(5, 7, -1)}}};
  auto out = run_graph({s}, [](Graph&, std::vector<Table>& in) {
    return in[0].windowby(col("t"), tumbling(5)).reduce(counts());
  });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  std::vector<std::string> want = {"0:(0, 5, 3)+", "0:(10, 15, 2)+", "0:(5, 10, 2)+", "1:(0, 5, 3)-",
                                   "1:(0, 5, 4)+", "2:(5, 10, 1)+", "2:(5, 10, 2)-"};
  EXPECT_EQ(step_changes(out, describe), want);
}

TEST(Window, TumblingWithOriginAndNegativeTimes) {
  SourceSpec s{kSchema, {{at(1, -4), at(2, -1), at(3, 2), at(4, 3)}}};
  auto out = run_graph({s}, [](Graph&, std::vector<Table>& in) {
    return in[0].windowby(col("t"), tumbling(5, 3)).reduce(counts());
  });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  std::vector<std::string> want = {"0:(-2, 3, 2)+", "0:(-7, -2, 1)+", "0:(3, 8, 1)+"};
  EXPECT_EQ(step_changes(out, describe), want);
}

TEST(Window, SlidingWindowsOverlap) {
  SourceSpec s{kSchema, {{at(1, 1), at(2, 2), at(3, 5)}}};
  auto out = run_graph({s}, [](Graph&, std::vector<Table>& in) {
    return in[0].windowby(col("t"), sliding(2, 4)).reduce(counts());
  });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  std::vector<std::string> want = {"0:(-2, 2, 1)+", "0:(0, 4, 2)+", "0:(2, 6, 2)+", "0:(4, 8, 1)+"};
  EXPECT_EQ(step_changes(out, describe), want);
}

TEST(Window, SessionsMergeWhenAGapIsFilledAndSplitOnRetraction) {
  SourceSpec s{kSchema,
               {{at(1, 1), at(2, 3), at(3, 7), at(4, 9)},
                {at(5, 5)},
                {at(5, 5, -1)},
                {at(6, 12)},    // 12 - 9 == max_gap: a new session
                {at(7, 11)}}};  // 11 joins both neighbours
  auto out = run_graph({s}, [](Graph&, std::vector<Table>& in) {
    return in[0].windowby(col("t"), session(3)).reduce(counts());
  });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  std::vector<std::string> want = {"0:(1, 3, 2)+",  "0:(7, 9, 2)+",  "1:(1, 3, 2)-",   "1:(1, 9, 5)+",
                                   "1:(7, 9, 2)-",  "2:(1, 3, 2)+",  "2:(1, 9, 5)-",   "2:(7, 9, 2)+",
                                   "3:(12, 12, 1)+", "4:(12, 12, 1)-", "4:(7, 12, 4)+", "4:(7, 9, 2)-"};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(step_changes(out, describe), want);
}

TEST(Window, DateTimesWithDurationsAndFloats) {
  const int64_t hour = 3600'000'000'000;
  Schema dt{{"t", t_datetime_naive()}};
  auto r = [](uint64_t k, int64_t ns) { return Update{Key{k, 0}, {Value(DateTimeNaive{ns})}, 1}; };
  SourceSpec s{dt, {{r(1, hour / 2), r(2, hour + 1), r(3, 2 * hour - 1)}}};
  auto out = run_graph({s}, [&](Graph&, std::vector<Table>& in) {
    return in[0].windowby(col("t"), tumbling(Duration{hour})).reduce(counts());
  });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  auto snap = final_snapshot(out);
  std::vector<std::string> got;
  for (const auto& [k, row] : snap) {
    ASSERT_EQ(row[0].type(), DType::kDateTimeNaive);
    got.push_back(std::to_string(row[0].as_datetime_naive() / hour) + ":" + row[2].to_string());
  }
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::string>{"0:1", "1:2"}));

  SourceSpec f{kSchema, {{{Key{1, 0}, {Value("a"), Value(0), Value(0.2)}, 1},
                          {Key{2, 0}, {Value("a"), Value(0), Value(0.7)}, 1},
                          {Key{3, 0}, {Value("a"), Value(0), Value(0.9)}, 1}}}};
  auto fout = run_graph({f}, [](Graph&, std::vector<Table>& in) {
    return in[0].windowby(col("f"), tumbling(0.5)).reduce(counts());
  });
  ASSERT_TRUE(fout.status.is_ok()) << fout.status.to_string();
  EXPECT_EQ(step_changes(fout, describe), (std::vector<std::string>{"0:(0.0, 0.5, 1)+", "0:(0.5, 1.0, 2)+"}));
}

TEST(Window, IncrementalMatchesRecomputeForEveryKind) {
  std::vector<std::pair<std::string, std::function<Table(Table&)>>> cases = {
      {"tumbling+instance",
       [](Table& t) {
         return t.windowby(col("t"), tumbling(5, 2), col("g"))
             .reduce({{"s", col("_pw_window_start")}, {"g", col("_pw_instance")}, {"n", reducers::count()},
                      {"sum", reducers::sum(col("t"))}});
       }},
      {"sliding", [](Table& t) { return t.windowby(col("t"), sliding(3, 7)).reduce(counts()); }},
      {"sliding float",
       [](Table& t) { return t.windowby(col("f"), sliding(1.5, 4.0)).reduce(counts()); }},
      {"session+instance",
       [](Table& t) {
         return t.windowby(col("t"), session(3), col("g"))
             .reduce({{"s", col("_pw_window_start")}, {"e", col("_pw_window_end")}, {"g", col("_pw_instance")},
                      {"n", reducers::count()}, {"ts", reducers::sorted_tuple(col("t"))}});
       }},
      {"session float", [](Table& t) { return t.windowby(col("f"), session(1.0)).reduce(counts()); }},
  };
  for (const auto& [name, make] : cases) {
    for (uint64_t seed = 1; seed <= 3; ++seed) {
      SCOPED_TRACE(name + " seed " + std::to_string(seed));
      std::mt19937_64 rng(seed);
      SourceSpec s{kSchema, random_batches(rng, 20, 5, random_row, 0.35)};
      expect_incremental_matches_recompute({s}, [&](Graph&, std::vector<Table>& in) { return make(in[0]); });
      if (HasFatalFailure()) return;
    }
  }
}

TEST(Window, SessionStateExportImportContinuesIdentically) {
  std::mt19937_64 rng(3);
  auto batches = random_batches(rng, 20, 5, random_row, 0.35);
  expect_state_continuation(kSchema, batches, 10, [](Graph&, std::vector<Table>& in) {
    return in[0].windowby(col("t"), session(4), col("g")).reduce(counts());
  });
}

void expect_graph_error(const std::function<void()>& build, const std::string& fragment) {
  try {
    build();
    ADD_FAILURE() << "expected GraphError containing: " << fragment;
  } catch (const GraphError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(Window, BuildTimeErrors) {
  Graph g;
  Table t = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), kSchema);
  Table dt = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}),
                                Schema{{"t", t_datetime_utc()}});
  expect_graph_error([&] { t.windowby(col("nope"), tumbling(5)); }, "in windowby: unknown column 'nope'");
  expect_graph_error([&] { t.windowby(col("t"), tumbling(5), col("nope")); }, "unknown column 'nope'");
  expect_graph_error([&] { t.windowby(col("t"), tumbling(Duration{5})); }, "duration must be a number for a time of type int");
  expect_graph_error([&] { dt.windowby(col("t"), session(5)); }, "max_gap must be a duration for a time of type");
  expect_graph_error([&] { dt.windowby(col("t"), tumbling(Duration{5}, 0)); }, "origin must be a");
  expect_graph_error([&] { t.windowby(col("g"), tumbling(5)); }, "time must be an int, float, date-time or duration");
  expect_graph_error([&] { t.windowby(col("t"), tumbling(0)); }, "duration must be positive");
  expect_graph_error([&] { t.windowby(col("t"), sliding(Value(), 5)); }, "hop is not set");
  expect_graph_error([&] { t.windowby(col("t"), session("x")); }, "max_gap must be an int, float or duration");
  Table has = t.with_columns({{"_pw_window_start", col("t")}});
  expect_graph_error([&] { has.windowby(col("t"), tumbling(5)).reduce(counts()); }, "already has a column");
  expect_graph_error([&] { t.windowby(col("t"), tumbling(5)).reduce({{"x", col("f")}}); }, "not a grouping column");
}

TEST(Window, MismatchedTimeValueIsARuntimeError) {
  SourceSpec s{Schema{{"t", t_any()}}, {{{Key{1, 0}, {Value(DateTimeUtc{5})}, 1}}}};
  auto out = run_graph({s}, [](Graph&, std::vector<Table>& in) {
    return in[0].windowby(col("t"), tumbling(5)).reduce(counts());
  });
  ASSERT_FALSE(out.status.is_ok());
  EXPECT_NE(out.status.message().find("windowby"), std::string::npos) << out.status.to_string();
}

}  // namespace
}  // namespace tidemark::testing
