#include "storage/s3_store.h"
#include "storage/http_util.h"

#include <curl/curl.h>
#include <openssl/sha.h>
#include <strings.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cctype>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "tidemark/persistence.h"

namespace tidemark::storage {
namespace {

constexpr size_t kMultipartThreshold = 16u << 20;
constexpr size_t kPartSize = 8u << 20;
constexpr size_t kMaxSinglePut = size_t{5} << 30;  // S3's limit for one PUT

std::string hex_sha256(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : digest) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

// RFC 3986 percent-encoding as SigV4 canonicalizes it (uppercase hex); '/' kept in paths only.
std::string uri_encode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}


// The text of the first <tag>...</tag> at or after `from` (S3's XML has no attributes on the
// elements read here); `pos` receives the index after the closing tag.
std::optional<std::string_view> xml_element(std::string_view xml, std::string_view tag, size_t from = 0,
                                            size_t* pos = nullptr) {
  std::string open = "<" + std::string(tag) + ">";
  std::string close = "</" + std::string(tag) + ">";
  size_t start = xml.find(open, from);
  if (start == std::string_view::npos) return std::nullopt;
  start += open.size();
  size_t end = xml.find(close, start);
  if (end == std::string_view::npos) return std::nullopt;
  if (pos) *pos = end + close.size();
  return xml.substr(start, end - start);
}

bool is_ip_or_localhost(std::string_view host) {
  if (host == "localhost" || (!host.empty() && host.front() == '[')) return true;
  return !host.empty() && std::all_of(host.begin(), host.end(), [](char c) { return std::isdigit(c) || c == '.'; });
}

void replace_all(std::string& s, std::string_view what, std::string_view with) {
  if (what.empty()) return;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + with.size())) {
    s.replace(at, what.size(), with);
  }
}

std::once_flag curl_init_once;

// One easy handle per thread: libcurl keeps the thread's connections alive inside it.
struct ThreadCurl {
  CURL* handle = nullptr;
  ThreadCurl() { handle = curl_easy_init(); }
  ~ThreadCurl() { curl_easy_cleanup(handle); }
};

CURL* thread_curl() {
  std::call_once(curl_init_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  thread_local ThreadCurl curl;
  return curl.handle;
}


struct Request {
  const char* method = "GET";  // GET, PUT, POST, DELETE
  std::string key = {};  // full object key inside the bucket; empty for bucket requests
  std::vector<std::pair<std::string, std::string>> query = {};
  std::string_view body = {};
  std::vector<std::string> headers = {};  // extra, e.g. "If-None-Match: *"
  const char* content_type = "application/octet-stream";
  Deadline deadline = {};  // no retry (and no attempt) past it
};

struct Response {
  long status = 0;
  std::string body;
  std::string etag;

  std::string error_code() const {
    auto code = xml_element(body, "Code");
    return code ? std::string(*code) : std::string();
  }
};

size_t append_body(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

size_t capture_etag(char* data, size_t size, size_t n, void* out) {
  std::string_view line(data, size * n);
  if (line.size() > 5 && strncasecmp(line.data(), "etag:", 5) == 0) {
    line.remove_prefix(5);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n' || line.back() == ' ')) line.remove_suffix(1);
    *static_cast<std::string*>(out) = std::string(line);
  }
  return size * n;
}

bool retryable_curl_error(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
      return true;
    default:
      return false;
  }
}

class S3Store final : public ObjectStore {
 public:
  explicit S3Store(S3Options options) : o_(std::move(options)) {
    std::string scheme_host = o_.endpoint;
    size_t scheme_end = scheme_host.find("://") + 3;
    std::string host = scheme_host.substr(scheme_end);
    std::string bare_host = host.substr(0, host.rfind(':') == std::string::npos || host.front() == '[' ? host.size()
                                                                                                     : host.rfind(':'));
    if (o_.path_style || is_ip_or_localhost(bare_host)) {
      bucket_url_ = scheme_host + "/" + uri_encode(o_.bucket, false);
    } else {
      bucket_url_ = scheme_host.substr(0, scheme_end) + o_.bucket + "." + host;
    }
    sigv4_ = "aws:amz:" + o_.region + ":s3";
  }

  std::string describe() const override {
    return "s3://" + o_.bucket + (o_.prefix.empty() ? "" : "/" + o_.prefix) + " (" + o_.endpoint + ")";
  }

  // The start-up check: one cheap authenticated request against the bucket.
  Status check_bucket() {
    Request req;
    req.query = {{"list-type", "2"}, {"max-keys", "1"}, {"prefix", full_key("")}};
    TM_ASSIGN_OR_RETURN(Response resp, execute(req));
    if (resp.status != 200) return error_from("open", "", resp);
    return Status::ok();
  }

  Status create_bucket() {
    std::string body;
    if (o_.region != "us-east-1") {
      body = "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>" +
             o_.region + "</LocationConstraint></CreateBucketConfiguration>";
    }
    Request req{.method = "PUT", .body = body, .content_type = "application/xml"};
    TM_ASSIGN_OR_RETURN(Response resp, execute(req));
    if (resp.status == 200 || resp.error_code() == "BucketAlreadyOwnedByYou") return Status::ok();
    return error_from("create bucket", "", resp);
  }

  Result<std::string> get(std::string_view key) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    Request req{.method = "GET", .key = full_key(key)};
    TM_ASSIGN_OR_RETURN(Response resp, execute(req));
    if (resp.status == 200) return std::move(resp.body);
    return error_from("GET", key, resp);
  }

  Status put(std::string_view key, std::string_view data) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    if (data.size() > kMultipartThreshold) return put_multipart(key, data);
    Request req{.method = "PUT", .key = full_key(key), .body = data};
    TM_ASSIGN_OR_RETURN(Response resp, execute(req));
    if (resp.status == 200) return Status::ok();
    return error_from("PUT", key, resp);
  }

  Status put_if_absent(std::string_view key, std::string_view data) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    if (data.size() > kMaxSinglePut) {
      return Status::invalid_argument("put_if_absent of " + std::to_string(data.size()) + " bytes to '" +
                                      std::string(key) + "' in " + describe() + ": larger than S3's 5 GiB single PUT");
    }
    Request req{.method = "PUT", .key = full_key(key), .body = data, .headers = {"If-None-Match: *"}};
    TM_ASSIGN_OR_RETURN(Response resp, execute(req));
    if (resp.status == 200) return Status::ok();
    if (resp.status == 412) {
      // Our own earlier attempt may have created the object before its answer was lost: that
      // is a success exactly when the stored bytes are ours. Checked on every 412, not only
      // after our own retries: libcurl silently resends a request whose reused connection
      // died before an answer, so the 412 may answer our own resent request.
      Result<std::string> stored = get(key);
      if (stored.is_ok() && *stored == data) return Status::ok();
      return Status::already_exists("object '" + std::string(key) + "' already exists in " + describe());
    }
    return error_from("conditional PUT", key, resp);
  }

  Result<VersionedObject> get_versioned(std::string_view key, Deadline deadline) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    Request req{.method = "GET", .key = full_key(key), .deadline = deadline};
    TM_ASSIGN_OR_RETURN(Response resp, execute(req));
    if (resp.status == 200) {
      if (resp.etag.empty()) return Status::io_error("GET '" + std::string(key) + "' in " + describe() + ": answer without an ETag");
      return VersionedObject{std::move(resp.body), std::move(resp.etag)};
    }
    return error_from("GET", key, resp);
  }

  Result<std::string> put_if_version(std::string_view key, std::string_view data, std::string_view expected,
                                     Deadline deadline) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    if (data.size() > kMultipartThreshold)
      return Status::invalid_argument("conditional PUT of " + std::to_string(data.size()) + " bytes to '" +
                                      std::string(key) + "' in " + describe() + ": limited to single-request objects");
    // ETags are quoted; AWS matches If-Match with the quotes, Ceph RGW only without them. The
    // quoted form goes first; when the server refuses it although the object still has the
    // expected ETag, the same condition is sent unquoted.
    std::string unquoted(expected);
    if (unquoted.size() >= 2 && unquoted.front() == '"' && unquoted.back() == '"') unquoted = unquoted.substr(1, unquoted.size() - 2);
    Response resp;
    for (const std::string& condition : {std::string(expected), unquoted}) {
      Request req{.method = "PUT", .key = full_key(key), .body = data, .headers = {"If-Match: " + condition},
                  .deadline = deadline};
      TM_ASSIGN_OR_RETURN(resp, execute(req));
      if (resp.status == 200) {
        if (resp.etag.empty())
          return Status::io_error("conditional PUT '" + std::string(key) + "' in " + describe() + ": answer without an ETag");
        return std::move(resp.etag);
      }
      if (resp.status != 412 && resp.status != 404) return error_from("conditional PUT", key, resp);
      // Our own earlier attempt (a retry, or libcurl's silent resend) may have landed first.
      Result<VersionedObject> stored = get_versioned(key, deadline);
      if (stored.is_ok() && stored->data == data) return std::move(stored->version);
      if (!stored.is_ok() || stored->version != expected || condition == unquoted) break;
    }
    if (resp.status == 412 || resp.status == 404) {
      return Status::aborted("object '" + std::string(key) + "' in " + describe() + " changed (HTTP " +
                             std::to_string(resp.status) + " on a conditional PUT)");
    }
    return error_from("conditional PUT", key, resp);
  }

  std::chrono::milliseconds retry_budget() const override {
    return http::retry_budget(o_.max_attempts, std::chrono::milliseconds(5000));
  }

  Result<std::vector<ObjectInfo>> list(std::string_view prefix) override {
    TM_RETURN_IF_ERROR(validate_list_prefix(prefix));
    std::vector<ObjectInfo> out;
    const size_t root_len = o_.prefix.empty() ? 0 : o_.prefix.size() + 1;
    std::string token;
    while (true) {
      Request req;
      req.query = {{"list-type", "2"}, {"max-keys", std::to_string(o_.list_page_size)}, {"prefix", full_key(prefix)}};
      if (!token.empty()) req.query.emplace_back("continuation-token", token);
      TM_ASSIGN_OR_RETURN(Response resp, execute(req));
      if (resp.status != 200) return error_from("list", prefix, resp);
      size_t pos = 0;
      while (auto contents = xml_element(resp.body, "Contents", pos, &pos)) {
        auto key = xml_element(*contents, "Key");
        auto size = xml_element(*contents, "Size");
        if (!key || !size) return Status::io_error("list '" + std::string(prefix) + "' in " + describe() +
                                                   ": malformed ListObjectsV2 answer (Contents without Key or Size)");
        std::string full = http::xml_unescape(*key);
        if (full.size() < root_len) continue;
        out.push_back({full.substr(root_len), std::strtoull(std::string(*size).c_str(), nullptr, 10)});
      }
      auto truncated = xml_element(resp.body, "IsTruncated");
      auto next = xml_element(resp.body, "NextContinuationToken");
      if (!truncated || *truncated != "true") break;
      if (!next || next->empty()) {
        return Status::io_error("list '" + std::string(prefix) + "' in " + describe() +
                                ": truncated ListObjectsV2 answer without a continuation token");
      }
      token = http::xml_unescape(*next);
    }
    std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
    return out;
  }

  Status remove(std::string_view key) override {
    TM_RETURN_IF_ERROR(validate_object_key(key));
    Request req{.method = "DELETE", .key = full_key(key)};
    TM_ASSIGN_OR_RETURN(Response resp, execute(req));
    if (resp.status == 200 || resp.status == 204) return Status::ok();
    if (resp.status == 404 && resp.error_code() != "NoSuchBucket") return Status::ok();
    return error_from("DELETE", key, resp);
  }

 private:
  std::string full_key(std::string_view key) const {
    if (o_.prefix.empty()) return std::string(key);
    return o_.prefix + "/" + std::string(key);
  }

  Status put_multipart(std::string_view key, std::string_view data) {
    const std::string object = full_key(key);
    Request start{.method = "POST", .key = object, .query = {{"uploads", ""}}};
    TM_ASSIGN_OR_RETURN(Response started, execute(start));
    auto upload_id = xml_element(started.body, "UploadId");
    if (started.status != 200 || !upload_id) return error_from("start multipart upload", key, started);
    const std::string id = http::xml_unescape(*upload_id);

    Status st = upload_parts(key, object, id, data);
    if (!st.is_ok()) {
      // Best effort: an upload left behind costs storage but is never visible as an object.
      Request abort{.method = "DELETE", .key = object, .query = {{"uploadId", id}}};
      (void)execute(abort);
    }
    return st;
  }

  Status upload_parts(std::string_view key, const std::string& object, const std::string& id, std::string_view data) {
    std::string complete = "<CompleteMultipartUpload>";
    for (size_t offset = 0, part = 1; offset < data.size(); offset += kPartSize, ++part) {
      Request req{.method = "PUT",
                  .key = object,
                  .query = {{"partNumber", std::to_string(part)}, {"uploadId", id}},
                  .body = data.substr(offset, kPartSize)};
      TM_ASSIGN_OR_RETURN(Response resp, execute(req));
      if (resp.status != 200 || resp.etag.empty()) return error_from("upload part " + std::to_string(part), key, resp);
      complete += "<Part><PartNumber>" + std::to_string(part) + "</PartNumber><ETag>" + resp.etag + "</ETag></Part>";
    }
    complete += "</CompleteMultipartUpload>";
    Request req{.method = "POST", .key = object, .query = {{"uploadId", id}}, .body = complete,
                .content_type = "application/xml"};
    TM_ASSIGN_OR_RETURN(Response resp, execute(req));
    // CompleteMultipartUpload can fail after answering 200: the error is then in the body.
    if (resp.status != 200 || resp.body.find("<Error>") != std::string::npos) {
      if (resp.status == 200) resp.status = 500;
      return error_from("complete multipart upload", key, resp);
    }
    return Status::ok();
  }

  std::string url(const Request& req) const {
    std::string u = bucket_url_ + "/" + uri_encode(req.key, true);
    // SigV4 signs the query exactly as sent: sorted by name, each part encoded once, and a
    // trailing '=' on parameters without a value.
    auto query = req.query;
    std::sort(query.begin(), query.end());
    for (size_t i = 0; i < query.size(); ++i) {
      u += i == 0 ? '?' : '&';
      u += uri_encode(query[i].first, false) + "=" + uri_encode(query[i].second, false);
    }
    return u;
  }

  // Sends `req`, retrying transient failures. A Response is returned for any HTTP answer that is
  // not retried (or the last one); a Status only when no answer came.
  Result<Response> execute(const Request& req) {
    CURL* curl = thread_curl();
    if (curl == nullptr) return Status::internal("curl_easy_init failed for " + describe());
    const std::string target = url(req);
    const std::string payload_hash = hex_sha256(req.body);
    Response resp;
    std::string last_error;
    int attempts = 0;
    for (int attempt = 0; attempt < std::max(1, o_.max_attempts); ++attempt) {
      if (attempt > 0) {
        auto pause = http::retry_backoff(attempt);
        if (req.deadline.is_set() && std::chrono::steady_clock::now() + pause >= req.deadline.at) {
          if (last_error.empty()) return resp;
          break;
        }
        std::this_thread::sleep_for(pause);
      }
      ++attempts;
      curl_easy_reset(curl);  // keeps the connection cache
      struct curl_slist* headers = nullptr;
      headers = curl_slist_append(headers, ("x-amz-content-sha256: " + payload_hash).c_str());
      if (!o_.session_token.empty()) {
        headers = curl_slist_append(headers, ("x-amz-security-token: " + o_.session_token).c_str());
      }
      for (const std::string& h : req.headers) headers = curl_slist_append(headers, h.c_str());
      const bool has_body = std::string_view(req.method) == "PUT" || std::string_view(req.method) == "POST";
      if (has_body) headers = curl_slist_append(headers, (std::string("Content-Type: ") + req.content_type).c_str());

      char errbuf[CURL_ERROR_SIZE] = {0};
      resp.body.clear();
      resp.etag.clear();
      curl_easy_setopt(curl, CURLOPT_URL, target.c_str());
      curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
      curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
      curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, sigv4_.c_str());
      curl_easy_setopt(curl, CURLOPT_USERNAME, o_.access_key.c_str());
      curl_easy_setopt(curl, CURLOPT_PASSWORD, o_.secret_key.c_str());
      curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
      curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
      curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, append_body);
      curl_easy_setopt(curl, CURLOPT_WRITEDATA, &resp.body);
      curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, capture_etag);
      curl_easy_setopt(curl, CURLOPT_HEADERDATA, &resp.etag);
      curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
      // A stalled transfer (under 1 KiB/s for 30 s) counts as a timeout and is retried.
      curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
      curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 30L);
      if (req.deadline.is_set()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(req.deadline.at - std::chrono::steady_clock::now());
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(std::max<int64_t>(1, left.count())));
      }
      if (has_body) {
        // POSTFIELDS sends a real Content-Length (S3 refuses chunked uploads) and is resent as
        // is on a retry; CUSTOMREQUEST turns the POST into a PUT where needed.
        curl_easy_setopt(curl, CURLOPT_POST, 1L);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req.body.data());
      }
      if (std::string_view(req.method) != "GET" && std::string_view(req.method) != "POST") {
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req.method);
      }
      CURLcode rc = curl_easy_perform(curl);
      curl_slist_free_all(headers);
      if (rc != CURLE_OK) {
        last_error = std::string(curl_easy_strerror(rc)) + (errbuf[0] ? std::string(" (") + errbuf + ")" : "");
        if (!retryable_curl_error(rc)) break;
        continue;
      }
      curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp.status);
      last_error.clear();
      const bool conflict = resp.status == 409 && resp.error_code() == "ConditionalRequestConflict";
      if (resp.status < 500 && !conflict) return resp;
    }
    if (last_error.empty()) return resp;  // the last retryable HTTP answer; the caller reports it
    std::string msg = std::string(req.method) + " " + target_name(req.key) + " at " + o_.endpoint + " failed after " +
                      std::to_string(attempts) + (attempts == 1 ? " attempt: " : " attempts: ") + last_error;
    return Status::io_error(scrub(std::move(msg)));
  }

  std::string target_name(std::string_view full) const {
    return "s3://" + o_.bucket + (full.empty() ? "" : "/" + std::string(full));
  }

  // Credentials must never leak into messages, even if a server echoes them.
  std::string scrub(std::string msg) const {
    replace_all(msg, o_.secret_key, "<secret>");
    replace_all(msg, o_.session_token, "<session token>");
    return msg;
  }

  Status error_from(const std::string& op, std::string_view key, const Response& resp) const {
    const std::string code = resp.error_code();
    auto server_message = xml_element(resp.body, "Message");
    std::string what = key.empty() ? "bucket " + target_name("") + (o_.prefix.empty() ? "" : " prefix '" + o_.prefix + "'")
                                   : "'" + std::string(key) + "' (" + target_name(full_key(key)) + ")";
    std::string msg = op + " " + what + " at " + o_.endpoint + ": HTTP " + std::to_string(resp.status) +
                      (code.empty() ? "" : " " + code);
    if (server_message && !server_message->empty()) msg += ": " + http::xml_unescape(server_message->substr(0, 300));
    if (code == "NoSuchKey" || (resp.status == 404 && code.empty() && !key.empty())) {
      return Status::not_found(scrub("object not found: " + msg));
    }
    if (code == "NoSuchBucket") {
      return Status::failed_precondition(scrub(msg + " (bucket '" + o_.bucket + "' does not exist)"));
    }
    if (resp.status == 403) {
      return Status::failed_precondition(scrub(msg + " (check the access key, secret key and region)"));
    }
    if (resp.status == 400) return Status::invalid_argument(scrub(msg));
    if (resp.status >= 500) return Status::io_error(scrub(msg + " (after " + std::to_string(o_.max_attempts) + " attempts)"));
    return Status::io_error(scrub(msg));
  }

  S3Options o_;
  std::string bucket_url_;
  std::string sigv4_;
};

Result<S3Options> normalized(S3Options o) {
  if (o.region.empty()) o.region = "us-east-1";
  if (o.endpoint.empty()) o.endpoint = "https://s3." + o.region + ".amazonaws.com";
  while (!o.endpoint.empty() && o.endpoint.back() == '/') o.endpoint.pop_back();
  while (!o.prefix.empty() && o.prefix.front() == '/') o.prefix.erase(0, 1);
  while (!o.prefix.empty() && o.prefix.back() == '/') o.prefix.pop_back();
  const bool http = o.endpoint.starts_with("http://"), https = o.endpoint.starts_with("https://");
  if (!http && !https) {
    return Status::invalid_argument("S3 endpoint '" + o.endpoint + "' must start with http:// or https://");
  }
  if (o.endpoint.find('/', http ? 7 : 8) != std::string::npos || o.endpoint.size() <= (http ? 7u : 8u)) {
    return Status::invalid_argument("S3 endpoint '" + o.endpoint + "' must be scheme://host[:port] without a path");
  }
  if (o.bucket.empty() || o.bucket.find('/') != std::string::npos) {
    return Status::invalid_argument("S3 bucket name '" + o.bucket + "' is empty or contains '/'");
  }
  if (!o.prefix.empty()) {
    Status st = validate_list_prefix(o.prefix + "/");
    if (!st.is_ok()) return Status::invalid_argument("S3 prefix '" + o.prefix + "' is not a valid path: " + st.message());
  }
  if (o.list_page_size < 1 || o.list_page_size > 1000) {
    return Status::invalid_argument("S3 list_page_size must be in 1..1000, got " + std::to_string(o.list_page_size));
  }
  return o;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

Result<std::unique_ptr<ObjectStore>> open_s3_store(const S3Options& options) {
  TM_ASSIGN_OR_RETURN(S3Options o, normalized(options));
  auto store = std::make_unique<S3Store>(std::move(o));
  TM_RETURN_IF_ERROR(store->check_bucket());
  return std::unique_ptr<ObjectStore>(std::move(store));
}

Status create_s3_bucket(const S3Options& options) {
  TM_ASSIGN_OR_RETURN(S3Options o, normalized(options));
  return S3Store(std::move(o)).create_bucket();
}

Result<std::pair<std::string, std::string>> parse_s3_url(std::string_view url) {
  if (!url.starts_with("s3://")) return Status::invalid_argument("'" + std::string(url) + "' is not an s3://bucket/path URL");
  std::string_view rest = url.substr(5);
  size_t slash = rest.find('/');
  std::string bucket(rest.substr(0, slash));
  if (bucket.empty()) return Status::invalid_argument("S3 URL '" + std::string(url) + "' names no bucket");
  std::string prefix(slash == std::string_view::npos ? "" : rest.substr(slash + 1));
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  return std::make_pair(std::move(bucket), std::move(prefix));
}

Result<S3Options> s3_options_from_settings(const persistence::AwsS3Settings& settings, std::string root_path) {
  S3Options o;
  o.bucket = settings.bucket_name;
  o.prefix = std::move(root_path);
  if (o.prefix.starts_with("s3://")) {
    TM_ASSIGN_OR_RETURN(auto parsed, parse_s3_url(o.prefix));
    if (!o.bucket.empty() && o.bucket != parsed.first) {
      return Status::invalid_argument("S3 root path '" + o.prefix + "' names bucket '" + parsed.first +
                                      "' but the settings name bucket '" + o.bucket + "'");
    }
    o.bucket = parsed.first;
    o.prefix = parsed.second;
  }
  if (o.bucket.empty()) return Status::invalid_argument("no S3 bucket: set bucket_name or use an s3://bucket/path root");
  o.access_key = settings.access_key;
  o.secret_key = settings.secret_access_key;
  o.session_token = settings.session_token;
  if (o.access_key.empty() && o.secret_key.empty()) {
    // A session token only belongs to the keys it was issued with.
    o.access_key = env("AWS_ACCESS_KEY_ID");
    o.secret_key = env("AWS_SECRET_ACCESS_KEY");
    if (o.session_token.empty()) o.session_token = env("AWS_SESSION_TOKEN");
  }
  if (o.access_key.empty() || o.secret_key.empty()) {
    return Status::invalid_argument("no S3 credentials for bucket '" + o.bucket +
                                    "': set access_key and secret_access_key, or AWS_ACCESS_KEY_ID and "
                                    "AWS_SECRET_ACCESS_KEY");
  }
  o.region = settings.region;
  if (o.region.empty()) o.region = env("AWS_REGION");
  if (o.region.empty()) o.region = env("AWS_DEFAULT_REGION");
  if (o.region.empty()) o.region = "us-east-1";
  o.endpoint = settings.endpoint.empty() ? env("AWS_ENDPOINT_URL") : settings.endpoint;
  o.path_style = settings.with_path_style;
  return normalized(std::move(o));
}

}  // namespace tidemark::storage
