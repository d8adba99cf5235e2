/// @file
/// The process's memory as the operating system sees it: the resident set (/proc/self/statm) and
/// the cgroup's memory limit and usage (v2, else the v1 memory controller), and the limits
/// `peak_bytes=auto` / `rss_bytes=auto` derive from them. Linux files, read with POSIX calls.
#pragma once

#include <frugal/allocation.hpp>
#include <frugal/detail/kernel_files.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace frugal {

namespace detail::process_memory_impl {

using namespace kernel_files;  // read_file, join, is_directory, trim, as_said, whole_number

// `root` + `relative` ("proc/self/statm"), with one '/' between them, into buf without
// allocating: the resident set is read from budget::used(), possibly inside a user's scope,
// where an allocation would be charged to the user.
inline bool join_path(char* buf, std::size_t size, std::string_view root, std::string_view relative) noexcept {
  if (root.empty()) root = "/";
  const bool slash = root.back() != '/';
  const std::size_t need = root.size() + (slash ? 1 : 0) + relative.size() + 1;
  if (need > size) return false;
  std::memcpy(buf, root.data(), root.size());
  std::size_t at = root.size();
  if (slash) buf[at++] = '/';
  std::memcpy(buf + at, relative.data(), relative.size());
  buf[at + relative.size()] = '\0';
  return true;
}

// Reads at most size - 1 bytes of a small file into buf (NUL-terminated); -1 with errno set on
// failure. Plain open/read/close: no allocation, no stdio, safe inside a hooked malloc's caller.
inline long read_into(const char* path, char* buf, std::size_t size) noexcept {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  std::size_t got = 0;
  while (got + 1 < size) {
    const ssize_t n = ::read(fd, buf + got, size - 1 - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      errno = error;
      return -1;
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  buf[got] = '\0';
  return static_cast<long>(got);
}

[[nodiscard]] inline std::string cannot_read(const std::string& path, int error) {
  return "cannot read " + path + ": " + std::generic_category().message(error);
}

// The kernel's v1 "unlimited" is PAGE_COUNTER_MAX pages (9223372036854771712 with 4 KiB pages,
// other values with other page sizes); no machine has 2^62 bytes, so anything from there up is
// no limit.
inline constexpr std::uint64_t unlimited_from = std::uint64_t{1} << 62;

}  // namespace detail::process_memory_impl

/// The resident set size of the calling process in bytes: resident pages from
/// `<root>/proc/self/statm` times the page size. Empty where the file cannot be read or parsed (no
/// /proc, not Linux). Allocates nothing and takes three system calls (open, read, close), so it is
/// read at checkpoints and reports, never per scope or per allocation.
[[nodiscard]] inline std::optional<std::int64_t> resident_set_bytes(std::string_view root = "/") noexcept {
  namespace d = detail::process_memory_impl;
  char path[4096];
  if (!d::join_path(path, sizeof path, root, "proc/self/statm")) return std::nullopt;
  char buf[256];
  if (d::read_into(path, buf, sizeof buf) < 0) return std::nullopt;
  // "size resident shared text lib data dt", in pages: the second field.
  const char* p = buf;
  const char* end = buf + std::strlen(buf);
  std::uint64_t fields[2] = {0, 0};
  for (std::uint64_t& field : fields) {
    while (p < end && *p == ' ') ++p;
    const auto res = std::from_chars(p, end, field);
    if (res.ec != std::errc() || res.ptr == p) return std::nullopt;
    p = res.ptr;
  }
  const long page = ::sysconf(_SC_PAGESIZE);
  if (page <= 0) return std::nullopt;
  const auto page_bytes = static_cast<std::uint64_t>(page);
  if (fields[1] > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / page_bytes)
    return std::nullopt;
  return static_cast<std::int64_t>(fields[1] * page_bytes);
}

/// Why resident_set_bytes(root) is empty, with the file: "cannot read /proc/self/statm: No such
/// file or directory", or what the file held instead of numbers. Empty when it can be read.
[[nodiscard]] inline std::string resident_set_problem(std::string_view root = "/") {
  namespace d = detail::process_memory_impl;
  if (resident_set_bytes(root)) return {};
  const std::string path = d::join(root, "proc/self/statm");
  char fits[4096];
  if (!d::join_path(fits, sizeof fits, root, "proc/self/statm")) return path + ": the path is too long";
  const d::file_text f = d::read_file(path);
  if (f.error != 0) return d::cannot_read(path, f.error);
  if (::sysconf(_SC_PAGESIZE) <= 0) return "the page size is unknown (sysconf(_SC_PAGESIZE) failed)";
  return path + ": expected 'size resident ...' in pages, got " + d::as_said(f.text);
}

namespace detail {
// Every budget's read of the resident set goes through this pointer, so that tests can give
// budgets a fixed resident set, or none (an unreadable /proc), and assert exact reports.
using resident_set_source_fn = std::optional<std::int64_t> (*)() noexcept;
inline std::optional<std::int64_t> process_resident_set() noexcept { return resident_set_bytes(); }
inline std::atomic<resident_set_source_fn> resident_set_source{&process_resident_set};
[[nodiscard]] inline std::optional<std::int64_t> read_resident_set() noexcept {
  return resident_set_source.load(std::memory_order_relaxed)();
}
}  // namespace detail

/// The process's cgroup memory figures. The binding level is the cgroup, of the process's own and
/// its ancestors, with the least room (limit - usage): a parent's usage includes its other
/// children, so a parent with a larger limit can still be the tighter one.
struct cgroup_memory {
  int version = 0;                     ///< 2: the unified hierarchy; 1: the v1 memory controller
  std::string cgroup;                  ///< the process's cgroup, as `<root>/proc/self/cgroup` names it
  std::string directory;               ///< where it was read (the mount itself when `cgroup` is not under it)
  std::optional<std::int64_t> limit;   ///< bytes, at the binding level; empty: no limit at any level
  std::string limit_file;              ///< where `limit` came from (the process's own when there is none)
  std::optional<std::int64_t> usage;   ///< bytes charged to the binding level (memory.current, memory.usage_in_bytes)
  /// Where `usage` came from.
  std::string usage_file;
  std::string no_limit;                ///< when `limit` is empty: what the files said instead
  std::string error;                   ///< why nothing could be read (a missing or unreadable file, garbage)
  /// Whether the figures could be read (`error` is empty).
  explicit operator bool() const noexcept { return error.empty(); }
};

namespace detail::process_memory_impl {

// One hierarchy: the limit file and usage file in the cgroup's directory and each parent up to
// the mount, keeping the level with the least room. A directory without the limit file has no
// memory controller (the root cgroup, or one whose parent does not delegate memory) and is
// passed over; `found` says whether any level had one.
inline void walk_up(cgroup_memory& out, const std::string& mount, const std::string& cgroup,
                    std::string_view limit_name, std::string_view usage_name, bool& found) {
  found = false;
  const bool v2 = out.version == 2;
  std::string leaf = mount;
  if (cgroup != "/") leaf += cgroup;
  // A container with its own cgroup mounted at the mount point, but without a cgroup namespace,
  // sees the host's path in /proc/self/cgroup: its cgroup is the mount itself.
  if (!is_directory(leaf)) leaf = mount;
  out.directory = leaf;
  out.limit_file = leaf + "/" + std::string(limit_name);
  std::optional<std::int64_t> best_room;
  std::string leaf_unlimited;  // what the process's own limit file said, when it says "no limit"
  std::string dir = leaf;
  for (;;) {
    const std::string limit_file = dir + "/" + std::string(limit_name);
    const file_text lf = read_file(limit_file);
    if (lf.error != 0 && lf.error != ENOENT) {
      out.error = cannot_read(limit_file, lf.error);
      return;
    }
    if (lf.error == 0) {
      found = true;
      const std::string_view said = trim(lf.text);
      const auto bytes = whole_number(said);
      if (!bytes && !(v2 && said == "max")) {
        out.error = limit_file + ": expected a byte count" + (v2 ? " or 'max'" : "") + ", got " + as_said(lf.text);
        return;
      }
      const bool limited = bytes && *bytes < unlimited_from;
      if (!limited && dir == leaf) leaf_unlimited = std::string(said);
      const std::string usage_file = dir + "/" + std::string(usage_name);
      // The usage of a limited level is needed; the process's own, limited or not, is reported.
      if (limited || dir == leaf) {
        const file_text uf = read_file(usage_file);
        // A plain value and a flag, not an optional: GCC 12 at -O1 warned that the optional's
        // value may be read uninitialised under `if (used)` (a false positive, -Wmaybe-uninitialized).
        std::uint64_t used = 0;
        bool has_used = false;
        if (uf.error == 0)
          if (const auto n = whole_number(uf.text); n && *n < unlimited_from) {  // none is that large: garbage
            used = *n;
            has_used = true;
          }
        if (limited && uf.error != 0) {
          out.error = cannot_read(usage_file, uf.error);
          return;
        }
        if (limited && !has_used) {
          out.error = usage_file + ": expected a byte count, got " + as_said(uf.text);
          return;
        }
        if (has_used) {
          const auto usage = static_cast<std::int64_t>(used);
          if (limited) {
            const auto limit = static_cast<std::int64_t>(*bytes);
            if (!best_room || limit - usage < *best_room) {
              best_room = limit - usage;
              out.limit = limit;
              out.limit_file = limit_file;
              out.usage = usage;
              out.usage_file = usage_file;
            }
          } else if (!out.limit) {
            out.usage = usage;
            out.usage_file = usage_file;
          }
        }
      }
    }
    if (dir.size() <= mount.size()) break;
    const std::size_t slash = dir.rfind('/');
    dir = slash == std::string::npos || slash < mount.size() ? mount : dir.substr(0, slash);
  }
  if (found && !out.limit) {
    const std::string where = leaf == mount ? " in " + mount : " in " + leaf + " and in every parent up to " + mount;
    const std::string reads = leaf_unlimited.empty() ? std::string() : "; " + out.limit_file + " reads " + leaf_unlimited;
    out.no_limit = v2 ? "memory.max is 'max'" + where
                      : std::string(limit_name) + " is unlimited (2^62 or more" + reads + ")" + where;
  }
}

}  // namespace detail::process_memory_impl

/// Reads the process's cgroup memory limit and usage under `root` (tests pass a fake tree):
/// the process's cgroup from `<root>/proc/self/cgroup`; cgroup v2 (the line "0::/path") reads
/// `<root>/sys/fs/cgroup/<path>/memory.max` ("max": none) and memory.current, and each parent's up
/// to `<root>/sys/fs/cgroup`; where that hierarchy has no memory controller (a v1 or hybrid
/// machine), the v1 memory controller (a line "N:memory:/path", or "N:cpu,memory:/path") reads
/// `<root>/sys/fs/cgroup/memory/<path>/memory.limit_in_bytes` (2^62 or more: none) and
/// memory.usage_in_bytes, and the parents'. Never throws for what it finds: a missing or unreadable
/// file, or one that holds no number, is `error`; no limit at any level is an empty `limit`.
[[nodiscard]] inline cgroup_memory read_cgroup_memory(std::string_view root = "/") {
  namespace d = detail::process_memory_impl;
  cgroup_memory out;
  const std::string self = d::join(root, "proc/self/cgroup");
  const d::file_text f = d::read_file(self);
  if (f.error != 0) {
    out.error = d::cannot_read(self, f.error) + " (the process's cgroup is unknown)";
    return out;
  }
  std::optional<std::string> v2_path;
  std::optional<std::string> v1_path;
  std::string_view text = f.text;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    // "hierarchy-id:controllers:path"; the path may itself hold ':'.
    const std::size_t a = line.find(':');
    const std::size_t b = a == std::string_view::npos ? a : line.find(':', a + 1);
    if (b == std::string_view::npos) continue;
    const std::string_view id = line.substr(0, a);
    const std::string_view controllers = line.substr(a + 1, b - a - 1);
    const std::string_view path = line.substr(b + 1);
    if (path.empty() || path.front() != '/') continue;
    if (id == "0" && controllers.empty()) {
      v2_path = std::string(path);
      continue;
    }
    for (std::string_view rest = controllers; !rest.empty();) {
      const std::size_t comma = rest.find(',');
      if (rest.substr(0, comma) == "memory") v1_path = std::string(path);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
  }
  const std::string mount = d::join(root, "sys/fs/cgroup");
  if (v2_path) {
    out.version = 2;
    out.cgroup = *v2_path;
    bool found = false;
    d::walk_up(out, mount, *v2_path, "memory.max", "memory.current", found);
    if (found || !out.error.empty()) return out;
  }
  if (v1_path) {
    out = cgroup_memory{};
    out.version = 1;
    out.cgroup = *v1_path;
    bool found = false;
    d::walk_up(out, mount + "/memory", *v1_path, "memory.limit_in_bytes", "memory.usage_in_bytes", found);
    if (found || !out.error.empty()) return out;
    out.error = "no memory controller: " + out.limit_file + " and its parents' up to " + mount +
                "/memory are missing";
    return out;
  }
  const std::string v2_where =
      !v2_path ? std::string()
      : out.directory == mount
          ? "no memory.max in " + mount + ", and "
          : "no memory.max in " + out.directory + " or its parents up to " + mount + ", and ";
  out = cgroup_memory{};
  out.error = "no memory controller: " + v2_where + self + " has no cgroup v1 memory line" +
              (v2_path ? std::string() : " and no cgroup v2 line ('0::/path')");
  return out;
}

namespace detail::process_memory_impl {
// The cgroup's reason, as an error of "<field>=auto", when it gives no limit to take room from.
inline void require_limit(std::string_view field, const cgroup_memory& cg) {
  const std::string prefix = "frugal: limits: " + std::string(field) + "=auto: ";
  if (!cg) throw std::invalid_argument(prefix + cg.error);
  if (!cg.limit) throw std::invalid_argument(prefix + "no memory limit: " + cg.no_limit);
}
}  // namespace detail::process_memory_impl

/// The room a level that measures `own_bytes` of the process has under the cgroup's limit: the
/// limit minus what the cgroup counts but the level does not see (usage - own_bytes). The cgroup
/// counts the page cache, the other processes of the group, and the process's memory outside what
/// the level measures (code, stacks, thread arenas, the allocator's free pages for a heap level),
/// none of which the level's ceiling can hold back, so that ceiling is lower than the cgroup's by
/// that much. `own_bytes` above the usage (shared pages charged to another cgroup) counts as
/// nothing outside, never as extra room. Throws std::invalid_argument naming "<field>=auto" with
/// the reason and the file: the cgroup unreadable, no limit, or no room left.
[[nodiscard]] inline std::int64_t room_under_cgroup(std::string_view field, const cgroup_memory& cg,
                                                    std::int64_t own_bytes, std::string_view own_name) {
  detail::process_memory_impl::require_limit(field, cg);
  const std::int64_t usage = cg.usage.value_or(0);
  const std::int64_t outside = usage > own_bytes ? usage - own_bytes : 0;
  const std::int64_t room = *cg.limit - outside;
  if (room <= 0)
    throw std::invalid_argument("frugal: limits: " + std::string(field) + "=auto: no room under the cgroup's limit: " +
                                std::to_string(*cg.limit) + " B (" + cg.limit_file + ") - (usage " +
                                std::to_string(usage) + " B (" + cg.usage_file + ") - " + std::string(own_name) + " " +
                                std::to_string(own_bytes) + " B) = " + std::to_string(room) + " B");
  return room;
}

/// rss_bytes=auto: the cgroup's limit minus what it counts beyond the process's resident set.
[[nodiscard]] inline std::int64_t auto_rss_bytes_limit(std::string_view root = "/") {
  const cgroup_memory cg = read_cgroup_memory(root);
  detail::process_memory_impl::require_limit("rss_bytes", cg);
  const auto rss = resident_set_bytes(root);
  if (!rss)
    throw std::invalid_argument("frugal: limits: rss_bytes=auto: the resident set is unknown: " +
                                resident_set_problem(root));
  return room_under_cgroup("rss_bytes", cg, *rss, "resident set");
}

/// peak_bytes=auto: the cgroup's limit minus what it counts beyond the live heap. Needs the
/// allocation hooks: without them the live heap is unknown, and so is the room left for it (and
/// a peak_bytes limit would not be measured anyway); rss_bytes=auto needs no hooks.
[[nodiscard]] inline std::int64_t auto_peak_bytes_limit(std::string_view root = "/") {
  const cgroup_memory cg = read_cgroup_memory(root);
  detail::process_memory_impl::require_limit("peak_bytes", cg);
  const allocation_tracking_status tracking = allocation_tracking();
  if (!tracking)
    throw std::invalid_argument("frugal: limits: peak_bytes=auto: the live heap is not measured, so the room left "
                                "for it is unknown (" + tracking.reason + "); rss_bytes=auto needs no hooks");
  return room_under_cgroup("peak_bytes", cg, exact_heap_totals().live_bytes, "live heap");
}

}  // namespace frugal
