// Kills a writer process at random moments and checks that every object it was replacing is
// either absent or some complete version — never torn — and that no temporary file survives
// the next open.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "storage/object_store.h"
#include "storage/test_util.h"

namespace tidemark::storage {
namespace {

using testing::TempDir;

// Version g of an object: 8 bytes of g, then a size and fill byte both derived from g.
std::string version_payload(uint64_t g) {
  size_t size = 8 + (g * 7919) % (512 * 1024);
  std::string data(size, static_cast<char>(g % 251));
  std::memcpy(data.data(), &g, 8);
  return data;
}

bool is_complete_version(const std::string& data) {
  if (data.size() < 8) return false;
  uint64_t g;
  std::memcpy(&g, data.data(), 8);
  return data == version_payload(g);
}

[[noreturn]] void write_forever(const std::string& root) {
  Result<std::unique_ptr<ObjectStore>> store = open_filesystem_store(root);
  if (!store.is_ok()) ::_exit(2);
  for (uint64_t g = 1;; ++g) {
    if (!(*store)->put("obj/" + std::to_string(g % 5), version_payload(g)).is_ok()) ::_exit(3);
    Status once = (*store)->put_if_absent("once/" + std::to_string(g % 11), version_payload(g));
    if (!once.is_ok() && once.code() != StatusCode::kAlreadyExists) ::_exit(4);
  }
}

TEST(FileSystemCrash, KilledWriterLeavesOnlyCompleteObjects) {
  TempDir dir;
  std::mt19937 rng(12345);
  size_t objects_checked = 0;
  for (int round = 0; round < 12; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) write_forever(dir.path());
    ::usleep(2'000 + rng() % 40'000);
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status)) << "writer exited early with status " << WEXITSTATUS(status);

    ASSERT_OK_AND_ASSIGN(auto store, open_filesystem_store(dir.path()));
    ASSERT_OK_AND_ASSIGN(auto objects, store->list(""));
    for (const ObjectInfo& info : objects) {
      ASSERT_OK_AND_ASSIGN(std::string data, store->get(info.key));
      EXPECT_EQ(data.size(), info.size);
      ++objects_checked;
      EXPECT_TRUE(is_complete_version(data)) << info.key << " is torn (" << data.size() << " bytes)";
    }
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir.path())) {
      EXPECT_FALSE(entry.path().filename().string().starts_with(".tmp."))
          << entry.path() << " survived reopening";
    }
  }
  EXPECT_GT(objects_checked, 50u) << "the writer barely wrote anything before being killed";
}

}  // namespace
}  // namespace tidemark::storage
