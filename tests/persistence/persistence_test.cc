// Persistence semantics on in-memory sources: resume, every mode and access value, faults.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "engine/collection_io.h"
#include "engine/scheduler.h"
#include "persistence/manifest.h"
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
  o.log = [](const std::string&) {};
  o.persistence_config = cfg;
  RunResult r;
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
  ASSERT_TRUE(store->put(persistence::manifest_key(1), persistence::encode_manifest(m)).is_ok());
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

}  // namespace
}  // namespace tidemark
