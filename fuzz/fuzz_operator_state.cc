// Operators' state-entry decoders (engine::PersistentState::restore_state_entry of groupby,
// join, deduplicate, sort, windows, set operations, ix, memoized select/filter, concat, and a
// UDF cache).
//
// Input: u8 pipeline (index into pipeline_specs(), modulo), then entries until the end:
//   u8 state (index into the pipeline's persistent states, modulo), bytes key, bytes value
// (bytes = varint length + raw, as in src/engine/codec.h). Each entry is restored into a
// fresh pipeline; errors must be Corruption (or NotSupported: a newer entry version). When every entry and finish_state_restore() are
// accepted, the restored pipeline processes two more times of input and hands out its state
// changes: a restored state must be usable. An exception from process() is allowed there (the
// scheduler turns any std::exception from process() into an error Status naming the node);
// crashes, sanitizer reports and exceptions from restore_state_entry are bugs.
#include <cstdint>
#include <exception>
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
  if (p->states.empty()) return 0;
  size_t entries = 0;
  while (!in.empty()) {
    uint8_t node;
    std::string key, value;
    if (!codec::get_u8(in, &node) || !codec::get_bytes(in, &key) || !codec::get_bytes(in, &value)) break;
    engine::PersistentState& n = *p->states[node % p->states.size()];
    Status st = n.restore_state_entry(key, value);
    fuzz::expect_status(st, {StatusCode::kCorruption, StatusCode::kNotSupported}, "restore_state_entry");
    if (!st.is_ok()) return 0;
    if (++entries > 1000) return 0;
  }
  for (auto* state : p->states) {
    Status st = state->finish_state_restore();
    fuzz::expect_status(st, {StatusCode::kCorruption}, "finish_state_restore");
    if (!st.is_ok()) return 0;
  }
  for (auto* state : p->states) state->track_state_changes();
  std::mt19937_64 rng(size);
  std::vector<std::map<uint64_t, Row>> live;
  try {
    for (engine::Time t = 2; t <= 4; t += 2) {
      fuzz::g_epoch = static_cast<int64_t>(t);
      fuzz::step(*p, t, fuzz::random_step(*p, rng, live));
      engine::StateChanges changes;
      for (auto* state : p->states) state->take_state_changes(changes);
    }
  } catch (const std::exception&) {  // as Scheduler::run_time does
  }
  return 0;
}
