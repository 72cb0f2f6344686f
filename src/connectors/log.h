// Warnings from connectors (skipped rows, unretractable rows). Sources have no access to the
// run's logger, so they write to stderr with the same "[tidemark]" prefix.
#pragma once

#include <cstdio>
#include <string>

namespace tidemark::connectors {

inline void log_warning(const std::string& message) {
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION  // fuzz/: millions of skipped rows, no reader
  std::fprintf(stderr, "[tidemark] warning: %s\n", message.c_str());
#else
  (void)message;
#endif
}

}  // namespace tidemark::connectors
