// Arrangements: an operator's indexed input rows in compact form, the state that operator
// persisting stores and a restart loads back (join; docs in src/engine/README.md,
// "Persistent state entries").
//
//  * cells encoding: a row's cells without a count (the width is the operator's), each as
//    `value` of docs/format/values.md except ints: byte 0x80 | n, then the n (0..8) low bytes
//    of the zigzag value (1..9 bytes instead of 9). In memory and in join's version-2 state
//    entries, so restoring an entry copies its bytes.
//  * RowArena: the cells of many rows in 1 MiB pages (no per-row heap object), each record
//    prefixed by its varint length; refs stay valid until compacted by the owner.
//  * RowStore: one input side's rows in dense slots (key, cells inline when at most 7 bytes
//    else an arena ref, next row of the same bucket); rows of one bucket form a chain whose
//    head the caller keeps (the join's bucket table), found by walking that chain (long
//    chains also through a row-key index).
// Not thread-safe.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "engine/codec.h"
#include "tidemark/value.h"

namespace tidemark::engine {

namespace cells {

// An int cell: one byte 0x80 | n (n = 0..8), then n little-endian bytes of the zigzag value.
inline constexpr uint8_t kIntCell = 0x80;

inline void put(std::string& out, const Value& v) {
  if (v.type() == DType::kInt) {
    int64_t i = v.as_int();
    uint64_t z = (static_cast<uint64_t>(i) << 1) ^ static_cast<uint64_t>(i >> 63);
    char b[9];
    size_t n = 0;
    for (; z != 0; z >>= 8) b[1 + n++] = static_cast<char>(z & 0xff);
    b[0] = static_cast<char>(kIntCell | n);
    out.append(b, 1 + n);
    return;
  }
  codec::put_value(out, v);
}
inline void put(std::string& out, const Value* row, size_t width) {
  for (size_t i = 0; i < width; ++i) put(out, row[i]);
}
// Decodes one cell from the front of `in`; false on truncated or invalid input.
inline bool get(std::string_view& in, Value* v) {
  if (in.empty()) return false;
  uint8_t b = static_cast<uint8_t>(in[0]);
  if (b & kIntCell) {
    size_t n = b & 0x7f;
    if (n > 8 || in.size() < 1 + n) return false;
    uint64_t z = 0;
    for (size_t i = 0; i < n; ++i) z |= static_cast<uint64_t>(static_cast<uint8_t>(in[1 + i])) << (8 * i);
    in.remove_prefix(1 + n);
    *v = Value(static_cast<int64_t>((z >> 1) ^ (~(z & 1) + 1)));
    return true;
  }
  if (b == static_cast<uint8_t>(DType::kInt)) return false;  // ints have one encoding (above)
  return codec::get_value(in, v);
}
// Decodes exactly `width` cells filling the whole of `in`.
inline bool get_all(std::string_view in, Value* out, size_t width) {
  for (size_t i = 0; i < width; ++i)
    if (!get(in, &out[i])) return false;
  return in.empty();
}

}  // namespace cells

class RowArena {
 public:
  using Ref = uint64_t;  // page index << 32 | offset in the page
  static constexpr size_t kPage = size_t{1} << 20;

  Ref add(std::string_view bytes) {
    char len[10];
    size_t n = 0;
    for (uint64_t v = bytes.size(); ; v >>= 7) {
      len[n++] = static_cast<char>((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
      if (v < 0x80) break;
    }
    size_t need = n + bytes.size();
    if (need > kPage) {  // a row larger than a page gets a page of its own
      pages_.push_back(std::make_unique<char[]>(need));
      write(pages_.back().get(), len, n, bytes);
      used_ += need;
      return (static_cast<Ref>(pages_.size() - 1) << 32);
    }
    if (pages_.empty() || cur_ == kNoPage || pos_ + need > kPage) {
      pages_.push_back(std::make_unique<char[]>(kPage));
      cur_ = pages_.size() - 1;
      pos_ = 0;
    }
    Ref r = (static_cast<Ref>(cur_) << 32) | pos_;
    write(pages_[cur_].get() + pos_, len, n, bytes);
    pos_ += need;
    used_ += need;
    return r;
  }
  std::string_view get(Ref r) const {
    const char* p = pages_[r >> 32].get() + static_cast<uint32_t>(r);
    uint64_t len = 0;
    for (int shift = 0;; shift += 7) {
      uint8_t b = static_cast<uint8_t>(*p++);
      len |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) break;
    }
    return {p, len};
  }
  // The record's bytes are garbage from now on (reclaimed when the owner compacts).
  void release(Ref r) {
    std::string_view v = get(r);
    size_t n = v.size() + static_cast<size_t>(v.data() - (pages_[r >> 32].get() + static_cast<uint32_t>(r)));
    dead_ += n;
  }
  size_t used() const { return used_; }
  size_t dead() const { return dead_; }

 private:
  static constexpr size_t kNoPage = ~size_t{0};
  static void write(char* dst, const char* len, size_t n, std::string_view bytes) {
    std::memcpy(dst, len, n);
    if (!bytes.empty()) std::memcpy(dst + n, bytes.data(), bytes.size());
  }
  std::vector<std::unique_ptr<char[]>> pages_;
  size_t cur_ = kNoPage;
  size_t pos_ = 0;
  size_t used_ = 0;  // bytes written, live or dead
  size_t dead_ = 0;
};

// Open-addressing tables (linear probing) are kept at most this full: an insert probes about
// (1 + 1 / (1 - load)^2) / 2 cells.
inline constexpr size_t kMaxLoadPercent = 87;

// Position of a 32-bit hash in a table of `cap` cells (any cap, not only powers of two).
inline size_t home_of(uint32_t h, size_t cap) { return static_cast<size_t>((static_cast<uint64_t>(h) * cap) >> 32); }
// The capacity of an open-addressing table of `cell_bytes` cells that must hold `need` entries
// at most 7/8 full, growing from `cap` by at least a quarter (so a table is at least 70% full
// after growing: the bucket and row indexes are a large part of a join's state). Rounded up so the table's bytes fill a
// whole allocator size class (jemalloc and most others space large classes by a quarter of a
// power of two): the slack a class would waste becomes capacity.
inline size_t grown_capacity(size_t cap, size_t need, size_t cell_bytes) {
  size_t c = cap < 64 ? 64 : cap + cap / 4;
  while (need > c * kMaxLoadPercent / 100) c += c / 4;
  size_t bytes = c * cell_bytes;
  size_t quarter = std::bit_floor(bytes) / 4;
  if (quarter >= 4096) bytes = (bytes + quarter - 1) / quarter * quarter;
  return bytes / cell_bytes;
}

// A vector in fixed-size segments: no copy and no doubling slack when it grows.
template <typename T>
class SegmentedVector {
 public:
  static constexpr size_t kShift = 15;
  size_t size() const { return size_; }
  T& operator[](size_t i) { return segs_[i >> kShift][i & kMask]; }
  const T& operator[](size_t i) const { return segs_[i >> kShift][i & kMask]; }
  void swap(SegmentedVector& o) noexcept {
    segs_.swap(o.segs_);
    std::swap(size_, o.size_);
  }
  void push_back(const T& v) {
    if ((size_ >> kShift) == segs_.size()) segs_.push_back(std::make_unique<T[]>(kMask + 1));
    (*this)[size_++] = v;
  }

 private:
  static constexpr size_t kMask = (size_t{1} << kShift) - 1;
  std::vector<std::unique_ptr<T[]>> segs_;
  size_t size_ = 0;
};

static_assert(std::endian::native == std::endian::little, "RowStore::Ref keeps its inline flag in the top byte of an arena ref");

// Rows of one input side in dense slots, chained per bucket: the caller keeps each chain's head
// (a `Head`). A row is found by walking its bucket's chain (a retraction carries the row, so its
// bucket is known): no index by row key for short chains, which for a join on a unique key are
// one row long. A chain that reaches kLongChain rows is marked in its head (kIndexed) and its
// rows enter a row-key index, so that erasing from or inserting into a skewed bucket stays O(1).
// A row key is unique within a chain (and across indexed chains); a row key in two short chains
// is not detected.
class RowStore {
 public:
  static constexpr uint32_t kEnd = ~uint32_t{0};
  static constexpr uint32_t kIndexed = uint32_t{1} << 31;  // a head's flag: the chain is indexed
  static constexpr uint32_t kMaxSlots = kIndexed - 2;
  static constexpr size_t kLongChain = 8;

  size_t size() const { return size_; }
  const Key& key(uint32_t slot) const { return keys_[slot]; }
  std::string_view cells(uint32_t slot) const {
    const Ref& r = refs_[slot];
    if (r.b[7] & kInline) return {r.b, static_cast<size_t>(r.b[7] & 0x7f)};
    return arena_.get(r.arena());
  }
  // The first row of the chain with head `head` (kEnd when empty), then next().
  static uint32_t first(uint32_t head) { return head == kEnd ? kEnd : head & ~kIndexed; }
  uint32_t next(uint32_t slot) const { return next_[slot]; }
  void prefetch_link(uint32_t slot) const { __builtin_prefetch(&next_[slot], 1); }
  void prefetch_row(uint32_t slot) const {
    __builtin_prefetch(&refs_[slot]);
    __builtin_prefetch(&keys_[slot]);
  }

  // Whether any chain is indexed (its rows are in the side's one row-key index).
  bool any_indexed() const { return indexed_ > 0; }

  // The slot of row key `k` on the chain with head `head`, or kEnd.
  uint32_t find(const Key& k, uint32_t head) const {
    if (head == kEnd) return kEnd;
    if (head & kIndexed) {
      uint32_t s = index_find(k);
      return s;
    }
    for (uint32_t r = head; r != kEnd; r = next_[r])
      if (keys_[r] == k) return r;
    return kEnd;
  }

  // Adds row `k` with encoded `cells` at the front of the chain `*head`. False (nothing
  // changed) if `k` is on that chain.
  bool insert(const Key& k, std::string_view cell_bytes, uint32_t* head) {
    size_t n;
    if (on_chain(k, *head, &n)) return false;
    link_new(add_unlinked(k, cell_bytes), n, head);
    return true;
  }
  // Adds row `k` on no chain yet (a restore, which links it later). Its slot.
  uint32_t add_unlinked(const Key& k, std::string_view cell_bytes) {
    uint32_t slot;
    if (free_ != kEnd) {
      slot = free_;
      free_ = next_[slot];
      keys_[slot] = k;
      refs_[slot] = store(cell_bytes);
    } else {
      if (keys_.size() >= kMaxSlots) throw std::length_error("join: too many rows on one side");
      slot = static_cast<uint32_t>(keys_.size());
      keys_.push_back(k);
      refs_.push_back(store(cell_bytes));
      next_.push_back(kEnd);
    }
    next_[slot] = kEnd;
    ++size_;
    return slot;
  }
  // Puts a row added by add_unlinked() at the front of the chain `*head`. False (nothing
  // changed) if its key is on that chain.
  bool link(uint32_t slot, uint32_t* head) {
    size_t n;
    if (on_chain(keys_[slot], *head, &n)) return false;
    link_new(slot, n, head);
    return true;
  }

  // Removes `slot`, which is on the chain `*head`. Singly linked chains: the head row moves
  // into the erased slot and the head slot is freed.
  void erase(uint32_t slot, uint32_t* head) {
    bool indexed = *head & kIndexed;
    uint32_t h = first(*head);
    release(refs_[slot]);
    if (indexed) index_erase(keys_[slot], slot);
    if (h != slot) {
      keys_[slot] = keys_[h];
      refs_[slot] = refs_[h];
      if (indexed) index_retarget(keys_[slot], h, slot);
    }
    uint32_t rest = next_[h];
    *head = rest == kEnd ? kEnd : (indexed ? rest | kIndexed : rest);
    next_[h] = free_;
    free_ = h;
    --size_;
    if (arena_.dead() > RowArena::kPage && arena_.dead() * 2 > arena_.used()) compact();
  }

  // Whether two live rows share a row key (a check for restores in arbitrary order).
  bool has_duplicate_keys() const {
    std::vector<bool> is_free = free_slots();
    std::vector<Key> ks;
    ks.reserve(size_);
    for (size_t s = 0; s < keys_.size(); ++s)
      if (!is_free[s]) ks.push_back(keys_[s]);
    std::sort(ks.begin(), ks.end());
    return std::adjacent_find(ks.begin(), ks.end()) != ks.end();
  }

 private:
  // A row's cells: inline (b[7] = kInline | length, at most 7 bytes) or an arena ref (b[7]'s
  // top bit clear: page indexes stay below 2^31).
  static constexpr char kInline = static_cast<char>(0x80);
  struct Ref {
    char b[8];
    RowArena::Ref arena() const {
      RowArena::Ref v;
      std::memcpy(&v, b, 8);
      return v;
    }
  };
  Ref store(std::string_view cell_bytes) {
    Ref r{};
    if (cell_bytes.size() <= 7) {
      if (!cell_bytes.empty()) std::memcpy(r.b, cell_bytes.data(), cell_bytes.size());
      r.b[7] = static_cast<char>(kInline | static_cast<char>(cell_bytes.size()));
    } else {
      RowArena::Ref a = arena_.add(cell_bytes);
      std::memcpy(r.b, &a, 8);
    }
    return r;
  }
  void release(const Ref& r) {
    if (!(r.b[7] & kInline)) arena_.release(r.arena());
  }
  // Whether `k` is on the chain `head`; `*n` its length when it is not indexed (else 0).
  bool on_chain(const Key& k, uint32_t head, size_t* n) const {
    *n = 0;
    if (head == kEnd) return false;
    if (head & kIndexed) return index_find(k) != kEnd;
    for (uint32_t r = head; r != kEnd; r = next_[r], ++*n)
      if (keys_[r] == k) return true;
    return false;
  }
  // Links `slot` in front of the chain `*head` of length `n` (0 if indexed).
  void link_new(uint32_t slot, size_t n, uint32_t* head) {
    bool indexed = *head != kEnd && (*head & kIndexed);
    next_[slot] = first(*head);
    if (indexed) {
      index_insert(keys_[slot], slot);
      *head = slot | kIndexed;
    } else if (n + 1 >= kLongChain) {
      for (uint32_t r = slot; r != kEnd; r = next_[r]) index_insert(keys_[r], r);
      *head = slot | kIndexed;
    } else {
      *head = slot;
    }
  }
  std::vector<bool> free_slots() const {
    std::vector<bool> is_free(keys_.size(), false);
    for (uint32_t f = free_; f != kEnd; f = next_[f]) is_free[f] = true;
    return is_free;
  }
  // The row-key index of indexed chains.
  struct Cell {
    uint32_t slot = kEnd;
    uint32_t tag = 0;  // hash of the key: its home cell and a filter before comparing keys
  };
  static uint32_t hash(const Key& k) {
    uint64_t h = k.lo * 0x9E3779B97F4A7C15ULL ^ k.hi;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 32;
    return static_cast<uint32_t>(h);
  }
  size_t step(size_t i) const { return i + 1 == index_.size() ? 0 : i + 1; }
  uint32_t index_find(const Key& k) const {
    if (index_.empty()) return kEnd;
    uint32_t h = hash(k);
    for (size_t i = home_of(h, index_.size());; i = step(i)) {
      const Cell& c = index_[i];
      if (c.slot == kEnd) return kEnd;
      if (c.tag == h && keys_[c.slot] == k) return c.slot;
    }
  }
  void index_insert(const Key& k, uint32_t slot) {
    if ((indexed_ + 1) * 100 > index_.size() * kMaxLoadPercent) rehash(grown_capacity(index_.size(), indexed_ + 1, sizeof(Cell)));
    uint32_t h = hash(k);
    size_t i = home_of(h, index_.size());
    while (index_[i].slot != kEnd) i = step(i);
    index_[i] = {slot, h};
    ++indexed_;
  }
  size_t index_pos(const Key& k, uint32_t slot) const {
    for (size_t i = home_of(hash(k), index_.size());; i = step(i))
      if (index_[i].slot == slot) return i;
  }
  void index_retarget(const Key& k, uint32_t from, uint32_t to) { index_[index_pos(k, from)].slot = to; }
  void index_erase(const Key& k, uint32_t slot) {
    size_t i = index_pos(k, slot);
    // Backward shift: later cells of the probe run move into the hole unless their home lies
    // cyclically in (hole, cell].
    for (size_t j = step(i);; j = step(j)) {
      if (index_[j].slot == kEnd) break;
      size_t home = home_of(index_[j].tag, index_.size());
      bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
      if (movable) {
        index_[i] = index_[j];
        i = j;
      }
    }
    index_[i] = Cell{};
    --indexed_;
  }
  void rehash(size_t cap) {
    std::vector<Cell> old = std::move(index_);
    index_.assign(cap, Cell{});
    for (const Cell& c : old) {
      if (c.slot == kEnd) continue;
      size_t i = home_of(c.tag, cap);
      while (index_[i].slot != kEnd) i = step(i);
      index_[i] = c;
    }
  }
  // Rewrites the live rows into a fresh arena (amortized: runs once garbage exceeds half).
  void compact() {
    std::vector<bool> is_free = free_slots();
    RowArena fresh;
    for (size_t s = 0; s < keys_.size(); ++s)
      if (!is_free[s] && !(refs_[s].b[7] & kInline)) {
        RowArena::Ref a = fresh.add(arena_.get(refs_[s].arena()));
        std::memcpy(refs_[s].b, &a, 8);
      }
    arena_ = std::move(fresh);
  }

  SegmentedVector<Key> keys_;
  SegmentedVector<Ref> refs_;
  SegmentedVector<uint32_t> next_;  // next row of the bucket chain; next free slot for free slots
  uint32_t free_ = kEnd;
  size_t size_ = 0;
  std::vector<Cell> index_;  // rows of indexed chains only
  size_t indexed_ = 0;
  RowArena arena_;
};

}  // namespace tidemark::engine
