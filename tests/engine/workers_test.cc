// Worker threads (RunOptions::workers): the routing key, the worker count, user functions.
// The operators' property tests (harness.h) run at 1, 2 and 3 workers.
#include <atomic>
#include <cstdlib>

#include "engine/workers.h"
#include "harness.h"

namespace tidemark::testing {
namespace {

TEST(Workers, RoutingKeyOfColumnsIsTheGroupKey) {
  // Groupby finds a group by key_from_values of its grouping values; rows are routed by the
  // same key, so the fast paths (strings, ints) must encode exactly as the codec does.
  std::vector<Row> rows = {
      {Value("word"), Value(int64_t{42}), Value(1.5)},
      {Value(""), Value(int64_t{-1}), Value(-0.0)},
      {Value(std::string(300, 'x')), Value(int64_t{0}), Value()},
      {Value::tuple({Value("a"), Value(int64_t{1})}), Value(true), Value(0.0)},
  };
  std::string buf;
  for (const Row& r : rows)
    for (std::vector<size_t> cols : {std::vector<size_t>{0}, {1}, {2}, {0, 1, 2}, {2, 0}}) {
      Row vals;
      for (size_t c : cols) vals.push_back(r[c]);
      EXPECT_EQ(engine::columns_route_key(r, cols, buf), key_from_values(vals)) << row_str(vals);
    }
}

TEST(Workers, WorkerCountFromOptionsOrEnvironment) {
  const char* saved = std::getenv("TIDEMARK_THREADS");
  std::string keep = saved ? saved : "";
  RunOptions o;
  o.workers = 3;
  EXPECT_EQ(*engine::resolve_workers(o), 3u);
  o.workers = 0;
  ::unsetenv("TIDEMARK_THREADS");
  EXPECT_EQ(*engine::resolve_workers(o), 1u);
  ::setenv("TIDEMARK_THREADS", "2", 1);
  EXPECT_EQ(*engine::resolve_workers(o), 2u);
  for (const char* bad : {"0", "abc", "-1", "2x", "257"}) {
    ::setenv("TIDEMARK_THREADS", bad, 1);
    Result<size_t> r = engine::resolve_workers(o);
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("TIDEMARK_THREADS"), std::string::npos) << r.status().message();
  }
  // A run with a bad count fails before anything runs, naming the variable.
  ::setenv("TIDEMARK_THREADS", "many", 1);
  RunOutput out = run_graph({{Schema{{"v", t_int()}}, {{{Key{1, 2}, {Value(int64_t{1})}, 1}}}}},
                            [](Graph&, std::vector<Table>& in) { return in[0]; });
  EXPECT_EQ(out.status.code(), StatusCode::kInvalidArgument) << out.status.to_string();
  EXPECT_NE(out.status.message().find("TIDEMARK_THREADS"), std::string::npos);
  if (saved) ::setenv("TIDEMARK_THREADS", keep.c_str(), 1);
  else ::unsetenv("TIDEMARK_THREADS");
}

std::vector<Batch> numbers(size_t n, size_t per) {
  std::vector<Batch> out;
  for (size_t i = 0; i < n; i += per) {
    Batch b;
    for (size_t j = i; j < std::min(n, i + per); ++j) b.push_back({Key{j * 7919 + 1, j}, {Value(static_cast<int64_t>(j))}, 1});
    out.push_back(std::move(b));
  }
  return out;
}

TEST(Workers, AFunctionNotThreadSafeIsNeverCalledTwiceAtOnce) {
  const Schema s{{"v", t_int()}};
  std::atomic<int> in_call{0};
  std::atomic<bool> overlapped{false};
  std::atomic<uint64_t> calls{0};
  UserFunction f = [&](const std::vector<Value>& a) {
    if (in_call.fetch_add(1) != 0) overlapped = true;
    int64_t x = a[0].as_int();
    for (int i = 0; i < 200; ++i) x = (x * 31 + 7) % 1000003;  // some work inside the call
    calls.fetch_add(1);
    in_call.fetch_sub(1);
    return Value(x);
  };
  auto build = [&](Graph&, std::vector<Table>& in) {
    return in[0]
        .select({{"v", col("v")}, {"f", apply(f, {col("v")}, t_int(), ApplyOptions{.thread_safe = false})}})
        .groupby({"f"})
        .reduce({{"f", col("f")}, {"n", reducers::count()}});
  };
  RunOutput one = run_graph({{s, numbers(20000, 5000)}}, build, RunOptions{}.pipeline_slice_rows, 1);
  ASSERT_TRUE(one.status.is_ok()) << one.status.to_string();
  RunOutput three = run_graph({{s, numbers(20000, 5000)}}, build, RunOptions{}.pipeline_slice_rows, 3);
  ASSERT_TRUE(three.status.is_ok()) << three.status.to_string();
  EXPECT_FALSE(overlapped.load());
  EXPECT_EQ(calls.load(), 40000u);
  Snapshot a = final_snapshot(one), b = final_snapshot(three);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, r] : a) EXPECT_EQ(row_str(b[k]), row_str(r));
}

TEST(Workers, AUdfCacheIsSharedByTheWorkers) {
  const Schema s{{"v", t_int()}};
  std::atomic<uint64_t> calls{0};
  Expr cached = apply(
      [&](const std::vector<Value>& a) {
        calls.fetch_add(1);
        return Value(a[0].as_int() % 97);
      },
      {col("v") % 500}, t_int(), UdfCache{"mod97"});
  auto build = [&](Graph&, std::vector<Table>& in) {
    return in[0].select({{"m", cached}}).groupby({"m"}).reduce({{"m", col("m")}, {"n", reducers::count()}});
  };
  RunOutput one = run_graph({{s, numbers(30000, 10000)}}, build, RunOptions{}.pipeline_slice_rows, 1);
  ASSERT_TRUE(one.status.is_ok()) << one.status.to_string();
  EXPECT_EQ(calls.load(), 500u);
  calls = 0;
  RunOutput two = run_graph({{s, numbers(30000, 10000)}}, build, RunOptions{}.pipeline_slice_rows, 2);
  ASSERT_TRUE(two.status.is_ok()) << two.status.to_string();
  // One cache for both workers: each argument computed about once (two workers missing on the
  // same argument at once may both compute it), never once per worker and row.
  EXPECT_GE(calls.load(), 500u);
  EXPECT_LT(calls.load(), 1000u);
  Snapshot a = final_snapshot(one), b = final_snapshot(two);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, r] : a) EXPECT_EQ(row_str(b[k]), row_str(r));
}

TEST(Workers, AnOperatorErrorOnOneWorkerStopsTheRunNamingIt) {
  const Schema s{{"v", t_int()}};
  auto build = [](Graph&, std::vector<Table>& in) {
    return in[0].select({{"q", col("v") / (col("v") - 12345)}}).groupby({"q"}).reduce({{"q", col("q")}});
  };
  for (size_t workers : kWorkerCounts) {
    RunOutput out = run_graph({{s, numbers(20000, 5000)}}, build, RunOptions{}.pipeline_slice_rows, workers);
    ASSERT_FALSE(out.status.is_ok()) << workers;
    EXPECT_NE(out.status.message().find("select"), std::string::npos) << out.status.to_string();
    EXPECT_NE(out.status.message().find("division by zero"), std::string::npos) << out.status.to_string();
  }
}

TEST(Workers, AFailingRoutingExpressionStopsTheRunNamingTheOperator) {
  // The sort's instance is evaluated to route rows (before the operator runs).
  const Schema s{{"v", t_int()}};
  Expr inst = apply(
      [](const std::vector<Value>& a) -> Value {
        if (a[0].as_int() == 777) throw std::runtime_error("no instance for 777");
        return Value(a[0].as_int() % 5);
      },
      {col("v")}, t_int());
  for (size_t workers : kWorkerCounts) {
    RunOutput out = run_graph({{s, numbers(2000, 500)}},
                              [&](Graph&, std::vector<Table>& in) { return in[0].sort(col("v"), inst); },
                              RunOptions{}.pipeline_slice_rows, workers);
    ASSERT_FALSE(out.status.is_ok()) << workers;
    EXPECT_NE(out.status.message().find("sort"), std::string::npos) << out.status.to_string();
    EXPECT_NE(out.status.message().find("no instance for 777"), std::string::npos) << out.status.to_string();
  }
}

}  // namespace
}  // namespace tidemark::testing
