/// @file
/// The clocks frugal reads: a steady wall clock, per-thread and per-process CPU clocks, and a
/// manual clock that tests install to drive time by hand (no test sleeps to test a limit).
#pragma once

#include <frugal/config.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <stdexcept>

namespace frugal {
namespace detail {
// The manual clock is process-wide state read on every scope enter/exit, so it is three
// constant-initialised atomics; the flag is checked first with a relaxed load (a predictable
// branch) so the real clock pays almost nothing for the feature.
inline std::atomic<bool> manual_clock_installed{false};
inline std::atomic<std::int64_t> manual_wall_ns{0};
inline std::atomic<std::int64_t> manual_cpu_ns{0};

inline std::int64_t read_clock_ns(clockid_t id) noexcept {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace detail

/// Wall time in nanoseconds from an arbitrary fixed origin. vDSO-backed: ~28 ns here.
[[nodiscard]] inline std::int64_t wall_now_ns() noexcept {
  if (FRUGAL_UNLIKELY(detail::manual_clock_installed.load(std::memory_order_relaxed)))
    return detail::manual_wall_ns.load(std::memory_order_relaxed);
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// CPU time of the calling thread. A system call on virtual machines (~1.5 us here): frugal
/// reads it only when a CPU-limited budget becomes active or idle on a thread, never per scope.
[[nodiscard]] inline std::int64_t thread_cpu_now_ns() noexcept {
  if (FRUGAL_UNLIKELY(detail::manual_clock_installed.load(std::memory_order_relaxed)))
    return detail::manual_cpu_ns.load(std::memory_order_relaxed);
  return detail::read_clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

/// CPU time of the whole process (all threads), for reports.
[[nodiscard]] inline std::int64_t process_cpu_now_ns() noexcept {
  if (FRUGAL_UNLIKELY(detail::manual_clock_installed.load(std::memory_order_relaxed)))
    return detail::manual_cpu_ns.load(std::memory_order_relaxed);
  return detail::read_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
}

/// While alive, replaces frugal's wall and CPU clocks with hand-driven ones for the whole
/// process. Both start at zero. Install it before creating the budgets it should drive: a
/// budget measures wall time relative to the clock it was created under. Every thread's CPU
/// clock reads the same manual CPU time.
class manual_clock {
 public:
  manual_clock() {
    bool expected = false;
    if (!detail::manual_clock_installed.compare_exchange_strong(expected, true))
      throw std::logic_error("frugal::manual_clock: another manual clock is already installed");
    detail::manual_wall_ns.store(0);
    detail::manual_cpu_ns.store(0);
  }
  ~manual_clock() { detail::manual_clock_installed.store(false); }
  manual_clock(const manual_clock&) = delete;
  manual_clock& operator=(const manual_clock&) = delete;

  /// Moves wall time forward. Negative steps would break every interval frugal measures.
  void advance(std::chrono::nanoseconds d) {
    if (d.count() < 0) throw std::invalid_argument("frugal::manual_clock::advance: step must be >= 0");
    detail::manual_wall_ns.fetch_add(d.count());
  }
  /// Moves CPU time forward (for every thread's CPU clock and the process CPU clock).
  void advance_cpu(std::chrono::nanoseconds d) {
    if (d.count() < 0)
      throw std::invalid_argument("frugal::manual_clock::advance_cpu: step must be >= 0");
    detail::manual_cpu_ns.fetch_add(d.count());
  }
  /// The manual wall time: the sum of every advance() so far.
  [[nodiscard]] std::chrono::nanoseconds now() const noexcept {
    return std::chrono::nanoseconds{detail::manual_wall_ns.load()};
  }
  /// The manual CPU time: the sum of every advance_cpu() so far.
  [[nodiscard]] std::chrono::nanoseconds cpu_now() const noexcept {
    return std::chrono::nanoseconds{detail::manual_cpu_ns.load()};
  }
};
}  // namespace frugal
