// FsSource::seek against damaged offsets (docs/format/fs-source-offset.md; regressions from
// fuzz/fuzz_fs_offset.cc): Corruption, and allocations bounded by the bytes present.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "connectors/fs_source.h"
#include "engine/codec.h"

namespace tidemark::connectors {
namespace {

// One file entry claiming `keys` primary keys, followed by `present` bytes.
std::string offset_claiming_keys(uint64_t keys, size_t present) {
  std::string s;
  codec::put_u8(s, 1);       // version
  codec::put_varint(s, 1);   // one file
  codec::put_bytes(s, "in/a.csv");
  codec::put_u64(s, 10);     // size
  codec::put_i64(s, 1);      // mtime
  codec::put_u64(s, 99);     // hash
  codec::put_varint(s, keys);  // rows
  codec::put_i64(s, 2);      // read_ns
  codec::put_varint(s, keys);  // key count
  s.append(present, '\0');
  return s;
}

TEST(FsOffsetBounds, KeyCountBeyondTheBytesIsCorruptionBeforeAllocating) {
  io::fs::ReadOptions o;
  o.format = io::Format::kCsv;
  o.schema = Schema{{"k", t_str()}};
  o.primary_key = {"k"};
  FsSource source("/nonexistent-input", o);
  // 4000 bytes left: enough for 250 keys. A count of 4000 used to be accepted up front (one
  // byte per key) and allocated 64 KB of keys before failing; a count of 250 is fine.
  Status st = source.seek(offset_claiming_keys(4000, 4000));
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_THAT(st.message(), ::testing::HasSubstr("bad offset"));
  EXPECT_TRUE(source.seek(offset_claiming_keys(250, 4000)).is_ok());
}

}  // namespace
}  // namespace tidemark::connectors
