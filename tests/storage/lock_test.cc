#include "storage/lock.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "storage/fault_injecting_store.h"
#include "storage/format_constants.h"
#include "storage/test_util.h"

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

LockHolderInfo foreign_lock(int64_t pid, std::string host, int64_t lease_expires_at_ms) {
  return {"other pipeline", pid, std::move(host), now_ms() - 5000, lease_expires_at_ms, "feedfacefeedface"};
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

  TempDir dir_;
  std::unique_ptr<ObjectStore> store_;
};

TEST_P(StorageLockTest, SecondAcquireFailsNamingHolder) {
  ASSERT_OK_AND_ASSIGN(StorageLock lock, acquire_storage_lock(store(), "first"));
  EXPECT_TRUE(lock.held());
  Result<StorageLock> second = acquire_storage_lock(store(), "second");
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(),
              StartsWith("persistent storage " + store().describe() + " is in use by pid " + std::to_string(::getpid()) +
                         " on host " + this_host() + " since "));
  EXPECT_THAT(second.status().message(),
              HasSubstr("(holder: first); stop that process or wait for its lease to expire at "));
  EXPECT_EQ(decode_lock_info(store().get(format::kLockObjectKey).value()).value().token, lock.info().token);
}

TEST_P(StorageLockTest, ReleaseThenAcquireWorks) {
  ASSERT_OK_AND_ASSIGN(StorageLock lock, acquire_storage_lock(store(), "first"));
  ASSERT_OK(lock.release());
  EXPECT_FALSE(lock.held());
  EXPECT_OK(lock.release());
  EXPECT_EQ(store().get(format::kLockObjectKey).status().code(), StatusCode::kNotFound);
  {
    ASSERT_OK_AND_ASSIGN(StorageLock again, acquire_storage_lock(store(), "second"));
    StorageLock moved = std::move(again);
    EXPECT_FALSE(again.held());
    EXPECT_TRUE(moved.held());
  }  // destructor releases
  ASSERT_OK_AND_ASSIGN(StorageLock third, acquire_storage_lock(store(), "third"));
  EXPECT_EQ(third.info().holder, "third");
}

TEST_P(StorageLockTest, LockOfDeadProcessOnThisHostIsTakenOver) {
  pid_t dead = dead_pid();
  ASSERT_OK(store().put(format::kLockObjectKey, encode_lock_info(foreign_lock(dead, this_host(), now_ms() + 3600'000))));
  ASSERT_OK_AND_ASSIGN(StorageLock lock, acquire_storage_lock(store(), "survivor"));
  EXPECT_EQ(lock.info().pid, ::getpid());
  EXPECT_EQ(decode_lock_info(store().get(format::kLockObjectKey).value()).value().holder, "survivor");
}

TEST_P(StorageLockTest, ExpiredLeaseOfOtherHostIsTakenOver) {
  ASSERT_OK(store().put(format::kLockObjectKey, encode_lock_info(foreign_lock(1, "elsewhere", now_ms() - 1))));
  ASSERT_OK_AND_ASSIGN(StorageLock lock, acquire_storage_lock(store(), "me"));
  EXPECT_EQ(decode_lock_info(store().get(format::kLockObjectKey).value()).value().token, lock.info().token);
}

TEST_P(StorageLockTest, LiveLeaseOfOtherHostIsRespected) {
  ASSERT_OK(store().put(format::kLockObjectKey, encode_lock_info(foreign_lock(4242, "elsewhere", now_ms() + 60'000))));
  Result<StorageLock> lock = acquire_storage_lock(store(), "me");
  ASSERT_FALSE(lock.is_ok());
  EXPECT_EQ(lock.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(lock.status().message(), HasSubstr("is in use by pid 4242 on host elsewhere since"));
}

TEST_P(StorageLockTest, RenewExtendsLeaseAndDetectsLoss) {
  LockOptions options;
  options.lease_duration = std::chrono::milliseconds(10'000);
  ASSERT_OK_AND_ASSIGN(StorageLock lock, acquire_storage_lock(store(), "me", options));
  int64_t first_expiry = lock.info().lease_expires_at_ms;
  ::usleep(5'000);
  ASSERT_OK(lock.renew());
  EXPECT_GT(lock.info().lease_expires_at_ms, first_expiry);
  EXPECT_EQ(decode_lock_info(store().get(format::kLockObjectKey).value()).value().lease_expires_at_ms,
            lock.info().lease_expires_at_ms);

  ASSERT_OK(store().put(format::kLockObjectKey, encode_lock_info(foreign_lock(4242, "elsewhere", now_ms() + 60'000))));
  Status renewed = lock.renew();
  EXPECT_EQ(renewed.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(renewed.message(), HasSubstr("lost the lock on persistent storage " + store().describe() +
                                           ": it is now held by pid 4242 on host elsewhere"));
  EXPECT_EQ(lock.release().code(), StatusCode::kFailedPrecondition);
  EXPECT_OK(store().get(format::kLockObjectKey).status());  // the other holder's object is left alone
}

TEST_P(StorageLockTest, UnreadableLockObjectIsReported) {
  ASSERT_OK(store().put(format::kLockObjectKey, "not json"));
  Result<StorageLock> lock = acquire_storage_lock(store(), "me");
  if (GetParam() == "memory") {
    ASSERT_FALSE(lock.is_ok());
    EXPECT_THAT(lock.status().message(), HasSubstr("has an unreadable lock object 'lock'"));
  } else {
    EXPECT_OK(lock.status());  // the flock proves no live process on this host holds it
  }
}

TEST_P(StorageLockTest, LockObjectRoundTrips) {
  LockHolderInfo info = foreign_lock(77, "h", 123);
  Result<LockHolderInfo> back = decode_lock_info(encode_lock_info(info));
  ASSERT_OK(back.status());
  EXPECT_EQ(back->holder, info.holder);
  EXPECT_EQ(back->pid, 77);
  EXPECT_EQ(back->host, "h");
  EXPECT_EQ(back->started_at_ms, info.started_at_ms);
  EXPECT_EQ(back->lease_expires_at_ms, 123);
  EXPECT_EQ(back->token, info.token);
  EXPECT_EQ(decode_lock_info(R"({"version": 9})").status().code(), StatusCode::kNotSupported);
  EXPECT_EQ(decode_lock_info(R"({"version": 1, "pid": "x"})").status().code(), StatusCode::kCorruption);
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
  // covered by LockOfDeadProcessOnThisHostIsTakenOver. Either way the parent now gets it.
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
