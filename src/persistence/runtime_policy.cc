#include "persistence/runtime_policy.h"

namespace tidemark::persistence {

namespace {

bool is_replay_mode(PersistenceMode m) {
  return m == PersistenceMode::kBatch || m == PersistenceMode::kSpeedrunReplay ||
         m == PersistenceMode::kRealtimeReplay;
}
StateClass class_of(PersistenceMode m) {
  if (m == PersistenceMode::kOperatorPersisting) return StateClass::kOperators;
  if (m == PersistenceMode::kUdfCaching) return StateClass::kOffsets;
  return StateClass::kRows;
}

}  // namespace

StateClass class_of(const std::string& mode) {
  if (mode == "operator_persisting") return StateClass::kOperators;
  if (mode == "udf_caching") return StateClass::kOffsets;
  return StateClass::kRows;
}
const char* class_name(StateClass c) {
  switch (c) {
    case StateClass::kRows: return "recorded input rows";
    case StateClass::kOperators: return "operator states";
    case StateClass::kOffsets: return "input offsets only";
  }
  return "";
}

Status check_resumable(const std::string& storage, PersistenceMode mode, const std::string& stored_mode,
                       bool has_state) {
  StateClass stored = class_of(stored_mode), wanted = class_of(mode);
  if (has_state && stored != wanted)
    return Status::failed_precondition(
        "persistent storage " + storage + " was written in mode '" + stored_mode +
        "' (it holds " + class_name(stored) + "), which mode '" + to_string(mode) + "' cannot resume from (it needs " +
        class_name(wanted) + "); use the original mode or a new storage location");
  return {};
}

RuntimePolicy policy_for(PersistenceMode mode, SnapshotAccess access) {
  RuntimePolicy p;
  p.state_class = class_of(mode);
  const bool rows = p.state_class == StateClass::kRows;  // the mode records/replays source rows

  p.derives_ids = mode != PersistenceMode::kSelectivePersisting && mode != PersistenceMode::kUdfCaching;
  // UDF caching does not resume unnamed sources, so outputs are not resumed either.
  p.tracks_outputs = mode != PersistenceMode::kUdfCaching;
  // Replay modes re-emit everything into fresh outputs; the others continue theirs.
  p.resumes_outputs = p.tracks_outputs && !is_replay_mode(mode);

  p.persists_operators = mode == PersistenceMode::kOperatorPersisting;
  p.persists_udf_caches = !is_replay_mode(mode);
  p.archives_contents = mode == PersistenceMode::kOperatorPersisting;

  p.writes_snapshots = access == SnapshotAccess::kFull || access == SnapshotAccess::kRecord ||
                       access == SnapshotAccess::kOffsetsOnly;
  p.reads_snapshots = access != SnapshotAccess::kRecord;  // record: from scratch
  const bool has_states = p.persists_operators || p.persists_udf_caches;
  p.restores_states = has_states && p.reads_snapshots;
  p.stores_states = has_states && p.writes_snapshots;

  p.replays_inputs = rows && p.reads_snapshots && access != SnapshotAccess::kOffsetsOnly;
  p.emits_replay = is_replay_mode(mode);
  p.replay_timing = mode == PersistenceMode::kBatch           ? ReplayTiming::kOneTime
                    : mode == PersistenceMode::kRealtimeReplay ? ReplayTiming::kRealtime
                                                               : ReplayTiming::kRecordedTimes;
  p.stops_after_replay = access == SnapshotAccess::kOfflineReplay;

  p.records_inputs = rows && (access == SnapshotAccess::kFull || access == SnapshotAccess::kRecord);
  // Input compaction merges recorded times: only in persisting (and only when no operator
  // depends on arrival order, which the runtime checks on the graph).
  p.compacts_inputs = p.writes_snapshots && p.records_inputs && mode == PersistenceMode::kPersisting;
  return p;
}

}  // namespace tidemark::persistence
