// Persistence configuration: where state is kept and how a run resumes or replays.
// Names follow the reference's pw.persistence module (Backend, Config, simple_config, ...).
//
//   auto cfg = persistence::Config::simple_config(persistence::Backend::filesystem("./state"),
//                                                 /*snapshot_interval_ms=*/1000);
//   run(graph, {.persistence_config = cfg});
//
// Semantics (docs/persistence.md has the full story):
//  * Every input connector, deduplicate and output connector with a `name` is tied to its
//    stored state by that name. In Persisting mode unnamed connectors get ids derived from
//    what they read or write (path, format); in SelectivePersisting only named ones persist.
//  * A commit happens every snapshot_interval_ms (0 = after every logical time): input events
//    up to the committed time, then output files are made durable, then a manifest is written
//    last (the commit point).
//  * A restart resumes from the newest commit: input is replayed to rebuild state without being
//    re-emitted, sources continue after their stored offsets, output files are cut back to
//    their committed length — so the output is exactly-once across crashes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tidemark/status.h"
#include "tidemark/value.h"

namespace tidemark::storage {
class ObjectStore;
}

namespace tidemark::persistence {

// S3 connection settings; unset fields come from the AWS_* environment variables.
struct AwsS3Settings {
  std::string bucket_name;
  std::string access_key;
  std::string secret_access_key;
  bool with_path_style = false;
  std::string region;
  std::string endpoint;
  std::string session_token;

  // From "s3://bucket/prefix": the bucket; the prefix is returned through `root_path` (may be
  // null). InvalidArgument naming the URL when it is not of that form.
  static Result<AwsS3Settings> from_url(const std::string& url, std::string* root_path = nullptr);
};

// A recorded input event, for Backend::mock.
struct SnapshotEvent {
  enum class Kind { kInsert, kDelete, kAdvanceTime, kFinished };
  Kind kind = Kind::kInsert;
  Key key;
  Row values;
  uint64_t time = 0;     // kAdvanceTime
  std::string offset;    // kAdvanceTime: the source's offset bytes at that time
  static SnapshotEvent insert(Key k, Row v) { return {Kind::kInsert, k, std::move(v), 0, {}}; }
  static SnapshotEvent remove(Key k, Row v) { return {Kind::kDelete, k, std::move(v), 0, {}}; }
  static SnapshotEvent advance_time(uint64_t t, std::string offset = {}) {
    return {Kind::kAdvanceTime, {}, {}, t, std::move(offset)};
  }
  static SnapshotEvent finished() { return {Kind::kFinished, {}, {}, 0, {}}; }
};

class Backend {
 public:
  enum class Kind { kFilesystem, kMemory, kMock, kS3, kAzure, kCustom };

  // Root directory on the local filesystem (created if missing).
  static Backend filesystem(std::string path);
  // In-process storage for tests: copies of this Backend share one store, so several runs in
  // one process see each other's state.
  static Backend memory();
  // In-memory storage preloaded with recorded events per source name (as in the reference).
  static Backend mock(std::map<std::string, std::vector<SnapshotEvent>> events);
  static Backend s3(std::string root_path, AwsS3Settings bucket_settings);
  // Azure Blob Storage. `endpoint` defaults to https://<account>.blob.core.windows.net
  // (give e.g. http://127.0.0.1:10000/devstoreaccount1 for the Azurite emulator).
  static Backend azure(std::string root_path, std::string account, std::string password, std::string container,
                       std::string endpoint = "");
  // Any ObjectStore implementation (tests wrap stores to inject faults).
  static Backend custom(std::shared_ptr<storage::ObjectStore> store);

  Kind kind() const { return kind_; }
  const std::string& path() const { return path_; }
  // Opens the store (creating directories as needed). Errors name the location.
  Result<std::shared_ptr<storage::ObjectStore>> open() const;
  std::string describe() const;

 private:
  Kind kind_ = Kind::kMemory;
  std::string path_;
  AwsS3Settings s3_;
  std::string azure_account_, azure_password_, azure_container_, azure_endpoint_;
  std::shared_ptr<storage::ObjectStore> shared_;  // memory and mock
};

enum class SnapshotAccess { kFull, kRecord, kReplay, kOffsetsOnly, kOfflineReplay };
// What a run does with the storage (docs/persistence.md has the full semantics):
enum class PersistenceMode {
  kBatch,                // replay every recorded row in one new time; outputs emitted
  kSpeedrunReplay,       // replay at the recorded times, as fast as possible; outputs emitted
  kRealtimeReplay,       // replay at the recorded times with their original pacing
  kPersisting,           // resume: recorded rows rebuild state without being re-emitted
  kSelectivePersisting,  // as kPersisting, for named connectors only
  kUdfCaching,           // named sources resume from offsets; UdfCache results persist
  kOperatorPersisting,   // sources resume from offsets; operators load their stored state
};

// snake_case names ("offsets_only", "speedrun_replay") for flags, env vars and messages.
std::string to_string(SnapshotAccess a);
std::string to_string(PersistenceMode m);
Result<SnapshotAccess> parse_snapshot_access(const std::string& s);
Result<PersistenceMode> parse_persistence_mode(const std::string& s);

struct Config {
  Backend metadata_storage;
  Backend snapshot_storage;
  uint64_t snapshot_interval_ms = 0;
  SnapshotAccess snapshot_access = SnapshotAccess::kFull;
  PersistenceMode persistence_mode = PersistenceMode::kPersisting;
  bool continue_after_replay = true;
  // The storage lock's lease (docs/format/layout-lock.md): renewed every lease/3 from its own
  // thread; a commit is refused once the last renewal is older than 4/5 of it; another process
  // takes a crashed holder's storage over after watching its lock unchanged for a whole lease.
  // At least 1000 ms.
  uint64_t lock_lease_ms = 60'000;

  static Config simple_config(Backend backend, uint64_t snapshot_interval_ms = 0,
                              SnapshotAccess snapshot_access = SnapshotAccess::kFull,
                              PersistenceMode persistence_mode = PersistenceMode::kPersisting,
                              bool continue_after_replay = true);

  // From TIDEMARK_REPLAY_STORAGE (filesystem path; unset = nullopt), TIDEMARK_SNAPSHOT_ACCESS
  // (record|replay|full|offsets_only|offline_replay), TIDEMARK_PERSISTENCE_MODE
  // (batch|speedrun_replay|realtime_replay|persisting|...; "speedrun" is accepted) and
  // TIDEMARK_CONTINUE_AFTER_REPLAY (true|false). Bad values are an error naming the variable.
  static Result<std::optional<Config>> from_env();
};

}  // namespace tidemark::persistence
