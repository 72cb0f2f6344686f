#include "persistence/runtime.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <map>
#include <set>
#include <thread>

#include "persistence/manifest.h"
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

struct PSource {
  SourceNode* node = nullptr;
  std::string id;
  SourceState state;                 // chunks and offset as of the last commit
  std::unique_ptr<storage::ChunkWriter> writer;  // events since the last commit
  uint64_t pending_max_time = 0;
  Batch recorded;                    // filled by the source node during a step
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

  Status before_start(Scheduler& sched);
  Status after_time(Scheduler& sched, Time t);
  Status at_end(Scheduler& sched, bool stopped);
  Status commit(Scheduler& sched, Time t);
  Status replay(Scheduler& sched, const Manifest& m);
  Status collect_garbage(const std::optional<Manifest>& m);
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
  if (mode == PersistenceMode::kUdfCaching || mode == PersistenceMode::kOperatorPersisting)
    return Status::not_supported("persistence mode '" + to_string(mode) +
                                 "' is not available in this build (use persisting or selective_persisting)");

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
    if (mode == PersistenceMode::kSelectivePersisting) return "";
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
    std::string id = make_id(*s, s->sink().describe());
    if (id.empty()) continue;
    used.insert(id);
    sinks.push_back({s, id});
  }

  TM_ASSIGN_OR_RETURN(std::optional<Manifest> manifest, read_latest_manifest(*meta));
  if (manifest) {
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
  TM_RETURN_IF_ERROR(collect_garbage(manifest));

  // Outputs: cut back to the committed position (exactly-once), or start empty.
  for (auto& s : sinks) {
    const SinkState* st = manifest ? manifest->find_sink(s.id) : nullptr;
    TM_RETURN_IF_ERROR(s.node->sink().truncate_to(st ? st->position : "0").with_context(s.node->label()));
  }

  writes = access == SnapshotAccess::kFull || access == SnapshotAccess::kRecord ||
           access == SnapshotAccess::kOffsetsOnly;
  record_rows = access == SnapshotAccess::kFull || access == SnapshotAccess::kRecord;
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
  if (writes)
    for (auto& ps : sources) {
      ps.writer = std::make_unique<storage::ChunkWriter>();
      ps.node->record = &ps.recorded;
    }
  sched.log("persistence: storage " + cfg.metadata_storage.describe() + ", mode " + to_string(mode) + ", access " +
            to_string(access) + (manifest ? ", resuming after commit " + std::to_string(manifest->seq) +
                                                 " (time " + std::to_string(manifest->committed_time) + ", " +
                                                 std::to_string(stats.replayed_events) + " events replayed)"
                                           : ", no earlier commit"));
  return {};
}

Status Runtime::Impl::collect_garbage(const std::optional<Manifest>& m) {
  std::set<std::string> live;
  if (m)
    for (const auto& s : m->sources)
      for (const auto& c : s.chunks) live.insert(c.key);
  TM_ASSIGN_OR_RETURN(auto objects, snap->list(kStreamsPrefix));
  for (const auto& o : objects)
    if (!live.count(o.key)) {
      TM_RETURN_IF_ERROR(snap->remove(o.key));
      ++stats.objects_collected;
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
  const bool rows = cfg.snapshot_access != SnapshotAccess::kOffsetsOnly;
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
    if (record_rows)
      for (const auto& u : ps.recorded)
        TM_RETURN_IF_ERROR(ps.writer->append(u.diff > 0 ? kRecordInsert : kRecordDelete, encode_update_payload(u)));
    TM_RETURN_IF_ERROR(ps.writer->append(kRecordAdvance, encode_advance_payload(t, ps.node->source().offset())));
    ps.pending_max_time = t;
    ps.recorded.clear();
  }
  dirty = true;
  if (!have_last_commit || cfg.snapshot_interval_ms == 0 || t >= last_commit_time + cfg.snapshot_interval_ms)
    return commit(sched, t);
  return {};
}

Status Runtime::Impl::commit(Scheduler& sched, Time t) {
  // 1. Every source's new events become one immutable chunk; the chunks of one commit are
  //    uploaded in parallel (object stores have high per-request latency).
  struct Pending {
    PSource* source;
    std::string key;
    std::string data;
    uint64_t records;
  };
  std::vector<Pending> pending;
  for (auto& ps : sources) {
    if (ps.writer->record_count() == 0) continue;
    uint64_t n = ps.writer->record_count();
    pending.push_back({&ps, chunk_key(ps.id, run, ++chunk_seq), ps.writer->finish(), n});
  }
  std::vector<std::future<Status>> uploads;
  for (size_t i = 1; i < pending.size(); ++i)
    uploads.push_back(std::async(std::launch::async, [this, &p = pending[i]] { return snap->put(p.key, p.data); }));
  Status first = pending.empty() ? Status() : snap->put(pending[0].key, pending[0].data);
  std::vector<Status> results{first};
  for (auto& f : uploads) results.push_back(f.get());
  for (size_t i = 0; i < pending.size(); ++i) {
    if (!results[i].is_ok()) return results[i].with_context("committing input of " + pending[i].source->node->label());
    PSource& ps = *pending[i].source;
    ps.state.chunks.push_back({pending[i].key, pending[i].records, pending[i].data.size(), ps.pending_max_time});
    ++stats.chunks_written;
    stats.bytes_written += pending[i].data.size();
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
  seq = m.seq;
  last_commit_time = t;
  have_last_commit = true;
  dirty = false;
  ++stats.commits;
  return lock->renew();
}

Status Runtime::Impl::at_end(Scheduler& sched, bool stopped) {
  Status st;
  if (writes && dirty) st = commit(sched, sched.last_time());
  if (lock) {
    Status r = lock->release();
    if (st.is_ok() && !r.is_ok()) st = r;
    lock.reset();
  }
  return st;
}

}  // namespace tidemark::persistence
