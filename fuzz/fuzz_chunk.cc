// Chunk decoder (src/storage/chunk_format.*): ChunkReader::open + next() over arbitrary bytes.
// Every record a reader returns must lie inside its block; errors are Corruption or
// NotSupported, and once an error is returned every later next() returns it again.
#include <cstdint>
#include <string>

#include "fuzz_common.h"
#include "storage/chunk_format.h"

using namespace tidemark;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in = fuzz::as_view(data, size);
  auto reader = storage::ChunkReader::open("fuzz/chunk", in);
  if (!reader.is_ok()) {
    fuzz::expect_status(reader.status(), {StatusCode::kCorruption, StatusCode::kNotSupported}, "ChunkReader::open");
    return 0;
  }
  uint64_t records = 0, bytes = 0;
  for (;;) {
    auto rec = reader->next();
    if (!rec.is_ok()) {
      fuzz::expect_status(rec.status(), {StatusCode::kCorruption}, "ChunkReader::next");
      auto again = reader->next();
      fuzz::check(!again.is_ok() && again.status().code() == rec.status().code(), "error is sticky");
      return 0;
    }
    if (!*rec) break;
    ++records;
    bytes += (*rec)->data.size();
    // A record's bytes are readable (ASan checks the access).
    if (!(*rec)->data.empty()) {
      volatile char first = (*rec)->data.front(), last = (*rec)->data.back();
      (void)first;
      (void)last;
    }
  }
  fuzz::expect_status(reader->torn_tail_status(), {StatusCode::kCorruption}, "torn_tail_status");
  (void)records;
  (void)bytes;
  return 0;
}
