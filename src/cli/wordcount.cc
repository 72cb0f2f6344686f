// wordcount: counts words in the files of a directory and writes the changing counts as CSV.
//
//   wordcount (--input DIR | --input-s3 s3://bucket/prefix | --input-kafka HOST:PORT/TOPIC)
//             (--output counts.csv | --output-kafka HOST:PORT/TOPIC)
//             [--format plaintext|jsonlines]
//             [--mode static|streaming] [--autocommit-ms N] [--workers N]
//             [--persistent-storage DIR [--snapshot-interval-ms N] [--persistence-mode M] [--lock-lease-ms N]
//              [--snapshot-access A] [--continue-after-replay true|false]]
//
// With persistence the job resumes where it stopped (also after SIGKILL): the output file is
// cut back to its last committed length and continued, so it holds every change exactly once.
// Plaintext lines are split on whitespace; jsonlines objects carry a `word` field. Streaming
// mode keeps watching DIR until SIGINT / SIGTERM, then flushes and exits 0.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>

#include "engine/workers.h"
#include "tidemark/tidemark.h"

using namespace tidemark;

int main(int argc, char** argv) {
  std::string input, input_s3, input_kafka, output, output_kafka, format = "plaintext", mode = "static";
  uint64_t autocommit_ms = 1500;
  CLI::App app{"Counts words in the files under a directory; writes word,count,time,diff as CSV."};
  auto* input_opt = app.add_option("--input", input, "Input file or directory (read recursively)");
  auto* input_s3_opt = app.add_option("--input-s3", input_s3,
                                      "Input objects under s3://bucket/prefix (credentials, region and endpoint "
                                      "from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL)");
  input_opt->excludes(input_s3_opt);
  auto* input_kafka_opt = app.add_option("--input-kafka", input_kafka,
                                         "Input Kafka topic HOST:PORT/TOPIC (each message one or more words; "
                                         "always streaming; offsets kept in the persistent storage)");
  input_kafka_opt->excludes(input_opt)->excludes(input_s3_opt);
  auto* output_opt = app.add_option("--output", output, "Output CSV file (overwritten; continued across runs with --persistent-storage)");
  auto* output_kafka_opt = app.add_option("--output-kafka", output_kafka,
                                          "Output Kafka topic HOST:PORT/TOPIC: one JSON message "
                                          "{\"word\",\"count\",\"time\",\"diff\"} per change (exactly-once for "
                                          "read_committed consumers with --persistent-storage)");
  output_opt->excludes(output_kafka_opt);
  app.add_option("--format", format, "Input format")
      ->check(CLI::IsMember({"plaintext", "jsonlines"}))
      ->capture_default_str();
  app.add_option("--mode", mode, "static: read once and exit; streaming: watch until SIGINT/SIGTERM")
      ->check(CLI::IsMember({"static", "streaming"}))
      ->capture_default_str();
  app.add_option("--autocommit-ms", autocommit_ms, "Streaming: how often the input is rescanned")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  std::string workers_text;
  app.add_option("--workers", workers_text,
                 "Worker threads (1-256; default: TIDEMARK_THREADS, else 1). Files are split across the workers "
                 "and words are counted by the worker owning them; the output equals 1 worker's. With "
                 "--persistent-storage a rerun may use another count (the stored state is divided among "
                 "the new workers)");
  std::string storage, persistence_mode = "persisting", snapshot_access = "full", continue_after_replay = "true";
  std::string s3_storage;
  uint64_t snapshot_interval_ms = 0;
  auto* storage_opt = app.add_option("--persistent-storage", storage,
                                     "Directory keeping the job's state; a rerun resumes from it");
  auto* s3_opt = app.add_option("--s3-persistent-storage", s3_storage,
                                "s3://bucket/prefix keeping the job's state (credentials, region and endpoint "
                                "from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL)");
  storage_opt->excludes(s3_opt);
  app.add_option("--snapshot-interval-ms", snapshot_interval_ms,
                 "Minimum time between commits (0: after every batch)")
      ->capture_default_str();
  app.add_option("--persistence-mode", persistence_mode,
                 "persisting|selective_persisting|batch|speedrun_replay|realtime_replay|udf_caching|"
                 "operator_persisting")
      ->capture_default_str();
  app.add_option("--snapshot-access", snapshot_access, "full|record|replay|offsets_only|offline_replay")
      ->capture_default_str();
  app.add_option("--continue-after-replay", continue_after_replay,
                 "After replaying, keep reading new input (true) or stop (false)")
      ->check(CLI::IsMember({"true", "false"}))
      ->capture_default_str();
  uint64_t lock_lease_ms = 60'000;
  app.add_option("--lock-lease-ms", lock_lease_ms,
                 "Lease of the storage lock: renewed every third of it; a crashed holder's storage is taken "
                 "over after its lock was seen unchanged this long (at least 1000)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (input.empty() && input_s3.empty() && input_kafka.empty()) {
    std::fprintf(stderr, "wordcount: error: --input is required (or --input-s3, --input-kafka)\n");
    return 2;
  }
  if (output.empty() && output_kafka.empty()) {
    std::fprintf(stderr, "wordcount: error: --output is required (or --output-kafka)\n");
    return 2;
  }
  // HOST:PORT/TOPIC -> (bootstrap servers, topic)
  auto split_kafka = [](const std::string& spec, const char* flag, std::string* servers, std::string* topic) {
    size_t slash = spec.rfind('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == spec.size()) {
      std::fprintf(stderr, "wordcount: error: %s wants HOST:PORT/TOPIC, got '%s'\n", flag, spec.c_str());
      return false;
    }
    *servers = spec.substr(0, slash);
    *topic = spec.substr(slash + 1);
    return true;
  };
  std::string in_servers, in_topic, out_servers, out_topic;
  if (!input_kafka.empty() && !split_kafka(input_kafka, "--input-kafka", &in_servers, &in_topic)) return 2;
  if (!output_kafka.empty() && !split_kafka(output_kafka, "--output-kafka", &out_servers, &out_topic)) return 2;
  RunOptions options;
  if (app.count("--workers")) {
    auto w = engine::parse_workers(workers_text, "--workers");
    if (!w.is_ok()) {
      std::fprintf(stderr, "wordcount: error: %s\n", w.status().message().c_str());
      return 2;
    }
    options.workers = *w;
  } else if (auto w = engine::resolve_workers(options); !w.is_ok()) {
    std::fprintf(stderr, "wordcount: error: %s\n", w.status().message().c_str());
    return 2;
  }
  if (storage.empty() && s3_storage.empty())
    for (const char* flag : {"--snapshot-interval-ms", "--persistence-mode", "--snapshot-access", "--continue-after-replay",
                             "--lock-lease-ms"})
      if (app.count(flag)) {
        std::fprintf(stderr, "wordcount: error: %s needs --persistent-storage or --s3-persistent-storage\n", flag);
        return 2;
      }
  if (!storage.empty() || !s3_storage.empty()) {
    auto m = persistence::parse_persistence_mode(persistence_mode);
    auto a = persistence::parse_snapshot_access(snapshot_access);
    for (const Status& st : {m.status(), a.status()})
      if (!st.is_ok()) {
        std::fprintf(stderr, "wordcount: error: %s\n", st.message().c_str());
        return 2;
      }
    options.persistence_config = persistence::Config::simple_config(
        storage.empty() ? persistence::Backend::s3(s3_storage, {}) : persistence::Backend::filesystem(storage),
        snapshot_interval_ms, *a, *m, continue_after_replay == "true");
    options.persistence_config->lock_lease_ms = lock_lease_ms;
  }

  auto started = std::chrono::steady_clock::now();
  size_t changes = 0;
  try {
    Graph g;
    io::fs::ReadOptions ro;
    ro.mode = mode == "streaming" ? io::Mode::kStreaming : io::Mode::kStatic;
    ro.autocommit_duration_ms = autocommit_ms;
    ro.name = "input";
    auto read = [&](const io::fs::ReadOptions& r) {
      return input_s3.empty() ? io::fs::read(g, input, r) : io::s3::read(g, input_s3, r);
    };
    Table words = [&] {
      if (!input_kafka.empty()) {
        io::kafka::ReadOptions kr;
        kr.bootstrap_servers = in_servers;
        kr.topic = in_topic;
        kr.name = "input";
        kr.autocommit_duration_ms = autocommit_ms;
        if (format == "jsonlines") {
          kr.format = io::kafka::Format::kJson;
          kr.schema = Schema{{"word", t_str()}};
          return io::kafka::read(g, kr);
        }
        kr.format = io::kafka::Format::kPlaintext;
        return io::kafka::read(g, kr).select({{"word", str::split(col("data"))}}).flatten("word");
      }
      if (format == "jsonlines") {
        ro.format = io::Format::kJsonLines;
        ro.schema = Schema{{"word", t_str()}};
        return read(ro);
      }
      ro.format = io::Format::kPlaintext;
      return read(ro).select({{"word", str::split(col("data"))}}).flatten("word");
    }();
    Table counts = words.groupby({"word"}).reduce({{"word", col("word")}, {"count", reducers::count()}});
    if (!output_kafka.empty()) {
      io::kafka::WriteOptions kw;
      kw.bootstrap_servers = out_servers;
      kw.topic = out_topic;
      kw.format = io::kafka::Format::kJson;
      kw.key_column = "word";
      kw.name = "output";
      io::kafka::write(counts, kw);
    } else {
      io::fs::write(counts, output, {io::Format::kCsv, "output"});
    }
    io::subscribe(counts, {[&](const Key&, const Row&, uint64_t, bool) { ++changes; }, nullptr, nullptr},
                  "progress");
    Status s = run(g, options);
    if (!s.is_ok()) {
      std::fprintf(stderr, "wordcount: error: %s\n", s.to_string().c_str());
      return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wordcount: error: %s\n", e.what());
    return 1;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::fprintf(stderr, "wordcount: %zu changes written to %s by this run in %.2f s\n", changes,
               output.empty() ? output_kafka.c_str() : output.c_str(),
               secs);
  return 0;
}
