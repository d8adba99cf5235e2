// Budgets under many threads: more than 1024 threads active in one budget at once, thread
// churn (tens of thousands of short-lived threads), with every unit still counted once, and the
// one-thread (solo) mode of the wall time ended by a second thread at any moment.
#include <frugal/frugal.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace {

using frugal::detail::budget_access;
using solo_mode = budget_access::solo_mode;
using namespace std::chrono_literals;

// What a budget used by one thread must be in: solo where Linux's membarrier is available
// (this binary has no allocation hooks, under which budgets are never solo).
solo_mode expected_solo_mode() {
  return frugal::detail::asymmetric_fence_available() && !frugal::detail::hooks_installed() ? solo_mode::running
                                                                                           : solo_mode::never;
}

// The busy word once counted active threads in 10 bits: the 1024th thread wrapped into the
// time, and wall read -0.000 s (or more than the elapsed time). Now any number Linux can run.
TEST(BudgetThreads, WallIsTheElapsedTimeWithMoreThan1024ThreadsActiveAtOnce) {
  constexpr int n = 1100;
  frugal::budget run{"run"};
  std::atomic<int> inside{0};
  std::promise<void> go;
  const std::shared_future<void> release = go.get_future().share();
  std::vector<std::thread> threads;
  threads.reserve(n);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&run, &inside, release] {
      frugal::scope s{run, "hold"};
      frugal::add_flops(1);
      inside.fetch_add(1);
      release.wait();
    });
  while (inside.load() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto all_in = std::chrono::steady_clock::now();
  EXPECT_TRUE(run.active());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const double while_held = run.used(frugal::resource::wall);
  const double held_since_t0 = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  go.set_value();
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double held = std::chrono::duration<double>(all_in - t0).count() + 0.1;
  const double wall = run.used(frugal::resource::wall);
  EXPECT_FALSE(run.active());
  // Every scope opened after t0 and closed before the end: wall is the elapsed time between
  // the first opening and the last closing, less than the elapsed time around it.
  EXPECT_GE(while_held, 0.1);
  EXPECT_LE(while_held, held_since_t0);
  EXPECT_GE(wall, 0.1);
  EXPECT_GE(wall, while_held);
  EXPECT_LE(wall, elapsed);
  EXPECT_LE(held - 0.1, elapsed);
  EXPECT_EQ(run.used(frugal::resource::flops), n);
  EXPECT_EQ(run.stage("hold").calls, static_cast<std::uint64_t>(n));
}

// Thread churn: an exited thread's block (its counters, its stage slots) goes to the next new
// thread, so a budget holds as many blocks as threads used it at once, and used() stays fast;
// every unit charged by every thread is still there, exactly.
TEST(BudgetThreads, ExitedThreadsHandTheirBlocksOnAndEveryUnitStays) {
  constexpr int total = 20000;
  constexpr int at_once = 4;
  frugal::budget run{"run"};
  frugal::budget& eval = run.child("eval");
  run.measure_cpu();
  for (int i = 0; i < total; i += at_once) {
    std::thread batch[at_once];
    for (auto& t : batch)
      t = std::thread([&] {
        frugal::scope s{eval, "work"};
        frugal::add_flops(1);
        frugal::add_units("samples", 2);
      });
    for (auto& t : batch) t.join();
  }
  EXPECT_EQ(eval.used(frugal::resource::flops), total);
  EXPECT_EQ(run.used(frugal::resource::flops), total);
  EXPECT_EQ(run.used("samples"), 2.0 * total);
  const frugal::stage_stats work = eval.stage("work");
  EXPECT_EQ(work.calls, static_cast<std::uint64_t>(total));
  EXPECT_EQ(work.flops, static_cast<std::uint64_t>(total));
  EXPECT_EQ(work.units_of("samples"), 2.0 * total);
  EXPECT_GT(run.used(frugal::resource::cpu), 0.0);
  EXPECT_LE(budget_access::block_count(eval), static_cast<std::size_t>(at_once));
  EXPECT_LE(budget_access::block_count(run), static_cast<std::size_t>(at_once));
}

// A budget destroyed while a thread that used it is still alive: the thread's exit must not
// touch it (the sanitizer builds catch a use after free).
TEST(BudgetThreads, ABudgetDestroyedBeforeItsThreadsExitIsForgotten) {
  auto doomed = std::make_unique<frugal::budget>("doomed");
  frugal::budget& child = doomed->child("child");
  std::promise<void> used, destroyed;
  std::thread t([&] {
    {
      frugal::scope s{child, "x"};
      frugal::add_flops(3);
    }
    used.set_value();
    destroyed.get_future().wait();
    frugal::budget fresh{"fresh"};  // the thread goes on using other budgets
    frugal::scope s{fresh, "y"};
  });
  used.get_future().wait();
  EXPECT_EQ(doomed->used(frugal::resource::flops), 3);
  doomed.reset();
  destroyed.set_value();
  t.join();
}

// A scope still open when the thread's exit hands its blocks on (held by a thread_local that
// is destroyed later): that block stays with the thread, and its charges still land.
TEST(BudgetThreads, AScopeOpenAtThreadExitKeepsItsBlock) {
  frugal::budget run{"run"};
  struct late_scope {
    std::optional<frugal::scope> s;
  };
  std::thread([&] {
    static thread_local late_scope holder;  // built before frugal's exit handler, so destroyed after it
    holder.s.emplace(run, "late");
    frugal::add_flops(5);
  }).join();
  std::thread([&] {
    frugal::scope s{run, "next"};
    frugal::add_flops(7);
  }).join();
  EXPECT_EQ(run.used(frugal::resource::flops), 12);
  EXPECT_EQ(run.stage("late").calls, 1u);
  EXPECT_EQ(run.stage("late").flops, 5u);
  EXPECT_EQ(run.stage("next").flops, 7u);
  EXPECT_FALSE(run.active());
  EXPECT_EQ(budget_access::block_count(run), 2u);
}

// A budget one thread uses keeps its wall time off the shared busy word (no atomic
// read-modify-write). A second thread that enters while the first is inside ends that mode: the
// first thread's open period and its earlier ones move to the busy word, to the nanosecond
// (times here are off the 4096 ns tick on purpose), and the union goes on across both threads.
TEST(BudgetThreads, ASecondThreadEndsTheSoloModeWhileTheFirstIsInsideAndTheUnionStaysExact) {
  frugal::manual_clock clock;
  frugal::budget run{"run"};
  {
    frugal::scope s{run, "first"};
    clock.advance(1001ns);
  }
  clock.advance(5000ns);  // a gap: not wall time
  EXPECT_EQ(budget_access::solo(run), expected_solo_mode());
  std::mutex mu;
  std::condition_variable cv;
  int phase = 0;
  auto wait_for = [&](int p) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return phase >= p; });
  };
  auto advance_phase = [&](int p) {
    { std::lock_guard<std::mutex> lock(mu); phase = p; }
    cv.notify_all();
  };
  std::promise<void> b_open, b_closed;
  std::thread b;
  {
    frugal::scope a{run, "a"};  // the solo thread, inside: [6001, ...)
    clock.advance(777ns);
    EXPECT_EQ(run.used(frugal::resource::wall), 1778 / 1e9);
    EXPECT_EQ(budget_access::active_threads(run), 1);
    b = std::thread([&] {
      {
        frugal::scope s{run, "b"};  // [6778, 6778 + 3333 + 10)
        b_open.set_value();
        wait_for(1);
        clock.advance(10ns);  // after a left
      }
      b_closed.set_value();
    });
    b_open.get_future().wait();
    EXPECT_NE(budget_access::solo(run), solo_mode::running);
    EXPECT_EQ(budget_access::active_threads(run), 2);
    clock.advance(3333ns);
    EXPECT_EQ(run.used(frugal::resource::wall), (1001 + 777 + 3333) / 1e9);
  }
  EXPECT_TRUE(run.active());  // b is still inside
  advance_phase(1);
  b_closed.get_future().wait();
  b.join();
  EXPECT_FALSE(run.active());
  EXPECT_EQ(budget_access::active_threads(run), 0);
  EXPECT_EQ(run.used(frugal::resource::wall), (1001 + 777 + 3333 + 10) / 1e9);
  // The first thread goes on through the busy word.
  {
    frugal::scope s{run, "after"};
    clock.advance(4097ns);
  }
  EXPECT_EQ(run.used(frugal::resource::wall), (1001 + 777 + 3333 + 10 + 4097) / 1e9);
  EXPECT_DOUBLE_EQ(run.stage("a").wall_seconds, (777 + 3333) / 1e9);
  EXPECT_DOUBLE_EQ(run.stage("b").wall_seconds, (3333 + 10) / 1e9);
}

// Ended while the solo thread is outside: its periods move over, and nothing is active.
TEST(BudgetThreads, ASecondThreadEndsTheSoloModeBetweenScopesAndNothingIsLost) {
  frugal::manual_clock clock;
  frugal::budget run{"run"};
  frugal::budget& eval = run.child("eval");
  for (int i = 0; i < 3; ++i) {
    frugal::scope s{eval, "eval"};
    clock.advance(1234567ns);
    clock.advance_cpu(1ms);
  }
  EXPECT_EQ(budget_access::solo(run), expected_solo_mode());
  EXPECT_EQ(budget_access::solo(eval), expected_solo_mode());
  std::thread([&] {
    EXPECT_EQ(run.used(frugal::resource::wall), 3 * 1234567 / 1e9);  // reading alone ends nothing
    frugal::scope s{run, "other"};
    EXPECT_EQ(budget_access::active_threads(run), 1);
    clock.advance(9ns);
  }).join();
  EXPECT_NE(budget_access::solo(run), solo_mode::running);
  EXPECT_EQ(budget_access::solo(eval), expected_solo_mode());  // the other thread did not use eval
  EXPECT_EQ(run.used(frugal::resource::wall), (3 * 1234567 + 9) / 1e9);
  EXPECT_EQ(eval.used(frugal::resource::wall), 3 * 1234567 / 1e9);
  EXPECT_EQ(budget_access::active_threads(run), 0);
  EXPECT_EQ(budget_access::active_threads(eval), 0);
}

// The solo block goes with the budget to the next thread when its thread exits: no second
// block, no revocation, and the periods of both threads add up.
TEST(BudgetThreads, TheSoloBlockPassesToTheNextThreadAfterItsThreadExits) {
  frugal::manual_clock clock;
  frugal::budget run{"run"};
  for (int i = 0; i < 3; ++i)
    std::thread([&] {
      frugal::scope s{run, "work"};
      clock.advance(1001ns);
    }).join();
  EXPECT_EQ(budget_access::solo(run), expected_solo_mode());
  EXPECT_EQ(budget_access::block_count(run), 1u);
  EXPECT_EQ(run.used(frugal::resource::wall), 3003 / 1e9);
  EXPECT_EQ(run.stage("work").calls, 3u);
}

// The race the solo mode's fence exists for, on real clocks and threads: an owner opening and
// closing scopes as fast as it can while a second thread enters at an arbitrary moment. Every
// time, the count of active threads comes back to zero (a transition lost or doubled across
// the handover would leave it off, and the budget's destructor would catch it), every scope is
// counted, and the wall time is no more than the whole experiment's. (No lower bound from
// outside: a thread preempted between its clock read and its transition may have its start
// shifted by as long as it was preempted; see budget::transition().) The exact amounts across
// the handover are the two tests above. ThreadSanitizer runs it too.
TEST(BudgetThreads, TheSoloModeEndsCleanlyWhenASecondThreadEntersAtAnyMoment) {
  constexpr int rounds = 200;
  for (int round = 0; round < rounds; ++round) {
    frugal::budget run{"run"};
    std::atomic<bool> owner_started{false};
    std::atomic<bool> stop{false};
    std::uint64_t owner_scopes = 0;
    const auto t0 = std::chrono::steady_clock::now();
    std::thread owner([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        frugal::scope s{run, "owner"};
        ++owner_scopes;
        owner_started.store(true, std::memory_order_relaxed);
      }
    });
    while (!owner_started.load(std::memory_order_relaxed)) std::this_thread::yield();
    for (int spin = 0; spin < round * 37; ++spin) std::atomic_signal_fence(std::memory_order_seq_cst);
    std::chrono::steady_clock::duration joiner_inside{};
    std::thread joiner([&] {
      const auto in = std::chrono::steady_clock::now();
      {
        frugal::scope s{run, "joiner"};
        for (int spin = 0; spin < 1000; ++spin) std::atomic_signal_fence(std::memory_order_seq_cst);
      }
      joiner_inside = std::chrono::steady_clock::now() - in;
    });
    joiner.join();
    stop.store(true, std::memory_order_relaxed);
    owner.join();
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_EQ(budget_access::active_threads(run), 0) << "round " << round;
    ASSERT_NE(budget_access::solo(run), solo_mode::running) << "round " << round;
    const double wall = run.used(frugal::resource::wall);
    ASSERT_LE(wall, elapsed) << "round " << round;
    ASSERT_GE(wall, 0.0) << "round " << round;
    ASSERT_LE(run.stage("joiner").wall_seconds, std::chrono::duration<double>(joiner_inside).count())
        << "round " << round;
    ASSERT_EQ(run.stage("owner").calls, owner_scopes) << "round " << round;
    ASSERT_EQ(run.stage("joiner").calls, 1u) << "round " << round;
  }
}

}  // namespace
