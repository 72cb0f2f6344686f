// io::kafka::read: a streaming source over every partition of a Kafka topic (librdkafka,
// manual assignment, no consumer group). Offsets live in Tidemark's persistence.
//
// Offset format (the source's offset() bytes): u8 version (1), varint n, then n times
// varint partition, i64 next offset (a concrete offset, or -2 = the partition's beginning,
// for a partition nothing was read from yet). Sorted by partition.
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>

#include "connectors/formats.h"
#include "connectors/kafka_common.h"
#include "connectors/log.h"
#include "engine/codec.h"
#include "engine/collection_io.h"
#include "engine/node.h"
#include "tidemark/io.h"

namespace tidemark::connectors {

namespace {
constexpr uint8_t kOffsetVersion = 1;
constexpr size_t kMaxMessagesPerPoll = 20000;
constexpr size_t kMaxBytesPerPoll = 32 << 20;

const char* format_name(io::kafka::Format f) {
  switch (f) {
    case io::kafka::Format::kRaw: return "raw";
    case io::kafka::Format::kPlaintext: return "plaintext";
    case io::kafka::Format::kJson: return "json";
    case io::kafka::Format::kCsv: return "csv";
  }
  return "?";
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

Schema kafka_source_schema(const io::kafka::ReadOptions& o) {
  std::vector<Column> cols;
  switch (o.format) {
    case io::kafka::Format::kRaw: cols.push_back({"data", t_bytes()}); break;
    case io::kafka::Format::kPlaintext: cols.push_back({"data", t_str()}); break;
    case io::kafka::Format::kJson:
    case io::kafka::Format::kCsv:
      if (o.schema.size() == 0) throw GraphError("kafka::read: json and csv formats need a schema");
      cols = o.schema.columns();
      break;
  }
  auto add = [&](const std::string& name, Type t) {
    if (name.empty()) return;
    for (const Column& c : cols)
      if (c.name == name) throw GraphError("kafka::read: column '" + name + "' is defined twice");
    cols.push_back({name, t});
  };
  add(o.key_column, optional(o.format == io::kafka::Format::kRaw ? t_bytes() : t_str()));
  add(o.headers_column, t_json());
  add(o.partition_column, t_int());
  add(o.offset_column, t_int());
  return Schema(std::move(cols));
}

class KafkaSource final : public engine::Source {
 public:
  explicit KafkaSource(io::kafka::ReadOptions o) : o_(std::move(o)), schema_(kafka_source_schema(o_)) {
    salt_ = key_from_string("kafka:" + o_.topic).lo;
  }

  std::string describe() const override {
    return "kafka topic '" + o_.topic + "' at '" + o_.bootstrap_servers + "' (" + format_name(o_.format) + ")";
  }
  bool streaming() const override { return true; }
  uint64_t autocommit_ms() const override { return o_.autocommit_duration_ms; }

  Status open() override {
    std::vector<std::pair<std::string, std::string>> s = {
        {"bootstrap.servers", o_.bootstrap_servers},
        {"group.id", "tidemark-unused-" + o_.topic},  // never joined, never committed to
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", "false"},
        {"isolation.level", "read_committed"},
        {"auto.offset.reset", "earliest"},
        {"topic.metadata.refresh.interval.ms", "1000"},
        {"socket.connection.setup.timeout.ms", std::to_string(o_.connect_timeout_ms)},
        {"log_level", "3"},
    };
    s.insert(s.end(), o_.rdkafka_settings.begin(), o_.rdkafka_settings.end());
    TM_ASSIGN_OR_RETURN(rk_, kafka::make_client(RD_KAFKA_CONSUMER, s, describe()));
    TM_ASSIGN_OR_RETURN(int n, kafka::partition_count(rk_.get(), o_.topic, o_.bootstrap_servers,
                                                      static_cast<int>(o_.connect_timeout_ms)));
    first_run_ = !sought_;
    TM_RETURN_IF_ERROR(add_partitions(n, first_run_));
    last_discovery_ms_ = now_ms();
    return {};
  }

  Status poll(engine::Batch& out, bool* finished) override {
    *finished = false;
    if (now_ms() - last_discovery_ms_ >= static_cast<int64_t>(o_.partition_discovery_ms)) {
      last_discovery_ms_ = now_ms();
      Result<int> n = kafka::partition_count(rk_.get(), o_.topic, o_.bootstrap_servers, 500);
      if (n.is_ok() && *n > static_cast<int>(next_.size())) TM_RETURN_IF_ERROR(add_partitions(*n, false));
    }
    size_t bytes = 0;
    for (size_t i = 0; i < kMaxMessagesPerPoll && bytes < kMaxBytesPerPoll; ++i) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_.get(), 0);
      if (!m) break;
      Status st = handle(m, out);
      bytes += m->len;
      rd_kafka_message_destroy(m);
      TM_RETURN_IF_ERROR(st);
    }
    return {};
  }

  std::string offset() const override {
    std::string out;
    codec::put_u8(out, kOffsetVersion);
    codec::put_varint(out, next_.size());
    for (const auto& [p, off] : next_) {
      codec::put_varint(out, static_cast<uint64_t>(p));
      codec::put_i64(out, off);
    }
    return out;
  }

  Status seek(std::string_view in) override {
    auto bad = [&](const std::string& why) { return Status::corruption(describe() + ": bad offset: " + why); };
    uint8_t v;
    uint64_t n;
    if (!codec::get_u8(in, &v)) return bad("empty");
    if (v != kOffsetVersion) return Status::not_supported(describe() + ": offset format " + std::to_string(v) + " is newer than this build's (1)");
    if (!codec::get_varint(in, &n)) return bad("truncated");
    next_.clear();
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t p;
      int64_t off;
      if (!codec::get_varint(in, &p) || !codec::get_i64(in, &off)) return bad("truncated");
      next_[static_cast<int32_t>(p)] = off;
    }
    if (!in.empty()) return bad("trailing bytes");
    sought_ = true;
    return {};
  }

 private:
  // Assigns partitions [next_.size() or the assigned count, n): with a stored offset, from it;
  // otherwise from start_from (initial partitions of a first run) or their beginning.
  Status add_partitions(int n, bool initial) {
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(n);
    std::vector<int32_t> added;
    for (int32_t p = assigned_; p < n; ++p) {
      int64_t off = RD_KAFKA_OFFSET_BEGINNING;
      auto it = next_.find(p);
      if (it != next_.end()) {
        off = it->second;
      } else if (initial && o_.start_from == io::kafka::StartFrom::kLatest) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk_.get(), o_.topic.c_str(), p, &lo, &hi,
                                                                 static_cast<int>(o_.connect_timeout_ms));
        if (e) {
          rd_kafka_topic_partition_list_destroy(list);
          return Status::io_error(describe() + ": cannot read the end offset of partition " + std::to_string(p) +
                                  ": " + rd_kafka_err2str(e));
        }
        off = hi;
      } else if (initial && o_.start_from == io::kafka::StartFrom::kTimestamp) {
        rd_kafka_topic_partition_list_t* q = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(q, o_.topic.c_str(), p)->offset = o_.start_timestamp_ms;
        rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(rk_.get(), q, static_cast<int>(o_.connect_timeout_ms));
        if (e || q->elems[0].err) {
          rd_kafka_resp_err_t ee = e ? e : q->elems[0].err;
          rd_kafka_topic_partition_list_destroy(q);
          rd_kafka_topic_partition_list_destroy(list);
          return Status::io_error(describe() + ": cannot find the offset for timestamp " +
                                  std::to_string(o_.start_timestamp_ms) + " in partition " + std::to_string(p) +
                                  ": " + rd_kafka_err2str(ee));
        }
        off = q->elems[0].offset;
        if (off < 0) {  // no message at or after the timestamp: the end
          int64_t lo = 0, hi = 0;
          rd_kafka_query_watermark_offsets(rk_.get(), o_.topic.c_str(), p, &lo, &hi,
                                           static_cast<int>(o_.connect_timeout_ms));
          off = hi;
        }
        rd_kafka_topic_partition_list_destroy(q);
      }
      next_[p] = off;
      rd_kafka_topic_partition_list_add(list, o_.topic.c_str(), p)->offset = off;
      added.push_back(p);
    }
    if (added.empty()) {
      rd_kafka_topic_partition_list_destroy(list);
      return {};
    }
    rd_kafka_error_t* err = rd_kafka_incremental_assign(rk_.get(), list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err) {
      std::string msg = rd_kafka_error_string(err);
      rd_kafka_error_destroy(err);
      return Status::io_error(describe() + ": cannot assign partitions: " + msg);
    }
    if (assigned_ > 0)
      for (int32_t p : added) log_warning(describe() + ": new partition " + std::to_string(p) + " picked up");
    assigned_ = n;
    return {};
  }

  Status bad_message(const std::string& message) const {
    if (!o_.skip_bad_rows) return Status::invalid_argument(message);
    log_warning(message + " (message skipped)");
    return {};
  }

  Status handle(rd_kafka_message_t* m, engine::Batch& out) {
    if (m->err) {
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return {};
      if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
        return Status::not_found(describe() + ": " + rd_kafka_message_errstr(m));
      if (m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)
        return Status::failed_precondition(describe() + ": partition " + std::to_string(m->partition) +
                                           ": stored offset out of range (messages deleted by retention?): " +
                                           rd_kafka_message_errstr(m));
      // Transport errors: librdkafka reconnects by itself.
      if (!warned_transport_) log_warning(describe() + ": " + rd_kafka_message_errstr(m) + " (retrying)");
      warned_transport_ = true;
      return {};
    }
    warned_transport_ = false;
    auto it = next_.find(m->partition);
    if (it == next_.end()) return {};
    if (it->second >= 0 && m->offset < it->second) return {};  // already taken
    const std::string where = "kafka topic '" + o_.topic + "' partition " + std::to_string(m->partition) +
                              " offset " + std::to_string(m->offset) + ": ";
    it->second = m->offset + 1;  // taken (emitted or skipped)
    std::string_view payload(static_cast<const char*>(m->payload), m->payload ? m->len : 0);
    Row row;
    switch (o_.format) {
      case io::kafka::Format::kRaw: row.push_back(Value::bytes(std::string(payload))); break;
      case io::kafka::Format::kPlaintext: row.push_back(Value(payload)); break;
      case io::kafka::Format::kJson: {
        nlohmann::json obj = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
        if (obj.is_discarded()) return bad_message(where + "malformed JSON");
        if (!obj.is_object()) return bad_message(where + "expected a JSON object");
        for (const Column& c : o_.schema.columns()) {
          auto f = obj.find(c.name);
          if (f == obj.end()) {
            if (!c.type.optional) return bad_message(where + "column '" + c.name + "': missing");
            row.push_back(Value());
            continue;
          }
          Result<Value> v = json_to_value(*f, c.type);
          if (!v.is_ok()) return bad_message(where + "column '" + c.name + "': " + v.status().message());
          row.push_back(std::move(v).value());
        }
        break;
      }
      case io::kafka::Format::kCsv: {
        std::string text(payload);
        CsvReader reader(text, ',');
        std::vector<CsvField> fields;
        std::string err;
        if (!reader.next(&fields, &err)) return bad_message(where + "empty CSV message");
        if (!err.empty()) return bad_message(where + err);
        if (fields.size() != o_.schema.size())
          return bad_message(where + "expected " + std::to_string(o_.schema.size()) + " fields, got " +
                             std::to_string(fields.size()));
        for (size_t c = 0; c < fields.size(); ++c) {
          Result<Value> v = parse_field(fields[c], o_.schema[c].type);
          if (!v.is_ok()) return bad_message(where + "column '" + o_.schema[c].name + "': " + v.status().message());
          row.push_back(std::move(v).value());
        }
        break;
      }
    }
    if (!o_.key_column.empty()) {
      if (!m->key) row.push_back(Value());
      else {
        std::string k(static_cast<const char*>(m->key), m->key_len);
        row.push_back(o_.format == io::kafka::Format::kRaw ? Value::bytes(std::move(k)) : Value(std::move(k)));
      }
    }
    if (!o_.headers_column.empty()) {
      nlohmann::json h = nlohmann::json::object();
      rd_kafka_headers_t* hdrs = nullptr;
      if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
        const char* name;
        const void* val;
        size_t size;
        for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i)
          h[name] = val ? nlohmann::json(std::string(static_cast<const char*>(val), size)) : nlohmann::json();
      }
      row.push_back(Value::json(h.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
    }
    if (!o_.partition_column.empty()) row.push_back(Value(static_cast<int64_t>(m->partition)));
    if (!o_.offset_column.empty()) row.push_back(Value(static_cast<int64_t>(m->offset)));
    Key k = key_from_values_salted(salt_, {Value(static_cast<int64_t>(m->partition)), Value(static_cast<int64_t>(m->offset))});
    out.push_back({k, std::move(row), 1});
    return {};
  }

  io::kafka::ReadOptions o_;
  Schema schema_;
  uint64_t salt_ = 0;
  kafka::RdkHandle rk_;
  std::map<int32_t, int64_t> next_;  // partition -> next offset to take
  int32_t assigned_ = 0;
  bool sought_ = false;
  bool first_run_ = true;
  bool warned_transport_ = false;
  int64_t last_discovery_ms_ = 0;
};

}  // namespace tidemark::connectors

namespace tidemark::io::kafka {

Table read(Graph& g, ReadOptions options) {
  if (options.bootstrap_servers.empty()) throw GraphError("kafka::read: bootstrap_servers is empty");
  if (options.topic.empty()) throw GraphError("kafka::read: topic is empty");
  Schema schema = connectors::kafka_source_schema(options);
  std::string name = options.name;
  return engine::add_source(g, std::make_unique<connectors::KafkaSource>(std::move(options)), std::move(schema), name);
}

}  // namespace tidemark::io::kafka
