#include "storage/azure_store.h"
#include "storage/http_util.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <strings.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

namespace tidemark::storage {
namespace {

constexpr const char* kApiVersion = "2021-08-06";

bool is_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
         c == '.' || c == '~';
}

// RFC 3986 percent-encoding with uppercase hex; `keep_slash` for URL paths.
std::string percent_encode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (is_unreserved(c) || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string base64_encode(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
  if (in.empty() || in.size() % 4 != 0) return std::nullopt;
  std::string out(in.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return std::nullopt;
  size_t padding = in.ends_with("==") ? 2 : in.ends_with('=') ? 1 : 0;  // EVP_DecodeBlock counts it as zeros
  out.resize(static_cast<size_t>(n) - padding);
  return out;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), mac, &len);
  return std::string(reinterpret_cast<char*>(mac), len);
}

// RFC 1123 date in GMT, independent of the process locale.
std::string http_date() {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::time_t now = std::time(nullptr);
  std::tm t{};
  gmtime_r(&now, &t);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[t.tm_wday], t.tm_mday, kMonths[t.tm_mon],
                t.tm_year + 1900, t.tm_hour, t.tm_min, t.tm_sec);
  return buf;
}


// The first element <tag ...>text</tag> in `xml`: its attributes text and raw content.
struct XmlElement {
  std::string_view attributes;
  std::string_view text;
};
std::optional<XmlElement> find_element(std::string_view xml, std::string_view tag) {
  std::string open = "<" + std::string(tag);
  for (size_t pos = xml.find(open); pos != std::string_view::npos; pos = xml.find(open, pos + 1)) {
    size_t after = pos + open.size();
    if (after >= xml.size() || (xml[after] != '>' && xml[after] != ' ')) continue;  // a longer tag name
    size_t gt = xml.find('>', after);
    if (gt == std::string_view::npos) return std::nullopt;
    if (xml[gt - 1] == '/') return XmlElement{xml.substr(after, gt - 1 - after), {}};  // <tag/>
    size_t close = xml.find("</" + std::string(tag) + ">", gt);
    if (close == std::string_view::npos) return std::nullopt;
    return XmlElement{xml.substr(after, gt - after), xml.substr(gt + 1, close - gt - 1)};
  }
  return std::nullopt;
}

std::string trim_slashes(std::string_view s) {
  while (!s.empty() && s.front() == '/') s.remove_prefix(1);
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  return std::string(s);
}

struct CurlHandle {
  CURL* handle = curl_easy_init();
  ~CurlHandle() {
    if (handle != nullptr) curl_easy_cleanup(handle);
  }
};

// One handle per thread: reused across requests so connections are kept alive.
CURL* thread_curl() {
  thread_local CurlHandle curl;
  return curl.handle;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

struct Request {
  const char* method = "GET";  // GET, PUT or DELETE; a PUT always sends `body` (maybe empty)
  std::string blob{};          // unencoded blob name; empty for container requests
  std::vector<std::pair<std::string, std::string>> query{};    // unencoded, names lowercase
  std::vector<std::pair<std::string, std::string>> headers{};  // extra x-ms-* headers, names lowercase
  std::string_view body{};
  bool if_none_match_any = false;
  std::string if_match{};  // an ETag: the request applies only if the blob still has it
  Deadline deadline{};     // no retry (and no attempt) past it
};

struct Response {
  long status = 0;
  std::string body;
  std::string error_code;  // x-ms-error-code
  std::string etag;        // ETag header, quotes included
  int attempts = 0;
};

std::string_view header_value(std::string_view line, std::string_view name) {
  if (line.size() <= name.size() || strncasecmp(line.data(), name.data(), name.size()) != 0) return {};
  std::string_view value = line.substr(name.size());
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) value.remove_suffix(1);
  return value;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  std::string_view line(data, size * n);
  if (std::string_view v = header_value(line, "x-ms-error-code:"); !v.empty()) static_cast<Response*>(user)->error_code = v;
  if (std::string_view v = header_value(line, "etag:"); !v.empty()) static_cast<Response*>(user)->etag = v;
  return size * n;
}

bool retryable_transport_error(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
      return true;
    default:
      return false;
  }
}


// Signs and sends requests for one account and container; immutable after make(), so it is
// safe to share between threads.
class AzureClient {
 public:
  static Result<AzureClient> make(const AzureOptions& options) {
    static std::once_flag curl_init;
    std::call_once(curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });

    auto bad = [](const std::string& why) { return Status::invalid_argument("azure store options: " + why); };
    if (options.account.empty()) return bad("account is empty");
    const std::string& c = options.container;
    bool container_ok = c.size() >= 3 && c.size() <= 63 && c.front() != '-' && c.back() != '-' &&
                        c.find("--") == std::string::npos &&
                        std::all_of(c.begin(), c.end(), [](char ch) {
                          return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-';
                        });
    if (!container_ok) {
      return bad("container name '" + c + "' is invalid (3-63 lowercase letters, digits and single hyphens)");
    }
    std::optional<std::string> key = base64_decode(options.key);
    if (!key) return bad("key for account '" + options.account + "' is not valid base64 (key not shown)");
    if (options.list_page_size < 1 || options.list_page_size > 5000) return bad("list_page_size must be 1..5000");
    if (options.block_size == 0 || options.block_size > (100u << 20)) return bad("block_size must be 1 B..100 MiB");
    if (options.max_attempts < 1) return bad("max_attempts must be at least 1");

    AzureClient client;
    client.options_ = options;
    client.options_.key.clear();  // only the decoded form is kept
    client.key_ = std::move(*key);
    std::string endpoint = options.endpoint.empty() ? "https://" + options.account + ".blob.core.windows.net"
                                                    : options.endpoint;
    while (endpoint.ends_with('/')) endpoint.pop_back();
    size_t scheme = endpoint.find("://");
    if (!endpoint.starts_with("http://") && !endpoint.starts_with("https://")) {
      return bad("endpoint '" + endpoint + "' must start with http:// or https://");
    }
    size_t path = endpoint.find('/', scheme + 3);
    // Path-style endpoints (Azurite) carry the account in the path; the canonicalized resource
    // is "/<account>" + the URL path, so the account then appears twice.
    client.base_path_ = path == std::string::npos ? "" : endpoint.substr(path);
    client.endpoint_ = std::move(endpoint);
    client.root_ = trim_slashes(options.prefix);
    return client;
  }

  const AzureOptions& options() const { return options_; }
  const std::string& root() const { return root_; }

  std::string describe() const {
    return "azure://" + options_.container + (root_.empty() ? "" : "/" + root_) + " (" + endpoint_ + ")";
  }

  // Sends `req`, retrying transport failures and 5xx answers. Any HTTP answer is returned
  // as a Response; only a transport failure after the last attempt is an error.
  Result<Response> send(const Request& req, std::string_view what) const {
    std::string path = "/" + options_.container + (req.blob.empty() ? "" : "/" + percent_encode(req.blob, true));
    std::string url = endpoint_ + path;
    std::vector<std::pair<std::string, std::string>> query = req.query;
    std::sort(query.begin(), query.end());
    for (size_t i = 0; i < query.size(); ++i) {
      url += (i == 0 ? "?" : "&") + query[i].first + "=" + percent_encode(query[i].second, false);
    }
    std::string resource = "/" + options_.account + base_path_ + path;
    for (const auto& [name, value] : query) resource += "\n" + name + ":" + value;

    CURL* curl = thread_curl();
    if (curl == nullptr) return Status::internal(describe() + ": " + std::string(what) + ": curl_easy_init failed");
    Response response;
    for (int attempt = 1;; ++attempt) {
      response.attempts = attempt;
      response.body.clear();
      response.error_code.clear();
      response.etag.clear();
      char error[CURL_ERROR_SIZE] = {};
      auto remaining = req.deadline.at - std::chrono::steady_clock::now();
      if (req.deadline.is_set() && remaining <= std::chrono::milliseconds(0))
        return Status::io_error(describe() + ": " + std::string(what) + ": deadline passed after " +
                                std::to_string(attempt - 1) + " attempt(s)");
      CURLcode code = perform(curl, req, url, resource, response, error);
      const bool out_of_time = req.deadline.is_set() && std::chrono::steady_clock::now() >= req.deadline.at;
      if (code == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
        if (response.status < 500 || attempt >= options_.max_attempts || out_of_time) return response;
      } else if (!retryable_transport_error(code) || attempt >= options_.max_attempts || out_of_time) {
        return Status::io_error(describe() + ": " + std::string(what) + ": " + curl_easy_strerror(code) +
                                (error[0] != '\0' ? " (" + std::string(error) + ")" : "") + " after " +
                                std::to_string(attempt) + " attempt(s); is the endpoint " + endpoint_ +
                                " reachable?");
      }
      std::this_thread::sleep_for(http::retry_backoff(attempt));
    }
  }

  // The error for an unexpected HTTP answer: status, server error code, the first line of the
  // server's message (not its authentication detail, which echoes the signature) and a hint.
  Status http_error(const Response& r, std::string_view what) const {
    std::string message = describe() + ": " + std::string(what) + ": HTTP " + std::to_string(r.status);
    if (!r.error_code.empty()) message += " " + r.error_code;
    if (std::optional<XmlElement> m = find_element(r.body, "Message")) {
      std::string text = http::xml_unescape(m->text);
      message += ": " + text.substr(0, text.find('\n'));
    }
    // Azure answers a bad signature with AuthenticationFailed, Azurite with AuthorizationFailure.
    if (r.error_code == "AuthenticationFailed" || r.error_code == "AuthorizationFailure") {
      message += " (check the account name '" + options_.account + "' and its key)";
    } else if (r.error_code == "ContainerNotFound") {
      message += " (container '" + options_.container + "' does not exist; create it first)";
    }
    if (r.attempts > 1) message += " after " + std::to_string(r.attempts) + " attempts";
    StatusCode code = r.status == 404 ? StatusCode::kNotFound
                      : r.status == 400 ? StatusCode::kInvalidArgument
                                        : StatusCode::kIoError;
    return Status(code, message);
  }

 private:
  CURLcode perform(CURL* curl, const Request& req, const std::string& url, const std::string& resource,
                   Response& response, char* error) const {
    bool put = std::string_view(req.method) == "PUT";
    std::string date = http_date();
    std::vector<std::pair<std::string, std::string>> ms_headers = req.headers;
    ms_headers.emplace_back("x-ms-date", date);
    ms_headers.emplace_back("x-ms-version", kApiVersion);
    std::sort(ms_headers.begin(), ms_headers.end());

    // Shared Key string-to-sign: verb, eleven standard headers (Content-Length empty when 0),
    // canonicalized x-ms-* headers, canonicalized resource.
    const char* content_type = "application/octet-stream";
    std::string to_sign = std::string(req.method) + "\n\n\n" +
                          (put && !req.body.empty() ? std::to_string(req.body.size()) : "") + "\n\n" +
                          (put ? content_type : "") + "\n\n\n" + req.if_match + "\n" +
                          (req.if_none_match_any ? "*" : "") + "\n\n\n";
    for (const auto& [name, value] : ms_headers) to_sign += name + ":" + value + "\n";
    to_sign += resource;
    std::string signature = base64_encode(hmac_sha256(key_, to_sign));

    curl_slist* headers = nullptr;
    for (const auto& [name, value] : ms_headers) headers = curl_slist_append(headers, (name + ": " + value).c_str());
    headers = curl_slist_append(headers, ("Authorization: SharedKey " + options_.account + ":" + signature).c_str());
    if (put) headers = curl_slist_append(headers, (std::string("Content-Type: ") + content_type).c_str());
    if (req.if_none_match_any) headers = curl_slist_append(headers, "If-None-Match: *");
    if (!req.if_match.empty()) headers = curl_slist_append(headers, ("If-Match: " + req.if_match).c_str());
    headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip for large bodies

    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
    // A stalled transfer (below 1 KiB/s for 30 s) is a timeout; a total limit would cut off
    // large objects on slow links.
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    if (req.deadline.is_set()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(req.deadline.at - std::chrono::steady_clock::now());
      curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(std::max<int64_t>(1, left.count())));
    }
    if (put) {
      curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PUT");
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req.body.empty() ? "" : req.body.data());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
    } else if (std::string_view(req.method) == "DELETE") {
      curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else {
      curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response.body);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &response);
    CURLcode code = curl_easy_perform(curl);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);
    curl_slist_free_all(headers);
    return code;
  }

  AzureOptions options_;  // with the key cleared
  std::string key_;       // decoded account key
  std::string endpoint_;  // without a trailing '/'
  std::string base_path_;
  std::string root_;
};

std::string quoted(std::string_view key) { return "'" + std::string(key) + "'"; }

class AzureStore final : public ObjectStore {
 public:
  explicit AzureStore(AzureClient client) : client_(std::move(client)) {}

  Result<std::string> get(std::string_view key) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    std::string what = "get " + quoted(key);
    TM_ASSIGN_OR_RETURN(Response r, (client_.send({.method = "GET", .blob = blob(key)}, what)));
    if (r.status == 200) return std::move(r.body);
    if (r.status == 404 && r.error_code == "BlobNotFound") {
      return Status::not_found(client_.describe() + ": object " + quoted(key) + " not found");
    }
    return client_.http_error(r, what);
  }

  Status put(std::string_view key, std::string_view data) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    std::string what = "put " + quoted(key);
    TM_ASSIGN_OR_RETURN(Response r, upload(key, data, /*if_absent=*/false, what));
    return r.status == 201 ? Status::ok() : client_.http_error(r, what);
  }

  Status put_if_absent(std::string_view key, std::string_view data) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    std::string what = "put_if_absent " + quoted(key);
    TM_ASSIGN_OR_RETURN(Response r, upload(key, data, /*if_absent=*/true, what));
    if (r.status == 201) return Status::ok();
    // Azure answers 409 BlobAlreadyExists (Azurite too); 412 ConditionNotMet is also possible.
    if (r.status == 412 || (r.status == 409 && r.error_code == "BlobAlreadyExists")) {
      // An earlier attempt (ours, or libcurl's silent resend on a dead reused connection) may
      // have created the blob and lost its answer: that is our success if the stored bytes
      // are ours.
      Result<std::string> stored = get(key);
      if (stored.is_ok() && *stored == data) return Status::ok();
      return Status::already_exists(client_.describe() + ": object " + quoted(key) + " already exists (HTTP " +
                                    std::to_string(r.status) + " " + r.error_code + ")");
    }
    return client_.http_error(r, what);
  }

  Result<VersionedObject> get_versioned(std::string_view key, Deadline deadline) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    std::string what = "get " + quoted(key);
    TM_ASSIGN_OR_RETURN(Response r, (client_.send({.method = "GET", .blob = blob(key), .deadline = deadline}, what)));
    if (r.status == 200) {
      if (r.etag.empty()) return Status::io_error(client_.describe() + ": " + what + ": answer without an ETag");
      return VersionedObject{std::move(r.body), std::move(r.etag)};
    }
    if (r.status == 404 && r.error_code == "BlobNotFound") {
      return Status::not_found(client_.describe() + ": object " + quoted(key) + " not found");
    }
    return client_.http_error(r, what);
  }

  Result<std::string> put_if_version(std::string_view key, std::string_view data, std::string_view expected,
                                     Deadline deadline) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    std::string what = "conditional put " + quoted(key);
    if (data.size() > client_.options().single_put_limit)
      return Status::invalid_argument(what + ": conditional writes are limited to single-request objects");
    TM_ASSIGN_OR_RETURN(Response r, client_.send({.method = "PUT",
                                                  .blob = blob(key),
                                                  .headers = {{"x-ms-blob-type", "BlockBlob"}},
                                                  .body = data,
                                                  .if_match = std::string(expected),
                                                  .deadline = deadline},
                                                 what));
    if (r.status == 201) {
      if (r.etag.empty()) return Status::io_error(client_.describe() + ": " + what + ": answer without an ETag");
      return std::move(r.etag);
    }
    if (r.status == 412 || r.status == 404) {
      // Our own earlier attempt may have landed before its answer was lost.
      Result<VersionedObject> stored = get_versioned(key, deadline);
      if (stored.is_ok() && stored->data == data) return std::move(stored->version);
      return Status::aborted(client_.describe() + ": object " + quoted(key) + " changed (HTTP " +
                             std::to_string(r.status) + " " + r.error_code + ")");
    }
    return client_.http_error(r, what);
  }

  std::chrono::milliseconds retry_budget() const override {
    const AzureOptions& o = client_.options();
    return http::retry_budget(o.max_attempts, o.connect_timeout);
  }

  Result<std::vector<ObjectInfo>> list(std::string_view prefix) override {
    TM_RETURN_IF_ERROR(validate_list_prefix(prefix));
    std::string what = "list prefix " + quoted(prefix);
    std::string full_prefix = client_.root().empty() ? std::string(prefix) : client_.root() + "/" + std::string(prefix);
    size_t strip = client_.root().empty() ? 0 : client_.root().size() + 1;
    std::vector<ObjectInfo> out;
    std::string marker;
    do {
      Request req{.method = "GET",
                  .query = {{"restype", "container"},
                            {"comp", "list"},
                            {"maxresults", std::to_string(client_.options().list_page_size)}}};
      if (!full_prefix.empty()) req.query.emplace_back("prefix", full_prefix);
      if (!marker.empty()) req.query.emplace_back("marker", marker);
      TM_ASSIGN_OR_RETURN(Response r, client_.send(req, what));
      if (r.status != 200) return client_.http_error(r, what);
      TM_RETURN_IF_ERROR(parse_list_page(r.body, strip, out, what));
      std::optional<XmlElement> next = find_element(r.body, "NextMarker");
      marker = next ? http::xml_unescape(next->text) : "";
    } while (!marker.empty());
    std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
    return out;
  }

  Status remove(std::string_view key) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    std::string what = "remove " + quoted(key);
    TM_ASSIGN_OR_RETURN(Response r, (client_.send({.method = "DELETE", .blob = blob(key)}, what)));
    if (r.status == 202 || (r.status == 404 && r.error_code == "BlobNotFound")) return Status::ok();
    return client_.http_error(r, what);
  }

  std::string describe() const override { return client_.describe(); }

 private:
  std::string blob(std::string_view key) const {
    return client_.root().empty() ? std::string(key) : client_.root() + "/" + std::string(key);
  }

  // One Put Blob, or for large objects Put Block per block and a Put Block List commit; the
  // answer that decides the outcome is returned.
  Result<Response> upload(std::string_view key, std::string_view data, bool if_absent, const std::string& what) {
    const AzureOptions& options = client_.options();
    if (data.size() <= options.single_put_limit) {
      return client_.send({.method = "PUT",
                           .blob = blob(key),
                           .headers = {{"x-ms-blob-type", "BlockBlob"}},
                           .body = data,
                           .if_none_match_any = if_absent},
                          what);
    }
    // Uncommitted blocks of concurrent writers to one blob share a namespace: a random
    // per-upload id keeps them apart. Ids of one blob must all have the same length.
    thread_local std::mt19937_64 rng(std::random_device{}());
    char upload_id[17];
    std::snprintf(upload_id, sizeof upload_id, "%016llx", static_cast<unsigned long long>(rng()));
    std::string block_list = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>";
    for (size_t offset = 0, index = 0; offset < data.size(); offset += options.block_size, ++index) {
      char raw[40];
      std::snprintf(raw, sizeof raw, "%s-%08zu", upload_id, index);
      std::string id = base64_encode(raw);
      Request put_block{.method = "PUT",
                        .blob = blob(key),
                        .query = {{"comp", "block"}, {"blockid", id}},
                        .body = data.substr(offset, options.block_size)};
      TM_ASSIGN_OR_RETURN(Response r, client_.send(put_block, what + " (block " + std::to_string(index) + ")"));
      if (r.status != 201) return r;
      block_list += "<Latest>" + id + "</Latest>";
    }
    block_list += "</BlockList>";
    return client_.send({.method = "PUT",
                         .blob = blob(key),
                         .query = {{"comp", "blocklist"}},
                         .body = block_list,
                         .if_none_match_any = if_absent},
                        what + " (block list)");
  }

  Status parse_list_page(std::string_view xml, size_t strip, std::vector<ObjectInfo>& out, std::string_view what) const {
    auto malformed = [&] {
      return Status::io_error(client_.describe() + ": " + std::string(what) + ": malformed List Blobs answer");
    };
    for (size_t pos = xml.find("<Blob>"); pos != std::string_view::npos; pos = xml.find("<Blob>", pos)) {
      size_t end = xml.find("</Blob>", pos);
      if (end == std::string_view::npos) return malformed();
      std::string_view entry = xml.substr(pos, end - pos);
      pos = end;
      std::optional<XmlElement> name = find_element(entry, "Name");
      std::optional<XmlElement> length = find_element(entry, "Content-Length");
      if (!name || !length) return malformed();
      // Names with characters XML cannot carry come percent-encoded.
      bool encoded = name->attributes.find("Encoded=\"true\"") != std::string_view::npos;
      std::string full = encoded ? percent_decode(name->text) : http::xml_unescape(name->text);
      uint64_t size = 0;
      if (std::from_chars(length->text.data(), length->text.data() + length->text.size(), size).ec != std::errc()) {
        return malformed();
      }
      if (full.size() > strip) out.push_back({full.substr(strip), size});
    }
    return Status::ok();
  }

  AzureClient client_;
};

}  // namespace

Result<std::unique_ptr<ObjectStore>> open_azure_store(const AzureOptions& options) {
  TM_ASSIGN_OR_RETURN(AzureClient client, AzureClient::make(options));
  // One cheap List Blobs under the root: proves the endpoint answers, the key is accepted and
  // the container exists, so misconfiguration fails here rather than at the first write.
  Request probe{.method = "GET", .query = {{"restype", "container"}, {"comp", "list"}, {"maxresults", "1"}}};
  if (!client.root().empty()) probe.query.emplace_back("prefix", client.root() + "/");
  TM_ASSIGN_OR_RETURN(Response r, client.send(probe, "open"));
  if (r.status != 200) return client.http_error(r, "open");
  return std::unique_ptr<ObjectStore>(std::make_unique<AzureStore>(std::move(client)));
}

Status create_azure_container(const AzureOptions& options) {
  TM_ASSIGN_OR_RETURN(AzureClient client, AzureClient::make(options));
  std::string what = "create container '" + options.container + "'";
  Request create{.method = "PUT", .query = {{"restype", "container"}}};
  TM_ASSIGN_OR_RETURN(Response r, client.send(create, what));
  if (r.status == 201 || (r.status == 409 && r.error_code == "ContainerAlreadyExists")) return Status::ok();
  return client.http_error(r, what);
}

}  // namespace tidemark::storage
