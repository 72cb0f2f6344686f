// JSON-lines parsing (src/connectors/formats.*: json_to_value; the line splitting of the file
// source) over a schema with every parsed type, bad rows skipped or reported.
#include <cstdint>
#include <string>

#include "connectors/formats.h"
#include "fuzz_common.h"
#include "fs_fuzz_util.h"

using namespace tidemark;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  std::string content(reinterpret_cast<const char*>(data + 1), size - 1);
  io::fs::ReadOptions o;
  o.format = io::Format::kJsonLines;
  o.schema = Schema{{"a", optional(t_any())}, {"i", optional(t_int())}, {"f", optional(t_float())},
                    {"b", optional(t_bool())}, {"s", optional(t_str())}, {"j", optional(t_json())},
                    {"t", optional(t_bytes())}};
  o.skip_bad_rows = (flags & 1) != 0;
  if (flags & 2) o.primary_key = {"s", "i"};
  connectors::FsSource source(std::make_unique<fuzz::MemoryLister>("in/f.jsonl", content), o);
  std::vector<engine::Update> rows;
  Status st = fuzz::read_all(source, &rows);
  fuzz::expect_status(st, {StatusCode::kInvalidArgument}, "jsonlines read");
  // Values back to JSON and CSV text: every parsed value can be written out.
  for (const auto& u : rows)
    for (const auto& v : u.row) {
      (void)connectors::value_to_json(v);
      (void)connectors::csv_field(v);
    }
  return 0;
}
