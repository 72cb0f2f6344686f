// io::kafka::read against a real broker: formats, key/header/partition/offset columns, offsets
// resumed exactly from our persistence across restarts, partitions added while running,
// malformed messages, unreachable brokers.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "connectors/util.h"
#include "kafka/kafka_util.h"

namespace tidemark::testing {
namespace {

// Runs `g` in a thread until stopped; collects `t`'s changes.
struct Running {
  std::atomic<bool> stop{false};
  Status result;
  std::thread th;
  void start(Graph& g, RunOptions o) {
    o.stop = &stop;
    th = std::thread([this, &g, o] { result = run(g, o); });
  }
  Status finish() {
    stop = true;
    if (th.joinable()) th.join();
    return result;
  }
  ~Running() { (void)finish(); }
};

io::kafka::ReadOptions opts(const std::string& topic, io::kafka::Format f) {
  io::kafka::ReadOptions o;
  o.bootstrap_servers = kafka_bootstrap();
  o.topic = topic;
  o.format = f;
  o.name = "in";
  o.autocommit_duration_ms = 100;
  o.partition_discovery_ms = 300;
  return o;
}

TEST(KafkaRead, FormatsKeysHeaders) {
  REQUIRE_KAFKA();
  std::string topic = unique_topic("formats");
  create_topic(topic, 1);
  TestProducer p;
  p.send(topic, {{"k1", R"({"name":"alice","age":30})", 0, {{"h", "v1"}}},
                 {std::nullopt, R"({"name":"bob","age":25})", 0, {}}});
  struct Case {
    io::kafka::Format format;
    Schema schema;
    std::multiset<std::string> expected;
  };
  std::vector<Case> cases = {
      {io::kafka::Format::kJson, Schema{{"name", t_str()}, {"age", t_int()}},
       {"(alice, 30, k1, {\"h\":\"v1\"}, 0, 0)", "(bob, 25, None, {}, 0, 1)"}},
      {io::kafka::Format::kPlaintext, Schema{},
       {"({\"name\":\"alice\",\"age\":30}, k1, {\"h\":\"v1\"}, 0, 0)", "({\"name\":\"bob\",\"age\":25}, None, {}, 0, 1)"}},
  };
  for (auto& c : cases) {
    Graph g;
    auto o = opts(topic, c.format);
    o.schema = c.schema;
    o.key_column = "key";
    o.headers_column = "headers";
    o.partition_column = "partition";
    o.offset_column = "offset";
    Table t = io::kafka::read(g, o);
    Collector col;
    io::subscribe(t, col.callbacks());
    Running r;
    r.start(g, quiet_options());
    EXPECT_TRUE(col.wait([&] { return col.live.size() >= 2; })) << r.finish().to_string();
    ASSERT_TRUE(r.finish().is_ok()) << r.result.to_string();
    EXPECT_EQ(col.live, c.expected);
  }
  // csv and raw
  std::string topic2 = unique_topic("csv");
  create_topic(topic2, 1);
  p.send_values(topic2, {"alice,30", "\"b,ob\",25"});
  {
    Graph g;
    auto o = opts(topic2, io::kafka::Format::kCsv);
    o.schema = Schema{{"name", t_str()}, {"age", t_int()}};
    Table t = io::kafka::read(g, o);
    Collector col;
    io::subscribe(t, col.callbacks());
    Running r;
    r.start(g, quiet_options());
    EXPECT_TRUE(col.wait([&] { return col.live.size() >= 2; }));
    ASSERT_TRUE(r.finish().is_ok()) << r.result.to_string();
    EXPECT_EQ(col.live, (std::multiset<std::string>{"(alice, 30)", "(b,ob, 25)"}));
  }
  {
    Graph g;
    Table t = io::kafka::read(g, opts(topic2, io::kafka::Format::kRaw));
    std::vector<Value> got;
    std::mutex mu;
    io::subscribe(t, {[&](const Key&, const Row& row, uint64_t, bool) {
                        std::lock_guard l(mu);
                        got.push_back(row[0]);
                      },
                      nullptr, nullptr});
    Running r;
    r.start(g, quiet_options());
    EXPECT_TRUE(eventually([&] {
      std::lock_guard l(mu);
      return got.size() >= 2;
    }));
    ASSERT_TRUE(r.finish().is_ok()) << r.result.to_string();
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].type(), DType::kBytes);
    std::multiset<std::string> s{got[0].as_bytes(), got[1].as_bytes()};
    EXPECT_EQ(s, (std::multiset<std::string>{"alice,30", "\"b,ob\",25"}));
  }
}

// Three runs of a persisted word count over a 3-partition topic: each run emits exactly the
// changes its new messages cause, nothing re-read.
TEST(KafkaRead, ResumesAtStoredOffsetsThreeRuns) {
  REQUIRE_KAFKA();
  std::string topic = unique_topic("resume");
  create_topic(topic, 3);
  TempDir d;
  TestProducer p;
  auto run_once = [&](const std::vector<OutMessage>& msgs, size_t expect_changes) {
    p.send(topic, msgs);
    Graph g;
    Table words = io::kafka::read(g, opts(topic, io::kafka::Format::kPlaintext))
                      .select({{"word", str::split(col("data"))}})
                      .flatten("word");
    Table counts = words.groupby({"word"}).reduce({{"word", col("word")}, {"count", reducers::count()}});
    Collector col;
    col.strict = false;  // rows of earlier runs are retracted
    io::subscribe(counts, col.callbacks(), "out");
    RunOptions o = quiet_options();
    o.persistence_config = persistence::Config::simple_config(persistence::Backend::filesystem(d / "state"), 0);
    Running r;
    r.start(g, o);
    size_t n = 0;
    EXPECT_TRUE(col.wait([&] {
      n = 0;
      for (auto& [t, s] : col.by_time) n += s.size();
      return n >= expect_changes;
    })) << n;
    Status st = r.finish();
    EXPECT_TRUE(st.is_ok()) << st.to_string();
    std::multiset<std::string> all;
    for (auto& [t, s] : col.by_time) all.insert(s.begin(), s.end());
    return all;
  };
  EXPECT_EQ(run_once({{std::nullopt, "a b", 0, {}}, {std::nullopt, "a", 1, {}}, {std::nullopt, "c", 2, {}}}, 3),
            (std::multiset<std::string>{"+(a, 2)", "+(b, 1)", "+(c, 1)"}));
  EXPECT_EQ(run_once({{std::nullopt, "b", 2, {}}, {std::nullopt, "d", 0, {}}}, 3),
            (std::multiset<std::string>{"-(b, 1)", "+(b, 2)", "+(d, 1)"}));
  EXPECT_EQ(run_once({{std::nullopt, "a", 1, {}}}, 2), (std::multiset<std::string>{"-(a, 2)", "+(a, 3)"}));
}

TEST(KafkaRead, PartitionAddedWhileRunning) {
  REQUIRE_KAFKA();
  std::string topic = unique_topic("grow");
  create_topic(topic, 1);
  TestProducer p;
  p.send(topic, {{std::nullopt, "one", 0, {}}});
  Graph g;
  auto o = opts(topic, io::kafka::Format::kPlaintext);
  o.partition_column = "partition";
  Table t = io::kafka::read(g, o);
  Collector col;
  io::subscribe(t, col.callbacks());
  Running r;
  r.start(g, quiet_options());
  ASSERT_TRUE(col.wait([&] { return col.live.size() >= 1; }));
  add_partitions(topic, 3);
  p.send(topic, {{std::nullopt, "two", 1, {}}, {std::nullopt, "three", 2, {}}, {std::nullopt, "four", 0, {}}});
  EXPECT_TRUE(col.wait([&] { return col.live.size() >= 4; }, std::chrono::seconds(30)));
  ASSERT_TRUE(r.finish().is_ok()) << r.result.to_string();
  EXPECT_EQ(col.live, (std::multiset<std::string>{"(one, 0)", "(two, 1)", "(three, 2)", "(four, 0)"}));
}

TEST(KafkaRead, MalformedMessageErrorOrSkip) {
  REQUIRE_KAFKA();
  std::string topic = unique_topic("bad");
  create_topic(topic, 1);
  TestProducer p;
  p.send_values(topic, {R"({"x":1})", "not json", R"({"x":"str"})", R"({"x":3})"});
  {
    Graph g;
    auto o = opts(topic, io::kafka::Format::kJson);
    o.schema = Schema{{"x", t_int()}};
    io::subscribe(io::kafka::read(g, o), {});
    Status st = run(g, quiet_options());  // stops by itself with the error
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find("partition 0 offset 1: malformed JSON"), std::string::npos) << st.to_string();
    EXPECT_NE(st.message().find(topic), std::string::npos) << st.to_string();
  }
  {
    Graph g;
    auto o = opts(topic, io::kafka::Format::kJson);
    o.schema = Schema{{"x", t_int()}};
    o.skip_bad_rows = true;
    Collector col;
    io::subscribe(io::kafka::read(g, o), col.callbacks());
    Running r;
    r.start(g, quiet_options());
    EXPECT_TRUE(col.wait([&] { return col.live.size() >= 2; }));
    ASSERT_TRUE(r.finish().is_ok()) << r.result.to_string();
    EXPECT_EQ(col.live, (std::multiset<std::string>{"(1)", "(3)"}));
  }
}

TEST(KafkaRead, UnreachableBrokerFailsFastNamingIt) {
  Graph g;
  io::kafka::ReadOptions o;
  o.bootstrap_servers = "127.0.0.1:1";
  o.topic = "nowhere";
  o.format = io::kafka::Format::kPlaintext;
  o.connect_timeout_ms = 2000;
  io::subscribe(io::kafka::read(g, o), {});
  auto t0 = std::chrono::steady_clock::now();
  Status st = run(g, quiet_options());
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("127.0.0.1:1"), std::string::npos) << st.to_string();
  EXPECT_LT(secs, 10.0);
}

TEST(KafkaRead, MissingTopicIsNotFound) {
  REQUIRE_KAFKA();
  Graph g;
  io::subscribe(io::kafka::read(g, opts(unique_topic("missing"), io::kafka::Format::kRaw)), {});
  Status st = run(g, quiet_options());
  EXPECT_EQ(st.code(), StatusCode::kNotFound) << st.to_string();
}

}  // namespace
}  // namespace tidemark::testing
