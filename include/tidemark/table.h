// The Table API: a dataflow graph built from sources, transformed by operators, consumed by
// sinks, and executed by tidemark::run (run.h). Method names follow the reference's Python API.
//
// Every table is a collection of rows with unique 128-bit keys. Operators are incremental: at
// each logical time they consume their inputs' changes (insertions and retractions) and emit
// changes, keeping only the state they need. Building an operator checks its expressions
// against the input schema; mistakes throw GraphError naming the operator and the column.
//
// Thread-safety: a Graph and its Tables are built and run from one thread.
#pragma once

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "tidemark/expr.h"
#include "tidemark/schema.h"

namespace tidemark {

namespace internal {
class GraphImpl;
}

// A mistake in the program's graph (unknown column, type mismatch, duplicate name).
class GraphError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Graph {
 public:
  Graph();
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  internal::GraphImpl& impl() { return *impl_; }
  const internal::GraphImpl& impl() const { return *impl_; }

 private:
  std::unique_ptr<internal::GraphImpl> impl_;
};

enum class JoinMode { kInner, kLeft, kRight, kOuter };

class Table;

class GroupedTable {
 public:
  // Each output expression is a grouping column, a reducer, or an expression over those.
  // Output key: derived from the grouping values (stable across runs).
  Table reduce(std::vector<NamedExpr> outputs) const;

 private:
  friend class Table;
  friend class WindowedTable;
  GroupedTable(const Table& t, std::vector<std::string> by);
  // The table's handle (graph, node) by value: the Table it was called on may be a temporary.
  Graph* graph_;
  size_t node_;
  std::vector<std::string> by_;
};

class JoinResult {
 public:
  // Expressions use left("col") / right("col") (col("x") works when x is unambiguous),
  // left_id() / right_id(). Missing sides of outer joins read as None.
  // Output key: combination of the left and right keys.
  Table select(std::vector<NamedExpr> outputs) const;

 private:
  friend class Table;
  JoinResult(const Table& l, const Table& r, std::vector<std::pair<std::string, std::string>> on,
             JoinMode mode);
  // Handles (graph, node) by value: the tables may be temporaries.
  Graph* graph_;
  size_t left_;
  size_t right_;
  std::vector<std::pair<std::string, std::string>> on_;
  JoinMode mode_;
};

// Windows for windowby. Times and durations are ints, floats, date-times or durations
// (the window parameters must match the time column's type: durations for date-times).
struct Window {
  enum class Kind { kTumbling, kSliding, kSession } kind = Kind::kTumbling;
  Value duration;  // tumbling and sliding: window length
  Value hop;       // sliding: distance between window starts
  Value origin;    // tumbling and sliding: alignment (None = 0)
  Value max_gap;   // session: rows closer than this are in one session
};
Window tumbling(Value duration, Value origin = Value());
Window sliding(Value hop, Value duration, Value origin = Value());
Window session(Value max_gap);

class WindowedTable {
 public:
  // Like GroupedTable::reduce; the columns _pw_window_start, _pw_window_end (and
  // _pw_instance when an instance was given) are available as grouping columns.
  Table reduce(std::vector<NamedExpr> outputs) const;

 private:
  friend class Table;
  WindowedTable(const Table& t, Expr time, Window w, std::optional<Expr> instance);
  // The table's handle (graph, node) by value: the Table it was called on may be a temporary.
  Graph* graph_;
  size_t node_;
  Expr time_;
  Window window_;
  std::optional<Expr> instance_;
};

// deduplicate: per instance, a new row replaces the kept one when acceptor(new, old) is true;
// the first row of an instance is always accepted. Works on the stream of insertions.
struct DeduplicateOptions {
  Expr value;
  std::function<bool(const Value& new_value, const Value& old_value)> acceptor;
  std::optional<Expr> instance;
  std::string name;  // persistent id (persistence issue)
};

class Table {
 public:
  Table(Graph* g, size_t node) : graph_(g), node_(node) {}

  Graph& graph() const { return *graph_; }
  size_t node() const { return node_; }
  const Schema& schema() const;

  // Names the operator that produced this table: its persistent id in operator persisting
  // (instead of one derived from its position in the graph and its inputs), so its stored
  // state follows it when the graph around it changes. Unique among all names in the graph;
  // GraphError for a source, a table already named, or a name used before. Returns *this.
  Table named(const std::string& name) const;

  Table select(std::vector<NamedExpr> outputs) const;
  Table with_columns(std::vector<NamedExpr> outputs) const;
  Table without(std::vector<std::string> columns) const;
  Table rename(std::vector<std::pair<std::string, std::string>> old_to_new) const;
  Table filter(Expr predicate) const;
  GroupedTable groupby(std::vector<std::string> columns) const;
  // Reduces the whole table to one row (no grouping columns).
  Table reduce(std::vector<NamedExpr> outputs) const;
  JoinResult join(const Table& other, std::vector<std::pair<std::string, std::string>> on,
                  JoinMode mode = JoinMode::kInner) const;
  JoinResult join_left(const Table& other, std::vector<std::pair<std::string, std::string>> on) const;
  JoinResult join_right(const Table& other, std::vector<std::pair<std::string, std::string>> on) const;
  JoinResult join_outer(const Table& other, std::vector<std::pair<std::string, std::string>> on) const;
  // Union of tables with the same column names and types; keys must be disjoint (a key present
  // in two inputs at once is a runtime error naming the key).
  Table concat(const Table& other) const;
  // Rows of `other` replace rows of this table with the same key; other's new keys are added.
  Table update_rows(const Table& other) const;
  // For keys present in both, `other`'s columns (a subset of this table's) override the cells.
  Table update_cells(const Table& other) const;
  Table difference(const Table& other) const;  // rows whose key is not in other
  Table intersect(const Table& other) const;   // rows whose key is also in other
  Table restrict(const Table& other) const;    // rows whose key is in other (other ⊆ this)
  Table deduplicate(DeduplicateOptions options) const;
  // One output row per element of the tuple column `column` (the column keeps its name and
  // holds the element). Output keys combine the input key and the element's position.
  Table flatten(const std::string& column) const;
  // Same keys; columns `prev` and `next`: pointers to the neighbours in `key` order within
  // each instance (None at the ends).
  Table sort(Expr key, std::optional<Expr> instance = std::nullopt) const;
  // For every row of `source`, the row of this table whose key is source's `pointer`
  // (rows with a missing target are absent, or all-None when optional).
  Table ix(const Table& source, Expr pointer, bool optional = false) const;
  WindowedTable windowby(Expr time, Window window, std::optional<Expr> instance = std::nullopt) const;

 private:
  Graph* graph_;
  size_t node_;
};

Table concat(const std::vector<Table>& tables);

}  // namespace tidemark
