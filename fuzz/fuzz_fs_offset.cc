// File-source offset decoder (FsSource::seek, docs/format/fs-source-offset.md). Both key
// modes are fuzzed (first input byte: bit 0 = primary-key source). An accepted offset must
// re-encode to an offset that decodes to the same table, and the source must then still scan
// (its one file is "modified", so the old rows are retracted from what is known).
#include <cstdint>
#include <string>

#include "fuzz_common.h"
#include "fs_fuzz_util.h"

using namespace tidemark;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  io::fs::ReadOptions o;
  o.format = io::Format::kCsv;
  o.schema = Schema{{"k", t_str()}, {"v", optional(t_int())}};
  if (data[0] & 1) o.primary_key = {"k"};
  o.skip_bad_rows = true;
  std::string_view offset = fuzz::as_view(data + 1, size - 1);
  connectors::FsSource source(std::make_unique<fuzz::MemoryLister>("in/a.csv", "k,v\nx,1\ny,2\n"), o);
  Status st = source.seek(offset);
  fuzz::expect_status(st, {StatusCode::kCorruption, StatusCode::kNotSupported}, "FsSource::seek");
  if (!st.is_ok()) return 0;
  std::string again = source.offset();
  connectors::FsSource other(std::make_unique<fuzz::MemoryLister>("in/a.csv", ""), o);
  fuzz::check(other.seek(again).is_ok() && other.offset() == again, "offset round trip");
  std::vector<engine::Update> rows;
  Status read = fuzz::read_all(source, &rows);
  fuzz::expect_status(read, {StatusCode::kCorruption, StatusCode::kInvalidArgument, StatusCode::kFailedPrecondition},
                      "reading after seek");
  return 0;
}
