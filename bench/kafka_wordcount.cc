// Kafka -> word count -> Kafka, against a real broker, in the same run:
//   * throughput: Tidemark (io::kafka::read -> split/flatten -> groupby count -> io::kafka::write,
//     with persistence on a local directory, exactly-once output) vs a plain librdkafka loop
//     (consume, count in a hash map, produce one message per count change; no persistence,
//     at-least-once);
//   * end-to-end latency p50/p95 of the Tidemark pipeline at a fixed input rate: time from
//     producing a message with a fresh word to its count change being visible to a
//     read_committed consumer of the output topic.
//
// Usage: bench_kafka_wordcount [--bootstrap HOST:PORT] [--messages N] [--rate R] [--seconds S]
//   bootstrap defaults to $TIDEMARK_KAFKA_BOOTSTRAP or 127.0.0.1:19092 (scripts/kafka-server.sh).
#include <librdkafka/rdkafka.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "tidemark/tidemark.h"

using namespace tidemark;
using Clock = std::chrono::steady_clock;

namespace {
std::string g_bootstrap;

rd_kafka_t* client(rd_kafka_type_t type, std::vector<std::pair<std::string, std::string>> extra = {}) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  extra.insert(extra.begin(), {{"bootstrap.servers", g_bootstrap}, {"log_level", "3"}});
  for (auto& [k, v] : extra)
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      std::fprintf(stderr, "%s: %s\n", k.c_str(), err);
      std::exit(1);
    }
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
  if (!rk) {
    std::fprintf(stderr, "%s\n", err);
    std::exit(1);
  }
  return rk;
}

void create_topic(const std::string& topic, int partitions) {
  rd_kafka_t* rk = client(RD_KAFKA_PRODUCER);
  char err[256];
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, err, sizeof err);
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &nt, 1, nullptr, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_NewTopic_destroy(nt);
  rd_kafka_queue_destroy(q);
  // wait for leaders
  for (int i = 0; i < 100; ++i) {
    int64_t lo, hi;
    bool ok = true;
    for (int p = 0; p < partitions && ok; ++p)
      ok = rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &lo, &hi, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR;
    if (ok) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  rd_kafka_destroy(rk);
}

void produce(rd_kafka_t* rk, const std::string& topic, const std::string& value, const std::string* key = nullptr) {
  const char* k = key ? key->data() : nullptr;
  size_t kl = key ? key->size() : 0;
  while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()),
                           RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()), RD_KAFKA_V_KEY(k, kl),
                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
    rd_kafka_poll(rk, 10);
}

std::string unique(const std::string& base) { return base + "-" + std::to_string(getpid()) + "-" + std::to_string(rand()); }

// Runs the Tidemark pipeline until the counts of `total_words` words have been emitted.
double run_tidemark(const std::string& in, const std::string& out, uint64_t total_words, const std::string& state,
                    std::atomic<bool>* stop_flag = nullptr) {
  Graph g;
  io::kafka::ReadOptions ro;
  ro.bootstrap_servers = g_bootstrap;
  ro.topic = in;
  ro.format = io::kafka::Format::kPlaintext;
  ro.name = "in";
  ro.autocommit_duration_ms = 100;
  Table counts = io::kafka::read(g, ro)
                     .select({{"word", str::split(col("data"))}})
                     .flatten("word")
                     .groupby({"word"})
                     .reduce({{"word", col("word")}, {"count", reducers::count()}});
  io::kafka::WriteOptions wo;
  wo.bootstrap_servers = g_bootstrap;
  wo.topic = out;
  wo.key_column = "word";
  wo.name = "out";
  io::kafka::write(counts, wo);
  std::atomic<int64_t> sum{0};
  std::atomic<bool> stop{false};
  io::subscribe(counts, {[&](const Key&, const Row& r, uint64_t, bool add) { sum += (add ? 1 : -1) * r[1].as_int(); },
                         [&](uint64_t) {
                           if (total_words && static_cast<uint64_t>(sum.load()) >= total_words) stop = true;
                           if (stop_flag && stop_flag->load()) stop = true;
                         },
                         nullptr});
  RunOptions o;
  o.handle_signals = false;
  o.progress_interval_s = 0;
  o.stop = &stop;
  o.log = [](const std::string&) {};
  o.persistence_config = persistence::Config::simple_config(persistence::Backend::filesystem(state), 0);
  auto t0 = Clock::now();
  std::thread watchdog([&] {
    while (!stop) {
      if (stop_flag && stop_flag->load()) stop = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  Status st = run(g, o);
  stop = true;
  watchdog.join();
  if (!st.is_ok()) {
    std::fprintf(stderr, "tidemark run failed: %s\n", st.to_string().c_str());
    std::exit(1);
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Plain loop: consume every partition from the beginning, count, produce each change.
double run_plain(const std::string& in, const std::string& out, uint64_t messages, int partitions) {
  auto t0 = Clock::now();
  rd_kafka_t* c = client(RD_KAFKA_CONSUMER, {{"group.id", "bench-plain"}, {"enable.auto.commit", "false"}});
  rd_kafka_t* p = client(RD_KAFKA_PRODUCER, {{"linger.ms", "5"}, {"enable.idempotence", "true"}});
  rd_kafka_topic_partition_list_t* l = rd_kafka_topic_partition_list_new(partitions);
  for (int i = 0; i < partitions; ++i) rd_kafka_topic_partition_list_add(l, in.c_str(), i)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(c, l);
  rd_kafka_topic_partition_list_destroy(l);
  std::unordered_map<std::string, int64_t> counts;
  uint64_t n = 0, t = 0;
  while (n < messages) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(c, 100);
    if (!m) continue;
    if (!m->err) {
      ++n;
      ++t;
      std::string_view s(static_cast<const char*>(m->payload), m->len);
      std::istringstream ss{std::string(s)};
      std::string w;
      while (ss >> w) {
        int64_t& cnt = counts[w];
        if (cnt) produce(p, out, nlohmann::json{{"word", w}, {"count", cnt}, {"time", t}, {"diff", -1}}.dump(), &w);
        ++cnt;
        produce(p, out, nlohmann::json{{"word", w}, {"count", cnt}, {"time", t}, {"diff", 1}}.dump(), &w);
      }
    }
    rd_kafka_message_destroy(m);
    rd_kafka_poll(p, 0);
  }
  rd_kafka_flush(p, 60000);
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  rd_kafka_consumer_close(c);
  rd_kafka_destroy(c);
  rd_kafka_destroy(p);
  return secs;
}
}  // namespace

int main(int argc, char** argv) {
  const char* env = std::getenv("TIDEMARK_KAFKA_BOOTSTRAP");
  g_bootstrap = env ? env : "127.0.0.1:19092";
  uint64_t messages = 100000;
  int rate = 200, seconds = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--bootstrap") g_bootstrap = argv[i + 1];
    else if (a == "--messages") messages = std::stoull(argv[i + 1]);
    else if (a == "--rate") rate = std::stoi(argv[i + 1]);
    else if (a == "--seconds") seconds = std::stoi(argv[i + 1]);
  }
  srand(static_cast<unsigned>(time(nullptr)));
  const int kParts = 3;
  std::string in = unique("bench-in"), out_t = unique("bench-out-tm"), out_p = unique("bench-out-plain");
  create_topic(in, kParts);
  create_topic(out_t, kParts);
  create_topic(out_p, kParts);
  // Input: `messages` lines of 4 words from a 1000-word vocabulary.
  uint64_t total_words = 0;
  {
    rd_kafka_t* p = client(RD_KAFKA_PRODUCER, {{"linger.ms", "20"}});
    for (uint64_t i = 0; i < messages; ++i) {
      std::string line;
      for (int k = 0; k < 4; ++k) line += (k ? " w" : "w") + std::to_string((i * 7919 + k * 104729) % 1000);
      total_words += 4;
      produce(p, in, line);
    }
    rd_kafka_flush(p, 120000);
    rd_kafka_destroy(p);
  }
  std::string dir = std::filesystem::temp_directory_path() / unique("bench-kafka-state");
  double plain = run_plain(in, out_p, messages, kParts);
  double tm = run_tidemark(in, out_t, total_words, dir + "/a");
  std::printf("| pipeline | messages | words | seconds | messages/s |\n|---|---|---|---|---|\n");
  std::printf("| plain librdkafka consume + hash map + produce | %llu | %llu | %.2f | %.0f |\n",
              static_cast<unsigned long long>(messages), static_cast<unsigned long long>(total_words), plain,
              messages / plain);
  std::printf("| Tidemark kafka::read -> count -> kafka::write (persistence, exactly-once) | %llu | %llu | %.2f | %.0f |\n",
              static_cast<unsigned long long>(messages), static_cast<unsigned long long>(total_words), tm,
              messages / tm);

  // Latency at a fixed rate: each message a fresh word "lat<i>".
  std::string lin = unique("bench-lat-in"), lout = unique("bench-lat-out");
  create_topic(lin, kParts);
  create_topic(lout, kParts);
  std::atomic<bool> stop{false};
  std::thread pipeline([&] { run_tidemark(lin, lout, 0, dir + "/b", &stop); });
  std::mutex mu;
  std::unordered_map<std::string, Clock::time_point> sent;
  std::vector<double> lat_ms;
  const int total = rate * seconds;
  std::thread reader([&] {
    rd_kafka_t* c = client(RD_KAFKA_CONSUMER, {{"group.id", "bench-lat"}, {"isolation.level", "read_committed"},
                                               {"enable.auto.commit", "false"}, {"fetch.wait.max.ms", "10"}});
    rd_kafka_topic_partition_list_t* l = rd_kafka_topic_partition_list_new(kParts);
    for (int i = 0; i < kParts; ++i) rd_kafka_topic_partition_list_add(l, lout.c_str(), i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, l);
    rd_kafka_topic_partition_list_destroy(l);
    auto deadline = Clock::now() + std::chrono::seconds(seconds + 60);
    while (Clock::now() < deadline) {
      {
        std::lock_guard g(mu);
        if (static_cast<int>(lat_ms.size()) >= total) break;
      }
      rd_kafka_message_t* m = rd_kafka_consumer_poll(c, 100);
      if (!m) continue;
      if (!m->err && m->key) {
        auto now = Clock::now();
        std::string k(static_cast<const char*>(m->key), m->key_len);
        std::lock_guard g(mu);
        auto it = sent.find(k);
        if (it != sent.end()) {
          lat_ms.push_back(std::chrono::duration<double, std::milli>(now - it->second).count());
          sent.erase(it);
        }
      }
      rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
  });
  {
    rd_kafka_t* p = client(RD_KAFKA_PRODUCER, {{"linger.ms", "0"}});
    auto t0 = Clock::now();
    for (int i = 0; i < total; ++i) {
      std::this_thread::sleep_until(t0 + std::chrono::microseconds(1000000LL * i / rate));
      std::string w = "lat" + std::to_string(i);
      {
        std::lock_guard g(mu);
        sent[w] = Clock::now();
      }
      produce(p, lin, w);
      rd_kafka_poll(p, 0);
    }
    rd_kafka_flush(p, 30000);
    rd_kafka_destroy(p);
  }
  reader.join();
  stop = true;
  pipeline.join();
  std::sort(lat_ms.begin(), lat_ms.end());
  auto pct = [&](double q) { return lat_ms.empty() ? 0.0 : lat_ms[std::min(lat_ms.size() - 1, size_t(q * lat_ms.size()))]; };
  std::printf("\nlatency at %d messages/s for %d s (autocommit 100 ms, a transaction per commit): %zu/%d seen, "
              "p50 %.1f ms, p95 %.1f ms, max %.1f ms\n",
              rate, seconds, lat_ms.size(), total, pct(0.5), pct(0.95), lat_ms.empty() ? 0.0 : lat_ms.back());
  std::filesystem::remove_all(dir);
  return 0;
}
