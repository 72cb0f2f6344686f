// CSV parsing (src/connectors/formats.*: CsvReader, parse_field) through the file source, with
// bad rows skipped and with them reported, over a schema with every parsed type.
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
  // The reader alone, with a delimiter chosen by the input.
  {
    const char delims[] = {',', ';', '\t', '|'};
    connectors::CsvReader reader(content, delims[flags & 3]);
    std::vector<connectors::CsvField> fields;
    std::string err;
    size_t records = 0;
    while (reader.next(&fields, &err)) {
      fuzz::check(++records <= content.size() + 1, "CSV records bounded by the input");
      for (const auto& f : fields)
        for (const Type& t : {Type{DType::kAny, false}, Type{DType::kInt, true}, Type{DType::kFloat, false},
                              Type{DType::kBool, false}, Type{DType::kJson, true}, Type{DType::kBytes, false}})
          (void)connectors::parse_field(f, t);
      err.clear();
    }
  }
  io::fs::ReadOptions o;
  o.format = io::Format::kCsv;
  o.schema = Schema{{"a", t_any()}, {"i", optional(t_int())}, {"f", t_float()}, {"b", optional(t_bool())},
                    {"s", t_str()}, {"j", optional(t_json())}};
  o.skip_bad_rows = (flags & 4) != 0;
  if (flags & 8) o.primary_key = {"s"};
  connectors::FsSource source(std::make_unique<fuzz::MemoryLister>("in/f.csv", content), o);
  std::vector<engine::Update> rows;
  Status st = fuzz::read_all(source, &rows);
  fuzz::expect_status(st, {StatusCode::kInvalidArgument}, "csv read");
  return 0;
}
