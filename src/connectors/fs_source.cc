#include "connectors/fs_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "connectors/formats.h"
#include "connectors/log.h"
#include "engine/codec.h"
#include "engine/collection_io.h"
#include "storage/object_store.h"
#include "storage/s3_store.h"
#include "tidemark/persistence.h"

namespace tidemark::connectors {

namespace stdfs = std::filesystem;
using engine::Batch;
using engine::Update;

namespace {

constexpr uint8_t kOffsetVersion = 1;
// Files are read whole; a poll stops taking new files after this many bytes (memory bound).
constexpr uint64_t kPollBudgetBytes = 8ull << 20;
// A file whose mtime is this close to the moment it was read may change again within the
// same mtime tick (coarse file-system clocks), so it is re-hashed on the next scan.
constexpr int64_t kRacyNs = 1'000'000'000;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t mtime_ns(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

const char* format_name(io::Format f) {
  switch (f) {
    case io::Format::kCsv: return "csv";
    case io::Format::kJsonLines: return "jsonlines";
    case io::Format::kPlaintext: return "plaintext";
    case io::Format::kBinary: return "binary";
  }
  return "?";
}

bool hidden(const stdfs::path& p) {
  std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

using Listed = FileLister::Listed;

// Regular files under root (or root itself), sorted by path, hidden entries skipped.
Status list_files(const std::string& root, std::vector<Listed>* out) {
  out->clear();
  struct stat st;
  if (::stat(root.c_str(), &st) != 0) {
    if (errno == ENOENT) return {};
    return Status::io_error("cannot stat input path '" + root + "': " + std::strerror(errno));
  }
  if (S_ISREG(st.st_mode)) {
    out->push_back({stdfs::path(root).lexically_normal().generic_string(), static_cast<uint64_t>(st.st_size), mtime_ns(st)});
    return {};
  }
  std::error_code ec;
  stdfs::recursive_directory_iterator it(root, stdfs::directory_options::skip_permission_denied, ec), end;
  if (ec) return Status::io_error("cannot list directory '" + root + "': " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) return Status::io_error("cannot list directory '" + root + "': " + ec.message());
    if (hidden(it->path())) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    std::string p = it->path().lexically_normal().generic_string();
    if (::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;  // vanished, or not a file
    out->push_back({p, static_cast<uint64_t>(st.st_size), mtime_ns(st)});
  }
  std::sort(out->begin(), out->end(), [](const Listed& a, const Listed& b) { return a.path < b.path; });
  return {};
}

// Reads a whole file. *vanished is set (and OK returned) when it no longer exists.
Status read_file(const std::string& path, std::string* content, struct stat* st, bool* vanished) {
  *vanished = false;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      *vanished = true;
      return {};
    }
    return Status::io_error("cannot open '" + path + "': " + std::strerror(errno));
  }
  Status s;
  if (::fstat(fd, st) != 0) s = Status::io_error("cannot stat '" + path + "': " + std::strerror(errno));
  // Straight into the string, sized from fstat (grown if the file grows while read).
  content->clear();
  size_t used = 0;
  if (s.is_ok()) content->resize(static_cast<size_t>(st->st_size) + 1);
  while (s.is_ok()) {
    if (used == content->size()) content->resize(content->size() * 2 + 4096);
    ssize_t n = ::read(fd, content->data() + used, content->size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) s = Status::io_error("cannot read '" + path + "': " + std::strerror(errno));
    if (n <= 0) break;
    used += static_cast<size_t>(n);
  }
  content->resize(used);
  ::close(fd);
  return s;
}

class FilesystemLister final : public FileLister {
 public:
  explicit FilesystemLister(std::string root) : root_(std::move(root)) {}
  std::string describe(const char* format) const override {
    return std::string("fs ") + format + " source '" + root_ + "'";
  }
  Status open() override {
    struct stat st;
    if (::stat(root_.c_str(), &st) != 0)
      return errno == ENOENT ? Status::not_found("input path '" + root_ + "' does not exist")
                             : Status::io_error("cannot access input path '" + root_ + "': " + std::strerror(errno));
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
      return Status::invalid_argument("input path '" + root_ + "' is neither a file nor a directory");
    return {};
  }
  Status list(std::vector<Listed>* out) override { return list_files(root_, out); }
  Status read(const std::string& path, std::string* content, uint64_t* size, int64_t* mtime, bool* vanished) override {
    struct stat st {};
    TM_RETURN_IF_ERROR(read_file(path, content, &st, vanished));
    *size = static_cast<uint64_t>(st.st_size);
    *mtime = mtime_ns(st);
    return {};
  }
  bool recheck(int64_t mtime, int64_t read_ns, uint64_t) const override { return mtime + kRacyNs > read_ns; }
  std::unique_ptr<FileLister> clone() const override { return std::make_unique<FilesystemLister>(root_); }

 private:
  std::string root_;
};

class ObjectStoreLister final : public FileLister {
 public:
  ObjectStoreLister(std::function<Result<std::unique_ptr<storage::ObjectStore>>()> open_store, std::string root_url,
                    uint64_t recheck_every)
      : open_store_(std::move(open_store)), root_(std::move(root_url)), recheck_every_(std::max<uint64_t>(1, recheck_every)) {
    while (root_.ends_with('/')) root_.pop_back();
  }
  std::string describe(const char* format) const override { return root_ + " (" + format + ")"; }
  Status open() override {
    if (store_) return {};
    TM_ASSIGN_OR_RETURN(store_, open_store_());
    return {};
  }
  Status list(std::vector<Listed>* out) override {
    out->clear();
    TM_ASSIGN_OR_RETURN(std::vector<storage::ObjectInfo> objects, store_->list(""));
    for (const storage::ObjectInfo& o : objects)
      // Hidden ('.'-prefixed segments) and other keys the store cannot get are skipped.
      if (storage::validate_object_key(o.key).is_ok()) out->push_back({root_ + "/" + o.key, o.size, 0});
    std::sort(out->begin(), out->end(), [](const Listed& a, const Listed& b) { return a.path < b.path; });
    return {};
  }
  Status read(const std::string& path, std::string* content, uint64_t* size, int64_t* mtime, bool* vanished) override {
    *vanished = false;
    *mtime = 0;
    std::string_view key(path);
    if (key.starts_with(root_ + "/")) key.remove_prefix(root_.size() + 1);
    Result<std::string> got = store_->get(key);
    if (!got.is_ok()) {
      if (got.status().code() == StatusCode::kNotFound) {
        *vanished = true;
        return {};
      }
      return got.status();
    }
    *content = std::move(got).value();
    *size = content->size();
    return {};
  }
  // The first scan (of a resumed run too) re-reads everything: sizes alone miss changes.
  bool recheck(int64_t, int64_t, uint64_t scan) const override { return scan == 1 || scan % recheck_every_ == 0; }
  std::unique_ptr<FileLister> clone() const override {
    return std::make_unique<ObjectStoreLister>(open_store_, root_, recheck_every_);
  }

 private:
  std::function<Result<std::unique_ptr<storage::ObjectStore>>()> open_store_;
  std::string root_;
  uint64_t recheck_every_;
  std::unique_ptr<storage::ObjectStore> store_;
};

bool supported_type(DType t) {
  switch (t) {
    case DType::kInt: case DType::kFloat: case DType::kBool: case DType::kString: case DType::kBytes:
    case DType::kJson: case DType::kAny: return true;
    default: return false;
  }
}

}  // namespace

std::unique_ptr<FileLister> make_filesystem_lister(std::string path) {
  return std::make_unique<FilesystemLister>(std::move(path));
}

std::unique_ptr<FileLister> make_object_store_lister(
    std::function<Result<std::unique_ptr<storage::ObjectStore>>()> open_store, std::string root_url,
    uint64_t recheck_every) {
  return std::make_unique<ObjectStoreLister>(std::move(open_store), std::move(root_url), recheck_every);
}

Schema fs_source_schema(const io::fs::ReadOptions& o) {
  Schema schema;
  if (o.format == io::Format::kPlaintext) schema = Schema{{"data", t_str()}};
  else if (o.format == io::Format::kBinary) schema = Schema{{"data", t_bytes()}};
  else {
    if (o.schema.size() == 0)
      throw GraphError(std::string("fs::read (") + format_name(o.format) + "): a schema is required");
    for (const Column& c : o.schema.columns())
      if (!supported_type(c.type.base))
        throw GraphError(std::string("fs::read (") + format_name(o.format) + "): column '" + c.name + "' has type " +
                         c.type.to_string() + ", which cannot be read (use int, float, bool, str, bytes, json)");
    schema = o.schema;
  }
  for (const std::string& k : o.primary_key)
    if (!schema.find(k))
      throw GraphError("fs::read: primary key column '" + k + "' is not in the schema (" + schema.names() + ")");
  if (o.mode == io::Mode::kStreaming && o.autocommit_duration_ms == 0)
    throw GraphError("fs::read: autocommit_duration_ms must be positive in streaming mode");
  return schema;
}

FsSource::FsSource(std::string path, io::fs::ReadOptions options)
    : FsSource(make_filesystem_lister(std::move(path)), std::move(options)) {}

FsSource::FsSource(std::unique_ptr<FileLister> lister, io::fs::ReadOptions options)
    : lister_(std::move(lister)), options_(std::move(options)), schema_(fs_source_schema(options_)) {
  for (const std::string& k : options_.primary_key) pk_.push_back(*schema_.find(k));
}

std::string FsSource::describe() const { return lister_->describe(format_name(options_.format)); }

Status FsSource::open() {
  TM_RETURN_IF_ERROR(lister_->open());
  resolve_replayed();
  return {};
}

Status FsSource::scan() {
  std::vector<Listed> listed;
  TM_RETURN_IF_ERROR(lister_->list(&listed));
  ++scans_;
  work_.clear();
  if (shard_count_ > 1)
    listed.erase(std::remove_if(listed.begin(), listed.end(), [&](const Listed& l) { return !in_shard(l.path); }),
                 listed.end());
  auto it = files_.begin();
  for (const Listed& l : listed) {
    for (; it != files_.end() && it->first < l.path; ++it) work_.push_back({it->first, true});
    if (it != files_.end() && it->first == l.path) {
      const FileEntry& e = it->second;
      bool racy = lister_->recheck(e.mtime_ns, e.read_ns, scans_);
      if (e.size != l.size || e.mtime_ns != l.mtime_ns || racy) work_.push_back({l.path, false});
      ++it;
    } else {
      work_.push_back({l.path, false});
    }
  }
  for (; it != files_.end(); ++it) work_.push_back({it->first, true});
  return {};
}

bool FsSource::in_shard(const std::string& path) const {
  if (shard_count_ <= 1) return true;
  uint64_t h = XXH3_64bits(path.data(), path.size());
  return static_cast<size_t>((static_cast<unsigned __int128>(h) * shard_count_) >> 64) == shard_index_;
}

std::unique_ptr<engine::Source> FsSource::shard(size_t index, size_t count) const {
  auto s = std::make_unique<FsSource>(lister_->clone(), options_);
  s->shard_index_ = index;
  s->shard_count_ = count;
  return s;
}

Status FsSource::poll(Batch& out, bool* finished) {
  if (work_.empty() && (!scanned_ || streaming())) {
    TM_RETURN_IF_ERROR(scan());
    scanned_ = true;
  }
  uint64_t bytes = 0;
  while (!work_.empty() && bytes < kPollBudgetBytes) {
    TM_RETURN_IF_ERROR(process(work_.front(), out, &bytes));
    work_.pop_front();
  }
  *finished = !streaming() && work_.empty();
  return {};
}

Status FsSource::retract(const std::string& path, const FileEntry& entry, Batch& out) {
  auto it = rows_.find(path);
  if (it == rows_.end() && archive_ && entry.rows > 0) return retract_archived(path, entry, out);
  size_t known = it == rows_.end() ? 0 : it->second.size();
  if (known != entry.rows)
    log_warning(describe() + ": " + path + ": only " + std::to_string(known) + " of its " +
                std::to_string(entry.rows) + " earlier rows are known and can be retracted");
  if (it == rows_.end()) return {};
  for (Update& u : it->second) out.push_back({u.key, std::move(u.row), -1});
  rows_.erase(it);
  return {};
}

Status FsSource::retract_archived(const std::string& path, const FileEntry& entry, Batch& out) {
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(entry.hash));
  std::string what = describe() + ": cannot retract the earlier rows of '" + path + "' (archived content " + hash + ")";
  Result<std::string> content = archive_->fetch(entry.hash);
  if (!content.is_ok()) return Status(content.status().code(), what + ": " + content.status().message());
  if (XXH3_64bits(content.value().data(), content.value().size()) != entry.hash)
    return Status::corruption(what + ": the archive returned content with a different hash");
  std::vector<Update> rows;
  Status s = parse(path, content.value(), &rows, /*log_skipped=*/false);
  if (!s.is_ok()) return Status(s.code(), what + ": parsing it again failed: " + s.message());
  bool same = rows.size() == entry.rows;
  for (size_t i = 0; same && i < entry.keys.size(); ++i) same = rows[i].key == entry.keys[i];
  if (!same)
    return Status::failed_precondition(what + ": parsing it again gives " + std::to_string(rows.size()) +
                                       " rows (or other keys) than the " + std::to_string(entry.rows) +
                                       " it contributed; were the read options changed?");
  for (Update& u : rows) out.push_back({u.key, std::move(u.row), -1});
  return {};
}

void FsSource::live_contents(std::vector<uint64_t>& out) const {
  size_t first = out.size();
  for (const auto& [path, e] : files_)
    if (e.rows > 0) out.push_back(e.hash);
  std::sort(out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
  out.erase(std::unique(out.begin() + static_cast<std::ptrdiff_t>(first), out.end()), out.end());
}

Status FsSource::process(const Work& w, Batch& out, uint64_t* bytes_read) {
  auto old = files_.find(w.path);
  std::string content;
  uint64_t size = 0;
  int64_t mtime = 0;
  bool vanished = w.deleted;
  if (!w.deleted) {
    Status s = lister_->read(w.path, &content, &size, &mtime, &vanished);
    if (!s.is_ok()) {
      if (!options_.skip_bad_rows) return s;
      log_warning(describe() + ": skipped file: " + s.message());
      return {};
    }
  }
  if (vanished) {
    if (old != files_.end()) {
      TM_RETURN_IF_ERROR(retract(w.path, old->second, out));
      files_.erase(old);
    }
    return {};
  }
  *bytes_read += content.size();
  FileEntry e;
  e.size = size;
  e.mtime_ns = mtime;
  e.hash = XXH3_64bits(content.data(), content.size());
  e.read_ns = now_ns();
  if (old != files_.end() && old->second.hash == e.hash && old->second.size == e.size) {
    // Touched or re-checked, same content: nothing to emit.
    old->second.mtime_ns = e.mtime_ns;
    old->second.read_ns = e.read_ns;
    return {};
  }
  std::vector<Update> rows;
  TM_RETURN_IF_ERROR(parse(w.path, content, &rows));
  if (old != files_.end()) TM_RETURN_IF_ERROR(retract(w.path, old->second, out));
  e.rows = rows.size();
  if (!pk_.empty())
    for (const Update& u : rows) e.keys.push_back(u.key);
  // Kept to retract the rows when the file changes: the content in the archive (fetched and
  // parsed again then), or else the rows themselves in memory (streaming).
  if (archive_) {
    if (!rows.empty()) archive_->stash(e.hash, std::move(content));
  } else if (streaming()) {
    rows_[w.path] = rows;
  }
  files_[w.path] = std::move(e);
  for (Update& u : rows) out.push_back(std::move(u));
  return {};
}

Key FsSource::key_for(const std::string& path, uint64_t index, const Row& row) const {
  if (pk_.empty()) return key_combine(key_from_string(path), Key{index, 0});
  Row values;
  for (size_t i : pk_) values.push_back(row[i]);
  return key_from_values(values);
}

Status FsSource::row_error(const std::string& message, bool log_skipped) const {
  if (!options_.skip_bad_rows) return Status::invalid_argument(message);
  if (log_skipped) log_warning(describe() + ": skipped row: " + message);
  return {};
}

Status FsSource::parse(const std::string& path, const std::string& content, std::vector<Update>* rows,
                       bool log_skipped) const {
  auto row_error = [&](const std::string& message) { return this->row_error(message, log_skipped); };
  auto add = [&](Row row) {
    Key k = key_for(path, rows->size(), row);
    rows->push_back({k, std::move(row), 1});
  };
  switch (options_.format) {
    case io::Format::kBinary: add(Row{Value::bytes(content)}); return {};
    case io::Format::kPlaintext: {
      size_t start = 0;
      while (start < content.size()) {
        size_t end = content.find('\n', start);
        if (end == std::string::npos) end = content.size();
        std::string_view line(content.data() + start, end - start);
        if (line.ends_with('\r')) line.remove_suffix(1);
        add(Row{Value(line)});
        start = end + 1;
      }
      return {};
    }
    case io::Format::kCsv: {
      CsvReader reader(content, options_.csv_delimiter);
      std::vector<CsvField> fields;
      std::string err;
      if (!reader.next(&fields, &err)) return {};  // empty file: no header, no rows
      if (!err.empty()) return row_error(path + ":" + std::to_string(reader.line()) + ": bad header: " + err);
      std::vector<size_t> index;  // schema column -> field
      for (const Column& c : schema_.columns()) {
        auto f = std::find_if(fields.begin(), fields.end(), [&](const CsvField& x) { return x.text == c.name; });
        if (f == fields.end()) {
          std::string header;
          for (const auto& x : fields) header += (header.empty() ? "" : ",") + x.text;
          // Without the column no row of the file can be read: skipping means the whole file.
          return row_error(path + ":" + std::to_string(reader.line()) + ": column '" + c.name +
                           "' is missing from the header (" + header + ")");
        }
        index.push_back(static_cast<size_t>(f - fields.begin()));
      }
      const size_t width = fields.size();
      while (reader.next(&fields, &err)) {
        std::string where = path + ":" + std::to_string(reader.line()) + ": ";
        if (!err.empty()) {
          TM_RETURN_IF_ERROR(row_error(where + err));
          continue;
        }
        if (fields.size() != width) {
          TM_RETURN_IF_ERROR(row_error(where + "expected " + std::to_string(width) + " fields, got " +
                                       std::to_string(fields.size())));
          continue;
        }
        Row row;
        Status bad;
        for (size_t c = 0; c < index.size() && bad.is_ok(); ++c) {
          Result<Value> v = parse_field(fields[index[c]], schema_[c].type);
          if (v.is_ok()) row.push_back(std::move(v).value());
          else bad = Status::invalid_argument(where + "column '" + schema_[c].name + "': " + v.status().message());
        }
        if (!bad.is_ok()) TM_RETURN_IF_ERROR(row_error(bad.message()));
        else add(std::move(row));
      }
      return {};
    }
    case io::Format::kJsonLines: {
      size_t start = 0, line_no = 0;
      while (start < content.size()) {
        ++line_no;
        size_t end = content.find('\n', start);
        if (end == std::string::npos) end = content.size();
        std::string_view line(content.data() + start, end - start);
        start = end + 1;
        if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
        std::string where = path + ":" + std::to_string(line_no) + ": ";
        nlohmann::json obj = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (obj.is_discarded()) {
          TM_RETURN_IF_ERROR(row_error(where + "malformed JSON"));
          continue;
        }
        if (!obj.is_object()) {
          TM_RETURN_IF_ERROR(row_error(where + "expected a JSON object"));
          continue;
        }
        Row row;
        Status bad;
        for (const Column& c : schema_.columns()) {
          auto f = obj.find(c.name);
          if (f == obj.end()) {
            if (c.type.optional) row.push_back(Value());
            else bad = Status::invalid_argument(where + "column '" + c.name + "': missing");
          } else {
            Result<Value> v = json_to_value(*f, c.type);
            if (v.is_ok()) row.push_back(std::move(v).value());
            else bad = Status::invalid_argument(where + "column '" + c.name + "': " + v.status().message());
          }
          if (!bad.is_ok()) break;
        }
        if (!bad.is_ok()) TM_RETURN_IF_ERROR(row_error(bad.message()));
        else add(std::move(row));
      }
      return {};
    }
  }
  return Status::internal("unknown format");
}

std::string FsSource::encode_table(const std::map<std::string, FileEntry>& files) {
  std::string out;
  codec::put_u8(out, kOffsetVersion);
  codec::put_varint(out, files.size());
  for (const auto& [path, e] : files) {
    codec::put_bytes(out, path);
    codec::put_u64(out, e.size);
    codec::put_i64(out, e.mtime_ns);
    codec::put_u64(out, e.hash);
    codec::put_varint(out, e.rows);
    codec::put_i64(out, e.read_ns);
    codec::put_varint(out, e.keys.size());
    for (const Key& k : e.keys) codec::put_key(out, k);
  }
  return out;
}

Status FsSource::decode_table(std::string_view in, std::map<std::string, FileEntry>* files) const {
  auto bad = [&](const std::string& why) { return Status::corruption(describe() + ": bad offset: " + why); };
  uint8_t version;
  uint64_t n;
  if (!codec::get_u8(in, &version)) return bad("truncated");
  if (version != kOffsetVersion)
    return Status::not_supported(describe() + ": offset format version " + std::to_string(version) +
                                 " (this build reads version " + std::to_string(kOffsetVersion) + ")");
  if (!codec::get_varint(in, &n)) return bad("truncated");
  for (uint64_t i = 0; i < n; ++i) {
    std::string path;
    FileEntry e;
    uint64_t nkeys;
    if (!codec::get_bytes(in, &path) || !codec::get_u64(in, &e.size) || !codec::get_i64(in, &e.mtime_ns) ||
        !codec::get_u64(in, &e.hash) || !codec::get_varint(in, &e.rows) || !codec::get_i64(in, &e.read_ns) ||
        !codec::get_varint(in, &nkeys) || nkeys > in.size() / 16)  // a key is 16 bytes
      return bad("truncated");
    if ((pk_.empty() && nkeys != 0) || (!pk_.empty() && nkeys != e.rows))
      return bad("written by a source with a different primary key");
    e.keys.resize(nkeys);
    for (Key& k : e.keys)
      if (!codec::get_key(in, &k)) return bad("truncated");
    files->emplace(std::move(path), std::move(e));
  }
  if (!in.empty()) return bad("trailing bytes");
  return {};
}

std::string FsSource::offset() const { return encode_table(files_); }

Status FsSource::seek(std::string_view in) {
  std::map<std::string, FileEntry> files;
  TM_RETURN_IF_ERROR(decode_table(in, &files));
  // A shard keeps its own files (the offset may be that of all shards, of any count).
  if (shard_count_ > 1) std::erase_if(files, [&](const auto& f) { return !in_shard(f.first); });
  files_ = std::move(files);
  rows_.clear();
  return {};
}

Result<std::string> FsSource::merge_shard_offsets(const std::vector<std::string>& parts) const {
  // The shards' tables are disjoint (a path belongs to one shard): their union.
  std::map<std::string, FileEntry> files, part_files;
  for (const std::string& part : parts) {
    part_files.clear();
    TM_RETURN_IF_ERROR(decode_table(part, &part_files).with_context("merging the offsets of its shards"));
    for (auto& [path, e] : part_files)
      if (!files.emplace(path, std::move(e)).second)
        return Status::internal(describe() + ": two shards' offsets list " + path);
  }
  return encode_table(files);
}

void FsSource::replayed(const Update& u) { replayed_.push_back(u); }

void FsSource::resolve_replayed() {
  if (replayed_.empty()) return;  // nothing replayed (operator persisting): no key index needed
  std::unordered_map<Key, const std::string*, KeyHash> key_to_path;
  for (const auto& [path, e] : files_) {
    if (pk_.empty())
      for (uint64_t i = 0; i < e.rows; ++i) key_to_path.emplace(key_for(path, i, {}), &path);
    else
      for (const Key& k : e.keys) key_to_path.emplace(k, &path);
  }
  for (Update& u : replayed_) {
    auto p = key_to_path.find(u.key);
    if (p == key_to_path.end()) continue;  // a row of a file that no longer contributes
    auto& rows = rows_[*p->second];
    for (int64_t i = 0; i < u.diff; ++i) rows.push_back({u.key, u.row, 1});
    for (int64_t i = 0; i < -u.diff; ++i) {
      auto r = std::find_if(rows.rbegin(), rows.rend(), [&](const Update& x) { return x.key == u.key && x.row == u.row; });
      if (r != rows.rend()) rows.erase(std::next(r).base());
    }
  }
  replayed_.clear();
  replayed_.shrink_to_fit();
}

}  // namespace tidemark::connectors

namespace tidemark::io::fs {

Table read(Graph& g, const std::string& path, ReadOptions options) {
  Schema schema = connectors::fs_source_schema(options);
  std::string name = options.name;
  return engine::add_source(g, std::make_unique<connectors::FsSource>(path, std::move(options)), std::move(schema),
                            name);
}

}  // namespace tidemark::io::fs

namespace tidemark::io::s3 {

Table read(Graph& g, const std::string& path, fs::ReadOptions options, persistence::AwsS3Settings settings) {
  Schema schema = connectors::fs_source_schema(options);
  std::string name = options.name;
  Result<std::pair<std::string, std::string>> url = storage::parse_s3_url(path);
  if (!url.is_ok()) throw GraphError("s3::read: " + url.status().message());
  std::string root = "s3://" + url.value().first + (url.value().second.empty() ? "" : "/" + url.value().second);
  auto open_store = [settings = std::move(settings), root]() -> Result<std::unique_ptr<storage::ObjectStore>> {
    TM_ASSIGN_OR_RETURN(storage::S3Options o, storage::s3_options_from_settings(settings, root));
    return storage::open_s3_store(o);
  };
  auto lister = connectors::make_object_store_lister(std::move(open_store), root);
  return engine::add_source(g, std::make_unique<connectors::FsSource>(std::move(lister), std::move(options)),
                            std::move(schema), name);
}

}  // namespace tidemark::io::s3
