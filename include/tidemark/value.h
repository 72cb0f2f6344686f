// The data model: 128-bit row keys, dynamically typed values, rows and schemas' types.
//
// Value is a small tagged union. Strings, bytes and JSON own their text; tuples are shared
// immutable vectors (copying a Value never deep-copies a tuple). Values have a total order
// (first by type, then by value) and a stable hash, so they can key maps and be persisted.
#pragma once

#include <compare>
#include <cstddef>
#include <initializer_list>
#include <iterator>
#include <new>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
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
  bool operator==(const Value& o) const {
    if (v_.index() == 2 && o.v_.index() == 2) return *std::get_if<2>(&v_) == *std::get_if<2>(&o.v_);  // ints inline
    return equals(o);
  }
  size_t hash() const;

  // Human-readable form used by debug printing and CSV output: strings unquoted,
  // None as empty for CSV (see to_csv_field), tuples as (a, b), pointers as ^HEX.
  std::string to_string() const;

  // Moves *src into the raw storage dst and ends *src's lifetime (no destructor to run after).
  // A value that owns nothing is plain bytes (no pointer into itself, nothing to release), so
  // it is relocated by copying them: no variant dispatch on the rows' hot paths (moves of
  // inline rows, batch growth, sorting). Owning values (strings keep a pointer into themselves)
  // are move-constructed and destroyed.
  static void relocate(Value* dst, Value* src) noexcept {
    if (src->owns_nothing()) {
      std::memcpy(static_cast<void*>(dst), static_cast<const void*>(src), sizeof(Value));
    } else {
      new (dst) Value(std::move(*src));
      src->~Value();
    }
  }
  // Copy-constructs this value into the raw storage dst (bytes too for a value owning nothing).
  void copy_to(Value* dst) const {
    if (owns_nothing()) std::memcpy(static_cast<void*>(dst), static_cast<const void*>(this), sizeof(Value));
    else new (dst) Value(*this);
  }
  // True when the value owns nothing (None, bool, int, float, pointer, date/time, duration):
  // destroying it has no effect, so a row may skip its destructor.
  bool owns_nothing() const {
    constexpr unsigned kOwning = (1u << 4) | (1u << 5) | (1u << 7) | (1u << 11);  // str, bytes, tuple, json
    return ((kOwning >> v_.index()) & 1u) == 0;
  }

 private:
  bool equals(const Value& o) const;
  std::variant<std::monostate, bool, int64_t, double, std::string, Bytes, Key, TuplePtr,
               DateTimeNaive, DateTimeUtc, Duration, Json>
      v_;
  // The alternatives' indices that operator== and owns_nothing() name.
  static_assert(std::is_same_v<std::variant_alternative_t<2, decltype(v_)>, int64_t>);
  static_assert(std::is_same_v<std::variant_alternative_t<4, decltype(v_)>, std::string>);
  static_assert(std::is_same_v<std::variant_alternative_t<5, decltype(v_)>, Bytes>);
  static_assert(std::is_same_v<std::variant_alternative_t<7, decltype(v_)>, TuplePtr>);
  static_assert(std::is_same_v<std::variant_alternative_t<11, decltype(v_)>, Json>);
  static_assert(std::variant_size_v<decltype(v_)> == 12);
};

// The values of one table row, a vector with room for kInline values inside the row itself:
// most engine rows (a word; a group's key and aggregate) need no allocation, and a batch's rows
// lie in its updates' array instead of one heap block each. The interface is std::vector's
// (the subset the engine and its users need); iterators are pointers. Not thread-safe.
class Row {
 public:
  using value_type = Value;
  using size_type = size_t;
  using difference_type = std::ptrdiff_t;
  using reference = Value&;
  using const_reference = const Value&;
  using pointer = Value*;
  using const_pointer = const Value*;
  using iterator = Value*;
  using const_iterator = const Value*;
  static constexpr uint32_t kInline = 2;

  Row() noexcept {}
  Row(std::initializer_list<Value> values) { append_copies(values.begin(), values.size()); }
  explicit Row(size_t n) { resize(n); }
  Row(size_t n, const Value& v) {
    reserve(n);
    for (size_t i = 0; i < n; ++i) new (data() + i) Value(v);
    size_ = static_cast<uint32_t>(n);
  }
  template <class It, class = typename std::iterator_traits<It>::iterator_category>
  Row(It first, It last) {
    for (; first != last; ++first) emplace_back(*first);
  }
  Row(const std::vector<Value>& values) { append_copies(values.data(), values.size()); }  // NOLINT
  Row(std::vector<Value>&& values) {  // NOLINT
    reserve(values.size());
    for (Value& v : values) new (data() + size_++) Value(std::move(v));
  }
  Row(const Row& o) { append_copies(o.data(), o.size_); }
  Row(Row&& o) noexcept { take(o); }
  Row& operator=(const Row& o) {
    if (this != &o) {
      clear();
      append_copies(o.data(), o.size_);
    }
    return *this;
  }
  Row& operator=(Row&& o) noexcept {
    if (this != &o) {
      release();
      take(o);
    }
    return *this;
  }
  Row& operator=(std::initializer_list<Value> values) {
    clear();
    append_copies(values.begin(), values.size());
    return *this;
  }
  // Writes nothing to the row (a destroyed batch's rows are only read: no dirty cache lines to
  // write back).
  ~Row() {
    Value* d = data();
    for (uint32_t i = 0; i < size_; ++i) destroy(d + i);
    if (cap_ > kInline) ::operator delete(heap_);
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return cap_; }
  Value* data() { return cap_ > kInline ? heap_ : inline_; }
  const Value* data() const { return cap_ > kInline ? heap_ : inline_; }
  Value* begin() { return data(); }
  Value* end() { return data() + size_; }
  const Value* begin() const { return data(); }
  const Value* end() const { return data() + size_; }
  const Value* cbegin() const { return data(); }
  const Value* cend() const { return data() + size_; }
  Value& operator[](size_t i) { return data()[i]; }
  const Value& operator[](size_t i) const { return data()[i]; }
  Value& at(size_t i);
  const Value& at(size_t i) const;
  Value& front() { return data()[0]; }
  const Value& front() const { return data()[0]; }
  Value& back() { return data()[size_ - 1]; }
  const Value& back() const { return data()[size_ - 1]; }

  void reserve(size_t n) {
    if (n > cap_) grow_to(n);
  }
  template <class... Args>
  Value& emplace_back(Args&&... args) {
    if (size_ == cap_) [[unlikely]] {  // the arguments may be values of this row: build first
      Value v(std::forward<Args>(args)...);
      grow_to(size_t{cap_} * 2);
      Value* p = new (data() + size_) Value(std::move(v));
      ++size_;
      return *p;
    }
    Value* p = new (data() + size_) Value(std::forward<Args>(args)...);
    ++size_;
    return *p;
  }
  void push_back(const Value& v) { emplace_back(v); }
  void push_back(Value&& v) { emplace_back(std::move(v)); }
  void pop_back() { destroy(data() + --size_); }
  void clear() {
    Value* d = data();
    for (uint32_t i = 0; i < size_; ++i) destroy(d + i);
    size_ = 0;
  }
  void resize(size_t n) {
    reserve(n);
    while (size_ > n) pop_back();
    while (size_ < n) new (data() + size_++) Value();
  }
  // Inserts [first, last) before pos.
  template <class It>
  Value* insert(const Value* pos, It first, It last) {
    size_t at = static_cast<size_t>(pos - data());
    if constexpr (std::is_pointer_v<It>) {
      if (first != last && &*first >= data() && &*first < data() + size_) {  // from this row itself
        Row copy(first, last);
        return insert(data() + at, copy.begin(), copy.end());
      }
    }
    Row tail;
    tail.reserve(size_ - at);
    while (size_ > at) {
      tail.emplace_back(std::move(back()));
      pop_back();
    }
    for (; first != last; ++first) emplace_back(*first);
    for (size_t i = tail.size(); i-- > 0;) emplace_back(std::move(tail[i]));
    return data() + at;
  }
  Value* insert(const Value* pos, const Value& v) { return insert(pos, &v, &v + 1); }
  Value* erase(const Value* first, const Value* last) {
    Value* d = data();
    size_t a = static_cast<size_t>(first - d), b = static_cast<size_t>(last - d);
    if (a == b) return d + a;  // nothing to erase (and no value moved onto itself)
    for (size_t i = b; i < size_; ++i) d[a + i - b] = std::move(d[i]);
    size_t n = size_ - (b - a);
    while (size_ > n) pop_back();
    return d + a;
  }
  Value* erase(const Value* pos) { return erase(pos, pos + 1); }
  void swap(Row& o) noexcept {
    Row t(std::move(o));
    o = std::move(*this);
    *this = std::move(t);
  }
  std::vector<Value> to_vector() const { return std::vector<Value>(begin(), end()); }

  bool operator==(const Row& o) const {
    if (size_ != o.size_) return false;
    const Value *a = data(), *b = o.data();
    for (uint32_t i = 0; i < size_; ++i)
      if (!(a[i] == b[i])) return false;
    return true;
  }
  std::strong_ordering operator<=>(const Row& o) const {
    const Value *a = data(), *b = o.data();
    for (uint32_t i = 0; i < size_ && i < o.size_; ++i)
      if (auto c = a[i] <=> b[i]; c != 0) return c;
    return size_ <=> o.size_;
  }

 private:
  static void destroy(Value* v) {
    if (!v->owns_nothing()) v->~Value();
  }
  void append_copies(const Value* src, size_t n) {
    reserve(size_ + n);
    Value* d = data() + size_;
    for (size_t i = 0; i < n; ++i) src[i].copy_to(d + i);
    size_ += static_cast<uint32_t>(n);
  }
  void grow_to(size_t n);
  // Destroys the values and frees the heap block (the row is left unusable until take()).
  void release() {
    clear();
    if (cap_ > kInline) ::operator delete(heap_);
    cap_ = kInline;
  }
  // Precondition: this row holds nothing (released). Leaves o empty.
  void take(Row& o) noexcept {
    if (o.cap_ > kInline) {
      heap_ = o.heap_;
      cap_ = o.cap_;
      size_ = o.size_;
      o.cap_ = kInline;
      o.size_ = 0;
      return;
    }
    for (uint32_t i = 0; i < o.size_; ++i) Value::relocate(inline_ + i, o.inline_ + i);
    size_ = o.size_;
    o.size_ = 0;
  }

  uint32_t size_ = 0;
  uint32_t cap_ = kInline;
  union {
    Value inline_[kInline];
    Value* heap_;
  };
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
