// Persistence semantics on in-memory sources: resume, every mode and access value, faults.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <filesystem>
#include <fstream>

#include "engine/codec.h"
#include "engine/collection_io.h"
#include "engine/scheduler.h"
#include "persistence/manifest.h"
#include "persistence/state_store.h"
#include "storage/format_constants.h"
#include "storage/chunk_format.h"
#include "storage/fault_injecting_store.h"
#include "storage/lock.h"
#include "tidemark/tidemark.h"

namespace tidemark {
namespace {

using engine::Batch;
using engine::CapturedChange;
using persistence::Backend;
using persistence::Config;
using persistence::PersistenceMode;
using persistence::SnapshotAccess;

const Schema kWords{{"word", t_str()}};

Batch words(std::initializer_list<const char*> ws, uint64_t& next_key) {
  Batch b;
  for (const char* w : ws) b.push_back({Key{next_key++, 77}, {Value(w)}, 1});
  return b;
}

// The canonical three-run word count input: each run appends two batches.
std::vector<Batch> wordcount_input() {
  uint64_t k = 1;
  return {words({"abc", "def", "foo"}, k), words({"foo", "xyz"}, k), words({"abc", "xxx"}, k),
          words({"foo"}, k),               words({"abc", "def"}, k), words({"xyz"}, k)};
}

using Build = std::function<Table(Graph&, Table)>;

Table count_words(Graph&, Table in) {
  return in.groupby({"word"}).reduce({{"word", col("word")}, {"count", reducers::count()}});
}

struct RunResult {
  std::vector<std::string> logs;
  Status status;
  std::vector<CapturedChange> changes;
  std::vector<engine::Time> times;  // distinct times with output, in order
};

// Runs `build` over the first `n` batches of `input` (a source named "words") with `cfg`.
RunResult run_prefix(const std::vector<Batch>& input, size_t n, const Config& cfg, const Build& build = count_words,
                     const std::string& source_name = "words", const Schema& schema = kWords) {
  Graph g;
  std::vector<Batch> prefix(input.begin(), input.begin() + static_cast<long>(n));
  Table in = engine::add_source(g, std::make_unique<engine::BatchesSource>(prefix, "words"), schema, source_name);
  Table out = build(g, in);
  auto captured = std::make_shared<std::vector<CapturedChange>>();
  engine::add_sink(out, std::make_unique<engine::CaptureSink>(captured), "capture");
  RunOptions o;
  o.handle_signals = false;
  o.progress_interval_s = 0;
  RunResult r;
  o.log = [&r](const std::string& m) { r.logs.push_back(m); };
  o.persistence_config = cfg;
  r.status = run(g, o);
  r.changes = *captured;
  for (const auto& c : r.changes)
    if (r.times.empty() || r.times.back() != c.time) r.times.push_back(c.time);
  return r;
}

std::vector<std::string> diffs(const RunResult& r) {
  std::vector<std::string> out;
  for (const auto& c : r.changes) {
    std::string s = c.diff > 0 ? "+" : "-";
    for (size_t i = 0; i < c.row.size(); ++i) s += (i ? "," : "") + c.row[i].to_string();
    out.push_back(s);
  }
  std::sort(out.begin(), out.end());
  return out;
}

using V = std::vector<std::string>;

// A sink that asks the run to stop once it has seen a time (a stop request arriving mid-run).
class StopAfterFirstTime final : public engine::Sink {
 public:
  explicit StopAfterFirstTime(std::atomic<bool>* stop) : stop_(stop) {}
  std::string describe() const override { return "stop after the first time"; }
  Status open() override { return {}; }
  Status write(engine::Time, const Batch&, const Schema&) override {
    stop_->store(true);
    return {};
  }
  Status flush() override { return {}; }

 private:
  std::atomic<bool>* stop_;
};

// A stop requested while input is still coming: whatever the run read is either processed and
// committed or read again by the next run (at several workers, the rows the last loop turn
// polled used to be dropped while the committed offset moved past them).
TEST(Persistence, StopRequestedMidRunLosesNoRows) {
  auto input = wordcount_input();
  Config cfg = Config::simple_config(Backend::memory());
  std::atomic<bool> stop{false};
  std::vector<CapturedChange> all;
  {
    Graph g;
    Table in = engine::add_source(g, std::make_unique<engine::BatchesSource>(input, "words"), kWords, "words");
    Table out = count_words(g, in);
    auto captured = std::make_shared<std::vector<CapturedChange>>();
    engine::add_sink(out, std::make_unique<engine::CaptureSink>(captured), "capture");
    engine::add_sink(out, std::make_unique<StopAfterFirstTime>(&stop), "stopper");
    RunOptions o;
    o.handle_signals = false;
    o.progress_interval_s = 0;
    o.log = [](const std::string&) {};
    o.stop = &stop;
    o.persistence_config = cfg;
    Status st = run(g, o);
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    all = *captured;
  }
  ASSERT_FALSE(all.empty());
  auto rest = run_prefix(input, input.size(), cfg);
  ASSERT_TRUE(rest.status.is_ok()) << rest.status.to_string();
  all.insert(all.end(), rest.changes.begin(), rest.changes.end());
  // Together the two runs' changes add up to the word counts of the whole input.
  std::map<std::string, int64_t> net;
  for (const auto& c : all) net[c.row[0].to_string() + "," + c.row[1].to_string()] += c.diff;
  std::map<std::string, int64_t> want{{"abc,3", 1}, {"def,2", 1}, {"foo,3", 1}, {"xyz,2", 1}, {"xxx,1", 1}};
  for (auto it = net.begin(); it != net.end();) it = it->second == 0 ? net.erase(it) : std::next(it);
  EXPECT_EQ(net, want);
}

TEST(Persistence, WordCountThreeRunsEmitOnlyChanges) {
  auto input = wordcount_input();
  Config cfg = Config::simple_config(Backend::memory());
  auto r1 = run_prefix(input, 2, cfg);
  ASSERT_TRUE(r1.status.is_ok()) << r1.status.to_string();
  EXPECT_EQ(diffs(r1), (V{"+abc,1", "+def,1", "+foo,1", "+foo,2", "+xyz,1", "-foo,1"}));
  auto r2 = run_prefix(input, 4, cfg);
  ASSERT_TRUE(r2.status.is_ok()) << r2.status.to_string();
  EXPECT_EQ(diffs(r2), (V{"+abc,2", "+foo,3", "+xxx,1", "-abc,1", "-foo,2"}));
  auto r3 = run_prefix(input, 6, cfg);
  ASSERT_TRUE(r3.status.is_ok()) << r3.status.to_string();
  EXPECT_EQ(diffs(r3), (V{"+abc,3", "+def,2", "+xyz,2", "-abc,2", "-def,1", "-xyz,1"}));
  // Times continue across runs.
  EXPECT_GT(r2.times.front(), r1.times.back());
  EXPECT_GT(r3.times.front(), r2.times.back());
}

TEST(Persistence, RerunWithoutNewDataEmitsNothing) {
  auto input = wordcount_input();
  Config cfg = Config::simple_config(Backend::memory());
  ASSERT_TRUE(run_prefix(input, 3, cfg).status.is_ok());
  auto r = run_prefix(input, 3, cfg);
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_TRUE(r.changes.empty());
}

TEST(Persistence, BatchReplayReemitsEverythingInOneTime) {
  auto input = wordcount_input();
  Backend b = Backend::memory();
  ASSERT_TRUE(run_prefix(input, 6, Config::simple_config(b)).status.is_ok());
  auto r = run_prefix(input, 6, Config::simple_config(b, 0, SnapshotAccess::kReplay, PersistenceMode::kBatch));
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(r.times.size(), 1u);
  EXPECT_EQ(diffs(r), (V{"+abc,3", "+def,2", "+foo,3", "+xxx,1", "+xyz,2"}));
}

TEST(Persistence, SpeedrunReplayKeepsRecordedTimestamps) {
  auto input = wordcount_input();
  Backend b = Backend::memory();
  ASSERT_TRUE(run_prefix(input, 6, Config::simple_config(b)).status.is_ok());
  auto r = run_prefix(input, 6,
                      Config::simple_config(b, 0, SnapshotAccess::kReplay, PersistenceMode::kSpeedrunReplay));
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(r.times.size(), 6u);  // one per recorded input batch
  // The final state equals a full computation.
  std::map<std::string, int64_t> last;
  for (const auto& c : r.changes)
    if (c.diff > 0) last[c.row[0].as_string()] = c.row[1].as_int();
  EXPECT_EQ(last["abc"], 3);
  EXPECT_EQ(last["foo"], 3);
}

TEST(Persistence, RealtimeReplayKeepsRecordedPacing) {
  // Record batches at known, spread-out times with a mock backend, then replay in real time:
  // the replay cannot finish sooner than the recorded span.
  std::vector<persistence::SnapshotEvent> ev;
  using E = persistence::SnapshotEvent;
  const uint64_t t0 = 1'000'000;
  const uint64_t gap = 150;
  for (int i = 0; i < 4; ++i) {
    ev.push_back(E::insert(Key{static_cast<uint64_t>(i + 1), 5}, {Value("w" + std::to_string(i))}));
    ev.push_back(E::advance_time(t0 + gap * i));
  }
  Backend b = Backend::mock({{"words", ev}});
  auto start = std::chrono::steady_clock::now();
  auto r = run_prefix({}, 0, Config::simple_config(b, 0, SnapshotAccess::kReplay, PersistenceMode::kRealtimeReplay));
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(r.times.size(), 4u);
  EXPECT_GE(elapsed.count(), static_cast<long>(3 * gap));
  // Speedrun of the same recording does not wait.
  auto s = run_prefix({}, 0, Config::simple_config(b, 0, SnapshotAccess::kReplay, PersistenceMode::kSpeedrunReplay));
  ASSERT_TRUE(s.status.is_ok()) << s.status.to_string();
  EXPECT_EQ(s.times.size(), 4u);
}

TEST(Persistence, ContinueAfterReplayFalseReadsNoNewRows) {
  auto input = wordcount_input();
  Backend b = Backend::memory();
  ASSERT_TRUE(run_prefix(input, 2, Config::simple_config(b)).status.is_ok());
  auto r = run_prefix(input, 6, Config::simple_config(b, 0, SnapshotAccess::kFull, PersistenceMode::kBatch, false));
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(diffs(r), (V{"+abc,1", "+def,1", "+foo,2", "+xyz,1"}));
}

TEST(Persistence, ReplayAccessRecordsNothingNew) {
  auto input = wordcount_input();
  Backend b = Backend::memory();
  ASSERT_TRUE(run_prefix(input, 2, Config::simple_config(b)).status.is_ok());
  // Replay access: reads new data but does not record it...
  auto r = run_prefix(input, 4, Config::simple_config(b, 0, SnapshotAccess::kReplay, PersistenceMode::kPersisting));
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(diffs(r), (V{"+abc,2", "+foo,3", "+xxx,1", "-abc,1", "-foo,2"}));
  // ...so a later Persisting run sees batches 2-3 as new again.
  auto r2 = run_prefix(input, 4, Config::simple_config(b));
  ASSERT_TRUE(r2.status.is_ok());
  EXPECT_EQ(diffs(r2), (V{"+abc,2", "+foo,3", "+xxx,1", "-abc,1", "-foo,2"}));
}

TEST(Persistence, RecordAccessRecordsWithoutReplaying) {
  auto input = wordcount_input();
  Backend b = Backend::memory();
  ASSERT_TRUE(run_prefix(input, 2, Config::simple_config(b)).status.is_ok());
  // Record: the source is read from the start and nothing is replayed.
  auto r = run_prefix(input, 2, Config::simple_config(b, 0, SnapshotAccess::kRecord));
  ASSERT_TRUE(r.status.is_ok());
  EXPECT_EQ(diffs(r), (V{"+abc,1", "+def,1", "+foo,1", "+foo,2", "+xyz,1", "-foo,1"}));
  // The recording now holds both runs' rows: a batch replay counts everything twice.
  auto all = run_prefix(input, 2, Config::simple_config(b, 0, SnapshotAccess::kReplay, PersistenceMode::kBatch));
  ASSERT_TRUE(all.status.is_ok());
  EXPECT_EQ(diffs(all), (V{"+abc,2", "+def,2", "+foo,4", "+xyz,2"}));
}

TEST(Persistence, OffsetsOnlyResumesWithoutReplayingRows) {
  auto input = wordcount_input();
  Backend b = Backend::memory();
  Config cfg = Config::simple_config(b, 0, SnapshotAccess::kOffsetsOnly);
  ASSERT_TRUE(run_prefix(input, 2, cfg).status.is_ok());
  auto r = run_prefix(input, 4, cfg);
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  // State is not rebuilt (no rows stored), so counts restart from the new rows only.
  EXPECT_EQ(diffs(r), (V{"+abc,1", "+foo,1", "+xxx,1"}));
}

TEST(Persistence, SelectivePersistingOnlyPersistsNamedSources) {
  auto input = wordcount_input();
  Backend b = Backend::memory();
  Config cfg = Config::simple_config(b, 0, SnapshotAccess::kFull, PersistenceMode::kSelectivePersisting);
  // Unnamed source: re-read from scratch every run.
  ASSERT_TRUE(run_prefix(input, 2, cfg, count_words, "").status.is_ok());
  auto r = run_prefix(input, 2, cfg, count_words, "");
  EXPECT_EQ(diffs(r).size(), 6u);
  // Named source: resumes.
  Backend b2 = Backend::memory();
  Config cfg2 = Config::simple_config(b2, 0, SnapshotAccess::kFull, PersistenceMode::kSelectivePersisting);
  ASSERT_TRUE(run_prefix(input, 2, cfg2).status.is_ok());
  EXPECT_TRUE(run_prefix(input, 2, cfg2).changes.empty());
}

TEST(Persistence, MissingMetadataMeansFullRecomputation) {
  auto input = wordcount_input();
  auto store = std::shared_ptr<storage::ObjectStore>(storage::make_memory_store());
  Config cfg = Config::simple_config(Backend::custom(store));
  ASSERT_TRUE(run_prefix(input, 2, cfg).status.is_ok());
  auto manifests = store->list("manifests/");
  ASSERT_TRUE(manifests.is_ok());
  ASSERT_EQ(manifests->size(), 1u);
  ASSERT_TRUE(store->remove((*manifests)[0].key).is_ok());
  auto r = run_prefix(input, 4, cfg);
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  // Everything is recomputed from the source's start; orphaned chunks were collected.
  EXPECT_EQ(diffs(r), (V{"+abc,1", "+abc,2", "+def,1", "+foo,1", "+foo,2", "+foo,3", "+xxx,1", "+xyz,1", "-abc,1",
                         "-foo,1", "-foo,2"}));
}

TEST(Persistence, DuplicateNameFailsAtGraphBuild) {
  Graph g;
  engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), kWords, "same");
  EXPECT_THROW(engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), kWords, "same"),
               GraphError);
}

TEST(Persistence, StoragePathIsAFile) {
  auto path = std::filesystem::temp_directory_path() / ("tidemark-file-" + std::to_string(getpid()));
  std::ofstream(path) << "x";
  auto r = run_prefix(wordcount_input(), 2, Config::simple_config(Backend::filesystem(path.string())));
  std::filesystem::remove(path);
  ASSERT_FALSE(r.status.is_ok());
  EXPECT_NE(r.status.message().find(path.string()), std::string::npos) << r.status.to_string();
  EXPECT_NE(r.status.message().find("not a directory"), std::string::npos) << r.status.to_string();
}

TEST(Persistence, ChangedGraphIsRejectedClearly) {
  auto input = wordcount_input();
  Backend b = Backend::memory();
  ASSERT_TRUE(run_prefix(input, 2, Config::simple_config(b)).status.is_ok());
  auto renamed = run_prefix(input, 2, Config::simple_config(b), count_words, "other");
  ASSERT_FALSE(renamed.status.is_ok());
  EXPECT_NE(renamed.status.message().find("'words'"), std::string::npos) << renamed.status.to_string();
  Schema two{{"word", t_str()}, {"n", t_int()}};
  auto reschema = run_prefix({}, 0, Config::simple_config(b), [](Graph&, Table t) { return t; }, "words", two);
  ASSERT_FALSE(reschema.status.is_ok());
  EXPECT_NE(reschema.status.message().find("changed its schema"), std::string::npos) << reschema.status.to_string();
}

TEST(Persistence, CorruptChunkIsAClearErrorNeverAPartialReplay) {
  auto input = wordcount_input();
  auto faulty = std::make_shared<storage::FaultInjectingStore>(storage::make_memory_store());
  Config cfg = Config::simple_config(Backend::custom(faulty));
  ASSERT_TRUE(run_prefix(input, 2, cfg).status.is_ok());
  auto chunks = faulty->list("streams/");
  ASSERT_TRUE(chunks.is_ok());
  ASSERT_FALSE(chunks->empty());
  ASSERT_TRUE(faulty->corrupt((*chunks)[0].key, (*chunks)[0].size / 2).is_ok());
  auto r = run_prefix(input, 4, cfg);
  ASSERT_FALSE(r.status.is_ok());
  EXPECT_EQ(r.status.code(), StatusCode::kCorruption) << r.status.to_string();
  EXPECT_NE(r.status.message().find((*chunks)[0].key), std::string::npos) << r.status.to_string();
  EXPECT_TRUE(r.changes.empty());
}

TEST(Persistence, NewerManifestVersionIsRefused) {
  auto store = std::shared_ptr<storage::ObjectStore>(storage::make_memory_store());
  persistence::Manifest m;
  m.format_version = persistence::kManifestFormatVersion + 1;
  m.seq = 1;
  ASSERT_TRUE(store->put(persistence::manifest_key(1), persistence::encode_manifest(m).value()).is_ok());
  auto r = run_prefix(wordcount_input(), 2, Config::simple_config(Backend::custom(store)));
  ASSERT_FALSE(r.status.is_ok());
  EXPECT_EQ(r.status.code(), StatusCode::kNotSupported);
  EXPECT_NE(r.status.message().find("upgrade Tidemark"), std::string::npos) << r.status.to_string();
}

TEST(Persistence, SecondHolderIsFencedOut) {
  auto store = std::shared_ptr<storage::ObjectStore>(storage::make_memory_store());
  auto held = storage::acquire_storage_lock(*store, "another pipeline");
  ASSERT_TRUE(held.is_ok());
  auto r = run_prefix(wordcount_input(), 2, Config::simple_config(Backend::custom(store)));
  ASSERT_FALSE(r.status.is_ok());
  EXPECT_NE(r.status.message().find("in use"), std::string::npos) << r.status.to_string();
  ASSERT_TRUE(held->release().is_ok());
  EXPECT_TRUE(run_prefix(wordcount_input(), 2, Config::simple_config(Backend::custom(store))).status.is_ok());
}

TEST(Persistence, StorageDoesNotGrowWithRestarts) {
  auto input = wordcount_input();
  auto store = std::shared_ptr<storage::ObjectStore>(storage::make_memory_store());
  Config cfg = Config::simple_config(Backend::custom(store));
  ASSERT_TRUE(run_prefix(input, 6, cfg).status.is_ok());
  auto count = [&] { return store->list("")->size(); };
  size_t after_first = count();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(run_prefix(input, 6, cfg).status.is_ok());
  EXPECT_EQ(count(), after_first);
}

TEST(Persistence, FailedCommitLeavesCommittedStateIntact) {
  // Fail every possible write of run 2 in turn; afterwards a clean run 2 must emit exactly
  // what it would have emitted without the fault.
  auto input = wordcount_input();
  for (uint64_t n = 1; n <= 6; ++n) {
    auto faulty = std::make_shared<storage::FaultInjectingStore>(storage::make_memory_store());
    Config cfg = Config::simple_config(Backend::custom(faulty));
    ASSERT_TRUE(run_prefix(input, 2, cfg).status.is_ok());
    faulty->fail_nth_write(n);
    auto failed = run_prefix(input, 4, cfg);
    faulty->fail_nth_write(0);
    if (!failed.status.is_ok())
      EXPECT_NE(failed.status.message().find("injected"), std::string::npos) << failed.status.to_string();
    auto retry = run_prefix(input, 4, cfg);
    ASSERT_TRUE(retry.status.is_ok()) << retry.status.to_string();
    // Whatever part of run 2 was committed before the fault, the state is exact: run 3 emits
    // exactly its own changes, and the recording holds every row exactly once.
    auto r3 = run_prefix(input, 6, cfg);
    ASSERT_TRUE(r3.status.is_ok()) << r3.status.to_string();
    EXPECT_EQ(diffs(r3), (V{"+abc,3", "+def,2", "+xyz,2", "-abc,2", "-def,1", "-xyz,1"})) << "n=" << n;
    auto all = run_prefix(input, 6, Config::simple_config(Backend::custom(faulty), 0, SnapshotAccess::kReplay,
                                                          PersistenceMode::kBatch));
    ASSERT_TRUE(all.status.is_ok());
    EXPECT_EQ(diffs(all), (V{"+abc,3", "+def,2", "+foo,3", "+xxx,1", "+xyz,2"})) << "n=" << n;
  }
}

TEST(Persistence, DiskFullIsAClearError) {
  auto faulty = std::make_shared<storage::FaultInjectingStore>(storage::make_memory_store());
  Config cfg = Config::simple_config(Backend::custom(faulty));
  auto input = wordcount_input();
  ASSERT_TRUE(run_prefix(input, 2, cfg).status.is_ok());
  faulty->set_no_space(true);
  auto r = run_prefix(input, 4, cfg);
  ASSERT_FALSE(r.status.is_ok());
  EXPECT_NE(r.status.message().find("ENOSPC"), std::string::npos) << r.status.to_string();
  faulty->set_no_space(false);
  auto again = run_prefix(input, 4, cfg);
  ASSERT_TRUE(again.status.is_ok());
  EXPECT_EQ(diffs(again), (V{"+abc,2", "+foo,3", "+xxx,1", "-abc,1", "-foo,2"}));
}

TEST(Persistence, EnvironmentConfiguresRecordAndReplay) {
  auto dir = std::filesystem::temp_directory_path() / ("tidemark-env-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  setenv("TIDEMARK_REPLAY_STORAGE", dir.c_str(), 1);
  setenv("TIDEMARK_SNAPSHOT_ACCESS", "record", 1);
  auto env = Config::from_env();
  ASSERT_TRUE(env.is_ok());
  ASSERT_TRUE(env->has_value());
  EXPECT_EQ((*env)->snapshot_access, SnapshotAccess::kRecord);
  setenv("TIDEMARK_PERSISTENCE_MODE", "bogus", 1);
  auto bad = Config::from_env();
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("TIDEMARK_PERSISTENCE_MODE"), std::string::npos);
  unsetenv("TIDEMARK_REPLAY_STORAGE");
  unsetenv("TIDEMARK_SNAPSHOT_ACCESS");
  unsetenv("TIDEMARK_PERSISTENCE_MODE");
  std::filesystem::remove_all(dir);
}

TEST(Persistence, MetadataAndSnapshotsOnDifferentBackends) {
  auto meta = std::shared_ptr<storage::ObjectStore>(storage::make_memory_store());
  auto snap = std::shared_ptr<storage::ObjectStore>(storage::make_memory_store());
  Config cfg{Backend::custom(meta), Backend::custom(snap)};
  auto input = wordcount_input();
  ASSERT_TRUE(run_prefix(input, 2, cfg).status.is_ok());
  EXPECT_EQ(meta->list("streams/")->size(), 0u);
  EXPECT_GT(snap->list("streams/")->size(), 0u);
  EXPECT_EQ(meta->list("manifests/")->size(), 1u);
  EXPECT_EQ(snap->list("manifests/")->size(), 0u);
  auto r = run_prefix(input, 4, cfg);
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(diffs(r), (V{"+abc,2", "+foo,3", "+xxx,1", "-abc,1", "-foo,2"}));
}

// A source that cannot be opened (its input is gone).
class GoneSource final : public engine::Source {
 public:
  std::string describe() const override { return "gone"; }
  bool streaming() const override { return false; }
  Status open() override { return Status::not_found("the input is gone"); }
  Status poll(Batch&, bool* finished) override {
    *finished = true;
    return {};
  }
  std::string offset() const override { return {}; }
  Status seek(std::string_view) override { return {}; }
};

TEST(Persistence, OfflineReplayNeverConnectsToTheSources) {
  using E = persistence::SnapshotEvent;
  Backend b = Backend::mock({{"words", {E::insert(Key{1, 1}, {Value("x")}), E::advance_time(10),
                                        E::insert(Key{2, 1}, {Value("x")}), E::advance_time(20)}}});
  auto run_gone = [&](SnapshotAccess access) {
    Graph g;
    Table in = engine::add_source(g, std::make_unique<GoneSource>(), kWords, "words");
    auto captured = std::make_shared<std::vector<CapturedChange>>();
    engine::add_sink(count_words(g, in), std::make_unique<engine::CaptureSink>(captured));
    RunOptions o;
    o.handle_signals = false;
    o.log = [](const std::string&) {};
    o.persistence_config = Config::simple_config(b, 0, access, PersistenceMode::kBatch);
    Status st = run(g, o);
    return std::make_pair(st, captured->size());
  };
  auto [offline, n] = run_gone(SnapshotAccess::kOfflineReplay);
  ASSERT_TRUE(offline.is_ok()) << offline.to_string();
  EXPECT_EQ(n, 1u);  // +(x, 2) in one batch
  auto [online, m] = run_gone(SnapshotAccess::kReplay);
  EXPECT_FALSE(online.is_ok());
  EXPECT_NE(online.message().find("gone"), std::string::npos) << online.to_string();
}

TEST(Persistence, S3SettingsFromUrl) {
  std::string root;
  auto s = persistence::AwsS3Settings::from_url("s3://my-bucket/jobs/counts", &root);
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  EXPECT_EQ(s->bucket_name, "my-bucket");
  EXPECT_EQ(root, "jobs/counts");
  auto bad = persistence::AwsS3Settings::from_url("http://x/y");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("http://x/y"), std::string::npos) << bad.status().to_string();
}

TEST(Persistence, EnumNamesRoundTrip) {
  for (auto a : {SnapshotAccess::kFull, SnapshotAccess::kRecord, SnapshotAccess::kReplay, SnapshotAccess::kOffsetsOnly,
                 SnapshotAccess::kOfflineReplay})
    EXPECT_EQ(*persistence::parse_snapshot_access(persistence::to_string(a)), a);
  for (auto m : {PersistenceMode::kBatch, PersistenceMode::kSpeedrunReplay, PersistenceMode::kRealtimeReplay,
                 PersistenceMode::kPersisting, PersistenceMode::kSelectivePersisting, PersistenceMode::kUdfCaching,
                 PersistenceMode::kOperatorPersisting})
    EXPECT_EQ(*persistence::parse_persistence_mode(persistence::to_string(m)), m);
  EXPECT_FALSE(persistence::parse_snapshot_access("nope").is_ok());
}

// ---- UDF caching ----------------------------------------------------------------------------

std::atomic<int> g_cached_calls{0};

RunResult run_cached(const std::vector<Batch>& input, size_t n, const Config& cfg, const std::string& source_name) {
  Schema kv{{"k", t_int()}, {"v", t_int()}};
  return run_prefix(
      input, n, cfg,
      [](Graph&, Table t) {
        auto square = [](const std::vector<Value>& a) {
          ++g_cached_calls;
          return Value(a[0].as_int() * a[0].as_int());
        };
        return t.select({{"k", col("k")}, {"sq", apply(square, {col("v")}, t_int(), UdfCache{.name = "square"})}});
      },
      source_name, kv);
}

std::vector<Batch> cached_input() {
  auto row = [](uint64_t k, int64_t v) { return engine::Update{Key{k, 3}, {Value(static_cast<int64_t>(k)), Value(v)}, 1}; };
  return {Batch{row(1, 2), row(2, 3)}, Batch{row(3, 2), row(4, 5)}};
}

// The reference's test_persistence_udf_caching_option plus the cache: a named source resumes
// from its offset (nothing re-read), an unnamed one is read again; the cached UDF is called
// once per distinct argument over all runs, with the cache kept in the persistent storage.
TEST(UdfCaching, NamedSourcesResumeAndCachedResultsSurviveRestarts) {
  auto input = cached_input();
  for (bool named : {true, false}) {
    g_cached_calls = 0;
    auto store = std::shared_ptr<storage::ObjectStore>(storage::make_memory_store());
    Config cfg = Config::simple_config(Backend::custom(store), 0, SnapshotAccess::kFull, PersistenceMode::kUdfCaching);
    std::string name = named ? "kv" : "";
    auto r1 = run_cached(input, 1, cfg, name);
    ASSERT_TRUE(r1.status.is_ok()) << r1.status.to_string();
    EXPECT_EQ(diffs(r1), (V{"+1,4", "+2,9"}));
    EXPECT_EQ(g_cached_calls.load(), 2);
    auto r2 = run_cached(input, 2, cfg, name);
    ASSERT_TRUE(r2.status.is_ok()) << r2.status.to_string();
    if (named) EXPECT_EQ(diffs(r2), (V{"+3,4", "+4,25"}));
    else EXPECT_EQ(diffs(r2), (V{"+1,4", "+2,9", "+3,4", "+4,25"}));
    EXPECT_EQ(g_cached_calls.load(), 3) << "only 5 is new; 2 and 3 come from the stored cache";
    auto m = persistence::read_latest_manifest(*store);
    ASSERT_TRUE(m.is_ok() && m->has_value());
    ASSERT_EQ((**m).operators.size(), 1u);
    EXPECT_EQ((**m).operators[0].kind, "udf_cache");
  }
}

// ---- Operator persisting -------------------------------------------------------------------

Config op_config(Backend b, uint64_t interval_ms = 0) {
  return Config::simple_config(std::move(b), interval_ms, SnapshotAccess::kFull, PersistenceMode::kOperatorPersisting);
}

std::string joined(const std::vector<std::string>& logs) {
  std::string s;
  for (const auto& l : logs) s += l + "\n";
  return s;
}

TEST(OperatorPersisting, WordCountThreeRunsLoadStateInsteadOfReplaying) {
  auto input = wordcount_input();
  Config cfg = op_config(Backend::memory());
  auto r1 = run_prefix(input, 2, cfg);
  ASSERT_TRUE(r1.status.is_ok()) << r1.status.to_string();
  EXPECT_EQ(diffs(r1), (V{"+abc,1", "+def,1", "+foo,1", "+foo,2", "+xyz,1", "-foo,1"}));
  auto r2 = run_prefix(input, 4, cfg);
  ASSERT_TRUE(r2.status.is_ok()) << r2.status.to_string();
  EXPECT_EQ(diffs(r2), (V{"+abc,2", "+foo,3", "+xxx,1", "-abc,1", "-foo,2"}));
  // No input row was replayed: the 4 groups of the count were loaded.
  EXPECT_NE(joined(r2.logs).find("0 events replayed, 4 state entries loaded"), std::string::npos) << joined(r2.logs);
  auto r3 = run_prefix(input, 6, cfg);
  ASSERT_TRUE(r3.status.is_ok()) << r3.status.to_string();
  EXPECT_EQ(diffs(r3), (V{"+abc,3", "+def,2", "+xyz,2", "-abc,2", "-def,1", "-xyz,1"}));
  auto r4 = run_prefix(input, 6, cfg);
  ASSERT_TRUE(r4.status.is_ok()) << r4.status.to_string();
  EXPECT_TRUE(r4.changes.empty());
}

TEST(OperatorPersisting, StoresStateNotInputRows) {
  auto input = wordcount_input();
  auto store = std::shared_ptr<storage::ObjectStore>(storage::make_memory_store());
  auto r1 = run_prefix(input, 6, op_config(Backend::custom(store)));
  ASSERT_TRUE(r1.status.is_ok()) << r1.status.to_string();
  auto m = persistence::read_latest_manifest(*store);
  ASSERT_TRUE(m.is_ok() && m->has_value());
  const auto& man = **m;
  EXPECT_EQ(man.mode, "operator_persisting");
  ASSERT_EQ(man.sources.size(), 1u);
  EXPECT_TRUE(man.sources[0].chunks.empty());  // offsets only: the manifest holds the offset
  EXPECT_TRUE(man.sources[0].has_offset);
  EXPECT_TRUE(store->list("streams/")->empty());
  ASSERT_EQ(man.operators.size(), 1u);
  EXPECT_EQ(man.operators[0].kind, "groupby");
  EXPECT_FALSE(man.operators[0].chunks.empty());
}

std::atomic<int> g_udf_calls{0};

// The reference's test_non_deterministic_udf: the UDF returns a call counter.
RunResult run_udf(const std::vector<Batch>& input, size_t n, const Config& cfg, bool deterministic) {
  Schema kv{{"k", t_int()}, {"v", t_int()}};
  return run_prefix(
      input, n, cfg,
      [deterministic](Graph&, Table t) {
        auto counter = [](const std::vector<Value>&) { return Value(static_cast<int64_t>(++g_udf_calls)); };
        return t.select({{"k", col("k")}, {"c", apply(counter, {col("v")}, t_int(), deterministic)}});
      },
      "kv", kv);
}

std::vector<Batch> udf_input() {
  Key k1{1, 9}, k2{2, 9};
  return {Batch{{k1, {Value(int64_t{1}), Value(int64_t{2})}, 1}},
          Batch{{k1, {Value(int64_t{1}), Value(int64_t{2})}, -1}, {k1, {Value(int64_t{1}), Value(int64_t{3})}, 1}},
          Batch{{k2, {Value(int64_t{2}), Value(int64_t{4})}, 1}},
          Batch{{k2, {Value(int64_t{2}), Value(int64_t{4})}, -1}}};
}

TEST(OperatorPersisting, NonDeterministicUdfValueIsReplayedInTheRetraction) {
  g_udf_calls = 0;
  auto input = udf_input();
  Config cfg = op_config(Backend::memory());
  auto r1 = run_udf(input, 1, cfg, false);
  ASSERT_TRUE(r1.status.is_ok()) << r1.status.to_string();
  EXPECT_EQ(diffs(r1), (V{"+1,1"}));
  auto r2 = run_udf(input, 2, cfg, false);
  ASSERT_TRUE(r2.status.is_ok()) << r2.status.to_string();
  EXPECT_EQ(diffs(r2), (V{"+1,2", "-1,1"}));  // the stored 1, not a fresh call
  auto r3 = run_udf(input, 3, cfg, false);
  EXPECT_EQ(diffs(r3), (V{"+2,3"}));
  auto r4 = run_udf(input, 4, cfg, false);
  EXPECT_EQ(diffs(r4), (V{"-2,3"}));
  EXPECT_EQ(g_udf_calls.load(), 3);
}

TEST(OperatorPersisting, DeterministicUdfIsRecomputed) {
  g_udf_calls = 0;
  auto input = udf_input();
  Config cfg = op_config(Backend::memory());
  EXPECT_EQ(diffs(run_udf(input, 1, cfg, true)), (V{"+1,1"}));
  EXPECT_EQ(diffs(run_udf(input, 2, cfg, true)), (V{"+1,3", "-1,2"}));  // retraction recomputed
  EXPECT_EQ(diffs(run_udf(input, 3, cfg, true)), (V{"+2,4"}));
  EXPECT_EQ(diffs(run_udf(input, 4, cfg, true)), (V{"-2,5"}));
}

TEST(OperatorPersisting, ChangedGraphIsRejectedNamingTheOperator) {
  auto input = wordcount_input();
  Backend b = Backend::memory();
  ASSERT_TRUE(run_prefix(input, 2, op_config(b)).status.is_ok());
  // Another reducer: same operator position, different signature.
  auto more = run_prefix(input, 3, op_config(b), [](Graph&, Table in) {
    return in.groupby({"word"}).reduce({{"word", col("word")}, {"count", reducers::count()}, {"m", reducers::max(col("word"))}});
  });
  ASSERT_FALSE(more.status.is_ok());
  EXPECT_EQ(more.status.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(more.status.message().find("groupby"), std::string::npos) << more.status.to_string();
  EXPECT_NE(more.status.message().find("changed"), std::string::npos) << more.status.to_string();
  EXPECT_TRUE(more.changes.empty());
  // A filter inserted upstream: the groupby's inputs differ, so it is another operator.
  auto filtered = run_prefix(input, 3, op_config(b), [](Graph& g, Table in) {
    return count_words(g, in.filter(col("word") != lit("zzz")));
  });
  ASSERT_FALSE(filtered.status.is_ok());
  EXPECT_NE(filtered.status.message().find("graph changed"), std::string::npos) << filtered.status.to_string();
  // The original program still resumes.
  auto same = run_prefix(input, 4, op_config(b));
  ASSERT_TRUE(same.status.is_ok()) << same.status.to_string();
  EXPECT_EQ(diffs(same), (V{"+abc,2", "+foo,3", "+xxx,1", "-abc,1", "-foo,2"}));
}

// An expression changed upstream (a select feeding the count) changes the count's id: its
// stored state was computed from other values, so it is refused, not mixed.
TEST(OperatorPersisting, ChangedExpressionIsAChangedGraph) {
  auto input = wordcount_input();
  Backend b = Backend::memory();
  auto counts = [](Expr e) {
    return [e](Graph& g, Table in) { return count_words(g, in.select({{"word", e}})); };
  };
  ASSERT_TRUE(run_prefix(input, 2, op_config(b), counts(col("word"))).status.is_ok());
  auto r = run_prefix(input, 4, op_config(b), counts(str::upper(col("word"))));
  ASSERT_FALSE(r.status.is_ok());
  EXPECT_NE(r.status.message().find("graph changed"), std::string::npos) << r.status.to_string();
  auto same = run_prefix(input, 4, op_config(b), counts(col("word")));
  ASSERT_TRUE(same.status.is_ok()) << same.status.to_string();
  EXPECT_EQ(diffs(same), (V{"+abc,2", "+foo,3", "+xxx,1", "-abc,1", "-foo,2"}));
}

// A named operator keeps its identity when the graph upstream of it changes.
TEST(OperatorPersisting, NamedOperatorKeepsItsStateAcrossUpstreamChanges) {
  auto input = wordcount_input();
  Backend b = Backend::memory();
  auto counts = [](bool filtered) {
    return [filtered](Graph&, Table in) {
      Table src = filtered ? in.filter(col("word") != lit("zzz")) : in;
      return src.groupby({"word"}).reduce({{"word", col("word")}, {"count", reducers::count()}}).named("counts");
    };
  };
  ASSERT_TRUE(run_prefix(input, 2, op_config(b), counts(false)).status.is_ok());
  auto r = run_prefix(input, 4, op_config(b), counts(true));
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(diffs(r), (V{"+abc,2", "+foo,3", "+xxx,1", "-abc,1", "-foo,2"}));
  Graph g;
  Table t = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}, "x"), kWords, "x");
  EXPECT_THROW(t.named("y"), GraphError);
  Table c = count_words(g, t).named("c");
  EXPECT_THROW(c.named("d"), GraphError);
  EXPECT_THROW(count_words(g, t).named("x"), GraphError);  // the source's name
}

TEST(OperatorPersisting, IdsDoNotDependOnConstructionOrder) {
  // Two independent branches built in either order resume each other's state.
  auto input = wordcount_input();
  Backend b = Backend::memory();
  auto two = [](bool swapped) {
    return [swapped](Graph&, Table in) {
      auto counts = [&] { return in.groupby({"word"}).reduce({{"word", col("word")}, {"count", reducers::count()}}); };
      auto lens = [&] { return in.select({{"word", col("word")}, {"n", str::len(col("word"))}}).groupby({"n"}).reduce({{"word", reducers::min(col("word"))}, {"count", reducers::count()}}); };
      Table a = swapped ? lens() : counts();
      Table c = swapped ? counts() : lens();
      (void)c;
      return a;
    };
  };
  ASSERT_TRUE(run_prefix(input, 2, op_config(b), two(false)).status.is_ok());
  auto r = run_prefix(input, 4, op_config(b), two(true));
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  // The lens branch resumed from its own state: every word has 3 letters, 5 words counted in
  // run 1, then 7 and 8 (with another branch's state it would not start from (abc, 5)).
  EXPECT_EQ(diffs(r), (V{"+abc,7", "+abc,8", "-abc,5", "-abc,7"}));
}

TEST(OperatorPersisting, SwitchingModesOnOneStorageIsRefused) {
  auto input = wordcount_input();
  Backend b = Backend::memory();
  ASSERT_TRUE(run_prefix(input, 2, Config::simple_config(b)).status.is_ok());
  auto r = run_prefix(input, 4, op_config(b));
  ASSERT_FALSE(r.status.is_ok());
  EXPECT_NE(r.status.message().find("'persisting'"), std::string::npos) << r.status.to_string();
  Backend b2 = Backend::memory();
  ASSERT_TRUE(run_prefix(input, 2, op_config(b2)).status.is_ok());
  auto r2 = run_prefix(input, 4, Config::simple_config(b2));
  ASSERT_FALSE(r2.status.is_ok());
  EXPECT_NE(r2.status.message().find("'operator_persisting'"), std::string::npos) << r2.status.to_string();
}

// Keys under `prefix` in `store`, and the chunk keys of the newest manifest.
std::pair<std::set<std::string>, std::set<std::string>> stored_and_referenced(storage::ObjectStore& store,
                                                                              const std::string& prefix) {
  std::set<std::string> stored, referenced;
  auto listed = store.list(prefix);
  for (const auto& o : *listed) stored.insert(o.key);
  auto m = persistence::read_latest_manifest(store);
  for (const auto& s : (**m).sources)
    for (const auto& c : s.chunks) referenced.insert(c.key);
  for (const auto& o : (**m).operators)
    for (const auto& c : o.chunks) referenced.insert(c.key);
  std::set<std::string> in_prefix;
  for (const auto& k : referenced)
    if (k.starts_with(prefix)) in_prefix.insert(k);
  return {stored, in_prefix};
}

// The persistence issue's fault scenarios in operator persisting.
TEST(OperatorPersisting, CorruptStateChunkIsAClearErrorNothingEmitted) {
  auto input = wordcount_input();
  auto faulty = std::make_shared<storage::FaultInjectingStore>(storage::make_memory_store());
  Config cfg = op_config(Backend::custom(faulty));
  ASSERT_TRUE(run_prefix(input, 2, cfg).status.is_ok());
  auto chunks = faulty->list("operators/");
  ASSERT_TRUE(chunks.is_ok());
  ASSERT_EQ(chunks->size(), 1u);  // a clean stop leaves one compacted chunk
  ASSERT_TRUE(faulty->corrupt((*chunks)[0].key, (*chunks)[0].size / 2).is_ok());
  auto r = run_prefix(input, 4, cfg);
  ASSERT_FALSE(r.status.is_ok());
  EXPECT_EQ(r.status.code(), StatusCode::kCorruption) << r.status.to_string();
  EXPECT_NE(r.status.message().find((*chunks)[0].key), std::string::npos) << r.status.to_string();
  EXPECT_NE(r.status.message().find("groupby"), std::string::npos) << r.status.to_string();
  EXPECT_TRUE(r.changes.empty());
}

TEST(OperatorPersisting, FailedCommitLeavesCommittedStateIntact) {
  // Fail each write of run 2 in turn (state chunks, offsets chunk, manifest, merges, lock);
  // a retried run 2 and run 3 must then emit exactly their own changes.
  auto input = wordcount_input();
  for (uint64_t n = 1; n <= 10; ++n) {
    auto faulty = std::make_shared<storage::FaultInjectingStore>(storage::make_memory_store());
    Config cfg = op_config(Backend::custom(faulty));
    ASSERT_TRUE(run_prefix(input, 2, cfg).status.is_ok());
    faulty->fail_nth_write(n);
    auto failed = run_prefix(input, 4, cfg);
    faulty->fail_nth_write(0);
    if (!failed.status.is_ok())
      EXPECT_NE(failed.status.message().find("injected"), std::string::npos) << failed.status.to_string();
    auto retry = run_prefix(input, 4, cfg);
    ASSERT_TRUE(retry.status.is_ok()) << retry.status.to_string();
    // Run 2's changes, emitted once over the failed and the retried run.
    std::vector<std::string> run2 = diffs(failed);
    for (const auto& d : diffs(retry)) run2.push_back(d);
    std::sort(run2.begin(), run2.end());
    if (failed.status.is_ok()) EXPECT_TRUE(retry.changes.empty()) << "n=" << n;
    auto r3 = run_prefix(input, 6, cfg);
    ASSERT_TRUE(r3.status.is_ok()) << r3.status.to_string();
    EXPECT_EQ(diffs(r3), (V{"+abc,3", "+def,2", "+xyz,2", "-abc,2", "-def,1", "-xyz,1"})) << "n=" << n;
  }
}

TEST(OperatorPersisting, StorageDoesNotGrowWithRestarts) {
  auto input = wordcount_input();
  auto store = std::shared_ptr<storage::ObjectStore>(storage::make_memory_store());
  Config cfg = op_config(Backend::custom(store));
  ASSERT_TRUE(run_prefix(input, 6, cfg).status.is_ok());
  auto count = [&] { return store->list("")->size(); };
  size_t after_first = count();
  auto keys = [&] {
    std::string k;
    auto listed = store->list("");
    for (const auto& o : *listed) k += o.key + "\n";
    return k;
  };
  std::string first_keys = keys();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(run_prefix(input, 6, cfg).status.is_ok());
  EXPECT_EQ(count(), after_first) << first_keys << "---\n" << keys();
}

TEST(OperatorPersisting, MissingMetadataMeansFullRecomputation) {
  auto input = wordcount_input();
  auto store = std::shared_ptr<storage::ObjectStore>(storage::make_memory_store());
  Config cfg = op_config(Backend::custom(store));
  ASSERT_TRUE(run_prefix(input, 2, cfg).status.is_ok());
  auto manifests = store->list("manifests/");
  ASSERT_TRUE(manifests.is_ok());
  ASSERT_EQ(manifests->size(), 1u);
  ASSERT_TRUE(store->remove((*manifests)[0].key).is_ok());
  auto r = run_prefix(input, 4, cfg);
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(diffs(r), (V{"+abc,1", "+abc,2", "+def,1", "+foo,1", "+foo,2", "+foo,3", "+xxx,1", "+xyz,1", "-abc,1",
                         "-foo,1", "-foo,2"}));
  EXPECT_TRUE(store->list("operators/")->size() == 1u) << "orphaned state chunks are collected";
}

// Many commits: state chunks are merged (synchronously here, to check the exact shape),
// superseded chunks deleted, and the result after a restart is still exact.
TEST(OperatorPersisting, StateChunksAreCompacted) {
  setenv("TIDEMARK_SYNC_COMPACTION", "1", 1);
  uint64_t k = 1;
  std::vector<Batch> input;
  for (int i = 0; i < 60; ++i) input.push_back(words({i % 2 ? "a" : "b", "c"}, k));
  auto store = std::shared_ptr<storage::ObjectStore>(storage::make_memory_store());
  Config cfg = op_config(Backend::custom(store));
  ASSERT_TRUE(run_prefix(input, 30, cfg).status.is_ok());
  auto r = run_prefix(input, 60, cfg);
  unsetenv("TIDEMARK_SYNC_COMPACTION");
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(diffs(r).size(), 30u * 4);  // each batch: -old +new for two words
  auto latest = persistence::read_latest_manifest(*store);
  ASSERT_TRUE(latest.is_ok() && latest->has_value());
  auto m = **latest;
  ASSERT_EQ(m.operators.size(), 1u);
  // 60 commits with fan-in 4: at most 3 chunks per level, levels 0..2.
  EXPECT_LE(m.operators[0].chunks.size(), 9u);
  EXPECT_GE(m.operators[0].chunks.front().level, 2u);
  auto [stored, referenced] = stored_and_referenced(*store, "operators/");
  EXPECT_EQ(stored, referenced);  // merged-away chunks were deleted
  // The merged state resumes exactly: one more batch.
  input.push_back(words({"a"}, k));
  auto r3 = run_prefix(input, 61, cfg);
  ASSERT_TRUE(r3.status.is_ok()) << r3.status.to_string();
  EXPECT_EQ(diffs(r3), (V{"+a,31", "-a,30"}));
}

// A store where the background merger's first read of a chunk stalls until `commits` more
// commits (manifest writes) have happened. So that the stall surely starts during the run,
// the 3rd commit waits (bounded) until the merger has begun that read. Reads from the run's
// own thread (restore, the final compaction after the merger is drained) are not stalled.
// Forwards every call to `inner`; test stores override what they change.
class ForwardingStore : public storage::ObjectStore {
 public:
  explicit ForwardingStore(std::unique_ptr<storage::ObjectStore> inner) : inner_(std::move(inner)) {}
  Result<std::string> get(std::string_view k) override { return inner_->get(k); }
  Status put(std::string_view k, std::string_view d) override { return inner_->put(k, d); }
  Status put_if_absent(std::string_view k, std::string_view d) override { return inner_->put_if_absent(k, d); }
  Result<std::vector<storage::ObjectInfo>> list(std::string_view p) override { return inner_->list(p); }
  Status remove(std::string_view k) override { return inner_->remove(k); }
  Result<storage::VersionedObject> get_versioned(std::string_view k, storage::Deadline d) override {
    return inner_->get_versioned(k, d);
  }
  Result<std::string> put_if_version(std::string_view k, std::string_view data, std::string_view v,
                                     storage::Deadline d) override {
    return inner_->put_if_version(k, data, v, d);
  }
  std::string describe() const override { return inner_->describe(); }

 protected:
  std::unique_ptr<storage::ObjectStore> inner_;
};

class StallingStore final : public ForwardingStore {
 public:
  explicit StallingStore(int commits) : ForwardingStore(storage::make_memory_store()), commits_(commits) {}
  Result<std::string> get(std::string_view key) override {
    if (std::this_thread::get_id() != run_thread_ && !key.starts_with("manifests/") && !key.starts_with("lock")) {
      std::unique_lock<std::mutex> l(mu_);
      if (stalled.load() == 0) {
        ++stalled;
        cv_.notify_all();
        int until = manifests_ + commits_;
        // Bounded: a commit path that waited for this read would otherwise hang the test.
        if (!cv_.wait_for(l, std::chrono::seconds(30), [&] { return manifests_ >= until; })) timed_out = true;
      }
    }
    return inner_->get(key);
  }
  Status put_if_absent(std::string_view k, std::string_view d) override {
    if (k.starts_with("manifests/")) {
      std::unique_lock<std::mutex> l(mu_);
      if (manifests_ == 3 &&  // the fencing commit, then two commits
          !cv_.wait_for(l, std::chrono::seconds(30), [&] { return stalled.load() > 0; }))
        merge_never_started = true;
    }
    Status st = inner_->put_if_absent(k, d);
    if (k.starts_with("manifests/")) {
      std::lock_guard<std::mutex> l(mu_);
      ++manifests_;
      cv_.notify_all();
    }
    return st;
  }
  std::string describe() const override { return "stalling memory store"; }
  std::atomic<int> stalled{0};
  std::atomic<bool> timed_out{false};
  std::atomic<bool> merge_never_started{false};

 private:
  int commits_;
  std::thread::id run_thread_ = std::this_thread::get_id();
  std::mutex mu_;
  std::condition_variable cv_;
  int manifests_ = 0;
};

// Compaction never blocks the commit path: while a merge's reads are stalled, commits go on
// (the stall only ends after 6 further commits, which a blocked commit path could never make).
TEST(OperatorPersisting, CompactionNeverBlocksCommits) {
  uint64_t k = 1;
  std::vector<Batch> input;
  for (int i = 0; i < 40; ++i) input.push_back(words({i % 2 ? "a" : "b"}, k));
  auto store = std::make_shared<StallingStore>(6);
  auto r = run_prefix(input, 40, op_config(Backend::custom(store)));
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_GT(store->stalled.load(), 0);  // merges did run
  EXPECT_FALSE(store->merge_never_started.load());
  EXPECT_FALSE(store->timed_out.load());
  EXPECT_EQ(diffs(r).size(), 2u + 38 * 2);
}

// Input snapshots in persisting mode: rows inserted then retracted disappear when chunks are
// merged, so storage follows the live input; a restart still rebuilds the exact state.
TEST(Persisting, InputSnapshotsAreCompacted) {
  setenv("TIDEMARK_SYNC_COMPACTION", "1", 1);
  std::vector<Batch> input;
  // Word i is inserted at step i and retracted at step i + 1: at most one row is live.
  for (uint64_t i = 0; i < 40; ++i) {
    Batch b{{Key{i + 1, 5}, {Value("w" + std::to_string(i % 3))}, 1}};
    if (i > 0) b.push_back({Key{i, 5}, {Value("w" + std::to_string((i - 1) % 3))}, -1});
    input.push_back(std::move(b));
  }
  auto store = std::shared_ptr<storage::ObjectStore>(storage::make_memory_store());
  Config cfg = Config::simple_config(Backend::custom(store));
  auto r = run_prefix(input, 40, cfg);
  unsetenv("TIDEMARK_SYNC_COMPACTION");
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  auto latest = persistence::read_latest_manifest(*store);
  ASSERT_TRUE(latest.is_ok() && latest->has_value());
  auto m = **latest;
  uint64_t rows = 0;
  for (const auto& c : m.sources[0].chunks) {
    std::vector<persistence::InputEvent> events;
    ASSERT_TRUE(persistence::read_input_chunk(c.key, *store->get(c.key), &events).is_ok());
    for (const auto& e : events) rows += e.type == persistence::kRecordInsert || e.type == persistence::kRecordDelete;
  }
  // Without compaction 79 row events are stored; merged chunks keep only what is live in them.
  EXPECT_LT(rows, 20u);
  EXPECT_LE(m.sources[0].chunks.size(), 9u);
  auto [stored, referenced] = stored_and_referenced(*store, "streams/");
  EXPECT_EQ(stored, referenced);
  input.push_back(Batch{{Key{41, 5}, {Value("w1")}, 1}});
  auto r2 = run_prefix(input, 41, cfg);
  ASSERT_TRUE(r2.status.is_ok()) << r2.status.to_string();
  // Live before: w0 (key 40, i = 39 -> 39 % 3 = 0) count 1; now w1 joins.
  EXPECT_EQ(diffs(r2), (V{"+w1,1"}));
}


// ---- Fencing, limits, names (issue: fencing and durability) ----

// A store that, just before the old writer's Nth manifest create, lets a successor take over:
// the successor publishes its fencing commit under that very number and writes a chunk of its
// epoch. The old writer's commit must fail at its conditional create and delete nothing.
class TakeoverStore final : public ForwardingStore {
 public:
  explicit TakeoverStore(int nth_manifest) : ForwardingStore(storage::make_memory_store()), nth_(nth_manifest) {}
  Status put_if_absent(std::string_view k, std::string_view d) override {
    if (k.starts_with("manifests/") && ++manifests_ == nth_) {
      successor_manifest = std::string(k);
      TM_RETURN_IF_ERROR(inner_->put_if_absent(k, "the successor's fencing commit"));
      TM_RETURN_IF_ERROR(inner_->put_if_absent(successor_chunk, "the successor's chunk"));
    }
    return inner_->put_if_absent(k, d);
  }
  Status remove(std::string_view k) override {
    removed_after_takeover += !successor_manifest.empty();
    return inner_->remove(k);
  }
  std::string describe() const override { return "takeover memory store"; }
  std::string successor_manifest;
  const std::string successor_chunk = "streams/00000000000000000000000000000000/9999999990-0000000001";
  int removed_after_takeover = 0;

 private:
  int nth_;
  int manifests_ = 0;
};

TEST(Fencing, OldWritersCommitFailsAtItsConditionalCreateAndDeletesNothing) {
  auto store = std::make_shared<TakeoverStore>(3);  // fencing commit, one commit, then the takeover
  auto r = run_prefix(wordcount_input(), 4, Config::simple_config(Backend::custom(store)));
  ASSERT_FALSE(r.status.is_ok());
  EXPECT_EQ(r.status.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status.message().find("was written by another process"), std::string::npos) << r.status.to_string();
  EXPECT_EQ(store->removed_after_takeover, 0);
  EXPECT_EQ(store->get(store->successor_manifest).value(), "the successor's fencing commit");
  EXPECT_TRUE(store->get(store->successor_chunk).is_ok());
}

TEST(Fencing, EveryWriterFencesBeforeCollectingGarbageAndKeysCarryItsEpoch) {
  auto store = std::shared_ptr<storage::ObjectStore>(storage::make_memory_store());
  Config cfg = Config::simple_config(Backend::custom(store));
  ASSERT_TRUE(run_prefix(wordcount_input(), 2, cfg).status.is_ok());
  auto m1 = persistence::read_latest_manifest(*store).value();
  ASSERT_TRUE(m1.has_value());
  // Garbage of a crashed writer of the same epoch as the newest commit's writer.
  std::string orphan = persistence::chunk_key("words", m1->run, 999);
  ASSERT_TRUE(store->put(orphan, "left by a crashed commit").is_ok());
  auto r2 = run_prefix(wordcount_input(), 4, cfg);
  ASSERT_TRUE(r2.status.is_ok()) << r2.status.to_string();
  EXPECT_NE(joined(r2.logs).find("persistence: fenced the storage with commit " + std::to_string(m1->seq + 1)),
            std::string::npos)
      << joined(r2.logs);
  auto m2 = persistence::read_latest_manifest(*store).value();
  EXPECT_EQ(m2->run, m1->seq + 1);  // the new writer's epoch is its fencing commit
  EXPECT_FALSE(m2->writer.empty());
  EXPECT_EQ(store->get(orphan).status().code(), StatusCode::kNotFound);  // older epoch, unlisted
  for (const auto& c : m2->sources[0].chunks) {
    EXPECT_TRUE(c.has_crc);
    EXPECT_LE(persistence::epoch_of_key(c.key), m2->run);
  }
  EXPECT_EQ(persistence::epoch_of_key(m2->sources[0].chunks.back().key), m2->run);
}

// A chunk whose bytes were replaced by another writer's (same key, other bytes) is caught by the
// whole-object checksum even when its records decode.
TEST(Fencing, ReplacedChunkIsCaughtByTheManifestChecksum) {
  auto store = std::shared_ptr<storage::ObjectStore>(storage::make_memory_store());
  Config cfg = Config::simple_config(Backend::custom(store));
  ASSERT_TRUE(run_prefix(wordcount_input(), 2, cfg).status.is_ok());
  ASSERT_TRUE(run_prefix(wordcount_input(), 4, cfg).status.is_ok());
  auto m = persistence::read_latest_manifest(*store).value();
  ASSERT_EQ(m->sources[0].chunks.size(), 2u);
  // Same size, valid chunk, other rows: the second chunk's bytes put under the first's key.
  const auto& a = m->sources[0].chunks[0];
  const auto& b = m->sources[0].chunks[1];
  std::string other = store->get(b.key).value();
  ASSERT_TRUE(store->put(a.key, other).is_ok());
  auto r = run_prefix(wordcount_input(), 6, cfg);
  ASSERT_FALSE(r.status.is_ok());
  EXPECT_EQ(r.status.code(), StatusCode::kCorruption) << r.status.to_string();
  EXPECT_NE(r.status.message().find(a.key), std::string::npos) << r.status.to_string();
  EXPECT_TRUE(r.changes.empty());
}

// A store that claims to be remote and ignores the conditions of conditional writes, as an
// S3-compatible server ignoring If-None-Match would.
class CarelessStore final : public ForwardingStore {
 public:
  explicit CarelessStore(bool ignore_if_match)
      : ForwardingStore(storage::make_memory_store()), ignore_if_match_(ignore_if_match) {}
  Status put_if_absent(std::string_view k, std::string_view d) override {
    return ignore_if_match_ ? inner_->put_if_absent(k, d) : inner_->put(k, d);
  }
  Result<std::string> put_if_version(std::string_view k, std::string_view data, std::string_view v,
                                     storage::Deadline d) override {
    if (!ignore_if_match_) return inner_->put_if_version(k, data, v, d);
    TM_RETURN_IF_ERROR(inner_->put(k, data));
    return storage::content_version(data);
  }
  std::chrono::milliseconds retry_budget() const override { return std::chrono::milliseconds(1000); }
  std::string describe() const override { return "s3://bucket/p (http://careless.example:9000)"; }

 private:
  bool ignore_if_match_;
};

TEST(Fencing, StoreIgnoringConditionalWritesIsRefusedNamingTheEndpoint) {
  for (bool if_match : {false, true}) {
    auto store = std::make_shared<CarelessStore>(if_match);
    auto r = run_prefix(wordcount_input(), 2, Config::simple_config(Backend::custom(store)));
    ASSERT_FALSE(r.status.is_ok());
    EXPECT_EQ(r.status.code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(r.status.message().find("http://careless.example:9000"), std::string::npos) << r.status.to_string();
    EXPECT_NE(r.status.message().find("does not honour conditional writes"), std::string::npos) << r.status.to_string();
    EXPECT_NE(r.status.message().find(if_match ? "wrong version succeeded" : "second conditional create"),
              std::string::npos)
        << r.status.to_string();
    EXPECT_TRUE(r.changes.empty());
    EXPECT_TRUE(store->list("")->empty());  // refused before anything was written
  }
}

TEST(Fencing, LeaseShorterThanASecondIsRefused) {
  Config cfg = Config::simple_config(Backend::memory());
  cfg.lock_lease_ms = 500;
  auto r = run_prefix(wordcount_input(), 2, cfg);
  EXPECT_EQ(r.status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status.message().find("lock_lease_ms = 500"), std::string::npos) << r.status.to_string();
}

// Names are bytes: a connector name that is not valid UTF-8 never crashes a commit and
// resumes across runs (stored as hex beside a readable form).
TEST(Limits, NonUtf8NamesCommitAndResume) {
  auto store = std::shared_ptr<storage::ObjectStore>(storage::make_memory_store());
  Config cfg = Config::simple_config(Backend::custom(store));
  const std::string name = "caf\xe9-\xff\xfe";
  auto input = wordcount_input();
  auto r1 = run_prefix(input, 2, cfg, count_words, name);
  ASSERT_TRUE(r1.status.is_ok()) << r1.status.to_string();
  auto r2 = run_prefix(input, 4, cfg, count_words, name);
  ASSERT_TRUE(r2.status.is_ok()) << r2.status.to_string();
  EXPECT_EQ(diffs(r2), (V{"+abc,2", "+foo,3", "+xxx,1", "-abc,1", "-foo,2"}));
  auto m = persistence::read_latest_manifest(*store).value();
  EXPECT_EQ(m->sources[0].id, name);
}

TEST(Limits, StateEntryOverTheRecordLimitFailsNamingTheKey) {
  engine::StateChanges changes;
  changes.push_back({"big-entry", std::string(storage::format::kChunkMaxRecordSize, 'x'), false});
  uint64_t records = 0;
  Result<std::string> encoded = persistence::encode_state_chunk(std::move(changes), &records);
  ASSERT_FALSE(encoded.is_ok());
  EXPECT_EQ(encoded.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(encoded.status().message().find("key 6269672d656e747279"), std::string::npos)  // "big-entry"
      << encoded.status().to_string();
}

// Restore and compaction merge an owner's sorted chunks by key without a map: the newest record
// of a key wins, erases hide older puts (or are kept for a merge that is not the oldest), and
// a chunk whose keys are out of order is corruption naming it.
TEST(StateChunks, PipelinedMergeHandsOverTheSameRecordsAndStopsOnErrors) {
  // Enough records for many batches (16384 records each), erases, several chunks.
  auto chunk = [](engine::StateChanges c) {
    uint64_t records = 0;
    return persistence::encode_state_chunk(std::move(c), &records).value();
  };
  auto key = [](int i) {
    char b[16];
    std::snprintf(b, sizeof b, "k%08d", i);
    return std::string(b);
  };
  engine::StateChanges a, b;
  for (int i = 0; i < 60000; ++i) a.push_back({key(i), std::string(i % 7, 'v') + std::to_string(i), false});
  for (int i = 0; i < 60000; i += 3) b.push_back({key(i), "", i % 2 == 0});
  std::string ca = chunk(std::move(a)), cb = chunk(std::move(b));
  std::vector<std::pair<std::string, std::string_view>> chunks = {{"a", ca}, {"b", cb}};
  for (bool with_erases : {false, true}) {
    std::vector<std::string> plain, piped;
    auto into = [](std::vector<std::string>& out) {
      return [&out](std::string_view k, std::optional<std::string_view> v) {
        out.push_back(std::string(k) + (v ? "=" + std::string(*v) : " erased"));
        return Status();
      };
    };
    ASSERT_TRUE(persistence::merge_state_records(chunks, with_erases, into(plain)).is_ok());
    ASSERT_TRUE(persistence::merge_state_records_pipelined(chunks, with_erases, into(piped)).is_ok());
    EXPECT_GT(plain.size(), 40000u);
    EXPECT_EQ(piped, plain);
  }
  // The owner's error stops the producer and comes back as is.
  size_t calls = 0;
  Status st = persistence::merge_state_records_pipelined(chunks, false, [&](std::string_view, std::optional<std::string_view>) {
    return ++calls == 30000 ? Status::corruption("state of join#7 is malformed") : Status();
  });
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_NE(st.message().find("join#7"), std::string::npos);
  EXPECT_EQ(calls, 30000u);
  // Damage in the middle of a chunk: every record before it is handed over, then the error.
  std::string damaged = ca;
  damaged[damaged.size() / 2] ^= 0x5a;
  size_t seen = 0;
  st = persistence::merge_state_records_pipelined({{"operators/x/damaged", damaged}}, false,
                                                  [&](std::string_view, std::optional<std::string_view>) {
                                                    ++seen;
                                                    return Status();
                                                  });
  EXPECT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("operators/x/damaged"), std::string::npos) << st.to_string();
  size_t seq_seen = 0;
  Status seq = persistence::merge_state_records({{"operators/x/damaged", damaged}}, false,
                                                [&](std::string_view, std::optional<std::string_view>) {
                                                  ++seq_seen;
                                                  return Status();
                                                });
  EXPECT_EQ(seq.to_string(), st.to_string());
  EXPECT_EQ(seen, seq_seen);
}

TEST(StateChunks, MergedByKeyNewestWins) {
  auto chunk = [](engine::StateChanges c) {
    uint64_t records = 0;
    return persistence::encode_state_chunk(std::move(c), &records).value();
  };
  // Within one chunk, the later change of a key wins and runs of keys are ordered.
  std::string c1 = chunk({{"b", "1", false}, {"a", "1", false}, {"c", "1", false}, {"b", "2", false}, {"d", "1", false}});
  std::string c2 = chunk({{"a", "", true}, {"c", "3", false}, {"e", "3", false}});
  std::string c3 = chunk({{"e", "", true}, {"a", "4", false}});
  std::vector<std::pair<std::string, std::string_view>> chunks = {{"c1", c1}, {"c2", c2}, {"c3", c3}};
  std::vector<std::string> seen;
  ASSERT_TRUE(persistence::merge_state_records(chunks, false, [&](std::string_view k, std::optional<std::string_view> v) {
                seen.push_back(std::string(k) + "=" + std::string(*v));
                return Status();
              }).is_ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"a=4", "b=2", "c=3", "d=1"}));
  // Compaction of the two newer chunks keeps the erase of e (an older chunk may hold e).
  uint64_t records = 0;
  std::string merged = persistence::merge_state_chunks({{"c2", c2}, {"c3", c3}}, false, &records).value();
  EXPECT_EQ(records, 3u);
  seen.clear();
  ASSERT_TRUE(persistence::merge_state_records({{"m", merged}}, true, [&](std::string_view k, std::optional<std::string_view> v) {
                seen.push_back(std::string(k) + (v ? "=" + std::string(*v) : " erased"));
                return Status();
              }).is_ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"a=4", "c=3", "e erased"}));
  // An owner's error stops the merge and is returned as is.
  Status st = persistence::merge_state_records(chunks, false, [](std::string_view, std::optional<std::string_view>) {
    return Status::corruption("state of join#3 is truncated or malformed");
  });
  EXPECT_NE(st.message().find("join#3"), std::string::npos);
  // Keys out of order (not a chunk encode_state_chunk writes): corruption naming the chunk.
  storage::ChunkWriter w;
  for (const char* k : {"b", "a"}) {
    std::string rec;
    codec::put_bytes(rec, k);
    codec::put_bytes(rec, "v");
    ASSERT_TRUE(w.append(persistence::kRecordStatePut, rec).is_ok());
  }
  std::string bad = w.finish();
  st = persistence::merge_state_records({{"operators/x/bad", bad}}, false,
                                        [](std::string_view, std::optional<std::string_view>) { return Status(); });
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_NE(st.message().find("operators/x/bad"), std::string::npos) << st.to_string();
  // The whole-chunk reader (inspect/verify) agrees: what does not merge does not apply
  // (found by fuzz_state_chunk: "a chunk that applies also merges").
  persistence::StateMap map;
  st = persistence::apply_state_chunk("operators/x/bad", bad, &map);
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_NE(st.message().find("out of order"), std::string::npos) << st.to_string();
}

}  // namespace
}  // namespace tidemark
