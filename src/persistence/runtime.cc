#include "persistence/runtime.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include <xxhash.h>

#include "persistence/manifest.h"
#include "persistence/state_store.h"
#include "storage/chunk_format.h"
#include "storage/lock.h"

namespace tidemark::persistence {

using engine::Batch;
using engine::Scheduler;
using engine::SinkNode;
using engine::SourceNode;
using engine::Time;

namespace {

bool is_replay_mode(PersistenceMode m) {
  return m == PersistenceMode::kBatch || m == PersistenceMode::kSpeedrunReplay ||
         m == PersistenceMode::kRealtimeReplay;
}

// Which kind of state a storage holds, by the mode that wrote it: replaying it in a mode of
// another class would silently compute something else.
enum class StateClass { kRows, kOperators, kOffsets };
StateClass class_of(PersistenceMode m) {
  if (m == PersistenceMode::kOperatorPersisting) return StateClass::kOperators;
  if (m == PersistenceMode::kUdfCaching) return StateClass::kOffsets;
  return StateClass::kRows;
}
StateClass class_of(const std::string& mode) {
  if (mode == "operator_persisting") return StateClass::kOperators;
  if (mode == "udf_caching") return StateClass::kOffsets;
  return StateClass::kRows;
}
const char* class_name(StateClass c) {
  switch (c) {
    case StateClass::kRows: return "recorded input rows";
    case StateClass::kOperators: return "operator states";
    case StateClass::kOffsets: return "input offsets only";
  }
  return "";
}

// Runs of this many chunks of one level are merged into one chunk of the next level.
constexpr size_t kMergeFanIn = 4;

std::string hex128(std::string_view s) {
  XXH128_hash_t h = XXH3_128bits(s.data(), s.size());
  char buf[40];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return buf;
}

struct PSource;

// Runs fn(0..n-1) on at most `width` threads (the calling one included); object-store
// requests have high latency, so a commit's or a restore's objects go in parallel, but a
// commit with thousands of objects must not start thousands of threads.
void parallel_for(size_t n, size_t width, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < n;) fn(i);
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < std::min(n, width); ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
}
constexpr size_t kIoParallelism = 16;

// A standing pool of I/O threads, started once per run: work submitted to it (compressing
// and writing archived contents) overlaps the run loop's processing instead of stalling the
// next commit. Jobs queued but not started when the pool is destroyed are dropped (their
// objects were never referenced by a manifest).
class IoPool {
 public:
  explicit IoPool(size_t threads) {
    for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~IoPool() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  IoPool(const IoPool&) = delete;
  IoPool& operator=(const IoPool&) = delete;
  template <typename R>
  std::shared_future<R> submit(std::function<R()> fn) {
    auto task = std::make_shared<std::packaged_task<R()>>(std::move(fn));
    std::shared_future<R> f = task->get_future().share();
    {
      std::lock_guard<std::mutex> l(mu_);
      queue_.push_back([task] { (*task)(); });
    }
    cv_.notify_one();
    return f;
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      job();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};
constexpr size_t kIoPoolThreads = 2;
// Stored states from this size on are restored with their decoding on a second thread.
constexpr uint64_t kPipelineRestoreBytes = 1u << 20;

// ContentArchive over the snapshot storage. A stashed content is compressed and written in
// the background right away (under this run's epoch key, with put_if_absent); the next commit
// waits for its upload and lists it in the manifest.
class Archive final : public engine::ContentArchive {
 public:
  Archive(std::shared_ptr<storage::ObjectStore> store, std::string source_id, uint64_t epoch, IoPool* io)
      : store_(std::move(store)), id_(std::move(source_id)), epoch_(epoch), io_(io) {}
  void stash(uint64_t hash, std::string content) override {
    if (stored.count(hash) || pending.count(hash)) return;
    auto data = std::make_shared<const std::string>(std::move(content));
    pending.emplace(hash, data);
    std::shared_ptr<storage::ObjectStore> store = store_;
    std::string key = content_key(id_, hash, epoch_);
    uploads[hash] = io_->submit<Result<ChunkRef>>([store, key, data]() -> Result<ChunkRef> {
      std::string encoded = encode_content(*data);
      TM_RETURN_IF_ERROR(store->put_if_absent(key, encoded));
      return make_chunk_ref(key, encoded, 0, 0);
    });
  }
  Result<std::string> fetch(uint64_t hash) override {
    auto it = pending.find(hash);
    if (it != pending.end()) return *it->second;
    auto ref = stored.find(hash);
    if (ref == stored.end())
      return Status::corruption("archived content " + std::to_string(hash) + " of source '" + id_ +
                                "' is not listed in the newest manifest");
    const ContentRef& c = ref->second;
    auto data = store_->get(c.key);
    if (!data.is_ok()) return data.status().with_context("archived content of source '" + id_ + "'");
    ChunkRef as_chunk;
    as_chunk.key = c.key;
    as_chunk.bytes = c.bytes;
    as_chunk.crc32c = c.crc32c;
    as_chunk.has_crc = c.has_crc;
    TM_RETURN_IF_ERROR(check_chunk_object(store_->describe(), as_chunk, *data));
    return decode_content(store_->describe() + "/" + c.key, *data);
  }
  std::map<uint64_t, std::shared_ptr<const std::string>> pending;  // stashed, not yet committed
  std::map<uint64_t, std::shared_future<Result<ChunkRef>>> uploads;  // of the pending ones
  std::map<uint64_t, ContentRef> stored;     // in the storage, listed by the manifest

 private:
  std::shared_ptr<storage::ObjectStore> store_;
  std::string id_;
  uint64_t epoch_;
  IoPool* io_;
};

struct PSource {
  SourceNode* node = nullptr;
  std::string id;
  SourceState state;                 // chunks and offset as of the last commit
  std::unique_ptr<storage::ChunkWriter> writer;  // events since the last commit
  uint64_t pending_max_time = 0;
  Batch recorded;                    // filled by the source node during a step
  std::unique_ptr<Archive> archive;  // operator persisting
};

// A persistent state: an operator's (operator persisting) or a UDF cache's.
struct POwner {
  engine::PersistentState* state = nullptr;
  engine::Node* node = nullptr;  // nullptr for states that are not operators
  OperatorState st;              // chunks as of the last commit
  engine::StateChanges changes;  // since the last commit
};

struct PSink {
  SinkNode* node = nullptr;
  std::string id;
};

}  // namespace

struct Runtime::Impl {
  Config cfg;
  Scheduler* sched_ = nullptr;
  Stats stats;
  std::shared_ptr<storage::ObjectStore> meta, snap;
  std::unique_ptr<IoPool> io;  // background uploads (operator persisting's archived contents)
  std::optional<storage::StorageLock> lock;
  std::vector<PSource> sources;
  std::vector<PSink> sinks;
  uint64_t run = 1;
  uint64_t seq = 0;
  uint64_t chunk_seq = 0;
  Time last_commit_time = 0;
  bool have_last_commit = false;
  bool writes = false;        // this run commits
  bool record_rows = false;   // chunks hold rows (not only offsets)
  bool dirty = false;         // something happened since the last commit
  bool source_rows = true;    // the mode records/replays source rows (not offsets only)
  bool compact_inputs = false;
  bool final_commit = false;
  std::vector<POwner> owners;
  std::unique_ptr<Merger> merger;
  std::vector<std::string> superseded;  // merged chunks to delete after the next commit

  Status before_start(Scheduler& sched);
  Status after_sinks_open(Scheduler& sched);
  std::optional<Manifest> resume;  // the commit being resumed, between the two recovery phases
  Status fence(Scheduler& sched, std::optional<Manifest>& manifest, Manifest& fenced,
               std::vector<storage::ObjectInfo>& objects);
  Status check_lease() const { return lock ? lock->check() : Status::ok(); }
  Status after_time(Scheduler& sched, Time t);
  Status at_end(Scheduler& sched, bool stopped);
  Status commit(Scheduler& sched, Time t);
  Status replay(Scheduler& sched, const Manifest& m);
  Status collect_garbage(const Manifest& m, const std::vector<storage::ObjectInfo>& objects);
  Status setup_owners(Scheduler& sched, const std::optional<Manifest>& m);
  Status restore_owners();
  void apply_merges(Scheduler& sched);
  void schedule_merges();
  Merger::Job merge_job(const std::string& owner, const std::vector<ChunkRef>& chunks, size_t first, size_t last,
                        bool input);
};

Runtime::Runtime(Config config) : impl_(std::make_unique<Impl>()) { impl_->cfg = std::move(config); }
Runtime::~Runtime() = default;
const Runtime::Stats& Runtime::stats() const { return impl_->stats; }

engine::RunHooks Runtime::hooks() {
  engine::RunHooks h;
  Impl* p = impl_.get();
  h.before_start = [p](Scheduler& s) { return p->before_start(s); };
  h.after_sinks_open = [p](Scheduler& s) { return p->after_sinks_open(s); };
  h.after_time = [p](Scheduler& s, Time t) { return p->after_time(s, t); };
  h.at_end = [p](Scheduler& s, bool stopped) { return p->at_end(s, stopped); };
  h.check = [p]() { return p->check_lease(); };
  return h;
}

Status Runtime::Impl::before_start(Scheduler& sched) {
  const PersistenceMode mode = cfg.persistence_mode;
  const SnapshotAccess access = cfg.snapshot_access;
  source_rows = class_of(mode) == StateClass::kRows;

  {
    auto m = cfg.metadata_storage.open();
    if (!m.is_ok()) return m.status().with_context("metadata storage " + cfg.metadata_storage.describe());
    meta = *m;
    auto s = cfg.snapshot_storage.open();
    if (!s.is_ok()) return s.status().with_context("snapshot storage " + cfg.snapshot_storage.describe());
    snap = *s;
  }
  // Object stores must refuse a second conditional create: the lock, the one-winner manifests
  // and never-shared chunk keys all rest on it.
  TM_RETURN_IF_ERROR(storage::check_conditional_writes(*meta));
  if (snap->describe() != meta->describe()) TM_RETURN_IF_ERROR(storage::check_conditional_writes(*snap));
  {
    if (cfg.lock_lease_ms < 1000)
      return Status::invalid_argument("lock_lease_ms = " + std::to_string(cfg.lock_lease_ms) +
                                      ": the lock lease must be at least 1000 ms");
    std::chrono::milliseconds lease(cfg.lock_lease_ms);
    std::chrono::milliseconds budget = std::max(meta->retry_budget(), snap->retry_budget());
    if (lease < 2 * budget)
      sched.log("persistence: lock lease " + std::to_string(lease.count()) + " ms is shorter than twice the "
                "storage's retry budget (" + std::to_string(budget.count()) + " ms): a commit that needs every "
                "retry can outlast the lease, and this process then stops rather than risk a second writer");
    storage::LockOptions lo;
    lo.lease_duration = lease;
    lo.log = [&sched](const std::string& m) { sched.log(m); };
    auto l = storage::acquire_storage_lock(*meta, "tidemark pid " + std::to_string(getpid()), lo);
    if (!l.is_ok()) return l.status();
    lock.emplace(std::move(l).value());
  }

  // Persistent ids: the user's name, or (Persisting modes) one derived from what the
  // connector reads or writes, so it does not depend on the order the graph was built in.
  std::set<std::string> used;
  auto make_id = [&](const engine::Node& n, const std::string& describe) -> std::string {
    if (!n.name().empty()) return n.name();
    if (mode == PersistenceMode::kSelectivePersisting || mode == PersistenceMode::kUdfCaching) return "";
    std::string base = "auto:" + describe, id = base;
    for (int i = 2; used.count(id); ++i) id = base + "#" + std::to_string(i);
    return id;
  };
  for (SourceNode* s : sched.sources()) {
    std::string id = make_id(*s, s->source().describe());
    if (id.empty()) continue;
    used.insert(id);
    PSource ps;
    ps.node = s;
    ps.id = id;
    ps.state.id = id;
    ps.state.schema = s->schema().to_string();
    sources.push_back(std::move(ps));
  }
  for (SinkNode* s : sched.sinks()) {
    // UDF caching does not resume unnamed sources, so outputs are not resumed either.
    if (mode == PersistenceMode::kUdfCaching) break;
    std::string id = make_id(*s, s->sink().describe());
    if (id.empty()) continue;
    used.insert(id);
    sinks.push_back({s, id});
  }

  TM_ASSIGN_OR_RETURN(std::optional<Manifest> manifest, read_latest_manifest(*meta));
  if (manifest) {
    StateClass stored = class_of(manifest->mode), wanted = class_of(mode);
    bool has_state = !manifest->sources.empty() || !manifest->operators.empty();
    if (has_state && stored != wanted)
      return Status::failed_precondition(
          "persistent storage " + cfg.metadata_storage.describe() + " was written in mode '" + manifest->mode +
          "' (it holds " + class_name(stored) + "), which mode '" + to_string(mode) + "' cannot resume from (it needs " +
          class_name(wanted) + "); use the original mode or a new storage location");
    for (const auto& st : manifest->sources) {
      auto it = std::find_if(sources.begin(), sources.end(), [&](const PSource& p) { return p.id == st.id; });
      if (it == sources.end())
        return Status::failed_precondition(
            "persistent storage " + cfg.metadata_storage.describe() + " holds state of input source '" + st.id +
            "', which this program does not have (renamed or removed?); restore it or use a new storage location");
      if (!st.schema.empty() && st.schema != it->state.schema)
        return Status::failed_precondition("input source '" + st.id + "' changed its schema: stored (" + st.schema +
                                           "), program (" + it->state.schema +
                                           "); use a new storage location to start over");
    }
    run = manifest->run;
    seq = manifest->seq;
    last_commit_time = manifest->committed_time;
    have_last_commit = true;
    sched.observe_time(manifest->committed_time);
  }
  writes = access == SnapshotAccess::kFull || access == SnapshotAccess::kRecord ||
           access == SnapshotAccess::kOffsetsOnly;
  // Fence before anything else: a writer first publishes its fencing commit, then collects
  // garbage, cuts outputs back, replays or loads.
  std::vector<storage::ObjectInfo> objects;
  Manifest fenced;
  if (writes) TM_RETURN_IF_ERROR(fence(sched, manifest, fenced, objects));
  TM_RETURN_IF_ERROR(setup_owners(sched, manifest));
  if (writes) TM_RETURN_IF_ERROR(collect_garbage(fenced, objects));

  // Outputs: cut back to the committed position (exactly-once), or start empty.
  for (auto& s : sinks) {
    // Replay modes re-emit everything into fresh outputs; the others continue theirs.
    const SinkState* st = manifest && !is_replay_mode(mode) ? manifest->find_sink(s.id) : nullptr;
    s.node->sink().set_persistent_identity(cfg.metadata_storage.describe() + "\n" + s.id);
    TM_RETURN_IF_ERROR(s.node->sink().truncate_to(st ? st->position : "0").with_context(s.node->label()));
  }

  record_rows = source_rows && (access == SnapshotAccess::kFull || access == SnapshotAccess::kRecord);
  if (mode == PersistenceMode::kOperatorPersisting)
    for (auto& ps : sources) {
      if (!io) io = std::make_unique<IoPool>(kIoPoolThreads);
      ps.archive = std::make_unique<Archive>(snap, ps.id, run, io.get());
      if (manifest)
        if (const SourceState* st = manifest->find_source(ps.id))
          for (const auto& c : st->contents) ps.archive->stored[c.hash] = c;
      ps.node->source().set_content_archive(ps.archive.get());
    }
  if (manifest && access != SnapshotAccess::kRecord) TM_RETURN_IF_ERROR(restore_owners());
  if (access == SnapshotAccess::kRecord)
    for (auto& o : owners) o.st.chunks.clear();  // recording from scratch
  resume = std::move(manifest);
  return {};
}

// Second phase of recovery, once outputs are open (replay modes emit while replaying).
Status Runtime::Impl::after_sinks_open(Scheduler& sched) {
  const PersistenceMode mode = cfg.persistence_mode;
  const SnapshotAccess access = cfg.snapshot_access;
  const std::optional<Manifest>& manifest = resume;
  if (manifest) {
    for (auto& ps : sources)
      if (const SourceState* st = manifest->find_source(ps.id)) {
        ps.state.chunks = st->chunks;
        ps.state.offset = st->offset;
        ps.state.has_offset = st->has_offset;
      }
    if (access != SnapshotAccess::kRecord) TM_RETURN_IF_ERROR(replay(sched, *manifest));
  }
  bool live = cfg.continue_after_replay && access != SnapshotAccess::kOfflineReplay;
  if (!live && manifest)
    for (SourceNode* s : sched.sources()) s->finished = true;
  if (writes && !record_rows)
    for (auto& ps : sources) ps.state.chunks.clear();  // offsets only: the manifest keeps the offset
  if (writes)
    for (auto& ps : sources) {
      ps.writer = std::make_unique<storage::ChunkWriter>();
      ps.node->record = &ps.recorded;
    }
  if (writes)
    for (auto& o : owners) o.state->track_state_changes();
  // Input compaction merges recorded times: only when no operator depends on arrival order.
  if (writes && record_rows && mode == PersistenceMode::kPersisting) {
    compact_inputs = true;
    for (size_t i = 0; i < sched.graph().size(); ++i)
      if (sched.graph().node(i).order_dependent()) {
        compact_inputs = false;
        sched.log("persistence: input snapshots are not compacted: " + sched.graph().node(i).label() +
                  " depends on the order rows arrived in (operator_persisting stores its state instead)");
        break;
      }
  }
  if (writes) merger = std::make_unique<Merger>();
  sched.log("persistence: storage " + cfg.metadata_storage.describe() + ", mode " + to_string(mode) + ", access " +
            to_string(access) + (manifest ? ", resuming after commit " + std::to_string(manifest->seq) +
                                                 " (time " + std::to_string(manifest->committed_time) + ", " +
                                                 std::to_string(stats.replayed_events) + " events replayed, " +
                                                 std::to_string(stats.restored_entries) + " state entries loaded)"
                                           : ", no earlier commit"));
  resume.reset();
  return {};
}

// The fencing commit: the next manifest number (above every epoch any object key carries),
// created conditionally with this writer's lock token and the newest manifest's contents. From
// here on a writer that started earlier fails at its own next conditional create, and every
// key this writer creates carries the new epoch.
Status Runtime::Impl::fence(Scheduler& sched, std::optional<Manifest>& manifest, Manifest& fenced,
                            std::vector<storage::ObjectInfo>& objects) {
  uint64_t top = manifest ? manifest->seq : 0;
  for (const char* prefix : {kStreamsPrefix, kOperatorsPrefix, kContentsPrefix}) {
    TM_ASSIGN_OR_RETURN(auto listed, snap->list(prefix));
    for (auto& o : listed) {
      top = std::max(top, epoch_of_key(o.key));
      objects.push_back(std::move(o));
    }
  }
  Manifest m = manifest ? *manifest : Manifest{};  // a fresh storage: an empty commit, no mode
  if (manifest && manifest->format_version < 3) {
    // Older storages do not list archived contents: every content object may be live until the
    // first commit lists the ones the sources still use.
    for (auto& src : m.sources) {
      std::string prefix = content_prefix(src.id);
      for (const auto& o : objects)
        if (o.key.starts_with(prefix) && o.key.size() == prefix.size() + 16)
          src.contents.push_back({std::stoull(o.key.substr(prefix.size()), nullptr, 16), o.key, o.size, 0, false});
    }
  }
  m.format_version = kManifestFormatVersion;
  m.seq = top + 1;
  m.run = m.seq;
  m.writer = lock->info().token;
  TM_ASSIGN_OR_RETURN(std::string data, encode_manifest(m));
  TM_RETURN_IF_ERROR(check_lease());
  Status st = meta->put_if_absent(manifest_key(m.seq), data);
  if (st.code() == StatusCode::kAlreadyExists)
    return Status::failed_precondition("persistent storage " + meta->describe() + ": commit " + std::to_string(m.seq) +
                                       " was written by another process while this one was taking the storage over; "
                                       "stopping");
  if (!st.is_ok()) return st.with_context("writing the fencing commit " + std::to_string(m.seq));
  TM_RETURN_IF_ERROR(check_lease());
  stats.bytes_written += data.size();
  run = m.run;
  seq = m.seq;
  sched.log("persistence: fenced the storage with commit " + std::to_string(m.seq) + " (writer epoch " +
            std::to_string(run) + ")");
  if (manifest) manifest = m;  // what is resumed is unchanged; only its number and writer are new
  fenced = std::move(m);
  return {};
}

// Deletes what no commit can reference: objects of an older writer's epoch that the newest
// manifest (this writer's fencing commit) does not list, and older manifests. Objects of this
// epoch or a newer one are never touched, whatever a listing says.
Status Runtime::Impl::collect_garbage(const Manifest& m, const std::vector<storage::ObjectInfo>& objects) {
  std::set<std::string> live;
  for (const auto& s : m.sources) {
    for (const auto& c : s.chunks) live.insert(c.key);
    for (const auto& c : s.contents) live.insert(c.key);
  }
  for (const auto& o : m.operators)
    for (const auto& c : o.chunks) live.insert(c.key);
  for (const auto& o : objects)
    if (!live.count(o.key) && epoch_of_key(o.key) < run) {
      TM_RETURN_IF_ERROR(check_lease());
      TM_RETURN_IF_ERROR(snap->remove(o.key));
      ++stats.objects_collected;
    }
  TM_ASSIGN_OR_RETURN(auto manifests, meta->list(kManifestPrefix));
  for (const auto& o : manifests)
    if (o.key < manifest_key(m.seq)) {
      TM_RETURN_IF_ERROR(check_lease());
      TM_RETURN_IF_ERROR(meta->remove(o.key));
      ++stats.objects_collected;
    }
  return {};
}

Status Runtime::Impl::replay(Scheduler& sched, const Manifest& m) {
  const PersistenceMode mode = cfg.persistence_mode;
  const bool rows = source_rows && cfg.snapshot_access != SnapshotAccess::kOffsetsOnly;
  // time -> per source index -> changes at that time
  std::map<Time, std::map<size_t, Batch>> by_time;
  for (size_t i = 0; i < sources.size(); ++i) {
    PSource& ps = sources[i];
    if (ps.state.has_offset) {
      Status st = ps.node->source().seek(ps.state.offset);
      if (!st.is_ok()) return st.with_context(ps.node->label() + ": seeking to the stored offset");
    }
    if (!rows) continue;
    Batch pending;
    for (const auto& c : ps.state.chunks) {
      TM_ASSIGN_OR_RETURN(std::string data, snap->get(c.key));
      TM_RETURN_IF_ERROR(check_chunk_object(snap->describe(), c, data));
      std::vector<InputEvent> events;
      TM_RETURN_IF_ERROR(read_input_chunk(snap->describe() + "/" + c.key, data, &events));
      for (auto& e : events) {
        if (e.type == kRecordInsert || e.type == kRecordDelete) {
          pending.push_back(std::move(e.update));
        } else if (e.type == kRecordAdvance) {
          if (e.time > m.committed_time) break;  // never beyond the commit
          auto& dst = by_time[e.time][i];
          dst.insert(dst.end(), std::make_move_iterator(pending.begin()), std::make_move_iterator(pending.end()));
          pending.clear();
        }
      }
    }
  }
  // Sources learn the rows they produced before (to retract them if their input changed).
  for (auto& [t, per_source] : by_time)
    for (auto& [i, batch] : per_source) {
      for (const auto& u : batch) sources[i].node->source().replayed(u);
      stats.replayed_events += batch.size();
    }
  if (by_time.empty()) return {};

  const bool suppress = !is_replay_mode(mode);
  auto feed = [&](const std::map<size_t, Batch>& per_source) {
    for (const auto& [i, batch] : per_source) {
      Batch& p = sources[i].node->pending;
      p.insert(p.end(), batch.begin(), batch.end());
    }
  };
  if (mode == PersistenceMode::kBatch) {
    for (const auto& [t, per_source] : by_time) feed(per_source);
    ++stats.replayed_times;
    return sched.step(sched.next_time(), false);
  }
  Time prev = 0;
  for (const auto& [t, per_source] : by_time) {
    if (mode == PersistenceMode::kRealtimeReplay && prev != 0 && t > prev)
      std::this_thread::sleep_for(std::chrono::milliseconds(t - prev));  // original pacing
    prev = t;
    feed(per_source);
    ++stats.replayed_times;
    // Persisting: state is rebuilt at the recorded times, outputs (already delivered) are not.
    TM_RETURN_IF_ERROR(sched.step(suppress ? t : sched.next_time(), suppress));
  }
  return {};
}

Status Runtime::Impl::after_time(Scheduler& sched, Time t) {
  if (!writes) return {};
  for (auto& ps : sources) {
    if (ps.recorded.empty()) continue;
    // Offsets only (offsets_only access, operator persisting, UDF caching): the manifest's
    // offset is all a restart needs; no stream chunk is written.
    if (!record_rows) {
      ps.recorded.clear();
      continue;
    }
    for (const auto& u : ps.recorded) {
      Status st = ps.writer->append(u.diff > 0 ? kRecordInsert : kRecordDelete, encode_update_payload(u));
      if (!st.is_ok()) return st.with_context("recording a row of " + ps.node->label() + " (source '" + ps.id + "')");
    }
    Status st = ps.writer->append(kRecordAdvance, encode_advance_payload(t, ps.node->source().offset()));
    if (!st.is_ok()) return st.with_context("recording the offset of " + ps.node->label() + " (source '" + ps.id + "')");
    ps.pending_max_time = t;
    ps.recorded.clear();
  }
  for (auto& o : owners) o.state->take_state_changes(o.changes);
  dirty = true;
  if (!have_last_commit || cfg.snapshot_interval_ms == 0 || t >= last_commit_time + cfg.snapshot_interval_ms)
    return commit(sched, t);
  return {};
}

Status Runtime::Impl::setup_owners(Scheduler& sched, const std::optional<Manifest>& m) {
  const PersistenceMode mode = cfg.persistence_mode;
  auto& g = sched.graph();
  // Stable operator ids: the user's name, else a hash of the kind, the signature, the inputs'
  // ids and the rank among identical siblings, so rebuilding the same program (even in another
  // order) gives the same ids, and an upstream change changes every id below it.
  if (mode == PersistenceMode::kOperatorPersisting) {
    std::vector<std::string> ids(g.size());
    std::map<std::string, int> seen;
    std::map<const engine::Node*, std::string> source_ids;
    for (const auto& ps : sources) source_ids[ps.node] = ps.id;
    for (size_t i = 0; i < g.size(); ++i) {
      engine::Node& n = g.node(i);
      if (auto* src = dynamic_cast<SourceNode*>(&n)) {
        auto it = source_ids.find(src);
        ids[i] = it != source_ids.end() ? it->second : "auto:" + src->source().describe();
        continue;
      }
      if (!n.name().empty()) {
        ids[i] = n.name();
      } else {
        std::string base = n.kind() + '\x1f' + n.signature();
        for (size_t in : n.inputs()) base += '\x1f' + ids[in];
        int rank = seen[base]++;
        ids[i] = "op:" + hex128(base + '\x1f' + std::to_string(rank));
      }
      if (!n.stateful() || dynamic_cast<SinkNode*>(&n)) continue;
      POwner o;
      o.state = &n;
      o.node = &n;
      o.st.id = ids[i];
      o.st.kind = n.kind();
      o.st.label = n.label();
      o.st.signature = n.signature();
      owners.push_back(std::move(o));
    }
  }
  if (!is_replay_mode(mode))
    for (const auto& e : g.extra_states()) {
      POwner o;
      o.state = e.state.get();
      o.st.id = e.id;
      o.st.kind = e.kind;
      o.st.label = e.kind + " '" + e.id + "'";
      o.st.signature = e.kind;
      owners.push_back(std::move(o));
    }
  if (!m) return {};
  const std::string where = "persistent storage " + cfg.metadata_storage.describe();
  for (const auto& stored : m->operators) {
    auto it = std::find_if(owners.begin(), owners.end(), [&](const POwner& o) { return o.st.id == stored.id; });
    if (it == owners.end()) {
      if (stored.kind == "udf_cache") continue;  // a cache the program no longer uses: dropped
      return Status::failed_precondition(
          where + " holds the state of operator " + stored.label + " (" + stored.signature +
          "), which this program does not have: the graph changed. Operator state cannot be mixed with a "
          "different graph; use the original program or a new storage location");
    }
    if (it->st.signature != stored.signature)
      return Status::failed_precondition(where + ": operator " + it->st.label + " changed: stored (" +
                                         stored.signature + "), program (" + it->st.signature +
                                         "); use the original program or a new storage location");
    it->st.chunks = stored.chunks;
  }
  if (class_of(m->mode) == StateClass::kOperators)
    for (const auto& o : owners)
      if (o.node && !m->find_operator(o.st.id))
        return Status::failed_precondition(where + ": operator " + o.st.label + " (" + o.st.signature +
                                           ") has no stored state: the graph changed since commit " +
                                           std::to_string(m->seq) +
                                           "; use the original program or a new storage location");
  return {};
}

Status Runtime::Impl::restore_owners() {
  // Fetch every chunk in parallel, then apply each owner's chunks oldest first.
  struct Fetch {
    size_t owner;
    std::string key;
    Result<std::string> data = Status::internal("not fetched");
  };
  std::vector<Fetch> fetches;
  std::vector<const ChunkRef*> refs;
  for (size_t i = 0; i < owners.size(); ++i)
    for (const auto& c : owners[i].st.chunks) {
      fetches.push_back({i, c.key});
      refs.push_back(&c);
    }
  parallel_for(fetches.size(), kIoParallelism, [&](size_t i) { fetches[i].data = snap->get(fetches[i].key); });
  size_t f = 0;
  for (size_t i = 0; i < owners.size(); ++i) {
    POwner& o = owners[i];
    if (o.st.chunks.empty()) continue;
    // Every chunk checked, then the chunks merged by key straight into the owner (no map of
    // the whole state).
    std::vector<std::pair<std::string, std::string_view>> chunks;
    size_t first = f;
    for (; f < fetches.size() && fetches[f].owner == i; ++f) {
      Result<std::string>& data = fetches[f].data;
      if (!data.is_ok()) return data.status().with_context("loading the state of " + o.st.label);
      Status checked = check_chunk_object(snap->describe(), *refs[f], *data);
      if (!checked.is_ok()) return checked.with_context("loading the state of " + o.st.label);
      chunks.emplace_back(snap->describe() + "/" + fetches[f].key, *data);
    }
    // A hint bounded by the chunks' sizes, so a damaged manifest's record count cannot make an
    // owner reserve far more than is stored (an underestimate only means growing as before).
    uint64_t entries = 0, stored = 0, bytes = 0;
    for (const auto& c : o.st.chunks) {
      stored += c.records;
      bytes += c.bytes;
    }
    o.state->expect_state_entries(std::min(stored, bytes / 2));
    bool owner_failed = false;
    // Large states decode on a second thread while the owner restores (kPipelineRestoreBytes).
    auto merge = bytes >= kPipelineRestoreBytes ? merge_state_records_pipelined : merge_state_records;
    Status merged = merge(chunks, false, [&](std::string_view k, std::optional<std::string_view> v) {
      ++entries;
      Status st = o.state->restore_state_entry(k, *v);
      owner_failed = !st.is_ok();
      return st;
    });
    if (!merged.is_ok())
      return merged.with_context(owner_failed ? "restoring " + o.st.label : "loading the state of " + o.st.label);
    for (size_t j = first; j < f; ++j) fetches[j].data = Status::internal("consumed");  // free the chunks' bytes
    Status st = o.state->finish_state_restore();
    if (!st.is_ok()) return st.with_context("restoring " + o.st.label);
    stats.restored_entries += entries;
  }
  return {};
}

void Runtime::Impl::apply_merges(Scheduler& sched) {
  for (auto& d : merger->poll()) {
    if (!d.result.is_ok()) {
      sched.log("persistence: a background compaction failed (will retry): " + d.result.status().to_string());
      continue;
    }
    std::vector<ChunkRef>* chunks = nullptr;
    for (auto& o : owners)
      if (o.st.id == d.owner) chunks = &o.st.chunks;
    for (auto& ps : sources)
      if (ps.id == d.owner) chunks = &ps.state.chunks;
    if (!chunks) continue;
    auto it = std::search(chunks->begin(), chunks->end(), d.replaced.begin(), d.replaced.end(),
                          [](const ChunkRef& c, const std::string& k) { return c.key == k; });
    if (it == chunks->end()) continue;  // cannot happen: one merge per owner at a time
    it = chunks->erase(it, it + static_cast<std::ptrdiff_t>(d.replaced.size()));
    chunks->insert(it, *d.result);
    superseded.insert(superseded.end(), d.replaced.begin(), d.replaced.end());
    ++stats.merges;
  }
}

Merger::Job Runtime::Impl::merge_job(const std::string& owner, const std::vector<ChunkRef>& chunks, size_t first,
                                     size_t last, bool input) {
  std::vector<ChunkRef> run_chunks(chunks.begin() + static_cast<std::ptrdiff_t>(first),
                                   chunks.begin() + static_cast<std::ptrdiff_t>(last));
  bool from_oldest = first == 0;
  uint32_t level = 0;
  for (const auto& c : run_chunks) level = std::max(level, c.level + 1);
  std::string key = input ? chunk_key(owner, run, ++chunk_seq) : state_chunk_key(owner, run, ++chunk_seq);
  Merger::Job job;
  job.owner = owner;
  for (const auto& c : run_chunks) job.replaced.push_back(c.key);
  std::shared_ptr<storage::ObjectStore> store = snap;
  job.run = [store, run_chunks, from_oldest, level, key, input]() -> Result<ChunkRef> {
    std::vector<std::pair<std::string, std::string>> datas;
    for (const auto& c : run_chunks) {
      TM_ASSIGN_OR_RETURN(std::string d, store->get(c.key));
      TM_RETURN_IF_ERROR(check_chunk_object(store->describe(), c, d));
      datas.emplace_back(store->describe() + "/" + c.key, std::move(d));
    }
    uint64_t records = 0, max_time = 0;
    std::string merged;
    if (input) {
      TM_ASSIGN_OR_RETURN(merged, merge_input_chunks(datas, &records, &max_time));
    } else {
      TM_ASSIGN_OR_RETURN(merged, merge_state_chunks(datas, from_oldest, &records));
      max_time = run_chunks.back().max_time;
    }
    TM_RETURN_IF_ERROR(store->put_if_absent(key, merged));
    return make_chunk_ref(key, merged, records, max_time, level);
  };
  return job;
}

void Runtime::Impl::schedule_merges() {
  auto plan = [&](const std::string& owner, const std::vector<ChunkRef>& chunks, bool input) {
    if (merger->busy(owner)) return;
    auto range = pick_merge(chunks, kMergeFanIn);
    if (range) merger->submit(merge_job(owner, chunks, range->first, range->second, input));
  };
  for (const auto& o : owners) plan(o.st.id, o.st.chunks, false);
  if (compact_inputs)
    for (const auto& ps : sources) plan(ps.id, ps.state.chunks, true);
}

Status Runtime::Impl::commit(Scheduler& sched, Time t) {
  apply_merges(sched);
  // 1. New immutable objects: each source's events since the last commit, each state's
  //    consolidated changes, archived contents. Uploaded in parallel (object stores have high
  //    per-request latency).
  struct Pending {
    std::string key;
    std::string data;
    uint64_t records = 0;
    PSource* source = nullptr;
    POwner* owner = nullptr;
  };
  std::vector<Pending> pending;
  for (auto& ps : sources) {
    if (ps.writer->record_count() == 0) continue;
    uint64_t n = ps.writer->record_count();
    Pending p;
    p.key = chunk_key(ps.id, run, ++chunk_seq);
    p.records = n;
    p.data = ps.writer->finish();
    p.source = &ps;
    pending.push_back(std::move(p));
  }
  for (auto& o : owners) {
    if (o.changes.empty()) continue;
    Pending p;
    p.key = state_chunk_key(o.st.id, run, ++chunk_seq);
    Result<std::string> encoded = encode_state_chunk(std::move(o.changes), &p.records);
    o.changes.clear();
    if (!encoded.is_ok()) return encoded.status().with_context("committing the state of " + o.st.label);
    p.data = std::move(encoded).value();
    p.owner = &o;
    pending.push_back(std::move(p));
  }
  // Archived contents were uploading since they were stashed: wait for them.
  for (auto& ps : sources) {
    if (!ps.archive) continue;
    for (auto& [hash, upload] : ps.archive->uploads) {
      const Result<ChunkRef>& ref = upload.get();
      if (!ref.is_ok()) return ref.status().with_context("committing the state of " + ps.node->label());
      ps.archive->stored[hash] = {hash, ref->key, ref->bytes, ref->crc32c};
      ps.archive->pending.erase(hash);
      stats.bytes_written += ref->bytes;
      ++stats.contents_written;
    }
    ps.archive->uploads.clear();
  }
  std::vector<Status> results(pending.size());
  // Conditional creates: keys carry this writer's epoch, so an existing object with other
  // bytes means a second writer, never something to overwrite.
  parallel_for(pending.size(), kIoParallelism,
               [&](size_t i) { results[i] = snap->put_if_absent(pending[i].key, pending[i].data); });
  for (size_t i = 0; i < pending.size(); ++i) {
    Pending& p = pending[i];
    std::string what = p.owner ? p.owner->st.label : p.source->node->label();
    if (!results[i].is_ok()) return results[i].with_context("committing the state of " + what);
    stats.bytes_written += p.data.size();
    if (p.owner) {
      p.owner->st.chunks.push_back(make_chunk_ref(p.key, p.data, p.records, t));
      ++stats.state_chunks_written;
    } else {
      p.source->state.chunks.push_back(make_chunk_ref(p.key, p.data, p.records, p.source->pending_max_time));
      ++stats.chunks_written;
    }
  }
  Manifest m;
  m.seq = seq + 1;
  m.run = run;
  m.writer = lock->info().token;
  m.committed_time = t;
  m.mode = to_string(cfg.persistence_mode);
  for (auto& ps : sources) {
    ps.state.offset = ps.node->source().offset();
    ps.state.has_offset = true;
    ps.state.contents.clear();
    if (ps.archive) {
      // The contents the offset refers to; others become garbage for the next start.
      std::vector<uint64_t> live;
      ps.node->source().live_contents(live);
      for (uint64_t h : live)
        if (auto it = ps.archive->stored.find(h); it != ps.archive->stored.end()) ps.state.contents.push_back(it->second);
    }
    m.sources.push_back(ps.state);
  }
  for (auto& o : owners) m.operators.push_back(o.st);
  for (auto& s : sinks) {
    Status st = s.node->sink().flush();
    if (!st.is_ok()) return st.with_context(s.node->label());
    m.sinks.push_back({s.id, s.node->sink().position()});
  }
  TM_ASSIGN_OR_RETURN(std::string data, encode_manifest(m));
  // The commit point. Refused when the lease may have lapsed (another process may be taking
  // the storage over); afterwards the lease must still hold, or this process cannot know that
  // no successor had fenced it meanwhile, and it stops without deleting anything.
  TM_RETURN_IF_ERROR(check_lease().with_context("not committing " + std::to_string(m.seq)));
  Status st = meta->put_if_absent(manifest_key(m.seq), data);
  if (st.code() == StatusCode::kAlreadyExists)
    return Status::failed_precondition("persistent storage " + meta->describe() + ": commit " +
                                       std::to_string(m.seq) + " was written by another process; stopping");
  if (!st.is_ok()) return st.with_context("writing manifest " + std::to_string(m.seq));
  TM_RETURN_IF_ERROR(check_lease().with_context("after commit " + std::to_string(m.seq)));
  stats.bytes_written += data.size();
  {
    Status r = meta->remove(manifest_key(seq));
    if (!r.is_ok()) sched.log("persistence: could not delete an old manifest: " + r.to_string());
  }
  // Chunks merged away are referenced by no manifest any more.
  for (const auto& k : superseded) {
    if (!check_lease().is_ok()) break;  // collected at the next start instead
    Status r = snap->remove(k);
    if (!r.is_ok()) sched.log("persistence: could not delete a merged chunk (collected at the next start): " + r.to_string());
  }
  superseded.clear();
  seq = m.seq;
  last_commit_time = t;
  have_last_commit = true;
  dirty = false;
  ++stats.commits;
  // Outputs that publish only committed data (Kafka transactions) do so now that it is.
  for (auto& s : sinks) TM_RETURN_IF_ERROR(s.node->sink().committed().with_context(s.node->label()));
  if (!final_commit) schedule_merges();
  return {};
}

Status Runtime::Impl::at_end(Scheduler& sched, bool stopped) {
  Status st;
  final_commit = true;  // no new merge whose result no manifest would reference
  // A source may have advanced without emitting (a file re-read with unchanged content now
  // known not to be "racy"): commit its offset, or every later start re-reads the file.
  if (writes && have_last_commit)
    for (auto& ps : sources)
      if (ps.state.has_offset && ps.node->source().offset() != ps.state.offset) dirty = true;
  const Time t_end = std::max(sched.last_time(), last_commit_time);
  if (writes && dirty) st = commit(sched, t_end);
  if (writes && merger && st.is_ok()) {
    // A clean stop finishes compacting operator states (off the commit path: the run is
    // over), so the next start loads one chunk per operator; merges that finished since the
    // last commit are published too.
    merger->drain();
    apply_merges(sched);
    bool changed = !superseded.empty();
    for (auto& o : owners) {
      if (o.st.chunks.size() < 2) continue;
      Merger::Job job = merge_job(o.st.id, o.st.chunks, 0, o.st.chunks.size(), false);
      Result<ChunkRef> r = job.run();
      if (!r.is_ok()) {
        sched.log("persistence: final compaction of " + o.st.label + " failed: " + r.status().to_string());
        continue;
      }
      o.st.chunks.assign(1, *r);
      superseded.insert(superseded.end(), job.replaced.begin(), job.replaced.end());
      ++stats.merges;
      changed = true;
    }
    if (changed) st = commit(sched, t_end);  // manifest only: publishes the merged chunks
  }
  merger.reset();  // waits for a running merge; its output, not yet referenced, is collected later
  if (lock) {
    Status r = lock->release();
    if (st.is_ok() && !r.is_ok()) st = r;
    lock.reset();
  }
  return st;
}

}  // namespace tidemark::persistence
