// State-entry decoders against damaged entries (regressions from fuzz/fuzz_operator_state.cc).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/codec.h"
#include "engine/collection_io.h"
#include "engine/node.h"
#include "tidemark/tidemark.h"

namespace tidemark::engine {
namespace {

// A groupby entry: key = the group's values; value = version 1, live row count, emitted flag,
// last output row, then the reducer states (here one multiset: value -> count).
std::string group_entry(int64_t rows, int64_t multiset_count) {
  std::string v;
  codec::put_u8(v, 1);
  codec::put_i64(v, rows);
  codec::put_u8(v, 0);
  codec::put_row(v, Row{});
  codec::put_varint(v, 1);
  codec::put_value(v, Value(int64_t{5}));
  codec::put_i64(v, multiset_count);
  return v;
}

TEST(RestoreBounds, ReducerCountsBeyondTheGroupsRowsAreCorruption) {
  // A sorted_tuple whose stored count said 2^40 made the next output materialize 2^40 values.
  for (const char* reducer : {"sorted_tuple", "count_distinct"}) {
    SCOPED_TRACE(reducer);
    Expr r = std::string(reducer) == "sorted_tuple" ? reducers::sorted_tuple(col("v")) : reducers::count_distinct(col("v"));
    auto restore = [&](int64_t rows, int64_t count) {
      std::string key;
      codec::put_row(key, Row{Value("a")});
      Graph g2;  // a fresh node per attempt
      Table in2 = add_source(g2, std::make_unique<BatchesSource>(std::vector<Batch>{}),
                             Schema{{"g", t_str()}, {"v", t_int()}});
      Table out2 = in2.groupby({"g"}).reduce({{"g", col("g")}, {"r", r}});
      return g2.impl().node(out2.node()).restore_state_entry(key, group_entry(rows, count));
    };
    EXPECT_TRUE(restore(3, 3).is_ok());
    for (auto [rows, count] : {std::pair<int64_t, int64_t>{1, int64_t{1} << 40}, {3, 4}, {3, 0}, {3, -1}}) {
      Status st = restore(rows, count);
      EXPECT_EQ(st.code(), StatusCode::kCorruption) << rows << " rows, count " << count;
      EXPECT_THAT(st.message(), ::testing::HasSubstr("groupby"));
    }
  }
}

}  // namespace
}  // namespace tidemark::engine
