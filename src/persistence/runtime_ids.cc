// Persistent ids: sources and outputs (by name or what they read/write), operator states.
#include "persistence/runtime_internal.h"

#include <algorithm>
#include <map>
#include <set>

#include <xxhash.h>

namespace tidemark::persistence {

namespace {

std::string hex128(std::string_view s) {
  XXH128_hash_t h = XXH3_128bits(s.data(), s.size());
  char buf[40];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return buf;
}

}  // namespace

void Runtime::Impl::setup_connectors(RunControl& sched) {
  // Persistent ids: the user's name, or (Persisting modes) one derived from what the
  // connector reads or writes, so it does not depend on the order the graph was built in.
  std::set<std::string> used;
  auto make_id = [&](const engine::Node& n, const std::string& describe) -> std::string {
    if (!n.name().empty()) return n.name();
    if (!policy.derives_ids) return "";
    std::string base = "auto:" + describe, id = base;
    for (int i = 2; used.count(id); ++i) id = base + "#" + std::to_string(i);
    return id;
  };
  for (size_t k = 0; k < sched.sources().size(); ++k) {
    SourceNode* s = sched.sources()[k];
    std::string id = make_id(*s, s->source().describe());
    if (id.empty()) continue;
    used.insert(id);
    PSource ps;
    ps.node = s;
    ps.index = k;
    ps.shards = sched.source_shards(k);
    ps.id = id;
    ps.state.id = id;
    ps.state.schema = s->schema().to_string();
    sources.push_back(std::move(ps));
  }
  for (SinkNode* s : sched.sinks()) {
    // UDF caching does not resume unnamed sources, so outputs are not resumed either.
    if (!policy.tracks_outputs) break;
    std::string id = make_id(*s, s->sink().describe());
    if (id.empty()) continue;
    used.insert(id);
    sinks.push_back({s, id});
  }
}

Status Runtime::Impl::setup_owners(RunControl& sched, const std::optional<Manifest>& m) {
  auto& g = sched.graph();
  // Stable operator ids: the user's name, else a hash of the kind, the signature, the inputs'
  // ids and the rank among identical siblings, so rebuilding the same program (even in another
  // order) gives the same ids, and an upstream change changes every id below it.
  if (policy.persists_operators) {
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
      for (engine::Node* inst : sched.instances(i))
        if (inst) o.instances.push_back(inst);
      o.st.id = ids[i];
      o.st.kind = n.kind();
      o.st.label = n.label();
      o.st.signature = n.signature();
      owners.push_back(std::move(o));
    }
  }
  if (policy.persists_udf_caches)
    for (const auto& e : g.extra_states()) {
      POwner o;
      o.state = e.state.get();
      o.instances = {o.state};  // shared by the workers
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

}  // namespace tidemark::persistence
