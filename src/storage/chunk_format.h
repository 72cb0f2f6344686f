// Record chunks: an immutable object holding a sequence of typed records, in CRC32C-checked,
// optionally zstd-compressed blocks. Byte-exact spec: docs/format/chunk.md; constants:
// format_constants.h.
//
// A record is an opaque byte string with a one-byte type tag; the tags are defined by the layer
// that writes the records (persistence), not here.
//
// Reading distinguishes three endings:
//   - a clean end: the end-marker block, then end of data;
//   - a torn tail: the data stops before the end marker, e.g. inside a block. A writer that
//     crashed mid-write leaves this; callers reading append-written logs may treat it as end of
//     data. Objects published by ObjectStore::put are atomic, so there a torn tail means damage
//     (use torn_tail_status() to report it);
//   - corruption: a checksum mismatch, an impossible length, garbage — a Corruption status
//     naming the object key and the byte offset of the damaged header or block.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "storage/format_constants.h"
#include "tidemark/status.h"

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace tidemark::storage {

struct ChunkWriterOptions {
  // A block is cut once its raw (uncompressed) size reaches this many bytes.
  size_t block_size = format::kChunkDefaultBlockSize;
  // Compress blocks with zstd; a block that does not shrink is stored uncompressed anyway.
  bool compress = true;
  int zstd_level = format::kChunkDefaultZstdLevel;
};

// Builds one chunk in memory. Not thread-safe; movable, not copyable.
class ChunkWriter {
 public:
  explicit ChunkWriter(ChunkWriterOptions options = {});
  ~ChunkWriter();
  ChunkWriter(ChunkWriter&&) noexcept;
  ChunkWriter& operator=(ChunkWriter&&) noexcept;
  ChunkWriter(const ChunkWriter&) = delete;
  ChunkWriter& operator=(const ChunkWriter&) = delete;

  // Adds a record. InvalidArgument if `data` is longer than format::kChunkMaxRecordSize.
  Status append(uint8_t type, std::string_view data);

  // Records appended since construction or the last finish().
  uint64_t record_count() const { return record_count_; }
  // Encoded bytes so far, counting pending records uncompressed: a bound for cutting chunks.
  size_t size_bytes() const { return out_.size() + pending_.size(); }

  // The complete chunk (header, blocks, end marker). The writer is then empty, ready for the
  // next chunk.
  std::string finish();

 private:
  void start_chunk();
  void flush_block();

  ChunkWriterOptions options_;
  std::unique_ptr<ZSTD_CCtx_s, void (*)(ZSTD_CCtx_s*)> cctx_;
  std::string out_;      // file header and finished blocks
  std::string pending_;  // raw records of the block being filled
  std::string scratch_;  // compression output
  uint64_t record_count_ = 0;
};

// One record. `data` points into the chunk passed to ChunkReader::open or into the reader's
// buffer: valid until the next call to next(), or until the reader is moved or destroyed.
struct ChunkRecord {
  uint8_t type = 0;
  std::string_view data;
};

// Reads a chunk from memory. Does not copy or own `data`, which must outlive the reader.
// Not thread-safe; movable.
class ChunkReader {
 public:
  // Checks the file header. Corruption (naming `key`) on bad magic or header checksum;
  // NotSupported for a newer format version or unknown flags ("upgrade Tidemark"). Data too
  // short for a header but matching the magic so far is a torn tail at byte 0.
  static Result<ChunkReader> open(std::string key, std::string_view data);

  ~ChunkReader();
  ChunkReader(ChunkReader&&) noexcept;
  ChunkReader& operator=(ChunkReader&&) noexcept;
  ChunkReader(const ChunkReader&) = delete;
  ChunkReader& operator=(const ChunkReader&) = delete;

  // The next record; std::nullopt once the data ends (cleanly or at a torn tail: check
  // torn_tail_offset()). After an error, every later call returns the same error.
  Result<std::optional<ChunkRecord>> next();

  // Set once next() has hit a torn tail: the byte offset where the incomplete part starts.
  std::optional<uint64_t> torn_tail_offset() const { return torn_tail_offset_; }
  // OK, or Corruption "chunk '<key>': torn tail at byte N ...", for callers that cannot accept
  // a torn tail (atomically written objects).
  Status torn_tail_status() const;
  uint16_t format_version() const { return version_; }

 private:
  ChunkReader(std::string key, std::string_view data);
  Status corruption_at(uint64_t offset, const std::string& what) const;
  // Reads the block at pos_ into block_; sets done_/torn_tail_offset_ at the end of data.
  Status load_block();

  std::string key_;
  std::string_view data_;
  uint16_t version_ = 0;
  std::unique_ptr<ZSTD_DCtx_s, void (*)(ZSTD_DCtx_s*)> dctx_;
  uint64_t pos_ = 0;            // offset of the next block header in data_
  uint64_t block_offset_ = 0;   // offset of the current block's header
  // The raw records of the current block: block_buffer_ if it was decompressed (held by index,
  // not by pointer, so moving the reader keeps it valid), else a view into data_.
  std::string_view block() const { return block_decompressed_ ? std::string_view(block_buffer_) : stored_block_; }
  bool block_decompressed_ = false;
  std::string_view stored_block_;
  std::string block_buffer_;
  size_t record_pos_ = 0;       // offset of the next record in block()
  bool done_ = false;
  std::optional<uint64_t> torn_tail_offset_;
  Status error_;
};

}  // namespace tidemark::storage
