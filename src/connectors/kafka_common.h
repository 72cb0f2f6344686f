// Shared helpers of the Kafka source and sink (librdkafka C API).
#pragma once

#include <librdkafka/rdkafka.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tidemark/status.h"

namespace tidemark::connectors::kafka {

struct RdkDeleter {
  void operator()(rd_kafka_t* rk) const {
    if (rk) rd_kafka_destroy(rk);
  }
};
using RdkHandle = std::unique_ptr<rd_kafka_t, RdkDeleter>;

// Builds a librdkafka configuration from key/value pairs (later pairs win); errors name the
// setting.
inline Result<rd_kafka_conf_t*> make_conf(const std::vector<std::pair<std::string, std::string>>& settings,
                                          const std::string& what) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  for (const auto& [k, v] : settings) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return Status::invalid_argument(what + ": librdkafka setting '" + k + "' = '" + v + "': " + err);
    }
  }
  return conf;
}

inline Result<RdkHandle> make_client(rd_kafka_type_t type,
                                     const std::vector<std::pair<std::string, std::string>>& settings,
                                     const std::string& what) {
  TM_ASSIGN_OR_RETURN(rd_kafka_conf_t * conf, make_conf(settings, what));
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);  // takes conf on success
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    return Status::invalid_argument(what + ": cannot create the Kafka client: " + err);
  }
  return RdkHandle(rk);
}

// Number of partitions of `topic`, or an error naming brokers and topic (NotFound when the
// topic does not exist, IoError when no broker answered within timeout_ms).
inline Result<int> partition_count(rd_kafka_t* rk, const std::string& topic, const std::string& bootstrap,
                                   int timeout_ms) {
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, timeout_ms);
  rd_kafka_topic_destroy(t);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
    return Status::io_error("Kafka brokers '" + bootstrap + "' did not answer (topic '" + topic +
                               "'): " + rd_kafka_err2str(e));
  int n = -1;
  rd_kafka_resp_err_t terr = RD_KAFKA_RESP_ERR_NO_ERROR;
  for (int i = 0; i < md->topic_cnt; ++i)
    if (topic == md->topics[i].topic) {
      terr = md->topics[i].err;
      n = md->topics[i].partition_cnt;
    }
  rd_kafka_metadata_destroy(md);
  if (terr == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || n <= 0)
    return Status::not_found("Kafka topic '" + topic + "' does not exist on brokers '" + bootstrap + "'");
  if (terr != RD_KAFKA_RESP_ERR_NO_ERROR)
    return Status::io_error("Kafka topic '" + topic + "' on '" + bootstrap + "': " + rd_kafka_err2str(terr));
  return n;
}

}  // namespace tidemark::connectors::kafka
