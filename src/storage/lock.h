// Storage fencing: at most one Tidemark process writes a persistent storage at a time, and a
// second one fails with a message saying who holds it. Format and protocol:
// docs/format/layout-lock.md.
//
// The lock is a lease on a lock object (key format::kLockObjectKey), written only with
// compare-and-swap (ObjectStore::put_if_version; put_if_absent for the first create), never
// deleted: renewal, takeover and release each replace the object only if it still has the
// version the writer last saw, so a renewal can never overwrite a successor's lock.
//
//   - Renewal runs on its own thread every lease/3, independent of commits, compaction and
//     uploads, each attempt bounded by a deadline. valid() is true while the last successful
//     renewal *started* less than lease - margin ago on this process's monotonic clock.
//   - A taker never compares wall clocks: a lock whose holder's liveness it cannot know is
//     stale only once the taker has seen the object unchanged for a whole lease on its own
//     monotonic clock (a live holder renews within lease/3). Since the holder's validity ends
//     lease - margin after a renewal that started before the taker first read it, the holder
//     has stopped trusting its lease before the taker can take it over.
//   - Fast paths: a released lock is free; a holder on this machine (same boot id and PID
//     namespace) whose process is gone, or whose PID now belongs to a process started at
//     another time, is dead; one whose process runs (not stopped) holds it, and a newcomer is
//     refused at once (a stopped holder is judged by its lease); on the filesystem the backend's local fence (flock(2), dropped by
//     the kernel when the holder dies) makes a second process fail at once, and a lock object
//     found while holding the fence is stale.
//
// TIDEMARK_LOCK_REMOTE_VIEW=1 (tests) makes a taker ignore what it knows of processes on its
// own machine, so it judges every holder by its lease as one on another machine must.
//
// Thread-safety: valid(), check() and info() may be called from any thread; renew() and
// release() are serialized internally.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "storage/object_store.h"

namespace tidemark::storage {

struct LockOptions {
  // How long the lock stays valid without a successful renewal.
  std::chrono::milliseconds lease_duration{60'000};
  // Renew from a background thread every lease/3 (false: only explicit renew(), for tests).
  bool renew_in_background = true;
  // Progress messages while waiting to see whether a found lock is still renewed.
  std::function<void(const std::string&)> log;
};

// The contents of a lock object.
struct LockHolderInfo {
  std::string holder;  // free text, e.g. "tidemark pid 1234 (wordcount)"
  int64_t pid = 0;
  std::string host;
  std::string boot_id;       // /proc/sys/kernel/random/boot_id of the holder's machine
  uint64_t pid_namespace = 0;  // inode of /proc/self/ns/pid (0: unknown)
  uint64_t process_start = 0;  // start time of the process in clock ticks since boot (0: unknown)
  int64_t started_at_ms = 0;        // Unix epoch milliseconds (informational)
  int64_t lease_expires_at_ms = 0;  // holder's wall clock + lease at the last renewal (informational)
  int64_t lease_ms = 0;             // the lease a taker must observe the object unchanged for
  uint64_t renewals = 0;            // increments at every renewal
  bool released = false;            // the holder stopped: the lock is free
  std::string token;                // random, unique per acquisition
};

// This process's identity as written into lock objects (holder text and times left empty).
LockHolderInfo this_process_identity();

// An acquired storage lock. Move-only; releases in release() or the destructor.
// The ObjectStore must outlive the lock.
class StorageLock {
 public:
  StorageLock(StorageLock&& other) noexcept;
  StorageLock& operator=(StorageLock&& other) noexcept;
  StorageLock(const StorageLock&) = delete;
  StorageLock& operator=(const StorageLock&) = delete;
  ~StorageLock();  // release(), ignoring its error

  // One renewal now (the background thread calls this). FailedPrecondition if the lock was
  // lost (another process wrote the object): stop writing. IoError on a transient failure (the
  // lease stays valid until it runs out).
  Status renew();
  // Whether this process may still act as the holder: not lost, not released, and the last
  // successful renewal started less than lease - margin ago (monotonic clock).
  bool valid() const;
  // OK when valid(); else FailedPrecondition saying why (lost to whom, or how long since the
  // last successful renewal and the last renewal error).
  Status check() const;
  // Marks the object released (compare-and-swap) and drops the fence. Idempotent.
  // FailedPrecondition if another process had taken the lock over (its object is left alone).
  Status release();

  bool held() const;
  LockHolderInfo info() const;
  std::chrono::milliseconds lease() const;

  struct State;

 private:
  friend Result<StorageLock> acquire_storage_lock(ObjectStore&, std::string, LockOptions);
  explicit StorageLock(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

// Acquires the lock on `store`. A lock object whose holder is dead, released or (observed)
// not renewed for a whole lease is taken over. FailedPrecondition if another live process
// holds it: "persistent storage <describe()> is in use by pid P on host H since T (holder:
// ...)". May wait up to one lease of the found lock (reported through options.log) when it
// cannot otherwise tell whether the holder lives. Other errors are the store's, with context.
Result<StorageLock> acquire_storage_lock(ObjectStore& store, std::string holder_description,
                                         LockOptions options = {});

// Serialization of the lock object, exposed for tests and tools.
std::string encode_lock_info(const LockHolderInfo& info);
// Corruption if `json` is not a valid lock object; NotSupported for a newer version.
Result<LockHolderInfo> decode_lock_info(std::string_view json);

}  // namespace tidemark::storage
