// Throughput and persistence benchmarks. Prints a markdown table; every engine figure is
// quoted as a ratio against a baseline measured in the same run:
//   * wordcount vs a hand-written single-threaded C++ hash-map word count (the practical limit);
//   * wordcount with persistence (snapshot_interval_ms = 1000) vs without;
//   * restart (resume with no new input) after 1M and N words, and bytes stored per input byte,
//     in persisting and in operator_persisting mode;
//   * groupby and join throughput on in-memory batches.
//
// Usage: bench_throughput [--words N] [--distinct D] [--dir DIR] [--skip-large]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/collection_io.h"
#include "tidemark/tidemark.h"

namespace fs = std::filesystem;
using namespace tidemark;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Writes `words` words (10 per line) drawn from `distinct` words with a skewed distribution
// into files of ~1M words each. Returns total bytes.
uint64_t generate(const fs::path& dir, uint64_t words, uint64_t distinct, uint64_t first_file = 0) {
  fs::create_directories(dir);
  std::mt19937_64 rng(42 + first_file);
  std::vector<std::string> vocab;
  for (uint64_t i = 0; i < distinct; ++i) vocab.push_back("w" + std::to_string(i * 2654435761ULL % 1000003));
  std::uniform_real_distribution<double> u(0, 1);
  uint64_t bytes = 0, written = 0, file = first_file;
  while (written < words) {
    std::string buf;
    uint64_t n = std::min<uint64_t>(1'000'000, words - written);
    for (uint64_t i = 0; i < n; ++i) {
      double x = u(rng);
      buf += vocab[static_cast<uint64_t>(x * x * static_cast<double>(distinct)) % distinct];
      buf += (i % 10 == 9 || i + 1 == n) ? '\n' : ' ';
    }
    char name[64];
    std::snprintf(name, sizeof name, "part-%06llu.txt", static_cast<unsigned long long>(file++));
    std::ofstream(dir / name, std::ios::binary) << buf;
    bytes += buf.size();
    written += n;
  }
  return bytes;
}

// The baseline: read every file, split on whitespace, count in a hash map.
size_t baseline_wordcount(const fs::path& dir) {
  std::unordered_map<std::string, int64_t> counts;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t i = 0, n = data.size();
    while (i < n) {
      while (i < n && std::isspace(static_cast<unsigned char>(data[i]))) ++i;
      size_t j = i;
      while (j < n && !std::isspace(static_cast<unsigned char>(data[j]))) ++j;
      if (j > i) ++counts[data.substr(i, j - i)];
      i = j;
    }
  }
  std::ofstream out("/dev/null");
  for (const auto& [w, c] : counts) out << w << ',' << c << '\n';
  return counts.size();
}

Status engine_wordcount(const fs::path& dir, const fs::path& out, std::optional<persistence::Config> cfg) {
  Graph g;
  io::fs::ReadOptions ro;
  ro.format = io::Format::kPlaintext;
  ro.name = "lines";
  Table lines = io::fs::read(g, dir.string(), ro);
  Table words = lines.select({{"word", str::split(col("data"))}}).flatten("word");
  Table counts = words.groupby({"word"}).reduce({{"word", col("word")}, {"count", reducers::count()}});
  io::fs::write(counts, out.string(), {.format = io::Format::kCsv, .name = "counts"});
  RunOptions o;
  o.handle_signals = false;
  o.progress_interval_s = 0;
  o.log = [](const std::string&) {};
  o.persistence_config = std::move(cfg);
  return run(g, o);
}

uint64_t dir_bytes(const fs::path& dir) {
  uint64_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) n += e.file_size();
  return n;
}

void die_if(const Status& s, const char* what) {
  if (!s.is_ok()) {
    std::fprintf(stderr, "%s failed: %s\n", what, s.to_string().c_str());
    std::exit(1);
  }
}

double run_batches(const std::vector<engine::Batch>& a, const std::vector<engine::Batch>* b, const Schema& sa,
                   const Schema& sb, const std::function<Table(std::vector<Table>&)>& build) {
  Graph g;
  std::vector<Table> in{engine::add_source(g, std::make_unique<engine::BatchesSource>(a), sa)};
  if (b) in.push_back(engine::add_source(g, std::make_unique<engine::BatchesSource>(*b), sb));
  auto captured = std::make_shared<std::vector<engine::CapturedChange>>();
  Table out = build(in);
  engine::add_sink(out, std::make_unique<engine::CaptureSink>(captured));
  RunOptions o;
  o.handle_signals = false;
  o.progress_interval_s = 0;
  auto t = Clock::now();
  die_if(run(g, o), "operator benchmark");
  return seconds_since(t);
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t words = 10'000'000, distinct = 10'000;
  fs::path root = fs::temp_directory_path() / ("tidemark-bench-" + std::to_string(getpid()));
  bool skip_large = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--words" && i + 1 < argc) words = std::stoull(argv[++i]);
    else if (a == "--distinct" && i + 1 < argc) distinct = std::stoull(argv[++i]);
    else if (a == "--dir" && i + 1 < argc) root = argv[++i];
    else if (a == "--skip-large") skip_large = true;
    else {
      std::fprintf(stderr, "usage: %s [--words N] [--distinct D] [--dir DIR] [--skip-large]\n", argv[0]);
      return a == "--help" ? 0 : 2;
    }
  }
  fs::remove_all(root);
  std::printf("| benchmark | measure | value | ratio |\n|---|---|---|---|\n");

  // 1. wordcount vs the hash-map baseline.
  fs::path input = root / "input";
  std::fprintf(stderr, "generating %llu words over %llu distinct words...\n", (unsigned long long)words,
               (unsigned long long)distinct);
  uint64_t in_bytes = generate(input, words, distinct);
  auto t = Clock::now();
  baseline_wordcount(input);
  double base = seconds_since(t);
  t = Clock::now();
  die_if(engine_wordcount(input, root / "out.csv", std::nullopt), "wordcount");
  double eng = seconds_since(t);
  std::printf("| wordcount %lluM words | baseline hash map | %.2f s (%.1f M words/s) | 1.00 |\n",
              (unsigned long long)(words / 1'000'000), base, words / base / 1e6);
  std::printf("| wordcount %lluM words | tidemark | %.2f s (%.1f M words/s) | %.2fx baseline time |\n",
              (unsigned long long)(words / 1'000'000), eng, words / eng / 1e6, eng / base);

  // 2. persistence overhead, restart, storage; for persisting (input rows recorded, replayed
  //    at restart) and operator_persisting (offsets + operator state, loaded at restart).
  fs::path small = root / "input-1m";
  const uint64_t small_words = std::min<uint64_t>(words, 1'000'000);
  generate(small, small_words, distinct);
  for (auto mode : {persistence::PersistenceMode::kPersisting, persistence::PersistenceMode::kOperatorPersisting}) {
    const std::string m = persistence::to_string(mode);
    auto cfg = [&](const fs::path& st) {
      return persistence::Config::simple_config(persistence::Backend::filesystem(st.string()), 1000,
                                                persistence::SnapshotAccess::kFull, mode);
    };
    fs::path state = root / ("state-" + m);
    t = Clock::now();
    die_if(engine_wordcount(input, root / ("out-" + m + ".csv"), cfg(state)), "wordcount with persistence");
    double pers = seconds_since(t);
    std::printf("| wordcount + persistence (1000 ms) | %s | %.2f s | %.2fx without persistence |\n", m.c_str(), pers,
                pers / eng);
    uint64_t stored = dir_bytes(state);
    std::printf("| storage after %lluM words | %s: bytes stored per input byte | %llu / %llu | %.3f |\n",
                (unsigned long long)(words / 1'000'000), m.c_str(), (unsigned long long)stored,
                (unsigned long long)in_bytes, static_cast<double>(stored) / static_cast<double>(in_bytes));
    // Restart with no new input: the median of 3 runs, of 11 when a restart is short (noise
    // of a shared machine); restarts do not change the storage.
    auto restart = [&](const fs::path& in, const fs::path& st, const fs::path& out) {
      std::vector<double> times;
      for (size_t rep = 0; rep < (times.empty() || times[0] > 0.5 ? 3u : 11u); ++rep) {
        auto t0 = Clock::now();
        die_if(engine_wordcount(in, out, cfg(st)), "restart");
        times.push_back(seconds_since(t0));
      }
      std::sort(times.begin(), times.end());
      return times[times.size() / 2];
    };
    double big = skip_large ? 0 : restart(input, state, root / ("out-" + m + ".csv"));
    fs::path small_state = root / ("state-1m-" + m);
    die_if(engine_wordcount(small, root / ("out-s-" + m + ".csv"), cfg(small_state)), "wordcount 1M");
    double little = restart(small, small_state, root / ("out-s-" + m + ".csv"));
    std::printf("| restart after 1M words (no new input) | %s | %.3f s | 1.00 |\n", m.c_str(), little);
    if (!skip_large)
      std::printf("| restart after %lluM words (no new input) | %s | %.3f s | %.2fx the 1M restart |\n",
                  (unsigned long long)(words / 1'000'000), m.c_str(), big, big / little);
  }

  // 3. groupby and join on in-memory batches.
  {
    const uint64_t rows = 2'000'000, per = 100'000;
    std::mt19937_64 rng(1);
    Schema s{{"g", t_int()}, {"v", t_int()}};
    std::vector<engine::Batch> batches;
    for (uint64_t i = 0; i < rows; i += per) {
      engine::Batch b;
      for (uint64_t j = 0; j < per; ++j)
        b.push_back({Key{i + j + 1, 9}, {Value(static_cast<int64_t>(rng() % 10'000)), Value(static_cast<int64_t>(rng() % 1000))}, 1});
      batches.push_back(std::move(b));
    }
    double secs = run_batches(batches, nullptr, s, s, [](std::vector<Table>& in) {
      return in[0].groupby({"g"}).reduce({{"g", col("g")}, {"n", reducers::count()}, {"s", reducers::sum(col("v"))}});
    });
    // Baseline: one pass over the same rows into a hash map.
    auto t0 = Clock::now();
    std::unordered_map<int64_t, std::pair<int64_t, int64_t>> agg;
    for (const auto& b : batches)
      for (const auto& u : b) {
        auto& a = agg[u.row[0].as_int()];
        ++a.first;
        a.second += u.row[1].as_int();
      }
    double gbase = seconds_since(t0);
    std::printf("| groupby count+sum, 2M rows, 10k groups | baseline hash map | %.3f s | 1.00 |\n", gbase);
    std::printf("| groupby count+sum, 2M rows, 10k groups | tidemark | %.2f s (%.2f M rows/s) | %.1fx baseline time |\n",
                secs, rows / secs / 1e6, secs / gbase);
    std::vector<engine::Batch> right_rows;
    for (uint64_t i = 0; i < rows; i += per) {
      engine::Batch b;
      for (uint64_t j = 0; j < per; ++j)
        b.push_back({Key{i + j + 1, 10}, {Value(static_cast<int64_t>(i + j)), Value(static_cast<int64_t>(j % 7))}, 1});
      right_rows.push_back(std::move(b));
    }
    Schema l{{"id", t_int()}, {"v", t_int()}};
    std::vector<engine::Batch> left_rows;
    for (uint64_t i = 0; i < rows; i += per) {
      engine::Batch b;
      for (uint64_t j = 0; j < per; ++j)
        b.push_back({Key{i + j + 1, 11}, {Value(static_cast<int64_t>(rows - 1 - (i + j))), Value(static_cast<int64_t>(j))}, 1});
      left_rows.push_back(std::move(b));
    }
    double js = run_batches(left_rows, &right_rows, l, l, [](std::vector<Table>& in) {
      return in[0].join(in[1], {{"id", "id"}}).select({{"key", left("id")}, {"a", left("v")}, {"b", right("v")}});
    });
    // Baseline: a hash join (build on the right, probe with the left).
    auto t1 = Clock::now();
    std::unordered_map<int64_t, int64_t> build;
    for (const auto& b : right_rows)
      for (const auto& u : b) build[u.row[0].as_int()] = u.row[1].as_int();
    int64_t matched = 0;
    for (const auto& b : left_rows)
      for (const auto& u : b) matched += build.count(u.row[0].as_int());
    double jbase = seconds_since(t1);
    std::printf("| join 2M x 2M rows on a unique key | baseline hash join | %.3f s (%lld matches) | 1.00 |\n", jbase,
                static_cast<long long>(matched));
    std::printf("| join 2M x 2M rows on a unique key | tidemark | %.2f s (%.2f M input rows/s) | %.1fx baseline time |\n",
                js, 2 * rows / js / 1e6, js / jbase);
  }
  fs::remove_all(root);
  return 0;
}
