#include "persistence/state_store.h"

#include <xxhash.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <cstdio>
#include <cstdlib>

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

// The first bytes of an entry key, as hex, for messages.
std::string short_hex(std::string_view k) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < std::min<size_t>(k.size(), 16); ++i) {
    out.push_back(d[static_cast<unsigned char>(k[i]) >> 4]);
    out.push_back(d[static_cast<unsigned char>(k[i]) & 15]);
  }
  return k.size() > 16 ? out + "..." : out;
}

Status put_state_record(storage::ChunkWriter& w, std::string_view key, std::optional<std::string_view> value) {
  thread_local std::string rec;
  rec.clear();
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

bool get_view(std::string_view& in, std::string_view* out) {
  uint64_t n;
  if (!codec::get_varint(in, &n) || n > in.size()) return false;
  *out = in.substr(0, n);
  in.remove_prefix(n);
  return true;
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

std::string content_key(const std::string& source_id, uint64_t hash, uint64_t epoch) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%016llx-%010llu", static_cast<unsigned long long>(hash),
                static_cast<unsigned long long>(epoch));
  return content_prefix(source_id) + buf;
}

Result<std::string> encode_state_chunk(engine::StateChanges changes, uint64_t* records) {
  // Latest change per key, sorted by key. The changes are runs that are mostly sorted already
  // (one per take; operators take in key order), so a stable merge of the runs orders them
  // with the later change of a key after the earlier one.
  std::vector<uint32_t> order(changes.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  auto less = [&](uint32_t a, uint32_t b) { return changes[a].key < changes[b].key; };
  std::vector<size_t> runs{0};
  for (size_t i = 1; i < order.size(); ++i)
    if (less(order[i], order[i - 1])) runs.push_back(i);
  runs.push_back(order.size());
  if (runs.size() > 64) {
    std::stable_sort(order.begin(), order.end(), less);
  } else {
    while (runs.size() > 2) {
      std::vector<size_t> merged{0};
      for (size_t r = 0; r + 2 < runs.size(); r += 2) {
        std::inplace_merge(order.begin() + static_cast<std::ptrdiff_t>(runs[r]),
                           order.begin() + static_cast<std::ptrdiff_t>(runs[r + 1]),
                           order.begin() + static_cast<std::ptrdiff_t>(runs[r + 2]), less);
        merged.push_back(runs[r + 2]);
      }
      if (runs.size() % 2 == 0) merged.push_back(runs.back());  // an odd run count: the last run stays
      runs = std::move(merged);
    }
  }
  storage::ChunkWriter w;
  for (size_t i = 0; i < order.size(); ++i) {
    if (i + 1 < order.size() && changes[order[i + 1]].key == changes[order[i]].key) continue;  // a later change wins
    const engine::StateChange& c = changes[order[i]];
    Status st = put_state_record(w, c.key, c.erase ? std::nullopt : std::optional<std::string_view>(c.value));
    if (!st.is_ok())
      return st.with_context("state entry of " + std::to_string(c.key.size()) + "-byte key " + short_hex(c.key));
  }
  *records = w.record_count();
  return w.finish();
}

Status apply_state_chunk(const std::string& key, std::string_view data, StateMap* map) {
  // Entries are stored sorted by key, each key once (as the streaming merge requires).
  std::string last;
  bool started = false;
  Status order;
  Status st = read_state_chunk(key, data, [&](std::string k, std::optional<std::string> v) {
    if (!order.is_ok()) return;
    if (started && !(last < k)) {
      order = Status::corruption("state chunk '" + key + "': entry keys out of order at key " + short_hex(k));
      return;
    }
    last = k;
    started = true;
    if (v) (*map)[std::move(k)] = std::move(*v);
    else map->erase(k);
  });
  if (!st.is_ok()) return st;
  return order;
}

std::string encode_content(std::string_view content) {
  // Records are split at the record size limit: a content of any size fits.
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

Status merge_state_records(const std::vector<std::pair<std::string, std::string_view>>& chunks, bool with_erases,
                           const StateRecordFn& f) {
  struct Cursor {
    const std::string* name;
    std::optional<storage::ChunkReader> reader;
    bool done = false;
    bool erase = false;
    std::string_view key, value;
    std::string last;  // the previous key (order check)
    bool started = false;
  };
  auto advance = [](Cursor& c) -> Status {
    TM_ASSIGN_OR_RETURN(auto rec, c.reader->next());
    if (!rec) {
      c.done = true;
      return c.reader->torn_tail_status();
    }
    std::string_view p = rec->data;
    bool ok;
    if (rec->type == kRecordStatePut) {
      ok = get_view(p, &c.key) && get_view(p, &c.value) && p.empty();
      c.erase = false;
    } else if (rec->type == kRecordStateErase) {
      ok = get_view(p, &c.key) && p.empty();
      c.erase = true;
    } else {
      return Status::corruption("state chunk '" + *c.name + "': unexpected record type " + std::to_string(rec->type));
    }
    if (!ok) return Status::corruption("state chunk '" + *c.name + "': malformed " + (c.erase ? "erase" : "put") + " record");
    if (c.started && !(c.last < c.key))
      return Status::corruption("state chunk '" + *c.name + "': entry keys out of order at key " + short_hex(c.key));
    c.last.assign(c.key);
    c.started = true;
    return {};
  };
  std::vector<Cursor> cs(chunks.size());
  for (size_t i = 0; i < chunks.size(); ++i) {
    cs[i].name = &chunks[i].first;
    TM_ASSIGN_OR_RETURN(auto r, storage::ChunkReader::open(chunks[i].first, chunks[i].second));
    cs[i].reader.emplace(std::move(r));
    TM_RETURN_IF_ERROR(advance(cs[i]));
  }
  if (cs.size() == 1) {  // one chunk (a compacted state): its records in order, nothing to merge
    Cursor& c = cs[0];
    while (!c.done) {
      if (!c.erase || with_erases)
        TM_RETURN_IF_ERROR(f(c.key, c.erase ? std::nullopt : std::optional<std::string_view>(c.value)));
      TM_RETURN_IF_ERROR(advance(c));
    }
    return {};
  }
  std::string current;
  for (;;) {
    // The smallest key; among chunks holding it, the newest (last) wins.
    size_t win = cs.size();
    for (size_t i = 0; i < cs.size(); ++i)
      if (!cs[i].done && (win == cs.size() || cs[i].key <= cs[win].key)) win = i;
    if (win == cs.size()) return {};
    Cursor& w = cs[win];
    if (!w.erase || with_erases)
      TM_RETURN_IF_ERROR(f(w.key, w.erase ? std::nullopt : std::optional<std::string_view>(w.value)));
    current.assign(w.key);
    for (auto& c : cs)
      if (!c.done && c.key == current) TM_RETURN_IF_ERROR(advance(c));
  }
}

Status merge_state_records_pipelined(const std::vector<std::pair<std::string, std::string_view>>& chunks,
                                     bool with_erases, const StateRecordFn& f) {
  struct Rec {
    size_t key_off, key_len, value_off, value_len;
    bool erase;
  };
  struct Batch {
    std::string bytes;
    std::vector<Rec> recs;
  };
  constexpr size_t kBatchRecords = 16384, kBatchBytes = 4u << 20, kMaxQueued = 4;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Batch> queue;
  bool produced = false, stop = false;
  Status merge_status;
  std::thread producer([&] {
    Batch cur;
    auto push = [&]() -> bool {
      std::unique_lock<std::mutex> l(mu);
      cv.wait(l, [&] { return queue.size() < kMaxQueued || stop; });
      if (stop) return false;
      queue.push_back(std::move(cur));
      cur = Batch{};
      cv.notify_all();
      return true;
    };
    Status st = merge_state_records(chunks, with_erases, [&](std::string_view k, std::optional<std::string_view> v) {
      Rec r{cur.bytes.size(), k.size(), 0, 0, !v};
      cur.bytes.append(k);
      r.value_off = cur.bytes.size();
      if (v) {
        cur.bytes.append(*v);
        r.value_len = v->size();
      }
      cur.recs.push_back(r);
      if ((cur.recs.size() >= kBatchRecords || cur.bytes.size() >= kBatchBytes) && !push())
        return Status::aborted("restore stopped");
      return Status();
    });
    if (!cur.recs.empty()) push();  // also before a merge error: f sees every record before it
    std::lock_guard<std::mutex> l(mu);
    produced = true;
    merge_status = st;
    cv.notify_all();
  });
  Status result;
  for (;;) {
    Batch b;
    {
      std::unique_lock<std::mutex> l(mu);
      cv.wait(l, [&] { return !queue.empty() || produced; });
      if (queue.empty()) break;
      b = std::move(queue.front());
      queue.pop_front();
      cv.notify_all();
    }
    for (const Rec& r : b.recs) {
      std::string_view k(b.bytes.data() + r.key_off, r.key_len);
      std::optional<std::string_view> v;
      if (!r.erase) v = std::string_view(b.bytes.data() + r.value_off, r.value_len);
      result = f(k, v);
      if (!result.is_ok()) break;
    }
    if (!result.is_ok()) break;
  }
  {
    std::lock_guard<std::mutex> l(mu);
    stop = true;
  }
  cv.notify_all();
  producer.join();
  if (!result.is_ok()) return result;
  return merge_status;
}

Result<std::string> merge_state_chunks(const std::vector<std::pair<std::string, std::string>>& chunks,
                                       bool drop_erases, uint64_t* records) {
  std::vector<std::pair<std::string, std::string_view>> views;
  for (const auto& [key, data] : chunks) views.emplace_back(key, data);
  storage::ChunkWriter w;
  TM_RETURN_IF_ERROR(merge_state_records(views, !drop_erases, [&](std::string_view k, std::optional<std::string_view> v) {
    return put_state_record(w, k, v);
  }));
  *records = w.record_count();
  return w.finish();
}

Result<std::string> merge_input_chunks(const std::vector<std::pair<std::string, std::string>>& chunks,
                                       uint64_t* records, uint64_t* max_time) {
  // Every row event with the time of the advance record that follows it.
  struct Timed {
    engine::Update u;
    uint64_t time;
  };
  std::vector<Timed> rows;
  size_t untimed = 0;  // rows[untimed..] still wait for their advance record
  std::vector<uint64_t> times;
  std::string last_offset;
  bool finished = false;
  for (const auto& [key, data] : chunks) {
    std::vector<InputEvent> events;
    TM_RETURN_IF_ERROR(read_input_chunk(key, data, &events));
    for (auto& e : events) {
      if (e.type == kRecordInsert || e.type == kRecordDelete) {
        rows.push_back({std::move(e.update), 0});
      } else if (e.type == kRecordAdvance) {
        for (; untimed < rows.size(); ++untimed) rows[untimed].time = e.time;
        times.push_back(e.time);
        last_offset = std::move(e.offset);
      } else if (e.type == kRecordFinished) {
        finished = true;
      }
    }
  }
  if (untimed != rows.size())
    return Status::corruption("input chunk '" + chunks.back().first + "' ends with rows after its last advance record");
  // Sum the diffs per (key, row); a surviving row keeps the time of its last event, so a
  // replay (speedrun too) still sees the recorded times of what is left.
  std::stable_sort(rows.begin(), rows.end(), [](const Timed& a, const Timed& b) {
    if (a.u.key != b.u.key) return a.u.key < b.u.key;
    return (a.u.row <=> b.u.row) < 0;
  });
  std::vector<Timed> live;
  for (size_t i = 0; i < rows.size();) {
    size_t j = i;
    int64_t diff = 0;
    uint64_t t = 0;
    for (; j < rows.size() && rows[j].u.key == rows[i].u.key && rows[j].u.row == rows[i].u.row; ++j) {
      if (__builtin_add_overflow(diff, rows[j].u.diff, &diff))  // only damaged multiplicities get here
        return Status::corruption("input chunks '" + chunks.front().first + "'..'" + chunks.back().first +
                                  "': the multiplicities of one row overflow 64 bits");
      t = std::max(t, rows[j].time);
    }
    if (diff != 0) live.push_back({{rows[i].u.key, std::move(rows[i].u.row), diff}, t});
    i = j;
  }
  std::stable_sort(live.begin(), live.end(), [](const Timed& a, const Timed& b) { return a.time < b.time; });
  storage::ChunkWriter w;
  size_t next = 0;
  for (size_t ti = 0; ti < times.size(); ++ti) {
    for (; next < live.size() && live[next].time <= times[ti]; ++next)
      TM_RETURN_IF_ERROR(
          w.append(live[next].u.diff > 0 ? kRecordInsert : kRecordDelete, encode_update_payload(live[next].u)));
    // Replay seeks sources to the manifest's offset; only the last advance keeps its offset.
    TM_RETURN_IF_ERROR(w.append(kRecordAdvance,
                                encode_advance_payload(times[ti], ti + 1 == times.size() ? last_offset : "")));
  }
  *max_time = times.empty() ? 0 : times.back();
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
    active_.push_back(job.owner);
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
  // An owner stays busy until its result is collected: a new merge must see the chunk list
  // with the previous merge applied.
  for (const auto& d : out) {
    auto it = std::find(active_.begin(), active_.end(), d.owner);
    if (it != active_.end()) active_.erase(it);
  }
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
    done_.push_back({std::move(job.owner), std::move(job.replaced), std::move(r)});
    cv_.notify_all();
  }
}

}  // namespace tidemark::persistence
