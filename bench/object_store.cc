// Persistence on S3 (Ceph RGW on loopback) against the local filesystem, measured in the same
// run. Prints a markdown table; every S3 figure is quoted as a ratio against the filesystem:
//   * requests and bytes uploaded per commit (both stores wrapped in FaultInjectingStore for its
//     counters), and total bytes uploaded vs the encoded size of the chunks and manifests the
//     commits reference (1.00 = every byte is uploaded exactly once);
//   * time per commit (a word count over BatchesSource, snapshot_interval_ms = 0, so every batch
//     is one commit; timed between consecutive time_end callbacks of a sink): mean and p95;
//   * restart time (a rerun with no new input) after --words words recorded in persisting mode.
//
// Usage: bench_object_store [--endpoint URL] [--words N] [--batches B] [--batch-words W] [--dir DIR]
//   URL defaults to $TIDEMARK_S3_ENDPOINT or http://127.0.0.1:7480 (scripts/s3-server.sh start DIR PORT);
//   bucket tidemark-test, credentials TESTACCESSKEY / TESTSECRETKEY.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "engine/collection_io.h"
#include "persistence/manifest.h"
#include "storage/fault_injecting_store.h"
#include "storage/s3_store.h"
#include "tidemark/tidemark.h"

namespace fs = std::filesystem;
using namespace tidemark;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void die_if(const Status& s, const std::string& what) {
  if (!s.is_ok()) {
    std::fprintf(stderr, "%s failed: %s\n", what.c_str(), s.to_string().c_str());
    std::exit(1);
  }
}

const Schema kWords{{"word", t_str()}};

// `batches` batches of `per_batch` words drawn from 10,000 distinct words (skewed).
std::vector<engine::Batch> make_batches(uint64_t batches, uint64_t per_batch, uint64_t seed) {
  const uint64_t distinct = 10'000;
  std::vector<std::string> vocab;
  for (uint64_t i = 0; i < distinct; ++i) vocab.push_back("w" + std::to_string(i * 2654435761ULL % 1000003));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<engine::Batch> out;
  uint64_t k = 1;
  for (uint64_t b = 0; b < batches; ++b) {
    engine::Batch batch;
    batch.reserve(per_batch);
    for (uint64_t i = 0; i < per_batch; ++i) {
      double x = u(rng);
      batch.push_back({Key{k++, 77}, {Value(vocab[static_cast<uint64_t>(x * x * distinct) % distinct])}, 1});
    }
    out.push_back(std::move(batch));
  }
  return out;
}

// Forwards to a FaultInjectingStore (for its counters) and remembers the size of every object
// written, so the bytes uploaded can be compared with the bytes the manifests reference.
class RecordingStore final : public storage::ObjectStore {
 public:
  explicit RecordingStore(std::unique_ptr<storage::ObjectStore> inner)
      : counting_(std::make_unique<storage::FaultInjectingStore>(std::move(inner))) {}
  Result<std::string> get(std::string_view key) override {
    Timer t(this, kGet);
    return counting_->get(key);
  }
  Status put(std::string_view key, std::string_view data) override {
    Timer t(this, kPut);
    Status s = counting_->put(key, data);
    if (s.is_ok()) note(key, data.size());
    return s;
  }
  Status put_if_absent(std::string_view key, std::string_view data) override {
    Timer t(this, kPutIfAbsent);
    Status s = counting_->put_if_absent(key, data);
    if (s.is_ok()) note(key, data.size());
    return s;
  }
  Result<std::vector<storage::ObjectInfo>> list(std::string_view prefix) override {
    Timer t(this, kList);
    return counting_->list(prefix);
  }
  Status remove(std::string_view key) override {
    Timer t(this, kRemove);
    return counting_->remove(key);
  }
  std::string describe() const override { return counting_->describe(); }
  Result<storage::VersionedObject> get_versioned(std::string_view key, storage::Deadline d) override {
    return counting_->get_versioned(key, d);
  }
  Result<std::string> put_if_version(std::string_view key, std::string_view data, std::string_view v,
                                     storage::Deadline d) override {
    return counting_->put_if_version(key, data, v, d);
  }
  Result<std::unique_ptr<storage::LocalFence>> acquire_local_fence() override {
    return counting_->acquire_local_fence();
  }

  enum Op { kGet, kPut, kPutIfAbsent, kList, kRemove, kOps };
  storage::StoreCounters counters() const { return counting_->counters(); }
  // Milliseconds spent in each kind of call (summed over threads).
  std::array<double, kOps> op_ms() const {
    std::lock_guard<std::mutex> l(mu_);
    return op_ms_;
  }
  // Bytes of successful writes per key (the last write of a key) and how many writes it got.
  std::map<std::string, std::pair<uint64_t, uint64_t>> written() const {
    std::lock_guard<std::mutex> l(mu_);
    return written_;
  }

 private:
  struct Timer {
    RecordingStore* s;
    Op op;
    Clock::time_point t0 = Clock::now();
    Timer(RecordingStore* st, Op o) : s(st), op(o) {}
    ~Timer() {
      double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      std::lock_guard<std::mutex> l(s->mu_);
      s->op_ms_[op] += ms;
    }
  };
  void note(std::string_view key, size_t n) {
    std::lock_guard<std::mutex> l(mu_);
    auto& w = written_[std::string(key)];
    w.first = n;
    ++w.second;
  }
  std::unique_ptr<storage::FaultInjectingStore> counting_;
  mutable std::mutex mu_;
  std::map<std::string, std::pair<uint64_t, uint64_t>> written_;
  std::array<double, kOps> op_ms_{};
};

// Records the wall-clock instant at which each logical time ends at the sink.
class TimingSink final : public engine::Sink {
 public:
  explicit TimingSink(std::shared_ptr<std::vector<Clock::time_point>> ends) : ends_(std::move(ends)) {}
  std::string describe() const override { return "timing"; }
  Status open() override { return {}; }
  Status write(engine::Time, const engine::Batch&, const Schema&) override { return {}; }
  Status flush() override { return {}; }
  Status time_end(engine::Time) override {
    ends_->push_back(Clock::now());
    return {};
  }

 private:
  std::shared_ptr<std::vector<Clock::time_point>> ends_;
};

struct RunResult {
  double seconds = 0;
  std::vector<double> per_batch_ms;  // between consecutive time_end callbacks
};

RunResult run_wordcount(const std::vector<engine::Batch>& batches, std::optional<persistence::Config> cfg,
                        const std::string& what) {
  Graph g;
  Table in = engine::add_source(g, std::make_unique<engine::BatchesSource>(batches, "words"), kWords, "words");
  Table out = in.groupby({"word"}).reduce({{"word", col("word")}, {"count", reducers::count()}});
  auto ends = std::make_shared<std::vector<Clock::time_point>>();
  engine::add_sink(out, std::make_unique<TimingSink>(ends), "timing");
  RunOptions o;
  o.handle_signals = false;
  o.progress_interval_s = 0;
  o.log = [](const std::string&) {};
  o.persistence_config = std::move(cfg);
  RunResult r;
  auto t = Clock::now();
  die_if(run(g, o), what);
  r.seconds = seconds_since(t);
  for (size_t i = 1; i < ends->size(); ++i)
    r.per_batch_ms.push_back(std::chrono::duration<double, std::milli>((*ends)[i] - (*ends)[i - 1]).count());
  return r;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

double p95(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(0.95 * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

std::string unique_prefix(const char* what) {
  return std::string("bench-") + what + "-" + std::to_string(getpid()) + "-" +
         std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
}

struct CommitStats {
  RunResult run;
  storage::StoreCounters c;
  std::array<double, RecordingStore::kOps> op_ms{};
  uint64_t commits = 0;          // manifests written
  uint64_t chunk_bytes = 0;      // chunks the newest manifest lists
  uint64_t manifest_bytes = 0;   // every manifest written (each was the commit point of its time)
  uint64_t other_bytes = 0;      // lock object writes
  uint64_t keys_rewritten = 0;   // keys written more than once (other than the lock)
  uint64_t unreferenced_chunk_bytes = 0;
};

CommitStats measure_commits(std::unique_ptr<storage::ObjectStore> store, const std::vector<engine::Batch>& batches,
                            const std::string& what) {
  auto rec = std::make_shared<RecordingStore>(std::move(store));
  CommitStats s;
  s.run = run_wordcount(batches, persistence::Config::simple_config(persistence::Backend::custom(rec), 0), what);
  s.c = rec->counters();
  s.op_ms = rec->op_ms();
  auto m = persistence::read_latest_manifest(*rec);
  die_if(m.status(), what + ": reading the newest manifest");
  if (!m->has_value()) die_if(Status::internal("no manifest written"), what);
  std::map<std::string, uint64_t> referenced;
  for (const auto& src : (*m)->sources)
    for (const auto& ch : src.chunks) referenced[ch.key] = ch.bytes;
  for (const auto& [k, n] : referenced) s.chunk_bytes += n;
  for (const auto& [key, w] : rec->written()) {
    if (key.rfind(persistence::kManifestPrefix, 0) == 0) {
      s.manifest_bytes += w.first;
      ++s.commits;
    } else if (key.rfind(persistence::kStreamsPrefix, 0) == 0) {
      if (!referenced.count(key)) s.unreferenced_chunk_bytes += w.first;
    } else {
      s.other_bytes += w.first * w.second;
      continue;
    }
    if (w.second > 1) ++s.keys_rewritten;
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const char* env = std::getenv("TIDEMARK_S3_ENDPOINT");
  std::string endpoint = env && *env ? env : "http://127.0.0.1:7480";
  uint64_t words = 1'000'000, nbatches = 50, batch_words = 2'000;
  fs::path root = fs::temp_directory_path() / ("tidemark-bench-os-" + std::to_string(getpid()));
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--endpoint" && i + 1 < argc) endpoint = argv[++i];
    else if (a == "--words" && i + 1 < argc) words = std::stoull(argv[++i]);
    else if (a == "--batches" && i + 1 < argc) nbatches = std::stoull(argv[++i]);
    else if (a == "--batch-words" && i + 1 < argc) batch_words = std::stoull(argv[++i]);
    else if (a == "--dir" && i + 1 < argc) root = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: %s [--endpoint URL] [--words N] [--batches B] [--batch-words W] [--dir DIR]\n"
                   "  URL defaults to $TIDEMARK_S3_ENDPOINT or http://127.0.0.1:7480\n",
                   argv[0]);
      return a == "--help" ? 0 : 2;
    }
  }

  persistence::AwsS3Settings settings;
  settings.bucket_name = "tidemark-test";
  settings.access_key = "TESTACCESSKEY";
  settings.secret_access_key = "TESTSECRETKEY";
  settings.endpoint = endpoint;
  settings.region = "us-east-1";
  settings.with_path_style = true;
  auto s3_opts = [&](const std::string& prefix) {
    auto o = storage::s3_options_from_settings(settings, prefix);
    die_if(o.status(), "S3 settings");
    return *o;
  };
  {  // Fail fast, with a clear message, when nothing answers at the endpoint.
    auto probe = s3_opts(unique_prefix("probe"));
    probe.max_attempts = 1;
    auto st = storage::open_s3_store(probe);
    if (!st.is_ok()) {
      std::fprintf(stderr,
                   "cannot use the S3 server at %s (bucket %s): %s\n"
                   "start one with: bash scripts/s3-server.sh start /tmp/rgw-bench 7500, then pass "
                   "--endpoint http://127.0.0.1:7500\n",
                   endpoint.c_str(), settings.bucket_name.c_str(), st.status().to_string().c_str());
      return 1;
    }
  }
  fs::remove_all(root);
  fs::create_directories(root);

  std::printf("| measure | filesystem | S3 (RGW, %s) | S3 / filesystem |\n|---|---|---|---|\n", endpoint.c_str());

  // 1. Per-commit requests, bytes and latency: nbatches commits of batch_words words each.
  auto batches = make_batches(nbatches, batch_words, 42);
  std::fprintf(stderr, "commits: %llu batches of %llu words, no persistence / filesystem / S3...\n",
               (unsigned long long)nbatches, (unsigned long long)batch_words);
  RunResult none = run_wordcount(batches, std::nullopt, "run without persistence");
  auto fs_store = storage::open_filesystem_store((root / "commits").string());
  die_if(fs_store.status(), "opening the filesystem store");
  CommitStats F = measure_commits(std::move(fs_store).value(), batches, "filesystem run");
  auto s3_store = storage::open_s3_store(s3_opts(unique_prefix("commits")));
  die_if(s3_store.status(), "opening the S3 store");
  CommitStats S = measure_commits(std::move(s3_store).value(), batches, "S3 run");

  auto row = [](const char* what, double f, double s, const char* fmt) {
    char a[64], b[64];
    std::snprintf(a, sizeof a, fmt, f);
    std::snprintf(b, sizeof b, fmt, s);
    if (f > 0) std::printf("| %s | %s | %s | %.2f |\n", what, a, b, s / f);
    else std::printf("| %s | %s | %s | - |\n", what, a, b);
  };
  auto per = [](uint64_t n, uint64_t commits) { return commits ? static_cast<double>(n) / commits : 0.0; };
  std::printf("| %llu batches x %llu words, snapshot_interval_ms = 0: commits (manifests written) | %llu | %llu | - |\n",
              (unsigned long long)nbatches, (unsigned long long)batch_words, (unsigned long long)F.commits,
              (unsigned long long)S.commits);
  row("puts per commit (chunk + lock renewal)", per(F.c.puts, F.commits), per(S.c.puts, S.commits), "%.2f");
  row("put_if_absents per commit (manifest)", per(F.c.put_if_absents, F.commits),
      per(S.c.put_if_absents, S.commits), "%.2f");
  row("gets / lists / removes per commit",
      per(F.c.gets + F.c.lists + F.c.removes, F.commits), per(S.c.gets + S.c.lists + S.c.removes, S.commits), "%.2f");
  row("bytes uploaded per commit", per(F.c.bytes_written, F.commits), per(S.c.bytes_written, S.commits), "%.0f B");
  auto upload_ratio = [](const CommitStats& x) {
    return static_cast<double>(x.c.bytes_written - x.other_bytes) / static_cast<double>(x.chunk_bytes + x.manifest_bytes);
  };
  std::printf("| total bytes uploaded / encoded chunks+manifests referenced (lock object excluded) | %llu / %llu = %.3f | "
              "%llu / %llu = %.3f | - |\n",
              (unsigned long long)(F.c.bytes_written - F.other_bytes),
              (unsigned long long)(F.chunk_bytes + F.manifest_bytes), upload_ratio(F),
              (unsigned long long)(S.c.bytes_written - S.other_bytes),
              (unsigned long long)(S.chunk_bytes + S.manifest_bytes), upload_ratio(S));
  std::printf("| of which chunks / manifests / lock object bytes | %llu / %llu / %llu | %llu / %llu / %llu | - |\n",
              (unsigned long long)F.chunk_bytes, (unsigned long long)F.manifest_bytes,
              (unsigned long long)F.other_bytes, (unsigned long long)S.chunk_bytes,
              (unsigned long long)S.manifest_bytes, (unsigned long long)S.other_bytes);
  std::printf("| objects written twice / unreferenced chunk bytes | %llu / %llu | %llu / %llu | - |\n",
              (unsigned long long)F.keys_rewritten, (unsigned long long)F.unreferenced_chunk_bytes,
              (unsigned long long)S.keys_rewritten, (unsigned long long)S.unreferenced_chunk_bytes);
  row("time per commit, mean (batch + commit)", mean(F.run.per_batch_ms), mean(S.run.per_batch_ms), "%.2f ms");
  row("time per commit, p95", p95(F.run.per_batch_ms), p95(S.run.per_batch_ms), "%.2f ms");
  {
    const char* names[] = {"get", "put", "put_if_absent", "list", "remove"};
    for (int op = 0; op < RecordingStore::kOps; ++op) {
      char label[96];
      std::snprintf(label, sizeof label, "time in %s calls per commit", names[op]);
      row(label, per(1, F.commits) * F.op_ms[op], per(1, S.commits) * S.op_ms[op], "%.2f ms");
    }
  }
  row("whole run / commits", F.run.seconds * 1e3 / std::max<uint64_t>(F.commits, 1),
      S.run.seconds * 1e3 / std::max<uint64_t>(S.commits, 1), "%.2f ms");
  std::printf("| same batches without persistence: mean / p95 per batch | %.2f ms / %.2f ms | - | - |\n",
              mean(none.per_batch_ms), p95(none.per_batch_ms));

  // Raw request latency, to explain the commit time: one commit is several sequential requests.
  {
    auto raw = [](storage::ObjectStore& st, const char* what) {
      std::string data(16 * 1024, 'x');
      std::vector<double> ms;
      for (int i = 0; i < 40; ++i) {
        auto t = Clock::now();
        die_if(st.put("raw/obj-" + std::to_string(i), data), what);
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
      }
      std::vector<double> gms;
      for (int i = 0; i < 40; ++i) {
        auto t = Clock::now();
        die_if(st.get("raw/obj-" + std::to_string(i)).status(), what);
        gms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
      }
      for (int i = 0; i < 40; ++i) die_if(st.remove("raw/obj-" + std::to_string(i)), what);
      return std::make_pair(ms, gms);
    };
    auto f = storage::open_filesystem_store((root / "raw").string());
    die_if(f.status(), "opening the filesystem store");
    auto s = storage::open_s3_store(s3_opts(unique_prefix("raw")));
    die_if(s.status(), "opening the S3 store");
    auto fm = raw(**f, "filesystem put"), sm = raw(**s, "S3 put");
    row("single 16 KiB put, mean", mean(fm.first), mean(sm.first), "%.2f ms");
    row("single 16 KiB put, p95", p95(fm.first), p95(sm.first), "%.2f ms");
    row("single 16 KiB get, mean", mean(fm.second), mean(sm.second), "%.2f ms");
    row("single 16 KiB get, p95", p95(fm.second), p95(sm.second), "%.2f ms");
  }

  // 2. Restart: record `words` words in persisting mode, then rerun with no new input.
  {
    const uint64_t per_batch = 50'000;
    uint64_t nb = std::max<uint64_t>(1, (words + per_batch - 1) / per_batch);
    auto big = make_batches(nb, std::min(per_batch, words), 7);
    std::fprintf(stderr, "restart: recording %llu words in %llu commits on the filesystem and S3...\n",
                 (unsigned long long)(nb * std::min(per_batch, words)), (unsigned long long)nb);
    auto fs_cfg = persistence::Config::simple_config(persistence::Backend::filesystem((root / "restart").string()), 0);
    auto s3_cfg = persistence::Config::simple_config(persistence::Backend::s3(unique_prefix("restart"), settings), 0);
    RunResult fr = run_wordcount(big, fs_cfg, "recording on the filesystem");
    RunResult sr = run_wordcount(big, s3_cfg, "recording on S3");
    RunResult f2 = run_wordcount(big, fs_cfg, "restart from the filesystem");
    RunResult s2 = run_wordcount(big, s3_cfg, "restart from S3");
    char label[160];
    std::snprintf(label, sizeof label, "record %.2gM words (%llu commits), persisting", (nb * std::min(per_batch, words)) / 1e6,
                  (unsigned long long)nb);
    row(label, fr.seconds, sr.seconds, "%.2f s");
    std::snprintf(label, sizeof label, "restart after %.2gM words (no new input)", (nb * std::min(per_batch, words)) / 1e6);
    row(label, f2.seconds, s2.seconds, "%.2f s");
  }
  fs::remove_all(root);
  return 0;
}
