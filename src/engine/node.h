// Engine internals: updates, batches, the operator (Node) interface, sources and sinks.
//
// Execution model. Logical times are totally ordered (wall-clock milliseconds, strictly
// increasing). At each time the scheduler polls the sources, then calls process() on every
// node in topological order, handing it the consolidated changes of each input at that time;
// a node whose inputs did not change is skipped. Every table therefore sees exactly one
// consistent batch per time. Nodes keep only the state they need. Pipelined nodes
// (accepts_partial_input) may instead get a time's input in consecutive parts, then end_time().
// Consolidation happens only where a consumer needs it (needs_consolidated_input).
//
// Persistence hooks (used by src/persistence):
//  * Source::offset() / seek(): a source's position after everything it returned, and resuming
//    after such a position;
//  * Node as a PersistentState: a stateful operator's state is a map of entries that it
//    reports changes of and is restored from (encodings: src/engine/README.md);
//  * Sink::flush() makes a sink's output durable, position() / truncate_to() cut an output
//    back to a committed point.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tidemark/schema.h"
#include "tidemark/status.h"
#include "tidemark/table.h"
#include "tidemark/value.h"

namespace tidemark::internal {
class CompiledExpr;
}

namespace tidemark::engine {

using Time = uint64_t;

struct Update {
  Key key;
  Row row;
  int64_t diff = 0;
};
using Batch = std::vector<Update>;
static_assert(sizeof(Update) == 104, "an update is its key, a row of 3 inline values and its diff");

// Sums the diffs of equal (key, row) pairs, drops zeros, and sorts by (key, diff, row) so
// retractions of a key come before its insertions.
void consolidate(Batch& batch);

// A runtime failure inside an operator (a user function threw, a bad cast, a key collision).
// The scheduler stops the run and reports it with the operator's label.
class RuntimeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A failure that already has a Status (a sink's IoError, a full disk): the scheduler reports
// it with its own code, prefixed with the operator's label.
class StatusError : public std::runtime_error {
 public:
  explicit StatusError(Status s) : std::runtime_error(s.to_string()), status_(std::move(s)) {}
  const Status& status() const { return status_; }

 private:
  Status status_;
};

// Runs `call` (a call into `node`: process, process_part, end_time, ...) and turns what it
// throws into a Status naming the node: a StatusError keeps its code; a value of an unexpected
// type (bad_variant_access) and any other exception become InvalidArgument.
template <class Node_, class Call>
Status call_operator(const Node_& node, Call&& call) {
  try {
    call();
  } catch (const StatusError& e) {
    return e.status().with_context(node.label());
  } catch (const std::bad_variant_access& e) {
    return Status::invalid_argument(node.label() + ": a value of an unexpected type reached the operator (" +
                                    e.what() + ")");
  } catch (const std::exception& e) {
    return Status::invalid_argument(node.label() + ": " + e.what());
  }
  return {};
}

// Incremental persistent state (operator persisting, UDF caches; docs/persistence.md).
// A state is a map of entries: opaque key bytes -> value bytes. Changes are puts and erases,
// applied in order (a later change of the same key wins). The persistence layer stores the
// changes of each commit as one consolidated chunk and merges chunks in the background; on
// restart it hands every live entry back. Entry keys and values are the owner's own encoding
// and must stay readable by later versions of the owner (or carry their own version byte).
struct StateChange {
  std::string key;
  std::string value;
  bool erase = false;
};
using StateChanges = std::vector<StateChange>;

class PersistentState {
 public:
  virtual ~PersistentState() = default;
  // Called once before the first process() when the state is persisted incrementally; until
  // then owners need not track changes (no cost without persistence).
  virtual void track_state_changes() = 0;
  // Appends the changes since the previous call (or since tracking began). Called after a
  // completed time, from the run loop's thread.
  virtual void take_state_changes(StateChanges& out) = 0;
  // On restart, before any process(): every live entry once, in any order, then finish.
  // Errors (Corruption naming the owner) stop the run before anything is emitted.
  virtual Status restore_state_entry(std::string_view key, std::string_view value) = 0;
  // Before the first restore_state_entry(): at most this many entries follow (the stored
  // records). A hint for reserving memory once; owners may ignore it.
  virtual void expect_state_entries(uint64_t n) {}
  virtual Status finish_state_restore() = 0;
};

// Persistence at several workers (RunControl::instances: one operator's instances, by worker).
// Appends the changes of every instance to `out`. An entry's row may move from one worker to
// another within a time (a join row whose join value changed, a sorted row whose instance
// changed): its old instance erases the entry and its new one puts it. At the end of a time a
// row lives in at most one instance, so a put wins over the other instances' erases: each
// instance's changes are reduced to the last per key, then every erase goes before every put
// (a later change of a key wins).
void take_instance_changes(const std::vector<PersistentState*>& instances, StateChanges& out);
class Node;
// Restores a stored entry of `node` into the instance its routing key picks
// (Node::state_entry_route, worker_of over instances.size()), or into every instance for a
// lookaside entry. `instances` may come from any worker count but the one that stored it.
Status restore_instance_entry(const Node& node, const std::vector<PersistentState*>& instances, std::string_view key,
                              std::string_view value);

// Operator persisting needs the content a file source read in an earlier run to retract that
// file's rows when it changes, without replaying rows. A source stashes each content it read
// under its hash; the persistence layer uploads stashed contents before the commit that
// covers them and fetches them on demand in later runs. Content-addressed: equal content is
// stored once.
class ContentArchive {
 public:
  virtual ~ContentArchive() = default;
  virtual void stash(uint64_t hash, std::string content) = 0;
  virtual Result<std::string> fetch(uint64_t hash) = 0;
};

// Workers (RunOptions::workers, src/engine/workers.cc): how the rows of an operator's inputs
// are spread over the worker threads. Every worker runs its own instance of the operator
// (Node::clone()) over the rows routed to it; an update goes to the worker picked by the top
// bits of a 128-bit routing key.
struct Routing {
  enum class By : uint8_t {
    kNone,     // stateless: runs on the worker where its input is
    kPinned,   // every row to worker 0 (the only instance)
    kRowKey,   // the update's row key
    kColumns,  // key_from_values of the cells `columns[port]` (groupby: its group key)
    kExpr,     // key_from_values({expr}) (instance of sort, deduplicate, session windows; no
               // expr: one instance, worker 0)
    kCustom,   // Node::route_key()
  };
  By by = By::kNone;
  std::vector<size_t> columns[2];
  const internal::CompiledExpr* expr = nullptr;
  // Different workers never emit the same output key (groupby: the output key is the routing
  // key), so consolidated outputs of several workers concatenate to a consolidated batch.
  bool partitioned_output = false;
};

class Node : public PersistentState {
 public:
  Node(std::string kind, std::vector<size_t> inputs, Schema schema)
      : kind_(std::move(kind)), inputs_(std::move(inputs)), schema_(std::move(schema)) {}
  virtual ~Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Processes one time: inputs[i] holds the changes of input i (maybe empty), consolidated
  // when needs_consolidated_input(). Appends output changes to `out` (the scheduler
  // consolidates it only for consumers that need it). May throw RuntimeError.
  virtual void process(Time t, std::span<const Batch* const> inputs, Batch& out) = 0;
  // As process(), when this node is the last reader of every input: it may move rows out of
  // them (the scheduler frees them afterwards). Default: process().
  virtual void process_consuming(Time t, std::span<Batch* const> inputs, Batch& out) {
    process(t, std::span<const Batch* const>(const_cast<const Batch* const*>(inputs.data()), inputs.size()), out);
  }
  // Whether the inputs must be consolidated (sum of equal (key, row) pairs, a key's retraction
  // before its insertion). Linear stateless operators (select, filter and flatten without
  // memo) and order-independent aggregations do not need it.
  virtual bool needs_consolidated_input() const { return true; }
  // Whether every output batch is already consolidated in the sense consumers rely on: no
  // (key, row) twice, no zero diff, and a key's changes adjacent with its retraction first
  // (not necessarily sorted by key). The scheduler then never consolidates it.
  virtual bool output_consolidated() const { return false; }
  // Pipelining within a time. When true, the scheduler may split a time's input into parts
  // (slices of a source's rows) and call process_part() once per part, in order, then
  // end_time() once; the concatenated outputs must equal what process() gives for the whole
  // input. Only for single-input nodes fed by sources or other such nodes. Default: stateless
  // nodes that need no consolidated input (select, filter, flatten without memo) are linear,
  // so a part's output is process() of that part and end_time() emits nothing.
  virtual bool accepts_partial_input() const { return !stateful() && !needs_consolidated_input(); }
  // Whether end_time() emits (groupby does: its output exists only once the time's input is
  // complete); such a node's consumers run after the parts, on its end_time() output.
  virtual bool emits_at_end_of_time() const { return false; }
  // The part is this node's to take (as in process_consuming) when it is the part's only reader;
  // a node read by several pipelined nodes gets process() instead, unless it emits at the end
  // of the time: such a node gets process_part() always and must leave the part intact.
  virtual void process_part(Time t, std::span<Batch* const> inputs, Batch& out) { process_consuming(t, inputs, out); }
  virtual void end_time(Time t, Batch& out) {}

  // Workers: pre-aggregation before the exchange (a combiner). A node that combines() takes a
  // time's rows of any key on the worker where they are (combine_part, any number of calls),
  // encodes the time's partial aggregates for the workers owning their keys (take_partials:
  // appends to out[worker_of(routing key, workers)], in the node's own byte format), and the
  // instance owning a key merges the partials sent to it (merge_partials, one call per
  // sender) before end_time(). Only the partials cross the exchange, as bytes: one per group
  // and worker instead of every row. The result equals process_part() of the rows on their
  // owner. Only for pipelined single-input nodes. merge_partials may throw RuntimeError
  // (malformed bytes).
  virtual bool combines() const { return false; }
  // `self`: this instance's worker; rows it owns (worker_of their routing key) may go straight
  // into its own state.
  virtual void combine_part(Time t, const Batch& rows, size_t self, size_t workers) {}
  virtual void take_partials(size_t workers, std::vector<std::string>& out) {}
  virtual void merge_partials(Time t, std::string_view partials) {}

  // Persistence: a stateful node keeps everything process() depends on in its PersistentState
  // entries (it overrides take_state_changes, restore_state_entry and finish_state_restore).
  virtual bool stateful() const { return false; }
  // The output depends on the order in which rows arrived (deduplicate, earliest/latest), not
  // only on the input collection: replaying input with merged times would change it.
  virtual bool order_dependent() const { return false; }
  // What identifies this operator's configuration in persisted state (kind, parameters,
  // schema). A stored state whose signature differs is rejected as a changed graph.
  virtual std::string signature() const {
    return kind_ + (params_.empty() ? "" : "(" + params_ + ")") + " -> " + schema_.to_string();
  }
  // The operator's parameters as text (expressions via internal::describe), set by the Table
  // method that built it; part of signature().
  const std::string& params() const { return params_; }
  void set_params(std::string p) { params_ = std::move(p); }

  // Workers. A fresh instance of this operator with the same configuration and empty state
  // (expressions are shared: CompiledExpr::eval is const and thread-safe; user functions
  // follow the contract in include/tidemark/expr.h). nullptr: cannot be cloned, the operator
  // then runs on worker 0 only and its inputs are gathered there. Called before the run.
  virtual std::unique_ptr<Node> clone() const { return nullptr; }
  // How inputs are routed to the instances (see Routing). Default: stateless nodes run where
  // their input is; stateful ones that do not say otherwise run on worker 0.
  virtual Routing routing() const {
    Routing r;
    r.by = stateful() ? Routing::By::kPinned : Routing::By::kNone;
    return r;
  }
  // Routing::By::kCustom: the routing key of `u` arriving on input `port`. Called from any
  // worker thread concurrently: must not touch mutable state.
  virtual Key route_key(size_t port, const Update& u) const { return u.key; }
  // Operator persisting at several workers: the routing key of a stored state entry (of
  // take_state_changes()), so that a restart with any worker count gives the entry to the
  // instance its rows are routed to (worker_of(key, workers)). std::nullopt: every instance
  // gets the entry (a lookaside entry, such as a memo, that only its owner ever reads). An
  // error: the entry cannot be placed (a node that cannot re-shard its state). Only called
  // for nodes with instances on several workers. Default: by routing(): kRowKey entries that
  // start with a port byte and the 16-byte row key (engine/input_state.h) or are that key.
  virtual Result<std::optional<Key>> state_entry_route(std::string_view key, std::string_view value) const;

  // PersistentState. The defaults are those of a node without state: no changes, and any
  // entry to restore is Corruption. Stateful nodes override them with their own entries.
  void track_state_changes() override { tracking_ = true; }
  void take_state_changes(StateChanges& out) override {}
  Status restore_state_entry(std::string_view key, std::string_view value) override;
  Status finish_state_restore() override { return {}; }
  bool tracking_state() const { return tracking_; }

  const std::string& kind() const { return kind_; }
  const std::vector<size_t>& inputs() const { return inputs_; }
  const Schema& schema() const { return schema_; }
  size_t index() const { return index_; }
  void set_index(size_t i) { index_ = i; }
  // Persistent name given by the user ("" if none).
  const std::string& name() const { return name_; }
  void set_name(std::string n) { name_ = std::move(n); }
  // "groupby#4" or "groupby 'counts'": used in every message about this node.
  std::string label() const;

 private:
  std::string kind_;
  std::vector<size_t> inputs_;
  Schema schema_;
  size_t index_ = 0;
  std::string name_;
  bool tracking_ = false;
  std::string params_;
};

// Where input comes from. Owned by a SourceNode; called only from the run loop's thread, with
// several workers from the thread of the worker owning it (a shard, or worker 0)
// (implementations that receive data from other threads synchronize internally).
class Source {
 public:
  virtual ~Source() = default;
  virtual std::string describe() const = 0;
  // Streaming sources never finish by themselves (run until stopped).
  virtual bool streaming() const = 0;
  virtual uint64_t autocommit_ms() const { return 1000; }
  // Called once before the first poll (and after seek, if any).
  virtual Status open() = 0;
  // Appends the changes that became available since the last poll. Sets *finished once the
  // source will produce nothing more. Must not block for long.
  virtual Status poll(Batch& out, bool* finished) = 0;
  // Position after everything returned by poll() so far (opaque, source-defined bytes).
  virtual std::string offset() const = 0;
  // Before open(): resume after `offset` (what offset() returned in an earlier run).
  virtual Status seek(std::string_view offset) = 0;
  // Persistence replays the rows this source produced in earlier runs; a source that must
  // retract old rows later (modified files) rebuilds its index from them.
  virtual void replayed(const Update& update) {}
  // Operator persisting: rows are not replayed; a source that must retract earlier rows keeps
  // the content it reads in `archive` and fetches it back when needed. Called before seek().
  virtual void set_content_archive(ContentArchive* archive) {}
  // Hashes of archived contents the source may still fetch (after seek and during the run);
  // the persistence layer deletes archived contents no committed offset refers to.
  virtual void live_contents(std::vector<uint64_t>& out) const {}
  // Blocks up to timeout_ms or until new data may be available (push sources). Default: sleep.
  virtual void wait_for_data(uint64_t timeout_ms);
  // Workers: a fresh source (not opened) reading shard `index` of `count` of this source's
  // input, the shards together reading exactly what this source reads (the file source
  // splits its files by hash of the path). nullptr: the source cannot split; it then runs on
  // worker 0 only and its rows are exchanged where needed. Called before open().
  virtual std::unique_ptr<Source> shard(size_t index, size_t count) const { return nullptr; }
  // Persistence at several workers. The one offset of this source's shards together, from
  // each shard's offset() (called on the source the shards came from). seek() of any shard
  // (of any count) given that offset takes only the shard's own part of it, so a restart may
  // use another worker count. Default: a source that does not split has one part.
  virtual Result<std::string> merge_shard_offsets(const std::vector<std::string>& parts) const {
    if (parts.size() == 1) return parts[0];
    return Status::not_supported(describe() + ": cannot merge the offsets of " + std::to_string(parts.size()) +
                                 " shards");
  }
};

// Called from the run loop's thread (with several workers: worker 0, the thread that called
// run()).
class Sink {
 public:
  virtual ~Sink() = default;
  virtual std::string describe() const = 0;
  virtual Status open() = 0;
  // Changes of one time (consolidated, non-empty).
  virtual Status write(Time t, const Batch& changes, const Schema& schema) = 0;
  // Called after every time that had changes anywhere in the graph.
  virtual Status time_end(Time t) { return {}; }
  // Makes everything written so far durable (fsync for files).
  virtual Status flush() = 0;
  // Called once at the end of a run (after the last flush).
  virtual Status close() { return {}; }
  // Exactly-once outputs: the current position (e.g. file length) and cutting the output back
  // to a position returned earlier, before open() of a resumed run.
  virtual std::string position() const { return {}; }
  virtual Status truncate_to(std::string_view position) { return {}; }
  // Persistence, before truncate_to(): a stable identity of this output within its persistent
  // storage ("<storage>\n<sink id>"), e.g. to derive a Kafka transactional id from.
  virtual void set_persistent_identity(std::string_view identity) {}
  // Persistence: called after a commit's manifest is durable (the position() it recorded is
  // committed). Outputs that publish only committed data (Kafka transactions) do so here. An
  // error stops the run.
  virtual Status committed() { return {}; }
};

class SourceNode final : public Node {
 public:
  SourceNode(std::unique_ptr<Source> source, Schema schema)
      : Node("source", {}, std::move(schema)), source_(std::move(source)) {}
  void process(Time, std::span<const Batch* const>, Batch& out) override {
    if (record) record->insert(record->end(), pending.begin(), pending.end());
    out.insert(out.end(), std::make_move_iterator(pending.begin()), std::make_move_iterator(pending.end()));
    pending.clear();
  }
  // As process() for the rows [begin, end) of `rows` (the scheduler's slices of a time).
  void process_slice(Batch& rows, size_t begin, size_t end, Batch& out) {
    auto b = rows.begin() + static_cast<std::ptrdiff_t>(begin), e = rows.begin() + static_cast<std::ptrdiff_t>(end);
    if (record) record->insert(record->end(), b, e);
    if (begin == 0 && end == rows.size() && out.empty()) out.swap(rows);  // the whole batch: no move per row
    else out.insert(out.end(), std::make_move_iterator(b), std::make_move_iterator(e));
  }
  Source& source() { return *source_; }
  Batch pending;  // filled by the scheduler before process()
  bool finished = false;
  // Persistence: when set, every change this source emits is also appended here.
  Batch* record = nullptr;

 private:
  std::unique_ptr<Source> source_;
};

class SinkNode final : public Node {
 public:
  SinkNode(size_t input, const Schema& input_schema, std::unique_ptr<Sink> sink)
      : Node("sink", {input}, input_schema), sink_(std::move(sink)) {}
  void process(Time t, std::span<const Batch* const> inputs, Batch& out) override;
  Sink& sink() { return *sink_; }

 private:
  std::unique_ptr<Sink> sink_;
};

}  // namespace tidemark::engine

namespace tidemark::engine {
// Sets the parameters text of the node behind `t` (see Node::signature); returns `t`.
Table with_params(Table t, std::string params);
}  // namespace tidemark::engine

namespace tidemark::internal {

class GraphImpl {
 public:
  // Takes ownership; returns the node's index. Inputs must already be in the graph.
  size_t add(std::unique_ptr<engine::Node> node);
  engine::Node& node(size_t i) { return *nodes_[i]; }
  const engine::Node& node(size_t i) const { return *nodes_[i]; }
  size_t size() const { return nodes_.size(); }
  // Registers a persistent name; throws GraphError when it is already used.
  void register_name(const std::string& name, const std::string& what);
  bool ran = false;

  // Persistent states that are not nodes (UDF caches). `id` is unique in the graph and stable
  // across runs of the same program; `kind` is reported by tools ("udf_cache").
  struct ExtraState {
    std::string id;
    std::string kind;
    std::shared_ptr<engine::PersistentState> state;
  };
  void register_state(std::string id, std::string kind, std::shared_ptr<engine::PersistentState> state);
  const std::vector<ExtraState>& extra_states() const { return extra_states_; }

 private:
  std::vector<std::unique_ptr<engine::Node>> nodes_;
  std::set<std::string> names_;
  std::vector<ExtraState> extra_states_;
};

}  // namespace tidemark::internal
