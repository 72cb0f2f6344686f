// A storage::FileIo for tests that simulates power loss, as LevelDB's fault-injection Env and
// RocksDB's FaultInjectionTestFS do: it remembers what was made durable and, on power_loss(),
// reverts every tracked directory tree to exactly that.
//
// Model (per inode, as the layer sees it through the seam):
// - a regular file's durable data is its content at its last fsync/fdatasync (a file created
//   through the seam starts with empty durable data; a file present at install time with its
//   content then);
// - a directory's durable entries (name -> inode) are its entries at its last fsync (a
//   directory made with mkdir starts durably empty; one present at install time with its
//   entries then). So a create, rename, link or unlink is lost unless its directory was fsynced
//   afterwards, and a removed durable name comes back with the durable data of its inode.
// - power_loss() deletes everything under each root and rebuilds it from the durable model
//   (hard links stay hard links), then takes the result as the new durable state.
//
// Crash points: every mutating call (open for writing or creating, write, pwrite, fsync,
// fdatasync, ftruncate, rename, link, unlink, mkdir; not read-only opens, not close) counts,
// on any path. crash_at(k): the k-th mutating call from now and every later one fail with EIO
// without doing anything, until power_loss(). Real fsyncs are skipped (durability is
// simulated), which keeps enumerations fast.
//
// Determinism: calls are serialized, and the calls of one object-store operation
// (FileIo::begin_operation .. end_operation) are never interleaved with another thread's, so
// concurrent puts of a commit produce the same number and sequence of call kinds in every
// execution; only which of those puts goes first may vary (they are all unreferenced until
// the manifest that follows them, so the outcome of a crash among them does not).
//
// Only paths under the roots are modelled; calls elsewhere pass through (and still count).
// Paths are taken lexically: give absolute, canonical roots and absolute paths.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "storage/file_io.h"

namespace tidemark::testing_support {

class PowerLossFileIo final : public storage::FileIo {
 public:
  // Installs itself (set_file_io) and takes the current content of `roots` as durable.
  explicit PowerLossFileIo(std::vector<std::string> roots);
  // Uninstalls itself (restores the previous FileIo).
  ~PowerLossFileIo() override;

  int open(const char* path, int flags, mode_t mode) override;
  ssize_t write(int fd, const void* buf, size_t n) override;
  ssize_t pwrite(int fd, const void* buf, size_t n, off_t offset) override;
  int fsync(int fd) override;
  int fdatasync(int fd) override;
  int ftruncate(int fd, off_t length) override;
  int close(int fd) override;
  int rename(const char* from, const char* to) override;
  int link(const char* from, const char* to) override;
  int unlink(const char* path) override;
  int mkdir(const char* path, mode_t mode) override;
  void begin_operation() override;
  void end_operation() override;

  // The k-th mutating call from now (k >= 1) and every later one fail with EIO; 0 disarms.
  void crash_at(uint64_t k);
  // Only the k-th mutating call from now fails with EIO (a transient error, no crash).
  void fail_once_at(uint64_t k);
  bool crashed() const;
  // Mutating calls so far (including failed ones).
  uint64_t mutating_calls() const;
  // "<n>: <call> <path>" of the call that crashed, or "" if none did.
  std::string crash_call() const;
  // Reverts every root to its durable state (see above) and clears a crash that happened (a
  // crash point not reached yet stays armed; the call counter goes on). Returns "" or an
  // error message. Call it with no tracked descriptor open.
  std::string power_loss();
  // Tracked descriptors still open (a leak if non-zero when power_loss() is called).
  size_t open_descriptors() const;
  // Inodes found under a root that were not created through the seam (should be 0).
  uint64_t untracked() const;
  // The last `n` mutating calls, oldest first (for failure messages).
  std::vector<std::string> recent_calls(size_t n) const;

 private:
  struct Node {
    bool dir = false;
    std::string data;                          // file: durable content
    std::map<std::string, size_t> entries;     // directory: durable entries
  };
  using InodeKey = std::pair<dev_t, ino_t>;

  class Call;  // one serialized call (lock + operation ownership)

  bool tracked(const std::string& path) const;
  bool fail_if_crashed(const std::string& what);  // counts a mutating call; true: fail it
  size_t snapshot(const std::string& path);       // models `path` (recursively) as durable
  size_t node_of_new_inode(const std::string& path, const struct stat& st, bool created);
  void forget_if_last_link(const std::string& path);
  std::string read_fd(int fd) const;
  void rebuild(const std::string& path, size_t node, std::map<size_t, std::string>& first_path) const;
  void reset_model();

  storage::FileIo* previous_ = nullptr;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::thread::id owner_;  // thread inside an operation (depth_ > 0)
  int depth_ = 0;

  std::vector<std::string> roots_;
  std::vector<size_t> root_nodes_;
  std::vector<Node> nodes_;
  std::map<InodeKey, size_t> live_;       // inodes that exist now -> node
  std::map<int, size_t> fds_;             // tracked descriptor -> node
  std::map<int, std::string> fd_paths_;   // tracked descriptor -> path at open
  uint64_t calls_ = 0;
  uint64_t crash_at_ = 0;  // absolute call number; 0: disarmed
  uint64_t fail_at_ = 0;   // absolute call number of a one-off failure; 0: none
  bool crashed_ = false;
  std::string crash_call_;
  uint64_t untracked_ = 0;
  std::vector<std::string> recent_;  // ring of the last mutating calls
};

}  // namespace tidemark::testing_support
