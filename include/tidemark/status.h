// Errors as values at I/O and storage boundaries.
//
// Status carries a code and a human-readable message that names what failed (file, line, key,
// endpoint) and, where possible, what the user can do. Result<T> holds either a T or a non-OK
// Status. Both are [[nodiscard]]: ignoring an error is a compile-time warning.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace tidemark {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // bad user input: malformed row, wrong type, bad flag
  kNotFound,         // a file, object or key does not exist
  kAlreadyExists,    // create-if-absent found an existing object
  kIoError,          // the operating system or the network failed
  kCorruption,       // stored data is damaged (checksum mismatch, bad magic)
  kNotSupported,     // e.g. a newer on-disk format version
  kFailedPrecondition,  // state does not allow the operation (e.g. storage locked)
  kInternal,
  kCancelled,
  kAborted,          // a conditional write lost to a concurrent writer (compare-and-swap)
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return {}; }
  static Status invalid_argument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status not_found(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status already_exists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
  static Status io_error(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
  static Status corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
  static Status not_supported(std::string m) { return {StatusCode::kNotSupported, std::move(m)}; }
  static Status failed_precondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
  static Status internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  static Status cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
  static Status aborted(std::string m) { return {StatusCode::kAborted, std::move(m)}; }

  bool is_ok() const { return code_ == StatusCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "IoError: <message>"
  std::string to_string() const;
  // Returns a copy whose message is prefixed with `context: `.
  Status with_context(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).is_ok()); }  // NOLINT

  bool is_ok() const { return v_.index() == 0; }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const {
    static const Status kOk;
    return is_ok() ? kOk : std::get<1>(v_);
  }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace tidemark

#define TM_CONCAT_INNER_(a, b) a##b
#define TM_CONCAT_(a, b) TM_CONCAT_INNER_(a, b)

// Returns the Status from the enclosing function if `expr` is not OK.
#define TM_RETURN_IF_ERROR(expr)                  \
  do {                                            \
    ::tidemark::Status tm_status_ = (expr);       \
    if (!tm_status_.is_ok()) return tm_status_;   \
  } while (0)

// `TM_ASSIGN_OR_RETURN(auto x, f());` declares x from a Result or returns its error.
#define TM_ASSIGN_OR_RETURN(lhs, expr)                                  \
  auto TM_CONCAT_(tm_result_, __LINE__) = (expr);                       \
  if (!TM_CONCAT_(tm_result_, __LINE__).is_ok())                        \
    return TM_CONCAT_(tm_result_, __LINE__).status();                   \
  lhs = std::move(TM_CONCAT_(tm_result_, __LINE__)).value()
