// The expression language (src/engine/expr.cc): every function's results, None propagation,
// type errors at graph-build time, arithmetic edge cases, string functions on empty and UTF-8
// input, and describe() texts (part of persisted operator signatures: they must not change).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "engine/expr_internal.h"
#include "harness.h"

namespace tidemark::testing {
namespace {

using internal::CompiledExprPtr;
using internal::CompileScope;
using internal::EvalContext;

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

// The columns every test expression may use, and one row of values for them.
const Schema& schema() {
  static const Schema s{{"i", t_int()},         {"j", t_int()},          {"f", t_float()},
                        {"s", t_str()},         {"b", t_bool()},         {"t", t_tuple()},
                        {"d", t_duration()},    {"dt", t_datetime_naive()}, {"by", t_bytes()},
                        {"oi", optional(t_int())}, {"os", optional(t_str())}, {"a", t_any()}};
  return s;
}
Row row() {
  return {Value(7),          Value(-2),          Value(2.5),        Value("Hello World"),
          Value(true),       Value::tuple({Value(1), Value("x"), Value(3.5)}),
          Value(Duration{90}), Value(DateTimeNaive{1000}), Value::bytes(std::string("ab\0c", 4)),
          Value(),           Value(),            Value("any")};
}

CompiledExprPtr compile(const Expr& e) {
  CompileScope scope;
  scope.op = "test";
  scope.schema = &schema();
  return internal::compile(e, scope);
}

Value eval(const Expr& e, const Row& r = row()) {
  CompiledExprPtr c = compile(e);
  Key k{1, 2};
  EvalContext ctx{r.data(), &k};
  return c->eval(ctx);
}

Type type_of(const Expr& e) { return compile(e)->type; }

// The GraphError message of compiling `e`, or "" when it compiles.
std::string build_error(const Expr& e) {
  try {
    compile(e);
  } catch (const GraphError& err) {
    return err.what();
  }
  return "";
}

// The RuntimeError message of evaluating `e` on `r`, or "" when it evaluates.
std::string run_error(const Expr& e, const Row& r = row()) {
  CompiledExprPtr c = compile(e);
  Key k{1, 2};
  EvalContext ctx{r.data(), &k};
  try {
    c->eval(ctx);
  } catch (const engine::RuntimeError& err) {
    return err.what();
  }
  return "";
}

// `v` with the expected type and value (exact: Value equality, plus the type tag).
#define EXPECT_VALUE(expr, want)                                        \
  do {                                                                  \
    Value got_ = eval(expr);                                            \
    Value want_ = (want);                                               \
    EXPECT_EQ(got_.type(), want_.type()) << got_.to_string();           \
    EXPECT_TRUE(got_ == want_) << got_.to_string() << " != " << want_.to_string(); \
  } while (0)

#define EXPECT_NONE(expr) EXPECT_TRUE(eval(expr).is_none()) << eval(expr).to_string()

#define EXPECT_BUILD_ERROR(expr, fragment)                                    \
  do {                                                                        \
    std::string err_ = build_error(expr);                                     \
    EXPECT_NE(err_.find(fragment), std::string::npos) << "error: '" << err_ << "'"; \
  } while (0)

Value tup(std::vector<Value> v) { return Value::tuple(std::move(v)); }

// ---- References and literals ----

TEST(Expr, ColumnsLiteralsAndKeys) {
  EXPECT_VALUE(col("i"), Value(7));
  EXPECT_VALUE(col("s"), Value("Hello World"));
  EXPECT_VALUE(lit(Value(1.5)), Value(1.5));
  EXPECT_NONE(lit(Value()));
  EXPECT_VALUE(id(), Value(Key{1, 2}));
  EXPECT_EQ(type_of(col("oi")), optional(t_int()));
  EXPECT_EQ(type_of(lit(Value())), (Type{DType::kNone, true}));
  EXPECT_EQ(type_of(id()), t_pointer());
  EXPECT_BUILD_ERROR(col("nope"), "unknown column 'nope'");
  EXPECT_BUILD_ERROR(left("i"), "outside a join");
  EXPECT_BUILD_ERROR(left_id(), "outside a join");
}

TEST(Expr, UnknownFunctionsAndArity) {
  internal::ExprNode n;
  n.kind = internal::ExprKind::kOp;
  n.name = "frobnicate";
  n.args = {col("i")};
  EXPECT_BUILD_ERROR(Expr(std::make_shared<const internal::ExprNode>(n)), "unknown function 'frobnicate'");
  n.name = "lower";
  n.args = {col("s"), col("s")};
  EXPECT_BUILD_ERROR(Expr(std::make_shared<const internal::ExprNode>(n)), "lower() takes 1 argument(s), got 2");
  EXPECT_BUILD_ERROR(make_tuple({}), "tuple() takes at least 1 argument(s), got 0");
  EXPECT_BUILD_ERROR(coalesce({}), "coalesce() takes at least 1 argument(s), got 0");
  n.name = "split";
  n.args = {col("s"), col("s"), col("s")};
  EXPECT_BUILD_ERROR(Expr(std::make_shared<const internal::ExprNode>(n)), "split() takes 1 to 2 arguments, got 3");
}

// ---- Arithmetic ----

TEST(Expr, ArithmeticOnInts) {
  EXPECT_VALUE(col("i") + col("j"), Value(5));
  EXPECT_VALUE(col("i") - col("j"), Value(9));
  EXPECT_VALUE(col("i") * col("j"), Value(-14));
  EXPECT_VALUE(col("i") / 2, Value(3.5));  // `/` gives float, as in Python
  EXPECT_VALUE(col("i") / col("i"), Value(1.0));
  EXPECT_VALUE(-col("i"), Value(-7));
  EXPECT_EQ(type_of(col("i") + col("j")), t_int());
  EXPECT_EQ(type_of(col("i") / col("j")), t_float());
  EXPECT_EQ(type_of(col("i") + col("oi")), optional(t_int()));
}

TEST(Expr, FloorDivisionAndModuloFollowPython) {
  EXPECT_VALUE(floordiv(7, 2), Value(3));
  EXPECT_VALUE(floordiv(-7, 2), Value(-4));
  EXPECT_VALUE(floordiv(7, -2), Value(-4));
  EXPECT_VALUE(floordiv(-7, -2), Value(3));
  EXPECT_VALUE(lit(7) % 3, Value(1));
  EXPECT_VALUE(lit(-7) % 3, Value(2));
  EXPECT_VALUE(lit(7) % -3, Value(-2));
  EXPECT_VALUE(lit(-7) % -3, Value(-1));
  EXPECT_VALUE(lit(-6) % 3, Value(0));
  EXPECT_VALUE(floordiv(-7.0, 2), Value(-4.0));
  EXPECT_VALUE(lit(-7.5) % 2, Value(0.5));
  EXPECT_VALUE(lit(7.5) % -2, Value(-0.5));
}

TEST(Expr, IntOverflowWrapsAround) {
  // As implemented: two's complement wrap-around (no error, no undefined behaviour).
  EXPECT_VALUE(lit(kMax) + 1, Value(kMin));
  EXPECT_VALUE(lit(kMin) - 1, Value(kMax));
  EXPECT_VALUE(lit(kMax) * 2, Value(int64_t{-2}));
  EXPECT_VALUE(-lit(kMin), Value(kMin));
  EXPECT_VALUE(floordiv(kMin, -1), Value(kMin));  // the hardware division would trap
  EXPECT_VALUE(lit(kMin) % -1, Value(0));
  EXPECT_VALUE(floordiv(kMin, 1), Value(kMin));
  EXPECT_VALUE(lit(kMin) % kMax, Value(kMax - 1));
}

TEST(Expr, DivisionByZeroIsARuntimeError) {
  EXPECT_EQ(run_error(col("i") / 0), "division by zero");
  EXPECT_EQ(run_error(floordiv(col("i"), 0)), "division by zero");
  EXPECT_EQ(run_error(col("i") % 0), "modulo by zero");
  EXPECT_EQ(run_error(col("f") / 0.0), "division by zero");
  EXPECT_EQ(run_error(col("f") / -0.0), "division by zero");
  EXPECT_EQ(run_error(floordiv(col("f"), 0)), "division by zero");
  EXPECT_EQ(run_error(col("f") % 0), "modulo by zero");
  EXPECT_EQ(run_error(floordiv(col("d"), lit(Value(Duration{0})))), "division by zero");
  EXPECT_EQ(run_error(col("d") % lit(Value(Duration{0}))), "modulo by zero");
  // None wins over the zero: no error.
  EXPECT_NONE(col("oi") / 0);
}

TEST(Expr, FloatAndIntMix) {
  EXPECT_VALUE(col("i") + col("f"), Value(9.5));
  EXPECT_VALUE(col("f") * 2, Value(5.0));
  EXPECT_VALUE(col("f") - col("i"), Value(-4.5));
  EXPECT_VALUE(floordiv(col("i"), 2.0), Value(3.0));
  EXPECT_EQ(type_of(col("i") + col("f")), t_float());
  EXPECT_EQ(type_of(floordiv(col("i"), col("f"))), t_float());
  EXPECT_VALUE(lit(1) == 1.0, Value(true));
  EXPECT_VALUE(lit(1) != 1.0, Value(false));
  EXPECT_VALUE(lit(2) < 2.5, Value(true));
  EXPECT_VALUE(lit(3.0) >= 3, Value(true));
}

TEST(Expr, NegativeZeroEqualsZero) {
  EXPECT_VALUE(lit(0.0) == -0.0, Value(true));
  EXPECT_VALUE(lit(-0.0) != 0.0, Value(false));
  EXPECT_VALUE(lit(-0.0) == 0, Value(true));
  EXPECT_VALUE(lit(-0.0) < 0.0, Value(false));
  EXPECT_VALUE(lit(-0.0) <= 0.0, Value(true));
  Value negzero = eval(-lit(0.0));
  EXPECT_TRUE(std::signbit(negzero.as_float()));
}

TEST(Expr, TemporalArithmetic) {
  EXPECT_VALUE(col("dt") + col("d"), Value(DateTimeNaive{1090}));
  EXPECT_VALUE(col("dt") - col("d"), Value(DateTimeNaive{910}));
  EXPECT_VALUE(col("dt") - col("dt"), Value(Duration{0}));
  EXPECT_VALUE(col("d") + col("d"), Value(Duration{180}));
  EXPECT_VALUE(col("d") * 2, Value(Duration{180}));
  EXPECT_VALUE(lit(3) * col("d"), Value(Duration{270}));
  EXPECT_VALUE(floordiv(col("d"), lit(Value(Duration{40}))), Value(2));
  EXPECT_VALUE(col("d") % lit(Value(Duration{40})), Value(Duration{10}));
  EXPECT_VALUE(-col("d"), Value(Duration{-90}));
  EXPECT_EQ(type_of(col("dt") - col("dt")), t_duration());
  EXPECT_EQ(type_of(floordiv(col("d"), col("d"))), t_int());
}

TEST(Expr, StringConcatenation) {
  EXPECT_VALUE(col("s") + "!", Value("Hello World!"));
  EXPECT_VALUE(lit("") + "", Value(""));
  EXPECT_VALUE(lit("é") + "ü", Value("éü"));
  EXPECT_EQ(type_of(col("s") + col("os")), optional(t_str()));
}

TEST(Expr, ArithmeticPropagatesNone) {
  for (Expr e : {col("oi") + 1, col("oi") - 1, col("oi") * 1, col("oi") / 1, col("oi") % 1, floordiv(col("oi"), 1),
                 lit(1) + col("oi"), -col("oi"), col("os") + "x"})
    EXPECT_NONE(e);
  EXPECT_EQ(type_of(lit(Value()) + 1), (Type{DType::kNone, true}));
}

TEST(Expr, ArithmeticTypeErrorsAtBuildTime) {
  EXPECT_BUILD_ERROR(col("i") + col("s"), "in test: operator + is not defined for int and str");
  EXPECT_BUILD_ERROR(col("s") - col("s"), "operator - is not defined for str and str");
  EXPECT_BUILD_ERROR(col("s") * 2, "operator * is not defined for str and int");
  EXPECT_BUILD_ERROR(col("b") / 2, "operator / is not defined for bool and int");
  EXPECT_BUILD_ERROR(col("d") * col("f"), "operator * is not defined for duration and float");
  EXPECT_BUILD_ERROR(col("dt") + col("dt"), "operator + is not defined for datetime_naive and datetime_naive");
  EXPECT_BUILD_ERROR(-col("s"), "cannot negate str");
  // Arguments of type any are checked when evaluated.
  EXPECT_EQ(build_error(col("a") + 1), "");
  EXPECT_EQ(type_of(col("a") + 1), t_any());
  EXPECT_EQ(run_error(col("a") + 1), "operator + is not defined for str and int");
  EXPECT_EQ(run_error(-col("a")), "cannot negate str");
}

// ---- Comparisons and logic ----

TEST(Expr, Comparisons) {
  EXPECT_VALUE(col("i") == 7, Value(true));
  EXPECT_VALUE(col("i") != 7, Value(false));
  EXPECT_VALUE(col("i") < col("j"), Value(false));
  EXPECT_VALUE(col("i") <= 7, Value(true));
  EXPECT_VALUE(col("i") > col("j"), Value(true));
  EXPECT_VALUE(col("i") >= 8, Value(false));
  EXPECT_VALUE(col("s") < "Help", Value(true));
  EXPECT_VALUE(col("s") == "Hello World", Value(true));
  EXPECT_VALUE(col("t") == make_tuple({1, "x", 3.5}), Value(true));
  EXPECT_VALUE(col("i") == "7", Value(false));  // == compares across types
  EXPECT_EQ(type_of(col("i") == col("oi")), t_bool());
  EXPECT_EQ(type_of(col("i") < col("oi")), optional(t_bool()));
}

TEST(Expr, ComparisonsWithNone) {
  EXPECT_VALUE(col("oi") == lit(Value()), Value(true));
  EXPECT_VALUE(col("oi") == 1, Value(false));
  EXPECT_VALUE(col("oi") != 1, Value(true));
  EXPECT_NONE(col("oi") < 1);
  EXPECT_NONE(lit(1) >= col("oi"));
}

TEST(Expr, ComparisonTypeErrorsAtBuildTime) {
  EXPECT_BUILD_ERROR(col("i") < col("s"), "cannot compare int with str (operator <)");
  EXPECT_BUILD_ERROR(col("b") >= col("d"), "cannot compare bool with duration (operator >=)");
  EXPECT_EQ(build_error(col("i") == col("s")), "");
}

TEST(Expr, ThreeValuedLogic) {
  Expr t = lit(true), f = lit(false), n = lit(Value());
  EXPECT_VALUE(t && t, Value(true));
  EXPECT_VALUE(t && f, Value(false));
  EXPECT_VALUE(f && n, Value(false));
  EXPECT_VALUE(n && f, Value(false));
  EXPECT_NONE(t && n);
  EXPECT_NONE(n && t);
  EXPECT_VALUE(f || t, Value(true));
  EXPECT_VALUE(f || f, Value(false));
  EXPECT_VALUE(n || t, Value(true));
  EXPECT_VALUE(t || n, Value(true));
  EXPECT_NONE(f || n);
  EXPECT_NONE(n || n);
  EXPECT_VALUE(!t, Value(false));
  EXPECT_VALUE(!f, Value(true));
  EXPECT_NONE(!n);
  EXPECT_EQ(type_of(col("b") && col("b")), t_bool());
  // The second argument is not evaluated when the first decides.
  EXPECT_VALUE(f && (col("i") / 0 == 1), Value(false));
  EXPECT_VALUE(t || (col("i") / 0 == 1), Value(true));
}

TEST(Expr, LogicTypeErrorsAtBuildTime) {
  EXPECT_BUILD_ERROR(col("i") && col("b"), "and() expects bool for argument 1, got int");
  EXPECT_BUILD_ERROR(col("b") || col("s"), "or() expects bool for argument 2, got str");
  EXPECT_BUILD_ERROR(!col("f"), "not() expects bool for argument 1, got float");
  EXPECT_BUILD_ERROR(if_else(col("i"), 1, 2), "if_else() expects bool for argument 1, got int");
}

// ---- Conditionals and None handling ----

TEST(Expr, IfElseCoalesceIsNone) {
  EXPECT_VALUE(if_else(col("b"), col("i"), col("j")), Value(7));
  EXPECT_VALUE(if_else(!col("b"), col("i"), col("j")), Value(-2));
  EXPECT_VALUE(if_else(lit(Value()), 1, 2), Value(2));  // None is not true
  EXPECT_VALUE(if_else(col("b"), 1, col("i") / 0), Value(1));  // only the taken branch is evaluated
  EXPECT_EQ(type_of(if_else(col("b"), col("i"), col("f"))), t_float());
  EXPECT_EQ(type_of(if_else(col("b"), col("i"), lit(Value()))), optional(t_int()));
  EXPECT_EQ(type_of(if_else(col("b"), col("i"), col("s"))), t_any());

  EXPECT_VALUE(coalesce({col("oi"), col("i")}), Value(7));
  EXPECT_VALUE(coalesce({col("i"), col("i") / 0}), Value(7));
  EXPECT_NONE(coalesce({col("oi"), col("os")}));
  EXPECT_EQ(type_of(coalesce({col("oi"), col("i")})), t_int());
  EXPECT_EQ(type_of(coalesce({col("oi"), col("oi")})), optional(t_int()));

  EXPECT_VALUE(is_none(col("oi")), Value(true));
  EXPECT_VALUE(is_none(col("i")), Value(false));
  EXPECT_VALUE(is_not_none(col("oi")), Value(false));
  EXPECT_VALUE(is_not_none(col("s")), Value(true));
  EXPECT_EQ(type_of(is_none(col("oi"))), t_bool());
}

// ---- cast ----

TEST(Expr, Cast) {
  EXPECT_VALUE(cast(col("f"), DType::kInt), Value(2));
  EXPECT_VALUE(cast(lit(-2.9), DType::kInt), Value(-2));  // toward zero
  EXPECT_VALUE(cast(col("b"), DType::kInt), Value(1));
  EXPECT_VALUE(cast(lit(" 12"), DType::kInt), Value(12));
  EXPECT_VALUE(cast(col("i"), DType::kFloat), Value(7.0));
  EXPECT_VALUE(cast(lit("2.5e1"), DType::kFloat), Value(25.0));
  EXPECT_VALUE(cast(lit(false), DType::kFloat), Value(0.0));
  EXPECT_VALUE(cast(col("i"), DType::kBool), Value(true));
  EXPECT_VALUE(cast(lit(0.0), DType::kBool), Value(false));
  EXPECT_VALUE(cast(lit("Yes"), DType::kBool), Value(true));
  EXPECT_VALUE(cast(lit("off"), DType::kBool), Value(false));
  EXPECT_VALUE(cast(col("i"), DType::kString), Value("7"));
  EXPECT_VALUE(cast(col("t"), DType::kString), Value(Value::tuple({Value(1), Value("x"), Value(3.5)}).to_string()));
  EXPECT_VALUE(cast(col("s"), DType::kString), Value("Hello World"));
  EXPECT_VALUE(cast(col("d"), DType::kDuration), Value(Duration{90}));
  EXPECT_NONE(cast(col("oi"), DType::kString));
  EXPECT_EQ(type_of(cast(col("oi"), DType::kFloat)), optional(t_float()));
  EXPECT_EQ(type_of(cast(col("s"), DType::kInt)), t_int());
}

TEST(Expr, CastErrors) {
  EXPECT_EQ(run_error(cast(lit("12x"), DType::kInt)), "cannot cast '12x' to int");
  EXPECT_EQ(run_error(cast(lit(""), DType::kFloat)), "cannot cast '' to float");
  EXPECT_EQ(run_error(cast(lit("maybe"), DType::kBool)), "cannot cast 'maybe' to bool");
  EXPECT_EQ(run_error(cast(lit("99999999999999999999"), DType::kInt)), "cannot cast '99999999999999999999' to int");
  EXPECT_NE(run_error(cast(lit(std::nan("")), DType::kInt)).find("to int"), std::string::npos);
  EXPECT_NE(run_error(cast(lit(1e19), DType::kInt)).find("to int"), std::string::npos);
  EXPECT_BUILD_ERROR(cast(col("t"), DType::kInt), "cast() cannot convert tuple to int");
  EXPECT_BUILD_ERROR(cast(col("i"), DType::kDuration), "cast() cannot convert int to duration");
  EXPECT_BUILD_ERROR(cast(col("i"), DType::kAny), "cast() cannot convert int to any");
  EXPECT_EQ(run_error(cast(col("a"), DType::kTuple)), "cannot cast str to tuple");
}

// ---- Tuples ----

TEST(Expr, TuplesAndGet) {
  EXPECT_VALUE(make_tuple({col("i"), col("oi"), "z"}), tup({Value(7), Value(), Value("z")}));
  EXPECT_EQ(type_of(make_tuple({col("oi")})), t_tuple());
  EXPECT_VALUE(get(col("t"), 0), Value(1));
  EXPECT_VALUE(get(col("t"), 2), Value(3.5));
  EXPECT_VALUE(get(col("t"), -1), Value(3.5));
  EXPECT_VALUE(get(col("t"), -3), Value(1));
  EXPECT_NONE(get(col("t"), 3));
  EXPECT_NONE(get(col("t"), -4));
  EXPECT_NONE(get(col("t"), col("oi")));
  EXPECT_NONE(get(lit(Value()), 0));
  EXPECT_EQ(type_of(get(col("t"), 0)), t_any());
  EXPECT_BUILD_ERROR(get(col("s"), 0), "get() expects tuple for argument 1, got str");
  EXPECT_BUILD_ERROR(get(col("t"), col("f")), "get() expects int for argument 2, got float");
  EXPECT_EQ(run_error(get(col("a"), 0)), "get() expects tuple, got str");
}

// ---- Strings ----

TEST(Expr, CaseStripLen) {
  EXPECT_VALUE(str::lower(col("s")), Value("hello world"));
  EXPECT_VALUE(str::upper(col("s")), Value("HELLO WORLD"));
  EXPECT_VALUE(str::strip(lit(" \t x y \n")), Value("x y"));
  EXPECT_VALUE(str::strip(lit(" \t\n")), Value(""));
  EXPECT_VALUE(str::len(col("s")), Value(11));
  EXPECT_VALUE(str::len(col("t")), Value(3));
  EXPECT_VALUE(str::len(col("by")), Value(4));
  EXPECT_EQ(type_of(str::len(col("os"))), optional(t_int()));
}

TEST(Expr, StringsOnEmptyInput) {
  EXPECT_VALUE(str::lower(lit("")), Value(""));
  EXPECT_VALUE(str::upper(lit("")), Value(""));
  EXPECT_VALUE(str::strip(lit("")), Value(""));
  EXPECT_VALUE(str::len(lit("")), Value(0));
  EXPECT_VALUE(str::contains(lit(""), ""), Value(true));
  EXPECT_VALUE(str::contains(lit(""), "a"), Value(false));
  EXPECT_VALUE(str::startswith(lit(""), ""), Value(true));
  EXPECT_VALUE(str::endswith(lit("a"), ""), Value(true));
  EXPECT_VALUE(str::replace(lit(""), "a", "b"), Value(""));
  EXPECT_VALUE(str::replace(lit("abc"), "", "-"), Value("abc"));  // an empty pattern replaces nothing
  EXPECT_VALUE(str::split(lit("")), tup({}));
  EXPECT_VALUE(str::split(lit("  \t ")), tup({}));
  EXPECT_VALUE(str::split(lit(""), ","), tup({Value("")}));
  EXPECT_VALUE(str::slice(lit(""), 0, 5), Value(""));
}

TEST(Expr, StringsOnUtf8Input) {
  // Bytes of UTF-8: lower/upper change ASCII letters only, and len/slice count bytes.
  EXPECT_VALUE(str::lower(lit("ÀÉ Straße")), Value("ÀÉ straße"));
  EXPECT_VALUE(str::upper(lit("àé straße")), Value("àé STRAßE"));
  EXPECT_VALUE(str::len(lit("héllo")), Value(6));
  EXPECT_VALUE(str::slice(lit("héllo"), 0, 3), Value("hé"));
  EXPECT_VALUE(str::contains(lit("naïve café"), "café"), Value(true));
  EXPECT_VALUE(str::startswith(lit("日本語"), "日本"), Value(true));
  EXPECT_VALUE(str::endswith(lit("日本語"), "語"), Value(true));
  EXPECT_VALUE(str::replace(lit("a→b→c"), "→", "-"), Value("a-b-c"));
  EXPECT_VALUE(str::split(lit("α β\tγ")), tup({Value("α"), Value("β"), Value("γ")}));
  EXPECT_VALUE(str::split(lit("α→β"), "→"), tup({Value("α"), Value("β")}));
  EXPECT_VALUE(str::strip(lit("  é  ")), Value("é"));
}

TEST(Expr, SearchReplaceSplit) {
  EXPECT_VALUE(str::contains(col("s"), "lo W"), Value(true));
  EXPECT_VALUE(str::contains(col("s"), "low"), Value(false));
  EXPECT_VALUE(str::startswith(col("s"), "Hell"), Value(true));
  EXPECT_VALUE(str::startswith(lit("He"), "Hell"), Value(false));
  EXPECT_VALUE(str::endswith(col("s"), "World"), Value(true));
  EXPECT_VALUE(str::endswith(lit("d"), "World"), Value(false));
  EXPECT_VALUE(str::replace(lit("aaa"), "a", "bb"), Value("bbbbbb"));
  EXPECT_VALUE(str::replace(lit("aaaa"), "aa", "a"), Value("aa"));
  EXPECT_VALUE(str::split(lit(" a  b\nc ")), tup({Value("a"), Value("b"), Value("c")}));
  EXPECT_VALUE(str::split(lit("a,,b,"), ","), tup({Value("a"), Value(""), Value("b"), Value("")}));
  EXPECT_VALUE(str::split(lit("a::b"), "::"), tup({Value("a"), Value("b")}));
  EXPECT_EQ(run_error(str::split(col("s"), "")), "split(): empty separator");
  EXPECT_EQ(type_of(str::split(col("s"))), t_tuple());
  EXPECT_EQ(type_of(str::contains(col("s"), col("os"))), optional(t_bool()));
}

TEST(Expr, SliceFollowsPythonBounds) {
  EXPECT_VALUE(str::slice(col("s"), 0, 5), Value("Hello"));
  EXPECT_VALUE(str::slice(col("s"), 6, 100), Value("World"));
  EXPECT_VALUE(str::slice(col("s"), -5, -1), Value("Worl"));
  EXPECT_VALUE(str::slice(col("s"), -100, 2), Value("He"));
  EXPECT_VALUE(str::slice(col("s"), 5, 2), Value(""));
  EXPECT_VALUE(str::slice(col("s"), lit(Value()), 2), Value("He"));
  EXPECT_VALUE(str::slice(col("s"), 6, lit(Value())), Value("World"));
  EXPECT_VALUE(str::slice(col("s"), col("oi"), col("oi")), Value("Hello World"));
}

TEST(Expr, StringFunctionsPropagateNone) {
  for (Expr e : {str::lower(col("os")), str::upper(col("os")), str::strip(col("os")), str::len(col("os")),
                 str::contains(col("os"), "a"), str::contains(col("s"), col("os")), str::startswith(col("os"), "a"),
                 str::endswith(col("s"), col("os")), str::replace(col("os"), "a", "b"),
                 str::replace(col("s"), col("os"), "b"), str::replace(col("s"), "l", col("os")), str::split(col("os")),
                 str::split(col("os"), ","), str::split(col("s"), col("os")), str::slice(col("os"), 0, 1)})
    EXPECT_NONE(e);
  EXPECT_EQ(type_of(str::split(col("s"), col("os"))), optional(t_tuple()));
  EXPECT_EQ(type_of(str::replace(col("s"), "a", col("os"))), optional(t_str()));
}

TEST(Expr, StringTypeErrorsAtBuildTime) {
  EXPECT_BUILD_ERROR(str::lower(col("i")), "in test: lower() expects str for argument 1, got int");
  EXPECT_BUILD_ERROR(str::upper(col("t")), "upper() expects str for argument 1, got tuple");
  EXPECT_BUILD_ERROR(str::strip(col("by")), "strip() expects str for argument 1, got bytes");
  EXPECT_BUILD_ERROR(str::len(col("i")), "len() expects str, bytes or tuple for argument 1, got int");
  EXPECT_BUILD_ERROR(str::contains(col("s"), 1), "contains() expects str for argument 2, got int");
  EXPECT_BUILD_ERROR(str::startswith(col("f"), "a"), "startswith() expects str for argument 1, got float");
  EXPECT_BUILD_ERROR(str::endswith(col("s"), col("b")), "endswith() expects str for argument 2, got bool");
  EXPECT_BUILD_ERROR(str::replace(col("s"), "a", 1), "replace() expects str for argument 3, got int");
  EXPECT_BUILD_ERROR(str::split(col("i")), "split() expects str for argument 1, got int");
  EXPECT_BUILD_ERROR(str::split(col("s"), 1), "split() expects str for argument 2, got int");
  EXPECT_BUILD_ERROR(str::slice(col("i"), 0, 1), "slice() expects str for argument 1, got int");
  EXPECT_BUILD_ERROR(str::slice(col("s"), col("f"), 1), "slice() expects int for argument 2, got float");
  EXPECT_BUILD_ERROR(str::slice(col("s"), 0, "1"), "slice() expects int for argument 3, got str");
  EXPECT_BUILD_ERROR(str::lower(col("oi")), "lower() expects str for argument 1, got optional[int]");
}

TEST(Expr, AnyTypedArgumentsFailClearlyAtRunTime) {
  Row r = row();
  r[11] = Value(5);  // column "a" (type any) holds an int
  EXPECT_EQ(run_error(str::lower(col("a")), r), "lower() expects str, got int");
  EXPECT_EQ(run_error(str::len(col("a")), r), "len() expects str, bytes or tuple, got int");
  EXPECT_EQ(run_error(str::contains(col("s"), col("a")), r), "contains() expects str, got int");
  EXPECT_EQ(run_error(str::slice(col("s"), 0, col("a"))), "slice() expects int, got str");
  EXPECT_EQ(run_error(get(col("t"), col("a"))), "get() expects int, got str");
}

TEST(Expr, TypeErrorsFailTheOperatorWhenTheGraphIsBuilt) {
  Graph g;
  Table t = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}),
                               Schema{{"s", t_str()}, {"n", t_int()}});
  try {
    t.select({{"x", str::upper(col("n"))}});
    ADD_FAILURE() << "expected GraphError";
  } catch (const GraphError& e) {
    EXPECT_NE(std::string(e.what()).find("in select: upper() expects str for argument 1, got int"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(t.filter(col("n") && col("s") == "x"), GraphError);
  EXPECT_THROW(t.select({{"x", get(col("s"), 0)}}), GraphError);
}

// ---- describe(): the canonical texts stored in operator signatures ----

TEST(Expr, DescribeTextsAreStable) {
  using internal::describe;
  EXPECT_EQ(describe(col("v") * 2), "*(col(v), 2:int)");
  EXPECT_EQ(describe(col("a") + 1.5 - col("b") / 2), "-(+(col(a), 1.5:float), /(col(b), 2:int))");
  EXPECT_EQ(describe(floordiv(col("a"), 3) % 2), "%(//(col(a), 3:int), 2:int)");
  EXPECT_EQ(describe(-col("a")), "neg(col(a))");
  EXPECT_EQ(describe(col("a") == "x"), "==(col(a), x:str)");
  EXPECT_EQ(describe(col("a") != lit(Value())), "!=(col(a), None:none)");
  EXPECT_EQ(describe(col("a") < 1 && (col("b") >= 2 || !(col("c") <= 3)) && col("d") > true),
            "and(and(<(col(a), 1:int), or(>=(col(b), 2:int), not(<=(col(c), 3:int)))), >(col(d), True:bool))");
  EXPECT_EQ(describe(if_else(is_none(col("a")), coalesce({col("b"), 0}), is_not_none(col("c")))),
            "if_else(is_none(col(a)), coalesce(col(b), 0:int), is_not_none(col(c)))");
  EXPECT_EQ(describe(cast(col("a"), DType::kFloat)), "cast<float>(col(a))");
  EXPECT_EQ(describe(get(make_tuple({col("a"), id()}), -1)), "get(tuple(col(a), id), -1:int)");
  EXPECT_EQ(describe(str::slice(str::lower(str::strip(col("s"))), 0, lit(Value()))),
            "slice(lower(strip(col(s))), 0:int, None:none)");
  EXPECT_EQ(describe(str::split(str::upper(col("s")))), "split(upper(col(s)))");
  EXPECT_EQ(describe(str::split(col("s"), ",")), "split(col(s), ,:str)");
  EXPECT_EQ(describe(str::replace(col("s"), "a", "b")), "replace(col(s), a:str, b:str)");
  EXPECT_EQ(describe(str::contains(col("s"), "a") || str::startswith(col("s"), "b") || str::endswith(col("s"), "c")),
            "or(or(contains(col(s), a:str), startswith(col(s), b:str)), endswith(col(s), c:str))");
  EXPECT_EQ(describe(str::len(col("s"))), "len(col(s))");
  EXPECT_EQ(describe(left("a") + right("b") + left_id() + right_id()),
            "+(+(+(left.col(a), right.col(b)), left.id), right.id)");
  EXPECT_EQ(describe(apply([](const std::vector<Value>&) { return Value(); }, {col("a")}, t_int())),
            "apply<int>(col(a))");
  EXPECT_EQ(describe(apply([](const std::vector<Value>&) { return Value(); }, {col("a"), 1}, optional(t_str()), false)),
            "apply<optional[str], non-deterministic>(col(a), 1:int)");
  EXPECT_EQ(describe(apply([](const std::vector<Value>&) { return Value(); }, {col("a")}, t_int(), UdfCache{"c"})),
            "apply<int, cache c>(col(a))");
  EXPECT_EQ(describe(reducers::sum(col("v") * 2)), "reducers::sum(*(col(v), 2:int))");
  EXPECT_EQ(describe(reducers::count()), "reducers::count()");
  EXPECT_EQ(internal::describe(std::vector<NamedExpr>{{"x", col("a")}, {"y", lit(Value(Duration{5}))}}),
            "x=col(a), y=" + Value(Duration{5}).to_string() + ":duration");
}

}  // namespace
}  // namespace tidemark::testing
