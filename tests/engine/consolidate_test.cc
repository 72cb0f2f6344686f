// engine::consolidate (node.h) against a reference: diffs of equal (key, row) summed, zeros
// dropped, keys in order, within a key retractions before insertions, each in row order. Over
// random batches, batches already in key order (its fast path), and nearly sorted ones.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <vector>

#include "engine/node.h"

namespace tidemark::engine {
namespace {

Batch reference(const Batch& in) {
  std::map<std::pair<Key, Row>, int64_t> sums;
  for (const Update& u : in) sums[{u.key, u.row}] += u.diff;
  Batch out;
  // Per key: retractions then insertions, each in row order (the map's order).
  for (auto it = sums.begin(); it != sums.end();) {
    auto end = it;
    while (end != sums.end() && end->first.first == it->first.first) ++end;
    for (auto j = it; j != end; ++j)
      if (j->second < 0) out.push_back({j->first.first, j->first.second, j->second});
    for (auto j = it; j != end; ++j)
      if (j->second > 0) out.push_back({j->first.first, j->first.second, j->second});
    it = end;
  }
  return out;
}

void expect_equal(const Batch& got, const Batch& want, int round) {
  ASSERT_EQ(got.size(), want.size()) << "round " << round;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].key, want[i].key) << "round " << round << " update " << i;
    ASSERT_EQ(got[i].row, want[i].row) << "round " << round << " update " << i;
    ASSERT_EQ(got[i].diff, want[i].diff) << "round " << round << " update " << i;
  }
}

TEST(Consolidate, MatchesTheReferenceOnRandomSortedAndNearlySortedBatches) {
  std::mt19937_64 rng(42);
  for (int round = 0; round < 3000; ++round) {
    const size_t n = rng() % 40;
    const uint64_t keys = 1 + rng() % 30;
    Batch b;
    for (size_t i = 0; i < n; ++i) {
      Key k{rng() % keys, rng() % 2};
      Row r{Value(static_cast<int64_t>(rng() % 3)), Value(std::string(rng() % 2 ? 20 : 2, 'w'))};
      int64_t diff = static_cast<int64_t>(rng() % 5) - 2;  // zeros included
      b.push_back({k, std::move(r), diff});
    }
    switch (round % 3) {
      case 0: break;  // random order, repeated keys
      case 1:         // in key order, one update per key (the fast path)
        std::sort(b.begin(), b.end(), [](const Update& x, const Update& y) { return x.key < y.key; });
        b.erase(std::unique(b.begin(), b.end(), [](const Update& x, const Update& y) { return x.key == y.key; }), b.end());
        break;
      default:  // in key order with one pair swapped or a key repeated
        std::sort(b.begin(), b.end(), [](const Update& x, const Update& y) { return x.key < y.key; });
        if (b.size() > 2) std::swap(b[rng() % b.size()], b[rng() % b.size()]);
    }
    Batch want = reference(b);
    consolidate(b);
    expect_equal(b, want, round);
  }
}

}  // namespace
}  // namespace tidemark::engine
