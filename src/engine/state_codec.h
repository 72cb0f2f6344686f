// Helpers for operators' save_state/load_state: maps of keys to rows, with a version byte.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>

#include "engine/codec.h"
#include "engine/node.h"
#include "tidemark/status.h"
#include "tidemark/value.h"

namespace tidemark::engine {

inline void save_key_rows(std::string& out, const std::unordered_map<Key, Row, KeyHash>& m) {
  codec::put_varint(out, m.size());
  for (const auto& [k, r] : m) {
    codec::put_key(out, k);
    codec::put_row(out, r);
  }
}

inline bool load_key_rows(std::string_view& in, std::unordered_map<Key, Row, KeyHash>* m) {
  uint64_t n;
  if (!codec::get_varint(in, &n)) return false;
  m->clear();
  for (uint64_t i = 0; i < n; ++i) {
    Key k;
    Row r;
    if (!codec::get_key(in, &k) || !codec::get_row(in, &r)) return false;
    m->emplace(k, std::move(r));
  }
  return true;
}

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
