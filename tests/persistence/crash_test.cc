// The crash test: wordcount in streaming mode with persistence, files added while it runs,
// killed with SIGKILL at random moments and restarted each time. The output file must be the
// change stream of one clean run: every word's changes form one chain (+1, -1 +2, -2 +3, ...)
// with nothing duplicated or lost, ending at the exact counts of the input.
//
// TIDEMARK_CRASH_ROUNDS (default 12) sets the number of kills; TIDEMARK_CRASH_SEED the seed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "persistence/process_util.h"

namespace {

namespace fs = std::filesystem;

// `workers`: the --workers of each run in turn (cycled), so restarts may change the count.
void crash_test(bool s3, int default_rounds, const char* mode = "persisting", std::vector<int> workers = {1}) {
  int rounds = default_rounds;
  if (const char* r = std::getenv("TIDEMARK_CRASH_ROUNDS")) rounds = std::atoi(r);
  uint64_t seed = 2026;
  if (const char* s = std::getenv("TIDEMARK_CRASH_SEED")) seed = std::strtoull(s, nullptr, 10);
  std::mt19937_64 rng(seed);

  std::string counts;
  for (int w : workers) counts += std::to_string(w);
  fs::path root = fs::temp_directory_path() / ("tidemark-crash-" + std::string(s3 ? "s3-" : "") + mode + "-w" + counts +
                                                "-" + std::to_string(getpid()));
  fs::remove_all(root);
  fs::path input = root / "input", output = root / "counts.csv", log = root / "log.txt";
  fs::create_directories(input);
  std::string bin = std::string(TIDEMARK_BIN_DIR) + "/wordcount";
  std::vector<std::string> common = {bin, "--input", input.string(), "--output", output.string()};
  for (const auto& a : storage_args(root, s3)) common.push_back(a);
  for (const char* a : {"--persistence-mode", mode}) common.push_back(a);

  std::map<std::string, int64_t> expected;
  int files = 0;
  add_file(input, files++, rng, expected);
  int killed_running = 0;
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::string> args = common;
    for (const char* a : {"--mode", "streaming", "--autocommit-ms", "20", "--snapshot-interval-ms", "150"}) args.push_back(a);
    args.push_back("--workers");
    args.push_back(std::to_string(workers[static_cast<size_t>(round) % workers.size()]));
    pid_t pid = spawn(args, log);
    // Add files while it runs, then kill it at a random moment (the fault being injected).
    int adds = static_cast<int>(rng() % 4);
    for (int i = 0; i < adds; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 60));
      add_file(input, files++, rng, expected);
    }
    // Remote storage makes start-up slower: give the process time to commit before most kills.
    std::this_thread::sleep_for(std::chrono::milliseconds((s3 ? 250 : 0) + rng() % (s3 ? 700 : 250)));
    kill(pid, SIGKILL);
    int code = wait_exit(pid);
    if (code == 128 + SIGKILL) ++killed_running;
    else ASSERT_EQ(code, 0) << "wordcount failed; see " << log;
  }
  // A final static run picks up whatever the killed runs had not committed, then exits.
  std::vector<std::string> args = common;
  for (const char* a : {"--mode", "static", "--workers"}) args.push_back(a);
  args.push_back(std::to_string(workers[static_cast<size_t>(rounds) % workers.size()]));
  ASSERT_EQ(wait_exit(spawn(args, log)), 0) << "final run failed; see " << log;
  EXPECT_GE(killed_running, rounds / 2) << "most kills should hit a running process";

  int n = 0;
  check_change_stream(output, expected, &n);
  std::printf("crash test (%s, %s, workers %s): %d kills (%d of a running process), %d files, %d output lines\n",
              s3 ? "state on S3" : "state on local disk", mode, counts.c_str(), rounds, killed_running, files, n);
  if (!::testing::Test::HasFailure()) fs::remove_all(root);
}

TEST(CrashTest, SigkillAtRandomMomentsGivesExactlyOnceOutput) { crash_test(false, 12); }

// Operator persisting: each restart loads the count's state and the archived file contents
// instead of replaying input; the output must still be exactly-once.
TEST(CrashTest, OperatorPersistingSigkillGivesExactlyOnceOutput) { crash_test(false, 12, "operator_persisting"); }

// Several workers: the file source split across them, every commit gathering all shards.
TEST(CrashTest, SigkillAtTwoWorkersGivesExactlyOnceOutput) { crash_test(false, 12, "persisting", {2}); }
TEST(CrashTest, OperatorPersistingSigkillAtTwoWorkersGivesExactlyOnceOutput) {
  crash_test(false, 12, "operator_persisting", {2});
}
// Every restart of the streaming run, files arriving meanwhile, changes the worker count: the
// stored offsets and operator states are divided among the new count.
TEST(CrashTest, SigkillWhileChangingTheWorkerCountGivesExactlyOnceOutput) {
  crash_test(false, 12, "persisting", {2, 3, 1});
}
TEST(CrashTest, OperatorPersistingSigkillWhileChangingTheWorkerCountGivesExactlyOnceOutput) {
  crash_test(false, 12, "operator_persisting", {3, 1, 2});
}

TEST(CrashTest, SigkillWithStateOnS3GivesExactlyOnceOutput) {
  REQUIRE_TEST_S3();
  crash_test(true, 10);
}

// State on S3 while restarts change the worker count (2, 1, 3, ...).
TEST(CrashTest, SigkillWithStateOnS3WhileChangingTheWorkerCountGivesExactlyOnceOutput) {
  REQUIRE_TEST_S3();
  crash_test(true, 6, "operator_persisting", {2, 1, 3});
}

TEST(CrashTest, OperatorPersistingSigkillWithStateOnS3GivesExactlyOnceOutput) {
  REQUIRE_TEST_S3();
  crash_test(true, 8, "operator_persisting");
}

// Two processes on one storage: the second fails at once, naming the storage and the holder;
// once the holder is killed, a restart takes the storage over.
void fencing_test(bool s3) {
  fs::path root = fs::temp_directory_path() / ("tidemark-fence-" + std::string(s3 ? "s3-" : "") +
                                                std::to_string(getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "input");
  std::ofstream(root / "input" / "a.txt") << "one two\n";
  std::string bin = std::string(TIDEMARK_BIN_DIR) + "/wordcount";
  auto args = [&](const char* out, const char* mode) {
    std::vector<std::string> a{bin, "--input", (root / "input").string(), "--output", (root / out).string(),
                               "--mode", mode};
    for (const auto& x : storage_args(root, s3)) a.push_back(x);
    return a;
  };
  auto read = [](const fs::path& p) {
    std::ifstream in(p);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  pid_t holder = spawn(args("a.csv", "streaming"), root / "holder.log");
  // Wait (bounded) until the holder reports that it has the storage (logged after locking).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (read(root / "holder.log").find("persistence: storage") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_NE(read(root / "holder.log").find("persistence: storage"), std::string::npos) << read(root / "holder.log");
  pid_t second = spawn(args("b.csv", "static"), root / "second.log");
  EXPECT_EQ(wait_exit(second), 1);
  std::string text = read(root / "second.log");
  EXPECT_NE(text.find("in use by pid " + std::to_string(holder)), std::string::npos) << text;
  EXPECT_NE(text.find(s3 ? std::string("s3://") : (root / "state").string()), std::string::npos) << text;
  kill(holder, SIGKILL);
  wait_exit(holder);
  // The dead holder's lock does not block a restart.
  EXPECT_EQ(wait_exit(spawn(args("a.csv", "static"), root / "third.log")), 0) << read(root / "third.log");
  if (!::testing::Test::HasFailure()) fs::remove_all(root);
}

TEST(Fencing, SecondProcessIsRefusedAndDeadHolderDoesNotBlock) { fencing_test(false); }

// Replay modes emit while replaying: the outputs must be open by then (a CSV output used to
// fail with "Bad file descriptor").
TEST(Replay, BatchAndSpeedrunReplayIntoACsvOutput) {
  fs::path root = fs::temp_directory_path() / ("tidemark-replay-" + std::to_string(getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "input");
  std::ofstream(root / "input" / "a.txt") << "a b a\n";
  std::string bin = std::string(TIDEMARK_BIN_DIR) + "/wordcount";
  auto run = [&](const std::string& out, const std::string& mode, const std::string& access) {
    return wait_exit(spawn({bin, "--input", (root / "input").string(), "--output", (root / out).string(),
                            "--persistent-storage", (root / "rec").string(), "--persistence-mode", mode,
                            "--snapshot-access", access, "--continue-after-replay", "false"},
                           root / "log.txt"));
  };
  ASSERT_EQ(run("recorded.csv", "persisting", "record"), 0) << read_text_file(root / "log.txt");
  for (const char* mode : {"batch", "speedrun_replay"}) {
    std::string out = std::string(mode) + ".csv";
    ASSERT_EQ(run(out, mode, "replay"), 0) << read_text_file(root / "log.txt");
    std::string text = read_text_file(root / out);
    EXPECT_NE(text.find("\na,2,"), std::string::npos) << mode << ":\n" << text;
    EXPECT_NE(text.find("\nb,1,"), std::string::npos) << mode << ":\n" << text;
  }
  if (!::testing::Test::HasFailure()) fs::remove_all(root);
}

TEST(Fencing, OnS3SecondProcessIsRefusedAndDeadHolderDoesNotBlock) {
  REQUIRE_TEST_S3();
  fencing_test(true);
}

}  // namespace
