// Key derivation without allocation. KeyEncoder produces the bytes of codec::put_key_row over
// the values added (a varint count, then put_key_value of each) in a stack buffer and hashes
// them with XXH3-128: the same key as key_from_values() of those values. What does not fit the
// buffer (long strings, tuples) continues on the general codec path in a string.
#pragma once

#include <bit>
#include <cstring>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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
  // The key of a row of one value whose encoding is a tag and 8 payload bytes (int, float,
  // datetimes, duration), as begin(1) + add(v) + finish() gives it, into *key; false for any
  // other value (then use the general path). The 10 bytes are assembled in registers and
  // stored at once: hashing bytes just written piecewise stalls on store forwarding (the hash
  // reads 8-byte words spanning several small stores), which made this 2.4x slower.
  [[gnu::always_inline]] static bool single_fixed_key(const Value& v, Key* key) {
    uint64_t payload;
    DType t = v.type();
    switch (t) {
      case DType::kInt: payload = static_cast<uint64_t>(v.as_int()); break;
      case DType::kFloat: payload = canonical_float_bits(v.as_float()); break;
      case DType::kDateTimeNaive: payload = static_cast<uint64_t>(v.as_datetime_naive()); break;
      case DType::kDateTimeUtc: payload = static_cast<uint64_t>(v.as_datetime_utc()); break;
      case DType::kDuration: payload = static_cast<uint64_t>(v.as_duration()); break;
      default: return false;
    }
    if constexpr (std::endian::native != std::endian::little) return false;
    // Bytes: varint(1) = 0x01, the type tag, the payload little-endian.
    const uint64_t lo = 0x01u | (uint64_t{static_cast<uint8_t>(t)} << 8) | (payload << 16);
    const uint64_t hi = payload >> 48;
    alignas(16) unsigned char b[16];
#if defined(__SSE2__)
    _mm_store_si128(reinterpret_cast<__m128i*>(b),
                    _mm_set_epi64x(static_cast<long long>(hi), static_cast<long long>(lo)));
#else
    std::memcpy(b, &lo, 8);
    std::memcpy(b + 8, &hi, 8);
#endif
    XXH128_hash_t h = XXH3_128bits(b, 10);
    *key = Key{h.low64, h.high64};
    return true;
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
  void text(DType tag, std::string_view s, const Value& v) {
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
