#include "persistence/state_store.h"

#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "engine/codec.h"
#include "storage/chunk_format.h"

namespace tidemark::persistence {

namespace {

std::string hashed_prefix(const char* root, const std::string& id) {
  XXH128_hash_t h = XXH3_128bits(id.data(), id.size());
  char buf[80];
  std::snprintf(buf, sizeof buf, "%s%016llx%016llx/", root, static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return buf;
}

Status put_state_record(storage::ChunkWriter& w, const std::string& key, const std::optional<std::string>& value) {
  std::string rec;
  codec::put_bytes(rec, key);
  if (!value) return w.append(kRecordStateErase, rec);
  codec::put_bytes(rec, *value);
  return w.append(kRecordStatePut, rec);
}

// Reads a state chunk's records in order: f(key, value or nullopt for an erase).
template <typename F>
Status read_state_chunk(const std::string& key, std::string_view data, F&& f) {
  TM_ASSIGN_OR_RETURN(auto reader, storage::ChunkReader::open(key, data));
  for (;;) {
    TM_ASSIGN_OR_RETURN(auto rec, reader.next());
    if (!rec) break;
    std::string_view p = rec->data;
    std::string k, v;
    if (rec->type == kRecordStatePut) {
      if (!codec::get_bytes(p, &k) || !codec::get_bytes(p, &v) || !p.empty())
        return Status::corruption("state chunk '" + key + "': malformed put record");
      f(std::move(k), std::optional<std::string>(std::move(v)));
    } else if (rec->type == kRecordStateErase) {
      if (!codec::get_bytes(p, &k) || !p.empty())
        return Status::corruption("state chunk '" + key + "': malformed erase record");
      f(std::move(k), std::optional<std::string>());
    } else {
      return Status::corruption("state chunk '" + key + "': unexpected record type " + std::to_string(rec->type));
    }
  }
  return reader.torn_tail_status();
}

}  // namespace

std::string state_prefix(const std::string& owner_id) { return hashed_prefix("operators/", owner_id); }
std::string content_prefix(const std::string& source_id) { return hashed_prefix("contents/", source_id); }

std::string state_chunk_key(const std::string& owner_id, uint64_t run, uint64_t seq) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%010llu-%010llu", static_cast<unsigned long long>(run),
                static_cast<unsigned long long>(seq));
  return state_prefix(owner_id) + buf;
}

std::string content_key(const std::string& source_id, uint64_t hash) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(hash));
  return content_prefix(source_id) + buf;
}

std::string encode_state_chunk(engine::StateChanges changes, uint64_t* records) {
  // Latest change per key, sorted by key.
  std::map<std::string, std::optional<std::string>> latest;
  for (auto& c : changes) {
    if (c.erase) latest[std::move(c.key)] = std::nullopt;
    else latest[std::move(c.key)] = std::move(c.value);
  }
  storage::ChunkWriter w;
  for (const auto& [k, v] : latest) (void)put_state_record(w, k, v);  // entries are far below the record limit
  *records = w.record_count();
  return w.finish();
}

Status apply_state_chunk(const std::string& key, std::string_view data, StateMap* map) {
  return read_state_chunk(key, data, [&](std::string k, std::optional<std::string> v) {
    if (v) (*map)[std::move(k)] = std::move(*v);
    else map->erase(k);
  });
}

std::string encode_content(std::string_view content) {
  storage::ChunkWriter w;
  const size_t step = storage::format::kChunkMaxRecordSize;
  if (content.empty()) (void)w.append(kRecordContent, "");
  for (size_t i = 0; i < content.size(); i += step) (void)w.append(kRecordContent, content.substr(i, step));
  return w.finish();
}

Result<std::string> decode_content(const std::string& key, std::string_view data) {
  TM_ASSIGN_OR_RETURN(auto reader, storage::ChunkReader::open(key, data));
  std::string out;
  for (;;) {
    TM_ASSIGN_OR_RETURN(auto rec, reader.next());
    if (!rec) break;
    if (rec->type != kRecordContent)
      return Status::corruption("content object '" + key + "': unexpected record type " + std::to_string(rec->type));
    out.append(rec->data);
  }
  TM_RETURN_IF_ERROR(reader.torn_tail_status());
  return out;
}

std::optional<std::pair<size_t, size_t>> pick_merge(const std::vector<ChunkRef>& chunks, size_t fan_in) {
  // Bounded read amplification: once the newer chunks together are as large as the oldest
  // (the consolidated bulk of the state), everything is merged into one chunk, so loading the
  // state reads at most about twice its size.
  if (chunks.size() >= 2) {
    uint64_t newer = 0;
    for (size_t i = 1; i < chunks.size(); ++i) newer += chunks[i].bytes;
    if (newer >= chunks[0].bytes) return std::make_pair(size_t{0}, chunks.size());
  }
  if (chunks.size() < fan_in || fan_in < 2) return std::nullopt;
  // Runs of equal level, newest first; the first run long enough is merged (its `fan_in`
  // oldest chunks, so levels stay non-increasing from old to new).
  size_t last = chunks.size();
  while (last > 0) {
    size_t first = last;
    while (first > 0 && chunks[first - 1].level == chunks[last - 1].level) --first;
    if (last - first >= fan_in) return std::make_pair(first, first + fan_in);
    last = first;
  }
  return std::nullopt;
}

Result<std::string> merge_state_chunks(const std::vector<std::pair<std::string, std::string>>& chunks,
                                       bool drop_erases, uint64_t* records) {
  std::map<std::string, std::optional<std::string>> merged;
  for (const auto& [key, data] : chunks)
    TM_RETURN_IF_ERROR(read_state_chunk(key, data, [&](std::string k, std::optional<std::string> v) {
      merged[std::move(k)] = std::move(v);
    }));
  storage::ChunkWriter w;
  for (const auto& [k, v] : merged) {
    if (!v && drop_erases) continue;
    TM_RETURN_IF_ERROR(put_state_record(w, k, v));
  }
  *records = w.record_count();
  return w.finish();
}

Result<std::string> merge_input_chunks(const std::vector<std::pair<std::string, std::string>>& chunks,
                                       uint64_t* records, uint64_t* max_time) {
  engine::Batch rows;
  std::optional<InputEvent> last_advance;
  bool finished = false;
  for (const auto& [key, data] : chunks) {
    std::vector<InputEvent> events;
    TM_RETURN_IF_ERROR(read_input_chunk(key, data, &events));
    for (auto& e : events) {
      if (e.type == kRecordInsert || e.type == kRecordDelete) rows.push_back(std::move(e.update));
      else if (e.type == kRecordAdvance) last_advance = std::move(e);
      else if (e.type == kRecordFinished) finished = true;
    }
  }
  engine::consolidate(rows);
  storage::ChunkWriter w;
  for (const auto& u : rows)
    TM_RETURN_IF_ERROR(w.append(u.diff > 0 ? kRecordInsert : kRecordDelete, encode_update_payload(u)));
  *max_time = 0;
  if (last_advance) {
    TM_RETURN_IF_ERROR(w.append(kRecordAdvance, encode_advance_payload(last_advance->time, last_advance->offset)));
    *max_time = last_advance->time;
  }
  if (finished) TM_RETURN_IF_ERROR(w.append(kRecordFinished, ""));
  *records = w.record_count();
  return w.finish();
}

Merger::Merger() : sync_(std::getenv("TIDEMARK_SYNC_COMPACTION") != nullptr), thread_([this] { loop(); }) {}

Merger::~Merger() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  thread_.join();
}

void Merger::submit(Job job) {
  if (sync_) {  // test knob: run the job now (exact, timing-free compaction shapes in tests)
    Result<ChunkRef> r = job.run();
    std::lock_guard<std::mutex> l(mu_);
    done_.push_back({std::move(job.owner), std::move(job.replaced), std::move(r)});
    return;
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    active_.push_back(job.owner);
    queue_.push_back(std::move(job));
  }
  cv_.notify_all();
}

std::vector<Merger::Done> Merger::poll() {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<Done> out;
  out.swap(done_);
  return out;
}

bool Merger::busy(const std::string& owner) const {
  std::lock_guard<std::mutex> l(mu_);
  return std::find(active_.begin(), active_.end(), owner) != active_.end();
}

void Merger::drain() {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return queue_.empty() && !running_; });
}

void Merger::loop() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    Job job = std::move(queue_.front());
    queue_.pop_front();
    running_ = true;
    l.unlock();
    Result<ChunkRef> r = job.run();
    l.lock();
    running_ = false;
    auto it = std::find(active_.begin(), active_.end(), job.owner);
    if (it != active_.end()) active_.erase(it);
    done_.push_back({std::move(job.owner), std::move(job.replaced), std::move(r)});
    cv_.notify_all();
  }
}

}  // namespace tidemark::persistence
