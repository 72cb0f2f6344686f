// The cache behind apply(..., UdfCache) (include/tidemark/expr.h): a user function's results
// keyed by argument values, bounded in bytes with least-recently-used eviction, persisted as a
// PersistentState (node.h) registered in the graph as "udf_cache:<name>".
//
// Entries (docs/format/udf-cache.md):
//   key   = 16 bytes: key_from_values(args) (xxh3-128 of codec::put_row(args)), as codec::put_key
//   value = u8 version (= 1) + codec::put_value(result)
// An entry's size is key.size() + value.size().
//
// Thread-safe: with several workers (RunOptions::workers) one cache is shared by every worker's
// instance of the operators using it; lookups and stores take the cache's lock (the function
// itself runs outside it, so two workers missing on the same arguments may both compute it;
// the result is equal by the cache's contract).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <list>
#include <mutex>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/node.h"
#include "tidemark/expr.h"

namespace tidemark::engine {

struct UdfCacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;   // entries evicted to stay within the limit
  uint64_t uncacheable = 0; // results larger than the limit (not cached)
  uint64_t bytes = 0;       // current size of the entries
  uint64_t entries = 0;     // current number of entries
};

class UdfCacheState final : public PersistentState {
 public:
  static constexpr uint8_t kValueVersion = 1;

  explicit UdfCacheState(std::shared_ptr<const UdfCache> config) : config_(std::move(config)) {}
  explicit UdfCacheState(UdfCache config) : UdfCacheState(std::make_shared<const UdfCache>(std::move(config))) {}

  const std::string& name() const { return config_->name; }
  uint64_t size_limit_bytes() const { return config_->size_limit_bytes; }
  // The configuration object this cache was made for (one per apply(..., UdfCache) call).
  const UdfCache* config_identity() const { return config_.get(); }

  // The cached result for these arguments (a hit, made most recently used), or nullopt.
  std::optional<Value> lookup(const std::vector<Value>& args);
  // Stores a result computed for these arguments (replacing an entry with the same key),
  // evicting least recently used entries to stay within the limit.
  void insert(const std::vector<Value>& args, const Value& result);
  // lookup, or on a miss compute(args) then insert. Exceptions from compute propagate and
  // nothing is stored. Called from worker threads: arguments whose result another thread is
  // computing wait for that result (counted as a hit) instead of calling the function again,
  // so each missing result is computed once; if that computation throws, a waiter computes.
  template <class F>
  Value get_or_compute(const std::vector<Value>& args, F&& compute) {
    std::string key = entry_key(args);
    auto flight = std::make_shared<Flight>();
    {
      std::unique_lock<std::mutex> lock(mu_);
      for (;;) {
        if (const Value* v = find(key)) return *v;
        auto it = in_flight_.find(key);
        if (it == in_flight_.end()) break;
        std::shared_ptr<Flight> other = it->second;
        --stats_.misses;  // not a miss: the result is on its way
        ++waiting_;
        flight_done_.wait(lock, [&] { return other->done; });
        --waiting_;
        if (!other->failed) {
          ++stats_.hits;
          return other->result;
        }
      }
      in_flight_.emplace(key, flight);
    }
    auto finish = [&](const Value* result) {
      std::lock_guard<std::mutex> lock(mu_);
      in_flight_.erase(key);
      flight->done = true;
      flight->failed = result == nullptr;
      if (result) {
        flight->result = *result;
        store(std::move(key), *result);
      }
      flight_done_.notify_all();
    };
    Value r;
    try {
      r = compute(args);
    } catch (...) {
      finish(nullptr);
      throw;
    }
    finish(&r);
    return r;
  }

  const UdfCacheStats& stats() const { return stats_; }
  // Threads now waiting in get_or_compute for a result another thread is computing.
  size_t waiting() const {
    std::lock_guard<std::mutex> lock(mu_);
    return waiting_;
  }
  // "udf cache 'name': 3 hits, 2 misses, 0 evictions, 5 entries, 120 bytes" (for logs).
  std::string describe_stats() const;

  static std::string entry_key(const std::vector<Value>& args);

  // PersistentState.
  void track_state_changes() override { tracking_ = true; }
  void take_state_changes(StateChanges& out) override;
  Status restore_state_entry(std::string_view key, std::string_view value) override;
  // Evicts down to the limit (a smaller limit than the run that stored the entries).
  Status finish_state_restore() override;

 private:
  struct Entry {
    std::string key;
    Value value;
    uint64_t size = 0;
  };
  using List = std::list<Entry>;  // most recently used first

  // A hit: the value, moved to the front; counts hits and misses.
  const Value* find(const std::string& key);
  void store(std::string key, const Value& value);
  // Inserts or replaces (as most recently used) without logging or evicting.
  void put(std::string key, Value value, uint64_t size);
  void evict_to_limit();
  void log_put(const Entry& e);
  void log_erase(const std::string& key);

  // A result being computed by one thread, awaited by others (get_or_compute).
  struct Flight {
    bool done = false;
    bool failed = false;
    Value result;
  };

  std::shared_ptr<const UdfCache> config_;
  mutable std::mutex mu_;  // guards everything below
  std::condition_variable flight_done_;
  std::unordered_map<std::string, std::shared_ptr<Flight>> in_flight_;  // by entry key
  size_t waiting_ = 0;
  List lru_;
  std::unordered_map<std::string_view, List::iterator> index_;  // views into the entries' keys
  UdfCacheStats stats_;
  bool tracking_ = false;
  bool log_always_ = false;  // finish_state_restore: its evictions must reach storage
  StateChanges changes_;
};

}  // namespace tidemark::engine
