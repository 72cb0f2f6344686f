#include "engine/udf_cache.h"

#include "engine/codec.h"

namespace tidemark::engine {

namespace {

std::string encode_value(const Value& v) {
  std::string out;
  codec::put_u8(out, UdfCacheState::kValueVersion);
  codec::put_value(out, v);
  return out;
}

}  // namespace

std::string UdfCacheState::entry_key(const std::vector<Value>& args) {
  std::string out;
  codec::put_key(out, key_from_values(args));
  return out;
}

std::optional<Value> UdfCacheState::lookup(const std::vector<Value>& args) {
  std::string key = entry_key(args);
  std::lock_guard<std::mutex> lock(mu_);
  if (const Value* v = find(key)) return *v;
  return std::nullopt;
}

void UdfCacheState::insert(const std::vector<Value>& args, const Value& result) {
  std::string key = entry_key(args);
  std::lock_guard<std::mutex> lock(mu_);
  store(std::move(key), result);
}

const Value* UdfCacheState::find(const std::string& key) {
  auto it = index_.find(key);
  if (it == index_.end()) {
    ++stats_.misses;
    return nullptr;
  }
  ++stats_.hits;
  if (it->second != lru_.begin()) lru_.splice(lru_.begin(), lru_, it->second);
  return &it->second->value;
}

void UdfCacheState::put(std::string key, Value value, uint64_t size) {
  auto it = index_.find(key);
  if (it != index_.end()) {
    Entry& e = *it->second;
    stats_.bytes -= e.size;
    e.value = std::move(value);
    e.size = size;
    stats_.bytes += size;
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  lru_.push_front({std::move(key), std::move(value), size});
  index_.emplace(std::string_view(lru_.front().key), lru_.begin());
  stats_.bytes += size;
  stats_.entries = lru_.size();
}

void UdfCacheState::store(std::string key, const Value& value) {
  std::string encoded = encode_value(value);
  uint64_t size = key.size() + encoded.size();
  if (size > config_->size_limit_bytes) {
    ++stats_.uncacheable;
    return;
  }
  if (tracking_) changes_.push_back({key, std::move(encoded), false});
  put(std::move(key), value, size);
  evict_to_limit();
}

void UdfCacheState::evict_to_limit() {
  while (stats_.bytes > config_->size_limit_bytes && !lru_.empty()) {
    Entry& victim = lru_.back();
    if (tracking_ || log_always_) changes_.push_back({victim.key, {}, true});
    index_.erase(std::string_view(victim.key));
    stats_.bytes -= victim.size;
    ++stats_.evictions;
    lru_.pop_back();
  }
  stats_.entries = lru_.size();
}

std::string UdfCacheState::describe_stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return "udf cache '" + config_->name + "': " + std::to_string(stats_.hits) + " hits, " +
         std::to_string(stats_.misses) + " misses, " + std::to_string(stats_.evictions) + " evictions, " +
         std::to_string(stats_.entries) + " entries, " + std::to_string(stats_.bytes) + " bytes";
}

void UdfCacheState::take_state_changes(StateChanges& out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (changes_.empty()) return;
  if (out.empty()) out.swap(changes_);
  else out.insert(out.end(), std::make_move_iterator(changes_.begin()), std::make_move_iterator(changes_.end()));
  changes_.clear();
}

Status UdfCacheState::restore_state_entry(std::string_view key, std::string_view value) {
  auto corrupt = [&](const std::string& why) {
    return Status::corruption("udf cache '" + config_->name + "': stored entry is " + why);
  };
  if (key.size() != 16) return corrupt("malformed (key of " + std::to_string(key.size()) + " bytes, expected 16)");
  std::string_view in = value;
  uint8_t version;
  if (!codec::get_u8(in, &version)) return corrupt("truncated (empty value)");
  if (version == 0) return corrupt("malformed (version byte 0)");
  if (version != kValueVersion)
    return Status::not_supported("udf cache '" + config_->name + "': stored entry has format version " +
                                 std::to_string(version) + " (this build reads version " +
                                 std::to_string(kValueVersion) + ")");
  Value v;
  if (!codec::get_value(in, &v)) return corrupt("truncated or malformed");
  if (!in.empty()) return corrupt("malformed (trailing bytes)");
  std::lock_guard<std::mutex> lock(mu_);
  put(std::string(key), std::move(v), key.size() + value.size());
  return {};
}

Status UdfCacheState::finish_state_restore() {
  // Whether or not tracking has begun yet, the evictions must reach the stored state.
  std::lock_guard<std::mutex> lock(mu_);
  log_always_ = true;
  evict_to_limit();
  log_always_ = false;
  return {};
}

}  // namespace tidemark::engine
