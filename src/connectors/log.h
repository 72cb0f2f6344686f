// Warnings from connectors (skipped rows, unretractable rows). Sources have no access to the
// run's logger, so they write to stderr with the same "[tidemark]" prefix.
#pragma once

#include <cstdio>
#include <string>

namespace tidemark::connectors {

inline void log_warning(const std::string& message) { std::fprintf(stderr, "[tidemark] warning: %s\n", message.c_str()); }

}  // namespace tidemark::connectors
