// The hard-deadline watchdog: it cancels a real tbb::parallel_for in flight at the budget's wall
// limit (on the real clock: these tests assert only what a loaded machine cannot break), fires
// once, never while its budget is idle, never without a wall limit, wakes at once when the limit
// is set or lowered, and joins at once.
#include <frugal/controller.hpp>
#include <frugal/deadline.hpp>
#include <frugal/scope.hpp>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_group.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>

using namespace std::chrono_literals;

namespace {

TEST(DeadlineWatchdog, CancelsARealParallelForInFlight) {
  frugal::budget run{"train", frugal::limits{}.wall(50ms)};
  tbb::task_group_context ctx;
  frugal::deadline_watchdog watchdog{run, ctx};
  frugal::controller ctl{run};
  ctl.cancel_on(watchdog.stop_flag());

  constexpr int chunks = 1000;
  std::atomic<int> started{0};
  std::atomic<bool> gave_up{false};
  {
    frugal::scope step{run, "step"};
    // Every chunk spins until the group is cancelled: without the watchdog this never ends
    // (the 30 s escape only keeps a broken build from hanging the suite).
    tbb::parallel_for(
        tbb::blocked_range<int>(0, chunks, 1),
        [&](const tbb::blocked_range<int>&) {
          started.fetch_add(1, std::memory_order_relaxed);
          const auto t0 = std::chrono::steady_clock::now();
          while (!ctx.is_group_execution_cancelled()) {
            if (std::chrono::steady_clock::now() - t0 > 30s) {
              gave_up = true;
              return;
            }
          }
        },
        tbb::simple_partitioner(), ctx);
  }
  EXPECT_FALSE(gave_up.load());
  EXPECT_TRUE(watchdog.fired());
  EXPECT_TRUE(ctx.is_group_execution_cancelled());
  EXPECT_LT(started.load(), chunks);  // the rest were never scheduled
  // The scope still charged the step, past the limit.
  EXPECT_GE(run.used(frugal::resource::wall), 0.050);
  EXPECT_EQ(run.stage("step").calls, 1u);
  ASSERT_TRUE(watchdog.fired_at_ns().has_value());

  EXPECT_TRUE(ctl.should_stop());
  EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::deadline);
  const frugal::decision d = ctl.end_step();
  EXPECT_TRUE(d.has(frugal::action::cancelled));
  EXPECT_EQ(d.cause(), frugal::stop_reason::deadline);
  EXPECT_EQ(d.reason(),
            "cancelled (deadline): the deadline watchdog fired at the wall limit; parallel work in flight was cancelled");
}

TEST(DeadlineWatchdog, PollFiresAtTheLimitOnAManualClock) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(30s)};
  frugal::deadline_watchdog watchdog{run};
  EXPECT_FALSE(watchdog.poll());
  {
    frugal::scope s{run, "step"};
    clock.advance(29s);
    EXPECT_FALSE(watchdog.poll());
    clock.advance(1s);
    EXPECT_TRUE(watchdog.poll());
  }
  EXPECT_TRUE(watchdog.fired());
  EXPECT_TRUE(watchdog.stop_flag().load());
  EXPECT_EQ(*watchdog.fired_at_ns(), std::chrono::nanoseconds(30s).count());
  clock.advance(5s);
  EXPECT_TRUE(watchdog.poll());  // fired once; the time stays the first one
  EXPECT_EQ(*watchdog.fired_at_ns(), std::chrono::nanoseconds(30s).count());
}

TEST(DeadlineWatchdog, NeverFiresWhileTheBudgetIsIdle) {
  // The budget's wall time runs only while a scope is open: on a manual clock that never moves
  // it never runs out, however often the thread wakes (every 10 ms of real time here).
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(10ms)};
  frugal::deadline_watchdog watchdog{run};
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(watchdog.fired());
  EXPECT_FALSE(watchdog.poll());
}

// Waits (real time, polling the flag the watchdog's own thread sets) up to `patience` for it.
bool fires_within(const frugal::deadline_watchdog& w, std::chrono::milliseconds patience) {
  const auto until = std::chrono::steady_clock::now() + patience;
  while (!w.fired() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
  return w.fired();
}

TEST(DeadlineWatchdog, AWallLimitSetLaterWakesAWatchdogThatHadNone) {
  frugal::budget run{"train"};
  frugal::deadline_watchdog watchdog{run};
  frugal::scope step{run, "step"};
  std::this_thread::sleep_for(10ms);  // the thread is asleep: without a limit, for an hour
  EXPECT_FALSE(watchdog.fired());
  run.set_limits(frugal::limits{}.wall(100ms));
  EXPECT_TRUE(fires_within(watchdog, 2000ms));
  EXPECT_GE(run.used(frugal::resource::wall), 0.100);
}

TEST(DeadlineWatchdog, LoweringTheLimitBelowTheWallUsedFiresAtOnce) {
  frugal::budget run{"train", frugal::limits{}.wall(1h)};
  frugal::deadline_watchdog watchdog{run};
  frugal::scope step{run, "step"};
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(watchdog.fired());
  const std::int64_t lowered_ns = frugal::wall_now_ns();
  run.set_limits(frugal::limits{}.wall(5ms));  // already passed
  ASSERT_TRUE(fires_within(watchdog, 2000ms));
  // "At once": a wake-up, not the end of some sleep (generous for a loaded machine).
  EXPECT_LT(*watchdog.fired_at_ns() - lowered_ns, std::chrono::nanoseconds(500ms).count());
}

TEST(DeadlineWatchdog, WithoutAWallLimitItNeverFiresAndStillJoinsAtOnce) {
  frugal::budget run{"train", frugal::limits{}.flops(10)};
  frugal::budget hour{"hour", frugal::limits{}.wall(1h)};
  tbb::task_group_context ctx;
  {
    frugal::deadline_watchdog a{run, ctx};
    frugal::deadline_watchdog b{hour};
    frugal::scope s{hour, "step"};
    EXPECT_FALSE(a.poll());
    EXPECT_FALSE(b.poll());
  }  // both threads are asleep (for an hour): the destructors wake and join them
  EXPECT_FALSE(ctx.is_group_execution_cancelled());
}

// --- arm_at / arm_after: a second deadline, in real time ---

TEST(DeadlineWatchdog, AnArmedMomentFiresBeforeAFarWallLimit) {
  frugal::budget run{"train", frugal::limits{}.wall(1h)};
  tbb::task_group_context ctx;
  frugal::deadline_watchdog watchdog{run, ctx};
  frugal::scope step{run, "step"};
  const std::int64_t armed_ns = frugal::wall_now_ns();
  watchdog.arm_after(100ms, "the test's moment");
  ASSERT_TRUE(fires_within(watchdog, 2000ms));
  EXPECT_GE(*watchdog.fired_at_ns() - armed_ns, std::chrono::nanoseconds(100ms).count());
  EXPECT_TRUE(ctx.is_group_execution_cancelled());
  EXPECT_EQ(watchdog.describe(),
            "the deadline watchdog fired: the test's moment; parallel work in flight was cancelled");
}

TEST(DeadlineWatchdog, AnArmedMomentFiresWithoutAWallLimitOrAnOpenScope) {
  frugal::budget run{"train"};
  frugal::deadline_watchdog watchdog{run};  // asleep for an hour: arming wakes it
  std::this_thread::sleep_for(10ms);
  watchdog.arm_at(std::chrono::steady_clock::now() + 50ms);
  ASSERT_TRUE(fires_within(watchdog, 2000ms));
  EXPECT_EQ(watchdog.describe(), "the deadline watchdog fired: its armed moment passed");
}

TEST(DeadlineWatchdog, TheWallLimitStillFiresFirstWhenItIsNearer) {
  frugal::budget run{"train", frugal::limits{}.wall(50ms)};
  frugal::deadline_watchdog watchdog{run};
  watchdog.arm_after(1h, "far");
  frugal::scope step{run, "step"};
  ASSERT_TRUE(fires_within(watchdog, 2000ms));
  EXPECT_EQ(watchdog.describe(), "the deadline watchdog fired at the wall limit");
}

TEST(DeadlineWatchdog, ArmingNeverPostponesAndAPassedMomentFiresAtOnce) {
  frugal::budget run{"train"};
  frugal::deadline_watchdog watchdog{run};
  watchdog.arm_after(1h, "an hour");
  const auto first = *watchdog.armed_at();
  watchdog.arm_after(2h, "two hours");  // later: ignored
  EXPECT_EQ(*watchdog.armed_at(), first);
  EXPECT_FALSE(watchdog.poll());
  const std::int64_t armed_ns = frugal::wall_now_ns();
  watchdog.arm_at(std::chrono::steady_clock::now() - 1s, "already passed");  // earlier: wins
  ASSERT_TRUE(fires_within(watchdog, 2000ms));
  EXPECT_LT(*watchdog.fired_at_ns() - armed_ns, std::chrono::nanoseconds(500ms).count());
  EXPECT_EQ(watchdog.describe(), "the deadline watchdog fired: already passed");
  watchdog.arm_after(0ms, "after firing");  // no effect once fired
  EXPECT_EQ(watchdog.describe(), "the deadline watchdog fired: already passed");
}

TEST(DeadlineWatchdog, PollFiresOnceTheArmedMomentHasPassed) {
  frugal::manual_clock clock;  // the budget's wall never moves; the armed moment is real time
  frugal::budget run{"train", frugal::limits{}.wall(1h)};
  frugal::deadline_watchdog watchdog{run};
  watchdog.arm_after(30ms);
  EXPECT_FALSE(watchdog.poll());
  std::this_thread::sleep_for(40ms);
  EXPECT_TRUE(watchdog.poll());
}

TEST(DeadlineWatchdog, ArmAfterRejectsANegativeDelay) {
  frugal::budget run{"train"};
  frugal::deadline_watchdog watchdog{run};
  try {
    watchdog.arm_after(-5ms);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "frugal::deadline_watchdog::arm_after: delay must be >= 0, got -5.00 ms");
  }
  EXPECT_FALSE(watchdog.armed_at().has_value());
  watchdog.arm_after(std::chrono::nanoseconds::max());  // a century: no overflow, never fires here
  EXPECT_FALSE(watchdog.poll());
}

}  // namespace
