/// @file
/// The machine's energy use from the Linux powercap interface: the RAPL counters of each package
/// and of its DRAM (`/sys/class/powercap/intel-rapl:*`), summed, under a root that tests replace
/// with a fake tree. Linux files, read with POSIX calls; where they cannot be read, the counter
/// says why instead of guessing.
#pragma once

#include <frugal/detail/kernel_files.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

namespace frugal {

/// One RAPL domain the counter sums.
struct energy_domain {
  std::string zone;         ///< directory name under the root: "intel-rapl:0", "intel-rapl:0:2"
  std::string name;         ///< what its `name` file says: "package-0", "dram"
  double max_range_uj = 0;  ///< its max_energy_range_uj: energy_uj runs from 0 to this, then wraps
};

namespace detail::energy_impl {

using namespace kernel_files;  // read_file, join, is_directory, trim, as_said, whole_number

// `counter`: the file is an energy_uj, which since Linux 5.10 only root may read (the counters
// are a side channel, CVE-2020-8694), so a refusal says so.
[[nodiscard]] inline std::string not_readable(const std::string& path, int error, bool counter) {
  std::string out = path + " is not readable: " + std::generic_category().message(error);
  if (counter && (error == EACCES || error == EPERM)) out += " (since Linux 5.10 only root may read RAPL counters)";
  return out;
}

// The entry names of a directory ("." and ".." left out); `error` is errno where it cannot be listed.
[[nodiscard]] inline std::vector<std::string> list_directory(const std::string& path, int& error) {
  std::vector<std::string> names;
  error = 0;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) {
    error = errno;
    return names;
  }
  for (;;) {
    errno = 0;
    const dirent* entry = ::readdir(dir);
    if (entry == nullptr) {
      error = errno;
      break;
    }
    const std::string_view name = entry->d_name;
    if (name != "." && name != "..") names.push_back(std::string(name));
  }
  ::closedir(dir);
  return names;
}

// A zone directory: "intel-rapl:N" (a package, or psys) or "intel-rapl:N:M" (a subzone).
struct zone_dir {
  std::uint64_t package = 0;
  std::optional<std::uint64_t> sub;
  std::string zone;  // the directory's name
  std::string path;  // where it was found: <root>/<zone>, or <root>/intel-rapl:N/<zone>
};

// Parses a zone's directory name into `out`, a new zone_dir (its package, sub and zone); false
// for anything else ("intel-rapl", "intel-rapl-mmio:0", "intel-rapl:0:0:1", "intel-rapl:x").
[[nodiscard]] inline bool parse_zone(std::string_view name, zone_dir& out) {
  constexpr std::string_view prefix = "intel-rapl:";
  if (name.substr(0, prefix.size()) != prefix) return false;
  std::string_view rest = name.substr(prefix.size());
  std::uint64_t numbers[2] = {0, 0};
  int count = 0;
  while (count < 2) {
    if (rest.empty() || rest.front() < '0' || rest.front() > '9') return false;
    const auto res = std::from_chars(rest.data(), rest.data() + rest.size(), numbers[count]);
    if (res.ec != std::errc()) return false;
    rest.remove_prefix(static_cast<std::size_t>(res.ptr - rest.data()));
    ++count;
    if (rest.empty()) break;
    if (rest.front() != ':') return false;
    rest.remove_prefix(1);
  }
  if (!rest.empty()) return false;
  out.package = numbers[0];
  if (count == 2) out.sub = numbers[1];
  out.zone = std::string(name);
  return true;
}

// The order zones are summed in: by (package, whether a subzone, subzone, name), so packages
// come first within each package number. Names are unique, so the order is total.
[[nodiscard]] inline bool zone_before(const zone_dir& a, const zone_dir& b) noexcept {
  if (a.package != b.package) return a.package < b.package;
  if (a.sub.has_value() != b.sub.has_value()) return !a.sub.has_value();
  const std::uint64_t a_sub = a.sub.value_or(0);
  const std::uint64_t b_sub = b.sub.value_or(0);
  if (a_sub != b_sub) return a_sub < b_sub;
  return a.zone < b.zone;
}

// One summed domain's energy_uj file, its range and its last reading.
struct counter_file {
  std::string path;
  std::uint64_t max_uj = 0;
  std::uint64_t last_uj = 0;
};

// Reads a counter: its value, or nullopt with `problem` saying why (unreadable, not a number, or
// above the counter's range, which would break the wrap arithmetic).
[[nodiscard]] inline std::optional<std::uint64_t> read_counter(const counter_file& c, std::string& problem) {
  const file_text f = read_file(c.path);
  if (f.error != 0) {
    problem = not_readable(c.path, f.error, true);
    return std::nullopt;
  }
  const auto uj = whole_number(f.text);
  if (!uj) {
    problem = c.path + " holds " + as_said(f.text) + ", not a whole number of microjoules";
    return std::nullopt;
  }
  if (*uj > c.max_uj) {
    problem = c.path + " holds " + as_said(f.text) + ", more than its max_energy_range_uj (" +
              std::to_string(c.max_uj) + ")";
    return std::nullopt;
  }
  return uj;
}

}  // namespace detail::energy_impl

/// The energy the machine's CPU packages and their DRAM used, from the RAPL counters the Linux
/// powercap interface exposes. Each domain's energy_uj runs from 0 to its max_energy_range_uj and
/// then starts again at 0; the counter keeps the last reading of each and sums the differences.
class energy_counter {
 public:
  /// Discovers the domains under `root`: every top-level zone "intel-rapl:N" (a package, "package-N")
  /// but psys (the platform's energy, which overlaps the packages), and every subzone
  /// "intel-rapl:N:M" whose name is "dram" (core and uncore are already inside their package's
  /// figure). Subzones count whether they appear as `<root>/intel-rapl:N:M` (the links sysfs has)
  /// or as `<root>/intel-rapl:N/intel-rapl:N:M`, once each. "intel-rapl-mmio:" zones are left out:
  /// they report package-0 again. Reads each domain's energy_uj once, as the baseline. Never throws
  /// for a missing or unreadable tree: available() is false and why_unavailable() says why. Throws
  /// std::invalid_argument for an empty `root`.
  explicit energy_counter(std::string root = "/sys/class/powercap") : root_(std::move(root)) {
    if (root_.empty())
      throw std::invalid_argument("frugal: energy_counter: root='': expected the powercap directory, such as "
                                  "/sys/class/powercap");
    why_ = discover();
    if (!why_.empty()) {
      domains_.clear();
      counters_.clear();
    }
  }

  /// At least one domain was found and every domain was readable at construction and at each
  /// joules() since.
  [[nodiscard]] bool available() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    return why_.empty();
  }

  /// Empty when available(); otherwise a sentence that names the path and the cause.
  [[nodiscard]] std::string why_unavailable() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    return why_;
  }

  /// The domains summed, packages first within each package number; empty where construction
  /// failed.
  [[nodiscard]] std::vector<energy_domain> domains() const { return domains_; }

  /// The powercap directory, as given.
  [[nodiscard]] const std::string& root() const noexcept { return root_; }

  /// Joules used since construction, summed over the domains: the total is kept in whole
  /// microjoules and returned divided by 1e6. Reads every domain's energy_uj and keeps it as that
  /// domain's last reading. A reading below the last one is a wrap, and that domain's difference is
  /// reading + (max_energy_range_uj - last): the counter ran up to its range and started again at
  /// 0 (short by at most one hardware energy unit, some tens of microjoules, per wrap). A second
  /// wrap between two calls cannot be seen, so call more often than max_energy_range_uj / power:
  /// 262 kJ at 100 W lasts 2621 s, under 44 minutes. Empty when not available(), or when a read
  /// fails now (a file vanished, became unreadable, or holds garbage): why_unavailable() then says
  /// why, and the counter stays unavailable, so no later call returns a total that misses energy.
  /// Thread-safe: one mutex orders the calls.
  [[nodiscard]] std::optional<double> joules() {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (!why_.empty()) return std::nullopt;
    for (detail::energy_impl::counter_file& c : counters_) {
      std::string problem;
      const auto now = detail::energy_impl::read_counter(c, problem);
      if (!now) {
        why_ = std::move(problem);
        return std::nullopt;
      }
      total_uj_ += *now >= c.last_uj ? *now - c.last_uj : *now + (c.max_uj - c.last_uj);
      c.last_uj = *now;
    }
    return static_cast<double>(total_uj_) / 1e6;
  }

 private:
  // Finds and reads the domains; the reason they cannot be counted, or "".
  std::string discover() {
    namespace d = detail::energy_impl;
    struct stat st {};
    if (::stat(root_.c_str(), &st) != 0) {
      const int error = errno;
      if (error == ENOENT || error == ENOTDIR)
        return "no " + root_ +
               ": the kernel exposes no powercap interface here (no RAPL driver, a virtual machine, or not Linux)";
      return d::not_readable(root_, error, false);
    }
    if (!S_ISDIR(st.st_mode)) return root_ + " is not a directory";
    int error = 0;
    const std::vector<std::string> entries = d::list_directory(root_, error);
    if (error != 0) return d::not_readable(root_, error, false);

    std::vector<d::zone_dir> zones;
    for (const std::string& entry : entries) {
      d::zone_dir zone;
      if (!d::parse_zone(entry, zone)) continue;
      zone.path = d::join(root_, entry);
      if (d::is_directory(zone.path)) zones.push_back(std::move(zone));
    }
    // Subzones inside their package's directory, unless already found as links at the top.
    const std::size_t top = zones.size();
    for (std::size_t i = 0; i < top; ++i) {
      if (zones[i].sub) continue;
      const std::string package_dir = zones[i].path;
      const std::string own = zones[i].zone + ":";
      const std::vector<std::string> inner = d::list_directory(package_dir, error);
      if (error != 0) return d::not_readable(package_dir, error, false);
      for (const std::string& entry : inner) {
        if (entry.compare(0, own.size(), own) != 0) continue;
        d::zone_dir zone;
        if (!d::parse_zone(entry, zone) || !zone.sub) continue;
        bool seen = false;
        for (const d::zone_dir& z : zones)
          if (z.zone == entry) {
            seen = true;
            break;
          }
        if (seen) continue;
        zone.path = d::join(package_dir, entry);
        if (d::is_directory(zone.path)) zones.push_back(std::move(zone));
      }
    }
    if (zones.empty()) return root_ + " has no intel-rapl zone (no RAPL domains)";
    // An insertion sort: a handful of zones, in a total order (so the result is the only sorted one).
    for (std::size_t i = 1; i < zones.size(); ++i)
      for (std::size_t j = i; j > 0 && d::zone_before(zones[j], zones[j - 1]); --j) std::swap(zones[j], zones[j - 1]);

    std::string left_out;  // zones found but not summed, for the reason when none is summed
    for (const d::zone_dir& z : zones) {
      const std::string name_file = d::join(z.path, "name");
      const d::file_text name = d::read_file(name_file);
      if (name.error != 0) return d::not_readable(name_file, name.error, false);
      const std::string said(d::trim(name.text));
      if (z.sub ? said != "dram" : said == "psys") {
        left_out += (left_out.empty() ? "" : ", ") + z.zone + " (" + said + ")";
        continue;
      }
      const std::string max_file = d::join(z.path, "max_energy_range_uj");
      const d::file_text max = d::read_file(max_file);
      if (max.error != 0) return d::not_readable(max_file, max.error, false);
      const auto max_uj = d::whole_number(max.text);
      if (!max_uj) return max_file + " holds " + d::as_said(max.text) + ", not a whole number of microjoules";
      if (*max_uj == 0) return max_file + " holds '0', not a positive number of microjoules";
      d::counter_file c{d::join(z.path, "energy_uj"), *max_uj, 0};
      std::string problem;
      const auto baseline = d::read_counter(c, problem);
      if (!baseline) return problem;
      c.last_uj = *baseline;
      counters_.push_back(std::move(c));
      domains_.push_back(energy_domain{z.zone, said, static_cast<double>(*max_uj)});
    }
    if (domains_.empty()) return root_ + " has no intel-rapl package or dram zone, only " + left_out;
    return {};
  }

  std::string root_;
  std::vector<energy_domain> domains_;                      // set at construction, then read-only
  mutable std::mutex mutex_;                                // guards the members below
  std::vector<detail::energy_impl::counter_file> counters_;  // one per domain, in the same order
  std::uint64_t total_uj_ = 0;
  std::string why_;
};

/// The process's shared counter over /sys/class/powercap, made on first use (a function-local
/// static): its joules() are the joules since that first use, whoever calls it, so callers take
/// differences of its readings.
[[nodiscard]] inline energy_counter& system_energy_counter() {
  static energy_counter counter;
  return counter;
}

}  // namespace frugal
