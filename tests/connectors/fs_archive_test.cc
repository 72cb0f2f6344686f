// FsSource with a ContentArchive (operator persisting): contents are stashed when read and
// fetched back to retract a changed or deleted file's rows, without replayed rows.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstdio>
#include <map>

#include "connectors/fs_source.h"
#include "engine/scheduler.h"
#include "util.h"

namespace tidemark::testing {
namespace {

using Rows = std::multiset<std::string>;

// In-memory archive: what the persistence layer does over its snapshot storage.
// Shared by a source's shards when TIDEMARK_THREADS runs several workers: locks.
class MemoryArchive final : public engine::ContentArchive {
 public:
  void stash(uint64_t hash, std::string content) override {
    std::lock_guard<std::mutex> l(mu);
    stashed.push_back(hash);
    contents[hash] = std::move(content);
  }
  Result<std::string> fetch(uint64_t hash) override {
    std::lock_guard<std::mutex> l(mu);
    fetched.push_back(hash);
    if (fail) return Status::io_error("injected storage failure");
    auto it = contents.find(hash);
    if (it == contents.end()) return Status::not_found("no archived content");
    return it->second;
  }
  std::map<uint64_t, std::string> contents;
  std::vector<uint64_t> stashed;
  std::vector<uint64_t> fetched;
  bool fail = false;
  std::mutex mu;
};

uint64_t hash_of(const std::string& s) { return XXH3_64bits(s.data(), s.size()); }

std::string hex(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

io::fs::ReadOptions static_csv(std::vector<std::string> primary_key = {}) {
  io::fs::ReadOptions o;
  o.format = io::Format::kCsv;
  o.schema = Schema{{"w", t_str()}, {"n", t_int()}};
  o.mode = io::Mode::kStatic;
  o.primary_key = std::move(primary_key);
  return o;
}

struct Polled {
  Status status;
  engine::Batch raw;    // as polled
  engine::Batch batch;  // consolidated
  std::string offset;
};

// One static run of a source: open, one poll (static sources finish in one poll here).
Polled poll_run(connectors::FsSource& s) {
  Polled p;
  EXPECT_TRUE(s.open().is_ok());
  bool finished = false;
  p.status = s.poll(p.raw, &finished);
  if (!p.status.is_ok()) return p;
  EXPECT_TRUE(finished);
  p.batch = p.raw;
  engine::consolidate(p.batch);
  p.offset = s.offset();
  return p;
}

Rows as_rows(const engine::Batch& b) {
  Rows r;
  for (const auto& u : b) {
    std::string s = u.diff > 0 ? "+" : "-";
    s += row_string(u.row);
    r.insert(std::move(s));
  }
  return r;
}

// (key, row, diff) of every update, to compare retractions exactly.
std::multiset<std::string> exact(const engine::Batch& b) {
  std::multiset<std::string> out;
  for (const auto& u : b)
    out.insert(std::to_string(u.key.lo) + ":" + std::to_string(u.key.hi) + " " + row_string(u.row) + " " +
               std::to_string(u.diff));
  return out;
}

engine::Batch negated(const engine::Batch& b) {
  engine::Batch out;
  for (const auto& u : b) out.push_back({u.key, u.row, -u.diff});
  return out;
}

// The insertions in `b` of rows whose column w is one of `values_of_w`.
engine::Batch rows_of(const engine::Batch& b, const std::set<std::string>& values_of_w) {
  engine::Batch out;
  for (const auto& u : b)
    if (u.diff > 0 && values_of_w.count(u.row[0].as_string())) out.push_back(u);
  return out;
}

std::vector<uint64_t> live(const connectors::FsSource& s) {
  std::vector<uint64_t> out;
  s.live_contents(out);
  return out;
}

std::vector<uint64_t> sorted(std::vector<uint64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

void restart_with_archive(std::vector<std::string> primary_key) {
  TempDir d;
  const std::string f1 = "w,n\na,1\nb,2\n", f2 = "w,n\nc,3\nd,4\n", f3 = "w,n\ne,5\n";
  write_file(d / "f1.csv", f1);
  write_file(d / "f2.csv", f2);
  write_file(d / "f3.csv", f3);
  auto o = static_csv(primary_key);
  MemoryArchive archive;

  connectors::FsSource first(d.path(), o);
  first.set_content_archive(&archive);
  Polled p1 = poll_run(first);
  ASSERT_TRUE(p1.status.is_ok()) << p1.status.to_string();
  EXPECT_EQ(p1.batch.size(), 5u);
  // Every content read is stashed under the hash of the file table.
  EXPECT_EQ(sorted(archive.stashed), sorted({hash_of(f1), hash_of(f2), hash_of(f3)}));
  EXPECT_EQ(archive.contents[hash_of(f2)], f2);
  EXPECT_EQ(live(first), sorted({hash_of(f1), hash_of(f2), hash_of(f3)}));
  EXPECT_TRUE(archive.fetched.empty());

  // Restart, nothing changed: nothing emitted, nothing fetched.
  {
    connectors::FsSource same(d.path(), o);
    same.set_content_archive(&archive);
    ASSERT_TRUE(same.seek(p1.offset).is_ok());
    EXPECT_EQ(live(same), sorted({hash_of(f1), hash_of(f2), hash_of(f3)}));  // after seek, before open
    Polled p = poll_run(same);
    ASSERT_TRUE(p.status.is_ok()) << p.status.to_string();
    EXPECT_TRUE(p.batch.empty());
    EXPECT_TRUE(archive.fetched.empty());
  }

  // While "stopped": f1 deleted, f2 modified, f4 new, f3 untouched. No replayed rows.
  std::filesystem::remove(d / "f1.csv");
  const std::string f2b = "w,n\nc,3\nd,40\nx,9\n", f4 = "w,n\nnew,7\n";
  write_file(d / "f2.csv", f2b);
  write_file(d / "f4.csv", f4);
  archive.stashed.clear();
  connectors::FsSource second(d.path(), o);
  second.set_content_archive(&archive);
  ASSERT_TRUE(second.seek(p1.offset).is_ok());
  Polled p2 = poll_run(second);
  ASSERT_TRUE(p2.status.is_ok()) << p2.status.to_string();
  EXPECT_EQ(as_rows(p2.batch), (Rows{"-(a, 1)", "-(b, 2)", "-(d, 4)", "+(d, 40)", "+(x, 9)", "+(new, 7)"}));
  // Exactly the earlier rows of f1 and f2 are retracted, with their keys.
  engine::Batch retracted;
  for (const auto& u : p2.raw)
    if (u.diff < 0) retracted.push_back(u);
  EXPECT_EQ(exact(retracted), exact(negated(rows_of(p1.batch, {"a", "b", "c", "d"}))));
  EXPECT_EQ(sorted(archive.fetched), sorted({hash_of(f1), hash_of(f2)}));
  EXPECT_EQ(sorted(archive.stashed), sorted({hash_of(f2b), hash_of(f4)}));
  EXPECT_EQ(live(second), sorted({hash_of(f2b), hash_of(f3), hash_of(f4)}));

  // A third run retracts rows stashed by the second one.
  std::filesystem::remove(d / "f2.csv");
  archive.fetched.clear();
  connectors::FsSource third(d.path(), o);
  third.set_content_archive(&archive);
  ASSERT_TRUE(third.seek(p2.offset).is_ok());
  Polled p3 = poll_run(third);
  ASSERT_TRUE(p3.status.is_ok()) << p3.status.to_string();
  EXPECT_EQ(as_rows(p3.batch), (Rows{"-(c, 3)", "-(d, 40)", "-(x, 9)"}));
  engine::Batch f2b_rows = rows_of(p2.batch, {"d", "x"});
  for (const auto& u : p1.batch)
    if (u.row[0].as_string() == "c") f2b_rows.push_back(u);  // unchanged row: emitted by run 1
  EXPECT_EQ(exact(p3.raw), exact(negated(f2b_rows)));
  EXPECT_EQ(archive.fetched, std::vector<uint64_t>{hash_of(f2b)});
  EXPECT_EQ(live(third), sorted({hash_of(f3), hash_of(f4)}));
}

TEST(FsArchive, RestartRetractsFromTheArchiveWithPathKeys) { restart_with_archive({}); }
TEST(FsArchive, RestartRetractsFromTheArchiveWithPrimaryKeys) { restart_with_archive({"w"}); }

TEST(FsArchive, FetchFailureIsAnErrorNamingPathAndHash) {
  TempDir d;
  const std::string f1 = "w,n\na,1\n";
  write_file(d / "f1.csv", f1);
  auto o = static_csv();
  MemoryArchive archive;
  connectors::FsSource first(d.path(), o);
  first.set_content_archive(&archive);
  Polled p1 = poll_run(first);
  ASSERT_TRUE(p1.status.is_ok()) << p1.status.to_string();

  write_file(d / "f1.csv", "w,n\na,2\n");
  archive.fail = true;
  {
    connectors::FsSource s(d.path(), o);
    s.set_content_archive(&archive);
    ASSERT_TRUE(s.seek(p1.offset).is_ok());
    Polled p = poll_run(s);
    EXPECT_EQ(p.status.code(), StatusCode::kIoError) << p.status.to_string();
    EXPECT_NE(p.status.message().find("'" + d / "f1.csv" + "'"), std::string::npos) << p.status.message();
    EXPECT_NE(p.status.message().find(hex(hash_of(f1))), std::string::npos) << p.status.message();
    EXPECT_NE(p.status.message().find("injected storage failure"), std::string::npos) << p.status.message();
  }
  // Content missing from the archive (deleted file this time).
  archive.fail = false;
  archive.contents.clear();
  std::filesystem::remove(d / "f1.csv");
  {
    connectors::FsSource s(d.path(), o);
    s.set_content_archive(&archive);
    ASSERT_TRUE(s.seek(p1.offset).is_ok());
    Polled p = poll_run(s);
    EXPECT_EQ(p.status.code(), StatusCode::kNotFound) << p.status.to_string();
    EXPECT_NE(p.status.message().find("cannot retract the earlier rows of '" + d / "f1.csv" + "'"),
              std::string::npos)
        << p.status.message();
    EXPECT_NE(p.status.message().find(hex(hash_of(f1))), std::string::npos) << p.status.message();
  }
  // The archive returning other content than the hash names.
  archive.contents[hash_of(f1)] = "w,n\nz,9\n";
  {
    connectors::FsSource s(d.path(), o);
    s.set_content_archive(&archive);
    ASSERT_TRUE(s.seek(p1.offset).is_ok());
    Polled p = poll_run(s);
    EXPECT_EQ(p.status.code(), StatusCode::kCorruption) << p.status.to_string();
    EXPECT_NE(p.status.message().find(hex(hash_of(f1))), std::string::npos) << p.status.message();
  }
}

TEST(FsArchive, ReparseWithDifferentOptionsIsAnError) {
  TempDir d;
  write_file(d / "f1.csv", "w,n\na,1\nb,2\n");
  auto o = static_csv();
  MemoryArchive archive;
  connectors::FsSource first(d.path(), o);
  first.set_content_archive(&archive);
  Polled p1 = poll_run(first);
  ASSERT_TRUE(p1.status.is_ok()) << p1.status.to_string();
  std::filesystem::remove(d / "f1.csv");

  auto changed = o;
  changed.csv_delimiter = ';';
  connectors::FsSource s(d.path(), changed);
  s.set_content_archive(&archive);
  ASSERT_TRUE(s.seek(p1.offset).is_ok());
  Polled p = poll_run(s);
  EXPECT_FALSE(p.status.is_ok());
  EXPECT_NE(p.status.message().find("parsing it again failed"), std::string::npos) << p.status.message();

  // Rows that now parse differently (skipped as bad): the count no longer matches.
  auto skipping = o;
  skipping.skip_bad_rows = true;
  skipping.schema = Schema{{"w", t_str()}, {"n", t_bool()}};
  connectors::FsSource s2(d.path(), skipping);
  s2.set_content_archive(&archive);
  ASSERT_TRUE(s2.seek(p1.offset).is_ok());
  Polled q = poll_run(s2);
  EXPECT_EQ(q.status.code(), StatusCode::kFailedPrecondition) << q.status.to_string();
  EXPECT_NE(q.status.message().find("were the read options changed?"), std::string::npos) << q.status.message();
}

TEST(FsArchive, SkippedBadRowsAndEmptyFiles) {
  TempDir d;
  const std::string f1 = "w,n\na,1\nbad,x\nb,2\n", empty = "w,n\n";
  write_file(d / "f1.csv", f1);
  write_file(d / "empty.csv", empty);
  auto o = static_csv();
  o.skip_bad_rows = true;
  MemoryArchive archive;
  connectors::FsSource first(d.path(), o);
  first.set_content_archive(&archive);
  Polled p1 = poll_run(first);
  ASSERT_TRUE(p1.status.is_ok()) << p1.status.to_string();
  EXPECT_EQ(as_rows(p1.batch), (Rows{"+(a, 1)", "+(b, 2)"}));
  // A file without rows needs no content to be retracted: not stashed, not live.
  EXPECT_EQ(archive.stashed, std::vector<uint64_t>{hash_of(f1)});
  EXPECT_EQ(live(first), std::vector<uint64_t>{hash_of(f1)});

  std::filesystem::remove(d / "f1.csv");
  std::filesystem::remove(d / "empty.csv");
  connectors::FsSource s(d.path(), o);
  s.set_content_archive(&archive);
  ASSERT_TRUE(s.seek(p1.offset).is_ok());
  Polled p = poll_run(s);
  ASSERT_TRUE(p.status.is_ok()) << p.status.to_string();
  EXPECT_EQ(exact(p.raw), exact(negated(p1.batch)));
  EXPECT_EQ(archive.fetched, std::vector<uint64_t>{hash_of(f1)});
  EXPECT_TRUE(live(s).empty());
}

TEST(FsArchive, IdenticalContentsAreListedOnce) {
  TempDir d;
  const std::string c = "w,n\na,1\n";
  write_file(d / "x.csv", c);
  write_file(d / "y.csv", c);
  MemoryArchive archive;
  connectors::FsSource s(d.path(), static_csv());
  s.set_content_archive(&archive);
  Polled p = poll_run(s);
  ASSERT_TRUE(p.status.is_ok()) << p.status.to_string();
  EXPECT_EQ(live(s), std::vector<uint64_t>{hash_of(c)});
  std::vector<uint64_t> out = {42};  // appends
  s.live_contents(out);
  EXPECT_EQ(out, (std::vector<uint64_t>{42, hash_of(c)}));
}

// Streaming: the rows of a changing file are not kept; each change fetches the content stashed
// last (within the same run too).
TEST(FsArchive, StreamingFetchesOnEveryChange) {
  TempDir d;
  const std::string v1 = "w,n\na,1\n", v2 = "w,n\na,1\nb,2\n", v3 = "w,n\nc,3\n";
  write_file(d / "f.csv", v1);
  auto o = static_csv();
  o.mode = io::Mode::kStreaming;
  o.autocommit_duration_ms = 20;
  MemoryArchive archive;
  connectors::FsSource s(d.path(), o);
  s.set_content_archive(&archive);
  ASSERT_TRUE(s.open().is_ok());
  auto poll = [&] {
    engine::Batch b;
    bool finished = true;
    Status st = s.poll(b, &finished);
    EXPECT_TRUE(st.is_ok()) << st.to_string();
    EXPECT_FALSE(finished);
    return b;
  };
  engine::Batch b1 = poll();
  EXPECT_EQ(as_rows(b1), (Rows{"+(a, 1)"}));
  write_file(d / "f.csv", v2);  // different size: found by the next scan
  engine::Batch b2 = poll();
  EXPECT_EQ(exact(b2), exact([&] {
              engine::Batch want = negated(b1);
              for (const auto& u : b2)
                if (u.diff > 0) want.push_back(u);
              return want;
            }()));
  EXPECT_EQ(as_rows(b2), (Rows{"-(a, 1)", "+(a, 1)", "+(b, 2)"}));
  EXPECT_EQ(archive.fetched, std::vector<uint64_t>{hash_of(v1)});
  write_file(d / "f.csv", v3);
  engine::Batch b3 = poll();
  EXPECT_EQ(as_rows(b3), (Rows{"-(a, 1)", "-(b, 2)", "+(c, 3)"}));
  EXPECT_EQ(archive.fetched, (std::vector<uint64_t>{hash_of(v1), hash_of(v2)}));
  EXPECT_EQ(archive.stashed, (std::vector<uint64_t>{hash_of(v1), hash_of(v2), hash_of(v3)}));
  EXPECT_EQ(live(s), std::vector<uint64_t>{hash_of(v3)});
  std::filesystem::remove(d / "f.csv");
  EXPECT_EQ(as_rows(poll()), (Rows{"-(c, 3)"}));
  EXPECT_TRUE(live(s).empty());
}

// Through the run loop's hooks, as the persistence layer drives it: archive, then seek, no
// replayed rows.
TEST(FsArchive, ResumeThroughRunHooks) {
  TempDir d;
  write_file(d / "f1.csv", "w,n\na,1\n");
  write_file(d / "f2.csv", "w,n\nb,2\n");
  auto o = static_csv();
  MemoryArchive archive;
  std::string offset;
  {
    Graph g;
    Table t = io::fs::read(g, d.path(), o);
    io::subscribe(t, {[](const Key&, const Row&, uint64_t, bool) {}, nullptr, nullptr});
    engine::RunHooks hooks;
    hooks.before_start = [&](engine::RunControl& s) {
      for (auto* shard : s.source_shards(0)) shard->source().set_content_archive(&archive);
      return Status::ok();
    };
    hooks.at_end = [&](engine::RunControl& s, bool) { return merged_offset(s, &offset); };
    ASSERT_TRUE(engine::run_with_hooks(g, quiet_options(), hooks).is_ok());
  }
  EXPECT_EQ(archive.stashed.size(), 2u);
  std::filesystem::remove(d / "f1.csv");
  write_file(d / "f3.csv", "w,n\nc,3\n");
  Graph g;
  Table t = io::fs::read(g, d.path(), o);
  Collector c;
  c.strict = false;  // retracts rows of the earlier run
  io::subscribe(t, c.callbacks());
  engine::RunHooks hooks;
  std::vector<uint64_t> live_at_start;
  hooks.before_start = [&](engine::RunControl& s) {
    for (auto* shard : s.source_shards(0)) {  // each shard keeps its own files of the offset
      auto& src = shard->source();
      src.set_content_archive(&archive);
      TM_RETURN_IF_ERROR(src.seek(offset));
      src.live_contents(live_at_start);
    }
    return Status::ok();
  };
  ASSERT_TRUE(engine::run_with_hooks(g, quiet_options(), hooks).is_ok());
  EXPECT_EQ(c.last_changes(), (Rows{"-(a, 1)", "+(c, 3)"}));
  EXPECT_EQ(live_at_start.size(), 2u);
}

}  // namespace
}  // namespace tidemark::testing
