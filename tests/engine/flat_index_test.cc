// engine::IntIndex and engine::KeyIndex (flat_index.h) against std::unordered_map over random
// insert / erase / find sequences: dense values (a small domain, so probe runs are long and
// erasures shift entries back), extreme values, and growth from empty.
#include <gtest/gtest.h>

#include <limits>
#include <random>
#include <unordered_map>
#include <vector>

#include "engine/flat_index.h"

namespace tidemark::engine {
namespace {

template <class Index, class K, class Hash, class MakeKey>
void check_against_map(uint64_t seed, size_t ops, MakeKey&& make_key) {
  std::mt19937_64 rng(seed);
  Index index;
  std::unordered_map<K, uint32_t, Hash> ref;
  std::vector<K> keys;
  uint32_t next_slot = 0;
  for (size_t op = 0; op < ops; ++op) {
    const K k = make_key(rng);
    const unsigned what = rng() % 10;
    auto it = ref.find(k);
    if (what < 5) {  // insert if absent
      if (it == ref.end()) {
        index.insert(k, next_slot);
        ref.emplace(k, next_slot++);
        keys.push_back(k);
      }
    } else if (what < 8) {  // erase (absent keys too)
      index.erase(k);
      if (it != ref.end()) ref.erase(it);
    } else if (!keys.empty()) {  // erase a key seen before (most likely present)
      const K& e = keys[rng() % keys.size()];
      index.erase(e);
      ref.erase(e);
    }
    ASSERT_EQ(index.size(), ref.size()) << "op " << op;
    if (op % 64 == 0 || op + 1 == ops) {
      for (const K& s : keys) {
        auto r = ref.find(s);
        ASSERT_EQ(index.find(s), r == ref.end() ? IntIndex::kNone : r->second) << "op " << op;
      }
    }
  }
}

TEST(IntIndex, MatchesAMapOverRandomInsertsAndErasures) {
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    // Few distinct values: the table stays small and full, erasures shift long runs back.
    check_against_map<IntIndex, int64_t, std::hash<int64_t>>(seed, 20'000, [](std::mt19937_64& rng) {
      return static_cast<int64_t>(rng() % 200) - 100;
    });
    // Many values (growth), including multiples of a power of two (same low bits).
    check_against_map<IntIndex, int64_t, std::hash<int64_t>>(seed, 20'000, [](std::mt19937_64& rng) {
      return static_cast<int64_t>(rng() % 5000) * (rng() % 2 ? 1024 : 1);
    });
    if (HasFatalFailure()) return;
  }
}

TEST(IntIndex, ExtremeValuesAndEmpty) {
  IntIndex index;
  EXPECT_EQ(index.find(0), IntIndex::kNone);
  index.erase(7);  // absent, empty table
  const int64_t lo = std::numeric_limits<int64_t>::min(), hi = std::numeric_limits<int64_t>::max();
  index.insert(lo, 1);
  index.insert(hi, 2);
  index.insert(0, 3);
  index.insert(-1, 4);
  EXPECT_EQ(index.find(lo), 1u);
  EXPECT_EQ(index.find(hi), 2u);
  EXPECT_EQ(index.find(0), 3u);
  EXPECT_EQ(index.find(-1), 4u);
  EXPECT_EQ(index.find(1), IntIndex::kNone);
  index.erase(hi);
  EXPECT_EQ(index.find(hi), IntIndex::kNone);
  EXPECT_EQ(index.find(lo), 1u);
  index.clear();
  EXPECT_EQ(index.size(), 0u);
  EXPECT_EQ(index.find(lo), IntIndex::kNone);
  index.insert(5, 9);
  EXPECT_EQ(index.find(5), 9u);
}

TEST(KeyIndex, MatchesAMapOverRandomInsertsAndErasures) {
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    // Keys whose low words collide often (the index probes from the low word).
    check_against_map<KeyIndex, Key, KeyHash>(seed, 20'000, [](std::mt19937_64& rng) {
      return Key{rng() % 64, rng() % 8};
    });
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace tidemark::engine
