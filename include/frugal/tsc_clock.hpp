/// @file
/// The TSC wall clock: use_tsc_clock() checks that the CPU's time-stamp counter is invariant,
/// calibrates it against steady_clock and makes it the clock wall_now_ns() reads (a scope's two
/// reads then cost about 0.4x two steady_clock reads); use_steady_clock() goes back. The hot read
/// itself is in <frugal/clock.hpp>; this header decides and calibrates.
#pragma once

#include <frugal/clock.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if FRUGAL_DETAIL_HAS_RDTSC
#include <cpuid.h>
#endif
#if defined(__linux__)
#include <sys/prctl.h>
#endif

namespace frugal {

/// The answer of use_tsc_clock(): whether frugal's wall clock is now the TSC and, if not, why.
struct tsc_clock_status {
  bool enabled = false;          ///< wall_now_ns() reads the TSC (unless a manual_clock is installed)
  std::string reason;            ///< why it is not in use, in words; empty when enabled
  tsc_calibration calibration;   ///< the calibration in use; after a refusal, what it measured, if anything
  /// Whether the TSC clock is in use: `if (auto s = frugal::use_tsc_clock(); !s) log(s.reason);`
  explicit operator bool() const noexcept { return enabled; }
};

namespace detail {
inline std::mutex tsc_calibration_mutex;             // one calibration at a time
inline const tsc_params* tsc_params_list = nullptr;  // every block ever published (guarded by the mutex)

/// What the CPU and the OS say about the time-stamp counter: the inputs of the decision whether
/// frugal may use it (tsc_refusal), kept apart from reading them so the decision can be tested.
struct tsc_cpu_facts {
  bool x86_64 = false;                   ///< built for x86-64 by GCC or Clang: rdtsc and cpuid are reachable
  std::uint32_t max_basic_leaf = 0;      ///< CPUID 0: EAX
  std::uint32_t leaf1_edx = 0;           ///< CPUID 1: EDX; bit 4, a time-stamp counter
  std::uint32_t max_extended_leaf = 0;   ///< CPUID 0x80000000: EAX
  std::uint32_t leaf80000007_edx = 0;    ///< CPUID 0x80000007: EDX; bit 8, the TSC is invariant
  bool rdtsc_allowed = true;             ///< false: the OS makes rdtsc fault here (Linux prctl PR_SET_TSC)
};

inline tsc_cpu_facts read_tsc_cpu_facts() noexcept {
  tsc_cpu_facts f;
#if FRUGAL_DETAIL_HAS_RDTSC
  f.x86_64 = true;
  unsigned a = 0, b = 0, c = 0, d = 0;
  f.max_basic_leaf = __get_cpuid_max(0, nullptr);
  if (f.max_basic_leaf >= 1 && __get_cpuid(1, &a, &b, &c, &d)) f.leaf1_edx = d;
  f.max_extended_leaf = __get_cpuid_max(0x80000000u, nullptr);
  if (f.max_extended_leaf >= 0x80000007u && __get_cpuid(0x80000007u, &a, &b, &c, &d)) f.leaf80000007_edx = d;
#endif
#if defined(__linux__) && defined(PR_GET_TSC) && defined(PR_TSC_SIGSEGV)
  int mode = 0;
  if (prctl(PR_GET_TSC, &mode, 0, 0, 0) == 0 && mode == PR_TSC_SIGSEGV) f.rdtsc_allowed = false;
#endif
  return f;
}

/// Why the TSC may not serve as frugal's wall clock on a CPU with these facts; empty: it may
/// (subject to calibration).
inline std::string tsc_refusal(const tsc_cpu_facts& f) {
  if (!f.x86_64)
    return "not x86-64 (or not built by GCC or Clang): this build has no rdtsc, so frugal reads steady_clock";
  if (f.max_basic_leaf < 1 || (f.leaf1_edx & (1u << 4)) == 0)
    return "CPUID reports no time-stamp counter (leaf 1, EDX bit 4 clear)";
  if (f.max_extended_leaf < 0x80000007u)
    return "CPUID has no leaf 0x80000007, so nothing says the TSC is invariant";
  if ((f.leaf80000007_edx & (1u << 8)) == 0)
    return "the TSC is not invariant (CPUID 0x80000007 EDX bit 8 clear): its rate may follow frequency "
           "changes or stop in sleep states (a hypervisor may also hide the bit)";
  if (!f.rdtsc_allowed) return "rdtsc is disabled for this process (prctl PR_SET_TSC, PR_TSC_SIGSEGV)";
  return {};
}

/// One calibration point: steady_clock's time and the TSC at that moment (the middle of two
/// TSC reads around the steady_clock read, `width` ticks apart).
struct tsc_sample {
  std::int64_t steady_ns = 0;
  std::uint64_t tsc = 0;
  std::uint64_t width = 0;
};

/// The line through calibration samples, or why there is none.
struct tsc_fit {
  std::string refusal;        ///< empty: accepted
  std::uint64_t base_tsc = 0;
  std::int64_t base_ns = 0;
  double ns_per_tick = 0;
  tsc_calibration calibration;
};

/// Tolerances of fit_tsc_samples.
struct tsc_fit_limits {
  double residual_ns = 2000;     ///< a sample further than this (plus its half-width) from the line is an outlier
  double max_outlier_fraction = 0.25;
  double max_rate_error_ppm = 200;
  double min_frequency_hz = 1e8;
  double max_frequency_hz = 1e11;
};

inline double median_of(std::vector<double>& v) {
  const std::size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
  const double upper = v[mid];
  if (v.size() % 2 == 1) return upper;
  return (*std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid)) + upper) / 2;
}

/// Fits steady_ns = base_ns + ns_per_tick * (tsc - base_tsc) robustly: the slope is the median
/// of the slopes between pairs at least a third of the window apart (Theil-Sen on long
/// baselines), the offset the median of the samples' intercepts; samples off the line are
/// dropped and the line refitted. Refuses when the samples go backwards, the frequency is
/// implausible, too many samples are off the line (the two clocks disagree), or the rate is
/// too uncertain. base_tsc is the last sample's, so the line is exact where it is used next.
inline tsc_fit fit_tsc_samples(const std::vector<tsc_sample>& all, const tsc_fit_limits& lim = {}) {
  tsc_fit fit;
  fit.calibration.samples = static_cast<int>(all.size());
  if (all.size() < 5) {
    fit.refusal = "calibration needs at least 5 samples, got " + std::to_string(all.size());
    return fit;
  }
  for (std::size_t i = 1; i < all.size(); ++i) {
    if (all[i].steady_ns <= all[i - 1].steady_ns || static_cast<std::int64_t>(all[i].tsc - all[i - 1].tsc) <= 0) {
      fit.refusal = "calibration is unstable: between samples " + std::to_string(i - 1) + " and " +
                    std::to_string(i) + " the TSC or steady_clock did not advance";
      return fit;
    }
  }
  const tsc_sample& ref = all.back();
  auto x = [&](const tsc_sample& s) { return static_cast<double>(static_cast<std::int64_t>(s.tsc - ref.tsc)); };
  auto y = [&](const tsc_sample& s) { return static_cast<double>(s.steady_ns - ref.steady_ns); };

  std::vector<const tsc_sample*> used;
  for (const auto& s : all) used.push_back(&s);
  for (int pass = 0; pass < 2; ++pass) {
    const double span = static_cast<double>(used.back()->steady_ns - used.front()->steady_ns);
    std::vector<double> slopes;
    for (std::size_t i = 0; i < used.size(); ++i)
      for (std::size_t j = i + 1; j < used.size(); ++j)
        if (y(*used[j]) - y(*used[i]) >= span / 3) slopes.push_back((y(*used[j]) - y(*used[i])) / (x(*used[j]) - x(*used[i])));
    if (slopes.empty()) {
      fit.refusal = "calibration is unstable: no two usable samples a third of the window apart";
      return fit;
    }
    const double slope = median_of(slopes);
    const double hz = 1e9 / slope;
    fit.calibration.frequency_hz = hz;
    if (!(hz >= lim.min_frequency_hz && hz <= lim.max_frequency_hz)) {
      fit.refusal = "calibration measured an implausible TSC frequency of " + std::to_string(hz / 1e6) + " MHz";
      return fit;
    }
    std::vector<double> intercepts;
    for (const auto* s : used) intercepts.push_back(y(*s) - slope * x(*s));
    const double offset = median_of(intercepts);
    fit.ns_per_tick = slope;
    fit.base_tsc = ref.tsc;
    fit.base_ns = ref.steady_ns + static_cast<std::int64_t>(std::llround(offset));
    auto half_width_ns = [&](const tsc_sample& s) { return static_cast<double>(s.width) * slope / 2; };
    if (pass == 0) {
      std::vector<const tsc_sample*> kept;
      double worst = 0;
      for (const auto& s : all) {
        const double r = std::abs(y(s) - slope * x(s) - offset);
        worst = std::max(worst, r);
        if (r <= lim.residual_ns + half_width_ns(s)) kept.push_back(&s);
      }
      const auto outliers = all.size() - kept.size();
      if (static_cast<double>(outliers) > lim.max_outlier_fraction * static_cast<double>(all.size()) || kept.size() < 3) {
        fit.refusal = "the TSC and steady_clock disagree: " + std::to_string(outliers) + " of " +
                      std::to_string(all.size()) + " calibration samples are more than " +
                      std::to_string(static_cast<long long>(lim.residual_ns)) + " ns off the fitted line (worst " +
                      std::to_string(static_cast<long long>(worst)) + " ns)";
        return fit;
      }
      used = std::move(kept);
      continue;
    }
    double err = 0;
    for (const auto* s : used) err = std::max(err, std::abs(y(*s) - slope * x(*s) - offset) + half_width_ns(*s));
    fit.calibration.samples_used = static_cast<int>(used.size());
    fit.calibration.window = std::chrono::nanoseconds{used.back()->steady_ns - used.front()->steady_ns};
    fit.calibration.offset_error_ns = static_cast<std::int64_t>(std::ceil(err));
    fit.calibration.rate_error_ppm = 2 * err / static_cast<double>(fit.calibration.window.count()) * 1e6;
    if (fit.calibration.rate_error_ppm > lim.max_rate_error_ppm) {
      fit.refusal = "calibration is unstable: the rate is uncertain to " +
                    std::to_string(static_cast<long long>(fit.calibration.rate_error_ppm)) + " ppm (limit " +
                    std::to_string(static_cast<long long>(lim.max_rate_error_ppm)) + ")";
      return fit;
    }
  }
  return fit;
}

#if FRUGAL_DETAIL_HAS_RDTSC
/// A calibration point: the narrowest of a few lfence-ordered TSC brackets around a
/// steady_clock read (a bracket a preemption widened loses).
inline tsc_sample take_tsc_sample() noexcept {
  tsc_sample best{0, 0, ~std::uint64_t{0}};
  for (int i = 0; i < 8; ++i) {
    __builtin_ia32_lfence();
    const std::uint64_t before = __builtin_ia32_rdtsc();
    __builtin_ia32_lfence();
    const std::int64_t ns = steady_now_ns();
    __builtin_ia32_lfence();
    const std::uint64_t after = __builtin_ia32_rdtsc();
    if (after >= before && after - before < best.width) best = {ns, before + (after - before) / 2, after - before};
  }
  return best;
}
#endif

/// Points wall_now_ns() at `p` (nullptr: steady_clock), keeping a manual clock's bit.
inline void select_tsc_params(const tsc_params* p) noexcept {
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  std::uintptr_t word = wall_clock_word.load(std::memory_order_relaxed);
  while (!wall_clock_word.compare_exchange_weak(word, (word & manual_clock_bit) | address, std::memory_order_release,
                                                std::memory_order_relaxed)) {
  }
}

inline const tsc_params* selected_tsc_params() noexcept {
  return reinterpret_cast<const tsc_params*>(wall_clock_word.load(std::memory_order_acquire) & ~manual_clock_bit);
}
}  // namespace detail

/// Makes frugal's wall clock the CPU's time-stamp counter, if it is invariant and agrees with
/// steady_clock: checks CPUID (and, on Linux, that rdtsc is allowed), then spends
/// `calibration_window` (1 ms to 10 s; 20 ms by default) taking 9 (TSC, steady_clock) pairs and
/// fitting a line through them. TSC readings are on steady_clock's origin, so an interval
/// from a reading before the switch to one after it is right to within
/// calibration.offset_error_ns. Called while the TSC is in use, recalibrates.
///
/// On refusal frugal reads steady_clock (even if an earlier calibration was in use) and the
/// status says why. Thread-safe; readers on other threads switch at their next read. A
/// manual_clock installed keeps precedence: the TSC is used once it is gone.
inline tsc_clock_status use_tsc_clock(std::chrono::nanoseconds calibration_window = std::chrono::milliseconds{20}) {
  if (calibration_window < std::chrono::milliseconds{1} || calibration_window > std::chrono::seconds{10})
    throw std::invalid_argument("frugal::use_tsc_clock: the calibration window must be 1 ms to 10 s");
  std::lock_guard<std::mutex> lock(detail::tsc_calibration_mutex);
  tsc_clock_status status;
  status.reason = detail::tsc_refusal(detail::read_tsc_cpu_facts());
#if FRUGAL_DETAIL_HAS_RDTSC
  if (status.reason.empty()) {
    constexpr int samples = 9;
    std::vector<detail::tsc_sample> taken;
    taken.reserve(samples);
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < samples; ++i) {
      if (i > 0) std::this_thread::sleep_until(start + calibration_window * i / (samples - 1));
      taken.push_back(detail::take_tsc_sample());
    }
    detail::tsc_fit fit = detail::fit_tsc_samples(taken);
    status.calibration = fit.calibration;
    if (fit.refusal.empty()) {
      auto* p = new detail::tsc_params;
      p->base_tsc = fit.base_tsc;
      p->base_ns = fit.base_ns;
      p->ns_per_tick_q32 = static_cast<std::int64_t>(std::llround(std::ldexp(fit.ns_per_tick, 32)));
      p->calibration = fit.calibration;
      p->older = detail::tsc_params_list;
      detail::tsc_params_list = p;
      detail::select_tsc_params(p);
      status.enabled = true;
      return status;
    }
    status.reason = std::move(fit.refusal);
  }
#endif
  detail::select_tsc_params(nullptr);
  return status;
}

/// Makes frugal's wall clock steady_clock again (the default). A manual clock keeps precedence.
inline void use_steady_clock() noexcept { detail::select_tsc_params(nullptr); }

/// The calibration of the TSC clock while it is selected (also while a manual clock overrides
/// it); nothing while frugal reads steady_clock.
[[nodiscard]] inline std::optional<tsc_calibration> tsc_clock_calibration() noexcept {
  if (const detail::tsc_params* p = detail::selected_tsc_params()) return p->calibration;
  return std::nullopt;
}

/// Applies the environment variable FRUGAL_CLOCK: `tsc` calls use_tsc_clock(), `steady` calls
/// use_steady_clock(), unset or empty changes nothing; any other value changes nothing and says
/// so. Call it once, at the start of main(): frugal never reads the variable by itself (a
/// header-only library would have to calibrate, for 20 ms, during static initialisation, with
/// nowhere to put the reason of a refusal). Returns whether the TSC clock is in use after it.
inline tsc_clock_status use_clock_from_environment() {
  const char* value = std::getenv("FRUGAL_CLOCK");
  const std::string v = value ? value : "";
  if (v == "tsc") return use_tsc_clock();
  tsc_clock_status status;
  if (v == "steady") {
    use_steady_clock();
    status.reason = "FRUGAL_CLOCK=steady";
    return status;
  }
  if (const auto cal = tsc_clock_calibration()) {
    status.enabled = true;
    status.calibration = *cal;
  }
  if (!v.empty())
    status.reason = "FRUGAL_CLOCK='" + v + "' is neither tsc nor steady: the clock is unchanged";
  else if (!status.enabled)
    status.reason = "FRUGAL_CLOCK is not set";
  return status;
}
}  // namespace frugal
