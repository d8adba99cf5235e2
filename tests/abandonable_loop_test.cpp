// frugal::abandonable_loop: a parallel loop whose caller returns at the hard deadline while the
// chunks in flight finish in the background. Real oneTBB threads and a real watchdog; a chunk
// held on a flag the test releases stands for one on a thread the scheduler has preempted.
#include <frugal/abandonable_loop.hpp>
#include <frugal/frugal.hpp>

#include <gtest/gtest.h>

#include "support/time_slice.hpp"

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

// Spins (sleeping) until flag is set; gives up after 20 s so a broken test fails, not hangs.
void wait_for(const std::atomic<bool>& flag) {
  const auto give_up = std::chrono::steady_clock::now() + 20s;
  while (!flag.load() && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(100us);
}

// A run with a wall limit, and its watchdog. The tests that need the deadline to pass while a
// chunk runs fire it from that chunk (fire_now): a chunk that has not started when a timed
// limit passes never starts, however slow the machine (a sanitizer, a loaded CI host).
struct deadline_fixture {
  frugal::budget run;
  tbb::task_group_context group;
  frugal::deadline_watchdog watchdog;
  explicit deadline_fixture(std::chrono::duration<double> wall)
      : run("train", frugal::limits{}.wall(wall)), group(), watchdog(run, group) {}
};

// The deadline passes now: the watchdog fires (on its thread, woken at once).
void fire_now(frugal::deadline_watchdog& watchdog) { watchdog.arm_after(std::chrono::nanoseconds(0), "the test's deadline"); }

TEST(AbandonableLoop, ALoopThatEndsBeforeTheDeadlineRunsEveryChunkInTheCallersScope) {
  deadline_fixture f{1h};
  frugal::abandonable_loop loop{f.watchdog};
  std::atomic<std::uint64_t> sum{0};
  bool completed = false;
  {
    frugal::scope step{f.run, "step"};
    completed = loop.run(tbb::blocked_range<std::uint64_t>(0, 10'000, 16), [&](const tbb::blocked_range<std::uint64_t>& r) {
      for (std::uint64_t i = r.begin(); i != r.end(); ++i) sum += i;
      frugal::add_flops(r.size());
    });
  }
  EXPECT_TRUE(completed);
  EXPECT_FALSE(loop.running());
  EXPECT_EQ(sum.load(), 10'000ULL * 9'999 / 2);
  // Every chunk, on the loop's thread or a worker, is charged to the scope open at run().
  EXPECT_EQ(f.run.used(frugal::resource::flops), 10'000);
  EXPECT_EQ(f.run.stage("step").flops, 10'000U);
}

TEST(AbandonableLoop, ReturnsAtTheDeadlineWhileAChunkStillRuns) {
  deadline_fixture f{1h};
  frugal::abandonable_loop loop{f.watchdog};
  std::atomic<bool> release{false}, held_chunk_ended{false};
  std::atomic<int> seen_marker{0};
  bool completed = true;
  {
    frugal::scope step{f.run, "step"};
    // The body holds a value of its own: the chunk still running reads it after run() has
    // returned and the lambda passed to it is gone, so the loop must have kept a copy.
    const std::vector<int> marker(64, 7);
    completed = loop.run(
        tbb::blocked_range<int>(0, 4, 1),
        [marker, &f, &release, &held_chunk_ended, &seen_marker](const tbb::blocked_range<int>& r) {
          if (r.begin() != 0) return;
          fire_now(f.watchdog);
          wait_for(release);
          seen_marker = marker[63];
          held_chunk_ended = true;
        },
        tbb::simple_partitioner{});
  }
  EXPECT_FALSE(completed);
  EXPECT_TRUE(f.watchdog.fired());
  EXPECT_TRUE(loop.running());  // the held chunk cannot have ended: it waits for release
  EXPECT_FALSE(held_chunk_ended.load());
  release = true;
  loop.join();
  EXPECT_FALSE(loop.running());
  EXPECT_TRUE(held_chunk_ended.load());
  EXPECT_EQ(seen_marker.load(), 7);
}

TEST(AbandonableLoop, TheNextRunAndTheDestructorWaitForTheAbandonedChunks) {
  deadline_fixture f{1h};
  frugal::deadline_watchdog* deadline = &f.watchdog;
  std::atomic<bool> release{false}, held_chunk_ended{false};
  const auto held = [&](const tbb::blocked_range<int>& r) {
    if (r.begin() != 0) return;
    fire_now(*deadline);
    wait_for(release);
    std::this_thread::sleep_for(5ms);  // ends well after release is set
    held_chunk_ended = true;
  };
  {
    frugal::abandonable_loop loop{f.watchdog};
    frugal::scope step{f.run, "step"};
    ASSERT_FALSE(loop.run(tbb::blocked_range<int>(0, 2, 1), held, tbb::simple_partitioner{}));
    std::thread releaser([&] {
      std::this_thread::sleep_for(20ms);
      release = true;
    });
    // Past the deadline the group is cancelled: this loop runs no chunk, but it may start only
    // once the one before has ended.
    EXPECT_FALSE(loop.run(tbb::blocked_range<int>(0, 2, 1), [](const tbb::blocked_range<int>&) {}));
    releaser.join();
    EXPECT_TRUE(held_chunk_ended.load());
  }
  // Destruction alone: an abandoned loop whose chunk is released later.
  deadline_fixture g{1h};
  deadline = &g.watchdog;
  release = false;
  held_chunk_ended = false;
  std::thread releaser;
  {
    frugal::abandonable_loop loop{g.watchdog};
    frugal::scope step{g.run, "step"};
    ASSERT_FALSE(loop.run(tbb::blocked_range<int>(0, 2, 1), held, tbb::simple_partitioner{}));
    releaser = std::thread([&] {
      std::this_thread::sleep_for(20ms);
      release = true;
    });
  }
  EXPECT_TRUE(held_chunk_ended.load());
  releaser.join();
}

TEST(AbandonableLoop, AnExceptionFromTheBodyIsRethrownByRun) {
  deadline_fixture f{1h};
  frugal::abandonable_loop loop{f.watchdog};
  frugal::scope step{f.run, "step"};
  EXPECT_THROW((void)loop.run(tbb::blocked_range<int>(0, 8, 1),
                              [](const tbb::blocked_range<int>& r) {
                                if (r.begin() == 5) throw std::runtime_error("chunk 5");
                              }),
               std::runtime_error);
  EXPECT_FALSE(loop.running());
  EXPECT_NO_THROW(loop.join());  // thrown once, by run()
}

TEST(AbandonableLoop, AnExceptionFromAnAbandonedChunkIsRethrownByJoin) {
  deadline_fixture f{1h};
  frugal::abandonable_loop loop{f.watchdog};
  std::atomic<bool> release{false};
  {
    frugal::scope step{f.run, "step"};
    ASSERT_FALSE(loop.run(
        tbb::blocked_range<int>(0, 2, 1),
        [&](const tbb::blocked_range<int>& r) {
          if (r.begin() != 0) return;
          fire_now(f.watchdog);
          wait_for(release);
          throw std::runtime_error("after the deadline");
        },
        tbb::simple_partitioner{}));
  }
  release = true;
  EXPECT_THROW(loop.join(), std::runtime_error);
  EXPECT_NO_THROW(loop.join());
}

TEST(AbandonableLoop, ASecondRunWhileOneWaitsIsAnError) {
  deadline_fixture f{1h};
  frugal::abandonable_loop loop{f.watchdog};
  std::atomic<bool> started{false}, release{false};
  bool nested_refused = false;
  std::thread first([&] {
    frugal::scope step{f.run, "step"};
    (void)loop.run(
        tbb::blocked_range<int>(0, 2, 1),
        [&](const tbb::blocked_range<int>& r) {
          if (r.begin() != 0) return;
          // From inside its own chunk: it would wait for itself.
          try {
            (void)loop.run(tbb::blocked_range<int>(0, 1), [](const tbb::blocked_range<int>&) {});
          } catch (const std::logic_error&) {
            nested_refused = true;
          }
          started = true;
          wait_for(release);
        },
        tbb::simple_partitioner{});
  });
  wait_for(started);
  EXPECT_THROW((void)loop.run(tbb::blocked_range<int>(0, 1), [](const tbb::blocked_range<int>&) {}), std::logic_error);
  release = true;
  first.join();
  EXPECT_TRUE(nested_refused);
  // Once the first has returned, the loop takes runs again.
  frugal::scope step{f.run, "step"};
  EXPECT_TRUE(loop.run(tbb::blocked_range<int>(0, 1), [](const tbb::blocked_range<int>&) {}));
}

TEST(AbandonableLoop, RunsInTheArenaItIsGiven) {
  deadline_fixture f{1h};
  tbb::task_arena arena(1);
  frugal::abandonable_loop loop{f.watchdog, &arena};
  std::atomic<int> widest{0};
  frugal::scope step{f.run, "step"};
  EXPECT_TRUE(loop.run(tbb::blocked_range<int>(0, 16, 1), [&](const tbb::blocked_range<int>&) {
    widest = std::max(widest.load(), tbb::this_task_arena::max_concurrency());
  }));
  EXPECT_EQ(widest.load(), 1);
}

#if defined(FRUGAL_TEST_HAS_SLICES)
// The caller sleeps with the shortest slice while it waits, so its wake-up at the deadline
// preempts a busy task at once; it gets its own slice back when run() returns.
TEST(AbandonableLoop, TheCallerWaitsWithTheShortestSliceAndGetsItsOwnBack) {
  const long caller = frugal_test::this_thread_tid();
  const std::uint64_t own = frugal_test::requested_slice_ns(caller);
  if (own == 0) GTEST_SKIP() << "this kernel reports no requested slices (Linux < 6.12)";
  deadline_fixture f{1h};
  frugal::abandonable_loop loop{f.watchdog};
  std::uint64_t while_waiting = 0;
  frugal::scope step{f.run, "step"};
  EXPECT_TRUE(loop.run(tbb::blocked_range<int>(0, 1), [&](const tbb::blocked_range<int>&) {
    // The caller asks for the slice just after handing the loop over: wait for it (10 s only
    // keeps a broken build from hanging).
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    do while_waiting = frugal_test::requested_slice_ns(caller);
    while (while_waiting != 100'000u && std::chrono::steady_clock::now() < give_up);
  }));
  EXPECT_EQ(while_waiting, 100'000u);
  EXPECT_EQ(frugal_test::requested_slice_ns(caller), own);
}
#endif

TEST(AbandonableLoop, AWatchdogWithoutAGroupIsRefused) {
  frugal::budget run{"train", frugal::limits{}.wall(1h)};
  frugal::deadline_watchdog watchdog{run};
  try {
    frugal::abandonable_loop loop{watchdog};
    FAIL() << "constructed";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("task_group_context"), std::string::npos) << e.what();
  }
}

}  // namespace
