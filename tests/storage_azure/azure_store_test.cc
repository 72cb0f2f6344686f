// The Azure Blob store against a real Azurite emulator: the shared conformance suite plus
// Azure-specific behaviour (authentication, missing container, block uploads, pagination).
//
// Needs TIDEMARK_AZURE_ENDPOINT, e.g. after
//   scripts/azure-server.sh start /tmp/tidemark-azurite
//   TIDEMARK_AZURE_ENDPOINT=http://127.0.0.1:10000/devstoreaccount1 build/bin/test_storage_azure
// Account and key default to Azurite's (TIDEMARK_AZURE_ACCOUNT / TIDEMARK_AZURE_KEY override).
// Without an endpoint the tests fail with these instructions, or are skipped when
// TIDEMARK_AZURE_OPTIONAL=1.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "storage/azure_store.h"
#include "storage/conformance_suite.h"
#include "storage_azure/flaky_proxy.h"

namespace tidemark::storage::testing {
namespace {

// Azurite's fixed development key, published in Azure's documentation; not a secret.
constexpr const char* kEmulatorKey =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
constexpr const char* kHowToStart =
    "TIDEMARK_AZURE_ENDPOINT is not set. Start the emulator with "
    "`scripts/azure-server.sh start /tmp/tidemark-azurite` and rerun with "
    "TIDEMARK_AZURE_ENDPOINT=http://127.0.0.1:10000/devstoreaccount1 "
    "(or set TIDEMARK_AZURE_OPTIONAL=1 to skip the Azure tests)";
constexpr const char* kContainer = "tidemark-test";

std::string env_or(const char* name, std::string fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

bool azure_optional() { return env_or("TIDEMARK_AZURE_OPTIONAL", "") == "1"; }

// Options for the configured emulator with a prefix no other test uses; nullopt if unset.
std::optional<AzureOptions> emulator_options() {
  std::string endpoint = env_or("TIDEMARK_AZURE_ENDPOINT", "");
  if (endpoint.empty()) return std::nullopt;
  static std::atomic<int> counter{0};
  AzureOptions options;
  options.endpoint = endpoint;
  options.account = env_or("TIDEMARK_AZURE_ACCOUNT", "devstoreaccount1");
  options.key = env_or("TIDEMARK_AZURE_KEY", kEmulatorKey);
  options.container = kContainer;
  options.prefix = "run-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  return options;
}

// Removes everything the test left under its prefix.
void remove_all(const AzureOptions& options) {
  Result<std::unique_ptr<ObjectStore>> store = open_azure_store(options);
  if (!store.is_ok()) return;
  Result<std::vector<ObjectInfo>> listed = (*store)->list("");
  if (!listed.is_ok()) return;
  for (const ObjectInfo& info : *listed) EXPECT_OK((*store)->remove(info.key));
}

BackendUnderTest open_azure_backend() {
  std::optional<AzureOptions> options = emulator_options();
  if (!options) {
    ADD_FAILURE() << kHowToStart;
    return {};
  }
  EXPECT_OK(create_azure_container(*options));
  Result<std::unique_ptr<ObjectStore>> store = open_azure_store(*options);
  EXPECT_TRUE(store.is_ok()) << store.status().to_string();
  return {store.is_ok() ? std::move(store).value() : nullptr, [options] { remove_all(*options); }};
}

// With TIDEMARK_AZURE_OPTIONAL=1 and no endpoint the suite has no instances (skipped).
std::vector<BackendFactory> azure_backends() {
  if (env_or("TIDEMARK_AZURE_ENDPOINT", "").empty() && azure_optional()) return {};
  return {BackendFactory{"azurite", open_azure_backend}};
}

INSTANTIATE_TEST_SUITE_P(Azure, ObjectStoreConformance, ::testing::ValuesIn(azure_backends()), backend_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ObjectStoreConformance);  // the optional, skipped case

std::string random_bytes(size_t size, uint64_t seed) {
  std::string data(size, '\0');
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i + 8 <= size; i += 8) {
    uint64_t word = rng();
    std::memcpy(&data[i], &word, 8);
  }
  return data;
}

class AzureStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::optional<AzureOptions> options = emulator_options();
    if (!options) {
      if (azure_optional()) GTEST_SKIP() << kHowToStart;
      FAIL() << kHowToStart;
    }
    options_ = *options;
    ASSERT_OK(create_azure_container(options_));
  }
  void TearDown() override {
    if (!options_.endpoint.empty()) remove_all(options_);
  }

  std::unique_ptr<ObjectStore> open(const AzureOptions& options) {
    Result<std::unique_ptr<ObjectStore>> store = open_azure_store(options);
    EXPECT_TRUE(store.is_ok()) << store.status().to_string();
    return store.is_ok() ? std::move(store).value() : nullptr;
  }

  // The options with the endpoint moved behind `proxy` (the emulator must be on loopback).
  AzureOptions via(const FlakyProxy& proxy) const {
    AzureOptions options = options_;
    std::string path = options_.endpoint.substr(options_.endpoint.find('/', options_.endpoint.find("://") + 3));
    options.endpoint = "http://127.0.0.1:" + std::to_string(proxy.port()) + path;
    return options;
  }
  int emulator_port() const {
    size_t authority = options_.endpoint.find("://") + 3;
    size_t colon = options_.endpoint.find(':', authority);
    return colon == std::string::npos ? 80 : std::stoi(options_.endpoint.substr(colon + 1));
  }

  AzureOptions options_;
};

TEST_F(AzureStoreTest, WrongKeyIsAuthenticationFailedWithoutTheKey) {
  AzureOptions wrong = options_;
  wrong.key = "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXkgd3Jvbmcga2V5IHdyb25nIGtleQ==";
  Result<std::unique_ptr<ObjectStore>> store = open_azure_store(wrong);
  ASSERT_FALSE(store.is_ok());
  const std::string& message = store.status().message();
  // Azure's code for a bad signature is AuthenticationFailed; Azurite 3.35 says AuthorizationFailure.
  EXPECT_THAT(message, ::testing::AnyOf(::testing::HasSubstr("AuthenticationFailed"),
                                        ::testing::HasSubstr("AuthorizationFailure")));
  EXPECT_THAT(message, ::testing::HasSubstr("check the account name '" + options_.account + "' and its key"));
  EXPECT_THAT(message, ::testing::HasSubstr("403"));
  EXPECT_THAT(message, ::testing::HasSubstr(options_.container));
  EXPECT_THAT(message, ::testing::HasSubstr(options_.endpoint));
  EXPECT_THAT(message, ::testing::Not(::testing::HasSubstr(wrong.key)));
  EXPECT_THAT(message, ::testing::Not(::testing::HasSubstr(options_.key)));
  EXPECT_THAT(message, ::testing::Not(::testing::HasSubstr("SharedKey")));

  AzureOptions malformed = options_;
  malformed.key = "not base64 at all: s3cr3t!";
  Status bad = open_azure_store(malformed).status();
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument) << bad.to_string();
  EXPECT_THAT(bad.message(), ::testing::Not(::testing::HasSubstr("s3cr3t")));

  std::unique_ptr<ObjectStore> good = open(options_);
  ASSERT_NE(good, nullptr);
  EXPECT_THAT(good->describe(), ::testing::Not(::testing::HasSubstr(options_.key)));
  EXPECT_EQ(good->describe(), "azure://" + options_.container + "/" + options_.prefix + " (" + options_.endpoint + ")");
}

TEST_F(AzureStoreTest, MissingContainerIsContainerNotFoundNamingIt) {
  AzureOptions missing = options_;
  missing.container = "no-such-container-" + std::to_string(::getpid());
  Result<std::unique_ptr<ObjectStore>> store = open_azure_store(missing);
  ASSERT_FALSE(store.is_ok());
  EXPECT_EQ(store.status().code(), StatusCode::kNotFound) << store.status().to_string();
  EXPECT_THAT(store.status().message(), ::testing::HasSubstr("ContainerNotFound"));
  EXPECT_THAT(store.status().message(), ::testing::HasSubstr("'" + missing.container + "'"));

  missing.container = "Bad_Name";
  EXPECT_EQ(open_azure_store(missing).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(AzureStoreTest, UnreachableEndpointFailsClearlyAndFast) {
  // A loopback port that was free a moment ago: connections to it are refused.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(fd);
  AzureOptions closed = options_;
  closed.endpoint = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/devstoreaccount1";

  auto start = std::chrono::steady_clock::now();
  Result<std::unique_ptr<ObjectStore>> store = open_azure_store(closed);
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(store.is_ok());
  EXPECT_EQ(store.status().code(), StatusCode::kIoError) << store.status().to_string();
  EXPECT_THAT(store.status().message(), ::testing::HasSubstr(closed.endpoint));
  EXPECT_THAT(store.status().message(), ::testing::HasSubstr("6 attempt"));
  EXPECT_LT(elapsed, std::chrono::seconds(5)) << "retries must stay bounded";
}

TEST_F(AzureStoreTest, LargeObjectRoundTripsAsBlockList) {
  std::unique_ptr<ObjectStore> store = open(options_);
  ASSERT_NE(store, nullptr);
  std::string data = random_bytes(20 << 20, 7);  // above the 16 MiB single-put limit
  ASSERT_OK(store->put("large/blob", data));
  ASSERT_OK_AND_ASSIGN(std::string got, store->get("large/blob"));
  EXPECT_TRUE(got == data) << "20 MiB object differs after round trip, got " << got.size() << " bytes";
  EXPECT_EQ(store->list("large/").value(), (std::vector<ObjectInfo>{{"large/blob", data.size()}}));
  EXPECT_OK(store->put_if_absent("large/blob", data));  // idempotent for the same bytes
  data[12345] ^= 1;
  EXPECT_EQ(store->put_if_absent("large/blob", data).code(), StatusCode::kAlreadyExists);
}

TEST_F(AzureStoreTest, BlockListPutIfAbsentRaceHasOneWinner) {
  // Small limits make every object a block list; both writers stage blocks on the same blob.
  AzureOptions small = options_;
  small.single_put_limit = 64 << 10;
  small.block_size = 32 << 10;
  std::unique_ptr<ObjectStore> store = open(small);
  ASSERT_NE(store, nullptr);
  const std::string data[2] = {random_bytes(200 << 10, 1), random_bytes(200 << 10, 2)};
  for (int round = 0; round < 5; ++round) {
    std::string key = "race/" + std::to_string(round);
    std::barrier sync(2);
    Status results[2];
    auto contender = [&](int id) {
      sync.arrive_and_wait();
      results[id] = store->put_if_absent(key, data[id]);
    };
    std::thread t0(contender, 0), t1(contender, 1);
    t0.join();
    t1.join();
    ASSERT_NE(results[0].is_ok(), results[1].is_ok()) << results[0].to_string() << " / " << results[1].to_string();
    int winner = results[0].is_ok() ? 0 : 1;
    EXPECT_EQ(results[1 - winner].code(), StatusCode::kAlreadyExists) << results[1 - winner].to_string();
    ASSERT_OK_AND_ASSIGN(std::string stored, store->get(key));
    EXPECT_TRUE(stored == data[winner]) << "round " << round << ": stored bytes are not the winner's";
  }
}

TEST_F(AzureStoreTest, ListPaginatesAcrossManyPages) {
  AzureOptions paged = options_;
  paged.list_page_size = 7;
  std::unique_ptr<ObjectStore> store = open(paged);
  ASSERT_NE(store, nullptr);
  std::vector<ObjectInfo> expected;
  for (int i = 0; i < 60; ++i) {
    std::string key = "p/" + std::to_string(i % 3) + "/k" + std::to_string(i);
    ASSERT_OK(store->put(key, std::string(static_cast<size_t>(i), 'x')));
    expected.push_back({key, static_cast<uint64_t>(i)});
  }
  ASSERT_OK(store->put("q", "outside"));
  std::sort(expected.begin(), expected.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
  EXPECT_EQ(store->list("p/").value(), expected);
  EXPECT_EQ(store->list("p/1/").value().size(), 20u);
  EXPECT_EQ(store->list("").value().size(), 61u);
}

TEST_F(AzureStoreTest, PrefixesIsolateStoresAndOddKeysRoundTrip) {
  std::unique_ptr<ObjectStore> a = open(options_);
  AzureOptions other_options = options_;
  other_options.prefix = options_.prefix + "-other/";  // trailing '/' is ignored
  std::unique_ptr<ObjectStore> b = open(other_options);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const std::string odd = "dir with space/plus+percent%amp&eq=q?hash#\xc3\xbc<x>";
  ASSERT_OK(a->put(odd, "odd"));
  ASSERT_OK(b->put("only-b", "b"));
  EXPECT_EQ(a->get(odd).value(), "odd");
  EXPECT_EQ(a->list("").value(), (std::vector<ObjectInfo>{{odd, 3}}));
  EXPECT_EQ(b->list("").value(), (std::vector<ObjectInfo>{{"only-b", 1}}));
  EXPECT_EQ(a->get("only-b").status().code(), StatusCode::kNotFound);
  ASSERT_OK(a->remove(odd));
  EXPECT_TRUE(a->list("").value().empty());
  remove_all(other_options);
}

TEST_F(AzureStoreTest, ServerBusyIsRetriedWithBoundedBackoff) {
  std::atomic<int> busy_answers{3};
  FlakyProxy proxy(emulator_port(), [&](const std::string&) {
    return busy_answers.fetch_sub(1) > 0 ? FlakyProxy::Fault::kServerBusy : FlakyProxy::Fault::kNone;
  });
  std::unique_ptr<ObjectStore> store = open(via(proxy));  // open's probe absorbs the 3 busy answers
  ASSERT_NE(store, nullptr);
  ASSERT_OK(store->put("busy", "v"));
  EXPECT_EQ(store->get("busy").value(), "v");

  busy_answers = 1000;
  auto start = std::chrono::steady_clock::now();
  Status st = store->put("busy", "w");
  auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(st.code(), StatusCode::kIoError) << st.to_string();
  EXPECT_THAT(st.message(), ::testing::HasSubstr("HTTP 503 ServerBusy"));
  EXPECT_THAT(st.message(), ::testing::HasSubstr("'busy'"));
  EXPECT_THAT(st.message(), ::testing::HasSubstr("after 6 attempts"));
  EXPECT_GT(elapsed, std::chrono::milliseconds(700));  // 50+100+200+400+800 ms, jittered down to half
  EXPECT_LT(elapsed, std::chrono::seconds(3));
}

TEST_F(AzureStoreTest, PutIfAbsentWhoseAnswerWasLostStillSucceeds) {
  std::atomic<bool> drop_next_put{true};
  FlakyProxy proxy(emulator_port(), [&](const std::string& head) {
    bool drop = head.starts_with("PUT ") && drop_next_put.exchange(false);
    return drop ? FlakyProxy::Fault::kDropResponse : FlakyProxy::Fault::kNone;
  });
  std::unique_ptr<ObjectStore> store = open(via(proxy));
  ASSERT_NE(store, nullptr);
  // Applied by the server, answer lost, retried: the 409 is ours because the bytes are.
  ASSERT_OK(store->put_if_absent("once", "mine"));
  EXPECT_FALSE(drop_next_put);
  EXPECT_EQ(store->get("once").value(), "mine");
  // A lost answer does not make someone else's object ours.
  drop_next_put = true;
  Status st = store->put_if_absent("once", "theirs");
  EXPECT_EQ(st.code(), StatusCode::kAlreadyExists) << st.to_string();
  EXPECT_FALSE(drop_next_put);
  EXPECT_EQ(store->get("once").value(), "mine");
}

TEST_F(AzureStoreTest, ClientErrorsAreNotRetried) {
  std::atomic<int> puts{0};
  FlakyProxy proxy(emulator_port(), [&](const std::string& head) {
    if (head.starts_with("PUT ")) ++puts;
    return FlakyProxy::Fault::kNone;
  });
  std::unique_ptr<ObjectStore> store = open(via(proxy));
  ASSERT_NE(store, nullptr);
  ASSERT_OK(store->put_if_absent("k", "v"));
  puts = 0;
  EXPECT_EQ(store->put_if_absent("k", "other").code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(puts, 1);
}

}  // namespace
}  // namespace tidemark::storage::testing
