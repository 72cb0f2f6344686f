// The filesystem source behind io::fs::read: reads a file or a directory tree in one of the
// formats of io::Format, and in streaming mode keeps watching it.
//
// A file is the unit of change: it is read whole, within one poll, and when its size, mtime
// or content hash changes every row it contributed is retracted and its new rows inserted
// (consolidation then cancels the rows that stayed the same). Rows keep their keys across
// runs: key_from_values(primary key values), or key_combine(key_from_string(path), {i, 0})
// for the i-th row of the file.
//
// Persistence: offset() is the table of files read so far (docs/format/fs-source-offset.md);
// seek() restores it, and replayed() gives back the rows of earlier runs (both before open(),
// in either order) so that a file changed or deleted while the program was stopped can be
// retracted exactly.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/node.h"
#include "tidemark/io.h"

namespace tidemark::connectors {

// The output schema of a source with these options; throws GraphError on inconsistent
// options (primary key column not in the schema, empty or unsupported schema).
Schema fs_source_schema(const io::fs::ReadOptions& options);

class FsSource final : public engine::Source {
 public:
  FsSource(std::string path, io::fs::ReadOptions options);

  std::string describe() const override;
  bool streaming() const override { return options_.mode == io::Mode::kStreaming; }
  uint64_t autocommit_ms() const override { return streaming() ? options_.autocommit_duration_ms : 0; }
  Status open() override;
  Status poll(engine::Batch& out, bool* finished) override;
  std::string offset() const override;
  Status seek(std::string_view offset) override;
  void replayed(const engine::Update& update) override;

  // What the source knows about one file it has read.
  struct FileEntry {
    uint64_t size = 0;
    int64_t mtime_ns = 0;
    uint64_t hash = 0;      // XXH3-64 of the content
    uint64_t rows = 0;      // number of rows the file contributed
    int64_t read_ns = 0;    // wall clock when last read: detects changes within one mtime tick
    std::vector<Key> keys;  // primary-key sources: the keys of those rows
  };

 private:
  struct Work {
    std::string path;
    bool deleted = false;
  };
  Status scan();
  Status process(const Work& w, engine::Batch& out, uint64_t* bytes_read);
  // Parses a file's content into rows (with keys). Row errors are returned or, with
  // skip_bad_rows, logged and skipped.
  Status parse(const std::string& path, const std::string& content, std::vector<engine::Update>* rows) const;
  Status row_error(const std::string& message) const;
  Key key_for(const std::string& path, uint64_t index, const Row& row) const;
  void retract(const std::string& path, const FileEntry& entry, engine::Batch& out);
  // Assigns the replayed rows to the files of the restored table (seek and replay may come in
  // either order, so this waits for open()).
  void resolve_replayed();

  std::string root_;
  io::fs::ReadOptions options_;
  Schema schema_;
  std::vector<size_t> pk_;
  std::map<std::string, FileEntry> files_;
  // Rows each file contributed (streaming, or learnt from replay): needed to retract them.
  std::unordered_map<std::string, std::vector<engine::Update>> rows_;
  std::vector<engine::Update> replayed_;  // until open()
  std::deque<Work> work_;
  bool scanned_ = false;
};

}  // namespace tidemark::connectors
