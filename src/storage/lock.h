// Storage fencing: at most one Tidemark process uses a persistent storage at a time, and a
// second one fails with a message saying who holds it. Format and protocol:
// docs/format/layout-lock.md.
//
// Two mechanisms, combined:
//   - a lock object (key format::kLockObjectKey) created with put_if_absent, holding JSON
//     {version, holder, pid, host, started_at_ms, lease_expires_at_ms, token}. The holder
//     extends the lease with renew(). Works on every backend, including S3 and Azure.
//     A lock object is stale, and is taken over, when its lease has expired or when it names a
//     process on this host that no longer exists;
//   - the backend's local fence (ObjectStore::acquire_local_fence; flock(2) on the filesystem),
//     which the kernel drops when the holder dies. While this process holds the fence, a lock
//     object written from this host is stale by definition (it survived a crash), even if its
//     pid has been reused by an unrelated process.
//
// Limitation: object stores have no compare-and-delete in the ObjectStore interface, so two
// processes taking over the same stale lock at the same instant can both succeed; each
// renew() re-reads the object and fails if another process's token is there. The filesystem
// backend is immune (the fence serializes takeovers).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "storage/object_store.h"

namespace tidemark::storage {

struct LockOptions {
  // How long the lock stays valid without renew(). Choose it longer than the commit interval.
  std::chrono::milliseconds lease_duration{60'000};
};

// The contents of a lock object.
struct LockHolderInfo {
  std::string holder;  // free text, e.g. "tidemark pipeline 'clicks'"
  int64_t pid = 0;
  std::string host;
  int64_t started_at_ms = 0;        // Unix epoch milliseconds
  int64_t lease_expires_at_ms = 0;  // Unix epoch milliseconds
  std::string token;                // random, unique per acquisition
};

// An acquired storage lock. Move-only. Releases the lock (removes the lock object and drops
// the fence) in release() or the destructor. The ObjectStore must outlive the lock.
// Not thread-safe: use from one thread, or serialize calls.
class StorageLock {
 public:
  StorageLock(StorageLock&& other) noexcept;
  StorageLock& operator=(StorageLock&& other) noexcept;
  StorageLock(const StorageLock&) = delete;
  StorageLock& operator=(const StorageLock&) = delete;
  ~StorageLock();  // release(), ignoring its error

  // Extends the lease to now + lease_duration. Callers renew at each commit. FailedPrecondition
  // if the lock object is gone or names another holder (the lock was lost: stop writing).
  Status renew();
  // Removes the lock object if it is still ours and drops the fence. Idempotent.
  // FailedPrecondition if another process had taken the lock over (its object is left alone).
  Status release();

  bool held() const { return store_ != nullptr; }
  const LockHolderInfo& info() const { return info_; }

 private:
  friend Result<StorageLock> acquire_storage_lock(ObjectStore&, std::string, LockOptions);
  StorageLock(ObjectStore& store, LockHolderInfo info, LockOptions options, std::unique_ptr<LocalFence> fence);

  ObjectStore* store_;  // nullptr once released or moved from
  LockHolderInfo info_;
  LockOptions options_;
  std::unique_ptr<LocalFence> fence_;
};

// Acquires the lock on `store`, taking over a stale one. FailedPrecondition if another live
// process holds it: "persistent storage <describe()> is in use by pid P on host H since T
// (holder: ...); stop that process or wait for its lease to expire at T2". Other errors are the
// store's, with context.
Result<StorageLock> acquire_storage_lock(ObjectStore& store, std::string holder_description,
                                         LockOptions options = {});

// Serialization of the lock object, exposed for tests and tools.
std::string encode_lock_info(const LockHolderInfo& info);
// Corruption if `json` is not a valid lock object.
Result<LockHolderInfo> decode_lock_info(std::string_view json);

}  // namespace tidemark::storage
