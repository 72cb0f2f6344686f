// The `tidemark` tool (bin/tidemark) on real state written by bin/wordcount.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <chrono>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "connectors/util.h"
#include "persistence/inspect.h"
#include "persistence/manifest.h"
#include "storage/lock.h"

namespace tidemark::testing {
namespace {

namespace fs = std::filesystem;

Proc tool(const std::string& args, const std::string& env = "") { return run_bin("tidemark", args, env); }

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Every file under `dir` (dot-files included) with its bytes.
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = read_text(e.path().string());
  return files;
}

void flip_byte(const std::string& path, size_t at) {
  std::string data = read_text(path);
  data[at] = static_cast<char>(data[at] ^ 0x5a);
  write_file(path, data);
}

// State from two wordcount runs, one chunk each, on source "input" and sink "output". Each run
// publishes its fencing commit, then its data commit: run 1 writes manifests 1 and 2, run 2
// (epoch 3) manifests 3 and 4; older manifests are deleted.
class ToolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(dir / "in/a.txt", "the quick brown fox\njumps over the lazy dog\n");
    run_wordcount();
    write_file(dir / "in/b.txt", "the end\n");
    run_wordcount();
    for (const auto& e : fs::recursive_directory_iterator(storage + "/streams")) chunks.push_back(e.path().string());
    chunks.erase(std::remove_if(chunks.begin(), chunks.end(), [](const std::string& p) { return !fs::is_regular_file(p); }),
                 chunks.end());
    std::sort(chunks.begin(), chunks.end());
    ASSERT_EQ(chunks.size(), 2u);
  }
  void run_wordcount() {
    Proc p = run_bin("wordcount", "--input " + dir / "in" + " --output " + dir / "out.csv" +
                                      " --persistent-storage " + storage);
    ASSERT_EQ(p.exit_code, 0) << p.output;
  }
  std::string key_of(const std::string& path) const { return fs::relative(path, storage).string(); }
  // Runs verify, checking that it leaves every byte of the storage as it was.
  Proc verify() {
    auto before = snapshot(storage);
    Proc p = tool("persistence verify " + storage);
    EXPECT_EQ(snapshot(storage), before) << "verify modified the storage";
    return p;
  }

  TempDir dir;
  std::string storage = dir / "state";
  std::vector<std::string> chunks;  // chunk files, oldest first
};

TEST_F(ToolTest, InspectShowsSourcesChunksAndSinks) {
  Proc p = tool("persistence inspect " + storage);
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_TRUE(contains(p.output, "(seq 4, run 3)")) << p.output;
  EXPECT_TRUE(contains(p.output, "mode       persisting")) << p.output;
  EXPECT_TRUE(contains(p.output, "lock       none")) << p.output;
  std::stringstream ss(p.output);
  std::string line, source_line, sink_line;
  while (std::getline(ss, line)) {
    if (line.starts_with("input ")) source_line = line;
    if (line.starts_with("output ")) sink_line = line;
  }
  // SOURCE SCHEMA CHUNKS ...: "input  data: str  2  ..."
  EXPECT_TRUE(contains(source_line, "data: str       2")) << p.output;
  EXPECT_TRUE(sink_line.ends_with(" " + std::to_string(fs::file_size(dir / "out.csv")))) << p.output;
  EXPECT_TRUE(contains(p.output, "unreferenced chunks (deleted at the next start): none")) << p.output;
}

TEST_F(ToolTest, InspectJson) {
  Proc p = tool("persistence inspect --json file://" + storage);
  ASSERT_EQ(p.exit_code, 0) << p.output;
  auto j = nlohmann::json::parse(p.output);
  EXPECT_EQ(j["manifest"]["seq"], 4);
  EXPECT_EQ(j["manifest"]["run"], 3);
  EXPECT_EQ(j["manifest"]["format_version"], persistence::kManifestFormatVersion);
  EXPECT_EQ(j["manifest"]["mode"], "persisting");
  EXPECT_TRUE(j["manifest"]["committed_time"].get<std::string>().ends_with("Z"));
  EXPECT_TRUE(j["lock"].is_null());  // released: no holder
  EXPECT_EQ(j["lock_released_by"]["holder"].get<std::string>().rfind("tidemark pid ", 0), 0u);
  ASSERT_EQ(j["sources"].size(), 1u);
  const auto& src = j["sources"][0];
  EXPECT_EQ(src["id"], "input");
  EXPECT_EQ(src["schema"], "data: str");
  EXPECT_EQ(src["chunks"], 2);
  EXPECT_EQ(src["bytes"], fs::file_size(chunks[0]) + fs::file_size(chunks[1]));
  EXPECT_GT(src["records"].get<uint64_t>(), 0u);
  EXPECT_LE(src["min_time"].get<uint64_t>(), src["max_time"].get<uint64_t>());
  EXPECT_GT(src["offset_bytes"].get<uint64_t>(), 0u);
  bool found_sink = false;
  for (const auto& s : j["sinks"])
    if (s["id"] == "output") {
      found_sink = true;
      EXPECT_EQ(s["position"], std::to_string(fs::file_size(dir / "out.csv")));
    }
  EXPECT_TRUE(found_sink) << p.output;
  EXPECT_EQ(j["totals"]["objects"], 4);  // manifest + 2 chunks + the released lock
  EXPECT_TRUE(j["garbage"].empty());
  EXPECT_TRUE(j["older_manifests"].empty());
}

TEST_F(ToolTest, InspectShowsLockOlderManifestsAndGarbage) {
  storage::LockHolderInfo lock;
  lock.holder = "wordcount";
  lock.pid = 4242;
  lock.host = "otherhost";
  lock.started_at_ms = 1764046842311;
  lock.lease_expires_at_ms = 1764046902311;
  lock.lease_ms = 60000;
  lock.token = "0123456789abcdef";
  write_file(storage + "/lock", storage::encode_lock_info(lock));
  write_file(storage + "/manifests/00000000000000000001", read_text(storage + "/manifests/00000000000000000004"));
  write_file(chunks[0] + "9", read_text(chunks[0]));  // as left by a crashed commit
  Proc p = tool("persistence inspect " + storage);
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_TRUE(contains(p.output, "pid 4242 on host otherhost (wordcount)")) << p.output;
  EXPECT_TRUE(contains(p.output, "since 2025-11-25T05:00:42.311Z, lease expired 2025-11-25T05:01:42.311Z")) << p.output;
  EXPECT_TRUE(contains(p.output, "manifests/00000000000000000001")) << p.output;
  EXPECT_TRUE(contains(p.output, key_of(chunks[0]) + "9")) << p.output;
  auto j = nlohmann::json::parse(tool("persistence inspect --json " + storage).output);
  EXPECT_EQ(j["lock"]["pid"], 4242);
  EXPECT_EQ(j["lock"]["lease_expired"], true);
  EXPECT_EQ(j["garbage"][0]["key"], key_of(chunks[0]) + "9");
  EXPECT_EQ(j["older_manifests"][0]["key"], "manifests/00000000000000000001");
}

TEST_F(ToolTest, VerifyPassesOnCleanState) {
  Proc p = verify();
  EXPECT_EQ(p.exit_code, 0) << p.output;
  EXPECT_TRUE(contains(p.output, "verified 4 objects")) << p.output;
  EXPECT_TRUE(contains(p.output, ": no damage")) << p.output;
}

TEST_F(ToolTest, VerifyReportsFlippedByte) {
  flip_byte(chunks[1], fs::file_size(chunks[1]) / 2);
  Proc p = verify();
  EXPECT_EQ(p.exit_code, 1) << p.output;
  EXPECT_TRUE(contains(p.output, "chunk '" + key_of(chunks[1]) + "' is corrupt at byte ")) << p.output;
  EXPECT_TRUE(contains(p.output, "1 problem found")) << p.output;
}

TEST_F(ToolTest, VerifyReportsTruncatedChunk) {
  fs::resize_file(chunks[0], fs::file_size(chunks[0]) - 5);
  Proc p = verify();
  EXPECT_EQ(p.exit_code, 1) << p.output;
  EXPECT_TRUE(contains(p.output, "chunk '" + key_of(chunks[0]) + "': torn tail at byte ")) << p.output;
  EXPECT_TRUE(contains(p.output, key_of(chunks[0]) + "' of source 'input' listed by manifest")) << p.output;
}

TEST_F(ToolTest, VerifyReportsMissingChunk) {
  fs::remove(chunks[0]);
  Proc p = verify();
  EXPECT_EQ(p.exit_code, 1) << p.output;
  EXPECT_TRUE(contains(p.output, "chunk '" + key_of(chunks[0]) + "' of source 'input' listed by manifest "
                                 "'manifests/00000000000000000004' is missing"))
      << p.output;
}

TEST_F(ToolTest, VerifyReportsManifestDisagreeingWithChunk) {
  std::string path = storage + "/manifests/00000000000000000004";
  auto m = persistence::decode_manifest("m", read_text(path));
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  auto& chunk = m->sources.at(0).chunks.at(1);
  uint64_t records = chunk.records;
  ++chunk.records;
  write_file(path, persistence::encode_manifest(*m).value());
  Proc p = verify();
  EXPECT_EQ(p.exit_code, 1) << p.output;
  EXPECT_TRUE(contains(p.output, key_of(chunks[1]) + "' of source 'input' listed by manifest "
                                 "'manifests/00000000000000000004' holds " + std::to_string(records) +
                                 " records, the manifest says " + std::to_string(records + 1)))
      << p.output;
}

TEST_F(ToolTest, NewerManifestFormatIsReportedClearly) {
  std::string path = storage + "/manifests/00000000000000000004";
  auto m = persistence::decode_manifest("m", read_text(path));
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  m->format_version = persistence::kManifestFormatVersion + 1;
  write_file(path, persistence::encode_manifest(*m).value());
  const auto v_now = std::to_string(persistence::kManifestFormatVersion);
  const auto v_new = std::to_string(persistence::kManifestFormatVersion + 1);
  std::string expected = "manifest 'manifests/00000000000000000004' has format version " + v_new +
                         ", this build reads up to " + v_now + "; upgrade Tidemark";
  Proc v = verify();
  EXPECT_EQ(v.exit_code, 1) << v.output;
  EXPECT_TRUE(contains(v.output, expected)) << v.output;
  Proc i = tool("persistence inspect " + storage);
  EXPECT_EQ(i.exit_code, 1) << i.output;
  EXPECT_TRUE(contains(i.output, expected)) << i.output;
}

TEST(Tool, UsageErrorsExit2) {
  TempDir d;
  EXPECT_EQ(tool("").exit_code, 2);
  EXPECT_EQ(tool("persistence").exit_code, 2);
  EXPECT_EQ(tool("persistence inspect").exit_code, 2);
  EXPECT_EQ(tool("persistence compact " + d.path()).exit_code, 2);
  EXPECT_EQ(tool("persistence verify " + d.path() + " --bogus").exit_code, 2);
  Proc absent = tool("persistence verify " + d / "absent");
  EXPECT_EQ(absent.exit_code, 2);
  EXPECT_TRUE(contains(absent.output, d / "absent")) << absent.output;
  EXPECT_FALSE(fs::exists(d / "absent"));  // nothing is created
  // An S3 storage whose endpoint does not answer: a usage-level error naming the endpoint.
  Proc s3 = tool("persistence inspect s3://bucket/state",
                 "AWS_ENDPOINT_URL=http://127.0.0.1:1 AWS_ACCESS_KEY_ID=k AWS_SECRET_ACCESS_KEY=s AWS_REGION=us-east-1 ");
  EXPECT_EQ(s3.exit_code, 2);
  EXPECT_TRUE(contains(s3.output, "127.0.0.1:1")) << s3.output;
  Proc gs = tool("persistence inspect gs://bucket/state");
  EXPECT_EQ(gs.exit_code, 2);
  EXPECT_TRUE(contains(gs.output, "gs:// storage is not supported")) << gs.output;

  Proc empty = tool("persistence inspect " + d.path());
  EXPECT_EQ(empty.exit_code, 0) << empty.output;
  EXPECT_TRUE(contains(empty.output, "nothing has been committed")) << empty.output;
  EXPECT_EQ(tool("persistence verify " + d.path()).exit_code, 0);

  Proc help = tool("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_TRUE(contains(help.output, "persistence")) << help.output;
  Proc phelp = tool("persistence --help");
  EXPECT_EQ(phelp.exit_code, 0);
  EXPECT_TRUE(contains(phelp.output, "inspect") && contains(phelp.output, "verify")) << phelp.output;
}

TEST(Tool, ReadOnlyStoreRefusesWrites) {
  TempDir d;
  auto store = persistence::open_storage_read_only(d.path());
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  EXPECT_EQ((*store)->put("a", "x").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ((*store)->put_if_absent("a", "x").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ((*store)->remove("a").code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(snapshot(d.path()).empty());
}

// inspect and verify on state kept on S3 (the test RGW started by scripts/test.sh).
TEST(Tool, InspectAndVerifyStateOnS3) {
  const char* endpoint = std::getenv("TIDEMARK_S3_ENDPOINT");
  if (!endpoint) {
    const char* how = "start scripts/s3-server.sh and set TIDEMARK_S3_ENDPOINT (or TIDEMARK_S3_OPTIONAL=1 to skip)";
    if (const char* o = std::getenv("TIDEMARK_S3_OPTIONAL"); o && std::string(o) == "1") GTEST_SKIP() << how;
    FAIL() << "no S3 server: " << how;
  }
  TempDir dir;
  write_file(dir / "in/a.txt", "alpha beta\nbeta\n");
  std::string env = std::string("AWS_ENDPOINT_URL=") + endpoint +
                    " AWS_ACCESS_KEY_ID=TESTACCESSKEY AWS_SECRET_ACCESS_KEY=TESTSECRETKEY AWS_REGION=us-east-1 ";
  std::string url = "s3://tidemark-test/tool-" + std::to_string(getpid()) + "-" +
                    std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  Proc wc = run_bin("wordcount", "--input " + dir / "in" + " --output " + dir / "out.csv" +
                                     " --s3-persistent-storage " + url, env);
  ASSERT_EQ(wc.exit_code, 0) << wc.output;
  Proc inspect = tool("persistence inspect " + url, env);
  EXPECT_EQ(inspect.exit_code, 0) << inspect.output;
  EXPECT_TRUE(contains(inspect.output, "input")) << inspect.output;
  Proc verify = tool("persistence verify " + url, env);
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_TRUE(contains(verify.output, "no damage")) << verify.output;
}

}  // namespace
}  // namespace tidemark::testing

namespace tidemark::testing {
namespace {

// Operator persisting state: inspect lists the operator with its chunks and entries and the
// archived contents; verify checks operator chunks and reports damage in one by key.
TEST(ToolOperatorState, InspectAndVerifyOperatorPersistingState) {
  TempDir dir;
  std::string storage = dir / "state";
  write_file(dir / "in/a.txt", "the quick brown fox\njumps over the lazy dog\n");
  auto wordcount = [&] {
    Proc p = run_bin("wordcount", "--input " + dir / "in" + " --output " + dir / "out.csv" + " --persistent-storage " +
                                      storage + " --persistence-mode operator_persisting");
    ASSERT_EQ(p.exit_code, 0) << p.output;
  };
  wordcount();
  write_file(dir / "in/b.txt", "the end\n");
  wordcount();
  Proc p = tool("persistence inspect --json " + storage);
  ASSERT_EQ(p.exit_code, 0) << p.output;
  auto j = nlohmann::json::parse(p.output);
  EXPECT_EQ(j["manifest"]["mode"], "operator_persisting");
  ASSERT_EQ(j["operators"].size(), 1u) << p.output;
  EXPECT_EQ(j["operators"][0]["kind"], "groupby");
  EXPECT_GE(j["operators"][0]["records"].get<uint64_t>(), 9u);  // 9 distinct words (one chunk after a clean stop)
  EXPECT_EQ(j["operators"][0]["chunks"], 1);
  EXPECT_EQ(j["contents"]["objects"], 2);  // a.txt and b.txt
  Proc text = tool("persistence inspect " + storage);
  EXPECT_TRUE(contains(text.output, "OPERATOR")) << text.output;
  EXPECT_TRUE(contains(text.output, "archived file contents: 2")) << text.output;
  Proc ok = tool("persistence verify " + storage);
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  std::vector<std::string> op_chunks;
  for (const auto& e : fs::recursive_directory_iterator(storage + "/operators"))
    if (e.is_regular_file()) op_chunks.push_back(e.path().string());
  ASSERT_EQ(op_chunks.size(), 1u);
  flip_byte(op_chunks[0], read_text(op_chunks[0]).size() / 2);
  Proc bad = tool("persistence verify " + storage);
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_TRUE(contains(bad.output, fs::relative(op_chunks[0], storage).string())) << bad.output;
}

}  // namespace
}  // namespace tidemark::testing
