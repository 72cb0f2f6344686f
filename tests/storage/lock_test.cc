#include "storage/lock.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "storage/fault_injecting_store.h"
#include "storage/format_constants.h"
#include "storage/test_util.h"

#include <atomic>
#include <thread>

namespace tidemark::storage {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::TempDir;

std::string this_host() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A pid that belonged to a process that has exited and been reaped.
pid_t dead_pid() {
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return child;
}

// A lock object of another holder. `same_machine`: with this machine's boot id and PID
// namespace (so pid liveness can be judged); otherwise from "elsewhere".
LockHolderInfo foreign_lock(int64_t pid, bool same_machine, int64_t lease_ms) {
  LockHolderInfo info = same_machine ? this_process_identity() : LockHolderInfo{};
  info.holder = "other pipeline";
  info.pid = pid;
  if (!same_machine) {
    info.host = "elsewhere";
    info.boot_id = "0b5e55ed-0000-4000-8000-000000000000";
    info.pid_namespace = 4026531836;
  }
  info.process_start = same_machine ? 1 : 77;
  info.started_at_ms = now_ms() - 5000;
  info.lease_ms = lease_ms;
  info.lease_expires_at_ms = now_ms() - 1;  // by the wall clock long expired: never trusted
  info.token = "feedfacefeedfacefeedfacefeedface";
  return info;
}

std::chrono::milliseconds since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t);
}

LockOptions manual(std::chrono::milliseconds lease = std::chrono::milliseconds(60'000)) {
  LockOptions o;
  o.lease_duration = lease;
  o.renew_in_background = false;
  return o;
}

// Runs every lock test against a store with a local fence (filesystem) and one without (memory).
class StorageLockTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { store_ = open(); }
  std::unique_ptr<ObjectStore> open() {
    if (GetParam() == "memory") return make_memory_store();
    Result<std::unique_ptr<ObjectStore>> store = open_filesystem_store(dir_.path());
    EXPECT_TRUE(store.is_ok()) << store.status().to_string();
    return std::move(store).value();
  }
  ObjectStore& store() { return *store_; }
  LockHolderInfo stored() { return decode_lock_info(store().get(format::kLockObjectKey).value()).value(); }

  TempDir dir_;
  std::unique_ptr<ObjectStore> store_;
};

TEST_P(StorageLockTest, SecondAcquireFailsNamingHolder) {
  ASSERT_OK_AND_ASSIGN(StorageLock lock, acquire_storage_lock(store(), "first"));
  EXPECT_TRUE(lock.held());
  EXPECT_TRUE(lock.valid());
  auto start = std::chrono::steady_clock::now();
  Result<StorageLock> second = acquire_storage_lock(store(), "second");
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("is in use by pid " + std::to_string(::getpid())));
  EXPECT_THAT(second.status().message(), HasSubstr("(holder: first"));
  EXPECT_LT(since(start).count(), 10'000);  // known to be alive: refused without watching a lease
  EXPECT_EQ(stored().token, lock.info().token);
}

TEST_P(StorageLockTest, ReleaseMarksTheObjectReleasedAndFreesIt) {
  ASSERT_OK_AND_ASSIGN(StorageLock lock, acquire_storage_lock(store(), "first"));
  ASSERT_OK(lock.release());
  EXPECT_FALSE(lock.held());
  EXPECT_FALSE(lock.valid());
  EXPECT_OK(lock.release());
  EXPECT_TRUE(stored().released);  // never deleted: released by compare-and-swap
  {
    ASSERT_OK_AND_ASSIGN(StorageLock again, acquire_storage_lock(store(), "second"));
    StorageLock moved = std::move(again);
    EXPECT_TRUE(moved.held());
    EXPECT_EQ(stored().holder, "second");
  }  // destructor releases
  EXPECT_TRUE(stored().released);
  ASSERT_OK_AND_ASSIGN(StorageLock third, acquire_storage_lock(store(), "third"));
  EXPECT_EQ(third.info().holder, "third");
}

TEST_P(StorageLockTest, LockOfDeadProcessOnThisMachineIsTakenOverAtOnce) {
  pid_t dead = dead_pid();
  ASSERT_OK(store().put(format::kLockObjectKey, encode_lock_info(foreign_lock(dead, true, 3'600'000))));
  auto start = std::chrono::steady_clock::now();
  ASSERT_OK_AND_ASSIGN(StorageLock lock, acquire_storage_lock(store(), "survivor"));
  EXPECT_LT(since(start).count(), 60'000);
  EXPECT_EQ(lock.info().pid, ::getpid());
  EXPECT_EQ(stored().holder, "survivor");
}

// Same boot, same PID namespace, the pid alive but started at another time: the pid was
// reused by an unrelated process, so the holder is dead.
TEST_P(StorageLockTest, ReusedPidIsNotMistakenForTheHolder) {
  ASSERT_OK(store().put(format::kLockObjectKey, encode_lock_info(foreign_lock(::getppid(), true, 3'600'000))));
  auto start = std::chrono::steady_clock::now();
  ASSERT_OK_AND_ASSIGN(StorageLock lock, acquire_storage_lock(store(), "survivor"));
  EXPECT_LT(since(start).count(), 60'000);
  EXPECT_EQ(stored().holder, "survivor");
}

// A holder on another machine: its liveness is unknown, its wall clock is not trusted. The
// lock is stale only after it was seen unchanged for its whole lease on our monotonic clock.
TEST_P(StorageLockTest, UnrenewedLockOfAnotherMachineIsTakenOverAfterAWholeLease) {
  ASSERT_OK(store().put(format::kLockObjectKey, encode_lock_info(foreign_lock(4242, false, 400))));
  std::vector<std::string> logged;
  LockOptions o;
  o.log = [&](const std::string& m) { logged.push_back(m); };
  auto start = std::chrono::steady_clock::now();
  ASSERT_OK_AND_ASSIGN(StorageLock lock, acquire_storage_lock(store(), "me", o));
  EXPECT_GE(since(start).count(), 400);
  EXPECT_EQ(stored().token, lock.info().token);
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_THAT(logged[0], HasSubstr("waiting up to 400 ms to see whether its lease is renewed"));
}

// A live holder elsewhere renews its object (by compare-and-swap); the newcomer sees it
// change and is refused, although the object's wall-clock expiry lies in the past.
TEST_P(StorageLockTest, RenewedLockOfAnotherMachineIsRefused) {
  LockHolderInfo other = foreign_lock(4242, false, 3'000);
  ASSERT_OK(store().put_if_absent(format::kLockObjectKey, encode_lock_info(other)));
  std::atomic<bool> stop{false};
  std::thread renewer([&] {
    while (!stop.load()) {
      Result<VersionedObject> cur = store().get_versioned(format::kLockObjectKey);
      if (cur.is_ok()) {
        ++other.renewals;
        (void)store().put_if_version(format::kLockObjectKey, encode_lock_info(other), cur->version);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  auto start = std::chrono::steady_clock::now();
  Result<StorageLock> lock = acquire_storage_lock(store(), "me");
  stop = true;
  renewer.join();
  ASSERT_FALSE(lock.is_ok());
  EXPECT_EQ(lock.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(lock.status().message(), HasSubstr("is in use by pid 4242 on host elsewhere since"));
  EXPECT_LT(since(start).count(), 3'000);
  EXPECT_EQ(stored().holder, "other pipeline");
}

TEST_P(StorageLockTest, RenewIsACompareAndSwapAndDetectsLoss) {
  ASSERT_OK_AND_ASSIGN(StorageLock lock, acquire_storage_lock(store(), "me", manual()));
  ASSERT_OK(lock.renew());
  ASSERT_OK(lock.renew());
  EXPECT_EQ(stored().renewals, 2u);
  EXPECT_EQ(stored().token, lock.info().token);
  // Another process takes the lock over.
  ASSERT_OK(store().put(format::kLockObjectKey, encode_lock_info(foreign_lock(4242, false, 60'000))));
  Status renewed = lock.renew();
  EXPECT_EQ(renewed.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(renewed.message(), HasSubstr("lost the lock on persistent storage " + store().describe() +
                                           ": it is now held by pid 4242 on host elsewhere"));
  EXPECT_FALSE(lock.valid());
  EXPECT_THAT(lock.check().message(), HasSubstr("lost the lock"));
  EXPECT_EQ(lock.release().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(stored().holder, "other pipeline");  // the other holder's object is left alone
}

// A store that slips another holder's lock in between a renewal's read and its write: the
// conditional write must lose, and the foreign lock must survive.
class SlippingStore final : public ObjectStore {
 public:
  explicit SlippingStore(std::unique_ptr<ObjectStore> inner) : inner_(std::move(inner)) {}
  Result<std::string> get(std::string_view k) override { return inner_->get(k); }
  Status put(std::string_view k, std::string_view d) override { return inner_->put(k, d); }
  Status put_if_absent(std::string_view k, std::string_view d) override { return inner_->put_if_absent(k, d); }
  Result<std::vector<ObjectInfo>> list(std::string_view p) override { return inner_->list(p); }
  Status remove(std::string_view k) override { return inner_->remove(k); }
  std::string describe() const override { return "slipping(" + inner_->describe() + ")"; }
  Result<VersionedObject> get_versioned(std::string_view k, Deadline d) override { return inner_->get_versioned(k, d); }
  Result<std::string> put_if_version(std::string_view k, std::string_view d, std::string_view v,
                                     Deadline deadline) override {
    if (slip) {
      slip = false;
      Status st = inner_->put(k, encode_lock_info(foreign_lock(4242, false, 60'000)));
      if (!st.is_ok()) return st;
    }
    return inner_->put_if_version(k, d, v, deadline);
  }
  bool slip = false;

 private:
  std::unique_ptr<ObjectStore> inner_;
};

TEST_P(StorageLockTest, ForeignLockSlippedInBeforeARenewalIsNeverOverwritten) {
  SlippingStore slipping(open());
  ASSERT_OK_AND_ASSIGN(StorageLock lock, acquire_storage_lock(slipping, "me", manual()));
  slipping.slip = true;
  Status renewed = lock.renew();
  EXPECT_EQ(renewed.code(), StatusCode::kFailedPrecondition) << renewed.to_string();
  LockHolderInfo now = decode_lock_info(slipping.get(format::kLockObjectKey).value()).value();
  EXPECT_EQ(now.pid, 4242);
  EXPECT_FALSE(lock.valid());
}

// The lease runs out on the holder's monotonic clock without renewals: valid() turns false
// before a taker (who must watch a whole lease) could take over.
TEST_P(StorageLockTest, LeaseLapsesWithoutRenewals) {
  auto before = std::chrono::steady_clock::now();
  ASSERT_OK_AND_ASSIGN(StorageLock lock, acquire_storage_lock(store(), "me", manual(std::chrono::milliseconds(300))));
  auto acquired = std::chrono::steady_clock::now();
  EXPECT_TRUE(lock.valid());
  while (lock.valid()) std::this_thread::yield();
  EXPECT_GE(since(before).count(), 240 - 1);  // lease - margin (1/5), from the start of the write
  EXPECT_LT(since(acquired).count(), 300);
  EXPECT_THAT(lock.check().message(), HasSubstr("was last renewed"));
  ASSERT_OK(lock.renew());
  EXPECT_TRUE(lock.valid());
}

// With background renewal the lease never lapses while the holder lives, idle or not.
TEST_P(StorageLockTest, BackgroundRenewalKeepsAnIdleHolderValid) {
  LockOptions o;
  o.lease_duration = std::chrono::milliseconds(600);
  ASSERT_OK_AND_ASSIGN(StorageLock lock, acquire_storage_lock(store(), "me", o));
  auto start = std::chrono::steady_clock::now();
  bool always_valid = true;
  while (since(start).count() < 2'000) {
    always_valid = always_valid && lock.valid();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(always_valid) << lock.check().to_string();
  EXPECT_GE(stored().renewals, 3u);
}

// Eight contenders take over one stale lock at the same time: exactly one wins.
TEST(StorageLockRace, EightTakersOfAStaleLockOneWins) {
  std::unique_ptr<ObjectStore> store = make_memory_store();
  ASSERT_OK(store->put(format::kLockObjectKey, encode_lock_info(foreign_lock(4242, false, 300))));
  std::vector<Result<StorageLock>> results;
  for (int i = 0; i < 8; ++i) results.emplace_back(Status::internal("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] { results[i] = acquire_storage_lock(*store, "taker " + std::to_string(i)); });
  for (auto& t : threads) t.join();
  int winners = 0;
  std::string winner_token;
  for (auto& r : results) {
    if (r.is_ok()) {
      ++winners;
      winner_token = r->info().token;
    } else {
      EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status().to_string();
    }
  }
  EXPECT_EQ(winners, 1);
  EXPECT_EQ(decode_lock_info(store->get(format::kLockObjectKey).value()).value().token, winner_token);
}

TEST_P(StorageLockTest, UnreadableLockObjectIsReported) {
  ASSERT_OK(store().put(format::kLockObjectKey, "not json"));
  Result<StorageLock> lock = acquire_storage_lock(store(), "me");
  if (GetParam() == "memory") {
    ASSERT_FALSE(lock.is_ok());
    EXPECT_THAT(lock.status().message(), HasSubstr("has an unreadable lock object 'lock'"));
  } else {
    EXPECT_OK(lock.status());  // the flock proves no live process on this machine holds it
  }
}

TEST_P(StorageLockTest, LockObjectRoundTrips) {
  LockHolderInfo info = foreign_lock(77, true, 1234);
  info.renewals = 9;
  info.released = true;
  Result<LockHolderInfo> back = decode_lock_info(encode_lock_info(info));
  ASSERT_OK(back.status());
  EXPECT_EQ(back->pid, 77);
  EXPECT_EQ(back->boot_id, info.boot_id);
  EXPECT_EQ(back->pid_namespace, info.pid_namespace);
  EXPECT_EQ(back->process_start, info.process_start);
  EXPECT_EQ(back->lease_ms, 1234);
  EXPECT_EQ(back->renewals, 9u);
  EXPECT_TRUE(back->released);
  EXPECT_EQ(back->token, info.token);
  // Version 1 objects (no CAS fields) are still read.
  Result<LockHolderInfo> v1 = decode_lock_info(
      R"({"version": 1, "holder": "h", "pid": 5, "host": "x", "started_at_ms": 1, "lease_expires_at_ms": 2, "token": "t"})");
  ASSERT_OK(v1.status());
  EXPECT_EQ(v1->lease_ms, 0);
  EXPECT_EQ(decode_lock_info(R"({"version": 9})").status().code(), StatusCode::kNotSupported);
  EXPECT_EQ(decode_lock_info(R"({"version": 2, "pid": "x"})").status().code(), StatusCode::kCorruption);
}

INSTANTIATE_TEST_SUITE_P(Backends, StorageLockTest, ::testing::Values("filesystem", "memory"),
                         [](const auto& info) { return info.param; });

// A child process holds the lock on a filesystem store; the parent must be refused, and must
// get the lock once the child exits.
TEST(StorageLockProcess, LockHeldByChildProcessRefusesParent) {
  TempDir dir;
  int to_parent[2], to_child[2];
  ASSERT_EQ(::pipe(to_parent), 0);
  ASSERT_EQ(::pipe(to_child), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    char byte = 'F';
    {
      Result<std::unique_ptr<ObjectStore>> store = open_filesystem_store(dir.path());
      if (store.is_ok()) {
        Result<StorageLock> lock = acquire_storage_lock(**store, "child");
        if (lock.is_ok()) byte = 'L';
        (void)!::write(to_parent[1], &byte, 1);
        (void)!::read(to_child[0], &byte, 1);  // wait until the parent has tried
      }
    }
    ::_exit(0);  // no release: the child dies holding the lock, as a crash would
  }
  char byte = 0;
  ASSERT_EQ(::read(to_parent[0], &byte, 1), 1);
  ASSERT_EQ(byte, 'L') << "child could not take the lock";

  ASSERT_OK_AND_ASSIGN(auto store, open_filesystem_store(dir.path()));
  Result<StorageLock> refused = acquire_storage_lock(*store, "parent");
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("is in use by pid " + std::to_string(child) + " on host " + this_host()));
  EXPECT_THAT(refused.status().message(), HasSubstr("(holder: child)"));

  ASSERT_EQ(::write(to_child[1], "x", 1), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  // The child's StorageLock destructor ran before _exit and released; crash-style takeover is
  // covered by KilledHolderIsTakenOver. Either way the parent now gets it.
  ASSERT_OK_AND_ASSIGN(StorageLock lock, acquire_storage_lock(*store, "parent"));
  EXPECT_EQ(lock.info().holder, "parent");
  for (int fd : {to_parent[0], to_parent[1], to_child[0], to_child[1]}) ::close(fd);
}

// A process killed while holding the lock: its flock vanishes, its lock object stays behind.
TEST(StorageLockProcess, KilledHolderIsTakenOver) {
  TempDir dir;
  int to_parent[2];
  ASSERT_EQ(::pipe(to_parent), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Result<std::unique_ptr<ObjectStore>> store = open_filesystem_store(dir.path());
    char byte = 'F';
    if (store.is_ok()) {
      Result<StorageLock> lock = acquire_storage_lock(**store, "doomed");
      if (lock.is_ok()) byte = 'L';
      (void)!::write(to_parent[1], &byte, 1);
      ::pause();  // killed here, holding the lock
    }
    ::_exit(1);
  }
  char byte = 0;
  ASSERT_EQ(::read(to_parent[0], &byte, 1), 1);
  ASSERT_EQ(byte, 'L');
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);

  ASSERT_OK_AND_ASSIGN(auto store, open_filesystem_store(dir.path()));
  ASSERT_OK_AND_ASSIGN(std::string stale, store->get(format::kLockObjectKey));
  EXPECT_EQ(decode_lock_info(stale).value().pid, child);
  ASSERT_OK_AND_ASSIGN(StorageLock lock, acquire_storage_lock(*store, "successor"));
  EXPECT_EQ(lock.info().holder, "successor");
  ::close(to_parent[0]);
  ::close(to_parent[1]);
}

TEST(StorageLockFaults, StoreErrorsAreReportedWithContext) {
  FaultInjectingStore store(make_memory_store());
  store.set_no_space(true);
  Result<StorageLock> lock = acquire_storage_lock(store, "me");
  ASSERT_FALSE(lock.is_ok());
  EXPECT_EQ(lock.status().code(), StatusCode::kIoError);
  EXPECT_THAT(lock.status().message(), HasSubstr("locking faulty(memory)"));
  EXPECT_THAT(lock.status().message(), HasSubstr("ENOSPC"));
}

}  // namespace
}  // namespace tidemark::storage
