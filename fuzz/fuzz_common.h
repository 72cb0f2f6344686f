// Shared by the fuzz targets: a decoder may answer OK or a Status of the expected codes, and
// nothing else (no crash, no escaping exception, no other status code). Violations abort, so
// libFuzzer records the input as a crash.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string_view>

#include "tidemark/status.h"

namespace tidemark::fuzz {

inline void expect_status(const Status& st, std::initializer_list<StatusCode> allowed, const char* what) {
  if (st.is_ok()) return;
  for (StatusCode c : allowed)
    if (st.code() == c) {
      if (st.message().empty()) {
        std::fprintf(stderr, "%s: error without a message\n", what);
        std::abort();
      }
      return;
    }
  std::fprintf(stderr, "%s: unexpected status %s\n", what, st.to_string().c_str());
  std::abort();
}

inline void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz check failed: %s\n", what);
    std::abort();
  }
}

inline std::string_view as_view(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace tidemark::fuzz
