// The content archive of file sources in operator persisting (engine::ContentArchive).
#pragma once

#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "engine/node.h"
#include "persistence/manifest.h"

namespace tidemark::persistence {

class IoPool;

// ContentArchive over the snapshot storage. A stashed content is compressed and written in
// the background right away (under this run's epoch key, with put_if_absent), then freed; the
// next commit waits for its upload and lists it in the manifest. The shards of a source (several workers)
// share one archive: stash() and fetch() lock; the maps are read by the commit while no worker
// runs.
class Archive final : public engine::ContentArchive {
 public:
  Archive(std::shared_ptr<storage::ObjectStore> store, std::string source_id, uint64_t epoch, IoPool* io)
      : store_(std::move(store)), id_(std::move(source_id)), epoch_(epoch), io_(io) {}
  void stash(uint64_t hash, std::string content) override;
  Result<std::string> fetch(uint64_t hash) override;
  // Stashed, not yet committed; the content itself until it is written (then fetch reads the
  // written object back).
  std::map<uint64_t, std::weak_ptr<const std::string>> pending;
  std::map<uint64_t, std::shared_future<Result<ChunkRef>>> uploads;  // of the pending ones
  std::map<uint64_t, ContentRef> stored;     // in the storage, listed by the manifest

 private:
  std::shared_ptr<storage::ObjectStore> store_;
  std::string id_;
  uint64_t epoch_;
  IoPool* io_;
  std::mutex mu_;
};

}  // namespace tidemark::persistence
