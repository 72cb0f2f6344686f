// Persistent state entries for "input-collection" operators: operators whose state (or part
// of it) is a deterministic function of the consolidated collections on their input ports
// (join buckets, set operations, ix targets). Instead of exporting their internal structures,
// such an operator stores its inputs' current rows as entries and rebuilds everything else on
// restart by processing those rows once.
//
// Entry encoding (see src/engine/README.md, "Persistent state entries"):
//   key   = port byte + row key (16 bytes: lo, hi little-endian)
//   value = version byte (1) + the row (codec::put_row); an empty row for ports that only
//           need the presence of a key (kKeys).
//
// Usage in a node:
//   * process(): `inputs_.record(tracking_state(), port, update)` (or a whole batch) for every
//     update the state depends on. Tables have unique keys per input and consolidated batches
//     order a key's retraction before its insertion, so "diff > 0 -> put, diff < 0 -> erase,
//     the last change wins" tracks the live row of every key. Nothing is recorded unless
//     tracking, and nothing while the node replays its restored inputs.
//   * take_state_changes(): `inputs_.take(out)` appends one change per touched (port, key).
//   * restore_state_entry(): entries whose port byte is one of the helper's ports go to
//     `inputs_.restore(...)`; other port bytes are the node's own entries.
//   * finish_state_restore(): `inputs_.replay(*this)` calls the node's own process() once
//     (time 0) with one consolidated batch per port and discards the output (the outputs
//     were delivered before the restart).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/codec.h"
#include "engine/node.h"
#include "engine/state_codec.h"

namespace tidemark::engine {

class InputState {
 public:
  // What the helper stores for each input port of the node.
  enum class Port : uint8_t {
    kRows,  // key -> row
    kKeys,  // key -> presence only (the node never reads the row's cells)
    kOwn,   // nothing: the node keeps its own entries under this port byte
  };
  static constexpr uint8_t kVersion = 1;
  static constexpr size_t kKeySize = 1 + 16;

  explicit InputState(std::vector<Port> ports) : ports_(std::move(ports)), restored_(ports_.size()) {}

  // The entry key of (port, key).
  static std::string entry_key(uint8_t port, const Key& k) {
    std::string s;
    s.reserve(kKeySize);
    codec::put_u8(s, port);
    codec::put_key(s, k);
    return s;
  }
  // Parses an entry key of the form port byte + 16-byte key (also for the node's own ports).
  static bool parse_key(std::string_view key, uint8_t* port, Key* k) {
    return key.size() == kKeySize && codec::get_u8(key, port) && codec::get_key(key, k);
  }

  bool replaying() const { return replaying_; }

  void record(bool tracking, size_t port, const Update& u) {
    if (!tracking || replaying_ || ports_[port] == Port::kOwn) return;
    Slot& s = pending_[PortKey{static_cast<uint8_t>(port), u.key}];
    if (u.diff > 0) s = ports_[port] == Port::kRows ? std::optional<Row>(u.row) : std::optional<Row>(Row{});
    else if (u.diff < 0) s.reset();
  }
  void record(bool tracking, size_t port, const Batch& b) {
    if (!tracking || replaying_) return;
    for (const Update& u : b) record(true, port, u);
  }

  // One change per (port, key) touched since the previous take: put of the live row, or erase.
  void take(StateChanges& out) {
    out.reserve(out.size() + pending_.size());
    for (auto& [pk, row] : pending_) {
      StateChange c;
      c.key = entry_key(pk.port, pk.key);
      if (row) {
        codec::put_u8(c.value, kVersion);
        codec::put_row(c.value, *row);
      } else {
        c.erase = true;
      }
      out.push_back(std::move(c));
    }
    pending_.clear();
  }

  // Whether an entry key belongs to one of the helper's ports (else it is the node's own).
  bool owns(std::string_view key) const {
    return !key.empty() && static_cast<uint8_t>(key[0]) < ports_.size() &&
           ports_[static_cast<uint8_t>(key[0])] != Port::kOwn;
  }

  // `width`: expected number of cells of a port's rows (kRows ports), or nullopt to accept any.
  Status restore(std::string_view key, std::string_view value, const std::string& label,
                 const std::vector<std::optional<size_t>>& widths = {}) {
    uint8_t port, version;
    Key k;
    Row r;
    if (!parse_key(key, &port, &k) || port >= ports_.size() || ports_[port] == Port::kOwn ||
        !codec::get_u8(value, &version) || version != kVersion || !codec::get_row(value, &r) || !value.empty())
      return state_corrupt(label);
    if (ports_[port] == Port::kKeys && !r.empty()) return state_corrupt(label);
    if (ports_[port] == Port::kRows && port < widths.size() && widths[port] && r.size() != *widths[port])
      return state_corrupt(label);
    restored_[port].push_back({k, std::move(r), 1});
    return {};
  }

  // Processes the restored rows once through `node` (time 0), discarding the output. A failure
  // (the node rejects its own stored input) is reported as corruption of the node's state.
  Status replay(Node& node) {
    std::vector<const Batch*> ins;
    for (Batch& b : restored_) {
      consolidate(b);
      ins.push_back(&b);
    }
    bool any = false;
    for (const Batch* b : ins) any = any || !b->empty();
    Status st;
    if (any) {
      Batch discard;
      replaying_ = true;
      try {
        node.process(0, ins, discard);
      } catch (const std::exception& e) {
        st = Status::corruption("state of " + node.label() + " cannot be restored: " + e.what());
      }
      replaying_ = false;
    }
    for (Batch& b : restored_) Batch().swap(b);
    return st;
  }

 private:
  struct PortKey {
    uint8_t port;
    Key key;
    bool operator==(const PortKey&) const = default;
  };
  struct PortKeyHash {
    size_t operator()(const PortKey& p) const noexcept { return KeyHash{}(p.key) ^ (static_cast<size_t>(p.port) << 1); }
  };
  using Slot = std::optional<Row>;

  std::vector<Port> ports_;
  std::unordered_map<PortKey, Slot, PortKeyHash> pending_;
  std::vector<Batch> restored_;
  bool replaying_ = false;
};

}  // namespace tidemark::engine
