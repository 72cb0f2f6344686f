#include "storage/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>

namespace tidemark::storage {
namespace {

FileIo& posix() {
  static FileIo io;
  return io;
}

std::atomic<FileIo*> installed{nullptr};

}  // namespace

int FileIo::open(const char* path, int flags, mode_t mode) { return ::open(path, flags, mode); }
ssize_t FileIo::write(int fd, const void* buf, size_t n) { return ::write(fd, buf, n); }
ssize_t FileIo::pwrite(int fd, const void* buf, size_t n, off_t offset) { return ::pwrite(fd, buf, n, offset); }
int FileIo::fsync(int fd) { return ::fsync(fd); }
int FileIo::fdatasync(int fd) { return ::fdatasync(fd); }
int FileIo::ftruncate(int fd, off_t length) { return ::ftruncate(fd, length); }
int FileIo::close(int fd) { return ::close(fd); }
int FileIo::rename(const char* from, const char* to) { return ::rename(from, to); }
int FileIo::link(const char* from, const char* to) { return ::link(from, to); }
int FileIo::unlink(const char* path) { return ::unlink(path); }
int FileIo::mkdir(const char* path, mode_t mode) { return ::mkdir(path, mode); }

FileIo& file_io() {
  FileIo* io = installed.load(std::memory_order_acquire);
  return io != nullptr ? *io : posix();
}

FileIo* set_file_io(FileIo* io) { return installed.exchange(io, std::memory_order_acq_rel); }

}  // namespace tidemark::storage
