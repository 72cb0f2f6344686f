#include "storage/object_store.h"

namespace tidemark::storage {
namespace {

// Checks the '/'-separated segments of `path`. `allow_partial_last` accepts an empty or
// partial final segment, as a list() prefix may end anywhere.
Status validate_segments(std::string_view path, std::string_view what, bool allow_partial_last) {
  auto bad = [&](const char* why) {
    return Status::invalid_argument(std::string(what) + " '" + std::string(path) + "' is invalid: " + why);
  };
  if (path.size() > kMaxObjectKeyLength) return bad("longer than 1024 bytes");
  if (path.find('\0') != std::string_view::npos) return bad("contains a NUL byte");
  if (!path.empty() && path.front() == '/') return bad("starts with '/'");
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    bool last = end == std::string_view::npos;
    if (last) end = path.size();
    std::string_view segment = path.substr(start, end - start);
    if (last && allow_partial_last) {
      if (segment == "." || segment == ".." || (!segment.empty() && segment.front() == '.')) {
        return bad("a segment starts with '.' (reserved)");
      }
      break;
    }
    if (segment.empty()) return bad(last ? "ends with '/' or is empty" : "has an empty segment");
    if (segment == "." || segment == "..") return bad("has a '.' or '..' segment");
    if (segment.front() == '.') return bad("a segment starts with '.' (reserved)");
    if (last) break;
    start = end + 1;
  }
  return Status::ok();
}

}  // namespace

Status validate_object_key(std::string_view key) { return validate_segments(key, "object key", false); }

Status validate_list_prefix(std::string_view prefix) {
  return validate_segments(prefix, "list prefix", true);
}

}  // namespace tidemark::storage
