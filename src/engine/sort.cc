// sort(key, instance): for every row, pointers to its neighbours in (sort value, row key) order
// within its instance.
//
// State: per instance an ordered set of (sort value, key); per row its instance, sort value and
// the output last emitted. A change touches only the changed rows and their neighbours (before
// a deletion, after an insertion); only those rows' outputs are recomputed and, when they
// differ, emitted as -old +new.
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "engine/codec.h"
#include "engine/expr_internal.h"
#include "engine/node.h"
#include "engine/state_codec.h"

namespace tidemark {
namespace engine {
namespace {

using internal::CompiledExprPtr;
using internal::EvalContext;

class SortNode final : public Node {
 public:
  SortNode(size_t input, Schema schema, CompiledExprPtr key, CompiledExprPtr instance)
      : Node("sort", {input}, std::move(schema)), key_(std::move(key)), instance_(std::move(instance)) {}

  // Persistent entries: one per row, key = the row key (16 bytes), value = version byte +
  // instance + sort value as evaluated when the row arrived (so the expressions are not
  // re-evaluated on restore). The outputs last emitted are recomputed from the order on restore:
  // after every time each row's `last` equals its current neighbours.
  void take_state_changes(StateChanges& out) override {
    take_dirty_entries(dirty_, rows_, kEntryVersion, put_key_entry,
                       [](const auto& e, std::string& v) {
                         codec::put_value(v, e.instance);
                         codec::put_value(v, e.value);
                       },
                       out);
  }
  Status restore_state_entry(std::string_view key, std::string_view value) override {
    Key k;
    Entry e;
    uint8_t version;
    if (key.size() != 16 || !codec::get_key(key, &k) || !codec::get_u8(value, &version) || version != kEntryVersion ||
        !codec::get_value(value, &e.instance) || !codec::get_value(value, &e.value) || !value.empty() ||
        rows_.contains(k))
      return state_corrupt(label());
    sets_[e.instance].emplace(e.value, k);
    rows_.emplace(k, std::move(e));
    return {};
  }
  // By the instance stored in the entry, as routing() routes the row (no instance: worker 0).
  Result<std::optional<Key>> state_entry_route(std::string_view key, std::string_view value) const override {
    uint8_t version;
    Value inst;
    if (!codec::get_u8(value, &version) || !codec::get_value(value, &inst)) return state_corrupt(label());
    return std::optional<Key>(instance_ ? key_from_values({inst}) : Key{});
  }
  Status finish_state_restore() override {
    for (auto& [k, e] : rows_) e.last = neighbours(e, k);
    return {};
  }

  void process(Time, std::span<const Batch* const> in, Batch& out) override {
    std::unordered_set<Key, KeyHash> touched;
    if (tracking_state())
      for (const Update& u : *in[0]) dirty_.insert(u.key);
    for (const Update& u : *in[0]) {
      if (u.diff < 0) {
        remove(u.key, touched);
      } else {
        EvalContext ctx{u.row.data(), &u.key};
        insert(u.key, instance_ ? instance_->eval(ctx) : Value(), key_->eval(ctx), touched);
      }
    }
    for (const Key& k : touched) {
      auto it = rows_.find(k);
      Row* last = it != rows_.end() ? &it->second.last : nullptr;
      auto dead = dead_.find(k);
      if (dead != dead_.end()) {  // removed this time: retract what it last had
        out.push_back({k, std::move(dead->second), -1});
        dead_.erase(dead);
      }
      if (!last) continue;
      Row now = neighbours(it->second, k);
      if (!last->empty() && *last == now) continue;
      if (!last->empty()) out.push_back({k, *last, -1});
      out.push_back({k, now, 1});
      *last = std::move(now);
    }
    dead_.clear();
  }

  bool stateful() const override { return true; }
  std::unique_ptr<Node> clone() const override { return std::make_unique<SortNode>(inputs()[0], schema(), key_, instance_); }
  Routing routing() const override {  // neighbours are within an instance
    Routing r;
    r.by = Routing::By::kExpr;
    r.expr = instance_.get();
    return r;
  }

 private:
  struct Entry {
    Value instance;
    Value value;
    Row last;  // output last emitted; empty until the first emission
  };
  using Ordered = std::set<std::pair<Value, Key>>;

  // Marks the neighbours of `pos` in `set` as touched.
  static void touch_neighbours(const Ordered& set, Ordered::const_iterator pos, std::unordered_set<Key, KeyHash>& t) {
    if (pos != set.begin()) t.insert(std::prev(pos)->second);
    if (std::next(pos) != set.end()) t.insert(std::next(pos)->second);
  }

  void insert(const Key& k, Value instance, Value value, std::unordered_set<Key, KeyHash>& touched) {
    if (rows_.count(k)) throw RuntimeError("sort: key " + k.to_string() + " inserted twice");
    Ordered& set = sets_[instance];
    auto pos = set.emplace(value, k).first;
    touch_neighbours(set, pos, touched);
    touched.insert(k);
    rows_.emplace(k, Entry{std::move(instance), std::move(value), {}});
  }

  void remove(const Key& k, std::unordered_set<Key, KeyHash>& touched) {
    auto it = rows_.find(k);
    if (it == rows_.end()) throw RuntimeError("sort: retraction of key " + k.to_string() + ", which is not present");
    auto set_it = sets_.find(it->second.instance);
    Ordered& set = set_it->second;
    auto pos = set.find({it->second.value, k});
    touch_neighbours(set, pos, touched);
    set.erase(pos);
    if (set.empty()) sets_.erase(set_it);
    touched.insert(k);
    // A key removed and re-inserted in one time retracts its old output once.
    if (!it->second.last.empty()) dead_.emplace(k, std::move(it->second.last));
    rows_.erase(it);
  }

  Row neighbours(const Entry& e, const Key& k) const {
    const Ordered& set = sets_.at(e.instance);
    auto pos = set.find({e.value, k});
    Value prev = pos != set.begin() ? Value(std::prev(pos)->second) : Value();
    Value next = std::next(pos) != set.end() ? Value(std::next(pos)->second) : Value();
    return Row{std::move(prev), std::move(next)};
  }

  CompiledExprPtr key_;
  CompiledExprPtr instance_;  // nullptr: a single instance
  std::unordered_map<Key, Entry, KeyHash> rows_;
  std::map<Value, Ordered> sets_;
  std::unordered_map<Key, Row, KeyHash> dead_;  // outputs of keys removed during this time
  static constexpr uint8_t kEntryVersion = 1;
  std::unordered_set<Key, KeyHash> dirty_;  // rows inserted or removed since the last take
};

}  // namespace
}  // namespace engine

Table Table::sort(Expr key, std::optional<Expr> instance) const {
  internal::CompileScope scope;
  scope.graph = &graph_->impl();
  scope.op = "sort";
  scope.schema = &schema();
  auto k = internal::compile(key, scope);
  internal::CompiledExprPtr inst = instance ? internal::compile(*instance, scope) : nullptr;
  Schema out{{"prev", optional(t_pointer())}, {"next", optional(t_pointer())}};
  return engine::with_params(Table(graph_, graph_->impl().add(std::make_unique<engine::SortNode>(
                                               node_, std::move(out), std::move(k), std::move(inst)))),
                             internal::describe(key) + (instance ? "; instance " + internal::describe(*instance) : ""));
}

}  // namespace tidemark
