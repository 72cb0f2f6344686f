// The S3 backend: the shared conformance suite and S3-specific behaviour against a real server
// (Ceph RGW from scripts/s3-server.sh), plus server-less tests of URL parsing, settings,
// unreachable endpoints and retries (against a scripted fake HTTP server on loopback).
//
// Server tests need TIDEMARK_S3_ENDPOINT (e.g. http://127.0.0.1:7480); TIDEMARK_S3_ACCESS_KEY,
// TIDEMARK_S3_SECRET_KEY and TIDEMARK_S3_BUCKET default to the script's user and bucket. Without
// an endpoint they fail, or are skipped when TIDEMARK_S3_OPTIONAL=1.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>

#include "storage/conformance_suite.h"
#include "storage/s3_store.h"
#include "tidemark/persistence.h"

namespace tidemark::storage::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

bool server_configured() { return !env_or("TIDEMARK_S3_ENDPOINT", "").empty(); }

constexpr const char* kHowToStart =
    "no S3 server configured: run `scripts/s3-server.sh start /tmp/tidemark-rgw 7480` and set "
    "TIDEMARK_S3_ENDPOINT=http://127.0.0.1:7480 (or TIDEMARK_S3_OPTIONAL=1 to skip the S3 server tests)";

#define REQUIRE_S3_SERVER()                                                   \
  do {                                                                        \
    if (!server_configured()) {                                               \
      if (env_or("TIDEMARK_S3_OPTIONAL", "") == "1") GTEST_SKIP() << kHowToStart; \
      FAIL() << kHowToStart;                                                  \
    }                                                                         \
  } while (0)

// Options for the configured server under a prefix no other test uses.
S3Options server_options() {
  static std::atomic<int> counter{0};
  S3Options o;
  o.endpoint = env_or("TIDEMARK_S3_ENDPOINT", "");
  o.access_key = env_or("TIDEMARK_S3_ACCESS_KEY", "TESTACCESSKEY");
  o.secret_key = env_or("TIDEMARK_S3_SECRET_KEY", "TESTSECRETKEY");
  o.bucket = env_or("TIDEMARK_S3_BUCKET", "tidemark-test");
  o.path_style = true;
  o.prefix = "test-" + std::to_string(::getpid()) + "-" +
             std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + "-" +
             std::to_string(counter++);
  static const Status bucket = create_s3_bucket(o);
  EXPECT_TRUE(bucket.is_ok()) << bucket.to_string();
  return o;
}

// Deletes everything under the options' prefix (the server keeps data in memory).
void remove_prefix(const S3Options& o) {
  Result<std::unique_ptr<ObjectStore>> store = open_s3_store(o);
  if (!store.is_ok()) return;
  Result<std::vector<ObjectInfo>> all = (*store)->list("");
  if (!all.is_ok()) return;
  for (const ObjectInfo& info : *all) EXPECT_OK((*store)->remove(info.key));
}

BackendUnderTest open_server_backend() {
  S3Options o = server_options();
  Result<std::unique_ptr<ObjectStore>> store = open_s3_store(o);
  EXPECT_TRUE(store.is_ok()) << store.status().to_string();
  return {store.is_ok() ? std::move(store).value() : nullptr, [o] { remove_prefix(o); }};
}

// The conformance suite exists only with a server; S3Server.Configured reports its absence.
std::vector<BackendFactory> server_backends() {
  if (!server_configured()) return {};
  return {BackendFactory{"s3_rgw", open_server_backend}};
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ObjectStoreConformance);
INSTANTIATE_TEST_SUITE_P(S3, ObjectStoreConformance, ::testing::ValuesIn(server_backends()), backend_name);

TEST(S3Server, Configured) { REQUIRE_S3_SERVER(); }

class S3StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_S3_SERVER();
    options_ = server_options();
    ASSERT_OK_AND_ASSIGN(store_, open_s3_store(options_));
  }
  void TearDown() override {
    if (store_ == nullptr) return;
    store_.reset();
    remove_prefix(options_);
  }
  S3Options options_;
  std::unique_ptr<ObjectStore> store_;
};

TEST_F(S3StoreTest, DescribeNamesBucketPrefixAndEndpoint) {
  EXPECT_EQ(store_->describe(), "s3://" + options_.bucket + "/" + options_.prefix + " (" + options_.endpoint + ")");
}

TEST_F(S3StoreTest, WrongSecretIsClearAndDoesNotLeakIt) {
  S3Options o = options_;
  o.secret_key = "WRONGSECRET-9f8e7d";
  Result<std::unique_ptr<ObjectStore>> store = open_s3_store(o);
  ASSERT_FALSE(store.is_ok());
  const std::string& msg = store.status().message();
  EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition) << msg;
  EXPECT_THAT(msg, HasSubstr("SignatureDoesNotMatch"));
  EXPECT_THAT(msg, HasSubstr("HTTP 403"));
  EXPECT_THAT(msg, HasSubstr(o.endpoint));
  EXPECT_THAT(msg, HasSubstr(o.bucket));
  EXPECT_THAT(msg, Not(HasSubstr(o.secret_key)));

  o.session_token = "SESSIONTOKEN-1a2b3c";
  store = open_s3_store(o);
  ASSERT_FALSE(store.is_ok());
  EXPECT_THAT(store.status().message(), Not(HasSubstr(o.secret_key)));
  EXPECT_THAT(store.status().message(), Not(HasSubstr(o.session_token)));
}

TEST_F(S3StoreTest, MissingBucketNamesIt) {
  S3Options o = options_;
  o.bucket = "tidemark-no-such-bucket-" + std::to_string(::getpid());
  Result<std::unique_ptr<ObjectStore>> store = open_s3_store(o);
  ASSERT_FALSE(store.is_ok());
  EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition) << store.status().to_string();
  EXPECT_THAT(store.status().message(), HasSubstr("NoSuchBucket"));
  EXPECT_THAT(store.status().message(), HasSubstr(o.bucket));
}

TEST_F(S3StoreTest, MultipartRoundTrip) {
  std::string data(20 * 1024 * 1024, '\0');
  std::mt19937_64 rng(7);
  for (char& c : data) c = static_cast<char>(rng());
  ASSERT_OK(store_->put("big/multipart", data));
  ASSERT_OK_AND_ASSIGN(std::string got, store_->get("big/multipart"));
  EXPECT_TRUE(got == data) << "20 MiB object differs after round trip, got " << got.size() << " bytes";
  EXPECT_EQ(store_->list("big/").value(), (std::vector<ObjectInfo>{{"big/multipart", data.size()}}));
  ASSERT_OK(store_->put("big/multipart", "small again"));  // a multipart object can be replaced
  EXPECT_EQ(store_->get("big/multipart").value(), "small again");
}

TEST_F(S3StoreTest, ListPaginatesPastOneThousandKeys) {
  constexpr int kCount = 1050, kThreads = 8;
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = t; i < kCount; i += kThreads) EXPECT_OK(store_->put("p/" + std::to_string(i), "x"));
    });
  }
  for (std::thread& w : writers) w.join();
  ASSERT_OK_AND_ASSIGN(auto listed, store_->list("p/"));
  ASSERT_EQ(listed.size(), static_cast<size_t>(kCount));
  EXPECT_TRUE(std::is_sorted(listed.begin(), listed.end(),
                             [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; }));

  S3Options small_pages = options_;
  small_pages.list_page_size = 7;  // many continuation tokens
  ASSERT_OK_AND_ASSIGN(auto paged_store, open_s3_store(small_pages));
  ASSERT_OK_AND_ASSIGN(auto paged, paged_store->list("p/1"));
  size_t expected = std::count_if(listed.begin(), listed.end(), [](const ObjectInfo& i) { return i.key.starts_with("p/1"); });
  EXPECT_EQ(paged.size(), expected);
}

TEST_F(S3StoreTest, PutIfAbsentRaceAmongManyThreads) {
  constexpr int kThreads = 6;
  std::barrier sync(kThreads);
  std::vector<Status> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      sync.arrive_and_wait();
      results[t] = store_->put_if_absent("contended", "writer" + std::to_string(t));
    });
  }
  for (std::thread& t : threads) t.join();
  int winner = -1;
  for (int t = 0; t < kThreads; ++t) {
    if (results[t].is_ok()) {
      EXPECT_EQ(winner, -1) << "two winners";
      winner = t;
    } else {
      EXPECT_EQ(results[t].code(), StatusCode::kAlreadyExists) << results[t].to_string();
    }
  }
  ASSERT_NE(winner, -1);
  EXPECT_EQ(store_->get("contended").value(), "writer" + std::to_string(winner));
}

TEST_F(S3StoreTest, KeysNeedingPercentEncoding) {
  const std::string key = "odd/a b+c=d&e%f~g,h;i:j@k'l(m)n!o*p$q<r>s\"t";
  ASSERT_OK(store_->put(key, "v"));
  EXPECT_EQ(store_->get(key).value(), "v");
  EXPECT_EQ(store_->list("odd/").value(), (std::vector<ObjectInfo>{{key, 1}}));
  ASSERT_OK(store_->remove(key));
  EXPECT_EQ(store_->get(key).status().code(), StatusCode::kNotFound);
}

// ---- Without a server ----

TEST(S3Url, Parse) {
  EXPECT_EQ(parse_s3_url("s3://bucket/a/b/").value(), (std::pair<std::string, std::string>{"bucket", "a/b"}));
  EXPECT_EQ(parse_s3_url("s3://bucket").value(), (std::pair<std::string, std::string>{"bucket", ""}));
  EXPECT_EQ(parse_s3_url("s3://bucket/").value(), (std::pair<std::string, std::string>{"bucket", ""}));
  EXPECT_EQ(parse_s3_url("http://bucket/x").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(parse_s3_url("s3:///x").status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(parse_s3_url("s3:///x").status().message(), HasSubstr("s3:///x"));
}

class ScopedEnv {
 public:
  ScopedEnv(std::initializer_list<std::pair<const char*, const char*>> vars) {
    for (const char* name : {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
                             "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"}) {
      const char* old = std::getenv(name);
      saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
      ::unsetenv(name);
    }
    for (auto [name, value] : vars) ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    for (auto& [name, value] : saved_) value ? ::setenv(name, value->c_str(), 1) : ::unsetenv(name);
  }

 private:
  std::vector<std::pair<const char*, std::optional<std::string>>> saved_;
};

TEST(S3Settings, EnvironmentFillsUnsetFields) {
  ScopedEnv env({{"AWS_ACCESS_KEY_ID", "AKENV"}, {"AWS_SECRET_ACCESS_KEY", "SKENV"}, {"AWS_SESSION_TOKEN", "TOKENV"},
                 {"AWS_DEFAULT_REGION", "eu-west-1"}, {"AWS_ENDPOINT_URL", "http://127.0.0.1:9/"}});
  persistence::AwsS3Settings settings;
  settings.bucket_name = "b";
  ASSERT_OK_AND_ASSIGN(S3Options o, s3_options_from_settings(settings, "/state/job/"));
  EXPECT_EQ(o.bucket, "b");
  EXPECT_EQ(o.prefix, "state/job");
  EXPECT_EQ(o.access_key, "AKENV");
  EXPECT_EQ(o.secret_key, "SKENV");
  EXPECT_EQ(o.session_token, "TOKENV");
  EXPECT_EQ(o.region, "eu-west-1");
  EXPECT_EQ(o.endpoint, "http://127.0.0.1:9");

  ::setenv("AWS_REGION", "ap-south-1", 1);  // wins over AWS_DEFAULT_REGION
  EXPECT_EQ(s3_options_from_settings(settings, "x").value().region, "ap-south-1");
}

TEST(S3Settings, ExplicitSettingsWinAndDefaults) {
  ScopedEnv env({{"AWS_ACCESS_KEY_ID", "AKENV"}, {"AWS_SECRET_ACCESS_KEY", "SKENV"}, {"AWS_SESSION_TOKEN", "TOKENV"}});
  persistence::AwsS3Settings settings;
  settings.access_key = "AK";
  settings.secret_access_key = "SK";
  settings.with_path_style = true;
  ASSERT_OK_AND_ASSIGN(S3Options o, s3_options_from_settings(settings, "s3://urlbucket/root"));
  EXPECT_EQ(o.bucket, "urlbucket");
  EXPECT_EQ(o.prefix, "root");
  EXPECT_EQ(o.access_key, "AK");
  EXPECT_EQ(o.secret_key, "SK");
  EXPECT_EQ(o.session_token, "") << "a session token from the environment belongs to other keys";
  EXPECT_EQ(o.region, "us-east-1");
  EXPECT_EQ(o.endpoint, "https://s3.us-east-1.amazonaws.com");
  EXPECT_TRUE(o.path_style);

  settings.bucket_name = "other";
  EXPECT_EQ(s3_options_from_settings(settings, "s3://urlbucket/root").status().code(), StatusCode::kInvalidArgument);
}

TEST(S3Settings, MissingBucketOrCredentials) {
  ScopedEnv env({});
  persistence::AwsS3Settings settings;
  settings.access_key = "AK";
  settings.secret_access_key = "SK";
  EXPECT_THAT(s3_options_from_settings(settings, "root").status().message(), HasSubstr("bucket"));
  settings = {};
  settings.bucket_name = "b";
  Result<S3Options> o = s3_options_from_settings(settings, "root");
  EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(o.status().message(), HasSubstr("AWS_ACCESS_KEY_ID"));
}

// A loopback port nothing listens on.
int closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

S3Options fake_options(int port) {
  S3Options o;
  o.endpoint = "http://127.0.0.1:" + std::to_string(port);
  o.bucket = "bucket";
  o.prefix = "root";
  o.access_key = "AK";
  o.secret_key = "SECRET-never-printed";
  return o;
}

TEST(S3Errors, UnreachableEndpointFailsFastNamingIt) {
  S3Options o = fake_options(closed_port());
  auto start = std::chrono::steady_clock::now();
  Result<std::unique_ptr<ObjectStore>> store = open_s3_store(o);
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(store.is_ok());
  EXPECT_EQ(store.status().code(), StatusCode::kIoError);
  EXPECT_THAT(store.status().message(), HasSubstr(o.endpoint));
  EXPECT_THAT(store.status().message(), HasSubstr("6 attempts"));
  EXPECT_THAT(store.status().message(), Not(HasSubstr(o.secret_key)));
  EXPECT_LT(elapsed, std::chrono::seconds(5));
}

TEST(S3Errors, BadOptions) {
  S3Options o = fake_options(1);
  o.endpoint = "127.0.0.1:7480";
  EXPECT_EQ(open_s3_store(o).status().code(), StatusCode::kInvalidArgument);
  o = fake_options(1);
  o.bucket = "";
  EXPECT_EQ(open_s3_store(o).status().code(), StatusCode::kInvalidArgument);
  o = fake_options(1);
  o.prefix = "a/../b";
  EXPECT_EQ(open_s3_store(o).status().code(), StatusCode::kInvalidArgument);
}

// Answers each HTTP request on loopback with the next scripted response (the last one repeats)
// and closes the connection.
class FakeS3 {
 public:
  explicit FakeS3(std::vector<std::string> responses) : responses_(std::move(responses)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeS3() {
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }
  int requests() const { return requests_; }

  static std::string response(int status, const std::string& body) {
    return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\nConnection: close\r\n\r\n" + body;
  }

 private:
  void serve() {
    while (true) {
      int conn = ::accept(fd_, nullptr, nullptr);
      if (conn < 0) return;
      std::string request;
      char buf[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(conn, buf, sizeof buf);
        if (n <= 0) break;
        request.append(buf, n);
      }
      const std::string& reply = responses_[std::min<size_t>(requests_++, responses_.size() - 1)];
      (void)!::write(conn, reply.data(), reply.size());
      ::close(conn);
    }
  }

  std::vector<std::string> responses_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<int> requests_{0};
  std::thread thread_;
};

const std::string kEmptyListing =
    "<?xml version=\"1.0\"?><ListBucketResult><Name>bucket</Name><KeyCount>0</KeyCount>"
    "<IsTruncated>false</IsTruncated></ListBucketResult>";

std::string error_body(const std::string& code) {
  return "<?xml version=\"1.0\"?><Error><Code>" + code + "</Code><Message>m</Message></Error>";
}

TEST(S3Retries, TransientErrorsAreRetried) {
  FakeS3 server({FakeS3::response(503, error_body("SlowDown")), FakeS3::response(500, error_body("InternalError")),
                 FakeS3::response(200, kEmptyListing)});
  ASSERT_OK_AND_ASSIGN(auto store, open_s3_store(fake_options(server.port())));
  EXPECT_EQ(server.requests(), 3);
}

TEST(S3Retries, GiveUpAfterMaxAttemptsNamingTheCode) {
  FakeS3 server({FakeS3::response(503, error_body("SlowDown"))});
  S3Options o = fake_options(server.port());
  o.max_attempts = 3;
  Result<std::unique_ptr<ObjectStore>> store = open_s3_store(o);
  ASSERT_FALSE(store.is_ok());
  EXPECT_EQ(store.status().code(), StatusCode::kIoError);
  EXPECT_THAT(store.status().message(), HasSubstr("HTTP 503 SlowDown"));
  EXPECT_EQ(server.requests(), 3);
}

TEST(S3Retries, ClientErrorsAreNotRetried) {
  FakeS3 server({FakeS3::response(403, error_body("AccessDenied"))});
  Result<std::unique_ptr<ObjectStore>> store = open_s3_store(fake_options(server.port()));
  ASSERT_FALSE(store.is_ok());
  EXPECT_THAT(store.status().message(), HasSubstr("AccessDenied"));
  EXPECT_EQ(server.requests(), 1);
}

TEST(S3Retries, PutIfAbsentAfterLostAnswerComparesBytes) {
  // Attempt 1: 500 (the server may have applied it); attempt 2: 412; then the check's GET.
  for (auto [stored, expect_ok] : {std::pair{"ours", true}, std::pair{"theirs", false}}) {
    FakeS3 server({FakeS3::response(200, kEmptyListing), FakeS3::response(500, error_body("InternalError")),
                   FakeS3::response(412, error_body("PreconditionFailed")), FakeS3::response(200, stored)});
    ASSERT_OK_AND_ASSIGN(auto store, open_s3_store(fake_options(server.port())));
    Status st = store->put_if_absent("k", "ours");
    EXPECT_EQ(st.is_ok(), expect_ok) << st.to_string();
    if (!expect_ok) {
      EXPECT_EQ(st.code(), StatusCode::kAlreadyExists);
    }
    EXPECT_EQ(server.requests(), 4);
  }
}

TEST(S3Retries, DroppedConnectionThenTakenKeyIsOursOnlyIfBytesMatch) {
  // An empty scripted response closes the connection without an answer (CURLE_GOT_NOTHING).
  FakeS3 server({FakeS3::response(200, kEmptyListing), "", FakeS3::response(412, error_body("PreconditionFailed")),
                 FakeS3::response(200, "ours")});
  ASSERT_OK_AND_ASSIGN(auto store, open_s3_store(fake_options(server.port())));
  EXPECT_OK(store->put_if_absent("k", "ours"));
  EXPECT_EQ(server.requests(), 4);
}

TEST(S3Retries, ConditionalRequestConflictIsRetried) {
  FakeS3 server({FakeS3::response(200, kEmptyListing), FakeS3::response(409, error_body("ConditionalRequestConflict")),
                 FakeS3::response(200, "")});
  ASSERT_OK_AND_ASSIGN(auto store, open_s3_store(fake_options(server.port())));
  EXPECT_OK(store->put_if_absent("k", "v"));
  EXPECT_EQ(server.requests(), 3);
}

}  // namespace
}  // namespace tidemark::storage::testing
