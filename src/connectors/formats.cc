#include "connectors/formats.h"

#include <charconv>
#include <cstdlib>

namespace tidemark::connectors {

CsvReader::CsvReader(std::string_view text, char delimiter) : text_(text), delim_(delimiter) {
  if (text_.starts_with("\xEF\xBB\xBF")) pos_ = 3;  // UTF-8 byte order mark
}

bool CsvReader::next(std::vector<CsvField>* fields, std::string* error) {
  error->clear();
  fields->clear();
  const size_t n = text_.size();
  auto at_eol = [&](size_t p) { return p < n && (text_[p] == '\n' || (text_[p] == '\r' && p + 1 < n && text_[p + 1] == '\n')); };
  auto skip_eol = [&] {
    pos_ += text_[pos_] == '\r' ? 2 : 1;
    ++line_;
  };
  while (at_eol(pos_)) skip_eol();
  if (pos_ >= n) return false;
  record_line_ = line_;
  auto fail = [&](std::string msg) {
    *error = std::move(msg);
    while (pos_ < n && !at_eol(pos_)) ++pos_;  // resume on the next line
    if (pos_ < n) skip_eol();
    return true;
  };
  for (;;) {
    CsvField f;
    if (pos_ < n && text_[pos_] == '"') {
      f.quoted = true;
      ++pos_;
      for (;;) {
        if (pos_ >= n) {
          *error = "unterminated quoted field";
          return true;  // the rest of the file is inside the quote: nothing left to read
        }
        char c = text_[pos_];
        if (c == '"') {
          if (pos_ + 1 < n && text_[pos_ + 1] == '"') {
            f.text.push_back('"');
            pos_ += 2;
            continue;
          }
          ++pos_;
          break;
        }
        if (c == '\n') ++line_;
        f.text.push_back(c);
        ++pos_;
      }
      if (pos_ < n && text_[pos_] != delim_ && !at_eol(pos_))
        return fail("unexpected character after closing quote of field " + std::to_string(fields->size() + 1));
    } else {
      size_t start = pos_;
      while (pos_ < n && text_[pos_] != delim_ && !at_eol(pos_)) {
        if (text_[pos_] == '"')
          return fail("stray '\"' in unquoted field " + std::to_string(fields->size() + 1) +
                      " (quote the field and double the quote)");
        ++pos_;
      }
      f.text.assign(text_.substr(start, pos_ - start));
    }
    fields->push_back(std::move(f));
    if (pos_ >= n) return true;
    if (text_[pos_] == delim_) {
      ++pos_;
      continue;
    }
    skip_eol();
    return true;
  }
}

namespace {

std::string shorten(std::string_view s) {
  if (s.size() <= 60) return std::string(s);
  return std::string(s.substr(0, 57)) + "...";
}

Status cannot_parse(std::string_view text, const char* what) {
  return Status::invalid_argument("cannot parse '" + shorten(text) + "' as " + what);
}

std::optional<int64_t> parse_int(std::string_view s) {
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  int64_t v;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::optional<double> parse_float(std::string_view s) {
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  double v;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::optional<bool> parse_bool(std::string_view s) {
  if (s == "true" || s == "True" || s == "TRUE" || s == "1") return true;
  if (s == "false" || s == "False" || s == "FALSE" || s == "0") return false;
  return std::nullopt;
}

}  // namespace

Result<Value> parse_field(const CsvField& field, const Type& type) {
  const std::string& s = field.text;
  if (s.empty() && !field.quoted && (type.optional || type.base == DType::kNone)) return Value();
  switch (type.base) {
    case DType::kInt:
      if (auto v = parse_int(s)) return Value(*v);
      return cannot_parse(s, "int");
    case DType::kFloat:
      if (auto v = parse_float(s)) return Value(*v);
      return cannot_parse(s, "float");
    case DType::kBool:
      if (auto v = parse_bool(s)) return Value(*v);
      return cannot_parse(s, "bool");
    case DType::kString: return Value(s);
    case DType::kBytes: return Value::bytes(s);
    case DType::kJson:
      try {
        return Value::json(s);
      } catch (const std::exception&) {
        return cannot_parse(s, "json");
      }
    case DType::kAny:
      if (auto v = parse_int(s)) return Value(*v);
      if (auto v = parse_float(s)) return Value(*v);
      if (auto v = parse_bool(s)) return Value(*v);
      return Value(s);
    default: return cannot_parse(s, dtype_name(type.base));
  }
}

Result<Value> json_to_value(const nlohmann::json& j, const Type& type) {
  auto mismatch = [&](const char* want) {
    return Status::invalid_argument(std::string("expected ") + want + ", got " +
                                    shorten(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
  };
  if (j.is_null()) {
    if (type.optional || type.base == DType::kNone) return Value();
    return mismatch(dtype_name(type.base));
  }
  switch (type.base) {
    case DType::kInt:
      if (j.is_number_integer()) {
        if (j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) return mismatch("int");
        return Value(j.get<int64_t>());
      }
      return mismatch("int");
    case DType::kFloat:
      if (j.is_number()) return Value(j.get<double>());
      return mismatch("float");
    case DType::kBool:
      if (j.is_boolean()) return Value(j.get<bool>());
      return mismatch("bool");
    case DType::kString:
      if (j.is_string()) return Value(j.get<std::string>());
      return mismatch("str");
    case DType::kBytes:
      if (j.is_string()) return Value::bytes(j.get<std::string>());
      return mismatch("bytes (a JSON string)");
    case DType::kJson: return Value(Value::Json{j.dump()});
    case DType::kAny:
      if (j.is_boolean()) return Value(j.get<bool>());
      if (j.is_number_integer() && !j.is_number_unsigned()) return Value(j.get<int64_t>());
      if (j.is_number()) return Value(j.get<double>());
      if (j.is_string()) return Value(j.get<std::string>());
      return Value(Value::Json{j.dump()});
    default: return mismatch(dtype_name(type.base));
  }
}

std::string csv_quote(std::string_view s, char delimiter) {
  if (s.find_first_of(std::string{'"', '\n', '\r', delimiter}) == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string csv_field(const Value& v, char delimiter) {
  switch (v.type()) {
    case DType::kNone: return "";
    case DType::kString: return v.as_string().empty() ? "\"\"" : csv_quote(v.as_string(), delimiter);
    case DType::kBytes: return csv_quote(v.as_bytes(), delimiter);
    default: return csv_quote(v.to_string(), delimiter);
  }
}

nlohmann::json value_to_json(const Value& v) {
  switch (v.type()) {
    case DType::kNone: return nullptr;
    case DType::kBool: return v.as_bool();
    case DType::kInt: return v.as_int();
    case DType::kFloat: return v.as_float();
    case DType::kString: return v.as_string();
    case DType::kDuration: return v.as_duration();
    case DType::kJson: return nlohmann::json::parse(v.as_json());
    case DType::kTuple: {
      nlohmann::json a = nlohmann::json::array();
      for (const Value& x : v.as_tuple()) a.push_back(value_to_json(x));
      return a;
    }
    default: return v.to_string();  // bytes as b'..', pointers as ^HEX, date-times as ISO 8601
  }
}

}  // namespace tidemark::connectors
