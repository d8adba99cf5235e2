// Budget-aware learning rates: linear and cosine decay to the budget's end, warmup, final value,
// constant and step baselines, driven by a real budget on a manual clock; bad input.
#include <frugal/schedule.hpp>
#include <frugal/scope.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <string>

#include "support/checks.hpp"

using namespace std::chrono_literals;

namespace {

using frugal_test::error_of;


void spend(frugal::budget& run, frugal::manual_clock& clock, std::chrono::nanoseconds d) {
  frugal::scope s{run, "step"};
  clock.advance(d);
}

TEST(Schedule, LinearDecayFollowsTheFractionOfTheBudgetUsed) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(10s)};
  const frugal::linear_decay lr(0.1, run);
  EXPECT_DOUBLE_EQ(lr(), 0.1);
  spend(run, clock, 2500ms);
  EXPECT_DOUBLE_EQ(lr(), 0.075);
  spend(run, clock, 5s);
  EXPECT_DOUBLE_EQ(lr(), 0.025);
  spend(run, clock, 2500ms);
  EXPECT_DOUBLE_EQ(lr(), 0.0);
  spend(run, clock, 5s);  // past the budget: held at the final value
  EXPECT_DOUBLE_EQ(lr(), 0.0);
}

TEST(Schedule, TheResourceThatRunsOutFirstDrivesIt) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(100s).flops(1000)};
  const frugal::linear_decay lr(1.0, run);
  {
    frugal::scope s{run, "step"};
    clock.advance(10s);      // 10 % of the wall
    frugal::add_flops(600);  // 60 % of the FLOPs
  }
  EXPECT_DOUBLE_EQ(lr(), 0.4);
}

TEST(Schedule, CosineDecayAnnealsToZeroAtTheBudgetsEnd) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(8s)};
  const frugal::cosine_decay lr(0.2, run);
  EXPECT_DOUBLE_EQ(lr(), 0.2);
  spend(run, clock, 4s);
  EXPECT_NEAR(lr(), 0.1, 1e-15);
  spend(run, clock, 2s);
  EXPECT_NEAR(lr(), 0.1 * (1 + std::cos(0.75 * 3.14159265358979323846)), 1e-15);
  spend(run, clock, 2s);
  EXPECT_NEAR(lr(), 0.0, 1e-15);
}

TEST(Schedule, WarmupRisesThenDecays) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(10s)};
  auto lr = frugal::linear_decay(1.0, run).warmup(0.2);
  EXPECT_DOUBLE_EQ(lr.at(0.0), 0.0);
  EXPECT_DOUBLE_EQ(lr.at(0.1), 0.5);
  EXPECT_DOUBLE_EQ(lr.at(0.2), 1.0);
  EXPECT_DOUBLE_EQ(lr.at(0.6), 0.5);
  EXPECT_DOUBLE_EQ(lr.at(1.0), 0.0);
  spend(run, clock, 1s);
  EXPECT_DOUBLE_EQ(lr(), 0.5);
  auto cos = frugal::cosine_decay(1.0, run).warmup(0.5);
  EXPECT_DOUBLE_EQ(cos.at(0.25), 0.5);
  EXPECT_NEAR(cos.at(0.75), 0.5, 1e-15);
}

TEST(Schedule, FinalLrIsReachedAtTheEnd) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(10s)};
  auto lr = frugal::linear_decay(1.0, run).final_lr(0.1);
  EXPECT_DOUBLE_EQ(lr.at(0.0), 1.0);
  EXPECT_DOUBLE_EQ(lr.at(0.5), 0.55);
  EXPECT_DOUBLE_EQ(lr.at(1.0), 0.1);
  EXPECT_DOUBLE_EQ(lr.at(7.0), 0.1);  // clamped
  EXPECT_DOUBLE_EQ(lr.at(-1.0), 1.0);
  EXPECT_DOUBLE_EQ(lr.at(std::nan("")), 1.0);
}

TEST(Schedule, ConstantAndStepBaselines) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(10s)};
  const frugal::constant_lr c(0.3, run);
  const frugal::step_decay s(1.0, run, {0.5, 0.75}, 0.1);
  EXPECT_DOUBLE_EQ(c.at(0.9), 0.3);
  EXPECT_DOUBLE_EQ(s.at(0.49), 1.0);
  EXPECT_DOUBLE_EQ(s.at(0.5), 0.1);
  EXPECT_NEAR(s.at(0.8), 0.01, 1e-17);
  spend(run, clock, 6s);
  EXPECT_DOUBLE_EQ(c(), 0.3);
  EXPECT_DOUBLE_EQ(s(), 0.1);
}

TEST(Schedule, SchedulesAreValuesAStdFunctionCanHold) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(10s)};
  std::function<double()> lr = frugal::cosine_decay(0.5, run);
  EXPECT_DOUBLE_EQ(lr(), 0.5);
  lr = frugal::step_decay(0.5, run);
  spend(run, clock, 9s);
  EXPECT_NEAR(lr(), 0.005, 1e-15);
}

TEST(Schedule, AnUnlimitedBudgetHoldsTheInitialRate) {
  frugal::budget run{"train"};
  EXPECT_DOUBLE_EQ(frugal::linear_decay(0.1, run)(), 0.1);
}

TEST(Schedule, BadInputIsRejectedWithFieldAndValue) {
  frugal::budget run{"train", frugal::limits{}.wall(10s)};
  EXPECT_EQ(error_of([&] { frugal::linear_decay(0, run); }), "frugal::linear_decay: lr0 must be finite and > 0, got 0");
  EXPECT_EQ(error_of([&] { frugal::cosine_decay(std::nan(""), run); }),
            "frugal::cosine_decay: lr0 must be finite and > 0, got nan");
  frugal::linear_decay lr(0.1, run);
  EXPECT_EQ(error_of([&] { lr.warmup(1.0); }), "frugal::linear_decay: warmup must be in [0, 1), got 1");
  EXPECT_EQ(error_of([&] { lr.final_lr(0.2); }), "frugal::linear_decay: final_lr must be finite and in [0, lr0], got 0.2");
  EXPECT_EQ(lr.warmup(), 0.0);  // unchanged
  EXPECT_EQ(lr.final_lr(), 0.0);
  EXPECT_EQ(error_of([&] { frugal::step_decay(0.1, run, {0.5, 0.5}); }),
            "frugal::step_decay: milestones[1] must be greater than milestones[0] = 0.5, got 0.5");
  EXPECT_EQ(error_of([&] { frugal::step_decay(0.1, run, {1.5}); }),
            "frugal::step_decay: milestones[0] must be in (0, 1), got 1.5");
  EXPECT_EQ(error_of([&] { frugal::step_decay(0.1, run, {0.5}, 0); }),
            "frugal::step_decay: gamma must be in (0, 1], got 0");
}

}  // namespace
