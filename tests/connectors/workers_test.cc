// Worker threads with real connectors: the file source split across workers, the wordcount
// CLI at --workers 2, persistence falling back to 1 worker.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <regex>

#include "util.h"

namespace tidemark::testing {
namespace {

struct CountRun {
  Status status;
  std::map<std::string, std::string> counts;  // word -> count (the final table)
  std::vector<std::string> log;
};

// Reads every file under `dir` (CSV word,n), counts rows and sums n per word.
CountRun count_words(const std::string& dir, size_t workers) {
  Graph g;
  io::fs::ReadOptions o;
  o.format = io::Format::kCsv;
  o.schema = Schema{{"word", t_str()}, {"n", t_int()}};
  Table t = io::fs::read(g, dir, o);
  Table counts = t.groupby({"word"}).reduce({{"word", col("word")}, {"rows", reducers::count()}, {"n", reducers::sum(col("n"))}});
  CountRun r;
  std::map<std::string, std::string> live;
  io::subscribe(counts,
                {[&](const Key&, const Row& row, uint64_t, bool add) {
                   std::string w = row[0].as_string();
                   if (add) r.counts[w] = row_string(row);
                   else if (r.counts[w] == row_string(row)) r.counts.erase(w);
                 },
                 nullptr, nullptr});
  RunOptions opts = quiet_options();
  opts.workers = workers;
  opts.log = [&](const std::string& m) { r.log.push_back(m); };
  r.status = run(g, opts);
  return r;
}

// "source rows read per worker: 10, 20" -> {10, 20}
std::vector<uint64_t> rows_per_worker(const std::vector<std::string>& log) {
  std::vector<uint64_t> out;
  for (const auto& m : log) {
    auto at = m.find("source rows read per worker: ");
    if (at == std::string::npos) continue;
    std::stringstream ss(m.substr(at + 29));
    std::string x;
    while (std::getline(ss, x, ',')) out.push_back(std::stoull(x));
  }
  return out;
}

TEST(Workers, FileSourceReadsFilesOnEveryWorkerAndMatchesOneWorker) {
  TempDir d;
  uint64_t total_rows = 0;
  for (int f = 0; f < 24; ++f) {
    std::string text = "word,n\n";
    for (int i = 0; i < 50 + f; ++i, ++total_rows) text += "w" + std::to_string((i * 7 + f) % 31) + "," + std::to_string(i) + "\n";
    write_file(d / ("in/sub" + std::to_string(f % 3) + "/f" + std::to_string(f) + ".csv"), text);
  }
  CountRun one = count_words(d / "in", 1);
  ASSERT_TRUE(one.status.is_ok()) << one.status.to_string();
  CountRun two = count_words(d / "in", 2);
  ASSERT_TRUE(two.status.is_ok()) << two.status.to_string();
  EXPECT_EQ(one.counts.size(), 31u);
  EXPECT_EQ(two.counts, one.counts);
  // Both workers read files (their shards of the 24, split by path hash), together all rows.
  std::vector<uint64_t> per = rows_per_worker(two.log);
  ASSERT_EQ(per.size(), 2u) << ::testing::PrintToString(two.log);
  EXPECT_GT(per[0], 0u);
  EXPECT_GT(per[1], 0u);
  EXPECT_EQ(per[0] + per[1], total_rows);
  bool split = false;
  for (const auto& m : two.log) split = split || m.find("(1 of 1 sources split across them)") != std::string::npos;
  EXPECT_TRUE(split) << ::testing::PrintToString(two.log);
  CountRun three = count_words(d / "in", 3);
  ASSERT_TRUE(three.status.is_ok()) << three.status.to_string();
  EXPECT_EQ(three.counts, one.counts);
}

TEST(Workers, PersistenceRunsOnOneWorkerWithOneWarning) {
  TempDir d;
  write_file(d / "in/a.txt", "a b a\n");
  Graph g;
  io::fs::ReadOptions o;
  o.format = io::Format::kPlaintext;
  o.name = "input";
  Table words = io::fs::read(g, d / "in", o).select({{"w", str::split(col("data"))}}).flatten("w");
  Table counts = words.groupby({"w"}).reduce({{"w", col("w")}, {"n", reducers::count()}});
  io::fs::write(counts, d / "out.csv", {io::Format::kCsv, "output"});
  RunOptions opts = quiet_options();
  opts.workers = 2;
  std::vector<std::string> log;
  opts.log = [&](const std::string& m) { log.push_back(m); };
  opts.persistence_config = persistence::Config::simple_config(persistence::Backend::filesystem(d / "state"));
  Status s = run(g, opts);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  int warnings = 0;
  for (const auto& m : log) warnings += m.find("running on 1 worker instead of 2") != std::string::npos ? 1 : 0;
  EXPECT_EQ(warnings, 1) << ::testing::PrintToString(log);
  std::string out = read_text(d / "out.csv");
  EXPECT_NE(out.find("a,2,"), std::string::npos) << out;
  EXPECT_NE(out.find("b,1,"), std::string::npos) << out;
}

Proc wordcount(const std::string& args) { return run_bin("wordcount", args); }

// The final counts of a wordcount CSV (word,count,time,diff): word -> count.
std::map<std::string, std::string> final_counts(const std::string& csv) {
  std::map<std::string, std::string> live;
  std::stringstream ss(csv);
  std::string line;
  std::getline(ss, line);
  EXPECT_EQ(line, "word,count,time,diff");
  while (std::getline(ss, line)) {
    size_t c1 = line.find(','), diff = line.rfind(','), time = line.rfind(',', diff - 1);
    std::string word = line.substr(0, c1), count = line.substr(c1 + 1, time - c1 - 1);
    if (line.substr(diff + 1) == "1") live[word] = count;
    else if (live[word] == count) live.erase(word);
    else ADD_FAILURE() << "retraction of a count that is not live: " << line;
  }
  return live;
}

TEST(Workers, WordcountAtTwoWorkersWritesWhatOneWorkerWrites) {
  TempDir d;
  for (int f = 0; f < 16; ++f) {
    std::string text;
    for (int i = 0; i < 400; ++i) text += "w" + std::to_string((i * i + f) % 97) + (i % 9 == 8 ? "\n" : " ");
    write_file(d / ("in/part-" + std::to_string(f) + ".txt"), text + "\n");
  }
  Proc one = wordcount("--input " + d / "in" + " --output " + d / "one.csv" + " --workers 1");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  Proc two = wordcount("--input " + d / "in" + " --output " + d / "two.csv" + " --workers 2");
  ASSERT_EQ(two.exit_code, 0) << two.output;
  auto a = final_counts(read_text(d / "one.csv")), b = final_counts(read_text(d / "two.csv"));
  EXPECT_EQ(a.size(), 97u);
  EXPECT_EQ(a, b);
  // Static input read within one time by each: the same changes, only their order may differ.
  auto lines = [](const std::string& csv) {
    std::vector<std::string> v;
    std::stringstream ss(csv);
    std::string line;
    while (std::getline(ss, line)) {
      size_t diff = line.rfind(','), time = line.rfind(',', diff - 1);
      v.push_back(line.substr(0, time) + line.substr(diff));
    }
    std::sort(v.begin(), v.end());
    return v;
  };
  EXPECT_EQ(lines(read_text(d / "one.csv")), lines(read_text(d / "two.csv")));
  // TIDEMARK_THREADS is the default.
  Proc env = wordcount("--input " + d / "in" + " --output " + d / "env.csv");
  ASSERT_EQ(env.exit_code, 0) << env.output;
  EXPECT_EQ(final_counts(read_text(d / "env.csv")), a);
}

TEST(Workers, WordcountRejectsABadWorkerCount) {
  TempDir d;
  write_file(d / "in/a.txt", "a\n");
  for (const char* bad : {"0", "abc", "-2", "1000"}) {
    Proc p = wordcount("--input " + d / "in" + " --output " + d / "o.csv" + " --workers " + bad);
    EXPECT_EQ(p.exit_code, 2) << bad << ": " << p.output;
    EXPECT_NE(p.output.find("--workers must be a whole number of worker threads from 1 to 256"), std::string::npos)
        << p.output;
  }
  Proc env = wordcount("--input " + d / "in" + " --output " + d / "o.csv");
  EXPECT_EQ(env.exit_code, 0) << env.output;
  Proc help = wordcount("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("--workers"), std::string::npos) << help.output;
}

}  // namespace
}  // namespace tidemark::testing
