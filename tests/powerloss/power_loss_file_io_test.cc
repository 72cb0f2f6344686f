// The power-loss layer's own model (what survives and what does not), and the two writers that
// use the seam checked directly: the file sink and the filesystem object store.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "connectors/fs_sink.h"
#include "powerloss/power_loss_file_io.h"
#include "storage/file_io.h"
#include "storage/object_store.h"

namespace tidemark {
namespace {

namespace fs = std::filesystem;
using storage::file_io;
using testing_support::PowerLossFileIo;

class PowerLossModel : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("tidemark-plmodel-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "old");
    std::ofstream(root_ / "old" / "kept") << "before";
    root_ = fs::canonical(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string p(const std::string& rel) const { return (root_ / rel).string(); }
  static std::string read(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }
  static void write_file(const std::string& path, const std::string& data, bool sync) {
    int fd = file_io().open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(file_io().write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    if (sync) {
      ASSERT_EQ(file_io().fsync(fd), 0);
    }
    ASSERT_EQ(file_io().close(fd), 0);
  }
  static void sync_dir(const std::string& path) {
    int fd = file_io().open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(file_io().fsync(fd), 0);
    file_io().close(fd);
  }

  fs::path root_;
};

TEST_F(PowerLossModel, WhatWasInstalledSurvives) {
  PowerLossFileIo io({root_.string()});
  EXPECT_EQ(io.power_loss(), "");
  EXPECT_EQ(read(p("old/kept")), "before");
}

TEST_F(PowerLossModel, NewFileNeedsFileAndDirectoryFsync) {
  PowerLossFileIo io({root_.string()});
  write_file(p("a"), "data-a", /*sync=*/true);   // file fsynced, directory not
  write_file(p("b"), "data-b", /*sync=*/false);  // nothing fsynced
  EXPECT_EQ(io.power_loss(), "");
  EXPECT_FALSE(fs::exists(p("a")));
  EXPECT_FALSE(fs::exists(p("b")));

  write_file(p("a"), "data-a", true);
  write_file(p("b"), "data-b", false);
  sync_dir(root_.string());
  EXPECT_EQ(io.power_loss(), "");
  EXPECT_EQ(read(p("a")), "data-a");
  EXPECT_TRUE(fs::exists(p("b")));
  EXPECT_EQ(read(p("b")), "");  // its name survived, its unsynced data did not
}

TEST_F(PowerLossModel, UnsyncedWritesAndTruncationsRevertToTheLastFsync) {
  PowerLossFileIo io({root_.string()});
  int fd = file_io().open(p("old/kept").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(file_io().write(fd, "+1", 2), 2);
  ASSERT_EQ(file_io().fsync(fd), 0);
  ASSERT_EQ(file_io().write(fd, "+2", 2), 2);
  ASSERT_EQ(file_io().ftruncate(fd, 3), 0);
  file_io().close(fd);
  EXPECT_EQ(read(p("old/kept")), "bef");
  EXPECT_EQ(io.power_loss(), "");
  EXPECT_EQ(read(p("old/kept")), "before+1");
}

TEST_F(PowerLossModel, RenameUnlinkAndMkdirRevertUntilTheDirectoryIsSynced) {
  PowerLossFileIo io({root_.string()});
  write_file(p("old/tmp"), "new", true);
  ASSERT_EQ(file_io().rename(p("old/tmp").c_str(), p("old/kept").c_str()), 0);
  ASSERT_EQ(file_io().mkdir(p("dir").c_str(), 0755), 0);
  write_file(p("dir/x"), "x", true);
  sync_dir(p("dir"));  // "dir" itself is not durable in the root yet
  EXPECT_EQ(read(p("old/kept")), "new");
  EXPECT_EQ(io.power_loss(), "");
  EXPECT_EQ(read(p("old/kept")), "before");  // the rename was undone
  EXPECT_FALSE(fs::exists(p("old/tmp")));     // and the temp file's creation too
  EXPECT_FALSE(fs::exists(p("dir")));

  ASSERT_EQ(file_io().unlink(p("old/kept").c_str()), 0);
  EXPECT_EQ(io.power_loss(), "");
  EXPECT_EQ(read(p("old/kept")), "before");  // the unlink was undone
  ASSERT_EQ(file_io().unlink(p("old/kept").c_str()), 0);
  sync_dir(p("old"));
  EXPECT_EQ(io.power_loss(), "");
  EXPECT_FALSE(fs::exists(p("old/kept")));
}

TEST_F(PowerLossModel, CrashFailsThatCallAndEveryLaterOneUntilThePowerLoss) {
  PowerLossFileIo io({root_.string()});
  io.crash_at(2);
  int fd = file_io().open(p("f").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);  // call 1
  ASSERT_GE(fd, 0);
  EXPECT_EQ(file_io().write(fd, "x", 1), -1);  // call 2
  EXPECT_EQ(errno, EIO);
  EXPECT_EQ(file_io().fsync(fd), -1);
  EXPECT_TRUE(io.crashed());
  EXPECT_NE(io.crash_call().find("2: write"), std::string::npos) << io.crash_call();
  file_io().close(fd);
  EXPECT_EQ(io.power_loss(), "");
  EXPECT_FALSE(io.crashed());
  write_file(p("g"), "ok", true);
  EXPECT_EQ(io.untracked(), 0u);
}

TEST_F(PowerLossModel, FileSinkOutputSurvivesOnceFlushed) {
  PowerLossFileIo io({root_.string()});
  connectors::FsSink sink(p("out.csv"), io::fs::WriteOptions{});
  ASSERT_TRUE(sink.truncate_to("0").is_ok());  // a fresh persistent run
  ASSERT_TRUE(sink.open().is_ok());
  Schema schema{{"word", t_str()}};
  engine::Batch b;
  b.push_back({Key{1, 2}, {Value("w")}, 1});
  ASSERT_TRUE(sink.write(5, b, schema).is_ok());
  ASSERT_TRUE(sink.time_end(5).is_ok());
  ASSERT_TRUE(sink.flush().is_ok());
  std::string position = sink.position();
  ASSERT_TRUE(sink.close().is_ok());
  EXPECT_EQ(io.power_loss(), "");
  ASSERT_TRUE(fs::exists(p("out.csv"))) << "the committed output file did not survive the power loss";
  EXPECT_EQ(std::to_string(fs::file_size(p("out.csv"))), position);
}

TEST_F(PowerLossModel, FileSinkCutBackIsDurable) {
  std::ofstream(root_ / "out.csv") << "word,time,diff\nw,1,1\ngarbage\n";
  PowerLossFileIo io({root_.string()});
  connectors::FsSink sink(p("out.csv"), io::fs::WriteOptions{});
  ASSERT_TRUE(sink.truncate_to("21").is_ok());
  EXPECT_EQ(io.power_loss(), "");  // nothing appended, nothing committed since
  EXPECT_EQ(read(p("out.csv")), "word,time,diff\nw,1,1\n");
}

TEST_F(PowerLossModel, ObjectStorePutsSurviveAndRemovesStay) {
  PowerLossFileIo io({root_.string()});
  auto store = storage::open_filesystem_store(p("state"));
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  ASSERT_TRUE((*store)->put("a/b/c", "1").is_ok());
  ASSERT_TRUE((*store)->put_if_absent("m/1", "2").is_ok());
  ASSERT_TRUE((*store)->put("x", "3").is_ok());
  ASSERT_TRUE((*store)->remove("x").is_ok());
  store->reset();
  EXPECT_EQ(io.power_loss(), "");
  auto again = storage::open_filesystem_store(p("state"));
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(*(*again)->get("a/b/c"), "1");
  EXPECT_EQ(*(*again)->get("m/1"), "2");
  EXPECT_FALSE((*again)->get("x").is_ok());
  EXPECT_EQ(io.untracked(), 0u);
}

// A put_if_absent or remove whose directory fsync failed and that is retried: the retry sees
// the name already there (or gone) and must still make it durable before reporting success.
TEST_F(PowerLossModel, RetriedPutIfAbsentAndRemoveAreDurable) {
  PowerLossFileIo io({root_.string()});
  auto store = storage::open_filesystem_store(p("state"));
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  ASSERT_TRUE((*store)->put("r/other", "0").is_ok());  // the directories exist and are durable
  ASSERT_TRUE((*store)->put("p/other", "0").is_ok());
  // remove: unlink, fsync(dir) <- fails.
  ASSERT_TRUE((*store)->put("r/gone", "x").is_ok());
  io.fail_once_at(2);
  ASSERT_FALSE((*store)->remove("r/gone").is_ok());
  ASSERT_TRUE((*store)->remove("r/gone").is_ok());  // absent already: success
  // put_if_absent: open(create) temp, write, fsync, link, unlink temp, fsync(dir) <- fails.
  io.fail_once_at(6);
  Status first = (*store)->put_if_absent("p/m", "manifest");
  ASSERT_FALSE(first.is_ok());
  EXPECT_NE(first.to_string().find("fsync directory"), std::string::npos) << first.to_string();
  ASSERT_TRUE((*store)->put_if_absent("p/m", "manifest").is_ok());  // ours already: success
  store->reset();
  EXPECT_EQ(io.power_loss(), "");
  auto again = storage::open_filesystem_store(p("state"));
  ASSERT_TRUE(again.is_ok());
  auto m = (*again)->get("p/m");
  ASSERT_TRUE(m.is_ok()) << "a put_if_absent that reported success was lost: " << m.status().to_string();
  EXPECT_EQ(*m, "manifest");
  EXPECT_FALSE((*again)->get("r/gone").is_ok()) << "a remove that reported success came back";
}

}  // namespace
}  // namespace tidemark
