// Binary encoding of values, rows and keys: little-endian, explicit widths, one tag byte per
// value (tags are DType numbers and are never reused). Used for key derivation (so keys are
// stable across runs and machines) and by operator state and persistence snapshots.
// The byte-exact layout is documented in docs/format/values.md.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "tidemark/status.h"
#include "tidemark/value.h"

namespace tidemark::codec {

// Fixed-width integers, little-endian (inline: partials, state entries and keys encode
// millions of them per second). The memcpy of a native integer is the little-endian layout on
// the little-endian hosts we build for (checked below).
static_assert(std::endian::native == std::endian::little, "codec: the fixed-width encodings assume a little-endian host");
inline void put_u8(std::string& out, uint8_t v) { out.push_back(static_cast<char>(v)); }
inline void put_u32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
inline void put_u64(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); }
inline void put_i64(std::string& out, int64_t v) { put_u64(out, static_cast<uint64_t>(v)); }
inline void put_key(std::string& out, const Key& k) {
  uint64_t w[2] = {k.lo, k.hi};
  out.append(reinterpret_cast<const char*>(w), 16);
}
void put_varint(std::string& out, uint64_t v);
void put_bytes(std::string& out, std::string_view s);  // varint length + bytes
void put_value(std::string& out, const Value& v);
void put_row(std::string& out, const Row& r);  // varint count + values
// The encoding that keys and hashes are computed over: put_value/put_row with every float in
// its canonical form (-0.0 as 0.0, every NaN as the quiet NaN 0x7ff8000000000000), so values
// that compare equal encode, hash and key equally. Identical to put_value otherwise.
void put_key_value(std::string& out, const Value& v);
// The bits put_key_value writes for a float: -0.0 as 0.0, every NaN as 0x7ff8000000000000.
inline uint64_t canonical_float_bits(double d) {
  if (d != d) return 0x7ff8000000000000ULL;  // NaN
  if (d == 0) return 0;                       // -0.0 == 0.0
  uint64_t bits;
  __builtin_memcpy(&bits, &d, 8);
  return bits;
}
void put_key_row(std::string& out, const Row& r);

// Readers consume from the front of `in`; they return false on truncated or invalid input.
inline bool get_u8(std::string_view& in, uint8_t* v) {
  if (in.empty()) return false;
  *v = static_cast<uint8_t>(in[0]);
  in.remove_prefix(1);
  return true;
}
inline bool get_u32(std::string_view& in, uint32_t* v) {
  if (in.size() < 4) return false;
  std::memcpy(v, in.data(), 4);
  in.remove_prefix(4);
  return true;
}
inline bool get_u64(std::string_view& in, uint64_t* v) {
  if (in.size() < 8) return false;
  std::memcpy(v, in.data(), 8);
  in.remove_prefix(8);
  return true;
}
inline bool get_i64(std::string_view& in, int64_t* v) {
  uint64_t u;
  if (!get_u64(in, &u)) return false;
  *v = static_cast<int64_t>(u);
  return true;
}
inline bool get_key(std::string_view& in, Key* k) { return get_u64(in, &k->lo) && get_u64(in, &k->hi); }
bool get_varint(std::string_view& in, uint64_t* v);
bool get_bytes(std::string_view& in, std::string* s);
bool get_value(std::string_view& in, Value* v);
bool get_row(std::string_view& in, Row* r);

}  // namespace tidemark::codec
