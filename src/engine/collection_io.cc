#include "engine/collection_io.h"

#include "engine/codec.h"
#include "engine/workers.h"

namespace tidemark::engine {

Status BatchesSource::poll(Batch& out, bool* finished) {
  std::vector<Batch>& all = shared_->batches;
  if (next_ < all.size()) {
    Batch& b = all[next_];
    if (shard_count_ > 1) {
      // Shards poll concurrently from their workers. A batch is split into one piece per shard
      // by one shard (moving each update once, on one thread: shards that moved their own
      // updates out of the shared batch wrote to the same cache lines from every worker); each
      // shard then takes its piece. Batch j is split by shard j mod n, ahead of its time while
      // the shards are at the n - 1 batches before it, so the shards split in parallel instead
      // of all waiting for the one splitting the batch they are at.
      for (size_t j = next_; j < std::min(all.size(), next_ + shard_count_); ++j)
        if (j % shard_count_ == shard_index_) split_batch(j);
      split_batch(next_);  // its splitter is not there yet (or still splitting it: waits)
      Batch& mine = shared_->splits[next_].pieces[shard_index_];
      if (out.empty()) out.swap(mine);
      else out.insert(out.end(), std::make_move_iterator(mine.begin()), std::make_move_iterator(mine.end()));
      Batch().swap(mine);
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

void BatchesSource::split_batch(size_t i) {
  Shared::Split& split = shared_->splits[i];
  std::lock_guard<std::mutex> lock(split.mu);
  if (!split.pieces.empty()) return;  // split already
  Batch& b = shared_->batches[i];
  split.pieces.resize(shard_count_);
  for (Batch& p : split.pieces) p.reserve(b.size() / shard_count_ + b.size() / (4 * shard_count_) + 16);
  for (Update& u : b) split.pieces[worker_of(u.key, shard_count_)].push_back(std::move(u));
  Batch().swap(b);
}

std::unique_ptr<Source> BatchesSource::shard(size_t index, size_t count) const {
  if (shard_count_ > 1) return nullptr;  // a shard does not split again
  auto s = std::make_unique<BatchesSource>(std::vector<Batch>{}, name_);
  if (!shared_->splits) shared_->splits = std::make_unique<Shared::Split[]>(shared_->batches.size());
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
