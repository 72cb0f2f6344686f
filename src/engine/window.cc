// windowby(time, window, instance).reduce(outputs): an assignment node maps every row to its
// window(s), adding _pw_window_start, _pw_window_end (and _pw_instance), and the usual
// groupby(...).reduce(...) aggregates each window.
//
// Tumbling and sliding windows depend on the row alone (stateless assignment). Session windows
// depend on the other rows of the instance: the node keeps each instance's rows ordered by
// time and, when an instance changes, recomputes its sessions and emits -old +new for the rows
// whose session changed. Rows whose time is None belong to no window.
//
// Arithmetic runs on int64 (ints, and nanoseconds of date-times and durations) unless the time
// or a parameter is a float, then on doubles.
#include <cmath>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "engine/codec.h"
#include "engine/expr_internal.h"
#include "engine/node.h"
#include "engine/state_codec.h"

namespace tidemark {

Window tumbling(Value duration, Value origin) {
  Window w;
  w.kind = Window::Kind::kTumbling;
  w.duration = std::move(duration);
  w.origin = std::move(origin);
  return w;
}

Window sliding(Value hop, Value duration, Value origin) {
  Window w;
  w.kind = Window::Kind::kSliding;
  w.hop = std::move(hop);
  w.duration = std::move(duration);
  w.origin = std::move(origin);
  return w;
}

Window session(Value max_gap) {
  Window w;
  w.kind = Window::Kind::kSession;
  w.max_gap = std::move(max_gap);
  return w;
}

namespace engine {
namespace {

using internal::CompiledExprPtr;
using internal::EvalContext;

constexpr const char* kStart = "_pw_window_start";
constexpr const char* kEnd = "_pw_window_end";
constexpr const char* kInstance = "_pw_instance";

bool is_datetime(DType t) { return t == DType::kDateTimeNaive || t == DType::kDateTimeUtc; }
bool is_number(DType t) { return t == DType::kInt || t == DType::kFloat; }

// The window's parameters that must be set, by name.
std::vector<std::pair<const char*, const Value*>> required_params(const Window& w) {
  switch (w.kind) {
    case Window::Kind::kTumbling: return {{"duration", &w.duration}};
    case Window::Kind::kSliding: return {{"hop", &w.hop}, {"duration", &w.duration}};
    case Window::Kind::kSession: return {{"max_gap", &w.max_gap}};
  }
  return {};
}

// Checks what does not depend on the time's type: parameters set, numbers or durations,
// positive. Returns an error message or "".
std::string check_params(const Window& w) {
  for (const auto& [name, v] : required_params(w)) {
    DType t = v->type();
    if (v->is_none()) return std::string("window ") + name + " is not set";
    if (!is_number(t) && t != DType::kDuration)
      return std::string("window ") + name + " must be an int, float or duration, got " + dtype_name(t);
    bool positive = t == DType::kDuration ? v->as_duration() > 0 : v->as_number() > 0;
    if (!positive) return std::string("window ") + name + " must be positive, got " + v->to_string();
  }
  return {};
}

// Checks that the parameters fit a time of type `t`. Returns an error message or "".
std::string check_time_type(DType t, const Window& w) {
  auto params = required_params(w);
  if (is_number(t)) {
    for (const auto& [name, v] : params)
      if (!is_number(v->type()))
        return std::string("window ") + name + " must be a number for a time of type " + dtype_name(t) + ", got " +
               dtype_name(v->type());
    if (!w.origin.is_none() && !is_number(w.origin.type()))
      return std::string("window origin must be a number for a time of type ") + dtype_name(t) + ", got " +
             dtype_name(w.origin.type());
    return {};
  }
  if (is_datetime(t) || t == DType::kDuration) {
    for (const auto& [name, v] : params)
      if (v->type() != DType::kDuration)
        return std::string("window ") + name + " must be a duration for a time of type " + dtype_name(t) + ", got " +
               dtype_name(v->type());
    if (!w.origin.is_none() && w.origin.type() != t)
      return std::string("window origin must be a ") + dtype_name(t) + " for a time of type " + dtype_name(t) + ", got " +
             dtype_name(w.origin.type());
    return {};
  }
  return std::string("window time must be an int, float, date-time or duration, got ") + dtype_name(t);
}

int64_t ticks(const Value& v) {
  switch (v.type()) {
    case DType::kInt: return v.as_int();
    case DType::kDateTimeNaive: return v.as_datetime_naive();
    case DType::kDateTimeUtc: return v.as_datetime_utc();
    case DType::kDuration: return v.as_duration();
    default: return 0;  // None origin
  }
}
double real(const Value& v) { return v.type() == DType::kFloat ? v.as_float() : static_cast<double>(ticks(v)); }

int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

// Window arithmetic for a time column's type (when it is `any`, values are checked one by one).
class WindowMath {
 public:
  WindowMath(Window w, DType time_type) : w_(std::move(w)), type_(time_type) {
    floating_ = time_type == DType::kFloat || w_.origin.type() == DType::kFloat;
    for (const auto& [name, v] : required_params(w_)) floating_ = floating_ || v->type() == DType::kFloat;
  }

  // Throws RuntimeError when a time value of an `any` column does not fit the parameters.
  void check(const Value& t) const {
    if (type_ != DType::kAny) return;
    std::string err = check_time_type(t.type(), w_);
    if (!err.empty()) throw RuntimeError("windowby: " + err);
  }

  // [start, end) of every tumbling or sliding window containing t.
  std::vector<std::pair<Value, Value>> windows(const Value& t) const {
    std::vector<std::pair<Value, Value>> out;
    bool tumbling = w_.kind == Window::Kind::kTumbling;
    if (floating(t)) {
      double x = real(t), o = real(w_.origin), d = real(w_.duration), h = tumbling ? d : real(w_.hop);
      double kmax = std::floor((x - o) / h), kmin = std::floor((x - o - d) / h);
      // One step of slack on both sides absorbs rounding; the test below decides.
      for (double k = kmin; k <= kmax + 1; ++k) {
        double s = o + k * h;
        if (s <= x && x < s + d) out.emplace_back(make(t, 0, s), make(t, 0, s + d));
      }
    } else {
      int64_t x = ticks(t), o = ticks(w_.origin), d = ticks(w_.duration), h = tumbling ? d : ticks(w_.hop);
      for (int64_t k = floor_div(x - o - d, h) + 1; k <= floor_div(x - o, h); ++k) {
        int64_t s = o + k * h;
        out.emplace_back(make(t, s, 0), make(t, s + d, 0));
      }
    }
    return out;
  }

  // Whether b (>= a) is less than max_gap after a.
  bool close(const Value& a, const Value& b) const {
    if (floating(a) || floating(b)) return real(b) - real(a) < real(w_.max_gap);
    return ticks(b) - ticks(a) < ticks(w_.max_gap);
  }

  // Output column type of window bounds.
  Type bound_type() const {
    if (type_ == DType::kAny) return {DType::kAny, true};
    return {floating_ ? DType::kFloat : type_, false};
  }

 private:
  bool floating(const Value& t) const { return floating_ || t.type() == DType::kFloat; }

  // A window bound of the same kind as the time `t`.
  Value make(const Value& t, int64_t i, double f) const {
    if (floating(t)) return Value(f);
    switch (t.type()) {
      case DType::kDateTimeNaive: return Value(DateTimeNaive{i});
      case DType::kDateTimeUtc: return Value(DateTimeUtc{i});
      case DType::kDuration: return Value(Duration{i});
      default: return Value(i);
    }
  }

  Window w_;
  DType type_;
  bool floating_ = false;
};

// Tumbling and sliding windows: every row maps to the windows containing its time.
class FixedWindowNode final : public Node {
 public:
  FixedWindowNode(size_t input, Schema schema, Window w, DType time_type, CompiledExprPtr time,
                  CompiledExprPtr instance)
      : Node("windowby", {input}, std::move(schema)),
        window_(w),
        time_type_(time_type),
        math_(std::move(w), time_type),
        time_(std::move(time)),
        instance_(std::move(instance)) {}

  std::unique_ptr<Node> clone() const override {
    return std::make_unique<FixedWindowNode>(inputs()[0], schema(), window_, time_type_, time_, instance_);
  }
  void process(Time, std::span<const Batch* const> in, Batch& out) override {
    for (const Update& u : *in[0]) {
      EvalContext ctx{u.row.data(), &u.key};
      Value t = time_->eval(ctx);
      if (t.is_none()) continue;
      math_.check(t);
      Value inst = instance_ ? instance_->eval(ctx) : Value();
      for (auto& [start, end] : math_.windows(t)) {
        Row r = u.row;
        Key k = key_combine(u.key, key_from_values({start}));
        r.push_back(std::move(start));
        r.push_back(std::move(end));
        if (instance_) r.push_back(inst);
        out.push_back({k, std::move(r), u.diff});
      }
    }
  }

 private:
  Window window_;
  DType time_type_;
  WindowMath math_;
  CompiledExprPtr time_;
  CompiledExprPtr instance_;
};

// Session windows: per instance, rows ordered by (time, key); neighbours closer than max_gap
// share a session [first time, last time].
class SessionWindowNode final : public Node {
 public:
  SessionWindowNode(size_t input, Schema schema, Window w, DType time_type, CompiledExprPtr time,
                    CompiledExprPtr instance)
      : Node("windowby", {input}, std::move(schema)),
        window_(w),
        time_type_(time_type),
        math_(std::move(w), time_type),
        time_(std::move(time)),
        instance_(std::move(instance)) {}

  std::unique_ptr<Node> clone() const override {
    return std::make_unique<SessionWindowNode>(inputs()[0], schema(), window_, time_type_, time_, instance_);
  }
  Routing routing() const override {  // sessions are per instance
    Routing r;
    r.by = Routing::By::kExpr;
    r.expr = instance_.get();
    return r;
  }

  // Persistent entries: one per row with a time, key = the row key (16 bytes), value = version
  // byte + instance + time (as evaluated when the row arrived) + the row. Session assignments
  // are recomputed on restore: after every time each row's emitted session is the current one.
  void take_state_changes(StateChanges& out) override {
    take_dirty_entries(dirty_, rows_, kEntryVersion, put_key_entry,
                       [](const auto& e, std::string& v) {
                         codec::put_value(v, e.instance);
                         codec::put_value(v, e.time);
                         codec::put_row(v, e.row);
                       },
                       out);
  }
  Status restore_state_entry(std::string_view key, std::string_view value) override {
    Key k;
    Entry e;
    uint8_t version;
    size_t width = schema().size() - (instance_ ? 3 : 2);
    if (key.size() != 16 || !codec::get_key(key, &k) || !codec::get_u8(value, &version) || version != kEntryVersion ||
        !codec::get_value(value, &e.instance) || !codec::get_value(value, &e.time) || !codec::get_row(value, &e.row) ||
        !value.empty() || e.time.is_none() || e.row.size() != width || rows_.contains(k))
      return state_corrupt(label());
    sets_[e.instance].emplace(e.time, k);
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
    Batch discard;  // every row is assigned its session; the outputs were delivered before
    for (const auto& [inst, rows] : sets_) reassign(inst, discard);
    return {};
  }

  void process(Time, std::span<const Batch* const> in, Batch& out) override {
    std::set<Value> touched;
    if (tracking_state())
      for (const Update& u : *in[0]) dirty_.insert(u.key);
    for (const Update& u : *in[0]) {
      if (u.diff < 0) {
        auto it = rows_.find(u.key);
        if (it == rows_.end()) continue;  // its time was None
        Entry& e = it->second;
        touched.insert(e.instance);
        if (e.assigned) emit(u.key, e, -1, out);
        auto set_it = sets_.find(e.instance);
        set_it->second.erase({e.time, u.key});
        if (set_it->second.empty()) sets_.erase(set_it);
        rows_.erase(it);
        continue;
      }
      EvalContext ctx{u.row.data(), &u.key};
      Value t = time_->eval(ctx);
      if (t.is_none()) continue;
      math_.check(t);
      Value inst = instance_ ? instance_->eval(ctx) : Value();
      if (!rows_.emplace(u.key, Entry{inst, t, u.row, false, {}, {}}).second)
        throw RuntimeError(label() + ": key " + u.key.to_string() + " inserted twice");
      sets_[inst].emplace(std::move(t), u.key);
      touched.insert(std::move(inst));
    }
    for (const Value& inst : touched) reassign(inst, out);
  }

  bool stateful() const override { return true; }

 private:
  Window window_;
  DType time_type_;
  struct Entry {
    Value instance;
    Value time;
    Row row;
    bool assigned = false;  // start/end emitted
    Value start, end;
  };

  void emit(const Key& k, const Entry& e, int64_t diff, Batch& out) const {
    Row r = e.row;
    r.push_back(e.start);
    r.push_back(e.end);
    if (instance_) r.push_back(e.instance);
    out.push_back({key_combine(k, key_from_values({e.start})), std::move(r), diff});
  }

  // Recomputes the instance's sessions; emits changes for rows whose session changed.
  void reassign(const Value& inst, Batch& out) {
    auto set_it = sets_.find(inst);
    if (set_it == sets_.end()) return;
    const auto& rows = set_it->second;
    for (auto first = rows.begin(); first != rows.end();) {
      auto last = first;
      for (auto next = std::next(last); next != rows.end() && math_.close(last->first, next->first); ++next) last = next;
      auto stop = std::next(last);
      for (auto it = first; it != stop; ++it) {
        Entry& e = rows_.at(it->second);
        if (e.assigned && e.start == first->first && e.end == last->first) continue;
        if (e.assigned) emit(it->second, e, -1, out);
        e.assigned = true;
        e.start = first->first;
        e.end = last->first;
        emit(it->second, e, 1, out);
      }
      first = stop;
    }
  }

  WindowMath math_;
  CompiledExprPtr time_;
  CompiledExprPtr instance_;
  std::unordered_map<Key, Entry, KeyHash> rows_;
  std::map<Value, std::set<std::pair<Value, Key>>> sets_;
  static constexpr uint8_t kEntryVersion = 1;
  std::unordered_set<Key, KeyHash> dirty_;  // rows inserted or removed since the last take
};

// Compiles the time expression and checks the window against its type.
CompiledExprPtr compile_time(const Table& t, const Expr& time, const Window& w, DType* time_type) {
  internal::CompileScope scope;
  scope.graph = &t.graph().impl();
  scope.op = "windowby";
  scope.schema = &t.schema();
  auto c = internal::compile(time, scope);
  if (std::string err = check_params(w); !err.empty()) throw GraphError("in windowby: " + err);
  *time_type = c->type.base;
  if (*time_type != DType::kAny)
    if (std::string err = check_time_type(*time_type, w); !err.empty()) throw GraphError("in windowby: " + err);
  return c;
}

}  // namespace
}  // namespace engine

WindowedTable Table::windowby(Expr time, Window window, std::optional<Expr> instance) const {
  DType time_type;
  engine::compile_time(*this, time, window, &time_type);
  if (instance) {
    internal::CompileScope scope;
    scope.graph = &graph_->impl();
    scope.op = "windowby";
    scope.schema = &schema();
    internal::compile(*instance, scope);
  }
  return WindowedTable(*this, std::move(time), std::move(window), std::move(instance));
}

WindowedTable::WindowedTable(const Table& t, Expr time, Window w, std::optional<Expr> instance)
    : graph_(&t.graph()), node_(t.node()), time_(std::move(time)), window_(std::move(w)), instance_(std::move(instance)) {}

Table WindowedTable::reduce(std::vector<NamedExpr> outputs) const {
  const Table t(graph_, node_);
  DType time_type;
  auto time = engine::compile_time(t, time_, window_, &time_type);
  internal::CompiledExprPtr inst;
  std::vector<Column> cols = t.schema().columns();
  for (const char* name : {engine::kStart, engine::kEnd, engine::kInstance})
    if (t.schema().find(name)) throw GraphError(std::string("in windowby: the input already has a column '") + name + "'");
  Type bound = engine::WindowMath(window_, time_type).bound_type();
  cols.push_back({engine::kStart, bound});
  cols.push_back({engine::kEnd, bound});
  std::vector<std::string> by = {engine::kStart, engine::kEnd};
  if (instance_) {
    internal::CompileScope scope;
    scope.graph = &t.graph().impl();
    scope.op = "windowby";
    scope.schema = &t.schema();
    inst = internal::compile(*instance_, scope);
    cols.push_back({engine::kInstance, inst->type});
    by.push_back(engine::kInstance);
  }
  Schema schema(std::move(cols));
  std::unique_ptr<engine::Node> node;
  if (window_.kind == Window::Kind::kSession)
    node = std::make_unique<engine::SessionWindowNode>(t.node(), std::move(schema), window_, time_type,
                                                       std::move(time), std::move(inst));
  else
    node = std::make_unique<engine::FixedWindowNode>(t.node(), std::move(schema), window_, time_type, std::move(time),
                                                     std::move(inst));
  static const char* kKinds[] = {"tumbling", "sliding", "session"};
  node->set_params(std::string(kKinds[static_cast<int>(window_.kind)]) + " duration " + window_.duration.to_string() +
                   " hop " + window_.hop.to_string() + " origin " + window_.origin.to_string() + " max_gap " +
                   window_.max_gap.to_string() + "; time " + internal::describe(time_) +
                   (instance_ ? "; instance " + internal::describe(*instance_) : ""));
  Table assigned(&t.graph(), t.graph().impl().add(std::move(node)));
  return assigned.groupby(std::move(by)).reduce(std::move(outputs));
}

}  // namespace tidemark
