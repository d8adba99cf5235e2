/// @file
/// The clocks frugal reads: a steady wall clock (std::chrono::steady_clock, or on request the
/// CPU's invariant time-stamp counter calibrated against it), per-thread and per-process CPU
/// clocks, and a manual clock that tests install to drive time by hand (no test sleeps to test
/// a limit).
#pragma once

#include <frugal/config.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <stdexcept>

// The TSC clock needs rdtsc and cpuid, reached through GCC/Clang builtins on x86-64. Every
// other build compiles the same API, and use_tsc_clock() (<frugal/tsc_clock.hpp>) there always
// says why not.
#if (defined(__x86_64__) || defined(__amd64__)) && (defined(__GNUC__) || defined(__clang__))
#define FRUGAL_DETAIL_HAS_RDTSC 1
#else
#define FRUGAL_DETAIL_HAS_RDTSC 0
#endif

namespace frugal {

/// Which clock wall_now_ns() reads.
enum class wall_clock_kind : unsigned char {
  steady,  ///< std::chrono::steady_clock: the default
  tsc,     ///< the CPU's invariant time-stamp counter, calibrated against steady_clock (use_tsc_clock())
  manual,  ///< a frugal::manual_clock is installed: it wins over both real clocks while it lives
};

/// What a calibration of the time-stamp counter against steady_clock measured.
struct tsc_calibration {
  double frequency_hz = 0;              ///< TSC ticks per second of steady_clock; 0 if never measured
  std::chrono::nanoseconds window{0};   ///< steady_clock time from the first to the last sample used
  int samples = 0;                      ///< (TSC, steady_clock) pairs taken
  int samples_used = 0;                 ///< those within tolerance of the fitted line
  /// Bound on |TSC time - steady_clock time| at calibration: the largest distance of a used
  /// sample from the fitted line plus half the width of its read. It is how far a reading taken
  /// just after the switch may be from one steady_clock would have given.
  std::int64_t offset_error_ns = 0;
  /// Bound on the error of the rate, in millionths: 2 * offset_error_ns / window.
  double rate_error_ppm = 0;

  /// Bound on |TSC time - steady_clock time| `elapsed` after calibrating, from the calibration
  /// alone: offset_error_ns + rate_error_ppm * elapsed. A steady_clock the kernel slews (NTP)
  /// moves away from the TSC by the slew on top of this.
  [[nodiscard]] std::chrono::nanoseconds error_bound_after(std::chrono::nanoseconds elapsed) const noexcept {
    const double drift = rate_error_ppm * 1e-6 * static_cast<double>(elapsed.count() < 0 ? -elapsed.count() : elapsed.count());
    return std::chrono::nanoseconds{offset_error_ns + static_cast<std::int64_t>(std::ceil(drift))};
  }
};

namespace detail {
// Which wall clock frugal reads is one process-wide word, loaded once per read:
//   0                  steady_clock (the default: one load and a predictable branch);
//   bit 0 set          a manual_clock is installed: it wins over whatever the rest says;
//   any other bits     the address of the immutable tsc_params in use.
// Calibration parameters are written before their address is published (release) and read
// after it is loaded (acquire: a plain load on x86). Published parameters are never changed or
// freed -- a reader may hold the address for as long as it likes -- so a recalibration
// publishes a new block, and the old ones stay on a list (128 bytes per calibration).
inline constexpr std::uintptr_t manual_clock_bit = 1;

struct alignas(64) tsc_params {
  std::uint64_t base_tsc = 0;         ///< a TSC value taken while calibrating
  std::int64_t base_ns = 0;           ///< steady_clock's time at base_tsc, on steady_clock's origin
  std::int64_t ns_per_tick_q32 = 0;   ///< nanoseconds per tick, times 2^32
  tsc_calibration calibration;
  const tsc_params* older = nullptr;  ///< the calibration this one replaced: kept alive, never read
};
static_assert(alignof(tsc_params) > manual_clock_bit, "the manual-clock bit must be free in a tsc_params address");

inline std::atomic<std::uintptr_t> wall_clock_word{0};
inline std::atomic<std::int64_t> manual_wall_ns{0};
inline std::atomic<std::int64_t> manual_cpu_ns{0};

// Where the word can never hold parameters there is nothing to acquire.
inline constexpr std::memory_order wall_clock_word_order =
    FRUGAL_DETAIL_HAS_RDTSC ? std::memory_order_acquire : std::memory_order_relaxed;


inline std::int64_t read_clock_ns(clockid_t id) noexcept {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

inline std::int64_t steady_now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

#if FRUGAL_DETAIL_HAS_RDTSC
__extension__ typedef __int128 tsc_wide;  // one imul: rdx:rax

/// A TSC value on steady_clock's nanosecond scale. The distance from the calibration's TSC is
/// signed: a core a hair behind it (or a value read just before it) maps to just before base_ns.
[[nodiscard]] inline std::int64_t tsc_to_ns(const tsc_params& p, std::uint64_t tsc) noexcept {
  const auto ticks = static_cast<std::int64_t>(tsc - p.base_tsc);
  return p.base_ns + static_cast<std::int64_t>((static_cast<tsc_wide>(ticks) * p.ns_per_tick_q32) >> 32);
}

/// The hot read: rdtsc, a multiply, a shift and an add. A plain rdtsc, not the ordered
/// lfence+rdtsc steady_clock's vDSO uses (~11 ns more a read on the machine measured): it may
/// execute a little before the loads and stores that precede it (the out-of-order window),
/// which moves a scope's edge by that much, and lets a reading that follows another thread's
/// through an acquire precede it by as much (at most ~160 ns measured; budgets already clamp
/// such out-of-order transitions). Readings on one thread were never seen to go backwards.
[[nodiscard]] inline std::int64_t tsc_now_ns(const tsc_params& p) noexcept {
  return tsc_to_ns(p, __builtin_ia32_rdtsc());
}
#endif
}  // namespace detail

/// Wall time in nanoseconds on steady_clock's origin. By default steady_clock itself (vDSO:
/// ~27-30 ns a read here); after use_tsc_clock() the calibrated TSC (~12 ns a read here);
/// under a manual_clock, the manual time. One load of the clock-mode word decides which.
[[nodiscard]] inline std::int64_t wall_now_ns() noexcept {
  const std::uintptr_t word = detail::wall_clock_word.load(detail::wall_clock_word_order);
  if (word == 0) return detail::steady_now_ns();
#if FRUGAL_DETAIL_HAS_RDTSC
  if (FRUGAL_LIKELY((word & detail::manual_clock_bit) == 0))
    return detail::tsc_now_ns(*reinterpret_cast<const detail::tsc_params*>(word));
#endif
  return detail::manual_wall_ns.load(std::memory_order_relaxed);
}

/// CPU time of the calling thread. A system call on virtual machines (~1.5 us here): frugal
/// reads it only when a CPU-limited budget becomes active or idle on a thread, never per scope.
[[nodiscard]] inline std::int64_t thread_cpu_now_ns() noexcept {
  if (FRUGAL_UNLIKELY(detail::wall_clock_word.load(std::memory_order_relaxed) & detail::manual_clock_bit))
    return detail::manual_cpu_ns.load(std::memory_order_relaxed);
  return detail::read_clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

/// CPU time of the whole process (all threads), for reports.
[[nodiscard]] inline std::int64_t process_cpu_now_ns() noexcept {
  if (FRUGAL_UNLIKELY(detail::wall_clock_word.load(std::memory_order_relaxed) & detail::manual_clock_bit))
    return detail::manual_cpu_ns.load(std::memory_order_relaxed);
  return detail::read_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
}

/// The clock wall_now_ns() reads now.
[[nodiscard]] inline wall_clock_kind wall_clock_in_use() noexcept {
  const std::uintptr_t word = detail::wall_clock_word.load(std::memory_order_acquire);
  if (word & detail::manual_clock_bit) return wall_clock_kind::manual;
  return word != 0 ? wall_clock_kind::tsc : wall_clock_kind::steady;
}

/// While alive, replaces frugal's wall and CPU clocks with hand-driven ones for the whole
/// process. Both start at zero. Install it before creating the budgets it should drive: a
/// budget measures wall time relative to the clock it was created under. Every thread's CPU
/// clock reads the same manual CPU time. It wins over the TSC clock while it lives.
class manual_clock {
 public:
  manual_clock() {
    if (detail::wall_clock_word.fetch_or(detail::manual_clock_bit) & detail::manual_clock_bit)
      throw std::logic_error("frugal::manual_clock: another manual clock is already installed");
    detail::manual_wall_ns.store(0);
    detail::manual_cpu_ns.store(0);
  }
  ~manual_clock() { detail::wall_clock_word.fetch_and(~detail::manual_clock_bit); }
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
