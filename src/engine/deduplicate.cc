// deduplicate: per instance, keeps one accepted row. An inserted row replaces the kept one when
// it is the first of its instance or acceptor(new value, kept value) holds.
//
// Deduplicate works on the stream of insertions, in arrival order (within one time: the
// input batch's order, i.e. by row key): retractions of input rows are ignored, so a kept row
// stays even when its input row is deleted. Its result therefore depends on the history and
// cannot be recomputed from the current input; the kept rows are the node's persistent state,
// and `options.name` identifies it across runs.
#include <map>
#include <set>

#include "engine/codec.h"
#include "engine/expr_internal.h"
#include "engine/node.h"
#include "engine/state_codec.h"

namespace tidemark {
namespace engine {
namespace {

using internal::CompiledExprPtr;
using internal::EvalContext;

class DeduplicateNode final : public Node {
 public:
  using Acceptor = std::function<bool(const Value&, const Value&)>;
  DeduplicateNode(size_t input, Schema schema, CompiledExprPtr value, CompiledExprPtr instance, Acceptor acceptor)
      : Node("deduplicate", {input}, std::move(schema)),
        value_(std::move(value)),
        instance_(std::move(instance)),
        acceptor_(std::move(acceptor)) {}

  bool order_dependent() const override { return true; }

  // Persistent entries: one per instance, key = the instance value (codec::put_value), value =
  // version byte + the accepted value + the kept row.
  void take_state_changes(StateChanges& out) override {
    for (const Value& inst : dirty_) {
      auto it = kept_.find(inst);
      if (it == kept_.end()) continue;  // instances are never removed
      StateChange c;
      codec::put_value(c.key, inst);
      codec::put_u8(c.value, kEntryVersion);
      codec::put_value(c.value, it->second.value);
      codec::put_row(c.value, it->second.row);
      out.push_back(std::move(c));
    }
    dirty_.clear();
  }
  Status restore_state_entry(std::string_view key, std::string_view value) override {
    Value inst;
    Kept k;
    uint8_t version;
    if (!codec::get_value(key, &inst) || !key.empty() || !codec::get_u8(value, &version) || version != kEntryVersion ||
        !codec::get_value(value, &k.value) || !codec::get_row(value, &k.row) || !value.empty() ||
        k.row.size() != schema().size() || !kept_.emplace(std::move(inst), std::move(k)).second)
      return state_corrupt(label());
    return {};
  }
  Status finish_state_restore() override { return {}; }
  // By the instance (the entry's key), as routing() routes the row (no instance: worker 0).
  Result<std::optional<Key>> state_entry_route(std::string_view key, std::string_view) const override {
    Value inst;
    if (!codec::get_value(key, &inst)) return state_corrupt(label());
    return std::optional<Key>(instance_ ? key_from_values({inst}) : Key{});
  }

  void process(Time, std::span<const Batch* const> in, Batch& out) override {
    // Rows emitted before this time, for the instances that accepted a row now.
    std::map<Value, std::optional<Row>> before;
    for (const Update& u : *in[0]) {
      if (u.diff <= 0) continue;
      EvalContext ctx{u.row.data(), &u.key};
      Value inst = instance_ ? instance_->eval(ctx) : Value();
      Value v = value_->eval(ctx);
      auto it = kept_.find(inst);
      if (it != kept_.end() && !accepts(v, it->second.value)) continue;
      if (!before.count(inst)) before[inst] = it != kept_.end() ? std::optional<Row>(it->second.row) : std::nullopt;
      if (tracking_state()) dirty_.insert(inst);
      kept_[inst] = Kept{std::move(v), u.row};
    }
    for (auto& [inst, old] : before) {
      Key k = key_from_values({inst});
      const Row& now = kept_.at(inst).row;
      if (old && *old == now) continue;
      if (old) out.push_back({k, std::move(*old), -1});
      out.push_back({k, now, 1});
    }
  }

  bool stateful() const override { return true; }
  std::unique_ptr<Node> clone() const override {
    return std::make_unique<DeduplicateNode>(inputs()[0], schema(), value_, instance_, acceptor_);
  }
  Routing routing() const override {  // kept rows are per instance
    Routing r;
    r.by = Routing::By::kExpr;
    r.expr = instance_.get();
    return r;
  }

 private:
  struct Kept {
    Value value;
    Row row;
  };

  bool accepts(const Value& v, const Value& old) const {
    try {
      return acceptor_(v, old);
    } catch (const std::exception& e) {
      throw RuntimeError(label() + ": acceptor failed: " + e.what());
    }
  }

  CompiledExprPtr value_;
  CompiledExprPtr instance_;  // nullptr: a single instance
  Acceptor acceptor_;
  std::map<Value, Kept> kept_;
  static constexpr uint8_t kEntryVersion = 1;
  std::set<Value> dirty_;  // instances whose kept row changed since the last take
};

}  // namespace
}  // namespace engine

Table Table::deduplicate(DeduplicateOptions options) const {
  if (!options.acceptor) throw GraphError("in deduplicate: no acceptor function");
  internal::CompileScope scope;
  scope.graph = &graph_->impl();
  scope.op = "deduplicate";
  scope.schema = &schema();
  auto value = internal::compile(options.value, scope);
  internal::CompiledExprPtr inst = options.instance ? internal::compile(*options.instance, scope) : nullptr;
  auto& g = graph_->impl();
  g.register_name(options.name, "deduplicate");
  auto node = std::make_unique<engine::DeduplicateNode>(node_, schema(), std::move(value), std::move(inst),
                                                        std::move(options.acceptor));
  node->set_name(options.name);
  node->set_params("value " + internal::describe(options.value) +
                   (options.instance ? "; instance " + internal::describe(*options.instance) : ""));
  return Table(graph_, g.add(std::move(node)));
}

}  // namespace tidemark
