#include <gtest/gtest.h>

#include <cstdlib>

#include "harness.h"
#include "op_test_util.h"

namespace tidemark::testing {
namespace {

Schema kSchema{{"g", t_str()}, {"v", t_int()}};

bool far_above(const Value& n, const Value& o) { return n.as_int() > o.as_int() + 2; }
// Not monotone: an old row seen again could be accepted, so ignoring retractions matters.
bool far_from(const Value& n, const Value& o) { return std::abs(n.as_int() - o.as_int()) >= 5; }

DeduplicateOptions options(bool by_group, std::string name = "",
                           std::function<bool(const Value&, const Value&)> acceptor = far_above) {
  return {.value = col("v"),
          .acceptor = std::move(acceptor),
          .instance = by_group ? std::optional<Expr>(col("g")) : std::nullopt,
          .name = std::move(name)};
}

Row random_row(std::mt19937_64& rng) {
  static const char* groups[] = {"a", "b", "c"};
  return Row{Value(groups[rng() % 3]), Value(static_cast<int64_t>(rng() % 20))};
}

TEST(Deduplicate, AcceptsOnlyWhenTheAcceptorSaysSo) {
  SourceSpec s{kSchema, {}};
  uint64_t k = 1;
  for (int64_t v : {1, 2, 4, 6, 3, 7}) s.batches.push_back({{Key{k++, 0}, {Value("a"), Value(v)}, 1}});
  auto out = run_graph({s}, [](Graph&, std::vector<Table>& in) { return in[0].deduplicate(options(false)); });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  Key single = key_from_values({Value()});
  auto describe = [&](const CapturedChange& c) {
    EXPECT_EQ(c.key, single);
    return row_str(c.row);
  };
  std::vector<std::string> want = {"0:(a, 1)+", "2:(a, 1)-", "2:(a, 4)+", "5:(a, 4)-", "5:(a, 7)+"};
  EXPECT_EQ(step_changes(out, describe), want);
}

TEST(Deduplicate, IgnoresRetractionsAndKeysByInstance) {
  SourceSpec s{kSchema,
               {{{Key{1, 0}, {Value("a"), Value(1)}, 1}, {Key{2, 0}, {Value("b"), Value(10)}, 1}},
                {{Key{1, 0}, {Value("a"), Value(1)}, -1}, {Key{3, 0}, {Value("b"), Value(20)}, 1}}}};
  auto out = run_graph({s}, [](Graph&, std::vector<Table>& in) { return in[0].deduplicate(options(true)); });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  auto snap = final_snapshot(out);
  ASSERT_EQ(snap.size(), 2u);
  EXPECT_EQ(row_str(snap.at(key_from_values({Value("a")}))), "(a, 1)");  // still kept after its retraction
  EXPECT_EQ(row_str(snap.at(key_from_values({Value("b")}))), "(b, 20)");
}

// Direct model of the rule: insertions in the order the node sees them (each time's
// consolidated batch), retractions ignored.
TEST(Deduplicate, MatchesReferenceModel) {
  for (size_t workers : kWorkerCounts)
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    SCOPED_TRACE("workers = " + std::to_string(workers));
    std::mt19937_64 rng(seed);
    auto batches = random_batches(rng, 30, 6, random_row, 0.3);
    auto accept = seed % 2 ? far_above : far_from;
    auto out = run_graph({{kSchema, batches}}, [&](Graph&, std::vector<Table>& in) {
      return in[0].deduplicate(options(true, "", accept));
    }, RunOptions{}.pipeline_slice_rows, workers);
    ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
    ASSERT_EQ(out.step_times.size(), batches.size());
    std::map<Value, Row> model;
    Snapshot state;
    engine::Time prev = 0;
    for (size_t step = 0; step < batches.size(); ++step) {
      Batch b = batches[step];
      engine::consolidate(b);
      for (const auto& u : b) {
        if (u.diff < 0) continue;
        auto it = model.find(u.row[0]);
        if (it == model.end() || accept(u.row[1], it->second[1])) model[u.row[0]] = u.row;
      }
      apply_changes(state, out.changes, out.step_times[step], prev + 1);
      prev = out.step_times[step];
      ASSERT_EQ(state.size(), model.size()) << "seed " << seed << " step " << step;
      for (const auto& [inst, r] : model) {
        auto it = state.find(key_from_values({inst}));
        ASSERT_TRUE(it != state.end()) << "seed " << seed << " step " << step << ": no row for " << inst.to_string();
        ASSERT_EQ(row_str(it->second), row_str(r)) << "seed " << seed << " step " << step;
      }
    }
  }
}

TEST(Deduplicate, StateExportImportContinuesIdentically) {
  std::mt19937_64 rng(5);
  auto batches = random_batches(rng, 20, 6, random_row, 0.3);
  expect_state_continuation(kSchema, batches, 10, [](Graph&, std::vector<Table>& in) {
    return in[0].deduplicate(options(true, "dedup"));
  });
}

TEST(Deduplicate, NamesAndGraphErrors) {
  Graph g;
  Table t = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}), kSchema);
  Table d = t.deduplicate(options(true, "latest-per-group"));
  EXPECT_EQ(g.impl().node(d.node()).label(), "deduplicate 'latest-per-group'");
  EXPECT_EQ(d.schema(), kSchema);
  EXPECT_THROW(t.deduplicate(options(false, "latest-per-group")), GraphError);  // name used twice
  auto bad = options(false);
  bad.value = col("nope");
  try {
    t.deduplicate(bad);
    FAIL() << "expected GraphError";
  } catch (const GraphError& e) {
    EXPECT_NE(std::string(e.what()).find("in deduplicate: unknown column 'nope'"), std::string::npos) << e.what();
  }
  auto no_acceptor = options(false);
  no_acceptor.acceptor = nullptr;
  EXPECT_THROW(t.deduplicate(no_acceptor), GraphError);
}

}  // namespace
}  // namespace tidemark::testing
