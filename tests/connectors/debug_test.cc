#include <gtest/gtest.h>

#include "util.h"

namespace tidemark::testing {
namespace {

TEST(Markdown, TypesIdsAndPrinting) {
  Graph g;
  Table t = debug::table_from_markdown(g, R"(
      | name  | age | score | ok    | note
    1 | alice | 30  | 1.5   | True  | None
    2 | bob   | 25  | 2     | False | hi
  )");
  EXPECT_EQ(t.schema(), (Schema{{"name", t_str()}, {"age", t_int()}, {"score", t_float()}, {"ok", t_bool()},
                               {"note", optional(t_str())}}));
  auto changes = debug::compute_changes(t);
  ASSERT_EQ(changes.size(), 2u);
  std::set<Key> keys = {changes[0].key, changes[1].key};
  EXPECT_EQ(keys, (std::set<Key>{key_from_values({Value(1)}), key_from_values({Value(2)})}));
  Graph g2;
  EXPECT_EQ(debug::table_to_string(debug::table_from_markdown(g2, "| a | b |\n|---|---|\n| x | 1 |\n| y | 0 |\n")),
            "a | b\n"
            "x | 1\n"
            "y | 0\n");
}

TEST(Markdown, TimeAndDiffMakeIncrementalInput) {
  Graph g;
  Table t = debug::table_from_markdown(g, R"(
      | w | __time__ | __diff__
    1 | a | 4        | 1
    2 | b | 2        | 1
    1 | a | 6        | -1
    3 | c | 6        | 1
  )");
  EXPECT_EQ(t.schema(), (Schema{{"w", t_str()}}));
  Table counts = t.reduce({{"n", reducers::count()}});
  auto changes = debug::compute_changes(counts);
  std::vector<std::string> got;
  std::set<uint64_t> times;
  for (const auto& c : changes) {
    got.push_back(row_string(c.row) + (c.diff > 0 ? "+" : "-"));
    times.insert(c.time);
  }
  // Batches in ascending __time__ order: {b}, {a}, {-a, c}; the last one leaves the count at 2.
  EXPECT_EQ(times.size(), 2u);
  EXPECT_EQ(got, (std::vector<std::string>{"(1)+", "(1)-", "(2)+"}));
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_LT(changes[0].time, changes[1].time);

  Graph g2;
  Table t2 = debug::table_from_markdown(g2, R"(
      | w | __time__ | __diff__
    1 | a | 1        | 1
    2 | b | 1        | 1
    1 | a | 2        | -1
  )");
  EXPECT_EQ(debug::table_to_string(t2), "w\nb\n");
}

TEST(Markdown, Mistakes) {
  Graph g;
  EXPECT_THROW(debug::table_from_markdown(g, ""), GraphError);
  EXPECT_THROW(debug::table_from_markdown(g, "a | b\n1\n"), GraphError);
  EXPECT_THROW(debug::table_from_markdown(g, "a | __time__\n1 | x\n"), GraphError);
  Graph g2;
  Table bad = debug::table_from_markdown(g2, "a\n1\n").select({{"b", col("a") / 0}});
  EXPECT_THROW(debug::table_to_string(bad), std::runtime_error);
}

}  // namespace
}  // namespace tidemark::testing
