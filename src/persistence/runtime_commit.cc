// Recording after every time, commits (chunks, archived contents, outputs, manifest), the end of a run.
#include "persistence/runtime_internal.h"

#include <algorithm>

namespace tidemark::persistence {

Result<std::string> PSource::offset() const {
  if (shards.size() == 1) return shards[0]->source().offset();
  std::vector<std::string> parts;
  parts.reserve(shards.size());
  for (SourceNode* s : shards) parts.push_back(s->source().offset());
  return node->source().merge_shard_offsets(parts);
}

Status Runtime::Impl::after_time(RunControl& sched, Time t) {
  if (!policy.writes_snapshots) return {};
  for (auto& ps : sources) {
    // Offsets only (offsets_only access, operator persisting, UDF caching): the manifest's
    // offset is all a restart needs; no row is recorded and no stream chunk is written.
    if (!policy.records_inputs) continue;
    bool any = false;
    for (const Batch& b : ps.recorded) any = any || !b.empty();
    if (!any) continue;
    // The shards' rows of a time are one time's rows of the source (any split of them replays
    // the same: every stateful operator's input is exchanged by its own key).
    for (Batch& b : ps.recorded)
      for (const auto& u : b) {
        Status st = ps.writer->append(u.diff > 0 ? kRecordInsert : kRecordDelete, encode_update_payload(u));
        if (!st.is_ok()) return st.with_context("recording a row of " + ps.node->label() + " (source '" + ps.id + "')");
      }
    Result<std::string> offset = ps.offset();
    if (!offset.is_ok()) return offset.status().with_context("recording the offset of " + ps.node->label());
    Status st = ps.writer->append(kRecordAdvance, encode_advance_payload(t, *offset));
    if (!st.is_ok()) return st.with_context("recording the offset of " + ps.node->label() + " (source '" + ps.id + "')");
    ps.pending_max_time = t;
    for (Batch& b : ps.recorded) b.clear();
  }
  // One change list per operator, from all its instances.
  for (auto& o : owners) engine::take_instance_changes(o.instances, o.changes);
  dirty = true;
  if (!have_last_commit || cfg.snapshot_interval_ms == 0 || t >= last_commit_time + cfg.snapshot_interval_ms)
    return commit(sched, t);
  return {};
}

Status Runtime::Impl::commit(RunControl& sched, Time t) {
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
    Result<std::string> encoded = encode_state_chunk(std::move(o.changes), &p.records);
    o.changes.clear();
    if (!encoded.is_ok()) return encoded.status().with_context("committing the state of " + o.st.label);
    p.data = std::move(encoded).value();
    p.owner = &o;
    pending.push_back(std::move(p));
  }
  // Archived contents were uploading since they were stashed: wait for them.
  for (auto& ps : sources) {
    if (!ps.archive) continue;
    for (auto& [hash, upload] : ps.archive->uploads) {
      const Result<ChunkRef>& ref = upload.get();
      if (!ref.is_ok()) return ref.status().with_context("committing the state of " + ps.node->label());
      ps.archive->stored[hash] = {hash, ref->key, ref->bytes, ref->crc32c};
      ps.archive->pending.erase(hash);
      stats.bytes_written += ref->bytes;
      ++stats.contents_written;
    }
    ps.archive->uploads.clear();
  }
  std::vector<Status> results(pending.size());
  // Conditional creates: keys carry this writer's epoch, so an existing object with other
  // bytes means a second writer, never something to overwrite.
  parallel_for(pending.size(), kIoParallelism,
               [&](size_t i) { results[i] = snap->put_if_absent(pending[i].key, pending[i].data); });
  for (size_t i = 0; i < pending.size(); ++i) {
    Pending& p = pending[i];
    std::string what = p.owner ? p.owner->st.label : p.source->node->label();
    if (!results[i].is_ok()) return results[i].with_context("committing the state of " + what);
    stats.bytes_written += p.data.size();
    if (p.owner) {
      p.owner->st.chunks.push_back(make_chunk_ref(p.key, p.data, p.records, t));
      ++stats.state_chunks_written;
    } else {
      p.source->state.chunks.push_back(make_chunk_ref(p.key, p.data, p.records, p.source->pending_max_time));
      ++stats.chunks_written;
    }
  }
  Manifest m;
  m.seq = seq + 1;
  m.run = run;
  m.writer = lock->info().token;
  m.committed_time = t;
  m.mode = to_string(cfg.persistence_mode);
  m.workers = sched.workers();
  for (auto& ps : sources) {
    Result<std::string> offset = ps.offset();
    if (!offset.is_ok()) return offset.status().with_context("committing the offset of " + ps.node->label());
    ps.state.offset = std::move(offset).value();
    ps.state.has_offset = true;
    ps.state.contents.clear();
    if (ps.archive) {
      // The contents the offset refers to; others become garbage for the next start.
      std::vector<uint64_t> live;
      for (SourceNode* s : ps.shards) s->source().live_contents(live);
      std::sort(live.begin(), live.end());
      live.erase(std::unique(live.begin(), live.end()), live.end());
      for (uint64_t h : live)
        if (auto it = ps.archive->stored.find(h); it != ps.archive->stored.end()) ps.state.contents.push_back(it->second);
    }
    m.sources.push_back(ps.state);
  }
  for (auto& o : owners) m.operators.push_back(o.st);
  for (auto& s : sinks) {
    Status st = s.node->sink().flush();
    if (!st.is_ok()) return st.with_context(s.node->label());
    m.sinks.push_back({s.id, s.node->sink().position()});
  }
  TM_ASSIGN_OR_RETURN(std::string data, encode_manifest(m));
  // The commit point. Refused when the lease may have lapsed (another process may be taking
  // the storage over); afterwards the lease must still hold, or this process cannot know that
  // no successor had fenced it meanwhile, and it stops without deleting anything.
  TM_RETURN_IF_ERROR(check_lease().with_context("not committing " + std::to_string(m.seq)));
  Status st = meta->put_if_absent(manifest_key(m.seq), data);
  if (st.code() == StatusCode::kAlreadyExists)
    return Status::failed_precondition("persistent storage " + meta->describe() + ": commit " +
                                       std::to_string(m.seq) + " was written by another process; stopping");
  if (!st.is_ok()) return st.with_context("writing manifest " + std::to_string(m.seq));
  TM_RETURN_IF_ERROR(check_lease().with_context("after commit " + std::to_string(m.seq)));
  stats.bytes_written += data.size();
  {
    Status r = meta->remove(manifest_key(seq));
    if (!r.is_ok()) sched.log("persistence: could not delete an old manifest: " + r.to_string());
  }
  // Chunks merged away are referenced by no manifest any more.
  for (const auto& k : superseded) {
    if (!check_lease().is_ok()) break;  // collected at the next start instead
    Status r = snap->remove(k);
    if (!r.is_ok()) sched.log("persistence: could not delete a merged chunk (collected at the next start): " + r.to_string());
  }
  superseded.clear();
  seq = m.seq;
  last_commit_time = t;
  have_last_commit = true;
  dirty = false;
  ++stats.commits;
  // Outputs that publish only committed data (Kafka transactions) do so now that it is.
  for (auto& s : sinks) TM_RETURN_IF_ERROR(s.node->sink().committed().with_context(s.node->label()));
  if (!final_commit) schedule_merges();
  return {};
}

Status Runtime::Impl::at_end(RunControl& sched, bool stopped) {
  Status st;
  final_commit = true;  // no new merge whose result no manifest would reference
  // A source may have advanced without emitting (a file re-read with unchanged content now
  // known not to be "racy"): commit its offset, or every later start re-reads the file.
  if (policy.writes_snapshots && have_last_commit)
    for (auto& ps : sources) {
      Result<std::string> offset = ps.offset();
      if (ps.state.has_offset && (!offset.is_ok() || *offset != ps.state.offset)) dirty = true;
    }
  const Time t_end = std::max(sched.last_time(), last_commit_time);
  if (policy.writes_snapshots && dirty) st = commit(sched, t_end);
  if (policy.writes_snapshots && merger && st.is_ok()) {
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
