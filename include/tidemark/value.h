// The data model: 128-bit row keys, dynamically typed values, rows and schemas' types.
//
// Value is a small tagged union. Strings, bytes and JSON own their text; tuples are shared
// immutable vectors (copying a Value never deep-copies a tuple). Values have a total order
// (first by type, then by value) and a stable hash, so they can key maps and be persisted.
#pragma once

#include <compare>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tidemark {

// A 128-bit row identifier ("pointer" in the reference's API).
struct Key {
  uint64_t lo = 0;
  uint64_t hi = 0;
  auto operator<=>(const Key&) const = default;
  bool operator==(const Key&) const = default;
  // 32 hex digits, most significant first.
  std::string to_string() const;
};

struct KeyHash {
  size_t operator()(const Key& k) const noexcept { return static_cast<size_t>(k.lo ^ (k.hi * 0x9E3779B97F4A7C15ULL)); }
};

// The numbers are persisted type tags (the tag byte of every encoded value, in state, caches
// and key derivation; docs/format/values.md): never renumber them or reuse a number, and give a
// new type the next free number.
enum class DType : uint8_t {
  kAny = 0,  // only in schemas/expressions: accepts every value
  kNone = 1,
  kBool = 2,
  kInt = 3,
  kFloat = 4,
  kString = 5,
  kBytes = 6,
  kPointer = 7,
  kTuple = 8,
  kDateTimeNaive = 9,
  kDateTimeUtc = 10,
  kDuration = 11,
  kJson = 12,
};

// Lower-case name used in messages and CLI flags ("int", "str", ...).
const char* dtype_name(DType t);

// A column or expression type: a base type, optionally nullable (Optional[T]).
struct Type {
  DType base = DType::kAny;
  bool optional = false;
  bool operator==(const Type&) const = default;
  std::string to_string() const;
  // True when a value of type `other` may be stored in a column of this type.
  bool accepts(const Type& other) const;
};

struct DateTimeNaive { int64_t ns = 0; auto operator<=>(const DateTimeNaive&) const = default; };
struct DateTimeUtc { int64_t ns = 0; auto operator<=>(const DateTimeUtc&) const = default; };
struct Duration { int64_t ns = 0; auto operator<=>(const Duration&) const = default; };

class Value;
using Row = std::vector<Value>;

class Value {
 public:
  struct Bytes { std::string data; auto operator<=>(const Bytes&) const = default; };
  struct Json { std::string text; auto operator<=>(const Json&) const = default; };  // compact, normalized
  using TuplePtr = std::shared_ptr<const std::vector<Value>>;

  Value() = default;  // None
  Value(std::nullptr_t) {}  // NOLINT
  Value(bool b) : v_(b) {}  // NOLINT
  Value(int v) : v_(static_cast<int64_t>(v)) {}  // NOLINT
  Value(int64_t v) : v_(v) {}  // NOLINT
  Value(double v) : v_(v) {}  // NOLINT
  Value(std::string s) : v_(std::move(s)) {}  // NOLINT
  Value(const char* s) : v_(std::string(s)) {}  // NOLINT
  Value(std::string_view s) : v_(std::string(s)) {}  // NOLINT
  Value(Key k) : v_(k) {}  // NOLINT
  Value(Bytes b) : v_(std::move(b)) {}  // NOLINT
  Value(Json j) : v_(std::move(j)) {}  // NOLINT
  Value(DateTimeNaive d) : v_(d) {}  // NOLINT
  Value(DateTimeUtc d) : v_(d) {}  // NOLINT
  Value(Duration d) : v_(d) {}  // NOLINT
  static Value tuple(std::vector<Value> items);
  static Value bytes(std::string data) { return Value(Bytes{std::move(data)}); }
  // Parses and normalizes JSON text; throws std::invalid_argument on malformed text.
  static Value json(std::string_view text);

  DType type() const {
    // Variant alternatives in declaration order (v_ below).
    static constexpr DType kTypes[] = {DType::kNone,  DType::kBool,          DType::kInt,         DType::kFloat,
                                       DType::kString, DType::kBytes,        DType::kPointer,     DType::kTuple,
                                       DType::kDateTimeNaive, DType::kDateTimeUtc, DType::kDuration, DType::kJson};
    size_t i = v_.index();
    return i < sizeof kTypes / sizeof kTypes[0] ? kTypes[i] : DType::kNone;
  }
  bool is_none() const { return v_.index() == 0; }
  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  double as_float() const { return std::get<double>(v_); }
  // Int or Float as double.
  double as_number() const;
  const std::string& as_string() const { return std::get<std::string>(v_); }
  const std::string& as_bytes() const { return std::get<Bytes>(v_).data; }
  const std::string& as_json() const { return std::get<Json>(v_).text; }
  const Key& as_pointer() const { return std::get<Key>(v_); }
  const std::vector<Value>& as_tuple() const { return *std::get<TuplePtr>(v_); }
  int64_t as_datetime_naive() const { return std::get<DateTimeNaive>(v_).ns; }
  int64_t as_datetime_utc() const { return std::get<DateTimeUtc>(v_).ns; }
  int64_t as_duration() const { return std::get<Duration>(v_).ns; }

  // Total order: by type tag, then by value (tuples lexicographically, NaN after numbers).
  std::strong_ordering operator<=>(const Value& o) const;
  bool operator==(const Value& o) const;
  size_t hash() const;

  // Human-readable form used by debug printing and CSV output: strings unquoted,
  // None as empty for CSV (see to_csv_field), tuples as (a, b), pointers as ^HEX.
  std::string to_string() const;

 private:
  std::variant<std::monostate, bool, int64_t, double, std::string, Bytes, Key, TuplePtr,
               DateTimeNaive, DateTimeUtc, Duration, Json>
      v_;
};

struct ValueHash {
  size_t operator()(const Value& v) const noexcept { return v.hash(); }
};
struct RowHash {
  size_t operator()(const Row& r) const noexcept;
};

// Key derivation. Keys are stable across runs, builds and machines (xxh3-128 over the values'
// binary encoding), so persisted state can refer to them.
Key key_from_values(const Row& values);
Key key_from_values_salted(uint64_t salt, const Row& values);
Key key_combine(const Key& a, const Key& b);
Key key_from_string(std::string_view s);

}  // namespace tidemark
