#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>

#include "util.h"

namespace tidemark::testing {
namespace {

Proc run_cmd(const std::string& args) { return run_bin("wordcount", args); }

// Lines of the output sorted, with the time column checked (one time: static input) and dropped.
std::vector<std::string> counts_without_time(const std::string& csv) {
  std::vector<std::string> lines;
  std::set<std::string> times;
  std::stringstream ss(csv);
  std::string line;
  std::getline(ss, line);
  EXPECT_EQ(line, "word,count,time,diff");
  while (std::getline(ss, line)) {
    size_t diff = line.rfind(',');
    size_t time = line.rfind(',', diff - 1);
    times.insert(line.substr(time + 1, diff - time - 1));
    lines.push_back(line.substr(0, time) + line.substr(diff));
  }
  EXPECT_EQ(times.size(), 1u);
  std::sort(lines.begin(), lines.end());
  return lines;
}

TEST(Wordcount, PlaintextDirectory) {
  TempDir d;
  std::string text;
  for (int i = 0; i < 50; ++i) text += "the quick brown fox\tjumps over the lazy dog\n";
  write_file(d / "in/a.txt", text);
  write_file(d / "in/deep/b.txt", "Fox, fox\r\n\n   the  end\n");
  write_file(d / "in/.partial", "ignored words\n");
  Proc p = run_cmd("--input " + d / "in" + " --output " + d / "out.csv");
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_NE(p.output.find("wordcount: 10 changes written"), std::string::npos) << p.output;
  EXPECT_EQ(counts_without_time(read_text(d / "out.csv")),
            (std::vector<std::string>{"\"Fox,\",1,1", "brown,50,1", "dog,50,1", "end,1,1", "fox,51,1", "jumps,50,1",
                                      "lazy,50,1", "over,50,1", "quick,50,1", "the,101,1"}));
}

TEST(Wordcount, JsonLines) {
  TempDir d;
  write_file(d / "in/w.jsonl", "{\"word\": \"a\"}\n{\"word\": \"b\", \"other\": 1}\n{\"word\": \"a\"}\n");
  Proc p = run_cmd("--input " + d / "in" + " --output " + d / "out.csv --format jsonlines");
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_EQ(counts_without_time(read_text(d / "out.csv")), (std::vector<std::string>{"a,2,1", "b,1,1"}));
}

TEST(Wordcount, ErrorsExitNonZero) {
  TempDir d;
  Proc bad_flag = run_cmd("--input x --output y --mode sometimes");
  EXPECT_NE(bad_flag.exit_code, 0);
  EXPECT_NE(bad_flag.output.find("--mode"), std::string::npos) << bad_flag.output;
  Proc missing = run_cmd("--output y");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("--input is required"), std::string::npos) << missing.output;
  Proc both = run_cmd("--input x --input-s3 s3://b/p --output y");
  EXPECT_NE(both.exit_code, 0);
  EXPECT_NE(both.output.find("excludes"), std::string::npos) << both.output;
  Proc no_input = run_cmd("--input " + d / "absent" + " --output " + d / "o.csv");
  EXPECT_EQ(no_input.exit_code, 1);
  EXPECT_NE(no_input.output.find("input path '" + d / "absent" + "' does not exist"), std::string::npos)
      << no_input.output;
  write_file(d / "in/bad.jsonl", "{\"word\": 3}\n");
  Proc bad_row = run_cmd("--input " + d / "in" + " --output " + d / "o.csv --format jsonlines");
  EXPECT_EQ(bad_row.exit_code, 1);
  EXPECT_NE(bad_row.output.find("bad.jsonl:1: column 'word': expected str, got 3"), std::string::npos)
      << bad_row.output;
  Proc help = run_cmd("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("--autocommit-ms"), std::string::npos);
}

}  // namespace
}  // namespace tidemark::testing
