// groupby(...).reduce(...): incremental reducers with retraction support.
//
// State per group: the number of live rows, one state per reducer, and the output row last
// emitted (so a change emits exactly -old +new). Reducers keep what retraction needs:
// count/sum/avg keep running totals; min/max/any/count_distinct/sorted_tuple a multiset of
// values; earliest/latest/tuple the values by (arrival time, key) or key.

#include <algorithm>
#include <cstring>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "engine/codec.h"
#include "engine/expr_internal.h"
#include "engine/flat_index.h"
#include "engine/key_encoder.h"
#include "engine/node.h"
#include "engine/state_codec.h"
#include "engine/workers.h"

namespace tidemark {
namespace engine {
namespace {

using internal::CompiledExprPtr;
using internal::EvalContext;
using internal::ReducerSpec;

class ReducerState {
 public:
  virtual ~ReducerState() = default;
  virtual void add(const Value& v, int64_t diff, Time t, const Key& k) = 0;
  virtual Value result(int64_t group_count) const = 0;
  virtual void save(std::string& out) const = 0;
  virtual bool load(std::string_view& in) = 0;
  // After load(): whether the loaded state can belong to a group of `group_count` live rows.
  // A reducer that counts rows counts each live row at most once, with positive counts (zero
  // counts are erased; with deterministic arguments, which correct retractions need anyway,
  // counts never go negative). A damaged count would otherwise make a tuple result
  // materialize billions of items (found by fuzz_operator_state).
  virtual bool fits(int64_t group_count) const { return true; }
};

// Counts all positive and summing to at most `limit`.
template <typename Map, typename CountOf>
bool counts_fit(const Map& m, int64_t limit, CountOf&& count_of) {
  int64_t left = limit;
  for (const auto& kv : m) {
    const int64_t c = count_of(kv.second);
    if (c <= 0 || c > left) return false;
    left -= c;
  }
  return true;
}

class CountState final : public ReducerState {
 public:
  void add(const Value&, int64_t, Time, const Key&) override {}
  Value result(int64_t n) const override { return Value(n); }
  void save(std::string&) const override {}
  bool load(std::string_view&) override { return true; }
};

// sum and avg. Ints stay exact; floats accumulate (retractions subtract).
// A time's changes to one group's sum/avg, summed before they reach the group's state.
struct SumDelta {
  int64_t isum = 0;
  double fsum = 0;
  int64_t n = 0;
  bool saw_float = false, saw_duration = false, any = false;
  // Ints inline (every row of an int sum comes here), the other types out of line.
  void add(const Value& v, int64_t diff) {
    if (v.type() == DType::kInt) [[likely]] {
      isum += v.as_int() * diff;
      n += diff;
      any = true;
      return;
    }
    add_other(v, diff);
  }
  void merge(const SumDelta& o) {
    isum += o.isum;
    fsum += o.fsum;
    n += o.n;
    saw_float = saw_float || o.saw_float;
    saw_duration = saw_duration || o.saw_duration;
    any = any || o.any;
  }
  [[gnu::noinline]] void add_other(const Value& v, int64_t diff) {
    if (v.is_none()) return;
    switch (v.type()) {
      case DType::kInt: isum += v.as_int() * diff; break;
      case DType::kFloat: fsum += v.as_float() * static_cast<double>(diff); saw_float = true; break;
      case DType::kDuration: isum += v.as_duration() * diff; saw_duration = true; break;
      default: throw RuntimeError(std::string("sum/avg of ") + dtype_name(v.type()));
    }
    n += diff;
    any = true;
  }
};

class SumState final : public ReducerState {
 public:
  explicit SumState(bool avg) : avg_(avg) {}
  void merge(const SumDelta& d) {
    isum_ += d.isum;
    fsum_ += d.fsum;
    n_ += d.n;
    saw_float_ = saw_float_ || d.saw_float;
    saw_duration_ = saw_duration_ || d.saw_duration;
  }
  void add(const Value& v, int64_t diff, Time, const Key&) override {
    if (v.is_none()) return;
    switch (v.type()) {
      case DType::kInt: isum_ += v.as_int() * diff; break;
      case DType::kFloat: fsum_ += v.as_float() * static_cast<double>(diff); saw_float_ = true; break;
      case DType::kDuration: isum_ += v.as_duration() * diff; saw_duration_ = true; break;
      default: throw RuntimeError(std::string("sum/avg of ") + dtype_name(v.type()));
    }
    n_ += diff;
  }
  Value result(int64_t) const override {
    if (avg_) {
      if (n_ == 0) return Value();
      if (saw_duration_) return Value(Duration{isum_ / n_});
      return Value((static_cast<double>(isum_) + fsum_) / static_cast<double>(n_));
    }
    if (saw_duration_) return Value(Duration{isum_});
    if (saw_float_) return Value(static_cast<double>(isum_) + fsum_);
    return Value(isum_);
  }
  void save(std::string& out) const override {
    codec::put_i64(out, isum_);
    Value f(fsum_);
    codec::put_value(out, f);
    codec::put_i64(out, n_);
    codec::put_u8(out, (saw_float_ ? 1 : 0) | (saw_duration_ ? 2 : 0));
  }
  bool load(std::string_view& in) override {
    Value f;
    uint8_t flags;
    if (!codec::get_i64(in, &isum_) || !codec::get_value(in, &f) || !codec::get_i64(in, &n_) ||
        !codec::get_u8(in, &flags) || f.type() != DType::kFloat)
      return false;
    fsum_ = f.as_float();
    saw_float_ = flags & 1;
    saw_duration_ = flags & 2;
    return true;
  }

 private:
  bool avg_;
  int64_t isum_ = 0;
  double fsum_ = 0;
  int64_t n_ = 0;
  bool saw_float_ = false;
  bool saw_duration_ = false;
};

// min, max, any, count_distinct, sorted_tuple: a multiset of values.
class MultisetState final : public ReducerState {
 public:
  enum class Kind { kMin, kMax, kAny, kCountDistinct, kSortedTuple };
  explicit MultisetState(Kind k) : kind_(k) {}
  void add(const Value& v, int64_t diff, Time, const Key&) override {
    if (v.is_none() && kind_ != Kind::kSortedTuple && kind_ != Kind::kCountDistinct) return;
    int64_t& c = values_[v];
    c += diff;
    if (c == 0) values_.erase(v);
  }
  Value result(int64_t) const override {
    switch (kind_) {
      case Kind::kMin:
      case Kind::kAny:
        return values_.empty() ? Value() : values_.begin()->first;
      case Kind::kMax:
        return values_.empty() ? Value() : values_.rbegin()->first;
      case Kind::kCountDistinct:
        return Value(static_cast<int64_t>(values_.size()));
      case Kind::kSortedTuple: {
        std::vector<Value> items;
        for (const auto& [v, c] : values_)
          for (int64_t i = 0; i < c; ++i) items.push_back(v);
        return Value::tuple(std::move(items));
      }
    }
    return Value();
  }
  void save(std::string& out) const override {
    codec::put_varint(out, values_.size());
    for (const auto& [v, c] : values_) {
      codec::put_value(out, v);
      codec::put_i64(out, c);
    }
  }
  bool load(std::string_view& in) override {
    uint64_t n;
    if (!codec::get_varint(in, &n)) return false;
    values_.clear();
    for (uint64_t i = 0; i < n; ++i) {
      Value v;
      int64_t c;
      if (!codec::get_value(in, &v) || !codec::get_i64(in, &c) || !values_.emplace(std::move(v), c).second) return false;
    }
    return true;
  }
  bool fits(int64_t group_count) const override {
    return counts_fit(values_, group_count, [](int64_t c) { return c; });
  }

 private:
  Kind kind_;
  std::map<Value, int64_t> values_;
};

// earliest, latest (by arrival time, ties by key) and tuple (by key).
class OrderedState final : public ReducerState {
 public:
  enum class Kind { kEarliest, kLatest, kTuple };
  explicit OrderedState(Kind k) : kind_(k) {}
  void add(const Value& v, int64_t diff, Time t, const Key& k) override {
    auto it = by_key_.find(k);
    if (diff > 0) {
      if (it == by_key_.end()) {
        by_key_.emplace(k, Entry{t, v, diff});
        order_.emplace(std::make_pair(t, k), v);
      } else {
        it->second.count += diff;
      }
      return;
    }
    if (it == by_key_.end()) return;  // retraction of a row this reducer never saw
    it->second.count += diff;
    if (it->second.count <= 0) {
      order_.erase(std::make_pair(it->second.time, k));
      by_key_.erase(it);
    }
  }
  Value result(int64_t) const override {
    if (order_.empty()) return kind_ == Kind::kTuple ? Value::tuple({}) : Value();
    if (kind_ == Kind::kEarliest) return order_.begin()->second;
    if (kind_ == Kind::kLatest) return order_.rbegin()->second;
    std::vector<Value> items;
    for (const auto& [k, e] : by_key_)
      for (int64_t i = 0; i < e.count; ++i) items.push_back(e.value);
    return Value::tuple(std::move(items));
  }
  void save(std::string& out) const override {
    codec::put_varint(out, by_key_.size());
    for (const auto& [k, e] : by_key_) {
      codec::put_key(out, k);
      codec::put_u64(out, e.time);
      codec::put_value(out, e.value);
      codec::put_i64(out, e.count);
    }
  }
  bool load(std::string_view& in) override {
    uint64_t n;
    if (!codec::get_varint(in, &n)) return false;
    by_key_.clear();
    order_.clear();
    for (uint64_t i = 0; i < n; ++i) {
      Key k;
      Entry e;
      if (!codec::get_key(in, &k) || !codec::get_u64(in, &e.time) || !codec::get_value(in, &e.value) ||
          !codec::get_i64(in, &e.count))
        return false;
      if (by_key_.contains(k)) return false;
      order_.emplace(std::make_pair(e.time, k), e.value);
      by_key_.emplace(k, std::move(e));
    }
    return true;
  }
  bool fits(int64_t group_count) const override {
    return counts_fit(by_key_, group_count, [](const Entry& e) { return e.count; });
  }

 private:
  struct Entry {
    Time time = 0;
    Value value;
    int64_t count = 0;
  };
  Kind kind_;
  std::map<Key, Entry> by_key_;
  std::map<std::pair<Time, Key>, Value> order_;
};

std::unique_ptr<ReducerState> make_state(const std::string& name) {
  using M = MultisetState::Kind;
  using O = OrderedState::Kind;
  if (name == "count") return std::make_unique<CountState>();
  if (name == "sum") return std::make_unique<SumState>(false);
  if (name == "avg") return std::make_unique<SumState>(true);
  if (name == "min") return std::make_unique<MultisetState>(M::kMin);
  if (name == "max") return std::make_unique<MultisetState>(M::kMax);
  if (name == "any") return std::make_unique<MultisetState>(M::kAny);
  if (name == "count_distinct") return std::make_unique<MultisetState>(M::kCountDistinct);
  if (name == "sorted_tuple") return std::make_unique<MultisetState>(M::kSortedTuple);
  if (name == "earliest") return std::make_unique<OrderedState>(O::kEarliest);
  if (name == "latest") return std::make_unique<OrderedState>(O::kLatest);
  if (name == "tuple") return std::make_unique<OrderedState>(O::kTuple);
  throw GraphError("unknown reducer '" + name + "'");
}

bool ordered_reducer(const std::string& name) { return name == "earliest" || name == "latest" || name == "tuple"; }

class GroupByNode final : public Node {
 public:
  GroupByNode(size_t input, Schema schema, std::vector<size_t> group_cols, std::vector<std::string> group_names,
              std::vector<ReducerSpec> reducers, std::vector<CompiledExprPtr> outputs)
      : Node("groupby", {input}, std::move(schema)),
        group_cols_(std::move(group_cols)),
        group_names_(std::move(group_names)),
        reducers_(std::move(reducers)),
        outputs_(std::move(outputs)) {
    for (size_t i = 0; i < reducers_.size(); ++i)
      if (reducers_[i].name == "sum" || reducers_[i].name == "avg") linear_.push_back(i);  // summed per time
      else if (reducers_[i].name != "count") active_.push_back(i);  // count is the group's own count
    sum_delta_.resize(linear_.size());
    sums_.resize(linear_.size());
    linear_pos_.assign(reducers_.size(), -1);
    for (size_t j = 0; j < linear_.size(); ++j) {
      linear_pos_[linear_[j]] = static_cast<int>(j);
      linear_col_.push_back(reducers_[linear_[j]].arg->column_index());
    }
    for (const auto& r : reducers_) ordered_ = ordered_ || ordered_reducer(r.name);
    one_col_ = group_cols_.size() == 1;
    // Outputs that are plain references to a grouping value or a reducer's result are built
    // without evaluating expressions (the common case).
    direct_ = true;
    for (const auto& e : outputs_) {
      int c = e->column_index();
      direct_ = direct_ && c >= 0 && static_cast<size_t>(c) < group_cols_.size() + reducers_.size();
      direct_cols_.push_back(c);
    }
  }

  bool order_dependent() const override {
    for (const auto& r : reducers_)
      if (r.name == "earliest" || r.name == "latest") return true;
    return false;
  }
  // Sums and multisets only add diffs: any order of a time's changes gives the same state.
  bool needs_consolidated_input() const override { return ordered_; }
  std::string signature() const override {
    std::string s = kind() + "(by: ";
    for (size_t i = 0; i < group_names_.size(); ++i) s += (i ? ", " : "") + group_names_[i];
    s += "; reducers: ";
    for (size_t i = 0; i < reducers_.size(); ++i) {
      const auto& r = reducers_[i];
      s += (i ? ", " : "") + r.name + "(" + (r.arg ? r.arg->type.to_string() : "") + "): " + r.result_type.to_string();
    }
    return s + (params().empty() ? "" : "; " + params()) + ") -> " + schema().to_string();
  }

  // Persistent entries: one per group, key = the grouping values (codec::put_row), value =
  // version byte + live row count (i64) + emitted flag (u8) + the output row last emitted +
  // each reducer's state in reducer order (the reducers' own save/load encodings).
  void take_state_changes(StateChanges& out) override {
    // Erases first: a group erased and created again since the last take ends up put.
    for (auto& k : erased_) {
      StateChange c;
      c.key = std::move(k);
      c.erase = true;
      out.push_back(std::move(c));
    }
    erased_.clear();
    for (uint32_t slot : dirty_) {
      Group& g = groups_[slot];
      if (!g.dirty) continue;
      g.dirty = false;
      StateChange c;
      codec::put_row(c.key, g.values);
      codec::put_u8(c.value, kEntryVersion);
      save_group(c.value, slot);
      out.push_back(std::move(c));
    }
    dirty_.clear();
  }
  Status restore_state_entry(std::string_view key, std::string_view value) override {
    Row vals;
    uint8_t version;
    if (!codec::get_row(key, &vals) || !key.empty() || vals.size() != group_cols_.size() ||
        !codec::get_u8(value, &version) || version != kEntryVersion)
      return state_corrupt(label());
    Group g = new_group();
    std::vector<SumState> sums;
    if (!load_group(value, &g, &sums) || !value.empty() || g.count <= 0 ||
        (g.emitted && g.last.size() != schema().size()))
      return state_corrupt(label());
    Key gkey = key_from_values(vals);
    if (index_.find(gkey) != KeyIndex::kNone) return state_corrupt(label());
    g.values = std::move(vals);
    uint32_t slot = add_group(gkey, std::move(g));
    for (size_t j = 0; j < sums.size(); ++j) sums_[j][slot] = sums[j];
    return {};
  }
  Status finish_state_restore() override { return {}; }
  // The group key is the routing key (key_from_values of the grouping values).
  Result<std::optional<Key>> state_entry_route(std::string_view key, std::string_view) const override {
    Row vals;
    if (!codec::get_row(key, &vals) || !key.empty() || vals.size() != group_cols_.size()) return state_corrupt(label());
    return std::optional<Key>(key_from_values(vals));
  }

  void process(Time t, std::span<const Batch* const> in, Batch& out) override {
    accumulate(t, *in[0]);
    emit(out);
  }
  // Without ordered reducers the rows of a time may come in parts (see Node): each part is
  // pre-aggregated into the touched groups, and the groups' output is emitted at the end.
  bool accepts_partial_input() const override { return !ordered_; }
  bool emits_at_end_of_time() const override { return true; }
  // One retraction of the old row and/or one insertion of a different new row per touched
  // group, adjacent; group keys are unique.
  bool output_consolidated() const override { return true; }
  void process_part(Time t, std::span<Batch* const> in, Batch&) override { accumulate(t, *in[0]); }
  void end_time(Time, Batch& out) override { emit(out); }

  // Workers' combiner (Node::combines): count, sum and avg deltas merge, so each worker sums
  // its rows' deltas per group and sends one partial per group and owner, as bytes (the format
  // is in take_partials).
  bool combines() const override { return !ordered_ && active_.empty(); }
  // Every row goes into a group slot of this instance, found as accumulate() finds it: a group
  // this instance owns (worker_of its group key is `self`), or a foreign slot (is_foreign())
  // standing for another worker's group, whose deltas take_partials() sends to its owner. One
  // slot space and one set of indexes for both, so the row loop has no branch on the owner.
  void combine_part(Time t, const Batch& rows, size_t self, size_t workers) override { accumulate(t, rows, self, workers); }
  void take_partials(size_t workers, std::vector<std::string>& out) override {
    // A partial's bytes (little-endian; read back by merge_partials on the owner, same build):
    // group key (lo, hi u64), count delta (i64), per sum/avg isum (i64), fsum (f64 bits), n (i64),
    // flags (u8: 1 float seen, 2 duration seen, 4 any), then the grouping values: u32 byte
    // length + codec::put_row (decoded only when the owner has no such group yet).
    // The touched foreign slots are encoded and reset (their stamps cleared); the owned ones
    // stay touched for end_time(). Foreign slots are found in slot order when many are touched
    // (they lie in blocks of their own, so their groups and deltas are then read front to
    // back); each one's grouping values are prefetched kAhead slots ahead.
    std::vector<uint32_t>& todo = scratch_slots_;
    todo.clear();
    if (touched_.size() * 4 >= foreign_.size()) {
      for (uint32_t slot : foreign_)
        if (stamp_[slot] == epoch_) todo.push_back(slot);
    } else {
      for (uint32_t slot : touched_)
        if (is_foreign(slot)) todo.push_back(slot);
    }
    if (todo.empty()) return;
    size_t kept = 0;  // the owned groups stay touched for end_time()
    for (uint32_t slot : touched_)
      if (!is_foreign(slot)) touched_[kept++] = slot;
    touched_.resize(kept);
    const size_t per_partial = 16 + 8 + linear_.size() * 25 + 4 + 1 + group_cols_.size() * 10;  // values: a guess
    for (auto& o : out) o.reserve(o.size() + todo.size() * per_partial / std::max<size_t>(workers, 1) + 64);
    constexpr size_t kAhead = 8;
    for (size_t t = 0; t < todo.size(); ++t) {
      if (t + kAhead < todo.size()) {
        const Group& h = groups_[todo[t + kAhead]];
        if (!h.values.empty()) __builtin_prefetch(h.values.data());
      }
      const uint32_t slot = todo[t];
      const Group& g = groups_[slot];
      stamp_[slot] = 0;
      bool changed = delta_[slot] != 0;
      for (const auto& v : sum_delta_) changed = changed || v[slot].any;
      if (changed) {  // else the rows cancelled out
        std::string& o = out[worker_of(g.key, workers)];
        codec::put_u64(o, g.key.lo);
        codec::put_u64(o, g.key.hi);
        codec::put_i64(o, delta_[slot]);
        for (const auto& v : sum_delta_) {
          const SumDelta& d = v[slot];
          codec::put_i64(o, d.isum);
          uint64_t bits;
          std::memcpy(&bits, &d.fsum, 8);
          codec::put_u64(o, bits);
          codec::put_i64(o, d.n);
          codec::put_u8(o, static_cast<uint8_t>((d.saw_float ? 1 : 0) | (d.saw_duration ? 2 : 0) | (d.any ? 4 : 0)));
        }
        const size_t at = o.size();
        codec::put_u32(o, 0);
        codec::put_row(o, g.values);
        const auto len = static_cast<uint32_t>(o.size() - at - 4);
        for (int i = 0; i < 4; ++i) o[at + static_cast<size_t>(i)] = static_cast<char>((len >> (8 * i)) & 0xff);
      }
      delta_[slot] = 0;
      for (auto& v : sum_delta_) v[slot] = SumDelta{};
    }
    // The foreign slots stay for the next times (a worker sees the same groups again), unless
    // there are many: then they are all freed, bounded.
    if (foreign_.size() > kCombinerGroups) {
      for (uint32_t slot : foreign_) {
        Group& g = groups_[slot];
        index_.erase(g.key);
        unindex_value(g.values);
        g = Group{};
        foreign_free_.push_back(slot);
      }
      foreign_.clear();
    }
  }
  void merge_partials(Time, std::string_view in) override {
    begin_time();
    const bool tracking = tracking_state();
    auto bad = [] { throw RuntimeError("groupby: malformed partial aggregates from another worker"); };
    // In blocks: the block's keys first (a partial's size is fixed but for its values' length),
    // their index cells prefetched, then the slots found and their state prefetched, then
    // merged: the owner's groups are out of cache by now.
    constexpr size_t kBlock = 16;
    const size_t fixed = 16 + 8 + linear_.size() * 25;  // key, count, per sum 3 x 8 + flags
    std::string_view starts[kBlock];
    Key keys[kBlock];
    uint32_t slots[kBlock];
    while (!in.empty()) {
      size_t m = 0;
      for (std::string_view scan = in; m < kBlock && !scan.empty(); ++m) {
        std::string_view head = scan;
        if (scan.size() < fixed + 4 || !codec::get_key(head, &keys[m])) bad();
        uint32_t len = 0;
        for (int i = 0; i < 4; ++i)
          len |= static_cast<uint32_t>(static_cast<uint8_t>(scan[fixed + static_cast<size_t>(i)])) << (8 * i);
        if (scan.size() < fixed + 4 + len) bad();
        starts[m] = scan.substr(0, fixed + 4 + len);
        scan.remove_prefix(fixed + 4 + len);
        index_.prefetch(keys[m]);
      }
      for (size_t b = 0; b < m; ++b) {
        slots[b] = index_.find(keys[b]);
        if (slots[b] == KeyIndex::kNone) continue;
        __builtin_prefetch(&stamp_[slots[b]]);
        __builtin_prefetch(&delta_[slots[b]]);
        for (auto& v : sum_delta_) __builtin_prefetch(&v[slots[b]]);
      }
      for (size_t b = 0; b < m; ++b) merge_partial(starts[b], slots[b], tracking, bad);
      in.remove_prefix(static_cast<size_t>(starts[m - 1].data() + starts[m - 1].size() - in.data()));
    }
  }
  // One partial of merge_partials (`in` holds exactly it); `slot`: its group's, or kNone.
  template <class Bad>
  void merge_partial(std::string_view in, uint32_t slot, bool tracking, const Bad& bad) {
    {
      Key k;
      int64_t count;
      if (!codec::get_key(in, &k) || !codec::get_i64(in, &count)) bad();
      SumDelta deltas[kInlineSums];
      std::vector<SumDelta> more;
      SumDelta* ds = linear_.size() <= kInlineSums ? deltas : (more.resize(linear_.size()), more.data());
      for (size_t j = 0; j < linear_.size(); ++j) {
        uint64_t bits;
        uint8_t flags;
        if (!codec::get_i64(in, &ds[j].isum) || !codec::get_u64(in, &bits) || !codec::get_i64(in, &ds[j].n) ||
            !codec::get_u8(in, &flags))
          bad();
        std::memcpy(&ds[j].fsum, &bits, 8);
        ds[j].saw_float = flags & 1;
        ds[j].saw_duration = flags & 2;
        ds[j].any = flags & 4;
      }
      uint64_t len = 0;
      for (int i = 0; i < 4; ++i) {
        if (in.size() <= static_cast<size_t>(i)) bad();
        len |= static_cast<uint64_t>(static_cast<uint8_t>(in[static_cast<size_t>(i)])) << (8 * i);
      }
      in.remove_prefix(4);
      if (in.size() < len) bad();
      std::string_view values = in.substr(0, len);
      in.remove_prefix(len);
      if (slot == KeyIndex::kNone) slot = index_.find(k);  // created by an earlier partial of the block
      if (slot != KeyIndex::kNone && is_foreign(slot)) bad();  // a key this worker does not own
      if (slot == KeyIndex::kNone) {
        Group g = new_group();
        if (!codec::get_row(values, &g.values) || !values.empty() || g.values.size() != group_cols_.size()) bad();
        slot = add_group(k, std::move(g));
      }
      touch(slot, tracking);
      delta_[slot] += count;
      for (size_t j = 0; j < linear_.size(); ++j) sum_delta_[j][slot].merge(ds[j]);
    }
  }

 private:
  // Pre-aggregation: the rows of this time are assigned to groups through one hash each; the
  // count changes are summed per group in a dense array and each touched group's state is
  // updated once at the end (only reducers other than count see every row).
  void begin_time() {
    if (in_time_) return;
    in_time_ = true;
    touched_.clear();
    if (++epoch_ == 0) {  // wrapped: forget every stamp
      std::fill(stamp_.begin(), stamp_.end(), 0);
      epoch_ = 1;
    }
  }
  // Hints the cache about rows [from, from + n) of `rows` (the next block: a time's batch is
  // mostly read from memory once, and the block's hashing and lookups leave the hardware
  // prefetcher behind). Rows hold their values inline (value.h), so each is its update's lines.
  static constexpr size_t kAheadRows = 64;
  static void prefetch_rows(const Batch& rows, size_t from, size_t n) {
    const size_t end = std::min(rows.size(), from + n);
    if (from >= end) return;
    const char* p = reinterpret_cast<const char*>(rows.data() + from);
    const char* e = reinterpret_cast<const char*>(rows.data() + end);
    for (p = reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p) & ~uintptr_t{63}); p < e; p += 64)
      __builtin_prefetch(p);
  }
  // The group key of a row (key_from_values of its grouping values).
  [[gnu::always_inline]] Key group_key(const Row& r) {
    Key k;
    if (group_cols_.size() == 1 && codec::KeyEncoder::single_fixed_key(r[group_cols_[0]], &k)) return k;
    key_enc_.begin(group_cols_.size());
    for (size_t c : group_cols_) key_enc_.add(r[c]);
    return key_enc_.finish();
  }
  // The slot of the group with key k, created from `row`'s grouping values when new: a group of
  // this instance when worker `self` of `workers` owns k, else a foreign slot (combiner).
  uint32_t group_slot(const Key& k, const Row& row, size_t self = 0, size_t workers = 1) {
    uint32_t slot = index_.find(k);
    if (slot != KeyIndex::kNone) return slot;
    Group g = new_group();
    g.values.reserve(group_cols_.size());
    for (size_t c : group_cols_) g.values.push_back(row[c]);
    if (workers > 1 && worker_of(k, workers) != self) {
      g.dirty = true;  // never listed in dirty_: a foreign slot has no persistent entry
      slot = add_group(k, std::move(g), /*foreign=*/true);
      foreign_.push_back(slot);
      return slot;
    }
    return add_group(k, std::move(g));
  }
  // Marks a group touched by this time (and changed since the last take when tracking).
  void touch(uint32_t slot, bool tracking) {
    if (stamp_[slot] == epoch_) return;
    stamp_[slot] = epoch_;
    touched_.push_back(slot);
    if (tracking && !groups_[slot].dirty) {
      groups_[slot].dirty = true;
      dirty_.push_back(slot);
    }
  }
  // `self` of `workers`: combine_part (rows of groups owned elsewhere go to foreign slots).
  void accumulate(Time t, const Batch& rows, size_t self = 0, size_t workers = 1) {
    begin_time();
    const bool tracking = tracking_state();
    // In blocks, a step at a time over the block's rows (so the cache misses of a block's
    // random lookups overlap instead of stalling row by row, and each loop stays small):
    // every row's group key (one hash per row: the grouping values' key, also the output key)
    // with a prefetch of its index cell; the slots (new groups created); the counts; then each
    // sum/avg over its column.
    constexpr size_t kBlock = 32;
    Key keys[kBlock];
    uint32_t slots[kBlock];
    int64_t ints[kBlock];
    Key texts[kBlock];
    uint8_t kind[kBlock];  // how row i's group is found: kByKey (keys[i]), kByInt (ints[i]), kByText (texts[i])
    const size_t gc = group_cols_.empty() ? 0 : group_cols_[0];
    prefetch_rows(rows, 0, kAheadRows);
    for (size_t base = 0; base < rows.size(); base += kBlock) {
      const size_t m = std::min(kBlock, rows.size() - base);
      const Update* block = rows.data() + base;
      prefetch_rows(rows, base + kAheadRows, kBlock);
      if (one_col_) {
        // One grouping value: an int or a short string finds its group by the value itself
        // (int_index_, text_index_); other values (None in an optional column, long strings,
        // floats, ...) by their key.
        for (size_t i = 0; i < m; ++i) {
          const Value& v = block[i].row[gc];
          if (v.type() == DType::kInt) {
            ints[i] = v.as_int();
            kind[i] = kByInt;
            int_index_.prefetch(ints[i]);
          } else if (v.short_string_words(&texts[i].lo, &texts[i].hi)) {
            kind[i] = kByText;
            text_index_.prefetch(texts[i]);
          } else {
            kind[i] = kByKey;
            keys[i] = group_key(block[i].row);
            index_.prefetch(keys[i]);
          }
        }
        for (size_t i = 0; i < m; ++i) {
          uint32_t slot = kind[i] == kByInt    ? int_index_.find(ints[i])
                          : kind[i] == kByText ? text_index_.find(texts[i])
                                               : KeyIndex::kNone;
          if (slot == KeyIndex::kNone)
            slot = group_slot(kind[i] != kByKey ? group_key(block[i].row) : keys[i], block[i].row, self, workers);
          slots[i] = slot;
          touch(slot, tracking);
          delta_[slot] += block[i].diff;
        }
      } else {
        for (size_t i = 0; i < m; ++i) {
          keys[i] = group_key(block[i].row);
          index_.prefetch(keys[i]);
        }
        for (size_t i = 0; i < m; ++i) {
          uint32_t slot = group_slot(keys[i], block[i].row, self, workers);
          slots[i] = slot;
          touch(slot, tracking);
          delta_[slot] += block[i].diff;
        }
      }
      for (size_t j = 0; j < linear_.size(); ++j) {
        SumDelta* sd = sum_delta_[j].data();
        const int c = linear_col_[j];
        if (c >= 0) {
          for (size_t i = 0; i < m; ++i) sd[slots[i]].add(block[i].row[static_cast<size_t>(c)], block[i].diff);
        } else {
          const auto& arg = reducers_[linear_[j]].arg;
          for (size_t i = 0; i < m; ++i) {
            EvalContext ctx{block[i].row.data(), &block[i].key};
            sd[slots[i]].add(arg->eval(ctx), block[i].diff);
          }
        }
      }
      if (!active_.empty()) {
        for (size_t i = 0; i < m; ++i) {
          const Update& u = block[i];
          Group& g = groups_[slots[i]];
          EvalContext ctx{u.row.data(), &u.key};
          for (size_t r : active_) {
            Value v = reducers_[r].arg ? reducers_[r].arg->eval(ctx) : Value();
            g.states[r]->add(v, u.diff, t, u.key);
          }
        }
      }
    }
  }
  void emit(Batch& out) {
    in_time_ = false;
    // Touched groups in slot order: the group records, sums and last rows are then read
    // front to back (in first-touch order every group is a cache miss). Many touched: one pass
    // over the stamps; few: a sort.
    if (touched_.size() * 8 >= groups_.size()) {
      touched_.clear();
      for (uint32_t slot = 0; slot < stamp_.size(); ++slot)
        if (stamp_[slot] == epoch_) touched_.push_back(slot);
    } else {
      std::sort(touched_.begin(), touched_.end());
    }
    out.reserve(out.size() + 2 * touched_.size());
    // Touched groups are spread over the slots: prefetch a few ahead (the group, then its
    // reducer states and last row once the group's line is in).
    constexpr size_t kAhead = 8;
    for (size_t i = 0; i < touched_.size() && i < kAhead; ++i) __builtin_prefetch(&groups_[touched_[i]]);
    for (size_t ti = 0; ti < touched_.size(); ++ti) {
      if (ti + kAhead < touched_.size()) __builtin_prefetch(&groups_[touched_[ti + kAhead]]);
      if (ti + kAhead / 2 < touched_.size()) {
        uint32_t ahead = touched_[ti + kAhead / 2];
        const Group& h = groups_[ahead];
        for (auto& v : sums_) __builtin_prefetch(&v[ahead]);
        if (!h.last.empty()) __builtin_prefetch(h.last.data());
      }
      uint32_t slot = touched_[ti];
      Group& g = groups_[slot];
      if (is_foreign(slot)) [[unlikely]] {  // its partials were not taken (a failed time): dropped
        delta_[slot] = 0;
        for (auto& v : sum_delta_) v[slot] = SumDelta{};
        continue;
      }
      g.count += delta_[slot];
      delta_[slot] = 0;
      for (size_t j = 0; j < linear_.size(); ++j) {
        SumDelta& d = sum_delta_[j][slot];
        if (d.any) sums_[j][slot].merge(d);
        d = SumDelta{};
      }
      if (g.count > 0) {
        Row next = output_row(slot);
        if (g.emitted) {
          if (next == g.last) continue;  // unchanged output: nothing to emit
          out.push_back({g.key, std::move(g.last), -1});
        }
        g.last = std::move(next);
        g.emitted = true;
        out.push_back({g.key, g.last, 1});
      } else if (g.count == 0) {
        if (g.emitted) out.push_back({g.key, std::move(g.last), -1});
        remove_group(slot);
      } else {
        throw RuntimeError("groupby: more retractions than insertions for group " + Value::tuple(g.values.to_vector()).to_string());
      }
    }
    touched_.clear();
  }

 public:
  bool stateful() const override { return true; }
  // Workers (node.h): a fresh instance with this configuration; rows go to the worker of their
  // group key (key_from_values of the grouping values, as accumulate() computes it).
  std::unique_ptr<Node> clone() const override {
    return std::make_unique<GroupByNode>(inputs()[0], schema(), group_cols_, group_names_, reducers_, outputs_);
  }
  Routing routing() const override {
    Routing r;
    r.by = Routing::By::kColumns;
    r.columns[0] = group_cols_;
    r.partitioned_output = true;
    return r;
  }

 private:
  struct Group {
    Key key;     // key_from_values(values): the output key and the index key
    Row values;  // the grouping values
    int64_t count = 0;
    std::vector<std::unique_ptr<ReducerState>> states;
    Row last;
    bool emitted = false;
    bool dirty = false;  // changed since the last take (tracking only)
    bool live = false;
  };
  // Reducer states live in the group only for reducers fed per row (active_); count is the
  // group's count and sum/avg are dense per slot (sums_), so touching a group's results costs
  // no pointer chase.
  Group new_group() const {
    Group g;
    if (active_.empty()) return g;
    g.states.resize(reducers_.size());
    for (size_t i : active_) g.states[i] = make_state(reducers_[i].name);
    return g;
  }
  const ReducerState& state_of(const Group& g, uint32_t slot, size_t i) const {
    static const CountState kCount;
    if (linear_pos_[i] >= 0) return sums_[static_cast<size_t>(linear_pos_[i])][slot];
    if (!g.states.empty() && g.states[i]) return *g.states[i];
    return kCount;
  }
  // A group's slot (a dead one reused, else the next of the current block of its kind).
  uint32_t add_group(const Key& gkey, Group g, bool foreign = false) {
    g.key = gkey;
    g.live = true;
    std::vector<uint32_t>& free = foreign ? foreign_free_ : free_;
    uint32_t slot;
    if (!free.empty()) {
      slot = free.back();
      free.pop_back();
    } else {
      Block& b = foreign ? foreign_block_ : own_block_;
      if (b.next == b.end) {  // a new block of slots for this kind
        const size_t start = groups_.size(), n = start + kBlockSlots;
        groups_.resize(n);
        stamp_.resize(n, 0);
        delta_.resize(n, 0);
        for (auto& v : sum_delta_) v.resize(n);
        for (size_t j = 0; j < sums_.size(); ++j) sums_[j].resize(n, SumState(reducers_[linear_[j]].name == "avg"));
        block_foreign_.push_back(foreign ? 1 : 0);
        b.next = static_cast<uint32_t>(start);
        b.end = static_cast<uint32_t>(n);
      }
      slot = b.next++;
    }
    groups_[slot] = std::move(g);
    for (size_t j = 0; j < sums_.size(); ++j) sums_[j][slot] = SumState(reducers_[linear_[j]].name == "avg");
    index_.insert(gkey, slot);
    index_value(groups_[slot].values, slot);
    return slot;
  }
  bool is_foreign(uint32_t slot) const { return block_foreign_[slot >> kBlockBits] != 0; }
  // A group by one grouping value that is an int or a short string is also in int_index_ or
  // text_index_.
  void index_value(const Row& values, uint32_t slot) {
    if (!one_col_) return;
    Key t;
    if (values[0].type() == DType::kInt) int_index_.insert(values[0].as_int(), slot);
    else if (values[0].short_string_words(&t.lo, &t.hi)) text_index_.insert(t, slot);
  }
  void unindex_value(const Row& values) {
    if (!one_col_) return;
    Key t;
    if (values[0].type() == DType::kInt) int_index_.erase(values[0].as_int());
    else if (values[0].short_string_words(&t.lo, &t.hi)) text_index_.erase(t);
  }
  void remove_group(uint32_t slot) {
    Group& g = groups_[slot];
    if (tracking_state()) {
      std::string k;
      codec::put_row(k, g.values);
      erased_.push_back(std::move(k));
    }
    index_.erase(g.key);
    unindex_value(g.values);
    g = Group{};
    free_.push_back(slot);
  }
  // The group's state in its persistent entry: count, emitted, last output, reducer states.
  void save_group(std::string& out, uint32_t slot) const {
    const Group& g = groups_[slot];
    codec::put_i64(out, g.count);
    codec::put_u8(out, g.emitted ? 1 : 0);
    codec::put_row(out, g.last);
    for (size_t i = 0; i < reducers_.size(); ++i) state_of(g, slot, i).save(out);
  }
  // Reducer states in reducer order; sum/avg ones into `sums` (in linear_ order).
  bool load_group(std::string_view& in, Group* g, std::vector<SumState>* sums) const {
    uint8_t emitted;
    if (!codec::get_i64(in, &g->count) || !codec::get_u8(in, &emitted) || emitted > 1 || !codec::get_row(in, &g->last))
      return false;
    g->emitted = emitted != 0;
    for (size_t i = 0; i < reducers_.size(); ++i) {
      if (linear_pos_[i] >= 0) {
        sums->emplace_back(reducers_[i].name == "avg");
        if (!sums->back().load(in) || !sums->back().fits(g->count)) return false;
      } else if (!g->states.empty() && g->states[i]) {
        if (!g->states[i]->load(in) || !g->states[i]->fits(g->count)) return false;
      }  // count: no bytes
    }
    return true;
  }
  Row output_row(uint32_t slot) const {
    const Group& g = groups_[slot];
    if (direct_) {
      Row r;
      r.reserve(outputs_.size());
      const size_t nv = g.values.size();
      for (int c : direct_cols_) {
        size_t i = static_cast<size_t>(c);
        if (i < nv) r.push_back(g.values[i]);
        else r.push_back(state_of(g, slot, i - nv).result(g.count));
      }
      return r;
    }
    Row& ext = scratch_;
    ext.clear();
    ext.insert(ext.end(), g.values.begin(), g.values.end());
    for (size_t i = 0; i < reducers_.size(); ++i) ext.push_back(state_of(g, slot, i).result(g.count));
    EvalContext ctx{ext.data(), nullptr};
    Row r;
    r.reserve(outputs_.size());
    for (const auto& e : outputs_) r.push_back(e->eval(ctx));
    return r;
  }

  std::vector<size_t> group_cols_;
  std::vector<std::string> group_names_;
  std::vector<ReducerSpec> reducers_;
  std::vector<CompiledExprPtr> outputs_;
  bool direct_ = false;            // every output is a column of (grouping values, results)
  std::vector<int> direct_cols_;   // per output: its column there
  std::vector<size_t> active_;  // reducers fed per row (all but count, sum, avg)
  std::vector<size_t> linear_;  // sum/avg: fed per time from sum_delta_
  std::vector<std::vector<SumDelta>> sum_delta_;  // [linear reducer][slot]
  std::vector<std::vector<SumState>> sums_;       // [linear reducer][slot]: sum/avg states
  std::vector<int> linear_pos_;                   // per reducer: its index in linear_, or -1
  std::vector<int> linear_col_;                   // per linear reducer: its argument's column, or -1
  // The workers' combiner (combine_part .. take_partials): foreign slots, groups of other
  // owners whose deltas this worker sums for them (in groups_ and the indexes like the
  // owned groups, in blocks of their own: is_foreign()). They are kept between times (a worker
  // sees the same groups again), up to kCombinerGroups.
  std::vector<uint32_t> foreign_;       // live foreign slots, in allocation order
  std::vector<uint32_t> foreign_free_;  // freed foreign slots
  std::vector<uint32_t> scratch_slots_;
  static constexpr size_t kCombinerGroups = size_t{1} << 16;  // most foreign slots kept between times
  static constexpr size_t kInlineSums = 8;
  bool ordered_ = false;
  // Slots are handed out in blocks of kBlockSlots, each block holding owned groups only or
  // foreign slots only (block_foreign_), so either kind is dense in memory.
  static constexpr uint32_t kBlockBits = 8, kBlockSlots = uint32_t{1} << kBlockBits;
  struct Block {
    uint32_t next = 0, end = 0;  // the current block's next unused slot and its end
  };
  Block own_block_, foreign_block_;
  std::vector<uint8_t> block_foreign_;  // per block: 1 when its slots are foreign
  std::vector<Group> groups_;    // slots; free_ lists the dead owned ones
  std::vector<uint32_t> free_;
  std::vector<uint32_t> stamp_;  // per slot: epoch_ of the last process() that touched it
  std::vector<int64_t> delta_;   // per slot: count change in the current process()
  uint32_t epoch_ = 0;
  bool in_time_ = false;  // accumulate() ran since the last emit()
  KeyIndex index_;
  // With a single grouping column: its groups whose value is an int, or a string of up to
  // Text::kInlineMax bytes, by that value too (the same slots as index_, foreign ones
  // included), so most rows skip computing their group key.
  bool one_col_ = false;
  IntIndex int_index_;
  ShortTextIndex text_index_;
  static constexpr uint8_t kByKey = 0, kByInt = 1, kByText = 2;
  std::vector<uint32_t> touched_;
  codec::KeyEncoder key_enc_;
  mutable Row scratch_;
  static constexpr uint8_t kEntryVersion = 1;
  std::vector<uint32_t> dirty_;       // groups changed since the last take (tracking only)
  std::vector<std::string> erased_;   // entry keys of groups removed since the last take
};

}  // namespace
}  // namespace engine

Table GroupedTable::reduce(std::vector<NamedExpr> outputs) const {
  const Table t(graph_, node_);
  const Schema& in = t.schema();
  std::string op = by_.empty() ? "reduce" : "groupby(" + [&] {
    std::string s;
    for (size_t i = 0; i < by_.size(); ++i) s += (i ? ", " : "") + by_[i];
    return s;
  }() + ").reduce";
  std::vector<size_t> group_cols;
  std::vector<Column> group_schema;
  for (const auto& c : by_) {
    auto i = in.find(c);
    if (!i) throw GraphError("in " + op + ": unknown grouping column '" + c + "' (available: " + in.names() + ")");
    group_cols.push_back(*i);
    group_schema.push_back(in[*i]);
  }
  Schema gschema(group_schema);
  // Reducer arguments are compiled against the input; output expressions against
  // [grouping columns..., reducer results...].
  std::vector<internal::ReducerSpec> reducers;
  internal::CompileScope scope;
  scope.graph = &t.graph().impl();
  scope.op = op;
  scope.schema = &gschema;
  scope.reducers = &reducers;
  scope.first_reducer_slot = group_cols.size();
  std::vector<internal::CompiledExprPtr> exprs;
  std::vector<Column> cols;
  scope.reducer_arg_schema = &in;
  for (auto& o : outputs) {
    if (o.name.empty() || o.name == "id") throw GraphError("in " + op + ": invalid output column name '" + o.name + "'");
    for (const auto& c : cols)
      if (c.name == o.name) throw GraphError("in " + op + ": column '" + o.name + "' given twice");
    exprs.push_back(internal::compile(o.expr, scope));
    cols.push_back({o.name, exprs.back()->type});
  }
  Graph& g = t.graph();
  return engine::with_params(
      Table(&g, g.impl().add(std::make_unique<engine::GroupByNode>(t.node(), Schema(std::move(cols)),
                                                                  std::move(group_cols), by_, std::move(reducers),
                                                                  std::move(exprs)))),
      internal::describe(outputs));
}

GroupedTable::GroupedTable(const Table& t, std::vector<std::string> by)
    : graph_(&t.graph()), node_(t.node()), by_(std::move(by)) {}

GroupedTable Table::groupby(std::vector<std::string> columns) const {
  if (columns.empty()) throw GraphError("groupby: no grouping columns (use reduce() to reduce the whole table)");
  return GroupedTable(*this, std::move(columns));
}

Table Table::reduce(std::vector<NamedExpr> outputs) const { return GroupedTable(*this, {}).reduce(std::move(outputs)); }

}  // namespace tidemark
