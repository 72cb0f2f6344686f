// Input-event chunk reader (read_input_chunk in src/persistence/manifest.*): streams/ chunks
// of insert / delete / advance-time / finished records.
#include <cstdint>
#include <vector>

#include "fuzz_common.h"
#include "persistence/manifest.h"

using namespace tidemark;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<persistence::InputEvent> events;
  Status st = persistence::read_input_chunk("fuzz/streams/0/0000000001-0000000001", fuzz::as_view(data, size), &events);
  fuzz::expect_status(st, {StatusCode::kCorruption, StatusCode::kNotSupported}, "read_input_chunk");
  if (st.is_ok()) {
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
