// Input-event chunk reader (read_input_chunk in src/persistence/manifest.*): streams/ chunks
// of insert / delete / advance-time / finished records, and their merge (compaction).
#include <cstdint>
#include <vector>

#include "fuzz_common.h"
#include "persistence/manifest.h"
#include "persistence/state_store.h"

using namespace tidemark;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<persistence::InputEvent> events;
  Status st = persistence::read_input_chunk("fuzz/streams/0/0000000001-0000000001", fuzz::as_view(data, size), &events);
  fuzz::expect_status(st, {StatusCode::kCorruption, StatusCode::kNotSupported}, "read_input_chunk");
  if (st.is_ok()) {
    // The compaction of input chunks reads the same records: merging the chunk with itself
    // succeeds or reports Corruption (e.g. rows after the last advance record).
    uint64_t records = 0, max_time = 0;
    std::string chunk(fuzz::as_view(data, size));
    auto merged = persistence::merge_input_chunks({{"fuzz/a", chunk}, {"fuzz/b", chunk}}, &records, &max_time);
    if (!merged.is_ok()) fuzz::expect_status(merged.status(), {StatusCode::kCorruption}, "merge_input_chunks");
    // Re-encode what was decoded: the encoders accept every decoded event.
    for (const auto& e : events) {
      if (e.type == persistence::kRecordInsert || e.type == persistence::kRecordDelete)
        (void)persistence::encode_update_payload(e.update);
      else if (e.type == persistence::kRecordAdvance)
        (void)persistence::encode_advance_payload(e.time, e.offset);
    }
  }
  return 0;
}
