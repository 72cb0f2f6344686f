// A loopback HTTP/1.1 proxy in front of a test server that injects the faults a client must
// survive: a 503 ServerBusy answer, or a response dropped after the server applied the request
// (connection closed before the answer). Understands only Content-Length bodies, which is all
// libcurl sends for our requests. Test-only; one thread per client connection.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tidemark::storage::testing {

class FlakyProxy {
 public:
  enum class Fault { kNone, kServerBusy, kDropResponse };
  // Called for each request with its head ("PUT /path HTTP/1.1\r\n..."); may be called from
  // several threads at once.
  using Decide = std::function<Fault(const std::string& head)>;

  FlakyProxy(int upstream_port, Decide decide) : upstream_port_(upstream_port), decide_(std::move(decide)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = loopback(0);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(listen_fd_, 16);
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~FlakyProxy() {
    ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
    acceptor_.join();
    ::close(listen_fd_);
    {
      std::lock_guard lock(mu_);
      for (int fd : client_fds_) ::shutdown(fd, SHUT_RDWR);  // wakes recv() in the workers
    }
    for (std::thread& worker : workers_) worker.join();
  }

  int port() const { return port_; }

 private:
  static sockaddr_in loopback(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    return addr;
  }

  void accept_loop() {
    for (;;) {
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      std::lock_guard lock(mu_);
      client_fds_.push_back(fd);
      workers_.emplace_back([this, fd] { serve(fd); });
    }
  }

  static bool send_all(int fd, std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads one request (head and Content-Length body) from `fd`, keeping surplus in `buffer`.
  static bool read_request(int fd, std::string& buffer, std::string& head, std::string& body) {
    char chunk[65536];
    size_t end;
    while ((end = buffer.find("\r\n\r\n")) == std::string::npos) {
      ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) return false;
      buffer.append(chunk, static_cast<size_t>(n));
    }
    head = buffer.substr(0, end + 4);
    size_t length = 0;
    for (size_t pos = head.find("\r\n"); pos != std::string::npos && pos + 2 < head.size();
         pos = head.find("\r\n", pos + 2)) {
      if (strncasecmp(head.c_str() + pos + 2, "content-length:", 15) == 0) length = std::stoul(head.substr(pos + 17));
    }
    while (buffer.size() < end + 4 + length) {
      ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) return false;
      buffer.append(chunk, static_cast<size_t>(n));
    }
    body = buffer.substr(end + 4, length);
    buffer.erase(0, end + 4 + length);
    return true;
  }

  // Forwards the request on a fresh upstream connection ("Connection: close", so the answer
  // ends at EOF) and returns the raw answer; empty on failure.
  std::string forward(std::string head, const std::string& body) const {
    head.insert(head.find("\r\n") + 2, "Connection: close\r\n");
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = loopback(upstream_port_);
    std::string answer;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && send_all(fd, head) &&
        send_all(fd, body)) {
      char chunk[65536];
      for (ssize_t n; (n = ::recv(fd, chunk, sizeof chunk, 0)) > 0;) answer.append(chunk, static_cast<size_t>(n));
    }
    ::close(fd);
    return answer;
  }

  void serve(int fd) {
    std::string buffer, head, body;
    while (read_request(fd, buffer, head, body)) {
      Fault fault = decide_(head);
      if (fault == Fault::kServerBusy) {
        const char* busy =
            "HTTP/1.1 503 Service Unavailable\r\nx-ms-error-code: ServerBusy\r\nContent-Length: 0\r\n\r\n";
        if (!send_all(fd, busy)) break;
        continue;
      }
      std::string answer = forward(head, body);
      if (fault != Fault::kDropResponse) send_all(fd, answer);
      break;  // the answer carried "Connection: close"; a dropped one ends the connection too
    }
    ::shutdown(fd, SHUT_RDWR);
    std::lock_guard lock(mu_);
    std::erase(client_fds_, fd);
    ::close(fd);
  }

  int upstream_port_;
  Decide decide_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> client_fds_;
  std::vector<std::thread> workers_;
};

}  // namespace tidemark::storage::testing
