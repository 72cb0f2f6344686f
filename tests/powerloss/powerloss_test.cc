// Power-loss crash-point enumeration (LevelDB fault-injection Env / RocksDB
// FaultInjectionTestFS style) of a three-run persistent word count through the public API:
//
//   io::fs::read(dir of plaintext files) -> split/flatten -> groupby.reduce(count) -> io::fs::write(csv)
//   run 1: files a, b, c;  run 2: adds d, e;  run 3: modifies b, deletes c
//
// with persistence::Backend::filesystem, in persisting and operator_persisting modes. The
// storage and the output file live under a root watched by PowerLossFileIo (the FileIo seam).
// For crash point k: the k-th mutating I/O call of the workload and every later one fail with
// EIO (the run must end with an error, not swallow it), the power is lost (the tree under the
// root reverts to what was fsynced), and the interrupted run is run again until all three runs
// have completed. The power is also lost after every completed run. Then the output file (the change stream, cut
// back to its committed position by the engine), read as a multiset of (word, count, diff), and
// the changes each run added to it must equal those of a run without crash exactly.
//
// TIDEMARK_POWERLOSS_FULL=1 tries every crash point; otherwise every TIDEMARK_POWERLOSS_STRIDE-th
// (default 3), starting at 1, plus the last one. TIDEMARK_POWERLOSS_ONLY=k tries only point k.
// TIDEMARK_POWERLOSS_AFTER_RUNS=0: no power loss after completed runs (only at the crash), to
// see which crash points alone expose a bug; TIDEMARK_POWERLOSS_MAX_FAILURES (default 5) stops
// a mode after that many failing points; TIDEMARK_POWERLOSS_VERBOSE=1 prints every point;
// TIDEMARK_POWERLOSS_DOUBLE=s adds a second crash at every s-th call of each recovery.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "engine/collection_io.h"
#include "powerloss/power_loss_file_io.h"
#include "tidemark/tidemark.h"

namespace tidemark {
namespace {

namespace fs = std::filesystem;
using persistence::Backend;
using persistence::Config;
using persistence::PersistenceMode;
using testing_support::PowerLossFileIo;
using Multiset = std::vector<std::string>;  // sorted "word,count,diff"

struct Dirs {
  fs::path base;   // not watched: the inputs live here
  fs::path in;
  fs::path root;   // watched by the layer
  fs::path state;  // persistent storage (created by the engine)
  fs::path out;    // the output file
};

Dirs make_dirs(const std::string& tag) {
  Dirs d;
  d.base = fs::temp_directory_path() / ("tidemark-powerloss-" + std::to_string(::getpid()) + "-" + tag);
  fs::remove_all(d.base);
  fs::create_directories(d.base / "in");
  fs::create_directories(d.base / "disk");
  d.base = fs::canonical(d.base);
  d.in = d.base / "in";
  d.root = d.base / "disk";
  d.state = d.root / "state";
  d.out = d.root / "counts.csv";
  return d;
}

void put_file(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
}

// The inputs of run `r` (1..3): written directly, outside the watched root (they are the
// program's input, not its output, and survive the power loss as they are).
void prepare_inputs(const Dirs& d, int r) {
  if (r == 1) {
    put_file(d.in / "a.txt", "apple banana cherry\nbanana date\n");
    put_file(d.in / "b.txt", "cherry cherry elder\nfig\n");
    put_file(d.in / "c.txt", "apple grape\nbanana\n");
  } else if (r == 2) {
    put_file(d.in / "d.txt", "date elder fig grape\n");
    put_file(d.in / "e.txt", "apple apple honeydew\n");
  } else {
    put_file(d.in / "b.txt", "cherry kiwi\nfig fig lime lime\n");
    fs::remove(d.in / "c.txt");
  }
}

// The final word counts of the inputs after run `r`, computed directly.
std::map<std::string, int64_t> direct_counts(const Dirs& d) {
  std::map<std::string, int64_t> counts;
  for (const auto& e : fs::directory_iterator(d.in)) {
    std::ifstream f(e.path());
    std::string w;
    while (f >> w) ++counts[w];
  }
  return counts;
}

Status run_once(const Dirs& d, PersistenceMode mode) {
  Graph g;
  io::fs::ReadOptions ro;
  ro.format = io::Format::kPlaintext;
  ro.name = "lines";
  Table lines = io::fs::read(g, d.in.string(), ro);
  Table counts = lines.select({{"word", str::split(col("data"))}})
                     .flatten("word")
                     .groupby({"word"})
                     .reduce({{"word", col("word")}, {"count", reducers::count()}});
  io::fs::write(counts, d.out.string(), {.format = io::Format::kCsv, .name = "counts"});
  RunOptions o;
  o.handle_signals = false;
  o.progress_interval_s = 0;
  o.log = [](const std::string&) {};
  o.persistence_config = Config::simple_config(Backend::filesystem(d.state.string()), 0,
                                               persistence::SnapshotAccess::kFull, mode);
  return run(g, o);  // the graph (and the sink's descriptor) goes when this returns
}

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// "word,count,time,diff" lines (after the header) -> sorted "word,count,diff".
Multiset changes_of(std::string_view text, bool with_header) {
  Multiset out;
  size_t pos = 0;
  bool first = true;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string line(text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos));
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    if (first && with_header) {
      first = false;
      if (line != "word,count,time,diff") out.push_back("BAD HEADER: " + line);
      continue;
    }
    first = false;
    size_t c1 = line.find(','), c2 = line.find(',', c1 + 1), c3 = line.find(',', c2 + 1);
    if (c3 == std::string::npos || nl == std::string_view::npos) {
      out.push_back("BAD LINE: " + line);
      continue;
    }
    out.push_back(line.substr(0, c2) + "," + line.substr(c3 + 1));
  }
  std::sort(out.begin(), out.end());
  return out;
}

struct Outcome {
  std::string error;                   // empty: every check passed
  std::vector<Multiset> per_run;       // changes each run added to the output file
  Multiset total;                      // the whole output file
  std::vector<uint64_t> calls_after;   // mutating calls when each run completed
  int recoveries = 0;
  std::string crash_call;              // "<k>: <call> <path>" that crashed
  std::string crash_status;            // what the crashed run returned
  bool second_missed = false;          // the recovery completed before the second crash point
};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += "\n    " + x;
  return s;
}

// Runs the three-run workload on fresh directories; crash_at > 0 crashes at that mutating call,
// and then second_crash > 0 at that call of the recovery (counted from its start). The power is
// lost after each crash and, with `loss_after_runs`, after every completed run.
Outcome workload(PersistenceMode mode, uint64_t crash_at, const std::string& tag, bool loss_after_runs,
                 uint64_t second_crash = 0) {
  Outcome res;
  Dirs d = make_dirs(tag);
  {
    PowerLossFileIo io({d.root.string()});
    io.crash_at(crash_at);
    std::string committed;  // the output file after the previous completed run
    bool second_armed = false;
    for (int r = 1; r <= 3 && res.error.empty(); ++r) {
      prepare_inputs(d, r);
      for (int attempt = 0;; ++attempt) {
        Status st = run_once(d, mode);
        bool crashed = io.crashed();
        if (second_armed && !crashed) {
          io.crash_at(0);
          res.second_missed = true;
        }
        second_armed = false;
        if (crashed && res.crash_call.empty()) {
          res.crash_call = io.crash_call();
          res.crash_status = "run " + std::to_string(r) + ": " + st.to_string();
        }
        if (st.is_ok() && crashed) {  // an EIO was swallowed: success was reported for failed writes
          res.error = "run " + std::to_string(r) + " reported success although " + io.crash_call() + " failed";
          break;
        }
        if (!st.is_ok() && !crashed) {
          res.error = "run " + std::to_string(r) + " (attempt " + std::to_string(attempt + 1) +
                      ") failed without an injected crash: " + st.to_string() + "\n  last calls:" +
                      join(io.recent_calls(12));
          break;
        }
        if (io.open_descriptors() != 0) {
          res.error = "run " + std::to_string(r) + " left descriptors open";
          break;
        }
        if (crashed || loss_after_runs) {  // a completed run must be durable as well
          std::string e = io.power_loss();
          if (!e.empty()) {
            res.error = "power loss: " + e;
            break;
          }
        }
        if (crashed && second_crash != 0) {
          io.crash_at(second_crash);
          second_crash = 0;
          second_armed = true;
          res.crash_call.clear();  // report (and require) the second crash
        }
        if (st.is_ok()) break;
        ++res.recoveries;  // crashed: run it again on what survived
      }
      if (!res.error.empty()) break;
      res.calls_after.push_back(io.mutating_calls());
      std::string now = read_all(d.out);
      if (!now.starts_with(committed)) {
        res.error = "after run " + std::to_string(r) + " the output no longer starts with what run " +
                    std::to_string(r - 1) + " left (" + std::to_string(committed.size()) + " bytes; now " +
                    std::to_string(now.size()) + ")";
        break;
      }
      res.per_run.push_back(changes_of(std::string_view(now).substr(committed.size()), r == 1));
      committed = now;
    }
    if (res.error.empty()) {
      res.total = changes_of(committed, true);
      if (io.untracked() != 0) res.error = std::to_string(io.untracked()) + " inode(s) created outside the seam";
    }
  }
  std::error_code ec;
  fs::remove_all(d.base, ec);
  return res;
}

std::string show(const Multiset& m) {
  std::string s = "{";
  for (size_t i = 0; i < m.size(); ++i) s += (i ? " " : "") + m[i];
  return s + "}";
}

uint64_t env_u64(const char* name, uint64_t dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : dflt;
}

class PowerLoss : public ::testing::TestWithParam<PersistenceMode> {
 protected:
  static void SetUpTestSuite() { setenv("TIDEMARK_SYNC_COMPACTION", "1", 1); }  // merges inline: deterministic
};

TEST_P(PowerLoss, EveryCrashPointRecoversExactlyOnce) {
  const PersistenceMode mode = GetParam();
  const std::string name = persistence::to_string(mode);
  auto t0 = std::chrono::steady_clock::now();

  // The reference: the same workload without a crash or power loss.
  Outcome clean = workload(mode, 0, name + "-clean", false);
  ASSERT_EQ(clean.error, "");
  ASSERT_EQ(clean.per_run.size(), 3u);
  const uint64_t n = clean.calls_after.back();
  // Sanity of the reference: the output's consolidated content is the word count of the inputs.
  {
    Dirs d = make_dirs(name + "-direct");
    for (int r = 1; r <= 3; ++r) prepare_inputs(d, r);
    std::map<std::string, int64_t> want = direct_counts(d), got;
    fs::remove_all(d.base);
    std::map<std::string, int64_t> weight;
    for (const std::string& c : clean.total) {
      size_t last = c.rfind(',');
      weight[c.substr(0, last)] += std::stoll(c.substr(last + 1));
    }
    for (const auto& [wc, w] : weight) {
      ASSERT_TRUE(w == 0 || w == 1) << wc << " has weight " << w;
      if (w == 1) got[wc.substr(0, wc.find(','))] = std::stoll(wc.substr(wc.find(',') + 1));
    }
    ASSERT_EQ(got, want);
    for (int r = 0; r < 3; ++r) ASSERT_FALSE(clean.per_run[r].empty()) << "run " << r + 1 << " emitted nothing";
  }

  const bool full = env_u64("TIDEMARK_POWERLOSS_FULL", 0) != 0;
  const uint64_t stride = full ? 1 : std::max<uint64_t>(1, env_u64("TIDEMARK_POWERLOSS_STRIDE", 3));
  const uint64_t only = env_u64("TIDEMARK_POWERLOSS_ONLY", 0);
  const bool loss_after_runs = env_u64("TIDEMARK_POWERLOSS_AFTER_RUNS", 1) != 0;
  const size_t max_failures = env_u64("TIDEMARK_POWERLOSS_MAX_FAILURES", 5);
  if (loss_after_runs) {  // a power loss after each completed run alone must change nothing
    Outcome o = workload(mode, 0, name + "-lossafterruns", true);
    EXPECT_EQ(o.error, "");
    EXPECT_EQ(o.per_run, clean.per_run);
  }
  std::vector<uint64_t> points;
  if (only != 0) {
    points.push_back(only);
  } else {
    for (uint64_t k = 1; k <= n; k += stride) points.push_back(k);
    if (points.back() != n) points.push_back(n);
  }

  int failures = 0, recoveries = 0;
  for (uint64_t k : points) {
    Outcome o = workload(mode, k, name + "-" + std::to_string(k), loss_after_runs);
    recoveries += o.recoveries;
    if (env_u64("TIDEMARK_POWERLOSS_VERBOSE", 0))
      std::cout << "  " << (o.crash_call.empty() ? std::to_string(k) + ": no crash" : o.crash_call) << " => "
                << o.crash_status << std::endl;
    std::string why = o.error;
    if (why.empty() && o.crash_call.empty()) why = "the crash point was never reached (nondeterministic call count?)";
    if (why.empty()) {
      for (int r = 0; r < 3 && why.empty(); ++r)
        if (o.per_run[r] != clean.per_run[r])
          why = "run " + std::to_string(r + 1) + " added " + show(o.per_run[r]) + "\n  a clean run adds " +
                show(clean.per_run[r]);
      if (why.empty() && o.total != clean.total)
        why = "output " + show(o.total) + "\n  clean output " + show(clean.total);
    }
    if (!why.empty()) {
      ++failures;
      ADD_FAILURE() << name << ": crash point " << k << " of " << n << " (" << o.crash_call << "): " << why;
      if (static_cast<size_t>(failures) >= max_failures) break;
    }
  }
  // TIDEMARK_POWERLOSS_DOUBLE=s: also a second crash during the recovery from each first one,
  // at every s-th call of the recovery (until it completes without reaching it).
  const uint64_t dbl = env_u64("TIDEMARK_POWERLOSS_DOUBLE", 0);
  size_t double_points = 0;
  for (uint64_t k : dbl ? points : std::vector<uint64_t>{}) {
    for (uint64_t j = 1;; j += dbl) {
      Outcome o = workload(mode, k, name + "-" + std::to_string(k) + "-" + std::to_string(j), loss_after_runs, j);
      if (o.second_missed) break;  // the recovery ended before its call j
      ++double_points;
      recoveries += o.recoveries;
      std::string why = o.error;
      for (int r = 0; r < 3 && why.empty(); ++r)
        if (o.per_run[r] != clean.per_run[r])
          why = "run " + std::to_string(r + 1) + " added " + show(o.per_run[r]) + "\n  a clean run adds " +
                show(clean.per_run[r]);
      if (!why.empty()) {
        ++failures;
        ADD_FAILURE() << name << ": crash point " << k << ", then " << j << " into the recovery (" << o.crash_call
                      << "): " << why;
        if (static_cast<size_t>(failures) >= max_failures) break;
      }
    }
    if (static_cast<size_t>(failures) >= max_failures) break;
  }
  if (dbl) std::cout << "[powerloss] " << name << ": " << double_points << " double crash points tried" << std::endl;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[powerloss] " << name << ": " << n << " mutating calls per clean workload, " << points.size()
            << " crash points tried (" << (only ? "only " + std::to_string(only) : full ? std::string("all") : "stride " + std::to_string(stride))
            << "), " << recoveries << " recoveries, " << failures << " failed, " << secs << " s" << std::endl;
}

INSTANTIATE_TEST_SUITE_P(Modes, PowerLoss,
                         ::testing::Values(PersistenceMode::kPersisting, PersistenceMode::kOperatorPersisting),
                         [](const auto& info) { return persistence::to_string(info.param); });

}  // namespace
}  // namespace tidemark
