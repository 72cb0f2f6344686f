#include <gtest/gtest.h>

#include "util.h"

namespace tidemark::testing {
namespace {

// Reads statically and returns the rows (as strings, sorted), or the run's error.
struct ReadResult {
  Status status;
  std::multiset<std::string> rows;
  std::vector<Key> keys;
};

ReadResult read_all(const std::string& path, io::fs::ReadOptions o) {
  Graph g;
  Table t = io::fs::read(g, path, o);
  Collector c;
  ReadResult r;
  std::vector<Key> keys;
  io::subscribe(t, {[&](const Key& k, const Row& row, uint64_t, bool add) {
                      EXPECT_TRUE(add);
                      r.rows.insert(row_string(row));
                      r.keys.push_back(k);
                    },
                    nullptr, nullptr});
  r.status = run(g, quiet_options());
  return r;
}

io::fs::ReadOptions csv(Schema s) {
  io::fs::ReadOptions o;
  o.format = io::Format::kCsv;
  o.schema = std::move(s);
  return o;
}

TEST(FsRead, CsvEveryTypeAndQuoting) {
  TempDir d;
  write_file(d / "in.csv",
             "name,count,ratio,ok,note,extra,blob\r\n"
             "alice,3,0.5,true,\"hello, \"\"world\"\"\",x,raw\r\n"
             "\"bob\",-7,2,False,\"two\nlines\",y,b\n"
             "carol,+0,1e3,1,,z,\n"
             "dan,1,-0.25,FALSE,\"\",w,q");
  auto r = read_all(d / "in.csv", csv(Schema{{"name", t_str()},
                                             {"count", t_int()},
                                             {"ratio", t_float()},
                                             {"ok", t_bool()},
                                             {"note", optional(t_str())},
                                             {"blob", t_bytes()}}));
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  std::multiset<std::string> want = {"(alice, 3, 0.5, True, hello, \"world\", b'raw')",
                                     "(bob, -7, 2.0, False, two\nlines, b'b')",
                                     "(carol, 0, 1e+03, True, None, b'')",
                                     "(dan, 1, -0.25, False, , b'q')"};
  EXPECT_EQ(r.rows, want);
}

TEST(FsRead, CsvJsonAndAnyColumnsAndDelimiter) {
  TempDir d;
  write_file(d / "in.csv", "a;j\n12;\"{\"\"k\"\": [1, 2]}\"\nfoo;null\n");
  auto o = csv(Schema{{"a", t_any()}, {"j", t_json()}});
  o.csv_delimiter = ';';
  auto r = read_all(d / "in.csv", o);
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(r.rows, (std::multiset<std::string>{"(12, {\"k\":[1,2]})", "(foo, null)"}));
}

TEST(FsRead, JsonLinesTypes) {
  TempDir d;
  write_file(d / "in.jsonl",
             "{\"w\": \"a\", \"n\": 1, \"f\": 2, \"b\": true, \"j\": {\"x\": [1]}, \"o\": null}\n"
             "\n"
             "{\"w\": \"b\", \"n\": -2, \"f\": 0.5, \"b\": false, \"j\": \"s\"}\r\n");
  io::fs::ReadOptions o;
  o.format = io::Format::kJsonLines;
  o.schema = Schema{{"w", t_str()}, {"n", t_int()}, {"f", t_float()}, {"b", t_bool()}, {"j", t_json()},
                    {"o", optional(t_int())}};
  auto r = read_all(d / "in.jsonl", o);
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(r.rows, (std::multiset<std::string>{"(a, 1, 2.0, True, {\"x\":[1]}, None)",
                                                "(b, -2, 0.5, False, \"s\", None)"}));
}

TEST(FsRead, PlaintextAndBinaryOverADirectory) {
  TempDir d;
  write_file(d / "b/2.txt", "three\r\n\nfive");
  write_file(d / "a.txt", "one\ntwo\n");
  write_file(d / ".hidden.txt", "secret\n");
  write_file(d / ".dir/x.txt", "secret\n");
  io::fs::ReadOptions o;
  o.format = io::Format::kPlaintext;
  auto r = read_all(d.path(), o);
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(r.rows, (std::multiset<std::string>{"(one)", "(two)", "(three)", "()", "(five)"}));

  o.format = io::Format::kBinary;
  auto b = read_all(d.path(), o);
  ASSERT_TRUE(b.status.is_ok()) << b.status.to_string();
  EXPECT_EQ(b.rows, (std::multiset<std::string>{"(b'one\\x0atwo\\x0a')", "(b'three\\x0d\\x0a\\x0afive')"}));
}

TEST(FsRead, KeysAreStableAndFollowThePrimaryKey) {
  TempDir d;
  write_file(d / "in.csv", "k,v\na,1\nb,2\n");
  auto o = csv(Schema{{"k", t_str()}, {"v", t_int()}});
  auto first = read_all(d / "in.csv", o);
  auto second = read_all(d / "in.csv", o);
  ASSERT_EQ(first.keys.size(), 2u);
  EXPECT_EQ(std::set<Key>(first.keys.begin(), first.keys.end()), std::set<Key>(second.keys.begin(), second.keys.end()));
  std::string path = std::filesystem::path(d / "in.csv").lexically_normal().generic_string();
  std::set<Key> derived = {key_combine(key_from_string(path), Key{0, 0}), key_combine(key_from_string(path), Key{1, 0})};
  EXPECT_EQ(std::set<Key>(first.keys.begin(), first.keys.end()), derived);

  o.primary_key = {"k"};
  auto pk = read_all(d / "in.csv", o);
  EXPECT_EQ(std::set<Key>(pk.keys.begin(), pk.keys.end()),
            (std::set<Key>{key_from_values({Value("a")}), key_from_values({Value("b")})}));
}

TEST(FsRead, BadInputNamesFileLineAndColumn) {
  TempDir d;
  auto o = csv(Schema{{"word", t_str()}, {"count", t_int()}});
  write_file(d / "in.csv", "word,count\nok,1\nbad,x\n");
  auto r = read_all(d / "in.csv", o);
  ASSERT_EQ(r.status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status.message().find("in.csv:3: column 'count': cannot parse 'x' as int"), std::string::npos)
      << r.status.message();

  struct Case {
    std::string content, expect;
  };
  std::vector<Case> cases = {
      {"word,count\n\"unterminated,1\n", "in.csv:2: unterminated quoted field"},
      {"word,count\n\"a\"b,1\n", "in.csv:2: unexpected character after closing quote"},
      {"word,count\na,1,2\n", "in.csv:2: expected 2 fields, got 3"},
      {"word,total\na,1\n", "in.csv:1: column 'count' is missing from the header (word,total)"},
      {"word,count\na,\n", "in.csv:2: column 'count': cannot parse '' as int"},
      {"word,count\n\"two\nlines\",1\n\nc,x\n", "in.csv:5: column 'count': cannot parse 'x' as int"},
  };
  for (const auto& c : cases) {
    write_file(d / "in.csv", c.content);
    auto res = read_all(d / "in.csv", o);
    EXPECT_NE(res.status.message().find(c.expect), std::string::npos) << res.status.message();
  }

  io::fs::ReadOptions j;
  j.format = io::Format::kJsonLines;
  j.schema = Schema{{"word", t_str()}, {"count", t_int()}};
  std::vector<Case> jcases = {
      {"{\"word\": \"a\", \"count\": 1}\n{\"word\": \"a\", \"count\": \"x\"}\n",
       "in.jsonl:2: column 'count': expected int, got \"x\""},
      {"{\"word\": \"a\"}\n", "in.jsonl:1: column 'count': missing"},
      {"\n{\"word\": \"a\", \n", "in.jsonl:2: malformed JSON"},
      {"[1]\n", "in.jsonl:1: expected a JSON object"},
  };
  for (const auto& c : jcases) {
    write_file(d / "in.jsonl", c.content);
    auto res = read_all(d / "in.jsonl", j);
    EXPECT_EQ(res.status.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(res.status.message().find(c.expect), std::string::npos) << res.status.message();
  }
}

TEST(FsRead, SkipBadRowsLogsAndContinues) {
  TempDir d;
  write_file(d / "in.csv", "word,count\nok,1\nbad,x\n\"broken\"x,2\nfine,2\n");
  auto o = csv(Schema{{"word", t_str()}, {"count", t_int()}});
  o.skip_bad_rows = true;
  ::testing::internal::CaptureStderr();
  auto r = read_all(d / "in.csv", o);
  std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_EQ(r.rows, (std::multiset<std::string>{"(ok, 1)", "(fine, 2)"}));
  EXPECT_NE(err.find("[tidemark] warning: "), std::string::npos) << err;
  EXPECT_NE(err.find("in.csv:3: column 'count': cannot parse 'x' as int"), std::string::npos) << err;
  EXPECT_NE(err.find("in.csv:4: unexpected character after closing quote"), std::string::npos) << err;
}

TEST(FsRead, MissingPathAndSchemaMistakes) {
  TempDir d;
  auto r = read_all(d / "nope", csv(Schema{{"a", t_str()}}));
  EXPECT_EQ(r.status.code(), StatusCode::kNotFound);
  EXPECT_NE(r.status.message().find("nope' does not exist"), std::string::npos) << r.status.message();

  Graph g;
  auto o = csv(Schema{{"a", t_str()}});
  o.primary_key = {"b"};
  EXPECT_THROW(io::fs::read(g, d.path(), o), GraphError);
  EXPECT_THROW(io::fs::read(g, d.path(), csv(Schema{})), GraphError);
  EXPECT_THROW(io::fs::read(g, d.path(), csv(Schema{{"p", t_pointer()}})), GraphError);
  o.primary_key = {};
  o.name = "src";
  io::fs::read(g, d.path(), o);
  EXPECT_THROW(io::fs::read(g, d.path(), o), GraphError);  // duplicate persistent name
}

TEST(FsRead, EmptyFilesAndDirectories) {
  TempDir d;
  write_file(d / "empty.csv", "");
  write_file(d / "header_only.csv", "a\n");
  auto r = read_all(d.path(), csv(Schema{{"a", t_str()}}));
  ASSERT_TRUE(r.status.is_ok()) << r.status.to_string();
  EXPECT_TRUE(r.rows.empty());
}

}  // namespace
}  // namespace tidemark::testing
