// Expression trees (as built by the public Expr API) and their compiled, type-checked form.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tidemark/expr.h"
#include "tidemark/schema.h"

namespace tidemark::internal {

class GraphImpl;

enum class ExprKind { kLiteral, kColumn, kId, kLeftId, kRightId, kOp, kApply, kReducer };
enum class Side { kThis, kLeft, kRight };

struct ExprNode {
  ExprKind kind = ExprKind::kLiteral;
  Value literal;                 // kLiteral
  std::string name;              // kColumn: column; kOp: operator/function; kReducer: reducer
  Side side = Side::kThis;       // kColumn
  std::vector<Expr> args;        // kOp, kApply, kReducer
  DType cast_to = DType::kAny;   // kOp "cast"
  UserFunction fn;               // kApply
  Type result_type;              // kApply
  bool deterministic = true;     // kApply
  bool thread_safe = true;       // kApply: false = calls are serialized (one at a time)
  // kApply with apply(..., UdfCache): the cache's configuration. Its address identifies the
  // cache: every operator compiling this node (or a copy of the Expr) shares one cache.
  std::shared_ptr<const UdfCache> cache;
};

// Evaluation context: the row's cells and keys. For joins, `cols` is left cells then right
// cells, and left_key/right_key are set (nullptr for a missing outer side).
struct EvalContext {
  const Value* cols = nullptr;
  const Key* key = nullptr;
  const Key* left_key = nullptr;
  const Key* right_key = nullptr;
};

class CompiledExpr {
 public:
  virtual ~CompiledExpr() = default;
  // May throw engine::RuntimeError (bad cast, user function failure).
  virtual Value eval(const EvalContext& ctx) const = 0;
  // A plain column reference: its index in the context's cells (else -1). Lets operators read
  // or move the cell instead of copying it.
  virtual int column_index() const { return -1; }
  Type type;
};
// Shared: the worker instances of an operator (Node::clone) use the same compiled expressions,
// whose eval() is const and safe to call from several threads at once (user functions follow
// the contract of include/tidemark/expr.h; a UDF cache locks itself).
using CompiledExprPtr = std::shared_ptr<CompiledExpr>;

// A reducer occurrence found while compiling a reduce() output expression.
struct ReducerSpec {
  std::string name;          // "count", "sum", ...
  CompiledExprPtr arg;       // nullptr for count
  Type result_type;
};

// How names resolve while compiling.
struct CompileScope {
  std::string op;                 // operator label for messages, e.g. "select"
  const Schema* schema = nullptr; // this table, or for joins left columns then right columns
  size_t left_size = 0;           // joins: number of left columns
  const Schema* left = nullptr;   // joins only
  const Schema* right = nullptr;  // joins only
  // reduce(): reducers become references to slot (first_reducer_slot + i) and are collected.
  std::vector<ReducerSpec>* reducers = nullptr;
  size_t first_reducer_slot = 0;
  // reduce(): reducer arguments resolve against this schema (the input table), while columns
  // outside reducers resolve against `schema` (the grouping columns).
  const Schema* reducer_arg_schema = nullptr;
  // Set by compile when a non-deterministic apply is present.
  bool saw_nondeterministic = false;
  // The graph the operator is added to. Needed by cached applies (apply(..., UdfCache)): their
  // cache is registered in the graph as persistent state "udf_cache:<name>". Compiling a cached
  // apply without it is a GraphError.
  GraphImpl* graph = nullptr;
};

// Type-checks and compiles; throws GraphError naming scope.op and the column on mistakes.
CompiledExprPtr compile(const Expr& e, CompileScope& scope);

// A canonical text of an expression ("*(col(v), 2:int)"), for operator signatures: equal
// expressions give equal texts. A user function is known by its result type, determinism and
// cache name only (its code cannot be compared).
std::string describe(const Expr& e);
std::string describe(const std::vector<NamedExpr>& outputs);

// Column references used by an expression (for groupby validation).
bool is_plain_column(const Expr& e, std::string* name);

}  // namespace tidemark::internal
