// The file source behind io::fs::read and io::s3::read: reads a file, a directory tree or the
// objects under an S3 prefix (a FileLister) in one of the formats of io::Format, and in
// streaming mode keeps watching them.
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
// retracted exactly. Without replay (operator persisting), set_content_archive() gives an
// archive where the source stashes every content it emitted rows from (under the XXH3-64 of
// the file table); to retract a file's rows it fetches that content back and parses it again
// (parsing is deterministic), so it then keeps no rows in memory at all.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/node.h"
#include "tidemark/io.h"

namespace tidemark::storage {
class ObjectStore;
}

namespace tidemark::connectors {

// Where an FsSource's files come from: the local filesystem (a file or a directory tree) or
// the objects of an ObjectStore (an S3 prefix). Paths are what the source records and keys
// rows by: filesystem paths, or "<root url>/<object key>".
class FileLister {
 public:
  struct Listed {
    std::string path;
    uint64_t size = 0;
    int64_t mtime_ns = 0;  // 0 where unknown (object stores)
  };
  virtual ~FileLister() = default;
  // For messages and the source's describe(), e.g. "fs csv source '/in'", "s3://b/p (csv)".
  virtual std::string describe(const char* format) const = 0;
  // Checks that the input exists and can be reached (the source's open()).
  virtual Status open() = 0;
  // Every file, sorted by path, hidden entries ('.'-prefixed segments) skipped.
  virtual Status list(std::vector<Listed>* out) = 0;
  // Reads a whole file; *vanished is set (and OK returned) when it no longer exists.
  virtual Status read(const std::string& path, std::string* content, uint64_t* size, int64_t* mtime_ns,
                      bool* vanished) = 0;
  // Whether a listed file whose size (and mtime) are unchanged must still be read to compare
  // content hashes. `scan` counts the source's scans.
  virtual bool recheck(int64_t mtime_ns, int64_t read_ns, uint64_t scan) const = 0;
  // Workers: a fresh lister of the same files (not opened).
  virtual std::unique_ptr<FileLister> clone() const = 0;
};

std::unique_ptr<FileLister> make_filesystem_lister(std::string path);
// Objects of a store opened at open() by `open_store`; `root_url` ("s3://bucket/prefix")
// prefixes their keys to form paths. A listing shows sizes only, so objects of unchanged
// size are re-read (and their hash compared) every `recheck_every` scans.
std::unique_ptr<FileLister> make_object_store_lister(
    std::function<Result<std::unique_ptr<storage::ObjectStore>>()> open_store, std::string root_url,
    uint64_t recheck_every = 8);

// The output schema of a source with these options; throws GraphError on inconsistent
// options (primary key column not in the schema, empty or unsupported schema).
Schema fs_source_schema(const io::fs::ReadOptions& options);

class FsSource final : public engine::Source {
 public:
  FsSource(std::string path, io::fs::ReadOptions options);
  FsSource(std::unique_ptr<FileLister> lister, io::fs::ReadOptions options);

  std::string describe() const override;
  bool streaming() const override { return options_.mode == io::Mode::kStreaming; }
  uint64_t autocommit_ms() const override { return streaming() ? options_.autocommit_duration_ms : 0; }
  Status open() override;
  Status poll(engine::Batch& out, bool* finished) override;
  std::string offset() const override;
  Status seek(std::string_view offset) override;
  void replayed(const engine::Update& update) override;
  // The union of the shards' tables (a shard's seek() keeps its own files of any table).
  Result<std::string> merge_shard_offsets(const std::vector<std::string>& parts) const override;
  void set_content_archive(engine::ContentArchive* archive) override { archive_ = archive; }
  // The hashes of the files in the table that contributed rows (the contents a retraction may
  // fetch), each once.
  void live_contents(std::vector<uint64_t>& out) const override;
  // Workers: a source reading the files whose path hash (XXH3-64) picks shard `index`.
  std::unique_ptr<engine::Source> shard(size_t index, size_t count) const override;
  // Whether this source reads `path` (always, unless it is a shard).
  bool in_shard(const std::string& path) const;

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
  // `log_skipped` = false: parsing content again (its skipped rows were logged the first time).
  Status parse(const std::string& path, const std::string& content, std::vector<engine::Update>* rows,
               bool log_skipped = true) const;
  Status row_error(const std::string& message, bool log_skipped = true) const;
  Key key_for(const std::string& path, uint64_t index, const Row& row) const;
  // Appends retractions of the rows the file contributed: from rows_, else from the archived
  // content (a fetch or re-parse failure is an error naming the path and hash).
  // The file table as offset() bytes (docs/format/fs-source-offset.md), and back: decode_table
  // adds the table's files to `files`.
  static std::string encode_table(const std::map<std::string, FileEntry>& files);
  Status decode_table(std::string_view in, std::map<std::string, FileEntry>* files) const;
  Status retract(const std::string& path, const FileEntry& entry, engine::Batch& out);
  Status retract_archived(const std::string& path, const FileEntry& entry, engine::Batch& out);
  // Assigns the replayed rows to the files of the restored table (seek and replay may come in
  // either order, so this waits for open()).
  void resolve_replayed();

  std::unique_ptr<FileLister> lister_;
  io::fs::ReadOptions options_;
  Schema schema_;
  std::vector<size_t> pk_;
  std::map<std::string, FileEntry> files_;
  // Rows each file contributed (streaming without an archive, or learnt from replay): needed
  // to retract them.
  std::unordered_map<std::string, std::vector<engine::Update>> rows_;
  engine::ContentArchive* archive_ = nullptr;
  std::vector<engine::Update> replayed_;  // until open()
  std::deque<Work> work_;
  bool scanned_ = false;
  uint64_t scans_ = 0;
  size_t shard_index_ = 0, shard_count_ = 1;
};

}  // namespace tidemark::connectors
