// Worker threads: the run loop of RunOptions::workers > 1 (model: src/engine/README.md,
// "Workers").
//
// Plan. Node i of the graph gets a placement:
//  * source: sharded (Source::shard: every worker reads its shard) or on worker 0 only;
//  * local: stateless, clonable (Routing::By::kNone): runs on every worker over the rows
//    that are there;
//  * keyed: stateful, clonable, with a routing: each input is exchanged by routing key first;
//  * pinned: sinks, operators that cannot be cloned or route nothing: inputs gathered to
//    worker 0, which holds the only instance.
// Worker 0 uses the graph's own nodes (and the original source when it cannot split); other
// workers own clones.
//
// Time. The workers go through the same loop in lockstep: poll their own sources, gather
// (have data, sources left, failure, stop) from everyone, and if anyone has data run one
// step at the time worker 0 proposed. Within a step every worker visits the nodes in the same
// topological order and calls the same exchanges, so each operator instance sees its whole
// share of a time's changes in one process() call, and each sink (worker 0) one gathered,
// consolidated batch per time.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "engine/workers.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <variant>

#include "engine/codec.h"
#include "engine/expr_internal.h"

namespace tidemark::engine {

Result<size_t> parse_workers(const std::string& text, const std::string& what) {
  size_t n = 0;
  bool ok = !text.empty() && text.size() <= 4;
  for (char c : text) {
    ok = ok && c >= '0' && c <= '9';
    if (ok) n = n * 10 + static_cast<size_t>(c - '0');
  }
  if (!ok || n < 1 || n > 256)
    return Status::invalid_argument(what + " must be a whole number of worker threads from 1 to 256, got '" + text + "'");
  return n;
}

Result<size_t> resolve_workers(const RunOptions& options) {
  if (options.workers > 256)
    return Status::invalid_argument("RunOptions::workers must be from 0 (TIDEMARK_THREADS or 1) to 256, got " +
                                    std::to_string(options.workers));
  if (options.workers > 0) return options.workers;
  const char* env = std::getenv("TIDEMARK_THREADS");
  if (!env || !*env) return size_t{1};
  return parse_workers(env, "TIDEMARK_THREADS");
}

namespace {

uint64_t now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

class Barrier {
 public:
  explicit Barrier(size_t n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    uint64_t gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return gen_ != gen; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  size_t n_, count_ = 0;
  uint64_t gen_ = 0;
};

// Slots written by their sender, then one barrier, then read by their receiver. Two sets
// alternate: a sender writes a set again only two operations later, after the barrier of the
// operation in between, which every receiver of this set passed after reading it.
class ThreadExchange final : public Exchange {
 public:
  explicit ThreadExchange(size_t n) : n_(n), barrier_(n), rounds_(n, 0) {
    for (int p = 0; p < 2; ++p) {
      slots_[p].assign(n * n, Batch());
      messages_[p].assign(n, std::string());
      bytes_[p].assign(n * n, std::string());
    }
  }
  size_t workers() const override { return n_; }
  void exchange(size_t self, std::vector<Batch>& out, std::vector<Batch>& in) override {
    const int p = static_cast<int>(rounds_[self]++ & 1);
    for (size_t d = 0; d < n_; ++d) {
      slots_[p][self * n_ + d].swap(out[d]);
      out[d].clear();
    }
    timed_wait(self);
    in.resize(n_);
    // What `in[s]` still holds (rows of the previous exchange with this parity that the
    // receiver read in place) goes back to its sender, which frees it on its own thread: the
    // rows were mostly allocated there (an allocator frees fastest on the allocating thread).
    for (size_t s = 0; s < n_; ++s) in[s].swap(slots_[p][s * n_ + self]);
  }
  void exchange_bytes(size_t self, std::vector<std::string>& out, std::vector<std::string>& in) override {
    const int p = static_cast<int>(rounds_[self]++ & 1);
    for (size_t d = 0; d < n_; ++d) {
      bytes_[p][self * n_ + d].swap(out[d]);
      out[d].clear();
    }
    timed_wait(self);
    in.resize(n_);
    for (size_t s = 0; s < n_; ++s) in[s].swap(bytes_[p][s * n_ + self]);
  }
  void all_gather(size_t self, std::string message, std::vector<std::string>& all) override {
    const int p = static_cast<int>(rounds_[self]++ & 1);
    messages_[p][self] = std::move(message);
    timed_wait(self);
    all.assign(messages_[p].begin(), messages_[p].end());
  }

 ~ThreadExchange() override {
    if (std::getenv("TIDEMARK_WORKERS_PROFILE"))
      for (size_t w = 0; w < n_; ++w)
        std::fprintf(stderr, "[tidemark] worker %zu: %.3f s waiting in %llu exchanges\n", w, waited_[w] / 1e9,
                     static_cast<unsigned long long>(rounds_[w]));
  }

 private:
  void timed_wait(size_t self) {
    auto t0 = std::chrono::steady_clock::now();
    barrier_.wait();
    waited_[self] += static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
  }
  size_t n_;
  Barrier barrier_;
  std::vector<uint64_t> waited_ = std::vector<uint64_t>(n_, 0);
  std::vector<uint64_t> rounds_;  // per worker (each touched by its own thread only)
  std::vector<Batch> slots_[2];   // [from * n + to]
  std::vector<std::string> messages_[2];
  std::vector<std::string> bytes_[2];  // [from * n + to]
};

// Worker slices are smaller than the scheduler's: a slice's rows exist about three times over
// (the pipelined output, the outgoing pieces, the received pieces) and should stay in cache.
constexpr uint64_t kSliceDivisor = 4;

enum class Place : uint8_t { kSource, kLocal, kKeyed, kPinned };

struct Plan {
  size_t workers = 1;
  std::vector<Place> place;
  std::vector<Routing> routing;          // kKeyed
  std::vector<bool> is_sink;
  std::vector<bool> consolidate_output;  // for consumers on the same worker
  std::vector<std::vector<size_t>> consumers;
  std::vector<size_t> reads;             // input ports reading node i
  std::vector<size_t> sources;           // graph indexes of the sources, in order
  // Pipelined prefix (per worker, as in the scheduler): sources, then single-input nodes that
  // accept partial input, local ones or keyed ones whose input is exchanged slice by slice.
  std::vector<bool> pipelined;
  std::vector<bool> feeds_rest;          // pipelined with a consumer outside the prefix
  std::vector<bool> has_pipelined_consumer, fans_out;  // sources
  std::vector<size_t> reads_rest;        // input ports of non-pipelined nodes reading node i
  // Pipelined keyed nodes that pre-aggregate before the exchange (Node::combines): their rows
  // stay on the worker reading them; only the time's partials are exchanged, at its end.
  std::vector<bool> combine;
};

struct Worker {
  size_t id = 0;
  std::vector<std::unique_ptr<Node>> owned;
  std::vector<Node*> nodes;          // by graph index; nullptr: no instance here
  std::vector<SourceNode*> sources;  // this worker's
  std::vector<uint64_t> next_poll;
  std::vector<Batch> outputs;
  std::vector<Batch> received;       // per input port of the node being run
  std::vector<Batch> out, in;        // exchange buffers
  std::vector<std::string> bytes_out, bytes_in;  // combiners' partials
  std::vector<Batch> accumulated;    // pipelined nodes feeding the rest: this time's output
  std::vector<bool> touched;
  std::vector<bool> combining;       // a combining node's slices ran this time (same on every worker)
  std::vector<uint64_t> reached;
  std::vector<uint32_t> dest;
  std::vector<size_t> counts, fill;
  std::string buf;
  uint64_t rows_in = 0;  // source rows this worker read
  Status route_error;    // a routing expression failed during this step
  uint64_t poll_ns = 0, step_ns = 0;  // TIDEMARK_WORKERS_PROFILE
};

std::string encode_status(const Status& s) {
  std::string m;
  m.push_back(static_cast<char>(s.code()));
  m += s.message();
  return m;
}
// Merges batches each consolidated by consolidate() (sorted by key; within a key by row, then
// retractions first) into one such batch, as consolidate() of their concatenation gives.
void merge_consolidated(std::vector<Batch>& pieces, Batch& out) {
  size_t total = 0;
  for (const Batch& b : pieces) total += b.size();
  out.reserve(total);
  std::vector<size_t> pos(pieces.size(), 0);
  Batch group;
  for (;;) {
    const Key* min = nullptr;
    size_t holders = 0;
    for (size_t s = 0; s < pieces.size(); ++s) {
      if (pos[s] >= pieces[s].size()) continue;
      const Key& k = pieces[s][pos[s]].key;
      if (!min || k < *min) {
        min = &k;
        holders = 1;
      } else if (k == *min) {
        ++holders;
      }
    }
    if (!min) break;
    const Key key = *min;
    if (holders == 1) {
      for (size_t s = 0; s < pieces.size(); ++s) {
        Batch& b = pieces[s];
        while (pos[s] < b.size() && b[pos[s]].key == key) out.push_back(std::move(b[pos[s]++]));
      }
      continue;
    }
    group.clear();
    for (size_t s = 0; s < pieces.size(); ++s) {
      Batch& b = pieces[s];
      while (pos[s] < b.size() && b[pos[s]].key == key) group.push_back(std::move(b[pos[s]++]));
    }
    std::stable_sort(group.begin(), group.end(), [](const Update& a, const Update& b) { return a.row < b.row; });
    size_t first = out.size();
    for (size_t j = 0; j < group.size();) {
      size_t e = j + 1;
      int64_t d = group[j].diff;
      while (e < group.size() && group[e].row == group[j].row) d += group[e++].diff;
      if (d != 0) {
        group[j].diff = d;
        out.push_back(std::move(group[j]));
      }
      j = e;
    }
    std::stable_partition(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(),
                          [](const Update& u) { return u.diff < 0; });
  }
  for (Batch& b : pieces) b.clear();
}

}  // namespace

// key_from_values of the cells `cols` of `row`, as groupby computes its group key: the
// encoding of codec::put_key_row, with strings and ints (the common grouping values) written
// inline.
Key columns_route_key(const Row& row, const std::vector<size_t>& cols, std::string& buf) {
  buf.clear();
  codec::put_varint(buf, cols.size());
  for (size_t c : cols) {
    const Value& v = row[c];
    switch (v.type()) {
      case DType::kString: {
        const std::string_view str = v.as_string();
        buf.push_back(static_cast<char>(DType::kString));
        uint64_t len = str.size();
        for (; len >= 0x80; len >>= 7) buf.push_back(static_cast<char>((len & 0x7f) | 0x80));
        buf.push_back(static_cast<char>(len));
        buf.append(str);
        break;
      }
      case DType::kInt: {
        auto x = static_cast<uint64_t>(v.as_int());
        char b[9];
        b[0] = static_cast<char>(DType::kInt);
        for (int i = 0; i < 8; ++i) b[1 + i] = static_cast<char>((x >> (8 * i)) & 0xff);
        buf.append(b, 9);
        break;
      }
      default: codec::put_key_value(buf, v);
    }
  }
  XXH128_hash_t h = XXH3_128bits(buf.data(), buf.size());
  return Key{h.low64, h.high64};
}

namespace {

Status decode_status(std::string_view m) {
  if (m.empty() || m[0] == 0) return {};
  return Status(static_cast<StatusCode>(static_cast<unsigned char>(m[0])), std::string(m.substr(1)));
}

// Commands worker 0 sends the others before the loop (persistence replay runs steps then).
enum class Command : char { kStep = 1, kRun = 2, kAbort = 3 };

class Run final : public RunControl {
 public:
  Run(internal::GraphImpl& g, const RunOptions& options, size_t n, const std::function<bool()>& stop,
      const RunHooks& hooks)
      : g_(g), options_(options), stop_(stop), hooks_(hooks), exchange_(make_thread_exchange(n)) {
    plan_.workers = n;
    workers_.resize(n);
    for (size_t w = 0; w < n; ++w) {
      workers_[w].id = w;
      workers_[w].nodes.assign(g.size(), nullptr);
      workers_[w].outputs.resize(g.size());
      workers_[w].accumulated.resize(g.size());
    }
  }

  Status build() {
    const size_t n = plan_.workers, size = g_.size();
    plan_.place.resize(size);
    plan_.routing.resize(size);
    plan_.is_sink.assign(size, false);
    plan_.consolidate_output.assign(size, false);
    plan_.consumers.resize(size);
    plan_.reads.assign(size, 0);
    for (size_t i = 0; i < size; ++i) {
      Node& proto = g_.node(i);
      for (size_t in : proto.inputs()) {
        plan_.consumers[in].push_back(i);
        ++plan_.reads[in];
      }
      if (auto* src = dynamic_cast<SourceNode*>(&proto)) {
        plan_.place[i] = Place::kSource;
        ++source_count_;
        std::vector<std::unique_ptr<Source>> shards;
        for (size_t w = 0; w < n; ++w) {
          auto s = src->source().shard(w, n);
          if (!s) break;
          shards.push_back(std::move(s));
        }
        if (shards.size() == n) {
          for (size_t w = 0; w < n; ++w) {
            auto node = std::make_unique<SourceNode>(std::move(shards[w]), proto.schema());
            adopt(w, i, std::move(node), proto);
          }
          ++sharded_sources_;
        } else {
          workers_[0].nodes[i] = &proto;
        }
        continue;
      }
      if (dynamic_cast<SinkNode*>(&proto)) {
        plan_.is_sink[i] = true;
        plan_.place[i] = Place::kPinned;
        workers_[0].nodes[i] = &proto;
        continue;
      }
      Routing r = proto.routing();
      std::unique_ptr<Node> first = r.by == Routing::By::kPinned ? nullptr : proto.clone();
      if (!first) {
        plan_.place[i] = Place::kPinned;
        workers_[0].nodes[i] = &proto;
        continue;
      }
      plan_.place[i] = r.by == Routing::By::kNone ? Place::kLocal : Place::kKeyed;
      plan_.routing[i] = std::move(r);
      workers_[0].nodes[i] = &proto;
      for (size_t w = 1; w < n; ++w) adopt(w, i, w == 1 ? std::move(first) : proto.clone(), proto);
    }
    // A producer consolidates its own output only for consumers on the same worker; exchanged
    // inputs are consolidated by their receiver.
    for (size_t i = 0; i < size; ++i)
      for (size_t in : g_.node(i).inputs())
        if (plan_.place[i] == Place::kLocal && g_.node(i).needs_consolidated_input() &&
            !g_.node(in).output_consolidated())
          plan_.consolidate_output[in] = true;
    plan_.pipelined.assign(size, false);
    plan_.feeds_rest.assign(size, false);
    plan_.has_pipelined_consumer.assign(size, false);
    plan_.fans_out.assign(size, false);
    plan_.reads_rest.assign(size, 0);
    for (size_t i = 0; i < size; ++i) {
      Node& node = g_.node(i);
      if (plan_.place[i] == Place::kSource) {
        plan_.pipelined[i] = true;
        plan_.sources.push_back(i);
      } else if (node.inputs().size() == 1 && !plan_.is_sink[i] && plan_.place[i] != Place::kPinned &&
                 node.accepts_partial_input()) {
        size_t in = node.inputs()[0];
        plan_.pipelined[i] = plan_.pipelined[in] && !g_.node(in).emits_at_end_of_time();
      }
    }
    for (size_t i = 0; i < size; ++i)
      for (size_t c : plan_.consumers[i]) {
        if (plan_.pipelined[i] && !plan_.pipelined[c]) plan_.feeds_rest[i] = true;
        if (!plan_.pipelined[c])
          for (size_t in : g_.node(c).inputs()) plan_.reads_rest[i] += in == i ? 1 : 0;
        if (plan_.place[i] == Place::kSource && plan_.pipelined[c]) {
          plan_.has_pipelined_consumer[i] = true;
          if (!g_.node(c).emits_at_end_of_time()) plan_.fans_out[i] = true;
        }
      }
    plan_.combine.assign(size, false);
    for (size_t i = 0; i < size; ++i)
      plan_.combine[i] = plan_.pipelined[i] && plan_.place[i] == Place::kKeyed && g_.node(i).combines();
    for (Worker& w : workers_) {
      for (size_t i = 0; i < size; ++i)
        if (plan_.place[i] == Place::kSource && w.nodes[i]) w.sources.push_back(static_cast<SourceNode*>(w.nodes[i]));
      w.next_poll.assign(w.sources.size(), 0);
    }
    return {};
  }

  Status run() {
    TM_RETURN_IF_ERROR(build());
    bool any_source = false;
    for (Worker& w : workers_) any_source = any_source || !w.sources.empty();
    if (!any_source) return Status::invalid_argument("the graph has no input sources");
    for (size_t i = 0; i < g_.size(); ++i)
      if (plan_.is_sink[i]) sinks_.push_back(static_cast<SinkNode*>(&g_.node(i)));
    for (size_t si : plan_.sources) {
      proto_sources_.push_back(static_cast<SourceNode*>(&g_.node(si)));
      std::vector<SourceNode*> shards;
      for (Worker& w : workers_)
        if (w.nodes[si]) shards.push_back(static_cast<SourceNode*>(w.nodes[si]));
      shards_.push_back(std::move(shards));
    }
    // The other workers wait for worker 0's commands (replay steps) until the loop starts.
    std::vector<std::thread> threads;
    std::vector<Status> results(plan_.workers);
    for (size_t w = 1; w < plan_.workers; ++w)
      threads.emplace_back([this, w, &results] {
        results[w] = serve(workers_[w]);
        if (results[w].is_ok()) results[w] = loop(workers_[w]);
      });
    Status setup = start();
    {
      std::string cmd(1, static_cast<char>(setup.is_ok() ? Command::kRun : Command::kAbort));
      std::vector<std::string> all;
      exchange_->all_gather(0, std::move(cmd), all);
    }
    if (!setup.is_ok()) {
      for (auto& t : threads) t.join();
      return setup;  // as at 1 worker: nothing was flushed or committed
    }
    results[0] = loop(workers_[0]);
    for (auto& t : threads) t.join();
    if (std::getenv("TIDEMARK_WORKERS_PROFILE"))
      for (const Worker& w : workers_)
        std::fprintf(stderr, "[tidemark] worker %zu: %.3f s polling, %.3f s in steps (exchange waits included)\n", w.id,
                     w.poll_ns / 1e9, w.step_ns / 1e9);
    if (options_.log || options_.progress_interval_s > 0) {
      std::string per;
      for (const Worker& w : workers_) per += (per.empty() ? "" : ", ") + std::to_string(w.rows_in);
      log("workers: " + std::to_string(plan_.workers) + " (" + std::to_string(sharded_sources_) + " of " +
          std::to_string(source_count_) + " sources split across them); source rows read per worker: " + per);
    }
    return finish(results[0]);
  }

  // RunControl (called on worker 0's thread while the others wait).
  internal::GraphImpl& graph() override { return g_; }
  size_t workers() const override { return plan_.workers; }
  const std::vector<SourceNode*>& sources() const override { return proto_sources_; }
  const std::vector<SourceNode*>& source_shards(size_t k) const override { return shards_[k]; }
  const std::vector<SinkNode*>& sinks() const override { return sinks_; }
  std::vector<Node*> instances(size_t i) override {
    std::vector<Node*> out;
    for (Worker& w : workers_) out.push_back(w.nodes[i]);
    return out;
  }
  Status step(Time t, bool suppress_sinks) override {
    // Every worker steps at t over the rows the caller put into the shards' `pending`.
    std::string cmd(1, static_cast<char>(Command::kStep));
    codec::put_u64(cmd, t);
    codec::put_u8(cmd, suppress_sinks ? 1 : 0);
    for (const auto& shards : shards_) {
      uint64_t most = 0;
      for (SourceNode* s : shards) most = std::max<uint64_t>(most, s->pending.size());
      codec::put_u64(cmd, most);
    }
    std::vector<std::string> all;
    exchange_->all_gather(0, std::move(cmd), all);
    return commanded_step(workers_[0], all[0]);
  }
  Time next_time() override {
    last_time_ = std::max<Time>(now_ms(), last_time_ + 1);
    return last_time_;
  }
  Time last_time() const override { return last_time_; }
  void observe_time(Time t) override { last_time_ = std::max(last_time_, t); }
  void log(const std::string& msg) const override {
    if (options_.log) options_.log(msg);
    else std::fprintf(stderr, "[tidemark] %s\n", msg.c_str());
  }

 private:
  // Worker 0, before the loop: the persistence hooks' recovery around opening the sinks and
  // the sources (as the 1-worker run_with_hooks does).
  Status start() {
    if (hooks_.check) output_gate_ = hooks_.check;
    if (hooks_.before_start) TM_RETURN_IF_ERROR(hooks_.before_start(*this));
    for (SinkNode* s : sinks_) TM_RETURN_IF_ERROR(s->sink().open().with_context(s->label()));
    if (hooks_.after_sinks_open) TM_RETURN_IF_ERROR(hooks_.after_sinks_open(*this));
    // Sources a replay marked finished (continue_after_replay = false) are never opened.
    for (Worker& w : workers_)
      for (SourceNode* s : w.sources)
        if (!s->finished) TM_RETURN_IF_ERROR(s->source().open().with_context(s->label()));
    return {};
  }

  // Workers 1..n-1 before the loop: run the steps worker 0 commands, until it says run or abort.
  Status serve(Worker& w) {
    std::vector<std::string> all;
    for (;;) {
      exchange_->all_gather(w.id, std::string(), all);
      const Command c = static_cast<Command>(all[0].empty() ? 0 : all[0][0]);
      if (c == Command::kRun) return {};
      if (c == Command::kAbort) return Status::aborted("the run did not start");
      // A failed step fails worker 0's recovery, which then sends kAbort.
      (void)commanded_step(w, all[0]);
    }
  }

  // One step of a kStep command on worker w; every worker returns the agreed status.
  Status commanded_step(Worker& w, std::string_view cmd) {
    cmd.remove_prefix(1);
    uint64_t t = 0;
    uint8_t suppress = 0;
    codec::get_u64(cmd, &t);
    codec::get_u8(cmd, &suppress);
    std::vector<uint64_t> max_pending(plan_.sources.size(), 0);
    for (uint64_t& m : max_pending) codec::get_u64(cmd, &m);
    if (w.id == 0) {
      last_time_ = std::max(last_time_, t);
      ++times_;
    }
    Status ss = step(w, t, max_pending, suppress != 0);
    std::vector<std::string> all;
    exchange_->all_gather(w.id, encode_status(ss), all);
    for (size_t s = 0; s < plan_.workers; ++s)
      if (Status e = decode_status(all[s]); !e.is_ok()) return e;
    return {};
  }

  void adopt(size_t w, size_t i, std::unique_ptr<Node> node, const Node& proto) {
    node->set_index(i);
    node->set_name(proto.name());
    node->set_params(proto.params());
    workers_[w].nodes[i] = node.get();
    workers_[w].owned.push_back(std::move(node));
  }

  // Outputs are not flushed when this run may no longer act (its storage lock is lost): what
  // is buffered must not reach files a successor now writes.
  Status finish(Status st) {
    for (SinkNode* s : sinks_) {
      if (!may_act_) break;
      Status f = s->sink().flush();
      if (st.is_ok() && !f.is_ok()) st = f.with_context(s->label());
    }
    if (st.is_ok() && hooks_.at_end) st = hooks_.at_end(*this, stopped_);
    for (SinkNode* s : sinks_) {
      Status c = s->sink().close();
      if (st.is_ok() && !c.is_ok()) st = c.with_context(s->label());
    }
    return st;
  }

  // One worker's loop; every worker returns the same status (the first failure in worker order).
  Status loop(Worker& w) {
    const size_t n = plan_.workers;
    std::vector<std::string> all;
    std::vector<uint64_t> max_pending;
    auto last_progress = std::chrono::steady_clock::now();
    for (;;) {
      // 1. Poll this worker's sources that are due.
      auto poll_start = std::chrono::steady_clock::now();
      bool have = false;
      size_t live = 0;
      uint64_t now = now_ms();
      Status st;
      if (w.id == 0 && hooks_.check) {  // may this run still act? (persistence: the lock)
        st = hooks_.check();
        if (!st.is_ok()) may_act_ = false;
      }
      for (size_t k = 0; k < w.sources.size() && st.is_ok(); ++k) {
        SourceNode* s = w.sources[k];
        if (s->finished) continue;
        ++live;
        if (now < w.next_poll[k]) continue;
        bool fin = false;
        st = s->source().poll(s->pending, &fin);
        if (!st.is_ok()) {
          st = st.with_context(s->label());
          break;
        }
        s->finished = fin;
        w.next_poll[k] = now + s->source().autocommit_ms();
        have = have || !s->pending.empty();
      }
      w.poll_ns += static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                             std::chrono::steady_clock::now() - poll_start).count());
      // 2. Agree: [have][live sources][stop][time proposed by worker 0][status].
      std::string msg;
      msg.push_back(have ? 1 : 0);
      msg.push_back(live > 0 ? 1 : 0);
      msg.push_back(w.id == 0 && stop_() ? 1 : 0);
      uint64_t proposed = w.id == 0 ? std::max<uint64_t>(now_ms(), last_time_ + 1) : 0;
      codec::put_u64(msg, proposed);
      for (size_t si : plan_.sources) codec::put_u64(msg, w.nodes[si] ? static_cast<SourceNode*>(w.nodes[si])->pending.size() : 0);
      msg += encode_status(st);
      exchange_->all_gather(w.id, std::move(msg), all);
      bool any_have = false, any_live = false;
      for (size_t s = 0; s < n; ++s) {
        any_have = any_have || all[s][0] != 0;
        any_live = any_live || all[s][1] != 0;
      }
      const size_t status_at = 11 + 8 * plan_.sources.size();
      for (size_t s = 0; s < n; ++s)
        if (Status e = decode_status(std::string_view(all[s]).substr(status_at)); !e.is_ok()) return e;
      max_pending.assign(plan_.sources.size(), 0);
      for (size_t s = 0; s < n; ++s) {
        std::string_view v = std::string_view(all[s]).substr(11);
        for (size_t k = 0; k < plan_.sources.size(); ++k) {
          uint64_t x = 0;
          codec::get_u64(v, &x);
          max_pending[k] = std::max(max_pending[k], x);
        }
      }
      // A stop request ends the loop after this turn's step: the rows this turn polled are
      // processed (and committed at the end), since the sources' offsets already cover them.
      const bool stop = all[0][2] != 0;
      if (any_have) {
        std::string_view tv = std::string_view(all[0]).substr(3, 8);
        uint64_t t = 0;
        codec::get_u64(tv, &t);
        if (w.id == 0) {
          last_time_ = t;
          ++times_;
        }
        auto step_start = std::chrono::steady_clock::now();
        Status ss = step(w, t, max_pending);
        w.step_ns += static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                               std::chrono::steady_clock::now() - step_start).count());
        exchange_->all_gather(w.id, encode_status(ss), all);
        for (size_t s = 0; s < n; ++s)
          if (Status e = decode_status(all[s]); !e.is_ok()) {
            if (w.id == 0 && hooks_.check && !hooks_.check().is_ok()) may_act_ = false;
            return e;
          }
        if (hooks_.after_time) {
          // Worker 0 records and commits the time while the others wait (the commit reads
          // every worker's source shards and operator instances).
          Status h;
          if (w.id == 0) {
            h = hooks_.after_time(*this, t);
            if (!h.is_ok() && hooks_.check && !hooks_.check().is_ok()) may_act_ = false;
          }
          exchange_->all_gather(w.id, encode_status(h), all);
          if (Status e = decode_status(all[0]); !e.is_ok()) return e;
        }
      }
      if (stop) {
        if (w.id == 0) stopped_ = true;
        return {};
      }
      if (!any_live) return {};
      if (w.id == 0 && options_.progress_interval_s > 0) {
        auto t = std::chrono::steady_clock::now();
        if (std::chrono::duration<double>(t - last_progress).count() >= options_.progress_interval_s) {
          last_progress = t;
          log("progress: " + std::to_string(times_) + " times, " + std::to_string(rows_in_.load()) + " rows in, " +
              std::to_string(rows_out_) + " changes out");
        }
      }
      if (!any_have && w.id == 0) {
        // Nobody had data: wait (bounded, to notice stop requests) until this worker's
        // earliest poll is due; the others wait for it in the next agreement.
        uint64_t wait = 50;
        now = now_ms();
        SourceNode* first_live = nullptr;
        for (size_t k = 0; k < w.sources.size(); ++k) {
          if (w.sources[k]->finished) continue;
          first_live = w.sources[k];
          wait = std::min<uint64_t>(wait, w.next_poll[k] > now ? w.next_poll[k] - now : 0);
        }
        if (wait > 0) {
          if (first_live) first_live->source().wait_for_data(wait);
          else std::this_thread::sleep_for(std::chrono::milliseconds(wait));
        }
      }
    }
  }

  Key route_key(const Node& node, const Routing& r, size_t port, const Update& u, std::string& buf) const {
    switch (r.by) {
      case Routing::By::kRowKey: return u.key;
      case Routing::By::kColumns: return columns_route_key(u.row, r.columns[port < 2 ? port : 0], buf);
      case Routing::By::kExpr: {
        if (!r.expr) return Key{};
        internal::EvalContext ctx{u.row.data(), &u.key};
        return key_from_values({r.expr->eval(ctx)});
      }
      case Routing::By::kCustom: return node.route_key(port, u);
      default: return Key{};
    }
  }

  // Sends `rows` (this worker's share of input `port` of node i) to the workers that hold its
  // instances; `own`: the rows may be moved. Fills w.received[port].
  // `pieces_only`: leave what each worker sent in w.in (the caller processes them as parts).
  void exchange_input(Worker& w, size_t i, size_t port, Batch& rows, bool own, bool pieces_only = false) {
    const size_t n = plan_.workers;
    w.out.resize(n);
    for (Batch& b : w.out) b.clear();
    const Node& proto = g_.node(i);
    const size_t in = proto.inputs()[port];
    const Node& producer = g_.node(in);
    // Consolidated where the operator (or sink) needs it, unless it already is: rows of a
    // producer that consolidates its output and whose workers emit disjoint keys (or that runs
    // on worker 0 only). Otherwise every sender consolidates (sorts) its rows, in parallel, and
    // the receiver merges the sorted pieces in linear time.
    const bool needs = plan_.is_sink[i] || proto.needs_consolidated_input();
    const bool disjoint = producer.output_consolidated() &&
                          (plan_.place[in] == Place::kPinned ||
                           (plan_.place[in] == Place::kKeyed && plan_.routing[in].partitioned_output));
    const bool sorted = needs && !disjoint;
    if (sorted && !plan_.consolidate_output[in]) {
      if (own) consolidate(rows);
      else {
        Batch copy = rows;
        consolidate(copy);
        own = true;
        exchange_rows(w, i, port, copy, true, sorted, pieces_only);
        return;
      }
    }
    exchange_rows(w, i, port, rows, own, sorted, pieces_only);
  }

  void exchange_rows(Worker& w, size_t i, size_t port, Batch& rows, bool own, bool sorted, bool pieces_only) {
    const size_t n = plan_.workers;
    const Node& proto = g_.node(i);
    if (plan_.place[i] == Place::kPinned) {
      if (own) w.out[0].swap(rows);
      else w.out[0] = rows;
    } else {
      // Destinations first, so each outgoing batch is allocated once at its size.
      const Routing& r = plan_.routing[i];
      const size_t m = rows.size();
      w.dest.resize(m);
      w.counts.assign(n, 0);
      try {
        for (size_t k = 0; k < m; ++k) {
          auto d = static_cast<uint32_t>(worker_of(route_key(proto, r, port, rows[k], w.buf), n));
          w.dest[k] = d;
          ++w.counts[d];
        }
      } catch (const std::exception& e) {  // an instance expression failed: send nothing
        if (w.route_error.is_ok()) w.route_error = Status::invalid_argument(proto.label() + ": " + e.what());
        w.counts.assign(n, 0);
        rows.clear();
        w.dest.clear();
      }
      const size_t sent = w.dest.size();
      w.fill.assign(n, 0);
      for (size_t d = 0; d < n; ++d) w.out[d].resize(w.counts[d]);
      if (own)
        for (size_t k = 0; k < sent; ++k) w.out[w.dest[k]][w.fill[w.dest[k]]++] = std::move(rows[k]);
      else
        for (size_t k = 0; k < sent; ++k) w.out[w.dest[k]][w.fill[w.dest[k]]++] = rows[k];
    }
    exchange_->exchange(w.id, w.out, w.in);
    if (pieces_only) return;  // the caller reads w.in
    Batch& got = w.received[port];
    got.clear();
    size_t pieces = 0, total = 0;
    for (const Batch& b : w.in) {
      pieces += b.empty() ? 0 : 1;
      total += b.size();
    }
    if (sorted && pieces > 1) {
      merge_consolidated(w.in, got);
      return;
    }
    for (Batch& b : w.in) {
      if (b.empty()) continue;
      if (got.empty()) got.swap(b);
      else {
        got.reserve(total);
        got.insert(got.end(), std::make_move_iterator(b.begin()), std::make_move_iterator(b.end()));
      }
    }
  }

  // The end of a time for combining node i (Plan::combine): every worker sends its partials to
  // the owners of their keys (the routing key is the partial's key), and each instance merges
  // what it received. Collective: every worker calls it for the same nodes and times, a failed
  // one with nothing to send.
  void exchange_partials(Worker& w, size_t i, Time t, Status& failed) {
    const size_t n = plan_.workers;
    Node& node = *w.nodes[i];
    w.bytes_out.resize(n);
    for (std::string& b : w.bytes_out) b.clear();
    if (failed.is_ok()) failed = call_operator(node, [&] { node.take_partials(n, w.bytes_out); });
    if (!failed.is_ok())
      for (std::string& b : w.bytes_out) b.clear();
    exchange_->exchange_bytes(w.id, w.bytes_out, w.bytes_in);
    for (const std::string& piece : w.bytes_in) {
      if (piece.empty() || !failed.is_ok()) continue;
      w.touched[i] = true;
      failed = call_operator(node, [&] { node.merge_partials(t, piece); });
    }
  }

  Status run_node(Worker& w, size_t i, Time t, std::span<Batch* const> ins, bool owns, bool part = false) {
    Node& node = *w.nodes[i];
    return call_operator(node, [&] {
      if (part) node.process_part(t, ins, w.outputs[i]);
      else if (owns) node.process_consuming(t, ins, w.outputs[i]);
      else node.process(t, std::span<const Batch* const>(const_cast<const Batch* const*>(ins.data()), ins.size()),
                        w.outputs[i]);
    });
  }

  Status end_time(Worker& w, size_t i, Time t) {
    Node& node = *w.nodes[i];
    return call_operator(node, [&] { node.end_time(t, w.outputs[i]); });
  }

  // One time on one worker. A failure stops this worker's processing but not its part in the
  // exchanges (the others wait for it); the step's status is agreed afterwards.
  // `max_pending[k]`: the most rows any worker has for the k-th source at this time.
  // `suppress_sinks`: a persistence replay rebuilding state; the sinks' inputs are gathered but
  // not written.
  Status step(Worker& w, Time t, const std::vector<uint64_t>& max_pending, bool suppress_sinks = false) {
    const size_t size = g_.size();
    Status failed;
    uint64_t in_rows = 0;
    // 1. The pipelined prefix, slice by slice (as the 1-worker scheduler does): every worker
    // runs the same number of slices of each source (from the largest share), so the
    // exchanges into pipelined groupbys line up; a slice of a worker may be empty.
    w.route_error = {};
    w.touched.assign(size, false);
    w.combining.assign(size, false);
    w.reached.assign(size, 0);
    if (w.received.empty()) w.received.resize(1);
    uint64_t slice_no = 0;
    for (size_t k = 0; k < plan_.sources.size(); ++k) {
      const size_t si = plan_.sources[k];
      auto* src = static_cast<SourceNode*>(w.nodes[si]);
      if (!plan_.has_pipelined_consumer[si]) {
        if (src && failed.is_ok()) {
          in_rows += src->pending.size();
          src->process(t, {}, w.outputs[si]);
        }
        continue;
      }
      if (max_pending[k] == 0) continue;
      w.touched[si] = true;
      Batch all;
      if (src) all.swap(src->pending);
      in_rows += all.size();
      const uint64_t slice_rows =
          options_.pipeline_slice_rows && plan_.fans_out[si] ? std::max<uint64_t>(1, options_.pipeline_slice_rows / kSliceDivisor) : max_pending[k];
      const uint64_t slices = (max_pending[k] + slice_rows - 1) / slice_rows;
      for (uint64_t sl = 0; sl < slices; ++sl) {
        size_t off = std::min<size_t>(all.size(), sl * slice_rows), end = std::min<size_t>(all.size(), off + slice_rows);
        ++slice_no;
        w.reached[si] = slice_no;
        if (src && off < end && failed.is_ok()) src->process_slice(all, off, end, w.outputs[si]);
        for (size_t j = si + 1; j < size; ++j) {
          if (!plan_.pipelined[j] || plan_.place[j] == Place::kSource) continue;
          const size_t in = g_.node(j).inputs()[0];
          if (w.reached[in] != slice_no) continue;
          w.reached[j] = slice_no;
          Batch* p = &w.outputs[in];
          if (plan_.combine[j]) {  // pre-aggregated here; the partials are exchanged at the end of the time
            w.combining[j] = true;
            if (p->empty() || !failed.is_ok()) continue;
            w.touched[j] = true;
            Node& node = *w.nodes[j];
            failed = call_operator(node, [&] { node.combine_part(t, *p, w.id, plan_.workers); });
            continue;
          }
          if (plan_.place[j] != Place::kLocal) {
            // Exchanged: each worker's piece is a part of its own (no concatenation).
            const bool pieces = !plan_.is_sink[j] && !g_.node(j).needs_consolidated_input();
            exchange_input(w, j, 0, w.outputs[in], plan_.consumers[in].size() == 1 && !plan_.feeds_rest[in], pieces);
            if (!w.route_error.is_ok() && failed.is_ok()) failed = w.route_error;
            if (pieces) {
              for (Batch& piece : w.in) {
                if (piece.empty() || !failed.is_ok()) continue;
                w.touched[j] = true;
                Batch* q = &piece;
                failed = run_node(w, j, t, std::span<Batch* const>(&q, 1), true, /*part=*/true);
                // Not cleared here: the next exchange hands the rows back to their sender.
              }
              continue;
            }
            p = &w.received[0];
          }
          if (p->empty() || !failed.is_ok()) continue;
          w.touched[j] = true;
          // A local node's part read by several nodes is nobody's to take (as in the
          // scheduler): linear nodes process() it, end-of-time nodes read it in place.
          const bool sole = plan_.place[j] != Place::kLocal || plan_.reads[in] == 1;
          failed = run_node(w, j, t, std::span<Batch* const>(&p, 1), sole,
                            /*part=*/sole || g_.node(j).emits_at_end_of_time());
          w.received[0].clear();
        }
        for (size_t j = si; j < size; ++j) {
          if (w.reached[j] != slice_no) continue;
          if (plan_.feeds_rest[j] && failed.is_ok()) {
            Batch& acc = w.accumulated[j];
            if (acc.empty()) acc.swap(w.outputs[j]);
            else acc.insert(acc.end(), std::make_move_iterator(w.outputs[j].begin()), std::make_move_iterator(w.outputs[j].end()));
          }
          w.outputs[j].clear();
        }
      }
    }

    // 2. The end of the time for the prefix, then every other node once, in topological order.
    std::vector<size_t> remaining = plan_.reads_rest;
    std::vector<Batch*> ins;
    for (size_t i = 0; i < size; ++i) {
      Node* node = w.nodes[i];
      const Place place = plan_.place[i];
      Batch& out = w.outputs[i];
      if (plan_.pipelined[i]) {
        if (w.combining[i]) {
          exchange_partials(w, i, t, failed);
          if (!w.route_error.is_ok() && failed.is_ok()) failed = w.route_error;
        }
        if (!w.touched[i]) continue;
        Batch& acc = w.accumulated[i];
        if (!acc.empty()) {
          if (out.empty()) out.swap(acc);
          else out.insert(out.end(), std::make_move_iterator(acc.begin()), std::make_move_iterator(acc.end()));
          acc.clear();
        }
        if (!g_.node(i).inputs().empty() && failed.is_ok()) failed = end_time(w, i, t);
        if (!plan_.feeds_rest[i] || !failed.is_ok()) out.clear();
        else if (plan_.consolidate_output[i]) consolidate(out);
        continue;
      }
      if (place == Place::kSource) continue;  // run whole in phase 1
      const auto& inputs = g_.node(i).inputs();
      ins.clear();
      w.received.resize(std::max(w.received.size(), inputs.size()));
      bool owns = true, any = false;
      for (size_t p = 0; p < inputs.size(); ++p) {
        size_t in = inputs[p];
        if (place == Place::kLocal) {
          ins.push_back(&w.outputs[in]);
          owns = owns && remaining[in] == 1;
        } else {
          exchange_input(w, i, p, w.outputs[in], remaining[in] == 1);
          if (!w.route_error.is_ok() && failed.is_ok()) failed = w.route_error;
          ins.push_back(&w.received[p]);
          if (--remaining[in] == 0) Batch().swap(w.outputs[in]);
        }
        any = any || !ins.back()->empty();
      }
      if (node && any && failed.is_ok() && !(suppress_sinks && plan_.is_sink[i])) {
        if (plan_.is_sink[i]) rows_out_ += ins[0]->size();
        failed = run_node(w, i, t, ins, owns);
        if (failed.is_ok() && plan_.consolidate_output[i]) consolidate(out);
      }
      if (!failed.is_ok()) out.clear();
      if (place == Place::kLocal)
        for (size_t in : inputs)
          if (--remaining[in] == 0) Batch().swap(w.outputs[in]);
      for (size_t p = 0; p < inputs.size(); ++p) w.received[p].clear();
    }
    for (Batch& b : w.outputs) Batch().swap(b);
    rows_in_ += in_rows;
    w.rows_in += in_rows;
    if (w.id == 0 && failed.is_ok() && !suppress_sinks && output_gate_) failed = output_gate_();
    if (w.id == 0 && failed.is_ok() && !suppress_sinks)
      for (SinkNode* s : sinks_) {
        Status st = s->sink().time_end(t);
        if (!st.is_ok()) return st.with_context(s->label());
      }
    return failed;
  }

  internal::GraphImpl& g_;
  const RunOptions& options_;
  const std::function<bool()>& stop_;
  const RunHooks& hooks_;
  std::unique_ptr<Exchange> exchange_;
  Plan plan_;
  std::vector<Worker> workers_;
  std::vector<SinkNode*> sinks_;
  std::vector<SourceNode*> proto_sources_;           // the graph's sources, in graph order
  std::vector<std::vector<SourceNode*>> shards_;     // their running instances
  std::function<Status()> output_gate_;              // RunHooks::check, before sinks write a time
  bool may_act_ = true, stopped_ = false;            // worker 0
  size_t sharded_sources_ = 0, source_count_ = 0;
  // Worker 0 only.
  Time last_time_ = 0;
  uint64_t times_ = 0, rows_out_ = 0;
  std::atomic<uint64_t> rows_in_{0};
};

}  // namespace

std::unique_ptr<Exchange> make_thread_exchange(size_t workers) { return std::make_unique<ThreadExchange>(workers); }

Status run_workers(internal::GraphImpl& graph, const RunOptions& options, size_t workers,
                   const std::function<bool()>& stop_requested, const RunHooks& hooks) {
  Run run(graph, options, workers, stop_requested, hooks);
  return run.run();
}

}  // namespace tidemark::engine
