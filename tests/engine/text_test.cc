// Text (value.h), the storage of string, bytes and JSON values: inline up to 15 bytes, longer in
// a shared heap block. Round trips at the boundary, copies sharing a block across threads,
// moves, assignment onto itself, order and equality between inline and heap texts, and the
// Value operations that treat short texts as plain bytes (owns_nothing, relocation in rows).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/codec.h"
#include "tidemark/value.h"

namespace tidemark {
namespace {

std::string text_of(size_t n, char first = 'a') {
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(static_cast<char>(first + i % 26));
  return s;
}

TEST(Text, RoundTripsAroundTheInlineLimit) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{14}, size_t{15}, size_t{16}, size_t{17}, size_t{100}, size_t{5000}}) {
    SCOPED_TRACE("size " + std::to_string(n));
    std::string s = text_of(n);
    if (n) s[n / 2] = '\0';  // an embedded NUL too
    Text t(s);
    EXPECT_EQ(t.view(), s);
    EXPECT_EQ(t.size(), n);
    EXPECT_EQ(t.on_heap(), n > Text::kInlineMax);
    Text copy(t);
    EXPECT_EQ(copy.view(), s);
    EXPECT_EQ(copy, t);
    Text moved(std::move(copy));
    EXPECT_EQ(moved.view(), s);
    EXPECT_EQ(copy.view(), "");  // NOLINT: a moved-from text is empty
    Text assigned;
    assigned = t;
    EXPECT_EQ(assigned.view(), s);
    assigned = assigned;  // NOLINT: self-assignment keeps it
    EXPECT_EQ(assigned.view(), s);
    assigned = std::move(moved);
    EXPECT_EQ(assigned.view(), s);
    // Values of each text type keep it through the codec.
    for (const Value& v : {Value(s), Value::bytes(s), Value::json_normalized(s)}) {
      std::string enc;
      codec::put_value(enc, v);
      std::string_view in = enc;
      Value back;
      ASSERT_TRUE(codec::get_value(in, &back));
      EXPECT_EQ(back, v);
      EXPECT_EQ(back.type(), v.type());
      EXPECT_EQ(v.owns_nothing(), n <= Text::kInlineMax);
    }
  }
}

TEST(Text, OrderAndEqualityAgreeWithStringsAcrossInlineAndHeap) {
  std::mt19937_64 rng(7);
  std::vector<std::string> pool;
  for (int i = 0; i < 300; ++i) {
    const size_t n = rng() % 3 == 0 ? 10 + rng() % 12 : rng() % 20;  // many around 15/16
    std::string s = text_of(n, static_cast<char>('a' + rng() % 2));
    if (!s.empty() && rng() % 4 == 0) s.back() = '\0';
    pool.push_back(s);
  }
  for (const auto& a : pool)
    for (const auto& b : pool) {
      const Text ta(a), tb(b);
      ASSERT_EQ(ta == tb, a == b) << a << " / " << b;
      ASSERT_EQ(ta <=> tb, a.compare(b) <=> 0) << a << " / " << b;
      ASSERT_EQ(Value(a) == Value(b), a == b);
      ASSERT_EQ(Value(a) <=> Value(b), a.compare(b) <=> 0);
      if (a == b) ASSERT_EQ(Value(a).hash(), Value(b).hash());
    }
}

// A heap block shared by copies on several threads is freed once, after the last copy (run
// under ThreadSanitizer/ASan by scripts/sanitize.sh).
TEST(Text, CopiesOfOneBlockLiveAndDieOnSeveralThreads) {
  const std::string s = text_of(64);
  for (int round = 0; round < 20; ++round) {
    std::vector<Value> copies(4000, Value(s));
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        std::vector<Value> mine(copies.begin() + t * 1000, copies.begin() + (t + 1) * 1000);
        for (int i = 0; i < 200; ++i) mine.push_back(mine[static_cast<size_t>(i)]);
        for (const Value& v : mine) ASSERT_EQ(v.as_string(), s);
      });
    for (auto& th : threads) th.join();
  }
}

// Rows move texts as bytes (short ones own nothing; long ones move their block pointer).
TEST(Text, RowsOfShortAndLongTextsSurviveGrowthAndSorting) {
  std::mt19937_64 rng(11);
  std::vector<Row> rows;
  std::vector<std::vector<std::string>> want;
  for (int i = 0; i < 500; ++i) {
    Row r;
    std::vector<std::string> w;
    for (size_t c = 0, n = rng() % 6; c < n; ++c) {
      std::string s = text_of(rng() % 40, static_cast<char>('a' + rng() % 3));
      r.push_back(Value(s));
      w.push_back(s);
    }
    rows.push_back(std::move(r));
    want.push_back(std::move(w));
  }
  std::vector<size_t> order(rows.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::vector<Row> sorted = rows;
  std::sort(sorted.begin(), sorted.end());
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rows[a] < rows[b]; });
  for (size_t i = 0; i < sorted.size(); ++i) {
    const auto& w = want[order[i]];
    ASSERT_EQ(sorted[i].size(), w.size());
    for (size_t c = 0; c < w.size(); ++c) ASSERT_EQ(sorted[i][c].as_string(), w[c]);
  }
}

}  // namespace
}  // namespace tidemark
