#include "storage/chunk_format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zstd.h>

#include <cstring>
#include <random>

#include "storage/crc32c.h"
#include "storage/test_util.h"

namespace tidemark::storage {
namespace {

using ::testing::HasSubstr;

struct OwnedRecord {
  uint8_t type;
  std::string data;
  bool operator==(const OwnedRecord&) const = default;
};

struct ReadOutcome {
  Status status;  // of open() or the first failing next()
  std::vector<OwnedRecord> records;
  std::optional<uint64_t> torn_tail;
};

ReadOutcome read_all(std::string_view data, const std::string& key = "test/chunk") {
  ReadOutcome out;
  Result<ChunkReader> reader = ChunkReader::open(key, data);
  if (!reader.is_ok()) {
    out.status = reader.status();
    return out;
  }
  while (true) {
    Result<std::optional<ChunkRecord>> rec = reader->next();
    if (!rec.is_ok()) {
      out.status = rec.status();
      return out;
    }
    if (!rec->has_value()) break;
    out.records.push_back({(*rec)->type, std::string((*rec)->data)});
  }
  out.torn_tail = reader->torn_tail_offset();
  return out;
}

std::vector<OwnedRecord> make_records(size_t count, size_t max_len, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<OwnedRecord> records;
  for (size_t i = 0; i < count; ++i) {
    std::string data(rng() % (max_len + 1), '\0');
    for (size_t j = 0; j < data.size(); ++j) data[j] = static_cast<char>(j % 3 == 0 ? rng() : 'a' + i % 7);
    records.push_back({static_cast<uint8_t>(rng()), std::move(data)});
  }
  return records;
}

std::string write_chunk(const std::vector<OwnedRecord>& records, ChunkWriterOptions options = {}) {
  ChunkWriter writer(options);
  for (const OwnedRecord& r : records) EXPECT_OK(writer.append(r.type, r.data));
  EXPECT_EQ(writer.record_count(), records.size());
  return writer.finish();
}

// Offsets of every block header (data blocks and the end marker), found by walking the lengths.
std::vector<size_t> block_offsets(std::string_view chunk) {
  std::vector<size_t> offsets;
  size_t pos = format::kChunkFileHeaderSize;
  while (pos < chunk.size()) {
    offsets.push_back(pos);
    uint32_t compressed_len;
    std::memcpy(&compressed_len, chunk.data() + pos, 4);
    pos += format::kChunkBlockHeaderSize + compressed_len;
  }
  EXPECT_EQ(pos, chunk.size());
  return offsets;
}

class ChunkRoundTrip : public ::testing::TestWithParam<bool> {};

TEST_P(ChunkRoundTrip, ZeroOneAndManyRecords) {
  ChunkWriterOptions options;
  options.compress = GetParam();
  for (size_t count : {size_t{0}, size_t{1}, size_t{100'000}}) {
    SCOPED_TRACE("records: " + std::to_string(count));
    std::vector<OwnedRecord> records = make_records(count, 40, static_cast<uint32_t>(count));
    std::string chunk = write_chunk(records, options);
    ReadOutcome got = read_all(chunk);
    ASSERT_OK(got.status);
    EXPECT_FALSE(got.torn_tail.has_value());
    EXPECT_TRUE(got.records == records);
    if (count == 100'000) {
      EXPECT_GT(block_offsets(chunk).size(), 3u);  // several blocks
    }
  }
}

TEST_P(ChunkRoundTrip, RecordsLargerThanABlock) {
  ChunkWriterOptions options;
  options.compress = GetParam();
  options.block_size = 1024;
  std::vector<OwnedRecord> records = make_records(50, 100, 3);
  records.insert(records.begin() + 10, {9, std::string(5000, 'x')});
  records.push_back({10, std::string(3 * 1024 * 1024, 'y')});
  records.push_back({11, ""});
  std::string chunk = write_chunk(records, options);
  ReadOutcome got = read_all(chunk);
  ASSERT_OK(got.status);
  EXPECT_TRUE(got.records == records);
}

INSTANTIATE_TEST_SUITE_P(Compression, ChunkRoundTrip, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "zstd" : "none"; });

TEST(ChunkFormat, ByteLayoutMatchesSpec) {
  ChunkWriterOptions options;
  options.compress = false;
  std::string chunk = write_chunk({{7, "hi"}}, options);
  auto u32_at = [&](size_t at) {
    uint32_t v;
    std::memcpy(&v, chunk.data() + at, 4);
    return v;
  };
  ASSERT_EQ(chunk.size(), 16u + (13 + 4) + 13);
  EXPECT_EQ(chunk.substr(0, 8), "TDMKCHNK");
  EXPECT_EQ(chunk.substr(8, 4), std::string("\x01\x00\x00\x00", 4));  // version 1, flags 0
  EXPECT_EQ(crc32c_unmask(u32_at(12)), crc32c_value(chunk.substr(0, 12)));
  EXPECT_EQ(u32_at(16), 4u);                   // compressed_len
  EXPECT_EQ(u32_at(20), 4u);                   // raw_len
  EXPECT_EQ(chunk[24], 0);                     // compression none
  EXPECT_EQ(chunk.substr(29, 4), "\x07\x02hi");  // type, varint length, bytes
  EXPECT_EQ(crc32c_unmask(u32_at(25)), crc32c_value(chunk.substr(16, 9) + chunk.substr(29, 4)));
  EXPECT_EQ(chunk.substr(33, 9), std::string(9, '\0'));  // end marker
  EXPECT_EQ(crc32c_unmask(u32_at(42)), crc32c_value(std::string(9, '\0')));
}

TEST(ChunkFormat, CompressesAndFallsBackToRaw) {
  std::vector<OwnedRecord> compressible(1000, {1, std::string(100, 'z')});
  std::string zstd = write_chunk(compressible);
  ChunkWriterOptions raw_options;
  raw_options.compress = false;
  std::string raw = write_chunk(compressible, raw_options);
  EXPECT_LT(zstd.size() * 10, raw.size());
  EXPECT_EQ(zstd[format::kChunkFileHeaderSize + 8], format::kCompressionZstd);

  std::string noise(2000, '\0');
  std::mt19937 rng(1);
  for (char& c : noise) c = static_cast<char>(rng());
  std::string incompressible = write_chunk({{1, noise}});
  EXPECT_EQ(incompressible[format::kChunkFileHeaderSize + 8], format::kCompressionNone);
  EXPECT_EQ(read_all(incompressible).records, (std::vector<OwnedRecord>{{1, noise}}));
}

TEST(ChunkFormat, WriterIsReusableAfterFinish) {
  ChunkWriter writer;
  ASSERT_OK(writer.append(1, "a"));
  size_t before = writer.size_bytes();
  ASSERT_OK(writer.append(2, "bcd"));
  EXPECT_GT(writer.size_bytes(), before);
  std::string first = writer.finish();
  EXPECT_EQ(writer.record_count(), 0u);
  ASSERT_OK(writer.append(3, "e"));
  std::string second = writer.finish();
  EXPECT_EQ(read_all(first).records, (std::vector<OwnedRecord>{{1, "a"}, {2, "bcd"}}));
  EXPECT_EQ(read_all(second).records, (std::vector<OwnedRecord>{{3, "e"}}));
}

TEST(ChunkFormat, OversizedRecordIsRejected) {
  static const char byte = 0;
  // Never dereferenced beyond the first byte: the size check comes first.
  std::string_view huge(&byte, format::kChunkMaxRecordSize + 1);
  ChunkWriter writer;
  Status st = writer.append(1, huge);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.to_string();
  EXPECT_EQ(writer.record_count(), 0u);
}

// Flipping any bit anywhere must be detected, and reported at the damaged header or block.
void expect_every_bit_flip_detected(const std::string& chunk, bool allow_torn_in_zstd_length) {
  std::vector<size_t> blocks = block_offsets(chunk);
  for (size_t i = 0; i < chunk.size(); ++i) {
    size_t region = 0;
    for (size_t b : blocks) {
      if (b <= i) region = b;
    }
    for (int bit = 0; bit < 8; ++bit) {
      std::string damaged = chunk;
      damaged[i] = static_cast<char>(damaged[i] ^ (1 << bit));
      ReadOutcome got = read_all(damaged, "w0/chunk-7");
      SCOPED_TRACE("byte " + std::to_string(i) + " bit " + std::to_string(bit) + " region " + std::to_string(region));
      if (got.status.is_ok()) {
        // Only a damaged compressed_len of a zstd block can look like a torn tail.
        ASSERT_TRUE(got.torn_tail.has_value()) << "undetected";
        bool in_length = region != 0 && i < region + 4 && chunk[region + 8] == format::kCompressionZstd;
        ASSERT_TRUE(allow_torn_in_zstd_length && in_length) << "torn tail reported for damage in the middle";
        EXPECT_EQ(*got.torn_tail, region);
        continue;
      }
      ASSERT_EQ(got.status.code(), StatusCode::kCorruption) << got.status.to_string();
      EXPECT_THAT(got.status.message(), HasSubstr("chunk 'w0/chunk-7' is corrupt at byte " + std::to_string(region) + ":"));
    }
  }
}

TEST(ChunkFormat, BitFlipInEveryRegionIsDetectedAtItsOffset) {
  ChunkWriterOptions options;
  options.compress = false;
  options.block_size = 64;
  std::string chunk = write_chunk(make_records(12, 20, 5), options);
  ASSERT_GE(block_offsets(chunk).size(), 4u);
  expect_every_bit_flip_detected(chunk, false);
}

TEST(ChunkFormat, BitFlipInCompressedChunkIsDetected) {
  ChunkWriterOptions options;
  options.block_size = 200;
  std::vector<OwnedRecord> records(30, {4, std::string(40, 'q')});
  std::string chunk = write_chunk(records, options);
  ASSERT_EQ(chunk[format::kChunkFileHeaderSize + 8], format::kCompressionZstd);
  expect_every_bit_flip_detected(chunk, true);
}

TEST(ChunkFormat, TruncationAtEveryByteIsATornTail) {
  ChunkWriterOptions options;
  options.block_size = 48;
  for (bool compress : {false, true}) {
    options.compress = compress;
    std::vector<OwnedRecord> records = make_records(10, 30, 11);
    std::string chunk = write_chunk(records, options);
    for (size_t len = 0; len < chunk.size(); ++len) {
      SCOPED_TRACE("compress " + std::to_string(compress) + " length " + std::to_string(len));
      ReadOutcome got = read_all(std::string_view(chunk).substr(0, len));
      ASSERT_OK(got.status);
      ASSERT_TRUE(got.torn_tail.has_value());
      EXPECT_LE(*got.torn_tail, len);
      ASSERT_LE(got.records.size(), records.size());
      EXPECT_TRUE(std::equal(got.records.begin(), got.records.end(), records.begin()));
    }
    ReadOutcome whole = read_all(chunk);
    ASSERT_OK(whole.status);
    EXPECT_FALSE(whole.torn_tail.has_value());
    EXPECT_EQ(whole.records.size(), records.size());
  }
}

TEST(ChunkFormat, TornTailStatusNamesKeyAndOffset) {
  std::string chunk = write_chunk({{1, "abc"}, {2, "def"}});
  std::string_view torn = std::string_view(chunk).substr(0, chunk.size() - 5);
  ASSERT_OK_AND_ASSIGN(ChunkReader reader, ChunkReader::open("in/x", torn));
  EXPECT_OK(reader.torn_tail_status());
  while (true) {
    ASSERT_OK_AND_ASSIGN(auto rec, reader.next());
    if (!rec) break;
  }
  Status st = reader.torn_tail_status();
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_THAT(st.message(), HasSubstr("chunk 'in/x': torn tail at byte " + std::to_string(chunk.size() - 13)));
}

std::string header_with(uint16_t version, uint16_t flags) {
  std::string h(format::kChunkMagic);
  h.push_back(static_cast<char>(version));
  h.push_back(static_cast<char>(version >> 8));
  h.push_back(static_cast<char>(flags));
  h.push_back(static_cast<char>(flags >> 8));
  uint32_t crc = crc32c_mask(crc32c_value(h));
  h.append(reinterpret_cast<const char*>(&crc), 4);
  return h;
}

TEST(ChunkFormat, NewerVersionIsRefused) {
  ReadOutcome got = read_all(header_with(3, 0) + "whatever a future version writes", "snap/w1/c9");
  EXPECT_EQ(got.status.code(), StatusCode::kNotSupported);
  EXPECT_EQ(got.status.message(), "chunk 'snap/w1/c9' has format version 3, this build reads up to 1; upgrade Tidemark");
}

TEST(ChunkFormat, UnknownFlagsAndVersionZeroAreRefused) {
  ReadOutcome flags = read_all(header_with(1, 0x0004));
  EXPECT_EQ(flags.status.code(), StatusCode::kNotSupported);
  EXPECT_THAT(flags.status.message(), HasSubstr("flags 0x0004"));
  EXPECT_EQ(read_all(header_with(0, 0)).status.code(), StatusCode::kCorruption);
}

TEST(ChunkFormat, BadMagicIsRefused) {
  for (std::string data : {std::string("{\"not\": \"a chunk at all\"}"), std::string("TDMKX"), std::string(40, '\0')}) {
    ReadOutcome got = read_all(data, "k");
    EXPECT_EQ(got.status.code(), StatusCode::kCorruption) << data;
    EXPECT_THAT(got.status.message(), HasSubstr("chunk 'k' is corrupt at byte 0: not a Tidemark chunk (bad magic)"));
  }
}

TEST(ChunkFormat, BytesAfterEndMarkerAreCorruption) {
  std::string chunk = write_chunk({{1, "x"}});
  ReadOutcome got = read_all(chunk + "junk");
  EXPECT_EQ(got.status.code(), StatusCode::kCorruption);
  EXPECT_THAT(got.status.message(), HasSubstr("at byte " + std::to_string(chunk.size()) + ": 4 unexpected bytes"));
}

TEST(ChunkFormat, ReaderCanBeMovedBetweenRecords) {
  ChunkWriterOptions options;
  options.block_size = 4096;
  std::vector<OwnedRecord> records(200, {1, std::string(30, 'm')});
  std::string chunk = write_chunk(records, options);
  ASSERT_EQ(chunk[format::kChunkFileHeaderSize + 8], format::kCompressionZstd);
  ASSERT_OK_AND_ASSIGN(ChunkReader reader, ChunkReader::open("k", chunk));
  size_t count = 0;
  while (true) {
    ChunkReader moved = std::move(reader);
    reader = std::move(moved);
    ASSERT_OK_AND_ASSIGN(auto rec, reader.next());
    if (!rec) break;
    EXPECT_EQ((*rec).data, records[count].data);
    ++count;
  }
  EXPECT_EQ(count, records.size());
}

TEST(ChunkFormat, ErrorIsSticky) {
  std::string chunk = write_chunk({{1, "x"}});
  chunk[format::kChunkFileHeaderSize + 13] ^= 1;
  ASSERT_OK_AND_ASSIGN(ChunkReader reader, ChunkReader::open("k", chunk));
  Status first = reader.next().status();
  EXPECT_EQ(first.code(), StatusCode::kCorruption);
  EXPECT_EQ(reader.next().status().message(), first.message());
}


// ---- Bounded decompression (regressions found while fuzzing the chunk decoder) ----

// A chunk of one zstd block holding `frame`, whose header claims `raw_len` raw bytes, with
// valid checksums (so only the length claims are wrong).
std::string chunk_with_zstd_block(std::string_view frame, uint32_t raw_len) {
  std::string empty = ChunkWriter().finish();  // file header + end marker
  std::string chunk = empty.substr(0, format::kChunkFileHeaderSize);
  std::string header(format::kChunkBlockHeaderCrcCoveredSize, '\0');
  const auto compressed_len = static_cast<uint32_t>(frame.size());
  std::memcpy(header.data(), &compressed_len, 4);
  std::memcpy(header.data() + 4, &raw_len, 4);
  header[8] = static_cast<char>(format::kCompressionZstd);
  const uint32_t crc = crc32c_mask(crc32c_extend(crc32c_value(header), frame));
  chunk += header;
  chunk.append(reinterpret_cast<const char*>(&crc), 4);
  chunk += frame;
  chunk += empty.substr(format::kChunkFileHeaderSize);
  return chunk;
}

// One zstd frame of `raw`; with `content_size` false the frame does not declare its size.
std::string zstd_frame(std::string_view raw, bool content_size) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, content_size ? 1 : 0);
  std::string out(ZSTD_compressBound(raw.size()), '\0');
  size_t n = ZSTD_compress2(cctx, out.data(), out.size(), raw.data(), raw.size());
  ZSTD_freeCCtx(cctx);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

std::string one_record_block(size_t len) {
  std::string raw(1, '\x07');  // record type, then varint length and the bytes
  for (size_t v = len; ; v >>= 7) {
    raw.push_back(static_cast<char>((v & 0x7f) | (v >= 0x80 ? 0x80 : 0)));
    if (v < 0x80) break;
  }
  raw.append(len, 'z');
  return raw;
}

TEST(ChunkFormat, ZstdFrameDeclaringAnotherSizeIsCorruptionBeforeAllocating) {
  // A 1 KiB block whose header claims 1 GiB: refused from the frame's declared size, without
  // allocating raw_len bytes first.
  std::string chunk = chunk_with_zstd_block(zstd_frame(one_record_block(1024), true), format::kChunkMaxBlockRawSize);
  ReadOutcome out = read_all(chunk);
  EXPECT_EQ(out.status.code(), StatusCode::kCorruption);
  EXPECT_THAT(out.status.message(), HasSubstr("chunk 'test/chunk' is corrupt at byte 16"));
  EXPECT_THAT(out.status.message(), HasSubstr("declares"));
}

TEST(ChunkFormat, ZstdFrameWithoutDeclaredSizeIsBoundedByItsOutput) {
  // Frames without a content size: a header claiming more than the frame produces is
  // corruption (large claims take the incremental path), so is a frame producing more.
  std::string frame = zstd_frame(one_record_block(1000), false);
  for (uint32_t claim : {uint32_t{2000}, uint32_t{64} << 20, format::kChunkMaxBlockRawSize, uint32_t{500}}) {
    SCOPED_TRACE(claim);
    if (frame.size() >= claim) continue;
    ReadOutcome out = read_all(chunk_with_zstd_block(frame, claim));
    EXPECT_EQ(out.status.code(), StatusCode::kCorruption);
    EXPECT_THAT(out.status.message(), HasSubstr("corrupt at byte 16"));
  }
  // The right claim reads.
  ReadOutcome ok = read_all(chunk_with_zstd_block(frame, static_cast<uint32_t>(one_record_block(1000).size())));
  ASSERT_OK(ok.status);
  ASSERT_EQ(ok.records.size(), 1u);
  EXPECT_EQ(ok.records[0].data, std::string(1000, 'z'));
}

TEST(ChunkFormat, TrailingBytesAfterTheZstdFrameAreCorruption) {
  std::string raw = one_record_block(100);
  std::string frame = zstd_frame(raw, true) + "xx";
  ReadOutcome out = read_all(chunk_with_zstd_block(frame, static_cast<uint32_t>(raw.size())));
  EXPECT_EQ(out.status.code(), StatusCode::kCorruption);
  EXPECT_THAT(out.status.message(), HasSubstr("exactly one zstd frame"));
}

TEST(ChunkFormat, LargeCompressedRecordRoundTripsThroughIncrementalDecompression) {
  // Above the eager limit (8 MiB) blocks decompress incrementally; with and without a declared
  // frame size.
  const size_t len = (size_t{9} << 20) + 123;
  std::string raw = one_record_block(len);
  for (bool declared : {true, false}) {
    SCOPED_TRACE(declared);
    ReadOutcome out = read_all(chunk_with_zstd_block(zstd_frame(raw, declared), static_cast<uint32_t>(raw.size())));
    ASSERT_OK(out.status);
    ASSERT_EQ(out.records.size(), 1u);
    EXPECT_EQ(out.records[0].data.size(), len);
  }
  std::string big(len, 'q');
  ReadOutcome written = read_all(write_chunk({{3, big}}));
  ASSERT_OK(written.status);
  ASSERT_EQ(written.records.size(), 1u);
  EXPECT_EQ(written.records[0].data, big);
}

}  // namespace
}  // namespace tidemark::storage
