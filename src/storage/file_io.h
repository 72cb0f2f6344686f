// The I/O seam of everything that writes to a local filesystem: the filesystem object store
// (filesystem_store.cc) and the file sink (connectors/fs_sink.cc). Every call that changes a
// file or a directory (and every open/close of a descriptor such a call uses) goes through
// file_io(), which is plain POSIX unless a test installed another FileIo with set_file_io().
// Reads (read, pread, fstat, stat, readdir) stay direct system calls.
//
// Contract of every method: the POSIX call of the same name (same arguments, return value -1
// with errno on failure, short writes and EINTR possible), so callers keep their usual error
// handling. An implementation must be thread-safe: object-store calls run on several threads.
// A descriptor passed to write/pwrite/fsync/fdatasync/ftruncate/close came from this FileIo's
// open(). close() releases the descriptor even when it reports an error.
//
// begin_operation()/end_operation() bracket one object-store operation (put, put_if_absent,
// remove, temp-file cleanup); they may nest on one thread and do nothing in POSIX. A test layer
// uses them to keep the calls of concurrent operations together, so that "the k-th mutating
// call" means the same thing in every execution (see PowerLossFileIo in
// tests/powerloss/).
//
// Installing: set_file_io(&layer) while no store or sink is in use; set_file_io(nullptr)
// restores POSIX. The installed object must outlive its use.
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace tidemark::storage {

class FileIo {
 public:
  virtual ~FileIo() = default;
  virtual int open(const char* path, int flags, mode_t mode = 0);
  virtual ssize_t write(int fd, const void* buf, size_t n);
  virtual ssize_t pwrite(int fd, const void* buf, size_t n, off_t offset);
  virtual int fsync(int fd);
  virtual int fdatasync(int fd);
  virtual int ftruncate(int fd, off_t length);
  virtual int close(int fd);
  virtual int rename(const char* from, const char* to);
  virtual int link(const char* from, const char* to);
  virtual int unlink(const char* path);
  virtual int mkdir(const char* path, mode_t mode);
  virtual void begin_operation() {}
  virtual void end_operation() {}
};

// The installed FileIo (POSIX by default).
FileIo& file_io();
// Installs `io` (nullptr: POSIX) and returns the previous one (nullptr if it was POSIX).
FileIo* set_file_io(FileIo* io);

// RAII for begin_operation/end_operation on the installed FileIo.
class FileIoOperation {
 public:
  FileIoOperation() : io_(file_io()) { io_.begin_operation(); }
  ~FileIoOperation() { io_.end_operation(); }
  FileIoOperation(const FileIoOperation&) = delete;
  FileIoOperation& operator=(const FileIoOperation&) = delete;

 private:
  FileIo& io_;
};

}  // namespace tidemark::storage
