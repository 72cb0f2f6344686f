// The data model: 128-bit row keys, dynamically typed values, rows and schemas' types.
//
// Value is a 24-byte tagged union (a 16-byte payload and its tag). Strings, bytes and JSON are
// immutable Texts: up to 15 bytes inline, longer ones in a heap block shared by copies; tuples
// are shared immutable vectors (copying a Value never deep-copies text or a tuple). Values have
// a total order (first by type, then by value) and a stable hash, so they can key maps and be
// persisted (the persisted encoding is docs/format/values.md, not this layout).
#pragma once

#include <atomic>
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

// A view of a value's text (Value::as_string, as_bytes, as_json): a std::string_view that also
// converts implicitly to std::string, as the std::string the accessors used to return did.
struct TextView : std::string_view {
  using std::string_view::string_view;
  TextView(std::string_view s) noexcept : std::string_view(s) {}  // NOLINT
  operator std::string() const { return std::string(data(), size()); }  // NOLINT
  std::string str() const { return std::string(data(), size()); }
};

// An immutable byte string in 16 bytes, the storage of Value's strings, bytes and JSON text:
// up to 15 bytes inline (no allocation, copied as bytes), longer ones in one heap block shared
// by its copies (an atomic reference count: copies may live on other worker threads). A Text
// holds no pointer into itself, so it may be relocated by copying its bytes.
class Text {
 public:
  static constexpr size_t kInlineMax = 15;
  Text() noexcept { std::memset(b_, 0, sizeof b_); }
  explicit Text(std::string_view s) {
    if (s.size() <= kInlineMax) {
      std::memset(b_, 0, sizeof b_);
      if (!s.empty()) std::memcpy(b_, s.data(), s.size());
      b_[15] = static_cast<unsigned char>(s.size());
    } else {
      init_heap(s);
    }
  }
  Text(const Text& o) noexcept {
    std::memcpy(b_, o.b_, sizeof b_);
    if (on_heap()) block()->refs.fetch_add(1, std::memory_order_relaxed);
  }
  Text(Text&& o) noexcept {
    std::memcpy(b_, o.b_, sizeof b_);
    std::memset(o.b_, 0, sizeof o.b_);
  }
  Text& operator=(const Text& o) noexcept {
    if (this != &o) {
      Text copy(o);
      swap(copy);
    }
    return *this;
  }
  Text& operator=(Text&& o) noexcept {
    if (this != &o) {
      release();
      std::memcpy(b_, o.b_, sizeof b_);
      std::memset(o.b_, 0, sizeof o.b_);
    }
    return *this;
  }
  ~Text() { release(); }
  void swap(Text& o) noexcept {
    unsigned char t[16];
    std::memcpy(t, b_, 16);
    std::memcpy(b_, o.b_, 16);
    std::memcpy(o.b_, t, 16);
  }

  std::string_view view() const {
    if (!on_heap()) return {reinterpret_cast<const char*>(b_), b_[15]};
    const Block* k = block();
    return {reinterpret_cast<const char*>(k + 1), k->size};
  }
  size_t size() const { return view().size(); }
  // True when the text is in a heap block (longer than kInlineMax): destroying it matters.
  bool on_heap() const { return (b_[15] & kHeapFlag) != 0; }
  // An inline text's 16 bytes (zero padded, its length in the last byte: equal inline texts
  // have equal bytes) as two little-endian words; false for a text on the heap.
  bool inline_words(uint64_t* lo, uint64_t* hi) const {
    if (on_heap()) return false;
    std::memcpy(lo, b_, 8);
    std::memcpy(hi, b_ + 8, 8);
    return true;
  }
  bool operator==(const Text& o) const {
    if (!on_heap() && !o.on_heap()) return std::memcmp(b_, o.b_, sizeof b_) == 0;  // zero padded
    return view() == o.view();
  }
  std::strong_ordering operator<=>(const Text& o) const { return view().compare(o.view()) <=> 0; }

 private:
  static constexpr unsigned char kHeapFlag = 0x80;
  struct Block {
    std::atomic<uint32_t> refs;
    size_t size;
  };
  Block* block() const {
    Block* k;
    std::memcpy(&k, b_, sizeof k);
    return k;
  }
  void init_heap(std::string_view s);  // value.cc
  void release() noexcept {
    if (on_heap()) {
      Block* k = block();
      if (k->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) free_block(k);
    }
  }
  static void free_block(Block* k) noexcept;  // value.cc
  alignas(8) unsigned char b_[16];
};

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
  Value(const std::string& s) : v_(Text(s)) {}  // NOLINT
  Value(const char* s) : v_(Text(s)) {}  // NOLINT
  Value(std::string_view s) : v_(Text(s)) {}  // NOLINT
  Value(Key k) : v_(k) {}  // NOLINT
  Value(const Bytes& b) : v_(BytesText{Text(b.data)}) {}  // NOLINT
  Value(const Json& j) : v_(JsonText{Text(j.text)}) {}  // NOLINT
  Value(DateTimeNaive d) : v_(d) {}  // NOLINT
  Value(DateTimeUtc d) : v_(d) {}  // NOLINT
  Value(Duration d) : v_(d) {}  // NOLINT
  static Value tuple(std::vector<Value> items);
  static Value bytes(std::string_view data) {
    Value v;
    v.v_ = BytesText{Text(data)};
    return v;
  }
  // Already normalized JSON text (as json() makes it, or as stored by the engine).
  static Value json_normalized(std::string_view text) {
    Value v;
    v.v_ = JsonText{Text(text)};
    return v;
  }
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
  // Views into the value: valid while it lives.
  TextView as_string() const { return std::get<Text>(v_).view(); }
  TextView as_bytes() const { return std::get<BytesText>(v_).t.view(); }
  TextView as_json() const { return std::get<JsonText>(v_).t.view(); }
  // A string (not bytes or JSON) of at most Text::kInlineMax bytes as its 16 inline bytes
  // (Text::inline_words): equal such strings give equal words. False for any other value.
  bool short_string_words(uint64_t* lo, uint64_t* hi) const {
    const Text* t = std::get_if<Text>(&v_);
    return t && t->inline_words(lo, hi);
  }
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
  // Every value but a tuple is plain bytes with no pointer into itself (numbers, dates, keys,
  // and texts: inline bytes or a counted pointer), so it is relocated by copying them: no
  // variant dispatch on the rows' hot paths (moves of inline rows, batch growth, sorting).
  static void relocate(Value* dst, Value* src) noexcept {
    if (src->v_.index() != 7) {
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
  // True when the value owns nothing (None, bool, int, float, pointer, date/time, duration, a
  // text of at most Text::kInlineMax bytes): destroying it has no effect, so a row may skip its
  // destructor, and a copy is its bytes.
  bool owns_nothing() const {
    constexpr unsigned kOwning = (1u << 4) | (1u << 5) | (1u << 7) | (1u << 11);  // str, bytes, tuple, json
    const size_t i = v_.index();
    if (((kOwning >> i) & 1u) == 0) return true;
    if (i == 7) return false;
    // The three text alternatives hold a Text first: its heap flag says.
    const Text* t = i == 4 ? std::get_if<4>(&v_) : i == 5 ? &std::get_if<5>(&v_)->t : &std::get_if<11>(&v_)->t;
    return !t->on_heap();
  }

 private:
  bool equals(const Value& o) const;
  struct BytesText {
    Text t;
    auto operator<=>(const BytesText&) const = default;
  };
  struct JsonText {
    Text t;
    auto operator<=>(const JsonText&) const = default;
  };
  std::variant<std::monostate, bool, int64_t, double, Text, BytesText, Key, TuplePtr, DateTimeNaive,
               DateTimeUtc, Duration, JsonText>
      v_;
  // The alternatives' indices that operator== and owns_nothing() name.
  static_assert(std::is_same_v<std::variant_alternative_t<2, decltype(v_)>, int64_t>);
  static_assert(std::is_same_v<std::variant_alternative_t<4, decltype(v_)>, Text>);
  static_assert(std::is_same_v<std::variant_alternative_t<5, decltype(v_)>, BytesText>);
  static_assert(std::is_same_v<std::variant_alternative_t<7, decltype(v_)>, TuplePtr>);
  static_assert(std::is_same_v<std::variant_alternative_t<11, decltype(v_)>, JsonText>);
  static_assert(std::variant_size_v<decltype(v_)> == 12);
};

static_assert(sizeof(Text) == 16);
static_assert(sizeof(Value) == 24, "a Value is a 16-byte payload and its tag");

// The values of one table row, a vector with room for kInline values inside the row itself:
// most engine rows (a word; a group's key and aggregate; a join's pair) need no allocation, and
// a batch's rows (an Update is 104 bytes: key, row, diff)
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
  static constexpr uint32_t kInline = 3;

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
