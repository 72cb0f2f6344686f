// In-memory sources and sinks: batches given up front, and a sink capturing every change.
// Used by the debug helpers and by tests that drive operators directly.
#pragma once

#include <mutex>
#include <memory>
#include <vector>

#include "engine/node.h"

namespace tidemark::engine {

// Emits one prepared batch per poll (one logical time each), then finishes.
class BatchesSource final : public Source {
 public:
  explicit BatchesSource(std::vector<Batch> batches, std::string name = "batches")
      : shared_(std::make_shared<Shared>()), name_(std::move(name)) {
    shared_->batches = std::move(batches);
  }
  std::string describe() const override { return "in-memory source '" + name_ + "'"; }
  bool streaming() const override { return false; }
  uint64_t autocommit_ms() const override { return 0; }
  Status open() override { return {}; }
  Status poll(Batch& out, bool* finished) override;
  std::string offset() const override;
  Status seek(std::string_view offset) override;
  // Workers: shard i of n emits the updates whose key hash picks i, batch by batch (a shard's
  // batch i is polled with the others' batch i, at the same time as one source would). The
  // shards share the batches; batch j is split into every shard's piece by shard j mod n (up
  // to n - 1 batches ahead), or by the first shard to need it. Shards are made before any of
  // them polls (the workers' plan).
  std::unique_ptr<Source> shard(size_t index, size_t count) const override;
  // Every shard is at the same batch (the offset is the batch index).
  Result<std::string> merge_shard_offsets(const std::vector<std::string>& parts) const override;

 private:
  struct Shared {
    std::vector<Batch> batches;
    struct Split {
      std::mutex mu;
      std::vector<Batch> pieces;  // per shard, once the first shard reached the batch
    };
    std::unique_ptr<Split[]> splits;  // shards: per batch
  };
  void split_batch(size_t i);  // splits batch i into the shards' pieces, once
  std::shared_ptr<Shared> shared_;
  size_t next_ = 0;
  std::string name_;
  size_t shard_index_ = 0, shard_count_ = 1;
};

struct CapturedChange {
  Key key;
  Row row;
  Time time;
  int64_t diff;
};

// Records every change; thread-compatible (the run loop is the only writer).
class CaptureSink final : public Sink {
 public:
  explicit CaptureSink(std::shared_ptr<std::vector<CapturedChange>> out) : out_(std::move(out)) {}
  std::string describe() const override { return "capture"; }
  Status open() override { return {}; }
  Status write(Time t, const Batch& changes, const Schema&) override;
  Status flush() override { return {}; }

 private:
  std::shared_ptr<std::vector<CapturedChange>> out_;
};

// Adds a source node / sink node to the graph.
Table add_source(Graph& g, std::unique_ptr<Source> source, Schema schema, const std::string& name = "");
void add_sink(const Table& t, std::unique_ptr<Sink> sink, const std::string& name = "");

}  // namespace tidemark::engine
