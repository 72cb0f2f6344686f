#include "persistence/manifest.h"

#include <xxhash.h>

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <nlohmann/json.hpp>

#include "engine/codec.h"
#include "storage/chunk_format.h"

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
  return c;
}
}  // namespace

std::string encode_manifest(const Manifest& m) {
  json j;
  j["format_version"] = m.format_version;
  j["seq"] = m.seq;
  j["run"] = m.run;
  j["committed_time"] = m.committed_time;
  j["mode"] = m.mode;
  j["sources"] = json::array();
  for (const auto& s : m.sources) {
    json js{{"id", s.id}, {"schema", s.schema}, {"chunks", json::array()}};
    if (s.has_offset) js["offset"] = to_hex(s.offset);
    for (const auto& c : s.chunks) js["chunks"].push_back(chunk_json(c));
    j["sources"].push_back(std::move(js));
  }
  j["operators"] = json::array();
  for (const auto& o : m.operators) {
    json jo{{"id", o.id}, {"kind", o.kind}, {"label", o.label}, {"signature", o.signature}, {"chunks", json::array()}};
    for (const auto& c : o.chunks) jo["chunks"].push_back(chunk_json(c));
    j["operators"].push_back(std::move(jo));
  }
  j["sinks"] = json::array();
  for (const auto& s : m.sinks) j["sinks"].push_back({{"id", s.id}, {"position", s.position}});
  storage::ChunkWriter w(storage::ChunkWriterOptions{.compress = false});
  Status st = w.append(kRecordManifest, j.dump());
  (void)st;  // a manifest is far below the record size limit
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
    m.committed_time = uint_field(j, "committed_time");
    m.mode = j.value("mode", "");
    for (const auto& js : j.at("sources")) {
      SourceState s;
      s.id = js.at("id").get<std::string>();
      s.schema = js.at("schema").get<std::string>();
      if (js.contains("offset")) {
        if (!from_hex(js.at("offset").get<std::string>(), &s.offset))
          return Status::corruption("manifest '" + key + "': bad offset of source '" + s.id + "'");
        s.has_offset = true;
      }
      for (const auto& jc : js.at("chunks")) s.chunks.push_back(chunk_from_json(jc));
      m.sources.push_back(std::move(s));
    }
    if (j.contains("operators"))
      for (const auto& jo : j.at("operators")) {
        OperatorState o;
        o.id = jo.at("id").get<std::string>();
        o.kind = jo.at("kind").get<std::string>();
        o.label = jo.value("label", "");
        o.signature = jo.at("signature").get<std::string>();
        for (const auto& jc : jo.at("chunks")) o.chunks.push_back(chunk_from_json(jc));
        m.operators.push_back(std::move(o));
      }
    for (const auto& js : j.at("sinks"))
      m.sinks.push_back({js.at("id").get<std::string>(), js.at("position").get<std::string>()});
  } catch (const json::exception& e) {
    return Status::corruption("manifest '" + key + "' is malformed: " + e.what());
  } catch (const BadField& e) {
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
    s.chunks.push_back({key, n, data.size(), chunk_max});
    max_time = std::max(max_time, chunk_max);
    m.sources.push_back(std::move(s));
  }
  m.committed_time = max_time;
  return store.put(manifest_key(m.seq), encode_manifest(m));
}

}  // namespace tidemark::persistence
