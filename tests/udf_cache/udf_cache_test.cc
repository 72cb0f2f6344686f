// Cached user functions: apply(..., UdfCache) and engine::UdfCacheState.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <stdexcept>
#include <thread>
#include <memory>
#include <string>
#include <vector>

#include "engine/codec.h"
#include "engine/collection_io.h"
#include "engine/expr_internal.h"
#include "engine/node.h"
#include "engine/udf_cache.h"
#include "tidemark/tidemark.h"

namespace tidemark::testing {
namespace {

using engine::Batch;
using engine::CapturedChange;
using engine::StateChange;
using engine::StateChanges;
using engine::UdfCacheState;

// A select-like operator compiled with the graph in scope (as operators do to support cached
// applies): every output row is the expressions evaluated on the input row, same key and diff.
class MapNode final : public engine::Node {
 public:
  MapNode(size_t input, Schema schema, std::vector<internal::CompiledExprPtr> exprs)
      : Node("map", {input}, std::move(schema)), exprs_(std::move(exprs)) {}
  void process(engine::Time, std::span<const Batch* const> in, Batch& out) override {
    for (const engine::Update& u : *in[0]) {
      internal::EvalContext ctx{u.row.data(), &u.key};
      Row r;
      for (const auto& e : exprs_) r.push_back(e->eval(ctx));
      out.push_back({u.key, std::move(r), u.diff});
    }
  }

 private:
  std::vector<internal::CompiledExprPtr> exprs_;
};

Table map(const Table& t, std::vector<NamedExpr> outputs, bool with_graph = true) {
  auto& g = t.graph().impl();
  internal::CompileScope scope;
  scope.op = "map";
  scope.schema = &t.schema();
  if (with_graph) scope.graph = &g;
  std::vector<internal::CompiledExprPtr> exprs;
  std::vector<Column> cols;
  for (auto& o : outputs) {
    exprs.push_back(internal::compile(o.expr, scope));
    cols.push_back({o.name, exprs.back()->type});
  }
  return Table(&t.graph(), g.add(std::make_unique<MapNode>(t.node(), Schema(std::move(cols)), std::move(exprs))));
}

Key k(uint64_t i) { return Key{i, 0}; }

engine::Update ins(uint64_t key, Row r) { return {k(key), std::move(r), 1}; }
engine::Update del(uint64_t key, Row r) { return {k(key), std::move(r), -1}; }

struct RunResult {
  Status status;
  std::vector<CapturedChange> changes;
};

// Runs `out` (built on the graph's source) and captures its changes.
RunResult run_capture(Graph& g, const Table& out) {
  auto captured = std::make_shared<std::vector<CapturedChange>>();
  engine::add_sink(out, std::make_unique<engine::CaptureSink>(captured));
  RunOptions opts;
  opts.handle_signals = false;
  opts.progress_interval_s = 0;
  RunResult r;
  r.status = run(g, opts);
  r.changes = *captured;
  return r;
}

std::shared_ptr<UdfCacheState> cache_of(Graph& g, const std::string& name) {
  for (const auto& e : g.impl().extra_states())
    if (e.id == "udf_cache:" + name) {
      EXPECT_EQ(e.kind, "udf_cache");
      return std::dynamic_pointer_cast<UdfCacheState>(e.state);
    }
  return nullptr;
}

Schema ws() { return Schema{{"w", t_str()}, {"n", t_int()}}; }

// A function that counts its calls: w * n.
Expr counted_repeat(int* calls, UdfCache cache) {
  return apply(
      [calls](const std::vector<Value>& a) {
        ++*calls;
        std::string s;
        for (int64_t i = 0; i < a[1].as_int(); ++i) s += a[0].as_string();
        return Value(s);
      },
      {col("w"), col("n")}, t_str(), std::move(cache));
}

std::multiset<std::string> as_strings(const std::vector<CapturedChange>& cs) {
  std::multiset<std::string> out;
  for (const auto& c : cs) {
    std::string s = c.diff > 0 ? "+" : "-";
    for (const auto& v : c.row) s += v.to_string() + ";";
    out.insert(s);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Through a graph.

TEST(UdfCacheGraph, FiveRowsThreeDistinctArgumentsCallThreeTimes) {
  Graph g;
  Batch b = {ins(1, {"a", 1}), ins(2, {"b", 2}), ins(3, {"a", 1}), ins(4, {"c", 3}), ins(5, {"b", 2})};
  Table t = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{b}), ws());
  int calls = 0;
  Table out = map(t, {{"r", counted_repeat(&calls, {"rep"})}});
  RunResult r = run_capture(g, out);
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(as_strings(r.changes), (std::multiset<std::string>{"+a;", "+bb;", "+a;", "+ccc;", "+bb;"}));
  auto cache = cache_of(g, "rep");
  ASSERT_TRUE(cache);
  EXPECT_EQ(cache->stats().hits, 2u);
  EXPECT_EQ(cache->stats().misses, 3u);
  EXPECT_EQ(cache->stats().entries, 3u);
  EXPECT_EQ(cache->stats().evictions, 0u);
}

TEST(UdfCacheGraph, RetractionUsesTheCachedValue) {
  // The function returns how often it was called: only the cache can make the retraction
  // carry the value that was inserted.
  Graph g;
  std::vector<Batch> batches = {{ins(1, {"a", 1}), ins(2, {"b", 1})}, {del(1, {"a", 1})}, {ins(3, {"a", 1})}};
  Table t = engine::add_source(g, std::make_unique<engine::BatchesSource>(batches), ws());
  int calls = 0;
  Expr f = apply([&calls](const std::vector<Value>&) { return Value(static_cast<int64_t>(++calls)); }, {col("w")},
                 t_int(), UdfCache{"counter"});
  Table out = map(t, {{"w", col("w")}, {"v", f}});
  RunResult r = run_capture(g, out);
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(calls, 2);
  ASSERT_EQ(r.changes.size(), 4u);
  std::map<engine::Time, std::multiset<std::string>> by_time;
  for (const auto& c : r.changes)
    by_time[c.time].insert((c.diff > 0 ? "+" : "-") + c.row[0].to_string() + "=" + c.row[1].to_string());
  ASSERT_EQ(by_time.size(), 3u);
  auto it = by_time.begin();
  EXPECT_EQ(it->second, (std::multiset<std::string>{"+a=1", "+b=2"}));
  EXPECT_EQ((++it)->second, (std::multiset<std::string>{"-a=1"}));
  EXPECT_EQ((++it)->second, (std::multiset<std::string>{"+a=1"}));
}

TEST(UdfCacheGraph, OneExprInTwoOperatorsSharesOneCache) {
  Graph g;
  Batch b = {ins(1, {"a", 2}), ins(2, {"b", 1})};
  Table t = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{b}), ws());
  int calls = 0;
  Expr f = counted_repeat(&calls, {"shared", 1 << 20});
  Table o1 = map(t, {{"r", f}});
  Expr copy = f;
  Table o2 = map(t, {{"r", copy}, {"again", f}});
  auto captured = std::make_shared<std::vector<CapturedChange>>();
  engine::add_sink(o1, std::make_unique<engine::CaptureSink>(captured));
  RunResult r = run_capture(g, o2);
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(calls, 2);
  ASSERT_EQ(g.impl().extra_states().size(), 1u);
  auto cache = cache_of(g, "shared");
  ASSERT_TRUE(cache);
  EXPECT_EQ(cache->stats().misses, 2u);
  EXPECT_EQ(cache->stats().hits, 4u);
  EXPECT_EQ(cache->size_limit_bytes(), 1u << 20);
}

TEST(UdfCacheGraph, OneExprInTwoGraphsHasACacheInEach) {
  int calls = 0;
  Expr f = counted_repeat(&calls, {"per_graph"});
  Graph g1, g2;
  Table t1 = engine::add_source(g1, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), ws());
  Table t2 = engine::add_source(g2, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), ws());
  map(t1, {{"r", f}});
  map(t2, {{"r", f}});
  auto c1 = cache_of(g1, "per_graph"), c2 = cache_of(g2, "per_graph");
  ASSERT_TRUE(c1 && c2);
  EXPECT_NE(c1, c2);  // each graph restores and persists its own
}

TEST(UdfCacheGraph, TwoCachesWithOneNameAreAGraphError) {
  Graph g;
  Table t = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), ws());
  int calls = 0;
  map(t, {{"r", counted_repeat(&calls, {"dup"})}});
  try {
    map(t, {{"r", counted_repeat(&calls, {"dup"})}});
    FAIL() << "expected GraphError";
  } catch (const GraphError& e) {
    EXPECT_NE(std::string(e.what()).find("two different UDF caches are named 'dup'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("in map"), std::string::npos) << e.what();
  }
  // Within one operator as well.
  Graph g2;
  Table t2 = engine::add_source(g2, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), ws());
  EXPECT_THROW(map(t2, {{"a", counted_repeat(&calls, {"x"})}, {"b", counted_repeat(&calls, {"x"})}}), GraphError);
  // Different names are independent caches.
  Graph g3;
  Table t3 = engine::add_source(g3, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), ws());
  map(t3, {{"a", counted_repeat(&calls, {"x"})}, {"b", counted_repeat(&calls, {"y"})}});
  EXPECT_EQ(g3.impl().extra_states().size(), 2u);
}

TEST(UdfCacheGraph, EmptyNameIsAGraphError) {
  int calls = 0;
  try {
    counted_repeat(&calls, {""});
    FAIL() << "expected GraphError";
  } catch (const GraphError& e) {
    EXPECT_NE(std::string(e.what()).find("non-empty name"), std::string::npos) << e.what();
  }
}

TEST(UdfCacheGraph, OperatorWithoutGraphAccessRejectsACachedApply) {
  Graph g;
  Table t = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), ws());
  int calls = 0;
  try {
    map(t, {{"r", counted_repeat(&calls, {"c"})}}, /*with_graph=*/false);
    FAIL() << "expected GraphError";
  } catch (const GraphError& e) {
    EXPECT_NE(std::string(e.what()).find("UdfCache 'c' is not supported in this operator"), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(g.impl().extra_states().empty());
}

TEST(UdfCacheGraph, UncachedApplyRegistersNothing) {
  Graph g;
  Table t = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), ws());
  map(t, {{"r", apply([](const std::vector<Value>& a) { return a[0]; }, {col("w")}, t_str())}},
      /*with_graph=*/false);
  EXPECT_TRUE(g.impl().extra_states().empty());
}

// The public operators pass the graph to compile(), so a cached apply works in them.
TEST(UdfCacheGraph, SelectAndFilter) {
  Graph g;
  Batch b = {ins(1, {"a", 1}), ins(2, {"b", 2}), ins(3, {"a", 1})};
  Table t = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{b}), ws());
  int calls = 0;
  Expr f = counted_repeat(&calls, {"sel"});
  Table out = t.select({{"r", f}}).filter(str::len(col("r")) > 0);
  RunResult r = run_capture(g, out);
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(as_strings(r.changes), (std::multiset<std::string>{"+a;", "+bb;", "+a;"}));
}

// A later run restores the cache from the changes the first run reported: no calls at all.
TEST(UdfCacheGraph, RestoredCacheAcrossRuns) {
  Batch b = {ins(1, {"a", 1}), ins(2, {"b", 2}), ins(3, {"c", 3})};
  std::map<std::string, std::string> stored;  // what a persistence layer would keep
  {
    Graph g;
    Table t = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{b}), ws());
    int calls = 0;
    Table out = map(t, {{"r", counted_repeat(&calls, {"durable"})}});
    auto cache = cache_of(g, "durable");
    ASSERT_TRUE(cache);
    cache->track_state_changes();
    RunResult r = run_capture(g, out);
    ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
    EXPECT_EQ(calls, 3);
    StateChanges changes;
    cache->take_state_changes(changes);
    for (const auto& c : changes) {
      if (c.erase) stored.erase(c.key);
      else stored[c.key] = c.value;
    }
  }
  ASSERT_EQ(stored.size(), 3u);
  Graph g;
  Table t = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{b}), ws());
  int calls = 0;
  Table out = map(t, {{"r", counted_repeat(&calls, {"durable"})}});
  auto cache = cache_of(g, "durable");
  ASSERT_TRUE(cache);
  for (const auto& [key, value] : stored) ASSERT_TRUE(cache->restore_state_entry(key, value).is_ok());
  ASSERT_TRUE(cache->finish_state_restore().is_ok());
  cache->track_state_changes();
  RunResult r = run_capture(g, out);
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(as_strings(r.changes), (std::multiset<std::string>{"+a;", "+bb;", "+ccc;"}));
  StateChanges changes;
  cache->take_state_changes(changes);
  EXPECT_TRUE(changes.empty());
}

TEST(UdfCacheGraph, FunctionErrorsAreNotCached) {
  Graph g;
  Batch b = {ins(1, {"a", 1}), ins(2, {"a", 1})};
  Table t = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{b}), ws());
  int calls = 0;
  Expr f = apply(
      [&calls](const std::vector<Value>&) -> Value {
        ++calls;
        throw std::runtime_error("boom");
      },
      {col("w")}, t_int(), UdfCache{"err"});
  Table out = map(t, {{"v", f}});
  RunResult r = run_capture(g, out);
  EXPECT_FALSE(r.status.is_ok());
  EXPECT_NE(r.status.message().find("user function failed: boom"), std::string::npos) << r.status.to_string();
  EXPECT_EQ(calls, 1);
  auto cache = cache_of(g, "err");
  ASSERT_TRUE(cache);
  EXPECT_EQ(cache->stats().entries, 0u);
}

// ---------------------------------------------------------------------------------------------
// The cache object.

std::vector<Value> args(int64_t i) { return {Value(i)}; }

// The size of an entry holding an int result.
uint64_t int_entry_size() {
  std::string v;
  codec::put_u8(v, UdfCacheState::kValueVersion);
  codec::put_value(v, Value(int64_t{0}));
  return 16 + v.size();
}

std::string change_string(const StateChange& c) {
  // The keys of args(i): identify them by i.
  for (int64_t i = 0; i < 100; ++i)
    if (c.key == UdfCacheState::entry_key(args(i))) return (c.erase ? "erase " : "put ") + std::to_string(i);
  return "unknown key";
}

std::vector<std::string> take(UdfCacheState& c) {
  StateChanges changes;
  c.take_state_changes(changes);
  std::vector<std::string> out;
  for (const auto& ch : changes) out.push_back(change_string(ch));
  return out;
}

TEST(UdfCacheState, EntryFormat) {
  std::string key = UdfCacheState::entry_key({Value("x"), Value(int64_t{2})});
  ASSERT_EQ(key.size(), 16u);
  std::string want;
  codec::put_key(want, key_from_values({Value("x"), Value(int64_t{2})}));
  EXPECT_EQ(key, want);
  // 1 and 1.0 are different arguments.
  EXPECT_NE(UdfCacheState::entry_key({Value(int64_t{1})}), UdfCacheState::entry_key({Value(1.0)}));

  UdfCacheState c(UdfCache{"fmt"});
  c.track_state_changes();
  c.insert({Value("x"), Value(int64_t{2})}, Value("xx"));
  StateChanges changes;
  c.take_state_changes(changes);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].key, key);
  std::string value;
  codec::put_u8(value, 1);
  codec::put_value(value, Value("xx"));
  EXPECT_EQ(changes[0].value, value);
  EXPECT_FALSE(changes[0].erase);
  EXPECT_EQ(c.stats().bytes, key.size() + value.size());
}

TEST(UdfCacheState, LeastRecentlyUsedEviction) {
  const uint64_t e = int_entry_size();
  UdfCacheState c(UdfCache{"lru", 3 * e});
  c.track_state_changes();
  int calls = 0;
  auto f = [&calls](const std::vector<Value>& a) {
    ++calls;
    return Value(a[0].as_int() * 10);
  };
  for (int64_t i : {1, 2, 3}) EXPECT_EQ(c.get_or_compute(args(i), f), Value(i * 10));
  EXPECT_EQ(take(c), (std::vector<std::string>{"put 1", "put 2", "put 3"}));
  EXPECT_EQ(c.stats().bytes, 3 * e);

  EXPECT_EQ(c.get_or_compute(args(1), f), Value(int64_t{10}));  // hit: 1 is now most recent
  EXPECT_EQ(calls, 3);
  c.get_or_compute(args(4), f);  // evicts 2 (least recently used)
  c.get_or_compute(args(5), f);  // evicts 3
  c.get_or_compute(args(1), f);  // hit
  c.get_or_compute(args(6), f);  // evicts 4
  EXPECT_EQ(take(c), (std::vector<std::string>{"put 4", "erase 2", "put 5", "erase 3", "put 6", "erase 4"}));
  EXPECT_EQ(calls, 6);
  EXPECT_EQ(c.stats().evictions, 3u);
  EXPECT_EQ(c.stats().entries, 3u);
  EXPECT_EQ(c.stats().bytes, 3 * e);
  EXPECT_EQ(c.stats().hits, 2u);
  EXPECT_EQ(c.stats().misses, 6u);
  // What is left: 1, 5, 6.
  EXPECT_TRUE(c.lookup(args(1)));
  EXPECT_TRUE(c.lookup(args(5)));
  EXPECT_TRUE(c.lookup(args(6)));
  EXPECT_FALSE(c.lookup(args(2)));
  EXPECT_FALSE(c.lookup(args(3)));
  EXPECT_FALSE(c.lookup(args(4)));
  c.get_or_compute(args(2), f);  // 1, 5, 6 were used in that order: evicts 1
  EXPECT_EQ(take(c), (std::vector<std::string>{"put 2", "erase 1"}));
  EXPECT_TRUE(take(c).empty());  // taken changes are gone
}

TEST(UdfCacheState, NoChangesWithoutTracking) {
  UdfCacheState c(UdfCache{"quiet", int_entry_size()});
  c.insert(args(1), Value(int64_t{1}));
  c.insert(args(2), Value(int64_t{2}));
  EXPECT_EQ(c.stats().evictions, 1u);
  EXPECT_TRUE(take(c).empty());
}

TEST(UdfCacheState, EntryLargerThanTheLimitIsNotCached) {
  const uint64_t e = int_entry_size();
  UdfCacheState c(UdfCache{"big", 2 * e});
  c.track_state_changes();
  int calls = 0;
  auto f = [&calls](const std::vector<Value>& a) -> Value {
    ++calls;
    if (a[0].as_int() == 9) return Value(std::string(100, 'x'));
    return Value(a[0].as_int());
  };
  c.get_or_compute(args(1), f);
  c.get_or_compute(args(2), f);
  EXPECT_EQ(c.get_or_compute(args(9), f), Value(std::string(100, 'x')));
  EXPECT_EQ(c.get_or_compute(args(9), f), Value(std::string(100, 'x')));
  EXPECT_EQ(calls, 4);  // computed twice: never cached
  // Nothing was evicted to make room for it.
  EXPECT_EQ(take(c), (std::vector<std::string>{"put 1", "put 2"}));
  EXPECT_EQ(c.stats().uncacheable, 2u);
  EXPECT_EQ(c.stats().evictions, 0u);
  EXPECT_EQ(c.stats().entries, 2u);
  EXPECT_EQ(c.stats().bytes, 2 * e);

  // An entry of exactly the limit is cached (alone).
  UdfCacheState exact(UdfCache{"exact", e});
  exact.insert(args(1), Value(int64_t{1}));
  EXPECT_EQ(exact.stats().entries, 1u);
  UdfCacheState none(UdfCache{"zero", 0});
  none.insert(args(1), Value(int64_t{1}));
  EXPECT_EQ(none.stats().entries, 0u);
}

TEST(UdfCacheState, RestoreRoundTrip) {
  UdfCacheState a(UdfCache{"rt"});
  a.track_state_changes();
  int calls = 0;
  auto f = [&calls](const std::vector<Value>& v) -> Value {
    ++calls;
    return Value::tuple({v[0], Value("r"), Value(Value::Bytes{"\x00\x01"}), Value(1.5), Value()});
  };
  for (int64_t i = 0; i < 5; ++i) a.get_or_compute(args(i), f);
  EXPECT_EQ(calls, 5);
  StateChanges changes;
  a.take_state_changes(changes);
  ASSERT_EQ(changes.size(), 5u);

  UdfCacheState b(UdfCache{"rt"});
  // In reverse order: any order works.
  for (auto it = changes.rbegin(); it != changes.rend(); ++it)
    ASSERT_TRUE(b.restore_state_entry(it->key, it->value).is_ok());
  ASSERT_TRUE(b.finish_state_restore().is_ok());
  b.track_state_changes();
  EXPECT_EQ(b.stats().entries, 5u);
  EXPECT_EQ(b.stats().bytes, a.stats().bytes);
  EXPECT_EQ(b.stats().hits, 0u);
  for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(b.get_or_compute(args(i), f), f(args(i)));
  EXPECT_EQ(calls, 10);  // only the 5 direct calls of f in the comparison above
  EXPECT_EQ(b.stats().hits, 5u);
  EXPECT_EQ(b.stats().misses, 0u);
  EXPECT_TRUE(take(b).empty());  // restoring reports no changes
}

TEST(UdfCacheState, RestoreWithASmallerLimitEvicts) {
  const uint64_t e = int_entry_size();
  UdfCacheState a(UdfCache{"shrink"});
  a.track_state_changes();
  for (int64_t i = 1; i <= 4; ++i) a.insert(args(i), Value(i));
  StateChanges changes;
  a.take_state_changes(changes);

  UdfCacheState b(UdfCache{"shrink", 2 * e});
  for (const auto& c : changes) ASSERT_TRUE(b.restore_state_entry(c.key, c.value).is_ok());
  ASSERT_TRUE(b.finish_state_restore().is_ok());  // before tracking begins: still reported
  b.track_state_changes();
  EXPECT_EQ(take(b), (std::vector<std::string>{"erase 1", "erase 2"}));
  EXPECT_EQ(b.stats().entries, 2u);
  EXPECT_EQ(b.stats().bytes, 2 * e);
}

TEST(UdfCacheState, CorruptEntriesNameTheCache) {
  UdfCacheState c(UdfCache{"fragile"});
  std::string key = UdfCacheState::entry_key(args(1));
  std::string good;
  codec::put_u8(good, 1);
  codec::put_value(good, Value("result"));
  auto expect_corrupt = [&](std::string_view k, std::string_view v, const std::string& what) {
    Status s = c.restore_state_entry(k, v);
    EXPECT_EQ(s.code(), StatusCode::kCorruption) << what << ": " << s.to_string();
    EXPECT_NE(s.message().find("udf cache 'fragile'"), std::string::npos) << s.message();
  };
  expect_corrupt(key, good.substr(0, good.size() - 2), "truncated value");
  expect_corrupt(key, "", "empty value");
  expect_corrupt(key, good + "x", "trailing bytes");
  expect_corrupt(key.substr(0, 15), good, "short key");
  expect_corrupt(key, std::string("\x00", 1) + good.substr(1), "version 0");
  std::string bad_tag = good;
  bad_tag[1] = static_cast<char>(0xEE);
  expect_corrupt(key, bad_tag, "unknown value tag");
  Status newer = c.restore_state_entry(key, std::string("\x02", 1) + good.substr(1));
  EXPECT_EQ(newer.code(), StatusCode::kNotSupported) << newer.to_string();
  EXPECT_NE(newer.message().find("udf cache 'fragile'"), std::string::npos);
  EXPECT_EQ(c.stats().entries, 0u);
  ASSERT_TRUE(c.restore_state_entry(key, good).is_ok());
  EXPECT_EQ(c.lookup(args(1)), std::optional<Value>(Value("result")));
}

TEST(UdfCacheState, DescribeStats) {
  UdfCacheState c(UdfCache{"log"});
  c.get_or_compute(args(1), [](const std::vector<Value>&) { return Value(int64_t{1}); });
  c.get_or_compute(args(1), [](const std::vector<Value>&) { return Value(int64_t{1}); });
  EXPECT_EQ(c.describe_stats(), "udf cache 'log': 1 hits, 1 misses, 0 evictions, 1 entries, " +
                                    std::to_string(int_entry_size()) + " bytes");
}

// Two threads ask `c` for the result of `a`, the second once the first is computing it. The
// first computation (call 1) finishes only once the second thread waits for it in the cache
// (or, were it not waiting, once it called the function too); it then throws if
// `first_throws`, else returns `result`, as every later call does.
struct Race {
  int calls = 0;
  bool first_threw = false;
  Value first, second;
};
Race race_for_one_result(UdfCacheState& c, const std::vector<Value>& a, bool first_throws, const Value& result) {
  std::atomic<int> calls{0};
  std::atomic<bool> first_computing{false};
  auto compute = [&](const std::vector<Value>&) {
    if (++calls == 1) {
      first_computing = true;
      while (c.waiting() == 0 && calls.load() == 1) std::this_thread::yield();
      if (first_throws) throw std::runtime_error("first call fails");
    }
    return result;
  };
  Race r;
  std::thread first([&] {
    try {
      r.first = c.get_or_compute(a, compute);
    } catch (const std::runtime_error&) {
      r.first_threw = true;
    }
  });
  while (!first_computing) std::this_thread::yield();
  r.second = c.get_or_compute(a, compute);
  first.join();
  r.calls = calls.load();
  return r;
}

// Worker threads share a cache: a thread missing a result that another thread is computing
// waits for it instead of calling the function again.
TEST(UdfCacheState, ConcurrentMissesOfOneResultComputeItOnce) {
  UdfCacheState c(UdfCache{"once"});
  Race r = race_for_one_result(c, args(7), false, Value(int64_t{42}));
  EXPECT_EQ(r.first, Value(int64_t{42}));
  EXPECT_EQ(r.second, Value(int64_t{42}));
  EXPECT_EQ(r.calls, 1);
  EXPECT_EQ(c.describe_stats(), "udf cache 'once': 1 hits, 1 misses, 0 evictions, 1 entries, " +
                                    std::to_string(int_entry_size()) + " bytes");
}

// A computation that throws stores nothing; a thread that waited for it computes itself.
TEST(UdfCacheState, AWaiterComputesWhenTheComputationItWaitedForThrows) {
  UdfCacheState c(UdfCache{"retry"});
  Race r = race_for_one_result(c, args(3), true, Value(int64_t{5}));
  EXPECT_TRUE(r.first_threw);
  EXPECT_EQ(r.second, Value(int64_t{5}));
  EXPECT_EQ(r.calls, 2);
}

}  // namespace
}  // namespace tidemark::testing
