#include "engine/collection_io.h"

#include "engine/codec.h"

namespace tidemark::engine {

Status BatchesSource::poll(Batch& out, bool* finished) {
  std::vector<Batch>& all = shared_->batches;
  if (next_ < all.size()) {
    Batch& b = all[next_];
    if (shard_count_ > 1) {
      // Shards poll concurrently from their workers. Each moves its own updates out (the rows
      // of its keys: elements no other shard writes; the others only read the keys, a
      // different member); the batch itself is freed by the last shard to pass it.
      out.reserve(out.size() + b.size() / shard_count_ + 16);
      for (Update& u : b) {
        // As workers.h's worker_of: the top bits of the mixed key (test keys differ in `lo` only).
        uint64_t h = u.key.hi ^ (u.key.lo * 0x9E3779B97F4A7C15ULL);
        if (static_cast<size_t>((static_cast<unsigned __int128>(h) * shard_count_) >> 64) == shard_index_)
          out.push_back({u.key, std::move(u.row), u.diff});
      }
      if (shared_->passed[next_].fetch_add(1, std::memory_order_acq_rel) + 1 == shard_count_) Batch().swap(b);
    } else {
      // Each batch is emitted once (seek only moves forward, before open): hand it over and free it.
      if (out.empty()) out.swap(b);
      else out.insert(out.end(), std::make_move_iterator(b.begin()), std::make_move_iterator(b.end()));
      Batch().swap(b);
    }
    ++next_;
  }
  *finished = next_ >= all.size();
  return {};
}

std::unique_ptr<Source> BatchesSource::shard(size_t index, size_t count) const {
  if (shard_count_ > 1) return nullptr;  // a shard does not split again
  auto s = std::make_unique<BatchesSource>(std::vector<Batch>{}, name_);
  if (!shared_->passed) shared_->passed = std::make_unique<std::atomic<size_t>[]>(shared_->batches.size());
  s->shared_ = shared_;
  s->next_ = next_;
  s->shard_index_ = index;
  s->shard_count_ = count;
  return s;
}

std::string BatchesSource::offset() const {
  std::string s;
  codec::put_u64(s, next_);
  return s;
}

Result<std::string> BatchesSource::merge_shard_offsets(const std::vector<std::string>& parts) const {
  // The shards poll their batch i together: they are at the same batch.
  for (const std::string& p : parts)
    if (p != parts[0]) return Status::internal(describe() + ": its shards are at different batches");
  if (parts.empty()) return Status::internal(describe() + ": no shard offsets");
  return parts[0];
}

Status BatchesSource::seek(std::string_view offset) {
  uint64_t n;
  if (!codec::get_u64(offset, &n) || n > shared_->batches.size())
    return Status::corruption(describe() + ": bad offset");
  next_ = n;
  return {};
}

Status CaptureSink::write(Time t, const Batch& changes, const Schema&) {
  for (const auto& u : changes) out_->push_back({u.key, u.row, t, u.diff});
  return {};
}

Table add_source(Graph& g, std::unique_ptr<Source> source, Schema schema, const std::string& name) {
  auto& impl = g.impl();
  impl.register_name(name, "input connector");
  auto node = std::make_unique<SourceNode>(std::move(source), std::move(schema));
  node->set_name(name);
  return Table(&g, impl.add(std::move(node)));
}

void add_sink(const Table& t, std::unique_ptr<Sink> sink, const std::string& name) {
  auto& impl = t.graph().impl();
  impl.register_name(name, "output connector");
  auto node = std::make_unique<SinkNode>(t.node(), t.schema(), std::move(sink));
  node->set_name(name);
  impl.add(std::move(node));
}

}  // namespace tidemark::engine
