/// @file
/// Durable, checked file writes: a file replaced atomically -- a reader, a crash or a SIGKILL sees
/// the old content or the new, never part of it -- and a check, before a long run starts, that
/// the directory it will write to takes files. Every failure is a frugal::io_error naming the path
/// and the system's words: "frugal: cannot write '/x/report.json': No space left on device (...)".
///
///   frugal::check_writable_directory(out_dir);             // before training: refuse --out /proc
///   ...
///   frugal::write_file_atomically(out_dir / "report.json", [&](std::ostream& out) {
///     frugal::write_json_report(out, run, ctl);
///   });
///
/// How: the content goes to a new temporary file in the same directory (".<name>.tmp-<pid>-<n>",
/// O_EXCL, O_CLOEXEC), written in full (partial writes and EINTR resumed), fsync()ed, closed,
/// renamed over the target (atomic within a file system), then the directory is fsync()ed so the
/// rename itself survives a power loss. On failure the temporary file is removed and the target
/// is untouched. A process killed mid-write may leave its temporary file (never the target's name):
/// the next run's writes do not trip over it, and `rm <dir>/.*.tmp-*` clears them.
///
/// The target's permission bits are kept when it is a regular file; a new file gets 0644 (less
/// the umask). A target that is a symbolic link is replaced by a regular file, as rename(2) does:
/// the file the link pointed to is left alone (this never writes through a link into a device or
/// another directory). POSIX only.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <filesystem>
#include <ostream>
#include <streambuf>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

namespace frugal {

/// A file could not be written: what() names the path, the system's words for errno and the
/// step that failed; path() and code() say the same for a program.
class io_error : public std::runtime_error {
 public:
  /// An error about `path` with errno `error_number`; `what` is the full message.
  io_error(std::filesystem::path path, int error_number, const std::string& what)
      : std::runtime_error(what), path_(std::move(path)), code_(error_number, std::generic_category()) {}
  /// The file that could not be written.
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  /// errno, in the generic category (std::errc::no_space_on_device for ENOSPC, ...).
  [[nodiscard]] std::error_code code() const noexcept { return code_; }

 private:
  std::filesystem::path path_;
  std::error_code code_;
};

namespace detail::durable_file_impl {

// strerror's words, thread-safely.
inline std::string error_text(int err) { return std::generic_category().message(err); }

[[noreturn]] inline void fail(const std::filesystem::path& target, int err, const std::string& step) {
  throw io_error(target, err, "frugal: cannot write '" + target.string() + "': " + error_text(err) + " (" + step + ")");
}

// The same, for errno now: read before the words are built (building them allocates, and an
// allocation may change errno).
template <class Words>
[[noreturn]] void fail_errno(const std::filesystem::path& target, Words&& words) {
  const int err = errno;
  fail(target, err, words());
}

// `step` is a plain literal: the arguments then hold no allocation that could change errno
// before it is read.
[[noreturn]] inline void fail_directory(const std::filesystem::path& dir, int err, const char* step) {
  throw io_error(dir, err,
                 "frugal: cannot write in directory '" + dir.string() + "': " + error_text(err) + " (" + step + ")");
}

// A name no other writer (thread or process) uses at the same time: pid + a process-wide count.
inline std::string unique_suffix() {
  static std::atomic<unsigned long long> count{0};
  return std::to_string(static_cast<long long>(::getpid())) + "-" +
         std::to_string(count.fetch_add(1, std::memory_order_relaxed));
}

inline void write_all(int fd, std::string_view data, const std::filesystem::path& target, const std::string& step) {
  const char* p = data.data();
  std::size_t left = data.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(target, errno, step);
    }
    if (n == 0) fail(target, EIO, step);  // a regular file never takes nothing; do not spin
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

// The temporary file while it is being written: closed and removed unless committed.
class temporary_file {
 public:
  temporary_file() = default;
  temporary_file(const temporary_file&) = delete;
  temporary_file& operator=(const temporary_file&) = delete;
  ~temporary_file() {
    if (fd >= 0) (void)::close(fd);
    if (!path.empty()) (void)::unlink(path.c_str());
  }
  int fd = -1;
  std::filesystem::path path;  // empty once renamed
};

// The directory a path's file lives in ("." for a bare name).
inline std::filesystem::path directory_of(const std::filesystem::path& path) {
  std::filesystem::path dir = path.parent_path();
  return dir.empty() ? std::filesystem::path(".") : dir;
}

}  // namespace detail::durable_file_impl

/// Writes `data` to an open descriptor in full: resumes partial writes and EINTR. Throws
/// io_error naming `name` (the path the descriptor was opened for) on any failure:
/// "frugal: cannot write '/dev/full': No space left on device (writing)".
inline void write_all(int fd, std::string_view data, const std::filesystem::path& name) {
  detail::durable_file_impl::write_all(fd, data, name, "writing");
}

namespace detail::durable_file_impl {

// Opens a new temporary file beside `path` (same directory, so the rename stays on one file
// system), with the target's permission bits when it is a regular file.
inline void open_temporary(const std::filesystem::path& path, temporary_file& tmp) {
  const std::filesystem::path name = path.filename();
  if (name.empty() || name == "." || name == "..") fail(path, EISDIR, "the path names a directory, not a file");
  const std::filesystem::path dir = directory_of(path);

  // Keep an existing regular file's permission bits (lstat: a link is replaced, not followed).
  struct stat old {};
  const bool keep_mode = ::lstat(path.c_str(), &old) == 0 && S_ISREG(old.st_mode);

  for (int attempt = 0;; ++attempt) {
    std::filesystem::path candidate = dir / ("." + name.string() + ".tmp-" + unique_suffix());
    tmp.fd = ::open(candidate.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (tmp.fd >= 0) {
      tmp.path = std::move(candidate);
      break;
    }
    // EEXIST: a file left by a killed process of the same pid, long ago; try the next name.
    if (errno != EEXIST || attempt == 100)
      fail_errno(path, [&] { return "creating a temporary file in '" + dir.string() + "'"; });
  }
  if (keep_mode && ::fchmod(tmp.fd, old.st_mode & 07777) != 0)
    fail_errno(path, [&] { return "setting the mode of the temporary file '" + tmp.path.filename().string() + "'"; });
}

[[nodiscard]] inline std::string temporary_name(const temporary_file& tmp) {
  return "the temporary file '" + tmp.path.filename().string() + "'";
}

// The written temporary file becomes the target: fsync, close, rename, fsync the directory.
inline void commit(const std::filesystem::path& path, temporary_file& tmp) {
  if (::fsync(tmp.fd) != 0) fail_errno(path, [&] { return "syncing " + temporary_name(tmp); });
  const int fd = tmp.fd;
  tmp.fd = -1;
  // close() reports delayed write errors on some file systems (NFS): the content is not safe
  // until it returns 0.
  if (::close(fd) != 0) fail_errno(path, [&] { return "closing " + temporary_name(tmp); });
  if (::rename(tmp.path.c_str(), path.c_str()) != 0)
    fail_errno(path, [&] { return "renaming " + temporary_name(tmp) + " over it"; });
  tmp.path.clear();  // renamed: nothing to remove

  const std::filesystem::path dir = directory_of(path);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0)
    fail_errno(path, [] { return std::string("opening its directory to sync the rename (the new content is in place)"); });
  // EINVAL: a file system that cannot sync a directory (some FUSE ones); nothing more to do there.
  if (::fsync(dir_fd) != 0 && errno != EINVAL) {
    const int err = errno;
    (void)::close(dir_fd);
    fail(path, err, "syncing its directory after the rename (the new content is in place)");
  }
  (void)::close(dir_fd);
}

// A stream buffer onto the temporary file: what the writer streams goes to the file in 64 KiB
// pieces, so a large file (a model's weights) needs no copy of itself in memory. A failed
// write is remembered (errno) and makes the stream fail; write_file_atomically then throws.
class file_streambuf : public std::streambuf {
 public:
  explicit file_streambuf(int fd) : fd_(fd), buffer_(64 * 1024) { setp(buffer_.data(), buffer_.data() + buffer_.size()); }
  [[nodiscard]] int error() const noexcept { return error_; }

 protected:
  int_type overflow(int_type c) override {
    if (!drain()) return traits_type::eof();
    if (!traits_type::eq_int_type(c, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(c);
      pbump(1);
    }
    return traits_type::not_eof(c);
  }
  int sync() override { return drain() ? 0 : -1; }

 private:
  bool drain() noexcept {
    if (error_ != 0) return false;
    const char* p = pbase();
    std::size_t left = static_cast<std::size_t>(pptr() - pbase());
    while (left > 0) {
      const ssize_t n = ::write(fd_, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        error_ = n < 0 ? errno : EIO;  // a regular file never takes nothing; do not spin
        return false;
      }
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    setp(buffer_.data(), buffer_.data() + buffer_.size());
    return true;
  }
  int fd_;
  std::vector<char> buffer_;
  int error_ = 0;
};

}  // namespace detail::durable_file_impl

/// Replaces the file at `path` with `content`, atomically and durably (see the top of this
/// file). Throws io_error on any failure; the target then still holds its old content (or does
/// not exist, if it did not). A failure to sync the directory after the rename also throws: the
/// new content is in place, but a power loss could still undo the rename.
inline void write_file_atomically(const std::filesystem::path& path, std::string_view content) {
  namespace d = detail::durable_file_impl;
  d::temporary_file tmp;
  d::open_temporary(path, tmp);
  d::write_all(tmp.fd, content, path, "writing " + d::temporary_name(tmp));
  d::commit(path, tmp);
}

/// The same, with the content produced by `write(std::ostream&)` (a report writer, say),
/// streamed into the temporary file as it comes (64 KiB at a time: a large file needs no copy
/// of itself in memory). The target is untouched until `write` has returned and everything is
/// on disk; an exception from it, or a stream it leaves failed, leaves the target as it was.
template <class Write, std::enable_if_t<std::is_invocable_v<Write&, std::ostream&>, int> = 0>
void write_file_atomically(const std::filesystem::path& path, Write&& write) {
  namespace d = detail::durable_file_impl;
  d::temporary_file tmp;
  d::open_temporary(path, tmp);
  d::file_streambuf buffer(tmp.fd);
  std::ostream out(&buffer);
  write(out);
  out.flush();
  if (buffer.error() != 0) d::fail(path, buffer.error(), "writing " + d::temporary_name(tmp));
  if (!out) d::fail(path, EIO, "the content's stream failed");
  d::commit(path, tmp);
}

/// Checks that files can be created in `dir` now (by creating, writing and removing a probe file
/// there): call it before a long run, so a typo or a read-only --out costs no training. Throws
/// io_error: "frugal: cannot write in directory '/proc': ... (creating a probe file)".
inline void check_writable_directory(const std::filesystem::path& dir) {
  namespace d = detail::durable_file_impl;
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) d::fail_directory(dir, errno, "looking it up");
  if (!S_ISDIR(st.st_mode)) d::fail_directory(dir, ENOTDIR, "looking it up");
  d::temporary_file probe;
  const std::filesystem::path candidate = dir / (".frugal-probe-" + d::unique_suffix());
  probe.fd = ::open(candidate.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (probe.fd < 0) d::fail_directory(dir, errno, "creating a probe file");
  probe.path = candidate;
  const char byte = '\n';
  ssize_t n;
  while ((n = ::write(probe.fd, &byte, 1)) < 0 && errno == EINTR) {
  }
  if (n != 1) d::fail_directory(dir, n < 0 ? errno : EIO, "writing a probe file");
  const int fd = probe.fd;
  probe.fd = -1;
  if (::close(fd) != 0) d::fail_directory(dir, errno, "closing a probe file");
  if (::unlink(candidate.c_str()) != 0) {
    const int err = errno;
    probe.path.clear();
    d::fail_directory(dir, err, "removing a probe file");
  }
  probe.path.clear();
}

}  // namespace frugal
