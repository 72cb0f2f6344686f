#include "storage/lock.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>
#include <nlohmann/json.hpp>
#include <random>

#include "storage/format_constants.h"

namespace tidemark::storage {
namespace {

constexpr int kMaxTakeoverAttempts = 3;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string host_name() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown-host";
  return buf;
}

std::string random_token() {
  std::random_device rd;
  uint64_t v = (static_cast<uint64_t>(rd()) << 32) | rd();
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string format_utc(int64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool process_is_dead(int64_t pid) { return pid > 0 && pid <= INT_MAX && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH; }

Status in_use(const ObjectStore& store, const LockHolderInfo& other) {
  return Status::failed_precondition("persistent storage " + store.describe() + " is in use by pid " +
                                     std::to_string(other.pid) + " on host " + other.host + " since " +
                                     format_utc(other.started_at_ms) + " (holder: " + other.holder +
                                     "); stop that process or wait for its lease to expire at " +
                                     format_utc(other.lease_expires_at_ms));
}

// The message for a busy fence: name the holder if its lock object says who it is.
Status fence_busy(ObjectStore& store, const Status& fence_status) {
  Result<std::string> existing = store.get(format::kLockObjectKey);
  if (!existing.is_ok()) return fence_status;
  Result<LockHolderInfo> other = decode_lock_info(*existing);
  if (!other.is_ok()) return fence_status;
  return in_use(store, *other);
}

// Reads the lock object and checks it is ours.
Status verify_ours(ObjectStore& store, const LockHolderInfo& mine) {
  Result<std::string> current = store.get(format::kLockObjectKey);
  if (!current.is_ok()) {
    if (current.status().code() == StatusCode::kNotFound) {
      return Status::failed_precondition("lost the lock on persistent storage " + store.describe() +
                                         ": its lock object was removed");
    }
    return current.status().with_context("reading the lock of " + store.describe());
  }
  Result<LockHolderInfo> holder = decode_lock_info(*current);
  if (holder.is_ok() && holder->token == mine.token) return Status::ok();
  std::string who = holder.is_ok() ? "pid " + std::to_string(holder->pid) + " on host " + holder->host
                                   : "an unreadable lock object";
  return Status::failed_precondition("lost the lock on persistent storage " + store.describe() +
                                     ": it is now held by " + who);
}

}  // namespace

std::string encode_lock_info(const LockHolderInfo& info) {
  nlohmann::json j = {
      {"version", format::kLockFormatVersion},
      {"holder", info.holder},
      {"pid", info.pid},
      {"host", info.host},
      {"started_at_ms", info.started_at_ms},
      {"lease_expires_at_ms", info.lease_expires_at_ms},
      {"token", info.token},
  };
  return j.dump();
}

Result<LockHolderInfo> decode_lock_info(std::string_view json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& why) {
    return Status::corruption("invalid lock object: " + why + ": " + std::string(json.substr(0, 200)));
  };
  if (!j.is_object()) return bad("not a JSON object");
  auto integer = [&](const char* name, int64_t& out) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_number_integer()) return false;
    out = it->get<int64_t>();
    return true;
  };
  auto text = [&](const char* name, std::string& out) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_string()) return false;
    out = it->get<std::string>();
    return true;
  };
  int64_t version = 0;
  LockHolderInfo info;
  if (!integer("version", version)) return bad("missing 'version'");
  if (version > format::kLockFormatVersion) {
    return Status::not_supported("lock object has format version " + std::to_string(version) +
                                 ", this build reads up to " + std::to_string(format::kLockFormatVersion) +
                                 "; upgrade Tidemark");
  }
  if (!text("holder", info.holder) || !integer("pid", info.pid) || !text("host", info.host) ||
      !integer("started_at_ms", info.started_at_ms) || !integer("lease_expires_at_ms", info.lease_expires_at_ms) ||
      !text("token", info.token)) {
    return bad("missing or mistyped field");
  }
  return info;
}

StorageLock::StorageLock(ObjectStore& store, LockHolderInfo info, LockOptions options,
                         std::unique_ptr<LocalFence> fence)
    : store_(&store), info_(std::move(info)), options_(options), fence_(std::move(fence)) {}

StorageLock::StorageLock(StorageLock&& other) noexcept
    : store_(std::exchange(other.store_, nullptr)),
      info_(std::move(other.info_)),
      options_(other.options_),
      fence_(std::move(other.fence_)) {}

StorageLock& StorageLock::operator=(StorageLock&& other) noexcept {
  if (this != &other) {
    (void)release();
    store_ = std::exchange(other.store_, nullptr);
    info_ = std::move(other.info_);
    options_ = other.options_;
    fence_ = std::move(other.fence_);
  }
  return *this;
}

StorageLock::~StorageLock() { (void)release(); }

Status StorageLock::renew() {
  if (store_ == nullptr) return Status::failed_precondition("renew() on a released storage lock");
  TM_RETURN_IF_ERROR(verify_ours(*store_, info_));
  LockHolderInfo renewed = info_;
  renewed.lease_expires_at_ms = now_ms() + options_.lease_duration.count();
  Status st = store_->put(format::kLockObjectKey, encode_lock_info(renewed));
  if (!st.is_ok()) return st.with_context("renewing the lock of " + store_->describe());
  info_ = std::move(renewed);
  return Status::ok();
}

Status StorageLock::release() {
  if (store_ == nullptr) return Status::ok();
  ObjectStore& store = *std::exchange(store_, nullptr);
  Status st = verify_ours(store, info_);
  if (st.is_ok()) {
    st = store.remove(format::kLockObjectKey);
    if (!st.is_ok()) st = st.with_context("releasing the lock of " + store.describe());
  }
  fence_.reset();  // after removing the object, so no one takes over a half-released lock
  return st;
}

Result<StorageLock> acquire_storage_lock(ObjectStore& store, std::string holder_description, LockOptions options) {
  Result<std::unique_ptr<LocalFence>> fence = store.acquire_local_fence();
  if (!fence.is_ok()) {
    if (fence.status().code() == StatusCode::kFailedPrecondition) return fence_busy(store, fence.status());
    return fence.status().with_context("locking " + store.describe());
  }
  const bool fenced = *fence != nullptr;

  LockHolderInfo mine;
  mine.holder = std::move(holder_description);
  mine.pid = ::getpid();
  mine.host = host_name();
  mine.started_at_ms = now_ms();
  mine.lease_expires_at_ms = mine.started_at_ms + options.lease_duration.count();
  mine.token = random_token();
  const std::string encoded = encode_lock_info(mine);

  for (int attempt = 0; attempt < kMaxTakeoverAttempts; ++attempt) {
    Status created = store.put_if_absent(format::kLockObjectKey, encoded);
    if (created.is_ok()) return StorageLock(store, std::move(mine), options, std::move(fence).value());
    if (created.code() != StatusCode::kAlreadyExists) return created.with_context("locking " + store.describe());

    Result<std::string> existing = store.get(format::kLockObjectKey);
    if (!existing.is_ok()) {
      if (existing.status().code() == StatusCode::kNotFound) continue;  // released meanwhile
      return existing.status().with_context("reading the lock of " + store.describe());
    }
    Result<LockHolderInfo> other = decode_lock_info(*existing);
    if (other.is_ok()) {
      bool same_host = other->host == mine.host;
      bool stale = now_ms() > other->lease_expires_at_ms || (same_host && (fenced || process_is_dead(other->pid)));
      if (!stale) return in_use(store, *other);
    } else if (!fenced) {
      return Status::failed_precondition("persistent storage " + store.describe() + " has an unreadable lock object '" +
                                         std::string(format::kLockObjectKey) + "' (" + other.status().message() +
                                         "); if no other process uses this storage, remove that object");
    }
    TM_RETURN_IF_ERROR(store.remove(format::kLockObjectKey).with_context("taking over the stale lock of " +
                                                                         store.describe()));
  }
  return Status::failed_precondition("persistent storage " + store.describe() +
                                     " is being locked by other processes at the same time; retry");
}

}  // namespace tidemark::storage
