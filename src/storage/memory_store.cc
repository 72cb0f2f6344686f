#include <map>
#include <mutex>

#include "storage/object_store.h"

namespace tidemark::storage {
namespace {

class MemoryStore final : public ObjectStore {
 public:
  Result<std::string> get(std::string_view key) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    std::lock_guard lock(mu_);
    auto it = objects_.find(key);
    if (it == objects_.end()) return Status::not_found("object '" + std::string(key) + "' not found in memory store");
    return it->second;
  }

  Status put(std::string_view key, std::string_view data) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    std::lock_guard lock(mu_);
    objects_.insert_or_assign(std::string(key), std::string(data));
    return Status::ok();
  }

  Status put_if_absent(std::string_view key, std::string_view data) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    std::lock_guard lock(mu_);
    auto [it, created] = objects_.try_emplace(std::string(key), data);
    if (!created && it->second != data) {
      return Status::already_exists("object '" + std::string(key) + "' already exists in memory store");
    }
    return Status::ok();
  }

  Result<VersionedObject> get_versioned(std::string_view key, Deadline) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    std::lock_guard lock(mu_);
    auto it = objects_.find(key);
    if (it == objects_.end()) return Status::not_found("object '" + std::string(key) + "' not found in memory store");
    return VersionedObject{it->second, content_version(it->second)};
  }

  Result<std::string> put_if_version(std::string_view key, std::string_view data, std::string_view expected,
                                     Deadline) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    std::lock_guard lock(mu_);
    auto it = objects_.find(key);
    if (it != objects_.end() && it->second == data) return content_version(data);
    if (it == objects_.end() || content_version(it->second) != expected)
      return Status::aborted("object '" + std::string(key) + "' in memory store changed (conditional write refused)");
    it->second = std::string(data);
    return content_version(data);
  }

  Result<std::vector<ObjectInfo>> list(std::string_view prefix) override {
    TM_RETURN_IF_ERROR(validate_list_prefix(prefix));
    std::lock_guard lock(mu_);
    std::vector<ObjectInfo> out;
    for (auto it = objects_.lower_bound(prefix); it != objects_.end() && it->first.starts_with(prefix); ++it) {
      out.push_back({it->first, it->second.size()});
    }
    return out;
  }

  Status remove(std::string_view key) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    std::lock_guard lock(mu_);
    auto it = objects_.find(key);
    if (it != objects_.end()) objects_.erase(it);
    return Status::ok();
  }

  std::string describe() const override { return "memory"; }

 private:
  std::mutex mu_;
  std::map<std::string, std::string, std::less<>> objects_;
};

}  // namespace

std::unique_ptr<ObjectStore> make_memory_store() { return std::make_unique<MemoryStore>(); }

}  // namespace tidemark::storage
