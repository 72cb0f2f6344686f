// The S3 backend of ObjectStore: any S3-compatible service (AWS S3, Ceph RGW), spoken over
// libcurl with its built-in SigV4 signing.
//
// Objects live under `prefix` inside `bucket`: key "a/b" is stored as "<prefix>/a/b".
// put() uploads objects up to 16 MiB in one PUT and larger ones as a multipart upload with
// 8 MiB parts (aborted on failure, so no half-written object ever becomes visible).
// put_if_absent() is a single conditional PUT (`If-None-Match: *`), so it is limited to 5 GiB.
// Transient failures (5xx, SlowDown, timeouts, refused or reset connections) are retried with
// exponential backoff and jitter; 4xx answers are not, except 409 ConditionalRequestConflict.
//
// Errors: NotFound (missing object), AlreadyExists (put_if_absent lost), FailedPrecondition
// (credentials rejected, bucket missing), InvalidArgument (bad key or options, 400 answers),
// IoError (network, other answers, retries exhausted). Messages name the operation, endpoint,
// bucket, key, HTTP status and the server's error <Code>; they never contain the secret key or
// the session token.
//
// Thread-safe: each thread reuses its own libcurl handle (and so its connections).
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "storage/object_store.h"
#include "tidemark/status.h"

namespace tidemark::persistence {
struct AwsS3Settings;  // include/tidemark/persistence.h; only the .cc needs its definition
}

namespace tidemark::storage {

struct S3Options {
  // "http://127.0.0.1:7480"; empty means https://s3.<region>.amazonaws.com.
  std::string endpoint;
  std::string region = "us-east-1";
  std::string bucket;
  // Root inside the bucket, without leading or trailing '/'; empty means the bucket's root.
  std::string prefix;
  std::string access_key;
  std::string secret_key;
  std::string session_token;  // temporary credentials only
  // URLs as <endpoint>/<bucket>/<key> instead of <bucket>.<endpoint host>/<key>. Always used
  // when the endpoint host is an IP address or "localhost" (no per-bucket host name exists).
  bool path_style = false;
  // ListObjectsV2 max-keys per page (S3 caps it at 1000); tests lower it to exercise paging.
  int list_page_size = 1000;
  // Attempts per request, including the first; tests lower it to fail fast.
  int max_attempts = 6;
};

// Opens the store and checks at once that the endpoint answers, the credentials are accepted
// and the bucket exists (one ListObjectsV2 with max-keys=1), so misconfiguration is reported
// here rather than at the first write.
Result<std::unique_ptr<ObjectStore>> open_s3_store(const S3Options& options);

// Creates `options.bucket` (in `options.region`); OK if this account already owns it. For tests
// and setup tools: the store itself never creates buckets.
Status create_s3_bucket(const S3Options& options);

// Options from the persistence settings. `root_path` is either a path inside the bucket
// ("state/job1") or a URL "s3://bucket/state/job1" (its bucket must match bucket_name if that is
// set). Unset fields come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN (only
// with keys from the environment), AWS_REGION or AWS_DEFAULT_REGION (else us-east-1) and
// AWS_ENDPOINT_URL. InvalidArgument when the bucket or the credentials are missing.
Result<S3Options> s3_options_from_settings(const persistence::AwsS3Settings& settings, std::string root_path);

// "s3://bucket/some/prefix/" -> {"bucket", "some/prefix"}. InvalidArgument naming the URL when
// it does not start with s3:// or has no bucket.
Result<std::pair<std::string, std::string>> parse_s3_url(std::string_view url);

}  // namespace tidemark::storage
