// A flat open-addressing index from 128-bit keys (already uniform hashes) to dense slot
// numbers, shared by groupby (groups) and join (buckets).
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <vector>

#include "tidemark/value.h"

namespace tidemark::engine {

// Linear probing, backward-shift deletion, no per-entry allocation.
class KeyIndex {
 public:
  static constexpr uint32_t kNone = ~uint32_t{0};
  size_t size() const { return size_; }
  uint32_t find(const Key& k) const {
    if (cells_.empty()) return kNone;
    for (size_t i = k.lo & mask_;; i = (i + 1) & mask_) {
      const Cell& c = cells_[i];
      if (c.slot == kNone) return kNone;
      if (c.key == k) return c.slot;
    }
  }
  // Hints the cache about the cell where find(k) starts (batched lookups hide the miss).
  void prefetch(const Key& k) const {
    if (!cells_.empty()) __builtin_prefetch(&cells_[k.lo & mask_]);
  }
  // Precondition: k absent.
  void insert(const Key& k, uint32_t slot) {
    if ((size_ + 1) * 8 > cells_.size() * 7) grow();
    place(k, slot);
    ++size_;
  }
  void erase(const Key& k) {
    if (cells_.empty()) return;
    size_t i = k.lo & mask_;
    while (!(cells_[i].key == k) || cells_[i].slot == kNone) {
      if (cells_[i].slot == kNone) return;
      i = (i + 1) & mask_;
    }
    // Backward shift: move later entries of the probe run into the hole.
    for (size_t j = (i + 1) & mask_;; j = (j + 1) & mask_) {
      if (cells_[j].slot == kNone) break;
      size_t home = cells_[j].key.lo & mask_;
      // Entry at j may fill hole i unless its home lies cyclically in (i, j].
      bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
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
  }

 private:
  struct Cell {
    Key key;
    uint32_t slot = kNone;
  };
  void place(const Key& k, uint32_t slot) {
    size_t i = k.lo & mask_;
    while (cells_[i].slot != kNone) i = (i + 1) & mask_;
    cells_[i] = {k, slot};
  }
  void grow() {
    std::vector<Cell> old = std::move(cells_);
    size_t n = old.empty() ? 64 : old.size() * 2;
    cells_.assign(n, Cell{});
    mask_ = n - 1;
    for (const Cell& c : old)
      if (c.slot != kNone) place(c.key, c.slot);
  }
  std::vector<Cell> cells_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

// A flat open-addressing index from int64 values to dense slot numbers: groupby's index of
// groups by a single int grouping value, so a row finds its group by the value itself (one
// multiply) instead of through the 128-bit key of the value (an xxh3 per row). Fibonacci
// hashing, linear probing, backward-shift deletion.
class IntIndex {
 public:
  static constexpr uint32_t kNone = ~uint32_t{0};
  size_t size() const { return size_; }
  uint32_t find(int64_t v) const {
    if (cells_.empty()) return kNone;
    for (size_t i = home(v);; i = (i + 1) & mask_) {
      const Cell& c = cells_[i];
      if (c.slot == kNone) return kNone;
      if (c.value == v) return c.slot;
    }
  }
  void prefetch(int64_t v) const {
    if (!cells_.empty()) __builtin_prefetch(&cells_[home(v)]);
  }
  // Precondition: v absent.
  void insert(int64_t v, uint32_t slot) {
    if ((size_ + 1) * 8 > cells_.size() * 7) grow();
    place(v, slot);
    ++size_;
  }
  void erase(int64_t v) {
    if (cells_.empty()) return;
    size_t i = home(v);
    while (cells_[i].slot == kNone || cells_[i].value != v) {
      if (cells_[i].slot == kNone) return;
      i = (i + 1) & mask_;
    }
    for (size_t j = (i + 1) & mask_;; j = (j + 1) & mask_) {
      if (cells_[j].slot == kNone) break;
      const size_t h = home(cells_[j].value);
      const bool movable = i <= j ? (h <= i || h > j) : (h <= i && h > j);
      if (movable) {
        cells_[i] = cells_[j];
        i = j;
      }
    }
    cells_[i].slot = kNone;
    --size_;
  }
  void clear() {
    cells_.clear();
    size_ = 0;
    mask_ = 0;
    shift_ = 64;
  }

 private:
  struct Cell {
    int64_t value = 0;
    uint32_t slot = kNone;
  };
  size_t home(int64_t v) const {
    return static_cast<size_t>((static_cast<uint64_t>(v) * 0x9E3779B97F4A7C15ull) >> shift_) & mask_;
  }
  void place(int64_t v, uint32_t slot) {
    size_t i = home(v);
    while (cells_[i].slot != kNone) i = (i + 1) & mask_;
    cells_[i] = {v, slot};
  }
  void grow() {
    std::vector<Cell> old = std::move(cells_);
    const size_t n = old.empty() ? 64 : old.size() * 2;
    cells_.assign(n, Cell{});
    mask_ = n - 1;
    shift_ = 64 - static_cast<unsigned>(std::countr_zero(n));
    for (const Cell& c : old)
      if (c.slot != kNone) place(c.value, c.slot);
  }
  std::vector<Cell> cells_;
  size_t mask_ = 0;
  unsigned shift_ = 64;
  size_t size_ = 0;
};

}  // namespace tidemark::engine
