// Taking a storage over: the fencing commit, then garbage collection of what no commit references.
#include "persistence/runtime_internal.h"

#include <algorithm>
#include <set>

namespace tidemark::persistence {

// The fencing commit: the next manifest number (above every epoch any object key carries),
// created conditionally with this writer's lock token and the newest manifest's contents. From
// here on a writer that started earlier fails at its own next conditional create, and every
// key this writer creates carries the new epoch.
Status Runtime::Impl::fence(RunControl& sched, std::optional<Manifest>& manifest, Manifest& fenced,
                            std::vector<storage::ObjectInfo>& objects) {
  uint64_t top = manifest ? manifest->seq : 0;
  for (const char* prefix : {kStreamsPrefix, kOperatorsPrefix, kContentsPrefix}) {
    TM_ASSIGN_OR_RETURN(auto listed, snap->list(prefix));
    for (auto& o : listed) {
      top = std::max(top, epoch_of_key(o.key));
      objects.push_back(std::move(o));
    }
  }
  Manifest m = manifest ? *manifest : Manifest{};  // a fresh storage: an empty commit, no mode
  if (manifest && manifest->format_version < 3) {
    // Older storages do not list archived contents: every content object may be live until the
    // first commit lists the ones the sources still use.
    for (auto& src : m.sources) {
      std::string prefix = content_prefix(src.id);
      for (const auto& o : objects)
        if (o.key.starts_with(prefix) && o.key.size() == prefix.size() + 16)
          src.contents.push_back({std::stoull(o.key.substr(prefix.size()), nullptr, 16), o.key, o.size, 0, false});
    }
  }
  m.format_version = kManifestFormatVersion;
  m.seq = top + 1;
  m.run = m.seq;
  m.writer = lock->info().token;
  TM_ASSIGN_OR_RETURN(std::string data, encode_manifest(m));
  TM_RETURN_IF_ERROR(check_lease());
  Status st = meta->put_if_absent(manifest_key(m.seq), data);
  if (st.code() == StatusCode::kAlreadyExists)
    return Status::failed_precondition("persistent storage " + meta->describe() + ": commit " + std::to_string(m.seq) +
                                       " was written by another process while this one was taking the storage over; "
                                       "stopping");
  if (!st.is_ok()) return st.with_context("writing the fencing commit " + std::to_string(m.seq));
  TM_RETURN_IF_ERROR(check_lease());
  stats.bytes_written += data.size();
  run = m.run;
  seq = m.seq;
  sched.log("persistence: fenced the storage with commit " + std::to_string(m.seq) + " (writer epoch " +
            std::to_string(run) + ")");
  if (manifest) manifest = m;  // what is resumed is unchanged; only its number and writer are new
  fenced = std::move(m);
  return {};
}

// Deletes what no commit can reference: objects of an older writer's epoch that the newest
// manifest (this writer's fencing commit) does not list, and older manifests. Objects of this
// epoch or a newer one are never touched, whatever a listing says.
Status Runtime::Impl::collect_garbage(const Manifest& m, const std::vector<storage::ObjectInfo>& objects) {
  std::set<std::string> live;
  for (const auto& s : m.sources) {
    for (const auto& c : s.chunks) live.insert(c.key);
    for (const auto& c : s.contents) live.insert(c.key);
  }
  for (const auto& o : m.operators)
    for (const auto& c : o.chunks) live.insert(c.key);
  for (const auto& o : objects)
    if (!live.count(o.key) && epoch_of_key(o.key) < run) {
      TM_RETURN_IF_ERROR(check_lease());
      TM_RETURN_IF_ERROR(snap->remove(o.key));
      ++stats.objects_collected;
    }
  TM_ASSIGN_OR_RETURN(auto manifests, meta->list(kManifestPrefix));
  for (const auto& o : manifests)
    if (o.key < manifest_key(m.seq)) {
      TM_RETURN_IF_ERROR(check_lease());
      TM_RETURN_IF_ERROR(meta->remove(o.key));
      ++stats.objects_collected;
    }
  return {};
}

}  // namespace tidemark::persistence
