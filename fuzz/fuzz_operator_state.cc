// Operators' state-entry decoders (engine::PersistentState::restore_state_entry of groupby,
// join, deduplicate, sort, windows, set operations, ix, memoized select/filter, concat).
//
// Input: u8 pipeline (index into pipeline_specs(), modulo), then entries until the end:
//   u8 node (index into the pipeline's stateful nodes, modulo), bytes key, bytes value
// (bytes = varint length + raw, as in src/engine/codec.h). Each entry is restored into a
// fresh pipeline; errors must be Corruption. When every entry and finish_state_restore() are
// accepted, the restored pipeline processes two more times of input and hands out its state
// changes: a restored state must be usable (engine::RuntimeError, the documented failure of
// process(), is allowed; any other exception or crash is a bug).
#include <cstdint>
#include <string>

#include "engine/codec.h"
#include "fuzz_common.h"
#include "operator_pipelines.h"

using namespace tidemark;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in = fuzz::as_view(data, size);
  uint8_t which;
  if (!codec::get_u8(in, &which)) return 0;
  const auto& specs = fuzz::pipeline_specs();
  auto p = fuzz::build_pipeline(specs[which % specs.size()]);
  if (p->stateful.empty()) return 0;
  size_t entries = 0;
  while (!in.empty()) {
    uint8_t node;
    std::string key, value;
    if (!codec::get_u8(in, &node) || !codec::get_bytes(in, &key) || !codec::get_bytes(in, &value)) break;
    engine::Node& n = p->node(p->stateful[node % p->stateful.size()]);
    Status st = n.restore_state_entry(key, value);
    fuzz::expect_status(st, {StatusCode::kCorruption}, "restore_state_entry");
    if (!st.is_ok()) return 0;
    if (++entries > 1000) return 0;
  }
  for (size_t i : p->stateful) {
    Status st = p->node(i).finish_state_restore();
    fuzz::expect_status(st, {StatusCode::kCorruption}, "finish_state_restore");
    if (!st.is_ok()) return 0;
  }
  for (size_t i : p->stateful) p->node(i).track_state_changes();
  std::mt19937_64 rng(size);
  std::vector<std::map<uint64_t, Row>> live;
  try {
    for (engine::Time t = 2; t <= 4; t += 2) {
      fuzz::g_epoch = static_cast<int64_t>(t);
      fuzz::step(*p, t, fuzz::random_step(*p, rng, live));
      engine::StateChanges changes;
      for (size_t i : p->stateful) p->node(i).take_state_changes(changes);
    }
  } catch (const engine::RuntimeError&) {
  }
  return 0;
}
