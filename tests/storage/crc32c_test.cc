#include "storage/crc32c.h"

#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <string>

namespace tidemark::storage {
namespace {

using Impl = std::function<uint32_t(uint32_t, std::string_view)>;

std::vector<std::pair<std::string, Impl>> implementations() {
  std::vector<std::pair<std::string, Impl>> impls{{"portable", crc32c_internal::extend_portable},
                                                  {"dispatch", crc32c_extend}};
  if (crc32c_internal::hardware_available()) impls.emplace_back("hardware", crc32c_internal::extend_hardware);
  return impls;
}

TEST(Crc32c, StandardVectors) {
  std::string ascending(32, '\0'), descending(32, '\0');
  for (int i = 0; i < 32; ++i) {
    ascending[i] = static_cast<char>(i);
    descending[i] = static_cast<char>(31 - i);
  }
  // iSCSI test vectors (RFC 3720 B.4) and the common check value.
  const std::vector<std::pair<std::string, uint32_t>> vectors{
      {"123456789", 0xE3069283u}, {std::string(32, '\0'), 0x8A9136AAu}, {std::string(32, '\xff'), 0x62A8AB43u},
      {ascending, 0x46DD794Eu},   {descending, 0x113FDB5Cu},            {"", 0u},
  };
  for (const auto& [name, impl] : implementations()) {
    for (const auto& [data, expected] : vectors) {
      EXPECT_EQ(impl(0, data), expected) << name << " on " << data.size() << " bytes";
    }
  }
}

TEST(Crc32c, ExtendEqualsWholeAndImplementationsAgree) {
  std::mt19937 rng(7);
  std::string data(1000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  uint32_t whole = crc32c_internal::extend_portable(0, data);
  for (const auto& [name, impl] : implementations()) {
    for (size_t cut : {0, 1, 7, 8, 9, 500, 999, 1000}) {
      std::string_view v(data);
      EXPECT_EQ(impl(impl(0, v.substr(0, cut)), v.substr(cut)), whole) << name << " cut " << cut;
    }
    for (size_t len = 0; len < 40; ++len) {  // every tail length and alignment
      std::string_view v = std::string_view(data).substr(3, len);
      EXPECT_EQ(impl(0, v), crc32c_internal::extend_portable(0, v)) << name << " len " << len;
    }
  }
}

TEST(Crc32c, MaskRoundTripsAndChangesValue) {
  uint32_t crc = crc32c_value("foo");
  EXPECT_NE(crc32c_mask(crc), crc);
  EXPECT_NE(crc32c_mask(crc32c_mask(crc)), crc);
  EXPECT_EQ(crc32c_unmask(crc32c_mask(crc)), crc);
  EXPECT_EQ(crc32c_unmask(crc32c_mask(crc32c_mask(crc))), crc32c_mask(crc));
  for (uint32_t v : {0u, 1u, 0xFFFFFFFFu, 0x80000000u, 0xE3069283u}) EXPECT_EQ(crc32c_unmask(crc32c_mask(v)), v);
}

}  // namespace
}  // namespace tidemark::storage
