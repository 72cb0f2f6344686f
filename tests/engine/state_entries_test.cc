// Incremental persistent state entries (PersistentState overrides of the stateful operators).
//
// The property, for every operator: node A runs uninterrupted with change tracking on, and an
// entry map is maintained by applying A's take_state_changes() at random points. At random
// points a fresh node B is restored from that map; from then on A and B get the same batches
// and must emit byte-identical outputs at every step, and B's own entry map must stay equal to
// A's. Each take must also be proportional to what changed since the previous one.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "engine/arrangement.h"
#include "engine/codec.h"
#include "engine/node.h"
#include "two_input_testing.h"

namespace tidemark::testing {
namespace {

using engine::Node;
using engine::StateChanges;
using engine::Time;
using Entries = std::map<std::string, std::string>;

// The current step, read by the tests' non-deterministic functions: a function evaluated at a
// different step gives a different value, so a restore that re-evaluates instead of using the
// remembered result is caught.
int64_t g_epoch = 0;

Value epoch_plus(const std::vector<Value>& v) {
  if (v[0].is_none()) return Value();
  return Value(v[0].as_int() * 1000 + g_epoch);
}

// Drives the non-source nodes of a graph directly, one process() per node and time, like the
// scheduler does.
struct Pipeline {
  Graph g;
  std::vector<size_t> ops;  // non-source nodes, in graph (topological) order
  size_t out = 0;
  Node& node(size_t i) { return g.impl().node(i); }
};

std::unique_ptr<Pipeline> build_pipeline(const std::vector<Schema>& schemas, const BuildFn& build) {
  auto p = std::make_unique<Pipeline>();
  std::vector<Table> in;
  for (const auto& s : schemas)
    in.push_back(engine::add_source(p->g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), s));
  p->out = build(p->g, in).node();
  for (size_t i = 0; i < p->g.impl().size(); ++i)
    if (!p->node(i).inputs().empty()) p->ops.push_back(i);
  return p;
}

// Every node's consolidated output of one time (sources: their input batch).
std::vector<Batch> step(Pipeline& p, Time t, const std::vector<Batch>& in) {
  std::vector<Batch> outs(p.g.impl().size());
  for (size_t i = 0; i < in.size(); ++i) outs[i] = in[i];
  for (size_t i : p.ops) {
    Node& n = p.node(i);
    std::vector<const Batch*> ins;
    bool any = false;
    for (size_t j : n.inputs()) {
      ins.push_back(&outs[j]);
      any = any || !outs[j].empty();
    }
    if (!any) continue;
    n.process(t, ins, outs[i]);
    engine::consolidate(outs[i]);
  }
  return outs;
}

std::string encode(const Batch& b) {
  std::string s;
  for (const auto& u : b) {
    codec::put_key(s, u.key);
    codec::put_row(s, u.row);
    codec::put_i64(s, u.diff);
  }
  return s;
}

std::string describe(const Batch& b) {
  std::string s;
  for (const auto& u : b) s += u.key.to_string().substr(24) + row_str(u.row) + (u.diff > 0 ? "+ " : "- ");
  return s;
}

size_t take_into(Node& n, Entries& e) {
  StateChanges c;
  n.take_state_changes(c);
  for (auto& ch : c) {
    if (ch.erase) e.erase(ch.key);
    else e[ch.key] = ch.value;
  }
  return c.size();
}

// A fresh pipeline whose stateful nodes are restored from `entries` (given in a random order;
// tracking starts before or after the restore). Returns "" or what went wrong.
std::string restore_pipeline(const std::vector<Schema>& schemas, const BuildFn& build,
                             const std::map<size_t, Entries>& entries, std::mt19937_64& rng,
                             std::unique_ptr<Pipeline>* out) {
  auto p = build_pipeline(schemas, build);
  for (const auto& [i, e] : entries) {
    Node& n = p->node(i);
    bool track_first = rng() % 2 == 0;
    if (track_first) n.track_state_changes();
    std::vector<std::pair<std::string, std::string>> shuffled(e.begin(), e.end());
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    for (const auto& [k, v] : shuffled)
      if (Status s = n.restore_state_entry(k, v); !s.is_ok()) return n.label() + ": restore: " + s.to_string();
    if (Status s = n.finish_state_restore(); !s.is_ok()) return n.label() + ": finish: " + s.to_string();
    if (!track_first) n.track_state_changes();
    StateChanges c;
    n.take_state_changes(c);
    if (!c.empty()) return n.label() + ": restoring produced " + std::to_string(c.size()) + " state changes";
  }
  *out = std::move(p);
  return "";
}

struct Outcome {
  std::string output_mismatch;  // first step where B's output differed from A's
  std::string entry_mismatch;   // first take where B's entries differed from A's
  std::string error;            // a restore failed, a node threw, or a take was not incremental
  int restores = 0;
  size_t compared_steps = 0;    // steps at which a restored B was compared
  bool ok() const { return output_mismatch.empty() && entry_mismatch.empty() && error.empty(); }
  std::string what() const { return output_mismatch + entry_mismatch + error; }
};

// Drops one entry (at random) of one node before every restore: the harness must notice.
using Mutation = std::function<void(std::map<size_t, Entries>&, std::mt19937_64&)>;

Outcome run_restores(const std::vector<Schema>& schemas, const std::vector<std::vector<Batch>>& batches,
                     const BuildFn& build, uint64_t seed, const Mutation& mutate = nullptr) {
  Outcome o;
  std::mt19937_64 rng(seed);
  auto a = build_pipeline(schemas, build);
  std::vector<size_t> stateful;
  for (size_t i : a->ops)
    if (a->node(i).stateful()) {
      stateful.push_back(i);
      a->node(i).track_state_changes();
    }
  if (stateful.empty()) {
    o.error = "no stateful node";
    return o;
  }
  std::map<size_t, Entries> ea, eb;
  std::map<size_t, size_t> budget;  // input + output updates of each node since its last take
  std::unique_ptr<Pipeline> b;
  size_t steps = batches[0].size();
  try {
    for (size_t s = 0; s < steps; ++s) {
      g_epoch = static_cast<int64_t>(s) + 1;
      Time t = 1000 + 10 * s;
      std::vector<Batch> in;
      for (const auto& port : batches) {
        in.push_back(port[s]);
        engine::consolidate(in.back());
      }
      auto oa = step(*a, t, in);
      for (size_t i : stateful) {
        budget[i] += oa[i].size();
        for (size_t j : a->node(i).inputs()) budget[i] += oa[j].size();
      }
      if (b) {
        auto ob = step(*b, t, in);
        ++o.compared_steps;
        for (size_t i : a->ops)
          if (o.output_mismatch.empty() && encode(oa[i]) != encode(ob[i]))
            o.output_mismatch = "step " + std::to_string(s) + ", " + a->node(i).label() + ": uninterrupted " +
                                describe(oa[i]) + "| restored " + describe(ob[i]);
      }
      if (s + 1 != steps && rng() % 2 == 0) continue;
      for (size_t i : stateful) {
        size_t n = take_into(a->node(i), ea[i]);
        if (n > budget[i] && o.error.empty())
          o.error = a->node(i).label() + ": " + std::to_string(n) + " state changes for " +
                    std::to_string(budget[i]) + " updates at step " + std::to_string(s);
        budget[i] = 0;
        if (b) {
          take_into(b->node(i), eb[i]);
          if (eb[i] != ea[i] && o.entry_mismatch.empty())
            o.entry_mismatch = a->node(i).label() + ": entries differ after step " + std::to_string(s) + " (" +
                               std::to_string(ea[i].size()) + " vs " + std::to_string(eb[i].size()) + ")";
        }
      }
      if (s + 1 < steps && (rng() % 4 == 0 || (!b && s >= steps / 3))) {
        eb = ea;
        if (mutate) mutate(eb, rng);
        std::unique_ptr<Pipeline> fresh;
        if (std::string err = restore_pipeline(schemas, build, eb, rng, &fresh); !err.empty()) {
          o.error = err;
          return o;
        }
        b = std::move(fresh);
        ++o.restores;
      }
    }
  } catch (const std::exception& e) {
    o.error += std::string(" exception: ") + e.what();
  }
  return o;
}

void expect_restores(const std::vector<Schema>& schemas, const BuildFn& build,
                     const std::function<std::vector<std::vector<Batch>>(std::mt19937_64&)>& make_batches,
                     int seeds = 5) {
  for (int seed = 1; seed <= seeds; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed * 7919);
    auto batches = make_batches(rng);
    Outcome o = run_restores(schemas, batches, build, seed);
    EXPECT_TRUE(o.ok()) << o.what();
    EXPECT_GT(o.restores, 0);
    EXPECT_GT(o.compared_steps, 0u);
  }
}

// One input: keyed batches (insertions, retractions and -old +new updates of live keys).
std::function<std::vector<std::vector<Batch>>(std::mt19937_64&)> one_input(
    std::function<Row(std::mt19937_64&)> make_row, size_t steps = 50, size_t per_step = 6, uint64_t pool = 30) {
  return [=](std::mt19937_64& rng) {
    return std::vector<std::vector<Batch>>{keyed_batches(rng, steps, per_step, pool, make_row)};
  };
}

std::function<std::vector<std::vector<Batch>>(std::mt19937_64&)> two_inputs(
    std::function<Row(std::mt19937_64&)> left, std::function<Row(std::mt19937_64&)> right, size_t steps = 50,
    size_t per_step = 5, uint64_t pool = 20) {
  return [=](std::mt19937_64& rng) {
    return std::vector<std::vector<Batch>>{keyed_batches(rng, steps, per_step, pool, left),
                                           keyed_batches(rng, steps, per_step, pool, right)};
  };
}

// ---------------------------------------------------------------------------------------------
// groupby

const Schema kGroupSchema{{"g", t_str()}, {"v", t_int()}, {"f", t_float()}};

Row group_row(std::mt19937_64& rng) {
  static const char* groups[] = {"a", "b", "c", "d", "e"};
  return Row{Value(groups[rng() % 5]), Value(static_cast<int64_t>(rng() % 10)),
             Value(static_cast<double>(rng() % 8) / 4.0)};
}

std::vector<NamedExpr> every_reducer() {
  return {{"count", reducers::count()},
          {"sum", reducers::sum(col("v"))},
          {"fsum", reducers::sum(col("f"))},
          {"avg", reducers::avg(col("v"))},
          {"favg", reducers::avg(col("f"))},
          {"min", reducers::min(col("v"))},
          {"max", reducers::max(col("v"))},
          {"any", reducers::any(col("v"))},
          {"distinct", reducers::count_distinct(col("v"))},
          {"earliest", reducers::earliest(col("v"))},
          {"latest", reducers::latest(col("f"))},
          {"tuple", reducers::tuple(col("v"))},
          {"sorted", reducers::sorted_tuple(col("f"))},
          {"mixed", reducers::count() * 2 + reducers::max(col("v"))}};
}

TEST(StateEntries, GroupByEveryReducer) {
  expect_restores({kGroupSchema}, [](Graph&, std::vector<Table>& in) {
    auto outs = every_reducer();
    outs.insert(outs.begin(), {"g", col("g")});
    return in[0].groupby({"g"}).reduce(std::move(outs));
  }, one_input(group_row), 8);
}

TEST(StateEntries, GroupByTwoColumnsAndWholeTableReduce) {
  expect_restores({kGroupSchema}, [](Graph&, std::vector<Table>& in) {
    return in[0].groupby({"g", "v"}).reduce({{"g", col("g")}, {"v", col("v")}, {"n", reducers::count()},
                                             {"e", reducers::earliest(col("f"))}, {"t", reducers::tuple(col("f"))}});
  }, one_input(group_row));
  expect_restores({kGroupSchema}, [](Graph&, std::vector<Table>& in) { return in[0].reduce(every_reducer()); },
                  one_input(group_row, 40, 4, 15));
}

TEST(StateEntries, GroupByOrderDependenceAndSignature) {
  Graph g;
  Table in = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), kGroupSchema);
  Table plain = in.groupby({"g"}).reduce({{"g", col("g")}, {"n", reducers::count()}, {"t", reducers::tuple(col("v"))}});
  Table early = in.groupby({"g"}).reduce({{"g", col("g")}, {"e", reducers::earliest(col("v"))}});
  Table late = in.groupby({"v"}).reduce({{"l", reducers::latest(col("g"))}});
  Table other = in.groupby({"g"}).reduce({{"g", col("g")}, {"n", reducers::sum(col("v"))}, {"t", reducers::tuple(col("v"))}});
  auto& impl = g.impl();
  EXPECT_FALSE(impl.node(plain.node()).order_dependent());
  EXPECT_TRUE(impl.node(early.node()).order_dependent());
  EXPECT_TRUE(impl.node(late.node()).order_dependent());
  std::string sig = impl.node(plain.node()).signature();
  EXPECT_EQ(sig,
            "groupby(by: g; reducers: count(): int, tuple(int): tuple; g=col(g), n=reducers::count(), "
            "t=reducers::tuple(col(v))) -> g: str, n: int, t: tuple");
  // Reducer arguments are part of it: sum(v) and sum(w) of the same type differ.
  Table sum_v = in.groupby({"g"}).reduce({{"s", reducers::sum(col("v"))}});
  Table sum_v2 = in.groupby({"g"}).reduce({{"s", reducers::sum(col("v") * lit(2))}});
  EXPECT_NE(impl.node(sum_v.node()).signature(), impl.node(sum_v2.node()).signature());
  EXPECT_NE(sig, impl.node(other.node()).signature());
  EXPECT_NE(impl.node(early.node()).signature(), impl.node(late.node()).signature());
}

// ---------------------------------------------------------------------------------------------
// join

const Schema kLeft{{"j", optional(t_int())}, {"v", t_int()}};
const Schema kRight{{"j", optional(t_int())}, {"w", t_str()}};

Row left_row(std::mt19937_64& rng) {
  uint64_t j = rng() % 6;
  return Row{j == 0 ? Value() : Value(static_cast<int64_t>(j)), Value(static_cast<int64_t>(rng() % 50))};
}
Row right_row(std::mt19937_64& rng) {
  static const char* words[] = {"x", "y", "z"};
  uint64_t j = rng() % 6;
  return Row{j == 0 ? Value() : Value(static_cast<double>(j)), Value(words[rng() % 3])};
}

BuildFn join_build(JoinMode mode, bool memo) {
  return [mode, memo](Graph&, std::vector<Table>& in) {
    std::vector<NamedExpr> outs = {{"lv", left("v")}, {"rw", right("w")}, {"lid", left_id()}, {"rid", right_id()}};
    if (memo) outs.push_back({"x", apply(epoch_plus, {left("v")}, optional(t_int()), /*deterministic=*/false)});
    return in[0].join(in[1], {{"j", "j"}}, mode).select(std::move(outs));
  };
}

TEST(StateEntries, JoinEveryMode) {
  for (JoinMode mode : {JoinMode::kInner, JoinMode::kLeft, JoinMode::kRight, JoinMode::kOuter}) {
    SCOPED_TRACE("mode " + std::to_string(static_cast<int>(mode)));
    expect_restores({kLeft, kRight}, join_build(mode, false), two_inputs(left_row, right_row));
  }
}

TEST(StateEntries, JoinMemoizedNonDeterministicSelect) {
  for (JoinMode mode : {JoinMode::kInner, JoinMode::kLeft, JoinMode::kRight, JoinMode::kOuter}) {
    SCOPED_TRACE("mode " + std::to_string(static_cast<int>(mode)));
    expect_restores({kLeft, kRight}, join_build(mode, true), two_inputs(left_row, right_row));
  }
}

// ---------------------------------------------------------------------------------------------
// set operations and ix

const Schema kAB{{"a", t_str()}, {"b", t_int()}};
Row ab_row(std::mt19937_64& rng) {
  static const char* s[] = {"p", "q", "r"};
  return Row{Value(s[rng() % 3]), Value(static_cast<int64_t>(rng() % 5))};
}
Row b_row(std::mt19937_64& rng) { return Row{Value(static_cast<int64_t>(100 + rng() % 5))}; }

TEST(StateEntries, SetOperations) {
  struct Case {
    std::string name;
    Schema other;
    std::function<Row(std::mt19937_64&)> other_row;
    std::function<Table(const Table&, const Table&)> op;
  };
  std::vector<Case> cases = {
      {"update_rows", Schema{{"b", t_int()}, {"a", t_str()}},
       [](std::mt19937_64& r) { return Row{Value(static_cast<int64_t>(r() % 5)), Value("o")}; },
       [](const Table& x, const Table& y) { return x.update_rows(y); }},
      {"update_cells", Schema{{"b", t_int()}}, b_row, [](const Table& x, const Table& y) { return x.update_cells(y); }},
      {"difference", kAB, ab_row, [](const Table& x, const Table& y) { return x.difference(y); }},
      {"intersect", kAB, ab_row, [](const Table& x, const Table& y) { return x.intersect(y); }},
      {"restrict", Schema{{"o", t_int()}}, b_row, [](const Table& x, const Table& y) { return x.restrict(y); }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto op = c.op;
    expect_restores({kAB, c.other}, [op](Graph&, std::vector<Table>& in) { return op(in[0], in[1]); },
                    two_inputs(ab_row, c.other_row));
  }
}

const Schema kTarget{{"v", t_str()}};
const Schema kPointers{{"p", optional(t_pointer())}, {"n", t_int()}};
Row target_row(std::mt19937_64& rng) {
  static const char* s[] = {"x", "y", "z", "w"};
  return Row{Value(s[rng() % 4])};
}
Row pointer_row(std::mt19937_64& rng) {
  uint64_t k = rng() % 12;  // 0: None; keys above the pool: never present
  return Row{k == 0 ? Value() : Value(pool_key(k)), Value(static_cast<int64_t>(rng() % 3))};
}

TEST(StateEntries, Ix) {
  for (bool opt : {false, true}) {
    SCOPED_TRACE(opt ? "optional" : "strict");
    expect_restores({kTarget, kPointers}, [opt](Graph&, std::vector<Table>& in) { return in[0].ix(in[1], col("p"), opt); },
                    two_inputs(target_row, pointer_row, 50, 5, 10));
    // A pointer that depends on when it is computed: a restore must keep the pointers used.
    expect_restores({kTarget, kPointers}, [opt](Graph&, std::vector<Table>& in) {
      Expr p = apply([](const std::vector<Value>& v) {
        if (v[0].is_none()) return Value();
        return Value(pool_key((v[0].as_pointer().lo + static_cast<uint64_t>(g_epoch)) % 10 + 1));
      }, {col("p")}, optional(t_pointer()), /*deterministic=*/false);
      return in[0].ix(in[1], p, opt);
    }, two_inputs(target_row, pointer_row, 50, 5, 10));
  }
}

// ---------------------------------------------------------------------------------------------
// sort, windows, deduplicate

const Schema kGV{{"g", t_str()}, {"v", t_int()}};
Row gv_row(std::mt19937_64& rng) {
  static const char* groups[] = {"a", "b", "c"};
  return Row{Value(groups[rng() % 3]), Value(static_cast<int64_t>(rng() % 20))};
}

TEST(StateEntries, Sort) {
  expect_restores({kGV}, [](Graph&, std::vector<Table>& in) { return in[0].sort(col("v")); }, one_input(gv_row));
  expect_restores({kGV}, [](Graph&, std::vector<Table>& in) { return in[0].sort(col("v"), col("g")); },
                  one_input(gv_row));
  // A sort value computed differently at each step: a restore must keep the values used.
  expect_restores({kGV}, [](Graph&, std::vector<Table>& in) {
    return in[0].sort(apply(epoch_plus, {col("v")}, t_int(), /*deterministic=*/false) % 7, col("g"));
  }, one_input(gv_row));
}

const Schema kTimes{{"g", t_str()}, {"t", t_int()}, {"f", t_float()}};
Row time_row(std::mt19937_64& rng) {
  static const char* groups[] = {"a", "b"};
  return Row{Value(groups[rng() % 2]), Value(static_cast<int64_t>(rng() % 40)),
             Value(static_cast<double>(rng() % 40) / 4.0)};
}

TEST(StateEntries, EveryWindowKind) {
  auto reduced = [](const std::vector<NamedExpr>& extra) {
    std::vector<NamedExpr> outs = {{"s", col("_pw_window_start")}, {"e", col("_pw_window_end")},
                                   {"n", reducers::count()},       {"first", reducers::earliest(col("t"))},
                                   {"last", reducers::latest(col("f"))}, {"ts", reducers::sorted_tuple(col("t"))}};
    outs.insert(outs.end(), extra.begin(), extra.end());
    return outs;
  };
  std::vector<std::pair<std::string, std::function<Table(Table&)>>> cases = {
      {"tumbling", [&](Table& t) { return t.windowby(col("t"), tumbling(5)).reduce(reduced({})); }},
      {"tumbling+instance",
       [&](Table& t) {
         return t.windowby(col("t"), tumbling(5, 2), col("g")).reduce(reduced({{"g", col("_pw_instance")}}));
       }},
      {"sliding", [&](Table& t) { return t.windowby(col("t"), sliding(3, 7)).reduce(reduced({})); }},
      {"sliding float", [&](Table& t) { return t.windowby(col("f"), sliding(1.5, 4.0)).reduce(reduced({})); }},
      {"session", [&](Table& t) { return t.windowby(col("t"), session(3)).reduce(reduced({})); }},
      {"session+instance",
       [&](Table& t) {
         return t.windowby(col("t"), session(2), col("g")).reduce(reduced({{"g", col("_pw_instance")}}));
       }},
      {"session float", [&](Table& t) { return t.windowby(col("f"), session(1.0)).reduce(reduced({})); }},
  };
  for (const auto& [name, make] : cases) {
    SCOPED_TRACE(name);
    auto m = make;
    expect_restores({kTimes}, [m](Graph&, std::vector<Table>& in) { return m(in[0]); }, one_input(time_row));
  }
}

TEST(StateEntries, Deduplicate) {
  auto far_above = [](const Value& n, const Value& o) { return n.as_int() > o.as_int() + 2; };
  auto far_from = [](const Value& n, const Value& o) { return std::abs(n.as_int() - o.as_int()) >= 5; };
  for (bool by_group : {false, true})
    for (int acc = 0; acc < 2; ++acc) {
      SCOPED_TRACE(std::string(by_group ? "instances" : "single") + (acc ? " far_from" : " far_above"));
      std::function<bool(const Value&, const Value&)> acceptor = acc ? std::function<bool(const Value&, const Value&)>(far_from)
                                                                     : far_above;
      expect_restores({kGV}, [=](Graph&, std::vector<Table>& in) {
        return in[0].deduplicate({.value = col("v"),
                                  .acceptor = acceptor,
                                  .instance = by_group ? std::optional<Expr>(col("g")) : std::nullopt,
                                  .name = ""});
      }, one_input(gv_row));
    }
  Graph g;
  Table in = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), kGV);
  Table d = in.deduplicate({.value = col("v"), .acceptor = far_above, .instance = std::nullopt, .name = ""});
  EXPECT_TRUE(g.impl().node(d.node()).order_dependent());
}

// ---------------------------------------------------------------------------------------------
// memoized select / filter, concat

TEST(StateEntries, MemoizedSelectAndFilter) {
  expect_restores({kGV}, [](Graph&, std::vector<Table>& in) {
    return in[0].select({{"g", col("g")}, {"x", apply(epoch_plus, {col("v")}, optional(t_int()), false)}});
  }, one_input(gv_row));
  expect_restores({kGV}, [](Graph&, std::vector<Table>& in) {
    return in[0].filter(apply([](const std::vector<Value>& v) { return Value((v[0].as_int() + g_epoch) % 2 == 0); },
                              {col("v")}, t_bool(), false));
  }, one_input(gv_row));
}

TEST(StateEntries, Concat) {
  auto batches = [](std::mt19937_64& rng) {
    auto a = keyed_batches(rng, 50, 5, 20, gv_row);
    auto b = keyed_batches(rng, 50, 5, 20, gv_row);
    for (auto& batch : b)
      for (auto& u : batch) u.key.hi = 0xbeef;  // disjoint from the first input's keys
    return std::vector<std::vector<Batch>>{a, b};
  };
  expect_restores({kGV, kGV}, [](Graph&, std::vector<Table>& in) { return in[0].concat(in[1]); }, batches);
}

// Several stateful nodes restored together: join -> groupby -> sort.
TEST(StateEntries, ChainOfOperators) {
  expect_restores({kLeft, kRight}, [](Graph&, std::vector<Table>& in) {
    Table j = in[0].join_left(in[1], {{"j", "j"}}).select({{"w", right("w")}, {"v", left("v")}});
    Table g = j.groupby({"w"}).reduce({{"w", col("w")}, {"n", reducers::count()}, {"e", reducers::earliest(col("v"))}});
    return g.sort(col("n"));
  }, two_inputs(left_row, right_row));
}

// ---------------------------------------------------------------------------------------------
// The harness catches broken restores: a restored node that misses one entry diverges.

TEST(StateEntries, DroppingAnEntryIsDetected) {
  Mutation drop_one = [](std::map<size_t, Entries>& e, std::mt19937_64& rng) {
    for (auto& [i, entries] : e) {
      if (entries.empty()) continue;
      auto it = entries.begin();
      std::advance(it, static_cast<long>(rng() % entries.size()));
      entries.erase(it);
      return;
    }
  };
  struct Case {
    std::string name;
    std::vector<Schema> schemas;
    BuildFn build;
    std::function<std::vector<std::vector<Batch>>(std::mt19937_64&)> batches;
  };
  std::vector<Case> cases = {
      {"groupby", {kGroupSchema}, [](Graph&, std::vector<Table>& in) {
         return in[0].groupby({"g"}).reduce({{"g", col("g")}, {"n", reducers::count()}});
       }, one_input(group_row)},
      {"join", {kLeft, kRight}, join_build(JoinMode::kOuter, true), two_inputs(left_row, right_row)},
      {"update_rows", {kAB, kAB}, [](Graph&, std::vector<Table>& in) { return in[0].update_rows(in[1]); },
       two_inputs(ab_row, ab_row)},
      {"ix", {kTarget, kPointers}, [](Graph&, std::vector<Table>& in) { return in[0].ix(in[1], col("p"), true); },
       two_inputs(target_row, pointer_row, 50, 5, 10)},
      {"sort", {kGV}, [](Graph&, std::vector<Table>& in) { return in[0].sort(col("v")); }, one_input(gv_row)},
      {"session", {kTimes}, [](Graph&, std::vector<Table>& in) {
         return in[0].windowby(col("t"), session(3)).reduce({{"n", reducers::count()}});
       }, one_input(time_row)},
      {"deduplicate", {kGV}, [](Graph&, std::vector<Table>& in) {
         return in[0].deduplicate({.value = col("v"),
                                   .acceptor = [](const Value& n, const Value& o) { return n.as_int() > o.as_int(); },
                                   .instance = col("g"),
                                   .name = ""});
       }, one_input(gv_row)},
      {"select", {kGV}, [](Graph&, std::vector<Table>& in) {
         return in[0].select({{"x", apply(epoch_plus, {col("v")}, optional(t_int()), false)}});
       }, one_input(gv_row)},
      {"concat", {kGV, kGV}, [](Graph&, std::vector<Table>& in) { return in[0].concat(in[1]); },
       [](std::mt19937_64& rng) {
         auto a = keyed_batches(rng, 50, 5, 20, gv_row);
         auto b = keyed_batches(rng, 50, 5, 20, gv_row);
         for (auto& batch : b)
           for (auto& u : batch) u.key.hi = 0xbeef;
         return std::vector<std::vector<Batch>>{a, b};
       }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    int output_diverged = 0;
    for (int seed = 1; seed <= 3; ++seed) {
      std::mt19937_64 rng(seed * 7919);
      Outcome o = run_restores(c.schemas, c.batches(rng), c.build, seed, drop_one);
      EXPECT_FALSE(o.ok()) << "seed " << seed << ": a restore missing an entry went unnoticed";
      if (!o.output_mismatch.empty() || !o.error.empty()) ++output_diverged;
    }
    // Concat's count only guards key disjointness: a lost count changes no output.
    if (c.name != "concat") {
      EXPECT_GT(output_diverged, 0) << "no seed made the outputs diverge";
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Incrementality: a batch touching k keys of a large state takes O(k) changes.

struct Large {
  std::unique_ptr<Pipeline> p;
  Node* node;
};

Large tracked(const std::vector<Schema>& schemas, const BuildFn& build) {
  Large l;
  l.p = build_pipeline(schemas, build);
  l.node = &l.p->node(l.p->out);
  l.node->track_state_changes();
  return l;
}

size_t changes_of(Node& n) {
  StateChanges c;
  n.take_state_changes(c);
  return c.size();
}

Batch numbered(size_t n, const std::function<Row(size_t)>& row, uint64_t hi = 0x5eed) {
  Batch b;
  for (size_t i = 0; i < n; ++i) b.push_back({Key{i + 1, hi}, row(i), 1});
  engine::consolidate(b);
  return b;
}

TEST(StateEntries, GroupByTakesOnlyTouchedGroups) {
  auto l = tracked({kGroupSchema}, [](Graph&, std::vector<Table>& in) {
    return in[0].groupby({"g"}).reduce({{"g", col("g")}, {"n", reducers::count()}, {"t", reducers::tuple(col("v"))},
                                       {"e", reducers::earliest(col("v"))}});
  });
  auto row = [](size_t i) { return Row{Value("g" + std::to_string(i)), Value(int64_t(i)), Value(0.5)}; };
  step(*l.p, 1, {numbered(10000, row)});
  EXPECT_EQ(changes_of(*l.node), 10000u);
  // Three groups touched: one row retracted, one updated, one new row in an existing group.
  Batch b = {{Key{1, 0x5eed}, row(0), -1},
             {Key{2, 0x5eed}, row(1), -1},
             {Key{2, 0x5eed}, Row{Value("g1"), Value(int64_t(7)), Value(0.5)}, 1},
             {Key{20000, 0x5eed}, row(2), 1}};
  engine::consolidate(b);
  step(*l.p, 2, {b});
  StateChanges c;
  l.node->take_state_changes(c);
  EXPECT_LE(c.size(), 3u);
  size_t erases = 0;
  for (const auto& ch : c) erases += ch.erase;
  EXPECT_EQ(erases, 1u);  // group g0 is gone
  EXPECT_EQ(changes_of(*l.node), 0u);  // nothing new since the last take
}

TEST(StateEntries, JoinTakesOnlyChangedRows) {
  for (bool memo : {false, true}) {
    auto l = tracked({kLeft, kRight}, join_build(JoinMode::kOuter, memo));
    auto lrow = [](size_t i) { return Row{Value(int64_t(i % 5000)), Value(int64_t(i))}; };
    auto rrow = [](size_t i) { return Row{Value(int64_t(i % 5000)), Value("r")}; };
    step(*l.p, 1, {numbered(10000, lrow), numbered(10000, rrow)});
    EXPECT_GE(changes_of(*l.node), 20000u);
    // Two updates: a left row changes its value, a right row moves to another join key. Each
    // touches 2 x 2 joined pairs, whose memo entries change too.
    Batch left = {{Key{5, 0x5eed}, lrow(4), -1}, {Key{5, 0x5eed}, Row{Value(int64_t(4)), Value(int64_t(-1))}, 1}};
    Batch right = {{Key{9, 0x5eed}, rrow(8), -1}, {Key{9, 0x5eed}, Row{Value(int64_t(77)), Value("r")}, 1}};
    engine::consolidate(left);
    engine::consolidate(right);
    auto out = step(*l.p, 2, {left, right});
    size_t n = changes_of(*l.node);
    if (memo) EXPECT_LE(n, 2 + out[l.p->out].size());
    else EXPECT_LE(n, 2u);
  }
}

TEST(StateEntries, OtherOperatorsTakeOnlyChangedKeys) {
  struct Case {
    std::string name;
    std::vector<Schema> schemas;
    BuildFn build;
  };
  std::vector<Case> cases = {
      {"update_rows", {kAB, kAB}, [](Graph&, std::vector<Table>& in) { return in[0].update_rows(in[1]); }},
      {"difference", {kAB, kAB}, [](Graph&, std::vector<Table>& in) { return in[0].difference(in[1]); }},
      {"sort", {kAB}, [](Graph&, std::vector<Table>& in) { return in[0].sort(col("b")); }},
      {"deduplicate", {kAB}, [](Graph&, std::vector<Table>& in) {
         return in[0].deduplicate({.value = col("b"),
                                   .acceptor = [](const Value& n, const Value& o) { return n.as_int() > o.as_int(); },
                                   .instance = col("a"),
                                   .name = ""});
       }},
      {"select", {kAB}, [](Graph&, std::vector<Table>& in) {
         return in[0].select({{"x", apply(epoch_plus, {col("b")}, optional(t_int()), false)}});
       }},
      {"filter", {kAB}, [](Graph&, std::vector<Table>& in) {
         return in[0].filter(apply([](const std::vector<Value>& v) { return Value(v[0].as_int() % 2 == 0); }, {col("b")},
                                   t_bool(), false));
       }},
      {"concat", {kAB, kAB}, [](Graph&, std::vector<Table>& in) { return in[0].concat(in[1]); }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto l = tracked(c.schemas, c.build);
    auto row = [](size_t i) { return Row{Value("a" + std::to_string(i)), Value(int64_t(i))}; };
    std::vector<Batch> first = {numbered(10000, row)};
    if (c.schemas.size() == 2) first.push_back(numbered(10000, row, c.name == "concat" ? 0xbeef : 0x5eed));
    step(*l.p, 1, first);
    EXPECT_GE(changes_of(*l.node), 10000u);
    Batch b = {{Key{5, 0x5eed}, row(4), -1},
               {Key{5, 0x5eed}, Row{Value("a4"), Value(int64_t(20001))}, 1},
               {Key{9, 0x5eed}, row(8), -1}};
    engine::consolidate(b);
    std::vector<Batch> second = {b};
    if (c.schemas.size() == 2) second.push_back({});
    step(*l.p, 2, second);
    EXPECT_LE(changes_of(*l.node), 2u);
  }
  // Session windows and ix: one row of a large state.
  {
    auto l = tracked({kTimes}, [](Graph&, std::vector<Table>& in) {
      return in[0].windowby(col("t"), session(3)).reduce({{"n", reducers::count()}});
    });
    Node& window = l.p->node(l.p->ops[0]);
    window.track_state_changes();
    step(*l.p, 1, {numbered(10000, [](size_t i) { return Row{Value("a"), Value(int64_t(i * 10)), Value(0.0)}; })});
    EXPECT_EQ(changes_of(window), 10000u);
    EXPECT_EQ(changes_of(*l.node), 10000u);  // one session per row
    Batch b = {{Key{3, 0x5eed}, Row{Value("a"), Value(int64_t(20)), Value(0.0)}, -1},
               {Key{3, 0x5eed}, Row{Value("a"), Value(int64_t(11)), Value(0.0)}, 1}};  // merges two sessions
    step(*l.p, 2, {b});
    EXPECT_EQ(changes_of(window), 1u);
    EXPECT_LE(changes_of(*l.node), 3u);
  }
  {
    auto l = tracked({kTarget, kPointers}, [](Graph&, std::vector<Table>& in) { return in[0].ix(in[1], col("p")); });
    step(*l.p, 1, {numbered(10000, [](size_t i) { return Row{Value("t" + std::to_string(i))}; }),
                   numbered(10000, [](size_t i) { return Row{Value(Key{i + 1, 0x5eed}), Value(int64_t(0))}; }, 7)});
    EXPECT_EQ(changes_of(*l.node), 20000u);
    Batch target = {{Key{4, 0x5eed}, Row{Value("t3")}, -1}, {Key{4, 0x5eed}, Row{Value("new")}, 1}};
    Batch source = {{Key{1, 7}, Row{Value(Key{1, 0x5eed}), Value(int64_t(0))}, -1},
                    {Key{1, 7}, Row{Value(Key{2, 0x5eed}), Value(int64_t(0))}, 1}};
    step(*l.p, 2, {target, source});
    EXPECT_LE(changes_of(*l.node), 2u);
  }
}

// Without tracking, nothing is recorded.
TEST(StateEntries, NoChangesWithoutTracking) {
  auto p = build_pipeline({kLeft, kRight}, join_build(JoinMode::kOuter, true));
  std::mt19937_64 rng(5);
  auto l = keyed_batches(rng, 5, 5, 20, left_row), r = keyed_batches(rng, 5, 5, 20, right_row);
  for (size_t s = 0; s < 5; ++s) {
    engine::consolidate(l[s]);
    engine::consolidate(r[s]);
    step(*p, s + 1, {l[s], r[s]});
  }
  EXPECT_EQ(changes_of(p->node(p->out)), 0u);
}

// ---------------------------------------------------------------------------------------------
// Corrupt entries: restore fails with Corruption naming the operator.

TEST(StateEntries, CorruptEntryIsReportedWithTheOperatorLabel) {
  struct Case {
    std::string name;
    std::vector<Schema> schemas;
    BuildFn build;
    std::function<std::vector<std::vector<Batch>>(std::mt19937_64&)> batches;
  };
  std::vector<Case> cases = {
      {"groupby", {kGroupSchema}, [](Graph&, std::vector<Table>& in) {
         auto outs = every_reducer();
         outs.insert(outs.begin(), {"g", col("g")});
         return in[0].groupby({"g"}).reduce(std::move(outs));
       }, one_input(group_row, 10)},
      {"join", {kLeft, kRight}, join_build(JoinMode::kOuter, true), two_inputs(left_row, right_row, 10)},
      {"intersect", {kAB, kAB}, [](Graph&, std::vector<Table>& in) { return in[0].intersect(in[1]); },
       two_inputs(ab_row, ab_row, 10)},
      {"ix", {kTarget, kPointers}, [](Graph&, std::vector<Table>& in) { return in[0].ix(in[1], col("p")); },
       two_inputs(target_row, pointer_row, 10, 5, 10)},
      {"sort", {kGV}, [](Graph&, std::vector<Table>& in) { return in[0].sort(col("v")); }, one_input(gv_row, 10)},
      {"session", {kTimes}, [](Graph&, std::vector<Table>& in) {
         return in[0].windowby(col("t"), session(3)).reduce({{"n", reducers::count()}});
       }, one_input(time_row, 10)},
      {"deduplicate", {kGV}, [](Graph&, std::vector<Table>& in) {
         return in[0].deduplicate({.value = col("v"),
                                   .acceptor = [](const Value& n, const Value& o) { return n.as_int() > o.as_int(); },
                                   .instance = std::nullopt,
                                   .name = ""});
       }, one_input(gv_row, 10)},
      {"select", {kGV}, [](Graph&, std::vector<Table>& in) {
         return in[0].select({{"x", apply(epoch_plus, {col("v")}, optional(t_int()), false)}});
       }, one_input(gv_row, 10)},
      {"filter", {kGV}, [](Graph&, std::vector<Table>& in) {
         return in[0].filter(apply([](const std::vector<Value>& v) { return Value(v[0].as_int() % 2 == 0); },
                                   {col("v")}, t_bool(), false));
       }, one_input(gv_row, 10)},
      {"concat", {kGV, kGV}, [](Graph&, std::vector<Table>& in) { return in[0].concat(in[1]); },
       [](std::mt19937_64& rng) {
         auto a = keyed_batches(rng, 10, 5, 20, gv_row);
         auto b = keyed_batches(rng, 10, 5, 20, gv_row);
         for (auto& batch : b)
           for (auto& u : batch) u.key.hi = 0xbeef;
         return std::vector<std::vector<Batch>>{a, b};
       }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::mt19937_64 rng(3);
    auto batches = c.batches(rng);
    auto a = build_pipeline(c.schemas, c.build);
    std::map<size_t, Entries> entries;
    for (size_t i : a->ops)
      if (a->node(i).stateful()) a->node(i).track_state_changes();
    for (size_t s = 0; s < batches[0].size(); ++s) {
      std::vector<Batch> in;
      for (const auto& port : batches) {
        in.push_back(port[s]);
        engine::consolidate(in.back());
      }
      step(*a, 1 + s, in);
    }
    for (size_t i : a->ops)
      if (a->node(i).stateful()) take_into(a->node(i), entries[i]);
    // The last stateful node (the operator under test; session windows: the window node).
    size_t target = c.name == "session" ? a->ops[0] : a->out;
    const Entries& e = entries[target];
    ASSERT_FALSE(e.empty());
    std::string label = a->node(target).label();
    auto expect_corrupt = [&](const std::string& key, const std::string& value, const std::string& what) {
      auto b = build_pipeline(c.schemas, c.build);
      Node& n = b->node(target);
      Status s;
      for (const auto& [k, v] : e)
        if (k != key && s.is_ok()) s = n.restore_state_entry(k, v);
      ASSERT_TRUE(s.is_ok()) << s.to_string();
      s = n.restore_state_entry(key, value);
      if (s.is_ok()) s = n.finish_state_restore();
      EXPECT_EQ(s.code(), StatusCode::kCorruption) << what << ": " << s.to_string();
      EXPECT_NE(s.message().find(label), std::string::npos) << what << ": " << s.to_string();
    };
    for (const auto& [k, v] : e) {
      expect_corrupt(k, v.substr(0, v.size() - 1), "truncated value");
      expect_corrupt(k, v + "x", "trailing bytes");
      expect_corrupt(k, "\x63" + v.substr(1), "unknown version");
      expect_corrupt(k, "", "empty value");
      if (HasFailure()) break;
    }
    expect_corrupt("\x7f\x01garbage key", e.begin()->second, "bad key");
    // A valid restore of the same entries succeeds.
    auto b = build_pipeline(c.schemas, c.build);
    for (const auto& [k, v] : e) ASSERT_TRUE(b->node(target).restore_state_entry(k, v).is_ok());
    ASSERT_TRUE(b->node(target).finish_state_restore().is_ok());
  }
}


// ---------------------------------------------------------------------------------------------
// Join restore by load: the arrangement is rebuilt from its entries without process().

// A restored join (every mode) continues exactly like the uninterrupted one through targeted
// changes: a bucket's right side emptied (kept left rows turn unmatched), refilled, rows moving
// between buckets on both sides, retractions of restored rows.
TEST(StateEntries, JoinRestoredArrangementTakesUpdatesOfBothSides) {
  auto lrow = [](int64_t j, int64_t v) { return Row{Value(j), Value(v)}; };
  auto rrow = [](int64_t j, const char* w) { return Row{Value(j), Value(w)}; };
  std::vector<std::vector<Batch>> steps = {
      {{{Key{1, 1}, lrow(1, 10), 1}, {Key{2, 1}, lrow(1, 20), 1}, {Key{3, 1}, lrow(2, 30), 1}, {Key{4, 1}, lrow(3, 40), 1}},
       {{Key{1, 2}, rrow(1, "a"), 1}, {Key{2, 2}, rrow(2, "b"), 1}, {Key{3, 2}, rrow(4, "c"), 1}}},
      // Restore happens here. Right of bucket 1 retracted: left 1 and 2 turn unmatched.
      {{}, {{Key{1, 2}, rrow(1, "a"), -1}}},
      // Left 3 moves from bucket 2 to bucket 4; right 2 moves from bucket 2 to bucket 3.
      {{{Key{3, 1}, lrow(2, 30), -1}, {Key{3, 1}, lrow(4, 31), 1}}, {{Key{2, 2}, rrow(2, "b"), -1}, {Key{2, 2}, rrow(3, "b2"), 1}}},
      // Bucket 1 refilled on the right, a restored left row retracted, a new left row.
      {{{Key{2, 1}, lrow(1, 20), -1}, {Key{5, 1}, lrow(3, 50), 1}}, {{Key{7, 2}, rrow(1, "a2"), 1}}},
      // Everything retracted.
      {{{Key{1, 1}, lrow(1, 10), -1}, {Key{3, 1}, lrow(4, 31), -1}, {Key{4, 1}, lrow(3, 40), -1}, {Key{5, 1}, lrow(3, 50), -1}},
       {{Key{2, 2}, rrow(3, "b2"), -1}, {Key{3, 2}, rrow(4, "c"), -1}, {Key{7, 2}, rrow(1, "a2"), -1}}},
  };
  for (JoinMode mode : {JoinMode::kInner, JoinMode::kLeft, JoinMode::kRight, JoinMode::kOuter}) {
    for (bool memo : {false, true}) {
      SCOPED_TRACE("mode " + std::to_string(static_cast<int>(mode)) + (memo ? " memo" : ""));
      auto a = build_pipeline({kLeft, kRight}, join_build(mode, memo));
      Node& na = a->node(a->out);
      na.track_state_changes();
      g_epoch = 1;
      std::vector<Batch> first = steps[0];
      for (auto& b : first) engine::consolidate(b);
      step(*a, 1, first);
      Entries e;
      take_into(na, e);
      std::mt19937_64 rng(1);
      std::unique_ptr<Pipeline> b;
      ASSERT_EQ(restore_pipeline({kLeft, kRight}, join_build(mode, memo), {{a->out, e}}, rng, &b), "");
      Entries eb = e;
      for (size_t s = 1; s < steps.size(); ++s) {
        g_epoch = static_cast<int64_t>(s) + 1;
        std::vector<Batch> in = steps[s];
        for (auto& x : in) engine::consolidate(x);
        auto oa = step(*a, 1 + s, in);
        auto ob = step(*b, 1 + s, in);
        EXPECT_EQ(describe(oa[a->out]), describe(ob[b->out])) << "step " << s;
        take_into(na, e);
        take_into(b->node(b->out), eb);
        EXPECT_EQ(e, eb) << "step " << s;
      }
      if (mode == JoinMode::kInner && !memo) EXPECT_TRUE(e.empty());
    }
  }
}

// The join takes unconsolidated input (needs_consolidated_input() is false): a time's updates in
// any order, with changes that cancel (also between equal rows encoded differently, 0.0 and
// -0.0) and a row key's insertion before its retraction, give the outputs and entries of the
// consolidated input.
TEST(StateEntries, JoinTakesUnconsolidatedInput) {
  auto lrow = [](int64_t j, int64_t v) { return Row{Value(j), Value(v)}; };
  auto rrow = [](double j, const char* w) { return Row{Value(j), Value(w)}; };
  std::vector<std::vector<Batch>> steps = {
      {{{Key{2, 1}, lrow(1, 20), 1}, {Key{9, 1}, lrow(2, 99), 1}, {Key{1, 1}, lrow(1, 10), 1}, {Key{9, 1}, lrow(2, 99), -1},
        {Key{3, 1}, lrow(0, 30), 1}},
       {{Key{2, 2}, rrow(0.0, "z"), 1}, {Key{1, 2}, rrow(1.0, "a"), 1}, {Key{8, 2}, rrow(0.0, "q"), 1},
        {Key{8, 2}, rrow(-0.0, "q"), -1}}},
      // Insertions before the retractions of the same keys, a row moving buckets, a cancelling
      // retraction and re-insertion of a live row.
      {{{Key{1, 1}, lrow(0, 11), 1}, {Key{2, 1}, lrow(1, 21), 1}, {Key{1, 1}, lrow(1, 10), -1}, {Key{2, 1}, lrow(1, 20), -1},
        {Key{3, 1}, lrow(0, 30), -1}, {Key{3, 1}, lrow(0, 30), 1}},
       {{Key{2, 2}, rrow(-0.0, "z"), 1}, {Key{2, 2}, rrow(0.0, "z"), -1}, {Key{1, 2}, rrow(1.0, "a"), -1},
        {Key{1, 2}, rrow(1.0, "a"), 1}, {Key{1, 2}, rrow(1.0, "a"), -1}}},
      {{{Key{1, 1}, lrow(0, 11), -1}, {Key{2, 1}, lrow(1, 21), -1}, {Key{3, 1}, lrow(0, 30), -1}},
       {{Key{2, 2}, rrow(0.0, "z"), -1}}},
  };
  for (JoinMode mode : {JoinMode::kInner, JoinMode::kLeft, JoinMode::kRight, JoinMode::kOuter}) {
    SCOPED_TRACE("mode " + std::to_string(static_cast<int>(mode)));
    auto a = build_pipeline({kLeft, kRight}, join_build(mode, false));
    auto b = build_pipeline({kLeft, kRight}, join_build(mode, false));
    ASSERT_FALSE(b->node(b->out).needs_consolidated_input());
    a->node(a->out).track_state_changes();
    b->node(b->out).track_state_changes();
    Entries ea, eb;
    for (size_t s = 0; s < steps.size(); ++s) {
      std::vector<Batch> raw = steps[s], consolidated = steps[s];
      for (auto& x : consolidated) engine::consolidate(x);
      auto oa = step(*a, 1 + s, consolidated);
      auto ob = step(*b, 1 + s, raw);
      EXPECT_EQ(describe(oa[a->out]), describe(ob[b->out])) << "step " << s;
      take_into(a->node(a->out), ea);
      take_into(b->node(b->out), eb);
      EXPECT_EQ(ea, eb) << "step " << s;
    }
    EXPECT_TRUE(eb.empty());
  }
}

// A restore of many rows and buckets (the bucket table filled in bucket order, wrapping at its
// end; skewed buckets whose chains are indexed) continues like the uninterrupted join.
TEST(StateEntries, JoinRestoresManyBuckets) {
  std::mt19937_64 gen(7);
  Batch l, r;
  for (uint64_t i = 0; i < 4000; ++i) {
    int64_t j = i % 50 == 0 ? 7 : static_cast<int64_t>(gen() % 3000);  // bucket 7 is skewed
    l.push_back({Key{i + 1, 1}, Row{Value(j), Value(static_cast<int64_t>(i))}, 1});
    r.push_back({Key{i + 1, 2}, Row{Value(static_cast<double>(j == 7 ? 7 : gen() % 3000)), Value("w")}, 1});
  }
  engine::consolidate(l);
  engine::consolidate(r);
  for (JoinMode mode : {JoinMode::kInner, JoinMode::kOuter}) {
    SCOPED_TRACE("mode " + std::to_string(static_cast<int>(mode)));
    auto a = build_pipeline({kLeft, kRight}, join_build(mode, false));
    a->node(a->out).track_state_changes();
    step(*a, 1, {l, Batch{}});
    step(*a, 2, {Batch{}, r});
    Entries e;
    take_into(a->node(a->out), e);
    std::mt19937_64 rng(3);
    std::unique_ptr<Pipeline> b;
    ASSERT_EQ(restore_pipeline({kLeft, kRight}, join_build(mode, false), {{a->out, e}}, rng, &b), "");
    auto c = build_pipeline({kLeft, kRight}, join_build(mode, false));  // restored in key order
    for (const auto& [k, v] : e) ASSERT_TRUE(c->node(c->out).restore_state_entry(k, v).is_ok());
    ASSERT_TRUE(c->node(c->out).finish_state_restore().is_ok());
    // Retract every other row of both sides, then the rest.
    for (int round = 0; round < 2; ++round) {
      Batch dl, dr;
      for (size_t i = round; i < l.size(); i += 2) dl.push_back({l[i].key, l[i].row, -1});
      for (size_t i = round; i < r.size(); i += 2) dr.push_back({r[i].key, r[i].row, -1});
      auto oa = step(*a, 3 + round, {dl, dr});
      auto ob = step(*b, 3 + round, {dl, dr});
      auto oc = step(*c, 3 + round, {dl, dr});
      EXPECT_EQ(describe(oa[a->out]), describe(ob[b->out])) << "round " << round;
      EXPECT_EQ(describe(oa[a->out]), describe(oc[c->out])) << "round " << round;
    }
    Entries ea, eb = e;
    take_into(a->node(a->out), ea);
    take_into(b->node(b->out), eb);
    EXPECT_TRUE(eb.empty());
  }
}

// Restoring evaluates nothing: the select's function is not called for the restored pairs.
TEST(StateEntries, JoinRestoreEvaluatesNoOutput) {
  static int calls = 0;
  BuildFn build = [](Graph&, std::vector<Table>& in) {
    return in[0].join(in[1], {{"j", "j"}}).select({{"x", apply([](const std::vector<Value>& v) {
                                                       ++calls;
                                                       return v[0];
                                                     }, {left("v")}, t_int())}});
  };
  auto a = build_pipeline({kLeft, kRight}, build);
  a->node(a->out).track_state_changes();
  step(*a, 1, {numbered(1000, [](size_t i) { return Row{Value(int64_t(i % 10)), Value(int64_t(i))}; }),
               numbered(1000, [](size_t i) { return Row{Value(int64_t(i % 10)), Value("r")}; })});
  Entries e;
  take_into(a->node(a->out), e);
  EXPECT_EQ(e.size(), 2000u);
  calls = 0;
  std::mt19937_64 rng(2);
  std::unique_ptr<Pipeline> b;
  ASSERT_EQ(restore_pipeline({kLeft, kRight}, build, {{a->out, e}}, rng, &b), "");
  EXPECT_EQ(calls, 0);
  // One right row retracted: its 100 pairs are retracted, evaluated then (not before).
  Batch r = {{Key{1, 0x5eed}, Row{Value(int64_t(0)), Value("r")}, -1}};
  auto ob = step(*b, 2, {{}, r});
  EXPECT_EQ(ob[b->out].size(), 100u);
  EXPECT_EQ(calls, 100);
}

// Entries of the previous row encoding (version 1: the row as codec::put_row) still load, and
// rows are taken back in the current encoding.
TEST(StateEntries, JoinLoadsVersionOneRowEntries) {
  auto a = build_pipeline({kLeft, kRight}, join_build(JoinMode::kOuter, false));
  Node& n = a->node(a->out);
  auto v1 = [](uint8_t port, Key k, const Row& r) {
    std::string key, value;
    codec::put_u8(key, port);
    codec::put_key(key, k);
    codec::put_u8(value, 1);
    codec::put_row(value, r);
    return std::make_pair(key, value);
  };
  auto [lk, lv] = v1(0, Key{1, 1}, Row{Value(int64_t(5)), Value(int64_t(7))});
  auto [rk, rv] = v1(1, Key{2, 1}, Row{Value(int64_t(5)), Value("w")});
  ASSERT_TRUE(n.restore_state_entry(lk, lv).is_ok());
  ASSERT_TRUE(n.restore_state_entry(rk, rv).is_ok());
  ASSERT_TRUE(n.finish_state_restore().is_ok());
  n.track_state_changes();
  // Retracting the restored right row: the pair goes, the left row turns unmatched.
  auto out = step(*a, 1, {{}, {{Key{2, 1}, Row{Value(int64_t(5)), Value("w")}, -1}}});
  EXPECT_EQ(out[a->out].size(), 2u);
  // The same row retracted from the left: its entry is erased.
  out = step(*a, 2, {{{Key{1, 1}, Row{Value(int64_t(5)), Value(int64_t(7))}, -1}}, {}});
  EXPECT_EQ(out[a->out].size(), 1u);
  StateChanges c;
  n.take_state_changes(c);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_TRUE(c[0].erase && c[1].erase);
}

// Join entries that cannot be loaded: Corruption naming the operator.
TEST(StateEntries, JoinRejectsEntriesItCannotLoad) {
  auto a = build_pipeline({kLeft, kRight}, join_build(JoinMode::kInner, false));
  std::string label = a->node(a->out).label();
  auto entry = [](uint8_t port, Key k, uint8_t version, std::string cells) {
    std::string key;
    codec::put_u8(key, port);
    codec::put_key(key, k);
    return std::make_pair(key, std::string(1, static_cast<char>(version)) + cells);
  };
  auto cells_of = [](const Row& r) {
    std::string s;
    engine::cells::put(s, r.data(), r.size());
    return s;
  };
  std::string good = cells_of({Value(int64_t(1)), Value(int64_t(2))});
  struct Bad {
    std::string what;
    std::vector<std::pair<std::string, std::string>> entries;
  };
  std::vector<Bad> cases = {
      {"unknown version", {entry(0, Key{1, 1}, 3, good)}},
      {"too few cells", {entry(0, Key{1, 1}, 2, cells_of({Value(int64_t(1))}))}},
      {"too many cells", {entry(0, Key{1, 1}, 2, cells_of({Value(int64_t(1)), Value(int64_t(2)), Value(int64_t(3))}))}},
      {"None join value (never stored)", {entry(0, Key{1, 1}, 2, cells_of({Value(), Value(int64_t(2))}))}},
      {"int in the fixed-width form", {entry(0, Key{1, 1}, 2, [] {
         std::string s;
         codec::put_value(s, Value(int64_t(1)));
         codec::put_value(s, Value(int64_t(2)));
         return s;
       }())}},
      {"int cell longer than 8 bytes", {entry(0, Key{1, 1}, 2, std::string("\x89") + std::string(9, '\x01') + "\x80")}},
      {"row key stored twice", {entry(0, Key{1, 1}, 2, good), entry(0, Key{1, 1}, 2, cells_of({Value(int64_t(3)), Value(int64_t(4))}))}},
      {"memo entry without memo", {entry(2, Key{1, 1}, 1, "")}},
      {"unknown port", {entry(3, Key{1, 1}, 2, good)}},
  };
  for (const auto& c : cases) {
    auto b = build_pipeline({kLeft, kRight}, join_build(JoinMode::kInner, false));
    Node& n = b->node(b->out);
    Status s;
    for (const auto& [k, v] : c.entries)
      if (s.is_ok()) s = n.restore_state_entry(k, v);
    if (s.is_ok()) s = n.finish_state_restore();
    EXPECT_EQ(s.code(), StatusCode::kCorruption) << c.what << ": " << s.to_string();
    EXPECT_NE(s.message().find(label), std::string::npos) << c.what << ": " << s.to_string();
  }
}

// Set operations and ix restore into their maps (no replay): a restored node's outputs for
// changes to both inputs match the uninterrupted node's.
TEST(StateEntries, SetOpsRestoredMapsTakeUpdatesOfBothSides) {
  std::vector<std::pair<std::string, BuildFn>> ops = {
      {"update_rows", [](Graph&, std::vector<Table>& in) { return in[0].update_rows(in[1]); }},
      {"difference", [](Graph&, std::vector<Table>& in) { return in[0].difference(in[1]); }},
      {"intersect", [](Graph&, std::vector<Table>& in) { return in[0].intersect(in[1]); }},
  };
  auto row = [](const char* a, int64_t b) { return Row{Value(a), Value(b)}; };
  for (const auto& [name, build] : ops) {
    SCOPED_TRACE(name);
    auto a = build_pipeline({kAB, kAB}, build);
    a->node(a->out).track_state_changes();
    step(*a, 1, {{{Key{1, 1}, row("p", 1), 1}, {Key{2, 1}, row("q", 2), 1}}, {{Key{2, 1}, row("o", 9), 1}, {Key{3, 1}, row("o", 8), 1}}});
    Entries e;
    take_into(a->node(a->out), e);
    std::mt19937_64 rng(3);
    std::unique_ptr<Pipeline> b;
    ASSERT_EQ(restore_pipeline({kAB, kAB}, build, {{a->out, e}}, rng, &b), "");
    std::vector<std::vector<Batch>> more = {
        {{{Key{3, 1}, row("r", 3), 1}}, {{Key{2, 1}, row("o", 9), -1}}},
        {{{Key{1, 1}, row("p", 1), -1}, {Key{1, 1}, row("p", 5), 1}}, {{Key{1, 1}, row("o", 7), 1}}},
        {{{Key{2, 1}, row("q", 2), -1}}, {{Key{3, 1}, row("o", 8), -1}}},
    };
    for (size_t s = 0; s < more.size(); ++s) {
      for (auto& x : more[s]) engine::consolidate(x);
      auto oa = step(*a, 2 + s, more[s]);
      auto ob = step(*b, 2 + s, more[s]);
      EXPECT_EQ(describe(oa[a->out]), describe(ob[b->out])) << "step " << s;
    }
  }
}

}  // namespace
}  // namespace tidemark::testing
