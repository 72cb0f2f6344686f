// io::kafka::create_topic: a set-up helper (tests, scripts, the Python package's tests).
#include <chrono>
#include <thread>

#include "connectors/kafka_common.h"
#include "tidemark/io.h"

namespace tidemark::io::kafka {
namespace ck = tidemark::connectors::kafka;

Status create_topic(const std::string& bootstrap_servers, const std::string& topic, int partitions) {
  const std::string what = "creating Kafka topic '" + topic + "' on '" + bootstrap_servers + "'";
  if (partitions < 1) return Status::invalid_argument(what + ": partitions must be at least 1");
  TM_ASSIGN_OR_RETURN(ck::RdkHandle rk,
                      ck::make_client(RD_KAFKA_PRODUCER, {{"bootstrap.servers", bootstrap_servers}}, what));
  char err[256];
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, err, sizeof err);
  if (!nt) return Status::invalid_argument(what + ": " + err);
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk.get());
  rd_kafka_CreateTopics(rk.get(), &nt, 1, nullptr, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30'000);
  std::string error = ev ? "" : "no answer within 30 s";
  if (ev) {
    size_t n = 0;
    const rd_kafka_topic_result_t** r = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    for (size_t i = 0; i < n; ++i)
      if (rd_kafka_topic_result_error(r[i]) && rd_kafka_topic_result_error(r[i]) != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        error = rd_kafka_topic_result_error_string(r[i]);
    if (rd_kafka_event_error(ev)) error = rd_kafka_event_error_string(ev);
    rd_kafka_event_destroy(ev);
  }
  rd_kafka_NewTopic_destroy(nt);
  rd_kafka_queue_destroy(q);
  if (!error.empty()) return Status::io_error(what + ": " + error);
  // Created: wait (bounded) until every partition has a leader, so writers can use it at once.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    Result<int> count = ck::partition_count(rk.get(), topic, bootstrap_servers, 5000);
    if (count.is_ok() && *count == partitions) return Status::ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling the metadata
  }
  return Status::io_error(what + ": its partitions got no leader within 30 s");
}

}  // namespace tidemark::io::kafka
