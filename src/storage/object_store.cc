#include "storage/object_store.h"

#include <xxhash.h>

#include <random>

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

Result<VersionedObject> ObjectStore::get_versioned(std::string_view key, Deadline) {
  return Status::not_supported(describe() + " has no conditional writes (get_versioned of '" + std::string(key) + "')");
}

Result<std::string> ObjectStore::put_if_version(std::string_view key, std::string_view, std::string_view, Deadline) {
  return Status::not_supported(describe() + " has no conditional writes (put_if_version of '" + std::string(key) +
                               "')");
}

Status check_conditional_writes(ObjectStore& store) {
  if (store.retry_budget().count() == 0) return Status::ok();
  std::random_device rd;
  char name[40];
  std::snprintf(name, sizeof name, "probes/%08x%08x", rd(), rd());
  const std::string key = name;
  auto refuse = [&](const std::string& what) {
    (void)store.remove(key);
    return Status::failed_precondition(
        store.describe() + " does not honour conditional writes: " + what +
        ". Tidemark's lock and commits need a store that refuses them (S3: If-None-Match: * and If-Match on PUT); "
        "use another server or version");
  };
  TM_RETURN_IF_ERROR(store.put_if_absent(key, "first").with_context("probing conditional writes of " + store.describe()));
  Status second = store.put_if_absent(key, "second");
  if (second.is_ok()) return refuse("a second conditional create of '" + key + "' succeeded");
  if (second.code() != StatusCode::kAlreadyExists) {
    (void)store.remove(key);
    return second.with_context("probing conditional writes of " + store.describe());
  }
  Result<VersionedObject> current = store.get_versioned(key);
  if (!current.is_ok()) {
    (void)store.remove(key);
    return current.status().with_context("probing conditional writes of " + store.describe());
  }
  Result<std::string> wrong = store.put_if_version(key, "third", "\"0123456789abcdef0123456789abcdef\"");
  if (wrong.is_ok()) return refuse("a write to '" + key + "' conditional on a wrong version succeeded");
  if (wrong.status().code() != StatusCode::kAborted) {
    (void)store.remove(key);
    return wrong.status().with_context("probing conditional writes of " + store.describe());
  }
  Result<std::string> right = store.put_if_version(key, "fourth", current->version);
  if (!right.is_ok()) {
    (void)store.remove(key);
    return right.status().with_context("probing conditional writes of " + store.describe() +
                                       " (a write conditional on the current version failed)");
  }
  return store.remove(key).with_context("probing conditional writes of " + store.describe());
}

std::string content_version(std::string_view data) {
  XXH128_hash_t h = XXH3_128bits(data.data(), data.size());
  char buf[40];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return buf;
}

}  // namespace tidemark::storage
