// Small helpers shared by the HTTP object-store clients (S3, Azure).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace tidemark::storage::http {

// Decodes XML character references (&amp; &lt; &gt; &quot; &apos; &#N; &#xN;) to UTF-8.
std::string xml_unescape(std::string_view s);

// The pause before retry number `retry` (1-based): 50 ms doubling up to 2 s, then a random
// point in [half, full] ("equal jitter") so that contending clients spread out.
std::chrono::milliseconds retry_backoff(int retry);

}  // namespace tidemark::storage::http
