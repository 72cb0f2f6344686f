// Expression builders, type checking and the interpreter.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

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
            std::shared_ptr<engine::UdfCacheState> cache = nullptr)
      : fn_(std::move(fn)), args_(std::move(args)), cache_(std::move(cache)) {
    type = t;
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

enum class Op {
  kAdd, kSub, kMul, kDiv, kMod, kFloorDiv, kNeg, kEq, kNe, kLt, kLe, kGt, kGe, kAnd, kOr, kNot,
  kIfElse, kCoalesce, kIsNone, kIsNotNone, kCast, kTuple, kGet, kLower, kUpper, kLen, kStrip,
  kContains, kStartsWith, kEndsWith, kReplace, kSplit, kSlice,
};

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}
int64_t floor_mod(int64_t a, int64_t b) {
  int64_t m = a % b;
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

Value arith(Op op, const Value& a, const Value& b) {
  if (a.is_none() || b.is_none()) return Value();
  DType ta = a.type(), tb = b.type();
  if (ta == DType::kInt && tb == DType::kInt) {
    int64_t x = a.as_int(), y = b.as_int();
    switch (op) {
      case Op::kAdd: return Value(x + y);
      case Op::kSub: return Value(x - y);
      case Op::kMul: return Value(x * y);
      case Op::kDiv:
        if (y == 0) throw RuntimeError("division by zero");
        return Value(static_cast<double>(x) / static_cast<double>(y));
      case Op::kFloorDiv:
        if (y == 0) throw RuntimeError("division by zero");
        return Value(floor_div(x, y));
      case Op::kMod:
        if (y == 0) throw RuntimeError("modulo by zero");
        return Value(floor_mod(x, y));
      default: break;
    }
  }
  if (is_num(ta) && is_num(tb)) {
    double x = a.as_number(), y = b.as_number();
    switch (op) {
      case Op::kAdd: return Value(x + y);
      case Op::kSub: return Value(x - y);
      case Op::kMul: return Value(x * y);
      case Op::kDiv:
        if (y == 0) throw RuntimeError("division by zero");
        return Value(x / y);
      case Op::kFloorDiv:
        if (y == 0) throw RuntimeError("division by zero");
        return Value(std::floor(x / y));
      case Op::kMod:
        if (y == 0) throw RuntimeError("modulo by zero");
        return Value(x - std::floor(x / y) * y);
      default: break;
    }
  }
  if (op == Op::kAdd && ta == DType::kString && tb == DType::kString) return Value(a.as_string() + b.as_string());
  auto ns = [](const Value& v) -> int64_t {
    switch (v.type()) {
      case DType::kDateTimeNaive: return v.as_datetime_naive();
      case DType::kDateTimeUtc: return v.as_datetime_utc();
      case DType::kDuration: return v.as_duration();
      default: return 0;
    }
  };
  auto with_ns = [](DType t, int64_t n) -> Value {
    if (t == DType::kDateTimeNaive) return Value(DateTimeNaive{n});
    if (t == DType::kDateTimeUtc) return Value(DateTimeUtc{n});
    return Value(Duration{n});
  };
  bool dta = ta == DType::kDateTimeNaive || ta == DType::kDateTimeUtc;
  if (dta && tb == DType::kDuration && (op == Op::kAdd || op == Op::kSub))
    return with_ns(ta, op == Op::kAdd ? ns(a) + ns(b) : ns(a) - ns(b));
  if (dta && ta == tb && op == Op::kSub) return Value(Duration{ns(a) - ns(b)});
  if (ta == DType::kDuration && tb == DType::kDuration) {
    if (op == Op::kAdd) return Value(Duration{ns(a) + ns(b)});
    if (op == Op::kSub) return Value(Duration{ns(a) - ns(b)});
    if (op == Op::kFloorDiv && ns(b) != 0) return Value(floor_div(ns(a), ns(b)));
    if (op == Op::kMod && ns(b) != 0) return Value(Duration{floor_mod(ns(a), ns(b))});
  }
  if (ta == DType::kDuration && tb == DType::kInt && op == Op::kMul) return Value(Duration{ns(a) * b.as_int()});
  if (ta == DType::kInt && tb == DType::kDuration && op == Op::kMul) return Value(Duration{ns(b) * a.as_int()});
  throw RuntimeError(std::string("unsupported operand types ") + dtype_name(ta) + " and " + dtype_name(tb));
}

bool truthy(const Value& v) { return !v.is_none() && v.type() == DType::kBool && v.as_bool(); }

Value compare(Op op, const Value& a, const Value& b) {
  if (op == Op::kEq || op == Op::kNe) {
    bool eq;
    if (is_num(a.type()) && is_num(b.type()) && a.type() != b.type()) eq = a.as_number() == b.as_number();
    else eq = a == b;
    return Value(op == Op::kEq ? eq : !eq);
  }
  if (a.is_none() || b.is_none()) return Value();
  std::partial_ordering c = std::partial_ordering::equivalent;
  if (is_num(a.type()) && is_num(b.type()) && a.type() != b.type()) c = a.as_number() <=> b.as_number();
  else c = a <=> b;
  switch (op) {
    case Op::kLt: return Value(c < 0);
    case Op::kLe: return Value(c <= 0);
    case Op::kGt: return Value(c > 0);
    case Op::kGe: return Value(c >= 0);
    default: return Value();
  }
}

std::string lower_ascii(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}
std::string upper_ascii(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return s;
}

Value do_cast(const Value& v, DType to) {
  if (v.is_none()) return v;
  DType from = v.type();
  if (from == to) return v;
  switch (to) {
    case DType::kInt:
      if (from == DType::kFloat) return Value(static_cast<int64_t>(v.as_float()));
      if (from == DType::kBool) return Value(static_cast<int64_t>(v.as_bool()));
      if (from == DType::kString) {
        const std::string& s = v.as_string();
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
        const std::string& s = v.as_string();
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
        std::string s = lower_ascii(v.as_string());
        if (s == "true" || s == "1" || s == "yes" || s == "on") return Value(true);
        if (s == "false" || s == "0" || s == "no" || s == "off") return Value(false);
        throw RuntimeError("cannot cast '" + v.as_string() + "' to bool");
      }
      break;
    case DType::kString:
      return Value(v.to_string());
    default:
      break;
  }
  throw RuntimeError(std::string("cannot cast ") + dtype_name(from) + " to " + dtype_name(to));
}

const std::string& need_str(const Value& v, const char* fn) {
  if (v.type() != DType::kString) throw RuntimeError(std::string(fn) + "() expects str, got " + dtype_name(v.type()));
  return v.as_string();
}

int64_t need_int(const Value& v, const char* fn) {
  if (v.type() != DType::kInt) throw RuntimeError(std::string(fn) + "() expects int, got " + dtype_name(v.type()));
  return v.as_int();
}

class OpExpr final : public CompiledExpr {
 public:
  OpExpr(Op op, std::vector<CompiledExprPtr> args, DType cast_to, Type t)
      : op_(op), args_(std::move(args)), cast_to_(cast_to) {
    type = t;
  }

  Value eval(const EvalContext& c) const override {
    switch (op_) {
      case Op::kAnd: {
        Value a = args_[0]->eval(c);
        if (!a.is_none() && !truthy(a)) return Value(false);
        Value b = args_[1]->eval(c);
        if (a.is_none() || b.is_none()) return b.is_none() || truthy(b) ? Value() : Value(false);
        return Value(truthy(b));
      }
      case Op::kOr: {
        Value a = args_[0]->eval(c);
        if (truthy(a)) return Value(true);
        Value b = args_[1]->eval(c);
        if (truthy(b)) return Value(true);
        if (a.is_none() || b.is_none()) return Value();
        return Value(false);
      }
      case Op::kIfElse: {
        Value cond = args_[0]->eval(c);
        return truthy(cond) ? args_[1]->eval(c) : args_[2]->eval(c);
      }
      case Op::kCoalesce:
        for (const auto& a : args_) {
          Value v = a->eval(c);
          if (!v.is_none()) return v;
        }
        return Value();
      default:
        break;
    }
    // The first argument by reference when it is a column (no copy of a string cell).
    Value a_value;
    int ai = args_[0]->column_index();
    if (ai < 0) a_value = args_[0]->eval(c);
    const Value& a = ai >= 0 ? c.cols[ai] : a_value;
    switch (op_) {
      case Op::kNeg:
        if (a.is_none()) return a;
        if (a.type() == DType::kInt) return Value(-a.as_int());
        if (a.type() == DType::kFloat) return Value(-a.as_float());
        if (a.type() == DType::kDuration) return Value(Duration{-a.as_duration()});
        throw RuntimeError(std::string("cannot negate ") + dtype_name(a.type()));
      case Op::kNot:
        if (a.is_none()) return a;
        return Value(!truthy(a));
      case Op::kIsNone: return Value(a.is_none());
      case Op::kIsNotNone: return Value(!a.is_none());
      case Op::kCast: return do_cast(a, cast_to_);
      case Op::kTuple: {
        std::vector<Value> items;
        items.push_back(a);
        for (size_t i = 1; i < args_.size(); ++i) items.push_back(args_[i]->eval(c));
        return Value::tuple(std::move(items));
      }
      case Op::kLower: return a.is_none() ? a : Value(lower_ascii(need_str(a, "lower")));
      case Op::kUpper: return a.is_none() ? a : Value(upper_ascii(need_str(a, "upper")));
      case Op::kLen:
        if (a.is_none()) return a;
        if (a.type() == DType::kTuple) return Value(static_cast<int64_t>(a.as_tuple().size()));
        if (a.type() == DType::kBytes) return Value(static_cast<int64_t>(a.as_bytes().size()));
        return Value(static_cast<int64_t>(need_str(a, "len").size()));
      case Op::kStrip: {
        if (a.is_none()) return a;
        const std::string& s = need_str(a, "strip");
        size_t b = s.find_first_not_of(" \t\r\n\f\v");
        if (b == std::string::npos) return Value(std::string());
        size_t e = s.find_last_not_of(" \t\r\n\f\v");
        return Value(s.substr(b, e - b + 1));
      }
      case Op::kSplit: {
        if (a.is_none()) return a;
        const std::string& s = need_str(a, "split");
        std::vector<Value> parts;
        if (args_.size() == 1) {
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
        } else {
          Value sep_value = args_[1]->eval(c);  // need_str returns a reference into it
          const std::string& sep = need_str(sep_value, "split");
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
        }
        return Value::tuple(std::move(parts));
      }
      default:
        break;
    }
    Value b = args_[1]->eval(c);
    switch (op_) {
      case Op::kAdd: case Op::kSub: case Op::kMul: case Op::kDiv: case Op::kMod: case Op::kFloorDiv:
        return arith(op_, a, b);
      case Op::kEq: case Op::kNe: case Op::kLt: case Op::kLe: case Op::kGt: case Op::kGe:
        return compare(op_, a, b);
      case Op::kGet: {
        if (a.is_none() || b.is_none()) return Value();
        if (a.type() != DType::kTuple || b.type() != DType::kInt) throw RuntimeError("get() expects (tuple, int)");
        const auto& t = a.as_tuple();
        int64_t i = b.as_int();
        if (i < 0) i += static_cast<int64_t>(t.size());
        if (i < 0 || i >= static_cast<int64_t>(t.size())) return Value();
        return t[static_cast<size_t>(i)];
      }
      case Op::kContains:
        if (a.is_none() || b.is_none()) return Value();
        return Value(need_str(a, "contains").find(need_str(b, "contains")) != std::string::npos);
      case Op::kStartsWith: {
        if (a.is_none() || b.is_none()) return Value();
        const std::string& s = need_str(a, "startswith");
        const std::string& p = need_str(b, "startswith");
        return Value(s.compare(0, p.size(), p) == 0 && s.size() >= p.size());
      }
      case Op::kEndsWith: {
        if (a.is_none() || b.is_none()) return Value();
        const std::string& s = need_str(a, "endswith");
        const std::string& p = need_str(b, "endswith");
        return Value(s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0);
      }
      case Op::kReplace: {
        if (a.is_none()) return a;
        std::string s = need_str(a, "replace");
        const std::string& from = need_str(b, "replace");
        std::string to = need_str(args_[2]->eval(c), "replace");
        if (from.empty()) return Value(s);
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
      case Op::kSlice: {
        if (a.is_none()) return a;
        const std::string& s = need_str(a, "slice");
        int64_t n = static_cast<int64_t>(s.size());
        Value e = args_[2]->eval(c);
        int64_t from = b.is_none() ? 0 : need_int(b, "slice");
        int64_t to = e.is_none() ? n : need_int(e, "slice");
        if (from < 0) from = std::max<int64_t>(0, from + n);
        if (to < 0) to = std::max<int64_t>(0, to + n);
        from = std::min(from, n);
        to = std::min(to, n);
        if (to <= from) return Value(std::string());
        return Value(s.substr(static_cast<size_t>(from), static_cast<size_t>(to - from)));
      }
      default:
        break;
    }
    throw RuntimeError("internal: unhandled operator");
  }

 private:
  Op op_;
  std::vector<CompiledExprPtr> args_;
  DType cast_to_;
};

struct OpInfo {
  const char* name;
  Op op;
  int min_args;
  int max_args;
};
const OpInfo kOps[] = {
    {"+", Op::kAdd, 2, 2}, {"-", Op::kSub, 2, 2}, {"*", Op::kMul, 2, 2}, {"/", Op::kDiv, 2, 2},
    {"%", Op::kMod, 2, 2}, {"//", Op::kFloorDiv, 2, 2}, {"neg", Op::kNeg, 1, 1}, {"==", Op::kEq, 2, 2},
    {"!=", Op::kNe, 2, 2}, {"<", Op::kLt, 2, 2}, {"<=", Op::kLe, 2, 2}, {">", Op::kGt, 2, 2},
    {">=", Op::kGe, 2, 2}, {"and", Op::kAnd, 2, 2}, {"or", Op::kOr, 2, 2}, {"not", Op::kNot, 1, 1},
    {"if_else", Op::kIfElse, 3, 3}, {"coalesce", Op::kCoalesce, 1, 1000}, {"is_none", Op::kIsNone, 1, 1},
    {"is_not_none", Op::kIsNotNone, 1, 1}, {"cast", Op::kCast, 1, 1}, {"tuple", Op::kTuple, 1, 1000},
    {"get", Op::kGet, 2, 2}, {"lower", Op::kLower, 1, 1}, {"upper", Op::kUpper, 1, 1}, {"len", Op::kLen, 1, 1},
    {"strip", Op::kStrip, 1, 1}, {"contains", Op::kContains, 2, 2}, {"startswith", Op::kStartsWith, 2, 2},
    {"endswith", Op::kEndsWith, 2, 2}, {"replace", Op::kReplace, 3, 3}, {"split", Op::kSplit, 1, 2},
    {"slice", Op::kSlice, 3, 3},
};

bool compatible_for_order(DType a, DType b) {
  if (a == DType::kAny || b == DType::kAny || a == DType::kNone || b == DType::kNone) return true;
  if (is_num(a) && is_num(b)) return true;
  return a == b;
}

Type op_type(const CompileScope& s, Op op, const std::vector<CompiledExprPtr>& a, DType cast_to, const std::string& name) {
  auto t = [&](size_t i) { return a[i]->type; };
  bool opt = false;
  for (const auto& x : a) opt = opt || x->type.optional;
  auto expect = [&](size_t i, DType want) {
    DType got = t(i).base;
    if (got != want && got != DType::kAny && got != DType::kNone)
      graph_error(s, name + "() expects " + dtype_name(want) + " for argument " + std::to_string(i + 1) +
                         ", got " + t(i).to_string());
  };
  switch (op) {
    case Op::kAdd: case Op::kSub: case Op::kMul: case Op::kDiv: case Op::kMod: case Op::kFloorDiv: {
      DType x = t(0).base, y = t(1).base;
      if (x == DType::kAny || y == DType::kAny) return {DType::kAny, true};
      if (x == DType::kNone || y == DType::kNone) return {DType::kNone, true};
      if (is_num(x) && is_num(y)) {
        if (op == Op::kDiv) return {DType::kFloat, opt};
        return {x == DType::kInt && y == DType::kInt ? DType::kInt : DType::kFloat, opt};
      }
      if (op == Op::kAdd && x == DType::kString && y == DType::kString) return {DType::kString, opt};
      bool dx = x == DType::kDateTimeNaive || x == DType::kDateTimeUtc;
      if (dx && y == DType::kDuration && (op == Op::kAdd || op == Op::kSub)) return {x, opt};
      if (dx && x == y && op == Op::kSub) return {DType::kDuration, opt};
      if (x == DType::kDuration && y == DType::kDuration && (op == Op::kAdd || op == Op::kSub || op == Op::kMod))
        return {DType::kDuration, opt};
      if (x == DType::kDuration && y == DType::kDuration && op == Op::kFloorDiv) return {DType::kInt, opt};
      if (op == Op::kMul && ((x == DType::kDuration && y == DType::kInt) || (x == DType::kInt && y == DType::kDuration)))
        return {DType::kDuration, opt};
      graph_error(s, "operator " + name + " is not defined for " + t(0).to_string() + " and " + t(1).to_string());
    }
    case Op::kNeg:
      if (!is_num(t(0).base) && t(0).base != DType::kDuration && t(0).base != DType::kAny)
        graph_error(s, "cannot negate " + t(0).to_string());
      return t(0);
    case Op::kEq: case Op::kNe: return {DType::kBool, false};
    case Op::kLt: case Op::kLe: case Op::kGt: case Op::kGe:
      if (!compatible_for_order(t(0).base, t(1).base))
        graph_error(s, "cannot compare " + t(0).to_string() + " with " + t(1).to_string());
      return {DType::kBool, opt};
    case Op::kAnd: case Op::kOr: case Op::kNot:
      for (size_t i = 0; i < a.size(); ++i) expect(i, DType::kBool);
      return {DType::kBool, opt};
    case Op::kIfElse:
      expect(0, DType::kBool);
      return unify(t(1), t(2));
    case Op::kCoalesce: {
      Type r = t(0);
      bool all_opt = true;
      for (size_t i = 0; i < a.size(); ++i) {
        if (i) r = unify(r, t(i));
        all_opt = all_opt && t(i).optional;
      }
      r.optional = all_opt;
      return r;
    }
    case Op::kIsNone: case Op::kIsNotNone: return {DType::kBool, false};
    case Op::kCast: return {cast_to, t(0).optional};
    case Op::kTuple: return {DType::kTuple, false};
    case Op::kGet: return {DType::kAny, true};
    case Op::kLower: case Op::kUpper: case Op::kStrip:
      expect(0, DType::kString);
      return {DType::kString, opt};
    case Op::kLen: return {DType::kInt, opt};
    case Op::kContains: case Op::kStartsWith: case Op::kEndsWith:
      expect(0, DType::kString);
      expect(1, DType::kString);
      return {DType::kBool, opt};
    case Op::kReplace:
      for (size_t i = 0; i < 3; ++i) expect(i, DType::kString);
      return {DType::kString, opt};
    case Op::kSplit:
      expect(0, DType::kString);
      return {DType::kTuple, t(0).optional};
    case Op::kSlice:
      expect(0, DType::kString);
      expect(1, DType::kInt);
      expect(2, DType::kInt);
      return {DType::kString, t(0).optional};
  }
  return {DType::kAny, true};
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
      if (n.cache) return std::make_unique<ApplyExpr>(n.fn, std::move(args), n.result_type, cache_in_graph(s, n.cache));
      return std::make_unique<ApplyExpr>(n.fn, std::move(args), n.result_type);
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
      const OpInfo* info = nullptr;
      for (const auto& o : kOps)
        if (n.name == o.name) info = &o;
      if (!info) graph_error(s, "unknown function '" + n.name + "'");
      int na = static_cast<int>(n.args.size());
      if (na < info->min_args || na > info->max_args)
        graph_error(s, n.name + "() takes " + std::to_string(info->min_args) + " argument(s), got " + std::to_string(na));
      std::vector<CompiledExprPtr> args;
      for (const auto& a : n.args) args.push_back(compile(a, s));
      Type t = op_type(s, info->op, args, n.cast_to, n.name);
      return std::make_unique<OpExpr>(info->op, std::move(args), n.cast_to, t);
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
