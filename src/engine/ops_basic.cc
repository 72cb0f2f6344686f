// Stateless (or nearly) operators: select / with_columns / without / rename, filter, flatten,
// concat. A select or filter with a non-deterministic apply() remembers each key's output so
// retractions carry exactly what was emitted.
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

constexpr uint8_t kEntryVersion = 1;

class SelectNode final : public Node {
 public:
  SelectNode(size_t input, Schema schema, std::vector<CompiledExprPtr> exprs, bool memoize, size_t input_width)
      : Node("select", {input}, std::move(schema)), exprs_(std::move(exprs)), memoize_(memoize), input_width_(input_width) {
    // Outputs that are distinct plain columns can be moved out of an input we own.
    std::vector<bool> seen(input_width, false);
    moves_ = !memoize_;
    identity_ = !memoize_ && exprs_.size() == input_width;
    for (size_t j = 0; j < exprs_.size(); ++j) {
      int c = exprs_[j]->column_index();
      if (c < 0 || seen[c]) {
        moves_ = identity_ = false;
        break;
      }
      seen[c] = true;
      identity_ = identity_ && c == static_cast<int>(j);
    }
  }

  // When the input is ours: an identity select passes the batch on, a projection or
  // permutation of columns moves the cells.
  void process_consuming(Time t, std::span<Batch* const> in, Batch& out) override {
    if (identity_) {
      if (out.empty()) out.swap(*in[0]);
      else out.insert(out.end(), std::make_move_iterator(in[0]->begin()), std::make_move_iterator(in[0]->end()));
      return;
    }
    if (!moves_) return Node::process_consuming(t, in, out);
    out.reserve(out.size() + in[0]->size());
    for (Update& u : *in[0]) {
      Row r;
      r.reserve(exprs_.size());
      for (const auto& e : exprs_) r.push_back(std::move(u.row[e->column_index()]));
      out.push_back({u.key, std::move(r), u.diff});
    }
  }

  // Persistent entries (memoized only): key = row key (16 bytes), value = version byte + the
  // row emitted for it.
  void take_state_changes(StateChanges& out) override {
    take_dirty_entries(dirty_, memo_, kEntryVersion, put_key_entry,
                       [](const Row& r, std::string& v) { codec::put_row(v, r); }, out);
  }
  Status restore_state_entry(std::string_view key, std::string_view value) override {
    Key k;
    Row r;
    uint8_t version;
    if (!memoize_ || key.size() != 16 || !codec::get_key(key, &k) || !codec::get_u8(value, &version) ||
        version != kEntryVersion || !codec::get_row(value, &r) || !value.empty() || r.size() != exprs_.size())
      return state_corrupt(label());
    memo_[k] = std::move(r);
    return {};
  }
  Status finish_state_restore() override { return {}; }

  void process(Time, std::span<const Batch* const> in, Batch& out) override {
    out.reserve(out.size() + in[0]->size());
    for (const Update& u : *in[0]) {
      if (memoize_ && u.diff < 0) {
        auto it = memo_.find(u.key);
        if (it != memo_.end()) {
          out.push_back({u.key, it->second, u.diff});
          memo_.erase(it);
          if (tracking_state()) dirty_.insert(u.key);
          continue;
        }
      }
      EvalContext ctx{u.row.data(), &u.key};
      Row r;
      r.reserve(exprs_.size());
      for (const auto& e : exprs_) r.push_back(e->eval(ctx));
      if (memoize_ && u.diff > 0) {
        memo_[u.key] = r;
        if (tracking_state()) dirty_.insert(u.key);
      }
      out.push_back({u.key, std::move(r), u.diff});
    }
  }
  bool stateful() const override { return memoize_; }
  bool needs_consolidated_input() const override { return memoize_; }
  std::unique_ptr<Node> clone() const override {
    return std::make_unique<SelectNode>(inputs()[0], schema(), exprs_, memoize_, input_width_);
  }
  Routing routing() const override {
    Routing r;
    r.by = memoize_ ? Routing::By::kRowKey : Routing::By::kNone;  // the memo is per row key
    return r;
  }

 private:
  std::vector<CompiledExprPtr> exprs_;
  bool memoize_;
  size_t input_width_;
  bool moves_ = false, identity_ = false;
  std::unordered_map<Key, Row, KeyHash> memo_;
  std::unordered_set<Key, KeyHash> dirty_;
};

class FilterNode final : public Node {
 public:
  FilterNode(size_t input, Schema schema, CompiledExprPtr pred, bool memoize)
      : Node("filter", {input}, std::move(schema)), pred_(std::move(pred)), memoize_(memoize) {}

  // Persistent entries (memoized only): key = row key (16 bytes), value = version byte + 1 if
  // the row passed, 0 if not.
  void take_state_changes(StateChanges& out) override {
    take_dirty_entries(dirty_, passed_, kEntryVersion, put_key_entry,
                       [](bool p, std::string& v) { codec::put_u8(v, p ? 1 : 0); }, out);
  }
  Status restore_state_entry(std::string_view key, std::string_view value) override {
    Key k;
    uint8_t version, p;
    if (!memoize_ || key.size() != 16 || !codec::get_key(key, &k) || !codec::get_u8(value, &version) ||
        version != kEntryVersion || !codec::get_u8(value, &p) || p > 1 || !value.empty())
      return state_corrupt(label());
    passed_[k] = p != 0;
    return {};
  }
  Status finish_state_restore() override { return {}; }

  void process(Time, std::span<const Batch* const> in, Batch& out) override {
    for (const Update& u : *in[0]) {
      bool pass;
      if (memoize_ && u.diff < 0 && passed_.count(u.key)) {
        pass = passed_[u.key];
        passed_.erase(u.key);
        if (tracking_state()) dirty_.insert(u.key);
      } else {
        EvalContext ctx{u.row.data(), &u.key};
        Value v = pred_->eval(ctx);
        pass = !v.is_none() && v.type() == DType::kBool && v.as_bool();
        if (memoize_ && u.diff > 0) {
          passed_[u.key] = pass;
          if (tracking_state()) dirty_.insert(u.key);
        }
      }
      if (pass) out.push_back(u);
    }
  }
  bool stateful() const override { return memoize_; }
  bool needs_consolidated_input() const override { return memoize_; }
  std::unique_ptr<Node> clone() const override {
    return std::make_unique<FilterNode>(inputs()[0], schema(), pred_, memoize_);
  }
  Routing routing() const override {
    Routing r;
    r.by = memoize_ ? Routing::By::kRowKey : Routing::By::kNone;
    return r;
  }
  void process_consuming(Time t, std::span<Batch* const> in, Batch& out) override {
    if (memoize_) return Node::process_consuming(t, in, out);
    for (Update& u : *in[0]) {
      EvalContext ctx{u.row.data(), &u.key};
      Value v = pred_->eval(ctx);
      if (!v.is_none() && v.type() == DType::kBool && v.as_bool()) out.push_back(std::move(u));
    }
  }

 private:
  CompiledExprPtr pred_;
  bool memoize_;
  std::unordered_map<Key, bool, KeyHash> passed_;
  std::unordered_set<Key, KeyHash> dirty_;
};

class FlattenNode final : public Node {
 public:
  FlattenNode(size_t input, Schema schema, size_t column)
      : Node("flatten", {input}, std::move(schema)), column_(column) {}

  bool needs_consolidated_input() const override { return false; }
  std::unique_ptr<Node> clone() const override { return std::make_unique<FlattenNode>(inputs()[0], schema(), column_); }
  void process(Time, std::span<const Batch* const> in, Batch& out) override {
    for (const Update& u : *in[0]) {
      const auto* items = tuple_of(u.row);
      if (!items) continue;
      for (size_t i = 0; i < items->size(); ++i) {
        Row r = u.row;
        r[column_] = (*items)[i];
        out.push_back({key_combine(u.key, Key{i, 0}), std::move(r), u.diff});
      }
    }
  }
  // The input is ours: the tuple's elements are copied once into the output rows, the other
  // cells moved into the last element's row.
  void process_consuming(Time, std::span<Batch* const> in, Batch& out) override {
    size_t width = schema().size();
    for (Update& u : *in[0]) {
      const auto* items = tuple_of(u.row);
      if (!items) continue;
      Value keep = u.row[column_];  // holds the tuple alive while its cells are copied
      for (size_t i = 0; i < items->size(); ++i) {
        Key k = key_combine(u.key, Key{i, 0});
        if (i + 1 == items->size()) {
          u.row[column_] = (*items)[i];
          out.push_back({k, std::move(u.row), u.diff});
        } else if (width == 1) {
          out.push_back({k, Row{(*items)[i]}, u.diff});
        } else {
          Row r = u.row;
          r[column_] = (*items)[i];
          out.push_back({k, std::move(r), u.diff});
        }
      }
    }
  }

 private:
  const std::vector<Value>* tuple_of(const Row& row) const {
    const Value& v = row[column_];
    if (v.is_none()) return nullptr;
    if (v.type() != DType::kTuple)
      throw RuntimeError(std::string("flatten: column '") + schema()[column_].name + "' holds " +
                         dtype_name(v.type()) + ", not a tuple");
    return &v.as_tuple();
  }

  size_t column_;
};

class ConcatNode final : public Node {
 public:
  ConcatNode(std::vector<size_t> inputs, Schema schema) : Node("concat", std::move(inputs), std::move(schema)) {}

  // Persistent entries: key = row key (16 bytes), value = version byte + the key's live count
  // (i64) summed over all inputs.
  void take_state_changes(StateChanges& out) override {
    take_dirty_entries(dirty_, live_, kEntryVersion, put_key_entry,
                       [](int64_t n, std::string& v) { codec::put_i64(v, n); }, out);
  }
  Status restore_state_entry(std::string_view key, std::string_view value) override {
    Key k;
    uint8_t version;
    int64_t n;
    if (key.size() != 16 || !codec::get_key(key, &k) || !codec::get_u8(value, &version) || version != kEntryVersion ||
        !codec::get_i64(value, &n) || !value.empty() || n == 0)
      return state_corrupt(label());
    live_[k] = n;
    return {};
  }
  Status finish_state_restore() override { return {}; }

  void process(Time, std::span<const Batch* const> in, Batch& out) override {
    for (size_t i = 0; i < in.size(); ++i)
      for (const Update& u : *in[i]) out.push_back(u);
    // Key disjointness: a key may be live in at most one input.
    for (size_t i = 0; i < in.size(); ++i)
      for (const Update& u : *in[i]) {
        if (tracking_state()) dirty_.insert(u.key);
        int64_t& c = live_[u.key];
        c += u.diff;
        if (c == 0) live_.erase(u.key);
      }
    for (size_t i = 0; i < in.size(); ++i)
      for (const Update& u : *in[i]) {
        auto it = live_.find(u.key);
        if (it != live_.end() && it->second > 1)
          throw RuntimeError("concat: key " + u.key.to_string() +
                             " is present in more than one input; concat needs disjoint keys");
      }
  }
  bool stateful() const override { return true; }
  std::unique_ptr<Node> clone() const override { return std::make_unique<ConcatNode>(inputs(), schema()); }
  Routing routing() const override {
    Routing r;
    r.by = Routing::By::kRowKey;  // key disjointness is checked per key
    r.partitioned_output = true;
    return r;
  }

 private:
  std::unordered_map<Key, int64_t, KeyHash> live_;
  std::unordered_set<Key, KeyHash> dirty_;
};

void check_name(const std::string& op, const std::string& name) {
  if (name.empty()) throw GraphError("in " + op + ": empty column name");
  if (name == "id") throw GraphError("in " + op + ": 'id' is reserved for the row key");
}

}  // namespace
}  // namespace engine

using engine::Node;

Table Table::select(std::vector<NamedExpr> outputs) const {
  auto& g = graph_->impl();
  internal::CompileScope scope;
  scope.graph = &g;
  scope.op = "select";
  scope.schema = &schema();
  std::vector<internal::CompiledExprPtr> exprs;
  std::vector<Column> cols;
  for (auto& o : outputs) {
    engine::check_name("select", o.name);
    for (const auto& c : cols)
      if (c.name == o.name) throw GraphError("in select: column '" + o.name + "' given twice");
    exprs.push_back(internal::compile(o.expr, scope));
    cols.push_back({o.name, exprs.back()->type});
  }
  return engine::with_params(
      Table(graph_, g.add(std::make_unique<engine::SelectNode>(node_, Schema(std::move(cols)), std::move(exprs),
                                                               scope.saw_nondeterministic, schema().size()))),
      internal::describe(outputs));
}

Table Table::with_columns(std::vector<NamedExpr> outputs) const {
  std::vector<NamedExpr> all;
  for (const auto& c : schema().columns()) {
    bool replaced = false;
    for (const auto& o : outputs) replaced = replaced || o.name == c.name;
    if (!replaced) all.push_back({c.name, col(c.name)});
  }
  for (auto& o : outputs) all.push_back(std::move(o));
  return select(std::move(all));
}

Table Table::without(std::vector<std::string> columns) const {
  for (const auto& c : columns)
    if (!schema().find(c)) throw GraphError("in without: unknown column '" + c + "' (available: " + schema().names() + ")");
  std::vector<NamedExpr> keep;
  for (const auto& c : schema().columns())
    if (std::find(columns.begin(), columns.end(), c.name) == columns.end()) keep.push_back({c.name, col(c.name)});
  return select(std::move(keep));
}

Table Table::rename(std::vector<std::pair<std::string, std::string>> old_to_new) const {
  for (const auto& [o, n] : old_to_new)
    if (!schema().find(o)) throw GraphError("in rename: unknown column '" + o + "' (available: " + schema().names() + ")");
  std::vector<NamedExpr> out;
  for (const auto& c : schema().columns()) {
    std::string name = c.name;
    for (const auto& [o, n] : old_to_new)
      if (o == c.name) name = n;
    out.push_back({name, col(c.name)});
  }
  return select(std::move(out));
}

Table Table::filter(Expr predicate) const {
  internal::CompileScope scope;
  scope.graph = &graph_->impl();
  scope.op = "filter";
  scope.schema = &schema();
  auto pred = internal::compile(predicate, scope);
  if (pred->type.base != DType::kBool && pred->type.base != DType::kAny)
    throw GraphError("in filter: the predicate must be bool, got " + pred->type.to_string());
  return engine::with_params(Table(graph_, graph_->impl().add(std::make_unique<engine::FilterNode>(
                                               node_, schema(), std::move(pred), scope.saw_nondeterministic))),
                             internal::describe(predicate));
}

Table Table::flatten(const std::string& column) const {
  auto i = schema().find(column);
  if (!i) throw GraphError("in flatten: unknown column '" + column + "' (available: " + schema().names() + ")");
  DType t = schema()[*i].type.base;
  if (t != DType::kTuple && t != DType::kAny)
    throw GraphError("in flatten: column '" + column + "' is " + schema()[*i].type.to_string() + ", not a tuple");
  std::vector<Column> cols = schema().columns();
  cols[*i].type = {DType::kAny, true};
  return engine::with_params(
      Table(graph_, graph_->impl().add(std::make_unique<engine::FlattenNode>(node_, Schema(std::move(cols)), *i))),
      column);
}

Table concat(const std::vector<Table>& tables) {
  if (tables.empty()) throw GraphError("concat: no tables");
  const Schema& first = tables[0].schema();
  std::vector<size_t> inputs;
  std::vector<Column> cols = first.columns();
  for (const auto& t : tables) {
    if (&t.graph() != &tables[0].graph()) throw GraphError("concat: tables belong to different graphs");
    const Schema& s = t.schema();
    if (s.size() != first.size())
      throw GraphError("concat: column sets differ (" + first.names() + " vs " + s.names() + ")");
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i].name != first[i].name)
        throw GraphError("concat: column sets differ (" + first.names() + " vs " + s.names() + ")");
      if (s[i].type != cols[i].type) {
        if (cols[i].type.accepts(s[i].type)) continue;
        if (s[i].type.accepts(cols[i].type)) cols[i].type = s[i].type;
        else
          throw GraphError("concat: column '" + s[i].name + "' is " + cols[i].type.to_string() + " in one table and " +
                           s[i].type.to_string() + " in another");
      }
    }
    inputs.push_back(t.node());
  }
  Graph& g = tables[0].graph();
  return Table(&g, g.impl().add(std::make_unique<engine::ConcatNode>(std::move(inputs), Schema(std::move(cols)))));
}

Table Table::concat(const Table& other) const { return tidemark::concat({*this, other}); }

}  // namespace tidemark
