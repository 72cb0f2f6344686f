// Incremental operator state and compaction (operator persisting, UDF caches, input-snapshot
// compaction). Byte-level spec: docs/format/persistence.md ("Operator state chunks",
// "Content objects", "Compaction").
//
// Operator state is an LSM-like sequence of immutable chunks per state owner, oldest first.
// Each commit writes one level-0 chunk holding the consolidated changes of the owner since the
// previous commit (one record per entry key, sorted by key: a put with the newest value, or an
// erase). A background Merger folds runs of equal-level chunks into one chunk of the next
// level; a merge that includes the oldest chunk drops erases (nothing older is left for them
// to hide). The commit path never waits for a merge: finished merges are swapped into the
// next manifest, the superseded chunks deleted after it is committed.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/node.h"
#include "persistence/manifest.h"
#include "storage/object_store.h"

namespace tidemark::persistence {

// Record tags of operator-state chunks and content objects (never reused; see manifest.h).
inline constexpr uint8_t kRecordStatePut = 0x20;    // bytes key, bytes value
inline constexpr uint8_t kRecordStateErase = 0x21;  // bytes key
inline constexpr uint8_t kRecordContent = 0x30;     // raw bytes (a content spans several records)

// Consolidates `changes` (a later change of a key wins) and encodes them as one chunk sorted
// by key. Returns the number of records in *records. InvalidArgument naming the entry key when
// an entry exceeds the record size limit (never dropped silently).
Result<std::string> encode_state_chunk(engine::StateChanges changes, uint64_t* records);

// Live entries after applying chunks oldest first: key -> value (erased keys absent).
using StateMap = std::unordered_map<std::string, std::string>;
// Applies one state chunk to `map`. Corruption naming `key` on damage.
Status apply_state_chunk(const std::string& key, std::string_view data, StateMap* map);

// Streams the records of consecutive state chunks (name, data; oldest first) merged by key,
// without building a map: each chunk is sorted by key, so a k-way merge visits every key once
// in key order with its newest record. f(key, value) gets the live entries, and, when
// `with_erases`, f(key, nullopt) the keys whose newest record is an erase. The views are valid
// during the call. Corruption naming the chunk on damage or keys out of order; f's error stops
// the merge and is returned.
using StateRecordFn = std::function<Status(std::string_view key, std::optional<std::string_view> value)>;
Status merge_state_records(const std::vector<std::pair<std::string, std::string_view>>& chunks, bool with_erases,
                           const StateRecordFn& f);
// As merge_state_records, with the decoding and merging on a second thread that hands the
// records to `f` (on the calling thread, in the same order) in batches, so a restore's
// decompression overlaps the owner's own work. An error of `f` stops both and is returned;
// else the merge's error, after `f` saw every record before it.
Status merge_state_records_pipelined(const std::vector<std::pair<std::string, std::string_view>>& chunks,
                                     bool with_erases, const StateRecordFn& f);

// Content objects (ContentArchive): "contents/<hash of source id>/<16 hex digits>-<epoch>".
std::string content_prefix(const std::string& source_id);
std::string content_key(const std::string& source_id, uint64_t hash, uint64_t epoch);
std::string encode_content(std::string_view content);
Result<std::string> decode_content(const std::string& key, std::string_view data);

// "operators/<hash of owner id>/<epoch>-<seq>"
std::string state_chunk_key(const std::string& owner_id, uint64_t run, uint64_t seq);
std::string state_prefix(const std::string& owner_id);

// Merge policy; returns [first, last) indices into `chunks` (oldest first), or nullopt:
//  * all chunks, once the newer chunks together are at least as large as the oldest one (a
//    load then reads at most about twice the consolidated state);
//  * else (size-tiered) the fan_in oldest chunks of the newest run of at least `fan_in`
//    consecutive chunks of equal level: at most fan_in - 1 chunks per level.
std::optional<std::pair<size_t, size_t>> pick_merge(const std::vector<ChunkRef>& chunks, size_t fan_in);

// Merges consecutive state chunks (oldest first) into one chunk; drops erases when
// `drop_erases` (the run starts at the owner's oldest chunk).
Result<std::string> merge_state_chunks(const std::vector<std::pair<std::string, std::string>>& chunks,
                                       bool drop_erases, uint64_t* records);
// Merges consecutive input-snapshot chunks into one: the rows' diffs summed per (key, row)
// (an inserted then deleted row disappears), each surviving row at the time of its last event;
// every advance-time record is kept (so replays keep the recorded times), with the offset
// bytes only on the last one. `max_time` receives the last time.
Result<std::string> merge_input_chunks(const std::vector<std::pair<std::string, std::string>>& chunks,
                                       uint64_t* records, uint64_t* max_time);

// A background thread running merge jobs one at a time. submit() and poll() never block on a
// running job; the destructor abandons queued jobs and waits for the running one. With the
// environment variable TIDEMARK_SYNC_COMPACTION set, submit() runs the job inline (tests).
class Merger {
 public:
  struct Job {
    std::string owner;                  // manifest owner id (source or state owner)
    std::vector<std::string> replaced;  // keys of the merged chunks, oldest first
    std::function<Result<ChunkRef>()> run;
  };
  struct Done {
    std::string owner;
    std::vector<std::string> replaced;
    Result<ChunkRef> result;
  };
  Merger();
  ~Merger();
  Merger(const Merger&) = delete;
  Merger& operator=(const Merger&) = delete;
  void submit(Job job);
  // Finished jobs since the last call.
  std::vector<Done> poll();
  bool has_done() const {
    std::lock_guard<std::mutex> l(mu_);
    return !done_.empty();
  }
  // Owners with a queued or running job, or a finished one whose result poll() has not returned.
  bool busy(const std::string& owner) const;
  // Blocks until no job is queued or running (tests and benchmarks only).
  void drain();

 private:
  void loop();
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  std::vector<Done> done_;
  std::vector<std::string> active_;  // owners queued, running or finished but not polled
  bool stop_ = false;
  bool running_ = false;
  // TIDEMARK_SYNC_COMPACTION set: submit() runs the job itself (tests of exact shapes only).
  bool sync_ = false;
  std::thread thread_;
};

}  // namespace tidemark::persistence
