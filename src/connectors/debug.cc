// tidemark::debug: tables from markdown literals, and running a graph to inspect a table.
#include <algorithm>
#include <charconv>
#include <iostream>
#include <map>
#include <optional>

#include "engine/collection_io.h"
#include "tidemark/io.h"
#include "tidemark/run.h"

namespace tidemark::debug {

namespace {

std::string_view trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

std::vector<std::string> split_cells(std::string_view line) {
  std::vector<std::string> cells;
  size_t start = 0;
  for (;;) {
    size_t bar = line.find('|', start);
    cells.emplace_back(trim(line.substr(start, bar == std::string_view::npos ? std::string_view::npos : bar - start)));
    if (bar == std::string_view::npos) break;
    start = bar + 1;
  }
  if (cells.size() > 1 && cells.back().empty() && trim(line).ends_with('|')) cells.pop_back();  // "| a | b |"
  return cells;
}

std::optional<int64_t> as_int(std::string_view s) {
  int64_t v;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::optional<double> as_float(std::string_view s) {
  double v;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// Infers one type for a column's cells ("None" cells make it optional) and converts them.
Type infer(const std::vector<std::string>& cells, std::vector<Value>* values) {
  bool all_int = true, all_num = true, all_bool = true, any_none = false, any_value = false;
  for (const auto& c : cells) {
    if (c == "None") {
      any_none = true;
      continue;
    }
    any_value = true;
    all_int = all_int && as_int(c).has_value();
    all_num = all_num && (as_int(c) || as_float(c));
    all_bool = all_bool && (c == "True" || c == "False");
  }
  Type t = !any_value ? t_any() : all_int ? t_int() : all_num ? t_float() : all_bool ? t_bool() : t_str();
  if (any_none) t = optional(t);
  for (const auto& c : cells) {
    if (c == "None") values->push_back(Value());
    else if (t.base == DType::kInt) values->push_back(Value(*as_int(c)));
    else if (t.base == DType::kFloat) values->push_back(Value(as_int(c) ? static_cast<double>(*as_int(c)) : *as_float(c)));
    else if (t.base == DType::kBool) values->push_back(Value(c == "True"));
    else values->push_back(Value(c));
  }
  return t;
}

}  // namespace

Table table_from_markdown(Graph& g, std::string_view text) {
  std::vector<std::vector<std::string>> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = trim(text.substr(start, end - start));
    start = end + 1;
    if (line.empty() || line.find_first_not_of("-|: ") == std::string_view::npos) continue;  // blank, |---|
    lines.push_back(split_cells(line));
  }
  if (lines.empty()) throw GraphError("table_from_markdown: no header line");
  const auto& header = lines[0];
  bool has_id = header[0].empty();
  std::vector<std::vector<std::string>> columns(header.size());
  for (size_t r = 1; r < lines.size(); ++r) {
    if (lines[r].size() != header.size())
      throw GraphError("table_from_markdown: row " + std::to_string(r) + " has " + std::to_string(lines[r].size()) +
                       " cells, the header has " + std::to_string(header.size()));
    for (size_t c = 0; c < header.size(); ++c) columns[c].push_back(lines[r][c]);
  }
  const size_t nrows = lines.size() - 1;
  std::vector<Column> schema_cols;
  std::vector<std::vector<Value>> data;  // per schema column
  std::vector<int64_t> times(nrows, 0), diffs(nrows, 1);
  for (size_t c = has_id ? 1 : 0; c < header.size(); ++c) {
    const std::string& name = header[c];
    if (name == "__time__" || name == "__diff__") {
      auto& dst = name == "__time__" ? times : diffs;
      for (size_t r = 0; r < nrows; ++r) {
        auto v = as_int(columns[c][r]);
        if (!v) throw GraphError("table_from_markdown: " + name + " must be an integer, got '" + columns[c][r] + "'");
        dst[r] = *v;
      }
      continue;
    }
    if (name.empty()) throw GraphError("table_from_markdown: column " + std::to_string(c + 1) + " has no name");
    data.emplace_back();
    schema_cols.push_back({name, infer(columns[c], &data.back())});
  }
  std::map<int64_t, engine::Batch> by_time;
  for (size_t r = 0; r < nrows; ++r) {
    Row row;
    for (auto& col : data) row.push_back(col[r]);
    Key key;
    if (has_id) {
      const std::string& label = columns[0][r];
      auto i = as_int(label);
      key = key_from_values({i ? Value(*i) : Value(label)});
    } else {
      key = key_from_values({Value(static_cast<int64_t>(r))});
    }
    by_time[times[r]].push_back({key, std::move(row), diffs[r]});
  }
  std::vector<engine::Batch> batches;
  for (auto& [t, b] : by_time) batches.push_back(std::move(b));
  return engine::add_source(g, std::make_unique<engine::BatchesSource>(std::move(batches), "markdown"),
                            Schema(std::move(schema_cols)));
}

std::vector<Change> compute_changes(const Table& t) {
  auto captured = std::make_shared<std::vector<engine::CapturedChange>>();
  engine::add_sink(t, std::make_unique<engine::CaptureSink>(captured));
  RunOptions opts;
  opts.handle_signals = false;
  opts.progress_interval_s = 0;
  Status s = run(t.graph(), opts);
  if (!s.is_ok()) throw std::runtime_error(s.to_string());
  std::vector<Change> out;
  for (auto& c : *captured) out.push_back({c.key, std::move(c.row), c.time, c.diff});
  std::stable_sort(out.begin(), out.end(), [](const Change& a, const Change& b) { return a.time < b.time; });
  return out;
}

std::string table_to_string(const Table& t) {
  std::map<std::pair<Key, Row>, int64_t> live;
  for (auto& c : compute_changes(t)) {
    auto& n = live[{c.key, c.row}];
    n += c.diff;
    if (n == 0) live.erase({c.key, c.row});
  }
  std::vector<Row> rows;
  for (const auto& [kr, n] : live)
    for (int64_t i = 0; i < n; ++i) rows.push_back(kr.second);
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(),
                                        [](const Value& x, const Value& y) { return x < y; });
  });
  const Schema& s = t.schema();
  std::vector<std::vector<std::string>> cells(1);
  for (const Column& c : s.columns()) cells[0].push_back(c.name);
  for (const Row& r : rows) {
    cells.emplace_back();
    for (const Value& v : r) cells.back().push_back(v.to_string());
  }
  std::vector<size_t> width(s.size(), 0);
  for (const auto& line : cells)
    for (size_t i = 0; i < line.size(); ++i) width[i] = std::max(width[i], line[i].size());
  std::string out;
  for (const auto& line : cells) {
    for (size_t i = 0; i < line.size(); ++i) {
      out += line[i];
      if (i + 1 < line.size()) out += std::string(width[i] - line[i].size(), ' ') + " | ";
    }
    out += "\n";
  }
  return out;
}

void compute_and_print(const Table& t) { std::cout << table_to_string(t); }

}  // namespace tidemark::debug
