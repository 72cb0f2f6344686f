// Read-only inspection and verification of a persistent storage, for the `tidemark` tool.
//
// Everything here uses only ObjectStore::get and ::list: inspecting or verifying never changes
// a stored byte, so it is safe on the storage of a running (or crashed) job.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "persistence/manifest.h"
#include "storage/lock.h"
#include "storage/object_store.h"

namespace tidemark::persistence {

// Opens STORAGE given as a path or file://path, without creating, locking or cleaning anything
// (open_filesystem_store would create the directory and delete stale temp files). Its put and
// remove fail. InvalidArgument when the directory does not exist; NotSupported for s3:// and
// other schemes this build cannot read.
Result<std::unique_ptr<storage::ObjectStore>> open_storage_read_only(const std::string& location);

struct SourceSummary {
  std::string id;
  std::string schema;
  uint64_t chunks = 0;
  uint64_t records = 0;
  uint64_t bytes = 0;
  // Times covered by the chunks: the first advance record of the first chunk, and the newest
  // chunk's max_time. min_time is unset without chunks or when the first chunk is unreadable.
  std::optional<uint64_t> min_time;
  uint64_t max_time = 0;
  uint64_t offset_bytes = 0;
};

struct OperatorSummary {
  std::string id, kind, label, signature;
  uint64_t chunks = 0;
  uint64_t records = 0;  // entry records (puts and erases) over all chunks
  uint64_t bytes = 0;
  uint32_t max_level = 0;
};

struct StorageSummary {
  std::string storage;  // ObjectStore::describe()
  std::optional<storage::LockHolderInfo> lock;
  std::string lock_error;  // set when a lock object exists but cannot be decoded
  std::optional<Manifest> manifest;  // the newest; unset for an empty storage
  std::string manifest_key;
  uint16_t manifest_chunk_version = 0;  // chunk format version of the newest manifest object
  std::vector<SourceSummary> sources;
  std::vector<OperatorSummary> operators;  // operator states and UDF caches
  uint64_t contents = 0;                    // archived file contents (operator persisting)
  uint64_t content_bytes = 0;
  std::vector<storage::ObjectInfo> older_manifests;  // deleted at the next start
  std::vector<storage::ObjectInfo> garbage;          // streams/ and operators/ objects no manifest lists
  std::vector<storage::ObjectInfo> other_objects;    // keys persistence does not own
  uint64_t objects = 0;
  uint64_t bytes = 0;
};

// Reads the listing, the lock object, the newest manifest and each source's first chunk.
// Fails when the storage cannot be listed or the newest manifest cannot be decoded (e.g. a
// newer format version: NotSupported "... upgrade Tidemark").
Result<StorageSummary> inspect_storage(storage::ObjectStore& store);

// An aligned, human-readable report; `now_ms` decides whether the lock's lease has expired.
std::string format_summary_text(const StorageSummary& s, int64_t now_ms);
// The same content as one JSON document (pretty-printed, ends with a newline).
std::string format_summary_json(const StorageSummary& s, int64_t now_ms);

struct VerifyProblem {
  std::string key;      // the damaged or missing object
  std::string message;  // says what is wrong and, for damage inside an object, at which byte
};

struct VerifyReport {
  uint64_t objects = 0;  // objects read
  uint64_t bytes = 0;    // bytes read
  std::vector<VerifyProblem> problems;
};

// Reads and fully decodes every object: the lock, every manifest, every chunk (CRCs, torn tails
// as damage, every input event record), and checks the newest manifest's chunk list against
// the store (existence, size, record count, last time). Fails only when the storage cannot be listed;
// damage is reported in VerifyReport::problems.
Result<VerifyReport> verify_storage(storage::ObjectStore& store);

// "2025-11-25T06:12:27.311Z"
std::string format_iso8601_ms(int64_t ms);
// "410 B", "12.3 KiB", "1.5 GiB"
std::string format_size(uint64_t bytes);

}  // namespace tidemark::persistence
