// Row (include/tidemark/value.h): a vector of values with room for Row::kInline values inside
// the row. Every operation is checked against std::vector<Value> doing the same, over rows that
// cross the inline/heap boundary and hold owning values (long strings, tuples) and plain ones.
// Lifetime errors here (a value destroyed twice or never) show under scripts/sanitize.sh asan.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "tidemark/value.h"

namespace tidemark {
namespace {

Value random_value(std::mt19937_64& rng) {
  switch (rng() % 5) {
    case 0: return Value(static_cast<int64_t>(rng() % 100));
    case 1: return Value(std::string(20 + rng() % 40, static_cast<char>('a' + rng() % 26)));  // heap string
    case 2: return Value(std::string(1 + rng() % 5, 'x'));                                   // short string
    case 3: return Value::tuple({Value(static_cast<int64_t>(rng() % 7)), Value("t")});
    default: return Value();
  }
}

void expect_same(const Row& r, const std::vector<Value>& want, int step) {
  ASSERT_EQ(r.size(), want.size()) << "step " << step;
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(r[i], want[i]) << "step " << step << " column " << i;
  ASSERT_EQ(r.empty(), want.empty());
  ASSERT_GE(r.capacity(), r.size());
}

TEST(Row, InlineUpToKInlineValuesThenHeap) {
  Row r;
  EXPECT_EQ(r.capacity(), Row::kInline);
  const Value* inline_data = r.data();
  for (uint32_t i = 0; i < Row::kInline; ++i) r.push_back(Value(std::string(40, static_cast<char>('a' + i))));
  EXPECT_EQ(r.data(), inline_data);  // still inside the row
  r.push_back(Value(int64_t{7}));
  EXPECT_NE(r.data(), inline_data);  // moved to a heap block, values kept
  EXPECT_EQ(r[0], Value(std::string(40, 'a')));
  EXPECT_EQ(r.back(), Value(int64_t{7}));
}

TEST(Row, MovesLeaveTheSourceEmptyAndUsable) {
  for (size_t n : {0, 1, 2, 3, 9}) {
    Row a;
    for (size_t i = 0; i < n; ++i) a.push_back(Value(std::string(30, static_cast<char>('a' + i))));
    Row copy = a;
    Row b(std::move(a));
    EXPECT_EQ(b, copy);
    EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the documented moved-from state
    a.push_back(Value("again"));
    EXPECT_EQ(a.size(), 1u);
    Row c;
    c.push_back(Value(std::string(50, 'z')));
    c = std::move(b);
    EXPECT_EQ(c, copy);
    c = c;  // self-assignment keeps the values
    EXPECT_EQ(c, copy);
  }
}

TEST(Row, EveryOperationMatchesStdVector) {
  std::mt19937_64 rng(20261207);
  for (int round = 0; round < 200; ++round) {
    Row r;
    std::vector<Value> want;
    for (int step = 0; step < 60; ++step) {
      switch (rng() % 10) {
        case 0:
        case 1:
        case 2: {
          Value v = random_value(rng);
          r.push_back(v);
          want.push_back(v);
          break;
        }
        case 3:
          if (!want.empty()) {
            r.pop_back();
            want.pop_back();
          }
          break;
        case 4: {
          size_t at = want.empty() ? 0 : rng() % (want.size() + 1);
          std::vector<Value> more{random_value(rng), random_value(rng)};
          r.insert(r.begin() + at, more.begin(), more.end());
          want.insert(want.begin() + static_cast<std::ptrdiff_t>(at), more.begin(), more.end());
          break;
        }
        case 5:
          if (!want.empty()) {
            size_t a = rng() % want.size(), b = a + rng() % (want.size() - a + 1);
            r.erase(r.begin() + a, r.begin() + b);
            want.erase(want.begin() + static_cast<std::ptrdiff_t>(a), want.begin() + static_cast<std::ptrdiff_t>(b));
          }
          break;
        case 6: {
          size_t n = rng() % 6;
          r.resize(n);
          want.resize(n);
          break;
        }
        case 7: {  // copy round trip and comparison with a copy
          Row c(r);
          Row d;
          d = c;
          ASSERT_EQ(d, r);
          ASSERT_EQ(d <=> r, std::strong_ordering::equal);
          r = std::move(d);
          break;
        }
        case 8: {  // swap with a row of other contents, and back
          Row other{random_value(rng), random_value(rng), random_value(rng)};
          Row keep = other;
          r.swap(other);
          ASSERT_EQ(r, keep);
          r.swap(other);
          break;
        }
        default:
          if (rng() % 4 == 0) {
            r.clear();
            want.clear();
          } else {
            r.reserve(rng() % 12);
          }
      }
      expect_same(r, want, step);
      ASSERT_EQ(r.to_vector(), want);
    }
  }
}

TEST(Row, OrderIsLexicographicLikeStdVector) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::vector<Value> a, b;
    for (size_t n = rng() % 4; n > 0; --n) a.push_back(Value(static_cast<int64_t>(rng() % 3)));
    for (size_t n = rng() % 4; n > 0; --n) b.push_back(Value(static_cast<int64_t>(rng() % 3)));
    ASSERT_EQ(Row(a) <=> Row(b), a <=> b);
    ASSERT_EQ(Row(a) == Row(b), a == b);
  }
}

TEST(Row, PushBackOfItsOwnValueWhileGrowing) {
  Row r;
  r.push_back(Value(std::string(40, 'a')));
  for (int i = 0; i < 20; ++i) r.push_back(r[0]);  // grows at 2, 4, 8, 16: the argument lives in the old block
  ASSERT_EQ(r.size(), 21u);
  for (const Value& v : r) ASSERT_EQ(v, Value(std::string(40, 'a')));
}

TEST(Row, InsertOfItsOwnValues) {
  Row r{Value(std::string(40, 'a')), Value(int64_t{2})};
  r.insert(r.begin() + 1, r.begin(), r.end());
  ASSERT_EQ(r, (Row{Value(std::string(40, 'a')), Value(std::string(40, 'a')), Value(int64_t{2}), Value(int64_t{2})}));
}

TEST(Row, AtChecksTheColumn) {
  Row r{Value(int64_t{1}), Value("a")};
  EXPECT_EQ(r.at(1), Value("a"));
  EXPECT_THROW(r.at(2), std::out_of_range);
}

}  // namespace
}  // namespace tidemark
