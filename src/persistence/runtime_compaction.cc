// Compaction: background merges of chunks, swapped into the next manifest.
#include "persistence/runtime_internal.h"

#include <algorithm>

namespace tidemark::persistence {

void Runtime::Impl::apply_merges(RunControl& sched) {
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
      TM_RETURN_IF_ERROR(check_chunk_object(store->describe(), c, d));
      datas.emplace_back(store->describe() + "/" + c.key, std::move(d));
    }
    uint64_t records = 0, max_time = 0;
    std::string merged;
    if (input) {
      TM_ASSIGN_OR_RETURN(merged, merge_input_chunks(datas, &records, &max_time));
    } else {
      TM_ASSIGN_OR_RETURN(merged, merge_state_chunks(datas, from_oldest, &records));
      max_time = run_chunks.back().max_time;
    }
    TM_RETURN_IF_ERROR(store->put_if_absent(key, merged));
    return make_chunk_ref(key, merged, records, max_time, level);
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

}  // namespace tidemark::persistence
