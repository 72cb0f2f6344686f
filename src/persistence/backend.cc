// persistence::Backend and Config: factories, names of the enums, configuration from the
// environment.
#include <cstdlib>

#include "persistence/manifest.h"
#include "storage/azure_store.h"
#include "storage/object_store.h"
#include "storage/s3_store.h"
#include "tidemark/persistence.h"

namespace tidemark::persistence {

Result<AwsS3Settings> AwsS3Settings::from_url(const std::string& url, std::string* root_path) {
  TM_ASSIGN_OR_RETURN(auto parts, storage::parse_s3_url(url));
  AwsS3Settings s;
  s.bucket_name = parts.first;
  if (root_path) *root_path = parts.second;
  return s;
}

Backend Backend::filesystem(std::string path) {
  Backend b;
  b.kind_ = Kind::kFilesystem;
  b.path_ = std::move(path);
  return b;
}

Backend Backend::memory() {
  Backend b;
  b.kind_ = Kind::kMemory;
  b.shared_ = storage::make_memory_store();
  return b;
}

Backend Backend::mock(std::map<std::string, std::vector<SnapshotEvent>> events) {
  Backend b;
  b.kind_ = Kind::kMock;
  b.shared_ = storage::make_memory_store();
  Status st = write_mock_state(*b.shared_, events);
  if (!st.is_ok()) throw std::invalid_argument("Backend::mock: " + st.message());
  return b;
}

Backend Backend::s3(std::string root_path, AwsS3Settings bucket_settings) {
  Backend b;
  b.kind_ = Kind::kS3;
  b.path_ = std::move(root_path);
  b.s3_ = std::move(bucket_settings);
  return b;
}

Backend Backend::azure(std::string root_path, std::string account, std::string password, std::string container,
                       std::string endpoint) {
  Backend b;
  b.kind_ = Kind::kAzure;
  b.path_ = std::move(root_path);
  b.azure_account_ = std::move(account);
  b.azure_password_ = std::move(password);
  b.azure_container_ = std::move(container);
  b.azure_endpoint_ = std::move(endpoint);
  return b;
}

Backend Backend::custom(std::shared_ptr<storage::ObjectStore> store) {
  Backend b;
  b.kind_ = Kind::kCustom;
  b.shared_ = std::move(store);
  return b;
}

std::string Backend::describe() const {
  switch (kind_) {
    case Kind::kFilesystem: return "filesystem:" + path_;
    case Kind::kMemory: return "memory";
    case Kind::kMock: return "mock";
    case Kind::kCustom: return shared_->describe();
    case Kind::kS3: return "s3://" + s3_.bucket_name + "/" + path_;
    case Kind::kAzure: return "azure://" + azure_container_ + "/" + path_;
  }
  return "?";
}

Result<std::shared_ptr<storage::ObjectStore>> Backend::open() const {
  switch (kind_) {
    case Kind::kFilesystem: {
      TM_ASSIGN_OR_RETURN(auto store, storage::open_filesystem_store(path_));
      return std::shared_ptr<storage::ObjectStore>(std::move(store));
    }
    case Kind::kMemory:
    case Kind::kMock:
    case Kind::kCustom:
      return shared_;
    case Kind::kAzure: {
      storage::AzureOptions o;
      o.endpoint = azure_endpoint_;
      o.account = azure_account_;
      o.key = azure_password_;
      o.container = azure_container_;
      o.prefix = path_;
      TM_ASSIGN_OR_RETURN(auto store, storage::open_azure_store(o));
      return std::shared_ptr<storage::ObjectStore>(std::move(store));
    }
    case Kind::kS3: {
      TM_ASSIGN_OR_RETURN(storage::S3Options o, storage::s3_options_from_settings(s3_, path_));
      TM_ASSIGN_OR_RETURN(auto store, storage::open_s3_store(o));
      return std::shared_ptr<storage::ObjectStore>(std::move(store));
    }
  }
  return Status::internal("unknown backend kind");
}

namespace {
const std::pair<SnapshotAccess, const char*> kAccessNames[] = {
    {SnapshotAccess::kFull, "full"},
    {SnapshotAccess::kRecord, "record"},
    {SnapshotAccess::kReplay, "replay"},
    {SnapshotAccess::kOffsetsOnly, "offsets_only"},
    {SnapshotAccess::kOfflineReplay, "offline_replay"},
};
const std::pair<PersistenceMode, const char*> kModeNames[] = {
    {PersistenceMode::kBatch, "batch"},
    {PersistenceMode::kSpeedrunReplay, "speedrun_replay"},
    {PersistenceMode::kRealtimeReplay, "realtime_replay"},
    {PersistenceMode::kPersisting, "persisting"},
    {PersistenceMode::kSelectivePersisting, "selective_persisting"},
    {PersistenceMode::kUdfCaching, "udf_caching"},
    {PersistenceMode::kOperatorPersisting, "operator_persisting"},
};
}  // namespace

std::string to_string(SnapshotAccess a) {
  for (const auto& [v, n] : kAccessNames)
    if (v == a) return n;
  return "?";
}
std::string to_string(PersistenceMode m) {
  for (const auto& [v, n] : kModeNames)
    if (v == m) return n;
  return "?";
}

Result<SnapshotAccess> parse_snapshot_access(const std::string& s) {
  std::string all;
  for (const auto& [v, n] : kAccessNames) {
    if (s == n) return v;
    all += std::string(all.empty() ? "" : ", ") + n;
  }
  return Status::invalid_argument("unknown snapshot access '" + s + "' (expected one of: " + all + ")");
}

Result<PersistenceMode> parse_persistence_mode(const std::string& s) {
  if (s == "speedrun") return PersistenceMode::kSpeedrunReplay;
  if (s == "realtime") return PersistenceMode::kRealtimeReplay;
  std::string all;
  for (const auto& [v, n] : kModeNames) {
    if (s == n) return v;
    all += std::string(all.empty() ? "" : ", ") + n;
  }
  return Status::invalid_argument("unknown persistence mode '" + s + "' (expected one of: " + all + ")");
}

Config Config::simple_config(Backend backend, uint64_t snapshot_interval_ms, SnapshotAccess snapshot_access,
                             PersistenceMode persistence_mode, bool continue_after_replay) {
  Config c{backend, backend};
  c.snapshot_interval_ms = snapshot_interval_ms;
  c.snapshot_access = snapshot_access;
  c.persistence_mode = persistence_mode;
  c.continue_after_replay = continue_after_replay;
  return c;
}

Result<std::optional<Config>> Config::from_env() {
  const char* storage = std::getenv("TIDEMARK_REPLAY_STORAGE");
  if (!storage || !*storage) return std::optional<Config>();
  Config c = simple_config(Backend::filesystem(storage));
  // Recording/replaying an unchanged program: the reference defaults to batch replay.
  c.persistence_mode = PersistenceMode::kBatch;
  if (const char* a = std::getenv("TIDEMARK_SNAPSHOT_ACCESS"); a && *a) {
    auto r = parse_snapshot_access(a);
    if (!r.is_ok()) return r.status().with_context("TIDEMARK_SNAPSHOT_ACCESS");
    c.snapshot_access = *r;
  }
  if (const char* m = std::getenv("TIDEMARK_PERSISTENCE_MODE"); m && *m) {
    auto r = parse_persistence_mode(m);
    if (!r.is_ok()) return r.status().with_context("TIDEMARK_PERSISTENCE_MODE");
    c.persistence_mode = *r;
  }
  if (const char* v = std::getenv("TIDEMARK_CONTINUE_AFTER_REPLAY"); v && *v) {
    std::string s = v;
    if (s == "true" || s == "1") c.continue_after_replay = true;
    else if (s == "false" || s == "0") c.continue_after_replay = false;
    else
      return Status::invalid_argument("TIDEMARK_CONTINUE_AFTER_REPLAY: expected true or false, got '" + s + "'");
  }
  return std::optional<Config>(std::move(c));
}

}  // namespace tidemark::persistence
