#include <gtest/gtest.h>

#include <thread>

#include "engine/codec.h"
#include "engine/scheduler.h"
#include "util.h"

namespace tidemark::testing {
namespace {

using Rows = std::multiset<std::string>;

TEST(Subject, ProducerThreadFeedsAGroupby) {
  Graph g;
  auto subject = std::make_shared<io::Subject>();
  Table words = io::read_subject(g, subject, Schema{{"w", t_str()}}, "words");
  Table counts = words.groupby({"w"}).reduce({{"w", col("w")}, {"n", reducers::count()}});
  Collector c;
  io::subscribe(counts, c.callbacks());
  Status status;
  std::thread runner([&] { status = run(g, quiet_options()); });

  std::thread producer([&] {
    for (int i = 0; i < 100; ++i) {
      subject->next({Value(i % 3 == 0 ? "a" : "b")});
      if (i % 10 == 9) subject->commit();
    }
  });
  producer.join();
  EXPECT_TRUE(c.wait([&] { return c.live == Rows{"(a, 34)", "(b, 66)"}; }));
  // Uncommitted rows are not delivered until commit()/close().
  subject->next({Value("c")});
  subject->close();
  runner.join();
  EXPECT_TRUE(status.is_ok()) << status.to_string();
  EXPECT_TRUE(c.ended);
  EXPECT_EQ(c.live, (Rows{"(a, 34)", "(b, 66)", "(c, 1)"}));
}

TEST(Subject, KeysFromPrimaryKeyAndExplicitRemovals) {
  Graph g;
  auto subject = std::make_shared<io::Subject>();
  Table t = io::read_subject(g, subject, Schema{{"k", t_str()}, {"v", t_float()}}, "kv", {"k"});
  Collector c;
  std::vector<std::pair<Key, bool>> seen;
  io::SubscribeCallbacks cb = c.callbacks();
  io::subscribe(t, {[&](const Key& k, const Row& r, uint64_t time, bool add) {
                      cb.on_change(k, r, time, add);
                      std::lock_guard lock(c.mu);
                      seen.push_back({k, add});
                    },
                    cb.on_time_end, cb.on_end});
  Status status;
  std::thread runner([&] { status = run(g, quiet_options()); });
  subject->next({Value("x"), Value(1)});  // int into a float column is widened
  subject->commit();
  ASSERT_TRUE(c.wait([&] { return c.live.count("(x, 1.0)") == 1; }));
  subject->remove_with_key(key_from_values({Value("x")}), {Value("x"), Value(1.0)});
  subject->next_with_key(Key{7, 7}, {Value("y"), Value(2.5)});
  subject->close();
  runner.join();
  ASSERT_TRUE(status.is_ok()) << status.to_string();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], std::make_pair(key_from_values({Value("x")}), true));
  // Within one time, changes come in key order.
  EXPECT_EQ(std::set(seen.begin() + 1, seen.end()),
            (std::set<std::pair<Key, bool>>{{key_from_values({Value("x")}), false}, {Key{7, 7}, true}}));
  EXPECT_EQ(c.live, (Rows{"(y, 2.5)"}));
}

TEST(Subject, WrongRowShapeIsAnError) {
  Graph g;
  auto subject = std::make_shared<io::Subject>();
  io::read_subject(g, subject, Schema{{"n", t_int()}}, "nums");
  EXPECT_THROW(io::read_subject(g, subject, Schema{{"n", t_int()}}, "again"), GraphError);
  EXPECT_THROW(io::read_subject(g, std::make_shared<io::Subject>(), Schema{{"n", t_int()}}, "", {"m"}), GraphError);
  subject->next({Value("not a number")});
  subject->close();
  Status s = run(g, quiet_options());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("column 'n': expected int, got str"), std::string::npos) << s.message();
}

// offset() counts committed rows; a resumed run seeks past the rows the program pushes again.
TEST(Subject, SeekSkipsRowsDeliveredBefore) {
  using Keys = std::map<int64_t, Key>;  // row value -> key
  auto run_once = [](const std::string& seek_to, int rows, std::string* offset, Keys* keys) {
    Graph g;
    auto subject = std::make_shared<io::Subject>();
    Table t = io::read_subject(g, subject, Schema{{"n", t_int()}}, "nums");
    io::subscribe(t, {[&](const Key& k, const Row& r, uint64_t, bool) { (*keys)[r[0].as_int()] = k; }, nullptr, nullptr});
    for (int i = 0; i < rows; ++i) subject->next({Value(i)});
    subject->close();
    engine::RunHooks hooks;
    hooks.before_start = [&](engine::RunControl& s) {
      return seek_to.empty() ? Status::ok() : s.sources()[0]->source().seek(seek_to);
    };
    hooks.at_end = [&](engine::RunControl& s, bool) {
      *offset = s.sources()[0]->source().offset();
      return Status::ok();
    };
    EXPECT_TRUE(engine::run_with_hooks(g, quiet_options(), hooks).is_ok());
  };
  std::string off1, off2;
  Keys k1, k2;
  run_once("", 3, &off1, &k1);
  run_once(off1, 5, &off2, &k2);
  std::string_view v = off2;
  uint64_t n = 0;
  ASSERT_TRUE(codec::get_u64(v, &n));
  EXPECT_EQ(n, 5u);
  ASSERT_EQ(k1.size(), 3u);
  ASSERT_EQ(k2.size(), 2u);  // rows 3 and 4 only, with the keys a single run would give them
  Keys all;
  std::string unused;
  run_once("", 5, &unused, &all);
  EXPECT_EQ(k2, (Keys{{3, all[3]}, {4, all[4]}}));
}

}  // namespace
}  // namespace tidemark::testing
