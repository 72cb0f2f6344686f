// The runtime's policy (src/persistence/runtime_policy.h) for every (mode, access) pair, written
// out as a table: a change of what a mode or an access does shows as a failed row.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/collection_io.h"
#include "persistence/runtime_policy.h"
#include "tidemark/tidemark.h"

namespace tidemark {
namespace {

using persistence::PersistenceMode;
using persistence::ReplayTiming;
using persistence::RuntimePolicy;
using persistence::SnapshotAccess;
using persistence::StateClass;

const std::vector<PersistenceMode> kModes = {
    PersistenceMode::kBatch,      PersistenceMode::kSpeedrunReplay,      PersistenceMode::kRealtimeReplay,
    PersistenceMode::kPersisting, PersistenceMode::kSelectivePersisting, PersistenceMode::kUdfCaching,
    PersistenceMode::kOperatorPersisting};
const std::vector<SnapshotAccess> kAccesses = {SnapshotAccess::kFull, SnapshotAccess::kRecord, SnapshotAccess::kReplay,
                                               SnapshotAccess::kOffsetsOnly, SnapshotAccess::kOfflineReplay};

struct Row {
  PersistenceMode mode;
  SnapshotAccess access;
  StateClass state_class;
  ReplayTiming timing;
  // derives_ids, tracks_outputs, resumes_outputs, persists_operators, persists_udf_caches,
  // archives_contents, restores_states, stores_states, reads_snapshots, replays_inputs,
  // emits_replay, stops_after_replay, writes_snapshots, records_inputs, compacts_inputs
  const char* flags;  // one 0/1 per field above, in that order (spaces ignored)
};

using M = PersistenceMode;
using A = SnapshotAccess;
using C = StateClass;
using T = ReplayTiming;

// clang-format off
const Row kTable[] = {
  //                                                         ids trk res ops udf arc rst sto rd  rpl emi stp wr  rec cmp
  {M::kBatch,               A::kFull,          C::kRows,      T::kOneTime,       "1   1   0   0   0   0   0   0   1   1   1   0   1   1   0"},
  {M::kBatch,               A::kRecord,        C::kRows,      T::kOneTime,       "1   1   0   0   0   0   0   0   0   0   1   0   1   1   0"},
  {M::kBatch,               A::kReplay,        C::kRows,      T::kOneTime,       "1   1   0   0   0   0   0   0   1   1   1   0   0   0   0"},
  {M::kBatch,               A::kOffsetsOnly,   C::kRows,      T::kOneTime,       "1   1   0   0   0   0   0   0   1   0   1   0   1   0   0"},
  {M::kBatch,               A::kOfflineReplay, C::kRows,      T::kOneTime,       "1   1   0   0   0   0   0   0   1   1   1   1   0   0   0"},

  {M::kSpeedrunReplay,      A::kFull,          C::kRows,      T::kRecordedTimes, "1   1   0   0   0   0   0   0   1   1   1   0   1   1   0"},
  {M::kSpeedrunReplay,      A::kRecord,        C::kRows,      T::kRecordedTimes, "1   1   0   0   0   0   0   0   0   0   1   0   1   1   0"},
  {M::kSpeedrunReplay,      A::kReplay,        C::kRows,      T::kRecordedTimes, "1   1   0   0   0   0   0   0   1   1   1   0   0   0   0"},
  {M::kSpeedrunReplay,      A::kOffsetsOnly,   C::kRows,      T::kRecordedTimes, "1   1   0   0   0   0   0   0   1   0   1   0   1   0   0"},
  {M::kSpeedrunReplay,      A::kOfflineReplay, C::kRows,      T::kRecordedTimes, "1   1   0   0   0   0   0   0   1   1   1   1   0   0   0"},

  {M::kRealtimeReplay,      A::kFull,          C::kRows,      T::kRealtime,      "1   1   0   0   0   0   0   0   1   1   1   0   1   1   0"},
  {M::kRealtimeReplay,      A::kRecord,        C::kRows,      T::kRealtime,      "1   1   0   0   0   0   0   0   0   0   1   0   1   1   0"},
  {M::kRealtimeReplay,      A::kReplay,        C::kRows,      T::kRealtime,      "1   1   0   0   0   0   0   0   1   1   1   0   0   0   0"},
  {M::kRealtimeReplay,      A::kOffsetsOnly,   C::kRows,      T::kRealtime,      "1   1   0   0   0   0   0   0   1   0   1   0   1   0   0"},
  {M::kRealtimeReplay,      A::kOfflineReplay, C::kRows,      T::kRealtime,      "1   1   0   0   0   0   0   0   1   1   1   1   0   0   0"},

  {M::kPersisting,          A::kFull,          C::kRows,      T::kRecordedTimes, "1   1   1   0   1   0   1   1   1   1   0   0   1   1   1"},
  {M::kPersisting,          A::kRecord,        C::kRows,      T::kRecordedTimes, "1   1   1   0   1   0   0   1   0   0   0   0   1   1   1"},
  {M::kPersisting,          A::kReplay,        C::kRows,      T::kRecordedTimes, "1   1   1   0   1   0   1   0   1   1   0   0   0   0   0"},
  {M::kPersisting,          A::kOffsetsOnly,   C::kRows,      T::kRecordedTimes, "1   1   1   0   1   0   1   1   1   0   0   0   1   0   0"},
  {M::kPersisting,          A::kOfflineReplay, C::kRows,      T::kRecordedTimes, "1   1   1   0   1   0   1   0   1   1   0   1   0   0   0"},

  {M::kSelectivePersisting, A::kFull,          C::kRows,      T::kRecordedTimes, "0   1   1   0   1   0   1   1   1   1   0   0   1   1   0"},
  {M::kSelectivePersisting, A::kRecord,        C::kRows,      T::kRecordedTimes, "0   1   1   0   1   0   0   1   0   0   0   0   1   1   0"},
  {M::kSelectivePersisting, A::kReplay,        C::kRows,      T::kRecordedTimes, "0   1   1   0   1   0   1   0   1   1   0   0   0   0   0"},
  {M::kSelectivePersisting, A::kOffsetsOnly,   C::kRows,      T::kRecordedTimes, "0   1   1   0   1   0   1   1   1   0   0   0   1   0   0"},
  {M::kSelectivePersisting, A::kOfflineReplay, C::kRows,      T::kRecordedTimes, "0   1   1   0   1   0   1   0   1   1   0   1   0   0   0"},

  {M::kUdfCaching,          A::kFull,          C::kOffsets,   T::kRecordedTimes, "0   0   0   0   1   0   1   1   1   0   0   0   1   0   0"},
  {M::kUdfCaching,          A::kRecord,        C::kOffsets,   T::kRecordedTimes, "0   0   0   0   1   0   0   1   0   0   0   0   1   0   0"},
  {M::kUdfCaching,          A::kReplay,        C::kOffsets,   T::kRecordedTimes, "0   0   0   0   1   0   1   0   1   0   0   0   0   0   0"},
  {M::kUdfCaching,          A::kOffsetsOnly,   C::kOffsets,   T::kRecordedTimes, "0   0   0   0   1   0   1   1   1   0   0   0   1   0   0"},
  {M::kUdfCaching,          A::kOfflineReplay, C::kOffsets,   T::kRecordedTimes, "0   0   0   0   1   0   1   0   1   0   0   1   0   0   0"},

  {M::kOperatorPersisting,  A::kFull,          C::kOperators, T::kRecordedTimes, "1   1   1   1   1   1   1   1   1   0   0   0   1   0   0"},
  {M::kOperatorPersisting,  A::kRecord,        C::kOperators, T::kRecordedTimes, "1   1   1   1   1   1   0   1   0   0   0   0   1   0   0"},
  {M::kOperatorPersisting,  A::kReplay,        C::kOperators, T::kRecordedTimes, "1   1   1   1   1   1   1   0   1   0   0   0   0   0   0"},
  {M::kOperatorPersisting,  A::kOffsetsOnly,   C::kOperators, T::kRecordedTimes, "1   1   1   1   1   1   1   1   1   0   0   0   1   0   0"},
  {M::kOperatorPersisting,  A::kOfflineReplay, C::kOperators, T::kRecordedTimes, "1   1   1   1   1   1   1   0   1   0   0   1   0   0   0"},
};
// clang-format on

struct Field {
  const char* name;
  bool RuntimePolicy::*member;
};
const Field kFields[] = {
    {"derives_ids", &RuntimePolicy::derives_ids},
    {"tracks_outputs", &RuntimePolicy::tracks_outputs},
    {"resumes_outputs", &RuntimePolicy::resumes_outputs},
    {"persists_operators", &RuntimePolicy::persists_operators},
    {"persists_udf_caches", &RuntimePolicy::persists_udf_caches},
    {"archives_contents", &RuntimePolicy::archives_contents},
    {"restores_states", &RuntimePolicy::restores_states},
    {"stores_states", &RuntimePolicy::stores_states},
    {"reads_snapshots", &RuntimePolicy::reads_snapshots},
    {"replays_inputs", &RuntimePolicy::replays_inputs},
    {"emits_replay", &RuntimePolicy::emits_replay},
    {"stops_after_replay", &RuntimePolicy::stops_after_replay},
    {"writes_snapshots", &RuntimePolicy::writes_snapshots},
    {"records_inputs", &RuntimePolicy::records_inputs},
    {"compacts_inputs", &RuntimePolicy::compacts_inputs},
};

std::string pair_name(PersistenceMode m, SnapshotAccess a) {
  return persistence::to_string(m) + " / " + persistence::to_string(a);
}

// The table's row as a policy.
RuntimePolicy expected(const Row& row) {
  RuntimePolicy p;
  p.state_class = row.state_class;
  p.replay_timing = row.timing;
  std::string flags;
  for (const char* c = row.flags; *c; ++c)
    if (*c != ' ') flags += *c;
  EXPECT_EQ(flags.size(), std::size(kFields)) << "row " << pair_name(row.mode, row.access);
  for (size_t i = 0; i < std::size(kFields) && i < flags.size(); ++i) p.*kFields[i].member = flags[i] == '1';
  return p;
}

TEST(RuntimePolicy, EveryModeAndAccessPairIsInTheTableOnce) {
  EXPECT_EQ(std::size(kTable), kModes.size() * kAccesses.size());
  for (PersistenceMode m : kModes)
    for (SnapshotAccess a : kAccesses) {
      int n = 0;
      for (const Row& row : kTable) n += row.mode == m && row.access == a;
      EXPECT_EQ(n, 1) << pair_name(m, a);
    }
}

TEST(RuntimePolicy, EveryPairMatchesItsRow) {
  for (const Row& row : kTable) {
    const std::string where = pair_name(row.mode, row.access);
    RuntimePolicy want = expected(row);
    RuntimePolicy got = persistence::policy_for(row.mode, row.access);
    EXPECT_EQ(got.state_class, want.state_class) << where << ": state_class";
    EXPECT_EQ(got.replay_timing, want.replay_timing) << where << ": replay_timing";
    for (const Field& f : kFields) EXPECT_EQ(got.*f.member, want.*f.member) << where << ": " << f.name;
    EXPECT_TRUE(got == want) << where << ": a field the table does not list differs";
  }
}

// What the rows must agree on whatever the table says: the policy's fields imply each other.
TEST(RuntimePolicy, FieldsAreConsistent) {
  for (PersistenceMode m : kModes)
    for (SnapshotAccess a : kAccesses) {
      const std::string where = pair_name(m, a);
      RuntimePolicy p = persistence::policy_for(m, a);
      EXPECT_TRUE(!p.records_inputs || p.writes_snapshots) << where;
      EXPECT_TRUE(!p.compacts_inputs || p.records_inputs) << where;
      EXPECT_TRUE(!p.replays_inputs || p.reads_snapshots) << where;
      EXPECT_TRUE(!p.restores_states || p.reads_snapshots) << where;
      EXPECT_TRUE(!p.stores_states || p.writes_snapshots) << where;
      EXPECT_TRUE(!p.resumes_outputs || p.tracks_outputs) << where;
      EXPECT_TRUE(!p.archives_contents || p.persists_operators) << where;
      EXPECT_EQ(p.replays_inputs || p.records_inputs, p.state_class == StateClass::kRows &&
                                                          (p.reads_snapshots || p.writes_snapshots) &&
                                                          (a != SnapshotAccess::kOffsetsOnly))
          << where;
    }
}

// A storage written in one mode, resumed in another: refused exactly when their classes of
// state differ (recorded rows, operator states, offsets only), with the same message as before.
TEST(RuntimePolicy, ResumingAnotherClassOfStateIsRefused) {
  auto cls = [](PersistenceMode m) { return persistence::policy_for(m, SnapshotAccess::kFull).state_class; };
  for (PersistenceMode stored : kModes)
    for (PersistenceMode mode : kModes) {
      const std::string where = persistence::to_string(stored) + " -> " + persistence::to_string(mode);
      Status st = persistence::check_resumable("mem", mode, persistence::to_string(stored), true);
      EXPECT_EQ(st.is_ok(), cls(stored) == cls(mode)) << where << ": " << st.to_string();
      if (!st.is_ok()) {
        EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << where;
      }
      // A storage without state (a fresh one's fencing commit) is resumed by any mode.
      EXPECT_TRUE(persistence::check_resumable("mem", mode, persistence::to_string(stored), false).is_ok()) << where;
    }
  EXPECT_TRUE(persistence::check_resumable("mem", PersistenceMode::kPersisting, "", true).is_ok());
  EXPECT_EQ(persistence::check_resumable("fs:/tmp/s", PersistenceMode::kOperatorPersisting, "persisting", true)
                .message(),
            "persistent storage fs:/tmp/s was written in mode 'persisting' (it holds recorded input rows), which mode "
            "'operator_persisting' cannot resume from (it needs operator states); use the original mode or a new "
            "storage location");
  EXPECT_EQ(persistence::check_resumable("fs:/tmp/s", PersistenceMode::kPersisting, "udf_caching", true).message(),
            "persistent storage fs:/tmp/s was written in mode 'udf_caching' (it holds input offsets only), which mode "
            "'persisting' cannot resume from (it needs recorded input rows); use the original mode or a new storage "
            "location");
}

// No (mode, access) pair is rejected: each one starts on a fresh storage and again on what it
// left there.
TEST(RuntimePolicy, EveryPairRunsTwice) {
  const Schema schema{{"word", t_str()}};
  for (PersistenceMode m : kModes)
    for (SnapshotAccess a : kAccesses) {
      const std::string where = pair_name(m, a);
      persistence::Config cfg = persistence::Config::simple_config(persistence::Backend::memory(), 0, a, m);
      for (int round = 0; round < 2; ++round) {
        Graph g;
        uint64_t k = 1;
        std::vector<engine::Batch> input;
        for (int i = 0; i <= round; ++i) input.push_back({{Key{k++, 77}, {Value("abc")}, 1}});
        Table in = engine::add_source(g, std::make_unique<engine::BatchesSource>(input, "words"), schema, "words");
        Table out = in.groupby({"word"}).reduce({{"word", col("word")}, {"count", reducers::count()}});
        auto captured = std::make_shared<std::vector<engine::CapturedChange>>();
        engine::add_sink(out, std::make_unique<engine::CaptureSink>(captured), "capture");
        RunOptions o;
        o.handle_signals = false;
        o.progress_interval_s = 0;
        o.log = [](const std::string&) {};
        o.persistence_config = cfg;
        Status st = run(g, o);
        EXPECT_TRUE(st.is_ok()) << where << ", run " << round + 1 << ": " << st.to_string();
      }
    }
}

}  // namespace
}  // namespace tidemark
