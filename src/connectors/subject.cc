// io::Subject / read_subject (a push source fed by the program) and io::subscribe (a sink
// calling back into the program).
#include <condition_variable>
#include <mutex>
#include <optional>

#include "engine/codec.h"
#include "engine/collection_io.h"
#include "tidemark/io.h"

namespace tidemark::io {

struct Subject::State {
  struct Item {
    std::optional<Key> key;  // nullopt: derived from the primary key or `seq`
    Row row;
    int64_t diff;
    uint64_t seq;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Item> uncommitted;
  std::vector<Item> committed;
  uint64_t next_seq = 0;
  uint64_t signals = 0;  // bumped by commit() and close(): wakes the run loop
  bool closed = false;
  bool bound = false;  // read_subject was called

  void push(Item item) {
    std::lock_guard lock(mu);
    if (!item.key) item.seq = next_seq++;
    uncommitted.push_back(std::move(item));
  }
  void commit_locked() {
    for (auto& i : uncommitted) committed.push_back(std::move(i));
    uncommitted.clear();
    ++signals;
  }
};

Subject::Subject() : state_(std::make_shared<State>()) {}
Subject::~Subject() { close(); }

void Subject::next(Row row) { state_->push({std::nullopt, std::move(row), 1, 0}); }
void Subject::next_with_key(Key key, Row row) { state_->push({key, std::move(row), 1, 0}); }
void Subject::remove_with_key(Key key, Row row) { state_->push({key, std::move(row), -1, 0}); }

void Subject::commit() {
  {
    std::lock_guard lock(state_->mu);
    state_->commit_locked();
  }
  state_->cv.notify_all();
}

void Subject::close() {
  {
    std::lock_guard lock(state_->mu);
    if (state_->closed) return;
    state_->commit_locked();  // rows pushed before close() are not lost
    state_->closed = true;
  }
  state_->cv.notify_all();
}

namespace {

using engine::Batch;

class SubjectSource final : public engine::Source {
 public:
  SubjectSource(std::shared_ptr<Subject::State> state, Schema schema, std::string name, std::vector<size_t> pk)
      : state_(std::move(state)), schema_(std::move(schema)), name_(std::move(name)), pk_(std::move(pk)),
        salt_(key_from_string(name_).lo) {}

  std::string describe() const override { return "subject '" + name_ + "'"; }
  bool streaming() const override { return true; }
  // The run loop polls at least this often; wait_for_data() wakes it earlier on commit.
  uint64_t autocommit_ms() const override { return 10; }
  Status open() override { return {}; }

  Status poll(Batch& out, bool* finished) override {
    std::vector<Subject::State::Item> items;
    {
      std::lock_guard lock(state_->mu);
      items.swap(state_->committed);
      *finished = state_->closed;
    }
    for (auto& item : items) {
      if (consumed_++ < skip_) continue;  // delivered before the restart
      TM_RETURN_IF_ERROR(check(item.row));
      Key key = item.key ? *item.key : derive_key(item);
      out.push_back({key, std::move(item.row), item.diff});
    }
    return {};
  }

  std::string offset() const override {
    std::string s;
    codec::put_u64(s, consumed_);
    return s;
  }
  Status seek(std::string_view offset) override {
    if (!codec::get_u64(offset, &skip_) || !offset.empty())
      return Status::corruption(describe() + ": bad offset");
    return {};
  }

  void wait_for_data(uint64_t timeout_ms) override {
    std::unique_lock lock(state_->mu);
    state_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return state_->signals != seen_; });
    seen_ = state_->signals;
  }

 private:
  Key derive_key(const Subject::State::Item& item) const {
    if (pk_.empty()) return key_from_values_salted(salt_, Row{Value(static_cast<int64_t>(item.seq))});
    Row values;
    for (size_t i : pk_) values.push_back(item.row[i]);
    return key_from_values(values);
  }
  // Rows come from the program at run time: their shape is checked here, not at build time.
  Status check(Row& row) const {
    if (row.size() != schema_.size())
      return Status::invalid_argument("row with " + std::to_string(row.size()) + " values for schema (" +
                                      schema_.to_string() + ")");
    for (size_t i = 0; i < row.size(); ++i) {
      const Type& t = schema_[i].type;
      if (t.base == DType::kFloat && row[i].type() == DType::kInt) row[i] = Value(static_cast<double>(row[i].as_int()));
      if (!t.accepts(Type{row[i].type(), false}))
        return Status::invalid_argument("column '" + schema_[i].name + "': expected " + t.to_string() + ", got " +
                                        dtype_name(row[i].type()) + " " + row[i].to_string());
    }
    return {};
  }

  std::shared_ptr<Subject::State> state_;
  Schema schema_;
  std::string name_;
  std::vector<size_t> pk_;
  uint64_t salt_;
  uint64_t consumed_ = 0;  // committed rows taken so far (emitted or skipped)
  uint64_t skip_ = 0;      // rows a resumed run skips because an earlier run delivered them
  uint64_t seen_ = 0;
};

class SubscribeSink final : public engine::Sink {
 public:
  explicit SubscribeSink(SubscribeCallbacks cb) : cb_(std::move(cb)) {}
  std::string describe() const override { return "subscription"; }
  Status open() override { return {}; }
  Status write(engine::Time t, const Batch& changes, const Schema&) override {
    if (!cb_.on_change) return {};
    return guard("on_change", [&] {
      for (const auto& u : changes)
        for (int64_t i = 0; i < (u.diff > 0 ? u.diff : -u.diff); ++i) cb_.on_change(u.key, u.row, t, u.diff > 0);
    });
  }
  Status time_end(engine::Time t) override {
    if (!cb_.on_time_end) return {};
    return guard("on_time_end", [&] { cb_.on_time_end(t); });
  }
  Status flush() override { return {}; }
  Status close() override {
    if (!cb_.on_end) return {};
    return guard("on_end", [&] { cb_.on_end(); });
  }

 private:
  template <typename F>
  Status guard(const char* what, F&& f) {
    try {
      f();
      return {};
    } catch (const std::exception& e) {
      return Status::invalid_argument(std::string("subscribe callback ") + what + " threw: " + e.what());
    }
  }
  SubscribeCallbacks cb_;
};

}  // namespace

Table read_subject(Graph& g, std::shared_ptr<Subject> subject, Schema schema, std::string name,
                   std::vector<std::string> primary_key) {
  if (!subject) throw GraphError("read_subject: null subject");
  std::vector<size_t> pk;
  for (const std::string& k : primary_key) {
    auto i = schema.find(k);
    if (!i) throw GraphError("read_subject: primary key column '" + k + "' is not in the schema (" + schema.names() + ")");
    pk.push_back(*i);
  }
  {
    std::lock_guard lock(subject->state().mu);
    if (subject->state().bound) throw GraphError("read_subject: this subject already feeds a table");
    subject->state().bound = true;
  }
  // Shares ownership of the Subject: its state lives as long as the source.
  std::shared_ptr<Subject::State> state(subject, &subject->state());
  return engine::add_source(g, std::make_unique<SubjectSource>(std::move(state), schema, name, std::move(pk)), schema,
                            name);
}

void subscribe(const Table& table, SubscribeCallbacks callbacks, std::string name) {
  engine::add_sink(table, std::make_unique<SubscribeSink>(std::move(callbacks)), name);
}

}  // namespace tidemark::io
