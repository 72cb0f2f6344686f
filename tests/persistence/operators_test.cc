// Every stateful operator across restarts: a run stopped and resumed (persisting mode) emits,
// in each resumed segment, exactly the changes a never-stopped run emits for the same input.
// Plus files modified and deleted between runs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "engine/collection_io.h"
#include "engine/harness.h"
#include "tidemark/tidemark.h"

namespace tidemark {
namespace {

using engine::Batch;
using engine::CapturedChange;
using persistence::Backend;
using persistence::Config;

const Schema kSchema{{"k", t_int()}, {"v", t_int()}};

std::string change_str(const CapturedChange& c) {
  std::string s = c.key.to_string() + (c.diff > 0 ? " +(" : " -(");
  for (size_t i = 0; i < c.row.size(); ++i) s += (i ? ", " : "") + c.row[i].to_string();
  return s + ")";
}

// Random batches over a small key pool; values small so joins and groups collide.
std::vector<Batch> batches(uint64_t seed, size_t steps, uint64_t salt) {
  std::mt19937_64 rng(seed);
  std::vector<Batch> out;
  std::map<uint64_t, Row> live;
  for (size_t s = 0; s < steps; ++s) {
    Batch b;
    std::set<uint64_t> used;
    for (size_t i = 0, n = 1 + rng() % 5; i < n; ++i) {
      uint64_t k = 1 + rng() % 12;
      if (!used.insert(k).second) continue;
      Key key{k, salt};
      auto it = live.find(k);
      if (it != live.end()) {
        b.push_back({key, it->second, -1});
        live.erase(it);
        if (rng() % 2) continue;
      }
      Row r{Value(static_cast<int64_t>(rng() % 4)), Value(static_cast<int64_t>(rng() % 10))};
      b.push_back({key, r, 1});
      live[k] = r;
    }
    out.push_back(std::move(b));
  }
  return out;
}

using Build = std::function<Table(Table, Table)>;

// Runs batches [0, end) of both sources and returns the emitted changes labelled with their
// step index (the position of their time among this run's times, offset by `first_step`).
std::vector<std::pair<size_t, std::string>> run_steps(const std::vector<Batch>& a, const std::vector<Batch>& b,
                                                      size_t end, const Build& build,
                                                      const std::optional<Config>& cfg, size_t first_step) {
  Graph g;
  std::vector<Batch> pa(a.begin(), a.begin() + static_cast<long>(end)), pb(b.begin(), b.begin() + static_cast<long>(end));
  Table ta = engine::add_source(g, std::make_unique<engine::BatchesSource>(pa, "a"), kSchema, "a");
  Table tb = engine::add_source(g, std::make_unique<engine::BatchesSource>(pb, "b"), kSchema, "b");
  auto captured = std::make_shared<std::vector<CapturedChange>>();
  std::vector<engine::Time> times;
  Table out = build(ta, tb);
  engine::add_sink(out, std::make_unique<engine::CaptureSink>(captured), "out");
  engine::add_sink(out, std::make_unique<testing::StepRecorder>(&times), "steps");
  RunOptions o;
  o.handle_signals = false;
  o.progress_interval_s = 0;
  o.log = [](const std::string&) {};
  o.persistence_config = cfg;
  Status st = run(g, o);
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  std::vector<std::pair<size_t, std::string>> res;
  for (const auto& c : *captured) {
    size_t step = std::find(times.begin(), times.end(), c.time) - times.begin();
    res.emplace_back(first_step + step, change_str(c));
  }
  return res;
}

void expect_restarts_match(const Build& build, uint64_t seed, persistence::PersistenceMode mode) {
  auto a = batches(seed, 12, 1), b = batches(seed + 1000, 12, 2);
  auto reference = run_steps(a, b, 12, build, std::nullopt, 0);
  Config cfg = Config::simple_config(Backend::memory(), 0, persistence::SnapshotAccess::kFull, mode);
  size_t begin = 0;
  for (size_t end : {3, 7, 12}) {
    std::multiset<std::pair<size_t, std::string>> want, got;
    for (const auto& c : reference)
      if (c.first >= begin && c.first < end) want.insert(c);
    // The resumed run replays [0, begin) without emitting, then steps begin..end-1 live.
    for (const auto& c : run_steps(a, b, end, build, cfg, begin)) got.insert(c);
    EXPECT_EQ(got, want) << "segment [" << begin << ", " << end << "), seed " << seed << ", mode "
                         << persistence::to_string(mode);
    begin = end;
  }
}

// Both resume modes: persisting (replays recorded input) and operator persisting (loads each
// operator's stored state, replays nothing).
void check_all_seeds(const Build& build) {
  for (auto mode : {persistence::PersistenceMode::kPersisting, persistence::PersistenceMode::kOperatorPersisting})
    for (uint64_t seed = 1; seed <= 4; ++seed) {
      expect_restarts_match(build, seed, mode);
      if (::testing::Test::HasFailure()) return;
    }
}

TEST(OperatorsAcrossRestarts, GroupbyCountSumMaxCountDistinct) {
  check_all_seeds([](Table a, Table) {
    return a.groupby({"k"}).reduce({{"k", col("k")}, {"n", reducers::count()}, {"s", reducers::sum(col("v"))},
                                    {"m", reducers::max(col("v"))}, {"d", reducers::count_distinct(col("v"))}});
  });
}

TEST(OperatorsAcrossRestarts, JoinEveryMode) {
  for (JoinMode m : {JoinMode::kInner, JoinMode::kLeft, JoinMode::kOuter}) {
    check_all_seeds([m](Table a, Table b) {
      return a.join(b, {{"k", "k"}}, m).select({{"k", left("k")}, {"x", left("v")}, {"y", right("v")}});
    });
  }
}

TEST(OperatorsAcrossRestarts, RestrictIntersectDifference) {
  check_all_seeds([](Table a, Table b) { return a.intersect(b); });
  check_all_seeds([](Table a, Table b) { return a.difference(b); });
  check_all_seeds([](Table a, Table b) { return a.restrict(b); });
}

TEST(OperatorsAcrossRestarts, UpdateRowsAndCells) {
  check_all_seeds([](Table a, Table b) { return a.update_rows(b); });
  check_all_seeds([](Table a, Table b) { return a.update_cells(b.select({{"v", col("v")}})); });
}

TEST(OperatorsAcrossRestarts, SortAndIx) {
  check_all_seeds([](Table a, Table) { return a.sort(col("v"), col("k")); });
  check_all_seeds([](Table a, Table) {
    Table sorted = a.sort(col("v"));
    return a.ix(sorted.filter(is_not_none(col("next"))), col("next")).with_columns({{"tag", lit(1)}});
  });
}

TEST(OperatorsAcrossRestarts, DeduplicateKeepsItsState) {
  check_all_seeds([](Table a, Table) {
    DeduplicateOptions o{.value = col("v"),
                         .acceptor = [](const Value& n, const Value& old) { return n.as_int() > old.as_int() + 2; },
                         .instance = col("k"),
                         .name = "ded"};
    return a.deduplicate(std::move(o));
  });
}

// Files modified or deleted while the program was stopped: the next run emits exactly the
// retraction of the old contents and the insertion of the new.
class FilesAcrossRestarts : public ::testing::TestWithParam<persistence::PersistenceMode> {};

TEST_P(FilesAcrossRestarts, ModifiedAndDeletedFiles) {
  namespace fs = std::filesystem;
  fs::path root = fs::temp_directory_path() / ("tidemark-files-" + std::to_string(getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "in");
  auto write = [&](const char* name, const char* text) { std::ofstream(root / "in" / name) << text; };
  Config cfg = Config::simple_config(Backend::filesystem((root / "state").string()), 0,
                                     persistence::SnapshotAccess::kFull, GetParam());
  auto run_once = [&] {
    Graph g;
    io::fs::ReadOptions ro;
    ro.format = io::Format::kPlaintext;
    ro.name = "lines";
    Table t = io::fs::read(g, (root / "in").string(), ro);
    auto captured = std::make_shared<std::vector<CapturedChange>>();
    engine::add_sink(t, std::make_unique<engine::CaptureSink>(captured), "out");
    RunOptions o;
    o.handle_signals = false;
    o.log = [](const std::string&) {};
    o.persistence_config = cfg;
    Status st = run(g, o);
    EXPECT_TRUE(st.is_ok()) << st.to_string();
    std::vector<std::string> out;
    for (const auto& c : *captured) out.push_back((c.diff > 0 ? "+" : "-") + c.row[0].to_string());
    std::sort(out.begin(), out.end());
    return out;
  };
  using V = std::vector<std::string>;
  write("a.txt", "a1\na2\n");
  write("b.txt", "b1\n");
  EXPECT_EQ(run_once(), (V{"+a1", "+a2", "+b1"}));
  write("a.txt", "a1\nA2\na3\n");
  fs::remove(root / "in" / "b.txt");
  write("c.txt", "c1\n");
  // Same lines keep their keys: a1 is unchanged in place, a2 -> A2, a3 is new.
  EXPECT_EQ(run_once(), (V{"+A2", "+a3", "+c1", "-a2", "-b1"}));
  EXPECT_EQ(run_once(), V{});
  fs::remove(root / "in" / "a.txt");
  EXPECT_EQ(run_once(), (V{"-A2", "-a1", "-a3"}));
  fs::remove_all(root);
}

INSTANTIATE_TEST_SUITE_P(Modes, FilesAcrossRestarts,
                         ::testing::Values(persistence::PersistenceMode::kPersisting,
                                           persistence::PersistenceMode::kOperatorPersisting),
                         [](const auto& info) { return persistence::to_string(info.param); });

}  // namespace
}  // namespace tidemark
