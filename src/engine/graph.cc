#include <algorithm>
#include <chrono>
#include <thread>

#include "engine/codec.h"
#include "engine/node.h"
#include "engine/workers.h"

namespace tidemark {

Graph::Graph() : impl_(std::make_unique<internal::GraphImpl>()) {}
Graph::~Graph() = default;

const Schema& Table::schema() const { return graph_->impl().node(node_).schema(); }

Table Table::named(const std::string& name) const {
  auto& g = graph_->impl();
  engine::Node& n = g.node(node_);
  if (name.empty()) throw GraphError("named(): empty name");
  if (n.inputs().empty()) throw GraphError("named('" + name + "'): a source is named by its connector's name option");
  if (!n.name().empty()) throw GraphError("named('" + name + "'): " + n.label() + " is already named");
  g.register_name(name, n.kind());
  n.set_name(name);
  return *this;
}

}  // namespace tidemark

namespace tidemark::internal {

size_t GraphImpl::add(std::unique_ptr<engine::Node> node) {
  if (ran) throw GraphError("the graph has already been run; build a new Graph to run again");
  for (size_t in : node->inputs())
    if (in >= nodes_.size()) throw GraphError("internal: " + node->kind() + " has an input outside the graph");
  node->set_index(nodes_.size());
  nodes_.push_back(std::move(node));
  return nodes_.size() - 1;
}

void GraphImpl::register_name(const std::string& name, const std::string& what) {
  if (name.empty()) return;
  if (!names_.insert(name).second)
    throw GraphError("unique name '" + name + "' used more than once (" + what + ")");
}

void GraphImpl::register_state(std::string id, std::string kind, std::shared_ptr<engine::PersistentState> state) {
  for (const auto& e : extra_states_)
    if (e.id == id) throw GraphError(kind + " '" + id + "' defined more than once");
  extra_states_.push_back({std::move(id), std::move(kind), std::move(state)});
}

}  // namespace tidemark::internal

namespace tidemark::engine {

Table with_params(Table t, std::string params) {
  t.graph().impl().node(t.node()).set_params(std::move(params));
  return t;
}

std::string Node::label() const {
  if (!name_.empty()) return kind_ + " '" + name_ + "'";
  return kind_ + "#" + std::to_string(index_);
}

Result<std::optional<Key>> Node::state_entry_route(std::string_view key, std::string_view value) const {
  if (routing().by == Routing::By::kRowKey && (key.size() == 17 || key.size() == 16)) {
    if (key.size() == 17) key.remove_prefix(1);  // port byte
    Key k;
    codec::get_key(key, &k);
    return std::optional<Key>(k);
  }
  return Status::not_supported(label() + ": its stored state cannot be divided among another number of workers");
}

void take_instance_changes(const std::vector<PersistentState*>& instances, StateChanges& out) {
  if (instances.size() == 1) {
    instances[0]->take_state_changes(out);
    return;
  }
  StateChanges puts, one;
  std::vector<size_t> order;
  for (PersistentState* inst : instances) {
    one.clear();
    inst->take_state_changes(one);
    order.resize(one.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return one[a].key < one[b].key; });
    for (size_t i = 0; i < order.size(); ++i) {
      if (i + 1 < order.size() && one[order[i + 1]].key == one[order[i]].key) continue;  // a later change wins
      StateChange& c = one[order[i]];
      (c.erase ? out : puts).push_back(std::move(c));
    }
  }
  for (auto& c : puts) out.push_back(std::move(c));
}

Status restore_instance_entry(const Node& node, const std::vector<PersistentState*>& instances, std::string_view key,
                              std::string_view value) {
  if (instances.size() == 1) return instances[0]->restore_state_entry(key, value);
  TM_ASSIGN_OR_RETURN(std::optional<Key> route, node.state_entry_route(key, value));
  if (route) return instances[worker_of(*route, instances.size())]->restore_state_entry(key, value);
  for (PersistentState* inst : instances) TM_RETURN_IF_ERROR(inst->restore_state_entry(key, value));
  return {};
}

Status Node::restore_state_entry(std::string_view key, std::string_view value) {
  return Status::corruption("state of " + label() + ": unexpected entry (the operator keeps no state)");
}

void consolidate(Batch& batch) {
  if (batch.size() <= 1) {
    if (batch.size() == 1 && batch[0].diff == 0) batch.clear();
    return;
  }
  // Already in key order with one update per key (a source emitting increasing keys, a batch
  // consolidated before): nothing to sort or sum, only zero diffs to drop, in place.
  bool sorted_unique = true;
  for (size_t i = 1; i < batch.size() && sorted_unique; ++i) sorted_unique = batch[i - 1].key < batch[i].key;
  if (sorted_unique) {
    std::erase_if(batch, [](const Update& u) { return u.diff == 0; });
    return;
  }
  // Sort a small (key, index) permutation instead of the updates themselves: keys compare in
  // two integer comparisons, rows only when keys are equal (rare), and each update moves once.
  struct Slot {
    Key key;
    uint32_t index;
  };
  std::vector<Slot> order(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) order[i] = {batch[i].key, static_cast<uint32_t>(i)};
  std::sort(order.begin(), order.end(), [&](const Slot& a, const Slot& b) {
    if (a.key != b.key) return a.key < b.key;
    auto c = batch[a.index].row <=> batch[b.index].row;
    return c != 0 ? c < 0 : a.index < b.index;
  });
  Batch out;
  out.reserve(batch.size());
  for (size_t i = 0; i < order.size();) {
    Update& first = batch[order[i].index];
    int64_t d = first.diff;
    size_t j = i + 1;
    while (j < order.size() && order[j].key == first.key && batch[order[j].index].row == first.row)
      d += batch[order[j++].index].diff;
    if (d != 0) {
      first.diff = d;
      out.push_back(std::move(first));
    }
    i = j;
  }
  // Within a key, retractions first so stateful consumers see -old before +new.
  for (size_t i = 0; i < out.size();) {
    size_t j = i + 1;
    while (j < out.size() && out[j].key == out[i].key) ++j;
    if (j - i > 1) std::stable_partition(out.begin() + i, out.begin() + j, [](const Update& u) { return u.diff < 0; });
    i = j;
  }
  batch.swap(out);
}

void Source::wait_for_data(uint64_t timeout_ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
}

void SinkNode::process(Time t, std::span<const Batch* const> inputs, Batch&) {
  if (inputs[0]->empty()) return;
  Status s = sink_->write(t, *inputs[0], schema());
  if (!s.is_ok()) throw StatusError(std::move(s));
}

}  // namespace tidemark::engine
