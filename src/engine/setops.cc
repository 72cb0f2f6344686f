// Key-wise operators on two tables: update_rows, update_cells, difference, intersect, restrict,
// and ix (a row of this table looked up by a pointer computed on another table).
//
// Each output row depends only on per-key state, so a batch records the touched output keys'
// rows before applying the changes, recomputes them after, and emits the difference.
#include <functional>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "engine/codec.h"
#include "engine/expr_internal.h"
#include "engine/input_state.h"
#include "engine/node.h"
#include "engine/state_codec.h"

namespace tidemark {
namespace engine {
namespace {

using RowsByKey = std::unordered_map<Key, Row, KeyHash>;
using Before = std::unordered_map<Key, std::optional<Row>, KeyHash>;

void emit_changes(const Before& before, const std::function<std::optional<Row>(const Key&)>& output, Batch& out) {
  for (const auto& [k, old] : before) {
    std::optional<Row> now = output(k);
    if (old == now) continue;
    if (old) out.push_back({k, *old, -1});
    if (now) out.push_back({k, std::move(*now), 1});
  }
}

void apply_update(RowsByKey& rows, const Update& u, Row row) {
  if (u.diff > 0) rows[u.key] = std::move(row);
  else rows.erase(u.key);
}

enum class SetOp { kUpdateRows, kUpdateCells, kDifference, kIntersect };

// Input 0 is this table, input 1 the other one.
class SetOpNode final : public Node {
 public:
  // `other_pos`: for update_rows, other's column for each output column; for update_cells,
  // the output column of each of other's columns; unused otherwise.
  SetOpNode(std::string kind, size_t self, size_t other, Schema schema, SetOp op, std::vector<size_t> other_pos)
      : Node(std::move(kind), {self, other}, std::move(schema)),
        op_(op),
        other_pos_(std::move(other_pos)),
        inputs_({InputState::Port::kRows, other_cells_used() ? InputState::Port::kRows : InputState::Port::kKeys}) {}

  // Persistent entries: the two inputs' rows (InputState ports 0 = this table, 1 = other; only
  // the keys of other for difference / intersect / restrict), restored straight into the maps:
  // the output is a function of the two maps, so nothing needs recomputing.
  void take_state_changes(StateChanges& out) override {
    inputs_.take(out, [this](size_t port, const Key& k) -> const Row* {
      auto it = rows_[port].find(k);
      return it == rows_[port].end() ? nullptr : &it->second;
    });
  }
  Status restore_state_entry(std::string_view key, std::string_view value) override {
    std::optional<size_t> other_width;
    if (op_ == SetOp::kUpdateRows) other_width = schema().size();
    if (op_ == SetOp::kUpdateCells) other_width = other_pos_.size();
    uint8_t port;
    Key k;
    Row r;
    TM_RETURN_IF_ERROR(inputs_.restore(key, value, label(), {schema().size(), other_width}, &port, &k, &r));
    if (!rows_[port].emplace(k, std::move(r)).second) return state_corrupt(label());
    return {};
  }

  void process(Time, std::span<const Batch* const> in, Batch& out) override {
    Before before;
    for (int s = 0; s < 2; ++s) inputs_.record(tracking_state(), s, *in[s]);
    for (int s = 0; s < 2; ++s)
      for (const Update& u : *in[s]) {
        if (!before.contains(u.key)) before.emplace(u.key, output(u.key));
        // difference/intersect/restrict only need the presence of other's keys.
        apply_update(rows_[s], u, s == 1 && !other_cells_used() ? Row{} : u.row);
      }
    emit_changes(before, [this](const Key& k) { return output(k); }, out);
  }

  bool stateful() const override { return true; }
  std::unique_ptr<Node> clone() const override {
    return std::make_unique<SetOpNode>(kind(), inputs()[0], inputs()[1], schema(), op_, other_pos_);
  }
  Routing routing() const override {  // both inputs by row key: the output of a key is its own
    Routing r;
    r.by = Routing::By::kRowKey;
    r.partitioned_output = true;
    return r;
  }

 private:
  bool other_cells_used() const { return op_ == SetOp::kUpdateRows || op_ == SetOp::kUpdateCells; }

  std::optional<Row> output(const Key& k) const {
    auto a = rows_[0].find(k);
    auto b = rows_[1].find(k);
    bool has_a = a != rows_[0].end(), has_b = b != rows_[1].end();
    switch (op_) {
      case SetOp::kUpdateRows: {
        if (!has_b) return has_a ? std::optional<Row>(a->second) : std::nullopt;
        Row r;
        r.reserve(other_pos_.size());
        for (size_t p : other_pos_) r.push_back(b->second[p]);
        return r;
      }
      case SetOp::kUpdateCells: {
        if (!has_a) return std::nullopt;
        Row r = a->second;
        if (has_b)
          for (size_t j = 0; j < other_pos_.size(); ++j) r[other_pos_[j]] = b->second[j];
        return r;
      }
      case SetOp::kDifference:
        return has_a && !has_b ? std::optional<Row>(a->second) : std::nullopt;
      case SetOp::kIntersect:
        return has_a && has_b ? std::optional<Row>(a->second) : std::nullopt;
    }
    return std::nullopt;
  }

  SetOp op_;
  std::vector<size_t> other_pos_;
  RowsByKey rows_[2];
  InputState inputs_;
};

// Input 0 is the target table (this), input 1 the source; output keys are source keys.
class IxNode final : public Node {
 public:
  IxNode(size_t target, size_t source, Schema schema, internal::CompiledExprPtr pointer, bool optional)
      : Node("ix", {target, source}, std::move(schema)), pointer_(std::move(pointer)), optional_(optional) {}

  // Persistent entries: the target rows (InputState port 0) and, under port byte 1, each
  // source key's pointer (version byte + the pointer value, None included) as evaluated when
  // the source row arrived, so a restored node retracts along the same pointers without
  // re-evaluating the expression. Both restore straight into the maps.
  void take_state_changes(StateChanges& out) override {
    inputs_.take(out, [this](size_t, const Key& k) -> const Row* {
      auto it = targets_.find(k);
      return it == targets_.end() ? nullptr : &it->second;
    });
    take_dirty_entries(
        pointers_dirty_, pointers_, kEntryVersion,
        [](const Key& k, std::string& key) { key = InputState::entry_key(kPointerPort, k); },
        [](const Value& p, std::string& v) { codec::put_value(v, p); }, out);
  }
  Status restore_state_entry(std::string_view key, std::string_view value) override {
    uint8_t port, version;
    Key k;
    if (inputs_.owns(key)) {
      Row r;
      TM_RETURN_IF_ERROR(inputs_.restore(key, value, label(), {schema().size()}, &port, &k, &r));
      if (!targets_.emplace(k, std::move(r)).second) return state_corrupt(label());
      return {};
    }
    Value p;
    if (!InputState::parse_key(key, &port, &k) || port != kPointerPort || !codec::get_u8(value, &version) ||
        version != kEntryVersion || !codec::get_value(value, &p) || !value.empty() ||
        (!p.is_none() && p.type() != DType::kPointer) || pointers_.contains(k))
      return state_corrupt(label());
    link(k, p);
    pointers_.emplace(k, std::move(p));
    return {};
  }

  void process(Time, std::span<const Batch* const> in, Batch& out) override {
    Before before;
    auto touch = [&](const Key& s) {
      if (!before.contains(s)) before.emplace(s, output(s));
    };
    // Sources whose new pointer reaches a changed target are in the source changes already.
    for (const Update& u : *in[1]) touch(u.key);
    for (const Update& u : *in[0]) {
      auto it = referrers_.find(u.key);
      if (it != referrers_.end())
        for (const Key& s : it->second) touch(s);
    }
    for (const Update& u : *in[1]) {
      if (tracking_state()) pointers_dirty_.insert(u.key);
      if (u.diff < 0) {
        auto it = pointers_.find(u.key);
        if (it == pointers_.end()) continue;
        unlink(u.key, it->second);
        pointers_.erase(it);
        continue;
      }
      // Pointers are remembered, so a retraction follows exactly the pointer that was used.
      internal::EvalContext ctx{u.row.data(), &u.key};
      Value p = pointer_->eval(ctx);
      if (!p.is_none() && p.type() != DType::kPointer)
        throw RuntimeError(std::string("ix: the pointer expression gave ") + dtype_name(p.type()) + ", not a pointer");
      link(u.key, p);
      pointers_[u.key] = std::move(p);
    }
    inputs_.record(tracking_state(), 0, *in[0]);
    for (const Update& u : *in[0]) apply_update(targets_, u, u.row);
    emit_changes(before, [this](const Key& k) { return output(k); }, out);
  }

  bool stateful() const override { return true; }

 private:
  void link(const Key& source, const Value& p) {
    if (!p.is_none()) referrers_[p.as_pointer()].insert(source);
  }
  void unlink(const Key& source, const Value& p) {
    if (p.is_none()) return;
    auto it = referrers_.find(p.as_pointer());
    it->second.erase(source);
    if (it->second.empty()) referrers_.erase(it);
  }

  std::optional<Row> output(const Key& source) const {
    auto it = pointers_.find(source);
    if (it == pointers_.end()) return std::nullopt;
    if (!it->second.is_none()) {
      auto t = targets_.find(it->second.as_pointer());
      if (t != targets_.end()) return t->second;
    }
    if (optional_) return Row(schema().size());
    return std::nullopt;
  }

  internal::CompiledExprPtr pointer_;
  bool optional_;
  RowsByKey targets_;
  std::unordered_map<Key, Value, KeyHash> pointers_;                     // source key -> pointer
  std::unordered_map<Key, std::unordered_set<Key, KeyHash>, KeyHash> referrers_;  // target -> sources
  static constexpr uint8_t kPointerPort = 1;
  static constexpr uint8_t kEntryVersion = 1;
  InputState inputs_{{InputState::Port::kRows, InputState::Port::kOwn}};
  std::unordered_set<Key, KeyHash> pointers_dirty_;
};

void check_same_graph(const std::string& op, const Table& a, const Table& b) {
  if (&a.graph() != &b.graph()) throw GraphError("in " + op + ": the tables belong to different graphs");
}

// The type of a column that holds values of this table's type `mine` or other's `theirs`.
Type merged_type(const std::string& op, const std::string& name, const Type& mine, const Type& theirs) {
  if (mine.accepts(theirs)) return mine;
  if (theirs.accepts(mine)) return theirs;
  throw GraphError("in " + op + ": column '" + name + "' is " + mine.to_string() + " in this table and " +
                   theirs.to_string() + " in the other");
}

Table add_set_op(const Table& self, const Table& other, const std::string& op, SetOp kind, Schema schema,
                 std::vector<size_t> other_pos = {}) {
  check_same_graph(op, self, other);
  Graph& g = self.graph();
  return Table(&g, g.impl().add(std::make_unique<SetOpNode>(op, self.node(), other.node(), std::move(schema), kind,
                                                            std::move(other_pos))));
}

}  // namespace
}  // namespace engine

Table Table::update_rows(const Table& other) const {
  const Schema& mine = schema();
  const Schema& theirs = other.schema();
  auto differ = [&] {
    return GraphError("in update_rows: column sets differ (" + mine.names() + " vs " + theirs.names() + ")");
  };
  if (mine.size() != theirs.size()) throw differ();
  std::vector<Column> cols = mine.columns();
  std::vector<size_t> pos;
  for (auto& c : cols) {
    auto j = theirs.find(c.name);
    if (!j) throw differ();
    c.type = engine::merged_type("update_rows", c.name, c.type, theirs[*j].type);
    pos.push_back(*j);
  }
  return engine::add_set_op(*this, other, "update_rows", engine::SetOp::kUpdateRows, Schema(std::move(cols)),
                            std::move(pos));
}

Table Table::update_cells(const Table& other) const {
  const Schema& mine = schema();
  std::vector<Column> cols = mine.columns();
  std::vector<size_t> pos;
  for (const auto& c : other.schema().columns()) {
    auto i = mine.find(c.name);
    if (!i)
      throw GraphError("in update_cells: column '" + c.name + "' of the other table is not a column of this table (available: " +
                       mine.names() + ")");
    cols[*i].type = engine::merged_type("update_cells", c.name, cols[*i].type, c.type);
    pos.push_back(*i);
  }
  return engine::add_set_op(*this, other, "update_cells", engine::SetOp::kUpdateCells, Schema(std::move(cols)),
                            std::move(pos));
}

Table Table::difference(const Table& other) const {
  return engine::add_set_op(*this, other, "difference", engine::SetOp::kDifference, schema());
}

Table Table::intersect(const Table& other) const {
  return engine::add_set_op(*this, other, "intersect", engine::SetOp::kIntersect, schema());
}

// Keys of other missing from this table are dropped (like intersect) rather than failing.
Table Table::restrict(const Table& other) const {
  return engine::add_set_op(*this, other, "restrict", engine::SetOp::kIntersect, schema());
}

Table Table::ix(const Table& source, Expr pointer, bool optional) const {
  engine::check_same_graph("ix", *this, source);
  internal::CompileScope scope;
  scope.graph = &graph_->impl();
  scope.op = "ix";
  scope.schema = &source.schema();
  auto p = internal::compile(pointer, scope);
  DType t = p->type.base;
  if (t != DType::kPointer && t != DType::kAny && t != DType::kNone)
    throw GraphError("in ix: the pointer expression must be a pointer, got " + p->type.to_string());
  std::vector<Column> cols = schema().columns();
  if (optional)
    for (auto& c : cols) c.type.optional = true;
  Graph& g = graph();
  return engine::with_params(Table(&g, g.impl().add(std::make_unique<engine::IxNode>(
                                           node_, source.node(), Schema(std::move(cols)), std::move(p), optional))),
                             internal::describe(pointer) + (optional ? ", optional" : ""));
}

}  // namespace tidemark
