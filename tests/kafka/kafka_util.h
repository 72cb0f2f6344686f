// Helpers for the Kafka tests: a real broker at TIDEMARK_KAFKA_BOOTSTRAP (scripts/test.sh starts
// one with scripts/kafka-server.sh), topic creation, producing, and reading a topic back with
// isolation.level=read_committed up to its end. Waits are bounded polls, never sleeps.
#pragma once

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace tidemark::testing {

inline std::string kafka_bootstrap() {
  const char* b = std::getenv("TIDEMARK_KAFKA_BOOTSTRAP");
  return b ? b : "";
}

// Every Kafka test starts with this: without a broker the test fails, naming what to set.
#define REQUIRE_KAFKA()                                                                                     \
  do {                                                                                                      \
    if (kafka_bootstrap().empty()) {                                                                        \
      if (std::getenv("TIDEMARK_KAFKA_OPTIONAL")) GTEST_SKIP() << "TIDEMARK_KAFKA_BOOTSTRAP not set";        \
      FAIL() << "the Kafka tests need a broker: run scripts/test.sh, or start one with "                    \
                "`scripts/kafka-server.sh start DIR 19092` and set TIDEMARK_KAFKA_BOOTSTRAP=127.0.0.1:19092 " \
                "(or TIDEMARK_KAFKA_OPTIONAL=1 to skip the Kafka tests)";                                   \
    }                                                                                                       \
  } while (0)

inline std::string unique_topic(const std::string& base) {
  static std::mt19937_64 rng(std::random_device{}());
  return base + "-" + std::to_string(getpid()) + "-" + std::to_string(rng() % 1000000000);
}

inline rd_kafka_t* kafka_client(rd_kafka_type_t type, std::vector<std::pair<std::string, std::string>> extra = {}) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  std::vector<std::pair<std::string, std::string>> s = {{"bootstrap.servers", kafka_bootstrap()}, {"log_level", "3"}};
  s.insert(s.end(), extra.begin(), extra.end());
  for (auto& [k, v] : s)
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      ADD_FAILURE() << k << ": " << err;
      return nullptr;
    }
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
  if (!rk) ADD_FAILURE() << err;
  return rk;
}

inline void admin_wait(rd_kafka_t* rk, rd_kafka_queue_t* q, rd_kafka_event_type_t type, const std::string& what) {
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  ASSERT_TRUE(ev) << what << ": no answer";
  ASSERT_EQ(rd_kafka_event_type(ev), type);
  std::string err;
  if (type == RD_KAFKA_EVENT_CREATETOPICS_RESULT) {
    size_t n;
    const rd_kafka_topic_result_t** r = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    for (size_t i = 0; i < n; ++i)
      if (rd_kafka_topic_result_error(r[i])) err = rd_kafka_topic_result_error_string(r[i]);
  } else if (type == RD_KAFKA_EVENT_CREATEPARTITIONS_RESULT) {
    size_t n;
    const rd_kafka_topic_result_t** r =
        rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(ev), &n);
    for (size_t i = 0; i < n; ++i)
      if (rd_kafka_topic_result_error(r[i])) err = rd_kafka_topic_result_error_string(r[i]);
  }
  if (rd_kafka_event_error(ev)) err = rd_kafka_event_error_string(ev);
  rd_kafka_event_destroy(ev);
  ASSERT_EQ(err, "") << what;
}

// Waits until the metadata shows `partitions` partitions of `topic` with leaders.
inline void wait_partitions(rd_kafka_t* rk, const std::string& topic, int partitions) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    rd_kafka_topic_t* t = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    bool ok = false;
    if (rd_kafka_metadata(rk, 0, t, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      for (int i = 0; i < md->topic_cnt; ++i)
        if (topic == md->topics[i].topic && !md->topics[i].err && md->topics[i].partition_cnt == partitions) {
          ok = true;
          for (int p = 0; p < partitions; ++p) ok = ok && md->topics[i].partitions[p].leader >= 0;
        }
      rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(t);
    if (ok) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // polling interval, not a wait-and-hope
  }
  ADD_FAILURE() << "topic " << topic << " did not get " << partitions << " partitions";
}

inline void create_topic(const std::string& topic, int partitions) {
  rd_kafka_t* rk = kafka_client(RD_KAFKA_PRODUCER);
  ASSERT_TRUE(rk);
  char err[256];
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, err, sizeof err);
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &nt, 1, nullptr, q);
  admin_wait(rk, q, RD_KAFKA_EVENT_CREATETOPICS_RESULT, "create topic " + topic);
  rd_kafka_NewTopic_destroy(nt);
  rd_kafka_queue_destroy(q);
  wait_partitions(rk, topic, partitions);
  rd_kafka_destroy(rk);
}

inline void add_partitions(const std::string& topic, int total) {
  rd_kafka_t* rk = kafka_client(RD_KAFKA_PRODUCER);
  ASSERT_TRUE(rk);
  char err[256];
  rd_kafka_NewPartitions_t* np = rd_kafka_NewPartitions_new(topic.c_str(), total, err, sizeof err);
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_CreatePartitions(rk, &np, 1, nullptr, q);
  admin_wait(rk, q, RD_KAFKA_EVENT_CREATEPARTITIONS_RESULT, "add partitions to " + topic);
  rd_kafka_NewPartitions_destroy(np);
  rd_kafka_queue_destroy(q);
  wait_partitions(rk, topic, total);
  rd_kafka_destroy(rk);
}

struct OutMessage {
  std::optional<std::string> key;
  std::string value;
  int32_t partition = RD_KAFKA_PARTITION_UA;
  std::vector<std::pair<std::string, std::string>> headers;
};

// A plain (non-transactional) producer; send() returns once every message is acknowledged.
class TestProducer {
 public:
  TestProducer() : rk_(kafka_client(RD_KAFKA_PRODUCER, {{"linger.ms", "0"}, {"enable.idempotence", "true"}, {"topic.metadata.refresh.interval.ms", "500"}})) {}
  ~TestProducer() {
    if (rk_) rd_kafka_destroy(rk_);
  }
  void send(const std::string& topic, const std::vector<OutMessage>& msgs) {
    for (const auto& m : msgs) {
      rd_kafka_headers_t* h = nullptr;
      if (!m.headers.empty()) {
        h = rd_kafka_headers_new(m.headers.size());
        for (auto& [k, v] : m.headers) rd_kafka_header_add(h, k.c_str(), k.size(), v.data(), v.size());
      }
      const char* key = m.key ? m.key->data() : nullptr;
      size_t key_len = m.key ? m.key->size() : 0;
      int unknown_partition_retries = 0;
      for (;;) {
        rd_kafka_resp_err_t e =
            h ? rd_kafka_producev(rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(m.partition),
                                  RD_KAFKA_V_VALUE(const_cast<char*>(m.value.data()), m.value.size()),
                                  RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_HEADERS(h),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)
              : rd_kafka_producev(rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(m.partition),
                                  RD_KAFKA_V_VALUE(const_cast<char*>(m.value.data()), m.value.size()),
                                  RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL ||
            (e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION && ++unknown_partition_retries < 200)) {
          rd_kafka_poll(rk_, 50);  // queue full, or metadata not yet showing a new partition
          continue;
        }
        ASSERT_EQ(e, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(e);
        break;
      }
    }
    ASSERT_EQ(rd_kafka_flush(rk_, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  void send_values(const std::string& topic, const std::vector<std::string>& values) {
    std::vector<OutMessage> m;
    for (const auto& v : values) m.push_back({std::nullopt, v, RD_KAFKA_PARTITION_UA, {}});
    send(topic, m);
  }

 private:
  rd_kafka_t* rk_;
};

struct InMessage {
  std::optional<std::string> key;
  std::string value;
  int32_t partition;
  int64_t offset;
};

// Every message of `topic` visible to a read_committed consumer right now (each partition read
// from its beginning to its last stable offset), in partition then offset order.
inline std::vector<InMessage> read_committed(const std::string& topic) {
  std::vector<InMessage> out;
  rd_kafka_t* rk = kafka_client(RD_KAFKA_CONSUMER, {{"group.id", "tidemark-test-reader"},
                                                    {"enable.auto.commit", "false"},
                                                    {"isolation.level", "read_committed"},
                                                    {"enable.partition.eof", "true"}});
  if (!rk) return out;
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  int n = 0;
  if (rd_kafka_metadata(rk, 0, t, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int i = 0; i < md->topic_cnt; ++i)
      if (topic == md->topics[i].topic) n = md->topics[i].partition_cnt;
    rd_kafka_metadata_destroy(md);
  }
  rd_kafka_topic_destroy(t);
  EXPECT_GT(n, 0) << "topic " << topic;
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(n);
  for (int p = 0; p < n; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  std::map<int32_t, std::vector<InMessage>> by_part;
  std::set<int32_t> eof;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (static_cast<int>(eof.size()) < n && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 200);
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      eof.insert(m->partition);
    } else if (!m->err) {
      eof.erase(m->partition);
      InMessage im;
      if (m->key) im.key = std::string(static_cast<const char*>(m->key), m->key_len);
      im.value.assign(static_cast<const char*>(m->payload), m->len);
      im.partition = m->partition;
      im.offset = m->offset;
      by_part[m->partition].push_back(std::move(im));
    }
    rd_kafka_message_destroy(m);
  }
  EXPECT_EQ(static_cast<int>(eof.size()), n) << "did not reach the end of " << topic;
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  for (auto& [p, v] : by_part) out.insert(out.end(), v.begin(), v.end());
  return out;
}

// Polls `pred` every 100 ms until it holds or `timeout` passes; returns whether it held.
inline bool eventually(const std::function<bool()>& pred, std::chrono::seconds timeout = std::chrono::seconds(60)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return pred();
}

}  // namespace tidemark::testing
