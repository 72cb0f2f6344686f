// Value decoding bounds (regressions from fuzzing the state-entry and input-chunk decoders).
#include <gtest/gtest.h>

#include <string>

#include "engine/codec.h"

namespace tidemark::codec {
namespace {

// `depth` nested one-element tuples around None: tag kTuple, count 1, ..., tag kNone.
std::string nested_tuples(size_t depth) {
  std::string s;
  for (size_t i = 0; i < depth; ++i) {
    put_u8(s, static_cast<uint8_t>(DType::kTuple));
    put_varint(s, 1);
  }
  put_u8(s, static_cast<uint8_t>(DType::kNone));
  return s;
}

TEST(CodecBounds, DeeplyNestedTuplesAreRefusedNotAStackOverflow) {
  // Two bytes per level: a damaged megabyte would recurse half a million frames deep.
  std::string bytes = nested_tuples(500'000);
  std::string_view in = bytes;
  Value v;
  EXPECT_FALSE(get_value(in, &v));
  std::string row_bytes;
  put_varint(row_bytes, 1);
  row_bytes += bytes;
  std::string_view rin = row_bytes;
  Row r;
  EXPECT_FALSE(get_row(rin, &r));
}

TEST(CodecBounds, ReasonablyNestedTuplesStillDecode) {
  std::string bytes = nested_tuples(150);
  std::string_view in = bytes;
  Value v;
  ASSERT_TRUE(get_value(in, &v));
  EXPECT_TRUE(in.empty());
  std::string again;
  put_value(again, v);
  EXPECT_EQ(again, bytes);
}

TEST(CodecBounds, RowCountBeyondTheBytesIsRefused) {
  std::string s;
  put_varint(s, uint64_t{1} << 60);
  put_u8(s, static_cast<uint8_t>(DType::kNone));
  std::string_view in = s;
  Row r;
  EXPECT_FALSE(get_row(in, &r));
}

}  // namespace
}  // namespace tidemark::codec
