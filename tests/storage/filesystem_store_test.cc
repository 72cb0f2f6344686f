// Filesystem-specific behaviour of the filesystem backend; the shared behaviour is in the
// conformance suite.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "storage/object_store.h"
#include "storage/test_util.h"

namespace tidemark::storage {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

void write_file(const std::string& path, std::string_view data) {
  std::ofstream(path, std::ios::binary) << data;
}

bool exists(const std::string& path) { return std::filesystem::exists(path); }

pid_t dead_pid() {
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  return child;
}

TEST(FileSystemStore, RootThatIsAFileIsRefused) {
  TempDir dir;
  std::string file = dir.path() + "/state";
  write_file(file, "x");
  Result<std::unique_ptr<ObjectStore>> store = open_filesystem_store(file);
  ASSERT_FALSE(store.is_ok());
  EXPECT_EQ(store.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store.status().message(), "persistent storage path '" + file + "' exists and is not a directory");
}

TEST(FileSystemStore, UncreatableRootNamesPathAndReason) {
  // A path below a regular file fails even for root, unlike permission bits.
  Result<std::unique_ptr<ObjectStore>> store = open_filesystem_store("/etc/passwd/x/state");
  ASSERT_FALSE(store.is_ok());
  EXPECT_EQ(store.status().code(), StatusCode::kIoError);
  EXPECT_EQ(store.status().message(),
            "cannot create persistent storage directory '/etc/passwd/x/state': '/etc/passwd' exists and is not a "
            "directory");
}

TEST(FileSystemStore, UnwritableRootNamesPathAndErrno) {
  // /proc/self is a directory nobody, not even root, can create files in.
  Result<std::unique_ptr<ObjectStore>> store = open_filesystem_store("/proc/self");
  ASSERT_FALSE(store.is_ok());
  EXPECT_EQ(store.status().code(), StatusCode::kIoError);
  EXPECT_THAT(store.status().message(), HasSubstr("'/proc/self'"));
}

TEST(FileSystemStore, CreatesRootWithParentsAndDescribesIt) {
  TempDir dir;
  std::string root = dir.path() + "/a/b/c/";
  ASSERT_OK_AND_ASSIGN(auto store, open_filesystem_store(root));
  EXPECT_TRUE(std::filesystem::is_directory(root));
  EXPECT_EQ(store->describe(), "filesystem:" + dir.path() + "/a/b/c");
}

TEST(FileSystemStore, ObjectsSurviveReopening) {
  TempDir dir;
  {
    ASSERT_OK_AND_ASSIGN(auto store, open_filesystem_store(dir.path()));
    ASSERT_OK(store->put("x/y/z", std::string("bin\0ary", 7)));
    ASSERT_OK(store->put_if_absent("top", "t"));
  }
  ASSERT_OK_AND_ASSIGN(auto store, open_filesystem_store(dir.path()));
  EXPECT_EQ(store->get("x/y/z").value(), std::string("bin\0ary", 7));
  EXPECT_EQ(store->get("top").value(), "t");
  EXPECT_EQ(store->list("").value(), (std::vector<ObjectInfo>{{"top", 1}, {"x/y/z", 7}}));
}

TEST(FileSystemStore, ObjectsAreFilesAndNoTempFilesRemain) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto store, open_filesystem_store(dir.path()));
  ASSERT_OK(store->put("d/obj", "one"));
  ASSERT_OK(store->put("d/obj", "two"));
  ASSERT_OK(store->put_if_absent("d/new", "n"));
  EXPECT_EQ(store->put_if_absent("d/new", "m").code(), StatusCode::kAlreadyExists);
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path() + "/d")) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"new", "obj"}));
  std::ifstream in(dir.path() + "/d/obj");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "two");
}

TEST(FileSystemStore, StaleTempFilesAreCleanedOnOpen) {
  TempDir dir;
  pid_t dead = dead_pid();
  std::string stale_top = dir.path() + "/.tmp." + std::to_string(dead) + ".3";
  std::string stale_nested = dir.path() + "/sub/deeper/.tmp." + std::to_string(dead) + ".4";
  std::string live = dir.path() + "/sub/.tmp." + std::to_string(::getpid()) + ".5";
  std::string object = dir.path() + "/sub/deeper/kept";
  std::filesystem::create_directories(dir.path() + "/sub/deeper");
  for (const std::string& path : {stale_top, stale_nested, live, object}) write_file(path, "partial");
  {
    ASSERT_OK_AND_ASSIGN(auto store, open_filesystem_store(dir.path()));
    // Temp files are never listed, whoever wrote them.
    EXPECT_EQ(store->list("").value(), (std::vector<ObjectInfo>{{"sub/deeper/kept", 7}}));
  }
  EXPECT_FALSE(exists(stale_top));
  EXPECT_FALSE(exists(stale_nested));
  EXPECT_TRUE(exists(live)) << "a live writer's temp file must not be removed";
  EXPECT_TRUE(exists(object));
}

TEST(FileSystemStore, KeyUsedAsFileAndFolderIsAnError) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto store, open_filesystem_store(dir.path()));
  ASSERT_OK(store->put("a", "file"));
  Status st = store->put("a/b", "nested");
  EXPECT_EQ(st.code(), StatusCode::kIoError);
  EXPECT_THAT(st.message(), HasSubstr("writing object 'a/b'"));
  EXPECT_THAT(st.message(), HasSubstr(dir.path() + "/a' exists and is not a directory"));
  EXPECT_EQ(store->get("a/b").status().code(), StatusCode::kNotFound);
  ASSERT_OK(store->put("c/d", "nested"));
  EXPECT_EQ(store->get("c").status().code(), StatusCode::kNotFound);  // a folder is not an object
  EXPECT_OK(store->remove("c"));
  EXPECT_EQ(store->get("c/d").value(), "nested");
}

TEST(FileSystemStore, LocalFenceIsExclusiveAndReleasedOnDestruction) {
  TempDir dir;
  ASSERT_OK_AND_ASSIGN(auto store, open_filesystem_store(dir.path()));
  {
    ASSERT_OK_AND_ASSIGN(auto fence, store->acquire_local_fence());
    ASSERT_NE(fence, nullptr);
    Result<std::unique_ptr<LocalFence>> second = store->acquire_local_fence();
    EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_THAT(second.status().message(), HasSubstr("flock on '" + dir.path() + "/.lock'"));
  }
  ASSERT_OK_AND_ASSIGN(auto again, store->acquire_local_fence());
  EXPECT_NE(again, nullptr);
  EXPECT_TRUE(store->list("").value().empty()) << "the fence file is not an object";
}

// A small tmpfs mounted for one test; needs CAP_SYS_ADMIN (the test skips without it).
class TinyMount {
 public:
  explicit TinyMount(const std::string& path, unsigned long flags = 0) : path_(path) {
    std::filesystem::create_directories(path_);
    mounted_ = ::mount("tmpfs", path_.c_str(), "tmpfs", flags, "size=256k,nr_inodes=64") == 0;
  }
  ~TinyMount() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }

 private:
  std::string path_;
  bool mounted_;
};

TEST(FileSystemStore, DiskFullIsReportedAndLeavesStoreConsistent) {
  TempDir dir;
  TinyMount mount(dir.path() + "/mnt");
  if (!mount.mounted()) GTEST_SKIP() << "cannot mount tmpfs: " << std::strerror(errno);
  ASSERT_OK_AND_ASSIGN(auto store, open_filesystem_store(dir.path() + "/mnt/state"));
  ASSERT_OK(store->put("small", "kept"));
  Status full;
  int written = 0;
  for (; written < 100 && full.is_ok(); ++written) {
    full = store->put("big/" + std::to_string(written), std::string(64 * 1024, 'x'));
  }
  ASSERT_FALSE(full.is_ok()) << "256 KiB tmpfs never filled";
  EXPECT_EQ(full.code(), StatusCode::kIoError);
  EXPECT_THAT(full.message(), HasSubstr("writing object 'big/" + std::to_string(written - 1) + "' in filesystem:" +
                                        dir.path() + "/mnt/state"));
  EXPECT_THAT(full.message(), HasSubstr("(ENOSPC); free space on that filesystem"));
  EXPECT_EQ(store->get("small").value(), "kept");
  ASSERT_OK_AND_ASSIGN(auto listed, store->list("big/"));
  EXPECT_EQ(listed.size(), static_cast<size_t>(written - 1)) << "the failed put must leave nothing behind";
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir.path() + "/mnt/state")) {
    EXPECT_FALSE(entry.path().filename().string().starts_with(".tmp.")) << entry.path();
  }
  ASSERT_OK(store->remove("big/0"));
  EXPECT_OK(store->put("small", "fits again"));
}

TEST(FileSystemStore, ReadOnlyRootIsRefused) {
  TempDir dir;
  TinyMount mount(dir.path() + "/ro", MS_RDONLY);
  if (!mount.mounted()) GTEST_SKIP() << "cannot mount tmpfs: " << std::strerror(errno);
  Result<std::unique_ptr<ObjectStore>> store = open_filesystem_store(dir.path() + "/ro");
  ASSERT_FALSE(store.is_ok());
  EXPECT_EQ(store.status().message(), "persistent storage directory '" + dir.path() +
                                          "/ro' is not writable: Read-only file system (EROFS)");
}

}  // namespace
}  // namespace tidemark::storage
