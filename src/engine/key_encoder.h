// Key derivation without allocation. KeyEncoder produces the bytes of codec::put_key_row over
// the values added (a varint count, then put_key_value of each) in a stack buffer and hashes
// them with XXH3-128: the same key as key_from_values() of those values. What does not fit the
// buffer (long strings, tuples) continues on the general codec path in a string.
#pragma once

#include <bit>
#include <cstring>
#include <string>

#include "engine/codec.h"
#include "tidemark/value.h"

// Inlined: a short key's hash is on every row's path (same results as the library's XXH3).
#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

namespace tidemark::codec {

class KeyEncoder {
 public:
  // Starts a key over `n_values` values (the row's length in put_key_row).
  void begin(size_t n_values) {
    n_ = 0;
    spilled_ = false;
    varint(n_values);
  }
  void add(const Value& v) {
    if (spilled_ || n_ + 24 > kCap) return add_general(v);
    switch (v.type()) {
      case DType::kAny:
      case DType::kNone: byte(static_cast<uint8_t>(DType::kNone)); return;
      case DType::kBool: byte(static_cast<uint8_t>(DType::kBool)); byte(v.as_bool() ? 1 : 0); return;
      case DType::kInt: byte(static_cast<uint8_t>(DType::kInt)); u64(static_cast<uint64_t>(v.as_int())); return;
      case DType::kFloat:
        byte(static_cast<uint8_t>(DType::kFloat));
        u64(canonical_float_bits(v.as_float()));
        return;
      case DType::kString: return text(DType::kString, v.as_string(), v);
      case DType::kBytes: return text(DType::kBytes, v.as_bytes(), v);
      case DType::kJson: return text(DType::kJson, v.as_json(), v);
      case DType::kPointer:
        byte(static_cast<uint8_t>(DType::kPointer));
        u64(v.as_pointer().lo);
        u64(v.as_pointer().hi);
        return;
      case DType::kDateTimeNaive: byte(static_cast<uint8_t>(DType::kDateTimeNaive)); u64(static_cast<uint64_t>(v.as_datetime_naive())); return;
      case DType::kDateTimeUtc: byte(static_cast<uint8_t>(DType::kDateTimeUtc)); u64(static_cast<uint64_t>(v.as_datetime_utc())); return;
      case DType::kDuration: byte(static_cast<uint8_t>(DType::kDuration)); u64(static_cast<uint64_t>(v.as_duration())); return;
      case DType::kTuple: return add_general(v);
    }
  }
  // The key of the values added since begin(): xxh3-128 of the bytes.
  Key finish() const {
    std::string_view b = bytes();
    XXH128_hash_t h = XXH3_128bits(b.data(), b.size());
    return Key{h.low64, h.high64};
  }
  // The encoded bytes (for tests).
  std::string_view bytes() const { return spilled_ ? std::string_view(spill_) : std::string_view(buf_, n_); }

 private:
  static constexpr size_t kCap = 256;
  void byte(uint8_t b) { buf_[n_++] = static_cast<char>(b); }
  void u64(uint64_t x) {
    if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(buf_ + n_, &x, 8);
    } else {
      for (int i = 0; i < 8; ++i) buf_[n_ + i] = static_cast<char>((x >> (8 * i)) & 0xff);
    }
    n_ += 8;
  }
  void varint(uint64_t x) {
    while (x >= 0x80) {
      byte(static_cast<uint8_t>((x & 0x7f) | 0x80));
      x >>= 7;
    }
    byte(static_cast<uint8_t>(x));
  }
  void text(DType tag, const std::string& s, const Value& v) {
    if (n_ + 1 + 10 + s.size() > kCap) return add_general(v);
    byte(static_cast<uint8_t>(tag));
    varint(s.size());
    std::memcpy(buf_ + n_, s.data(), s.size());
    n_ += s.size();
  }
  void add_general(const Value& v) {
    if (!spilled_) {
      spill_.assign(buf_, n_);
      spilled_ = true;
    }
    put_key_value(spill_, v);
  }

  char buf_[kCap];
  size_t n_ = 0;
  bool spilled_ = false;
  std::string spill_;
};

}  // namespace tidemark::codec
