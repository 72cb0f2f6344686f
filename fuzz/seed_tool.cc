// Makes seed inputs for the fuzz targets from real data (used by scripts/fuzz-seeds.sh):
//
//   seed_tool entries OUTDIR            runs every pipeline of operator_pipelines.h with state
//                                       tracking and writes the live state entries it
//                                       produced, in fuzz_operator_state's input format
//   seed_tool offsets OUTDIR MANIFEST.. writes the source offsets held by real manifest files,
//                                       in fuzz_fs_offset's input format (both key modes)
//   seed_tool lock OUTDIR               writes an encoded lock object (encode_lock_info)
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

#include "engine/codec.h"
#include "operator_pipelines.h"
#include "persistence/manifest.h"
#include "storage/lock.h"

using namespace tidemark;

namespace {

bool write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(f);
}

int entries(const std::string& out) {
  const auto& specs = fuzz::pipeline_specs();
  int written = 0;
  for (size_t s = 0; s < specs.size(); ++s) {
    for (uint64_t seed : {1, 2}) {
      auto p = fuzz::build_pipeline(specs[s]);
      if (p->states.empty()) continue;
      for (auto* state : p->states) state->track_state_changes();
      // Live entries per stateful node, as a restore would see them.
      std::vector<std::map<std::string, std::string>> live(p->states.size());
      std::mt19937_64 rng(seed);
      std::vector<std::map<uint64_t, Row>> rows;
      const int steps = seed == 1 ? 3 : 12;
      for (int t = 0; t < steps; ++t) {
        fuzz::g_epoch = t;
        fuzz::step(*p, static_cast<engine::Time>(2 * t), fuzz::random_step(*p, rng, rows));
        for (size_t n = 0; n < p->states.size(); ++n) {
          engine::StateChanges changes;
          p->states[n]->take_state_changes(changes);
          for (auto& c : changes) {
            if (c.erase) live[n].erase(c.key);
            else live[n][c.key] = c.value;
          }
        }
      }
      std::string bytes;
      codec::put_u8(bytes, static_cast<uint8_t>(s));
      for (size_t n = 0; n < live.size(); ++n)
        for (const auto& [k, v] : live[n]) {
          codec::put_u8(bytes, static_cast<uint8_t>(n));
          codec::put_bytes(bytes, k);
          codec::put_bytes(bytes, v);
        }
      if (!write_file(out + "/" + specs[s].name + "-" + std::to_string(seed), bytes)) return 1;
      ++written;
    }
  }
  std::cerr << "seed_tool entries: " << written << " seeds in " << out << "\n";
  return 0;
}

int offsets(const std::string& out, int argc, char** argv) {
  int written = 0;
  for (int i = 0; i < argc; ++i) {
    std::ifstream f(argv[i], std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    auto m = persistence::decode_manifest(argv[i], ss.str());
    if (!m.is_ok()) {
      std::cerr << "seed_tool offsets: skipping " << argv[i] << ": " << m.status().to_string() << "\n";
      continue;
    }
    for (const auto& s : m->sources) {
      if (!s.has_offset) continue;
      for (char mode : {'\0', '\1'}) {
        std::string name = out + "/m" + std::to_string(m->seq) + "-" + std::to_string(written);
        if (!write_file(name, std::string(1, mode) + s.offset)) return 1;
        ++written;
      }
    }
  }
  std::cerr << "seed_tool offsets: " << written << " seeds in " << out << "\n";
  return 0;
}

int lock(const std::string& out) {
  storage::LockHolderInfo info = storage::this_process_identity();
  info.holder = "tidemark pipeline 'wordcount'";
  info.pid = 4242;
  info.host = "host-a";
  info.started_at_ms = 1764633600000;
  info.lease_expires_at_ms = 1764633660000;
  info.lease_ms = 60000;
  info.renewals = 3;
  info.token = "0123456789abcdef0123456789abcdef";
  return write_file(out + "/encoded", storage::encode_lock_info(info)) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[1]) == "entries") return entries(argv[2]);
  if (argc >= 3 && std::string(argv[1]) == "offsets") return offsets(argv[2], argc - 3, argv + 3);
  if (argc >= 3 && std::string(argv[1]) == "lock") return lock(argv[2]);
  std::cerr << "usage: seed_tool entries OUTDIR | offsets OUTDIR MANIFEST... | lock OUTDIR\n";
  return 2;
}
