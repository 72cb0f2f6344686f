// Text formats shared by the file connectors: RFC 4180 CSV records, typed parsing of CSV
// fields and JSON values against a schema type, and the reverse (values to CSV / JSON).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "tidemark/status.h"
#include "tidemark/value.h"

namespace tidemark::connectors {

struct CsvField {
  std::string text;
  bool quoted = false;  // "" (quoted empty) is an empty string; an unquoted empty field is None
};

// Reads CSV records from a whole file's text, tracking 1-based line numbers (a quoted field
// may span lines). Accepts LF and CRLF line ends; blank lines are skipped.
class CsvReader {
 public:
  CsvReader(std::string_view text, char delimiter);
  // Next record into *fields. Returns false at the end. On malformed input sets *error (and
  // skips to the next line so the caller may continue when skipping bad rows).
  bool next(std::vector<CsvField>* fields, std::string* error);
  // Line on which the record last returned by next() starts.
  size_t line() const { return record_line_; }

 private:
  std::string_view text_;
  char delim_;
  size_t pos_ = 0;
  size_t line_ = 1;
  size_t record_line_ = 0;
};

// Parses a CSV field as a value of column type `type`: int, float, bool, str, bytes, json
// or any (int/float/bool/str guessed); an unquoted empty field is None for optional types.
// Error message: "cannot parse 'x' as int".
Result<Value> parse_field(const CsvField& field, const Type& type);

// Converts a JSON value to a value of column type `type`, checking its JSON type.
Result<Value> json_to_value(const nlohmann::json& j, const Type& type);

// CSV text of a value (None -> empty, "" -> ""), quoted per RFC 4180 when needed.
std::string csv_field(const Value& v, char delimiter = ',');
std::string csv_quote(std::string_view s, char delimiter = ',');
nlohmann::json value_to_json(const Value& v);

}  // namespace tidemark::connectors
