#include "storage/fault_injecting_store.h"

namespace tidemark::storage {

FaultInjectingStore::FaultInjectingStore(std::unique_ptr<ObjectStore> inner) : inner_(std::move(inner)) {}

Status FaultInjectingStore::check_crashed() const {
  std::lock_guard lock(mu_);
  if (crashed_) return Status::io_error("injected crash: " + inner_->describe() + " is unavailable");
  return Status::ok();
}

Status FaultInjectingStore::check_write(std::string_view key) {
  std::lock_guard lock(mu_);
  if (crashed_) return Status::io_error("injected crash: " + inner_->describe() + " is unavailable");
  if (no_space_) {
    return Status::io_error("cannot write object '" + std::string(key) +
                            "': No space left on device (ENOSPC, injected)");
  }
  if (writes_until_failure_ > 0 && --writes_until_failure_ == 0) {
    return Status::io_error("injected fault writing object '" + std::string(key) + "'");
  }
  return Status::ok();
}

void FaultInjectingStore::on_write_succeeded(size_t bytes) {
  bytes_written_.fetch_add(bytes, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  if (crash_armed_ && --writes_until_crash_ == 0) {
    crash_armed_ = false;
    crashed_ = true;
  }
}

Result<std::string> FaultInjectingStore::get(std::string_view key) {
  gets_.fetch_add(1, std::memory_order_relaxed);
  TM_RETURN_IF_ERROR(check_crashed());
  Result<std::string> data = inner_->get(key);
  if (data.is_ok()) bytes_read_.fetch_add(data->size(), std::memory_order_relaxed);
  return data;
}

Status FaultInjectingStore::put(std::string_view key, std::string_view data) {
  puts_.fetch_add(1, std::memory_order_relaxed);
  TM_RETURN_IF_ERROR(check_write(key));
  TM_RETURN_IF_ERROR(inner_->put(key, data));
  on_write_succeeded(data.size());
  return Status::ok();
}

Status FaultInjectingStore::put_if_absent(std::string_view key, std::string_view data) {
  put_if_absents_.fetch_add(1, std::memory_order_relaxed);
  TM_RETURN_IF_ERROR(check_write(key));
  TM_RETURN_IF_ERROR(inner_->put_if_absent(key, data));
  on_write_succeeded(data.size());
  return Status::ok();
}

Result<VersionedObject> FaultInjectingStore::get_versioned(std::string_view key, Deadline deadline) {
  gets_.fetch_add(1, std::memory_order_relaxed);
  TM_RETURN_IF_ERROR(check_crashed());
  return inner_->get_versioned(key, deadline);
}

Result<std::string> FaultInjectingStore::put_if_version(std::string_view key, std::string_view data,
                                                        std::string_view expected, Deadline deadline) {
  TM_RETURN_IF_ERROR(check_crashed());
  return inner_->put_if_version(key, data, expected, deadline);
}

Result<std::vector<ObjectInfo>> FaultInjectingStore::list(std::string_view prefix) {
  lists_.fetch_add(1, std::memory_order_relaxed);
  TM_RETURN_IF_ERROR(check_crashed());
  return inner_->list(prefix);
}

Status FaultInjectingStore::remove(std::string_view key) {
  removes_.fetch_add(1, std::memory_order_relaxed);
  TM_RETURN_IF_ERROR(check_crashed());
  return inner_->remove(key);
}

std::string FaultInjectingStore::describe() const { return "faulty(" + inner_->describe() + ")"; }

Result<std::unique_ptr<LocalFence>> FaultInjectingStore::acquire_local_fence() {
  TM_RETURN_IF_ERROR(check_crashed());
  return inner_->acquire_local_fence();
}

void FaultInjectingStore::fail_nth_write(uint64_t n) {
  std::lock_guard lock(mu_);
  writes_until_failure_ = n;
}

void FaultInjectingStore::crash_after_writes(uint64_t n) {
  std::lock_guard lock(mu_);
  crash_armed_ = n > 0;
  writes_until_crash_ = n;
  crashed_ = n == 0;
}

void FaultInjectingStore::recover() {
  std::lock_guard lock(mu_);
  crash_armed_ = false;
  crashed_ = false;
}

bool FaultInjectingStore::crashed() const {
  std::lock_guard lock(mu_);
  return crashed_;
}

void FaultInjectingStore::set_no_space(bool on) {
  std::lock_guard lock(mu_);
  no_space_ = on;
}

Status FaultInjectingStore::corrupt(std::string_view key, uint64_t offset) {
  TM_ASSIGN_OR_RETURN(std::string data, inner_->get(key));
  if (offset >= data.size()) {
    return Status::invalid_argument("cannot corrupt byte " + std::to_string(offset) + " of object '" +
                                    std::string(key) + "': it has " + std::to_string(data.size()) + " bytes");
  }
  data[offset] = static_cast<char>(~static_cast<unsigned char>(data[offset]));
  return inner_->put(key, data);
}

StoreCounters FaultInjectingStore::counters() const {
  StoreCounters c;
  c.gets = gets_.load();
  c.puts = puts_.load();
  c.put_if_absents = put_if_absents_.load();
  c.lists = lists_.load();
  c.removes = removes_.load();
  c.bytes_written = bytes_written_.load();
  c.bytes_read = bytes_read_.load();
  return c;
}

void FaultInjectingStore::reset_counters() {
  for (auto* c : {&gets_, &puts_, &put_if_absents_, &lists_, &removes_, &bytes_written_, &bytes_read_}) c->store(0);
}

}  // namespace tidemark::storage
