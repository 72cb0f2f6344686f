#include "tidemark/schema.h"

namespace tidemark {

Schema::Schema(std::initializer_list<Column> cols) : cols_(cols) {}
Schema::Schema(std::vector<Column> cols) : cols_(std::move(cols)) {}

std::optional<size_t> Schema::find(const std::string& name) const {
  for (size_t i = 0; i < cols_.size(); ++i)
    if (cols_[i].name == name) return i;
  return std::nullopt;
}

std::string Schema::to_string() const {
  std::string s;
  for (size_t i = 0; i < cols_.size(); ++i) {
    if (i) s += ", ";
    s += cols_[i].name + ": " + cols_[i].type.to_string();
  }
  return s;
}

std::string Schema::names() const {
  std::string s;
  for (size_t i = 0; i < cols_.size(); ++i) {
    if (i) s += ", ";
    s += cols_[i].name;
  }
  return s;
}

}  // namespace tidemark
