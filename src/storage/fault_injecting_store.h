// A test and benchmark wrapper around any ObjectStore: counts calls and bytes, and injects
// faults (fail the Nth write, "crash" so every later call fails, disk full, corrupt a byte).
//
// Faults are checked before the inner store is called, so a failed write leaves nothing behind,
// as an atomic put would. Thread-safe; counters are exact under concurrency.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "storage/object_store.h"

namespace tidemark::storage {

struct StoreCounters {
  uint64_t gets = 0;
  uint64_t puts = 0;            // put calls, including failed ones
  uint64_t put_if_absents = 0;  // put_if_absent calls, including failed ones
  uint64_t lists = 0;
  uint64_t removes = 0;
  uint64_t bytes_written = 0;   // payload bytes of successful put / put_if_absent
  uint64_t bytes_read = 0;      // payload bytes of successful get
};

class FaultInjectingStore final : public ObjectStore {
 public:
  // Takes ownership of `inner`.
  explicit FaultInjectingStore(std::unique_ptr<ObjectStore> inner);

  Result<std::string> get(std::string_view key) override;
  Status put(std::string_view key, std::string_view data) override;
  Status put_if_absent(std::string_view key, std::string_view data) override;
  // Conditional writes (the lock) obey crashes but are not counted as writes by
  // fail_nth_write / crash_after_writes: the lock is renewed from its own thread, and counted
  // writes must stay deterministic for tests that fail the Nth write of a commit.
  Result<VersionedObject> get_versioned(std::string_view key, Deadline deadline) override;
  Result<std::string> put_if_version(std::string_view key, std::string_view data, std::string_view expected,
                                     Deadline deadline) override;
  std::chrono::milliseconds retry_budget() const override { return inner_->retry_budget(); }
  Result<std::vector<ObjectInfo>> list(std::string_view prefix) override;
  Status remove(std::string_view key) override;
  std::string describe() const override;  // "faulty(<inner>)"
  Result<std::unique_ptr<LocalFence>> acquire_local_fence() override;

  // The `n`-th write (put or put_if_absent) from now, counting from 1, fails with
  // IoError "injected fault"; later writes succeed. n == 0 disarms.
  void fail_nth_write(uint64_t n);
  // After `n` more successful writes, the store "crashes": every operation fails with
  // IoError "injected crash" until recover(). n == 0 crashes now.
  void crash_after_writes(uint64_t n);
  // Clears the crash, as a restarted process would see the store again.
  void recover();
  bool crashed() const;
  // While on, every write fails with IoError naming the key and ENOSPC.
  void set_no_space(bool on);
  // Flips every bit of the byte at `offset` of the stored object `key`, bypassing faults and
  // counters. NotFound if absent, InvalidArgument if offset >= size.
  Status corrupt(std::string_view key, uint64_t offset);

  StoreCounters counters() const;
  void reset_counters();
  ObjectStore& inner() { return *inner_; }

 private:
  // The fault, if any, for the next write of `key`; OK otherwise. Consumes fail_nth_write.
  Status check_write(std::string_view key);
  Status check_crashed() const;
  void on_write_succeeded(size_t bytes);

  std::unique_ptr<ObjectStore> inner_;
  mutable std::mutex mu_;  // guards the fault configuration below
  uint64_t writes_until_failure_ = 0;  // 0: disarmed
  uint64_t writes_until_crash_ = 0;    // 0: disarmed
  bool crash_armed_ = false;
  bool crashed_ = false;
  bool no_space_ = false;

  std::atomic<uint64_t> gets_{0}, puts_{0}, put_if_absents_{0}, lists_{0}, removes_{0};
  std::atomic<uint64_t> bytes_written_{0}, bytes_read_{0};
};

}  // namespace tidemark::storage
