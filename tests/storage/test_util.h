// Helpers shared by the storage tests.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "tidemark/status.h"

namespace tidemark::storage::testing {

// A fresh directory under the system temp dir, removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tidemark-storage-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed for " << pattern;
    path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace tidemark::storage::testing

#define ASSERT_OK(expr)                                        \
  do {                                                         \
    const ::tidemark::Status& tm_s_ = (expr);                  \
    ASSERT_TRUE(tm_s_.is_ok()) << tm_s_.to_string();           \
  } while (0)

#define EXPECT_OK(expr)                                        \
  do {                                                         \
    const ::tidemark::Status& tm_s_ = (expr);                  \
    EXPECT_TRUE(tm_s_.is_ok()) << tm_s_.to_string();           \
  } while (0)

// `ASSERT_OK_AND_ASSIGN(auto x, f());`
#define ASSERT_OK_AND_ASSIGN(lhs, expr)                                          \
  auto TM_CONCAT_(tm_r_, __LINE__) = (expr);                                     \
  ASSERT_TRUE(TM_CONCAT_(tm_r_, __LINE__).is_ok()) << TM_CONCAT_(tm_r_, __LINE__).status().to_string(); \
  lhs = std::move(TM_CONCAT_(tm_r_, __LINE__)).value()
