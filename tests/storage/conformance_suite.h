// The ObjectStore conformance suite: the behaviour every backend must share, written against
// the interface only.
//
// To run it against a backend, include this header in exactly one .cc file of a test binary
// and instantiate it with a factory that opens a fresh, empty store for each test:
//
//   INSTANTIATE_TEST_SUITE_P(S3, ObjectStoreConformance, ::testing::Values(BackendFactory{
//       "s3", [] { return BackendUnderTest{open_s3_store(unique_prefix()), cleanup}; }}),
//       backend_name);
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <barrier>
#include <functional>
#include <random>
#include <thread>

#include "storage/object_store.h"
#include "storage/test_util.h"

namespace tidemark::storage::testing {

struct BackendUnderTest {
  std::unique_ptr<ObjectStore> store;
  std::function<void()> cleanup;  // may be empty; runs after the store is destroyed
};

struct BackendFactory {
  std::string name;  // used in test names: letters, digits, '_'
  std::function<BackendUnderTest()> open;
};

inline void PrintTo(const BackendFactory& factory, std::ostream* os) { *os << factory.name; }

inline std::string backend_name(const ::testing::TestParamInfo<BackendFactory>& info) { return info.param.name; }

class ObjectStoreConformance : public ::testing::TestWithParam<BackendFactory> {
 protected:
  void SetUp() override {
    backend_ = GetParam().open();
    ASSERT_NE(backend_.store, nullptr);
  }
  void TearDown() override {
    backend_.store.reset();
    if (backend_.cleanup) backend_.cleanup();
  }
  ObjectStore& store() { return *backend_.store; }

  std::vector<std::string> keys(std::string_view prefix) {
    std::vector<std::string> out;
    Result<std::vector<ObjectInfo>> listed = store().list(prefix);
    EXPECT_TRUE(listed.is_ok()) << listed.status().to_string();
    if (listed.is_ok()) {
      for (const ObjectInfo& info : *listed) out.push_back(info.key);
    }
    return out;
  }

  BackendUnderTest backend_;
};

TEST_P(ObjectStoreConformance, GetMissingIsNotFound) {
  Result<std::string> got = store().get("no/such/object");
  ASSERT_FALSE(got.is_ok());
  EXPECT_EQ(got.status().code(), StatusCode::kNotFound) << got.status().to_string();
  EXPECT_THAT(got.status().message(), ::testing::HasSubstr("no/such/object"));
}

TEST_P(ObjectStoreConformance, PutGetRoundTrip) {
  ASSERT_OK(store().put("a", "hello"));
  ASSERT_OK_AND_ASSIGN(std::string got, store().get("a"));
  EXPECT_EQ(got, "hello");
}

TEST_P(ObjectStoreConformance, EmptyObject) {
  ASSERT_OK(store().put("empty", ""));
  ASSERT_OK_AND_ASSIGN(std::string got, store().get("empty"));
  EXPECT_EQ(got, "");
  EXPECT_EQ(store().list("empty").value(), (std::vector<ObjectInfo>{{"empty", 0}}));
}

TEST_P(ObjectStoreConformance, LargeBinaryObjectWithNulBytes) {
  std::string data(5 * 1024 * 1024, '\0');
  std::mt19937_64 rng(42);
  for (size_t i = 0; i < data.size(); i += 2) data[i] = static_cast<char>(rng());  // odd bytes stay NUL
  ASSERT_OK(store().put("big/blob", data));
  ASSERT_OK_AND_ASSIGN(std::string got, store().get("big/blob"));
  EXPECT_TRUE(got == data) << "5 MiB object differs after round trip, got " << got.size() << " bytes";
  EXPECT_EQ(store().list("big/").value(), (std::vector<ObjectInfo>{{"big/blob", data.size()}}));
}

TEST_P(ObjectStoreConformance, PutOverwrites) {
  ASSERT_OK(store().put("k", "first version, longer"));
  ASSERT_OK(store().put("k", "second"));
  EXPECT_EQ(store().get("k").value(), "second");
  EXPECT_EQ(keys(""), std::vector<std::string>{"k"});
}

TEST_P(ObjectStoreConformance, PutIfAbsentOfTheSameBytesIsIdempotent) {
  ASSERT_OK(store().put_if_absent("same", "bytes"));
  ASSERT_OK(store().put_if_absent("same", "bytes"));  // e.g. a retry whose first answer was lost
  EXPECT_EQ(store().put_if_absent("same", "other").code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(store().get("same").value(), "bytes");
}

TEST_P(ObjectStoreConformance, PutIfAbsentCreatesOnce) {
  ASSERT_OK(store().put_if_absent("once", "first"));
  Status second = store().put_if_absent("once", "second");
  EXPECT_EQ(second.code(), StatusCode::kAlreadyExists) << second.to_string();
  EXPECT_THAT(second.message(), ::testing::HasSubstr("once"));
  EXPECT_EQ(store().get("once").value(), "first");
  EXPECT_EQ(keys(""), std::vector<std::string>{"once"});
}

TEST_P(ObjectStoreConformance, PutIfAbsentRaceHasExactlyOneWinner) {
  constexpr int kRounds = 50;
  std::barrier sync(2);
  Status results[2][kRounds];
  auto contender = [&](int id) {
    for (int round = 0; round < kRounds; ++round) {
      sync.arrive_and_wait();
      results[id][round] = store().put_if_absent("race/" + std::to_string(round), "writer" + std::to_string(id));
    }
  };
  std::thread t0(contender, 0), t1(contender, 1);
  t0.join();
  t1.join();
  for (int round = 0; round < kRounds; ++round) {
    const Status& a = results[0][round];
    const Status& b = results[1][round];
    ASSERT_NE(a.is_ok(), b.is_ok()) << "round " << round << ": " << a.to_string() << " / " << b.to_string();
    const Status& loser = a.is_ok() ? b : a;
    EXPECT_EQ(loser.code(), StatusCode::kAlreadyExists) << loser.to_string();
    EXPECT_EQ(store().get("race/" + std::to_string(round)).value(), a.is_ok() ? "writer0" : "writer1");
  }
  EXPECT_EQ(keys("race/").size(), static_cast<size_t>(kRounds));
}

TEST_P(ObjectStoreConformance, PutIfVersionIsACompareAndSwap) {
  ASSERT_OK(store().put_if_absent("cas", "v1"));
  ASSERT_OK_AND_ASSIGN(VersionedObject one, store().get_versioned("cas"));
  EXPECT_EQ(one.data, "v1");
  EXPECT_FALSE(one.version.empty());
  ASSERT_OK_AND_ASSIGN(std::string two, store().put_if_version("cas", "v2", one.version));
  EXPECT_NE(two, one.version);
  EXPECT_EQ(store().get("cas").value(), "v2");
  // A stale version loses, and the object keeps the winner's bytes.
  Result<std::string> stale = store().put_if_version("cas", "v3", one.version);
  EXPECT_EQ(stale.status().code(), StatusCode::kAborted) << stale.status().to_string();
  EXPECT_EQ(store().get("cas").value(), "v2");
  // The version returned by a write is the one a read sees, and works as the next condition.
  ASSERT_OK_AND_ASSIGN(VersionedObject now, store().get_versioned("cas"));
  EXPECT_EQ(now.version, two);
  ASSERT_OK(store().put_if_version("cas", "v4", two).status());
  // Retrying a write that already landed is a success (idempotent like put_if_absent).
  EXPECT_OK(store().put_if_version("cas", "v4", two).status());
  // No object: a conditional write cannot create one.
  EXPECT_EQ(store().put_if_version("absent", "x", two).status().code(), StatusCode::kAborted);
  EXPECT_EQ(store().get_versioned("absent").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store().get("absent").status().code(), StatusCode::kNotFound);
}

TEST_P(ObjectStoreConformance, PutIfVersionRaceHasExactlyOneWinner) {
  constexpr int kRounds = 20;
  std::barrier sync(2);
  std::vector<Result<std::string>> results[2];
  for (auto& r : results) r.assign(kRounds, Status::internal("not run"));
  std::vector<std::string> versions(kRounds);
  for (int round = 0; round < kRounds; ++round) {
    std::string key = "casrace/" + std::to_string(round);
    ASSERT_OK(store().put_if_absent(key, "start"));
    versions[round] = store().get_versioned(key).value().version;
  }
  auto contender = [&](int id) {
    for (int round = 0; round < kRounds; ++round) {
      sync.arrive_and_wait();
      results[id][round] = store().put_if_version("casrace/" + std::to_string(round), "writer" + std::to_string(id),
                                                  versions[round]);
    }
  };
  std::thread t0(contender, 0), t1(contender, 1);
  t0.join();
  t1.join();
  for (int round = 0; round < kRounds; ++round) {
    const auto& a = results[0][round];
    const auto& b = results[1][round];
    ASSERT_NE(a.is_ok(), b.is_ok()) << "round " << round << ": " << a.status().to_string() << " / "
                                    << b.status().to_string();
    EXPECT_EQ((a.is_ok() ? b : a).status().code(), StatusCode::kAborted);
    EXPECT_EQ(store().get("casrace/" + std::to_string(round)).value(), a.is_ok() ? "writer0" : "writer1");
  }
}

TEST_P(ObjectStoreConformance, ListByPrefixIsSortedAndNotFolderBound) {
  for (const char* key : {"a/bc", "a/b/c", "a/b/d/e", "a/c", "b", "a/ba", "ab", "a/b"}) {
    if (std::string_view(key) == "a/b") continue;  // "a/b" is a folder here; see the header contract
    ASSERT_OK(store().put(key, key));
  }
  EXPECT_EQ(keys(""), (std::vector<std::string>{"a/b/c", "a/b/d/e", "a/ba", "a/bc", "a/c", "ab", "b"}));
  EXPECT_EQ(keys("a/"), (std::vector<std::string>{"a/b/c", "a/b/d/e", "a/ba", "a/bc", "a/c"}));
  EXPECT_EQ(keys("a/b"), (std::vector<std::string>{"a/b/c", "a/b/d/e", "a/ba", "a/bc"}));
  EXPECT_EQ(keys("a/b/"), (std::vector<std::string>{"a/b/c", "a/b/d/e"}));
  EXPECT_EQ(keys("a"), (std::vector<std::string>{"a/b/c", "a/b/d/e", "a/ba", "a/bc", "a/c", "ab"}));
  EXPECT_EQ(keys("a/b/d/e"), (std::vector<std::string>{"a/b/d/e"}));
  EXPECT_TRUE(keys("zzz").empty());
  EXPECT_TRUE(keys("a/x/").empty());
  ASSERT_OK_AND_ASSIGN(auto infos, store().list("a/b/d/"));
  EXPECT_EQ(infos, (std::vector<ObjectInfo>{{"a/b/d/e", 7}}));
}

TEST_P(ObjectStoreConformance, RemoveDeletesAndAbsentIsOk) {
  ASSERT_OK(store().put("x/y", "1"));
  ASSERT_OK(store().put("x/z", "2"));
  ASSERT_OK(store().remove("x/y"));
  EXPECT_EQ(store().get("x/y").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(keys("x/"), std::vector<std::string>{"x/z"});
  EXPECT_OK(store().remove("x/y"));
  EXPECT_OK(store().remove("never/existed"));
  ASSERT_OK(store().put_if_absent("x/y", "again"));  // a removed key can be created again
  EXPECT_EQ(store().get("x/y").value(), "again");
}

TEST_P(ObjectStoreConformance, InvalidKeysAreRejected) {
  for (std::string key : std::vector<std::string>{"", "/abs", "a//b", "a/", "../up", "a/../b", "a/./b", ".", "..", ".hidden",
                          "a/.tmp.1.2", std::string("nul\0byte", 8), std::string(1025, 'k')}) {
    SCOPED_TRACE("key: " + key);
    EXPECT_EQ(store().put(key, "v").code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(store().put_if_absent(key, "v").code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(store().get(key).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(store().remove(key).code(), StatusCode::kInvalidArgument);
  }
  for (std::string prefix : std::vector<std::string>{"/abs", "../", "a/../", "a//", "a/.t"}) {
    SCOPED_TRACE("prefix: " + prefix);
    EXPECT_EQ(store().list(prefix).status().code(), StatusCode::kInvalidArgument);
  }
  Status st = store().put("a//b", "v");
  EXPECT_THAT(st.message(), ::testing::HasSubstr("'a//b'"));
  EXPECT_TRUE(keys("").empty());
}

TEST_P(ObjectStoreConformance, ManyKeys) {
  constexpr int kCount = 1000;
  std::vector<std::string> expected;
  for (int i = kCount - 1; i >= 0; --i) {
    char key[32];
    std::snprintf(key, sizeof key, "many/%02d/k%04d", i % 7, i);
    ASSERT_OK(store().put(key, std::to_string(i)));
    expected.push_back(key);
  }
  std::sort(expected.begin(), expected.end());
  ASSERT_OK_AND_ASSIGN(auto listed, store().list("many/"));
  ASSERT_EQ(listed.size(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i) {
    EXPECT_EQ(listed[i].key, expected[i]);
    EXPECT_EQ(listed[i].size, std::to_string(std::stoi(expected[i].substr(expected[i].size() - 4))).size());
  }
  EXPECT_EQ(store().get("many/03/k0500").value(), "500");
  EXPECT_EQ(keys("many/03/").size(), 143u);
}

TEST_P(ObjectStoreConformance, DescribeIsNonEmpty) { EXPECT_FALSE(store().describe().empty()); }

}  // namespace tidemark::storage::testing
