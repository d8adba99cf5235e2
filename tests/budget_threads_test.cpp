// Budgets under many threads: more than 1024 threads active in one budget at once, and
// thread churn (tens of thousands of short-lived threads), with every unit still counted once.
#include <frugal/frugal.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

namespace {

using frugal::detail::budget_access;

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

}  // namespace
