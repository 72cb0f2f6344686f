// The file sink behind io::fs::write: one line per change, the table's columns then `time`
// and `diff`, as CSV (with a header) or JSON lines.
//
// Output is buffered; flush() writes and fsyncs it (and, the first time after open(), the
// file's directory, so that a created file's name is durable before its position is
// committed). Exactly-once support: position() is the output's length in bytes (decimal),
// truncate_to(p) cuts the file back to p durably (ftruncate + fsync) and switches open() to
// append mode (a resumed run continues the file instead of starting it over). Every mutating
// call goes through storage::file_io() (src/storage/file_io.h).
#pragma once

#include <string>

#include "engine/node.h"
#include "tidemark/io.h"

namespace tidemark::connectors {

class FsSink final : public engine::Sink {
 public:
  FsSink(std::string path, io::fs::WriteOptions options) : path_(std::move(path)), options_(std::move(options)) {}
  ~FsSink() override;

  std::string describe() const override;
  Status open() override;
  Status write(engine::Time t, const engine::Batch& changes, const Schema& schema) override;
  Status time_end(engine::Time t) override;
  Status flush() override;
  Status close() override;
  // Length of the output including buffered bytes (flush() makes them durable).
  std::string position() const override;
  Status truncate_to(std::string_view position) override;

 private:
  Status write_buffer();

  std::string path_;
  io::fs::WriteOptions options_;
  int fd_ = -1;
  bool append_ = false;     // set by truncate_to: resume the existing file
  bool header_due_ = false;  // csv: the file is empty, the header goes first
  bool dir_sync_due_ = false;  // the file's directory entry is not yet known to be durable
  uint64_t written_ = 0;    // bytes in the file
  std::string buffer_;
};

}  // namespace tidemark::connectors
