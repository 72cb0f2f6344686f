// Table schemas: ordered, named, typed columns. Checked when a graph is built.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "tidemark/value.h"

namespace tidemark {

struct Column {
  std::string name;
  Type type;
  bool operator==(const Column&) const = default;
};

class Schema {
 public:
  Schema() = default;
  Schema(std::initializer_list<Column> cols);
  explicit Schema(std::vector<Column> cols);

  size_t size() const { return cols_.size(); }
  const Column& operator[](size_t i) const { return cols_[i]; }
  const std::vector<Column>& columns() const { return cols_; }
  // Index of the column, or nullopt.
  std::optional<size_t> find(const std::string& name) const;
  // Comma-separated "name: type" list, for messages.
  std::string to_string() const;
  // Comma-separated names.
  std::string names() const;
  bool operator==(const Schema&) const = default;

 private:
  std::vector<Column> cols_;
};

// Shorthands for schema literals: Schema{{"word", t_str()}, {"n", t_int()}}.
inline Type t_any() { return {DType::kAny, true}; }
inline Type t_bool() { return {DType::kBool}; }
inline Type t_int() { return {DType::kInt}; }
inline Type t_float() { return {DType::kFloat}; }
inline Type t_str() { return {DType::kString}; }
inline Type t_bytes() { return {DType::kBytes}; }
inline Type t_pointer() { return {DType::kPointer}; }
inline Type t_tuple() { return {DType::kTuple}; }
inline Type t_datetime_naive() { return {DType::kDateTimeNaive}; }
inline Type t_datetime_utc() { return {DType::kDateTimeUtc}; }
inline Type t_duration() { return {DType::kDuration}; }
inline Type t_json() { return {DType::kJson}; }
inline Type optional(Type t) { t.optional = true; return t; }

}  // namespace tidemark
