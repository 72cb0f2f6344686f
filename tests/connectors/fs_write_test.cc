#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <regex>

#include "connectors/fs_sink.h"
#include "util.h"

namespace tidemark::testing {
namespace {

// Replaces the time column (second to last) by "T" after checking all times are equal.
std::string mask_times(const std::string& text, std::set<std::string>* times) {
  std::regex re(",([0-9]+),(-?1)\n");
  std::string out;
  std::sregex_iterator it(text.begin(), text.end(), re), end;
  size_t last = 0;
  for (; it != end; ++it) {
    out += text.substr(last, it->position() - last) + ",T," + (*it)[2].str() + "\n";
    times->insert((*it)[1].str());
    last = it->position() + it->length();
  }
  return out + text.substr(last);
}

TEST(FsWrite, CsvQuotingNoneAndRetractions) {
  TempDir d;
  Graph g;
  Table t = debug::table_from_markdown(g, R"(
      | name       | n    | __time__ | __diff__
    1 | plain      | 1    | 1        | 1
    2 | a,b        | None | 1        | 1
    3 | say "hi"   | 3    | 1        | 1
    1 | plain      | 1    | 2        | -1
  )");
  Table out = t.with_columns({{"empty", lit(Value(""))}});
  io::fs::write(out, d / "out.csv");
  ASSERT_TRUE(run(g, quiet_options()).is_ok());
  std::set<std::string> times;
  std::string text = mask_times(read_text(d / "out.csv"), &times);
  EXPECT_EQ(times.size(), 2u);
  // Within a time, changes are ordered by key.
  std::vector<std::string> lines;
  std::stringstream ss(text);
  for (std::string l; std::getline(ss, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 5u) << text;
  EXPECT_EQ(lines[0], "name,n,empty,time,diff");
  std::multiset<std::string> body(lines.begin() + 1, lines.end());
  EXPECT_EQ(body, (std::multiset<std::string>{"plain,1,\"\",T,1", "\"a,b\",,\"\",T,1", "\"say \"\"hi\"\"\",3,\"\",T,1",
                                              "plain,1,\"\",T,-1"}));
  EXPECT_EQ(lines[4], "plain,1,\"\",T,-1");

  // The output reads back (header picked by name, None and "" distinguished).
  Graph g2;
  io::fs::ReadOptions o;
  o.schema = Schema{{"name", t_str()}, {"n", optional(t_int())}, {"empty", optional(t_str())}, {"diff", t_int()}};
  EXPECT_EQ(debug::table_to_string(io::fs::read(g2, d / "out.csv", o)),
            "name     | n    | empty | diff\n"
            "a,b      | None |       | 1\n"
            "plain    | 1    |       | -1\n"
            "plain    | 1    |       | 1\n"
            "say \"hi\" | 3    |       | 1\n");
}

TEST(FsWrite, JsonLines) {
  TempDir d;
  Graph g;
  Table t = debug::table_from_markdown(g, R"(
    w | n    | f
    a | 1    | 0.5
    b | None | 2
  )");
  io::fs::write(t, d / "out.jsonl", {io::Format::kJsonLines, "json-out"});
  ASSERT_TRUE(run(g, quiet_options()).is_ok());
  std::set<std::string> got;
  std::stringstream ss(read_text(d / "out.jsonl"));
  for (std::string l; std::getline(ss, l);) {
    auto j = nlohmann::json::parse(l);
    EXPECT_EQ(j["diff"], 1);
    EXPECT_TRUE(j["time"].is_number_unsigned());
    j.erase("time");
    got.insert(j.dump());
  }
  EXPECT_EQ(got, (std::set<std::string>{R"({"diff":1,"f":0.5,"n":1,"w":"a"})", R"({"diff":1,"f":2.0,"n":null,"w":"b"})"}));
}

TEST(FsWrite, PositionTruncateAndAppend) {
  TempDir d;
  Schema s{{"v", t_int()}};
  std::string path = d / "out.csv";
  std::string committed;
  {
    connectors::FsSink sink(path, {});
    ASSERT_TRUE(sink.open().is_ok());
    ASSERT_TRUE(sink.write(10, {{Key{1, 0}, {Value(1)}, 1}}, s).is_ok());
    ASSERT_TRUE(sink.time_end(10).is_ok());
    ASSERT_TRUE(sink.flush().is_ok());
    committed = sink.position();
    EXPECT_EQ(committed, std::to_string(read_text(path).size()));
    // Written after the last commit: lost by a crash, cut by truncate_to.
    ASSERT_TRUE(sink.write(20, {{Key{2, 0}, {Value(2)}, 1}}, s).is_ok());
    ASSERT_TRUE(sink.close().is_ok());
  }
  EXPECT_EQ(read_text(path), "v,time,diff\n1,10,1\n2,20,1\n");
  connectors::FsSink resumed(path, {});
  ASSERT_TRUE(resumed.truncate_to(committed).is_ok());
  ASSERT_TRUE(resumed.open().is_ok());
  ASSERT_TRUE(resumed.write(30, {{Key{3, 0}, {Value(3)}, -1}}, s).is_ok());
  ASSERT_TRUE(resumed.close().is_ok());
  EXPECT_EQ(read_text(path), "v,time,diff\n1,10,1\n3,30,-1\n");

  connectors::FsSink bad(path, {});
  EXPECT_EQ(bad.truncate_to("99999").code(), StatusCode::kCorruption);
  EXPECT_EQ(bad.truncate_to("x1").code(), StatusCode::kCorruption);
  connectors::FsSink fresh(d / "new.csv", {});
  EXPECT_TRUE(fresh.truncate_to("0").is_ok());  // nothing committed yet: starts the file
  ASSERT_TRUE(fresh.open().is_ok());
  ASSERT_TRUE(fresh.write(1, {{Key{1, 0}, {Value(1)}, 1}}, s).is_ok());
  ASSERT_TRUE(fresh.close().is_ok());
  EXPECT_EQ(read_text(d / "new.csv"), "v,time,diff\n1,1,1\n");
}

TEST(FsWrite, UnwritablePathAndDuplicateName) {
  Graph g;
  Table t = debug::table_from_markdown(g, "a\n1\n");
  io::fs::write(t, "/nonexistent-dir/x.csv", {io::Format::kCsv, "out"});
  EXPECT_THROW(io::fs::write(t, "/tmp/y.csv", {io::Format::kCsv, "out"}), GraphError);
  EXPECT_THROW(io::fs::write(t, "/tmp/y.csv", {io::Format::kPlaintext, ""}), GraphError);
  Status s = run(g, quiet_options());
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_NE(s.message().find("/nonexistent-dir/x.csv"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace tidemark::testing
