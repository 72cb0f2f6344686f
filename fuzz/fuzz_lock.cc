// Lock-object decoder (decode_lock_info in src/storage/lock.h).
#include <cstdint>

#include "fuzz_common.h"
#include "storage/lock.h"

using namespace tidemark;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto info = storage::decode_lock_info(fuzz::as_view(data, size));
  if (!info.is_ok()) {
    fuzz::expect_status(info.status(), {StatusCode::kCorruption, StatusCode::kNotSupported}, "decode_lock_info");
    fuzz::check(info.status().message().size() < 1024, "the message quotes a bounded prefix");
    return 0;
  }
  auto again = storage::decode_lock_info(storage::encode_lock_info(*info));
  fuzz::check(again.is_ok() && again->token == info->token && again->pid == info->pid &&
                  again->lease_expires_at_ms == info->lease_expires_at_ms,
              "lock info round trip");
  return 0;
}
