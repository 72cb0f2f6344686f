// Connectors: file sources and sinks, push sources (subjects), subscriptions, debug helpers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tidemark/persistence.h"
#include "tidemark/table.h"

namespace tidemark::io {

enum class Format { kCsv, kJsonLines, kPlaintext, kBinary };
enum class Mode { kStatic, kStreaming };

namespace fs {

struct ReadOptions {
  Format format = Format::kCsv;
  // Columns to read (csv: by header name; jsonlines: by field). Plaintext and binary always
  // produce one column `data` (str / bytes) and ignore this.
  Schema schema;
  Mode mode = Mode::kStatic;
  // Persistent id of the source (persistence); also used in messages.
  std::string name;
  // Columns whose values derive the row key; empty = key from (file, line).
  std::vector<std::string> primary_key;
  // Streaming: how often new and changed files are looked for and committed.
  uint64_t autocommit_duration_ms = 1500;
  // Bad rows: false = the run stops with an error naming file, line, column;
  // true = the row is skipped and logged.
  bool skip_bad_rows = false;
  char csv_delimiter = ',';
};

// Reads a file or every regular file of a directory (sorted by name, recursively).
// Streaming mode keeps watching: new files are read; a modified file retracts its old rows
// and inserts the new ones; a deleted file retracts its rows. A file is read atomically.
Table read(Graph& g, const std::string& path, ReadOptions options);

struct WriteOptions {
  Format format = Format::kCsv;  // kCsv or kJsonLines
  std::string name;
};
// Writes every change: the table's columns, then `time` and `diff` (+1 / -1).
void write(const Table& table, const std::string& path, WriteOptions options = {});

}  // namespace fs

namespace s3 {

// Reads every object under an S3 prefix, `path` = "s3://bucket/prefix" (the prefix is a
// folder: "s3://b/data" reads "data/x.csv", not "data2/y.csv"; keys with a '.'-prefixed
// or empty segment are skipped), sorted by key, like fs::read reads a directory; same formats,
// modes, keys and persistence. Streaming: new objects are read, a changed object retracts its
// old rows and inserts its new ones, a deleted object retracts its rows. A listing gives only
// sizes, so an object whose size changed is read at the next poll while an overwrite with the
// same size is noticed within 8 polls (its content hash is compared). The endpoint, region,
// credentials and path style come from `settings` (bucket_name, if set, must match the URL),
// else from the AWS_* environment variables. The source's describe() is
// "s3://bucket/prefix (csv)". Misconfiguration (endpoint unreachable, credentials rejected,
// bucket missing) fails the run at start with a message naming endpoint and bucket.
Table read(Graph& g, const std::string& path, fs::ReadOptions options, persistence::AwsS3Settings settings = {});

}  // namespace s3

namespace kafka {

enum class Format { kRaw, kPlaintext, kJson, kCsv };
enum class StartFrom { kEarliest, kLatest, kTimestamp };

struct ReadOptions {
  // "host:port[,host:port...]".
  std::string bootstrap_servers;
  std::string topic;
  // raw: one column `data` (bytes) per message; plaintext: `data` (str); json: one JSON object
  // per message, fields by `schema`; csv: one CSV record per message (no header), fields in
  // `schema` order.
  Format format = Format::kRaw;
  Schema schema;
  // Where a partition is read from when the persistent storage has no offset for it (first
  // run, or a partition added later: those always start at their beginning).
  StartFrom start_from = StartFrom::kEarliest;
  int64_t start_timestamp_ms = 0;  // kTimestamp: first message at or after this time
  std::string name;
  uint64_t autocommit_duration_ms = 1500;
  // Extra librdkafka settings (e.g. {"security.protocol", "ssl"}), applied last.
  std::vector<std::pair<std::string, std::string>> rdkafka_settings;
  // Optional metadata columns (appended after the data columns when named): the message key
  // (optional str; bytes for raw), the headers (json object name -> str), the partition (int)
  // and the offset (int).
  std::string key_column;
  std::string headers_column;
  std::string partition_column;
  std::string offset_column;
  // Malformed messages: false = the run stops with an error naming topic, partition, offset;
  // true = the message is skipped and logged.
  bool skip_bad_rows = false;
  // How often new partitions are looked for.
  uint64_t partition_discovery_ms = 1000;
  // Unreachable brokers / missing topic fail open() after this long, naming them.
  uint64_t connect_timeout_ms = 5000;
};

// Reads every partition of a topic (manual assignment, no consumer group). Offsets are kept in
// Tidemark's persistence (the source's offset: next offset per partition), so a restart resumes
// exactly after the last committed message of each partition. Rows are appended, never
// retracted; row keys derive from (topic, partition, offset).
Table read(Graph& g, ReadOptions options);

struct WriteOptions {
  std::string bootstrap_servers;
  std::string topic;
  // json: {"col": value, ..., "time": t, "diff": d}; csv: the columns then time, diff.
  Format format = Format::kJson;
  // Column whose value (as text; bytes as is) is the message key; empty = no key.
  std::string key_column;
  std::string name;
  std::vector<std::pair<std::string, std::string>> rdkafka_settings;
  // Transactional id used with persistence; empty = derived from the persistent storage and
  // the sink's id ("tidemark-<hash>").
  std::string transactional_id;
};

// Writes every change as one message. With persistence the output is exactly-once for
// consumers reading with isolation.level=read_committed: the changes of a commit are published
// in one Kafka transaction after the commit is durable (docs/kafka.md). Without persistence the
// messages are produced as they come (idempotent producer, at-least-once across crashes).
void write(const Table& table, WriteOptions options);

// Creates `topic` with `partitions` partitions (OK if it exists) and waits until each has a
// leader. A set-up helper for tests and scripts; errors name the brokers and the topic.
Status create_topic(const std::string& bootstrap_servers, const std::string& topic, int partitions = 1);

}  // namespace kafka

// A source fed by the program itself. Thread-safe: next/remove/commit/close may be called from
// any thread while the graph runs. Rows pushed are delivered at the next commit().
class Subject {
 public:
  Subject();
  ~Subject();
  void next(Row row);
  void next_with_key(Key key, Row row);
  void remove_with_key(Key key, Row row);
  void commit();
  void close();
  struct State;
  State& state() { return *state_; }

 private:
  std::shared_ptr<State> state_;
};
// Rows pushed with next() get keys from `primary_key` columns, or from their sequence number.
Table read_subject(Graph& g, std::shared_ptr<Subject> subject, Schema schema,
                   std::string name = "", std::vector<std::string> primary_key = {});

struct SubscribeCallbacks {
  std::function<void(const Key& key, const Row& row, uint64_t time, bool is_addition)> on_change;
  std::function<void(uint64_t time)> on_time_end;
  std::function<void()> on_end;
};
void subscribe(const Table& table, SubscribeCallbacks callbacks, std::string name = "");

}  // namespace tidemark::io

namespace tidemark::debug {

// Builds a static table from a markdown-like literal:
//     | name  | age
//   1 | alice | 30
//   2 | bob   | 25
// The optional first unnamed column gives row ids (keys from that label). Types are inferred
// per column (int, float, bool, None, else str). A column `__time__` spreads rows over logical
// times and `__diff__` (+1/-1) makes retractions, for testing incremental behaviour.
Table table_from_markdown(Graph& g, std::string_view text);

struct Change {
  Key key;
  Row row;
  uint64_t time;
  int64_t diff;
};
// Runs the graph (static sources) and returns the table's change stream, ordered by time.
std::vector<Change> compute_changes(const Table& t);
// Runs the graph and returns the final contents as a markdown-like table, rows sorted by
// their values (keys not shown). Throws std::runtime_error if the run fails.
std::string table_to_string(const Table& t);
// Prints table_to_string to stdout.
void compute_and_print(const Table& t);

}  // namespace tidemark::debug
