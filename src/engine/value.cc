#include "tidemark/value.h"

// Inlined: the hashes of short keys are on every row's path (same results as the library).
#include <algorithm>
#include <bit>
#include <cstring>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "engine/codec.h"
#include "engine/key_encoder.h"

namespace tidemark {

std::string Key::to_string() const {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(hi),
                static_cast<unsigned long long>(lo));
  return buf;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kAny: return "any";
    case DType::kNone: return "none";
    case DType::kBool: return "bool";
    case DType::kInt: return "int";
    case DType::kFloat: return "float";
    case DType::kString: return "str";
    case DType::kBytes: return "bytes";
    case DType::kPointer: return "pointer";
    case DType::kTuple: return "tuple";
    case DType::kDateTimeNaive: return "datetime_naive";
    case DType::kDateTimeUtc: return "datetime_utc";
    case DType::kDuration: return "duration";
    case DType::kJson: return "json";
  }
  return "?";
}

std::string Type::to_string() const {
  std::string s = dtype_name(base);
  if (optional && base != DType::kAny && base != DType::kNone) s = "optional[" + s + "]";
  return s;
}

bool Type::accepts(const Type& other) const {
  if (base == DType::kAny) return true;
  if (other.base == DType::kNone) return optional;
  if (other.base == DType::kAny) return true;  // checked at run time
  if (other.optional && !optional) return false;
  if (base == other.base) return true;
  return base == DType::kFloat && other.base == DType::kInt;
}

void Text::init_heap(std::string_view s) {
  void* p = ::operator new(sizeof(Block) + s.size());
  Block* k = new (p) Block{{1}, s.size()};
  std::memcpy(reinterpret_cast<char*>(k + 1), s.data(), s.size());
  std::memset(b_, 0, sizeof b_);
  std::memcpy(b_, &k, sizeof k);
  b_[15] = kHeapFlag;
}

void Text::free_block(Block* k) noexcept {
  k->~Block();
  ::operator delete(k);
}

Value Value::tuple(std::vector<Value> items) {
  Value v;
  v.v_ = std::make_shared<const std::vector<Value>>(std::move(items));
  return v;
}

Value Value::json(std::string_view text) {
  try {
    return json_normalized(nlohmann::json::parse(text).dump());
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(std::string("invalid JSON: ") + e.what());
  }
}

double Value::as_number() const {
  if (v_.index() == 2) return static_cast<double>(std::get<int64_t>(v_));
  return std::get<double>(v_);
}

namespace {
std::strong_ordering cmp_double(double a, double b) {
  bool na = std::isnan(a), nb = std::isnan(b);
  if (na || nb) return na == nb ? std::strong_ordering::equal : (na ? std::strong_ordering::greater : std::strong_ordering::less);
  if (a < b) return std::strong_ordering::less;
  if (a > b) return std::strong_ordering::greater;
  return std::strong_ordering::equal;
}
}  // namespace

std::strong_ordering Value::operator<=>(const Value& o) const {
  if (v_.index() != o.v_.index()) return v_.index() <=> o.v_.index();
  switch (v_.index()) {
    case 0: return std::strong_ordering::equal;
    case 1: return std::get<1>(v_) <=> std::get<1>(o.v_);
    case 2: return std::get<2>(v_) <=> std::get<2>(o.v_);
    case 3: return cmp_double(std::get<3>(v_), std::get<3>(o.v_));
    case 4: return std::get<4>(v_) <=> std::get<4>(o.v_);
    case 5: return std::get<5>(v_).t <=> std::get<5>(o.v_).t;
    case 6: return std::get<6>(v_) <=> std::get<6>(o.v_);
    case 7: {
      const auto& a = *std::get<7>(v_);
      const auto& b = *std::get<7>(o.v_);
      for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
        auto c = a[i] <=> b[i];
        if (c != 0) return c;
      }
      return a.size() <=> b.size();
    }
    case 8: return std::get<8>(v_) <=> std::get<8>(o.v_);
    case 9: return std::get<9>(v_) <=> std::get<9>(o.v_);
    case 10: return std::get<10>(v_) <=> std::get<10>(o.v_);
    case 11: return std::get<11>(v_).t <=> std::get<11>(o.v_).t;
  }
  return std::strong_ordering::equal;
}

bool Value::equals(const Value& o) const {
  if (v_.index() != o.v_.index()) return false;
  switch (v_.index()) {
    case 4: return std::get<4>(v_) == std::get<4>(o.v_);
    case 2: return std::get<2>(v_) == std::get<2>(o.v_);
    default: return (*this <=> o) == 0;
  }
}

size_t Value::hash() const {
  switch (v_.index()) {
    case 0: return 0x51ed27;
    case 2: return static_cast<size_t>(XXH3_64bits(&std::get<2>(v_), 8));
    case 4: {
      const std::string_view s = std::get<4>(v_).view();
      return static_cast<size_t>(XXH3_64bits(s.data(), s.size()));
    }
    default: {
      std::string buf;
      codec::put_key_value(buf, *this);  // canonical floats: equal values hash equally
      return static_cast<size_t>(XXH3_64bits(buf.data(), buf.size()));
    }
  }
}

void Row::grow_to(size_t n) {
  n = std::max<size_t>({n, size_t{cap_} * 2, 4});
  if (n > UINT32_MAX) throw std::length_error("row: too many values");
  Value* fresh = static_cast<Value*>(::operator new(n * sizeof(Value)));
  Value* old = data();
  for (uint32_t i = 0; i < size_; ++i) Value::relocate(fresh + i, old + i);
  if (cap_ > kInline) ::operator delete(heap_);
  heap_ = fresh;
  cap_ = static_cast<uint32_t>(n);
}

Value& Row::at(size_t i) {
  if (i >= size_) throw std::out_of_range("row: column " + std::to_string(i) + " of " + std::to_string(size_));
  return data()[i];
}
const Value& Row::at(size_t i) const { return const_cast<Row*>(this)->at(i); }

size_t RowHash::operator()(const Row& r) const noexcept {
  size_t h = 0x9E3779B97F4A7C15ULL;
  for (const Value& v : r) h = (h ^ v.hash()) * 0x100000001B3ULL + (h >> 29);
  return h;
}

namespace {
std::string format_double(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", d);
  // Shortest round-trip representation.
  for (int prec = 1; prec <= 17; ++prec) {
    char b2[32];
    std::snprintf(b2, sizeof b2, "%.*g", prec, d);
    if (std::strtod(b2, nullptr) == d) {
      std::string s = b2;
      if (s.find_first_of(".en") == std::string::npos) s += ".0";
      return s;
    }
  }
  return buf;
}

std::string format_ns_datetime(int64_t ns, bool utc) {
  int64_t secs = ns >= 0 ? ns / 1000000000 : -((-ns + 999999999) / 1000000000);
  int64_t rem = ns - secs * 1000000000;
  time_t tt = static_cast<time_t>(secs);
  struct tm tmv;
  gmtime_r(&tt, &tmv);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d", tmv.tm_year + 1900, tmv.tm_mon + 1,
                tmv.tm_mday, tmv.tm_hour, tmv.tm_min, tmv.tm_sec);
  std::string s = buf;
  if (rem) {
    char f[16];
    std::snprintf(f, sizeof f, ".%09lld", static_cast<long long>(rem));
    s += f;
  }
  if (utc) s += "+00:00";
  return s;
}
}  // namespace

std::string Value::to_string() const {
  switch (v_.index()) {
    case 0: return "None";
    case 1: return std::get<1>(v_) ? "True" : "False";
    case 2: return std::to_string(std::get<2>(v_));
    case 3: return format_double(std::get<3>(v_));
    case 4: return std::string(std::get<4>(v_).view());
    case 5: {
      std::string s = "b'";
      for (unsigned char c : std::get<5>(v_).t.view()) {
        if (c >= 32 && c < 127 && c != '\'' && c != '\\') s.push_back(static_cast<char>(c));
        else {
          char b[8];
          std::snprintf(b, sizeof b, "\\x%02x", c);
          s += b;
        }
      }
      return s + "'";
    }
    case 6: return "^" + std::get<6>(v_).to_string();
    case 7: {
      std::string s = "(";
      const auto& t = *std::get<7>(v_);
      for (size_t i = 0; i < t.size(); ++i) {
        if (i) s += ", ";
        s += t[i].type() == DType::kString ? "'" + t[i].to_string() + "'" : t[i].to_string();
      }
      if (t.size() == 1) s += ",";
      return s + ")";
    }
    case 8: return format_ns_datetime(std::get<8>(v_).ns, false);
    case 9: return format_ns_datetime(std::get<9>(v_).ns, true);
    case 10: return std::to_string(std::get<10>(v_).ns) + "ns";
    case 11: return std::string(std::get<11>(v_).t.view());
  }
  return "?";
}

namespace {
Key hash128(const std::string& buf) {
  XXH128_hash_t h = XXH3_128bits(buf.data(), buf.size());
  return Key{h.low64, h.high64};
}
}  // namespace

Key key_from_values(const Row& values) {
  codec::KeyEncoder enc;
  enc.begin(values.size());
  for (const Value& v : values) enc.add(v);
  return enc.finish();
}


Key key_from_values_salted(uint64_t salt, const Row& values) {
  std::string buf;
  codec::put_u64(buf, salt);
  codec::put_key_row(buf, values);
  return hash128(buf);
}

Key key_combine(const Key& a, const Key& b) {
  // Same bytes as codec::put_key(a) + put_key(b) (little-endian), without an allocation.
  unsigned char buf[32];
  const uint64_t words[4] = {a.lo, a.hi, b.lo, b.hi};
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(buf, words, sizeof buf);
  } else {
    for (int w = 0; w < 4; ++w)
      for (int i = 0; i < 8; ++i) buf[w * 8 + i] = static_cast<unsigned char>(words[w] >> (8 * i));
  }
  XXH128_hash_t h = XXH3_128bits(buf, sizeof buf);
  return Key{h.low64, h.high64};
}

Key key_from_string(std::string_view s) {
  XXH128_hash_t h = XXH3_128bits(s.data(), s.size());
  return Key{h.low64, h.high64};
}

}  // namespace tidemark
