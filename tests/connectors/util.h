// Helpers for connector tests: temporary directories, files, and a thread-safe collector of
// subscription callbacks that tests wait on (never sleep-and-hope).
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/scheduler.h"
#include "tidemark/tidemark.h"

namespace tidemark::testing {

// A built executable of this project (build/bin/BIN) run through the shell with `args`
// (and `env` assignments before it): its exit code and its stdout and stderr together.
struct Proc {
  int exit_code;
  std::string output;  // stdout and stderr
};
inline Proc run_bin(const std::string& bin, const std::string& args, const std::string& env = "") {
  std::string cmd = env + std::string(TIDEMARK_BIN_DIR) + "/" + bin + " " + args + " 2>&1";
  Proc p{-1, ""};
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return p;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) p.output.append(buf, n);
  int st = pclose(f);
  p.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return p;
}

inline std::string row_string(const Row& r) {
  std::string s = "(";
  for (size_t i = 0; i < r.size(); ++i) s += (i ? ", " : "") + r[i].to_string();
  return s + ")";
}

// A fresh directory, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tidemark-conn-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

inline void write_file(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

// Writes through a hidden temporary file and a rename, as producers of watched dirs should.
inline void write_file_atomic(const std::string& path, const std::string& content) {
  std::filesystem::path p(path);
  std::string tmp = (p.parent_path() / ("." + p.filename().string() + ".tmp")).string();
  write_file(tmp, content);
  std::filesystem::rename(tmp, path);
}

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Collects subscription callbacks: the live rows (as strings) and every time's changes.
struct Collector {
  std::mutex mu;
  std::condition_variable cv;
  std::multiset<std::string> live;
  std::map<uint64_t, std::multiset<std::string>> by_time;  // "+(row)" / "-(row)"
  bool ended = false;
  bool strict = true;  // a retraction must match a live row

  io::SubscribeCallbacks callbacks() {
    return {[this](const Key&, const Row& row, uint64_t t, bool add) {
              std::lock_guard lock(mu);
              std::string s = row_string(row);
              by_time[t].insert((add ? "+" : "-") + s);
              if (add) live.insert(s);
              else if (auto it = live.find(s); it != live.end()) live.erase(it);
              else if (strict) ADD_FAILURE() << "retraction of a row that is not live: " << s;
            },
            [this](uint64_t) { cv.notify_all(); },
            [this] {
              std::lock_guard lock(mu);
              ended = true;
              cv.notify_all();
            }};
  }
  // Waits (generously) until pred() holds under the lock.
  bool wait(const std::function<bool()>& pred, std::chrono::seconds timeout = std::chrono::seconds(20)) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, timeout, pred);
  }
  // The changes of the latest time.
  std::multiset<std::string> last_changes() {
    std::lock_guard lock(mu);
    return by_time.empty() ? std::multiset<std::string>{} : by_time.rbegin()->second;
  }
  uint64_t last_time() {
    std::lock_guard lock(mu);
    return by_time.empty() ? 0 : by_time.rbegin()->first;
  }
  // The net changes of the times after `t` ("+(row)" n times for multiplicity +n): what a
  // non-atomic rewrite of a file may deliver in two times (read while half-written, then whole).
  std::multiset<std::string> net_changes_after(uint64_t t) {
    std::lock_guard lock(mu);
    std::map<std::string, int64_t> net;
    for (auto it = by_time.upper_bound(t); it != by_time.end(); ++it)
      for (const std::string& c : it->second) net[c.substr(1)] += c[0] == '+' ? 1 : -1;
    std::multiset<std::string> out;
    for (const auto& [row, n] : net)
      for (int64_t i = 0; i < (n < 0 ? -n : n); ++i) out.insert((n > 0 ? "+" : "-") + row);
    return out;
  }
};

// The offset of the run's first source over all its shards (workers), as persistence stores it.
inline Status merged_offset(engine::RunControl& s, std::string* out) {
  std::vector<std::string> parts;
  for (auto* shard : s.source_shards(0)) parts.push_back(shard->source().offset());
  Result<std::string> merged = s.sources()[0]->source().merge_shard_offsets(parts);
  if (!merged.is_ok()) return merged.status();
  *out = *merged;
  return Status::ok();
}

inline RunOptions quiet_options(std::atomic<bool>* stop = nullptr) {
  RunOptions o;
  o.handle_signals = false;
  o.progress_interval_s = 0;
  o.stop = stop;
  return o;
}

}  // namespace tidemark::testing
