// Persistence with its state on real object stores (Ceph RGW for S3, Azurite for Azure, both
// on loopback, started by scripts/test.sh), and through a fault-injecting proxy: the resumed
// runs must emit exactly what they emit on local disk.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "common/fault_proxy.h"
#include "engine/collection_io.h"
#include "storage/azure_store.h"
#include "storage/s3_store.h"
#include "tidemark/tidemark.h"

namespace tidemark {
namespace {

using engine::Batch;
using engine::CapturedChange;
using persistence::Backend;
using persistence::Config;
using V = std::vector<std::string>;

const Schema kWords{{"word", t_str()}};

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

#define REQUIRE_SERVER(var, script)                                                                         \
  if (env_or(var, "").empty()) {                                                                            \
    std::string how = std::string("start it with scripts/") + script + " and set " + var;                   \
    if (env_or(var == std::string("TIDEMARK_S3_ENDPOINT") ? "TIDEMARK_S3_OPTIONAL" : "TIDEMARK_AZURE_OPTIONAL", \
               "") == "1")                                                                                   \
      GTEST_SKIP() << how;                                                                                   \
    FAIL() << "no server: " << how;                                                                         \
  }

std::vector<Batch> wordcount_input() {
  uint64_t k = 1;
  auto words = [&](std::initializer_list<const char*> ws) {
    Batch b;
    for (const char* w : ws) b.push_back({Key{k++, 77}, {Value(w)}, 1});
    return b;
  };
  return {words({"abc", "def", "foo"}), words({"foo", "xyz"}), words({"abc", "xxx"}),
          words({"foo"}),               words({"abc", "def"}), words({"xyz"})};
}

// Runs word count over the first n batches; returns the sorted changes this run emitted.
Result<V> run_prefix(size_t n, const Config& cfg) {
  auto input = wordcount_input();
  Graph g;
  std::vector<Batch> prefix(input.begin(), input.begin() + static_cast<long>(n));
  Table in = engine::add_source(g, std::make_unique<engine::BatchesSource>(prefix, "words"), kWords, "words");
  Table out = in.groupby({"word"}).reduce({{"word", col("word")}, {"count", reducers::count()}});
  auto captured = std::make_shared<std::vector<CapturedChange>>();
  engine::add_sink(out, std::make_unique<engine::CaptureSink>(captured), "capture");
  RunOptions o;
  o.handle_signals = false;
  o.progress_interval_s = 0;
  o.log = [](const std::string&) {};
  o.persistence_config = cfg;
  TM_RETURN_IF_ERROR(run(g, o));
  V d;
  for (const auto& c : *captured) d.push_back((c.diff > 0 ? "+" : "-") + c.row[0].to_string() + "," + c.row[1].to_string());
  std::sort(d.begin(), d.end());
  return d;
}

void expect_three_runs(const Config& cfg) {
  const V want[] = {{"+abc,1", "+def,1", "+foo,1", "+foo,2", "+xyz,1", "-foo,1"},
                    {"+abc,2", "+foo,3", "+xxx,1", "-abc,1", "-foo,2"},
                    {"+abc,3", "+def,2", "+xyz,2", "-abc,2", "-def,1", "-xyz,1"}};
  for (size_t run = 0; run < 3; ++run) {
    auto r = run_prefix(2 * (run + 1), cfg);
    ASSERT_TRUE(r.is_ok()) << "run " << run + 1 << ": " << r.status().to_string();
    EXPECT_EQ(*r, want[run]) << "run " << run + 1;
  }
  auto again = run_prefix(6, cfg);
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_TRUE(again->empty());
}

std::string unique_prefix(const char* what) {
  return std::string("persistence-") + what + "-" + std::to_string(getpid()) + "-" +
         std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
}

persistence::AwsS3Settings s3_settings(const std::string& endpoint) {
  persistence::AwsS3Settings s;
  s.bucket_name = env_or("TIDEMARK_S3_BUCKET", "tidemark-test");
  s.access_key = env_or("TIDEMARK_S3_ACCESS_KEY", "TESTACCESSKEY");
  s.secret_access_key = env_or("TIDEMARK_S3_SECRET_KEY", "TESTSECRETKEY");
  s.endpoint = endpoint;
  s.region = "us-east-1";
  s.with_path_style = true;
  return s;
}

TEST(ObjectStorePersistence, WordCountThreeRunsOnS3) {
  REQUIRE_SERVER("TIDEMARK_S3_ENDPOINT", "s3-server.sh");
  expect_three_runs(Config::simple_config(
      Backend::s3(unique_prefix("s3"), s3_settings(env_or("TIDEMARK_S3_ENDPOINT", "")))));
}

Config op_persisting(Backend b) {
  return Config::simple_config(std::move(b), 0, persistence::SnapshotAccess::kFull,
                               persistence::PersistenceMode::kOperatorPersisting);
}

TEST(ObjectStorePersistence, OperatorPersistingThreeRunsOnS3) {
  REQUIRE_SERVER("TIDEMARK_S3_ENDPOINT", "s3-server.sh");
  expect_three_runs(op_persisting(Backend::s3(unique_prefix("s3-op"), s3_settings(env_or("TIDEMARK_S3_ENDPOINT", "")))));
}

// A cached UDF keeps its results in S3: the second run (new process state, same storage)
// calls the function only for arguments it has not seen.
TEST(ObjectStorePersistence, UdfCacheOnS3) {
  REQUIRE_SERVER("TIDEMARK_S3_ENDPOINT", "s3-server.sh");
  Config cfg = Config::simple_config(Backend::s3(unique_prefix("s3-udf"), s3_settings(env_or("TIDEMARK_S3_ENDPOINT", ""))),
                                     0, persistence::SnapshotAccess::kFull, persistence::PersistenceMode::kUdfCaching);
  int calls = 0;
  auto run_once = [&](std::vector<const char*> words) {
    Graph g;
    Batch b;
    uint64_t k = 1;
    for (const char* w : words) b.push_back({Key{k++, 5}, {Value(w)}, 1});
    Table in = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{b}, "w"), kWords);
    auto upper = [&calls](const std::vector<Value>& a) {
      ++calls;
      std::string s(a[0].as_string());
      for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      return Value(s);
    };
    Table out = in.select({{"u", apply(upper, {col("word")}, t_str(), UdfCache{.name = "upper"})}});
    auto captured = std::make_shared<std::vector<CapturedChange>>();
    engine::add_sink(out, std::make_unique<engine::CaptureSink>(captured));
    RunOptions o;
    o.handle_signals = false;
    o.log = [](const std::string&) {};
    o.persistence_config = cfg;
    Status st = run(g, o);
    EXPECT_TRUE(st.is_ok()) << st.to_string();
    return captured->size();
  };
  EXPECT_EQ(run_once({"a", "b", "a"}), 3u);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(run_once({"a", "b", "c"}), 3u);  // an unnamed source is read again
  EXPECT_EQ(calls, 3);                       // only "c" was computed
}

TEST(ObjectStorePersistence, WordCountThreeRunsOnAzure) {
  REQUIRE_SERVER("TIDEMARK_AZURE_ENDPOINT", "azure-server.sh");
  storage::AzureOptions o;
  o.endpoint = env_or("TIDEMARK_AZURE_ENDPOINT", "");
  o.account = env_or("TIDEMARK_AZURE_ACCOUNT", "devstoreaccount1");
  o.key = env_or("TIDEMARK_AZURE_KEY",
                 "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==");
  o.container = "tidemark-persistence";
  ASSERT_TRUE(storage::create_azure_container(o).is_ok());
  expect_three_runs(
      Config::simple_config(Backend::azure(unique_prefix("azure"), o.account, o.key, o.container, o.endpoint)));
  expect_three_runs(op_persisting(Backend::azure(unique_prefix("azure-op"), o.account, o.key, o.container, o.endpoint)));
}

TEST(ObjectStorePersistence, MetadataOnLocalDiskSnapshotsOnS3) {
  REQUIRE_SERVER("TIDEMARK_S3_ENDPOINT", "s3-server.sh");
  auto dir = std::filesystem::temp_directory_path() / unique_prefix("meta");
  Config cfg{Backend::filesystem(dir.string()),
             Backend::s3(unique_prefix("snap"), s3_settings(env_or("TIDEMARK_S3_ENDPOINT", "")))};
  expect_three_runs(cfg);
  std::filesystem::remove_all(dir);
}

TEST(ObjectStorePersistence, ThroughResetsErrorsAndDroppedResponses) {
  REQUIRE_SERVER("TIDEMARK_S3_ENDPOINT", "s3-server.sh");
  std::string endpoint = env_or("TIDEMARK_S3_ENDPOINT", "");
  int port = std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  testing::FaultProxy proxy("127.0.0.1", port);
  std::mt19937_64 rng(7);
  int consecutive = 0;
  using F = testing::FaultProxy::Fault;
  proxy.set_policy([&](uint64_t, const std::string&, const std::string&) {
    // About one request in six fails, never more than two in a row (the client retries 6 times).
    if (consecutive >= 2 || rng() % 6 != 0) {
      consecutive = 0;
      return F::kNone;
    }
    ++consecutive;
    static const F kinds[] = {F::kReset, F::kServerError, F::kSlowDown, F::kDropResponse, F::kDelay};
    return kinds[rng() % 5];
  });
  expect_three_runs(Config::simple_config(Backend::s3(unique_prefix("proxy"), s3_settings(proxy.endpoint()))));
  // Operator persisting: state chunks, merges and their deletions through the same faults.
  expect_three_runs(op_persisting(Backend::s3(unique_prefix("proxy-op"), s3_settings(proxy.endpoint()))));
  EXPECT_GT(proxy.faults(), 3u) << "the proxy should have injected faults";
}

TEST(ObjectStorePersistence, WrongCredentialsFailAtStartWithoutLeakingSecrets) {
  REQUIRE_SERVER("TIDEMARK_S3_ENDPOINT", "s3-server.sh");
  auto s = s3_settings(env_or("TIDEMARK_S3_ENDPOINT", ""));
  s.secret_access_key = "definitely-wrong-secret";
  auto r = run_prefix(2, Config::simple_config(Backend::s3(unique_prefix("badcreds"), s)));
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("SignatureDoesNotMatch"), std::string::npos) << r.status().to_string();
  EXPECT_NE(r.status().message().find(s.bucket_name), std::string::npos) << r.status().to_string();
  EXPECT_EQ(r.status().message().find("definitely-wrong-secret"), std::string::npos) << r.status().to_string();
}

}  // namespace
}  // namespace tidemark
