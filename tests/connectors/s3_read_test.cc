// io::s3::read against the RGW test server (scripts/s3-server.sh; TIDEMARK_S3_ENDPOINT, bucket
// tidemark-test). Without a server the tests fail, or skip with TIDEMARK_S3_OPTIONAL=1.
#include <gtest/gtest.h>
#include <unistd.h>

#include <sys/wait.h>

#include <cstdio>
#include <thread>

#include "storage/s3_store.h"
#include "util.h"

namespace tidemark::testing {
namespace {

using Rows = std::multiset<std::string>;

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

#define REQUIRE_S3()                                                                 \
  if (env_or("TIDEMARK_S3_ENDPOINT", "").empty()) {                                  \
    std::string how = "start it with scripts/s3-server.sh and set TIDEMARK_S3_ENDPOINT"; \
    if (env_or("TIDEMARK_S3_OPTIONAL", "") == "1") GTEST_SKIP() << how;              \
    FAIL() << "no server: " << how;                                                  \
  }

std::string bucket() { return env_or("TIDEMARK_S3_BUCKET", "tidemark-test"); }

persistence::AwsS3Settings settings() {
  persistence::AwsS3Settings s;
  s.access_key = env_or("TIDEMARK_S3_ACCESS_KEY", "TESTACCESSKEY");
  s.secret_access_key = env_or("TIDEMARK_S3_SECRET_KEY", "TESTSECRETKEY");
  s.endpoint = env_or("TIDEMARK_S3_ENDPOINT", "");
  s.region = "us-east-1";
  s.with_path_style = true;
  return s;
}

// A fresh prefix in the test bucket, its objects written and removed through an S3 store.
class S3Prefix {
 public:
  S3Prefix() {
    prefix_ = "s3read-" + std::to_string(getpid()) + "-" +
              std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
    storage::S3Options o;
    o.endpoint = env_or("TIDEMARK_S3_ENDPOINT", "");
    o.bucket = bucket();
    o.prefix = prefix_;
    o.access_key = settings().access_key;
    o.secret_key = settings().secret_access_key;
    o.path_style = true;
    auto s = storage::open_s3_store(o);
    EXPECT_TRUE(s.is_ok()) << s.status().to_string();
    if (s.is_ok()) store_ = std::move(s).value();
  }
  ~S3Prefix() {
    if (!store_) return;
    auto all = store_->list("");
    if (all.is_ok())
      for (const auto& info : *all) (void)store_->remove(info.key);
  }
  std::string url(const std::string& sub = "") const {
    return "s3://" + bucket() + "/" + prefix_ + (sub.empty() ? "" : "/" + sub);
  }
  void put(const std::string& key, const std::string& data) {
    ASSERT_TRUE(store_);
    Status s = store_->put(key, data);
    ASSERT_TRUE(s.is_ok()) << s.to_string();
  }
  void remove(const std::string& key) {
    ASSERT_TRUE(store_);
    ASSERT_TRUE(store_->remove(key).is_ok());
  }

 private:
  std::string prefix_;
  std::unique_ptr<storage::ObjectStore> store_;
};

io::fs::ReadOptions csv(io::Mode mode = io::Mode::kStatic) {
  io::fs::ReadOptions o;
  o.format = io::Format::kCsv;
  o.schema = Schema{{"w", t_str()}, {"n", t_int()}};
  o.mode = mode;
  o.autocommit_duration_ms = 20;
  return o;
}

Rows run_static(const std::string& url, io::fs::ReadOptions o) {
  Graph g;
  Table t = io::s3::read(g, url, std::move(o), settings());
  Collector c;
  io::subscribe(t, c.callbacks());
  Status s = run(g, quiet_options());
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  return c.live;
}

TEST(S3Read, StaticCsvAndJsonLines) {
  REQUIRE_S3();
  S3Prefix p;
  p.put("csv/a.csv", "w,n\nx,1\ny,2\n");
  p.put("csv/sub/b.csv", "w,n\nz,3\n");
  p.put("csv2/c.csv", "w,n\nnot-under-the-folder,0\n");
  p.put("json/1.jsonl", "{\"w\": \"j\", \"n\": 10}\n{\"w\": \"k\", \"n\": 11}\n");
  p.put("json/2.jsonl", "{\"w\": \"l\", \"n\": 12}\n");
  EXPECT_EQ(run_static(p.url("csv"), csv()), (Rows{"(x, 1)", "(y, 2)", "(z, 3)"}));
  EXPECT_EQ(run_static(p.url("csv") + "/", csv()), (Rows{"(x, 1)", "(y, 2)", "(z, 3)"}));
  auto j = csv();
  j.format = io::Format::kJsonLines;
  EXPECT_EQ(run_static(p.url("json"), j), (Rows{"(j, 10)", "(k, 11)", "(l, 12)"}));
  auto text = csv();
  text.format = io::Format::kPlaintext;
  Rows lines = run_static(p.url("json"), text);
  EXPECT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines.count("(\"{\\\"w\\\": \\\"l\\\", \\\"n\\\": 12}\")") + lines.count("({\"w\": \"l\", \"n\": 12})"), 1u)
      << *lines.begin();
}

TEST(S3Read, BadRowNamesTheObject) {
  REQUIRE_S3();
  S3Prefix p;
  p.put("in/bad.csv", "w,n\nx,oops\n");
  Graph g;
  Table t = io::s3::read(g, p.url("in"), csv(), settings());
  io::subscribe(t, {});
  Status s = run(g, quiet_options());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(p.url("in") + "/bad.csv:2: column 'n'"), std::string::npos) << s.message();
}

TEST(S3Read, Streaming) {
  REQUIRE_S3();
  S3Prefix p;
  p.put("in/a.csv", "w,n\nx,1\ny,2\n");
  Graph g;
  Table t = io::s3::read(g, p.url("in"), csv(io::Mode::kStreaming), settings());
  Collector c;
  io::subscribe(t, c.callbacks());
  std::atomic<bool> stop{false};
  Status status;
  std::thread runner([&] { status = run(g, quiet_options(&stop)); });

  EXPECT_TRUE(c.wait([&] { return c.live == Rows{"(x, 1)", "(y, 2)"}; }));
  p.put("in/sub/b.csv", "w,n\nz,3\nq,4\n");
  EXPECT_TRUE(c.wait([&] { return c.live.size() == 4; }));
  EXPECT_EQ(c.last_changes(), (Rows{"+(z, 3)", "+(q, 4)"}));

  // Same size: found by the periodic re-read and hash comparison.
  p.put("in/a.csv", "w,n\nx,1\ny,3\n");
  EXPECT_TRUE(c.wait([&] { return c.live.count("(y, 3)") == 1; }));
  EXPECT_EQ(c.last_changes(), (Rows{"-(y, 2)", "+(y, 3)"}));

  // Size changed: read at the next poll; exactly the old rows go.
  p.put("in/a.csv", "w,n\nx,1\ny,3\nw,5\n");
  EXPECT_TRUE(c.wait([&] { return c.live.count("(w, 5)") == 1; }));
  EXPECT_EQ(c.last_changes(), (Rows{"+(w, 5)"}));  // unchanged rows cancel out

  p.remove("in/sub/b.csv");
  EXPECT_TRUE(c.wait([&] { return c.live.size() == 3; }));
  EXPECT_EQ(c.last_changes(), (Rows{"-(z, 3)", "-(q, 4)"}));
  EXPECT_EQ(c.live, (Rows{"(x, 1)", "(y, 3)", "(w, 5)"}));

  stop = true;
  runner.join();
  EXPECT_TRUE(status.is_ok()) << status.to_string();
  EXPECT_TRUE(c.ended);
}

TEST(S3Read, PersistenceResumesFromOffsets) {
  REQUIRE_S3();
  S3Prefix p;
  p.put("in/a.csv", "w,n\na,1\nb,2\n");
  p.put("in/b.csv", "w,n\nc,3\n");
  p.put("in/c.csv", "w,n\nd,4\n");
  persistence::Config cfg = persistence::Config::simple_config(persistence::Backend::memory());
  auto run_once = [&](Rows* changes) {
    Graph g;
    Table t = io::s3::read(g, p.url("in"), csv(), settings());
    Collector c;
    c.strict = false;  // the second run retracts rows of the first
    io::subscribe(t, c.callbacks());
    RunOptions o = quiet_options();
    o.log = [](const std::string&) {};
    o.persistence_config = cfg;
    Status s = run(g, o);
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    for (const auto& [time, rows] : c.by_time) changes->insert(rows.begin(), rows.end());
  };
  Rows first, second, third;
  run_once(&first);
  EXPECT_EQ(first, (Rows{"+(a, 1)", "+(b, 2)", "+(c, 3)", "+(d, 4)"}));
  p.remove("in/a.csv");
  p.put("in/d.csv", "w,n\ne,5\n");
  p.put("in/c.csv", "w,n\nD,4\n");  // same size
  run_once(&second);
  EXPECT_EQ(second, (Rows{"-(a, 1)", "-(b, 2)", "+(e, 5)", "-(d, 4)", "+(D, 4)"}));
  run_once(&third);
  EXPECT_TRUE(third.empty()) << third.size();
}

TEST(S3Read, MisconfigurationFailsAtStart) {
  REQUIRE_S3();
  S3Prefix p;
  auto fails = [&](const std::string& url, persistence::AwsS3Settings s) {
    Graph g;
    Table t = io::s3::read(g, url, csv(), s);
    io::subscribe(t, {});
    Status st = run(g, quiet_options());
    EXPECT_FALSE(st.is_ok());
    return st.message();
  };
  auto wrong = settings();
  wrong.secret_access_key = "WRONGSECRET";
  std::string m = fails(p.url("in"), wrong);
  EXPECT_NE(m.find(bucket()), std::string::npos) << m;
  EXPECT_NE(m.find(settings().endpoint), std::string::npos) << m;
  m = fails("s3://tidemark-no-such-bucket/in", settings());
  EXPECT_NE(m.find("tidemark-no-such-bucket"), std::string::npos) << m;
  EXPECT_NE(m.find(settings().endpoint), std::string::npos) << m;
  auto unreachable = settings();
  unreachable.endpoint = "http://127.0.0.1:1";
  m = fails(p.url("in"), unreachable);
  EXPECT_NE(m.find("http://127.0.0.1:1"), std::string::npos) << m;
  EXPECT_NE(m.find(bucket()), std::string::npos) << m;
  Graph g;
  EXPECT_THROW(io::s3::read(g, "/local/path", csv(), settings()), GraphError);
}

TEST(S3Read, WordcountInputS3) {
  REQUIRE_S3();
  S3Prefix p;
  p.put("in/a.txt", "b a\nA a\n");
  p.put("in/sub/b.txt", "a c\n");
  TempDir d;
  std::string cmd = "AWS_ACCESS_KEY_ID=" + settings().access_key + " AWS_SECRET_ACCESS_KEY=" +
                    settings().secret_access_key + " AWS_ENDPOINT_URL=" + settings().endpoint + " AWS_REGION=us-east-1 " +
                    std::string(TIDEMARK_BIN_DIR) + "/wordcount --input-s3 " + p.url("in") + " --output " + d / "out.csv" +
                    " 2>&1";
  FILE* f = popen(cmd.c_str(), "r");
  ASSERT_TRUE(f);
  std::string output;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) output.append(buf, n);
  int st = pclose(f);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << output;
  std::string out = read_text(d / "out.csv");
  for (const char* line : {"a,3,", "b,1,", "c,1,", "A,1,"}) EXPECT_NE(out.find(std::string("\n") + line), std::string::npos) << out;
}

}  // namespace
}  // namespace tidemark::testing
