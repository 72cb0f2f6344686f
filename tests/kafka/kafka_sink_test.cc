// io::kafka::write against a real broker: exactly-once output for read_committed consumers
// across clean restarts and SIGKILLs of `wordcount --input-kafka --output-kafka` (and a broker
// restart), producer fencing, and the non-persistent producer.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "connectors/util.h"
#include "kafka/kafka_util.h"

namespace tidemark::testing {
namespace {

// Checks a word-count change stream read back from Kafka: per word (the message key, so one
// partition, in offset order) every retraction matches the live row, no change appears twice,
// and the final live counts are `expected`. Returns "" or the first problem.
std::string check_exactly_once(const std::vector<InMessage>& msgs, const std::map<std::string, int64_t>& expected) {
  std::map<std::string, std::multiset<int64_t>> live;
  std::set<std::tuple<std::string, int64_t, int64_t>> seen;
  std::map<std::string, uint64_t> last_time;
  for (const auto& m : msgs) {
    nlohmann::json j = nlohmann::json::parse(m.value, nullptr, false);
    if (j.is_discarded()) return "not JSON: " + m.value;
    std::string w = j.at("word");
    int64_t c = j.at("count"), diff = j.at("diff");
    uint64_t t = j.at("time");
    if (!m.key || *m.key != w) return "key is not the word: " + m.value;
    if (t < last_time[w]) return "time went back: " + m.value;
    last_time[w] = t;
    if (!seen.insert({w, c, diff}).second) return "duplicate change: " + m.value;
    if (diff == 1) {
      if (!live[w].empty()) return "insertion while a row is live: " + m.value;
      live[w].insert(c);
    } else if (diff == -1) {
      auto it = live[w].find(c);
      if (it == live[w].end()) return "retraction of a row that is not live: " + m.value;
      live[w].erase(it);
    } else {
      return "unexpected diff: " + m.value;
    }
  }
  std::map<std::string, int64_t> final_counts;
  for (auto& [w, s] : live)
    if (!s.empty()) final_counts[w] = *s.begin();
  if (final_counts != expected) {
    std::string got, want;
    for (auto& [w, c] : final_counts) got += w + "=" + std::to_string(c) + " ";
    for (auto& [w, c] : expected) want += w + "=" + std::to_string(c) + " ";
    return "final counts differ: got " + got + "want " + want;
  }
  return "";
}

std::map<std::string, int64_t> live_counts(const std::vector<InMessage>& msgs) {
  std::map<std::string, int64_t> out;
  for (const auto& m : msgs) {
    nlohmann::json j = nlohmann::json::parse(m.value, nullptr, false);
    if (j.is_discarded()) continue;
    std::string w = j.at("word");
    int64_t c = j.at("count"), diff = j.at("diff");
    if (diff == 1) out[w] = c;
    else if (out.count(w) && out[w] == c) out.erase(w);
  }
  return out;
}

// A wordcount process with its output in `log`.
struct Wordcount {
  pid_t pid = -1;
  void start(const std::vector<std::string>& args, const std::string& log) {
    pid = fork();
    if (pid == 0) {
      FILE* f = freopen(log.c_str(), "a", stderr);
      (void)f;
      dup2(fileno(stderr), 1);
      std::vector<char*> argv;
      std::string bin = std::string(TIDEMARK_BIN_DIR) + "/wordcount";
      argv.push_back(bin.data());
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(bin.c_str(), argv.data());
      _exit(127);
    }
  }
  // Signals and reaps; returns the wait status.
  int stop(int sig) {
    if (pid <= 0) return -1;
    kill(pid, sig);
    int st = 0;
    waitpid(pid, &st, 0);
    pid = -1;
    return st;
  }
  bool exited(int* status) {
    if (pid <= 0) return true;
    if (waitpid(pid, status, WNOHANG) == pid) {
      pid = -1;
      return true;
    }
    return false;
  }
  ~Wordcount() { stop(SIGKILL); }
};

std::vector<std::string> wordcount_args(const std::string& in, const std::string& out, const std::string& state) {
  return {"--input-kafka", kafka_bootstrap() + "/" + in, "--output-kafka", kafka_bootstrap() + "/" + out,
          "--persistent-storage", state, "--autocommit-ms", "100", "--lock-lease-ms", "2000"};
}

TEST(KafkaWrite, WordcountCleanRestartsExactlyOnce) {
  REQUIRE_KAFKA();
  std::string in = unique_topic("wc-in"), out = unique_topic("wc-out");
  create_topic(in, 2);
  create_topic(out, 2);
  TempDir d;
  TestProducer p;
  std::map<std::string, int64_t> expected;
  std::vector<std::vector<std::string>> runs = {{"a b c", "a", "b b"}, {"c d", "a"}, {"e", "a b c d e"}};
  size_t previous = 0;
  for (size_t r = 0; r < runs.size(); ++r) {
    p.send_values(in, runs[r]);
    for (const auto& line : runs[r]) {
      std::stringstream ss(line);
      std::string w;
      while (ss >> w) ++expected[w];
    }
    Wordcount wc;
    wc.start(wordcount_args(in, out, d / "state"), d / "log");
    std::vector<InMessage> msgs;
    ASSERT_TRUE(eventually([&] {
      msgs = read_committed(out);
      return live_counts(msgs) == expected;
    })) << "run " << r << " did not produce the counts; log:\n" << read_text(d / "log");
    int st = wc.stop(SIGTERM);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << read_text(d / "log");
    msgs = read_committed(out);
    EXPECT_EQ(check_exactly_once(msgs, expected), "") << "after run " << r;
    EXPECT_GT(msgs.size(), previous);
    previous = msgs.size();
  }
}

// The crash test: words arrive while wordcount is SIGKILLed at random moments (and the broker
// is restarted once); the output holds every change exactly once and ends at the exact counts.
TEST(KafkaWrite, WordcountSigkillExactlyOnce) {
  REQUIRE_KAFKA();
  std::string in = unique_topic("crash-in"), out = unique_topic("crash-out");
  create_topic(in, 3);
  create_topic(out, 3);
  TempDir d;
  const int kMessages = 400, kKills = std::getenv("TIDEMARK_KAFKA_KILLS") ? std::atoi(std::getenv("TIDEMARK_KAFKA_KILLS")) : 8;
  std::map<std::string, int64_t> expected;
  std::vector<std::string> lines;
  std::mt19937 rng(12345);
  for (int i = 0; i < kMessages; ++i) {
    std::string line;
    for (int k = 0; k < 1 + static_cast<int>(rng() % 3); ++k) {
      std::string w = "w" + std::to_string(rng() % 25);
      ++expected[w];
      line += (k ? " " : "") + w;
    }
    lines.push_back(line);
  }
  std::atomic<bool> produced{false};
  std::thread producer([&] {
    TestProducer p;
    for (int i = 0; i < kMessages; i += 10) {
      p.send_values(in, std::vector<std::string>(lines.begin() + i, lines.begin() + std::min(i + 10, kMessages)));
      std::this_thread::sleep_for(std::chrono::milliseconds(60));  // input pacing
    }
    produced = true;
  });
  const char* server_dir = std::getenv("TIDEMARK_KAFKA_SERVER_DIR");
  std::uniform_int_distribution<int> delay_ms(300, 2500);
  int kills = 0, broker_restarts = 0, early_exits = 0;
  for (int round = 0; round < kKills; ++round) {
    Wordcount wc;
    wc.start(wordcount_args(in, out, d / "state"), d / "log");
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));  // a random crash moment
    if (round == kKills / 2 && server_dir) {
      // Broker restart while wordcount runs (it may stop with an error or ride it out).
      std::string script = std::string(TIDEMARK_SOURCE_DIR) + "/scripts/kafka-server.sh";
      std::string port = read_text(std::string(server_dir) + "/kafka.port");
      while (!port.empty() && (port.back() == '\n')) port.pop_back();
      ASSERT_EQ(std::system(("bash " + script + " stop " + server_dir).c_str()), 0);
      ASSERT_EQ(std::system(("bash " + script + " start " + server_dir + " " + port + " >/dev/null").c_str()), 0);
      ++broker_restarts;
    }
    int st;
    if (wc.exited(&st)) ++early_exits;
    wc.stop(SIGKILL);
    ++kills;
  }
  producer.join();
  ASSERT_TRUE(produced);
  Wordcount wc;
  wc.start(wordcount_args(in, out, d / "state"), d / "log");
  std::vector<InMessage> msgs;
  bool done = eventually(
      [&] {
        int st;
        if (wc.exited(&st)) wc.start(wordcount_args(in, out, d / "state"), d / "log");  // after a broker restart
        msgs = read_committed(out);
        return live_counts(msgs) == expected;
      },
      std::chrono::seconds(120));
  int st = wc.stop(SIGTERM);
  msgs = read_committed(out);
  EXPECT_TRUE(done) << "final counts not reached; log:\n" << read_text(d / "log");
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << read_text(d / "log");
  EXPECT_EQ(check_exactly_once(msgs, expected), "");
  // How often a restart found a committed batch missing from Kafka (a kill between our commit
  // and the end of its transaction) or already there.
  auto occurrences = [](const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
    return n;
  };
  std::string log = read_text(d / "log");
  std::printf("[crash test] %d SIGKILLs, %d broker restart(s), %d early exits, %zu output messages, %zu words; "
              "restarts that re-published committed batches: %zu, found them in Kafka: %zu\n",
              kills, broker_restarts, early_exits, msgs.size(), expected.size(),
              occurrences(log, "re-publishing"), occurrences(log, "had reached Kafka"));
}

// Deterministic crashes at each point of the publish protocol (TIDEMARK_KAFKA_SINK_CRASH, see
// kafka_sink.cc): before the transaction (our commit durable, nothing in Kafka), with the
// transaction open (messages on the broker, uncommitted) and after it committed. The restart
// must re-publish exactly the missing batches (first two) or find them in Kafka (third).
TEST(KafkaWrite, CrashAtEachPublishPointExactlyOnce) {
  REQUIRE_KAFKA();
  struct Point {
    const char* name;
    const char* expect_in_log;
  };
  for (Point pt : {Point{"before_publish", "re-publishing"}, Point{"mid_transaction", "re-publishing"},
                   Point{"after_transaction", "had reached Kafka"}}) {
    SCOPED_TRACE(pt.name);
    std::string in = unique_topic("point-in"), out = unique_topic("point-out");
    create_topic(in, 2);
    create_topic(out, 2);
    TempDir d;
    TestProducer p;
    std::map<std::string, int64_t> expected;
    auto send = [&](const std::vector<std::string>& lines) {
      p.send_values(in, lines);
      for (const auto& line : lines) {
        std::stringstream ss(line);
        std::string w;
        while (ss >> w) ++expected[w];
      }
    };
    send({"a b", "c"});
    // Run 1 crashes at its 2nd publish: the 1st publish (if the first input was one commit) is
    // in Kafka, the 2nd is committed in our storage only (or also in Kafka: after_transaction).
    setenv("TIDEMARK_KAFKA_SINK_CRASH", (std::string(pt.name) + ":2").c_str(), 1);
    Wordcount wc;
    wc.start(wordcount_args(in, out, d / "state"), d / "log");
    unsetenv("TIDEMARK_KAFKA_SINK_CRASH");
    int st = 0;
    bool crashed = false;
    // The first input may already take two commits (then the crash comes before the second).
    ASSERT_TRUE(eventually([&] {
      if (wc.exited(&st)) crashed = true;
      return crashed || live_counts(read_committed(out)) == expected;
    }));
    send({"a d", "b"});
    if (!crashed) {
      ASSERT_TRUE(eventually([&] { return wc.exited(&st); })) << read_text(d / "log");
    }
    ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << read_text(d / "log");
    Wordcount wc2;
    wc2.start(wordcount_args(in, out, d / "state"), d / "log");
    std::vector<InMessage> msgs;
    EXPECT_TRUE(eventually([&] {
      msgs = read_committed(out);
      return live_counts(msgs) == expected;
    })) << read_text(d / "log");
    st = wc2.stop(SIGTERM);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << read_text(d / "log");
    std::string log = read_text(d / "log");
    EXPECT_NE(log.find(std::string("test crash at ") + pt.name), std::string::npos) << log;
    EXPECT_NE(log.find(pt.expect_in_log), std::string::npos) << log;
    EXPECT_EQ(check_exactly_once(read_committed(out), expected), "") << log;
  }
}

// A second instance with the same transactional id fences the first: the first's next commit
// fails and none of its later output becomes visible.
TEST(KafkaWrite, SecondInstanceFencesFirst) {
  REQUIRE_KAFKA();
  std::string out = unique_topic("fence-out");
  create_topic(out, 1);
  TempDir d;
  auto make = [&](Graph& g, std::shared_ptr<io::Subject> subj) {
    Table t = io::read_subject(g, subj, Schema{{"word", t_str()}}, "in");
    io::kafka::WriteOptions w;
    w.bootstrap_servers = kafka_bootstrap();
    w.topic = out;
    w.key_column = "word";
    w.name = "out";
    w.transactional_id = "tidemark-test-" + out;
    io::kafka::write(t, w);
  };
  auto opts = [&](const std::string& state, std::atomic<bool>* stop) {
    RunOptions o = quiet_options(stop);
    o.persistence_config = persistence::Config::simple_config(persistence::Backend::filesystem(state), 0);
    return o;
  };
  auto values = [&] {
    std::multiset<std::string> s;
    for (auto& m : read_committed(out)) s.insert(nlohmann::json::parse(m.value).at("word").get<std::string>());
    return s;
  };
  Graph ga, gb;
  auto sa = std::make_shared<io::Subject>(), sb = std::make_shared<io::Subject>();
  make(ga, sa);
  make(gb, sb);
  std::atomic<bool> stop_a{false}, stop_b{false};
  Status ra, rb;
  std::atomic<bool> a_done{false};
  std::thread ta([&] {
    ra = run(ga, opts(d / "a", &stop_a));
    a_done = true;
  });
  sa->next({Value("first")});
  sa->commit();
  ASSERT_TRUE(eventually([&] { return values() == std::multiset<std::string>{"first"}; }));
  std::thread tb([&] { rb = run(gb, opts(d / "b", &stop_b)); });
  sb->next({Value("second")});
  sb->commit();
  ASSERT_TRUE(eventually([&] { return values() == std::multiset<std::string>{"first", "second"}; }));
  sa->next({Value("zombie")});
  sa->commit();
  EXPECT_TRUE(eventually([&] { return a_done.load(); }, std::chrono::seconds(60)));
  stop_a = true;
  ta.join();
  EXPECT_FALSE(ra.is_ok());
  EXPECT_NE(ra.message().find("fenced by a newer instance"), std::string::npos) << ra.to_string();  // librdkafka's text
  std::printf("[fencing] first instance stopped with: %s\n", ra.to_string().c_str());
  stop_b = true;
  tb.join();
  EXPECT_TRUE(rb.is_ok()) << rb.to_string();
  EXPECT_EQ(values(), (std::multiset<std::string>{"first", "second"}));
}

TEST(KafkaWrite, WithoutPersistenceCsv) {
  REQUIRE_KAFKA();
  std::string out = unique_topic("plain-out");
  create_topic(out, 1);
  Graph g;
  Table t = debug::table_from_markdown(g, R"(
    | name  | age
    | alice | 30
    | bob   | 25
  )");
  io::kafka::WriteOptions w;
  w.bootstrap_servers = kafka_bootstrap();
  w.topic = out;
  w.format = io::kafka::Format::kCsv;
  w.key_column = "name";
  io::kafka::write(t, w);
  Status st = run(g, quiet_options());
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  std::multiset<std::string> got;
  for (auto& m : read_committed(out)) {
    std::string v = m.value;
    got.insert(*m.key + "|" + v.substr(0, v.find(',', v.find(',') + 1)) + v.substr(v.rfind(',')));
  }
  EXPECT_EQ(got, (std::multiset<std::string>{"alice|alice,30,1", "bob|bob,25,1"}));
}

// kafka::write then kafka::read, json and csv: the values come back with their types.
TEST(KafkaWrite, RoundTripJsonAndCsv) {
  REQUIRE_KAFKA();
  for (auto f : {io::kafka::Format::kJson, io::kafka::Format::kCsv}) {
    std::string topic = unique_topic("roundtrip");
    create_topic(topic, 2);
    {
      Graph g;
      Table t = debug::table_from_markdown(g, R"(
        | name    | age | score | ok
        | alice   | 30  | 1.5   | True
        | b,"o"b  | 25  | -2.25 | False
      )");
      io::kafka::WriteOptions w;
      w.bootstrap_servers = kafka_bootstrap();
      w.topic = topic;
      w.format = f;
      w.key_column = "name";
      io::kafka::write(t, w);
      Status st = run(g, quiet_options());
      ASSERT_TRUE(st.is_ok()) << st.to_string();
    }
    Graph g;
    io::kafka::ReadOptions r;
    r.bootstrap_servers = kafka_bootstrap();
    r.topic = topic;
    r.format = f;
    r.schema = Schema{{"name", t_str()}, {"age", t_int()}, {"score", t_float()}, {"ok", t_bool()},
                      {"time", t_int()}, {"diff", t_int()}};
    r.key_column = "key";
    r.autocommit_duration_ms = 100;
    Table back = io::kafka::read(g, r).select(
        {{"name", col("name")}, {"age", col("age")}, {"score", col("score")}, {"ok", col("ok")},
         {"diff", col("diff")}, {"key", col("key")}});
    Collector c;
    io::subscribe(back, c.callbacks());
    std::atomic<bool> stop{false};
    Status rs;
    std::thread th([&] { rs = run(g, quiet_options(&stop)); });
    EXPECT_TRUE(c.wait([&] { return c.live.size() >= 2; }));
    stop = true;
    th.join();
    ASSERT_TRUE(rs.is_ok()) << rs.to_string();
    EXPECT_EQ(c.live, (std::multiset<std::string>{"(alice, 30, 1.5, True, 1, alice)",
                                                  "(b,\"o\"b, 25, -2.25, False, 1, b,\"o\"b)"}))
        << (f == io::kafka::Format::kJson ? "json" : "csv");
  }
}

}  // namespace
}  // namespace tidemark::testing
