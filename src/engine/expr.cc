// Expression builders, type checking and the interpreter: describe(), the compiled node kinds
// (literal, column, key, user function, function call) and the registry of functions.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <mutex>

#include "engine/expr_internal.h"
#include "engine/node.h"
#include "engine/udf_cache.h"
#include "tidemark/table.h"

namespace tidemark {

using internal::ExprKind;
using internal::ExprNode;
using internal::Side;

namespace {
Expr make(ExprNode n) { return Expr(std::make_shared<const ExprNode>(std::move(n))); }
Expr op(std::string name, std::vector<Expr> args) {
  ExprNode n;
  n.kind = ExprKind::kOp;
  n.name = std::move(name);
  n.args = std::move(args);
  return make(std::move(n));
}
Expr column(std::string name, Side side) {
  ExprNode n;
  n.kind = ExprKind::kColumn;
  n.name = std::move(name);
  n.side = side;
  return make(std::move(n));
}
Expr reducer(std::string name, std::vector<Expr> args) {
  ExprNode n;
  n.kind = ExprKind::kReducer;
  n.name = std::move(name);
  n.args = std::move(args);
  return make(std::move(n));
}
Expr key_ref(ExprKind kind) {
  ExprNode n;
  n.kind = kind;
  return make(std::move(n));
}
}  // namespace

Expr::Expr(Value literal) {
  ExprNode n;
  n.kind = ExprKind::kLiteral;
  n.literal = std::move(literal);
  node_ = std::make_shared<const ExprNode>(std::move(n));
}

Expr col(std::string name) { return column(std::move(name), Side::kThis); }
Expr left(std::string name) { return column(std::move(name), Side::kLeft); }
Expr right(std::string name) { return column(std::move(name), Side::kRight); }
Expr id() { return key_ref(ExprKind::kId); }
Expr left_id() { return key_ref(ExprKind::kLeftId); }
Expr right_id() { return key_ref(ExprKind::kRightId); }
Expr lit(Value v) { return Expr(std::move(v)); }

Expr operator+(Expr a, Expr b) { return op("+", {std::move(a), std::move(b)}); }
Expr operator-(Expr a, Expr b) { return op("-", {std::move(a), std::move(b)}); }
Expr operator*(Expr a, Expr b) { return op("*", {std::move(a), std::move(b)}); }
Expr operator/(Expr a, Expr b) { return op("/", {std::move(a), std::move(b)}); }
Expr operator%(Expr a, Expr b) { return op("%", {std::move(a), std::move(b)}); }
Expr floordiv(Expr a, Expr b) { return op("//", {std::move(a), std::move(b)}); }
Expr operator-(Expr a) { return op("neg", {std::move(a)}); }
Expr operator==(Expr a, Expr b) { return op("==", {std::move(a), std::move(b)}); }
Expr operator!=(Expr a, Expr b) { return op("!=", {std::move(a), std::move(b)}); }
Expr operator<(Expr a, Expr b) { return op("<", {std::move(a), std::move(b)}); }
Expr operator<=(Expr a, Expr b) { return op("<=", {std::move(a), std::move(b)}); }
Expr operator>(Expr a, Expr b) { return op(">", {std::move(a), std::move(b)}); }
Expr operator>=(Expr a, Expr b) { return op(">=", {std::move(a), std::move(b)}); }
Expr operator&&(Expr a, Expr b) { return op("and", {std::move(a), std::move(b)}); }
Expr operator||(Expr a, Expr b) { return op("or", {std::move(a), std::move(b)}); }
Expr operator!(Expr a) { return op("not", {std::move(a)}); }
Expr if_else(Expr c, Expr t, Expr e) { return op("if_else", {std::move(c), std::move(t), std::move(e)}); }
Expr coalesce(std::vector<Expr> args) { return op("coalesce", std::move(args)); }
Expr is_none(Expr a) { return op("is_none", {std::move(a)}); }
Expr is_not_none(Expr a) { return op("is_not_none", {std::move(a)}); }
Expr cast(Expr a, DType to) {
  ExprNode n;
  n.kind = ExprKind::kOp;
  n.name = "cast";
  n.args = {std::move(a)};
  n.cast_to = to;
  return make(std::move(n));
}
Expr make_tuple(std::vector<Expr> items) { return op("tuple", std::move(items)); }
Expr get(Expr t, Expr i) { return op("get", {std::move(t), std::move(i)}); }

namespace str {
Expr lower(Expr s) { return op("lower", {std::move(s)}); }
Expr upper(Expr s) { return op("upper", {std::move(s)}); }
Expr len(Expr s) { return op("len", {std::move(s)}); }
Expr strip(Expr s) { return op("strip", {std::move(s)}); }
Expr contains(Expr s, Expr n) { return op("contains", {std::move(s), std::move(n)}); }
Expr startswith(Expr s, Expr p) { return op("startswith", {std::move(s), std::move(p)}); }
Expr endswith(Expr s, Expr p) { return op("endswith", {std::move(s), std::move(p)}); }
Expr replace(Expr s, Expr f, Expr t) { return op("replace", {std::move(s), std::move(f), std::move(t)}); }
Expr split(Expr s) { return op("split", {std::move(s)}); }
Expr split(Expr s, Expr sep) { return op("split", {std::move(s), std::move(sep)}); }
Expr slice(Expr s, Expr a, Expr b) { return op("slice", {std::move(s), std::move(a), std::move(b)}); }
}  // namespace str

namespace {
ExprNode apply_node(UserFunction fn, std::vector<Expr> args, Type result_type, bool deterministic) {
  ExprNode n;
  n.kind = ExprKind::kApply;
  n.name = "apply";
  n.fn = std::move(fn);
  n.args = std::move(args);
  n.result_type = result_type;
  n.deterministic = deterministic;
  return n;
}
}  // namespace

Expr apply(UserFunction fn, std::vector<Expr> args, Type result_type, bool deterministic) {
  return make(apply_node(std::move(fn), std::move(args), result_type, deterministic));
}

Expr apply(UserFunction fn, std::vector<Expr> args, Type result_type, ApplyOptions options) {
  ExprNode n = apply_node(std::move(fn), std::move(args), result_type, options.deterministic);
  n.thread_safe = options.thread_safe;
  return make(std::move(n));
}

Expr apply(UserFunction fn, std::vector<Expr> args, Type result_type, UdfCache cache) {
  if (cache.name.empty()) throw GraphError("apply(): a UdfCache needs a non-empty name");
  ExprNode n = apply_node(std::move(fn), std::move(args), result_type, /*deterministic=*/true);
  n.cache = std::make_shared<const UdfCache>(std::move(cache));
  return make(std::move(n));
}

namespace reducers {
Expr count() { return reducer("count", {}); }
Expr sum(Expr e) { return reducer("sum", {std::move(e)}); }
Expr min(Expr e) { return reducer("min", {std::move(e)}); }
Expr max(Expr e) { return reducer("max", {std::move(e)}); }
Expr avg(Expr e) { return reducer("avg", {std::move(e)}); }
Expr count_distinct(Expr e) { return reducer("count_distinct", {std::move(e)}); }
Expr any(Expr e) { return reducer("any", {std::move(e)}); }
Expr earliest(Expr e) { return reducer("earliest", {std::move(e)}); }
Expr latest(Expr e) { return reducer("latest", {std::move(e)}); }
Expr tuple(Expr e) { return reducer("tuple", {std::move(e)}); }
Expr sorted_tuple(Expr e) { return reducer("sorted_tuple", {std::move(e)}); }
}  // namespace reducers

namespace internal {

std::string describe(const Expr& e) {
  const ExprNode& n = *e.node();
  auto args = [&] {
    std::string s;
    for (size_t i = 0; i < n.args.size(); ++i) s += (i ? ", " : "") + describe(n.args[i]);
    return s;
  };
  switch (n.kind) {
    case ExprKind::kLiteral: return n.literal.to_string() + ":" + dtype_name(n.literal.type());
    case ExprKind::kColumn:
      return std::string(n.side == Side::kLeft ? "left." : n.side == Side::kRight ? "right." : "") + "col(" + n.name + ")";
    case ExprKind::kId: return "id";
    case ExprKind::kLeftId: return "left.id";
    case ExprKind::kRightId: return "right.id";
    case ExprKind::kOp:
      return n.name + (n.name == "cast" ? std::string("<") + dtype_name(n.cast_to) + ">" : "") + "(" + args() + ")";
    case ExprKind::kApply:
      return std::string("apply<") + n.result_type.to_string() + (n.deterministic ? "" : ", non-deterministic") +
             (n.cache ? ", cache " + n.cache->name : "") + ">(" + args() + ")";
    case ExprKind::kReducer: return "reducers::" + n.name + "(" + args() + ")";
  }
  return "?";
}

std::string describe(const std::vector<NamedExpr>& outputs) {
  std::string s;
  for (size_t i = 0; i < outputs.size(); ++i) s += (i ? ", " : "") + outputs[i].name + "=" + describe(outputs[i].expr);
  return s;
}

using engine::RuntimeError;

namespace {

[[noreturn]] void graph_error(const CompileScope& s, const std::string& msg) {
  throw GraphError("in " + s.op + ": " + msg);
}

bool is_num(DType t) { return t == DType::kInt || t == DType::kFloat; }

Type unify(Type a, Type b) {
  if (a.base == DType::kNone) return {b.base, true};
  if (b.base == DType::kNone) return {a.base, true};
  bool opt = a.optional || b.optional;
  if (a.base == b.base) return {a.base, opt};
  if (is_num(a.base) && is_num(b.base)) return {DType::kFloat, opt};
  return {DType::kAny, true};
}

class LiteralExpr final : public CompiledExpr {
 public:
  explicit LiteralExpr(Value v) : v_(std::move(v)) {
    type = v_.is_none() ? Type{DType::kNone, true} : Type{v_.type(), false};
  }
  Value eval(const EvalContext&) const override { return v_; }
  const Value& value() const { return v_; }

 private:
  Value v_;
};

class ColumnExpr final : public CompiledExpr {
 public:
  ColumnExpr(size_t i, Type t) : i_(i) { type = t; }
  Value eval(const EvalContext& c) const override { return c.cols[i_]; }
  int column_index() const override { return static_cast<int>(i_); }

 private:
  size_t i_;
};

class KeyExpr final : public CompiledExpr {
 public:
  explicit KeyExpr(ExprKind which) : which_(which) { type = {DType::kPointer, which != ExprKind::kId}; }
  Value eval(const EvalContext& c) const override {
    const Key* k = which_ == ExprKind::kId ? c.key : which_ == ExprKind::kLeftId ? c.left_key : c.right_key;
    return k ? Value(*k) : Value();
  }

 private:
  ExprKind which_;
};

class ApplyExpr final : public CompiledExpr {
 public:
  ApplyExpr(UserFunction fn, std::vector<CompiledExprPtr> args, Type t,
            std::shared_ptr<engine::UdfCacheState> cache = nullptr, bool thread_safe = true)
      : fn_(std::move(fn)), args_(std::move(args)), cache_(std::move(cache)) {
    type = t;
    if (!thread_safe) serial_ = std::make_unique<std::mutex>();
  }
  Value eval(const EvalContext& c) const override {
    std::vector<Value> vals;
    vals.reserve(args_.size());
    for (const auto& a : args_) vals.push_back(a->eval(c));
    if (cache_) return cache_->get_or_compute(vals, [this](const std::vector<Value>& v) { return call(v); });
    return call(vals);
  }

 private:
  Value call(const std::vector<Value>& vals) const {
    std::unique_lock<std::mutex> lock;
    if (serial_) lock = std::unique_lock<std::mutex>(*serial_);  // not thread-safe: one call at a time
    try {
      return fn_(vals);
    } catch (const RuntimeError&) {
      throw;
    } catch (const std::exception& e) {
      throw RuntimeError(std::string("user function failed: ") + e.what());
    }
  }

  UserFunction fn_;
  std::vector<CompiledExprPtr> args_;
  std::shared_ptr<engine::UdfCacheState> cache_;
  std::unique_ptr<std::mutex> serial_;  // thread_safe = false
};

// The graph's cache for this apply node: registered on first use, shared afterwards.
std::shared_ptr<engine::UdfCacheState> cache_in_graph(const CompileScope& s, const std::shared_ptr<const UdfCache>& config) {
  if (!s.graph)
    graph_error(s, "apply() with UdfCache '" + config->name + "' is not supported in this operator");
  std::string id = "udf_cache:" + config->name;
  for (const auto& e : s.graph->extra_states()) {
    if (e.id != id) continue;
    auto cache = std::dynamic_pointer_cast<engine::UdfCacheState>(e.state);
    if (cache && cache->config_identity() == config.get()) return cache;
    graph_error(s, "two different UDF caches are named '" + config->name +
                       "' (each apply(..., UdfCache) call makes its own cache; use one Expr to share a cache)");
  }
  auto cache = std::make_shared<engine::UdfCacheState>(config);
  s.graph->register_state(id, "udf_cache", cache);
  return cache;
}

// ---- The function registry ----
//
// Every function of the expression language is one `Function`: its name (as stored in
// ExprNode::name and printed by describe()), its arity, a type rule and a kernel. The type rule
// computes the result type from the argument types and checks every argument type the kernel
// relies on, so a wrongly typed argument is a GraphError naming the function and the argument
// when the operator is built. Arguments of type any (e.g. flatten's output) are checked by the
// kernel at run time (a RuntimeError naming the function); None arguments propagate as each
// function documents below.

class Call;
using Kernel = Value (*)(const Call&, const EvalContext&);

// What a type rule sees: the argument types, and checks that fail the graph build.
class ArgTypes {
 public:
  ArgTypes(const CompileScope& s, const std::string& fn, const std::vector<CompiledExprPtr>& args, DType cast_to)
      : scope_(s), fn_(fn), args_(args), cast_to_(cast_to) {}
  size_t size() const { return args_.size(); }
  const Type& operator[](size_t i) const { return args_[i]->type; }
  bool any_optional() const {
    for (const auto& a : args_)
      if (a->type.optional) return true;
    return false;
  }
  DType cast_to() const { return cast_to_; }
  const std::string& name() const { return fn_; }
  // Argument i must have one of the `allowed` types; any (checked at run time) and None
  // (propagated) pass.
  void expect(size_t i, std::initializer_list<DType> allowed) const {
    DType got = (*this)[i].base;
    if (got == DType::kAny || got == DType::kNone) return;
    std::string names;
    size_t k = 0;
    for (DType d : allowed) {
      if (d == got) return;
      names += (k == 0 ? "" : k + 1 == allowed.size() ? " or " : ", ") + std::string(dtype_name(d));
      ++k;
    }
    fail(fn_ + "() expects " + names + " for argument " + std::to_string(i + 1) + ", got " + (*this)[i].to_string());
  }
  [[noreturn]] void fail(const std::string& msg) const { graph_error(scope_, msg); }

 private:
  const CompileScope& scope_;
  const std::string& fn_;
  const std::vector<CompiledExprPtr>& args_;
  DType cast_to_;
};

constexpr int kVariadic = -1;

struct Function {
  const char* name;
  int min_args;
  int max_args;  // kVariadic: no limit
  Type (*type)(const ArgTypes&);
  Kernel kernel;
};

// A compiled function call: dispatches to the kernel. Plain column and literal arguments are
// read by reference (no copy of a string cell) through ref().
class Call final : public CompiledExpr {
 public:
  Call(const Function* fn, std::vector<CompiledExprPtr> args, DType cast_to, Type t)
      : fn_(fn), args_(std::move(args)), cast_to_(cast_to) {
    type = t;
    for (const auto& a : args_) {
      const auto* lit = dynamic_cast<const LiteralExpr*>(a.get());
      refs_.push_back({a->column_index(), lit ? &lit->value() : nullptr});
    }
  }
  Value eval(const EvalContext& c) const override { return fn_->kernel(*this, c); }

  size_t size() const { return args_.size(); }
  const char* name() const { return fn_->name; }
  DType cast_to() const { return cast_to_; }
  Value arg(size_t i, const EvalContext& c) const { return args_[i]->eval(c); }
  // Argument i without a copy when it is a column or a literal, else evaluated into `tmp`.
  const Value& ref(size_t i, const EvalContext& c, Value& tmp) const {
    const Ref& r = refs_[i];
    if (r.column >= 0) return c.cols[r.column];
    if (r.literal) return *r.literal;
    tmp = args_[i]->eval(c);
    return tmp;
  }

 private:
  struct Ref {
    int column;
    const Value* literal;
  };
  const Function* fn_;
  std::vector<CompiledExprPtr> args_;
  std::vector<Ref> refs_;
  DType cast_to_;
};

// Run-time argument checks (arguments of type any).
[[noreturn]] void wrong_arg(const Call& f, const char* want, const Value& got) {
  throw RuntimeError(std::string(f.name()) + "() expects " + want + ", got " + dtype_name(got.type()));
}
std::string_view need_str(const Call& f, const Value& v) {
  if (v.type() != DType::kString) wrong_arg(f, "str", v);
  return v.as_string();
}
int64_t need_int(const Call& f, const Value& v) {
  if (v.type() != DType::kInt) wrong_arg(f, "int", v);
  return v.as_int();
}

// -- Arithmetic. Int op int stays int (except `/`) and wraps around on overflow (two's
// complement, computed on unsigned values so it is defined); `//` and `%` floor as in Python;
// division or modulo by zero is a RuntimeError; None in either argument gives None.

enum class Arith { kAdd, kSub, kMul, kDiv, kMod, kFloorDiv };

constexpr const char* symbol(Arith op) {
  switch (op) {
    case Arith::kAdd: return "+";
    case Arith::kSub: return "-";
    case Arith::kMul: return "*";
    case Arith::kDiv: return "/";
    case Arith::kMod: return "%";
    case Arith::kFloorDiv: return "//";
  }
  return "?";
}

int64_t wrap_add(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b)); }
int64_t wrap_sub(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b)); }
int64_t wrap_mul(int64_t a, int64_t b) { return static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b)); }
// b != 0. INT64_MIN // -1 wraps to INT64_MIN (the hardware division would trap).
int64_t floor_div(int64_t a, int64_t b) {
  if (b == -1) return wrap_sub(0, a);
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}
int64_t floor_mod(int64_t a, int64_t b) {
  if (b == -1) return 0;
  int64_t m = a % b;
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

bool is_datetime(DType t) { return t == DType::kDateTimeNaive || t == DType::kDateTimeUtc; }
int64_t time_ns(const Value& v) {
  switch (v.type()) {
    case DType::kDateTimeNaive: return v.as_datetime_naive();
    case DType::kDateTimeUtc: return v.as_datetime_utc();
    default: return v.as_duration();
  }
}
Value with_ns(DType t, int64_t n) {
  if (t == DType::kDateTimeNaive) return Value(DateTimeNaive{n});
  if (t == DType::kDateTimeUtc) return Value(DateTimeUtc{n});
  return Value(Duration{n});
}

template <Arith op>
Value arith(const Value& a, const Value& b) {
  if (a.is_none() || b.is_none()) return Value();
  DType ta = a.type(), tb = b.type();
  if (ta == DType::kInt && tb == DType::kInt) {
    int64_t x = a.as_int(), y = b.as_int();
    if constexpr (op == Arith::kAdd) return Value(wrap_add(x, y));
    if constexpr (op == Arith::kSub) return Value(wrap_sub(x, y));
    if constexpr (op == Arith::kMul) return Value(wrap_mul(x, y));
    if constexpr (op == Arith::kDiv) {
      if (y == 0) throw RuntimeError("division by zero");
      return Value(static_cast<double>(x) / static_cast<double>(y));
    }
    if constexpr (op == Arith::kFloorDiv) {
      if (y == 0) throw RuntimeError("division by zero");
      return Value(floor_div(x, y));
    }
    if constexpr (op == Arith::kMod) {
      if (y == 0) throw RuntimeError("modulo by zero");
      return Value(floor_mod(x, y));
    }
  }
  if (is_num(ta) && is_num(tb)) {
    double x = a.as_number(), y = b.as_number();
    if constexpr (op == Arith::kAdd) return Value(x + y);
    if constexpr (op == Arith::kSub) return Value(x - y);
    if constexpr (op == Arith::kMul) return Value(x * y);
    if constexpr (op == Arith::kDiv) {
      if (y == 0) throw RuntimeError("division by zero");
      return Value(x / y);
    }
    if constexpr (op == Arith::kFloorDiv) {
      if (y == 0) throw RuntimeError("division by zero");
      return Value(std::floor(x / y));
    }
    if constexpr (op == Arith::kMod) {
      if (y == 0) throw RuntimeError("modulo by zero");
      return Value(x - std::floor(x / y) * y);
    }
  }
  if constexpr (op == Arith::kAdd)
    if (ta == DType::kString && tb == DType::kString) return Value(std::string(a.as_string()).append(b.as_string()));
  if constexpr (op == Arith::kAdd || op == Arith::kSub) {
    if (is_datetime(ta) && tb == DType::kDuration)
      return with_ns(ta, op == Arith::kAdd ? wrap_add(time_ns(a), time_ns(b)) : wrap_sub(time_ns(a), time_ns(b)));
    if (ta == DType::kDuration && tb == DType::kDuration)
      return Value(Duration{op == Arith::kAdd ? wrap_add(time_ns(a), time_ns(b)) : wrap_sub(time_ns(a), time_ns(b))});
  }
  if constexpr (op == Arith::kSub)
    if (is_datetime(ta) && ta == tb) return Value(Duration{wrap_sub(time_ns(a), time_ns(b))});
  if constexpr (op == Arith::kFloorDiv || op == Arith::kMod) {
    if (ta == DType::kDuration && tb == DType::kDuration) {
      int64_t y = time_ns(b);
      if (y == 0) throw RuntimeError(op == Arith::kMod ? "modulo by zero" : "division by zero");
      if constexpr (op == Arith::kFloorDiv) return Value(floor_div(time_ns(a), y));
      else return Value(Duration{floor_mod(time_ns(a), y)});
    }
  }
  if constexpr (op == Arith::kMul) {
    if (ta == DType::kDuration && tb == DType::kInt) return Value(Duration{wrap_mul(time_ns(a), b.as_int())});
    if (ta == DType::kInt && tb == DType::kDuration) return Value(Duration{wrap_mul(time_ns(b), a.as_int())});
  }
  throw RuntimeError(std::string("operator ") + symbol(op) + " is not defined for " + dtype_name(ta) + " and " +
                     dtype_name(tb));
}

template <Arith op>
Type arith_type(const ArgTypes& a) {
  DType x = a[0].base, y = a[1].base;
  bool opt = a.any_optional();
  if (x == DType::kAny || y == DType::kAny) return {DType::kAny, true};
  if (x == DType::kNone || y == DType::kNone) return {DType::kNone, true};
  if (is_num(x) && is_num(y)) {
    if (op == Arith::kDiv) return {DType::kFloat, opt};
    return {x == DType::kInt && y == DType::kInt ? DType::kInt : DType::kFloat, opt};
  }
  bool add_sub = op == Arith::kAdd || op == Arith::kSub;
  if (op == Arith::kAdd && x == DType::kString && y == DType::kString) return {DType::kString, opt};
  if (is_datetime(x) && y == DType::kDuration && add_sub) return {x, opt};
  if (is_datetime(x) && x == y && op == Arith::kSub) return {DType::kDuration, opt};
  if (x == DType::kDuration && y == DType::kDuration && (add_sub || op == Arith::kMod)) return {DType::kDuration, opt};
  if (x == DType::kDuration && y == DType::kDuration && op == Arith::kFloorDiv) return {DType::kInt, opt};
  if (op == Arith::kMul && ((x == DType::kDuration && y == DType::kInt) || (x == DType::kInt && y == DType::kDuration)))
    return {DType::kDuration, opt};
  a.fail(std::string("operator ") + symbol(op) + " is not defined for " + a[0].to_string() + " and " +
         a[1].to_string());
}

template <Arith op>
Value arith_kernel(const Call& f, const EvalContext& c) {
  Value ta, tb;
  const Value& a = f.ref(0, c, ta);
  const Value& b = f.ref(1, c, tb);
  return arith<op>(a, b);
}

Value neg_kernel(const Call& f, const EvalContext& c) {
  Value tmp;
  const Value& a = f.ref(0, c, tmp);
  switch (a.type()) {
    case DType::kNone: return Value();
    case DType::kInt: return Value(wrap_sub(0, a.as_int()));
    case DType::kFloat: return Value(-a.as_float());
    case DType::kDuration: return Value(Duration{wrap_sub(0, a.as_duration())});
    default: throw RuntimeError(std::string("cannot negate ") + dtype_name(a.type()));
  }
}
Type neg_type(const ArgTypes& a) {
  DType x = a[0].base;
  if (!is_num(x) && x != DType::kDuration && x != DType::kAny && x != DType::kNone)
    a.fail("cannot negate " + a[0].to_string() + " (operator -)");
  return a[0];
}

// -- Comparisons. == and != compare any two values (None == None is true; an int equals the
// equal float); <, <=, >, >= give None when an argument is None and need comparable types
// (numbers with numbers, else the same type).

enum class Cmp { kEq, kNe, kLt, kLe, kGt, kGe };

template <Cmp op>
Value compare_kernel(const Call& f, const EvalContext& c) {
  Value ta, tb;
  const Value& a = f.ref(0, c, ta);
  const Value& b = f.ref(1, c, tb);
  bool mixed = is_num(a.type()) && is_num(b.type()) && a.type() != b.type();
  if constexpr (op == Cmp::kEq || op == Cmp::kNe) {
    bool eq = mixed ? a.as_number() == b.as_number() : a == b;
    return Value(op == Cmp::kEq ? eq : !eq);
  } else {
    if (a.is_none() || b.is_none()) return Value();
    std::partial_ordering r = std::partial_ordering::equivalent;
    if (mixed) r = a.as_number() <=> b.as_number();
    else r = a <=> b;
    if constexpr (op == Cmp::kLt) return Value(r < 0);
    if constexpr (op == Cmp::kLe) return Value(r <= 0);
    if constexpr (op == Cmp::kGt) return Value(r > 0);
    return Value(r >= 0);
  }
}

Type equality_type(const ArgTypes&) { return {DType::kBool, false}; }

bool comparable(DType a, DType b) {
  if (a == DType::kAny || b == DType::kAny || a == DType::kNone || b == DType::kNone) return true;
  if (is_num(a) && is_num(b)) return true;
  return a == b;
}
Type order_type(const ArgTypes& a) {
  if (!comparable(a[0].base, a[1].base))
    a.fail("cannot compare " + a[0].to_string() + " with " + a[1].to_string() + " (operator " + a.name() + ")");
  return {DType::kBool, a.any_optional()};
}

// -- Boolean logic (three-valued: None is unknown). `and`/`or` evaluate the second argument
// only when the first does not decide.

bool truthy(const Value& v) { return !v.is_none() && v.type() == DType::kBool && v.as_bool(); }

Value and_kernel(const Call& f, const EvalContext& c) {
  Value ta, tb;
  const Value& a = f.ref(0, c, ta);
  if (!a.is_none() && !truthy(a)) return Value(false);
  const Value& b = f.ref(1, c, tb);
  if (a.is_none() || b.is_none()) return b.is_none() || truthy(b) ? Value() : Value(false);
  return Value(truthy(b));
}
Value or_kernel(const Call& f, const EvalContext& c) {
  Value ta, tb;
  const Value& a = f.ref(0, c, ta);
  if (truthy(a)) return Value(true);
  const Value& b = f.ref(1, c, tb);
  if (truthy(b)) return Value(true);
  if (a.is_none() || b.is_none()) return Value();
  return Value(false);
}
Value not_kernel(const Call& f, const EvalContext& c) {
  Value tmp;
  const Value& a = f.ref(0, c, tmp);
  return a.is_none() ? Value() : Value(!truthy(a));
}
Type bool_args_type(const ArgTypes& a) {
  for (size_t i = 0; i < a.size(); ++i) a.expect(i, {DType::kBool});
  return {DType::kBool, a.any_optional()};
}

// -- Conditionals and None handling.

Value if_else_kernel(const Call& f, const EvalContext& c) {
  Value tmp;
  return truthy(f.ref(0, c, tmp)) ? f.arg(1, c) : f.arg(2, c);
}
Type if_else_type(const ArgTypes& a) {
  a.expect(0, {DType::kBool});
  return unify(a[1], a[2]);
}

Value coalesce_kernel(const Call& f, const EvalContext& c) {
  for (size_t i = 0; i < f.size(); ++i) {
    Value v = f.arg(i, c);
    if (!v.is_none()) return v;
  }
  return Value();
}
Type coalesce_type(const ArgTypes& a) {
  Type r = a[0];
  bool all_opt = true;
  for (size_t i = 0; i < a.size(); ++i) {
    if (i) r = unify(r, a[i]);
    all_opt = all_opt && a[i].optional;
  }
  r.optional = all_opt;
  return r;
}

Value is_none_kernel(const Call& f, const EvalContext& c) {
  Value tmp;
  return Value(f.ref(0, c, tmp).is_none());
}
Value is_not_none_kernel(const Call& f, const EvalContext& c) {
  Value tmp;
  return Value(!f.ref(0, c, tmp).is_none());
}
Type bool_result_type(const ArgTypes&) { return {DType::kBool, false}; }

// -- cast: between int, float and bool, from str by parsing, to str by printing; None stays
// None. Parse failures (and a float without an int value) are RuntimeErrors.

std::string lower_ascii(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}
std::string upper_ascii(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return s;
}

bool castable(DType from, DType to) {
  if (to == DType::kAny || to == DType::kNone) return false;
  if (from == DType::kAny || from == DType::kNone || from == to || to == DType::kString) return true;
  bool scalar_to = to == DType::kInt || to == DType::kFloat || to == DType::kBool;
  return scalar_to && (is_num(from) || from == DType::kBool || from == DType::kString);
}

Value do_cast(const Value& v, DType to) {
  if (v.is_none()) return v;
  DType from = v.type();
  if (from == to) return v;
  switch (to) {
    case DType::kInt:
      if (from == DType::kFloat) {
        double d = v.as_float();
        // Truncates toward zero; outside the int range (or NaN) there is no int value.
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
          throw RuntimeError("cannot cast float " + v.to_string() + " to int");
        return Value(static_cast<int64_t>(d));
      }
      if (from == DType::kBool) return Value(static_cast<int64_t>(v.as_bool()));
      if (from == DType::kString) {
        const std::string s(v.as_string());
        char* end = nullptr;
        errno = 0;
        long long r = std::strtoll(s.c_str(), &end, 10);
        if (s.empty() || *end != '\0' || errno) throw RuntimeError("cannot cast '" + s + "' to int");
        return Value(static_cast<int64_t>(r));
      }
      break;
    case DType::kFloat:
      if (from == DType::kInt) return Value(static_cast<double>(v.as_int()));
      if (from == DType::kBool) return Value(v.as_bool() ? 1.0 : 0.0);
      if (from == DType::kString) {
        const std::string s(v.as_string());
        char* end = nullptr;
        double r = std::strtod(s.c_str(), &end);
        if (s.empty() || *end != '\0') throw RuntimeError("cannot cast '" + s + "' to float");
        return Value(r);
      }
      break;
    case DType::kBool:
      if (from == DType::kInt) return Value(v.as_int() != 0);
      if (from == DType::kFloat) return Value(v.as_float() != 0.0);
      if (from == DType::kString) {
        std::string s = lower_ascii(std::string(v.as_string()));
        if (s == "true" || s == "1" || s == "yes" || s == "on") return Value(true);
        if (s == "false" || s == "0" || s == "no" || s == "off") return Value(false);
        throw RuntimeError("cannot cast '" + std::string(v.as_string()) + "' to bool");
      }
      break;
    case DType::kString:
      return Value(v.to_string());
    default:
      break;
  }
  throw RuntimeError(std::string("cannot cast ") + dtype_name(from) + " to " + dtype_name(to));
}

Value cast_kernel(const Call& f, const EvalContext& c) {
  Value tmp;
  return do_cast(f.ref(0, c, tmp), f.cast_to());
}
Type cast_type(const ArgTypes& a) {
  if (!castable(a[0].base, a.cast_to()))
    a.fail(std::string("cast() cannot convert ") + a[0].to_string() + " to " + dtype_name(a.cast_to()));
  return {a.cast_to(), a[0].optional};
}

// -- Tuples. get(t, i): element i (negative counts from the end), None when out of range or
// when an argument is None.

Value tuple_kernel(const Call& f, const EvalContext& c) {
  std::vector<Value> items;
  items.reserve(f.size());
  for (size_t i = 0; i < f.size(); ++i) items.push_back(f.arg(i, c));
  return Value::tuple(std::move(items));
}
Type tuple_type(const ArgTypes&) { return {DType::kTuple, false}; }

Value get_kernel(const Call& f, const EvalContext& c) {
  Value ta, tb;
  const Value& a = f.ref(0, c, ta);
  const Value& b = f.ref(1, c, tb);
  if (a.is_none() || b.is_none()) return Value();
  if (a.type() != DType::kTuple) wrong_arg(f, "tuple", a);
  const auto& t = a.as_tuple();
  int64_t i = need_int(f, b);
  if (i < 0) i += static_cast<int64_t>(t.size());
  if (i < 0 || i >= static_cast<int64_t>(t.size())) return Value();
  return t[static_cast<size_t>(i)];
}
Type get_type(const ArgTypes& a) {
  a.expect(0, {DType::kTuple});
  a.expect(1, {DType::kInt});
  return {DType::kAny, true};
}

// -- Strings (bytes of UTF-8: lower/upper change ASCII letters only; len and slice count
// bytes). None in any argument gives None, except slice, whose None bounds mean "from the
// start" / "to the end" as in Python.

Type str_args_type(const ArgTypes& a, DType result, bool optional) {
  for (size_t i = 0; i < a.size(); ++i) a.expect(i, {DType::kString});
  return {result, optional};
}
Type str_to_str_type(const ArgTypes& a) { return str_args_type(a, DType::kString, a.any_optional()); }
Type str_to_bool_type(const ArgTypes& a) { return str_args_type(a, DType::kBool, a.any_optional()); }

Value lower_kernel(const Call& f, const EvalContext& c) {
  Value tmp;
  const Value& a = f.ref(0, c, tmp);
  return a.is_none() ? Value() : Value(lower_ascii(std::string(need_str(f, a))));
}
Value upper_kernel(const Call& f, const EvalContext& c) {
  Value tmp;
  const Value& a = f.ref(0, c, tmp);
  return a.is_none() ? Value() : Value(upper_ascii(std::string(need_str(f, a))));
}

Value strip_kernel(const Call& f, const EvalContext& c) {
  Value tmp;
  const Value& a = f.ref(0, c, tmp);
  if (a.is_none()) return Value();
  const std::string_view s = need_str(f, a);
  size_t b = s.find_first_not_of(" \t\r\n\f\v");
  if (b == std::string::npos) return Value(std::string());
  size_t e = s.find_last_not_of(" \t\r\n\f\v");
  return Value(s.substr(b, e - b + 1));
}

Value len_kernel(const Call& f, const EvalContext& c) {
  Value tmp;
  const Value& a = f.ref(0, c, tmp);
  switch (a.type()) {
    case DType::kNone: return Value();
    case DType::kString: return Value(static_cast<int64_t>(a.as_string().size()));
    case DType::kBytes: return Value(static_cast<int64_t>(a.as_bytes().size()));
    case DType::kTuple: return Value(static_cast<int64_t>(a.as_tuple().size()));
    default: wrong_arg(f, "str, bytes or tuple", a);
  }
}
Type len_type(const ArgTypes& a) {
  a.expect(0, {DType::kString, DType::kBytes, DType::kTuple});
  return {DType::kInt, a.any_optional()};
}

// Two string arguments (s, other), both non-None: pred(s, other).
template <bool (*pred)(std::string_view, std::string_view)>
Value str_pred_kernel(const Call& f, const EvalContext& c) {
  Value ta, tb;
  const Value& a = f.ref(0, c, ta);
  const Value& b = f.ref(1, c, tb);
  if (a.is_none() || b.is_none()) return Value();
  return Value(pred(need_str(f, a), need_str(f, b)));
}
bool contains_pred(std::string_view s, std::string_view n) { return s.find(n) != std::string::npos; }
bool startswith_pred(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.compare(0, p.size(), p) == 0;
}
bool endswith_pred(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

Value replace_kernel(const Call& f, const EvalContext& c) {
  Value ta, tb, tc;
  const Value& a = f.ref(0, c, ta);
  const Value& b = f.ref(1, c, tb);
  const Value& d = f.ref(2, c, tc);
  if (a.is_none() || b.is_none() || d.is_none()) return Value();
  const std::string_view s = need_str(f, a);
  const std::string_view from = need_str(f, b);
  const std::string_view to = need_str(f, d);
  if (from.empty()) return a;
  std::string out;
  size_t i = 0;
  for (;;) {
    size_t j = s.find(from, i);
    if (j == std::string::npos) break;
    out.append(s, i, j - i);
    out += to;
    i = j + from.size();
  }
  out.append(s, i, std::string::npos);
  return Value(std::move(out));
}

// split(s): on runs of ASCII whitespace, no empty parts; split(s, sep): on every sep (empty
// parts kept; an empty sep is a RuntimeError).
Value split_kernel(const Call& f, const EvalContext& c) {
  Value ta, tb;
  const Value& a = f.ref(0, c, ta);
  if (a.is_none()) return Value();
  const std::string_view s = need_str(f, a);
  std::vector<Value> parts;
  if (f.size() == 1) {
    // ASCII whitespace, as isspace() in the C locale, without a call per byte.
    auto space = [](char ch) { return ch == ' ' || (ch >= '\t' && ch <= '\r'); };
    size_t i = 0, n = s.size();
    parts.reserve(std::min<size_t>(n / 2 + 1, 16));
    while (i < n) {
      while (i < n && space(s[i])) ++i;
      size_t j = i;
      while (j < n && !space(s[j])) ++j;
      if (j > i) parts.emplace_back(std::string_view(s).substr(i, j - i));
      i = j;
    }
    return Value::tuple(std::move(parts));
  }
  const Value& b = f.ref(1, c, tb);
  if (b.is_none()) return Value();
  const std::string_view sep = need_str(f, b);
  if (sep.empty()) throw RuntimeError("split(): empty separator");
  size_t i = 0;
  for (;;) {
    size_t j = s.find(sep, i);
    if (j == std::string::npos) {
      parts.emplace_back(std::string_view(s).substr(i));
      break;
    }
    parts.emplace_back(std::string_view(s).substr(i, j - i));
    i = j + sep.size();
  }
  return Value::tuple(std::move(parts));
}
Type split_type(const ArgTypes& a) {
  for (size_t i = 0; i < a.size(); ++i) a.expect(i, {DType::kString});
  return {DType::kTuple, a.any_optional()};
}

// slice(s, start, end): bytes [start, end) with Python's clamping of negative and
// out-of-range bounds.
Value slice_kernel(const Call& f, const EvalContext& c) {
  Value ta, tb, tc;
  const Value& a = f.ref(0, c, ta);
  if (a.is_none()) return Value();
  const std::string_view s = need_str(f, a);
  int64_t n = static_cast<int64_t>(s.size());
  const Value& b = f.ref(1, c, tb);
  const Value& e = f.ref(2, c, tc);
  int64_t from = b.is_none() ? 0 : need_int(f, b);
  int64_t to = e.is_none() ? n : need_int(f, e);
  if (from < 0) from = std::max<int64_t>(0, from + n);
  if (to < 0) to = std::max<int64_t>(0, to + n);
  from = std::min(from, n);
  to = std::min(to, n);
  if (to <= from) return Value(std::string());
  return Value(s.substr(static_cast<size_t>(from), static_cast<size_t>(to - from)));
}
Type slice_type(const ArgTypes& a) {
  a.expect(0, {DType::kString});
  a.expect(1, {DType::kInt});
  a.expect(2, {DType::kInt});
  return {DType::kString, a[0].optional};
}

const Function kFunctions[] = {
    {"+", 2, 2, arith_type<Arith::kAdd>, arith_kernel<Arith::kAdd>},
    {"-", 2, 2, arith_type<Arith::kSub>, arith_kernel<Arith::kSub>},
    {"*", 2, 2, arith_type<Arith::kMul>, arith_kernel<Arith::kMul>},
    {"/", 2, 2, arith_type<Arith::kDiv>, arith_kernel<Arith::kDiv>},
    {"%", 2, 2, arith_type<Arith::kMod>, arith_kernel<Arith::kMod>},
    {"//", 2, 2, arith_type<Arith::kFloorDiv>, arith_kernel<Arith::kFloorDiv>},
    {"neg", 1, 1, neg_type, neg_kernel},
    {"==", 2, 2, equality_type, compare_kernel<Cmp::kEq>},
    {"!=", 2, 2, equality_type, compare_kernel<Cmp::kNe>},
    {"<", 2, 2, order_type, compare_kernel<Cmp::kLt>},
    {"<=", 2, 2, order_type, compare_kernel<Cmp::kLe>},
    {">", 2, 2, order_type, compare_kernel<Cmp::kGt>},
    {">=", 2, 2, order_type, compare_kernel<Cmp::kGe>},
    {"and", 2, 2, bool_args_type, and_kernel},
    {"or", 2, 2, bool_args_type, or_kernel},
    {"not", 1, 1, bool_args_type, not_kernel},
    {"if_else", 3, 3, if_else_type, if_else_kernel},
    {"coalesce", 1, kVariadic, coalesce_type, coalesce_kernel},
    {"is_none", 1, 1, bool_result_type, is_none_kernel},
    {"is_not_none", 1, 1, bool_result_type, is_not_none_kernel},
    {"cast", 1, 1, cast_type, cast_kernel},
    {"tuple", 1, kVariadic, tuple_type, tuple_kernel},
    {"get", 2, 2, get_type, get_kernel},
    {"lower", 1, 1, str_to_str_type, lower_kernel},
    {"upper", 1, 1, str_to_str_type, upper_kernel},
    {"len", 1, 1, len_type, len_kernel},
    {"strip", 1, 1, str_to_str_type, strip_kernel},
    {"contains", 2, 2, str_to_bool_type, str_pred_kernel<contains_pred>},
    {"startswith", 2, 2, str_to_bool_type, str_pred_kernel<startswith_pred>},
    {"endswith", 2, 2, str_to_bool_type, str_pred_kernel<endswith_pred>},
    {"replace", 3, 3, str_to_str_type, replace_kernel},
    {"split", 1, 2, split_type, split_kernel},
    {"slice", 3, 3, slice_type, slice_kernel},
};

const Function* find_function(const std::string& name) {
  for (const auto& f : kFunctions)
    if (name == f.name) return &f;
  return nullptr;
}

std::string arity_text(const Function& f) {
  if (f.max_args == kVariadic) return "at least " + std::to_string(f.min_args) + " argument(s)";
  if (f.min_args == f.max_args) return std::to_string(f.min_args) + " argument(s)";
  return std::to_string(f.min_args) + " to " + std::to_string(f.max_args) + " arguments";
}

const std::vector<std::string> kReducerNames = {"count", "sum", "min", "max", "avg", "count_distinct",
                                                "any", "earliest", "latest", "tuple", "sorted_tuple"};

Type reducer_type(const std::string& name, const Type& arg) {
  if (name == "count" || name == "count_distinct") return {DType::kInt, false};
  if (name == "avg") return {DType::kFloat, arg.optional};
  if (name == "tuple" || name == "sorted_tuple") return {DType::kTuple, false};
  return arg;
}

}  // namespace

CompiledExprPtr compile(const Expr& e, CompileScope& s) {
  const ExprNode& n = *e.node();
  switch (n.kind) {
    case ExprKind::kLiteral:
      return std::make_unique<LiteralExpr>(n.literal);
    case ExprKind::kColumn: {
      auto lookup = [&](const Schema* sch, size_t offset, const char* what) -> CompiledExprPtr {
        auto i = sch->find(n.name);
        if (!i) graph_error(s, std::string("unknown column '") + n.name + "'" + what + " (available: " + sch->names() + ")");
        return std::make_unique<ColumnExpr>(*i + offset, (*sch)[*i].type);
      };
      if (s.left) {
        if (n.side == Side::kLeft) return lookup(s.left, 0, " in the left table");
        if (n.side == Side::kRight) return lookup(s.right, s.left_size, " in the right table");
        auto li = s.left->find(n.name), ri = s.right->find(n.name);
        if (li && ri) graph_error(s, "column '" + n.name + "' is ambiguous: use left(\"" + n.name + "\") or right(\"" + n.name + "\")");
        if (li) return lookup(s.left, 0, "");
        if (ri) return lookup(s.right, s.left_size, "");
        graph_error(s, "unknown column '" + n.name + "' (left: " + s.left->names() + "; right: " + s.right->names() + ")");
      }
      if (n.side != Side::kThis) graph_error(s, "left()/right() column '" + n.name + "' used outside a join");
      if (s.reducers && s.reducer_arg_schema && !s.schema->find(n.name) && s.reducer_arg_schema->find(n.name))
        graph_error(s, "column '" + n.name + "' is not a grouping column; use it inside a reducer (grouping columns: " +
                           (s.schema->size() ? s.schema->names() : std::string("none")) + ")");
      return lookup(s.schema, 0, "");
    }
    case ExprKind::kId:
      return std::make_unique<KeyExpr>(ExprKind::kId);
    case ExprKind::kLeftId:
    case ExprKind::kRightId:
      if (!s.left) graph_error(s, "left_id()/right_id() used outside a join");
      return std::make_unique<KeyExpr>(n.kind);
    case ExprKind::kApply: {
      std::vector<CompiledExprPtr> args;
      for (const auto& a : n.args) args.push_back(compile(a, s));
      if (!n.deterministic) s.saw_nondeterministic = true;
      if (!n.fn) graph_error(s, "apply() without a function");
      if (n.cache)
        return std::make_unique<ApplyExpr>(n.fn, std::move(args), n.result_type, cache_in_graph(s, n.cache), n.thread_safe);
      return std::make_unique<ApplyExpr>(n.fn, std::move(args), n.result_type, nullptr, n.thread_safe);
    }
    case ExprKind::kReducer: {
      if (!s.reducers) graph_error(s, "reducer " + n.name + "() used outside reduce()");
      if (std::find(kReducerNames.begin(), kReducerNames.end(), n.name) == kReducerNames.end())
        graph_error(s, "unknown reducer '" + n.name + "'");
      ReducerSpec spec;
      spec.name = n.name;
      Type arg_type{DType::kInt, false};
      if (!n.args.empty()) {
        auto* saved = s.reducers;
        const Schema* saved_schema = s.schema;
        s.reducers = nullptr;  // no nested reducers
        if (s.reducer_arg_schema) s.schema = s.reducer_arg_schema;
        spec.arg = compile(n.args[0], s);
        s.reducers = saved;
        s.schema = saved_schema;
        arg_type = spec.arg->type;
      }
      if ((n.name == "sum" || n.name == "avg") && !is_num(arg_type.base) && arg_type.base != DType::kAny &&
          arg_type.base != DType::kDuration)
        graph_error(s, "reducer " + n.name + "() needs a number, got " + arg_type.to_string());
      spec.result_type = reducer_type(n.name, arg_type);
      Type rt = spec.result_type;
      size_t slot = s.first_reducer_slot + s.reducers->size();
      s.reducers->push_back(std::move(spec));
      return std::make_unique<ColumnExpr>(slot, rt);
    }
    case ExprKind::kOp: {
      const Function* fn = find_function(n.name);
      if (!fn) graph_error(s, "unknown function '" + n.name + "'");
      int na = static_cast<int>(n.args.size());
      if (na < fn->min_args || (fn->max_args != kVariadic && na > fn->max_args))
        graph_error(s, n.name + "() takes " + arity_text(*fn) + ", got " + std::to_string(na));
      std::vector<CompiledExprPtr> args;
      for (const auto& a : n.args) args.push_back(compile(a, s));
      Type t = fn->type(ArgTypes(s, n.name, args, n.cast_to));
      return std::make_unique<Call>(fn, std::move(args), n.cast_to, t);
    }
  }
  graph_error(s, "internal: unknown expression kind");
}

bool is_plain_column(const Expr& e, std::string* name) {
  const ExprNode& n = *e.node();
  if (n.kind != ExprKind::kColumn) return false;
  if (name) *name = n.name;
  return true;
}

}  // namespace internal
}  // namespace tidemark
