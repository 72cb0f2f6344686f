#include "connectors/fs_sink.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "connectors/formats.h"
#include "engine/collection_io.h"
#include "storage/file_io.h"

namespace tidemark::connectors {

namespace {
constexpr size_t kBufferLimit = 1 << 20;  // write (without fsync) once this much is buffered

using storage::file_io;

std::string parent_of(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Makes the directory entries of `dir` durable (a created or renamed file's name survives a
// power loss only once its directory is fsynced).
Status fsync_directory(const std::string& dir) {
  int fd = file_io().open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::io_error("cannot open directory '" + dir + "': " + std::strerror(errno));
  int rc = file_io().fsync(fd);
  int err = errno;
  file_io().close(fd);
  if (rc != 0) return Status::io_error("cannot fsync directory '" + dir + "': " + std::strerror(err));
  return {};
}
}  // namespace

FsSink::~FsSink() {
  if (fd_ >= 0) file_io().close(fd_);
}

std::string FsSink::describe() const {
  return std::string(options_.format == io::Format::kCsv ? "csv" : "jsonlines") + " file '" + path_ + "'";
}

Status FsSink::open() {
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append_ ? O_APPEND : O_TRUNC);
  fd_ = file_io().open(path_.c_str(), flags, 0644);
  if (fd_ < 0) return Status::io_error("cannot open output file '" + path_ + "': " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd_, &st) != 0) return Status::io_error("cannot stat '" + path_ + "': " + std::strerror(errno));
  written_ = static_cast<uint64_t>(st.st_size);
  header_due_ = options_.format == io::Format::kCsv && written_ == 0;
  // The file may have just been created: its name is durable only after a directory fsync,
  // which the first flush() does (before any position of this file is committed).
  dir_sync_due_ = true;
  return {};
}

Status FsSink::write(engine::Time t, const engine::Batch& changes, const Schema& schema) {
  if (header_due_) {
    for (const Column& c : schema.columns()) buffer_ += csv_quote(c.name) + ",";
    buffer_ += "time,diff\n";
    header_due_ = false;
  }
  const std::string suffix = std::to_string(t);
  for (const engine::Update& u : changes) {
    if (options_.format == io::Format::kCsv) {
      for (const Value& v : u.row) buffer_ += csv_field(v) + ",";
      buffer_ += suffix + "," + std::to_string(u.diff) + "\n";
    } else {
      nlohmann::json j = nlohmann::json::object();
      for (size_t i = 0; i < u.row.size(); ++i) j[schema[i].name] = value_to_json(u.row[i]);
      j["time"] = t;
      j["diff"] = u.diff;
      buffer_ += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    }
  }
  if (buffer_.size() >= kBufferLimit) return write_buffer();
  return {};
}

Status FsSink::time_end(engine::Time) {
  // Readers of a streaming output see each time as soon as it is computed; durability (fsync)
  // comes with flush() at commits.
  return write_buffer();
}

Status FsSink::write_buffer() {
  size_t done = 0;
  while (done < buffer_.size()) {
    ssize_t n = file_io().write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::io_error("cannot write '" + path_ + "': " + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  written_ += done;
  buffer_.clear();
  return {};
}

Status FsSink::flush() {
  if (fd_ < 0) return {};
  TM_RETURN_IF_ERROR(write_buffer());
  if (file_io().fsync(fd_) != 0) return Status::io_error("cannot fsync '" + path_ + "': " + std::strerror(errno));
  if (dir_sync_due_) {
    TM_RETURN_IF_ERROR(fsync_directory(parent_of(path_)).with_context(describe()));
    dir_sync_due_ = false;
  }
  return {};
}

Status FsSink::close() {
  Status s = flush();
  if (fd_ >= 0 && file_io().close(fd_) != 0 && s.is_ok())
    s = Status::io_error("cannot close '" + path_ + "': " + std::strerror(errno));
  fd_ = -1;
  return s;
}

std::string FsSink::position() const { return std::to_string(written_ + buffer_.size()); }

Status FsSink::truncate_to(std::string_view position) {
  uint64_t pos;
  auto [p, ec] = std::from_chars(position.data(), position.data() + position.size(), pos);
  if (ec != std::errc() || p != position.data() + position.size() || position.empty())
    return Status::corruption(describe() + ": bad position '" + std::string(position) + "'");
  struct stat st;
  if (::stat(path_.c_str(), &st) != 0) {
    if (errno != ENOENT || pos != 0)
      return Status::failed_precondition(describe() + ": cannot resume at byte " + std::to_string(pos) + ": " +
                                         std::strerror(errno));
  } else {
    if (static_cast<uint64_t>(st.st_size) < pos)
      return Status::corruption(describe() + ": the file has " + std::to_string(st.st_size) +
                                " bytes, fewer than the committed " + std::to_string(pos));
    // Cut back durably before anything new is appended: a later commit may otherwise not
    // follow (nothing new to write), and a power loss would bring the cut bytes back.
    int fd = file_io().open(path_.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return Status::io_error("cannot open '" + path_ + "' to truncate it: " + std::strerror(errno));
    int rc = file_io().ftruncate(fd, static_cast<off_t>(pos));
    if (rc == 0) rc = file_io().fsync(fd);
    int err = errno;
    file_io().close(fd);
    if (rc != 0) return Status::io_error("cannot truncate '" + path_ + "': " + std::strerror(err));
  }
  append_ = true;
  return {};
}

}  // namespace tidemark::connectors

namespace tidemark::io::fs {

void write(const Table& table, const std::string& path, WriteOptions options) {
  if (options.format != Format::kCsv && options.format != Format::kJsonLines)
    throw GraphError("fs::write: only csv and jsonlines output are supported");
  std::string name = options.name;
  engine::add_sink(table, std::make_unique<connectors::FsSink>(path, std::move(options)), name);
}

}  // namespace tidemark::io::fs
