// The object-store interface: the only storage abstraction persistence uses.
//
// Modelled on what S3, Azure Blob and GCS all offer: whole-object get/put, conditional create,
// prefix listing and delete. There is deliberately no rename and no append, so a backend for
// any object store can implement it without emulation. Every persisted byte goes through here.
//
// Keys are '/'-separated relative paths ("snapshots/w0/chunk-000017"). A valid key:
//   - is non-empty and at most kMaxObjectKeyLength bytes, contains no NUL byte;
//   - has no leading or trailing '/', and no empty segment ("a//b");
//   - has no segment "." or "..", and no segment starting with '.' (that namespace is reserved
//     for backend bookkeeping such as temporary files and lock files).
// A key must not also be used as a folder of another key ("a" and "a/b"): object stores allow
// it, the filesystem backend does not (it reports IoError). Operations given an invalid key
// return InvalidArgument naming the key.
//
// Thread-safety: every implementation in this folder is safe to call from several threads at
// once. Durability: a put/put_if_absent that returns OK survives a process crash and, for the
// filesystem backend, a power loss.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tidemark/status.h"

namespace tidemark::storage {

inline constexpr size_t kMaxObjectKeyLength = 1024;

// How long one store call may take, retries included: a call that cannot finish by then
// fails with IoError instead of retrying further. Default: the store's own retry policy.
struct Deadline {
  std::chrono::steady_clock::time_point at = std::chrono::steady_clock::time_point::max();
  static Deadline in(std::chrono::milliseconds d) { return {std::chrono::steady_clock::now() + d}; }
  bool is_set() const { return at != std::chrono::steady_clock::time_point::max(); }
};

// An object's bytes and its version: an opaque token that changes whenever the object is
// written (S3 and Azure: the ETag; filesystem and memory: a digest of the bytes).
struct VersionedObject {
  std::string data;
  std::string version;
};

struct ObjectInfo {
  std::string key;
  uint64_t size = 0;
  bool operator==(const ObjectInfo&) const = default;
};

// An exclusive hold on a storage location that the operating system releases when the holding
// process dies (e.g. flock(2) on the filesystem). Released when destroyed. See lock.h.
class LocalFence {
 public:
  virtual ~LocalFence() = default;
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;

  // The object's bytes. NotFound (naming the key and store) when the object does not exist.
  virtual Result<std::string> get(std::string_view key) = 0;

  // Creates or replaces the object. Atomic: a concurrent or later get sees either the old or
  // the new bytes, never a mix. Durable once it returns OK.
  virtual Status put(std::string_view key, std::string_view data) = 0;

  // Creates the object only if no object has this key; AlreadyExists if it exists with other
  // bytes. Idempotent: OK if it already holds exactly `data` — a create whose answer was lost
  // (a retry, or the HTTP library's silent resend on a dead reused connection) then reads as
  // the success it was. Atomic with respect to concurrent put_if_absent calls from any process:
  // of writers with different bytes exactly one wins.
  virtual Status put_if_absent(std::string_view key, std::string_view data) = 0;

  // All objects whose key starts with `prefix` (plain string prefix: "a/b" matches "a/bc"),
  // sorted by key. `prefix` may be empty (everything) or end with '/'; it must not contain a
  // ".." or '.'-prefixed segment.
  virtual Result<std::vector<ObjectInfo>> list(std::string_view prefix) = 0;

  // Deletes the object. OK if it does not exist.
  virtual Status remove(std::string_view key) = 0;

  // Compare-and-swap, the primitive of the storage lock (lock.h). Implementations must offer
  // both or neither (the defaults return NotSupported).
  //
  // get_versioned: the object's bytes and version; NotFound when absent.
  virtual Result<VersionedObject> get_versioned(std::string_view key, Deadline deadline = {});
  // Replaces the object only if its current version is `expected_version`, atomically with
  // respect to every other conditional write (S3/Azure: If-Match; filesystem: one critical
  // section under flock(2)). Returns the new version. Aborted when the object changed or is
  // gone; idempotent like put_if_absent (OK when the object already holds exactly `data`
  // because our own earlier attempt landed). IoError when `deadline` passes.
  virtual Result<std::string> put_if_version(std::string_view key, std::string_view data,
                                             std::string_view expected_version, Deadline deadline = {});

  // Worst-case duration of one small call (a lock object) with every retry, or 0 when calls
  // are local. The lock lease must comfortably exceed it (persistence::Config::lock_lease_ms).
  virtual std::chrono::milliseconds retry_budget() const { return std::chrono::milliseconds(0); }

  // For messages: "filesystem:/var/lib/tidemark", "memory", "s3://bucket/prefix".
  virtual std::string describe() const = 0;

  // Acquires this backend's local fence, if it has one: nullptr when the backend has none
  // (memory, object stores), FailedPrecondition when another holder has it. Used by
  // acquire_storage_lock; not an alternative to it.
  virtual Result<std::unique_ptr<LocalFence>> acquire_local_fence() {
    return std::unique_ptr<LocalFence>();
  }
};

// InvalidArgument naming the key if `key` breaks the rules above.
Status validate_object_key(std::string_view key);
// Proves that `store` refuses a second conditional create of one key (put_if_absent with
// other bytes) and a conditional write against a wrong version, using a scratch key under
// "probes/" that it removes again. FailedPrecondition naming the store (and so the endpoint)
// when the store accepts either: an S3-compatible server that ignores If-None-Match or
// If-Match cannot hold a lock. Stores without a network (retry_budget() == 0) are trusted.
Status check_conditional_writes(ObjectStore& store);

// The version local stores give an object: a 128-bit digest of its bytes, as hex.
std::string content_version(std::string_view data);
// InvalidArgument if `prefix` is not a valid list() prefix.
Status validate_list_prefix(std::string_view prefix);

// Opens (creating it and its parents if missing) a store rooted at the directory `root`.
// Fails with a message naming the path if `root` exists and is not a directory or cannot be
// written. Removes temporary files left by crashed writers (processes no longer alive).
Result<std::unique_ptr<ObjectStore>> open_filesystem_store(const std::string& root);

// A fresh, empty, thread-safe in-memory store. Nothing survives the object.
std::unique_ptr<ObjectStore> make_memory_store();

}  // namespace tidemark::storage
