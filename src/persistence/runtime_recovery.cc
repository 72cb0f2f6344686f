// Recovery at start: storage, lock, stored state checked, operator states restored, input replayed.
#include "persistence/runtime_internal.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <thread>

namespace tidemark::persistence {

Status Runtime::Impl::before_start(RunControl& sched) {
  const PersistenceMode mode = cfg.persistence_mode;
  policy = policy_for(mode, cfg.snapshot_access);

  {
    auto m = cfg.metadata_storage.open();
    if (!m.is_ok()) return m.status().with_context("metadata storage " + cfg.metadata_storage.describe());
    meta = *m;
    auto s = cfg.snapshot_storage.open();
    if (!s.is_ok()) return s.status().with_context("snapshot storage " + cfg.snapshot_storage.describe());
    snap = *s;
  }
  // Object stores must refuse a second conditional create: the lock, the one-winner manifests
  // and never-shared chunk keys all rest on it.
  TM_RETURN_IF_ERROR(storage::check_conditional_writes(*meta));
  if (snap->describe() != meta->describe()) TM_RETURN_IF_ERROR(storage::check_conditional_writes(*snap));
  {
    if (cfg.lock_lease_ms < 1000)
      return Status::invalid_argument("lock_lease_ms = " + std::to_string(cfg.lock_lease_ms) +
                                      ": the lock lease must be at least 1000 ms");
    std::chrono::milliseconds lease(cfg.lock_lease_ms);
    std::chrono::milliseconds budget = std::max(meta->retry_budget(), snap->retry_budget());
    if (lease < 2 * budget)
      sched.log("persistence: lock lease " + std::to_string(lease.count()) + " ms is shorter than twice the "
                "storage's retry budget (" + std::to_string(budget.count()) + " ms): a commit that needs every "
                "retry can outlast the lease, and this process then stops rather than risk a second writer");
    storage::LockOptions lo;
    lo.lease_duration = lease;
    lo.log = [&sched](const std::string& m) { sched.log(m); };
    auto l = storage::acquire_storage_lock(*meta, "tidemark pid " + std::to_string(getpid()), lo);
    if (!l.is_ok()) return l.status();
    lock.emplace(std::move(l).value());
  }

  setup_connectors(sched);

  TM_ASSIGN_OR_RETURN(std::optional<Manifest> manifest, read_latest_manifest(*meta));
  if (manifest) {
    bool has_state = !manifest->sources.empty() || !manifest->operators.empty();
    TM_RETURN_IF_ERROR(check_resumable(cfg.metadata_storage.describe(), mode, manifest->mode, has_state));
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
    run = manifest->run;
    seq = manifest->seq;
    last_commit_time = manifest->committed_time;
    have_last_commit = true;
    sched.observe_time(manifest->committed_time);
  }
  // Fence before anything else: a writer first publishes its fencing commit, then collects
  // garbage, cuts outputs back, replays or loads.
  std::vector<storage::ObjectInfo> objects;
  Manifest fenced;
  if (policy.writes_snapshots) TM_RETURN_IF_ERROR(fence(sched, manifest, fenced, objects));
  TM_RETURN_IF_ERROR(setup_owners(sched, manifest));
  if (policy.writes_snapshots) TM_RETURN_IF_ERROR(collect_garbage(fenced, objects));

  // Outputs: cut back to the committed position (exactly-once), or start empty.
  for (auto& s : sinks) {
    // Replay modes re-emit everything into fresh outputs; the others continue theirs.
    const SinkState* st = manifest && policy.resumes_outputs ? manifest->find_sink(s.id) : nullptr;
    s.node->sink().set_persistent_identity(cfg.metadata_storage.describe() + "\n" + s.id);
    TM_RETURN_IF_ERROR(s.node->sink().truncate_to(st ? st->position : "0").with_context(s.node->label()));
  }

  if (policy.archives_contents)
    for (auto& ps : sources) {
      if (!io) io = std::make_unique<IoPool>(kIoPoolThreads, io_cpu_slots(sched.workers()));
      ps.archive = std::make_unique<Archive>(snap, ps.id, run, io.get());
      if (manifest)
        if (const SourceState* st = manifest->find_source(ps.id))
          for (const auto& c : st->contents) ps.archive->stored[c.hash] = c;
      for (SourceNode* s : ps.shards) s->source().set_content_archive(ps.archive.get());
    }
  if (manifest && policy.restores_states) TM_RETURN_IF_ERROR(restore_owners());
  if (!policy.restores_states)
    for (auto& o : owners) o.st.chunks.clear();  // recording from scratch
  resume = std::move(manifest);
  return {};
}

// Second phase of recovery, once outputs are open (replay modes emit while replaying).
Status Runtime::Impl::after_sinks_open(RunControl& sched) {
  const PersistenceMode mode = cfg.persistence_mode;  // for the log line
  const SnapshotAccess access = cfg.snapshot_access;
  const std::optional<Manifest>& manifest = resume;
  if (manifest) {
    for (auto& ps : sources)
      if (const SourceState* st = manifest->find_source(ps.id)) {
        ps.state.chunks = st->chunks;
        ps.state.offset = st->offset;
        ps.state.has_offset = st->has_offset;
      }
    if (policy.reads_snapshots) TM_RETURN_IF_ERROR(replay(sched, *manifest));
  }
  bool live = cfg.continue_after_replay && !policy.stops_after_replay;
  if (!live && manifest)
    for (size_t k = 0; k < sched.sources().size(); ++k) sched.finish_source(k);
  if (policy.writes_snapshots && !policy.records_inputs)
    for (auto& ps : sources) ps.state.chunks.clear();  // offsets only: the manifest keeps the offset
  if (policy.writes_snapshots)
    for (auto& ps : sources) {
      ps.writer = std::make_unique<storage::ChunkWriter>();
      // Offsets only: the rows are not recorded (a copy of every input row, dropped unread).
      if (policy.records_inputs) sched.record_source(ps.index, &ps.recorded);
    }
  if (policy.stores_states)
    for (auto& o : owners)
      for (engine::PersistentState* inst : o.instances) inst->track_state_changes();
  // Input compaction merges recorded times: only when no operator depends on arrival order.
  if (policy.compacts_inputs) {
    compact_inputs = true;
    for (size_t i = 0; i < sched.graph().size(); ++i)
      if (sched.graph().node(i).order_dependent()) {
        compact_inputs = false;
        sched.log("persistence: input snapshots are not compacted: " + sched.graph().node(i).label() +
                  " depends on the order rows arrived in (operator_persisting stores its state instead)");
        break;
      }
  }
  if (policy.writes_snapshots) merger = std::make_unique<Merger>();
  sched.log("persistence: storage " + cfg.metadata_storage.describe() + ", mode " + to_string(mode) + ", access " +
            to_string(access) + (manifest ? ", resuming after commit " + std::to_string(manifest->seq) +
                                                 " (time " + std::to_string(manifest->committed_time) + ", " +
                                                 std::to_string(stats.replayed_events) + " events replayed, " +
                                                 std::to_string(stats.restored_entries) + " state entries loaded)"
                                           : ", no earlier commit"));
  resume.reset();
  return {};
}

Status Runtime::Impl::replay(RunControl& sched, const Manifest& m) {
  // time -> per source index -> changes at that time
  std::map<Time, std::map<size_t, Batch>> by_time;
  for (size_t i = 0; i < sources.size(); ++i) {
    PSource& ps = sources[i];
    if (ps.state.has_offset)
      for (SourceNode* s : ps.shards) {  // each shard keeps its own part of the offset
        Status st = s->source().seek(ps.state.offset);
        if (!st.is_ok()) return st.with_context(ps.node->label() + ": seeking to the stored offset");
      }
    if (!policy.replays_inputs) continue;
    Batch pending;
    for (const auto& c : ps.state.chunks) {
      TM_ASSIGN_OR_RETURN(std::string data, snap->get(c.key));
      TM_RETURN_IF_ERROR(check_chunk_object(snap->describe(), c, data));
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
      for (SourceNode* s : sources[i].shards)  // each shard keeps the rows of its own files
        for (const auto& u : batch) s->source().replayed(u);
      stats.replayed_events += batch.size();
    }
  if (by_time.empty()) return {};

  const bool suppress = !policy.emits_replay;
  auto feed = [&](const std::map<size_t, Batch>& per_source) {
    for (const auto& [i, batch] : per_source) sched.feed(sources[i].index, batch);
  };
  if (policy.replay_timing == ReplayTiming::kOneTime) {
    for (const auto& [t, per_source] : by_time) feed(per_source);
    ++stats.replayed_times;
    return sched.step(sched.next_time(), false);
  }
  Time prev = 0;
  for (const auto& [t, per_source] : by_time) {
    if (policy.replay_timing == ReplayTiming::kRealtime && prev != 0 && t > prev)
      std::this_thread::sleep_for(std::chrono::milliseconds(t - prev));  // original pacing
    prev = t;
    feed(per_source);
    ++stats.replayed_times;
    // Persisting: state is rebuilt at the recorded times, outputs (already delivered) are not.
    TM_RETURN_IF_ERROR(sched.step(suppress ? t : sched.next_time(), suppress));
  }
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
  std::vector<const ChunkRef*> refs;
  for (size_t i = 0; i < owners.size(); ++i)
    for (const auto& c : owners[i].st.chunks) {
      fetches.push_back({i, c.key});
      refs.push_back(&c);
    }
  parallel_for(fetches.size(), kIoParallelism, [&](size_t i) { fetches[i].data = snap->get(fetches[i].key); });
  size_t f = 0;
  for (size_t i = 0; i < owners.size(); ++i) {
    POwner& o = owners[i];
    if (o.st.chunks.empty()) continue;
    // Every chunk checked, then the chunks merged by key straight into the owner (no map of
    // the whole state).
    std::vector<std::pair<std::string, std::string_view>> chunks;
    size_t first = f;
    for (; f < fetches.size() && fetches[f].owner == i; ++f) {
      Result<std::string>& data = fetches[f].data;
      if (!data.is_ok()) return data.status().with_context("loading the state of " + o.st.label);
      Status checked = check_chunk_object(snap->describe(), *refs[f], *data);
      if (!checked.is_ok()) return checked.with_context("loading the state of " + o.st.label);
      chunks.emplace_back(snap->describe() + "/" + fetches[f].key, *data);
    }
    // A hint bounded by the chunks' sizes, so a damaged manifest's record count cannot make an
    // owner reserve far more than is stored (an underestimate only means growing as before).
    uint64_t entries = 0, stored = 0, bytes = 0;
    for (const auto& c : o.st.chunks) {
      stored += c.records;
      bytes += c.bytes;
    }
    const size_t n = o.instances.size();
    for (engine::PersistentState* inst : o.instances) inst->expect_state_entries(std::min(stored, bytes / 2) / n + 1);
    bool owner_failed = false;
    // Large states decode on a second thread while the owner restores (kPipelineRestoreBytes).
    auto merge = bytes >= kPipelineRestoreBytes ? merge_state_records_pipelined : merge_state_records;
    Status merged = merge(chunks, false, [&](std::string_view k, std::optional<std::string_view> v) -> Status {
      ++entries;
      // Several workers: the instance the entry's routing key picks for this worker count (the
      // stored state may come from any count).
      Status st = n == 1 ? o.state->restore_state_entry(k, *v) : engine::restore_instance_entry(*o.node, o.instances, k, *v);
      owner_failed = !st.is_ok();
      return st;
    });
    if (!merged.is_ok())
      return merged.with_context(owner_failed ? "restoring " + o.st.label : "loading the state of " + o.st.label);
    for (size_t j = first; j < f; ++j) fetches[j].data = Status::internal("consumed");  // free the chunks' bytes
    for (engine::PersistentState* inst : o.instances) {
      Status st = inst->finish_state_restore();
      if (!st.is_ok()) return st.with_context("restoring " + o.st.label);
    }
    stats.restored_entries += entries;
  }
  return {};
}

}  // namespace tidemark::persistence
