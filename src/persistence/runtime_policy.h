// What a run does, by its persistence mode and snapshot access (include/tidemark/persistence.h,
// docs/persistence.md): the runtime's recovery and commit code branch on this alone, never on
// the mode or the access themselves. tests/persistence/policy_test.cc has every pair's policy.
#pragma once

#include <string>

#include "tidemark/persistence.h"
#include "tidemark/status.h"

namespace tidemark::persistence {

// Which kind of state a storage holds, by the mode that wrote it: replaying it in a mode of
// another class would silently compute something else.
enum class StateClass { kRows, kOperators, kOffsets };
StateClass class_of(const std::string& mode);  // a manifest's mode (a storage's class)
const char* class_name(StateClass c);
// FailedPrecondition when `storage` holds state written in `stored_mode` (a manifest's mode)
// of another class than `mode`'s; OK when it holds no state.
Status check_resumable(const std::string& storage, PersistenceMode mode, const std::string& stored_mode,
                       bool has_state);

// How recorded rows are replayed into the engine.
enum class ReplayTiming {
  kOneTime,        // all recorded rows in one new time (batch)
  kRecordedTimes,  // one step per recorded time, as fast as possible
  kRealtime,       // one step per recorded time, with the recorded gaps between them
};

struct RuntimePolicy {
  // What the storage holds: a storage of another class is refused.
  StateClass state_class = StateClass::kRows;

  // Identity (runtime_ids.cc).
  bool derives_ids = false;    // unnamed connectors persist under ids derived from what they read
                               // or write ("auto:..."); else only named ones persist
  bool tracks_outputs = false;   // outputs are persisted (cut back or started anew at start)
  bool resumes_outputs = false;  // outputs continue from their committed position (else they
                                 // start empty and the replay re-emits into them)

  // Persistent states (runtime_ids.cc, runtime_recovery.cc).
  bool persists_operators = false;   // every stateful operator is a persistent state
  bool persists_udf_caches = false;  // UDF caches (the graph's extra states) are persistent states
  bool archives_contents = false;    // file sources keep the contents they read (ContentArchive)
  bool restores_states = false;      // persistent states load their stored chunks at start
  bool stores_states = false;        // persistent states' changes are committed

  // Recovery (runtime_recovery.cc).
  bool reads_snapshots = false;  // the stored commit is resumed: sources seek to their offsets,
                                 // rows are replayed (else sources start from the beginning)
  bool replays_inputs = false;   // recorded rows are replayed
  bool emits_replay = false;     // replayed rows reach the outputs, in new times (else they rebuild
                                 // state at their recorded times, outputs suppressed)
  ReplayTiming replay_timing = ReplayTiming::kRecordedTimes;
  bool stops_after_replay = false;  // the sources are not read after the replay (offline)

  // Commits (runtime_commit.cc, runtime_compaction.cc).
  bool writes_snapshots = false;  // this run fences the storage, collects garbage and commits
  bool records_inputs = false;    // commits hold the sources' rows (else offsets only)
  bool compacts_inputs = false;   // recorded rows are compacted (unless an operator depends on
                                  // arrival order)

  bool operator==(const RuntimePolicy&) const = default;
};

// Every (mode, access) pair is valid.
RuntimePolicy policy_for(PersistenceMode mode, SnapshotAccess access);

}  // namespace tidemark::persistence
