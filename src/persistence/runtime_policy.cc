#include "persistence/runtime_policy.h"

namespace tidemark::persistence {

bool is_replay_mode(PersistenceMode m) {
  return m == PersistenceMode::kBatch || m == PersistenceMode::kSpeedrunReplay ||
         m == PersistenceMode::kRealtimeReplay;
}
StateClass class_of(PersistenceMode m) {
  if (m == PersistenceMode::kOperatorPersisting) return StateClass::kOperators;
  if (m == PersistenceMode::kUdfCaching) return StateClass::kOffsets;
  return StateClass::kRows;
}
StateClass class_of(const std::string& mode) {
  if (mode == "operator_persisting") return StateClass::kOperators;
  if (mode == "udf_caching") return StateClass::kOffsets;
  return StateClass::kRows;
}
const char* class_name(StateClass c) {
  switch (c) {
    case StateClass::kRows: return "recorded input rows";
    case StateClass::kOperators: return "operator states";
    case StateClass::kOffsets: return "input offsets only";
  }
  return "";
}

}  // namespace tidemark::persistence
