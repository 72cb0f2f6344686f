// A loopback HTTP/1.1 fault-injecting proxy for tests of the object-store clients.
//
// Listens on 127.0.0.1 (an ephemeral port), forwards each request to an upstream server on
// loopback, and injects per-request faults chosen by a policy: connection resets before the
// request reaches the server, 500 / 503 SlowDown answers, delays, and the nastiest one — the
// server applies the request (e.g. a PUT) but the client never sees the answer.
// Header-only; one thread per client connection; stops (and joins) in the destructor.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tidemark::testing {

class FaultProxy {
 public:
  enum class Fault { kNone, kReset, kServerError, kSlowDown, kDelay, kDropResponse };
  using Policy = std::function<Fault(uint64_t request_number, const std::string& method, const std::string& target)>;

  FaultProxy(std::string upstream_host, int upstream_port)
      : upstream_host_(std::move(upstream_host)), upstream_port_(upstream_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(listen_fd_, 64);
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~FaultProxy() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    acceptor_.join();
    std::vector<std::thread> workers;
    {
      // Clients may keep idle connections open: wake their workers.
      std::lock_guard<std::mutex> l(mu_);
      for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
      workers.swap(workers_);
    }
    for (auto& t : workers) t.join();
  }

  int port() const { return port_; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void set_policy(Policy p) {
    std::lock_guard<std::mutex> l(mu_);
    policy_ = std::move(p);
  }
  uint64_t requests() const { return requests_; }
  uint64_t faults() const { return faults_; }

 private:
  static bool read_some(int fd, std::string& buf) {
    char tmp[65536];
    ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf.append(tmp, static_cast<size_t>(n));
    return true;
  }
  static bool write_all(int fd, const std::string& s) {
    size_t done = 0;
    while (done < s.size()) {
      ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }
  static std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }
  static std::string header(const std::string& head, const std::string& name) {
    std::string l = lower(head);
    size_t p = l.find("\r\n" + name + ":");
    if (p == std::string::npos) return "";
    p += name.size() + 3;
    size_t e = head.find("\r\n", p);
    std::string v = head.substr(p, e - p);
    v.erase(0, v.find_first_not_of(' '));
    return v;
  }
  // Reads one message head (up to and including CRLFCRLF) from fd into `head`; `buf` holds
  // bytes already read past earlier messages.
  static bool read_head(int fd, std::string& buf, std::string& head) {
    size_t p;
    while ((p = buf.find("\r\n\r\n")) == std::string::npos)
      if (!read_some(fd, buf)) return false;
    head = buf.substr(0, p + 4);
    buf.erase(0, p + 4);
    return true;
  }
  static bool read_exact(int fd, std::string& buf, size_t n, std::string& out) {
    while (buf.size() < n)
      if (!read_some(fd, buf)) return false;
    out.append(buf, 0, n);
    buf.erase(0, n);
    return true;
  }
  // Reads a response body according to its framing; appends the raw bytes to `out`.
  static bool read_body(int fd, std::string& buf, const std::string& head, bool no_body, std::string& out) {
    if (no_body) return true;
    if (lower(header(head, "transfer-encoding")).find("chunked") != std::string::npos) {
      for (;;) {
        size_t p;
        while ((p = buf.find("\r\n")) == std::string::npos)
          if (!read_some(fd, buf)) return false;
        size_t size = std::stoul(buf.substr(0, p), nullptr, 16);
        out.append(buf, 0, p + 2);
        buf.erase(0, p + 2);
        if (size == 0) {
          for (;;) {  // trailers, then the empty line
            while ((p = buf.find("\r\n")) == std::string::npos)
              if (!read_some(fd, buf)) return false;
            out.append(buf, 0, p + 2);
            buf.erase(0, p + 2);
            if (p == 0) return true;
          }
        }
        if (!read_exact(fd, buf, size + 2, out)) return false;
      }
    }
    std::string cl = header(head, "content-length");
    if (cl.empty()) return true;
    return read_exact(fd, buf, std::stoul(cl), out);
  }

  int connect_upstream() const {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(upstream_port_));
    ::inet_pton(AF_INET, upstream_host_.c_str(), &a.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  // Makes the coming close() send a TCP reset.
  static void arm_reset(int fd) {
    linger lg{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }

  void accept_loop() {
    while (!stop_) {
      int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      std::lock_guard<std::mutex> l(mu_);
      open_fds_.push_back(c);
      workers_.emplace_back([this, c] { serve(c); });
    }
  }

  void serve(int client) {
    std::string cbuf, ubuf;
    int up = -1;
    for (;;) {
      std::string head, body;
      if (!read_head(client, cbuf, head)) break;
      std::string cl = header(head, "content-length");
      bool expect = lower(header(head, "expect")) == "100-continue";
      if (expect) {
        if (!write_all(client, "HTTP/1.1 100 Continue\r\n\r\n")) break;
        size_t p = lower(head).find("\r\nexpect:");
        head.erase(p, head.find("\r\n", p + 2) - p);
      }
      if (!cl.empty() && !read_exact(client, cbuf, std::stoul(cl), body)) break;
      std::string method = head.substr(0, head.find(' '));
      std::string target = head.substr(method.size() + 1, head.find(' ', method.size() + 1) - method.size() - 1);
      Fault f;
      {
        std::lock_guard<std::mutex> l(mu_);
        f = policy_ ? policy_(++requests_, method, target) : (++requests_, Fault::kNone);
      }
      if (f != Fault::kNone) ++faults_;
      if (f == Fault::kReset) {
        arm_reset(client);
        break;
      }
      if (f == Fault::kServerError || f == Fault::kSlowDown) {
        std::string code = f == Fault::kServerError ? "500 Internal Server Error" : "503 Slow Down";
        std::string xml = f == Fault::kServerError ? "<Error><Code>InternalError</Code></Error>"
                                                   : "<Error><Code>SlowDown</Code></Error>";
        if (!write_all(client, "HTTP/1.1 " + code + "\r\nContent-Type: application/xml\r\nContent-Length: " +
                                   std::to_string(xml.size()) + "\r\n\r\n" + xml))
          break;
        continue;
      }
      if (f == Fault::kDelay) std::this_thread::sleep_for(std::chrono::milliseconds(300));
      if (up < 0 && (up = connect_upstream()) < 0) {
        arm_reset(client);
        break;
      }
      std::string rhead, rbody;
      if (!write_all(up, head + body) || !read_head(up, ubuf, rhead)) break;
      int status = std::atoi(rhead.c_str() + 9);
      bool no_body = method == "HEAD" || status == 204 || status == 304 || (status >= 100 && status < 200);
      if (!read_body(up, ubuf, rhead, no_body, rbody)) break;
      if (f == Fault::kDropResponse) {  // the server applied it; the client never hears
        arm_reset(client);
        break;
      }
      if (!write_all(client, rhead + rbody)) break;
    }
    if (up >= 0) ::close(up);
    std::lock_guard<std::mutex> l(mu_);
    open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), client), open_fds_.end());
    ::close(client);
  }

  std::string upstream_host_;
  int upstream_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> workers_;
  std::vector<int> open_fds_;
  Policy policy_;
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> faults_{0};
};

}  // namespace tidemark::testing
