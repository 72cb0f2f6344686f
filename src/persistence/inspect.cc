#include "persistence/inspect.h"

#include "storage/crc32c.h"
#include "storage/s3_store.h"
#include "tidemark/persistence.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "persistence/state_store.h"
#include "storage/chunk_format.h"
#include "storage/format_constants.h"

namespace tidemark::persistence {
namespace {

using nlohmann::json;
using storage::ObjectInfo;

// A filesystem view with the same key mapping as the filesystem backend (dot-names are the
// backend's own and are skipped), but no way to write.
class ReadOnlyFilesystemStore final : public storage::ObjectStore {
 public:
  explicit ReadOnlyFilesystemStore(std::string root) : root_(std::move(root)) {}

  Result<std::string> get(std::string_view key) override {
    TM_RETURN_IF_ERROR(storage::validate_object_key(key));
    std::string path = root_ + "/" + std::string(key);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT || errno == ENOTDIR)
        return Status::not_found("object '" + std::string(key) + "' not found in " + describe());
      return Status::io_error("cannot open '" + path + "': " + std::strerror(errno));
    }
    std::string data;
    char buf[1 << 16];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int err = errno;
        ::close(fd);
        return Status::io_error("cannot read '" + path + "': " + std::strerror(err));
      }
      if (n == 0) break;
      data.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return data;
  }

  Status put(std::string_view, std::string_view) override { return read_only(); }
  Status put_if_absent(std::string_view, std::string_view) override { return read_only(); }
  Status remove(std::string_view) override { return read_only(); }

  Result<std::vector<ObjectInfo>> list(std::string_view prefix) override {
    TM_RETURN_IF_ERROR(storage::validate_list_prefix(prefix));
    namespace fs = std::filesystem;
    std::vector<ObjectInfo> out;
    std::error_code ec;
    fs::recursive_directory_iterator it(root_, ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      bool dir = it->is_directory(ec);
      if (ec) break;
      if (it->path().filename().string().starts_with('.')) {
        if (dir) it.disable_recursion_pending();
        continue;
      }
      if (dir || !it->is_regular_file(ec)) continue;
      std::string key = it->path().generic_string().substr(root_.size() + 1);
      if (!key.starts_with(prefix)) continue;
      uint64_t size = it->file_size(ec);
      if (ec) break;
      out.push_back({std::move(key), size});
    }
    if (ec) return Status::io_error("cannot list persistent storage '" + root_ + "': " + ec.message());
    std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
    return out;
  }

  std::string describe() const override { return "filesystem:" + root_; }

 private:
  Status read_only() const {
    return Status::failed_precondition("persistent storage " + describe() + " is opened read-only");
  }
  const std::string root_;
};

bool is_manifest(const std::string& key) { return key.starts_with(kManifestPrefix); }
// Chunks a manifest lists: input snapshots and operator states.
bool is_stream(const std::string& key) {
  return key.starts_with(kStreamsPrefix) || key.starts_with(kOperatorsPrefix);
}
bool is_operator(const std::string& key) { return key.starts_with(kOperatorsPrefix); }
bool is_content(const std::string& key) { return key.starts_with(kContentsPrefix); }
bool is_lock(const std::string& key) { return key == storage::format::kLockObjectKey; }

// Right-aligns columns whose header is in `right`; two spaces between columns.
std::string table(const std::vector<std::vector<std::string>>& rows, const std::set<size_t>& right,
                  const std::string& indent) {
  std::vector<size_t> width;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  std::string out;
  for (const auto& r : rows) {
    std::string line = indent;
    for (size_t i = 0; i < r.size(); ++i) {
      std::string pad(width[i] - r[i].size(), ' ');
      line += right.count(i) ? pad + r[i] : r[i] + (i + 1 < r.size() ? pad : "");
      if (i + 1 < r.size()) line += "  ";
    }
    line.erase(line.find_last_not_of(' ') + 1);  // empty trailing cells
    out += line + "\n";
  }
  return out;
}

std::string time_range(const SourceSummary& s) {
  if (s.chunks == 0) return "-";
  return (s.min_time ? std::to_string(*s.min_time) : "?") + ".." + std::to_string(s.max_time);
}

json objects_json(const std::vector<ObjectInfo>& objects) {
  json a = json::array();
  for (const auto& o : objects) a.push_back({{"key", o.key}, {"size", o.size}});
  return a;
}

std::string object_list_text(const std::string& title, const std::vector<ObjectInfo>& objects) {
  if (objects.empty()) return title + ": none\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& o : objects) rows.push_back({o.key, format_size(o.size)});
  return title + ":\n" + table(rows, {1}, "  ");
}

struct Totals {
  uint64_t chunks = 0, records = 0, bytes = 0;
};
Totals totals_of(const StorageSummary& s) {
  Totals t;
  for (const auto& src : s.sources) {
    t.chunks += src.chunks;
    t.records += src.records;
    t.bytes += src.bytes;
  }
  return t;
}

// Reads every record of a chunk: CRCs and structure only, since the record types are the
// caller's. A torn tail is damage (every persistence object is published atomically).
Result<uint64_t> count_records(const std::string& key, std::string_view data) {
  TM_ASSIGN_OR_RETURN(auto reader, storage::ChunkReader::open(key, data));
  uint64_t n = 0;
  for (;;) {
    TM_ASSIGN_OR_RETURN(auto rec, reader.next());
    if (!rec) break;
    ++n;
  }
  TM_RETURN_IF_ERROR(reader.torn_tail_status());
  return n;
}

}  // namespace

Result<std::unique_ptr<storage::ObjectStore>> open_storage_read_only(const std::string& location) {
  std::string path = location;
  if (path.starts_with("file://")) {
    path = path.substr(7);
  } else if (path.starts_with("s3://")) {
    // Credentials, region and endpoint from the AWS_* environment; inspect and verify only
    // call get and list.
    TM_ASSIGN_OR_RETURN(storage::S3Options o, storage::s3_options_from_settings({}, path));
    return storage::open_s3_store(o);
  } else if (size_t scheme = path.find("://"); scheme != std::string::npos) {
    return Status::not_supported("storage '" + location + "': " + path.substr(0, scheme) +
                                 ":// storage is not supported in this build yet; give a filesystem path");
  }
  if (path.empty()) return Status::invalid_argument("persistent storage path is empty");
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return Status::invalid_argument("persistent storage '" + path + "' cannot be opened: " + std::strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return Status::invalid_argument("persistent storage '" + path + "' is not a directory");
  return std::unique_ptr<storage::ObjectStore>(std::make_unique<ReadOnlyFilesystemStore>(path));
}

Result<StorageSummary> inspect_storage(storage::ObjectStore& store) {
  StorageSummary s;
  s.storage = store.describe();
  TM_ASSIGN_OR_RETURN(auto all, store.list(""));
  std::vector<ObjectInfo> manifests, streams;
  for (const auto& o : all) {
    ++s.objects;
    s.bytes += o.size;
    if (is_lock(o.key)) {
      auto data = store.get(o.key);
      auto info = data ? storage::decode_lock_info(*data) : Result<storage::LockHolderInfo>(data.status());
      if (info) s.lock = *info;
      else s.lock_error = info.status().message();
    } else if (is_manifest(o.key)) {
      manifests.push_back(o);
    } else if (is_stream(o.key)) {
      streams.push_back(o);
    } else if (is_content(o.key)) {
      ++s.contents;
      s.content_bytes += o.size;
    } else {
      s.other_objects.push_back(o);
    }
  }
  std::set<std::string> live;
  if (!manifests.empty()) {
    s.manifest_key = manifests.back().key;  // zero-padded sequence numbers sort by number
    s.older_manifests.assign(manifests.begin(), manifests.end() - 1);
    TM_ASSIGN_OR_RETURN(std::string data, store.get(s.manifest_key));
    TM_ASSIGN_OR_RETURN(Manifest m, decode_manifest(s.manifest_key, data));
    TM_ASSIGN_OR_RETURN(auto reader, storage::ChunkReader::open(s.manifest_key, data));
    s.manifest_chunk_version = reader.format_version();
    for (const auto& src : m.sources) {
      SourceSummary sum{src.id, src.schema, src.chunks.size(), 0, 0, std::nullopt, 0, src.offset.size()};
      for (const auto& c : src.chunks) {
        live.insert(c.key);
        sum.records += c.records;
        sum.bytes += c.bytes;
        sum.max_time = std::max(sum.max_time, c.max_time);
      }
      // Manifests keep only each chunk's max_time; the range's start is in the first chunk.
      // A damaged or missing first chunk leaves it unknown: that is verify's business.
      if (!src.chunks.empty()) {
        std::vector<InputEvent> events;
        auto first = store.get(src.chunks.front().key);
        if (first && read_input_chunk(src.chunks.front().key, *first, &events).is_ok())
          for (const auto& e : events)
            if (e.type == kRecordAdvance) {
              sum.min_time = e.time;
              break;
            }
      }
      s.sources.push_back(std::move(sum));
    }
    for (const auto& op : m.operators) {
      OperatorSummary sum{op.id, op.kind, op.label, op.signature, op.chunks.size()};
      for (const auto& c : op.chunks) {
        live.insert(c.key);
        sum.records += c.records;
        sum.bytes += c.bytes;
        sum.max_level = std::max(sum.max_level, c.level);
      }
      s.operators.push_back(std::move(sum));
    }
    s.manifest = std::move(m);
  }
  for (const auto& o : streams)
    if (!live.count(o.key)) s.garbage.push_back(o);
  if (s.manifest && s.manifest->format_version >= 3) {
    std::set<std::string> listed;
    for (const auto& src : s.manifest->sources)
      for (const auto& c : src.contents) listed.insert(c.key);
    for (const auto& o : all)
      if (is_content(o.key) && !listed.count(o.key)) s.garbage.push_back(o);
  }
  return s;
}

std::string format_summary_text(const StorageSummary& s, int64_t now_ms) {
  std::vector<std::vector<std::string>> head;
  head.push_back({"storage", s.storage});
  if (s.manifest) {
    const Manifest& m = *s.manifest;
    head.push_back({"format", "manifest v" + std::to_string(m.format_version) + ", chunks v" +
                                  std::to_string(s.manifest_chunk_version) + " (this build reads up to manifest v" +
                                  std::to_string(kManifestFormatVersion) + ", chunks v" +
                                  std::to_string(storage::format::kChunkMaxReadableVersion) + ")"});
    head.push_back({"manifest", s.manifest_key + " (seq " + std::to_string(m.seq) + ", run " + std::to_string(m.run) + ")"});
    head.push_back({"committed", std::to_string(m.committed_time) + " ms (" +
                                     format_iso8601_ms(static_cast<int64_t>(m.committed_time)) + ")"});
    head.push_back({"mode", m.mode.empty() ? "-" : m.mode});
  } else {
    head.push_back({"manifest", "none: nothing has been committed"});
  }
  if (s.lock && s.lock->released) {
    const auto& l = *s.lock;
    head.push_back({"lock", "none (last released by pid " + std::to_string(l.pid) + " on host " + l.host + ", " +
                                l.holder + ")"});
  } else if (s.lock) {
    const auto& l = *s.lock;
    bool expired = now_ms > l.lease_expires_at_ms;
    head.push_back({"lock", "pid " + std::to_string(l.pid) + " on host " + l.host + " (" + l.holder + ")"});
    head.push_back({"", "since " + format_iso8601_ms(l.started_at_ms) + ", lease " + (expired ? "expired " : "expires ") +
                            format_iso8601_ms(l.lease_expires_at_ms)});
  } else {
    head.push_back({"lock", s.lock_error.empty() ? "none" : "unreadable: " + s.lock_error});
  }
  std::string out = table(head, {}, "");

  if (s.manifest) {
    std::vector<std::vector<std::string>> rows{{"SOURCE", "SCHEMA", "CHUNKS", "RECORDS", "BYTES", "TIMES", "OFFSET"}};
    for (const auto& src : s.sources)
      rows.push_back({src.id, src.schema, std::to_string(src.chunks), std::to_string(src.records),
                      format_size(src.bytes), time_range(src), format_size(src.offset_bytes)});
    Totals t = totals_of(s);
    rows.push_back({"total", std::to_string(s.sources.size()) + " sources", std::to_string(t.chunks),
                    std::to_string(t.records), format_size(t.bytes), "", ""});
    out += "\n" + table(rows, {2, 3, 4}, "");
    if (!s.operators.empty()) {
      std::vector<std::vector<std::string>> ops{{"OPERATOR", "KIND", "CHUNKS", "LEVELS", "ENTRIES", "BYTES"}};
      uint64_t chunks = 0, records = 0, bytes = 0;
      for (const auto& o : s.operators) {
        ops.push_back({o.label.empty() ? o.id : o.label, o.kind, std::to_string(o.chunks),
                       std::to_string(o.max_level + 1), std::to_string(o.records), format_size(o.bytes)});
        chunks += o.chunks;
        records += o.records;
        bytes += o.bytes;
      }
      ops.push_back({"total", std::to_string(s.operators.size()) + " states", std::to_string(chunks), "",
                     std::to_string(records), format_size(bytes)});
      out += "\n" + table(ops, {2, 3, 4, 5}, "");
    }
    if (s.contents)
      out += "\narchived file contents: " + std::to_string(s.contents) + " (" + format_size(s.content_bytes) + ")\n";
    std::vector<std::vector<std::string>> sinks{{"SINK", "POSITION"}};
    for (const auto& k : s.manifest->sinks) sinks.push_back({k.id, k.position.empty() ? "-" : k.position});
    out += "\n" + table(sinks, {}, "");
  }
  out += "\nobjects: " + std::to_string(s.objects) + " (" + format_size(s.bytes) + ")\n";
  out += object_list_text("older manifests (deleted at the next start)", s.older_manifests);
  out += object_list_text("unreferenced chunks (deleted at the next start)", s.garbage);
  if (!s.other_objects.empty()) out += object_list_text("objects persistence does not own", s.other_objects);
  return out;
}

std::string format_summary_json(const StorageSummary& s, int64_t now_ms) {
  json j;
  j["storage"] = s.storage;
  j["readable_format_versions"] = {{"manifest", kManifestFormatVersion},
                                   {"chunk", storage::format::kChunkMaxReadableVersion}};
  j["manifest"] = nullptr;
  j["sources"] = json::array();
  j["sinks"] = json::array();
  if (s.manifest) {
    const Manifest& m = *s.manifest;
    j["manifest"] = {{"key", s.manifest_key},
                     {"format_version", m.format_version},
                     {"chunk_format_version", s.manifest_chunk_version},
                     {"seq", m.seq},
                     {"run", m.run},
                     {"epoch", m.run},
                     {"writer", m.writer},
                     {"committed_time_ms", m.committed_time},
                     {"committed_time", format_iso8601_ms(static_cast<int64_t>(m.committed_time))},
                     {"mode", m.mode}};
    for (const auto& src : s.sources)
      j["sources"].push_back({{"id", src.id},
                              {"schema", src.schema},
                              {"chunks", src.chunks},
                              {"records", src.records},
                              {"bytes", src.bytes},
                              {"min_time", src.min_time ? json(*src.min_time) : json(nullptr)},
                              {"max_time", src.chunks ? json(src.max_time) : json(nullptr)},
                              {"offset_bytes", src.offset_bytes}});
    for (const auto& k : m.sinks) j["sinks"].push_back({{"id", k.id}, {"position", k.position}});
  }
  j["operators"] = json::array();
  for (const auto& o : s.operators)
    j["operators"].push_back({{"id", o.id},
                              {"kind", o.kind},
                              {"label", o.label},
                              {"signature", o.signature},
                              {"chunks", o.chunks},
                              {"levels", o.max_level + 1},
                              {"records", o.records},
                              {"bytes", o.bytes}});
  j["contents"] = {{"objects", s.contents}, {"bytes", s.content_bytes}};
  j["lock"] = nullptr;
  if (s.lock && s.lock->released) {
    j["lock_released_by"] = {{"holder", s.lock->holder}, {"pid", s.lock->pid}, {"host", s.lock->host},
                             {"token", s.lock->token}};
  } else if (s.lock) {
    const auto& l = *s.lock;
    j["lock"] = {{"holder", l.holder},
                 {"pid", l.pid},
                 {"host", l.host},
                 {"since_ms", l.started_at_ms},
                 {"since", format_iso8601_ms(l.started_at_ms)},
                 {"lease_expires_at_ms", l.lease_expires_at_ms},
                 {"lease_expires_at", format_iso8601_ms(l.lease_expires_at_ms)},
                 {"lease_expired", now_ms > l.lease_expires_at_ms},
                 {"lease_ms", l.lease_ms},
                 {"token", l.token},
                 {"renewals", l.renewals}};
  } else if (!s.lock_error.empty()) {
    j["lock_error"] = s.lock_error;
  }
  Totals t = totals_of(s);
  j["totals"] = {{"sources", s.sources.size()}, {"chunks", t.chunks},   {"records", t.records},
                 {"chunk_bytes", t.bytes},      {"objects", s.objects}, {"bytes", s.bytes}};
  j["older_manifests"] = objects_json(s.older_manifests);
  j["garbage"] = objects_json(s.garbage);
  j["other_objects"] = objects_json(s.other_objects);
  // Ids and keys come from stored bytes: replace invalid UTF-8 rather than fail.
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<VerifyReport> verify_storage(storage::ObjectStore& store) {
  VerifyReport r;
  TM_ASSIGN_OR_RETURN(auto all, store.list(""));
  auto problem = [&](const std::string& key, const std::string& msg) { r.problems.push_back({key, msg}); };
  std::map<std::string, uint64_t> sizes;
  for (const auto& o : all) sizes[o.key] = o.size;

  // Manifests first: the newest one decides which chunks are referenced.
  std::string newest_key;
  std::optional<Manifest> newest;
  for (const auto& o : all)
    if (is_manifest(o.key)) newest_key = o.key;
  std::set<std::string> live;
  std::map<std::string, uint64_t> chunk_records;
  std::map<std::string, uint64_t> chunk_last_time;  // the time of a chunk's last advance record
  std::map<std::string, uint32_t> crcs;              // CRC32C of every object read
  for (bool streams_pass : {false, true}) {
    for (const auto& o : all) {
      if (is_stream(o.key) != streams_pass) continue;
      auto data = store.get(o.key);
      if (!data) {
        problem(o.key, data.status().message());
        continue;
      }
      ++r.objects;
      r.bytes += data->size();
      crcs[o.key] = storage::crc32c_value(*data);
      if (is_lock(o.key)) {
        if (auto info = storage::decode_lock_info(*data); !info)
          problem(o.key, "lock object '" + o.key + "': " + info.status().message());
      } else if (is_manifest(o.key)) {
        auto n = count_records(o.key, *data);
        if (!n) {
          problem(o.key, n.status().message());
          continue;
        }
        if (*n != 1) problem(o.key, "manifest '" + o.key + "' holds " + std::to_string(*n) + " records, expected 1");
        auto m = decode_manifest(o.key, *data);
        if (!m) {
          problem(o.key, m.status().message());
          continue;
        }
        if (manifest_key(m->seq) != o.key)
          problem(o.key, "manifest '" + o.key + "' says it is commit " + std::to_string(m->seq));
        if (o.key == newest_key) {
          for (const auto& src : m->sources)
            for (const auto& c : src.chunks) live.insert(c.key);
          for (const auto& op : m->operators)
            for (const auto& c : op.chunks) live.insert(c.key);
          newest = std::move(*m);
        }
      } else if (is_operator(o.key)) {
        StateMap scratch;
        auto n = count_records(o.key, *data);
        Status st = n ? apply_state_chunk(o.key, *data, &scratch) : n.status();
        if (!st.is_ok()) {
          problem(o.key, st.message() + (newest && !live.count(o.key) ? " (unreferenced: the next start deletes it)" : ""));
          continue;
        }
        chunk_records[o.key] = *n;
      } else if (is_content(o.key)) {
        auto c = decode_content(o.key, *data);
        if (!c) problem(o.key, c.status().message());
      } else if (is_stream(o.key)) {
        std::vector<InputEvent> events;
        Status st = read_input_chunk(o.key, *data, &events);
        if (!st.is_ok()) {
          // Damage in a chunk no manifest lists is still damage, but harmless: say so.
          problem(o.key, st.message() + (newest && !live.count(o.key) ? " (unreferenced: the next start deletes it)" : ""));
          continue;
        }
        chunk_records[o.key] = events.size();
        for (const auto& e : events)
          if (e.type == kRecordAdvance) chunk_last_time[o.key] = e.time;
      }
      // Other keys are not persistence's: read (so unreadable ones are reported) but not decoded.
    }
  }

  if (newest) {
    // What every listed chunk must satisfy: under its owner's prefix, present, with the size
    // and record count the manifest says. False when it is missing.
    auto check_listed = [&](const ChunkRef& c, const std::string& where, const std::string& prefix,
                            const char* prefix_name) {
      if (!c.key.starts_with(prefix)) problem(c.key, where + " is not under the " + prefix_name);
      auto size = sizes.find(c.key);
      if (size == sizes.end()) {
        problem(c.key, where + " is missing");
        return false;
      }
      if (size->second != c.bytes)
        problem(c.key, where + " has " + std::to_string(size->second) + " bytes, the manifest says " +
                           std::to_string(c.bytes));
      // (A chunk that does not even decode was reported already.)
      auto crc = crcs.find(c.key);
      if (c.has_crc && crc != crcs.end() && crc->second != c.crc32c && chunk_records.count(c.key))
        problem(c.key, where + " does not match the checksum the manifest recorded (replaced by other bytes)");
      auto recs = chunk_records.find(c.key);
      if (recs != chunk_records.end() && recs->second != c.records)
        problem(c.key, where + " holds " + std::to_string(recs->second) + " records, the manifest says " +
                           std::to_string(c.records));
      return true;
    };
    for (const auto& op : newest->operators)
      for (const auto& c : op.chunks)
        check_listed(c, "state chunk '" + c.key + "' of " + op.label + " listed by manifest '" + newest_key + "'",
                     state_prefix(op.id), "operator's prefix");
    for (const auto& src : newest->sources)
      for (const auto& c : src.contents) {
        std::string where = "archived content '" + c.key + "' of source '" + src.id + "' listed by manifest '" +
                            newest_key + "'";
        auto size = sizes.find(c.key);
        if (size == sizes.end()) {
          problem(c.key, where + " is missing");
          continue;
        }
        if (size->second != c.bytes)
          problem(c.key, where + " has " + std::to_string(size->second) + " bytes, the manifest says " +
                             std::to_string(c.bytes));
        auto crc = crcs.find(c.key);
        if (c.has_crc && crc != crcs.end() && crc->second != c.crc32c)
          problem(c.key, where + " does not match the checksum the manifest recorded (damaged or replaced)");
      }
    for (const auto& src : newest->sources)
      for (const auto& c : src.chunks) {
        std::string where = "chunk '" + c.key + "' of source '" + src.id + "' listed by manifest '" + newest_key + "'";
        if (!check_listed(c, where, stream_prefix(src.id), "source's stream prefix")) continue;
        // A writer records the time of a chunk's last advance record as its max_time.
        auto last = chunk_last_time.find(c.key);
        if (last != chunk_last_time.end() && last->second != c.max_time)
          problem(c.key, where + " ends at time " + std::to_string(last->second) + ", the manifest says " +
                             std::to_string(c.max_time));
        if (c.max_time > newest->committed_time)
          problem(c.key, where + " has max_time " + std::to_string(c.max_time) + ", after the committed time " +
                             std::to_string(newest->committed_time));
      }
  }
  return r;
}

std::string format_iso8601_ms(int64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms - static_cast<int64_t>(secs) * 1000));
  return buf;
}

std::string format_size(uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  static const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int u = -1;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace tidemark::persistence
