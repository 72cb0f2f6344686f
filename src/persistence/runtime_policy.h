// What a run does, by its persistence mode and snapshot access (include/tidemark/persistence.h,
// docs/persistence.md): the runtime's recovery and commit code branch on this alone.
#pragma once

#include <string>

#include "tidemark/persistence.h"

namespace tidemark::persistence {

bool is_replay_mode(PersistenceMode m);

// Which kind of state a storage holds, by the mode that wrote it: replaying it in a mode of
// another class would silently compute something else.
enum class StateClass { kRows, kOperators, kOffsets };
StateClass class_of(PersistenceMode m);
StateClass class_of(const std::string& mode);
const char* class_name(StateClass c);

}  // namespace tidemark::persistence
