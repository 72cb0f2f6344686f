#include "storage/http_util.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <random>

namespace tidemark::storage::http {

namespace {
void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}
}  // namespace

std::string xml_unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    size_t semi = s[i] == '&' ? s.find(';', i) : std::string_view::npos;
    if (semi == std::string_view::npos) {
      out += s[i];
      continue;
    }
    std::string_view entity = s.substr(i + 1, semi - i - 1);
    if (entity == "amp") out += '&';
    else if (entity == "lt") out += '<';
    else if (entity == "gt") out += '>';
    else if (entity == "quot") out += '"';
    else if (entity == "apos") out += '\'';
    else if (entity.starts_with('#')) {
      bool hex = entity.size() > 1 && (entity[1] == 'x' || entity[1] == 'X');
      uint32_t cp = 0;
      std::string_view digits = entity.substr(hex ? 2 : 1);
      std::from_chars(digits.data(), digits.data() + digits.size(), cp, hex ? 16 : 10);
      append_utf8(out, cp);
    } else {
      out.append(s.substr(i, semi - i + 1));
    }
    i = semi;
  }
  return out;
}

std::chrono::milliseconds retry_backoff(int retry) {
  thread_local std::mt19937 rng(std::random_device{}());
  double full = std::min(2000.0, 50.0 * static_cast<double>(1u << std::min(std::max(retry, 1) - 1, 10)));
  std::uniform_real_distribution<double> pick(full / 2, full);
  return std::chrono::milliseconds(static_cast<long>(pick(rng)));
}

std::chrono::milliseconds retry_budget(int attempts, std::chrono::milliseconds connect_timeout) {
  int64_t total = 0;
  for (int retry = 1; retry < attempts; ++retry)
    total += static_cast<int64_t>(std::min(2000.0, 50.0 * static_cast<double>(1u << std::min(retry - 1, 10))));
  return std::chrono::milliseconds(total + static_cast<int64_t>(std::max(attempts, 1)) * connect_timeout.count());
}

}  // namespace tidemark::storage::http
