// An in-memory FileLister for the file-source fuzz targets: one file whose content is the
// fuzz input, so FsSource's real parse and offset paths run without touching the disk.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "connectors/fs_source.h"

namespace tidemark::fuzz {

class MemoryLister final : public connectors::FileLister {
 public:
  MemoryLister(std::string path, std::string content) : path_(std::move(path)), content_(std::move(content)) {}
  std::string describe(const char* format) const override { return std::string("fuzz ") + format + " source"; }
  Status open() override { return {}; }
  Status list(std::vector<Listed>* out) override {
    out->push_back({path_, content_.size(), 1});
    return {};
  }
  Status read(const std::string& path, std::string* content, uint64_t* size, int64_t* mtime_ns,
              bool* vanished) override {
    *content = content_;
    *size = content_.size();
    *mtime_ns = 1;
    *vanished = false;
    return {};
  }
  bool recheck(int64_t, int64_t, uint64_t) const override { return true; }
  std::unique_ptr<connectors::FileLister> clone() const override {
    return std::make_unique<MemoryLister>(path_, content_);
  }

 private:
  std::string path_;
  std::string content_;
};

// Reads `content` as one file with these options (static mode): every poll until finished.
// Returns the first error, or OK; the rows go to *rows.
inline Status read_all(connectors::FsSource& source, std::vector<engine::Update>* rows) {
  TM_RETURN_IF_ERROR(source.open());
  for (int i = 0; i < 16; ++i) {
    engine::Batch b;
    bool finished = false;
    TM_RETURN_IF_ERROR(source.poll(b, &finished));
    for (auto& u : b) rows->push_back(std::move(u));
    if (finished) break;
  }
  return {};
}

}  // namespace tidemark::fuzz
