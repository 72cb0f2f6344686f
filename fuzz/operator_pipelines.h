// The small graphs whose operators' state-entry decoders (PersistentState::restore_state_entry)
// fuzz_operator_state feeds, and which seed_tool runs to produce real entries. One pipeline per
// operator family; inputs are in-memory sources.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/collection_io.h"
#include "engine/node.h"
#include "tidemark/tidemark.h"

namespace tidemark::fuzz {

using engine::Batch;

struct Pipeline {
  Graph g;
  std::vector<size_t> ops;       // non-source nodes, topological order
  // Every persistent state of the graph: stateful nodes, then extra states (UDF caches).
  std::vector<engine::PersistentState*> states;
  std::vector<Schema> inputs;
  engine::Node& node(size_t i) { return g.impl().node(i); }
};

struct PipelineSpec {
  const char* name;
  std::vector<Schema> schemas;
  std::function<Table(std::vector<Table>&)> build;
};

inline const Schema& group_schema() {
  static const Schema s{{"g", t_str()}, {"v", t_int()}, {"f", t_float()}};
  return s;
}

inline int64_t g_epoch = 0;  // read by the non-deterministic UDF: memoized results matter
inline Value epoch_plus(const std::vector<Value>& v) {
  if (v[0].type() != DType::kInt) return Value();
  // Wrapping arithmetic: restored rows may hold any integer.
  return Value(static_cast<int64_t>(static_cast<uint64_t>(v[0].as_int()) * 1000 + static_cast<uint64_t>(g_epoch)));
}

inline const std::vector<PipelineSpec>& pipeline_specs() {
  static const Schema kGV{{"g", t_str()}, {"v", t_int()}};
  static const Schema kLeft{{"j", optional(t_int())}, {"v", t_int()}};
  static const Schema kRight{{"j", optional(t_int())}, {"w", t_str()}};
  static const Schema kAB{{"a", t_str()}, {"b", t_int()}};
  static const Schema kTarget{{"v", t_str()}};
  static const Schema kPointers{{"p", optional(t_pointer())}, {"n", t_int()}};
  static const Schema kTimes{{"g", t_str()}, {"t", t_int()}, {"f", t_float()}};
  static const std::vector<PipelineSpec> specs = {
      {"groupby", {group_schema()}, [](std::vector<Table>& in) {
         return in[0].groupby({"g"}).reduce({{"g", col("g")},
                                             {"count", reducers::count()},
                                             {"sum", reducers::sum(col("v"))},
                                             {"fsum", reducers::sum(col("f"))},
                                             {"avg", reducers::avg(col("v"))},
                                             {"min", reducers::min(col("v"))},
                                             {"max", reducers::max(col("v"))},
                                             {"any", reducers::any(col("v"))},
                                             {"distinct", reducers::count_distinct(col("v"))},
                                             {"earliest", reducers::earliest(col("v"))},
                                             {"latest", reducers::latest(col("f"))},
                                             {"tuple", reducers::tuple(col("v"))},
                                             {"sorted", reducers::sorted_tuple(col("f"))}});
       }},
      {"join", {kLeft, kRight}, [](std::vector<Table>& in) {
         return in[0].join(in[1], {{"j", "j"}}, JoinMode::kOuter)
             .select({{"lv", left("v")}, {"rw", right("w")}, {"lid", left_id()}, {"rid", right_id()},
                      {"x", apply(epoch_plus, {left("v")}, optional(t_int()), /*deterministic=*/false)}});
       }},
      {"deduplicate", {kGV}, [](std::vector<Table>& in) {
         return in[0].deduplicate({.value = col("v"),
                                   .acceptor = [](const Value& n, const Value& o) {
                                     return n.type() == DType::kInt && o.type() == DType::kInt && n.as_int() > o.as_int();
                                   },
                                   .instance = col("g"),
                                   .name = ""});
       }},
      {"sort", {kGV}, [](std::vector<Table>& in) { return in[0].sort(col("v"), col("g")); }},
      {"session", {kTimes}, [](std::vector<Table>& in) {
         return in[0].windowby(col("t"), session(Value(int64_t{3})), col("g"))
             .reduce({{"g", col("_pw_instance")}, {"n", reducers::count()}, {"e", reducers::earliest(col("f"))}});
       }},
      {"tumbling", {kTimes}, [](std::vector<Table>& in) {
         return in[0].windowby(col("t"), tumbling(Value(int64_t{5}))).reduce({{"s", col("_pw_window_start")},
                                                                               {"n", reducers::count()}});
       }},
      {"sliding", {kTimes}, [](std::vector<Table>& in) {
         return in[0].windowby(col("f"), sliding(Value(1.5), Value(4.0))).reduce({{"n", reducers::count()}});
       }},
      {"intersect", {kAB, kAB}, [](std::vector<Table>& in) { return in[0].intersect(in[1]); }},
      {"difference", {kAB, kAB}, [](std::vector<Table>& in) { return in[0].difference(in[1]); }},
      {"update_rows", {kAB, kAB}, [](std::vector<Table>& in) { return in[0].update_rows(in[1]); }},
      {"ix", {kTarget, kPointers}, [](std::vector<Table>& in) { return in[0].ix(in[1], col("p"), true); }},
      {"filter", {kGV}, [](std::vector<Table>& in) {
         return in[0].filter(apply([](const std::vector<Value>& v) { return Value(v[0].type() == DType::kInt && v[0].as_int() % 2 == 0); },
                                   {col("v")}, t_bool(), false));
       }},
      {"udf_cache", {kGV}, [](std::vector<Table>& in) {
         return in[0].select({{"x", apply([](const std::vector<Value>& v) {
                                             return v[0].type() == DType::kInt ? Value(static_cast<int64_t>(static_cast<uint64_t>(v[0].as_int()) * 3)) : Value();
                                           },
                                           {col("v")}, optional(t_int()), UdfCache{"fuzz", 400})}});
       }},
      {"concat", {kGV, kGV}, [](std::vector<Table>& in) { return in[0].concat(in[1]); }},
  };
  return specs;
}

inline std::unique_ptr<Pipeline> build_pipeline(const PipelineSpec& spec) {
  auto p = std::make_unique<Pipeline>();
  p->inputs = spec.schemas;
  std::vector<Table> in;
  for (const auto& s : spec.schemas)
    in.push_back(engine::add_source(p->g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), s));
  spec.build(in);
  for (size_t i = 0; i < p->g.impl().size(); ++i) {
    if (p->node(i).inputs().empty()) continue;
    p->ops.push_back(i);
    if (p->node(i).stateful()) p->states.push_back(&p->node(i));
  }
  for (const auto& e : p->g.impl().extra_states()) p->states.push_back(e.state.get());
  return p;
}

// A value of `type` drawn from a small pool (so keys and groups collide).
inline Value random_value(const Type& type, std::mt19937_64& rng) {
  if (type.optional && rng() % 5 == 0) return Value();
  switch (type.base) {
    case DType::kInt: return Value(static_cast<int64_t>(rng() % 20));
    case DType::kFloat: return Value(static_cast<double>(rng() % 40) / 4.0);
    case DType::kString: {
      static const char* words[] = {"a", "b", "c", "x"};
      return Value(words[rng() % 4]);
    }
    case DType::kPointer: return Value(Key{1 + rng() % 6, 0x5eed});
    case DType::kBool: return Value(rng() % 2 == 0);
    default: return Value();
  }
}

// One time's input: for each port a few insertions and retractions over keys 1..6.
inline std::vector<Batch> random_step(const Pipeline& p, std::mt19937_64& rng,
                                      std::vector<std::map<uint64_t, Row>>& live) {
  std::vector<Batch> out(p.inputs.size());
  live.resize(p.inputs.size());
  for (size_t port = 0; port < p.inputs.size(); ++port) {
    size_t n = 1 + rng() % 4;
    std::set<uint64_t> used;
    for (size_t i = 0; i < n; ++i) {
      uint64_t k = 1 + rng() % 6;
      if (!used.insert(k).second) continue;
      Key key{k, 0x5eed + port};
      auto it = live[port].find(k);
      if (it != live[port].end()) {
        out[port].push_back({key, it->second, -1});
        live[port].erase(it);
        if (rng() % 2) continue;
      }
      Row r;
      for (const auto& c : p.inputs[port].columns()) r.push_back(random_value(c.type, rng));
      out[port].push_back({key, r, 1});
      live[port].emplace(k, std::move(r));
    }
    engine::consolidate(out[port]);
  }
  return out;
}

// Runs one time through every operator, like the scheduler. May throw engine::RuntimeError.
inline void step(Pipeline& p, engine::Time t, const std::vector<Batch>& in) {
  std::vector<Batch> outs(p.g.impl().size());
  for (size_t i = 0; i < in.size(); ++i) outs[i] = in[i];
  for (size_t i : p.ops) {
    engine::Node& n = p.node(i);
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
}

}  // namespace tidemark::fuzz
