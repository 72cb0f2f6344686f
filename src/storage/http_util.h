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

// The time a call needs to give up on an unreachable endpoint: `attempts` connection attempts
// of `connect_timeout` each, plus the longest pauses between them.
std::chrono::milliseconds retry_budget(int attempts, std::chrono::milliseconds connect_timeout);

}  // namespace tidemark::storage::http
