#include <gtest/gtest.h>

#include <thread>

#include "connectors/fs_source.h"
#include "engine/scheduler.h"
#include "util.h"

namespace tidemark::testing {
namespace {

using Rows = std::multiset<std::string>;

io::fs::ReadOptions streaming_csv() {
  io::fs::ReadOptions o;
  o.format = io::Format::kCsv;
  o.schema = Schema{{"w", t_str()}, {"n", t_int()}};
  o.mode = io::Mode::kStreaming;
  o.autocommit_duration_ms = 20;
  return o;
}

TEST(FsStreaming, NewModifiedAndDeletedFiles) {
  TempDir d;
  write_file(d / "a.csv", "w,n\nx,1\ny,2\n");
  Graph g;
  Table t = io::fs::read(g, d.path(), streaming_csv());
  Collector c;
  io::subscribe(t, c.callbacks());
  std::atomic<bool> stop{false};
  Status status;
  std::thread runner([&] { status = run(g, quiet_options(&stop)); });

  EXPECT_TRUE(c.wait([&] { return c.live == Rows{"(x, 1)", "(y, 2)"}; }));
  write_file_atomic(d / "sub/b.csv", "w,n\nz,3\nq,4\n");
  EXPECT_TRUE(c.wait([&] { return c.live.size() == 4; }));
  EXPECT_EQ(c.last_changes(), (Rows{"+(z, 3)", "+(q, 4)"}));

  // Same size, probably the same mtime tick: the content hash catches it. Written in place, the
  // file may be read half-written first (its rows retracted, then read again whole).
  const uint64_t before = c.last_time();
  write_file(d / "a.csv", "w,n\nx,1\ny,3\n");
  EXPECT_TRUE(c.wait([&] { return c.live == Rows{"(x, 1)", "(y, 3)", "(z, 3)", "(q, 4)"}; }));
  EXPECT_EQ(c.net_changes_after(before), (Rows{"-(y, 2)", "+(y, 3)"}));

  std::filesystem::remove(d / "sub/b.csv");
  EXPECT_TRUE(c.wait([&] { return c.live.size() == 2; }));
  EXPECT_EQ(c.last_changes(), (Rows{"-(z, 3)", "-(q, 4)"}));
  EXPECT_EQ(c.live, (Rows{"(x, 1)", "(y, 3)"}));

  stop = true;
  runner.join();
  EXPECT_TRUE(status.is_ok()) << status.to_string();
  EXPECT_TRUE(c.ended);
}

TEST(FsStreaming, BadRowStopsTheRunWithItsLocation) {
  TempDir d;
  Graph g;
  Table t = io::fs::read(g, d.path(), streaming_csv());
  Collector c;
  io::subscribe(t, c.callbacks());
  std::atomic<bool> stop{false};
  Status status;
  std::thread runner([&] { status = run(g, quiet_options(&stop)); });
  write_file_atomic(d / "bad.csv", "w,n\nx,oops\n");
  runner.join();  // the error ends the run by itself
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("bad.csv:2: column 'n': cannot parse 'oops' as int"), std::string::npos)
      << status.message();
}

// Drives one source by hand the way the persistence layer does.
struct Polled {
  engine::Batch batch;
  std::string offset;
};

Polled poll_once(connectors::FsSource& s) {
  Polled p;
  bool finished = false;
  EXPECT_TRUE(s.open().is_ok());
  Status st = s.poll(p.batch, &finished);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_TRUE(finished);
  engine::consolidate(p.batch);
  p.offset = s.offset();
  return p;
}

Rows as_rows(const engine::Batch& b) {
  Rows r;
  for (const auto& u : b) r.insert((u.diff > 0 ? "+" : "-") + row_string(u.row));
  return r;
}

void offset_round_trip(std::vector<std::string> primary_key) {
  TempDir d;
  write_file(d / "f1.csv", "w,n\na,1\nb,2\n");
  write_file(d / "f2.csv", "w,n\nc,3\nd,4\n");
  write_file(d / "f3.csv", "w,n\ne,5\n");
  auto o = streaming_csv();
  o.mode = io::Mode::kStatic;
  o.primary_key = primary_key;

  connectors::FsSource first(d.path(), o);
  Polled p1 = poll_once(first);
  EXPECT_EQ(p1.batch.size(), 5u);

  // Nothing changed: a resumed source emits nothing, even without replay.
  connectors::FsSource same(d.path(), o);
  ASSERT_TRUE(same.seek(p1.offset).is_ok());
  EXPECT_TRUE(poll_once(same).batch.empty());

  // While "stopped": f1 deleted, f2 modified, f4 new, f3 untouched.
  std::filesystem::remove(d / "f1.csv");
  write_file(d / "f2.csv", "w,n\nc,3\nd,40\nx,9\n");
  write_file(d / "f4.csv", "w,n\nnew,7\n");
  connectors::FsSource second(d.path(), o);
  ASSERT_TRUE(second.seek(p1.offset).is_ok());
  for (const auto& u : p1.batch) second.replayed(u);
  Polled p2 = poll_once(second);
  EXPECT_EQ(as_rows(p2.batch), (Rows{"-(a, 1)", "-(b, 2)", "-(d, 4)", "+(d, 40)", "+(x, 9)", "+(new, 7)"}));
  // Keys of retractions are those of the replayed rows.
  std::set<Key> old_keys;
  for (const auto& u : p1.batch) old_keys.insert(u.key);
  for (const auto& u : p2.batch)
    if (u.diff < 0) {
      EXPECT_TRUE(old_keys.count(u.key)) << row_string(u.row);
    }

  // A third run after a restart replays both earlier runs' changes.
  std::filesystem::remove(d / "f2.csv");
  connectors::FsSource third(d.path(), o);
  for (const auto& u : p1.batch) third.replayed(u);  // replay before seek works as well
  for (const auto& u : p2.batch) third.replayed(u);
  ASSERT_TRUE(third.seek(p2.offset).is_ok());
  EXPECT_EQ(as_rows(poll_once(third).batch), (Rows{"-(c, 3)", "-(d, 40)", "-(x, 9)"}));
}

TEST(FsOffset, SeekAndReplayWithPathKeys) { offset_round_trip({}); }
TEST(FsOffset, SeekAndReplayWithPrimaryKeys) { offset_round_trip({"w"}); }

TEST(FsOffset, BadOffsetsAreRejected) {
  TempDir d;
  auto o = streaming_csv();
  connectors::FsSource s(d.path(), o);
  EXPECT_EQ(s.seek("").code(), StatusCode::kCorruption);
  EXPECT_EQ(s.seek(std::string("\x09", 1)).code(), StatusCode::kNotSupported);
  std::string truncated = std::string("\x01\x02", 2);
  EXPECT_EQ(s.seek(truncated).code(), StatusCode::kCorruption);
}

// The same round trip through the run loop's hooks, as the persistence layer will use them.
TEST(FsOffset, ResumeThroughRunHooks) {
  TempDir d;
  write_file(d / "f1.csv", "w,n\na,1\n");
  write_file(d / "f2.csv", "w,n\nb,2\n");
  auto o = streaming_csv();
  o.mode = io::Mode::kStatic;
  std::string offset;
  std::vector<engine::Update> history;
  {
    Graph g;
    Table t = io::fs::read(g, d.path(), o);
    io::subscribe(t, {[&](const Key& k, const Row& r, uint64_t, bool add) { history.push_back({k, r, add ? 1 : -1}); },
                      nullptr, nullptr});
    engine::RunHooks hooks;
    hooks.at_end = [&](engine::RunControl& s, bool) { return merged_offset(s, &offset); };
    ASSERT_TRUE(engine::run_with_hooks(g, quiet_options(), hooks).is_ok());
  }
  std::filesystem::remove(d / "f1.csv");
  write_file(d / "f3.csv", "w,n\nc,3\n");
  Graph g;
  Table t = io::fs::read(g, d.path(), o);
  Collector c;
  c.strict = false;  // retracts rows of the earlier run
  io::subscribe(t, c.callbacks());
  engine::RunHooks hooks;
  hooks.before_start = [&](engine::RunControl& s) {
    for (auto* shard : s.source_shards(0)) {  // each shard keeps its own files of the offset
      auto& src = shard->source();
      TM_RETURN_IF_ERROR(src.seek(offset));
      for (const auto& u : history) src.replayed(u);
    }
    return Status::ok();
  };
  ASSERT_TRUE(engine::run_with_hooks(g, quiet_options(), hooks).is_ok());
  EXPECT_EQ(c.last_changes(), (Rows{"-(a, 1)", "+(c, 3)"}));
}

}  // namespace
}  // namespace tidemark::testing
