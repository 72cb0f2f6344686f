// io::kafka::write: one Kafka message per change. With persistence, exactly-once for
// read_committed consumers (protocol: docs/kafka.md):
//
//  * changes since the last commit are buffered; at a commit, flush() closes them into a
//    numbered batch and position() returns every batch Kafka has not yet acknowledged (JSON)
//    — it goes into the manifest, so a committed batch is durable in our storage;
//  * committed() (after the manifest is durable) publishes the unacknowledged batches in one
//    Kafka transaction that also commits, for the dedicated consumer group
//    "<transactional id>.marker", the offset <number of the last batch> on partition 0 of the
//    output topic (send_offsets_to_transaction): the marker lands atomically with the messages;
//  * on restart, init_transactions() fences any older producer with the same transactional id
//    and aborts its unfinished transaction; the marker then tells which batches of the
//    committed position landed; the others are published again, in one transaction.
#include <librdkafka/rdkafka.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <nlohmann/json.hpp>
#include <xxhash.h>

#include "connectors/formats.h"
#include "connectors/kafka_common.h"
#include "connectors/log.h"
#include "engine/collection_io.h"
#include "engine/node.h"
#include "tidemark/io.h"

namespace tidemark::connectors {

namespace {
constexpr int kTxnTimeoutMs = 60000;

// Crash injection for the tests (tests/kafka/kafka_sink_test.cc): with
// TIDEMARK_KAFKA_SINK_CRASH=<point>:<k> the process SIGKILLs itself at the k-th publish of the
// run, at <point> = before_publish (our commit durable, nothing sent), mid_transaction (messages
// sent, transaction open) or after_transaction (transaction committed).
void maybe_crash(const char* point, uint64_t publish_no, rd_kafka_t* flush_first = nullptr) {
  static const char* spec = std::getenv("TIDEMARK_KAFKA_SINK_CRASH");
  if (!spec) return;
  std::string sp(spec);
  size_t colon = sp.find(':');
  if (colon == std::string::npos || sp.substr(0, colon) != point) return;
  if (std::strtoull(sp.c_str() + colon + 1, nullptr, 10) != publish_no) return;
  if (flush_first) rd_kafka_flush(flush_first, 10000);  // the open transaction's messages reach the broker
  std::fprintf(stderr, "[tidemark] test crash at %s of publish %llu\n", point, static_cast<unsigned long long>(publish_no));
  ::kill(::getpid(), SIGKILL);
}

void log_info(const std::string& message) { std::fprintf(stderr, "[tidemark] %s\n", message.c_str()); }

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}
}  // namespace

class KafkaSink final : public engine::Sink {
 public:
  explicit KafkaSink(io::kafka::WriteOptions o) : o_(std::move(o)) {}
  ~KafkaSink() override {
    if (rk_ && !transactional_) rd_kafka_flush(rk_.get(), 10000);
  }

  std::string describe() const override { return "kafka topic '" + o_.topic + "' at '" + o_.bootstrap_servers + "'"; }

  void set_persistent_identity(std::string_view identity) override {
    if (o_.transactional_id.empty())
      o_.transactional_id = "tidemark-" + hex64(XXH3_64bits(identity.data(), identity.size()));
  }

  Status truncate_to(std::string_view position) override {
    transactional_ = true;
    if (o_.transactional_id.empty())
      return Status::failed_precondition(describe() + ": no transactional id (persistence did not name the output)");
    pending_.clear();
    next_batch_ = 1;
    if (position == "0" || position.empty()) return {};
    nlohmann::json j = nlohmann::json::parse(position, nullptr, false);
    auto bad = [&](const std::string& why) {
      return Status::corruption(describe() + ": bad committed position (" + why + ")");
    };
    if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
    try {
      if (j.at("v").get<int>() != 1) return Status::not_supported(describe() + ": position format is newer than this build's");
      next_batch_ = j.at("next").get<uint64_t>();
      for (const auto& b : j.at("pending")) {
        Batch batch;
        batch.no = b.at("no").get<uint64_t>();
        for (const auto& m : b.at("messages"))
          batch.messages.push_back({m.at(0).is_null() ? std::optional<std::string>() : m.at(0).get<std::string>(),
                                    m.at(1).get<std::string>()});
        pending_.push_back(std::move(batch));
      }
    } catch (const std::exception& e) {
      return bad(e.what());
    }
    return {};
  }

  Status open() override {
    std::vector<std::pair<std::string, std::string>> s = {
        {"bootstrap.servers", o_.bootstrap_servers},
        {"enable.idempotence", "true"},
        {"linger.ms", "5"},
        {"socket.connection.setup.timeout.ms", "5000"},
        {"log_level", "3"},
    };
    if (transactional_) {
      s.push_back({"transactional.id", o_.transactional_id});
      s.push_back({"transaction.timeout.ms", std::to_string(kTxnTimeoutMs)});
    }
    s.insert(s.end(), o_.rdkafka_settings.begin(), o_.rdkafka_settings.end());
    TM_ASSIGN_OR_RETURN(rk_, kafka::make_client(RD_KAFKA_PRODUCER, s, describe()));
    TM_ASSIGN_OR_RETURN(int n, kafka::partition_count(rk_.get(), o_.topic, o_.bootstrap_servers, 5000));
    (void)n;
    if (!transactional_) return {};
    // Fences every older producer with this id and ends its transaction (aborts it unless its
    // commit was already requested, in which case it completes).
    TM_RETURN_IF_ERROR(txn_call(rd_kafka_init_transactions(rk_.get(), kTxnTimeoutMs), "init_transactions"));
    TM_ASSIGN_OR_RETURN(int64_t marker, read_marker());
    size_t landed = 0;
    while (!pending_.empty() && static_cast<int64_t>(pending_.front().no) <= marker) {
      pending_.pop_front();
      ++landed;
    }
    if (!pending_.empty())
      log_warning(describe() + ": re-publishing " + std::to_string(pending_.size()) +
                  " committed batch(es) that had not reached Kafka (marker " + std::to_string(marker) + ")");
    else if (landed)
      log_info(describe() + ": the committed batch(es) had reached Kafka (marker " + std::to_string(marker) + ")");
    if (static_cast<int64_t>(next_batch_) <= marker) next_batch_ = static_cast<uint64_t>(marker) + 1;
    acked_ = marker;
    // What the storage committed but Kafka does not have: publish it now.
    if (!pending_.empty()) {
      publish_upto_ = pending_.back().no;
      TM_RETURN_IF_ERROR(publish());
    }
    return {};
  }

  Status write(engine::Time t, const engine::Batch& changes, const Schema& schema) override {
    if (!key_index_ && !o_.key_column.empty()) {
      auto k = schema.find(o_.key_column);
      if (!k) return Status::invalid_argument(describe() + ": key column '" + o_.key_column + "' is not in the table");
      key_index_ = *k;
    }
    for (const engine::Update& u : changes) {
      Message m;
      if (key_index_) {
        const Value& kv = u.row[*key_index_];
        if (!kv.is_none()) m.key = kv.type() == DType::kBytes ? kv.as_bytes() : kv.to_string();
      }
      if (o_.format == io::kafka::Format::kCsv) {
        for (const Value& v : u.row) m.value += csv_field(v) + ",";
        m.value += std::to_string(t) + "," + std::to_string(u.diff);
      } else {
        nlohmann::json j = nlohmann::json::object();
        for (size_t i = 0; i < u.row.size(); ++i) j[schema[i].name] = value_to_json(u.row[i]);
        j["time"] = t;
        j["diff"] = u.diff;
        m.value = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      }
      if (transactional_) current_.push_back(std::move(m));
      else TM_RETURN_IF_ERROR(produce(m));
    }
    if (!transactional_) rd_kafka_poll(rk_.get(), 0);
    return {};
  }

  Status time_end(engine::Time) override { return delivery_error(); }

  Status flush() override {
    if (!rk_) return {};
    if (!transactional_) {
      rd_kafka_resp_err_t e = rd_kafka_flush(rk_.get(), 30000);
      if (e) return Status::io_error(describe() + ": cannot deliver messages: " + rd_kafka_err2str(e));
      return delivery_error();
    }
    if (!current_.empty()) {
      pending_.push_back({next_batch_++, std::move(current_)});
      current_.clear();
    }
    return {};
  }

  std::string position() const override {
    nlohmann::json j = nlohmann::json::object();
    j["v"] = 1;
    j["next"] = next_batch_;
    nlohmann::json arr = nlohmann::json::array();
    for (const Batch& b : pending_) {
      nlohmann::json msgs = nlohmann::json::array();
      for (const Message& m : b.messages) msgs.push_back({m.key ? nlohmann::json(*m.key) : nlohmann::json(), m.value});
      arr.push_back({{"no", b.no}, {"messages", std::move(msgs)}});
    }
    j["pending"] = std::move(arr);
    publish_upto_ = pending_.empty() ? 0 : pending_.back().no;
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }

  Status committed() override {
    if (!transactional_ || !rk_) return {};
    return publish();
  }

  Status close() override {
    if (rk_ && !transactional_) return flush();
    return {};
  }

 private:
  struct Message {
    std::optional<std::string> key;
    std::string value;
  };
  struct Batch {
    uint64_t no = 0;
    std::vector<Message> messages;
  };

  Status delivery_error() { return {}; }

  Status produce(const Message& m) {
    const char* key = m.key ? m.key->data() : nullptr;
    size_t key_len = m.key ? m.key->size() : 0;
    for (;;) {
      rd_kafka_resp_err_t e = rd_kafka_producev(
          rk_.get(), RD_KAFKA_V_TOPIC(o_.topic.c_str()),
          RD_KAFKA_V_VALUE(const_cast<char*>(m.value.data()), m.value.size()),
          RD_KAFKA_V_KEY(key, key_len),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR) return {};
      if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(rk_.get(), 100);
        continue;
      }
      return Status::io_error(describe() + ": cannot produce: " + rd_kafka_err2str(e));
    }
  }

  // The committed offset of the marker group on partition 0: the number of the last batch
  // published, or 0.
  Result<int64_t> read_marker() {
    std::vector<std::pair<std::string, std::string>> s = {
        {"bootstrap.servers", o_.bootstrap_servers},
        {"group.id", marker_group()},
        {"enable.auto.commit", "false"},
        {"log_level", "3"},
    };
    s.insert(s.end(), o_.rdkafka_settings.begin(), o_.rdkafka_settings.end());
    TM_ASSIGN_OR_RETURN(kafka::RdkHandle c, kafka::make_client(RD_KAFKA_CONSUMER, s, describe()));
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, o_.topic.c_str(), 0);
    // Retried: the group coordinator may still be loading right after a broker start.
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (;;) {
      e = rd_kafka_committed(c.get(), list, 10000);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR) e = list->elems[0].err;
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR || std::chrono::steady_clock::now() > deadline) break;
      rd_kafka_poll(c.get(), 200);
    }
    int64_t off = list->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_consumer_close(c.get());
    if (e) return Status::io_error(describe() + ": cannot read the commit marker of group '" + marker_group() + "': " + rd_kafka_err2str(e));
    return off < 0 ? 0 : off;
  }

  std::string marker_group() const { return o_.transactional_id + ".marker"; }

  Status txn_call(rd_kafka_error_t* err, const char* what, bool* retriable = nullptr) {
    if (!err) return {};
    std::string msg = std::string(what) + ": " + rd_kafka_error_string(err);
    bool fatal = rd_kafka_error_is_fatal(err);
    bool abortable = rd_kafka_error_txn_requires_abort(err);
    bool retry = rd_kafka_error_is_retriable(err);
    rd_kafka_error_destroy(err);
    if (retriable) *retriable = !fatal && (abortable || retry);
    if (fatal) return Status::failed_precondition(describe() + ": transactional id '" + o_.transactional_id + "': " + msg +
                                                  " (fenced by another instance?)");
    return Status::io_error(describe() + ": " + msg);
  }

  // Publishes the pending batches numbered <= publish_upto_ in one transaction with the marker.
  // Transient failures leave them pending (the next commit retries; they are in the manifest);
  // a fatal error (fenced) stops the run.
  Status publish() {
    if (pending_.empty() || pending_.front().no > publish_upto_) return {};
    ++publishes_;
    maybe_crash("before_publish", publishes_);
    uint64_t last = 0;
    Status st = txn_call(rd_kafka_begin_transaction(rk_.get()), "begin_transaction");
    bool retriable = false;
    if (st.is_ok()) {
      for (const Batch& b : pending_) {
        if (b.no > publish_upto_) break;
        for (const Message& m : b.messages) {
          st = produce(m);
          if (!st.is_ok()) break;
        }
        if (!st.is_ok()) break;
        last = b.no;
      }
    }
    if (st.is_ok()) {
      rd_kafka_topic_partition_list_t* offs = rd_kafka_topic_partition_list_new(1);
      rd_kafka_topic_partition_list_add(offs, o_.topic.c_str(), 0)->offset = static_cast<int64_t>(last);
      rd_kafka_consumer_group_metadata_t* cgmd = rd_kafka_consumer_group_metadata_new(marker_group().c_str());
      st = txn_call(rd_kafka_send_offsets_to_transaction(rk_.get(), offs, cgmd, kTxnTimeoutMs),
                    "send_offsets_to_transaction", &retriable);
      rd_kafka_consumer_group_metadata_destroy(cgmd);
      rd_kafka_topic_partition_list_destroy(offs);
    }
    if (st.is_ok()) {
      maybe_crash("mid_transaction", publishes_, rk_.get());
      st = txn_call(rd_kafka_commit_transaction(rk_.get(), kTxnTimeoutMs), "commit_transaction", &retriable);
    }
    if (st.is_ok()) {
      maybe_crash("after_transaction", publishes_);
      while (!pending_.empty() && pending_.front().no <= last) pending_.pop_front();
      acked_ = static_cast<int64_t>(last);
      return {};
    }
    if (st.code() == StatusCode::kFailedPrecondition) return st;  // fatal
    rd_kafka_error_t* ae = rd_kafka_abort_transaction(rk_.get(), kTxnTimeoutMs);
    if (ae) {
      Status a = txn_call(ae, "abort_transaction");
      if (a.code() == StatusCode::kFailedPrecondition) return a;
      // Could not end the transaction: the state of the producer is unknown, stop; a restart
      // fences it and re-publishes from the committed position.
      return Status::io_error(describe() + ": " + st.message() + "; then " + a.message());
    }
    log_warning(st.message() + " (the committed changes stay pending and are published with the next commit)");
    return {};
  }

  io::kafka::WriteOptions o_;
  kafka::RdkHandle rk_;
  bool transactional_ = false;
  std::optional<size_t> key_index_;
  std::vector<Message> current_;
  std::deque<Batch> pending_;
  uint64_t next_batch_ = 1;
  mutable uint64_t publish_upto_ = 0;  // last batch of the last position() (the one committed)
  int64_t acked_ = 0;
  uint64_t publishes_ = 0;
};

}  // namespace tidemark::connectors

namespace tidemark::io::kafka {

void write(const Table& table, WriteOptions options) {
  if (options.format != Format::kJson && options.format != Format::kCsv)
    throw GraphError("kafka::write: only json and csv output are supported");
  if (options.bootstrap_servers.empty()) throw GraphError("kafka::write: bootstrap_servers is empty");
  if (options.topic.empty()) throw GraphError("kafka::write: topic is empty");
  std::string name = options.name;
  engine::add_sink(table, std::make_unique<connectors::KafkaSink>(std::move(options)), name);
}

}  // namespace tidemark::io::kafka
