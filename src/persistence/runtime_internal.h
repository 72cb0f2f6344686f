// Private to the runtime's files (runtime*.cc): the state of one run (Runtime::Impl) and what
// it holds per source, output and persistent state. Each concern is in its own file:
//   runtime.cc             Runtime: the hooks installed into the scheduler
//   runtime_recovery.cc    start: open and lock the storage, check the stored state, restore
//                          operator states, replay recorded input (before_start, after_sinks_open)
//   runtime_fencing.cc     taking the storage over: the fencing commit, garbage collection
//   runtime_ids.cc         persistent ids of sources, outputs and operator states
//   runtime_commit.cc      recording after every time, commits, the end of the run
//   runtime_compaction.cc  background merges of chunks and their swap into manifests
//   runtime_archive.{h,cc} the content archive of file sources (operator persisting)
//   runtime_io.{h,cc}      parallel object-store requests, the standing I/O pool
//   runtime_policy.{h,cc}  what each persistence mode and snapshot access does
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "persistence/manifest.h"
#include "persistence/runtime.h"
#include "persistence/runtime_archive.h"
#include "persistence/runtime_io.h"
#include "persistence/runtime_policy.h"
#include "persistence/state_store.h"
#include "storage/chunk_format.h"
#include "storage/lock.h"

namespace tidemark::persistence {

using engine::Batch;
using engine::RunControl;
using engine::SinkNode;
using engine::SourceNode;
using engine::Time;

// Runs of this many chunks of one level are merged into one chunk of the next level.
constexpr size_t kMergeFanIn = 4;
// Stored states from this size on are restored with their decoding on a second thread.
constexpr uint64_t kPipelineRestoreBytes = 1u << 20;

struct PSource {
  SourceNode* node = nullptr;         // the graph's node (ids, labels, schema)
  size_t index = 0;                   // in RunControl::sources()
  std::vector<SourceNode*> shards;    // its running instances (one per worker when it splits)
  std::string id;
  SourceState state;                 // chunks and offset as of the last commit
  std::unique_ptr<storage::ChunkWriter> writer;  // events since the last commit
  uint64_t pending_max_time = 0;
  std::vector<Batch> recorded;       // per shard: filled by the shard during a step
  std::unique_ptr<Archive> archive;  // operator persisting (shared by the shards; locks itself)
  // The position of all shards together (Source::merge_shard_offsets).
  Result<std::string> offset() const;
};

// A persistent state: an operator's (operator persisting) or a UDF cache's.
struct POwner {
  engine::PersistentState* state = nullptr;  // worker 0's (or the only) instance
  engine::Node* node = nullptr;  // nullptr for states that are not operators
  // Every instance, by worker (operators at several workers; else {state}). A restored entry
  // goes to the instance its route (Node::state_entry_route) picks.
  std::vector<engine::PersistentState*> instances;
  OperatorState st;              // chunks as of the last commit
  engine::StateChanges changes;  // since the last commit
};

struct PSink {
  SinkNode* node = nullptr;
  std::string id;
};

struct Runtime::Impl {
  Config cfg;
  Stats stats;
  std::shared_ptr<storage::ObjectStore> meta, snap;
  std::unique_ptr<IoPool> io;  // background uploads (operator persisting's archived contents)
  std::optional<storage::StorageLock> lock;
  std::vector<PSource> sources;
  std::vector<PSink> sinks;
  uint64_t run = 1;
  uint64_t seq = 0;
  uint64_t chunk_seq = 0;
  Time last_commit_time = 0;
  bool have_last_commit = false;
  RuntimePolicy policy;       // what the mode and access make this run do
  bool dirty = false;         // something happened since the last commit
  bool compact_inputs = false;
  bool final_commit = false;
  std::vector<POwner> owners;
  std::unique_ptr<Merger> merger;
  std::vector<std::string> superseded;  // merged chunks to delete after the next commit

  Status before_start(RunControl& sched);
  Status after_sinks_open(RunControl& sched);
  std::optional<Manifest> resume;  // the commit being resumed, between the two recovery phases
  Status fence(RunControl& sched, std::optional<Manifest>& manifest, Manifest& fenced,
               std::vector<storage::ObjectInfo>& objects);
  Status check_lease() const { return lock ? lock->check() : Status::ok(); }
  Status after_time(RunControl& sched, Time t);
  Status at_end(RunControl& sched, bool stopped);
  Status commit(RunControl& sched, Time t);
  Status replay(RunControl& sched, const Manifest& m);
  Status collect_garbage(const Manifest& m, const std::vector<storage::ObjectInfo>& objects);
  void setup_connectors(RunControl& sched);
  Status setup_owners(RunControl& sched, const std::optional<Manifest>& m);
  Status restore_owners();
  void apply_merges(RunControl& sched);
  void schedule_merges();
  Merger::Job merge_job(const std::string& owner, const std::vector<ChunkRef>& chunks, size_t first, size_t last,
                        bool input);
};

}  // namespace tidemark::persistence
