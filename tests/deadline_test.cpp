// The hard-deadline watchdog: it cancels a real tbb::parallel_for in flight at the budget's wall
// limit (on the real clock: these tests assert only what a loaded machine cannot break), fires
// once, never while its budget is idle, never without a wall limit, wakes at once when the limit
// is set or lowered, and joins at once. check(), the deadline checked by the parallel work
// itself, fires once the moment has passed -- never early, never while the budget is idle,
// never on a limit that was raised -- and frugal::parallel_for(range, body, watchdog) cancels
// from a chunk (driven by a manual clock: no timing asserted).
#include <frugal/controller.hpp>
#include <frugal/deadline.hpp>
#include <frugal/scope.hpp>
#include <frugal/tbb.hpp>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <gtest/gtest.h>

#include "support/time_slice.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <filesystem>
#include <fstream>
#endif

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

TEST(DeadlineWatchdog, FireListenersRunOnceAfterTheFlagAndTheCancellation) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(30s)};
  tbb::task_group_context group;
  frugal::deadline_watchdog watchdog{run, group};
  int calls = 0, removed_calls = 0;
  bool saw_flag = false, saw_cancelled = false;
  const std::uint64_t kept = watchdog.add_fire_listener([&] {
    ++calls;
    saw_flag = watchdog.fired();
    saw_cancelled = group.is_group_execution_cancelled();
  });
  const std::uint64_t removed = watchdog.add_fire_listener([&] { ++removed_calls; });
  EXPECT_NE(kept, removed);
  watchdog.remove_fire_listener(removed);
  watchdog.remove_fire_listener(removed + 100);  // unknown: nothing happens
  {
    frugal::scope s{run, "step"};
    clock.advance(29s);
    EXPECT_FALSE(watchdog.check());
    EXPECT_EQ(calls, 0);
    clock.advance(1s);
    EXPECT_TRUE(watchdog.check());
    EXPECT_TRUE(watchdog.poll());
  }
  EXPECT_EQ(calls, 1);  // fired once, however often it is checked after
  EXPECT_TRUE(saw_flag);
  EXPECT_TRUE(saw_cancelled);
  EXPECT_EQ(removed_calls, 0);
  EXPECT_THROW((void)watchdog.add_fire_listener({}), std::invalid_argument);
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

// --- check(): the deadline checked by the parallel work itself ---
//
// On a manual clock the watchdog's own thread sleeps in real time for what is left (an hour, or
// 30 s here): whatever fires in these tests, check() fired it.

TEST(DeadlineCheck, FiresOnceTheMomentHasPassedAndCancelsTheContext) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(30s)};
  tbb::task_group_context ctx;
  frugal::deadline_watchdog watchdog{run, ctx};
  EXPECT_FALSE(watchdog.check());
  // Idle: the budget's wall does not run, however far the clock moves.
  clock.advance(1h);
  EXPECT_FALSE(watchdog.check());
  {
    frugal::scope step{run, "step"};
    clock.advance(29s);
    EXPECT_FALSE(watchdog.check());
    EXPECT_FALSE(ctx.is_group_execution_cancelled());
    clock.advance(999ms);
    EXPECT_FALSE(watchdog.check());
    clock.advance(1ms);
    EXPECT_TRUE(watchdog.check());
  }
  EXPECT_TRUE(watchdog.fired());
  EXPECT_TRUE(watchdog.stop_flag().load());
  EXPECT_TRUE(ctx.is_group_execution_cancelled());
  EXPECT_EQ(*watchdog.fired_at_ns(), std::chrono::nanoseconds(1h + 30s).count());
  EXPECT_EQ(watchdog.describe(), "the deadline watchdog fired at the wall limit; parallel work in flight was cancelled");
  clock.advance(5s);
  EXPECT_TRUE(watchdog.check());  // true from then on; fired once, at the first time
  EXPECT_EQ(*watchdog.fired_at_ns(), std::chrono::nanoseconds(1h + 30s).count());
}

// The moment a check computes (now + what is left) is where the limit would be if the scopes
// stayed open; when they close, it passes with wall time still left: the check re-reads the
// budget and moves the moment on instead of firing.
TEST(DeadlineCheck, NeverFiresEarlyWhenTheBudgetWentIdle) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(30s)};
  tbb::task_group_context ctx;
  frugal::deadline_watchdog watchdog{run, ctx};
  {
    frugal::scope step{run, "step"};
    clock.advance(10s);
    EXPECT_FALSE(watchdog.check());  // the moment: 30 s on the clock
  }
  clock.advance(30s);  // idle, past the moment
  EXPECT_FALSE(watchdog.check());
  EXPECT_FALSE(watchdog.check());
  EXPECT_FALSE(ctx.is_group_execution_cancelled());
  frugal::scope step{run, "step"};
  clock.advance(19s);  // wall 29 s
  EXPECT_FALSE(watchdog.check());
  clock.advance(1s);  // wall 30 s
  EXPECT_TRUE(watchdog.check());
  EXPECT_TRUE(ctx.is_group_execution_cancelled());
  EXPECT_EQ(*watchdog.fired_at_ns(), std::chrono::nanoseconds(60s).count());
}

TEST(DeadlineCheck, NeverFiresOnALimitThatWasRaised) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(30s)};
  tbb::task_group_context ctx;
  frugal::deadline_watchdog watchdog{run, ctx};
  frugal::scope step{run, "step"};
  clock.advance(10s);
  EXPECT_FALSE(watchdog.check());  // the moment: 30 s
  run.set_limits(frugal::limits{}.wall(60s));
  clock.advance(25s);  // 35 s: past the old moment
  EXPECT_FALSE(watchdog.check());
  EXPECT_FALSE(ctx.is_group_execution_cancelled());
  clock.advance(24s);
  EXPECT_FALSE(watchdog.check());
  clock.advance(1s);
  EXPECT_TRUE(watchdog.check());
  EXPECT_TRUE(ctx.is_group_execution_cancelled());
}

TEST(DeadlineCheck, SeesALoweredLimitAtOnce) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(1h)};
  tbb::task_group_context ctx;
  frugal::deadline_watchdog watchdog{run, ctx};
  frugal::scope step{run, "step"};
  clock.advance(10s);
  EXPECT_FALSE(watchdog.check());  // the moment: an hour away
  // Lowered below the wall used: the next check fires without the clock moving (the watchdog's
  // thread, woken by the same change, may fire first: either way, it has fired).
  run.set_limits(frugal::limits{}.wall(5s));
  EXPECT_TRUE(watchdog.check());
  EXPECT_TRUE(ctx.is_group_execution_cancelled());
  EXPECT_EQ(*watchdog.fired_at_ns(), std::chrono::nanoseconds(10s).count());
}

TEST(DeadlineCheck, FiresOnceAnArmedMomentHasPassed) {
  frugal::manual_clock clock;  // the budget's wall never moves; the armed moment is real time
  frugal::budget run{"train", frugal::limits{}.wall(1h)};
  frugal::deadline_watchdog watchdog{run};
  frugal::scope step{run, "step"};
  EXPECT_FALSE(watchdog.check());
  watchdog.arm_after(1h, "far");
  EXPECT_FALSE(watchdog.check());
  watchdog.arm_at(std::chrono::steady_clock::now() - 1ms, "passed");
  EXPECT_TRUE(watchdog.check());  // whoever fired, the check says so at once
  EXPECT_EQ(watchdog.describe(), "the deadline watchdog fired: passed");
}

// Checks racing from several threads with limit changes and arming (for ThreadSanitizer): every
// checker ends up seeing the deadline, which fired once.
TEST(DeadlineCheck, ChecksFromManyThreadsWhileTheLimitsChange) {
  frugal::budget run{"train", frugal::limits{}.wall(1h)};
  tbb::task_group_context ctx;
  frugal::deadline_watchdog watchdog{run, ctx};
  frugal::scope step{run, "step"};
  std::atomic<int> saw{0};
  std::atomic<bool> gave_up{false};
  std::vector<std::thread> checkers;
  for (int t = 0; t < 3; ++t)
    checkers.emplace_back([&] {
      const auto t0 = std::chrono::steady_clock::now();
      while (!watchdog.check()) {
        if (std::chrono::steady_clock::now() - t0 > 30s) {
          gave_up = true;
          return;
        }
      }
      saw.fetch_add(1);
    });
  for (int i = 0; i < 100; ++i) run.set_limits(frugal::limits{}.wall(i % 2 ? 2h : 1h));
  watchdog.arm_after(1ms, "the test's moment");
  for (auto& t : checkers) t.join();
  EXPECT_FALSE(gave_up.load());
  EXPECT_EQ(saw.load(), 3);
  EXPECT_TRUE(watchdog.fired());
  EXPECT_TRUE(ctx.is_group_execution_cancelled());
  EXPECT_EQ(watchdog.describe(), "the deadline watchdog fired: the test's moment; parallel work in flight was cancelled");
}

// frugal::parallel_for(range, body, watchdog): the chunks check. Each chunk moves the manual
// clock a minute; the limit is an hour, so the 61st check fires, and at most the chunks already
// past their check on the other threads run after it. Without the check the loop would run all
// its chunks: the watchdog's thread sleeps an hour of real time.
TEST(DeadlineCheck, ParallelForWithTheWatchdogCancelsFromAChunk) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(1h)};
  tbb::task_group_context ctx;
  frugal::deadline_watchdog watchdog{run, ctx};
  constexpr int chunks = 100'000;  // 69 days of manual time: within what a budget represents
  std::atomic<int> ran{0};
  {
    frugal::scope step{run, "step"};
    frugal::parallel_for(
        tbb::blocked_range<int>(0, chunks, 1),
        [&](const tbb::blocked_range<int>&) {
          ran.fetch_add(1);
          frugal::add_flops(1);
          clock.advance(1min);
        },
        tbb::simple_partitioner(), watchdog);
  }
  EXPECT_TRUE(watchdog.fired());
  EXPECT_TRUE(ctx.is_group_execution_cancelled());
  EXPECT_GE(ran.load(), 60);
  EXPECT_LT(ran.load(), 60 + tbb::this_task_arena::max_concurrency());
  EXPECT_GE(*watchdog.fired_at_ns(), std::chrono::nanoseconds(1h).count());
  EXPECT_EQ(watchdog.describe(), "the deadline watchdog fired at the wall limit; parallel work in flight was cancelled");
  // The chunks that ran were charged to the caller's scope, as with the other overloads.
  EXPECT_EQ(run.stage("step").flops, static_cast<std::uint64_t>(ran.load()));
}

// The same on the real clock, chunks of 100 us: the loop stops (the check or the thread,
// whichever is first).
TEST(DeadlineCheck, ParallelForWithTheWatchdogStopsARealLoop) {
  frugal::budget run{"train", frugal::limits{}.wall(50ms)};
  tbb::task_group_context ctx;
  frugal::deadline_watchdog watchdog{run, ctx};
  constexpr int chunks = 1'000'000;
  std::atomic<int> ran{0};
  {
    frugal::scope step{run, "step"};
    frugal::parallel_for(
        tbb::blocked_range<int>(0, chunks, 1),
        [&](const tbb::blocked_range<int>&) {
          ran.fetch_add(1);
          const auto t0 = std::chrono::steady_clock::now();
          while (std::chrono::steady_clock::now() - t0 < 100us) {
          }
        },
        tbb::simple_partitioner(), watchdog);
  }
  EXPECT_TRUE(watchdog.fired());
  EXPECT_TRUE(ctx.is_group_execution_cancelled());
  EXPECT_LT(ran.load(), chunks);
  EXPECT_GE(run.used(frugal::resource::wall), 0.050);
}

TEST(DeadlineCheck, ParallelForNeedsAWatchdogWithAContext) {
  frugal::budget run{"train", frugal::limits{}.wall(1h)};
  frugal::deadline_watchdog watchdog{run};
  int ran = 0;
  try {
    frugal::parallel_for(tbb::blocked_range<int>(0, 10), [&](const tbb::blocked_range<int>&) { ++ran; }, watchdog);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(),
                 "frugal::parallel_for: the deadline_watchdog has no task_group_context to cancel (construct it as "
                 "deadline_watchdog{budget, context})");
  }
  EXPECT_EQ(ran, 0);
}

// --- the watchdog's thread asks for a short time slice ---

#if defined(FRUGAL_TEST_HAS_SLICES)
using frugal_test::requested_slice_ns;

// The ids of this process's threads named `name` (/proc/self/task/<tid>/comm).
std::vector<long> threads_named(const std::string& name) {
  std::vector<long> tids;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream comm(task.path() / "comm");
    std::string line;
    if (std::getline(comm, line) && line == name) tids.push_back(std::stol(task.path().filename().string()));
  }
  return tids;
}

TEST(DeadlineWatchdog, ItsThreadAsksForTheShortestSliceAndLeavesTheCallersAlone) {
  const std::uint64_t callers = requested_slice_ns(0);
  if (callers == 0) GTEST_SKIP() << "this kernel reports no requested slices (Linux < 6.12)";
  frugal::budget run{"train", frugal::limits{}.wall(1h)};
  frugal::deadline_watchdog watchdog{run};
  // The thread names itself, then asks for its slice, as it starts: wait for both (a loaded
  // machine may start it late; 10 s only keeps a broken build from hanging).
  std::vector<long> found;
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < give_up) {
    found = threads_named("frugal-deadline");
    if (found.size() == 1 && requested_slice_ns(found[0]) == 100'000u) break;
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(requested_slice_ns(found[0]), 100'000u);
  EXPECT_EQ(requested_slice_ns(0), callers);
}
#endif

}  // namespace
