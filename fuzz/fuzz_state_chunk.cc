// Operator state-chunk decoder (apply_state_chunk in src/persistence/state_store.*), plus the
// content-object decoder and the state merge of the same bytes.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_common.h"
#include "persistence/state_store.h"

using namespace tidemark;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in = fuzz::as_view(data, size);
  persistence::StateMap map;
  Status st = persistence::apply_state_chunk("fuzz/operators/0/0000000001-0000000001", in, &map);
  fuzz::expect_status(st, {StatusCode::kCorruption, StatusCode::kNotSupported}, "apply_state_chunk");
  if (st.is_ok()) {
    uint64_t records = 0;
    auto merged = persistence::merge_state_chunks({{"fuzz/a", std::string(in)}, {"fuzz/b", std::string(in)}},
                                                  /*drop_erases=*/true, &records);
    fuzz::check(merged.is_ok(), "a chunk that applies also merges");
    persistence::StateMap again;
    fuzz::check(persistence::apply_state_chunk("fuzz/merged", *merged, &again).is_ok() && again == map,
                "merging a chunk with itself keeps its live entries");
  }
  auto content = persistence::decode_content("fuzz/contents/0/0", in);
  if (!content.is_ok())
    fuzz::expect_status(content.status(), {StatusCode::kCorruption, StatusCode::kNotSupported}, "decode_content");
  return 0;
}
