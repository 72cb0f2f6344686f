#include "powerloss/power_loss_file_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace tidemark::testing_support {

namespace {

std::string normalize(const char* path) {
  std::filesystem::path p(path);
  if (p.is_relative()) p = std::filesystem::current_path() / p;
  std::string s = p.lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

constexpr size_t kRecent = 64;

}  // namespace

// Holds the layer's mutex for one call, after waiting until no other thread is inside an
// operation: all calls are serialized and operations are not interleaved.
class PowerLossFileIo::Call {
 public:
  explicit Call(PowerLossFileIo& io) : lock_(io.mu_) {
    std::thread::id me = std::this_thread::get_id();
    io.cv_.wait(lock_, [&] { return io.depth_ == 0 || io.owner_ == me; });
  }

 private:
  std::unique_lock<std::mutex> lock_;
};

PowerLossFileIo::PowerLossFileIo(std::vector<std::string> roots) {
  for (const std::string& r : roots) roots_.push_back(normalize(r.c_str()));
  reset_model();
  previous_ = storage::set_file_io(this);
}

PowerLossFileIo::~PowerLossFileIo() { storage::set_file_io(previous_); }

void PowerLossFileIo::begin_operation() {
  std::unique_lock<std::mutex> lock(mu_);
  std::thread::id me = std::this_thread::get_id();
  cv_.wait(lock, [&] { return depth_ == 0 || owner_ == me; });
  owner_ = me;
  ++depth_;
}

void PowerLossFileIo::end_operation() {
  std::unique_lock<std::mutex> lock(mu_);
  if (--depth_ == 0) {
    owner_ = std::thread::id();
    cv_.notify_all();
  }
}

bool PowerLossFileIo::tracked(const std::string& path) const {
  for (const std::string& r : roots_)
    if (path.starts_with(r) && (path.size() == r.size() || path[r.size()] == '/')) return true;
  return false;
}

bool PowerLossFileIo::fail_if_crashed(const std::string& what) {
  ++calls_;
  std::string line = std::to_string(calls_) + ": " + what;
  if (recent_.size() == kRecent) recent_.erase(recent_.begin());
  recent_.push_back(line);
  if (!crashed_ && crash_at_ != 0 && calls_ >= crash_at_) {
    crashed_ = true;
    crash_call_ = line;
  }
  if (crashed_ || calls_ == fail_at_) {
    errno = EIO;
    return true;
  }
  return false;
}

size_t PowerLossFileIo::snapshot(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return SIZE_MAX;
  InodeKey key{st.st_dev, st.st_ino};
  if (auto it = live_.find(key); it != live_.end()) return it->second;  // a second hard link
  size_t id = nodes_.size();
  nodes_.emplace_back();
  live_[key] = id;
  if (S_ISDIR(st.st_mode)) {
    nodes_[id].dir = true;
    std::vector<std::string> names;
    if (DIR* d = ::opendir(path.c_str())) {
      while (struct dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name != "." && name != "..") names.push_back(name);
      }
      ::closedir(d);
    }
    for (const std::string& name : names) {
      size_t child = snapshot(path + "/" + name);
      if (child != SIZE_MAX) nodes_[id].entries[name] = child;
    }
  } else if (S_ISREG(st.st_mode)) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      nodes_[id].data = read_fd(fd);
      ::close(fd);
    }
  }
  return id;
}

size_t PowerLossFileIo::node_of_new_inode(const std::string& path, const struct stat& st, bool created) {
  if (!created) {
    ++untracked_;  // it exists, yet neither install time nor the seam showed it to us
    return snapshot(path);
  }
  size_t id = nodes_.size();
  nodes_.emplace_back();
  nodes_[id].dir = S_ISDIR(st.st_mode);
  live_[{st.st_dev, st.st_ino}] = id;
  return id;
}

// Called before a call that removes the name `path`: if it is the inode's last name, the inode
// number may be reused by a later file, which must then get a node of its own.
void PowerLossFileIo::forget_if_last_link(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) return;
  live_.erase({st.st_dev, st.st_ino});
}

std::string PowerLossFileIo::read_fd(int fd) const {
  std::string data;
  char buf[65536];
  off_t off = 0;
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, static_cast<size_t>(n));
    off += n;
  }
  return data;
}

int PowerLossFileIo::open(const char* path, int flags, mode_t mode) {
  Call call(*this);
  std::string p = normalize(path);
  bool mutating = (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) != 0;
  if (mutating && fail_if_crashed(std::string("open") + ((flags & O_CREAT) ? "(create) " : " ") + p)) return -1;
  bool track = tracked(p);
  struct stat before;
  bool existed = track && ::lstat(p.c_str(), &before) == 0;
  int fd = ::open(path, flags, mode);
  if (fd < 0) return -1;
  fds_.erase(fd);
  fd_paths_.erase(fd);
  if (track) {
    struct stat st;
    if (::fstat(fd, &st) == 0) {
      auto it = live_.find({st.st_dev, st.st_ino});
      size_t node = it != live_.end() ? it->second : node_of_new_inode(p, st, !existed && (flags & O_CREAT));
      fds_[fd] = node;
      fd_paths_[fd] = p;
    }
  }
  return fd;
}

namespace {
std::string fd_name(const std::map<int, std::string>& paths, int fd) {
  auto it = paths.find(fd);
  return it != paths.end() ? it->second : "fd " + std::to_string(fd);
}
}  // namespace

ssize_t PowerLossFileIo::write(int fd, const void* buf, size_t n) {
  Call call(*this);
  if (fail_if_crashed("write " + fd_name(fd_paths_, fd))) return -1;
  return ::write(fd, buf, n);
}

ssize_t PowerLossFileIo::pwrite(int fd, const void* buf, size_t n, off_t offset) {
  Call call(*this);
  if (fail_if_crashed("pwrite " + fd_name(fd_paths_, fd))) return -1;
  return ::pwrite(fd, buf, n, offset);
}

int PowerLossFileIo::fsync(int fd) {
  Call call(*this);
  auto it = fds_.find(fd);
  bool dir = it != fds_.end() && nodes_[it->second].dir;
  if (fail_if_crashed(std::string(dir ? "fsync(dir) " : "fsync ") + fd_name(fd_paths_, fd))) return -1;
  if (it == fds_.end()) return 0;  // untracked: durability is not modelled there (no real fsync either)
  size_t node = it->second;
  if (!dir) {
    // The descriptor may be write-only: read the same open file through /proc.
    std::string proc = "/proc/self/fd/" + std::to_string(fd);
    int rfd = ::open(proc.c_str(), O_RDONLY | O_CLOEXEC);
    if (rfd < 0) return -1;
    nodes_[node].data = read_fd(rfd);
    ::close(rfd);
    return 0;
  }
  // A directory: its current entries become its durable ones.
  const std::string& path = fd_paths_[fd];
  std::vector<std::string> names;
  if (DIR* d = ::opendir(path.c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    ::closedir(d);
  }
  std::map<std::string, size_t> entries;
  for (const std::string& name : names) {
    std::string child = path + "/" + name;
    struct stat st;
    if (::lstat(child.c_str(), &st) != 0) continue;
    auto live = live_.find({st.st_dev, st.st_ino});
    size_t id;
    if (live != live_.end()) {
      id = live->second;
    } else {
      ++untracked_;
      id = snapshot(child);
    }
    if (id != SIZE_MAX) entries[name] = id;
  }
  nodes_[node].entries = std::move(entries);
  return 0;
}

int PowerLossFileIo::fdatasync(int fd) { return fsync(fd); }

int PowerLossFileIo::ftruncate(int fd, off_t length) {
  Call call(*this);
  if (fail_if_crashed("ftruncate " + fd_name(fd_paths_, fd) + " to " + std::to_string(length))) return -1;
  return ::ftruncate(fd, length);
}

int PowerLossFileIo::close(int fd) {
  Call call(*this);
  fds_.erase(fd);
  fd_paths_.erase(fd);
  return ::close(fd);
}

int PowerLossFileIo::rename(const char* from, const char* to) {
  Call call(*this);
  std::string f = normalize(from), t = normalize(to);
  if (fail_if_crashed("rename " + f + " -> " + t)) return -1;
  struct stat st;
  bool replaces_last = tracked(t) && ::lstat(t.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1;
  int rc = ::rename(from, to);
  if (rc == 0 && replaces_last) live_.erase({st.st_dev, st.st_ino});
  return rc;
}

int PowerLossFileIo::link(const char* from, const char* to) {
  Call call(*this);
  if (fail_if_crashed("link " + normalize(from) + " -> " + normalize(to))) return -1;
  return ::link(from, to);
}

int PowerLossFileIo::unlink(const char* path) {
  Call call(*this);
  std::string p = normalize(path);
  if (fail_if_crashed("unlink " + p)) return -1;
  struct stat st;
  bool last = tracked(p) && ::lstat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1;
  int rc = ::unlink(path);
  if (rc == 0 && last) live_.erase({st.st_dev, st.st_ino});
  return rc;
}

int PowerLossFileIo::mkdir(const char* path, mode_t mode) {
  Call call(*this);
  std::string p = normalize(path);
  if (fail_if_crashed("mkdir " + p)) return -1;
  int rc = ::mkdir(path, mode);
  if (rc == 0 && tracked(p)) {
    struct stat st;
    if (::lstat(p.c_str(), &st) == 0) node_of_new_inode(p, st, true);
  }
  return rc;
}

void PowerLossFileIo::crash_at(uint64_t k) {
  Call call(*this);
  crash_at_ = k == 0 ? 0 : calls_ + k;
}

void PowerLossFileIo::fail_once_at(uint64_t k) {
  Call call(*this);
  fail_at_ = k == 0 ? 0 : calls_ + k;
}

bool PowerLossFileIo::crashed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return crashed_;
}

uint64_t PowerLossFileIo::mutating_calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

std::string PowerLossFileIo::crash_call() const {
  std::lock_guard<std::mutex> lock(mu_);
  return crash_call_;
}

size_t PowerLossFileIo::open_descriptors() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fds_.size();
}

uint64_t PowerLossFileIo::untracked() const {
  std::lock_guard<std::mutex> lock(mu_);
  return untracked_;
}

std::vector<std::string> PowerLossFileIo::recent_calls(size_t n) const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t from = recent_.size() > n ? recent_.size() - n : 0;
  return {recent_.begin() + static_cast<long>(from), recent_.end()};
}

void PowerLossFileIo::rebuild(const std::string& path, size_t node, std::map<size_t, std::string>& first_path) const {
  for (const auto& [name, child] : nodes_[node].entries) {
    std::string p = path + "/" + name;
    const Node& c = nodes_[child];
    if (c.dir) {
      ::mkdir(p.c_str(), 0755);
      rebuild(p, child, first_path);
      continue;
    }
    if (auto it = first_path.find(child); it != first_path.end()) {
      ::link(it->second.c_str(), p.c_str());
      continue;
    }
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      size_t done = 0;
      while (done < c.data.size()) {
        ssize_t n = ::write(fd, c.data.data() + done, c.data.size() - done);
        if (n <= 0) break;
        done += static_cast<size_t>(n);
      }
      ::close(fd);
    }
    first_path[child] = p;
  }
}

std::string PowerLossFileIo::power_loss() {
  Call call(*this);
  std::string error;
  if (!fds_.empty()) error = std::to_string(fds_.size()) + " tracked descriptor(s) still open, e.g. " + fd_paths_.begin()->second;
  std::map<size_t, std::string> first_path;
  for (size_t i = 0; i < roots_.size(); ++i) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(roots_[i], ec)) std::filesystem::remove_all(entry.path(), ec);
    if (ec && error.empty()) error = "cannot clear " + roots_[i] + ": " + ec.message();
    rebuild(roots_[i], root_nodes_[i], first_path);
  }
  reset_model();
  if (crashed_) {  // the "machine" restarts; a crash point not reached yet stays armed
    crashed_ = false;
    crash_at_ = 0;
  }
  return error;
}

void PowerLossFileIo::reset_model() {
  nodes_.clear();
  live_.clear();
  fds_.clear();
  fd_paths_.clear();
  root_nodes_.clear();
  for (const std::string& r : roots_) root_nodes_.push_back(snapshot(r));
}

}  // namespace tidemark::testing_support
