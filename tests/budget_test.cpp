// The budget tree: limits, usage, wall time as a union of intervals, exact additive charges,
// stages, CPU time and bad input. Time is driven by a manual clock: nothing here sleeps.
#include <frugal/frugal.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "support/checks.hpp"
#include "support/fake_resident_set.hpp"

using namespace std::chrono_literals;

namespace {

using frugal_test::error_of;


TEST(Budget, TheSpellingsOfTheIssueWork) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(30s).cpu(60s).flops(2e12).units("samples", 1'000'000)};
  frugal::budget& eval = run.child("eval", frugal::limits{}.wall(5s));
  const auto parsed = frugal::limits::parse("wall=1h30m,flops=2.5e12,peak_bytes=512MiB");
  EXPECT_EQ(parsed.get(frugal::resource::wall), 5400.0);
  const long m = 64, n = 32, k = 16;
  {
    frugal::scope s{run, "forward"};
    frugal::add_flops(2 * m * n * k);
    frugal::add_units("samples", 64);
    clock.advance(2s);
  }
  EXPECT_EQ(run.used(frugal::resource::flops), 2.0 * m * n * k);
  EXPECT_EQ(run.used("samples"), 64);
  EXPECT_DOUBLE_EQ(run.remaining(frugal::resource::wall), 28.0);
  EXPECT_DOUBLE_EQ(run.fraction_used(), 2.0 / 30.0);
  EXPECT_FALSE(run.exhausted());
  const frugal::stage_stats fwd = run.stage("forward");
  EXPECT_EQ(fwd.calls, 1u);
  EXPECT_DOUBLE_EQ(fwd.wall_seconds, 2.0);
  EXPECT_EQ(fwd.flops, static_cast<std::uint64_t>(2 * m * n * k));
  EXPECT_EQ(fwd.units_of("samples"), 64);
  EXPECT_EQ(eval.used(frugal::resource::wall), 0);
  EXPECT_EQ(eval.parent(), &run);
  EXPECT_EQ(eval.path(), "train/eval");
}

TEST(Budget, WallOfARootScopeIsTheElapsedTime) {
  frugal::manual_clock clock;
  frugal::budget run{"run"};
  {
    frugal::scope all{run, "all"};
    for (int i = 0; i < 5; ++i) {
      frugal::scope step{run, "step"};
      clock.advance(100ms);
    }
    clock.advance(500ms);  // time in the root scope outside any step
    EXPECT_DOUBLE_EQ(run.used(frugal::resource::wall), 1.0);  // live, while open
  }
  clock.advance(10s);  // nothing open: not charged
  EXPECT_DOUBLE_EQ(run.used(frugal::resource::wall), 1.0);
  EXPECT_DOUBLE_EQ(run.stage("all").wall_seconds, 1.0);
  EXPECT_DOUBLE_EQ(run.stage("step").wall_seconds, 0.5);
  EXPECT_EQ(run.stage("step").calls, 5u);
}

TEST(Budget, WallSkipsGapsBetweenScopes) {
  frugal::manual_clock clock;
  frugal::budget run{"run"};
  { frugal::scope s{run, "a"}; clock.advance(1s); }
  clock.advance(3s);
  { frugal::scope s{run, "a"}; clock.advance(1s); }
  EXPECT_DOUBLE_EQ(run.used(frugal::resource::wall), 2.0);
  EXPECT_FALSE(run.active());
}

// Two threads with overlapping scopes: [0 s, 2 s] and [1 s, 3 s]. The union is 3 s; the sum
// over threads would be 4 s.
TEST(Budget, WallIsTheUnionOfIntervalsOverThreads) {
  frugal::manual_clock clock;
  frugal::budget run{"run"};
  std::mutex mu;
  std::condition_variable cv;
  int phase = 0;  // advanced by the main thread; workers wait for their phase
  auto wait_for = [&](int p) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return phase >= p; });
  };
  std::promise<void> a_open, b_open, a_closed, b_closed;
  std::thread a([&] {
    {
      frugal::scope s{run, "work"};
      a_open.set_value();
      wait_for(2);
    }
    a_closed.set_value();
  });
  a_open.get_future().wait();  // t = 0: a opened
  clock.advance(1s);
  std::thread b([&] {
    {
      frugal::scope s{run, "work"};
      b_open.set_value();
      wait_for(3);
    }
    b_closed.set_value();
  });
  b_open.get_future().wait();  // t = 1: b opened
  clock.advance(1s);
  { std::lock_guard<std::mutex> lock(mu); phase = 2; }
  cv.notify_all();
  a_closed.get_future().wait();  // t = 2: a closed
  EXPECT_TRUE(run.active());
  clock.advance(1s);
  { std::lock_guard<std::mutex> lock(mu); phase = 3; }
  cv.notify_all();
  b_closed.get_future().wait();  // t = 3: b closed
  a.join();
  b.join();
  EXPECT_DOUBLE_EQ(run.used(frugal::resource::wall), 3.0);
  EXPECT_DOUBLE_EQ(run.stage("work").wall_seconds, 4.0);  // stage wall sums the scopes
  EXPECT_EQ(run.stage("work").calls, 2u);
}

// Two threads' transitions with clock readings that arrive out of order, as when a thread is
// preempted between reading the clock and publishing its transition. Driven through the
// blocks of two thread ids the test thread plays itself, so the order is exact.
class OutOfOrderTransitions : public ::testing::Test {
 protected:
  using access = frugal::detail::budget_access;
  static constexpr std::uint64_t thread_a = ~std::uint64_t{0} - 1;  // far from any real thread's id
  static constexpr std::uint64_t thread_b = ~std::uint64_t{0} - 2;

  [[nodiscard]] std::int64_t at_ms(int ms) const { return origin_ + std::int64_t{ms} * 1'000'000; }

  frugal::manual_clock clock_;
  frugal::budget run_{"run"};
  std::int64_t origin_ = frugal::wall_now_ns();
  frugal::detail::thread_block& a_ = *access::block_for(run_, thread_a);
  frugal::detail::thread_block& b_ = *access::block_for(run_, thread_b);
};

// b read 5 ms, was preempted, and started after a had ended at 10 ms: b's period starts at the
// end, or [5, 10] would count twice (25 ms instead of 20).
TEST_F(OutOfOrderTransitions, AStartReadBeforeThePreviousEndBeginsAtThatEnd) {
  access::open(a_, at_ms(0));
  access::close(a_, at_ms(10));
  access::open(b_, at_ms(5));
  access::close(b_, at_ms(20));
  EXPECT_DOUBLE_EQ(run_.used(frugal::resource::wall), 0.020);
}

// a read 20 ms to leave and was preempted while b, which entered at 25 ms, left at 30 ms: the
// period ends at b's leave, not at a's stale reading (20 ms would lose [20, 30]).
TEST_F(OutOfOrderTransitions, TheLastOutEndsNoEarlierThanAnotherThreadsLaterLeave) {
  access::open(a_, at_ms(0));
  access::open(b_, at_ms(25));
  access::close(b_, at_ms(30));
  access::close(a_, at_ms(20));
  EXPECT_DOUBLE_EQ(run_.used(frugal::resource::wall), 0.030);
  // And the next period still starts no earlier than that end.
  access::open(b_, at_ms(28));
  access::close(b_, at_ms(40));
  EXPECT_DOUBLE_EQ(run_.used(frugal::resource::wall), 0.040);
}

TEST(Budget, ChildTimeIsParentTimeButNotTheReverse) {
  frugal::manual_clock clock;
  frugal::budget run{"run"};
  frugal::budget& eval = run.child("eval");
  { frugal::scope s{run, "train"}; clock.advance(3s); }
  { frugal::scope s{eval, "eval"}; clock.advance(1s); }
  {
    frugal::scope outer{run, "epoch"};
    clock.advance(1s);
    frugal::scope inner{eval, "eval"};  // nested in an open parent scope: no double wall
    clock.advance(1s);
  }
  EXPECT_DOUBLE_EQ(run.used(frugal::resource::wall), 6.0);
  EXPECT_DOUBLE_EQ(eval.used(frugal::resource::wall), 2.0);
}

TEST(Budget, AdditiveChargesLandOnceInTheInnermostBudgetAndEachAncestor) {
  frugal::budget run{"run"};
  frugal::budget& eval = run.child("eval");
  frugal::budget& probe = eval.child("probe");
  {
    frugal::scope a{run, "step"};
    frugal::add_flops(10);
    {
      frugal::scope b{run, "forward"};  // same budget nested: no double charge
      frugal::add_flops(100);
      {
        frugal::scope c{eval, "eval"};
        frugal::add_flops(1000);
        frugal::scope d{probe, "probe"};
        frugal::add_flops(10000);
      }
      frugal::add_flops(100000);
    }
  }
  frugal::add_flops(1'000'000);  // no scope open: charged nowhere
  EXPECT_EQ(run.used(frugal::resource::flops), 111110);
  EXPECT_EQ(eval.used(frugal::resource::flops), 11000);
  EXPECT_EQ(probe.used(frugal::resource::flops), 10000);
  // Stages are inclusive of the scopes opened inside them.
  EXPECT_EQ(run.stage("step").flops, 111110u);
  EXPECT_EQ(run.stage("forward").flops, 111100u);
  EXPECT_EQ(eval.stage("eval").flops, 11000u);
  EXPECT_EQ(probe.stage("probe").flops, 10000u);
}

TEST(Budget, ChargesInsideAnOpenScopeAreVisibleToTheSameThread) {
  frugal::budget run{"run"};
  frugal::scope s{run, "all"};
  frugal::add_flops(42);
  EXPECT_EQ(run.used(frugal::resource::flops), 42);
  frugal::add_units("tokens", 7);
  EXPECT_EQ(run.used("tokens"), 7);
}

TEST(Budget, AScopeClosedByAnExceptionStillCharges) {
  frugal::manual_clock clock;
  frugal::budget run{"run"};
  try {
    frugal::scope s{run, "step"};
    frugal::add_flops(500);
    frugal::add_units("samples", 3);
    clock.advance(2s);
    throw std::runtime_error("diverged");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(run.used(frugal::resource::flops), 500);
  EXPECT_EQ(run.used("samples"), 3);
  EXPECT_DOUBLE_EQ(run.used(frugal::resource::wall), 2.0);
  EXPECT_EQ(run.stage("step").calls, 1u);
  EXPECT_FALSE(run.active());
}

TEST(Budget, LimitsRemainingFractionAndExhaustion) {
  frugal::manual_clock clock;
  frugal::budget run{"run", frugal::limits{}.wall(10s).flops(1000).units("samples", 100)};
  EXPECT_EQ(run.limit(frugal::resource::flops), 1000);
  EXPECT_EQ(run.limit(frugal::resource::cpu), frugal::budget::unlimited);
  EXPECT_EQ(run.remaining(frugal::resource::cpu), frugal::budget::unlimited);
  EXPECT_EQ(run.limit("samples"), 100);
  EXPECT_EQ(run.limit("tokens"), frugal::budget::unlimited);
  {
    frugal::scope s{run, "step"};
    frugal::add_flops(250);
    frugal::add_units("samples", 60);
    clock.advance(5s);
  }
  EXPECT_DOUBLE_EQ(run.fraction_used(frugal::resource::wall), 0.5);
  EXPECT_DOUBLE_EQ(run.fraction_used(frugal::resource::flops), 0.25);
  EXPECT_DOUBLE_EQ(run.fraction_used(), 0.6);  // samples is the most used
  EXPECT_EQ(run.remaining("samples"), 40);
  EXPECT_FALSE(run.exhausted());
  {
    frugal::scope s{run, "step"};
    frugal::add_units("samples", 40);
  }
  EXPECT_TRUE(run.exhausted());
  EXPECT_EQ(run.exhausted_resources(), std::vector<std::string>{"samples"});
  EXPECT_EQ(run.remaining("samples"), 0);
  {
    frugal::scope s{run, "step"};
    frugal::add_flops(2000);  // running over is allowed: exhaustion is a decision, not an error
    clock.advance(6s);
  }
  EXPECT_EQ(run.exhausted_resources(), (std::vector<std::string>{"wall", "flops", "samples"}));
  EXPECT_EQ(run.remaining(frugal::resource::flops), 0);
  EXPECT_DOUBLE_EQ(run.fraction_used(), 2.25);
}

TEST(Budget, AZeroLimitIsExhaustedFromTheStart) {
  frugal::budget run{"run", frugal::limits{}.flops(0)};
  EXPECT_TRUE(run.exhausted());
  EXPECT_DOUBLE_EQ(run.fraction_used(), 1.0);
}

// peak_bytes is a level (without the allocation hooks, as here, it stands at 0): it is never
// "used up", so it neither exhausts the budget nor counts in fraction_used().
TEST(Budget, LevelsAreHeightsNotConsumables) {
  frugal::manual_clock clock;
  frugal::budget run{"run", frugal::limits{}.wall(10s).peak_bytes(1 << 20)};
  {
    frugal::scope s{run, "step"};
    clock.advance(5s);
  }
  EXPECT_DOUBLE_EQ(run.fraction_used(), 0.5);  // the wall alone
  EXPECT_EQ(run.fraction_used(frugal::resource::peak_bytes), 0);
  EXPECT_EQ(run.remaining(frugal::resource::peak_bytes), 1 << 20);  // the headroom
  EXPECT_FALSE(run.level_crossed());

  frugal::budget ceiling{"ceiling", frugal::limits{}.peak_bytes(0)};
  EXPECT_EQ(ceiling.fraction_used(), 0);  // no consumable is limited
  EXPECT_FALSE(ceiling.exhausted());
  EXPECT_TRUE(ceiling.exhausted_resources().empty());
  // At the ceiling (0 of 0) is not above it.
  EXPECT_FALSE(ceiling.level_crossed());
  EXPECT_TRUE(ceiling.crossed_levels().empty());
  EXPECT_EQ(ceiling.fraction_used(frugal::resource::peak_bytes), 1.0);
  EXPECT_EQ(ceiling.remaining(frugal::resource::peak_bytes), 0);
}

TEST(Budget, UnlimitedBudgetIsNeverExhausted) {
  frugal::budget run{"run"};
  {
    frugal::scope s{run, "x"};
    frugal::add_flops(1ull << 40);
  }
  EXPECT_FALSE(run.exhausted());
  EXPECT_EQ(run.fraction_used(), 0);
}

TEST(Budget, ChildLimitsAreTheirOwnShare) {
  frugal::manual_clock clock;
  frugal::budget run{"run", frugal::limits{}.wall(100s)};
  frugal::budget& eval = run.child("eval", frugal::limits{}.wall(5s));
  {
    frugal::scope s{eval, "eval"};
    clock.advance(6s);
  }
  EXPECT_TRUE(eval.exhausted());
  EXPECT_FALSE(run.exhausted());
  EXPECT_DOUBLE_EQ(run.used(frugal::resource::wall), 6.0);
}

TEST(Budget, CpuIsMeasuredOnlyWhenLimitedOrAskedFor) {
  frugal::manual_clock clock;
  frugal::budget limited{"limited", frugal::limits{}.cpu(10s)};
  frugal::budget plain{"plain"};
  EXPECT_TRUE(limited.measures_cpu());
  EXPECT_FALSE(plain.measures_cpu());
  {
    frugal::scope a{limited, "work"};
    frugal::scope b{plain, "work"};
    clock.advance_cpu(3s);
    EXPECT_DOUBLE_EQ(limited.used(frugal::resource::cpu), 3.0);  // the calling thread's share is live
  }
  EXPECT_DOUBLE_EQ(limited.used(frugal::resource::cpu), 3.0);
  EXPECT_DOUBLE_EQ(plain.used(frugal::resource::cpu), 0.0);
  plain.measure_cpu();
  {
    frugal::scope b{plain, "work"};
    clock.advance_cpu(2s);
  }
  EXPECT_DOUBLE_EQ(plain.used(frugal::resource::cpu), 2.0);
  clock.advance_cpu(5s);  // nothing open: not charged
  EXPECT_DOUBLE_EQ(limited.used(frugal::resource::cpu), 3.0);
}

TEST(Budget, CpuOfAChildIsCountedOnceInTheParent) {
  frugal::manual_clock clock;
  frugal::budget run{"run", frugal::limits{}.cpu(10s)};
  frugal::budget& eval = run.child("eval", frugal::limits{}.cpu(1s));
  {
    frugal::scope a{run, "train"};
    clock.advance_cpu(1s);
    frugal::scope b{eval, "eval"};
    clock.advance_cpu(2s);
  }
  EXPECT_DOUBLE_EQ(run.used(frugal::resource::cpu), 3.0);
  EXPECT_DOUBLE_EQ(eval.used(frugal::resource::cpu), 2.0);
}

TEST(Budget, CpuOfWorkerThreadsAddsUp) {
  frugal::budget run{"run", frugal::limits{}.cpu(1h)};
  double thread_cpu = 0;
  std::thread t([&] {
    {
      frugal::scope s{run, "spin"};
      // Spin on the thread's own CPU clock, not on wall time: a loaded machine may not run us.
      const std::int64_t start = frugal::thread_cpu_now_ns();
      volatile double x = 0;
      while (frugal::thread_cpu_now_ns() - start < 20'000'000) x = x + 1;
    }
    thread_cpu = static_cast<double>(frugal::thread_cpu_now_ns()) / 1e9;
  });
  t.join();
  // A real thread CPU clock: at least the 20 ms spun, at most what the thread used in all.
  EXPECT_GE(run.used(frugal::resource::cpu), 0.020);
  EXPECT_LE(run.used(frugal::resource::cpu), thread_cpu);
}

TEST(Budget, StagesAreListedInFirstUseOrderAndUnknownStagesAreEmpty) {
  frugal::budget run{"run"};
  for (int i = 0; i < 3; ++i) {
    frugal::scope step{run, "step"};
    { frugal::scope f{run, "forward"}; }
    { frugal::scope b{run, "backward"}; }
  }
  const auto stages = run.stages();
  ASSERT_EQ(stages.size(), 3u);
  EXPECT_EQ(stages[0].name, "step");
  EXPECT_EQ(stages[1].name, "forward");
  EXPECT_EQ(stages[2].name, "backward");
  for (const auto& s : stages) EXPECT_EQ(s.calls, 3u);
  const frugal::stage_stats none = run.stage("never");
  EXPECT_EQ(none.name, "never");
  EXPECT_EQ(none.calls, 0u);
}

TEST(Budget, DynamicStageNamesMatchLiterals) {
  frugal::budget run{"run"};
  std::string name = "forward";
  { frugal::scope a{run, "forward"}; }
  { frugal::scope b{run, name}; }
  { frugal::scope c{run, name.c_str()}; }
  char buffer[16] = "forward";
  { frugal::scope d{run, buffer}; }
  buffer[0] = 'F';  // a reused buffer is looked up by content, never by a stale address
  { frugal::scope e{run, buffer}; }
  EXPECT_EQ(run.stage("forward").calls, 4u);
  EXPECT_EQ(run.stage("Forward").calls, 1u);
  { frugal::scope f{run}; }
  EXPECT_EQ(run.stage("run").calls, 1u);
}

// The issue's case: a const char array whose content is set at run time, at the same address
// on every call. Out of line, so the three calls reuse one stack slot.
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
std::uintptr_t open_stage_named(frugal::budget& b, char c) {
  const char name[] = {'s', '_', c, '\0'};
  frugal::scope s{b, name};
  EXPECT_EQ(s.stage(), std::string(name));
  return reinterpret_cast<std::uintptr_t>(&name[0]);
}

// The same, with a name shorter than its array, and with no terminator at all.
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
void open_stages_in_odd_arrays(frugal::budget& b, char c) {
  const char shorter[6] = {c, 'x', '\0', '\0', '\0', '\0'};
  const char unterminated[3] = {'u', 'v', c};
  frugal::scope a{b, shorter};
  frugal::scope d{b, unterminated};
}

TEST(Budget, ConstArraysFilledAtRunTimeAreLookedUpByContent) {
  frugal::budget run{"run"};
  const std::uintptr_t first = open_stage_named(run, 'a');
  const bool same_address = open_stage_named(run, 'b') == first && open_stage_named(run, 'c') == first;
  open_stage_named(run, 'a');
  const auto stages = run.stages();
  ASSERT_EQ(stages.size(), 3u) << "one address held three names (same address: " << same_address << ")";
  EXPECT_EQ(run.stage("s_a").calls, 2u);
  EXPECT_EQ(run.stage("s_b").calls, 1u);
  EXPECT_EQ(run.stage("s_c").calls, 1u);

  frugal::budget odd{"odd"};
  for (char c : {'a', 'b', 'a'}) open_stages_in_odd_arrays(odd, c);
  EXPECT_EQ(odd.stage("ax").calls, 2u);
  EXPECT_EQ(odd.stage("bx").calls, 1u);
  EXPECT_EQ(odd.stage("uva").calls, 2u);
  EXPECT_EQ(odd.stage("uvb").calls, 1u);
  EXPECT_EQ(odd.stages().size(), 4u);
}

// A stage re-entered on a thread (a recursive layer, the same stage opened again inside
// another one) is charged by its outermost scope alone: its totals are what the outermost
// activations measured, never more than the budget's.
TEST(Budget, AReenteredStageCountsOnlyItsOutermostScope) {
  frugal::manual_clock clock;
  frugal::budget run{"run"};
  {
    frugal::scope o{run, "layer"};
    frugal::add_flops(100);
    clock.advance(1s);
    {
      frugal::scope i{run, "layer"};
      frugal::add_flops(100);
      frugal::add_units("samples", 3);
      clock.advance(2s);
      {
        frugal::scope other{run, "attention"};
        frugal::scope again{run, std::string("layer")};  // by content: the same stage
        frugal::add_flops(50);
        frugal::add_units("samples", 1);
        clock.advance(1s);
      }
    }
  }
  const frugal::stage_stats layer = run.stage("layer");
  EXPECT_EQ(layer.calls, 1u);
  EXPECT_EQ(layer.flops, 250u);
  EXPECT_DOUBLE_EQ(layer.wall_seconds, 4.0);
  EXPECT_EQ(layer.units_of("samples"), 4);
  EXPECT_EQ(run.used(frugal::resource::flops), 250);
  EXPECT_EQ(run.used("samples"), 4);
  const frugal::stage_stats attention = run.stage("attention");
  EXPECT_EQ(attention.calls, 1u);
  EXPECT_EQ(attention.flops, 50u);
  EXPECT_DOUBLE_EQ(attention.wall_seconds, 1.0);
  EXPECT_EQ(attention.units_of("samples"), 1);
}

// Recursion: depth 4, twice. Two outermost activations, every level's work in them.
void recurse(frugal::budget& b, frugal::manual_clock& clock, int depth) {
  frugal::scope s{b, "block"};
  frugal::add_flops(10);
  clock.advance(1ms);
  if (depth > 1) recurse(b, clock, depth - 1);
}

TEST(Budget, ARecursiveStageCountsEachOutermostCallOnce) {
  frugal::manual_clock clock;
  frugal::budget run{"run"};
  frugal::budget& child = run.child("child");
  recurse(run, clock, 4);
  recurse(run, clock, 4);
  EXPECT_EQ(run.stage("block").calls, 2u);
  EXPECT_EQ(run.stage("block").flops, 80u);
  EXPECT_DOUBLE_EQ(run.stage("block").wall_seconds, 0.008);
  EXPECT_EQ(run.used(frugal::resource::flops), 80);
  // A stage of the same name in another budget is another stage: both count.
  {
    frugal::scope a{run, "x"};
    frugal::scope b{child, "x"};
    frugal::add_flops(1);
  }
  EXPECT_EQ(run.stage("x").flops, 1u);
  EXPECT_EQ(child.stage("x").flops, 1u);
  EXPECT_EQ(run.stage("x").calls, 1u);
  EXPECT_EQ(child.stage("x").calls, 1u);
}

// Wall time keeps every ns, also across the busy word's 4096 ns ticks, and over a long run.
TEST(Budget, WallIsExactToTheNanosecond) {
  frugal::manual_clock clock;
  frugal::budget run{"run"};
  std::int64_t expected = 0;
  for (std::int64_t gap : {1, 4095, 4097, 7, 123456789}) {
    clock.advance(std::chrono::nanoseconds(gap));
    frugal::scope s{run, "x"};
    clock.advance(std::chrono::nanoseconds(gap * 3 + 1));
    expected += gap * 3 + 1;
  }
  EXPECT_EQ(run.used(frugal::resource::wall), static_cast<double>(expected) / 1e9);
  clock.advance(24h);
  {
    frugal::scope s{run, "long"};
    clock.advance(100 * 24h + 3ns);
    expected += (100 * 24h + 3ns).count();
    EXPECT_EQ(run.used(frugal::resource::wall), static_cast<double>(expected) / 1e9);
  }
  EXPECT_EQ(run.used(frugal::resource::wall), static_cast<double>(expected) / 1e9);
}

TEST(Budget, UnitsAreChargedToEveryOpenStageAndTheInnermostBudget) {
  frugal::budget run{"run"};
  frugal::budget& eval = run.child("eval");
  const frugal::unit_id samples = frugal::unit("samples");
  {
    frugal::scope epoch{run, "epoch"};
    frugal::scope e{eval, "eval"};
    frugal::add_units(samples, 10);
    frugal::add_units("tokens", 2.5);
  }
  EXPECT_EQ(eval.used("samples"), 10);
  EXPECT_EQ(run.used("samples"), 10);
  EXPECT_EQ(run.used("tokens"), 2.5);
  EXPECT_EQ(run.stage("epoch").units_of("samples"), 10);
  EXPECT_EQ(eval.stage("eval").units_of("tokens"), 2.5);
  const frugal::usage u = run.snapshot();
  EXPECT_EQ(u.of("samples"), 10);
  EXPECT_EQ(u.of("never"), 0);
}

TEST(Budget, SnapshotMatchesUsed) {
  frugal::manual_clock clock;
  const frugal_test::fake_resident_set rss(20 << 20);  // the real one could rise between two reads
  frugal::budget run{"run", frugal::limits{}.cpu(1h)};
  {
    frugal::scope s{run, "x"};
    frugal::add_flops(77);
    clock.advance(3s);
    clock.advance_cpu(2s);
  }
  const frugal::usage u = run.snapshot();
  for (frugal::resource r : frugal::all_resources) EXPECT_EQ(u[r], run.used(r)) << frugal::to_string(r);
}

TEST(Budget, BadInputIsRejectedWithTheFieldAndTheValue) {
  EXPECT_NE(error_of([] { frugal::budget b{""}; }).find("name"), std::string::npos);
  frugal::budget run{"run"};
  (void)run.child("eval");
  const std::string dup = error_of([&] { (void)run.child("eval"); });
  EXPECT_NE(dup.find("'eval'"), std::string::npos) << dup;
  EXPECT_NE(error_of([&] { (void)run.child(""); }).find("child"), std::string::npos);
  EXPECT_NE(error_of([&] { frugal::scope s{run, std::string()}; }).find("stage"), std::string::npos);
  const std::string nan_units = error_of([&] {
    frugal::scope s{run, "x"};
    frugal::add_units("samples", std::nan(""));
  });
  EXPECT_NE(nan_units.find("samples"), std::string::npos) << nan_units;
  EXPECT_NE(nan_units.find("nan"), std::string::npos) << nan_units;
  const std::string negative_units = error_of([&] { frugal::add_units("samples", -3); });
  EXPECT_NE(negative_units.find("-3"), std::string::npos) << negative_units;
  const std::string bad_unit = error_of([&] { frugal::add_units("two words", 1); });
  EXPECT_NE(bad_unit.find("'two words'"), std::string::npos) << bad_unit;
  EXPECT_THROW(frugal::budget("x", frugal::limits{}.flops(-1)), std::invalid_argument);
  // Nothing was charged by the failed calls.
  EXPECT_EQ(run.used("samples"), 0);
}

TEST(Budget, SetLimitsKeepsUsage) {
  frugal::budget run{"run", frugal::limits{}.flops(100)};
  { frugal::scope s{run, "x"}; frugal::add_flops(150); }
  EXPECT_TRUE(run.exhausted());
  run.set_limits(frugal::limits{}.flops(1000));
  EXPECT_FALSE(run.exhausted());
  EXPECT_EQ(run.used(frugal::resource::flops), 150);
  EXPECT_EQ(run.limits(), frugal::limits{}.flops(1000));
}

TEST(Budget, LimitsListenersAreCalledOnEverySetLimitsUntilRemoved) {
  frugal::budget run{"run"};
  int calls = 0;
  double seen = 0;
  // A listener may read the budget back: it runs under the listeners' lock, not the budget's.
  const std::uint64_t id = run.add_limits_listener([&] {
    ++calls;
    seen = run.limit(frugal::resource::wall);
  });
  const std::uint64_t other = run.add_limits_listener([&] { ++calls; });
  EXPECT_NE(id, other);
  run.set_limits(frugal::limits{}.wall(5s));
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(seen, 5);
  run.remove_limits_listener(other);
  run.remove_limits_listener(other);   // twice: nothing happens
  run.remove_limits_listener(12345);   // unknown: nothing happens
  run.set_limits(frugal::limits{}.wall(2s));
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(seen, 2);
  run.measure_cpu();  // not a change of limits
  EXPECT_EQ(calls, 3);
  run.remove_limits_listener(id);
  run.set_limits(frugal::limits{});
  EXPECT_EQ(calls, 3);
  EXPECT_NE(error_of([&] { (void)run.add_limits_listener({}); }).find("must not be empty"), std::string::npos);
}

TEST(Budget, FindChildAndChildren) {
  frugal::budget run{"run"};
  frugal::budget& a = run.child("a");
  frugal::budget& b = run.child("b");
  EXPECT_EQ(run.find_child("a"), &a);
  EXPECT_EQ(run.find_child("c"), nullptr);
  EXPECT_EQ(run.children(), (std::vector<frugal::budget*>{&a, &b}));
}

TEST(ManualClock, OnlyOneAtATimeAndNoBackwardSteps) {
  frugal::manual_clock clock;
  EXPECT_THROW(frugal::manual_clock second, std::logic_error);
  EXPECT_THROW(clock.advance(-1s), std::invalid_argument);
  clock.advance(5s);
  EXPECT_EQ(clock.now(), 5s);
  EXPECT_EQ(frugal::wall_now_ns(), 5'000'000'000);
}

#if FRUGAL_ENABLE_ASSERTS
TEST(BudgetDeathTest, DestroyingABudgetWithAnOpenScopeIsCaught) {
  auto destroy_while_open = [] {
    auto* b = new frugal::budget("doomed");
    frugal::scope s(*b, "x");
    delete b;
  };
  EXPECT_DEATH(destroy_while_open(), "budget destroyed while one of its scopes");
}
TEST(BudgetDeathTest, ClosingScopesOutOfOrderIsCaught) {
  auto close_out_of_order = [] {
    frugal::budget b("b");
    auto* outer = new frugal::scope(b, "outer");
    frugal::scope inner(b, "inner");
    delete outer;
  };
  EXPECT_DEATH(close_out_of_order(), "reverse order");
}
#else
TEST(BudgetDeathTest, DestroyingABudgetWithAnOpenScopeIsCaught) {
  GTEST_SKIP() << "misuse checks are compiled out (NDEBUG without FRUGAL_ENABLE_ASSERTS=1)";
}
#endif

// Not a debug check: in every build, a wall time the busy word cannot hold stops the program
// with a message instead of wrapping.
TEST(BudgetDeathTest, ABudgetOlderThanItsWallRangeStopsLoudly) {
  auto too_old = [] {
    frugal::manual_clock clock;
    frugal::budget b("ancient");
    clock.advance(std::chrono::nanoseconds(std::int64_t{1} << 53));
    frugal::scope s(b, "x");
  };
  EXPECT_DEATH(too_old(), "budget 'ancient' is older than 2\\^53 ns \\(104.2 days\\)");
}

}  // namespace
