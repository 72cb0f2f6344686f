// Column expressions, built with ordinary C++ operators and resolved against a table's schema
// when the operator that uses them is added to the graph (unknown columns and type mismatches
// fail there, naming the column and the operator).
//
//   t.select({{"word", col("word")}, {"twice", col("n") * 2}})
//   t.filter(col("n") > 3 && !is_none(col("name")))
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tidemark/value.h"

namespace tidemark {

namespace internal {
struct ExprNode;
}

class Expr {
 public:
  Expr(Value literal);  // NOLINT: literals convert implicitly
  Expr(int v) : Expr(Value(v)) {}  // NOLINT
  Expr(int64_t v) : Expr(Value(v)) {}  // NOLINT
  Expr(double v) : Expr(Value(v)) {}  // NOLINT
  Expr(bool v) : Expr(Value(v)) {}  // NOLINT
  Expr(const char* v) : Expr(Value(v)) {}  // NOLINT
  Expr(std::string v) : Expr(Value(std::move(v))) {}  // NOLINT
  explicit Expr(std::shared_ptr<const internal::ExprNode> node) : node_(std::move(node)) {}
  const std::shared_ptr<const internal::ExprNode>& node() const { return node_; }

 private:
  std::shared_ptr<const internal::ExprNode> node_;
};

// A named output column: {"name", expr}.
struct NamedExpr {
  std::string name;
  Expr expr;
};

// References.
Expr col(std::string name);    // a column of the table the expression is applied to
Expr left(std::string name);   // in a join's select: a column of the left table
Expr right(std::string name);  // in a join's select: a column of the right table
Expr id();                     // the row's key, as a pointer
Expr left_id();
Expr right_id();
Expr lit(Value v);

// Arithmetic (int op int stays int except `/`, which gives float as in Python; `floordiv`
// and `%` follow Python's floor semantics), comparisons, boolean logic.
Expr operator+(Expr a, Expr b);  // numbers, or string concatenation
Expr operator-(Expr a, Expr b);
Expr operator*(Expr a, Expr b);
Expr operator/(Expr a, Expr b);
Expr operator%(Expr a, Expr b);
Expr floordiv(Expr a, Expr b);
Expr operator-(Expr a);
Expr operator==(Expr a, Expr b);
Expr operator!=(Expr a, Expr b);
Expr operator<(Expr a, Expr b);
Expr operator<=(Expr a, Expr b);
Expr operator>(Expr a, Expr b);
Expr operator>=(Expr a, Expr b);
Expr operator&&(Expr a, Expr b);
Expr operator||(Expr a, Expr b);
Expr operator!(Expr a);

Expr if_else(Expr cond, Expr then, Expr otherwise);
Expr coalesce(std::vector<Expr> args);
Expr is_none(Expr a);
Expr is_not_none(Expr a);
// Converts between int, float, bool and str (str parses; failures are runtime errors).
Expr cast(Expr a, DType to);
Expr make_tuple(std::vector<Expr> items);
// Element of a tuple (negative index counts from the end); None when out of range.
Expr get(Expr tuple, Expr index);

namespace str {
Expr lower(Expr s);
Expr upper(Expr s);
Expr len(Expr s);
Expr strip(Expr s);
Expr contains(Expr s, Expr needle);
Expr startswith(Expr s, Expr prefix);
Expr endswith(Expr s, Expr suffix);
Expr replace(Expr s, Expr from, Expr to);
// Splits on runs of whitespace (no separator) or on `sep`; gives a tuple of strings.
Expr split(Expr s);
Expr split(Expr s, Expr sep);
Expr slice(Expr s, Expr start, Expr end);
}  // namespace str

// User functions. `deterministic = false` makes the engine remember each row's result so a
// later retraction carries exactly the value that was emitted.
//
// Threads (RunOptions::workers): with several workers a user function (apply, a
// deduplicate acceptor) is called from the worker threads, possibly from several at once,
// each call on rows of one worker. A function must therefore be thread-safe (no unguarded
// shared mutable state), or be marked `thread_safe = false` (ApplyOptions): its calls are
// then serialized by a lock (never two at once; from any worker thread). At 1 worker every
// call comes from the run loop's thread, as before. A UDF cache is shared by the workers and
// locks itself; the function it wraps follows the same rule, and a missing result is computed
// once: a worker needing arguments another worker is computing waits for that result.
using UserFunction = std::function<Value(const std::vector<Value>&)>;
Expr apply(UserFunction fn, std::vector<Expr> args, Type result_type, bool deterministic = true);
struct ApplyOptions {
  bool deterministic = true;
  // false: the function is not thread-safe; its calls are serialized (see above).
  bool thread_safe = true;
};
Expr apply(UserFunction fn, std::vector<Expr> args, Type result_type, ApplyOptions options);

// A cache of a user function's results, keyed by the argument values (the reference's
// pw.udfs.DiskCache). With persistence the cache is durable: its entries are stored with the
// other persisted state and reused by later runs of the program, so an expensive function
// (a model call, a web request) is not computed again for arguments seen before.
//
// Contract:
//  * The function is deterministic: equal arguments give an equal result, in every run. A
//    cached result is returned without calling the function, for insertions and retractions
//    alike; a function that is changed must get a new cache name (old results would be kept).
//  * `name` identifies the cache across runs and must be non-empty and unique in the graph:
//    it is the cache's persistent id ("udf_cache:<name>"). One apply(..., UdfCache) call makes
//    one cache; the returned Expr (and its copies) may be used by several operators, which
//    then share that cache. Two different caches with the same name in one graph are a
//    GraphError, raised when the second one's operator is built.
//  * Arguments are identified by the xxh3-128 hash of their binary encoding (docs/format/
//    values.md): values of different types are different arguments (1 and 1.0).
//  * `size_limit_bytes` bounds the cache's size, counted as the encoded size of each entry
//    (16 key bytes + the encoded result); beyond it the least recently used entries are
//    evicted (recency within a run; a restored cache starts in an unspecified order). A
//    result larger than the limit is not cached. A limit of 0 caches nothing.
//  * Exceptions from the function are not cached (the run fails as for an uncached apply).
//  * Results are cached as they are returned; the cache does not check them against
//    `result_type`.
struct UdfCache {
  std::string name;
  uint64_t size_limit_bytes = 1ull << 30;
};
// Throws GraphError when cache.name is empty.
Expr apply(UserFunction fn, std::vector<Expr> args, Type result_type, UdfCache cache);

// Reducers: only inside groupby(...).reduce(...) / windowby(...).reduce(...) / reduce(...).
namespace reducers {
Expr count();
Expr sum(Expr e);
Expr min(Expr e);
Expr max(Expr e);
Expr avg(Expr e);
Expr count_distinct(Expr e);
Expr any(Expr e);
Expr earliest(Expr e);  // value of the row that arrived first (ties: smallest key)
Expr latest(Expr e);    // value of the row that arrived last (ties: largest key)
Expr tuple(Expr e);     // values ordered by row key
Expr sorted_tuple(Expr e);
}  // namespace reducers

}  // namespace tidemark
