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

// Writes new versions until killed, reporting each finished iteration with a byte on `progress_fd`.
[[noreturn]] void write_forever(const std::string& root, int progress_fd) {
  Result<std::unique_ptr<ObjectStore>> store = open_filesystem_store(root);
  if (!store.is_ok()) ::_exit(2);
  for (uint64_t g = 1;; ++g) {
    if (!(*store)->put("obj/" + std::to_string(g % 5), version_payload(g)).is_ok()) ::_exit(3);
    Status once = (*store)->put_if_absent("once/" + std::to_string(g % 11), version_payload(g));
    if (!once.is_ok() && once.code() != StatusCode::kAlreadyExists) ::_exit(4);
    if (::write(progress_fd, "+", 1) != 1) ::_exit(5);
  }
}

TEST(FileSystemCrash, KilledWriterLeavesOnlyCompleteObjects) {
  TempDir dir;
  std::mt19937 rng(12345);
  size_t objects_checked = 0;
  for (int round = 0; round < 12; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    int progress[2];
    ASSERT_EQ(::pipe(progress), 0);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) write_forever(dir.path(), progress[1]);
    ::close(progress[1]);
    // Kill at a random moment after a random number of finished iterations, so the kill
    // lands mid-put however slow the disk is.
    int iterations = 1 + static_cast<int>(rng() % 8);
    char byte;
    for (int i = 0; i < iterations; ++i) ASSERT_EQ(::read(progress[0], &byte, 1), 1) << "writer died";
    ::usleep(rng() % 3'000);
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ::close(progress[0]);
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
  EXPECT_GE(objects_checked, 12u * 2) << "every round finishes at least one put and one put_if_absent";
}

}  // namespace
}  // namespace tidemark::storage
