#include "persistence/runtime_archive.h"

#include "persistence/runtime_io.h"
#include "persistence/state_store.h"
#include "storage/object_store.h"

namespace tidemark::persistence {

void Archive::stash(uint64_t hash, std::string content) {
  std::lock_guard<std::mutex> l(mu_);
  if (stored.count(hash) || pending.count(hash)) return;
  auto data = std::make_shared<const std::string>(std::move(content));
  pending.emplace(hash, data);
  std::shared_ptr<storage::ObjectStore> store = store_;
  std::string key = content_key(id_, hash, epoch_);
  uploads[hash] = io_->submit<Result<ChunkRef>>([store, key, data]() -> Result<ChunkRef> {
    std::string encoded = encode_content(*data);
    TM_RETURN_IF_ERROR(store->put_if_absent(key, encoded));
    return make_chunk_ref(key, encoded, 0, 0);
  });
}

Result<std::string> Archive::fetch(uint64_t hash) {
  ContentRef c;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = pending.find(hash);
    if (it != pending.end()) return *it->second;
    auto ref = stored.find(hash);
    if (ref == stored.end())
      return Status::corruption("archived content " + std::to_string(hash) + " of source '" + id_ +
                                "' is not listed in the newest manifest");
    c = ref->second;
  }
  auto data = store_->get(c.key);
  if (!data.is_ok()) return data.status().with_context("archived content of source '" + id_ + "'");
  ChunkRef as_chunk;
  as_chunk.key = c.key;
  as_chunk.bytes = c.bytes;
  as_chunk.crc32c = c.crc32c;
  as_chunk.has_crc = c.has_crc;
  TM_RETURN_IF_ERROR(check_chunk_object(store_->describe(), as_chunk, *data));
  return decode_content(store_->describe() + "/" + c.key, *data);
}

}  // namespace tidemark::persistence
