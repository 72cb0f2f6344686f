#include "persistence/runtime.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <atomic>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include <xxhash.h>

#include "persistence/manifest.h"
#include "persistence/state_store.h"
#include "storage/chunk_format.h"
#include "storage/lock.h"

namespace tidemark::persistence {

using engine::Batch;
using engine::Scheduler;
using engine::SinkNode;
using engine::SourceNode;
using engine::Time;

namespace {

bool is_replay_mode(PersistenceMode m) {
  return m == PersistenceMode::kBatch || m == PersistenceMode::kSpeedrunReplay ||
         m == PersistenceMode::kRealtimeReplay;
}

// Which kind of state a storage holds, by the mode that wrote it: replaying it in a mode of
// another class would silently compute something else.
enum class StateClass { kRows, kOperators, kOffsets };
StateClass class_of(PersistenceMode m) {
  if (m == PersistenceMode::kOperatorPersisting) return StateClass::kOperators;
  if (m == PersistenceMode::kUdfCaching) return StateClass::kOffsets;
  return StateClass::kRows;
}
StateClass class_of(const std::string& mode) {
  if (mode == "operator_persisting") return StateClass::kOperators;
  if (mode == "udf_caching") return StateClass::kOffsets;
  return StateClass::kRows;
}
const char* class_name(StateClass c) {
  switch (c) {
    case StateClass::kRows: return "recorded input rows";
    case StateClass::kOperators: return "operator states";
    case StateClass::kOffsets: return "input offsets only";
  }
  return "";
}

// Runs of this many chunks of one level are merged into one chunk of the next level.
constexpr size_t kMergeFanIn = 4;

std::string hex128(std::string_view s) {
  XXH128_hash_t h = XXH3_128bits(s.data(), s.size());
  char buf[40];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return buf;
}

struct PSource;

// Runs fn(0..n-1) on at most `width` threads (the calling one included); object-store
// requests have high latency, so a commit's or a restore's objects go in parallel, but a
// commit with thousands of objects must not start thousands of threads.
void parallel_for(size_t n, size_t width, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < n;) fn(i);
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < std::min(n, width); ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
}
constexpr size_t kIoParallelism = 16;

// ContentArchive over the snapshot storage: stashed contents wait for the next commit.
class Archive final : public engine::ContentArchive {
 public:
  Archive(storage::ObjectStore* store, std::string source_id) : store_(store), id_(std::move(source_id)) {}
  void stash(uint64_t hash, std::string content) override {
    if (stored.count(hash)) return;
    pending.emplace(hash, std::move(content));
  }
  Result<std::string> fetch(uint64_t hash) override {
    auto it = pending.find(hash);
    if (it != pending.end()) return it->second;
    std::string key = content_key(id_, hash);
    auto data = store_->get(key);
    if (!data.is_ok()) return data.status().with_context("archived content of source '" + id_ + "'");
    return decode_content(store_->describe() + "/" + key, *data);
  }
  std::map<uint64_t, std::string> pending;  // stashed, not yet uploaded
  std::set<uint64_t> stored;                 // known to be in the storage

 private:
  storage::ObjectStore* store_;
  std::string id_;
};

struct PSource {
  SourceNode* node = nullptr;
  std::string id;
  SourceState state;                 // chunks and offset as of the last commit
  std::unique_ptr<storage::ChunkWriter> writer;  // events since the last commit
  uint64_t pending_max_time = 0;
  Batch recorded;                    // filled by the source node during a step
  std::unique_ptr<Archive> archive;  // operator persisting
};

// A persistent state: an operator's (operator persisting) or a UDF cache's.
struct POwner {
  engine::PersistentState* state = nullptr;
  engine::Node* node = nullptr;  // nullptr for states that are not operators
  OperatorState st;              // chunks as of the last commit
  engine::StateChanges changes;  // since the last commit
};

struct PSink {
  SinkNode* node = nullptr;
  std::string id;
};

}  // namespace

struct Runtime::Impl {
  Config cfg;
  Stats stats;
  std::shared_ptr<storage::ObjectStore> meta, snap;
  std::optional<storage::StorageLock> lock;
  std::vector<PSource> sources;
  std::vector<PSink> sinks;
  uint64_t run = 1;
  uint64_t seq = 0;
  uint64_t chunk_seq = 0;
  Time last_commit_time = 0;
  bool have_last_commit = false;
  bool writes = false;        // this run commits
  bool record_rows = false;   // chunks hold rows (not only offsets)
  bool dirty = false;         // something happened since the last commit
  bool source_rows = true;    // the mode records/replays source rows (not offsets only)
  bool compact_inputs = false;
  bool final_commit = false;
  std::vector<POwner> owners;
  std::unique_ptr<Merger> merger;
  std::vector<std::string> superseded;  // merged chunks to delete after the next commit

  Status before_start(Scheduler& sched);
  Status after_time(Scheduler& sched, Time t);
  Status at_end(Scheduler& sched, bool stopped);
  Status commit(Scheduler& sched, Time t);
  Status replay(Scheduler& sched, const Manifest& m);
  Status collect_garbage(const std::optional<Manifest>& m);
  Status setup_owners(Scheduler& sched, const std::optional<Manifest>& m);
  Status restore_owners();
  Status collect_contents();
  void apply_merges(Scheduler& sched);
  void schedule_merges();
  Merger::Job merge_job(const std::string& owner, const std::vector<ChunkRef>& chunks, size_t first, size_t last,
                        bool input);
};

Runtime::Runtime(Config config) : impl_(std::make_unique<Impl>()) { impl_->cfg = std::move(config); }
Runtime::~Runtime() = default;
const Runtime::Stats& Runtime::stats() const { return impl_->stats; }

engine::RunHooks Runtime::hooks() {
  engine::RunHooks h;
  Impl* p = impl_.get();
  h.before_start = [p](Scheduler& s) { return p->before_start(s); };
  h.after_time = [p](Scheduler& s, Time t) { return p->after_time(s, t); };
  h.at_end = [p](Scheduler& s, bool stopped) { return p->at_end(s, stopped); };
  return h;
}

Status Runtime::Impl::before_start(Scheduler& sched) {
  const PersistenceMode mode = cfg.persistence_mode;
  const SnapshotAccess access = cfg.snapshot_access;
  source_rows = class_of(mode) == StateClass::kRows;

  {
    auto m = cfg.metadata_storage.open();
    if (!m.is_ok()) return m.status().with_context("metadata storage " + cfg.metadata_storage.describe());
    meta = *m;
    auto s = cfg.snapshot_storage.open();
    if (!s.is_ok()) return s.status().with_context("snapshot storage " + cfg.snapshot_storage.describe());
    snap = *s;
  }
  {
    auto l = storage::acquire_storage_lock(*meta, "tidemark pid " + std::to_string(getpid()));
    if (!l.is_ok()) return l.status();
    lock.emplace(std::move(l).value());
  }

  // Persistent ids: the user's name, or (Persisting modes) one derived from what the
  // connector reads or writes, so it does not depend on the order the graph was built in.
  std::set<std::string> used;
  auto make_id = [&](const engine::Node& n, const std::string& describe) -> std::string {
    if (!n.name().empty()) return n.name();
    if (mode == PersistenceMode::kSelectivePersisting || mode == PersistenceMode::kUdfCaching) return "";
    std::string base = "auto:" + describe, id = base;
    for (int i = 2; used.count(id); ++i) id = base + "#" + std::to_string(i);
    return id;
  };
  for (SourceNode* s : sched.sources()) {
    std::string id = make_id(*s, s->source().describe());
    if (id.empty()) continue;
    used.insert(id);
    PSource ps;
    ps.node = s;
    ps.id = id;
    ps.state.id = id;
    ps.state.schema = s->schema().to_string();
    sources.push_back(std::move(ps));
  }
  for (SinkNode* s : sched.sinks()) {
    // UDF caching does not resume unnamed sources, so outputs are not resumed either.
    if (mode == PersistenceMode::kUdfCaching) break;
    std::string id = make_id(*s, s->sink().describe());
    if (id.empty()) continue;
    used.insert(id);
    sinks.push_back({s, id});
  }

  TM_ASSIGN_OR_RETURN(std::optional<Manifest> manifest, read_latest_manifest(*meta));
  if (manifest) {
    StateClass stored = class_of(manifest->mode), wanted = class_of(mode);
    bool has_state = !manifest->sources.empty() || !manifest->operators.empty();
    if (has_state && stored != wanted)
      return Status::failed_precondition(
          "persistent storage " + cfg.metadata_storage.describe() + " was written in mode '" + manifest->mode +
          "' (it holds " + class_name(stored) + "), which mode '" + to_string(mode) + "' cannot resume from (it needs " +
          class_name(wanted) + "); use the original mode or a new storage location");
    for (const auto& st : manifest->sources) {
      auto it = std::find_if(sources.begin(), sources.end(), [&](const PSource& p) { return p.id == st.id; });
      if (it == sources.end())
        return Status::failed_precondition(
            "persistent storage " + cfg.metadata_storage.describe() + " holds state of input source '" + st.id +
            "', which this program does not have (renamed or removed?); restore it or use a new storage location");
      if (!st.schema.empty() && st.schema != it->state.schema)
        return Status::failed_precondition("input source '" + st.id + "' changed its schema: stored (" + st.schema +
                                           "), program (" + it->state.schema +
                                           "); use a new storage location to start over");
    }
    run = manifest->run + 1;
    seq = manifest->seq;
    last_commit_time = manifest->committed_time;
    have_last_commit = true;
    sched.observe_time(manifest->committed_time);
  }
  TM_RETURN_IF_ERROR(setup_owners(sched, manifest));
  TM_RETURN_IF_ERROR(collect_garbage(manifest));

  // Outputs: cut back to the committed position (exactly-once), or start empty.
  for (auto& s : sinks) {
    const SinkState* st = manifest ? manifest->find_sink(s.id) : nullptr;
    TM_RETURN_IF_ERROR(s.node->sink().truncate_to(st ? st->position : "0").with_context(s.node->label()));
  }

  writes = access == SnapshotAccess::kFull || access == SnapshotAccess::kRecord ||
           access == SnapshotAccess::kOffsetsOnly;
  record_rows = source_rows && (access == SnapshotAccess::kFull || access == SnapshotAccess::kRecord);
  if (mode == PersistenceMode::kOperatorPersisting)
    for (auto& ps : sources) {
      ps.archive = std::make_unique<Archive>(snap.get(), ps.id);
      ps.node->source().set_content_archive(ps.archive.get());
    }
  if (manifest && access != SnapshotAccess::kRecord) TM_RETURN_IF_ERROR(restore_owners());
  if (access == SnapshotAccess::kRecord)
    for (auto& o : owners) o.st.chunks.clear();  // recording from scratch
  if (manifest) {
    for (auto& ps : sources)
      if (const SourceState* st = manifest->find_source(ps.id)) {
        ps.state.chunks = st->chunks;
        ps.state.offset = st->offset;
        ps.state.has_offset = st->has_offset;
      }
    if (access != SnapshotAccess::kRecord) TM_RETURN_IF_ERROR(replay(sched, *manifest));
  }
  bool live = cfg.continue_after_replay && access != SnapshotAccess::kOfflineReplay;
  if (!live && manifest)
    for (SourceNode* s : sched.sources()) s->finished = true;
  if (writes && mode == PersistenceMode::kOperatorPersisting) TM_RETURN_IF_ERROR(collect_contents());
  if (writes && !record_rows)
    for (auto& ps : sources) ps.state.chunks.clear();  // offsets only: the manifest keeps the offset
  if (writes)
    for (auto& ps : sources) {
      ps.writer = std::make_unique<storage::ChunkWriter>();
      ps.node->record = &ps.recorded;
    }
  if (writes)
    for (auto& o : owners) o.state->track_state_changes();
  // Input compaction merges recorded times: only when no operator depends on arrival order.
  if (writes && record_rows && mode == PersistenceMode::kPersisting) {
    compact_inputs = true;
    for (size_t i = 0; i < sched.graph().size(); ++i)
      if (sched.graph().node(i).order_dependent()) {
        compact_inputs = false;
        sched.log("persistence: input snapshots are not compacted: " + sched.graph().node(i).label() +
                  " depends on the order rows arrived in (operator_persisting stores its state instead)");
        break;
      }
  }
  if (writes) merger = std::make_unique<Merger>();
  sched.log("persistence: storage " + cfg.metadata_storage.describe() + ", mode " + to_string(mode) + ", access " +
            to_string(access) + (manifest ? ", resuming after commit " + std::to_string(manifest->seq) +
                                                 " (time " + std::to_string(manifest->committed_time) + ", " +
                                                 std::to_string(stats.replayed_events) + " events replayed, " +
                                                 std::to_string(stats.restored_entries) + " state entries loaded)"
                                           : ", no earlier commit"));
  return {};
}

Status Runtime::Impl::collect_garbage(const std::optional<Manifest>& m) {
  std::set<std::string> live;
  if (m) {
    for (const auto& s : m->sources)
      for (const auto& c : s.chunks) live.insert(c.key);
    for (const auto& o : m->operators)
      for (const auto& c : o.chunks) live.insert(c.key);
  }
  for (const char* prefix : {kStreamsPrefix, kOperatorsPrefix}) {
    TM_ASSIGN_OR_RETURN(auto objects, snap->list(prefix));
    for (const auto& o : objects)
      if (!live.count(o.key)) {
        TM_RETURN_IF_ERROR(snap->remove(o.key));
        ++stats.objects_collected;
      }
  }
  TM_ASSIGN_OR_RETURN(auto manifests, meta->list(kManifestPrefix));
  for (size_t i = 0; i + 1 < manifests.size(); ++i) {
    TM_RETURN_IF_ERROR(meta->remove(manifests[i].key));
    ++stats.objects_collected;
  }
  return {};
}

Status Runtime::Impl::replay(Scheduler& sched, const Manifest& m) {
  const PersistenceMode mode = cfg.persistence_mode;
  const bool rows = source_rows && cfg.snapshot_access != SnapshotAccess::kOffsetsOnly;
  // time -> per source index -> changes at that time
  std::map<Time, std::map<size_t, Batch>> by_time;
  for (size_t i = 0; i < sources.size(); ++i) {
    PSource& ps = sources[i];
    if (ps.state.has_offset) {
      Status st = ps.node->source().seek(ps.state.offset);
      if (!st.is_ok()) return st.with_context(ps.node->label() + ": seeking to the stored offset");
    }
    if (!rows) continue;
    Batch pending;
    for (const auto& c : ps.state.chunks) {
      TM_ASSIGN_OR_RETURN(std::string data, snap->get(c.key));
      std::vector<InputEvent> events;
      TM_RETURN_IF_ERROR(read_input_chunk(snap->describe() + "/" + c.key, data, &events));
      for (auto& e : events) {
        if (e.type == kRecordInsert || e.type == kRecordDelete) {
          pending.push_back(std::move(e.update));
        } else if (e.type == kRecordAdvance) {
          if (e.time > m.committed_time) break;  // never beyond the commit
          auto& dst = by_time[e.time][i];
          dst.insert(dst.end(), std::make_move_iterator(pending.begin()), std::make_move_iterator(pending.end()));
          pending.clear();
        }
      }
    }
  }
  // Sources learn the rows they produced before (to retract them if their input changed).
  for (auto& [t, per_source] : by_time)
    for (auto& [i, batch] : per_source) {
      for (const auto& u : batch) sources[i].node->source().replayed(u);
      stats.replayed_events += batch.size();
    }
  if (by_time.empty()) return {};

  const bool suppress = !is_replay_mode(mode);
  auto feed = [&](const std::map<size_t, Batch>& per_source) {
    for (const auto& [i, batch] : per_source) {
      Batch& p = sources[i].node->pending;
      p.insert(p.end(), batch.begin(), batch.end());
    }
  };
  if (mode == PersistenceMode::kBatch) {
    for (const auto& [t, per_source] : by_time) feed(per_source);
    ++stats.replayed_times;
    return sched.step(sched.next_time(), false);
  }
  Time prev = 0;
  for (const auto& [t, per_source] : by_time) {
    if (mode == PersistenceMode::kRealtimeReplay && prev != 0 && t > prev)
      std::this_thread::sleep_for(std::chrono::milliseconds(t - prev));  // original pacing
    prev = t;
    feed(per_source);
    ++stats.replayed_times;
    // Persisting: state is rebuilt at the recorded times, outputs (already delivered) are not.
    TM_RETURN_IF_ERROR(sched.step(suppress ? t : sched.next_time(), suppress));
  }
  return {};
}

Status Runtime::Impl::after_time(Scheduler& sched, Time t) {
  if (!writes) return {};
  for (auto& ps : sources) {
    if (ps.recorded.empty()) continue;
    // Offsets only (offsets_only access, operator persisting, UDF caching): the manifest's
    // offset is all a restart needs; no stream chunk is written.
    if (!record_rows) {
      ps.recorded.clear();
      continue;
    }
    for (const auto& u : ps.recorded)
        TM_RETURN_IF_ERROR(ps.writer->append(u.diff > 0 ? kRecordInsert : kRecordDelete, encode_update_payload(u)));
    TM_RETURN_IF_ERROR(ps.writer->append(kRecordAdvance, encode_advance_payload(t, ps.node->source().offset())));
    ps.pending_max_time = t;
    ps.recorded.clear();
  }
  for (auto& o : owners) o.state->take_state_changes(o.changes);
  dirty = true;
  if (!have_last_commit || cfg.snapshot_interval_ms == 0 || t >= last_commit_time + cfg.snapshot_interval_ms)
    return commit(sched, t);
  return {};
}

Status Runtime::Impl::setup_owners(Scheduler& sched, const std::optional<Manifest>& m) {
  const PersistenceMode mode = cfg.persistence_mode;
  auto& g = sched.graph();
  // Stable operator ids: the user's name, else a hash of the kind, the signature, the inputs'
  // ids and the rank among identical siblings, so rebuilding the same program (even in another
  // order) gives the same ids, and an upstream change changes every id below it.
  if (mode == PersistenceMode::kOperatorPersisting) {
    std::vector<std::string> ids(g.size());
    std::map<std::string, int> seen;
    std::map<const engine::Node*, std::string> source_ids;
    for (const auto& ps : sources) source_ids[ps.node] = ps.id;
    for (size_t i = 0; i < g.size(); ++i) {
      engine::Node& n = g.node(i);
      if (auto* src = dynamic_cast<SourceNode*>(&n)) {
        auto it = source_ids.find(src);
        ids[i] = it != source_ids.end() ? it->second : "auto:" + src->source().describe();
        continue;
      }
      if (!n.name().empty()) {
        ids[i] = n.name();
      } else {
        std::string base = n.kind() + '\x1f' + n.signature();
        for (size_t in : n.inputs()) base += '\x1f' + ids[in];
        int rank = seen[base]++;
        ids[i] = "op:" + hex128(base + '\x1f' + std::to_string(rank));
      }
      if (!n.stateful() || dynamic_cast<SinkNode*>(&n)) continue;
      POwner o;
      o.state = &n;
      o.node = &n;
      o.st.id = ids[i];
      o.st.kind = n.kind();
      o.st.label = n.label();
      o.st.signature = n.signature();
      owners.push_back(std::move(o));
    }
  }
  if (!is_replay_mode(mode))
    for (const auto& e : g.extra_states()) {
      POwner o;
      o.state = e.state.get();
      o.st.id = e.id;
      o.st.kind = e.kind;
      o.st.label = e.kind + " '" + e.id + "'";
      o.st.signature = e.kind;
      owners.push_back(std::move(o));
    }
  if (!m) return {};
  const std::string where = "persistent storage " + cfg.metadata_storage.describe();
  for (const auto& stored : m->operators) {
    auto it = std::find_if(owners.begin(), owners.end(), [&](const POwner& o) { return o.st.id == stored.id; });
    if (it == owners.end()) {
      if (stored.kind == "udf_cache") continue;  // a cache the program no longer uses: dropped
      return Status::failed_precondition(
          where + " holds the state of operator " + stored.label + " (" + stored.signature +
          "), which this program does not have: the graph changed. Operator state cannot be mixed with a "
          "different graph; use the original program or a new storage location");
    }
    if (it->st.signature != stored.signature)
      return Status::failed_precondition(where + ": operator " + it->st.label + " changed: stored (" +
                                         stored.signature + "), program (" + it->st.signature +
                                         "); use the original program or a new storage location");
    it->st.chunks = stored.chunks;
  }
  if (class_of(m->mode) == StateClass::kOperators)
    for (const auto& o : owners)
      if (o.node && !m->find_operator(o.st.id))
        return Status::failed_precondition(where + ": operator " + o.st.label + " (" + o.st.signature +
                                           ") has no stored state: the graph changed since commit " +
                                           std::to_string(m->seq) +
                                           "; use the original program or a new storage location");
  return {};
}

Status Runtime::Impl::restore_owners() {
  // Fetch every chunk in parallel, then apply each owner's chunks oldest first.
  struct Fetch {
    size_t owner;
    std::string key;
    Result<std::string> data = Status::internal("not fetched");
  };
  std::vector<Fetch> fetches;
  for (size_t i = 0; i < owners.size(); ++i)
    for (const auto& c : owners[i].st.chunks) fetches.push_back({i, c.key});
  parallel_for(fetches.size(), kIoParallelism, [&](size_t i) { fetches[i].data = snap->get(fetches[i].key); });
  size_t f = 0;
  for (size_t i = 0; i < owners.size(); ++i) {
    POwner& o = owners[i];
    if (o.st.chunks.empty()) continue;
    StateMap map;
    for (; f < fetches.size() && fetches[f].owner == i; ++f) {
      Result<std::string>& data = fetches[f].data;
      if (!data.is_ok()) return data.status().with_context("loading the state of " + o.st.label);
      Status applied = apply_state_chunk(snap->describe() + "/" + fetches[f].key, *data, &map);
      if (!applied.is_ok()) return applied.with_context("loading the state of " + o.st.label);
      data = Status::internal("consumed");  // free the chunk's bytes
    }
    for (const auto& [k, v] : map) {
      Status st = o.state->restore_state_entry(k, v);
      if (!st.is_ok()) return st.with_context("restoring " + o.st.label);
    }
    Status st = o.state->finish_state_restore();
    if (!st.is_ok()) return st.with_context("restoring " + o.st.label);
    stats.restored_entries += map.size();
  }
  return {};
}

Status Runtime::Impl::collect_contents() {
  for (auto& ps : sources) {
    if (!ps.archive) continue;
    std::vector<uint64_t> live;
    ps.node->source().live_contents(live);
    std::set<std::string> live_keys;
    for (uint64_t h : live) live_keys.insert(content_key(ps.id, h));
    TM_ASSIGN_OR_RETURN(auto objects, snap->list(content_prefix(ps.id)));
    for (const auto& o : objects) {
      if (live_keys.count(o.key)) {
        ps.archive->stored.insert(std::stoull(o.key.substr(o.key.size() - 16), nullptr, 16));
        continue;
      }
      TM_RETURN_IF_ERROR(snap->remove(o.key));
      ++stats.objects_collected;
    }
  }
  return {};
}

void Runtime::Impl::apply_merges(Scheduler& sched) {
  for (auto& d : merger->poll()) {
    if (!d.result.is_ok()) {
      sched.log("persistence: a background compaction failed (will retry): " + d.result.status().to_string());
      continue;
    }
    std::vector<ChunkRef>* chunks = nullptr;
    for (auto& o : owners)
      if (o.st.id == d.owner) chunks = &o.st.chunks;
    for (auto& ps : sources)
      if (ps.id == d.owner) chunks = &ps.state.chunks;
    if (!chunks) continue;
    auto it = std::search(chunks->begin(), chunks->end(), d.replaced.begin(), d.replaced.end(),
                          [](const ChunkRef& c, const std::string& k) { return c.key == k; });
    if (it == chunks->end()) continue;  // cannot happen: one merge per owner at a time
    it = chunks->erase(it, it + static_cast<std::ptrdiff_t>(d.replaced.size()));
    chunks->insert(it, *d.result);
    superseded.insert(superseded.end(), d.replaced.begin(), d.replaced.end());
    ++stats.merges;
  }
}

Merger::Job Runtime::Impl::merge_job(const std::string& owner, const std::vector<ChunkRef>& chunks, size_t first,
                                     size_t last, bool input) {
  std::vector<ChunkRef> run_chunks(chunks.begin() + static_cast<std::ptrdiff_t>(first),
                                   chunks.begin() + static_cast<std::ptrdiff_t>(last));
  bool from_oldest = first == 0;
  uint32_t level = 0;
  for (const auto& c : run_chunks) level = std::max(level, c.level + 1);
  std::string key = input ? chunk_key(owner, run, ++chunk_seq) : state_chunk_key(owner, run, ++chunk_seq);
  Merger::Job job;
  job.owner = owner;
  for (const auto& c : run_chunks) job.replaced.push_back(c.key);
  std::shared_ptr<storage::ObjectStore> store = snap;
  job.run = [store, run_chunks, from_oldest, level, key, input]() -> Result<ChunkRef> {
    std::vector<std::pair<std::string, std::string>> datas;
    for (const auto& c : run_chunks) {
      TM_ASSIGN_OR_RETURN(std::string d, store->get(c.key));
      datas.emplace_back(store->describe() + "/" + c.key, std::move(d));
    }
    ChunkRef ref;
    ref.key = key;
    ref.level = level;
    std::string merged;
    if (input) {
      TM_ASSIGN_OR_RETURN(merged, merge_input_chunks(datas, &ref.records, &ref.max_time));
    } else {
      TM_ASSIGN_OR_RETURN(merged, merge_state_chunks(datas, from_oldest, &ref.records));
      ref.max_time = run_chunks.back().max_time;
    }
    ref.bytes = merged.size();
    TM_RETURN_IF_ERROR(store->put(key, merged));
    return ref;
  };
  return job;
}

void Runtime::Impl::schedule_merges() {
  auto plan = [&](const std::string& owner, const std::vector<ChunkRef>& chunks, bool input) {
    if (merger->busy(owner)) return;
    auto range = pick_merge(chunks, kMergeFanIn);
    if (range) merger->submit(merge_job(owner, chunks, range->first, range->second, input));
  };
  for (const auto& o : owners) plan(o.st.id, o.st.chunks, false);
  if (compact_inputs)
    for (const auto& ps : sources) plan(ps.id, ps.state.chunks, true);
}

Status Runtime::Impl::commit(Scheduler& sched, Time t) {
  apply_merges(sched);
  // 1. New immutable objects: each source's events since the last commit, each state's
  //    consolidated changes, archived contents. Uploaded in parallel (object stores have high
  //    per-request latency).
  struct Pending {
    std::string key;
    std::string data;
    uint64_t records = 0;
    PSource* source = nullptr;
    POwner* owner = nullptr;
    uint64_t content_hash = 0;
  };
  std::vector<Pending> pending;
  for (auto& ps : sources) {
    if (ps.writer->record_count() == 0) continue;
    uint64_t n = ps.writer->record_count();
    Pending p;
    p.key = chunk_key(ps.id, run, ++chunk_seq);
    p.records = n;
    p.data = ps.writer->finish();
    p.source = &ps;
    pending.push_back(std::move(p));
  }
  for (auto& o : owners) {
    if (o.changes.empty()) continue;
    Pending p;
    p.key = state_chunk_key(o.st.id, run, ++chunk_seq);
    p.data = encode_state_chunk(std::move(o.changes), &p.records);
    o.changes.clear();
    p.owner = &o;
    pending.push_back(std::move(p));
  }
  for (auto& ps : sources) {
    if (!ps.archive) continue;
    for (auto& [hash, content] : ps.archive->pending) {
      Pending p;
      p.key = content_key(ps.id, hash);
      p.data = encode_content(content);
      p.source = &ps;
      p.content_hash = hash;
      pending.push_back(std::move(p));
    }
  }
  std::vector<Status> results(pending.size());
  parallel_for(pending.size(), kIoParallelism, [&](size_t i) { results[i] = snap->put(pending[i].key, pending[i].data); });
  for (size_t i = 0; i < pending.size(); ++i) {
    Pending& p = pending[i];
    std::string what = p.owner ? p.owner->st.label : p.source->node->label();
    if (!results[i].is_ok()) return results[i].with_context("committing the state of " + what);
    stats.bytes_written += p.data.size();
    if (p.owner) {
      p.owner->st.chunks.push_back({p.key, p.records, p.data.size(), t});
      ++stats.state_chunks_written;
    } else if (p.content_hash || p.key.starts_with(kContentsPrefix)) {
      p.source->archive->stored.insert(p.content_hash);
      p.source->archive->pending.erase(p.content_hash);
      ++stats.contents_written;
    } else {
      p.source->state.chunks.push_back({p.key, p.records, p.data.size(), p.source->pending_max_time});
      ++stats.chunks_written;
    }
  }
  Manifest m;
  m.seq = seq + 1;
  m.run = run;
  m.committed_time = t;
  m.mode = to_string(cfg.persistence_mode);
  for (auto& ps : sources) {
    ps.state.offset = ps.node->source().offset();
    ps.state.has_offset = true;
    m.sources.push_back(ps.state);
  }
  for (auto& o : owners) m.operators.push_back(o.st);
  for (auto& s : sinks) {
    Status st = s.node->sink().flush();
    if (!st.is_ok()) return st.with_context(s.node->label());
    m.sinks.push_back({s.id, s.node->sink().position()});
  }
  std::string data = encode_manifest(m);
  Status st = meta->put_if_absent(manifest_key(m.seq), data);
  if (st.code() == StatusCode::kAlreadyExists)
    return Status::failed_precondition("persistent storage " + meta->describe() + ": commit " +
                                       std::to_string(m.seq) + " was written by another process; stopping");
  if (!st.is_ok()) return st.with_context("writing manifest " + std::to_string(m.seq));
  stats.bytes_written += data.size();
  if (m.seq >= 2) {
    Status r = meta->remove(manifest_key(m.seq - 1));
    if (!r.is_ok()) sched.log("persistence: could not delete an old manifest: " + r.to_string());
  }
  // Chunks merged away are referenced by no manifest any more.
  for (const auto& k : superseded) {
    Status r = snap->remove(k);
    if (!r.is_ok()) sched.log("persistence: could not delete a merged chunk (collected at the next start): " + r.to_string());
  }
  superseded.clear();
  seq = m.seq;
  last_commit_time = t;
  have_last_commit = true;
  dirty = false;
  ++stats.commits;
  if (!final_commit) schedule_merges();
  return lock->renew();
}

Status Runtime::Impl::at_end(Scheduler& sched, bool stopped) {
  Status st;
  final_commit = true;  // no new merge whose result no manifest would reference
  // A source may have advanced without emitting (a file re-read with unchanged content now
  // known not to be "racy"): commit its offset, or every later start re-reads the file.
  if (writes && have_last_commit)
    for (auto& ps : sources)
      if (ps.state.has_offset && ps.node->source().offset() != ps.state.offset) dirty = true;
  const Time t_end = std::max(sched.last_time(), last_commit_time);
  if (writes && dirty) st = commit(sched, t_end);
  if (writes && merger && st.is_ok()) {
    // A clean stop finishes compacting operator states (off the commit path: the run is
    // over), so the next start loads one chunk per operator; merges that finished since the
    // last commit are published too.
    merger->drain();
    apply_merges(sched);
    bool changed = !superseded.empty();
    for (auto& o : owners) {
      if (o.st.chunks.size() < 2) continue;
      Merger::Job job = merge_job(o.st.id, o.st.chunks, 0, o.st.chunks.size(), false);
      Result<ChunkRef> r = job.run();
      if (!r.is_ok()) {
        sched.log("persistence: final compaction of " + o.st.label + " failed: " + r.status().to_string());
        continue;
      }
      o.st.chunks.assign(1, *r);
      superseded.insert(superseded.end(), job.replaced.begin(), job.replaced.end());
      ++stats.merges;
      changed = true;
    }
    if (changed) st = commit(sched, t_end);  // manifest only: publishes the merged chunks
  }
  merger.reset();  // waits for a running merge; its output, not yet referenced, is collected later
  if (lock) {
    Status r = lock->release();
    if (st.is_ok() && !r.is_ok()) st = r;
    lock.reset();
  }
  return st;
}

}  // namespace tidemark::persistence
