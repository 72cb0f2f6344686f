// join / join_left / join_right / join_outer and JoinResult::select.
//
// State: an arrangement per side (arrangement.h): the rows whose join values are all non-None,
// encoded compactly, chained per bucket (one bucket per join-values tuple, found by its 128-bit
// key); a row is found on its bucket's chain (a retraction carries its row, so its bucket).
// A batch is copied (keys, diffs, encoded cells) in input order, sorted by bucket position
// (radix on the top bits of the bucket hash, so the bucket table is walked in increasing
// position with prefetching), summed per bucket and row (the input need not be consolidated),
// and applied bucket by bucket with the delta rule, so the cost is proportional to the matches
// that change: matched pairs change by dL x R_old + L_new x dR. A row of a kept (outer) side
// is emitted unmatched while the other side of its bucket is empty, so its bucket's rows are
// re-emitted only when that other side turns empty or non-empty.
// Join values containing None never match (SQL semantics); such rows need no state.
// Inlined: the join values' key is hashed for every row (same results as the library).
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "engine/arrangement.h"
#include "engine/codec.h"
#include "engine/expr_internal.h"
#include "engine/node.h"
#include "engine/state_codec.h"

namespace tidemark {
namespace engine {
namespace {

using internal::CompiledExprPtr;
using internal::EvalContext;

using RowsByKey = std::unordered_map<Key, Row, KeyHash>;

bool is_num(DType t) { return t == DType::kInt || t == DType::kFloat; }

// Equality of join values follows the expression language, where 1 == 1.0: integral floats
// are stored as ints (lossless for ints, unlike the other way round).
Value normalize(const Value& v) {
  if (v.type() == DType::kFloat) {
    double d = v.as_float();
    if (std::trunc(d) == d && d >= -9.2e18 && d <= 9.2e18) return Value(static_cast<int64_t>(d));
  }
  return v;
}

// Buckets: one cell per join-values key holding the head of each side's row chain, in a flat
// open-addressing table (the key is a uniform hash: its high bits place it). A process() reserves
// room for its batch first, so positions stay put until it erases the emptied buckets.
class BucketTable {
 public:
  static constexpr uint32_t kEnd = RowStore::kEnd;
  static constexpr size_t kNone = ~size_t{0};
  struct Cell {
    Key key;
    std::array<uint32_t, 2> head{kFree, kEnd};
    bool free() const { return head[0] == kFree; }
  };
  size_t size() const { return size_; }
  size_t capacity() const { return cells_.size(); }
  Cell& at(size_t pos) { return cells_[pos]; }
  void prefetch(const Key& k) const {
    if (!cells_.empty()) __builtin_prefetch(&cells_[home(k)]);
  }
  // Adds bucket `k` (absent), the keys added since the table was empty coming in increasing
  // (hi, lo) order, so in increasing home position: the first free cell from its home is the
  // later of its home and `*cursor` (the cell after the previous one) unless that runs past
  // the end. Room must be reserved.
  size_t insert_sorted(const Key& k, size_t* cursor) {
    size_t i = std::max(home(k), *cursor);
    if (i >= cells_.size()) return find_or_insert(k);  // wraps around (a few at the end)
    cells_[i].key = k;
    cells_[i].head = {kEnd, kEnd};
    ++size_;
    *cursor = i + 1;
    return i;
  }
  // Room for `n` buckets in all without growing.
  void reserve(size_t n) {
    if (n * 100 > cells_.size() * kLoadPercent) rehash(capacity_for(n));
  }
  // The position of bucket `k`, or kNone.
  size_t find(const Key& k) const {
    if (cells_.empty()) return kNone;
    for (size_t i = home(k);; i = step(i)) {
      const Cell& c = cells_[i];
      if (c.free()) return kNone;
      if (c.key == k) return i;
    }
  }
  // The position of bucket `k`, created with empty chains if absent.
  size_t find_or_insert(const Key& k) {
    reserve(size_ + 1);
    size_t i = home(k);
    for (;; i = step(i)) {
      Cell& c = cells_[i];
      if (c.free()) break;
      if (c.key == k) return i;
    }
    cells_[i].key = k;
    cells_[i].head = {kEnd, kEnd};
    ++size_;
    return i;
  }
  // Removes bucket `k` (present). Moves other cells.
  void erase(const Key& k) {
    size_t i = home(k);
    while (cells_[i].key != k || cells_[i].free()) i = step(i);
    for (size_t j = step(i);; j = step(j)) {
      if (cells_[j].free()) break;
      size_t h = home(cells_[j].key);
      bool movable = i <= j ? (h <= i || h > j) : (h <= i && h > j);
      if (movable) {
        cells_[i] = cells_[j];
        i = j;
      }
    }
    cells_[i] = Cell{};
    --size_;
  }

 private:
  static constexpr uint32_t kFree = kEnd - 1;
  // At most this full (shorter probe runs than the row stores' tables: every row's bucket is
  // looked up).
  static constexpr size_t kLoadPercent = 75;
  size_t home(const Key& k) const { return home_of(static_cast<uint32_t>(k.hi >> 32), cells_.size()); }
  size_t step(size_t i) const { return i + 1 == cells_.size() ? 0 : i + 1; }
  size_t capacity_for(size_t n) const {
    size_t c = cells_.size() < 64 ? 64 : cells_.size() + cells_.size() / 2;
    while (n * 100 > c * kLoadPercent) c += c / 2;
    return c;
  }
  // The cells are visited in order and their homes are monotone in the hash, so the new table
  // is written nearly sequentially too.
  void rehash(size_t cap) {
    std::vector<Cell> old = std::move(cells_);
    cells_.assign(cap, Cell{});
    for (const Cell& c : old) {
      if (c.free()) continue;
      size_t i = home(c.key);
      while (!cells_[i].free()) i = step(i);
      cells_[i] = c;
    }
  }
  std::vector<Cell> cells_;
  size_t size_ = 0;
};

// The bucket sort. Entries are ordered by bucket key (hi, then lo) through a stable radix sort
// on the top 24 bits of hi (the bits that place a bucket in the table, so the table is then
// walked in increasing position), then runs sharing those bits sorted by the whole key. Equal
// keys end up adjacent. 8-bit digits: 256 destinations per scatter keep its write streams in
// the cache and the TLB. (Entries with equal keys may come out in any order.)
constexpr int kSortDigitBits = 8;
constexpr size_t kSortRadix = size_t{1} << kSortDigitBits;
// The top byte of a bucket key: the first digit, most significant.
inline size_t bucket_top_byte(const Key& k) { return static_cast<size_t>(k.hi >> 56); }
// The order the bucket sort produces.
inline bool bucket_less(const Key& x, const Key& y) { return x.hi != y.hi ? x.hi < y.hi : x.lo < y.lo; }

// Orders v[0, n) whose entries share the top byte of their bucket key by the rest of the key:
// the next two bytes least significant first (v -> tmp -> v; tmp holds n entries), then runs
// sharing the top 24 bits by the whole key.
template <typename T, typename F>
void sort_range_by_bucket(T* v, T* tmp, size_t n, F bk) {
  auto less = [&](const T& a, const T& b) { return bucket_less(bk(a), bk(b)); };
  if (n < 64) {
    std::sort(v, v + n, less);
    return;
  }
  auto digit = [&](const T& e, int byte) {
    return static_cast<size_t>((bk(e).hi >> (40 + byte * kSortDigitBits)) & (kSortRadix - 1));
  };
  T* bufs[2] = {v, tmp};  // byte 0: v -> tmp; byte 1: tmp -> v
  for (int byte = 0; byte < 2; ++byte) {
    T* from = bufs[byte];
    T* to = bufs[1 - byte];
    size_t at[kSortRadix + 1] = {};
    for (size_t i = 0; i < n; ++i) ++at[digit(from[i], byte) + 1];
    for (size_t i = 0; i < kSortRadix; ++i) at[i + 1] += at[i];
    for (size_t i = 0; i < n; ++i) to[at[digit(from[i], byte)]++] = std::move(from[i]);
  }
  for (size_t i = 0; i < n;) {
    size_t j = i + 1;
    const uint64_t top = bk(v[i]).hi >> 40;
    while (j < n && bk(v[j]).hi >> 40 == top) ++j;
    if (j - i > 1 && !std::is_sorted(v + i, v + j, less)) std::sort(v + i, v + j, less);
    i = j;
  }
}

// Orders `v` by bucket key: one scatter over memory by the top byte into `tmp` groups the
// entries into 256 ranges, then each range, small enough for the cache, is sorted by
// sort_range_by_bucket (back and forth between the two arrays).
template <typename T, typename F>
void sort_by_bucket(std::vector<T>& v, std::vector<T>& tmp, F bk) {
  if (v.size() < 512) {
    std::sort(v.begin(), v.end(), [&](const T& a, const T& b) { return bucket_less(bk(a), bk(b)); });
    return;
  }
  tmp.resize(v.size());
  size_t start[kSortRadix + 1] = {};
  for (const T& e : v) ++start[bucket_top_byte(bk(e)) + 1];
  for (size_t i = 0; i < kSortRadix; ++i) start[i + 1] += start[i];
  {
    size_t at[kSortRadix];
    std::copy(start, start + kSortRadix, at);
    for (T& e : v) tmp[at[bucket_top_byte(bk(e))]++] = std::move(e);
  }
  for (size_t r = 0; r < kSortRadix; ++r)
    sort_range_by_bucket(tmp.data() + start[r], v.data() + start[r], start[r + 1] - start[r], bk);
  v.swap(tmp);  // every range ended in tmp
}

class JoinNode final : public Node {
 public:
  JoinNode(size_t left, size_t right, Schema schema, std::array<std::vector<size_t>, 2> on,
           std::array<size_t, 2> widths, std::array<bool, 2> keep, std::vector<CompiledExprPtr> exprs, bool memoize)
      : Node("join", {left, right}, std::move(schema)),
        on_(std::move(on)),
        widths_(widths),
        keep_(keep),
        exprs_(std::move(exprs)),
        memoize_(memoize) {
    for (int s = 0; s < 2; ++s) {
      decoded_[s].resize(widths_[s]);
      delta_decoded_[s].resize(widths_[s]);
    }
  }

  // Persistent entries (src/engine/README.md): the arranged rows of both sides (port byte 0
  // left, 1 right, + row key -> version 2 + the row's cells encoding, the bytes the arrangement
  // holds) and, with a non-deterministic select, the memo under port byte 2 (output key ->
  // version 1 + the row emitted). Restoring inserts the rows into the arrangement: no
  // process(), no output evaluation.
  void take_state_changes(StateChanges& out) override {
    for (uint8_t s = 0; s < 2; ++s) {
      std::vector<Dirty>& d = dirty_[s];
      // Each touched row is looked up in the buckets it was inserted into or retracted from,
      // in bucket order (the bucket table is then walked in increasing position, and each
      // chain's first row is prefetched kTakeAhead rows ahead); the results are then put in
      // key-byte order (a key's entries adjacent: the row is live in at most one of them).
      {
        std::vector<Dirty> tmp;
        sort_by_bucket(d, tmp, [](const Dirty& e) -> const Key& { return e.bk; });
      }
      struct Found {
        uint64_t lo_be, hi_be;  // the key's bytes (codec::put_key) as big-endian words: their order
        Key key;
        uint32_t slot;  // kEnd: not in that bucket
      };
      std::vector<Found> found(d.size());
      constexpr size_t kTakeAhead = 16;
      auto prefetch_row = [&](size_t j) {
        const size_t pos = buckets_.find(d[j].bk);
        if (pos == BucketTable::kNone) return;
        const uint32_t head = buckets_.at(pos).head[s];
        if (head != kEnd && !(head & RowStore::kIndexed)) rows_[s].prefetch_row(RowStore::first(head));
      };
      for (size_t j = 0; j < d.size() && j < kTakeAhead; ++j) prefetch_row(j);
      for (size_t i = 0; i < d.size(); ++i) {
        if (i + kTakeAhead < d.size()) prefetch_row(i + kTakeAhead);
        const size_t pos = buckets_.find(d[i].bk);
        const Key& k = d[i].key;
        found[i] = {__builtin_bswap64(k.lo), __builtin_bswap64(k.hi), k,
                    pos == BucketTable::kNone ? kEnd : rows_[s].find(k, buckets_.at(pos).head[s])};
      }
      std::vector<Dirty>().swap(d);
      std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) {
        return a.lo_be != b.lo_be ? a.lo_be < b.lo_be : a.hi_be < b.hi_be;
      });
      out.reserve(out.size() + found.size());
      for (size_t j = 0; j < found.size() && j < kTakeAhead; ++j)
        if (found[j].slot != kEnd) rows_[s].prefetch_row(found[j].slot);
      for (size_t i = 0; i < found.size();) {
        if (i + kTakeAhead < found.size() && found[i + kTakeAhead].slot != kEnd)
          rows_[s].prefetch_row(found[i + kTakeAhead].slot);  // its cells, read in key order
        const Key k = found[i].key;
        uint32_t slot = kEnd;
        for (; i < found.size() && found[i].key == k; ++i)
          if (found[i].slot != kEnd) slot = found[i].slot;
        StateChange c;
        c.key.reserve(kEntryKeySize);
        codec::put_u8(c.key, s);
        codec::put_key(c.key, k);
        if (slot == kEnd) {
          c.erase = true;
        } else {
          std::string_view cells = rows_[s].cells(slot);
          c.value.reserve(1 + cells.size());
          codec::put_u8(c.value, kRowsVersion);
          c.value.append(cells);
        }
        out.push_back(std::move(c));
      }
    }
    take_dirty_entries(
        memo_dirty_, memo_, kMemoVersion,
        [](const Key& k, std::string& key) {
          codec::put_u8(key, kMemoPort);
          codec::put_key(key, k);
        },
        [](const Row& r, std::string& v) { codec::put_row(v, r); }, out);
  }
  void expect_state_entries(uint64_t n) override {
    // The staged rows (linked at the finish): reserved once instead of growing through millions
    // of pushes, each growth copying everything staged so far.
    const size_t total = static_cast<size_t>(std::min<uint64_t>(n, RowStore::kMaxSlots));
    for (auto& v : staged_) v.reserve(total / kSortRadix + total / (4 * kSortRadix) + 8);
  }
  Status restore_state_entry(std::string_view key, std::string_view value) override {
    uint8_t port, version;
    Key k;
    const std::string_view whole = key;
    if (key.size() != kEntryKeySize || !codec::get_u8(key, &port) || !codec::get_key(key, &k) ||
        !codec::get_u8(value, &version))
      return state_corrupt(label());
    // Entries normally arrive in key order, which rules out a row key stored twice; otherwise
    // finish_state_restore() checks.
    if (restored_any_ && std::memcmp(last_restored_.data(), whole.data(), kEntryKeySize) >= 0) unordered_restore_ = true;
    std::memcpy(last_restored_.data(), whole.data(), kEntryKeySize);
    restored_any_ = true;
    if (port < 2) {
      Row& r = decoded_[port];
      std::string_view cell_bytes = value;
      if (version == kRowsVersion) {
        if (!cells::get_all(value, r.data(), widths_[port])) return state_corrupt(label());
      } else if (version == 1) {  // version 1: the row as codec::put_row
        Row v1;
        if (!codec::get_row(value, &v1) || !value.empty() || v1.size() != widths_[port]) return state_corrupt(label());
        r = std::move(v1);
        converted_.clear();
        cells::put(converted_, r.data(), r.size());
        cell_bytes = converted_;
      } else {
        return state_corrupt(label());
      }
      Key bk;
      if (!join_key(port, r, &bk)) return state_corrupt(label());
      // Stored at once (slots in arrival order); linked into its bucket by finish_state_restore(),
      // when the number of rows is known.
      if (rows_[port].size() >= RowStore::kMaxSlots) return state_corrupt(label());
      staged_[bucket_top_byte(bk)].push_back({bk, rows_[port].add_unlinked(k, cell_bytes), port});
      return {};
    }
    Row r;
    if (!memoize_ || port != kMemoPort || version != kMemoVersion || !codec::get_row(value, &r) || !value.empty() ||
        r.size() != exprs_.size() || memo_.contains(k))
      return state_corrupt(label());
    memo_.emplace(k, std::move(r));
    return {};
  }
  Status finish_state_restore() override {
    Status st = link_staged();
    if (st.is_ok() && unordered_restore_ && (rows_[0].has_duplicate_keys() || rows_[1].has_duplicate_keys()))
      st = state_corrupt(label());
    return st;
  }

  void process(Time, std::span<const Batch* const> in, Batch& out) override {
    // The changes of this time grouped by bucket without copying them: the updates with their
    // bucket keys, sorted by bucket (so the bucket table is walked in increasing position).
    ups_.clear();
    ups_cells_.clear();
    ups_.reserve(in[0]->size() + in[1]->size());
    const size_t out_begin = out.size();
    bool retractions = false;
    for (int s = 0; s < 2; ++s)
      for (const Update& u : *in[s]) {
        Key bk;
        if (!join_key(s, u.row, &bk)) {
          if (keep_[s]) emit_unmatched(s, u.key, u.row.data(), u.diff);
          continue;
        }
        if (u.diff == 0) continue;
        if (tracking_state()) dirty_[s].push_back({u.key, bk});
        size_t off = ups_cells_.size();
        cells::put(ups_cells_, u.row.data(), widths_[s]);
        ups_.push_back({bk, u.key, off, u.diff, static_cast<uint32_t>(ups_cells_.size() - off), static_cast<uint8_t>(s)});
      }
    sort_by_bucket(ups_, ups_tmp_, [](const Keyed& e) -> const Key& { return e.bk; });
    // The input need not be consolidated (needs_consolidated_input()): a bucket's updates of one
    // row key are summed per equal row here, and what remains must be -1 or +1 (a row key has
    // one row per side; a row changing buckets leaves one and enters the other).
    touched_.clear();
    size_t w = 0;
    for (size_t i = 0; i < ups_.size();) {
      size_t j = i + 1;
      while (j < ups_.size() && ups_[j].bk == ups_[i].bk) ++j;
      size_t begin = w;
      if (j - i == 1) {
        ups_[w++] = ups_[i];
      } else {
        std::sort(ups_.begin() + static_cast<ptrdiff_t>(i), ups_.begin() + static_cast<ptrdiff_t>(j),
                  [](const Keyed& a, const Keyed& b) { return a.side != b.side ? a.side < b.side : a.key < b.key; });
        for (size_t g = i; g < j;) {  // a group: one side and row key
          size_t h = g + 1;
          while (h < j && ups_[h].side == ups_[g].side && ups_[h].key == ups_[g].key) ++h;
          size_t gw = w;
          for (size_t x = g; x < h; ++x) {
            size_t y = gw;
            while (y < w && !same_row(ups_[y], ups_[x])) ++y;
            if (y < w) {
              ups_[y].diff += ups_[x].diff;
            } else {
              ups_[w++] = ups_[x];
            }
          }
          size_t kept = gw;
          for (size_t y = gw; y < w; ++y)
            if (ups_[y].diff != 0) ups_[kept++] = ups_[y];
          w = kept;
          g = h;
        }
      }
      for (size_t x = begin; x < w; ++x) {
        if (ups_[x].diff != 1 && ups_[x].diff != -1) multiplicity_error(ups_[x].side, ups_[x].key);
        retractions = retractions || ups_[x].diff < 0;
      }
      if (w > begin) touched_.push_back({ups_[begin].bk, 0, static_cast<uint32_t>(begin), static_cast<uint32_t>(w)});
      i = j;
    }
    ups_.resize(w);
    // Positions stay put while buckets are only added (emptied ones are erased at the end).
    buckets_.reserve(buckets_.size() + touched_.size());
    // A pipeline over the touched buckets: the bucket cell is prefetched 2 x kAhead ahead;
    // kAhead ahead the bucket is found (or created) and the first rows of its chains are
    // prefetched. The updates were copied in input order (key, diff, encoded cells), so they
    // are not visited out of order.
    const size_t nt = touched_.size();
    auto prefetch = [&](size_t j) { buckets_.prefetch(touched_[j].bk); };
    auto stage = [&](size_t j) {
      Touched& t = touched_[j];
      for (uint32_t i = t.begin; i < t.end; ++i) __builtin_prefetch(ups_cells_.data() + ups_[i].off);
      t.pos = static_cast<uint32_t>(buckets_.find_or_insert(t.bk));
      const BucketTable::Cell& c = buckets_.at(t.pos);
      for (int s = 0; s < 2; ++s)
        if (c.head[s] != kEnd) rows_[s].prefetch_row(RowStore::first(c.head[s]));
    };
    for (size_t j = 0; j < nt && j < 2 * kAhead; ++j) prefetch(j);
    for (size_t j = 0; j < nt && j < kAhead; ++j) stage(j);
    // Delta rule per bucket: dL x R_old + L_new x dR, L_new being L's chain after the
    // retractions plus dL's insertions. A bucket's insertions are applied after its pairs and
    // unmatched rows are emitted.
    std::array<std::vector<const Keyed*>, 2> delta;
    // A side with indexed chains (RowStore::kLongChain) finds their rows through one row-key
    // index for the whole side: a row moving between two indexed buckets would be found under
    // its old bucket when its new bucket, first in bucket order, inserts it (or the old bucket's
    // retraction would find the new row). Its insertions are applied after all the time's
    // retractions. Without indexed chains at the start of the time, a chain indexed during it
    // holds no row still in another indexed chain (each bucket retracts before it inserts), so
    // rows are inserted with their bucket, while it is in the cache.
    const std::array<bool, 2> defer{rows_[0].any_indexed(), rows_[1].any_indexed()};
    for (size_t ti = 0; ti < nt; ++ti) {
      if (ti + 2 * kAhead < nt) prefetch(ti + 2 * kAhead);
      if (ti + kAhead < nt) stage(ti + kAhead);
      const Touched& t = touched_[ti];
      BucketTable::Cell& b = buckets_.at(t.pos);
      std::array<int64_t, 2> sum{0, 0};
      delta[0].clear();
      delta[1].clear();
      for (uint32_t i = t.begin; i < t.end; ++i) {
        const Keyed& e = ups_[i];
        delta[e.side].push_back(&e);
        sum[e.side] += e.diff;
      }
      std::array<bool, 2> was_empty{b.head[0] == kEnd, b.head[1] == kEnd};
      std::array<bool, 2> will_be_empty{};
      for (int s = 0; s < 2; ++s)
        if (keep_[1 - s]) will_be_empty[s] = empty_after(s, b.head[s], sum[s]);
      // Kept rows stop being unmatched when the other side appears.
      for (int s = 0; s < 2; ++s)
        if (keep_[s] && was_empty[1 - s] && !will_be_empty[1 - s])
          for (uint32_t r = RowStore::first(b.head[s]); r != kEnd; r = rows_[s].next(r))
            emit_unmatched(s, rows_[s].key(r), decode(s, r), -1);
      if (b.head[1] != kEnd)
        for (const Keyed* u : delta[0]) {
          const Value* ur = delta_row(*u);
          for (uint32_t r = RowStore::first(b.head[1]); r != kEnd; r = rows_[1].next(r))
            emit_pair(u->key, ur, rows_[1].key(r), decode(1, r), u->diff, out);
        }
      retract(0, b, delta[0]);
      for (const Keyed* u : delta[1]) {
        const Value* ur = delta_row(*u);
        for (uint32_t l = RowStore::first(b.head[0]); l != kEnd; l = rows_[0].next(l))
          emit_pair(rows_[0].key(l), decode(0, l), u->key, ur, u->diff, out);
        for (const Keyed* lu : delta[0])
          if (lu->diff > 0) emit_pair(lu->key, delta_row(*lu), u->key, ur, u->diff, out);
      }
      retract(1, b, delta[1]);
      bool inserts = false;
      for (int s = 0; s < 2; ++s)
        for (const Keyed* u : delta[s]) inserts = inserts || u->diff > 0;
      for (int s = 0; s < 2; ++s) {
        if (!keep_[s]) continue;
        if (was_empty[1 - s] && will_be_empty[1 - s]) {
          for (const Keyed* u : delta[s]) emit_unmatched(s, u->key, delta_row(*u), u->diff);
        } else if (!was_empty[1 - s] && will_be_empty[1 - s]) {
          for (uint32_t r = RowStore::first(b.head[s]); r != kEnd; r = rows_[s].next(r))
            emit_unmatched(s, rows_[s].key(r), decode(s, r), 1);
          for (const Keyed* u : delta[s])
            if (u->diff > 0) emit_unmatched(s, u->key, delta_row(*u), 1);
        }
      }
      if (!inserts) {
        if (b.head[0] == kEnd && b.head[1] == kEnd) emptied_.push_back(b.key);
        continue;
      }
      for (int s = 0; s < 2; ++s)
        for (const Keyed* u : delta[s]) {
          if (u->diff < 0) continue;
          if (defer[s]) inserts_.push_back({u, t.pos});
          else if (!rows_[s].insert(u->key, cells_of(*u), &b.head[s])) multiplicity_error(s, u->key);
        }
    }
    // Deferred insertions, after all the time's retractions (see `defer`).
    for (const Insert& in : inserts_) {
      const Keyed& u = *in.u;
      if (!rows_[u.side].insert(u.key, cells_of(u), &buckets_.at(in.pos).head[u.side])) multiplicity_error(u.side, u.key);
    }
    inserts_.clear();
    for (const Key& k : emptied_) buckets_.erase(k);
    emptied_.clear();
    touched_.clear();
    if (ups_.capacity() > kKeepScratch) {  // a large batch's scratch is not kept as state
      std::vector<Touched>().swap(touched_);
      std::vector<Keyed>().swap(ups_);
      std::vector<Keyed>().swap(ups_tmp_);
      std::string().swap(ups_cells_);
      std::vector<Insert>().swap(inserts_);
    }
    if (direct() && retractions && out.size() - out_begin > 1) {
      // Pairs can cancel or repeat across buckets only when rows leave: see output_consolidated().
      Batch mine(std::make_move_iterator(out.begin() + static_cast<ptrdiff_t>(out_begin)), std::make_move_iterator(out.end()));
      out.resize(out_begin);
      consolidate(mine);
      out.insert(out.end(), std::make_move_iterator(mine.begin()), std::make_move_iterator(mine.end()));
    }
    flush(out);
  }

  // The direct path consolidates its own output: a time with insertions only emits each new pair
  // once (one of its rows is new, and a row key is on one chain), with diff 1 and a key of its
  // own; a time with retractions consolidates what it emitted. The other paths emit a time's
  // retractions before its insertions (not adjacent per key), for the scheduler to consolidate.
  bool output_consolidated() const override { return direct(); }
  bool needs_consolidated_input() const override { return false; }

  bool stateful() const override { return true; }
  std::unique_ptr<Node> clone() const override {
    return std::make_unique<JoinNode>(inputs()[0], inputs()[1], schema(), on_, widths_, keep_, exprs_, memoize_);
  }
  // Both sides by the bucket key of their join values (join_key), so matching rows meet on one
  // worker; a row with a None join value matches nothing and goes by its row key.
  Routing routing() const override {
    Routing r;
    r.by = Routing::By::kCustom;
    return r;
  }
  Key route_key(size_t port, const Update& u) const override {
    thread_local std::string buf;
    Key k;
    return bucket_key(static_cast<int>(port), u.row, buf, &k) ? k : u.key;
  }
  // A side's row goes where its updates are routed; the memo (under its output key) to every
  // instance: only the one that emitted the row reads it.
  Result<std::optional<Key>> state_entry_route(std::string_view key, std::string_view value) const override {
    uint8_t port, version;
    Update u;
    if (key.size() != kEntryKeySize || !codec::get_u8(key, &port) || !codec::get_key(key, &u.key) ||
        !codec::get_u8(value, &version))
      return state_corrupt(label());
    if (port >= 2) return std::optional<Key>();
    if (version == kRowsVersion) {
      u.row.resize(widths_[port]);
      if (!cells::get_all(value, u.row.data(), widths_[port])) return state_corrupt(label());
    } else if (!codec::get_row(value, &u.row) || u.row.size() != widths_[port]) {
      return state_corrupt(label());
    }
    return std::optional<Key>(route_key(port, u));
  }

 private:
  static constexpr uint32_t kEnd = RowStore::kEnd;
  // An update of a process(), copied in input order.
  struct Keyed {
    Key bk;
    Key key;
    size_t off;  // cells in ups_cells_
    int64_t diff;
    uint32_t len;
    uint8_t side;
  };
  // Whether two updates of one side and key carry equal rows (equal values may encode
  // differently: 0.0 and -0.0).
  bool same_row(const Keyed& a, const Keyed& b) {
    if (cells_of(a) == cells_of(b)) return true;
    Row x(widths_[a.side]);
    const Value* y = delta_row(b);
    std::string_view in = cells_of(a);
    for (size_t i = 0; i < x.size(); ++i) cells::get(in, &x[i]);
    return std::equal(x.begin(), x.end(), y);
  }

  // Links the restored rows into their buckets, sorted by bucket: the table is sized once for
  // the buckets counted and (when it holds none yet, as on a restart) filled in increasing
  // position without probing. The rows were staged by the top byte of their bucket key as they
  // arrived (the bucket sort's first digit), so each of the 256 lists is sorted on its own,
  // within the cache.
  Status link_staged() {
    Status st;
    size_t distinct = 0, largest = 0;
    for (const auto& v : staged_) largest = std::max(largest, v.size());
    std::vector<Staged> tmp(largest);
    const auto bk = [](const Staged& e) -> const Key& { return e.bk; };
    for (auto& v : staged_) {
      sort_range_by_bucket(v.data(), tmp.data(), v.size(), bk);
      for (size_t i = 0; i < v.size(); ++i) distinct += i == 0 || v[i].bk != v[i - 1].bk;
    }
    std::vector<Staged>().swap(tmp);
    bool bulk = buckets_.size() == 0;
    buckets_.reserve(buckets_.size() + distinct);
    size_t pos = BucketTable::kNone, cursor = 0;
    for (auto& v : staged_) {
      for (size_t i = 0; i < v.size() && st.is_ok(); ++i) {
        if (i + kAhead < v.size()) {
          const Staged& a = v[i + kAhead];
          rows_[a.port].prefetch_link(a.slot);
          if (!bulk) buckets_.prefetch(a.bk);
        }
        const Staged& e = v[i];
        // (a bucket's rows are all in one list: the lists split by its key's top byte)
        if (i == 0 || e.bk != v[i - 1].bk) pos = bulk ? buckets_.insert_sorted(e.bk, &cursor) : buckets_.find_or_insert(e.bk);
        if (!rows_[e.port].link(e.slot, &buckets_.at(pos).head[e.port])) st = state_corrupt(label());  // a row key stored twice
      }
      std::vector<Staged>().swap(v);
    }
    return st;
  }

  [[noreturn]] static void multiplicity_error(int side, const Key& k) {
    throw RuntimeError(std::string("join: the ") + (side == 0 ? "left" : "right") + " input has key " + k.to_string() +
                       " with multiplicity other than 0 or 1");
  }

  // Whether side `s` of a bucket whose chain starts at `head` is empty after changes summing
  // to `sum`: walks at most -sum + 1 rows.
  bool empty_after(int s, uint32_t head, int64_t sum) const {
    if (head == kEnd) return sum == 0;
    if (sum >= 0) return false;
    int64_t n = 0;
    for (uint32_t r = RowStore::first(head); r != kEnd && n <= -sum; r = rows_[s].next(r)) ++n;
    return n + sum == 0;
  }

  // The cells of an update of this process(), decoded into the side's delta scratch row.
  std::string_view cells_of(const Keyed& e) const { return std::string_view(ups_cells_).substr(e.off, e.len); }
  const Value* delta_row(const Keyed& e) {
    std::string_view in = cells_of(e);
    Value* out = delta_decoded_[e.side].data();
    for (size_t i = 0; i < widths_[e.side]; ++i) cells::get(in, &out[i]);
    return out;
  }

  // The cells of a stored row, decoded into the side's scratch row (valid until the next call
  // for that side).
  const Value* decode(int s, uint32_t slot) {
    std::string_view in = rows_[s].cells(slot);
    Value* out = decoded_[s].data();
    for (size_t i = 0; i < widths_[s]; ++i) cells::get(in, &out[i]);
    return out;
  }

  // Removes the retracted rows of side `s` from bucket `b`. A retraction must name a row the
  // arrangement holds, with the same cells.
  void retract(int s, BucketTable::Cell& b, const std::vector<const Keyed*>& delta) {
    for (const Keyed* u : delta) {
      if (u->diff > 0) continue;
      uint32_t slot = rows_[s].find(u->key, b.head[s]);
      if (slot == kEnd) multiplicity_error(s, u->key);
      if (rows_[s].cells(slot) != cells_of(*u)) {
        // Equal values may encode differently (0.0 and -0.0).
        const Value* stored = decode(s, slot);
        const Value* given = delta_row(*u);
        if (!std::equal(stored, stored + widths_[s], given)) multiplicity_error(s, u->key);
      }
      rows_[s].erase(slot, &b.head[s]);
    }
  }

  // The bucket of a row: key_from_values of its normalized join values, computed over their
  // encoding without building them. False when a join value is None (the row matches nothing).
  bool join_key(int side, const Row& row, Key* out) { return bucket_key(side, row, buf_, out); }
  bool bucket_key(int side, const Row& row, std::string& buf, Key* out) const {
    buf.clear();
    codec::put_varint(buf, on_[side].size());
    for (size_t c : on_[side]) {
      const Value& v = row[c];
      if (v.is_none()) return false;
      if (v.type() == DType::kFloat) codec::put_key_value(buf, normalize(v));
      else codec::put_key_value(buf, v);
    }
    XXH128_hash_t h = XXH3_128bits(buf.data(), buf.size());
    *out = Key{h.low64, h.high64};
    return true;
  }

  // Inner joins without memo emit pairs evaluated at once (no intermediate rows, no sort: the
  // scheduler consolidates for consumers that need it); other joins collect and consolidate.
  bool direct() const { return !memoize_ && !keep_[0] && !keep_[1]; }
  void emit_pair(const Key& lk, const Value* l, const Key& rk, const Value* r, int64_t diff, Batch& out) {
    size_t wl = widths_[0], wr = widths_[1];
    if (direct()) {
      scratch_.resize(wl + wr);
      std::copy(l, l + wl, scratch_.begin());
      std::copy(r, r + wr, scratch_.begin() + static_cast<ptrdiff_t>(wl));
      Key okey = key_combine(lk, rk);
      EvalContext ctx{scratch_.data(), &okey, &lk, &rk};
      Row o;
      o.reserve(exprs_.size());
      for (const auto& e : exprs_) o.push_back(e->eval(ctx));
      out.push_back({okey, std::move(o), diff});
      return;
    }
    Row cols;
    cols.reserve(wl + wr);
    cols.insert(cols.end(), l, l + wl);
    cols.insert(cols.end(), r, r + wr);
    pending_.push_back({key_combine(lk, rk), std::move(cols), lk, rk, diff});
  }

  void emit_unmatched(int side, const Key& k, const Value* row, int64_t diff) {
    Row cols;
    cols.reserve(widths_[0] + widths_[1]);
    if (side == 1) cols.resize(widths_[0]);
    cols.insert(cols.end(), row, row + widths_[side]);
    cols.resize(widths_[0] + widths_[1]);
    if (side == 0) pending_.push_back({key_combine(k, Key{}), std::move(cols), k, std::nullopt, diff});
    else pending_.push_back({key_combine(Key{}, k), std::move(cols), std::nullopt, k, diff});
  }

  // Consolidates the joined rows before evaluating the outputs: changes that cancel (a bucket's
  // unmatched rows re-emitted, a pair moving between buckets) cost no evaluation, and with a
  // non-deterministic apply() every retraction is resolved from the memo before any insertion
  // of the same output key overwrites it.
  void flush(Batch& out) {
    std::sort(pending_.begin(), pending_.end(), [](const Change& a, const Change& b) {
      if (a.okey != b.okey) return a.okey < b.okey;
      return (a.cols <=> b.cols) < 0;
    });
    size_t w = 0;
    for (size_t i = 0; i < pending_.size();) {
      size_t j = i + 1;
      int64_t d = pending_[i].diff;
      while (j < pending_.size() && pending_[j].okey == pending_[i].okey && pending_[j].cols == pending_[i].cols)
        d += pending_[j++].diff;
      if (d != 0) {
        if (w != i) pending_[w] = std::move(pending_[i]);
        pending_[w++].diff = d;
      }
      i = j;
    }
    pending_.resize(w);
    for (bool retractions : {true, false})
      for (const Change& c : pending_) {
        if ((c.diff < 0) != retractions) continue;
        if (memoize_ && c.diff < 0) {
          auto it = memo_.find(c.okey);
          if (it != memo_.end()) {
            out.push_back({c.okey, std::move(it->second), c.diff});
            memo_.erase(it);
            if (tracking_state()) memo_dirty_.insert(c.okey);
            continue;
          }
        }
        EvalContext ctx{c.cols.data(), &c.okey, c.lk ? &*c.lk : nullptr, c.rk ? &*c.rk : nullptr};
        Row r;
        r.reserve(exprs_.size());
        for (const auto& e : exprs_) r.push_back(e->eval(ctx));
        if (memoize_ && c.diff > 0) {
          memo_[c.okey] = r;
          if (tracking_state()) memo_dirty_.insert(c.okey);
        }
        out.push_back({c.okey, std::move(r), c.diff});
      }
    pending_.clear();
  }

  struct Change {
    Key okey;
    Row cols;  // left cells then right cells (None for a missing side)
    std::optional<Key> lk, rk;
    int64_t diff;
  };

  std::array<std::vector<size_t>, 2> on_;
  std::array<size_t, 2> widths_;
  std::array<bool, 2> keep_;
  std::vector<CompiledExprPtr> exprs_;
  bool memoize_;
  // The arrangement: each side's rows (compact cells, by row key) chained per bucket.
  BucketTable buckets_;
  std::array<RowStore, 2> rows_;
  // process() scratch: touched buckets in first-touch order (found by position through
  // touch_map_, sized for the batch), their per-side update lists.
  struct Touched {
    Key bk;
    uint32_t pos;
    uint32_t begin, end;  // its updates in ups_
  };
  static constexpr size_t kAhead = 16;  // prefetch distance (buckets)
  static constexpr size_t kKeepScratch = size_t{1} << 14;
  std::vector<Keyed> ups_, ups_tmp_;
  std::string ups_cells_;
  std::vector<Touched> touched_;
  std::vector<Key> emptied_;
  struct Insert {
    const Keyed* u;
    uint32_t pos;  // its bucket's position (positions stay put until emptied buckets are erased)
  };
  std::vector<Insert> inserts_;
  std::string buf_;
  std::string converted_;  // restore of a version-1 entry: its cells encoding
  std::array<Row, 2> decoded_, delta_decoded_;
  Row scratch_;
  RowsByKey memo_;
  std::vector<Change> pending_;
  // Tracking (operator persisting only): the row keys changed since the last take, per side.
  // Each with the bucket it entered or left (where take_state_changes() finds the row).
  struct Dirty {
    Key key, bk;
  };
  std::array<std::vector<Dirty>, 2> dirty_;
  static constexpr size_t kEntryKeySize = 1 + 16;
  // Restore: rows checked and keyed, not yet inserted.
  struct Staged {
    Key bk;
    uint32_t slot;
    uint8_t port;
  };
  std::array<std::vector<Staged>, kSortRadix> staged_;  // restored rows by the top byte of their bucket key
  std::array<char, kEntryKeySize> last_restored_{};  // the previous entry key restored
  bool restored_any_ = false;
  bool unordered_restore_ = false;
  static constexpr uint8_t kRowsVersion = 2;
  static constexpr uint8_t kMemoPort = 2;
  static constexpr uint8_t kMemoVersion = 1;
  std::unordered_set<Key, KeyHash> memo_dirty_;
};

// Join columns must hold comparable values (numbers compare across int and float).
bool comparable(const Type& a, const Type& b) {
  auto loose = [](DType t) { return t == DType::kAny || t == DType::kNone; };
  return loose(a.base) || loose(b.base) || a.base == b.base || (is_num(a.base) && is_num(b.base));
}

Schema with_optional(const Schema& s, bool optional) {
  std::vector<Column> cols = s.columns();
  if (optional)
    for (auto& c : cols) c.type.optional = true;
  return Schema(std::move(cols));
}

}  // namespace
}  // namespace engine

JoinResult::JoinResult(const Table& l, const Table& r, std::vector<std::pair<std::string, std::string>> on,
                       JoinMode mode)
    : graph_(&l.graph()), left_(l.node()), right_(r.node()), on_(std::move(on)), mode_(mode) {
  if (&l.graph() != &r.graph()) throw GraphError("in join: the tables belong to different graphs");
  for (const auto& [lc, rc] : on_) {
    auto li = l.schema().find(lc);
    if (!li) throw GraphError("in join: unknown column '" + lc + "' in the left table (available: " + l.schema().names() + ")");
    auto ri = r.schema().find(rc);
    if (!ri)
      throw GraphError("in join: unknown column '" + rc + "' in the right table (available: " + r.schema().names() + ")");
    const Type& lt = l.schema()[*li].type;
    const Type& rt = r.schema()[*ri].type;
    if (!engine::comparable(lt, rt))
      throw GraphError("in join: left column '" + lc + "' (" + lt.to_string() + ") cannot be compared with right column '" +
                       rc + "' (" + rt.to_string() + ")");
  }
}

Table JoinResult::select(std::vector<NamedExpr> outputs) const {
  const Table l(graph_, left_);
  const Table r(graph_, right_);
  bool keep_left = mode_ == JoinMode::kLeft || mode_ == JoinMode::kOuter;
  bool keep_right = mode_ == JoinMode::kRight || mode_ == JoinMode::kOuter;
  // A side that can be missing reads as None, so its columns become optional.
  Schema ls = engine::with_optional(l.schema(), keep_right);
  Schema rs = engine::with_optional(r.schema(), keep_left);
  std::vector<Column> both = ls.columns();
  both.insert(both.end(), rs.columns().begin(), rs.columns().end());
  Schema combined(std::move(both));
  internal::CompileScope scope;
  scope.graph = &l.graph().impl();
  scope.op = "join.select";
  scope.schema = &combined;
  scope.left_size = ls.size();
  scope.left = &ls;
  scope.right = &rs;
  std::vector<internal::CompiledExprPtr> exprs;
  std::vector<Column> cols;
  for (auto& o : outputs) {
    if (o.name.empty() || o.name == "id") throw GraphError("in join.select: invalid output column name '" + o.name + "'");
    for (const auto& c : cols)
      if (c.name == o.name) throw GraphError("in join.select: column '" + o.name + "' given twice");
    exprs.push_back(internal::compile(o.expr, scope));
    cols.push_back({o.name, exprs.back()->type});
  }
  std::array<std::vector<size_t>, 2> on;
  for (const auto& [lc, rc] : on_) {
    on[0].push_back(*l.schema().find(lc));
    on[1].push_back(*r.schema().find(rc));
  }
  std::string params = std::string(mode_ == JoinMode::kInner ? "inner" : mode_ == JoinMode::kLeft ? "left"
                                   : mode_ == JoinMode::kRight ? "right" : "outer") + " on ";
  for (size_t i = 0; i < on_.size(); ++i) params += (i ? ", " : "") + on_[i].first + "=" + on_[i].second;
  params += "; " + internal::describe(outputs);
  Graph& g = l.graph();
  return engine::with_params(
      Table(&g, g.impl().add(std::make_unique<engine::JoinNode>(
                    l.node(), r.node(), Schema(std::move(cols)), std::move(on),
                    std::array<size_t, 2>{l.schema().size(), r.schema().size()},
                    std::array<bool, 2>{keep_left, keep_right}, std::move(exprs), scope.saw_nondeterministic))),
      std::move(params));
}

JoinResult Table::join(const Table& other, std::vector<std::pair<std::string, std::string>> on, JoinMode mode) const {
  return JoinResult(*this, other, std::move(on), mode);
}
JoinResult Table::join_left(const Table& other, std::vector<std::pair<std::string, std::string>> on) const {
  return join(other, std::move(on), JoinMode::kLeft);
}
JoinResult Table::join_right(const Table& other, std::vector<std::pair<std::string, std::string>> on) const {
  return join(other, std::move(on), JoinMode::kRight);
}
JoinResult Table::join_outer(const Table& other, std::vector<std::pair<std::string, std::string>> on) const {
  return join(other, std::move(on), JoinMode::kOuter);
}

}  // namespace tidemark
