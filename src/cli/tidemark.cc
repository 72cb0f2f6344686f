// The `tidemark` command-line tool: operations on Tidemark's persistent storage. Built as
// bin/tidemark (CMake target cli_tidemark: the target `tidemark` is the library).
//
//   tidemark persistence inspect STORAGE [--json]   manifest, sources, sinks, lock, garbage
//   tidemark persistence verify STORAGE             read and check every object; changes nothing
//
// STORAGE is the directory given to --persistent-storage / Backend::filesystem (or file://DIR).
// Exit codes: 0 success (verify: no damage), 1 damage or an unreadable manifest, 2 usage error
// or storage that cannot be opened or listed.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>

#include "persistence/inspect.h"

using namespace tidemark;

namespace {

constexpr int kExitDamage = 1;
constexpr int kExitUsage = 2;

int fail(const Status& s, int code) {
  std::fprintf(stderr, "tidemark: error: %s\n", s.message().c_str());
  return code;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int inspect(const std::string& location, bool as_json) {
  auto store = persistence::open_storage_read_only(location);
  if (!store) return fail(store.status(), kExitUsage);
  auto summary = persistence::inspect_storage(**store);
  if (!summary) {
    // A manifest that cannot be decoded is a finding about the storage, not a usage error.
    bool damage = summary.status().code() == StatusCode::kCorruption || summary.status().code() == StatusCode::kNotSupported;
    return fail(summary.status(), damage ? kExitDamage : kExitUsage);
  }
  std::string out = as_json ? persistence::format_summary_json(*summary, now_ms())
                            : persistence::format_summary_text(*summary, now_ms());
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

int verify(const std::string& location) {
  auto store = persistence::open_storage_read_only(location);
  if (!store) return fail(store.status(), kExitUsage);
  auto report = persistence::verify_storage(**store);
  if (!report) return fail(report.status(), kExitUsage);
  for (const auto& p : report->problems) std::printf("damage: %s\n", p.message.c_str());
  std::printf("verified %llu objects, %s (%llu bytes): ", static_cast<unsigned long long>(report->objects),
              persistence::format_size(report->bytes).c_str(), static_cast<unsigned long long>(report->bytes));
  if (report->problems.empty()) {
    std::printf("no damage\n");
    return 0;
  }
  std::printf("%zu problem%s found\n", report->problems.size(), report->problems.size() == 1 ? "" : "s");
  return kExitDamage;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Tidemark command-line tool."};
  app.require_subcommand(1);
  app.footer("Examples:\n  " + std::string(argv[0]) + " persistence inspect ./state\n  " + std::string(argv[0]) +
             " persistence verify ./state   (exit 0: no damage, 1: damage found, 2: usage error)");
  auto* persistence_cmd = app.add_subcommand("persistence", "Inspect and verify a persistent storage");
  persistence_cmd->require_subcommand(1);

  std::string location;
  bool as_json = false;
  auto* inspect_cmd = persistence_cmd->add_subcommand(
      "inspect", "Show the newest commit (sources, sinks, sizes, times), the lock holder and garbage; reads "
                 "only metadata and each source's first chunk");
  inspect_cmd->add_option("STORAGE", location, "Storage directory (or file://DIR)")->required();
  inspect_cmd->add_flag("--json", as_json, "Print one JSON document instead of tables");
  auto* verify_cmd = persistence_cmd->add_subcommand(
      "verify", "Read and decode every object (checksums, chunk lists, record counts); never modifies "
                "anything. Exit 0: no damage, 1: damage found");
  verify_cmd->add_option("STORAGE", location, "Storage directory (or file://DIR)")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help is a ParseError with exit code 0; every real parse error is a usage error.
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }
  if (inspect_cmd->parsed()) return inspect(location, as_json);
  return verify(location);
}
