// Work done by oneTBB workers (and plain threads) inside a scope is charged to that scope,
// exactly: the per-thread charges add up to the total with 1, 2 and 8 threads.
#include <frugal/frugal.hpp>
#include <frugal/tbb.hpp>

#include <gtest/gtest.h>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace {

constexpr std::uint64_t n_items = 100'000;

class ParallelConservation : public ::testing::TestWithParam<int> {};

TEST_P(ParallelConservation, FlopsAndUnitsFromWorkersSumExactly) {
  const int threads = GetParam();
  // The machine may have fewer cores than the test asks for: allow the threads anyway.
  tbb::global_control allow(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads));
  tbb::task_arena arena(threads);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  frugal::budget run{"run"};
  frugal::budget& train = run.child("train");
  std::mutex mu;
  std::set<std::thread::id> seen;
  arena.execute([&] {
    frugal::scope step{train, "step"};
    frugal::scope fwd{train, "forward"};
    frugal::parallel_for(tbb::blocked_range<std::uint64_t>(0, n_items, 64),
                         [&](const tbb::blocked_range<std::uint64_t>& r) {
                           {
                             std::lock_guard<std::mutex> lock(mu);
                             seen.insert(std::this_thread::get_id());
                           }
                           // Hold the first chunks until a second thread joins, so the
                           // multi-thread cases really run on several threads.
                           for (;;) {
                             {
                               std::lock_guard<std::mutex> lock(mu);
                               if (threads == 1 || seen.size() >= 2) break;
                             }
                             if (std::chrono::steady_clock::now() > give_up) break;
                             std::this_thread::yield();
                           }
                           for (std::uint64_t i = r.begin(); i != r.end(); ++i) frugal::add_flops(i % 7 + 1);
                           frugal::add_units("samples", static_cast<double>(r.size()));
                         });
  });
  std::uint64_t expected = 0;
  for (std::uint64_t i = 0; i < n_items; ++i) expected += i % 7 + 1;
  EXPECT_EQ(train.used(frugal::resource::flops), static_cast<double>(expected));
  EXPECT_EQ(run.used(frugal::resource::flops), static_cast<double>(expected));
  EXPECT_EQ(train.used("samples"), static_cast<double>(n_items));
  const frugal::stage_stats forward = train.stage("forward");
  EXPECT_EQ(forward.flops, expected);
  EXPECT_EQ(forward.calls, 1u);  // workers continue the caller's scope, they don't reopen it
  EXPECT_EQ(forward.units_of("samples"), static_cast<double>(n_items));
  EXPECT_EQ(train.stage("step").calls, 1u);
  EXPECT_FALSE(run.active());
  if (threads > 1) {
    EXPECT_GT(seen.size(), 1u) << "the loop never ran on a second thread";
  }
  // Wall is the union over threads: never more than the caller's scope.
  EXPECT_LE(run.used(frugal::resource::wall), train.stage("step").wall_seconds + 1e-9);
}

INSTANTIATE_TEST_SUITE_P(Threads, ParallelConservation, ::testing::Values(1, 2, 8));

TEST(Tbb, IndexFormAndReduceChargeTheCallersScope) {
  frugal::budget run{"run"};
  {
    frugal::scope s{run, "loop"};
    frugal::parallel_for(0, 1000, [](int) { frugal::add_flops(3); });
  }
  std::uint64_t sum = 0;
  {
    frugal::scope s{run, "reduce"};
    sum = frugal::parallel_reduce(
        tbb::blocked_range<std::uint64_t>(0, 1000), std::uint64_t{0},
        [](const tbb::blocked_range<std::uint64_t>& r, std::uint64_t acc) {
          frugal::add_flops(r.size());
          for (auto i = r.begin(); i != r.end(); ++i) acc += i;
          return acc;
        },
        [](std::uint64_t a, std::uint64_t b) { return a + b; });
  }
  EXPECT_EQ(sum, 999u * 1000u / 2);
  EXPECT_EQ(run.stage("loop").flops, 3000u);
  EXPECT_EQ(run.stage("reduce").flops, 1000u);
  EXPECT_EQ(run.used(frugal::resource::flops), 4000);
}

// The overload taking a deadline_watchdog, far from its limit, runs every chunk and charges the
// caller's scope exactly like the others; the context form next to it is not mistaken for it.
TEST(Tbb, TheWatchdogFormChargesTheCallersScope) {
  frugal::budget run{"run", frugal::limits{}.wall(std::chrono::hours(1))};
  tbb::task_group_context group;
  frugal::deadline_watchdog watchdog{run, group};
  {
    frugal::scope s{run, "checked"};
    frugal::parallel_for(tbb::blocked_range<int>(0, 1000), [](const tbb::blocked_range<int>& r) {
      frugal::add_flops(r.size());
    }, watchdog);
    frugal::parallel_for(tbb::blocked_range<int>(0, 1000, 1), [](const tbb::blocked_range<int>& r) {
      frugal::add_flops(r.size());
    }, tbb::simple_partitioner(), watchdog);
  }
  {
    frugal::scope s{run, "context"};
    frugal::parallel_for(tbb::blocked_range<int>(0, 1000), [](const tbb::blocked_range<int>& r) {
      frugal::add_flops(r.size());
    }, group);
  }
  EXPECT_FALSE(watchdog.fired());
  EXPECT_FALSE(group.is_group_execution_cancelled());
  EXPECT_EQ(run.stage("checked").flops, 2000u);
  EXPECT_EQ(run.stage("context").flops, 1000u);
  EXPECT_EQ(run.used(frugal::resource::flops), 3000);
}

TEST(Tbb, OuterStagesIncludeWorkDoneByWorkersInsideInnerScopes) {
  tbb::global_control allow(tbb::global_control::max_allowed_parallelism, 4);
  frugal::budget run{"run"};
  frugal::budget& eval = run.child("eval");
  {
    frugal::scope epoch{run, "epoch"};
    frugal::scope evaluate{eval, "evaluate"};
    frugal::parallel_for(0, 4000, [](int) {
      frugal::add_flops(2);
      frugal::add_units("samples", 1);
    });
  }
  EXPECT_EQ(eval.stage("evaluate").flops, 8000u);
  EXPECT_EQ(run.stage("epoch").flops, 8000u);
  EXPECT_EQ(run.stage("epoch").units_of("samples"), 4000);
  EXPECT_EQ(eval.used(frugal::resource::flops), 8000);
  EXPECT_EQ(run.used(frugal::resource::flops), 8000);
  EXPECT_EQ(run.used("samples"), 4000);
  EXPECT_EQ(run.stage("epoch").calls, 1u);
}

TEST(Tbb, CarryScopeChargesTaskGroupTasks) {
  frugal::budget run{"run"};
  {
    frugal::scope s{run, "tasks"};
    tbb::task_group tg;
    for (int i = 0; i < 16; ++i) tg.run(frugal::carry_scope([] { frugal::add_flops(5); }));
    tg.wait();
  }
  EXPECT_EQ(run.stage("tasks").flops, 80u);
  EXPECT_EQ(run.used(frugal::resource::flops), 80);
}

// A worker continuing the caller's "layer" (or the caller running its own chunk) that opens
// "layer" again re-enters the stage: the caller's scope, which spans the work, counts it once.
TEST(Tbb, AStageReenteredInsideWorkCarriedToWorkersCountsOnce) {
  tbb::global_control allow(tbb::global_control::max_allowed_parallelism, 4);
  tbb::task_arena arena(4);
  frugal::budget run{"run"};
  arena.execute([&] {
    frugal::scope layer{run, "layer"};
    frugal::parallel_for(0, 1000, [&](int) {
      frugal::scope again{run, "layer"};
      frugal::add_flops(1);
      frugal::add_units("samples", 1);
    });
    tbb::task_group tg;
    for (int i = 0; i < 8; ++i)
      tg.run(frugal::carry_scope([&] {
        frugal::scope again{run, "layer"};
        frugal::add_flops(10);
      }));
    tg.wait();
  });
  const frugal::stage_stats layer = run.stage("layer");
  EXPECT_EQ(layer.calls, 1u);
  EXPECT_EQ(layer.flops, 1080u);
  EXPECT_EQ(layer.units_of("samples"), 1000);
  EXPECT_EQ(run.used(frugal::resource::flops), 1080);
  EXPECT_LE(layer.wall_seconds, run.used(frugal::resource::wall));
}

TEST(Threads, AThreadThatExitsKeepsItsCharges) {
  frugal::budget run{"run"};
  frugal::scope s{run, "spawn"};
  const frugal::context ctx = frugal::current_context();
  EXPECT_EQ(ctx.target(), &run);
  EXPECT_EQ(ctx.stage(), "spawn");
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([ctx] {
      frugal::attach a{ctx};
      EXPECT_TRUE(a.attached());
      for (int i = 0; i < 1000; ++i) frugal::add_flops(1);
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(run.used(frugal::resource::flops), 8000);
  // Each worker's share of the stage lands when it detaches; the scope is still open.
  EXPECT_EQ(run.stage("spawn").flops, 8000u);
  EXPECT_EQ(run.stage("spawn").calls, 0u);
}

TEST(Threads, AttachOnTheCallersOwnThreadChargesNothingTwice) {
  frugal::budget run{"run"};
  {
    frugal::scope s{run, "step"};
    frugal::attach again{frugal::current_context()};
    EXPECT_FALSE(again.attached());
    frugal::add_flops(10);
  }
  EXPECT_EQ(run.stage("step").flops, 10u);
  EXPECT_EQ(run.used(frugal::resource::flops), 10);
  frugal::attach nothing{frugal::context{}};
  EXPECT_FALSE(nothing.attached());
}

// Many threads entering and leaving one budget at once: the lock-free wall union stays
// consistent (never negative, never more than the elapsed time, idle at the end).
TEST(Threads, WallUnionUnderContention) {
  frugal::budget run{"run"};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  std::atomic<std::uint64_t> scopes{0};
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        frugal::scope s{run, "hammer"};
        frugal::add_flops(1);
        scopes.fetch_add(1, std::memory_order_relaxed);
      }
    });
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_FALSE(run.active());
  EXPECT_GE(run.used(frugal::resource::wall), 0.0);
  EXPECT_LE(run.used(frugal::resource::wall), elapsed);
  EXPECT_EQ(run.used(frugal::resource::flops), 160000);
  EXPECT_EQ(run.stage("hammer").calls, scopes.load());
}

}  // namespace
