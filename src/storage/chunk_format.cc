#include "storage/chunk_format.h"

#include <zstd.h>

#include <algorithm>
#include <cstring>

#include "storage/crc32c.h"

namespace tidemark::storage {
namespace {

void put_u16(std::string& out, uint16_t v) {
  char b[2] = {static_cast<char>(v), static_cast<char>(v >> 8)};
  out.append(b, 2);
}

void put_u32(std::string& out, uint32_t v) {
  char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
               static_cast<char>(v >> 24)};
  out.append(b, 4);
}

void put_varint32(std::string& out, uint32_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

// Fuzz builds (fuzz/CMakeLists.txt defines FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, the
// libFuzzer convention) do not enforce checksums, so mutated inputs reach the decoders behind
// them instead of all stopping at the first CRC. Never defined in a normal build.
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
constexpr bool kCheckCrc = false;
#else
constexpr bool kCheckCrc = true;
#endif

// Blocks of at most this raw size are decompressed in one call into a buffer of raw_len bytes.
// A larger raw_len (a record of its own block) is only a claim of the header until the payload
// backs it, so such blocks are decompressed in a loop into a buffer that grows with the output
// actually produced: a damaged length field cannot make the reader allocate a gigabyte.
constexpr size_t kChunkEagerDecompressSize = size_t{8} << 20;

uint16_t get_u16(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint16_t>(u[0] | (u[1] << 8));
}

uint32_t get_u32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint32_t>(u[0]) | (static_cast<uint32_t>(u[1]) << 8) | (static_cast<uint32_t>(u[2]) << 16) |
         (static_cast<uint32_t>(u[3]) << 24);
}

// Appends a block header for `payload` and the payload itself.
void append_block(std::string& out, uint8_t compression, uint32_t raw_len, std::string_view payload) {
  size_t header_at = out.size();
  put_u32(out, static_cast<uint32_t>(payload.size()));
  put_u32(out, raw_len);
  out.push_back(static_cast<char>(compression));
  uint32_t crc = crc32c_value(std::string_view(out).substr(header_at, format::kChunkBlockHeaderCrcCoveredSize));
  crc = crc32c_extend(crc, payload);
  put_u32(out, crc32c_mask(crc));
  out.append(payload);
}

std::string hex16(uint16_t v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%04x", v);
  return buf;
}

}  // namespace

// ---- ChunkWriter ----

ChunkWriter::ChunkWriter(ChunkWriterOptions options)
    : options_(options), cctx_(options.compress ? ZSTD_createCCtx() : nullptr, [](ZSTD_CCtx_s* c) { ZSTD_freeCCtx(c); }) {
  start_chunk();
}

ChunkWriter::~ChunkWriter() = default;
ChunkWriter::ChunkWriter(ChunkWriter&&) noexcept = default;
ChunkWriter& ChunkWriter::operator=(ChunkWriter&&) noexcept = default;

void ChunkWriter::start_chunk() {
  out_.clear();
  out_.append(format::kChunkMagic);
  put_u16(out_, format::kChunkFormatVersion);
  put_u16(out_, 0);  // flags
  put_u32(out_, crc32c_mask(crc32c_value(out_)));
  record_count_ = 0;
}

Status ChunkWriter::append(uint8_t type, std::string_view data) {
  if (data.size() > format::kChunkMaxRecordSize) {
    return Status::invalid_argument("chunk record of " + std::to_string(data.size()) +
                                    " bytes exceeds the maximum of " + std::to_string(format::kChunkMaxRecordSize));
  }
  size_t encoded = data.size() + format::kChunkMaxRecordOverhead;
  if (!pending_.empty() &&
      (pending_.size() + encoded > options_.block_size || pending_.size() + encoded > format::kChunkMaxBlockRawSize)) {
    flush_block();
  }
  pending_.push_back(static_cast<char>(type));
  put_varint32(pending_, static_cast<uint32_t>(data.size()));
  pending_.append(data);
  ++record_count_;
  if (pending_.size() >= options_.block_size) flush_block();
  return Status::ok();
}

void ChunkWriter::flush_block() {
  if (pending_.empty()) return;
  const auto raw_len = static_cast<uint32_t>(pending_.size());
  if (cctx_ != nullptr) {
    scratch_.resize(ZSTD_compressBound(pending_.size()));
    size_t n = ZSTD_compressCCtx(cctx_.get(), scratch_.data(), scratch_.size(), pending_.data(), pending_.size(),
                                 options_.zstd_level);
    // A compression failure (only possible on allocation failure) just stores the block raw.
    if (!ZSTD_isError(n) && n < pending_.size()) {
      append_block(out_, format::kCompressionZstd, raw_len, std::string_view(scratch_.data(), n));
      pending_.clear();
      return;
    }
  }
  append_block(out_, format::kCompressionNone, raw_len, pending_);
  pending_.clear();
}

std::string ChunkWriter::finish() {
  flush_block();
  append_block(out_, format::kCompressionNone, format::kChunkEndMarkerRawLen, {});
  std::string chunk = std::move(out_);
  start_chunk();
  return chunk;
}

// ---- ChunkReader ----

ChunkReader::ChunkReader(std::string key, std::string_view data)
    : key_(std::move(key)), data_(data), dctx_(nullptr, [](ZSTD_DCtx_s* d) { ZSTD_freeDCtx(d); }) {}

ChunkReader::~ChunkReader() = default;
ChunkReader::ChunkReader(ChunkReader&&) noexcept = default;
ChunkReader& ChunkReader::operator=(ChunkReader&&) noexcept = default;

Status ChunkReader::corruption_at(uint64_t offset, const std::string& what) const {
  return Status::corruption("chunk '" + key_ + "' is corrupt at byte " + std::to_string(offset) + ": " + what);
}

Result<ChunkReader> ChunkReader::open(std::string key, std::string_view data) {
  ChunkReader reader(std::move(key), data);
  std::string_view magic = format::kChunkMagic;
  if (data.size() < format::kChunkFileHeaderSize) {
    if (magic.substr(0, std::min(data.size(), magic.size())) != data.substr(0, std::min(data.size(), magic.size()))) {
      return reader.corruption_at(0, "not a Tidemark chunk (bad magic)");
    }
    reader.done_ = true;
    reader.torn_tail_offset_ = 0;
    return reader;
  }
  if (data.substr(0, magic.size()) != magic) return reader.corruption_at(0, "not a Tidemark chunk (bad magic)");
  uint32_t stored = crc32c_unmask(get_u32(data.data() + 12));
  if (kCheckCrc && crc32c_value(data.substr(0, 12)) != stored) return reader.corruption_at(0, "file header checksum mismatch");
  uint16_t version = get_u16(data.data() + 8);
  uint16_t flags = get_u16(data.data() + 10);
  if (version == 0) return reader.corruption_at(0, "format version 0 is invalid");
  if (version > format::kChunkMaxReadableVersion) {
    return Status::not_supported("chunk '" + reader.key_ + "' has format version " + std::to_string(version) +
                                 ", this build reads up to " + std::to_string(format::kChunkMaxReadableVersion) +
                                 "; upgrade Tidemark");
  }
  if ((flags & ~format::kChunkKnownFlags) != 0) {
    return Status::not_supported("chunk '" + reader.key_ + "' uses format flags " + hex16(flags) +
                                 " unknown to this build; upgrade Tidemark");
  }
  reader.version_ = version;
  reader.pos_ = format::kChunkFileHeaderSize;
  return reader;
}

Status ChunkReader::load_block() {
  const uint64_t at = pos_;
  const uint64_t remaining = data_.size() - at;
  if (remaining < format::kChunkBlockHeaderSize) {
    done_ = true;
    torn_tail_offset_ = at;  // includes remaining == 0: the end marker is missing
    return Status::ok();
  }
  const char* h = data_.data() + at;
  const uint32_t compressed_len = get_u32(h);
  const uint32_t raw_len = get_u32(h + 4);
  const auto compression = static_cast<uint8_t>(h[8]);
  const uint32_t stored_crc = crc32c_unmask(get_u32(h + 9));

  // A torn write leaves a well-formed header, so check its consistency before deciding that a
  // payload running past the end is a torn tail rather than a damaged length.
  bool consistent;
  if (compression == format::kCompressionNone) {
    consistent = compressed_len == raw_len;
  } else if (compression == format::kCompressionZstd) {
    consistent = compressed_len > 0 && compressed_len < raw_len && compressed_len <= ZSTD_compressBound(raw_len);
  } else {
    return corruption_at(at, "unknown block compression code " + std::to_string(compression));
  }
  if (!consistent || raw_len > format::kChunkMaxBlockRawSize) {
    return corruption_at(at, "invalid block header (compressed " + std::to_string(compressed_len) + " bytes, raw " +
                                 std::to_string(raw_len) + " bytes, compression " + std::to_string(compression) + ")");
  }
  if (remaining - format::kChunkBlockHeaderSize < compressed_len) {
    done_ = true;
    torn_tail_offset_ = at;
    return Status::ok();
  }
  std::string_view payload = data_.substr(at + format::kChunkBlockHeaderSize, compressed_len);
  uint32_t crc = crc32c_value(data_.substr(at, format::kChunkBlockHeaderCrcCoveredSize));
  if (kCheckCrc && crc32c_extend(crc, payload) != stored_crc) return corruption_at(at, "block checksum mismatch");

  pos_ = at + format::kChunkBlockHeaderSize + compressed_len;
  block_offset_ = at;
  record_pos_ = 0;
  if (raw_len == format::kChunkEndMarkerRawLen) {
    if (pos_ != data_.size()) {
      return corruption_at(pos_, std::to_string(data_.size() - pos_) + " unexpected bytes after the end marker");
    }
    done_ = true;
    block_decompressed_ = false;
    stored_block_ = {};
    return Status::ok();
  }
  if (compression == format::kCompressionNone) {
    block_decompressed_ = false;
    stored_block_ = payload;
    return Status::ok();
  }
  if (dctx_ == nullptr) dctx_.reset(ZSTD_createDCtx());
  if (dctx_ == nullptr) return Status::internal("chunk '" + key_ + "': cannot allocate a zstd decompression context");
  // One zstd frame declaring exactly raw_len bytes, and nothing after it.
  const unsigned long long declared = ZSTD_getFrameContentSize(payload.data(), payload.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) return corruption_at(at, "block payload is not a zstd frame");
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != raw_len) {
    return corruption_at(at, "block's zstd frame declares " + std::to_string(declared) + " bytes, its header " +
                                 std::to_string(raw_len));
  }
  const size_t frame_size = ZSTD_findFrameCompressedSize(payload.data(), payload.size());
  if (ZSTD_isError(frame_size) || frame_size != payload.size()) {
    return corruption_at(at, "block payload is not exactly one zstd frame");
  }
  if (raw_len <= kChunkEagerDecompressSize) {
    block_buffer_.resize(raw_len);
    size_t n = ZSTD_decompressDCtx(dctx_.get(), block_buffer_.data(), raw_len, payload.data(), payload.size());
    if (ZSTD_isError(n) || n != raw_len) {
      return corruption_at(at, std::string("block does not decompress to its raw length: ") +
                                   (ZSTD_isError(n) ? ZSTD_getErrorName(n) : std::to_string(n) + " bytes"));
    }
  } else {
    // Grows with the output; one byte more than raw_len detects a frame that is longer.
    (void)ZSTD_DCtx_reset(dctx_.get(), ZSTD_reset_session_only);
    block_buffer_.resize(std::min<size_t>(raw_len, kChunkEagerDecompressSize));
    ZSTD_inBuffer in{payload.data(), payload.size(), 0};
    size_t produced = 0;
    for (;;) {
      ZSTD_outBuffer out{block_buffer_.data(), block_buffer_.size(), produced};
      const size_t r = ZSTD_decompressStream(dctx_.get(), &out, &in);
      if (ZSTD_isError(r)) {
        block_buffer_.clear();
        return corruption_at(at, std::string("block does not decompress: ") + ZSTD_getErrorName(r));
      }
      produced = out.pos;
      if (produced > raw_len) {
        block_buffer_.clear();
        return corruption_at(at, "block decompresses to more than its raw length " + std::to_string(raw_len));
      }
      if (r == 0) break;  // frame complete
      if (produced == block_buffer_.size()) {
        block_buffer_.resize(produced >= raw_len ? size_t{raw_len} + 1 : std::min<size_t>(raw_len, 2 * produced));
      } else if (in.pos == in.size) {
        block_buffer_.clear();
        return corruption_at(at, "block's zstd frame is truncated");
      }
    }
    if (produced != raw_len) {
      block_buffer_.clear();
      return corruption_at(at, "block does not decompress to its raw length: " + std::to_string(produced) + " bytes");
    }
    block_buffer_.resize(raw_len);
  }
  block_decompressed_ = true;
  return Status::ok();
}

Result<std::optional<ChunkRecord>> ChunkReader::next() {
  if (!error_.is_ok()) return error_;
  while (record_pos_ >= block().size()) {
    if (done_) return std::optional<ChunkRecord>();
    error_ = load_block();
    if (!error_.is_ok()) return error_;
  }
  const std::string_view raw = block();
  const size_t start = record_pos_;
  auto bad_record = [&](const char* what) {
    error_ = corruption_at(block_offset_, std::string(what) + " at raw offset " + std::to_string(start) + " of the block");
    return error_;
  };
  if (raw.size() - start < 2) return bad_record("truncated record header");
  ChunkRecord record;
  record.type = static_cast<uint8_t>(raw[start]);
  size_t p = start + 1;
  uint32_t len = 0;
  for (int shift = 0;; shift += 7) {
    if (p >= raw.size() || shift > 28) return bad_record("malformed record length");
    auto byte = static_cast<uint8_t>(raw[p++]);
    len |= static_cast<uint32_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) break;
  }
  if (raw.size() - p < len) return bad_record("record overruns its block");
  record.data = raw.substr(p, len);
  record_pos_ = p + len;
  return std::optional<ChunkRecord>(record);
}

Status ChunkReader::torn_tail_status() const {
  if (!torn_tail_offset_) return Status::ok();
  return Status::corruption("chunk '" + key_ + "': torn tail at byte " + std::to_string(*torn_tail_offset_) +
                            " (the data ends before the chunk's end marker; " + std::to_string(data_.size()) +
                            " bytes present)");
}

}  // namespace tidemark::storage
