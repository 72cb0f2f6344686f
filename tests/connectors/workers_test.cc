// Worker threads with real connectors: the file source split across workers, the wordcount
// CLI at --workers 2, persistence across restarts that change the worker count.
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

// The rescaling test's pipeline: words (CSV word,n) counted and summed per word, joined with
// a dictionary (CSV word,cat), then summed per category. Two outputs: per word, per category.
Status rescaling_run(const std::string& dir, size_t workers, const std::string& mode, bool persist) {
  Graph g;
  io::fs::ReadOptions wo;
  wo.format = io::Format::kCsv;
  wo.schema = Schema{{"word", t_str()}, {"n", t_int()}};
  wo.name = "words";
  io::fs::ReadOptions dopt = wo;
  dopt.schema = Schema{{"word", t_str()}, {"cat", t_str()}};
  dopt.name = "dict";
  Table words = io::fs::read(g, dir + "/words", wo);
  Table dict = io::fs::read(g, dir + "/dict", dopt);
  Table per_word = words.groupby({"word"}).reduce(
      {{"word", col("word")}, {"rows", reducers::count()}, {"n", reducers::sum(col("n"))}});
  Table joined = per_word.join(dict, {{"word", "word"}})
                     .select({{"cat", right("cat")}, {"word", left("word")}, {"n", left("n")}});
  Table per_cat = joined.groupby({"cat"}).reduce(
      {{"cat", col("cat")}, {"words", reducers::count()}, {"n", reducers::sum(col("n"))}});
  const std::string out = persist ? dir : dir + "/fresh";
  io::fs::write(per_word, out + "/per_word.csv", {io::Format::kCsv, "per_word"});
  io::fs::write(per_cat, out + "/per_cat.csv", {io::Format::kCsv, "per_cat"});
  RunOptions opts = quiet_options();
  opts.workers = workers;
  if (persist) {
    auto cfg = persistence::Config::simple_config(persistence::Backend::filesystem(dir + "/state"));
    cfg.persistence_mode = mode == "operator_persisting" ? persistence::PersistenceMode::kOperatorPersisting
                                                         : persistence::PersistenceMode::kPersisting;
    opts.persistence_config = cfg;
  }
  return run(g, opts);
}

// CSV change lines (columns..., time, diff) from byte `from` on: row without time -> net diff.
std::map<std::string, int64_t> net_changes(const std::string& csv, size_t from) {
  std::map<std::string, int64_t> net;
  std::stringstream ss(csv.substr(from));
  std::string line;
  if (from == 0) std::getline(ss, line);  // header
  while (std::getline(ss, line)) {
    size_t diff = line.rfind(','), time = line.rfind(',', diff - 1);
    net[line.substr(0, time)] += std::stoll(line.substr(diff + 1));
  }
  for (auto it = net.begin(); it != net.end();) it = it->second == 0 ? net.erase(it) : std::next(it);
  return net;
}

// The change from table `before` to table `after` (row -> multiplicity).
std::map<std::string, int64_t> table_diff(const std::map<std::string, int64_t>& before,
                                          const std::map<std::string, int64_t>& after) {
  std::map<std::string, int64_t> d = after;
  for (const auto& [row, n] : before) d[row] -= n;
  for (auto it = d.begin(); it != d.end();) it = it->second == 0 ? d.erase(it) : std::next(it);
  return d;
}

// 1 -> 2 -> 3 -> 1 workers across four runs on one storage, the input changing between runs
// (files added, changed, deleted, on both sides of the join): each run must emit exactly the
// change from the previous run's result to a fresh 1-worker computation over the new input,
// which proves the offsets (no file re-read, none missed) and, in operator persisting, the
// groupby and join states were divided among the new worker count.
void rescaling_test(const std::string& mode) {
  TempDir d;
  auto words_file = [&](int f, int salt) {
    std::string text = "word,n\n";
    for (int i = 0; i < 40 + f; ++i) text += "w" + std::to_string((i * 13 + f * 7 + salt) % 53) + "," + std::to_string(i % 5) + "\n";
    write_file(d / ("words/f" + std::to_string(f) + ".csv"), text);
  };
  auto dict_file = [&](int f, int salt) {
    std::string text = "word,cat\n";
    for (int i = f; i < 53; i += 4) text += "w" + std::to_string(i) + ",c" + std::to_string((i + salt) % 6) + "\n";
    write_file(d / ("dict/d" + std::to_string(f) + ".csv"), text);
  };
  for (int f = 0; f < 12; ++f) words_file(f, 0);
  for (int f = 0; f < 4; ++f) dict_file(f, 0);
  std::map<std::string, int64_t> prev_word, prev_cat;  // the previous run's result tables
  size_t at_word = 0, at_cat = 0;
  const std::vector<size_t> counts = {1, 2, 3, 1};
  for (size_t run_no = 0; run_no < counts.size(); ++run_no) {
    SCOPED_TRACE(mode + ", run " + std::to_string(run_no + 1) + " at " + std::to_string(counts[run_no]) + " workers");
    if (run_no == 1) {  // new files, a changed one, a deleted one
      words_file(12, 0);
      words_file(13, 0);
      words_file(3, 5);
      std::filesystem::remove(d / "words/f7.csv");
    } else if (run_no == 2) {  // the join's other side changes: a category moves, a file goes
      dict_file(1, 3);
      std::filesystem::remove(d / "dict/d2.csv");
      words_file(14, 0);
    } else if (run_no == 3) {
      dict_file(2, 1);
      words_file(0, 9);
      std::filesystem::remove(d / "words/f12.csv");
    }
    Status st = rescaling_run(d.path(), counts[run_no], mode, true);
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    std::filesystem::remove_all(d / "fresh");
    std::filesystem::create_directories(d / "fresh");
    Status fresh = rescaling_run(d.path(), 1, mode, false);
    ASSERT_TRUE(fresh.is_ok()) << fresh.to_string();
    std::map<std::string, int64_t> want_word = net_changes(read_text(d / "fresh/per_word.csv"), 0);
    std::map<std::string, int64_t> want_cat = net_changes(read_text(d / "fresh/per_cat.csv"), 0);
    std::string got_word = read_text(d / "per_word.csv"), got_cat = read_text(d / "per_cat.csv");
    EXPECT_EQ(net_changes(got_word, at_word), table_diff(prev_word, want_word));
    EXPECT_EQ(net_changes(got_cat, at_cat), table_diff(prev_cat, want_cat));
    EXPECT_FALSE(table_diff(prev_cat, want_cat).empty());  // every run changes the result
    at_word = got_word.size();
    at_cat = got_cat.size();
    prev_word = std::move(want_word);
    prev_cat = std::move(want_cat);
  }
}

TEST(Workers, RescalingOneTwoThreeOneWorkersPersisting) { rescaling_test("persisting"); }
TEST(Workers, RescalingOneTwoThreeOneWorkersOperatorPersisting) { rescaling_test("operator_persisting"); }

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
