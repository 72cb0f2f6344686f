#include "engine/codec.h"

#include <cmath>
#include <cstring>

namespace tidemark::codec {

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_bytes(std::string& out, std::string_view s) {
  put_varint(out, s.size());
  out.append(s);
}

void put_value(std::string& out, const Value& v) {
  DType t = v.type();
  put_u8(out, static_cast<uint8_t>(t));
  switch (t) {
    case DType::kNone:
    case DType::kAny:
      break;
    case DType::kBool: put_u8(out, v.as_bool() ? 1 : 0); break;
    case DType::kInt: put_i64(out, v.as_int()); break;
    case DType::kFloat: {
      double d = v.as_float();
      uint64_t bits;
      std::memcpy(&bits, &d, 8);
      put_u64(out, bits);
      break;
    }
    case DType::kString: put_bytes(out, v.as_string()); break;
    case DType::kBytes: put_bytes(out, v.as_bytes()); break;
    case DType::kJson: put_bytes(out, v.as_json()); break;
    case DType::kPointer: put_key(out, v.as_pointer()); break;
    case DType::kTuple: put_row(out, v.as_tuple()); break;
    case DType::kDateTimeNaive: put_i64(out, v.as_datetime_naive()); break;
    case DType::kDateTimeUtc: put_i64(out, v.as_datetime_utc()); break;
    case DType::kDuration: put_i64(out, v.as_duration()); break;
  }
}

namespace {
// The tags are the DType numbers (docs/format/values.md); they are persisted and never renumbered.
static_assert(static_cast<uint8_t>(DType::kNone) == 1 && static_cast<uint8_t>(DType::kBool) == 2 &&
              static_cast<uint8_t>(DType::kInt) == 3 && static_cast<uint8_t>(DType::kFloat) == 4 &&
              static_cast<uint8_t>(DType::kString) == 5 && static_cast<uint8_t>(DType::kBytes) == 6 &&
              static_cast<uint8_t>(DType::kPointer) == 7 && static_cast<uint8_t>(DType::kTuple) == 8 &&
              static_cast<uint8_t>(DType::kDateTimeNaive) == 9 && static_cast<uint8_t>(DType::kDateTimeUtc) == 10 &&
              static_cast<uint8_t>(DType::kDuration) == 11 && static_cast<uint8_t>(DType::kJson) == 12,
              "value type tags are persisted: never renumber DType");
}  // namespace

void put_key_value(std::string& out, const Value& v) {
  switch (v.type()) {
    case DType::kFloat:
      put_u8(out, static_cast<uint8_t>(DType::kFloat));
      put_u64(out, canonical_float_bits(v.as_float()));
      return;
    case DType::kTuple:
      put_u8(out, static_cast<uint8_t>(DType::kTuple));
      put_key_row(out, v.as_tuple());
      return;
    default:
      put_value(out, v);
  }
}

void put_key_row(std::string& out, const Row& r) {
  put_varint(out, r.size());
  for (const Value& v : r) put_key_value(out, v);
}

void put_row(std::string& out, const Row& r) {
  put_varint(out, r.size());
  for (const Value& v : r) put_value(out, v);
}

bool get_varint(std::string_view& in, uint64_t* v) {
  uint64_t r = 0;
  for (int shift = 0; shift <= 63; shift += 7) {
    if (in.empty()) return false;
    uint8_t b = static_cast<uint8_t>(in[0]);
    in.remove_prefix(1);
    r |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}
bool get_bytes(std::string_view& in, std::string* s) {
  uint64_t n;
  if (!get_varint(in, &n) || in.size() < n) return false;
  s->assign(in.data(), n);
  in.remove_prefix(n);
  return true;
}

namespace {
// Deepest tuple nesting a reader accepts (values nest far less in practice).
constexpr int kMaxValueDepth = 200;
bool get_value_at(std::string_view& in, Value* v, int depth);
bool get_row_at(std::string_view& in, Row* r, int depth);
}  // namespace

bool get_value(std::string_view& in, Value* v) { return get_value_at(in, v, 0); }
bool get_row(std::string_view& in, Row* r) { return get_row_at(in, r, 0); }

namespace {

bool get_value_at(std::string_view& in, Value* v, int depth) {
  uint8_t tag;
  if (!get_u8(in, &tag)) return false;
  switch (static_cast<DType>(tag)) {
    case DType::kNone: *v = Value(); return true;
    case DType::kBool: {
      uint8_t b;
      if (!get_u8(in, &b)) return false;
      *v = Value(b != 0);
      return true;
    }
    case DType::kInt: {
      int64_t i;
      if (!get_i64(in, &i)) return false;
      *v = Value(i);
      return true;
    }
    case DType::kFloat: {
      uint64_t bits;
      if (!get_u64(in, &bits)) return false;
      double d;
      std::memcpy(&d, &bits, 8);
      *v = Value(d);
      return true;
    }
    case DType::kString: {
      std::string s;
      if (!get_bytes(in, &s)) return false;
      *v = Value(std::move(s));
      return true;
    }
    case DType::kBytes: {
      std::string s;
      if (!get_bytes(in, &s)) return false;
      *v = Value::bytes(std::move(s));
      return true;
    }
    case DType::kJson: {
      std::string s;
      if (!get_bytes(in, &s)) return false;
      *v = Value(Value::Json{std::move(s)});
      return true;
    }
    case DType::kPointer: {
      Key k;
      if (!get_key(in, &k)) return false;
      *v = Value(k);
      return true;
    }
    case DType::kTuple: {
      // Tuples nest by recursion: bounded, so damaged bytes (two bytes per level) cannot
      // overflow the stack here or in the recursive destructor of the value.
      Row r;
      if (depth >= kMaxValueDepth || !get_row_at(in, &r, depth + 1)) return false;
      *v = Value::tuple(std::vector<Value>(std::make_move_iterator(r.begin()), std::make_move_iterator(r.end())));
      return true;
    }
    case DType::kDateTimeNaive:
    case DType::kDateTimeUtc:
    case DType::kDuration: {
      int64_t ns;
      if (!get_i64(in, &ns)) return false;
      DType t = static_cast<DType>(tag);
      if (t == DType::kDateTimeNaive) *v = Value(DateTimeNaive{ns});
      else if (t == DType::kDateTimeUtc) *v = Value(DateTimeUtc{ns});
      else *v = Value(Duration{ns});
      return true;
    }
    default:
      return false;
  }
}

bool get_row_at(std::string_view& in, Row* r, int depth) {
  uint64_t n;
  if (!get_varint(in, &n) || n > in.size()) return false;  // every value takes at least a byte
  r->clear();
  r->reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    Value v;
    if (!get_value_at(in, &v, depth)) return false;
    r->push_back(std::move(v));
  }
  return true;
}

}  // namespace

}  // namespace tidemark::codec
