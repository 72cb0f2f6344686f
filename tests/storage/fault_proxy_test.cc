// The fault proxy itself: forwards requests to a loopback upstream and injects each fault.
#include <curl/curl.h>
#include <gtest/gtest.h>

#include "common/fault_proxy.h"

namespace tidemark::testing {
namespace {

// A tiny HTTP upstream answering every request with its body length, keep-alive, counting
// the requests it has seen (so a dropped response can be told from a request never sent).
class CountingServer {
 public:
  CountingServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 16);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;
        conns_.emplace_back([this, c] {
          std::string buf;
          for (;;) {
            size_t p;
            char tmp[4096];
            while ((p = buf.find("\r\n\r\n")) == std::string::npos) {
              ssize_t n = ::recv(c, tmp, sizeof tmp, 0);
              if (n <= 0) {
                ::close(c);
                return;
              }
              buf.append(tmp, static_cast<size_t>(n));
            }
            size_t body = 0;
            size_t cl = buf.find("Content-Length: ");
            if (cl != std::string::npos && cl < p) body = std::stoul(buf.substr(cl + 16));
            while (buf.size() < p + 4 + body) {
              ssize_t n = ::recv(c, tmp, sizeof tmp, 0);
              if (n <= 0) {
                ::close(c);
                return;
              }
              buf.append(tmp, static_cast<size_t>(n));
            }
            buf.erase(0, p + 4 + body);
            ++seen;
            std::string reply = std::to_string(body);
            std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(reply.size()) + "\r\n\r\n" + reply;
            ::send(c, resp.data(), resp.size(), MSG_NOSIGNAL);
          }
        });
      }
    });
  }
  ~CountingServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
    for (auto& t : conns_) t.detach();
  }
  int port() const { return port_; }
  std::atomic<int> seen{0};

 private:
  int fd_;
  int port_;
  std::thread thread_;
  std::vector<std::thread> conns_;
};

size_t collect(char* p, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, s * n);
  return s * n;
}

struct Reply {
  CURLcode code;
  long status;
  std::string body;
};

Reply put(CURL* h, const std::string& url, const std::string& data) {
  Reply r{};
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, data.data());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(data.size()));
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
  // A new connection per request: libcurl silently re-sends a request whose reused
  // connection was reset, which would hide the injected faults from this test.
  curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
  curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &r.body);
  r.code = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
  return r;
}

TEST(FaultProxy, ForwardsAndInjectsEachFault) {
  CountingServer server;
  using F = FaultProxy::Fault;
  std::vector<F> plan = {F::kNone, F::kServerError, F::kSlowDown, F::kReset, F::kDropResponse, F::kDelay, F::kNone};
  CURL* h = curl_easy_init();
  {
    FaultProxy proxy("127.0.0.1", server.port());
    proxy.set_policy([&](uint64_t n, const std::string&, const std::string&) { return plan[n - 1]; });
    std::string url = proxy.endpoint() + "/obj";
    Reply ok = put(h, url, "hello");
    EXPECT_EQ(ok.code, CURLE_OK);
    EXPECT_EQ(ok.status, 200);
    EXPECT_EQ(ok.body, "5");
    EXPECT_EQ(put(h, url, "x").status, 500);
    EXPECT_EQ(put(h, url, "x").status, 503);
    int before = server.seen;
    EXPECT_NE(put(h, url, "x").code, CURLE_OK);  // reset: never reaches the server
    EXPECT_EQ(server.seen, before);
    EXPECT_NE(put(h, url, "abc").code, CURLE_OK);  // dropped response: the server applied it
    EXPECT_EQ(server.seen, before + 1);
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(put(h, url, std::string(3 << 20, 'z')).body, std::to_string(3 << 20));  // delay + Expect
    EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(300));
    EXPECT_EQ(put(h, url, "done").body, "4");
    EXPECT_EQ(proxy.requests(), plan.size());
    EXPECT_EQ(proxy.faults(), 5u);
  }
  curl_easy_cleanup(h);
}

}  // namespace
}  // namespace tidemark::testing
