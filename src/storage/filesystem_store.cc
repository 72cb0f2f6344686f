// The filesystem backend. Objects are regular files under the root; a key's '/' separators are
// directories. Publication follows LevelDB's pointer-file discipline: write a temporary file in
// the target directory, fsync it, rename (put) or link (put_if_absent) it to its final name,
// then fsync the directory so the new name itself survives a power loss.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "storage/file_io.h"
#include "storage/format_constants.h"
#include "storage/object_store.h"

namespace tidemark::storage {
namespace {

constexpr std::string_view kTempPrefix = format::kFilesystemTempPrefix;
constexpr std::string_view kFenceFileName = format::kFilesystemFenceFileName;
constexpr std::string_view kCasFileName = ".cas";  // flock(2) around conditional writes

std::string errno_text(int err) {
  const char* name = strerrorname_np(err);
  std::string text = std::strerror(err);
  if (name != nullptr) text += std::string(" (") + name + ")";
  if (err == ENOSPC || err == EDQUOT) text += "; free space on that filesystem or point persistence elsewhere";
  return text;
}

Status errno_status(std::string_view op, const std::string& path, int err) {
  return Status::io_error("cannot " + std::string(op) + " '" + path + "': " + errno_text(err));
}

class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd() {
    if (fd_ >= 0) file_io().close(fd_);
  }
  int get() const { return fd_; }
  // Closes now, reporting the error close(2) may carry for delayed writes.
  int close() {
    int rc = file_io().close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

std::string parent_of(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status fsync_directory(const std::string& dir) {
  ScopedFd fd(file_io().open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return errno_status("open directory", dir, errno);
  if (file_io().fsync(fd.get()) != 0) return errno_status("fsync directory", dir, errno);
  return Status::ok();
}

// mkdir -p for `path`, starting at byte `from` (the part before it must exist). Each directory
// is made durable by fsyncing its parent, also when it already existed: another thread may have
// just created it and not yet synced it.
Status make_directories(const std::string& path, size_t from) {
  size_t pos = from;
  while (pos <= path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string::npos) end = path.size();
    if (end > 0) {
      std::string dir = path.substr(0, end);
      if (file_io().mkdir(dir.c_str(), 0755) != 0) {
        if (errno != EEXIST) return errno_status("create directory", dir, errno);
        struct stat st;
        if (::stat(dir.c_str(), &st) != 0) return errno_status("stat", dir, errno);
        if (!S_ISDIR(st.st_mode)) return Status::io_error("'" + dir + "' exists and is not a directory");
      }
      TM_RETURN_IF_ERROR(fsync_directory(parent_of(dir)));
    }
    pos = end + 1;
  }
  return Status::ok();
}

Status write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = file_io().write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status("write", path, errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::ok();
}

// ".tmp.<pid>.<n>" → pid, or 0 if `name` is not a temp-file name.
pid_t temp_file_pid(std::string_view name) {
  if (!name.starts_with(kTempPrefix)) return 0;
  name.remove_prefix(kTempPrefix.size());
  pid_t pid = 0;
  auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), pid);
  if (ec != std::errc() || end == name.data() + name.size() || *end != '.') return 0;
  return pid;
}

bool process_is_dead(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

bool is_directory_entry(int dir_fd, const struct dirent* entry) {
  if (entry->d_type == DT_DIR) return true;
  if (entry->d_type != DT_UNKNOWN) return false;
  struct stat st;
  return ::fstatat(dir_fd, entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

class FlockFence final : public LocalFence {
 public:
  explicit FlockFence(int fd) : fd_(fd) {}
  ~FlockFence() override { file_io().close(fd_); }  // closing the descriptor drops the flock

 private:
  int fd_;
};

class FileSystemStore final : public ObjectStore {
 public:
  explicit FileSystemStore(std::string root) : root_(std::move(root)) {}

  Result<std::string> get(std::string_view key) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    std::string path = path_of(key);
    ScopedFd fd(file_io().open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) {
      if (errno == ENOENT || errno == ENOTDIR) return not_found(key);
      return errno_status("open", path, errno);
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return errno_status("stat", path, errno);
    if (S_ISDIR(st.st_mode)) return not_found(key);
    std::string data;
    data.resize(static_cast<size_t>(st.st_size));
    size_t filled = 0;
    while (true) {
      if (filled == data.size()) data.resize(data.size() + 4096);
      ssize_t n = ::read(fd.get(), data.data() + filled, data.size() - filled);
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno_status("read", path, errno);
      }
      if (n == 0) break;
      filled += static_cast<size_t>(n);
    }
    data.resize(filled);
    return data;
  }

  Status put(std::string_view key, std::string_view data) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    FileIoOperation op;
    std::string path = path_of(key);
    TM_ASSIGN_OR_RETURN(std::string temp, write_temp_file(key, data));
    if (file_io().rename(temp.c_str(), path.c_str()) != 0) {
      int err = errno;
      file_io().unlink(temp.c_str());
      return errno_status("rename into place", path, err);
    }
    return fsync_directory(parent_of(path));
  }

  Status put_if_absent(std::string_view key, std::string_view data) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    FileIoOperation op;
    std::string path = path_of(key);
    TM_ASSIGN_OR_RETURN(std::string temp, write_temp_file(key, data));
    // link(2) fails with EEXIST if the name exists, atomically, unlike rename which replaces.
    int rc = file_io().link(temp.c_str(), path.c_str());
    int err = errno;
    file_io().unlink(temp.c_str());
    if (rc != 0) {
      if (err == EEXIST) {
        Result<std::string> stored = get(key);  // idempotent: our own bytes are a success...
        // ...once durable: an earlier attempt may have linked it and failed to fsync the directory.
        if (stored.is_ok() && *stored == data) return fsync_directory(parent_of(path));
        return Status::already_exists("object '" + std::string(key) + "' already exists in " + describe());
      }
      return errno_status("link into place", path, err);
    }
    return fsync_directory(parent_of(path));
  }

  Result<VersionedObject> get_versioned(std::string_view key, Deadline) override {
    TM_ASSIGN_OR_RETURN(std::string data, get(key));
    std::string version = content_version(data);
    return VersionedObject{std::move(data), std::move(version)};
  }

  // One critical section under an exclusive flock(2) on <root>/.cas: read, compare, replace
  // (temp file, fsync, rename, directory fsync). Every conditional write of this store takes
  // it, so two processes cannot both win against the same version.
  Result<std::string> put_if_version(std::string_view key, std::string_view data, std::string_view expected,
                                     Deadline) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    FileIoOperation op;
    std::string cas_path = root_ + "/" + std::string(kCasFileName);
    ScopedFd fd(file_io().open(cas_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (fd.get() < 0) return errno_status("open", cas_path, errno);
    while (::flock(fd.get(), LOCK_EX) != 0) {
      if (errno != EINTR) return errno_status("flock", cas_path, errno);
    }
    Result<std::string> current = get(key);
    if (!current.is_ok() && current.status().code() != StatusCode::kNotFound) return current.status();
    if (current.is_ok() && *current == data) {  // our own earlier attempt landed: make it durable
      TM_RETURN_IF_ERROR(fsync_directory(parent_of(path_of(key))));
      return content_version(data);
    }
    if (!current.is_ok() || content_version(*current) != expected)
      return Status::aborted("object '" + std::string(key) + "' in " + describe() +
                             " changed (conditional write refused)");
    TM_RETURN_IF_ERROR(put(key, data));
    return content_version(data);
  }

  Result<std::vector<ObjectInfo>> list(std::string_view prefix) override {
    TM_RETURN_IF_ERROR(validate_list_prefix(prefix));
    size_t slash = prefix.rfind('/');
    std::string start_dir = slash == std::string_view::npos ? "" : std::string(prefix.substr(0, slash + 1));
    std::vector<ObjectInfo> out;
    TM_RETURN_IF_ERROR(walk(start_dir, prefix, out));
    std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
    return out;
  }

  Status remove(std::string_view key) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    FileIoOperation op;
    std::string path = path_of(key);
    if (file_io().unlink(path.c_str()) != 0) {
      // EISDIR/EPERM on a directory: no object has this key (it is only a folder of others).
      if (errno == ENOTDIR || errno == EISDIR) return Status::ok();
      if (errno != ENOENT) return errno_status("remove", path, errno);
      // Absent: an earlier attempt may have unlinked it and failed to sync the directory.
      struct stat st;
      std::string dir = parent_of(path);
      if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return Status::ok();
    }
    return fsync_directory(parent_of(path));
  }

  std::string describe() const override { return "filesystem:" + root_; }

  Result<std::unique_ptr<LocalFence>> acquire_local_fence() override {
    std::string path = root_ + "/" + std::string(kFenceFileName);
    int fd = file_io().open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return errno_status("open lock file", path, errno);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      file_io().close(fd);
      if (err == EWOULDBLOCK) {
        return Status::failed_precondition("persistent storage " + describe() +
                                           " is in use by another process (it holds flock on '" + path + "')");
      }
      return errno_status("flock", path, err);
    }
    return std::unique_ptr<LocalFence>(std::make_unique<FlockFence>(fd));
  }

  // Removes temp files whose writer process is gone, in every directory under the root.
  Status remove_stale_temp_files(const std::string& rel_dir) {
    FileIoOperation op;
    std::string dir = rel_dir.empty() ? root_ : root_ + "/" + rel_dir;
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return errno_status("open directory", dir, errno);
    std::vector<std::string> subdirs;
    Status status;
    while (struct dirent* entry = ::readdir(d)) {
      std::string_view name = entry->d_name;
      if (name == "." || name == "..") continue;
      if (is_directory_entry(::dirfd(d), entry)) {
        subdirs.push_back(rel_dir.empty() ? std::string(name) : rel_dir + "/" + std::string(name));
        continue;
      }
      pid_t pid = temp_file_pid(name);
      if (pid > 0 && process_is_dead(pid) && file_io().unlink((dir + "/" + std::string(name)).c_str()) != 0 &&
          errno != ENOENT) {
        status = errno_status("remove stale temporary file", dir + "/" + std::string(name), errno);
        break;
      }
    }
    ::closedir(d);
    TM_RETURN_IF_ERROR(status);
    for (const std::string& sub : subdirs) TM_RETURN_IF_ERROR(remove_stale_temp_files(sub));
    return Status::ok();
  }

 private:
  std::string path_of(std::string_view key) const { return root_ + "/" + std::string(key); }

  Status not_found(std::string_view key) const {
    return Status::not_found("object '" + std::string(key) + "' not found in " + describe());
  }

  // Writes `data` to a fresh temp file beside the object's final name and fsyncs it.
  // Creates the object's parent directories on first use. Returns the temp file's path.
  Result<std::string> write_temp_file(std::string_view key, std::string_view data) {
    static std::atomic<uint64_t> counter{0};
    std::string path = path_of(key);
    std::string dir = parent_of(path);
    std::string temp = dir + "/" + std::string(kTempPrefix) + std::to_string(::getpid()) + "." +
                       std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
    constexpr int kFlags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
    int raw_fd = file_io().open(temp.c_str(), kFlags, 0644);
    if (raw_fd < 0 && (errno == ENOENT || errno == ENOTDIR)) {
      Status made = make_directories(dir, root_.size() + 1);
      if (!made.is_ok()) return made.with_context("writing object '" + std::string(key) + "' in " + describe());
      raw_fd = file_io().open(temp.c_str(), kFlags, 0644);
    }
    if (raw_fd < 0) {
      return errno_status("create temporary file", temp, errno)
          .with_context("writing object '" + std::string(key) + "' in " + describe());
    }
    ScopedFd fd(raw_fd);
    Status status = write_all(fd.get(), data, temp);
    if (status.is_ok() && file_io().fsync(fd.get()) != 0) status = errno_status("fsync", temp, errno);
    if (status.is_ok() && fd.close() != 0) status = errno_status("close", temp, errno);
    if (!status.is_ok()) {
      file_io().unlink(temp.c_str());
      return status.with_context("writing object '" + std::string(key) + "' in " + describe());
    }
    return temp;
  }

  // Appends to `out` the objects under `rel_dir` (relative, empty or ending in '/') whose keys
  // start with `prefix`, descending only into directories that can hold such keys.
  Status walk(const std::string& rel_dir, std::string_view prefix, std::vector<ObjectInfo>& out) {
    std::string dir = root_ + "/" + rel_dir;
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) {
      if (errno == ENOENT || errno == ENOTDIR) return Status::ok();
      return errno_status("list directory", dir, errno);
    }
    std::vector<std::string> subdirs;
    Status status;
    while (struct dirent* entry = ::readdir(d)) {
      std::string_view name = entry->d_name;
      if (name.empty() || name.front() == '.') continue;  // ".", "..", temp and lock files
      std::string key = rel_dir + std::string(name);
      if (is_directory_entry(::dirfd(d), entry)) {
        std::string folder = key + "/";
        if (folder.starts_with(prefix) || prefix.starts_with(folder)) subdirs.push_back(std::move(folder));
        continue;
      }
      if (!key.starts_with(prefix)) continue;
      struct stat st;
      if (::fstatat(::dirfd(d), entry->d_name, &st, 0) != 0) {
        if (errno == ENOENT) continue;  // removed concurrently
        status = errno_status("stat", dir + std::string(name), errno);
        break;
      }
      out.push_back({std::move(key), static_cast<uint64_t>(st.st_size)});
    }
    ::closedir(d);
    TM_RETURN_IF_ERROR(status);
    for (const std::string& sub : subdirs) TM_RETURN_IF_ERROR(walk(sub, prefix, out));
    return Status::ok();
  }

  const std::string root_;
};

}  // namespace

Result<std::unique_ptr<ObjectStore>> open_filesystem_store(const std::string& root_arg) {
  if (root_arg.empty()) return Status::invalid_argument("persistent storage path is empty");
  std::string root = root_arg;
  while (root.size() > 1 && root.back() == '/') root.pop_back();

  struct stat st;
  if (::stat(root.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      return Status::invalid_argument("persistent storage path '" + root + "' exists and is not a directory");
    }
  } else {
    Status made = make_directories(root, root.front() == '/' ? 1 : 0);
    if (!made.is_ok()) {
      return Status(made.code(), "cannot create persistent storage directory '" + root + "': " + made.message());
    }
  }
  if (::access(root.c_str(), W_OK | X_OK) != 0) {
    return Status::io_error("persistent storage directory '" + root + "' is not writable: " + errno_text(errno));
  }
  auto store = std::make_unique<FileSystemStore>(root);
  TM_RETURN_IF_ERROR(store->remove_stale_temp_files(""));
  return std::unique_ptr<ObjectStore>(std::move(store));
}

}  // namespace tidemark::storage
