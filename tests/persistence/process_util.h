// Helpers for tests that run build/bin/wordcount as child processes (crash and fencing tests).
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;

pid_t spawn(const std::vector<std::string>& args, const fs::path& log) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "a", stderr);
    (void)f;
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

std::string read_text_file(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Polls `done` every 5 ms for at most `limit`; true once it holds. For waiting on a condition a
// child process makes observable (a log line, an output row), never for ordering by time.
template <typename F>
bool wait_until(F&& done, std::chrono::milliseconds limit = std::chrono::milliseconds(60'000)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// Writes a file atomically (hidden temp + rename), as a well-behaved producer does.
void add_file(const fs::path& dir, int n, std::mt19937_64& rng, std::map<std::string, int64_t>& expected) {
  static const char* vocab[] = {"alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"};
  std::ostringstream out;
  int lines = 1 + static_cast<int>(rng() % 20);
  for (int l = 0; l < lines; ++l) {
    int words = 1 + static_cast<int>(rng() % 6);
    for (int w = 0; w < words; ++w) {
      const char* word = vocab[rng() % 8];
      out << (w ? " " : "") << word;
      ++expected[word];
    }
    out << "\n";
  }
  fs::path tmp = dir / (".tmp-" + std::to_string(n));
  std::ofstream(tmp) << out.str();
  fs::rename(tmp, dir / ("part-" + std::to_string(n) + ".txt"));
}

// Storage flags for wordcount: a local directory, or a fresh prefix on the test RGW.
std::vector<std::string> storage_args(const fs::path& root, bool s3) {
  if (!s3) return {"--persistent-storage", (root / "state").string()};
  const char* bucket = std::getenv("TIDEMARK_S3_BUCKET");
  return {"--s3-persistent-storage",
          std::string("s3://") + (bucket ? bucket : "tidemark-test") + "/" + root.filename().string()};
}

// Points child processes at the test RGW (credentials of the test user).
bool use_test_s3() {
  const char* endpoint = std::getenv("TIDEMARK_S3_ENDPOINT");
  if (!endpoint) return false;
  const char* ak = std::getenv("TIDEMARK_S3_ACCESS_KEY");
  const char* sk = std::getenv("TIDEMARK_S3_SECRET_KEY");
  setenv("AWS_ENDPOINT_URL", endpoint, 1);
  setenv("AWS_ACCESS_KEY_ID", ak ? ak : "TESTACCESSKEY", 1);
  setenv("AWS_SECRET_ACCESS_KEY", sk ? sk : "TESTSECRETKEY", 1);
  setenv("AWS_REGION", "us-east-1", 1);
  return true;
}

#define REQUIRE_TEST_S3()                                                                        \
  if (!use_test_s3()) {                                                                          \
    const char* how = "start it with scripts/s3-server.sh and set TIDEMARK_S3_ENDPOINT "           \
                      "(or TIDEMARK_S3_OPTIONAL=1 to skip)";                                     \
    if (const char* o = std::getenv("TIDEMARK_S3_OPTIONAL"); o && std::string(o) == "1") GTEST_SKIP() << how; \
    FAIL() << "no S3 server: " << how;                                                            \
  }

// Checks a wordcount output file: one header, then per word one chain of changes (+1, -1 +2,
// -2 +3, ...) with nothing duplicated or lost, ending at `expected`. *lines gets the line count.
void check_change_stream(const fs::path& output, const std::map<std::string, int64_t>& expected, int* lines) {
  int& n = *lines;
  std::ifstream in(output);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_EQ(line, "word,count,time,diff");
  std::map<std::string, int64_t> current;   // live count per word (absent: none)
  std::map<std::string, int64_t> last_seen;  // last inserted count per word
  n = 1;
  while (std::getline(in, line)) {
    ++n;
    std::stringstream ss(line);
    std::string word, count, time, diff;
    ASSERT_TRUE(std::getline(ss, word, ',') && std::getline(ss, count, ',') && std::getline(ss, time, ',') &&
                std::getline(ss, diff, ','))
        << "line " << n << ": " << line;
    int64_t c = std::stoll(count);
    if (diff == "-1") {
      ASSERT_TRUE(current.count(word)) << "line " << n << ": retraction of " << word << " which is not live";
      ASSERT_EQ(current[word], c) << "line " << n << ": retraction of a count that is not the live one";
      current.erase(word);
    } else {
      ASSERT_EQ(diff, "1") << "line " << n;
      ASSERT_FALSE(current.count(word)) << "line " << n << ": duplicate insertion for " << word;
      ASSERT_GT(c, last_seen[word]) << "line " << n << ": count of " << word << " went back or repeated";
      current[word] = c;
      last_seen[word] = c;
    }
  }
  EXPECT_EQ(current, expected);
}

}  // namespace
