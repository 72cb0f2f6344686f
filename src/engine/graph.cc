#include <algorithm>
#include <chrono>
#include <thread>

#include "engine/node.h"

namespace tidemark {

Graph::Graph() : impl_(std::make_unique<internal::GraphImpl>()) {}
Graph::~Graph() = default;

const Schema& Table::schema() const { return graph_->impl().node(node_).schema(); }

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

}  // namespace tidemark::internal

namespace tidemark::engine {

std::string Node::label() const {
  if (!name_.empty()) return kind_ + " '" + name_ + "'";
  return kind_ + "#" + std::to_string(index_);
}

void consolidate(Batch& batch) {
  if (batch.size() <= 1) {
    if (batch.size() == 1 && batch[0].diff == 0) batch.clear();
    return;
  }
  std::sort(batch.begin(), batch.end(), [](const Update& a, const Update& b) {
    if (a.key != b.key) return a.key < b.key;
    auto c = a.row <=> b.row;
    return c < 0;
  });
  size_t w = 0;
  for (size_t i = 0; i < batch.size();) {
    size_t j = i + 1;
    int64_t d = batch[i].diff;
    while (j < batch.size() && batch[j].key == batch[i].key && batch[j].row == batch[i].row) d += batch[j++].diff;
    if (d != 0) {
      if (w != i) batch[w] = std::move(batch[i]);
      batch[w].diff = d;
      ++w;
    }
    i = j;
  }
  batch.resize(w);
  // Within a key, retractions first so stateful consumers see -old before +new.
  std::stable_sort(batch.begin(), batch.end(), [](const Update& a, const Update& b) {
    if (a.key != b.key) return a.key < b.key;
    return (a.diff < 0) > (b.diff < 0);
  });
}

void Source::wait_for_data(uint64_t timeout_ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
}

void SinkNode::process(Time t, std::span<const Batch* const> inputs, Batch&) {
  if (inputs[0]->empty()) return;
  Status s = sink_->write(t, *inputs[0], schema());
  if (!s.is_ok()) throw RuntimeError(s.to_string());
}

}  // namespace tidemark::engine
