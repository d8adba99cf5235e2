// The optional TSC wall clock (frugal::use_tsc_clock): the decision whether a CPU may use it,
// fed CPU facts; the calibration fit, fed samples; and, on the real hardware when its CPU has an
// invariant TSC, the clock itself -- agreement with steady_clock across a sleep and across the
// switch, monotonicity on each thread, consistency between threads, switching back, and the
// manual clock's precedence. Every test leaves the process reading steady_clock.
#include <frugal/budget.hpp>
#include <frugal/tsc_clock.hpp>
#include <frugal/scope.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// The fixed part of every agreement bound, on top of the calibration's own
// (error_bound_after): a plain rdtsc may run a few dozen instructions early or late, and the
// conversion rounds.
constexpr std::int64_t slack_ns = 1000;

frugal::detail::tsc_cpu_facts invariant_cpu() {
  frugal::detail::tsc_cpu_facts f;
  f.x86_64 = true;
  f.max_basic_leaf = 0x10;
  f.leaf1_edx = 1u << 4;
  f.max_extended_leaf = 0x80000008u;
  f.leaf80000007_edx = 1u << 8;
  f.rdtsc_allowed = true;
  return f;
}

// The flags line of /proc/cpuinfo ("" where there is none).
std::string cpuinfo_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0) return line + " ";
  return {};
}

bool has_flag(const std::string& flags, const std::string& flag) { return flags.find(" " + flag + " ") != std::string::npos; }

bool cpu_allows_tsc() { return frugal::detail::tsc_refusal(frugal::detail::read_tsc_cpu_facts()).empty(); }

// A frugal wall reading between two steady_clock reads; the narrowest of a few tries, so a
// preemption rarely widens it (and a wide bracket only loosens the check).
struct bracket {
  std::int64_t before = 0, reading = 0, after = 0;
  // How far the reading lies outside [before, after]; 0 inside.
  [[nodiscard]] std::int64_t outside() const {
    if (reading < before) return before - reading;
    if (reading > after) return reading - after;
    return 0;
  }
};

bracket read_bracketed() {
  bracket best{0, 0, INT64_MAX / 2};
  for (int i = 0; i < 32; ++i) {
    bracket b;
    b.before = frugal::detail::steady_now_ns();
    b.reading = frugal::wall_now_ns();
    b.after = frugal::detail::steady_now_ns();
    if (b.after - b.before < best.after - best.before) best = b;
  }
  return best;
}

// Turns the TSC clock on for a test, or skips it where this CPU refuses (after checking the
// refusal says why); always leaves steady_clock behind.
class TscClock : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(frugal::wall_clock_in_use(), frugal::wall_clock_kind::steady) << "a previous test left a clock on";
  }
  void TearDown() override {
    frugal::use_steady_clock();
    EXPECT_EQ(frugal::wall_clock_in_use(), frugal::wall_clock_kind::steady);
  }
  // Enables the TSC clock, or skips (returns false) where the CPU cannot have it.
  bool enable() {
    status_ = frugal::use_tsc_clock();
    if (!cpu_allows_tsc()) {
      EXPECT_FALSE(status_.enabled);
      EXPECT_FALSE(status_.reason.empty());
      EXPECT_EQ(frugal::wall_clock_in_use(), frugal::wall_clock_kind::steady);
      return false;
    }
    EXPECT_TRUE(status_.enabled) << status_.reason;
    EXPECT_TRUE(status_.reason.empty()) << status_.reason;
    return status_.enabled;
  }
  frugal::tsc_clock_status status_;
};

#define FRUGAL_ENABLE_TSC_OR_SKIP()                                                         \
  do {                                                                                      \
    if (!enable()) {                                                                        \
      if (::testing::Test::HasFailure()) return;                                            \
      GTEST_SKIP() << "no TSC clock on this machine: " << status_.reason;                   \
    }                                                                                       \
  } while (0)

// ---------------------------------------------------------------------------------------------
// The decision, fed CPU facts.

TEST(TscDecision, AcceptsAnInvariantTsc) { EXPECT_EQ(frugal::detail::tsc_refusal(invariant_cpu()), ""); }

TEST(TscDecision, RefusesOffX86) {
  auto f = invariant_cpu();
  f.x86_64 = false;
  const std::string why = frugal::detail::tsc_refusal(f);
  EXPECT_NE(why.find("x86-64"), std::string::npos) << why;
}

TEST(TscDecision, RefusesWithoutATimeStampCounter) {
  auto f = invariant_cpu();
  f.leaf1_edx = ~(1u << 4);
  EXPECT_NE(frugal::detail::tsc_refusal(f).find("no time-stamp counter"), std::string::npos);
  f = invariant_cpu();
  f.max_basic_leaf = 0;
  EXPECT_NE(frugal::detail::tsc_refusal(f).find("no time-stamp counter"), std::string::npos);
}

TEST(TscDecision, RefusesWithoutTheInvariantTscLeaf) {
  auto f = invariant_cpu();
  f.max_extended_leaf = 0x80000006u;
  EXPECT_NE(frugal::detail::tsc_refusal(f).find("0x80000007"), std::string::npos);
}

TEST(TscDecision, RefusesANonInvariantTsc) {
  auto f = invariant_cpu();
  f.leaf80000007_edx = ~(1u << 8);  // every other power-management bit set
  const std::string why = frugal::detail::tsc_refusal(f);
  EXPECT_NE(why.find("not invariant"), std::string::npos) << why;
  EXPECT_NE(why.find("bit 8"), std::string::npos) << why;
}

TEST(TscDecision, RefusesWhereRdtscFaults) {
  auto f = invariant_cpu();
  f.rdtsc_allowed = false;
  EXPECT_NE(frugal::detail::tsc_refusal(f).find("PR_SET_TSC"), std::string::npos);
}

// Linux derives constant_tsc and nonstop_tsc from CPUID 0x80000007 EDX bit 8: frugal's reading
// of CPUID must say the same, and so must use_tsc_clock().
TEST(TscDecision, ThisCpuAgreesWithProcCpuinfo) {
  const std::string flags = cpuinfo_flags();
  if (flags.empty()) GTEST_SKIP() << "no /proc/cpuinfo flags line";
  const auto facts = frugal::detail::read_tsc_cpu_facts();
  if (!facts.x86_64) {
    EXPECT_FALSE(frugal::detail::tsc_refusal(facts).empty());
    GTEST_SKIP() << "not an x86-64 build";
  }
  EXPECT_EQ((facts.leaf1_edx >> 4) & 1, has_flag(flags, "tsc") ? 1u : 0u);
  if (has_flag(flags, "nonstop_tsc")) {
    EXPECT_EQ((facts.leaf80000007_edx >> 8) & 1, 1u);
    EXPECT_TRUE(has_flag(flags, "constant_tsc"));
    EXPECT_TRUE(cpu_allows_tsc()) << frugal::detail::tsc_refusal(facts);
  }
}

// ---------------------------------------------------------------------------------------------
// The calibration fit, fed samples.

std::vector<frugal::detail::tsc_sample> line_samples(double hz, int n, std::int64_t step_ns) {
  std::vector<frugal::detail::tsc_sample> s;
  const std::int64_t ns0 = 123'456'789'000;
  const std::uint64_t tsc0 = 987'654'321'000'000ull;
  for (int i = 0; i < n; ++i) {
    const std::int64_t ns = ns0 + i * step_ns;
    s.push_back({ns, tsc0 + static_cast<std::uint64_t>(std::llround(static_cast<double>(i * step_ns) * hz / 1e9)), 60});
  }
  return s;
}

TEST(TscFit, RecoversTheRateAndOriginOfALine) {
  const auto s = line_samples(2.5e9, 9, 2'500'000);
  const auto fit = frugal::detail::fit_tsc_samples(s);
  ASSERT_EQ(fit.refusal, "");
  EXPECT_NEAR(fit.calibration.frequency_hz, 2.5e9, 1.0);
  EXPECT_EQ(fit.base_tsc, s.back().tsc);
  EXPECT_NEAR(static_cast<double>(fit.base_ns), static_cast<double>(s.back().steady_ns), 1.0);
  EXPECT_EQ(fit.calibration.samples, 9);
  EXPECT_EQ(fit.calibration.samples_used, 9);
  EXPECT_EQ(fit.calibration.window, 20ms);
  EXPECT_LE(fit.calibration.offset_error_ns, 14);  // half of 60 ticks at 2.5 GHz, plus rounding
  EXPECT_LT(fit.calibration.rate_error_ppm, 2.0);
  // A reading converted with it lands on steady_clock's time.
  frugal::detail::tsc_params p;
  p.base_tsc = fit.base_tsc;
  p.base_ns = fit.base_ns;
  p.ns_per_tick_q32 = std::llround(std::ldexp(fit.ns_per_tick, 32));
  EXPECT_NEAR(static_cast<double>(frugal::detail::tsc_to_ns(p, s.front().tsc)), static_cast<double>(s.front().steady_ns), 2.0);
  // and one from a core a hair behind the calibration's TSC lands just before it
  EXPECT_NEAR(static_cast<double>(frugal::detail::tsc_to_ns(p, s.back().tsc - 250)), static_cast<double>(s.back().steady_ns - 100), 2.0);
}

TEST(TscFit, DropsAPreemptedSample) {
  auto s = line_samples(3e9, 9, 2'500'000);
  s[4].steady_ns += 400'000;  // steady_clock read 400 us late
  const auto fit = frugal::detail::fit_tsc_samples(s);
  ASSERT_EQ(fit.refusal, "");
  EXPECT_EQ(fit.calibration.samples_used, 8);
  EXPECT_NEAR(fit.calibration.frequency_hz, 3e9, 3.0);
}

TEST(TscFit, RefusesClocksThatDisagree) {
  // The TSC runs 1 % slower for the second half of the window: no line fits.
  auto s = line_samples(2e9, 9, 2'500'000);
  for (std::size_t i = 5; i < s.size(); ++i) {
    const auto extra = static_cast<std::uint64_t>((s[i].tsc - s[4].tsc) / 100);
    s[i].tsc -= extra;
  }
  const auto fit = frugal::detail::fit_tsc_samples(s);
  EXPECT_NE(fit.refusal.find("disagree"), std::string::npos) << fit.refusal;
}

TEST(TscFit, RefusesACounterThatGoesBackwards) {
  auto s = line_samples(2e9, 9, 2'500'000);
  s[6].tsc = s[5].tsc - 10;
  const auto fit = frugal::detail::fit_tsc_samples(s);
  EXPECT_NE(fit.refusal.find("did not advance"), std::string::npos) << fit.refusal;
}

TEST(TscFit, RefusesAnImplausibleFrequency) {
  const auto fit = frugal::detail::fit_tsc_samples(line_samples(1e4, 9, 2'500'000));
  EXPECT_NE(fit.refusal.find("implausible"), std::string::npos) << fit.refusal;
}

TEST(TscFit, RefusesAnUncertainRate) {
  // Samples 400 ns off the line, alternately above and below, over only 2 ms: well within the
  // outlier tolerance, but the rate is then uncertain to ~400 ppm.
  auto s = line_samples(2e9, 9, 250'000);
  for (std::size_t i = 0; i < s.size(); ++i) s[i].steady_ns += (i % 2 ? 400 : -400);
  const auto fit = frugal::detail::fit_tsc_samples(s);
  EXPECT_NE(fit.refusal.find("uncertain"), std::string::npos) << fit.refusal;
  EXPECT_GT(fit.calibration.rate_error_ppm, 200);
  // The same noise over 20 ms is a usable calibration.
  auto wide = line_samples(2e9, 9, 2'500'000);
  for (std::size_t i = 0; i < wide.size(); ++i) wide[i].steady_ns += (i % 2 ? 400 : -400);
  EXPECT_EQ(frugal::detail::fit_tsc_samples(wide).refusal, "");
}

TEST(TscFit, RefusesTooFewSamples) {
  EXPECT_FALSE(frugal::detail::fit_tsc_samples(line_samples(2e9, 4, 5'000'000)).refusal.empty());
}

// ---------------------------------------------------------------------------------------------
// The clock on the real hardware.

TEST_F(TscClock, RefusesABadWindow) {
  EXPECT_THROW((void)frugal::use_tsc_clock(0ms), std::invalid_argument);
  EXPECT_THROW((void)frugal::use_tsc_clock(11s), std::invalid_argument);
  EXPECT_EQ(frugal::wall_clock_in_use(), frugal::wall_clock_kind::steady);
}

TEST_F(TscClock, CalibratesAgainstSteadyClock) {
  FRUGAL_ENABLE_TSC_OR_SKIP();
  EXPECT_EQ(frugal::wall_clock_in_use(), frugal::wall_clock_kind::tsc);
  const auto& c = status_.calibration;
  EXPECT_GT(c.frequency_hz, 1e8);
  EXPECT_LT(c.frequency_hz, 1e11);
  EXPECT_EQ(c.samples, 9);
  EXPECT_GE(c.samples_used, 7);
  EXPECT_GE(c.window, 10ms);  // 20 ms asked; at least two thirds of the samples span half of it
  EXPECT_GT(c.offset_error_ns, 0);
  EXPECT_LE(c.rate_error_ppm, 200);
  const auto in_use = frugal::tsc_clock_calibration();
  ASSERT_TRUE(in_use.has_value());
  EXPECT_EQ(in_use->frequency_hz, c.frequency_hz);
  RecordProperty("tsc_mhz", std::to_string(c.frequency_hz / 1e6));
  RecordProperty("offset_error_ns", std::to_string(c.offset_error_ns));
  RecordProperty("rate_error_ppm", std::to_string(c.rate_error_ppm));
}

// The stated bound: a TSC reading is within error_bound_after(elapsed since calibrating) + 1 us
// of steady_clock, here across a 50 ms sleep, and so is the interval across it.
TEST_F(TscClock, AgreesWithSteadyClockAcrossASleep) {
  const std::int64_t calibrated_before = frugal::detail::steady_now_ns();
  FRUGAL_ENABLE_TSC_OR_SKIP();
  const auto bound = [&](const bracket& b) {
    return status_.calibration.error_bound_after(std::chrono::nanoseconds{b.after - calibrated_before}).count() + slack_ns;
  };
  const bracket first = read_bracketed();
  std::this_thread::sleep_for(50ms);
  const bracket second = read_bracketed();
  EXPECT_LE(first.outside(), bound(first)) << "before the sleep";
  EXPECT_LE(second.outside(), bound(second)) << "after the sleep";
  const std::int64_t interval = second.reading - first.reading;
  EXPECT_GE(interval, second.before - first.after - bound(first) - bound(second));
  EXPECT_LE(interval, second.after - first.before + bound(first) + bound(second));
  EXPECT_GE(interval, 50'000'000);
  RecordProperty("deviation_after_sleep_ns", std::to_string(second.outside()));
}

// A reading before the switch and one after it make a right interval: TSC readings are on
// steady_clock's origin. And back.
TEST_F(TscClock, IntervalsAcrossTheSwitchStayRight) {
  const std::int64_t on_steady = frugal::wall_now_ns();
  const std::int64_t steady_before = frugal::detail::steady_now_ns();
  FRUGAL_ENABLE_TSC_OR_SKIP();
  const bracket b = read_bracketed();
  const std::int64_t bound = status_.calibration.error_bound_after(std::chrono::nanoseconds{b.after - steady_before}).count() + slack_ns;
  EXPECT_LE(b.outside(), bound);
  EXPECT_GE(b.reading - on_steady, b.before - on_steady - bound);
  const std::int64_t last_tsc = frugal::wall_now_ns();
  frugal::use_steady_clock();
  const std::int64_t back_on_steady = frugal::wall_now_ns();
  EXPECT_GE(back_on_steady - last_tsc, -bound);
}

// A budget made under steady_clock times a scope opened under the TSC: its wall is right.
TEST_F(TscClock, ABudgetMeasuresAcrossTheSwitch) {
  frugal::budget run{"run"};
  const std::int64_t steady_before = frugal::detail::steady_now_ns();
  FRUGAL_ENABLE_TSC_OR_SKIP();
  std::int64_t a = 0, b = 0;
  {
    frugal::scope s{run, "sleep"};
    a = frugal::detail::steady_now_ns();
    std::this_thread::sleep_for(20ms);
    b = frugal::detail::steady_now_ns();
  }
  const std::int64_t c = frugal::detail::steady_now_ns();
  const double bound_s =
      static_cast<double>(status_.calibration.error_bound_after(std::chrono::nanoseconds{c - steady_before}).count() + slack_ns) / 1e9;
  const double wall = run.used(frugal::resource::wall);
  EXPECT_GE(wall, static_cast<double>(b - a) / 1e9 - 2 * bound_s);
  EXPECT_LE(wall, static_cast<double>(c - steady_before) / 1e9 + 2 * bound_s);
}

// Readings on one thread never go backwards, over many reads on more threads than cores (so
// they migrate between cores) that yield now and then.
TEST_F(TscClock, NeverGoesBackwardsOnAThread) {
  FRUGAL_ENABLE_TSC_OR_SKIP();
  const unsigned threads = std::max(4u, 2 * std::thread::hardware_concurrency());
  std::vector<std::int64_t> backwards(threads, 0), worst(threads, 0);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      std::int64_t prev = frugal::wall_now_ns();
      for (int i = 0; i < 1'000'000; ++i) {
        if (i % 4096 == 0) std::this_thread::yield();
        const std::int64_t now = frugal::wall_now_ns();
        if (now < prev) {
          ++backwards[t];
          worst[t] = std::max(worst[t], prev - now);
        }
        prev = now;
      }
    });
  for (auto& th : pool) th.join();
  for (unsigned t = 0; t < threads; ++t) EXPECT_EQ(backwards[t], 0) << "thread " << t << ": worst step back " << worst[t] << " ns";
}

// Threads agree: each thread's readings agree with steady_clock, and a reading that
// happens-after another thread's (by a release/acquire handoff) is not earlier than it by more
// than the out-of-order window of a plain rdtsc (which may run before the acquiring load
// completes: up to ~160 ns measured here). Cores whose counters were out of step by more than
// slack_ns would fail it.
TEST_F(TscClock, ThreadsAgree) {
  FRUGAL_ENABLE_TSC_OR_SKIP();
  const std::int64_t bound = status_.calibration.error_bound_after(5s).count() + slack_ns;  // it takes well under 5 s

  constexpr unsigned workers = 4;
  std::vector<std::int64_t> outside(workers, 0);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < workers; ++t)
    pool.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        outside[t] = std::max(outside[t], read_bracketed().outside());
        std::this_thread::sleep_for(1ms);
      }
    });
  for (auto& th : pool) th.join();
  for (unsigned t = 0; t < workers; ++t) EXPECT_LE(outside[t], bound) << "thread " << t;

  // Ping-pong: each side reads the clock after acquiring the other's reading.
  constexpr int rounds = 20'000;
  std::atomic<std::int64_t> ball{0};  // the last reading
  std::atomic<int> turn{0};
  std::int64_t earlier = 0, worst = 0;
  auto player = [&](int me, std::int64_t& my_earlier, std::int64_t& my_worst) {
    for (int r = 0; r < rounds; ++r) {
      while (turn.load(std::memory_order_acquire) != me) std::this_thread::yield();
      const std::int64_t theirs = ball.load(std::memory_order_relaxed);
      const std::int64_t mine = frugal::wall_now_ns();
      if (mine < theirs) {
        ++my_earlier;
        my_worst = std::max(my_worst, theirs - mine);
      }
      ball.store(mine, std::memory_order_relaxed);
      turn.store(1 - me, std::memory_order_release);
    }
  };
  std::int64_t earlier_b = 0, worst_b = 0;
  std::thread other{[&] { player(1, earlier_b, worst_b); }};
  player(0, earlier, worst);
  other.join();
  EXPECT_LE(std::max(worst, worst_b), slack_ns) << earlier + earlier_b << " of " << 2 * rounds << " readings preceded the one they followed";
  RecordProperty("handoffs_read_earlier", std::to_string(earlier + earlier_b));
  RecordProperty("handoff_worst_earlier_ns", std::to_string(std::max(worst, worst_b)));
}

// Recalibrating and switching while other threads read: every reader stays near steady_clock,
// and the parameters a reader holds are never torn (the test is meant for ThreadSanitizer too).
TEST_F(TscClock, SwitchesWhileOtherThreadsRead) {
  FRUGAL_ENABLE_TSC_OR_SKIP();
  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> worst{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t)
    readers.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        const std::int64_t a = frugal::detail::steady_now_ns();
        const std::int64_t w = frugal::wall_now_ns();
        const std::int64_t b = frugal::detail::steady_now_ns();
        // Only the reading's distance outside its own bracket matters; preemption widens it.
        const std::int64_t off = w < a ? a - w : (w > b ? w - b : 0);
        std::int64_t seen = worst.load(std::memory_order_relaxed);
        while (off > seen && !worst.compare_exchange_weak(seen, off, std::memory_order_relaxed)) {
        }
      }
    });
  for (int i = 0; i < 3; ++i) {
    const auto st = frugal::use_tsc_clock(5ms);
    EXPECT_TRUE(st.enabled) << st.reason;
    std::this_thread::sleep_for(5ms);
    frugal::use_steady_clock();
    std::this_thread::sleep_for(2ms);
  }
  stop = true;
  for (auto& th : readers) th.join();
  // A 5 ms calibration is good to a few ppm or better over the few ms each lasts; allow 50 us.
  EXPECT_LE(worst.load(), 50'000);
}

TEST_F(TscClock, SwitchingBackRestoresSteadyClock) {
  FRUGAL_ENABLE_TSC_OR_SKIP();
  ASSERT_EQ(frugal::wall_clock_in_use(), frugal::wall_clock_kind::tsc);
  frugal::use_steady_clock();
  EXPECT_EQ(frugal::wall_clock_in_use(), frugal::wall_clock_kind::steady);
  EXPECT_FALSE(frugal::tsc_clock_calibration().has_value());
  // steady_clock itself: every reading lies inside its bracket, to the nanosecond.
  for (int i = 0; i < 1000; ++i) {
    const std::int64_t a = frugal::detail::steady_now_ns();
    const std::int64_t w = frugal::wall_now_ns();
    const std::int64_t b = frugal::detail::steady_now_ns();
    ASSERT_LE(a, w);
    ASSERT_LE(w, b);
  }
}

TEST_F(TscClock, ManualClockWinsWhileTscIsOn) {
  FRUGAL_ENABLE_TSC_OR_SKIP();
  {
    frugal::manual_clock clock;
    EXPECT_EQ(frugal::wall_clock_in_use(), frugal::wall_clock_kind::manual);
    EXPECT_TRUE(frugal::tsc_clock_calibration().has_value());  // still selected underneath
    EXPECT_EQ(frugal::wall_now_ns(), 0);
    frugal::budget run{"run"};
    {
      frugal::scope s{run, "step"};
      clock.advance(1s);
      clock.advance_cpu(300ms);
    }
    EXPECT_EQ(frugal::wall_now_ns(), 1'000'000'000);
    EXPECT_EQ(frugal::thread_cpu_now_ns(), 300'000'000);
    EXPECT_EQ(run.used(frugal::resource::wall), 1.0);
    EXPECT_THROW(frugal::manual_clock{}, std::logic_error);
    EXPECT_EQ(frugal::wall_clock_in_use(), frugal::wall_clock_kind::manual);  // the refused one changed nothing
  }
  EXPECT_EQ(frugal::wall_clock_in_use(), frugal::wall_clock_kind::tsc);
  EXPECT_GT(frugal::wall_now_ns(), 1'000'000'000);
}

// The other order: a manual clock first, the TSC switched on and off under it.
TEST_F(TscClock, ManualClockWinsOverALaterSwitch) {
  if (!cpu_allows_tsc()) GTEST_SKIP() << "no TSC clock on this machine";
  {
    frugal::manual_clock clock;
    clock.advance(7ns);
    const auto st = frugal::use_tsc_clock();
    ASSERT_TRUE(st.enabled) << st.reason;
    EXPECT_EQ(frugal::wall_clock_in_use(), frugal::wall_clock_kind::manual);
    EXPECT_EQ(frugal::wall_now_ns(), 7);
    frugal::use_steady_clock();
    EXPECT_EQ(frugal::wall_clock_in_use(), frugal::wall_clock_kind::manual);
    EXPECT_EQ(frugal::wall_now_ns(), 7);
    ASSERT_TRUE(frugal::use_tsc_clock().enabled);
  }
  EXPECT_EQ(frugal::wall_clock_in_use(), frugal::wall_clock_kind::tsc);
}

TEST_F(TscClock, FollowsTheEnvironmentWhenAsked) {
  ::setenv("FRUGAL_CLOCK", "bogus", 1);
  auto st = frugal::use_clock_from_environment();
  EXPECT_FALSE(st.enabled);
  EXPECT_NE(st.reason.find("bogus"), std::string::npos) << st.reason;
  EXPECT_EQ(frugal::wall_clock_in_use(), frugal::wall_clock_kind::steady);

  ::setenv("FRUGAL_CLOCK", "tsc", 1);
  st = frugal::use_clock_from_environment();
  EXPECT_EQ(st.enabled, cpu_allows_tsc()) << st.reason;
  EXPECT_EQ(st.enabled, st.reason.empty()) << st.reason;
  EXPECT_EQ(frugal::wall_clock_in_use(), st.enabled ? frugal::wall_clock_kind::tsc : frugal::wall_clock_kind::steady);

  ::unsetenv("FRUGAL_CLOCK");
  const auto unchanged = frugal::use_clock_from_environment();
  EXPECT_EQ(unchanged.enabled, st.enabled);

  ::setenv("FRUGAL_CLOCK", "steady", 1);
  st = frugal::use_clock_from_environment();
  EXPECT_FALSE(st.enabled);
  EXPECT_EQ(frugal::wall_clock_in_use(), frugal::wall_clock_kind::steady);
  ::unsetenv("FRUGAL_CLOCK");
  EXPECT_FALSE(frugal::use_clock_from_environment().reason.empty());
}

}  // namespace
