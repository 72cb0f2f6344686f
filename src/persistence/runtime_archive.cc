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
  // The task holds the only strong reference: the content is freed as soon as it is written
  // (a source reads file after file; holding each until the commit kept a commit interval's
  // worth of fresh memory, page-faulted in on the reading thread). fetch() reads it back then.
  IoPool* io = io_;
  uploads[hash] = io_->submit<Result<ChunkRef>>([store, key, data, io]() mutable -> Result<ChunkRef> {
    std::string encoded;
    {
      IoPool::CpuSlot slot = io->cpu_slot();
      encoded = encode_content(*data);
    }
    Status put = store->put_if_absent(key, encoded);
    data.reset();
    TM_RETURN_IF_ERROR(put);
    return make_chunk_ref(key, encoded, 0, 0);
  });
}

Result<std::string> Archive::fetch(uint64_t hash) {
  ChunkRef as_chunk;
  {
    std::shared_future<Result<ChunkRef>> upload;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = pending.find(hash);
      if (it != pending.end()) {
        if (std::shared_ptr<const std::string> data = it->second.lock()) return *data;
        upload = uploads.at(hash);  // written (or failed): read back below
      } else {
        auto ref = stored.find(hash);
        if (ref == stored.end())
          return Status::corruption("archived content " + std::to_string(hash) + " of source '" + id_ +
                                    "' is not listed in the newest manifest");
        as_chunk.key = ref->second.key;
        as_chunk.bytes = ref->second.bytes;
        as_chunk.crc32c = ref->second.crc32c;
        as_chunk.has_crc = ref->second.has_crc;
      }
    }
    if (upload.valid()) {
      const Result<ChunkRef>& ref = upload.get();
      if (!ref.is_ok()) return ref.status().with_context("archived content of source '" + id_ + "'");
      as_chunk = *ref;
    }
  }
  auto data = store_->get(as_chunk.key);
  if (!data.is_ok()) return data.status().with_context("archived content of source '" + id_ + "'");
  TM_RETURN_IF_ERROR(check_chunk_object(store_->describe(), as_chunk, *data));
  return decode_content(store_->describe() + "/" + as_chunk.key, *data);
}

}  // namespace tidemark::persistence
