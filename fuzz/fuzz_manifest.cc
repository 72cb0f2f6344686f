// Manifest decoder (decode_manifest in src/persistence/manifest.*). A decoded manifest must
// survive encode_manifest -> decode_manifest unchanged in its fields.
#include <cstdint>
#include <string>

#include "fuzz_common.h"
#include "persistence/manifest.h"

using namespace tidemark;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto m = persistence::decode_manifest("fuzz/manifests/00000000000000000001", fuzz::as_view(data, size));
  if (!m.is_ok()) {
    fuzz::expect_status(m.status(), {StatusCode::kCorruption, StatusCode::kNotSupported}, "decode_manifest");
    return 0;
  }
  auto again = persistence::encode_manifest(*m);
  fuzz::check(again.is_ok(), "a decoded manifest re-encodes");
  auto m2 = persistence::decode_manifest("fuzz/reencoded", *again);
  fuzz::check(m2.is_ok(), "a decoded manifest re-encodes to a decodable one");
  fuzz::check(m2->seq == m->seq && m2->run == m->run && m2->writer == m->writer &&
                  m2->committed_time == m->committed_time &&
                  m2->sources.size() == m->sources.size() && m2->operators.size() == m->operators.size() &&
                  m2->sinks.size() == m->sinks.size(),
              "manifest round trip");
  for (size_t i = 0; i < m->sources.size(); ++i)
    fuzz::check(m2->sources[i].id == m->sources[i].id && m2->sources[i].offset == m->sources[i].offset &&
                    m2->sources[i].chunks.size() == m->sources[i].chunks.size() &&
                    m2->sources[i].contents.size() == m->sources[i].contents.size(),
                "source round trip");
  return 0;
}
