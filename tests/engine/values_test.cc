// Values: hashing and keys agree with equality; handles of intermediate tables; error codes;
// unchecked argument types end in clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include <xxhash.h>

#include "engine/codec.h"
#include "engine/key_encoder.h"
#include "harness.h"

namespace tidemark::testing {
namespace {

double with_bits(uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, 8);
  return d;
}

Value random_value(std::mt19937_64& rng, int depth = 0) {
  static const double floats[] = {0.0, -0.0, 1.0, -1.0, 0.5, std::numeric_limits<double>::infinity(),
                                  -std::numeric_limits<double>::infinity(), std::nan(""), -std::nan(""),
                                  std::nan("7"), with_bits(0x7ff0000000000001ULL) /* signaling */,
                                  with_bits(0xfff8000000000123ULL), 1e-310 /* subnormal */};
  switch (rng() % (depth < 2 ? 7 : 6)) {
    case 0: return Value();
    case 1: return Value(static_cast<int64_t>(rng() % 3));
    case 2:
    case 3: return Value(floats[rng() % (sizeof floats / sizeof floats[0])]);
    case 4: return Value(std::string(1, static_cast<char>('a' + rng() % 2)));
    case 5: return Value(rng() % 2 == 0);
    default: {
      std::vector<Value> items;
      for (size_t i = 0, n = rng() % 3; i < n; ++i) items.push_back(random_value(rng, depth + 1));
      return Value::tuple(std::move(items));
    }
  }
}

// equal => same hash => same key (and the same 128-bit key for rows of equal values).
TEST(Values, EqualValuesHashAndKeyEqually) {
  std::mt19937_64 rng(20261201);
  std::vector<Value> pool;
  for (int i = 0; i < 400; ++i) pool.push_back(random_value(rng));
  size_t equal_pairs = 0, distinct_bits = 0;
  for (size_t i = 0; i < pool.size(); ++i)
    for (size_t j = 0; j < pool.size(); ++j) {
      const Value& a = pool[i];
      const Value& b = pool[j];
      if (!(a == b)) continue;
      ++equal_pairs;
      std::string ea, eb;
      codec::put_value(ea, a);
      codec::put_value(eb, b);
      if (ea != eb) ++distinct_bits;  // e.g. 0.0 and -0.0, NaN payloads
      ASSERT_EQ(a <=> b, std::strong_ordering::equal) << a.to_string() << " vs " << b.to_string();
      ASSERT_EQ(a.hash(), b.hash()) << a.to_string() << " vs " << b.to_string();
      ASSERT_EQ(key_from_values({a}), key_from_values({b})) << a.to_string() << " vs " << b.to_string();
      ASSERT_EQ(key_from_values_salted(3, {a, Value(1)}), key_from_values_salted(3, {b, Value(1)}));
      ASSERT_EQ(RowHash{}(Row{a, b}), RowHash{}(Row{b, a}));
    }
  EXPECT_GT(equal_pairs, pool.size());
  EXPECT_GT(distinct_bits, 0u) << "the pool should hold equal values with different bits";
}

// The allocation-free encoder writes exactly codec::put_key_row's bytes (keys persist: a
// different byte would move every group), for every type, strings around the buffer's size,
// tuples and rows long enough to spill to the general path.
TEST(Values, KeyEncoderBytesAreThoseOfPutKeyRow) {
  std::mt19937_64 rng(77);
  std::vector<Value> pool;
  for (int i = 0; i < 200; ++i) pool.push_back(random_value(rng));
  for (size_t len : {0, 1, 15, 16, 200, 230, 240, 250, 255, 256, 300, 5000})
    pool.push_back(Value(std::string(len, static_cast<char>('a' + len % 26))));
  pool.push_back(Value::bytes(std::string(40, '\0')));
  pool.push_back(Value::json("{\"a\": [1, 2.5, null]}"));
  pool.push_back(Value(Key{0x0123456789abcdefULL, 0xfedcba9876543210ULL}));
  pool.push_back(Value(DateTimeNaive{-5}));
  pool.push_back(Value(DateTimeUtc{1700000000000000000}));
  pool.push_back(Value(Duration{-1}));
  pool.push_back(Value(std::numeric_limits<int64_t>::min()));
  pool.push_back(Value(true));
  codec::KeyEncoder enc;
  size_t spilled = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    Row row;
    for (size_t i = 0, n = rng() % (trial % 10 == 0 ? 40 : 5); i < n; ++i) row.push_back(pool[rng() % pool.size()]);
    std::string want;
    codec::put_key_row(want, row);
    enc.begin(row.size());
    for (const Value& v : row) enc.add(v);
    ASSERT_EQ(std::string(enc.bytes()), want) << "row " << Value::tuple(row.to_vector()).to_string();
    XXH128_hash_t h = XXH3_128bits(want.data(), want.size());  // the key is xxh3-128 of those bytes
    ASSERT_EQ(enc.finish(), (Key{h.low64, h.high64}));
    ASSERT_EQ(key_from_values(row), (Key{h.low64, h.high64}));
    spilled += want.size() > 256;
  }
  EXPECT_GT(spilled, 0u);
  // The single fixed-width value fast path: the same key as the general path, for every value
  // it accepts, and it refuses the others.
  size_t fast = 0;
  for (const Value& v : pool) {
    Key k;
    bool took = codec::KeyEncoder::single_fixed_key(v, &k);
    DType t = v.type();
    bool fixed = t == DType::kInt || t == DType::kFloat || t == DType::kDateTimeNaive || t == DType::kDateTimeUtc ||
                 t == DType::kDuration;
    ASSERT_EQ(took, fixed) << v.to_string();
    if (took) {
      ASSERT_EQ(k, key_from_values({v})) << v.to_string();
    }
    fast += took;
  }
  for (double d : {0.0, -0.0, std::nan(""), -std::nan("7"), 1e308}) {
    Key k;
    ASSERT_TRUE(codec::KeyEncoder::single_fixed_key(Value(d), &k));
    ASSERT_EQ(k, key_from_values({Value(d)}));
  }
  for (int i = 0; i < 1000; ++i) {  // every payload byte and sign
    Value v(static_cast<int64_t>(rng()));
    Key k;
    ASSERT_TRUE(codec::KeyEncoder::single_fixed_key(v, &k));
    ASSERT_EQ(k, key_from_values({v})) << v.to_string();
  }
  EXPECT_GT(fast, 20u);
}

TEST(Values, ZeroAndNegativeZeroAndNaNsAreOneGroup) {
  SourceSpec s{Schema{{"f", t_float()}},
               {{{Key{1, 0}, {Value(0.0)}, 1},
                 {Key{2, 0}, {Value(-0.0)}, 1},
                 {Key{3, 0}, {Value(std::nan(""))}, 1},
                 {Key{4, 0}, {Value(-std::nan("3"))}, 1}},
                {{Key{2, 0}, {Value(-0.0)}, -1}, {Key{4, 0}, {Value(-std::nan("3"))}, -1}}}};
  auto out = run_graph({s}, [](Graph&, std::vector<Table>& in) {
    return in[0].groupby({"f"}).reduce({{"n", reducers::count()}});
  });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  Snapshot snap = final_snapshot(out);
  std::vector<std::string> rows;
  for (const auto& [k, r] : snap) rows.push_back(row_str(r));
  std::sort(rows.begin(), rows.end());
  EXPECT_EQ(rows, (std::vector<std::string>{"(1)", "(1)"}));
}

// GroupedTable / JoinResult / WindowedTable built on temporaries, used after the temporaries
// are gone (they used to keep pointers to them).
TEST(Values, IntermediateHandlesOutliveTheirTemporaries) {
  SourceSpec a{Schema{{"k", t_int()}, {"v", t_int()}},
               {{{Key{1, 1}, {Value(1), Value(10)}, 1}, {Key{2, 1}, {Value(2), Value(20)}, 1}}}};
  SourceSpec b{Schema{{"k", t_int()}, {"w", t_int()}},
               {{{Key{1, 2}, {Value(1), Value(100)}, 1}, {Key{2, 2}, {Value(3), Value(300)}, 1}}}};
  auto out = run_graph({a, b}, [](Graph&, std::vector<Table>& in) {
    JoinResult j = in[0].select({{"k", col("k")}, {"v", col("v")}})
                       .join(in[1].select({{"k", col("k")}, {"w", col("w")}}), {{"k", "k"}});
    // Overwrite the stack where the temporaries lived.
    volatile char noise[256];
    for (size_t i = 0; i < sizeof noise; ++i) noise[i] = static_cast<char>(0xa5);
    Table joined = j.select({{"k", left("k")}, {"s", left("v") + right("w")}});
    GroupedTable g = joined.select({{"k", col("k")}, {"s", col("s")}}).groupby({"k"});
    for (size_t i = 0; i < sizeof noise; ++i) noise[i] = static_cast<char>(0x5a);
    Table reduced = g.reduce({{"k", col("k")}, {"s", reducers::sum(col("s"))}});
    WindowedTable w = reduced.select({{"t", col("k")}, {"s", col("s")}}).windowby(col("t"), tumbling(10));
    for (size_t i = 0; i < sizeof noise; ++i) noise[i] = static_cast<char>(0x11);
    return w.reduce({{"n", reducers::count()}, {"s", reducers::sum(col("s"))}});
  });
  ASSERT_TRUE(out.status.is_ok()) << out.status.to_string();
  Snapshot snap = final_snapshot(out);
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(row_str(snap.begin()->second), "(1, 110)");
}

class FailingSink final : public engine::Sink {
 public:
  std::string describe() const override { return "failing sink"; }
  Status open() override { return {}; }
  Status write(engine::Time, const Batch&, const Schema&) override { return Status::io_error("disk full"); }
  Status flush() override { return {}; }
};

TEST(Values, SinkErrorsKeepTheirCode) {
  Graph g;
  Table t = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{{{Key{1, 0}, {Value(1)}, 1}}}),
                               Schema{{"x", t_int()}});
  engine::add_sink(t.select({{"x", col("x")}}), std::make_unique<FailingSink>());
  RunOptions o;
  o.handle_signals = false;
  o.progress_interval_s = 0;
  Status st = run(g, o);
  EXPECT_EQ(st.code(), StatusCode::kIoError) << st.to_string();
  EXPECT_NE(st.message().find("disk full"), std::string::npos) << st.to_string();
  EXPECT_NE(st.message().find("sink"), std::string::npos) << st.to_string();
}

TEST(Values, SliceArgumentsAreTypeChecked) {
  Graph g;
  Table t = engine::add_source(g, std::make_unique<engine::BatchesSource>(std::vector<Batch>{}),
                               Schema{{"s", t_str()}, {"f", t_float()}});
  EXPECT_THROW(t.select({{"x", str::slice(col("s"), col("f"), 2)}}), GraphError);
  EXPECT_THROW(t.select({{"x", str::slice(col("s"), 0, "2")}}), GraphError);
}

TEST(Values, UncheckedArgumentTypesEndInAClearError) {
  // A column of type any (flatten's output) reaches slice() holding a string.
  SourceSpec s{Schema{{"s", t_str()}, {"t", Type{DType::kTuple, false}}},
               {{{Key{1, 0}, {Value("hello"), Value::tuple({Value("x")})}, 1}}}};
  auto out = run_graph({s}, [](Graph&, std::vector<Table>& in) {
    return in[0].flatten("t").select({{"x", str::slice(col("s"), col("t"), 2)}});
  });
  ASSERT_FALSE(out.status.is_ok());
  EXPECT_NE(out.status.message().find("slice() expects int, got str"), std::string::npos) << out.status.to_string();
  EXPECT_EQ(out.status.message().find("variant"), std::string::npos) << out.status.to_string();
}

}  // namespace
}  // namespace tidemark::testing
