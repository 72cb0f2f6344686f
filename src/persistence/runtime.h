// Drives persistence for one run: recovery before the sources open, recording and commits
// after every logical time, a final commit at the end. Installed into the scheduler as
// engine::RunHooks by tidemark::run when a persistence config is given.
//
// Commit protocol (see docs/persistence.md):
//   1. each recording source's events since the last commit go into a new immutable chunk
//      (unique key: run number and sequence), put durably;
//   2. every output sink is flushed (fsync) and its position noted;
//   3. the manifest (committed time, every source's offset and chunk list, every sink's
//      position) is created with put_if_absent under the next sequence number: the commit point.
// Recovery reads the newest manifest, cuts outputs back to their committed positions, replays
// the chunks and seeks the sources to their offsets; objects no manifest refers to are deleted.
#pragma once

#include <memory>

#include "engine/scheduler.h"
#include "tidemark/persistence.h"

namespace tidemark::persistence {

class Runtime {
 public:
  explicit Runtime(Config config);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  engine::RunHooks hooks();

  // Statistics of this run, for logs, tests and benchmarks.
  struct Stats {
    uint64_t commits = 0;
    uint64_t chunks_written = 0;
    uint64_t bytes_written = 0;
    uint64_t replayed_events = 0;
    uint64_t replayed_times = 0;
    uint64_t objects_collected = 0;  // garbage deleted at start
    uint64_t restored_entries = 0;   // operator-state entries loaded at start
    uint64_t state_chunks_written = 0;
    uint64_t merges = 0;             // compactions swapped into a manifest
    uint64_t contents_written = 0;   // archived file contents (operator persisting)
  };
  const Stats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidemark::persistence
