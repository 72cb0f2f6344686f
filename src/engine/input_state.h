// Persistent state entries for "input-collection" operators: operators whose state (or part
// of it) is their inputs' current rows, kept in maps by row key (set operations, ix targets).
// Such an operator stores those rows as entries and restores them straight into its maps.
//
// Entry encoding (see src/engine/README.md, "Persistent state entries"):
//   key   = port byte + row key (16 bytes: lo, hi little-endian)
//   value = version byte (1) + the row (codec::put_row); an empty row for ports that only
//           need the presence of a key (kKeys).
//
// Usage in a node:
//   * process(): `inputs_.record(tracking_state(), port, update)` (or a whole batch) for every
//     update the state depends on; only the key is remembered (nothing unless tracking).
//   * take_state_changes(): `inputs_.take(out, live)` appends one change per touched
//     (port, key): a put of the row `live(port, key)` returns, or an erase if it returns null.
//   * restore_state_entry(): entries whose port byte is one of the helper's ports go to
//     `inputs_.restore(...)`, which checks and decodes them for the node to insert; other port
//     bytes are the node's own entries.
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
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

  explicit InputState(std::vector<Port> ports) : ports_(std::move(ports)), dirty_(ports_.size()) {}

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

  void record(bool tracking, size_t port, const Update& u) {
    if (!tracking || ports_[port] == Port::kOwn) return;
    dirty_[port].push_back(u.key);
  }
  void record(bool tracking, size_t port, const Batch& b) {
    if (!tracking || ports_[port] == Port::kOwn) return;
    for (const Update& u : b) dirty_[port].push_back(u.key);
  }

  // One change per (port, key) touched since the previous take: put of the live row, or erase.
  template <typename Live>
  void take(StateChanges& out, Live&& live) {
    for (size_t p = 0; p < ports_.size(); ++p) {
      std::vector<Key>& d = dirty_[p];
      std::sort(d.begin(), d.end(), key_bytes_less);
      d.erase(std::unique(d.begin(), d.end()), d.end());
      out.reserve(out.size() + d.size());
      for (const Key& k : d) {
        StateChange c;
        c.key = entry_key(static_cast<uint8_t>(p), k);
        if (const Row* row = live(p, k)) {
          codec::put_u8(c.value, kVersion);
          codec::put_row(c.value, ports_[p] == Port::kRows ? *row : Row{});
        } else {
          c.erase = true;
        }
        out.push_back(std::move(c));
      }
      std::vector<Key>().swap(d);
    }
  }

  // Whether an entry key belongs to one of the helper's ports (else it is the node's own).
  bool owns(std::string_view key) const {
    return !key.empty() && static_cast<uint8_t>(key[0]) < ports_.size() &&
           ports_[static_cast<uint8_t>(key[0])] != Port::kOwn;
  }

  // Checks and decodes an entry of one of the helper's ports into (*port, *k, *r).
  // `widths`: expected number of cells of a port's rows (kRows ports), or nullopt to accept any.
  Status restore(std::string_view key, std::string_view value, const std::string& label,
                 const std::vector<std::optional<size_t>>& widths, uint8_t* port, Key* k, Row* r) const {
    uint8_t version;
    r->clear();
    if (!parse_key(key, port, k) || *port >= ports_.size() || ports_[*port] == Port::kOwn ||
        !codec::get_u8(value, &version) || version != kVersion || !codec::get_row(value, r) || !value.empty())
      return state_corrupt(label);
    if (ports_[*port] == Port::kKeys && !r->empty()) return state_corrupt(label);
    if (ports_[*port] == Port::kRows && *port < widths.size() && widths[*port] && r->size() != *widths[*port])
      return state_corrupt(label);
    return {};
  }

 private:
  std::vector<Port> ports_;
  std::vector<std::vector<Key>> dirty_;  // per port: keys recorded since the last take
};

}  // namespace tidemark::engine
