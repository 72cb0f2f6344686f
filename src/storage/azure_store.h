// ObjectStore backed by Azure Blob Storage (or the Azurite emulator), over the REST API with
// Shared Key authorization. libcurl does the HTTP, OpenSSL the HMAC-SHA256 and base64.
//
// Layout: the object "k" is the block blob "<prefix>/k" in `container` ("k" when prefix is
// empty). Objects up to `single_put_limit` bytes are one Put Blob; larger ones are staged with
// Put Block and committed with Put Block List, so readers still see old or new, never a mix.
// put_if_absent sends If-None-Match: * (on Put Blob, or on the Put Block List commit).
//
// Failures: 5xx answers (e.g. 503 ServerBusy), timeouts and connection failures are retried
// with exponential backoff and jitter (50 ms, x2, at most 2 s apart, up to `max_attempts`
// attempts); 4xx answers are not. Error messages name the store (describe()), the operation,
// the key, the HTTP status and the server's error code (x-ms-error-code) — never the account
// key. Thread-safe: each thread reuses its own curl handle (and so its connections).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "storage/object_store.h"

namespace tidemark::storage {

struct AzureOptions {
  // Blob service URL including the account for path-style endpoints, e.g.
  // "http://127.0.0.1:10000/devstoreaccount1" (Azurite). Empty means
  // "https://<account>.blob.core.windows.net".
  std::string endpoint;
  std::string account;
  std::string key;        // base64 Shared Key; never appears in messages or describe()
  std::string container;  // must exist (see create_azure_container)
  std::string prefix;     // root path inside the container; leading/trailing '/' are ignored

  // Tuning; the defaults suit production, tests lower them to exercise the code paths cheaply.
  int list_page_size = 5000;                // maxresults per List Blobs request (1..5000)
  size_t single_put_limit = 16 << 20;       // larger objects go as blocks
  size_t block_size = 8 << 20;              // bytes per Put Block
  int max_attempts = 6;                     // per request, including the first
  std::chrono::milliseconds connect_timeout{5000};
};

// Opens the store and checks, with one List Blobs request, that the endpoint answers, the key
// is accepted and the container exists; otherwise returns that error right away
// (InvalidArgument for bad options, NotFound for a missing container, IoError otherwise).
Result<std::unique_ptr<ObjectStore>> open_azure_store(const AzureOptions& options);

// Creates `options.container`; OK if it already exists. For tests and set-up scripts.
Status create_azure_container(const AzureOptions& options);

}  // namespace tidemark::storage
