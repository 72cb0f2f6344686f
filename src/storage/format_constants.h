// Every constant of Tidemark's stored formats, in one place. The byte-exact specifications are
// in docs/format/ (chunk.md, layout-lock.md). Values here are part of the on-disk format:
// never change one, never reuse a retired tag; add new ones.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tidemark::storage::format {

// ---- Record chunks (docs/format/chunk.md) ----

// First 8 bytes of every chunk object.
inline constexpr std::string_view kChunkMagic{"TDMKCHNK", 8};
// The version this build writes, and the newest it can read.
inline constexpr uint16_t kChunkFormatVersion = 1;
inline constexpr uint16_t kChunkMaxReadableVersion = 1;
// No flags are defined in version 1; a reader refuses any flag it does not know.
inline constexpr uint16_t kChunkKnownFlags = 0;

// magic[8] version:u16 flags:u16 header_crc:u32
inline constexpr size_t kChunkFileHeaderSize = 16;
// compressed_len:u32 raw_len:u32 compression:u8 block_crc:u32
inline constexpr size_t kChunkBlockHeaderSize = 13;
// The bytes of a block header covered by its CRC (all fields before the CRC).
inline constexpr size_t kChunkBlockHeaderCrcCoveredSize = 9;

// Block compression codes (the `compression` byte).
inline constexpr uint8_t kCompressionNone = 0;
inline constexpr uint8_t kCompressionZstd = 1;

// A block with raw_len == 0 (and compressed_len == 0, compression none) ends the chunk.
inline constexpr uint32_t kChunkEndMarkerRawLen = 0;

// Upper bound on a block's raw (uncompressed) size; bounds what a reader allocates.
inline constexpr uint32_t kChunkMaxBlockRawSize = 1u << 30;
// A record's encoding: type:u8 length:varint32 (at most 5 bytes) bytes.
inline constexpr size_t kChunkMaxRecordOverhead = 6;
inline constexpr size_t kChunkMaxRecordSize = kChunkMaxBlockRawSize - kChunkMaxRecordOverhead;
// Writers cut a block once its raw size reaches this (a larger record gets a block of its own).
inline constexpr size_t kChunkDefaultBlockSize = 256 * 1024;
inline constexpr int kChunkDefaultZstdLevel = 1;

// ---- Storage lock (docs/format/layout-lock.md) ----

// The lock object's key in the ObjectStore.
inline constexpr std::string_view kLockObjectKey = "lock";
// The `version` field of the lock object's JSON.
inline constexpr int kLockFormatVersion = 2;  // 2: CAS protocol, boot id, lease_ms, released
// The filesystem backend's flock(2) file, directly under the storage root.
inline constexpr std::string_view kFilesystemFenceFileName = ".lock";
// Temporary files of the filesystem backend: ".tmp.<pid>.<counter>".
inline constexpr std::string_view kFilesystemTempPrefix = ".tmp.";

}  // namespace tidemark::storage::format
