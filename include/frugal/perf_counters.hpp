/// @file
/// Hardware event counters (Linux perf_event_open) read around a region: retired instructions
/// and, where the CPU exposes them, floating-point operations — a cross-check of frugal's counts.
#pragma once

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace frugal {

/// What one region measured. Counters the kernel had to multiplex are scaled up from the share
/// of the region they ran (`scaled` says so).
struct hardware_counts {
  /// Instructions retired (0 where perf_counters::available() is false).
  std::uint64_t instructions = 0;
  /// Floating-point operations retired, an FMA counting two: comparable with frugal's
  /// 2*M*N*K products. Empty where the CPU's events are not available.
  std::optional<std::uint64_t> flops;
  /// Whether a counter was multiplexed and its count scaled up from the share of the region it ran.
  bool scaled = false;
};

namespace detail {
// How an x86 vendor encodes "floating-point operations retired" as raw events: each raw event
// with the FLOPs one count of it stands for.
struct fp_event {
  std::uint64_t config;
  std::uint64_t weight;
};

// Intel (Skylake and later) FP_ARITH_INST_RETIRED (event 0xC7) counts instructions per vector
// width, an FMA twice; umasks of equal weight share a counter, so five counters cover
// scalar, 128-, 256- and 512-bit, single and double.
inline std::vector<fp_event> intel_fp_events() {
  const auto e = [](std::uint64_t umask) { return (umask << 8) | 0xC7; };
  return {{e(0x01 | 0x02), 1}, {e(0x04), 2}, {e(0x08 | 0x10), 4}, {e(0x20 | 0x40), 8}, {e(0x80), 16}};
}
// AMD Zen: PMCx003 "retired SSE/AVX FLOPs", all umasks, already in FLOPs (FMA = 2).
inline std::vector<fp_event> amd_fp_events() { return {{(0xFFull << 8) | 0x03, 1}}; }

[[nodiscard]] inline std::string cpu_vendor() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("vendor_id", 0) == 0) {
      const auto colon = line.find(':');
      if (colon == std::string::npos) return {};
      const auto begin = line.find_first_not_of(" \t", colon + 1);
      return begin == std::string::npos ? std::string() : line.substr(begin);
    }
  return {};
}

[[nodiscard]] inline std::string perf_paranoid_level() {
  std::ifstream in("/proc/sys/kernel/perf_event_paranoid");
  std::string level;
  in >> level;
  return level.empty() ? std::string("unknown") : level;
}

// errno text, and what it usually means for perf_event_open.
[[nodiscard]] inline std::string perf_error(const char* event, int err) {
  std::string s = std::string("perf_event_open(") + event + "): " + std::strerror(err);
  switch (err) {
    case ENOENT:
    case EOPNOTSUPP:
      return s +
             " (no PMU exposes this event here: a virtual machine without PMU passthrough, or a CPU "
             "without it)";
    case EACCES:
    case EPERM:
      return s + " (kernel.perf_event_paranoid is " + perf_paranoid_level() +
             "; user-space counting needs <= 2, or CAP_PERFMON; a container's seccomp profile may also "
             "block the call)";
    case ENOSYS:
      return s + " (the kernel has no perf events)";
    default:
      return s;
  }
}

#if defined(__linux__)
// One counter of the calling thread, user space only, disabled until enabled.
[[nodiscard]] inline int open_counter(std::uint32_t type, std::uint64_t config, int& err) noexcept {
  perf_event_attr attr;
  std::memset(&attr, 0, sizeof attr);
  attr.size = sizeof attr;
  attr.type = type;
  attr.config = config;
  attr.disabled = 1;
  attr.exclude_kernel = 1;
  attr.exclude_hv = 1;
  attr.read_format = PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING;
  const long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
  err = fd < 0 ? errno : 0;
  return static_cast<int>(fd);
}
#endif
}  // namespace detail

/// Counts the calling thread's retired instructions (and floating-point operations, where the
/// CPU exposes them) between start() and stop(). Each call is a few system calls: use it around
/// coarse regions (a step, a benchmark), never per fine scope. Work other threads do (oneTBB
/// workers) is not included. Where the machine has no usable PMU it stays unavailable and says
/// why; start() and stop() then measure nothing.
class perf_counters {
 public:
  perf_counters() {
#if defined(__linux__)
    int err = 0;
    instructions_fd_ = detail::open_counter(PERF_TYPE_HARDWARE, PERF_COUNT_HW_INSTRUCTIONS, err);
    if (instructions_fd_ < 0) reason_ = detail::perf_error("instructions", err);
    open_fp_events();
#else
    reason_ = "perf_event_open: Linux only";
    flops_reason_ = reason_;
#endif
  }
  ~perf_counters() { close_all(); }
  perf_counters(const perf_counters&) = delete;
  perf_counters& operator=(const perf_counters&) = delete;

  /// Whether retired instructions are counted; if not, reason() says why.
  [[nodiscard]] bool available() const noexcept { return instructions_fd_ >= 0; }
  /// Why retired instructions are not counted (the failing call and its errno text); empty when
  /// they are.
  [[nodiscard]] const std::string& reason() const noexcept { return reason_; }
  /// Whether floating-point operations are counted; if not, flops_reason() says why.
  [[nodiscard]] bool flops_available() const noexcept { return !fp_.empty(); }
  /// Why floating-point operations are not counted; empty when they are.
  [[nodiscard]] const std::string& flops_reason() const noexcept { return flops_reason_; }

  /// Resets and enables the counters: a region starts here.
  void start() noexcept {
#if defined(__linux__)
    for_each_fd([](int fd) { ioctl(fd, PERF_EVENT_IOC_RESET, 0); });
    for_each_fd([](int fd) { ioctl(fd, PERF_EVENT_IOC_ENABLE, 0); });
#endif
  }

  /// Disables the counters and returns what they counted since start(), scaled where multiplexed.
  [[nodiscard]] hardware_counts stop() noexcept {
    hardware_counts c;
#if defined(__linux__)
    for_each_fd([](int fd) { ioctl(fd, PERF_EVENT_IOC_DISABLE, 0); });
    if (instructions_fd_ >= 0) c.instructions = read_scaled(instructions_fd_, c.scaled);
    if (!fp_.empty()) {
      std::uint64_t flops = 0;
      for (const auto& [fd, weight] : fp_) flops += weight * read_scaled(fd, c.scaled);
      c.flops = flops;
    }
#endif
    return c;
  }

 private:
#if defined(__linux__)
  void open_fp_events() {
    const std::string vendor = detail::cpu_vendor();
    std::vector<detail::fp_event> events;
    if (vendor == "GenuineIntel")
      events = detail::intel_fp_events();
    else if (vendor == "AuthenticAMD")
      events = detail::amd_fp_events();
    else {
      flops_reason_ = "floating-point events: encoded for Intel and AMD x86 CPUs only, this CPU is '" +
                      (vendor.empty() ? std::string("unknown") : vendor) + "'";
      return;
    }
    for (const detail::fp_event& e : events) {
      int err = 0;
      const int fd = detail::open_counter(PERF_TYPE_RAW, e.config, err);
      if (fd < 0) {
        flops_reason_ =
            detail::perf_error(vendor == "GenuineIntel" ? "FP_ARITH_INST_RETIRED" : "retired SSE/AVX FLOPs", err);
        close_fp();
        return;
      }
      fp_.emplace_back(fd, e.weight);
    }
  }

  /// value * enabled / running: the kernel's estimate when the counter shared the PMU.
  static std::uint64_t read_scaled(int fd, bool& scaled) noexcept {
    std::uint64_t v[3] = {0, 0, 0};
    if (read(fd, v, sizeof v) != static_cast<ssize_t>(sizeof v) || v[2] == 0) return 0;
    if (v[2] == v[1]) return v[0];
    scaled = true;
    return static_cast<std::uint64_t>(
        std::llround(static_cast<double>(v[0]) * static_cast<double>(v[1]) / static_cast<double>(v[2])));
  }

  template <class F>
  void for_each_fd(F f) noexcept {
    if (instructions_fd_ >= 0) f(instructions_fd_);
    for (const auto& p : fp_) f(p.first);
  }

  void close_fp() noexcept {
    for (const auto& p : fp_) ::close(p.first);
    fp_.clear();
  }
#endif

  void close_all() noexcept {
#if defined(__linux__)
    if (instructions_fd_ >= 0) ::close(instructions_fd_);
    instructions_fd_ = -1;
    close_fp();
#endif
  }

  int instructions_fd_ = -1;
  std::vector<std::pair<int, std::uint64_t>> fp_;  ///< (fd, FLOPs per count)
  std::string reason_;
  std::string flops_reason_;
};

/// Counts a region: starts the counters when constructed, writes what they counted into `out`
/// when destroyed (also when left by an exception).
class hardware_region {
 public:
  /// Starts `counters`; the destructor stops them and writes their counts into `out`.
  hardware_region(perf_counters& counters, hardware_counts& out) noexcept : counters_(counters), out_(out) {
    counters_.start();
  }
  ~hardware_region() { out_ = counters_.stop(); }
  hardware_region(const hardware_region&) = delete;
  hardware_region& operator=(const hardware_region&) = delete;

 private:
  perf_counters& counters_;
  hardware_counts& out_;
};

}  // namespace frugal
