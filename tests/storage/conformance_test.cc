// Runs the ObjectStore conformance suite against every backend in this folder.
#include "storage/conformance_suite.h"
#include "storage/fault_injecting_store.h"

namespace tidemark::storage::testing {
namespace {

BackendUnderTest open_filesystem_backend() {
  auto dir = std::make_shared<TempDir>();
  Result<std::unique_ptr<ObjectStore>> store = open_filesystem_store(dir->path() + "/root");
  EXPECT_TRUE(store.is_ok()) << store.status().to_string();
  return {store.is_ok() ? std::move(store).value() : nullptr, [dir]() mutable { dir.reset(); }};
}

INSTANTIATE_TEST_SUITE_P(
    Backends, ObjectStoreConformance,
    ::testing::Values(BackendFactory{"filesystem", open_filesystem_backend},
                      BackendFactory{"memory", [] { return BackendUnderTest{make_memory_store(), {}}; }},
                      BackendFactory{"fault_injecting_without_faults",
                                     [] {
                                       return BackendUnderTest{
                                           std::make_unique<FaultInjectingStore>(make_memory_store()), {}};
                                     }}),
    backend_name);

}  // namespace
}  // namespace tidemark::storage::testing
