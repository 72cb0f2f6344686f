// CRC32C (Castagnoli polynomial 0x1EDC6F41, reflected 0x82F63B78), as used by iSCSI, ext4,
// LevelDB and RocksDB. Uses the SSE4.2 crc32 instruction when the CPU has it (detected once at
// run time), a slicing-by-8 table otherwise; both give identical results. Thread-safe.
#pragma once

#include <cstdint>
#include <string_view>

namespace tidemark::storage {

// The CRC32C of `data` continued from `crc` (the CRC32C of the bytes before it):
// crc32c_extend(crc32c_value(a), b) == crc32c_value(a + b).
uint32_t crc32c_extend(uint32_t crc, std::string_view data);
inline uint32_t crc32c_value(std::string_view data) { return crc32c_extend(0, data); }

// A stored CRC is masked so that a CRC computed over bytes that themselves embed CRCs does not
// degenerate (LevelDB's scheme): rotate right by 15 bits and add a constant.
inline constexpr uint32_t kCrc32cMaskDelta = 0xa282ead8u;
inline uint32_t crc32c_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kCrc32cMaskDelta; }
inline uint32_t crc32c_unmask(uint32_t masked) {
  uint32_t rot = masked - kCrc32cMaskDelta;
  return (rot >> 17) | (rot << 15);
}

namespace crc32c_internal {
// The two implementations, exposed so tests can check both on any machine.
uint32_t extend_portable(uint32_t crc, std::string_view data);
// Precondition: hardware_available().
uint32_t extend_hardware(uint32_t crc, std::string_view data);
bool hardware_available();
}  // namespace crc32c_internal

}  // namespace tidemark::storage
