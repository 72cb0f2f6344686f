// Decoders of persisted objects against damaged or hostile bytes (regressions from fuzz/):
// every case must come back as a Corruption status naming the object, never as undefined
// behavior, an escaping exception or a huge allocation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "engine/codec.h"
#include "persistence/manifest.h"
#include "persistence/state_store.h"
#include "storage/chunk_format.h"

namespace tidemark::persistence {
namespace {

using ::testing::HasSubstr;

std::string manifest_chunk(const std::string& json_text) {
  storage::ChunkWriter w;
  EXPECT_TRUE(w.append(kRecordManifest, json_text).is_ok());
  return w.finish();
}

const char* kValidManifest =
    R"({"format_version": 2, "seq": 3, "run": 1, "committed_time": 7, "mode": "persisting",)"
    R"( "sources": [{"id": "s", "schema": "x", "chunks": [{"key": "streams/a/1", "records": 2,)"
    R"( "bytes": 40, "max_time": 7, "level": 1}]}], "sinks": [], "operators": []})";

TEST(DecoderBounds, ValidManifestDecodes) {
  auto m = decode_manifest("m/1", manifest_chunk(kValidManifest));
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  EXPECT_EQ(m->seq, 3u);
  ASSERT_EQ(m->sources.size(), 1u);
  EXPECT_EQ(m->sources[0].chunks[0].level, 1u);
}

TEST(DecoderBounds, ManifestNumbersThatAreNotUnsignedIntegersAreCorruption) {
  // Converting 1e300 or -1.5 to an integer was undefined behavior (nlohmann's get<uint64_t>
  // casts floats); now each is Corruption naming the manifest and the field.
  const std::string base = kValidManifest;
  struct Case {
    std::string from, to, field;
  };
  std::vector<Case> cases = {
      {R"("seq": 3)", R"("seq": 1e300)", "seq"},
      {R"("run": 1)", R"("run": -1.5)", "run"},
      {R"("committed_time": 7)", R"("committed_time": -7)", "committed_time"},
      {R"("format_version": 2)", R"("format_version": 4294967298)", "format_version"},
      {R"("records": 2)", R"("records": 1e19)", "records"},
      {R"("bytes": 40)", R"("bytes": "40")", "bytes"},
      {R"("max_time": 7)", R"("max_time": 7.5)", "max_time"},
      {R"("level": 1)", R"("level": 4294967296)", "level"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.to);
    std::string text = base;
    ASSERT_NE(text.find(c.from), std::string::npos);
    text.replace(text.find(c.from), c.from.size(), c.to);
    auto m = decode_manifest("store/manifests/00000000000000000003", manifest_chunk(text));
    ASSERT_FALSE(m.is_ok());
    EXPECT_EQ(m.status().code(), StatusCode::kCorruption);
    EXPECT_THAT(m.status().message(), HasSubstr("manifest 'store/manifests/00000000000000000003'"));
    EXPECT_THAT(m.status().message(), HasSubstr(c.field));
  }
}

TEST(DecoderBounds, InputChunkWithDeeplyNestedValueIsCorruption) {
  // An insert record whose row holds 300,000 nested tuples: refused, not a stack overflow.
  std::string payload;
  codec::put_key(payload, Key{1, 2});
  codec::put_varint(payload, 1);
  for (int i = 0; i < 300'000; ++i) {
    codec::put_u8(payload, static_cast<uint8_t>(DType::kTuple));
    codec::put_varint(payload, 1);
  }
  codec::put_u8(payload, static_cast<uint8_t>(DType::kNone));
  codec::put_varint(payload, 1);
  storage::ChunkWriter w;
  ASSERT_TRUE(w.append(kRecordInsert, payload).is_ok());
  std::vector<InputEvent> events;
  Status st = read_input_chunk("store/streams/x/1", w.finish(), &events);
  EXPECT_EQ(st.code(), StatusCode::kCorruption);
  EXPECT_THAT(st.message(), HasSubstr("store/streams/x/1"));
}

std::string row_record(uint64_t mult) {
  std::string payload;
  codec::put_key(payload, Key{7, 8});
  codec::put_row(payload, Row{Value("w")});
  codec::put_varint(payload, mult);
  return payload;
}

TEST(DecoderBounds, MultiplicityAboveInt64IsCorruption) {
  // 2^63 became INT64_MIN and a delete negated it (signed overflow).
  for (uint8_t type : {kRecordInsert, kRecordDelete}) {
    storage::ChunkWriter w;
    ASSERT_TRUE(w.append(type, row_record(uint64_t{1} << 63)).is_ok());
    std::vector<InputEvent> events;
    Status st = read_input_chunk("store/streams/x/2", w.finish(), &events);
    EXPECT_EQ(st.code(), StatusCode::kCorruption);
    EXPECT_THAT(st.message(), HasSubstr("store/streams/x/2"));
  }
}

TEST(DecoderBounds, MergedMultiplicitiesThatOverflowAreCorruption) {
  storage::ChunkWriter w;
  ASSERT_TRUE(w.append(kRecordInsert, row_record(static_cast<uint64_t>(INT64_MAX))).is_ok());
  ASSERT_TRUE(w.append(kRecordAdvance, encode_advance_payload(1, "")).is_ok());
  std::string chunk = w.finish();
  uint64_t records = 0, max_time = 0;
  auto merged = merge_input_chunks({{"streams/x/1", chunk}, {"streams/x/2", chunk}}, &records, &max_time);
  ASSERT_FALSE(merged.is_ok());
  EXPECT_EQ(merged.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(merged.status().message(), HasSubstr("overflow"));
  // One of them alone merges fine.
  EXPECT_TRUE(merge_input_chunks({{"streams/x/1", chunk}}, &records, &max_time).is_ok());
}

}  // namespace
}  // namespace tidemark::persistence
