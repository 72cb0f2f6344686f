// Binary encoding of values, rows and keys: little-endian, explicit widths, one tag byte per
// value (tags are DType numbers and are never reused). Used for key derivation (so keys are
// stable across runs and machines) and by operator state and persistence snapshots.
// The byte-exact layout is documented in docs/format/values.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "tidemark/status.h"
#include "tidemark/value.h"

namespace tidemark::codec {

void put_u8(std::string& out, uint8_t v);
void put_u32(std::string& out, uint32_t v);
void put_u64(std::string& out, uint64_t v);
void put_varint(std::string& out, uint64_t v);
void put_bytes(std::string& out, std::string_view s);  // varint length + bytes
void put_key(std::string& out, const Key& k);
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
bool get_u8(std::string_view& in, uint8_t* v);
bool get_u32(std::string_view& in, uint32_t* v);
bool get_u64(std::string_view& in, uint64_t* v);
bool get_varint(std::string_view& in, uint64_t* v);
bool get_bytes(std::string_view& in, std::string* s);
bool get_key(std::string_view& in, Key* k);
bool get_value(std::string_view& in, Value* v);
bool get_row(std::string_view& in, Row* r);
bool get_i64(std::string_view& in, int64_t* v);
void put_i64(std::string& out, int64_t v);

}  // namespace tidemark::codec
