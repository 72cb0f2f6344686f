// The content archive (src/persistence/runtime_archive.h): a stashed content is freed once it
// is written, and fetch() then reads the written object back; a failed write is reported by
// fetch, not replaced by other bytes.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "persistence/runtime_archive.h"
#include "persistence/runtime_io.h"
#include "storage/fault_injecting_store.h"
#include "storage/object_store.h"

namespace tidemark {
namespace {

using persistence::Archive;
using persistence::IoPool;

std::string big_content() {
  std::string s;
  for (int i = 0; i < 100000; ++i) s += "line " + std::to_string(i * 7919 % 100003) + "\n";
  return s;
}

TEST(Archive, ContentIsFreedOnceWrittenAndFetchedBackFromTheStore) {
  std::shared_ptr<storage::ObjectStore> store = storage::make_memory_store();
  IoPool io(1, 1);
  Archive archive(store, "words", 7, &io);
  const std::string content = big_content();
  archive.stash(42, content);
  ASSERT_TRUE(archive.uploads.at(42).get().is_ok());
  // Written: the archive no longer holds the bytes in memory.
  EXPECT_TRUE(archive.pending.at(42).expired());
  Result<std::string> back = archive.fetch(42);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, content);
  // The object exists under the archive's key (compressed: smaller than the content).
  auto listed = store->list("");
  ASSERT_TRUE(listed.is_ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_LT((*listed)[0].size, content.size());
}

TEST(Archive, FetchOfAContentWhoseWriteFailedReportsTheFailure) {
  auto faulty = std::make_shared<storage::FaultInjectingStore>(storage::make_memory_store());
  faulty->fail_nth_write(1);
  IoPool io(1, 1);
  Archive archive(faulty, "words", 7, &io);
  archive.stash(5, big_content());
  EXPECT_FALSE(archive.uploads.at(5).get().is_ok());
  Result<std::string> back = archive.fetch(5);
  ASSERT_FALSE(back.is_ok());
  EXPECT_NE(back.status().message().find("injected fault"), std::string::npos) << back.status().to_string();
  EXPECT_NE(back.status().message().find("words"), std::string::npos) << back.status().to_string();
}

TEST(Archive, FetchOfAnUnknownContentIsCorruption) {
  std::shared_ptr<storage::ObjectStore> store = storage::make_memory_store();
  IoPool io(1, 1);
  Archive archive(store, "words", 7, &io);
  Result<std::string> back = archive.fetch(99);
  ASSERT_FALSE(back.is_ok());
  EXPECT_EQ(back.status().code(), StatusCode::kCorruption);
}

}  // namespace
}  // namespace tidemark
