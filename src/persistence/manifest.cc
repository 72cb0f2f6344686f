#include "persistence/manifest.h"

#include <xxhash.h>

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <nlohmann/json.hpp>

#include "engine/codec.h"
#include "storage/chunk_format.h"
#include "storage/crc32c.h"

namespace tidemark::persistence {

using nlohmann::json;

const SourceState* Manifest::find_source(const std::string& id) const {
  for (const auto& s : sources)
    if (s.id == id) return &s;
  return nullptr;
}
const OperatorState* Manifest::find_operator(const std::string& id) const {
  for (const auto& o : operators)
    if (o.id == id) return &o;
  return nullptr;
}
const SinkState* Manifest::find_sink(const std::string& id) const {
  for (const auto& s : sinks)
    if (s.id == id) return &s;
  return nullptr;
}

std::string manifest_key(uint64_t seq) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "manifests/%020llu", static_cast<unsigned long long>(seq));
  return buf;
}

std::string stream_prefix(const std::string& source_id) {
  XXH128_hash_t h = XXH3_128bits(source_id.data(), source_id.size());
  char buf[64];
  std::snprintf(buf, sizeof buf, "streams/%016llx%016llx/", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return buf;
}

std::string chunk_key(const std::string& source_id, uint64_t run, uint64_t seq) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%010llu-%010llu", static_cast<unsigned long long>(run),
                static_cast<unsigned long long>(seq));
  return stream_prefix(source_id) + buf;
}

namespace {
std::string to_hex(std::string_view s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out.push_back(d[c >> 4]);
    out.push_back(d[c & 15]);
  }
  return out;
}
bool from_hex(const std::string& s, std::string* out) {
  if (s.size() % 2) return false;
  out->clear();
  auto v = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < s.size(); i += 2) {
    int a = v(s[i]), b = v(s[i + 1]);
    if (a < 0 || b < 0) return false;
    out->push_back(static_cast<char>(a * 16 + b));
  }
  return true;
}
json chunk_json(const ChunkRef& c) {
  json j{{"key", c.key}, {"records", c.records}, {"bytes", c.bytes}, {"max_time", c.max_time}};
  if (c.level) j["level"] = c.level;
  if (c.has_crc) j["crc32c"] = c.crc32c;
  return j;
}
// Integer fields must be JSON unsigned integers in range: nlohmann's get<uint64_t>() converts
// a float by a cast, which is undefined behavior for 1e300 or -1.5.
struct BadField : std::runtime_error {
  using std::runtime_error::runtime_error;
};
uint64_t uint_field(const json& j, const char* name, uint64_t max = UINT64_MAX) {
  const json& v = j.at(name);
  if (!v.is_number_unsigned() || v.get<uint64_t>() > max)
    throw BadField(std::string("field '") + name + "' is not an unsigned integer" +
                   (max == UINT64_MAX ? "" : " up to " + std::to_string(max)));
  return v.get<uint64_t>();
}

ChunkRef chunk_from_json(const json& jc) {
  ChunkRef c{jc.at("key").get<std::string>(), uint_field(jc, "records"), uint_field(jc, "bytes"),
             uint_field(jc, "max_time")};
  c.level = jc.contains("level") ? static_cast<uint32_t>(uint_field(jc, "level", UINT32_MAX)) : 0;
  if (jc.contains("crc32c")) {
    c.crc32c = static_cast<uint32_t>(uint_field(jc, "crc32c", UINT32_MAX));
    c.has_crc = true;
  }
  return c;
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) {
      unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d >> 6) != 2) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n;
  }
  return true;
}

// A name in the manifest: as is when valid UTF-8, else a readable form (invalid bytes
// replaced) plus "<field>_hex" with the exact bytes.
void put_text(json& j, const char* field, const std::string& s) {
  if (valid_utf8(s)) {
    j[field] = s;
    return;
  }
  j[field] = json(s).dump(-1, ' ', false, json::error_handler_t::replace);
  j[std::string(field) + "_hex"] = to_hex(s);
}
std::string get_text(const json& j, const char* field) {
  auto hex = j.find(std::string(field) + "_hex");
  if (hex != j.end()) {
    std::string out;
    if (!hex->is_string() || !from_hex(hex->get<std::string>(), &out))
      throw std::runtime_error(std::string("bad ") + field + "_hex");
    return out;
  }
  return j.at(field).get<std::string>();
}
}  // namespace

ChunkRef make_chunk_ref(std::string key, std::string_view data, uint64_t records, uint64_t max_time, uint32_t level) {
  ChunkRef c;
  c.key = std::move(key);
  c.records = records;
  c.bytes = data.size();
  c.max_time = max_time;
  c.level = level;
  c.crc32c = storage::crc32c_value(data);
  c.has_crc = true;
  return c;
}

Status check_chunk_object(const std::string& store_name, const ChunkRef& ref, std::string_view data) {
  if (data.size() != ref.bytes)
    return Status::corruption("object '" + store_name + "/" + ref.key + "' has " + std::to_string(data.size()) +
                              " bytes, the manifest recorded " + std::to_string(ref.bytes));
  if (ref.has_crc && storage::crc32c_value(data) != ref.crc32c)
    return Status::corruption("object '" + store_name + "/" + ref.key +
                              "' does not match the checksum the manifest recorded (damaged or replaced)");
  return Status::ok();
}

uint64_t epoch_of_key(const std::string& key) {
  size_t slash = key.rfind('/');
  std::string_view name = std::string_view(key).substr(slash == std::string::npos ? 0 : slash + 1);
  size_t dash = name.find('-');
  if (dash == std::string_view::npos) return 0;
  // "<epoch:10>-<n:10>" (chunks) or "<hash:16 hex>-<epoch:10>" (contents)
  std::string_view digits = dash == 16 ? name.substr(17) : name.substr(0, dash);
  uint64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return 0;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

Result<std::string> encode_manifest(const Manifest& m) {
  json j;
  j["format_version"] = m.format_version;
  j["seq"] = m.seq;
  j["run"] = m.run;
  j["writer"] = m.writer;
  j["committed_time"] = m.committed_time;
  j["mode"] = m.mode;
  if (m.workers != 1) j["workers"] = m.workers;
  j["sources"] = json::array();
  for (const auto& s : m.sources) {
    json js{{"chunks", json::array()}};
    put_text(js, "id", s.id);
    put_text(js, "schema", s.schema);
    if (s.has_offset) js["offset"] = to_hex(s.offset);
    for (const auto& c : s.chunks) js["chunks"].push_back(chunk_json(c));
    if (!s.contents.empty()) {
      js["contents"] = json::array();
      for (const auto& c : s.contents) {
        json jc{{"hash", c.hash}, {"key", c.key}, {"bytes", c.bytes}};
        if (c.has_crc) jc["crc32c"] = c.crc32c;
        js["contents"].push_back(std::move(jc));
      }
    }
    j["sources"].push_back(std::move(js));
  }
  j["operators"] = json::array();
  for (const auto& o : m.operators) {
    json jo{{"chunks", json::array()}};
    put_text(jo, "id", o.id);
    put_text(jo, "kind", o.kind);
    put_text(jo, "label", o.label);
    put_text(jo, "signature", o.signature);
    for (const auto& c : o.chunks) jo["chunks"].push_back(chunk_json(c));
    j["operators"].push_back(std::move(jo));
  }
  j["sinks"] = json::array();
  for (const auto& s : m.sinks) {
    json js;
    put_text(js, "id", s.id);
    put_text(js, "position", s.position);
    j["sinks"].push_back(std::move(js));
  }
  storage::ChunkWriter w(storage::ChunkWriterOptions{.compress = false});
  Status st = w.append(kRecordManifest, j.dump());
  if (!st.is_ok()) return st.with_context("manifest " + std::to_string(m.seq));
  return w.finish();
}

Result<Manifest> decode_manifest(const std::string& key, std::string_view data) {
  TM_ASSIGN_OR_RETURN(auto reader, storage::ChunkReader::open(key, data));
  TM_ASSIGN_OR_RETURN(auto rec, reader.next());
  if (!rec) {
    TM_RETURN_IF_ERROR(reader.torn_tail_status());
    return Status::corruption("manifest '" + key + "' is empty");
  }
  if (rec->type != kRecordManifest)
    return Status::corruption("manifest '" + key + "' holds a record of type " + std::to_string(rec->type));
  Manifest m;
  try {
    json j = json::parse(rec->data);
    m.format_version = static_cast<uint32_t>(uint_field(j, "format_version", UINT32_MAX));
    if (m.format_version > kManifestFormatVersion)
      return Status::not_supported("manifest '" + key + "' has format version " + std::to_string(m.format_version) +
                                   ", this build reads up to " + std::to_string(kManifestFormatVersion) +
                                   "; upgrade Tidemark");
    m.seq = uint_field(j, "seq");
    m.run = uint_field(j, "run");
    m.writer = j.value("writer", "");
    m.committed_time = uint_field(j, "committed_time");
    m.mode = j.value("mode", "");
    m.workers = j.contains("workers") ? uint_field(j, "workers") : 1;
    for (const auto& js : j.at("sources")) {
      SourceState s;
      s.id = get_text(js, "id");
      s.schema = get_text(js, "schema");
      if (js.contains("offset")) {
        if (!from_hex(js.at("offset").get<std::string>(), &s.offset))
          return Status::corruption("manifest '" + key + "': bad offset of source '" + s.id + "'");
        s.has_offset = true;
      }
      for (const auto& jc : js.at("chunks")) s.chunks.push_back(chunk_from_json(jc));
      if (js.contains("contents"))
        for (const auto& jc : js.at("contents"))
          s.contents.push_back({uint_field(jc, "hash"), jc.at("key").get<std::string>(), uint_field(jc, "bytes"),
                                jc.contains("crc32c") ? static_cast<uint32_t>(uint_field(jc, "crc32c", UINT32_MAX)) : 0u,
                                jc.contains("crc32c")});
      m.sources.push_back(std::move(s));
    }
    if (j.contains("operators"))
      for (const auto& jo : j.at("operators")) {
        OperatorState o;
        o.id = get_text(jo, "id");
        o.kind = get_text(jo, "kind");
        o.label = jo.contains("label") ? get_text(jo, "label") : "";
        o.signature = get_text(jo, "signature");
        for (const auto& jc : jo.at("chunks")) o.chunks.push_back(chunk_from_json(jc));
        m.operators.push_back(std::move(o));
      }
    for (const auto& js : j.at("sinks")) m.sinks.push_back({get_text(js, "id"), get_text(js, "position")});
  } catch (const std::exception& e) {  // json::exception, BadField, bad _hex names
    return Status::corruption("manifest '" + key + "' is malformed: " + e.what());
  }
  return m;
}

Result<std::optional<Manifest>> read_latest_manifest(storage::ObjectStore& store) {
  TM_ASSIGN_OR_RETURN(auto list, store.list(kManifestPrefix));
  if (list.empty()) return std::optional<Manifest>();
  const std::string& key = list.back().key;  // zero-padded sequence numbers sort by number
  TM_ASSIGN_OR_RETURN(std::string data, store.get(key));
  TM_ASSIGN_OR_RETURN(Manifest m, decode_manifest(store.describe() + "/" + key, data));
  return std::optional<Manifest>(std::move(m));
}

std::string encode_update_payload(const engine::Update& u) {
  std::string s;
  codec::put_key(s, u.key);
  codec::put_row(s, u.row);
  uint64_t mult = static_cast<uint64_t>(u.diff < 0 ? -u.diff : u.diff);
  codec::put_varint(s, mult);
  return s;
}

std::string encode_advance_payload(uint64_t time, std::string_view offset) {
  std::string s;
  codec::put_u64(s, time);
  codec::put_bytes(s, offset);
  return s;
}

Status read_input_chunk(const std::string& key, std::string_view data, std::vector<InputEvent>* out) {
  TM_ASSIGN_OR_RETURN(auto reader, storage::ChunkReader::open(key, data));
  for (;;) {
    TM_ASSIGN_OR_RETURN(auto rec, reader.next());
    if (!rec) break;
    InputEvent e;
    e.type = rec->type;
    std::string_view p = rec->data;
    switch (rec->type) {
      case kRecordInsert:
      case kRecordDelete: {
        uint64_t mult;
        // A multiplicity above INT64_MAX has no diff (negating it was undefined behavior).
        if (!codec::get_key(p, &e.update.key) || !codec::get_row(p, &e.update.row) || !codec::get_varint(p, &mult) ||
            !p.empty() || mult > static_cast<uint64_t>(INT64_MAX))
          return Status::corruption("chunk '" + key + "': malformed row record");
        e.update.diff = rec->type == kRecordInsert ? static_cast<int64_t>(mult) : -static_cast<int64_t>(mult);
        break;
      }
      case kRecordAdvance:
        if (!codec::get_u64(p, &e.time) || !codec::get_bytes(p, &e.offset) || !p.empty())
          return Status::corruption("chunk '" + key + "': malformed advance-time record");
        break;
      case kRecordFinished:
        break;
      default:
        return Status::corruption("chunk '" + key + "': unknown record type " + std::to_string(rec->type));
    }
    out->push_back(std::move(e));
  }
  // Chunks are published atomically: a torn tail is damage, not a crashed writer.
  return reader.torn_tail_status();
}

Status write_mock_state(storage::ObjectStore& store, const std::map<std::string, std::vector<SnapshotEvent>>& events) {
  Manifest m;
  m.seq = 1;
  m.run = 0;
  m.mode = "mock";
  uint64_t max_time = 0;
  for (const auto& [name, evs] : events) {
    storage::ChunkWriter w;
    SourceState s;
    s.id = name;
    uint64_t chunk_max = 0;
    for (const auto& e : evs) {
      switch (e.kind) {
        case SnapshotEvent::Kind::kInsert:
          TM_RETURN_IF_ERROR(w.append(kRecordInsert, encode_update_payload({e.key, e.values, 1})));
          break;
        case SnapshotEvent::Kind::kDelete:
          TM_RETURN_IF_ERROR(w.append(kRecordDelete, encode_update_payload({e.key, e.values, -1})));
          break;
        case SnapshotEvent::Kind::kAdvanceTime:
          TM_RETURN_IF_ERROR(w.append(kRecordAdvance, encode_advance_payload(e.time, e.offset)));
          chunk_max = std::max(chunk_max, e.time);
          s.offset = e.offset;
          s.has_offset = !e.offset.empty();
          break;
        case SnapshotEvent::Kind::kFinished:
          TM_RETURN_IF_ERROR(w.append(kRecordFinished, ""));
          break;
      }
    }
    uint64_t n = w.record_count();
    std::string data = w.finish();
    std::string key = chunk_key(name, 0, 1);
    TM_RETURN_IF_ERROR(store.put(key, data));
    s.chunks.push_back(make_chunk_ref(key, data, n, chunk_max));
    max_time = std::max(max_time, chunk_max);
    m.sources.push_back(std::move(s));
  }
  m.committed_time = max_time;
  TM_ASSIGN_OR_RETURN(std::string encoded, encode_manifest(m));
  return store.put(manifest_key(m.seq), encoded);
}

}  // namespace tidemark::persistence
