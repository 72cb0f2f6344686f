// join / join_left / join_right / join_outer and JoinResult::select.
//
// State: one bucket per join-values tuple holding both sides' rows (key -> row). A batch is
// applied bucket by bucket with the delta rule, so the cost is proportional to the matches
// that change: matched pairs change by dL x R_old + L_new x dR. A row of a kept (outer) side
// is emitted unmatched while the other side of its bucket is empty, so its bucket's rows are
// re-emitted only when that other side turns empty or non-empty.
// Join values containing None never match (SQL semantics); such rows need no state.
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "engine/codec.h"
#include "engine/expr_internal.h"
#include "engine/flat_index.h"
#include "engine/input_state.h"
#include "engine/node.h"
#include "engine/state_codec.h"

namespace tidemark {
namespace engine {
namespace {

using internal::CompiledExprPtr;
using internal::EvalContext;

using RowsByKey = std::unordered_map<Key, Row, KeyHash>;

// The rows of one side of one join key. Most buckets hold a row or two, so rows live in a
// vector (no per-bucket hash table); a key index is added once a bucket grows past a few rows,
// keeping erase O(1) for skewed join keys.
class KeyedRows {
 public:
  using Entry = std::pair<Key, Row>;
  bool empty() const { return rows_.empty(); }
  size_t size() const { return rows_.size(); }
  std::vector<Entry>::const_iterator begin() const { return rows_.begin(); }
  std::vector<Entry>::const_iterator end() const { return rows_.end(); }

  // False if the key is already present.
  bool insert(const Key& k, const Row& r) {
    if (find(k) != kNone) return false;
    rows_.emplace_back(k, r);
    if (index_) index_->emplace(k, rows_.size() - 1);
    else if (rows_.size() > kIndexAbove) build_index();
    return true;
  }
  // False if the key is absent.
  bool erase(const Key& k) {
    size_t i = find(k);
    if (i == kNone) return false;
    if (index_) index_->erase(k);
    if (i + 1 != rows_.size()) {
      rows_[i] = std::move(rows_.back());
      if (index_) (*index_)[rows_[i].first] = i;
    }
    rows_.pop_back();
    return true;
  }

 private:
  static constexpr size_t kIndexAbove = 8;
  static constexpr size_t kNone = ~size_t{0};
  size_t find(const Key& k) const {
    if (index_) {
      auto it = index_->find(k);
      return it == index_->end() ? kNone : it->second;
    }
    for (size_t i = 0; i < rows_.size(); ++i)
      if (rows_[i].first == k) return i;
    return kNone;
  }
  void build_index() {
    index_ = std::make_unique<std::unordered_map<Key, size_t, KeyHash>>();
    for (size_t i = 0; i < rows_.size(); ++i) index_->emplace(rows_[i].first, i);
  }
  std::vector<Entry> rows_;
  std::unique_ptr<std::unordered_map<Key, size_t, KeyHash>> index_;
};
constexpr uint8_t kStateVersion = 1;

bool is_num(DType t) { return t == DType::kInt || t == DType::kFloat; }

// Equality of join values follows the expression language, where 1 == 1.0: integral floats
// are stored as ints (lossless for ints, unlike the other way round).
Value normalize(const Value& v) {
  if (v.type() == DType::kFloat) {
    double d = v.as_float();
    if (std::trunc(d) == d && d >= -9.2e18 && d <= 9.2e18) return Value(static_cast<int64_t>(d));
  }
  return v;
}

class JoinNode final : public Node {
 public:
  JoinNode(size_t left, size_t right, Schema schema, std::array<std::vector<size_t>, 2> on,
           std::array<size_t, 2> widths, std::array<bool, 2> keep, std::vector<CompiledExprPtr> exprs, bool memoize)
      : Node("join", {left, right}, std::move(schema)),
        on_(std::move(on)),
        widths_(widths),
        keep_(keep),
        exprs_(std::move(exprs)),
        memoize_(memoize) {}

  // Persistent entries: both inputs' rows that can match (InputState ports 0 and 1: left,
  // right) and, with a non-deterministic select, the memo under port byte 2 (output key ->
  // version byte + the row emitted). Restoring replays the rows without evaluating the select.
  void take_state_changes(StateChanges& out) override {
    inputs_.take(out);
    take_dirty_entries(
        memo_dirty_, memo_, kEntryVersion, [](const Key& k, std::string& key) { key = InputState::entry_key(kMemoPort, k); },
        [](const Row& r, std::string& v) { codec::put_row(v, r); }, out);
  }
  Status restore_state_entry(std::string_view key, std::string_view value) override {
    if (inputs_.owns(key)) return inputs_.restore(key, value, label(), {widths_[0], widths_[1]});
    uint8_t port, version;
    Key k;
    Row r;
    if (!memoize_ || !InputState::parse_key(key, &port, &k) || port != kMemoPort || !codec::get_u8(value, &version) ||
        version != kEntryVersion || !codec::get_row(value, &r) || !value.empty() || r.size() != exprs_.size())
      return state_corrupt(label());
    memo_[k] = std::move(r);
    return {};
  }
  Status finish_state_restore() override { return inputs_.replay(*this); }

  void process(Time, std::span<const Batch* const> in, Batch& out) override {
    // The changes of this time grouped by bucket (the join values' 128-bit key) without
    // copying them: per touched bucket, a list of the updates of each side.
    touched_.clear();
    links_.clear();
    if (++epoch_ == 0) {  // wrapped: forget every stamp
      std::fill(stamp_.begin(), stamp_.end(), 0);
      epoch_ = 1;
    }
    for (int s = 0; s < 2; ++s)
      for (const Update& u : *in[s]) {
        Key bk;
        if (!join_key(s, u.row, &bk)) {
          if (keep_[s]) emit_unmatched(s, u.key, u.row, u.diff);
          continue;
        }
        inputs_.record(tracking_state(), s, u);
        uint32_t slot = bucket_slot(bk);
        if (stamp_[slot] != epoch_) {
          stamp_[slot] = epoch_;
          touch_pos_[slot] = static_cast<uint32_t>(touched_.size());
          touched_.push_back({slot, {kEnd, kEnd}, {kEnd, kEnd}});
        }
        Touched& t = touched_[touch_pos_[slot]];
        uint32_t link = static_cast<uint32_t>(links_.size());
        links_.push_back({&u, kEnd});
        if (t.head[s] == kEnd) t.head[s] = link;
        else links_[t.tail[s]].next = link;
        t.tail[s] = link;
      }
    std::array<std::vector<const Update*>, 2> delta;
    for (const Touched& t : touched_) {
      for (int s = 0; s < 2; ++s) {
        delta[s].clear();
        for (uint32_t l = t.head[s]; l != kEnd; l = links_[l].next) delta[s].push_back(links_[l].u);
      }
      Bucket& b = buckets_[t.slot];
      std::array<bool, 2> was_empty{b.rows[0].empty(), b.rows[1].empty()};
      std::array<bool, 2> will_be_empty{};
      for (int s = 0; s < 2; ++s) {
        int64_t n = static_cast<int64_t>(b.rows[s].size());
        for (const Update* u : delta[s]) n += u->diff;
        will_be_empty[s] = n == 0;
      }
      // Kept rows stop being unmatched when the other side appears.
      for (int s = 0; s < 2; ++s)
        if (keep_[s] && was_empty[1 - s] && !will_be_empty[1 - s])
          for (const auto& [k, r] : b.rows[s]) emit_unmatched(s, k, r, -1);
      for (const Update* u : delta[0])
        for (const auto& [rk, rr] : b.rows[1]) emit_pair(u->key, u->row, rk, rr, u->diff, out);
      apply(0, b.rows[0], delta[0]);
      for (const Update* u : delta[1])
        for (const auto& [lk, lr] : b.rows[0]) emit_pair(lk, lr, u->key, u->row, u->diff, out);
      apply(1, b.rows[1], delta[1]);
      for (int s = 0; s < 2; ++s) {
        if (!keep_[s]) continue;
        if (was_empty[1 - s] && will_be_empty[1 - s]) {
          for (const Update* u : delta[s]) emit_unmatched(s, u->key, u->row, u->diff);
        } else if (!was_empty[1 - s] && will_be_empty[1 - s]) {
          for (const auto& [k, r] : b.rows[s]) emit_unmatched(s, k, r, 1);
        }
      }
      if (b.rows[0].empty() && b.rows[1].empty()) remove_bucket(t.slot);
    }
    touched_.clear();
    links_.clear();
    flush(out);
  }

  bool stateful() const override { return true; }

 private:
  struct Bucket {
    Key key;
    std::array<KeyedRows, 2> rows;
  };
  // The slot of the bucket with join key `bk`, created empty if absent.
  uint32_t bucket_slot(const Key& bk) {
    uint32_t slot = index_.find(bk);
    if (slot != KeyIndex::kNone) return slot;
    if (!free_.empty()) {
      slot = free_.back();
      free_.pop_back();
    } else {
      slot = static_cast<uint32_t>(buckets_.size());
      buckets_.emplace_back();
      stamp_.push_back(0);
      touch_pos_.push_back(0);
    }
    buckets_[slot].key = bk;
    index_.insert(bk, slot);
    return slot;
  }
  void remove_bucket(uint32_t slot) {
    index_.erase(buckets_[slot].key);
    buckets_[slot] = Bucket{};
    free_.push_back(slot);
  }

  // The bucket of a row: key_from_values of its normalized join values, computed over their
  // encoding without building them. False when a join value is None (the row matches nothing).
  bool join_key(int side, const Row& row, Key* out) {
    buf_.clear();
    codec::put_varint(buf_, on_[side].size());
    for (size_t c : on_[side]) {
      const Value& v = row[c];
      if (v.is_none()) return false;
      if (v.type() == DType::kFloat) codec::put_key_value(buf_, normalize(v));
      else codec::put_key_value(buf_, v);
    }
    XXH128_hash_t h = XXH3_128bits(buf_.data(), buf_.size());
    *out = Key{h.low64, h.high64};
    return true;
  }

  void apply(int side, KeyedRows& rows, const std::vector<const Update*>& delta) const {
    for (const Update* up : delta) {
      const Update& u = *up;
      bool ok = u.diff > 0 ? u.diff == 1 && rows.insert(u.key, u.row) : u.diff == -1 && rows.erase(u.key);
      if (!ok)
        throw RuntimeError(std::string("join: the ") + (side == 0 ? "left" : "right") + " input has key " +
                           u.key.to_string() + " with multiplicity other than 0 or 1");
    }
  }

  // Inner joins without memo emit pairs evaluated at once (no intermediate rows, no sort: the
  // scheduler consolidates for consumers that need it); other joins collect and consolidate.
  bool direct() const { return !memoize_ && !keep_[0] && !keep_[1]; }
  void emit_pair(const Key& lk, const Row& l, const Key& rk, const Row& r, int64_t diff, Batch& out) {
    if (direct()) {
      if (inputs_.replaying()) return;  // restoring: the outputs were delivered before the restart
      scratch_.resize(l.size() + r.size());
      std::copy(l.begin(), l.end(), scratch_.begin());
      std::copy(r.begin(), r.end(), scratch_.begin() + static_cast<ptrdiff_t>(l.size()));
      Key okey = key_combine(lk, rk);
      EvalContext ctx{scratch_.data(), &okey, &lk, &rk};
      Row o;
      o.reserve(exprs_.size());
      for (const auto& e : exprs_) o.push_back(e->eval(ctx));
      out.push_back({okey, std::move(o), diff});
      return;
    }
    Row cols = l;
    cols.insert(cols.end(), r.begin(), r.end());
    pending_.push_back({key_combine(lk, rk), std::move(cols), lk, rk, diff});
  }

  void emit_unmatched(int side, const Key& k, const Row& row, int64_t diff) {
    Row cols;
    cols.reserve(widths_[0] + widths_[1]);
    if (side == 1) cols.resize(widths_[0]);
    cols.insert(cols.end(), row.begin(), row.end());
    cols.resize(widths_[0] + widths_[1]);
    if (side == 0) pending_.push_back({key_combine(k, Key{}), std::move(cols), k, std::nullopt, diff});
    else pending_.push_back({key_combine(Key{}, k), std::move(cols), std::nullopt, k, diff});
  }

  // Consolidates the joined rows before evaluating the outputs: changes that cancel (a bucket's
  // unmatched rows re-emitted, a pair moving between buckets) cost no evaluation, and with a
  // non-deterministic apply() every retraction is resolved from the memo before any insertion
  // of the same output key overwrites it.
  void flush(Batch& out) {
    if (inputs_.replaying()) {  // restoring: the outputs were delivered before the restart
      pending_.clear();
      return;
    }
    std::sort(pending_.begin(), pending_.end(), [](const Change& a, const Change& b) {
      if (a.okey != b.okey) return a.okey < b.okey;
      return (a.cols <=> b.cols) < 0;
    });
    size_t w = 0;
    for (size_t i = 0; i < pending_.size();) {
      size_t j = i + 1;
      int64_t d = pending_[i].diff;
      while (j < pending_.size() && pending_[j].okey == pending_[i].okey && pending_[j].cols == pending_[i].cols)
        d += pending_[j++].diff;
      if (d != 0) {
        if (w != i) pending_[w] = std::move(pending_[i]);
        pending_[w++].diff = d;
      }
      i = j;
    }
    pending_.resize(w);
    for (bool retractions : {true, false})
      for (const Change& c : pending_) {
        if ((c.diff < 0) != retractions) continue;
        if (memoize_ && c.diff < 0) {
          auto it = memo_.find(c.okey);
          if (it != memo_.end()) {
            out.push_back({c.okey, std::move(it->second), c.diff});
            memo_.erase(it);
            if (tracking_state()) memo_dirty_.insert(c.okey);
            continue;
          }
        }
        EvalContext ctx{c.cols.data(), &c.okey, c.lk ? &*c.lk : nullptr, c.rk ? &*c.rk : nullptr};
        Row r;
        r.reserve(exprs_.size());
        for (const auto& e : exprs_) r.push_back(e->eval(ctx));
        if (memoize_ && c.diff > 0) {
          memo_[c.okey] = r;
          if (tracking_state()) memo_dirty_.insert(c.okey);
        }
        out.push_back({c.okey, std::move(r), c.diff});
      }
    pending_.clear();
  }

  struct Change {
    Key okey;
    Row cols;  // left cells then right cells (None for a missing side)
    std::optional<Key> lk, rk;
    int64_t diff;
  };

  std::array<std::vector<size_t>, 2> on_;
  std::array<size_t, 2> widths_;
  std::array<bool, 2> keep_;
  std::vector<CompiledExprPtr> exprs_;
  bool memoize_;
  // Buckets in dense slots (free_ lists the empty ones), found through a flat index by the
  // 128-bit key of their join values.
  std::vector<Bucket> buckets_;
  std::vector<uint32_t> free_;
  KeyIndex index_;
  std::vector<uint32_t> stamp_;      // per slot: epoch_ of the last process() touching it
  std::vector<uint32_t> touch_pos_;  // per slot: its entry in touched_ (valid when stamped)
  uint32_t epoch_ = 0;
  // process() scratch: touched buckets in first-touch order, their per-side update lists.
  static constexpr uint32_t kEnd = ~uint32_t{0};
  struct Touched {
    uint32_t slot;
    std::array<uint32_t, 2> head, tail;
  };
  struct Link {
    const Update* u;
    uint32_t next;
  };
  std::vector<Touched> touched_;
  std::vector<Link> links_;
  std::string buf_;
  Row scratch_;
  RowsByKey memo_;
  std::vector<Change> pending_;
  static constexpr uint8_t kMemoPort = 2;
  static constexpr uint8_t kEntryVersion = 1;
  InputState inputs_{{InputState::Port::kRows, InputState::Port::kRows}};
  std::unordered_set<Key, KeyHash> memo_dirty_;
};

// Join columns must hold comparable values (numbers compare across int and float).
bool comparable(const Type& a, const Type& b) {
  auto loose = [](DType t) { return t == DType::kAny || t == DType::kNone; };
  return loose(a.base) || loose(b.base) || a.base == b.base || (is_num(a.base) && is_num(b.base));
}

Schema with_optional(const Schema& s, bool optional) {
  std::vector<Column> cols = s.columns();
  if (optional)
    for (auto& c : cols) c.type.optional = true;
  return Schema(std::move(cols));
}

}  // namespace
}  // namespace engine

JoinResult::JoinResult(const Table& l, const Table& r, std::vector<std::pair<std::string, std::string>> on,
                       JoinMode mode)
    : graph_(&l.graph()), left_(l.node()), right_(r.node()), on_(std::move(on)), mode_(mode) {
  if (&l.graph() != &r.graph()) throw GraphError("in join: the tables belong to different graphs");
  for (const auto& [lc, rc] : on_) {
    auto li = l.schema().find(lc);
    if (!li) throw GraphError("in join: unknown column '" + lc + "' in the left table (available: " + l.schema().names() + ")");
    auto ri = r.schema().find(rc);
    if (!ri)
      throw GraphError("in join: unknown column '" + rc + "' in the right table (available: " + r.schema().names() + ")");
    const Type& lt = l.schema()[*li].type;
    const Type& rt = r.schema()[*ri].type;
    if (!engine::comparable(lt, rt))
      throw GraphError("in join: left column '" + lc + "' (" + lt.to_string() + ") cannot be compared with right column '" +
                       rc + "' (" + rt.to_string() + ")");
  }
}

Table JoinResult::select(std::vector<NamedExpr> outputs) const {
  const Table l(graph_, left_);
  const Table r(graph_, right_);
  bool keep_left = mode_ == JoinMode::kLeft || mode_ == JoinMode::kOuter;
  bool keep_right = mode_ == JoinMode::kRight || mode_ == JoinMode::kOuter;
  // A side that can be missing reads as None, so its columns become optional.
  Schema ls = engine::with_optional(l.schema(), keep_right);
  Schema rs = engine::with_optional(r.schema(), keep_left);
  std::vector<Column> both = ls.columns();
  both.insert(both.end(), rs.columns().begin(), rs.columns().end());
  Schema combined(std::move(both));
  internal::CompileScope scope;
  scope.graph = &l.graph().impl();
  scope.op = "join.select";
  scope.schema = &combined;
  scope.left_size = ls.size();
  scope.left = &ls;
  scope.right = &rs;
  std::vector<internal::CompiledExprPtr> exprs;
  std::vector<Column> cols;
  for (auto& o : outputs) {
    if (o.name.empty() || o.name == "id") throw GraphError("in join.select: invalid output column name '" + o.name + "'");
    for (const auto& c : cols)
      if (c.name == o.name) throw GraphError("in join.select: column '" + o.name + "' given twice");
    exprs.push_back(internal::compile(o.expr, scope));
    cols.push_back({o.name, exprs.back()->type});
  }
  std::array<std::vector<size_t>, 2> on;
  for (const auto& [lc, rc] : on_) {
    on[0].push_back(*l.schema().find(lc));
    on[1].push_back(*r.schema().find(rc));
  }
  std::string params = std::string(mode_ == JoinMode::kInner ? "inner" : mode_ == JoinMode::kLeft ? "left"
                                   : mode_ == JoinMode::kRight ? "right" : "outer") + " on ";
  for (size_t i = 0; i < on_.size(); ++i) params += (i ? ", " : "") + on_[i].first + "=" + on_[i].second;
  params += "; " + internal::describe(outputs);
  Graph& g = l.graph();
  return engine::with_params(
      Table(&g, g.impl().add(std::make_unique<engine::JoinNode>(
                    l.node(), r.node(), Schema(std::move(cols)), std::move(on),
                    std::array<size_t, 2>{l.schema().size(), r.schema().size()},
                    std::array<bool, 2>{keep_left, keep_right}, std::move(exprs), scope.saw_nondeterministic))),
      std::move(params));
}

JoinResult Table::join(const Table& other, std::vector<std::pair<std::string, std::string>> on, JoinMode mode) const {
  return JoinResult(*this, other, std::move(on), mode);
}
JoinResult Table::join_left(const Table& other, std::vector<std::pair<std::string, std::string>> on) const {
  return join(other, std::move(on), JoinMode::kLeft);
}
JoinResult Table::join_right(const Table& other, std::vector<std::pair<std::string, std::string>> on) const {
  return join(other, std::move(on), JoinMode::kRight);
}
JoinResult Table::join_outer(const Table& other, std::vector<std::pair<std::string, std::string>> on) const {
  return join(other, std::move(on), JoinMode::kOuter);
}

}  // namespace tidemark
