/// @file
/// Reading the kernel's small text files (/proc, the cgroup tree, sysfs): whole, with the errno
/// of a failure, and their one-number contents read strictly. Shared by process_memory.hpp and
/// energy.hpp; POSIX calls, no stdio.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace frugal::detail::kernel_files {

struct file_text {
  int error = 0;  // errno of the failed open or read; 0 when read
  std::string text;
};

// A kernel file, whole (they are small; 1 MiB is far beyond any of them).
[[nodiscard]] inline file_text read_file(const std::string& path) {
  file_text out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    out.error = errno;
    return out;
  }
  char buf[4096];
  while (out.text.size() < (std::size_t{1} << 20)) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      out.error = errno;
      break;
    }
    if (n == 0) break;
    out.text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

// `root` + `relative` with one '/' between them; an empty root is "/".
[[nodiscard]] inline std::string join(std::string_view root, std::string_view relative) {
  std::string out(root.empty() ? std::string_view("/") : root);
  if (out.back() != '/') out += '/';
  out.append(relative);
  return out;
}

[[nodiscard]] inline bool is_directory(const std::string& path) noexcept {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

[[nodiscard]] inline std::string_view trim(std::string_view s) noexcept {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// What a file said, for an error message: trimmed, quoted, and cut short if it is long.
[[nodiscard]] inline std::string as_said(std::string_view text) {
  text = trim(text);
  std::string out = "'";
  out.append(text.substr(0, 40));
  if (text.size() > 40) out += "...";
  return out + "'";
}

// Decimal digits and nothing else (after trimming), as the kernel writes its counters and byte
// counts; nullopt for a sign, a fraction, a unit, text, nothing, or more than 64 bits hold.
[[nodiscard]] inline std::optional<std::uint64_t> whole_number(std::string_view text) noexcept {
  text = trim(text);
  if (text.empty() || text.front() < '0' || text.front() > '9') return std::nullopt;
  std::uint64_t v = 0;
  const auto res = std::from_chars(text.data(), text.data() + text.size(), v);
  if (res.ec != std::errc() || res.ptr != text.data() + text.size()) return std::nullopt;
  return v;
}

}  // namespace frugal::detail::kernel_files
