// Helpers for operators' persistent state entries (Node as a PersistentState).
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>

#include "engine/codec.h"
#include "engine/node.h"
#include "tidemark/status.h"
#include "tidemark/value.h"

namespace tidemark::engine {

// Incremental persistent state (Node::take_state_changes) of a node that records the keys it
// touched in `dirty`: one change per dirty key, an erase when `map` no longer holds it, else a
// put of `version` followed by encode(value, out). `key_of(k, out)` writes the entry key.
// Clears `dirty`.
template <typename Dirty, typename Map, typename KeyOf, typename Encode>
void take_dirty_entries(Dirty& dirty, const Map& map, uint8_t version, KeyOf&& key_of, Encode&& encode,
                        StateChanges& out) {
  for (const auto& k : dirty) {
    StateChange c;
    key_of(k, c.key);
    auto it = map.find(k);
    if (it == map.end()) {
      c.erase = true;
    } else {
      codec::put_u8(c.value, version);
      encode(it->second, c.value);
    }
    out.push_back(std::move(c));
  }
  dirty.clear();
}
inline void put_key_entry(const Key& k, std::string& out) { codec::put_key(out, k); }

// The order of keys' put_key encodings (bytewise): entries taken in this order are sorted
// the way state chunks store them.
inline bool key_bytes_less(const Key& a, const Key& b) {
  uint64_t x = __builtin_bswap64(a.lo), y = __builtin_bswap64(b.lo);
  if (x != y) return x < y;
  return __builtin_bswap64(a.hi) < __builtin_bswap64(b.hi);
}

inline Status state_corrupt(const std::string& label) {
  return Status::corruption("state of " + label + " is truncated or malformed");
}

}  // namespace tidemark::engine
