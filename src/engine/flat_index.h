// Flat open-addressing indexes to dense slot numbers, shared by groupby (groups) and join
// (buckets): KeyIndex from 128-bit keys (already uniform hashes), IntIndex from int64 values
// and ShortTextIndex from strings of up to 15 bytes (groupby's indexes of groups by a single
// grouping value, so a row finds its group by the value itself, a few multiplies, instead of
// through the 128-bit key of the value, an encoding and an xxh3 per row).
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <vector>

#include "tidemark/value.h"

namespace tidemark::engine {

// Linear probing, backward-shift deletion, no per-entry allocation. A key's home cell is the
// top bits of Mix::mix(key) (a 64-bit value with uniform top bits).
template <class K, class Mix>
class FlatIndex {
 public:
  static constexpr uint32_t kNone = ~uint32_t{0};
  size_t size() const { return size_; }
  uint32_t find(const K& k) const {
    if (cells_.empty()) return kNone;
    for (size_t i = home(k);; i = (i + 1) & mask_) {
      const Cell& c = cells_[i];
      if (c.slot == kNone) return kNone;
      if (c.key == k) return c.slot;
    }
  }
  // Hints the cache about the cell where find(k) starts (batched lookups hide the miss).
  void prefetch(const K& k) const {
    if (!cells_.empty()) __builtin_prefetch(&cells_[home(k)]);
  }
  // Precondition: k absent.
  void insert(const K& k, uint32_t slot) {
    if ((size_ + 1) * 8 > cells_.size() * 7) grow();
    place(k, slot);
    ++size_;
  }
  // Erases k if present.
  void erase(const K& k) {
    if (cells_.empty()) return;
    size_t i = home(k);
    while (cells_[i].slot == kNone || !(cells_[i].key == k)) {
      if (cells_[i].slot == kNone) return;
      i = (i + 1) & mask_;
    }
    // Backward shift: move later entries of the probe run into the hole.
    for (size_t j = (i + 1) & mask_;; j = (j + 1) & mask_) {
      if (cells_[j].slot == kNone) break;
      const size_t h = home(cells_[j].key);
      // Entry at j may fill hole i unless its home lies cyclically in (i, j].
      const bool movable = i <= j ? (h <= i || h > j) : (h <= i && h > j);
      if (movable) {
        cells_[i] = cells_[j];
        i = j;
      }
    }
    cells_[i].slot = kNone;
    --size_;
  }
  // Empties the index and keeps its cells (for an index refilled to about the same size).
  void reset() {
    std::fill(cells_.begin(), cells_.end(), Cell{});
    size_ = 0;
  }
  void clear() {
    cells_.clear();
    size_ = 0;
    mask_ = 0;
    shift_ = 63;
  }

 private:
  struct Cell {
    K key{};
    uint32_t slot = kNone;
  };
  size_t home(const K& k) const { return static_cast<size_t>(Mix::mix(k) >> shift_) & mask_; }
  void place(const K& k, uint32_t slot) {
    size_t i = home(k);
    while (cells_[i].slot != kNone) i = (i + 1) & mask_;
    cells_[i] = {k, slot};
  }
  void grow() {
    std::vector<Cell> old = std::move(cells_);
    const size_t n = old.empty() ? 64 : old.size() * 2;
    cells_.assign(n, Cell{});
    mask_ = n - 1;
    shift_ = 64 - static_cast<unsigned>(std::countr_zero(n));
    for (const Cell& c : old)
      if (c.slot != kNone) place(c.key, c.slot);
  }
  std::vector<Cell> cells_;
  size_t mask_ = 0;
  unsigned shift_ = 63;  // 64 - log2(cells); only read with cells
  size_t size_ = 0;
};

struct KeyMix {
  static uint64_t mix(const Key& k) { return k.lo; }  // a key is already a uniform hash
};
struct IntMix {
  static uint64_t mix(int64_t v) { return static_cast<uint64_t>(v) * 0x9E3779B97F4A7C15ull; }  // Fibonacci hashing
};
// The 16 inline bytes of a short string (Value::short_string_words) as a Key: not a uniform
// hash, so mixed (every input bit reaches the top bits).
struct ShortTextMix {
  static uint64_t mix(const Key& k) {
    uint64_t x = (k.lo ^ (k.hi * 0xC2B2AE3D27D4EB4Full)) * 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    return x * 0xBF58476D1CE4E5B9ull;
  }
};

using KeyIndex = FlatIndex<Key, KeyMix>;
using IntIndex = FlatIndex<int64_t, IntMix>;
using ShortTextIndex = FlatIndex<Key, ShortTextMix>;  // short strings by their inline bytes

}  // namespace tidemark::engine
