// The controller on synthetic steps of known cost (a manual clock: nothing sleeps): the stop
// rule and its bound for wall, FLOPs and units; the batch-size knob under a peak-bytes limit;
// early stopping; epochs that end early; pruning and quantization rules; callbacks (order,
// every event to every callback, throwing, veto and amendment); bad input.
#include <frugal/controller.hpp>
#include <frugal/controller_report.hpp>
#include <frugal/scope.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "support/checks.hpp"
#include "support/json_reader.hpp"
#include "support/run_step.hpp"

using namespace std::chrono_literals;

namespace {

using frugal_test::error_of;


using frugal_test::run_step;

// Steps of one cost until the controller says stop (at most max_steps): the steps run and the
// last step's decision.
struct run_result {
  int steps = 0;
  frugal::decision last;
};
run_result run_until_stop(frugal::controller& ctl, frugal::budget& run, frugal::manual_clock& clock,
                          std::chrono::nanoseconds wall, std::uint64_t flops = 0, int max_steps = 100) {
  run_result r;
  while (!ctl.should_stop() && r.steps < max_steps) {
    run_step(run, clock, wall, flops);
    ++r.steps;
    r.last = ctl.end_step();
  }
  return r;
}

// A first epoch of 4 steps (1 s, 10 samples each) and a 1 s evaluation, then the next epoch's
// first step: that step's decision, when a plan's rules have both costs measured.
frugal::decision an_epoch_and_a_step(frugal::controller& ctl, frugal::budget& run, frugal::manual_clock& clock) {
  for (int i = 0; i < 4; ++i) {
    run_step(run, clock, 1s);
    (void)ctl.end_step(frugal::step{}.samples(10));
  }
  run_step(run, clock, 1s);
  (void)ctl.end_epoch();
  run_step(run, clock, 1s);
  return ctl.end_step(frugal::step{}.samples(10));
}

constexpr double MiB = 1024.0 * 1024.0;
constexpr double KiB = 1024.0;

// ---------------------------------------------------------------------------------------------
// The issue's spellings.

TEST(Controller, TheSpellingsOfTheIssueWork) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(30s)};
  frugal::controller ctl{run, frugal::controller_options{}.margin(0.05).batch_size(64)};
  run_step(run, clock, 1s);
  frugal::decision d = ctl.end_step(frugal::step{}.loss(0.5).samples(64));
  EXPECT_TRUE(d.is_continue());
  EXPECT_TRUE(d.has(frugal::action::continue_run));
  EXPECT_EQ(d.to_string(), "continue");
  const frugal::decision e = ctl.end_epoch(frugal::epoch{}.metric("val_loss", 0.4));
  EXPECT_FALSE(e.stops());
  EXPECT_FALSE(ctl.should_stop());
  EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::none);
  EXPECT_EQ(ctl.batch_size(), 64u);
  EXPECT_EQ(ctl.accumulation_steps(), 1u);
  EXPECT_EQ(ctl.steps(), 1u);
  EXPECT_EQ(ctl.epochs(), 1u);
}

// ---------------------------------------------------------------------------------------------
// The stop rule.

// Runs 1 s steps under a 30 s limit until the controller says stop; returns the steps run.
int steps_until_stop(double margin, frugal::stop_reason* why = nullptr, std::string* reason = nullptr) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(30s)};
  frugal::controller ctl{run, frugal::controller_options{}.margin(margin)};
  int steps = 0;
  while (!ctl.should_stop()) {
    run_step(run, clock, 1s);
    ++steps;
    const frugal::decision d = ctl.end_step();
    if (d.stops() && reason) *reason = d.reason();
    if (steps > 100) break;
  }
  if (why) *why = ctl.stop_reason();
  EXPECT_LE(run.used(frugal::resource::wall), 30.0 + 1e-9);
  return steps;
}

TEST(ControllerStopRule, OneSecondStepsUnderThirtySecondsStopAt29Or30NeverAt31) {
  frugal::stop_reason why{};
  const int steps = steps_until_stop(0.0, &why);
  EXPECT_TRUE(steps == 29 || steps == 30) << steps;
  EXPECT_TRUE(why == frugal::stop_reason::budget_exhausted || why == frugal::stop_reason::forecast);
}

TEST(ControllerStopRule, AMarginStopsOneStepEarlierWithTheForecastInWords) {
  frugal::stop_reason why{};
  std::string reason;
  EXPECT_EQ(steps_until_stop(0.05, &why, &reason), 29);
  EXPECT_EQ(why, frugal::stop_reason::forecast);
  EXPECT_EQ(reason, "stop (forecast): wall: 29.0 s used of 30.0 s, next step forecast 1.05 s (+5.00 % margin)");
}

TEST(ControllerStopRule, FlopLimitsAreExact) {
  for (const double limit : {30e9, 30.5e9}) {
    frugal::manual_clock clock;
    frugal::budget run{"train", frugal::limits{}.flops(limit)};
    frugal::controller ctl{run};
    const auto [steps, last] = run_until_stop(ctl, run, clock, 10ms, 1'000'000'000);
    EXPECT_EQ(steps, 30) << "limit " << limit;
    EXPECT_EQ(run.used(frugal::resource::flops), 30e9);
    if (limit == 30e9) {
      EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::budget_exhausted);
      EXPECT_EQ(last.reason(), "stop (budget_exhausted): flops: 3.00e10 used of 3.00e10 (limit reached)");
    } else {
      EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::forecast);
      EXPECT_EQ(last.reason(), "stop (forecast): flops: 3.00e10 used of 3.05e10, next step forecast 1.00e9");
    }
  }
}

TEST(ControllerStopRule, UnitLimitsAreExactToo) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.units("samples", 640)};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(64)};
  int steps = 0;
  while (!ctl.should_stop() && steps < 100) {
    run_step(run, clock, 10ms, 0, 64);
    ++steps;
    (void)ctl.end_step(frugal::step{}.samples(64));
  }
  EXPECT_EQ(steps, 10);
  EXPECT_EQ(run.used("samples"), 640);
  EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::budget_exhausted);
}

TEST(ControllerStopRule, NoisyStepsNeverGoMoreThanOneStepPast) {
  // 1 s +- 30 % (uniform), 200 seeded runs under a 30 s limit.
  int overshooting_runs = 0;
  double utilisation_sum = 0, utilisation_min = 1;
  for (unsigned seed = 1; seed <= 200; ++seed) {
    frugal::manual_clock clock;
    frugal::budget run{"train", frugal::limits{}.wall(30s)};
    frugal::controller ctl{run};
    std::mt19937 rng(seed);
    std::uniform_int_distribution<std::int64_t> ns(700'000'000, 1'300'000'000);
    double before_last = 0, last = 0;
    int steps = 0;
    while (!ctl.should_stop() && steps < 100) {
      before_last = run.used(frugal::resource::wall);
      ASSERT_LT(before_last, 30.0) << "seed " << seed << ": a step started with the budget used up";
      const std::chrono::nanoseconds d{ns(rng)};
      run_step(run, clock, d);
      last = std::chrono::duration<double>(d).count();
      ++steps;
      (void)ctl.end_step();
    }
    const double used = run.used(frugal::resource::wall);
    const double over = used - 30.0;
    ASSERT_LT(over, last) << "seed " << seed << ": more than one step past the limit";
    if (over > 0) ++overshooting_runs;
    utilisation_sum += std::min(used, 30.0) / 30.0;
    utilisation_min = std::min(utilisation_min, std::min(used, 30.0) / 30.0);
  }
  // The forecast is the largest of the last 16 steps, so a step beats it with probability ~1/17.
  EXPECT_LT(overshooting_runs, 40);
  EXPECT_GT(utilisation_sum / 200, 0.97);
  EXPECT_GT(utilisation_min, 0.95);
}

TEST(ControllerStopRule, StopStandsAtLaterCheckpointsUntilVetoed) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(2)};
  frugal::controller ctl{run};
  run_step(run, clock, 1s, 2);
  EXPECT_TRUE(ctl.end_step().stops());
  run_step(run, clock, 1s, 0);  // the loop ignored it
  const frugal::decision again = ctl.end_step();
  EXPECT_TRUE(again.stops());
  EXPECT_EQ(again.cause(), frugal::stop_reason::budget_exhausted);
  EXPECT_EQ(ctl.stop_message(), "stop (budget_exhausted): flops: 2 used of 2 (limit reached)");
}

TEST(ControllerStopRule, NonFiniteLossStopsUnlessTurnedOff) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  run_step(run, clock, 1s);
  EXPECT_FALSE(ctl.end_step(frugal::step{}.loss(1.0)).stops());
  run_step(run, clock, 1s);
  const frugal::decision d = ctl.end_step(frugal::step{}.loss(std::nan("")));
  EXPECT_TRUE(d.stops());
  EXPECT_EQ(d.cause(), frugal::stop_reason::non_finite);
  EXPECT_EQ(d.reason(), "stop (non_finite): loss is nan at step 2");

  frugal::budget other{"other"};
  frugal::controller lenient{other, frugal::controller_options{}.check_finite_loss(false)};
  EXPECT_FALSE(lenient.end_step(frugal::step{}.loss(std::numeric_limits<double>::infinity())).stops());
}

TEST(ControllerStopRule, RequestStopAndACancelFlag) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  ctl.request_stop("checkpoint and quit");
  EXPECT_TRUE(ctl.should_stop());
  EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::user);
  const frugal::decision d = ctl.end_step();
  EXPECT_EQ(d.cause(), frugal::stop_reason::user);
  EXPECT_EQ(d.reason(), "stop (user): checkpoint and quit");

  frugal::budget other{"other"};
  frugal::controller c2{other};
  std::atomic<bool> flag{false};
  c2.cancel_on(flag);
  EXPECT_FALSE(c2.end_step().stops());
  flag = true;
  EXPECT_TRUE(c2.should_stop());
  EXPECT_EQ(c2.stop_reason(), frugal::stop_reason::deadline);
  const frugal::decision cancelled = c2.end_step();
  EXPECT_TRUE(cancelled.has(frugal::action::cancelled));
  EXPECT_EQ(cancelled.primary(), frugal::action::cancelled);
  EXPECT_TRUE(cancelled.stops());
}

// ---------------------------------------------------------------------------------------------
// The batch-size knob under a peak-bytes limit (synthetic peaks: no allocation hooks needed).

TEST(ControllerBatch, MemoryGrowingWithTimeShrinksTheBatchBeforeTheLimitAndKeepsTheEffectiveBatch) {
  // peak = 1 MiB + batch * (64 KiB + t * 512 B): per-sample memory grows step after step.
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.peak_bytes(6 * MiB)};
  frugal::controller ctl{run, frugal::controller_options{}.margin(0.05).batch_size(64).batch_limits(4, 64)};
  std::vector<std::size_t> batches;
  double max_peak = 0;
  for (int t = 0; t < 300 && !ctl.should_stop(); ++t) {
    const std::size_t b = ctl.batch_size();
    const double peak = 1 * MiB + static_cast<double>(b) * (64 * KiB + t * 512.0);
    max_peak = std::max(max_peak, peak);
    run_step(run, clock, 10ms);
    const frugal::decision d = ctl.end_step(frugal::step{}.samples(b).peak_bytes(peak));
    if (d.has(frugal::action::shrink_batch)) {
      batches.push_back(d.batch_size());
      EXPECT_EQ(d.batch_size() * d.accumulation_steps(), 64u);
      EXPECT_NE(d.reason().find("peak_bytes: next step forecast"), std::string::npos) << d.reason();
    }
    EXPECT_EQ(ctl.batch_size() * ctl.accumulation_steps(), 64u);
  }
  EXPECT_LT(max_peak, 6 * MiB);
  ASSERT_GE(batches.size(), 2u);
  EXPECT_EQ(batches[0], 32u);
  EXPECT_EQ(batches[1], 16u);
  EXPECT_EQ(ctl.effective_batch(), 64u);
}

TEST(ControllerBatch, GrowsBackWhenThereIsRoomAndNeverCrosses) {
  // peak = 1 MiB + batch * 64 KiB under 6 MiB: 64 fits (5 MiB), 128 would not (9 MiB).
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.peak_bytes(6 * MiB)};
  frugal::controller ctl{run, frugal::controller_options{}
                                  .batch_size(16)
                                  .batch_limits(1, 128)
                                  .effective_batch(64)
                                  .grow_after(5)
                                  .grow_headroom(0.9)};
  EXPECT_EQ(ctl.accumulation_steps(), 4u);
  std::vector<std::size_t> seen;
  for (int t = 0; t < 60; ++t) {
    const std::size_t b = ctl.batch_size();
    const double peak = 1 * MiB + static_cast<double>(b) * 64 * KiB;
    ASSERT_LT(peak, 6 * MiB) << "step " << t << " at batch " << b;
    run_step(run, clock, 10ms);
    const frugal::decision d = ctl.end_step(frugal::step{}.samples(b).peak_bytes(peak));
    if (d.has(frugal::action::grow_batch)) seen.push_back(d.batch_size());
  }
  EXPECT_EQ(seen, (std::vector<std::size_t>{32, 64}));
  EXPECT_EQ(ctl.batch_size(), 64u);
  EXPECT_EQ(ctl.accumulation_steps(), 1u);
  EXPECT_EQ(ctl.forecast_peak(64), 5 * MiB);
}

TEST(ControllerBatch, AFirstStepOverTheLimitShrinksByTheFactorThenTheFitPicksTheSize) {
  // peak = fixed + batch * 64 KiB; the fixed part grows from 1 MiB to 2.4 MiB at step 4 (an
  // optimizer allocating its state, say). Limit 4.5 MiB, margin 20 % of what the batch adds.
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.peak_bytes(4.5 * MiB)};
  frugal::controller ctl{run, frugal::controller_options{}.margin(0.2).batch_size(64).batch_limits(1, 64)};
  std::vector<std::size_t> sizes;
  std::vector<double> peaks;
  for (int t = 0; t < 10; ++t) {
    const std::size_t b = ctl.batch_size();
    sizes.push_back(b);
    peaks.push_back((t < 4 ? 1 * MiB : 2.4 * MiB) + static_cast<double>(b) * 64 * KiB);
    run_step(run, clock, 10ms);
    (void)ctl.end_step(frugal::step{}.samples(b).peak_bytes(peaks.back()));
  }
  // Step 0 at 64 peaks at 5 MiB, over the limit; one size says nothing about smaller ones but
  // "at most 5 MiB": the factor, 32. Step 4 at 32 peaks at 4.4 MiB: the line through (64, 5 MiB)
  // and (32, 4.4 MiB) is base 3.8 MiB + 19.2 KiB per sample, and 3.8 + 1.2 x 0.6 = 4.52 MiB at 32
  // is over; it fits 31 (3.8 + 1.2 x 0.58 MiB), and 22 x 3 keeps the effective batch near 64.
  EXPECT_EQ(sizes, (std::vector<std::size_t>{64, 32, 32, 32, 32, 22, 22, 22, 22, 22}));
  EXPECT_EQ(ctl.accumulation_steps(), 3u);
  EXPECT_EQ(ctl.effective_batch(), 66u);
  EXPECT_LT(*std::max_element(peaks.begin() + 1, peaks.end()), 4.5 * MiB);
}

TEST(ControllerBatch, MaxStepTimeShrinksTheBatch) {
  // Step time = 10 ms + batch * 1 ms; cap 50 ms.
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(128).max_step_time(50ms).grow_after(0)};
  std::vector<std::size_t> sizes;
  std::string first_reason;
  for (int t = 0; t < 6; ++t) {
    const std::size_t b = ctl.batch_size();
    sizes.push_back(b);
    run_step(run, clock, 10ms + std::chrono::milliseconds(b));
    const frugal::decision d = ctl.end_step(frugal::step{}.samples(b));
    if (t == 0) first_reason = d.reason();
  }
  // 128 (138 ms) -> 64 by the factor, whose proportional forecast (69 ms) is still over: 32.
  EXPECT_EQ(sizes, (std::vector<std::size_t>{128, 32, 32, 32, 32, 32}));
  EXPECT_EQ(first_reason,
            "shrink batch 128 -> 32 (accumulation 4): step time forecast 138 ms at batch 128 over max_step_time 50.0 ms");
  EXPECT_NEAR(*ctl.forecast_step(frugal::resource::wall), 0.042, 1e-9);
  EXPECT_EQ(ctl.effective_batch(), 128u);
}

TEST(ControllerBatch, AtTheMinimumBatchAPeakForecastOverTheLimitStops) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.peak_bytes(1 * MiB)};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(8).batch_limits(8, 8)};
  run_step(run, clock, 10ms);
  const frugal::decision d = ctl.end_step(frugal::step{}.samples(8).peak_bytes(2 * MiB));
  EXPECT_TRUE(d.stops());
  EXPECT_EQ(d.cause(), frugal::stop_reason::forecast);
  EXPECT_EQ(d.reason(),
            "stop (forecast): peak_bytes: next step forecast 2.00 MiB at batch 8 (as measured) over limit 1.00 MiB (batch at "
            "its minimum)");
}

TEST(ControllerBatch, AUserRuleReplacesTheDefault) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.peak_bytes(4.5 * MiB)};
  std::vector<std::size_t> proposals;
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(64).batch_limits(1, 64).batch_rule(
                                  [&](const frugal::batch_request& r) {
                                    proposals.push_back(r.proposed);
                                    // Memory over the limit: take the largest size the forecast fits.
                                    if (r.ctl.forecast_peak(r.current) > 4.5 * MiB) return std::size_t{48};
                                    return r.current;
                                  })};
  run_step(run, clock, 10ms);
  const frugal::decision d = ctl.end_step(frugal::step{}.samples(64).peak_bytes(5 * MiB));
  EXPECT_EQ(proposals, (std::vector<std::size_t>{32}));  // what the default would have done
  EXPECT_EQ(d.batch_size(), 48u);
  EXPECT_EQ(ctl.batch_size(), 48u);
  EXPECT_EQ(ctl.accumulation_steps(), 2u);  // ceil(64 / 48)
  EXPECT_NE(d.reason().find("batch rule"), std::string::npos);
}

TEST(ControllerBatch, ABatchRuleOutOfBoundsOrThrowingIsRecordedAndIgnored) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  int calls = 0;
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(16).batch_limits(4, 16).batch_rule(
                                  [&](const frugal::batch_request&) -> std::size_t {
                                    if (++calls == 1) return 1000;
                                    throw std::runtime_error("rule broke");
                                  })};
  (void)ctl.end_step();
  (void)ctl.end_step();
  EXPECT_EQ(ctl.batch_size(), 16u);
  ASSERT_EQ(ctl.callback_errors().size(), 2u);
  EXPECT_EQ(ctl.callback_errors()[0].callback, "batch_rule");
  EXPECT_EQ(ctl.callback_errors()[0].what, "batch rule returned 1000, outside [4, 16]");
  EXPECT_EQ(ctl.callback_errors()[1].what, "rule broke");
}

// ---------------------------------------------------------------------------------------------
// Epochs.

TEST(ControllerEpochs, AnEpochEndsEarlyWhenOnlyItsEndStillFits) {
  // 10 steps of 1 s, then a 3 s evaluation, under 30 s: epochs end at 13 s and 26 s; in the third
  // epoch one more step and the evaluation (4 s) no longer fit after the first step (27 s).
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(30s)};
  frugal::controller ctl{run, frugal::controller_options{}.steps_per_epoch(10)};
  std::vector<bool> early;
  ctl.add_callback("epochs", [&](const frugal::epoch_end_event& e) { early.push_back(e.ended_early); });
  std::vector<int> steps_per_epoch;
  while (!ctl.should_stop()) {
    int steps = 0;
    for (int i = 0; i < 10; ++i) {
      run_step(run, clock, 1s);
      ++steps;
      const frugal::decision d = ctl.end_step();
      if (d.ends_epoch()) {
        if (ctl.epochs() == 2) {
          EXPECT_TRUE(d.has(frugal::action::end_epoch));
          EXPECT_EQ(d.reason(),
                    "end epoch: wall: 27.0 s used of 30.0 s; the next step (1.00 s) and the epoch's end (3.00 s) "
                    "would not fit, 9 steps of the epoch left");
        }
        break;
      }
    }
    steps_per_epoch.push_back(steps);
    {
      frugal::scope eval{run, "eval"};
      clock.advance(3s);
    }
    (void)ctl.end_epoch();
  }
  EXPECT_EQ(steps_per_epoch, (std::vector<int>{10, 10, 1}));
  EXPECT_EQ(early, (std::vector<bool>{false, false, true}));
  EXPECT_DOUBLE_EQ(run.used(frugal::resource::wall), 30.0);
  EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::budget_exhausted);
  EXPECT_NEAR(*ctl.forecast_epoch_end(frugal::resource::wall), 3.0, 1e-9);
}

// A checkpoint saved after end_epoch() belongs to the epoch's end: charged there, it is in the
// forecast of the next epoch end (the final evaluation's reserve) and not in the next step's.
TEST(ControllerEpochs, WorkAfterTheEpochsEndIsChargedToItNotToTheNextStep) {
  for (const bool charged : {true, false}) {
    SCOPED_TRACE(charged ? "charged to the epoch's end" : "not charged");
    frugal::manual_clock clock;
    frugal::budget run{"train", frugal::limits{}.wall(1000s)};
    frugal::controller ctl{run};
    for (int i = 0; i < 20; ++i) {
      run_step(run, clock, 1s);
      (void)ctl.end_step();
    }
    {
      frugal::scope evaluation{run, "evaluation"};
      clock.advance(3s);
    }
    (void)ctl.end_epoch();
    {
      frugal::scope save{run, "checkpoint"};
      clock.advance(2s);
    }
    if (charged) ctl.charge_to_epoch_end();
    run_step(run, clock, 1s);
    (void)ctl.end_step();
    EXPECT_NEAR(*ctl.forecast_epoch_end(frugal::resource::wall), charged ? 5.0 : 3.0, 1e-9);
    EXPECT_NEAR(*ctl.forecast_step(frugal::resource::wall), charged ? 1.0 : 3.0, 1e-9);
    EXPECT_DOUBLE_EQ(run.used(frugal::resource::wall), 26.0);  // charged or not, the budget has it all
  }
}

TEST(ControllerEpochs, ChargingToAnEpochsEndNeedsOneThatJustEnded) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(100s)};
  frugal::controller ctl{run};
  EXPECT_THROW(ctl.charge_to_epoch_end(), std::logic_error);  // no epoch has ended
  run_step(run, clock, 1s);
  (void)ctl.end_step();
  (void)ctl.end_epoch();
  ctl.charge_to_epoch_end();
  ctl.charge_to_epoch_end();  // twice: the second adds what came since the first
  (void)ctl.end_run();        // may come between
  ctl.charge_to_epoch_end();
  run_step(run, clock, 1s);
  (void)ctl.end_step();
  EXPECT_THROW(ctl.charge_to_epoch_end(), std::logic_error);  // a step since
}

TEST(ControllerEpochs, ANewEpochThatCannotFitOneStepAndItsEndStops) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(10s)};
  frugal::controller ctl{run};
  for (int i = 0; i < 5; ++i) {
    run_step(run, clock, 1s);
    (void)ctl.end_step();
  }
  run_step(run, clock, 2s);  // evaluation
  EXPECT_FALSE(ctl.end_epoch().stops());  // 7 s used; 1 s + 2 s fit in 3 s
  run_step(run, clock, 1s);
  const frugal::decision d = ctl.end_step();
  EXPECT_TRUE(d.has(frugal::action::end_epoch));  // 8 s: a step and the evaluation no longer fit
  run_step(run, clock, 2s);
  const frugal::decision e = ctl.end_epoch();
  EXPECT_TRUE(e.stops());
  EXPECT_DOUBLE_EQ(run.used(frugal::resource::wall), 10.0);
}

// run_end_work: the run's end (a final test over twice the validation images) is kept with every
// epoch's end. 10 steps of 1 s, 3 s evaluations, a 6 s final test, under 40 s: epochs end at
// 13 s and 26 s; in the third, after step 5 (31 s), one more step, the epoch's end and the run's
// end (1 + 3 + 6 s) no longer fit: the epoch ends, its evaluation brings 34 s, a new epoch
// (1 + 9 s) does not fit, and the final test ends the run at 40 s, inside the limit. Without
// run_end_work the third epoch runs whole and its evaluation ends at 39 s: no room for the test.
TEST(ControllerRunEnd, TheRunsEndIsKeptWithEveryEpochsEnd) {
  for (const bool kept : {true, false}) {
    SCOPED_TRACE(kept ? "run_end_work(2)" : "no run_end_work");
    frugal::manual_clock clock;
    frugal::budget run{"train", frugal::limits{}.wall(40s)};
    frugal::controller_options options = frugal::controller_options{}.steps_per_epoch(10);
    if (kept) options.run_end_work(2);
    frugal::controller ctl{run, options};
    std::vector<int> steps_per_epoch;
    std::string end_reason;
    while (!ctl.should_stop()) {
      int steps = 0;
      for (int i = 0; i < 10; ++i) {
        run_step(run, clock, 1s);
        ++steps;
        const frugal::decision d = ctl.end_step();
        if (d.ends_epoch()) {
          end_reason = d.reason();
          break;
        }
      }
      steps_per_epoch.push_back(steps);
      run_step(run, clock, 3s);  // the validation
      (void)ctl.end_epoch();
    }
    const double before_test = run.used(frugal::resource::wall);
    if (kept) {
      EXPECT_EQ(steps_per_epoch, (std::vector<int>{10, 10, 5}));
      EXPECT_EQ(end_reason,
                "end epoch: wall: 31.0 s used of 40.0 s; the next step (1.00 s) and the epoch's end and the run's "
                "end (9.00 s) would not fit, 5 steps of the epoch left");
      EXPECT_EQ(ctl.stop_message(),
                "stop (forecast): wall: 34.0 s used of 40.0 s, one step, an epoch end and the run's end forecast "
                "10.0 s");
      EXPECT_DOUBLE_EQ(before_test, 34.0);
      EXPECT_NEAR(*ctl.forecast_run_end(frugal::resource::wall), 6.0, 1e-9);
      EXPECT_LE(before_test + *ctl.forecast_run_end(frugal::resource::wall), 40.0);  // the final test fits
    } else {
      EXPECT_EQ(steps_per_epoch, (std::vector<int>{10, 10, 10}));
      EXPECT_DOUBLE_EQ(before_test, 39.0);  // 1 s left: no room for a 6 s test
      EXPECT_EQ(*ctl.forecast_run_end(frugal::resource::wall), 0.0);
    }
  }
}

// A loop that goes on after its epoch was ended (or whose epoch end's forecast rose) is stopped
// at the step after which the epoch's end and the run's end would no longer fit: what is left
// then keeps room for the run's end alone (the loop skips the evaluation).
TEST(ControllerRunEnd, AStopAtAStepKeepsRoomForTheRunsEnd) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(400)};
  frugal::controller ctl{run, frugal::controller_options{}.steps_per_epoch(10).run_end_work(2)};
  auto step = [&] {
    {
      frugal::scope s{run, "step"};
      frugal::add_flops(10);
    }
    return ctl.end_step();
  };
  for (int i = 0; i < 10; ++i) (void)step();
  {
    frugal::scope s{run, "validation"};
    frugal::add_flops(30);
  }
  (void)ctl.end_epoch();  // 130 used: one step, an end and the run's end (10 + 30 + 60) fit
  frugal::decision d;
  int steps = 0;
  while (!(d = step()).stops()) ++steps;  // ends_epoch ignored
  // After step 17 of the epoch (300 used) the next step, the epoch's end and the run's end
  // (10 + 30 + 60) fit exactly; after step 18 (310) they do not, and the loop is told to end the
  // epoch; it goes on, and after step 19 (320) even the end and the run's end (90) would not fit.
  EXPECT_EQ(steps, 18);
  EXPECT_DOUBLE_EQ(run.used(frugal::resource::flops), 320.0);
  EXPECT_EQ(d.reason(), "stop (forecast): flops: 320 used of 400; the epoch's end and the run's end (90) would not fit");
  EXPECT_LE(run.used(frugal::resource::flops) + *ctl.forecast_run_end(frugal::resource::flops), 400.0);
}

TEST(ControllerRunEnd, ThePlannedWorkCountsTheRunsEnd) {
  // Plan: 5 epochs of 4 steps (1 s) and a 1 s evaluation, under 30 s. After epoch 0 and one step
  // (6 s): 15 steps and 4 evaluations left, 19 s of 24 s. With a run's end of 6 evaluations'
  // worth, 25 s: 4 % short, and the prune rule asks for 4 % of the cost.
  for (const double end_work : {0.0, 6.0}) {
    SCOPED_TRACE("run_end_work " + std::to_string(end_work));
    frugal::manual_clock clock;
    frugal::budget run{"train", frugal::limits{}.wall(30s)};
    frugal::controller ctl{run, frugal::controller_options{}
                                    .batch_size(10)
                                    .planned_epochs(5)
                                    .run_end_work(end_work)
                                    .prune(frugal::prune_rule{}.warmup_steps(0))};
    const frugal::decision d = an_epoch_and_a_step(ctl, run, clock);
    if (end_work == 0) {
      EXPECT_FALSE(d.has(frugal::action::prune));
    } else {
      ASSERT_TRUE(d.has(frugal::action::prune));
      EXPECT_NEAR(d.prune_fraction(), 1 - 24.0 / 25.0, 1e-12);
    }
  }
}

TEST(ControllerRunEnd, ABadRunEndIsAClearError) {
  for (const double bad : {-1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    try {
      (void)frugal::controller_options{}.run_end_work(bad);
      ADD_FAILURE() << "run_end_work(" << bad << ") was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("run_end_work must be finite and >= 0"), std::string::npos) << e.what();
    }
  }
}

TEST(ControllerEpochs, EarlyStoppingOnAnEpochMetric) {
  frugal::budget run{"train"};
  frugal::controller ctl{run, frugal::controller_options{}.early_stop(frugal::early_stopping{"val_loss"}.patience(2))};
  const std::vector<double> losses{1.0, 0.8, 0.9, 0.85};
  std::size_t epochs = 0;
  frugal::decision d;
  for (double v : losses) {
    ++epochs;
    d = ctl.end_epoch(frugal::epoch{}.metric("val_loss", v));
    if (d.stops()) break;
  }
  EXPECT_EQ(epochs, 4u);
  EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::early_stopping);
  EXPECT_EQ(d.reason(), "stop (early_stopping): val_loss did not improve on 0.8 (epoch 1) for 2 evaluations (patience 2)");
  ASSERT_EQ(ctl.early_stoppers().size(), 1u);
  EXPECT_EQ(ctl.early_stoppers()[0].best(), 0.8);
  EXPECT_EQ(ctl.early_stoppers()[0].best_epoch(), 1u);
}

TEST(ControllerEpochs, DivergedAndNonFiniteMetricsHaveTheirOwnReasons) {
  frugal::budget run{"train"};
  frugal::controller ctl{run, frugal::controller_options{}.early_stop(frugal::early_stopping{}.divergence_threshold(5))};
  EXPECT_FALSE(ctl.end_epoch(frugal::epoch{}.metric("val_loss", 1)).stops());
  EXPECT_FALSE(ctl.end_epoch(frugal::epoch{}.metric("other", 100)).stops());  // not watched
  EXPECT_EQ(ctl.end_epoch(frugal::epoch{}.metric("val_loss", 6)).cause(), frugal::stop_reason::diverged);

  frugal::budget run2{"train2"};
  frugal::controller c2{run2, frugal::controller_options{}.early_stop(frugal::early_stopping{})};
  EXPECT_EQ(c2.end_epoch(frugal::epoch{}.metric("val_loss", std::nan(""))).cause(), frugal::stop_reason::non_finite);
}

// ---------------------------------------------------------------------------------------------
// Pruning and quantization rules.

TEST(ControllerRules, PruneFiresWithTheShortfallThenJudgesItsMeasuredEffect) {
  // 100 planned steps of 1 s under 50 s: at step 1, 99 s of work and 49 s left (50.5 % short).
  // The action prunes nothing (the steps stay 1 s): over the cooldown the controller measures
  // that, and the rule fires no more (today's fault: it fired at 1, 6, 11, 16 regardless).
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(50s)};
  std::vector<double> pruned;
  frugal::controller ctl{run, frugal::controller_options{}.planned_steps(100).prune(
                                  frugal::prune_rule{}.max_fraction(0.9).min_shortfall(0.5).cooldown_steps(5).warmup_steps(0).action(
                                      [&](double f) { pruned.push_back(f); }))};
  std::vector<frugal::forecast_horizon> overruns;
  ctl.add_callback("overruns", [&](const frugal::forecast_overrun_event& e) { overruns.push_back(e.horizon); });
  std::vector<std::uint64_t> fired_at;
  for (int i = 0; i < 20; ++i) {
    run_step(run, clock, 1s);
    const frugal::decision d = ctl.end_step();
    if (d.has(frugal::action::prune)) {
      fired_at.push_back(ctl.steps());
      EXPECT_NE(d.reason().find("wall: planned work left forecast"), std::string::npos) << d.reason();
    }
  }
  EXPECT_EQ(fired_at, (std::vector<std::uint64_t>{1}));
  ASSERT_EQ(pruned.size(), 1u);
  EXPECT_DOUBLE_EQ(pruned[0], 1 - 49.0 / 99.0);
  EXPECT_FALSE(ctl.prune_rule_active(0));
  ASSERT_EQ(ctl.history().compressions.size(), 1u);
  const frugal::compression_record& rec = ctl.history().compressions[0];
  EXPECT_EQ(rec.kind, frugal::action::prune);
  ASSERT_EQ(rec.effects.size(), 1u);
  EXPECT_EQ(rec.effects[0].resource, "wall");
  EXPECT_DOUBLE_EQ(rec.effects[0].before, 1.0);
  EXPECT_DOUBLE_EQ(rec.effects[0].after.value_or(-1), 1.0);
  EXPECT_EQ(rec.lowered, false);
  const auto& decisions = ctl.history().decisions;
  ASSERT_FALSE(decisions.empty());
  EXPECT_EQ(decisions.back().actions, "rule_disabled");
  EXPECT_EQ(decisions.back().reason,
            "prune 50.5 % at step 1 did not lower what rule 'prune' watches (wall per sample 1.00x): the rule fires no more");
  EXPECT_EQ(overruns, (std::vector<frugal::forecast_horizon>{frugal::forecast_horizon::planned_work}));
}

TEST(ControllerRules, APruneThatLowersTheCostIsMeasuredAndThePlanThenFits) {
  // The action really prunes: a step costs (1 - f) of what it did. The controller measures the
  // effect, and the cheaper steps make the plan fit: one firing, 100 steps inside 50 s.
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(50s)};
  double cost = 1.0;
  frugal::controller ctl{run, frugal::controller_options{}.planned_steps(100).prune(
                                  frugal::prune_rule{}.max_fraction(0.9).min_shortfall(0.05).cooldown_steps(5).warmup_steps(0).action(
                                      [&](double f) { cost *= 1 - f; }))};
  int steps = 0;
  while (!ctl.should_stop() && steps < 100) {
    run_step(run, clock, std::chrono::nanoseconds(static_cast<std::int64_t>(cost * 1e9)));  // ns rounded down
    ++steps;
    (void)ctl.end_step();
  }
  EXPECT_EQ(steps, 100);
  ASSERT_EQ(ctl.history().compressions.size(), 1u);
  const frugal::compression_record& rec = ctl.history().compressions[0];
  EXPECT_EQ(rec.step_index, 1u);
  EXPECT_NEAR(rec.effects[0].after.value_or(-1), 49.0 / 99.0, 1e-9);
  EXPECT_EQ(rec.lowered, true);
  EXPECT_TRUE(ctl.prune_rule_active(0));
  EXPECT_LE(run.used(frugal::resource::wall), 50.0);
}

TEST(ControllerRules, AMeasuredPruneScalesTheEpochEndsMeasuredBeforeIt) {
  // Epochs of 10 steps (1000 FLOPs, 10 samples each) and a 2000-FLOP evaluation; 3 planned under
  // 30000 FLOPs (36000 planned). The rule fires in the second epoch; its action makes a step and
  // an evaluation (1 - f) as costly. Until the effect is measured the costs before it stand; once
  // measured, the steps and the evaluation before it are scaled by the step's measured factor --
  // not kept at their old cost for a whole window.
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(30000)};
  double scale = 1.0;
  frugal::controller ctl{run, frugal::controller_options{}.epoch_samples(100).planned_epochs(3).margin(0).prune(
                                  frugal::prune_rule{}.max_fraction(0.9).min_shortfall(0.05).cooldown_steps(3).warmup_steps(12).action(
                                      [&](double f) { scale *= 1 - f; }))};
  const auto step_flops = [&] { return static_cast<std::uint64_t>(std::llround(1000 * scale)); };
  for (int i = 0; i < 10; ++i) {
    run_step(run, clock, 1s, step_flops(), 10);
    (void)ctl.end_step(frugal::step{}.samples(10));
  }
  run_step(run, clock, 1s, 2000);
  (void)ctl.end_epoch();
  EXPECT_EQ(ctl.forecast_epoch_end(frugal::resource::flops), 2000);
  std::uint64_t fired_step = 0;
  for (int i = 0; i < 10 && !ctl.should_stop(); ++i) {
    run_step(run, clock, 1s, step_flops(), 10);
    const frugal::decision d = ctl.end_step(frugal::step{}.samples(10));
    if (fired_step == 0 && d.has(frugal::action::prune)) fired_step = ctl.steps();
    if (fired_step == 0) continue;
    if (ctl.history().compressions.at(0).effects.at(0).after) break;  // measured: see below
    EXPECT_EQ(ctl.forecast_epoch_end(frugal::resource::flops), 2000) << "step " << ctl.steps();  // not yet
  }
  ASSERT_GT(fired_step, 10u);
  EXPECT_EQ(ctl.steps(), fired_step + 3);  // the cooldown's steps measured the effect
  const frugal::compression_record& rec = ctl.history().compressions.at(0);
  ASSERT_TRUE(rec.lowered.value_or(false));
  const double factor = rec.effects[0].after.value_or(0) / rec.effects[0].before;
  EXPECT_DOUBLE_EQ(factor, static_cast<double>(step_flops()) / 1000);
  EXPECT_DOUBLE_EQ(*ctl.forecast_epoch_end(frugal::resource::flops), 2000 * factor);
  // The steps before it are scaled too: the plan is now made of pruned steps, and fits.
  EXPECT_DOUBLE_EQ(*ctl.forecast_step(frugal::resource::flops), static_cast<double>(step_flops()));
  while (ctl.steps() < 20 && !ctl.should_stop()) {
    run_step(run, clock, 1s, step_flops(), 10);
    (void)ctl.end_step(frugal::step{}.samples(10));
  }
  // The next evaluation, measured at its new cost, joins the scaled one: no spread between them.
  run_step(run, clock, 1s, static_cast<std::uint64_t>(std::llround(2000 * scale)));
  (void)ctl.end_epoch();
  EXPECT_NEAR(*ctl.forecast_epoch_end(frugal::resource::flops), 2000 * factor, 1);
  EXPECT_LT(*ctl.headroom(frugal::resource::flops), 0.001);
  while (ctl.steps() < 30 && !ctl.should_stop()) {
    run_step(run, clock, 1s, step_flops(), 10);
    (void)ctl.end_step(frugal::step{}.samples(10));
  }
  run_step(run, clock, 1s, static_cast<std::uint64_t>(std::llround(2000 * scale)));
  (void)ctl.end_epoch();
  // One pruning, the whole plan inside the budget. Before, the unscaled steps (1000 FLOPs, the
  // window's largest) made the plan look 19 % short after the first pruning: a second one cut
  // the model to 0.59 of its cost for nothing.
  EXPECT_EQ(ctl.history().compressions.size(), 1u);
  EXPECT_EQ(ctl.steps(), 30u);
  EXPECT_EQ(ctl.epochs(), 3u);
  EXPECT_LE(run.used(frugal::resource::flops), 30000);
}

TEST(ControllerRules, QuantizePicksTheWidestWidthThatCoversTheShortfall) {
  // A step costs bits / 32 s: the action lowers it.
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(50s)};
  std::vector<int> widths;
  int bits = 32;
  frugal::controller ctl{run, frugal::controller_options{}.planned_steps(100).quantize(
                                  frugal::quantize_rule{}.cooldown_steps(1).warmup_steps(0).action([&](int b) {
                                    widths.push_back(b);
                                    bits = b;
                                  }))};
  for (int i = 0; i < 100 && !ctl.should_stop(); ++i) {
    run_step(run, clock, std::chrono::nanoseconds(std::int64_t{1'000'000'000} * bits / 32));
    (void)ctl.end_step();
  }
  // 50.5 % short: 16 bits (removes 50 %) is not quite enough: 8, after which the plan fits.
  EXPECT_EQ(widths, (std::vector<int>{8}));
  EXPECT_EQ(ctl.steps(), 100u);
  EXPECT_EQ(ctl.history().compressions.at(0).lowered, true);
}

TEST(ControllerRules, AQuantizeRuleWhoseActionDoesNotLowerFlopsFiresOnce) {
  // The issue's input: FLOPs per step do not move whatever the width (integer kernels charged
  // as FLOPs, say). Today the rule stepped 32 -> 16 -> 8 -> 4 within 33 steps.
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(50e9)};
  std::vector<int> widths;
  frugal::controller ctl{run, frugal::controller_options{}.planned_steps(100).quantize(
                                  frugal::quantize_rule{}.watch(frugal::resource::flops).action([&](int b) { widths.push_back(b); }))};
  for (int i = 0; i < 60 && !ctl.should_stop(); ++i) {
    run_step(run, clock, 10ms, 1'000'000'000);
    (void)ctl.end_step();
  }
  // At step 10 (the warm-up): 90e9 needed, 40e9 left, 55.6 % short: 8 bits. Measured over the
  // 16-step cooldown: FLOPs per step unchanged, so never again.
  EXPECT_EQ(widths, (std::vector<int>{8}));
  EXPECT_FALSE(ctl.quantize_rule_active(0));
  const frugal::compression_record& rec = ctl.history().compressions.at(0);
  EXPECT_EQ(rec.step_index, 10u);
  EXPECT_EQ(rec.bits, 8);
  EXPECT_DOUBLE_EQ(rec.effects.at(0).before, 1e9);
  EXPECT_DOUBLE_EQ(rec.effects.at(0).after.value_or(-1), 1e9);
  EXPECT_EQ(rec.lowered, false);
  EXPECT_EQ(run.used(frugal::resource::flops), 50e9);  // the FLOP limit itself is still exact
}

TEST(ControllerRules, QuantizeChoosesByTheCostTheLoopExpects) {
  // The loop says what its quantized step costs (a frozen int8 layer, say: 0.6 of a float step
  // at 8 bits, 0.9 at 16), not bits / 32. 30 % short: 16 bits is expected to remove 10 %, so 8.
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(73000)};
  std::vector<int> widths;
  double cost = 1000;
  frugal::controller ctl{
      run, frugal::controller_options{}.planned_steps(100).margin(0).quantize(
               frugal::quantize_rule{}.watch(frugal::resource::flops).expected_cost(16, 0.9).expected_cost(8, 0.6).action(
                   [&](int b) {
                     widths.push_back(b);
                     cost = b == 8 ? 600 : 900;
                   }))};
  while (ctl.steps() < 100 && !ctl.should_stop()) {
    run_step(run, clock, 10ms, static_cast<std::uint64_t>(cost));
    (void)ctl.end_step();
  }
  // At step 10: 90 steps (90000) against 63000 left, 30 % short. By bits / 32, 16 bits (50 %).
  EXPECT_EQ(widths, (std::vector<int>{8}));
  const frugal::compression_record& rec = ctl.history().compressions.at(0);
  EXPECT_EQ(rec.step_index, 10u);
  EXPECT_TRUE(rec.lowered.value_or(false));
  EXPECT_EQ(ctl.steps(), 100u);  // 10000 + 90 * 600 = 64000: the plan fits
  EXPECT_LE(run.used(frugal::resource::flops), 73000);
}

TEST(ControllerRules, AWidthExpectedToSaveNothingIsNeverChosen) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(50000)};
  int fired = 0;
  frugal::controller ctl{run, frugal::controller_options{}.planned_steps(100).quantize(
                                  frugal::quantize_rule{}.watch(frugal::resource::flops).widths({8}).expected_cost(8, 1).action(
                                      [&](int) { ++fired; }))};
  while (ctl.steps() < 100 && !ctl.should_stop()) {
    run_step(run, clock, 10ms, 1000);
    (void)ctl.end_step();
  }
  EXPECT_EQ(fired, 0);  // the run stops at its limit instead, as without the rule
  EXPECT_TRUE(ctl.history().compressions.empty());
  EXPECT_LE(run.used(frugal::resource::flops), 50000);
}

TEST(ControllerRules, ExpectedCostRejectsBadInput) {
  EXPECT_EQ(error_of([&] { frugal::quantize_rule{}.expected_cost(0, 0.5); }),
            "frugal::quantize_rule: expected_cost: bits must be in [1, 64], got 0");
  EXPECT_EQ(error_of([&] { frugal::quantize_rule{}.expected_cost(8, 0); }),
            "frugal::quantize_rule: expected_cost: fraction must be in (0, 1], got 0");
  EXPECT_EQ(error_of([&] { frugal::quantize_rule{}.expected_cost(8, 1.5); }),
            "frugal::quantize_rule: expected_cost: fraction must be in (0, 1], got 1.5");
  EXPECT_DOUBLE_EQ(frugal::quantize_rule{}.expected_cost(8), 0.25);  // unstated: bits / 32
  EXPECT_DOUBLE_EQ(frugal::quantize_rule{}.expected_cost(8, 0.6).expected_cost(8), 0.6);
}

TEST(ControllerRules, OneCompressionAtATimeUntilItsEffectIsMeasured) {
  // A prune and a quantize rule on the same shortfall. Both fired at step 10, each removing the
  // whole shortfall (the plan needed 0.5 of the cost, it got 0.5 * 0.6 = 0.3). Now the quantize rule
  // waits for the pruning's measured effect, which covers the plan, and never fires.
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(55000)};
  double cost = 1000;
  std::vector<std::string> actions;
  frugal::controller ctl{
      run, frugal::controller_options{}
               .planned_steps(100)
               .margin(0)
               .prune(frugal::prune_rule{}.watch(frugal::resource::flops).max_fraction(0.9).action([&](double f) {
                 actions.push_back("prune");
                 cost *= 1 - f;
               }))
               .quantize(frugal::quantize_rule{}.watch(frugal::resource::flops).widths({8}).expected_cost(8, 0.6).action(
                   [&](int) {
                     actions.push_back("quantize");
                     cost *= 0.6;
                   }))};
  while (ctl.steps() < 100 && !ctl.should_stop()) {
    run_step(run, clock, 10ms, static_cast<std::uint64_t>(std::llround(cost)));
    const frugal::decision d = ctl.end_step();
    EXPECT_FALSE(d.has(frugal::action::prune) && d.has(frugal::action::quantize)) << "step " << ctl.steps();
  }
  // At step 10: 90000 needed, 45000 left: prune half, and 90 steps of 500 fit exactly.
  EXPECT_EQ(actions, (std::vector<std::string>{"prune"}));
  EXPECT_EQ(ctl.steps(), 100u);
  EXPECT_LE(run.used(frugal::resource::flops), 55000);
}

TEST(ControllerRules, ADeferredQuantizeFiresWhenItsSavingIsJustEnough) {
  // 100 steps of 1000 FLOPs planned under 80000; 8 bits expected to halve a step. At step k the
  // plan is 20 / (100 - k) short: at once (step 10) without defer(), and with it only when that
  // reaches 0.5 - 0.02 (min_shortfall): step 59, after which 41 steps of 500 fit 21000 left.
  for (const bool deferred : {false, true}) {
    frugal::manual_clock clock;
    frugal::budget run{"train", frugal::limits{}.flops(80000)};
    double cost = 1000;
    frugal::controller ctl{run, frugal::controller_options{}.planned_steps(100).margin(0).quantize(
                                    frugal::quantize_rule{}
                                        .watch(frugal::resource::flops)
                                        .widths({8})
                                        .expected_cost(8, 0.5)
                                        .defer(deferred)
                                        .action([&](int) { cost = 500; }))};
    while (ctl.steps() < 100 && !ctl.should_stop()) {
      run_step(run, clock, 10ms, static_cast<std::uint64_t>(cost));
      (void)ctl.end_step();
    }
    ASSERT_EQ(ctl.history().compressions.size(), 1u) << deferred;
    EXPECT_EQ(ctl.history().compressions[0].step_index, deferred ? 59u : 10u);
    EXPECT_EQ(ctl.steps(), 100u) << deferred;
    EXPECT_EQ(run.used(frugal::resource::flops), deferred ? 59000 + 41 * 500 : 10000 + 90 * 500);
  }
}

TEST(ControllerRules, AnExpectedCostAskedAtEachDecisionFollowsTheModel) {
  // The plan of ADeferredQuantizeFiresWhenItsSavingIsJustEnough, and at step 40 the model
  // changes (a pruning made the frozen layer a smaller share): 8 bits now saves 30 %, not 50 %.
  // Asked at the decision, the rule sees at step 41 that 20 / 59 = 33.9 % short is past what it
  // can save, and fires at once. A fraction stated when the controller was built still promises
  // 50 %, and the rule waits until step 59, 18 steps of saving later.
  for (const bool asked : {false, true}) {
    frugal::manual_clock clock;
    frugal::budget run{"train", frugal::limits{}.flops(80000)};
    double cost = 1000;
    double fraction = 0.5;  // what a quantized step costs, for the model as it is
    std::vector<int> asked_for;
    frugal::quantize_rule rule;
    rule.watch(frugal::resource::flops).widths({8}).defer().action([&](int) { cost = 1000 * fraction; });
    if (asked)
      rule.expected_cost([&](int bits) {
        asked_for.push_back(bits);
        return fraction;
      });
    else
      rule.expected_cost(8, fraction);
    frugal::controller ctl{run, frugal::controller_options{}.planned_steps(100).margin(0).quantize(rule)};
    while (ctl.steps() < 100 && !ctl.should_stop()) {
      if (ctl.steps() == 40) fraction = 0.7;
      run_step(run, clock, 10ms, static_cast<std::uint64_t>(cost));
      (void)ctl.end_step();
    }
    ASSERT_EQ(ctl.history().compressions.size(), 1u) << asked;
    EXPECT_EQ(ctl.history().compressions[0].step_index, asked ? 41u : 59u);
    EXPECT_LE(run.used(frugal::resource::flops), 80000);
    if (asked) {
      ASSERT_FALSE(asked_for.empty());
      EXPECT_EQ(asked_for.front(), 8);  // never for from_bits (32), which costs 1
      EXPECT_EQ(std::count(asked_for.begin(), asked_for.end(), 32), 0);
    }
  }
}

TEST(ControllerRules, AnExpectedCostFunctionThatAnswersOutsideItsRangeIsAnError) {
  EXPECT_EQ(error_of([&] { frugal::quantize_rule{}.expected_cost(std::function<double(int)>{}); }),
            "frugal::quantize_rule: expected_cost: the function must not be empty");
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(50000)};
  frugal::controller ctl{run, frugal::controller_options{}.planned_steps(100).quantize(
                                  frugal::quantize_rule{}.name("freeze").watch(frugal::resource::flops).widths({8}).expected_cost(
                                      [](int) { return 1.5; }))};
  std::string error;
  while (ctl.steps() < 20 && error.empty()) {
    run_step(run, clock, 10ms, 1000);
    try {
      (void)ctl.end_step();
    } catch (const std::invalid_argument& e) {
      error = e.what();
    }
  }
  // At the first decision the rule makes: step 10, after its warm-up, 50 % short.
  EXPECT_EQ(ctl.steps(), 10u);
  EXPECT_EQ(error, "frugal::quantize_rule 'freeze': expected_cost(8) answered 1.5; it must be in (0, 1]");
}

TEST(ControllerRules, ADeferredQuantizeThatCannotCoverFiresAtOnce) {
  // 55.6 % short at step 10, more than the 50 % 8 bits saves: waiting would only make it worse.
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(50000)};
  frugal::controller ctl{run, frugal::controller_options{}.planned_steps(100).quantize(
                                  frugal::quantize_rule{}.watch(frugal::resource::flops).widths({8}).expected_cost(8, 0.5).defer())};
  while (ctl.steps() < 12 && !ctl.should_stop()) {
    run_step(run, clock, 10ms, 1000);
    (void)ctl.end_step();
  }
  ASSERT_EQ(ctl.history().compressions.size(), 1u);
  EXPECT_EQ(ctl.history().compressions[0].step_index, 10u);
}

TEST(ControllerRules, AnActionThatSavesTrainingWorkAloneLeavesTheEpochEndsAsTheyWere) {
  // Epochs of 20 steps (1000 FLOPs and 1 s each) and an evaluation of 2000 FLOPs and 2 s that a
  // frozen layer does not make cheaper; the action halves a step. Once the effect is measured
  // the steps before it are scaled, the epoch ends not -- neither the FLOPs nor the time, which
  // is kept relative to the steps' rate (a full window of steps came before the evaluation).
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(50000).wall(1000s)};
  double scale = 1.0;
  frugal::controller ctl{
      run, frugal::controller_options{}.epoch_samples(200).planned_epochs(3).margin(0).quantize(
               frugal::quantize_rule{}
                   .watch(frugal::resource::flops)
                   .watch(frugal::resource::wall)
                   .widths({8})
                   .expected_cost(8, 0.5)
                   .cooldown_steps(3)
                   .warmup_steps(22)
                   .scales_epoch_ends(false)
                   .action([&](int) { scale = 0.5; }))};
  const auto step = [&] {
    run_step(run, clock, std::chrono::nanoseconds(std::llround(1e9 * scale)),
             static_cast<std::uint64_t>(std::llround(1000 * scale)), 10);
    (void)ctl.end_step(frugal::step{}.samples(10));
  };
  for (int i = 0; i < 20; ++i) step();
  run_step(run, clock, 2s, 2000);
  (void)ctl.end_epoch();
  const double wall_end = *ctl.forecast_epoch_end(frugal::resource::wall);
  EXPECT_NEAR(wall_end, 2, 1e-9);
  // At step 22: 38 steps and 2 evaluations (42000) against 26000 left, 38 % short.
  while (ctl.steps() < 40 && !ctl.should_stop()) {
    step();
    if (!ctl.history().compressions.empty() && ctl.history().compressions[0].effects.at(0).after) break;
  }
  ASSERT_EQ(ctl.history().compressions.size(), 1u);
  EXPECT_EQ(ctl.history().compressions[0].step_index, 22u);
  ASSERT_TRUE(ctl.history().compressions[0].lowered.value_or(false));
  EXPECT_DOUBLE_EQ(*ctl.forecast_step(frugal::resource::flops), 500);        // the steps before it: scaled
  EXPECT_NEAR(*ctl.forecast_step(frugal::resource::wall), 0.5, 1e-9);
  EXPECT_DOUBLE_EQ(*ctl.forecast_epoch_end(frugal::resource::flops), 2000);  // the evaluation: not
  EXPECT_NEAR(*ctl.forecast_epoch_end(frugal::resource::wall), wall_end, 1e-9);
  while (ctl.steps() < 60 && !ctl.should_stop()) {
    step();
    if (ctl.steps() % 20 == 0) {
      run_step(run, clock, 2s, 2000);
      (void)ctl.end_epoch();
    }
  }
  EXPECT_EQ(ctl.epochs(), 3u);  // 24000 + 38 * 500 + 2 * 2000 = 47000
  EXPECT_LE(run.used(frugal::resource::flops), 50000);
}

namespace {
// Epochs of 20 steps of 1000 FLOPs and an evaluation of `evaluation` FLOPs, three planned; a
// deferred quantize rule whose action halves a step and leaves the evaluations as they were.
// Returns the step it fired at (0: never).
std::uint64_t run_freezing_plan(frugal::budget& run, frugal::controller& ctl, double& scale, std::uint64_t evaluation) {
  frugal::manual_clock clock;
  std::uint64_t fired = 0;
  while (ctl.steps() < 60 && !ctl.should_stop()) {
    run_step(run, clock, 10ms, static_cast<std::uint64_t>(std::llround(1000 * scale)), 10);
    const frugal::decision d = ctl.end_step(frugal::step{}.samples(10));
    if (d.has(frugal::action::quantize)) fired = ctl.steps();
    if (ctl.steps() % 20 == 0 && !d.stops()) {
      run_step(run, clock, 10ms, evaluation);
      (void)ctl.end_epoch();
    }
  }
  return fired;
}
frugal::controller_options freezing_plan(double& scale) {
  return frugal::controller_options{}.epoch_samples(200).planned_epochs(3).margin(0).quantize(
      frugal::quantize_rule{}
          .watch(frugal::resource::flops)
          .widths({8})
          .expected_cost(8, 0.5)
          .defer()
          .scales_epoch_ends(false)
          .action([&scale](int) { scale = 0.5; }));
}
}  // namespace

TEST(ControllerRules, ADeferredRuleCountsOnlyWhatItsActionLowers) {
  // Under 75000 FLOPs: after the first epoch (30000), 40 steps and 2 evaluations are left. Halving
  // the steps saves 20000 of the 60000 planned, not half of it: the rule fires when the shortfall
  // nears that share (step 28: 32 steps and 2 evaluations, 52000, against 37000 left), and the
  // plan then fits, 28000 + 10000 + 16000 + 20000 = 74000. Counting on half the plan, it waited
  // until the second epoch and the third did not fit.
  frugal::budget run{"train", frugal::limits{}.flops(75000)};
  double scale = 1;
  frugal::controller ctl{run, freezing_plan(scale)};
  EXPECT_EQ(run_freezing_plan(run, ctl, scale, 10000), 28u);
  EXPECT_EQ(ctl.epochs(), 3u);
  EXPECT_EQ(run.used(frugal::resource::flops), 74000);
}

TEST(ControllerRules, ADeferredRuleWaitsForTheFirstEpochEnd) {
  // Evaluations of 2000 FLOPs, under 40000: the steps alone look 48 % short at step 19 (21000
  // left for 41 steps), just enough for a rule that halves them -- but the plan's evaluations
  // are not in that forecast yet. Measured at step 20, they make it 60 % short at step 21, past
  // the 45 % that halving the steps saves of it: it fires then, at once.
  frugal::budget run{"train", frugal::limits{}.flops(40000)};
  double scale = 1;
  frugal::controller ctl{run, freezing_plan(scale)};
  EXPECT_EQ(run_freezing_plan(run, ctl, scale, 2000), 21u);
  EXPECT_LE(run.used(frugal::resource::flops), 40000);
}

TEST(ControllerRules, AWarmUpOutlierDrivesNoPrune) {
  // The issue's input: wall(100s), planned_steps(100), a default prune_rule, step 1 = 5 s then
  // 0.9 s steps: the plan needs 94.1 s and fits. Today: a 50 % prune at step 1, another at 17.
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(100s)};
  int prunes = 0;
  frugal::controller ctl{run, frugal::controller_options{}.planned_steps(100).prune(frugal::prune_rule{})};
  int steps = 0;
  while (!ctl.should_stop() && steps < 100) {
    run_step(run, clock, steps == 0 ? 5000ms : 900ms);
    ++steps;
    prunes += ctl.end_step().has(frugal::action::prune) ? 1 : 0;
  }
  EXPECT_EQ(prunes, 0);
  EXPECT_EQ(steps, 100);
  EXPECT_NEAR(run.used(frugal::resource::wall), 94.1, 1e-9);
  EXPECT_NEAR(*ctl.forecast_step(frugal::resource::wall), 0.9, 1e-9);  // the outlier no longer counts
}

TEST(ControllerRules, ARuleWaitsForTheWarmUpThenFires) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(50s)};
  std::vector<std::uint64_t> fired_at;
  frugal::controller ctl{run, frugal::controller_options{}.planned_steps(100).prune(frugal::prune_rule{}.warmup_steps(4))};
  for (int i = 0; i < 6; ++i) {
    run_step(run, clock, 1s);
    if (ctl.end_step().has(frugal::action::prune)) fired_at.push_back(ctl.steps());
  }
  EXPECT_EQ(fired_at, (std::vector<std::uint64_t>{4}));
}

TEST(ControllerRules, AVetoedPruneDoesNotRunTheAction) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(50s)};
  int actions = 0;
  frugal::controller ctl{run, frugal::controller_options{}.planned_steps(100).prune(
                                  frugal::prune_rule{}.action([&](double) { ++actions; }))};
  ctl.add_callback("no pruning", [](frugal::decision_event& e) { e.decision.veto(frugal::action::prune); });
  run_step(run, clock, 1s);
  const frugal::decision d = ctl.end_step();
  EXPECT_FALSE(d.has(frugal::action::prune));
  EXPECT_EQ(actions, 0);
}

TEST(ControllerRules, PlanFromEpochsIsLearntFromTheFirstEpoch) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(30s)};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(10).planned_epochs(5).prune(frugal::prune_rule{})};
  int prunes = 0;
  for (int e = 0; e < 2 && !ctl.should_stop(); ++e) {
    for (int i = 0; i < 4; ++i) {
      run_step(run, clock, 1s);
      prunes += ctl.end_step(frugal::step{}.samples(10)).has(frugal::action::prune) ? 1 : 0;
    }
    run_step(run, clock, 1s);
    (void)ctl.end_epoch();
    if (e == 0) {
      EXPECT_EQ(prunes, 0);  // the epoch's size is unknown until it ends
    }
  }
  // After epoch 0 (5 s): 4 epochs of 4 steps + 4 evaluations = 20 s needed, 25 s left: fits.
  EXPECT_EQ(prunes, 0);
  // Now ask for more epochs than fit: 20 planned epochs, 5 s each.
  frugal::budget run2{"train2", frugal::limits{}.wall(30s)};
  frugal::controller c2{run2, frugal::controller_options{}.batch_size(10).planned_epochs(20).prune(frugal::prune_rule{}.warmup_steps(0))};
  const frugal::decision d = an_epoch_and_a_step(c2, run2, clock);
  ASSERT_TRUE(d.has(frugal::action::prune));
  // 3 steps + 18 epochs * 4 steps + 19 evaluations = 94 s needed, 24 s left.
  EXPECT_NEAR(d.prune_fraction(), 0.5, 1e-12);  // capped by max_fraction
  EXPECT_EQ(d.reason(), "prune 50.0 %: wall: planned work left forecast 1m 34s, 24.0 s left (74.5 % short) [prune]");
}

// ---------------------------------------------------------------------------------------------
// Events and callbacks.

TEST(ControllerEvents, ThresholdsFireOncePerResourceAndThresholdInOrder) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(10s).flops(100)};
  frugal::controller ctl{run, frugal::controller_options{}.thresholds({0.5, 0.8}).thresholds(frugal::resource::flops, {0.9})};
  std::vector<std::string> log;
  ctl.add_callback("log", [&](const auto& e) {
    using E = std::decay_t<decltype(e)>;
    if constexpr (std::is_same_v<E, frugal::approaching_event>)
      log.push_back(std::string(e.resource) + " " + std::to_string(static_cast<int>(e.threshold * 100)));
    if constexpr (std::is_same_v<E, frugal::exhausted_event>) log.push_back(std::string(e.resource) + " exhausted");
  });
  run_step(run, clock, 6s, 10);  // wall jumps over 50 %
  (void)ctl.end_step();
  run_step(run, clock, 1s, 10);
  (void)ctl.end_step();  // nothing new
  run_step(run, clock, 1s, 75);  // wall 80 %, flops 95 %
  (void)ctl.end_step();
  run_step(run, clock, 2s, 5);  // both reach their limits
  (void)ctl.end_step();
  (void)ctl.end_step();  // nothing fires twice
  EXPECT_EQ(log, (std::vector<std::string>{"wall 50", "wall 80", "flops 90", "wall exhausted", "flops exhausted"}));
}

struct recorder {
  std::string name;
  std::vector<std::string>* log;
  void operator()(const frugal::step_end_event&) { log->push_back(name + ":step_end"); }
  void operator()(const frugal::epoch_end_event&) { log->push_back(name + ":epoch_end"); }
  void operator()(const frugal::approaching_event&) { log->push_back(name + ":approaching"); }
  void operator()(const frugal::exhausted_event&) { log->push_back(name + ":exhausted"); }
  void operator()(const frugal::forecast_overrun_event&) { log->push_back(name + ":forecast_overrun"); }
  void operator()(frugal::decision_event& e) {
    log->push_back(name + ":decision:" + std::string(frugal::to_string(e.decision.primary())));
  }
};

TEST(ControllerEvents, EveryCallbackSeesEveryEventInRegistrationOrder) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(10)};
  frugal::controller ctl{run, frugal::controller_options{}.thresholds({0.5})};
  std::vector<std::string> log;
  ctl.add_callback("a", recorder{"a", &log});
  // b stops the run at every decision: c must still see everything, the stop included.
  ctl.add_callback("b", [&](frugal::decision_event& e) {
    log.push_back("b:decision");
    e.decision.stop("b says so");
  });
  ctl.add_callback("c", recorder{"c", &log});
  run_step(run, clock, 1s, 6);
  const frugal::decision d = ctl.end_step();
  EXPECT_EQ(log, (std::vector<std::string>{"a:step_end", "c:step_end", "a:approaching", "c:approaching",
                                           "a:forecast_overrun", "c:forecast_overrun", "a:decision:stop",
                                           "b:decision", "c:decision:stop"}));
  EXPECT_EQ(d.cause(), frugal::stop_reason::forecast);  // the first stop's cause stays
  log.clear();
  (void)ctl.end_epoch();
  EXPECT_EQ(log, (std::vector<std::string>{"a:epoch_end", "c:epoch_end", "a:decision:stop", "b:decision",
                                           "c:decision:stop"}));
}

TEST(ControllerEvents, AThrowingCallbackIsRecordedAndTheOthersAndTheStateAreUnharmed) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(100)};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(8)};
  std::vector<std::string> log;
  ctl.add_callback("first", [&](const frugal::step_end_event&) { log.push_back("first"); });
  ctl.add_callback("thrower", [&](const auto& e) {
    if constexpr (std::is_same_v<std::decay_t<decltype(e)>, frugal::decision_event>) {
      e.decision.stop("half an amendment");  // then throws: the amendment must not stick
      e.decision.batch_size(2);
      throw std::runtime_error("broken in decision");
    }
    throw 42;  // not even a std::exception
  });
  ctl.add_callback("last", [&](const frugal::step_end_event&) { log.push_back("last"); });
  run_step(run, clock, 1s, 10);
  const frugal::decision d = ctl.end_step();
  EXPECT_TRUE(d.is_continue());
  EXPECT_FALSE(ctl.should_stop());
  EXPECT_EQ(ctl.batch_size(), 8u);
  EXPECT_EQ(ctl.steps(), 1u);
  EXPECT_EQ(log, (std::vector<std::string>{"first", "last"}));
  ASSERT_EQ(ctl.callback_errors().size(), 2u);
  EXPECT_EQ(ctl.callback_errors()[0].callback, "thrower");
  EXPECT_EQ(ctl.callback_errors()[0].event, frugal::event_kind::step_end);
  EXPECT_EQ(ctl.callback_errors()[0].what, "unknown exception");
  EXPECT_EQ(ctl.callback_errors()[1].event, frugal::event_kind::decision);
  EXPECT_EQ(ctl.callback_errors()[1].what, "broken in decision");
  EXPECT_EQ(ctl.callback_errors()[1].step_index, 1u);
  // The models saw the step: 10 FLOPs forecast next.
  EXPECT_EQ(*ctl.forecast_step(frugal::resource::flops), 10.0);
}

TEST(ControllerEvents, ACallbackCanVetoAStop) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(10)};
  frugal::controller ctl{run};
  bool allow = false;
  ctl.add_callback("keep going", [&](frugal::decision_event& e) {
    if (!allow && e.decision.stops()) e.decision.veto();
  });
  run_step(run, clock, 1s, 6);
  const frugal::decision d = ctl.end_step();  // the forecast says the next 6 would not fit
  EXPECT_TRUE(d.is_continue());
  EXPECT_EQ(d.reason(), "stop (forecast): flops: 6 used of 10, next step forecast 6; amended by 'keep going'");
  EXPECT_FALSE(ctl.should_stop());
  run_step(run, clock, 1s, 6);
  allow = true;
  const frugal::decision e = ctl.end_step();
  EXPECT_TRUE(e.stops());
  EXPECT_EQ(e.cause(), frugal::stop_reason::budget_exhausted);
}

TEST(ControllerEvents, ACallbackCanAmendTheBatchWithinBoundsOnly) {
  frugal::budget run{"train"};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(32).batch_limits(8, 32)};
  std::size_t next = 16;
  ctl.add_callback("resize", [&](frugal::decision_event& e) { e.decision.batch_size(next); });
  const frugal::decision d = ctl.end_step(frugal::step{}.samples(32));
  EXPECT_TRUE(d.has(frugal::action::shrink_batch));
  EXPECT_EQ(ctl.batch_size(), 16u);
  EXPECT_EQ(ctl.accumulation_steps(), 2u);
  next = 4;  // below the minimum: rejected
  const frugal::decision e = ctl.end_step(frugal::step{}.samples(16));
  EXPECT_TRUE(e.is_continue());
  EXPECT_EQ(ctl.batch_size(), 16u);
  ASSERT_EQ(ctl.callback_errors().size(), 1u);
  EXPECT_EQ(ctl.callback_errors()[0].what, "batch size 4 is outside [8, 32]");
  next = 0;  // the decision itself refuses it
  (void)ctl.end_step(frugal::step{}.samples(16));
  ASSERT_EQ(ctl.callback_errors().size(), 2u);
  EXPECT_EQ(ctl.callback_errors()[1].what, "frugal::decision::batch_size: must be > 0, got 0");
}

TEST(ControllerEvents, ACancellationCannotBeVetoed) {
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  std::atomic<bool> flag{true};
  ctl.cancel_on(flag);
  ctl.add_callback("veto", [](frugal::decision_event& e) { e.decision.veto(); });
  const frugal::decision d = ctl.end_step();
  EXPECT_TRUE(d.has(frugal::action::cancelled));
  EXPECT_TRUE(ctl.should_stop());
  EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::deadline);
}

TEST(ControllerEvents, ACallbackCallingACheckpointIsAnError) {
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  ctl.add_callback("reentrant", [&](const frugal::step_end_event&) { (void)ctl.end_step(); });
  (void)ctl.end_step();
  EXPECT_EQ(ctl.steps(), 1u);
  ASSERT_EQ(ctl.callback_errors().size(), 1u);
  EXPECT_NE(ctl.callback_errors()[0].what.find("called from inside a checkpoint"), std::string::npos);
}

// Callbacks are checked at compile time: a hook is an operator() overload chosen by its event
// type, so a misspelled event type does not compile, and these are rejected by add_callback
// (tests/compile_fail/ proves the static_asserts fire).
struct named_hooks_only {  // ensmallen style: silently ignored there, an error here
  void on_approaching(const frugal::approaching_event&) {}
};
struct mutable_observer {
  void operator()(frugal::approaching_event&) {}
};
struct returns_bool {
  bool operator()(const frugal::exhausted_event&) { return true; }
};
struct good_struct {
  void operator()(const frugal::exhausted_event&) {}
  void operator()(frugal::decision_event&) {}
};
static_assert(!frugal::is_callback_v<named_hooks_only>);
static_assert(!frugal::is_callback_v<mutable_observer>);
static_assert(!frugal::is_callback_v<returns_bool>);
static_assert(frugal::is_callback_v<good_struct>);
static_assert(frugal::is_callback_v<recorder>);

TEST(ControllerEvents, CallbacksCanBeRemovedAndNamesAreUnique) {
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  int calls = 0;
  ctl.add_callback("x", [&](const frugal::step_end_event&) { ++calls; });
  EXPECT_EQ(error_of([&] { ctl.add_callback("x", good_struct{}); }),
            "frugal::callback_list::add: a callback named 'x' is already registered");
  EXPECT_EQ(error_of([&] { ctl.add_callback("", good_struct{}); }),
            "frugal::callback_list::add: name must not be empty, got ''");
  (void)ctl.end_step();
  EXPECT_TRUE(ctl.remove_callback("x"));
  EXPECT_FALSE(ctl.remove_callback("x"));
  (void)ctl.end_step();
  EXPECT_EQ(calls, 1);
}

// ---------------------------------------------------------------------------------------------
// Reading the budget, summaries, bad input.

TEST(Controller, SeveralAdditiveLimitsAreReadInOnePass) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(1000).units("samples", 100).units("tokens", 1e6)};
  frugal::controller ctl{run};
  EXPECT_EQ(ctl.tracked_resources(), (std::vector<std::string>{"wall", "flops", "peak_bytes", "samples", "tokens"}));
  {
    frugal::scope s{run, "step"};
    clock.advance(1s);
    frugal::add_flops(100);
    frugal::add_units("samples", 10);
    frugal::add_units("tokens", 500);
  }
  (void)ctl.end_step();
  EXPECT_EQ(*ctl.forecast_step(frugal::resource::flops), 100);
  EXPECT_EQ(*ctl.forecast_step("samples"), 10);
  EXPECT_EQ(*ctl.forecast_step("tokens"), 500);
  EXPECT_EQ(*ctl.forecast_step(frugal::resource::wall), 1.0);
  EXPECT_FALSE(ctl.forecast_step(frugal::resource::cpu).has_value());  // not limited: not tracked
  EXPECT_DOUBLE_EQ(ctl.fraction_used(), 0.1);
}

TEST(Controller, ReloadLimitsPicksUpNewLimitsAndKeepsTheModels) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(100s)};
  frugal::controller ctl{run};
  run_step(run, clock, 1s, 50);
  (void)ctl.end_step();
  run.set_limits(frugal::limits{}.wall(100s).flops(120));
  ctl.reload_limits();
  EXPECT_EQ(*ctl.forecast_step(frugal::resource::wall), 1.0);
  run_step(run, clock, 1s, 50);
  const frugal::decision d = ctl.end_step();  // 100 used, the next 50 would not fit
  EXPECT_EQ(d.cause(), frugal::stop_reason::forecast);
}

TEST(Controller, SummaryNamesTheStopAndTheForecasts) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(3s)};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(4)};
  while (!ctl.should_stop()) {
    run_step(run, clock, 1s);
    (void)ctl.end_step(frugal::step{}.samples(4));
  }
  std::ostringstream out;
  ctl.print_summary(out);
  const std::string s = out.str();
  EXPECT_NE(s.find("controller of budget train: 3 steps, 0 epochs, batch 4 x 1 accumulation (0 changes)"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("stop: budget_exhausted: stop (budget_exhausted): wall: 3.00 s used of 3.00 s"), std::string::npos)
      << s;
  EXPECT_NE(s.find("step forecast"), std::string::npos) << s;
}

TEST(Controller, BadInputIsRejectedWithFieldAndValueAndChangesNothing) {
  frugal::controller_options o;
  EXPECT_EQ(error_of([&] { o.margin(-1); }), "frugal::controller_options: margin must be finite and >= 0, got -1");
  EXPECT_EQ(error_of([&] { o.margin(std::nan("")); }), "frugal::controller_options: margin must be finite and >= 0, got nan");
  EXPECT_EQ(error_of([&] { o.batch_size(0); }), "frugal::controller_options: batch_size must be > 0, got 0");
  EXPECT_EQ(error_of([&] { o.batch_limits(0, 4); }), "frugal::controller_options: batch_limits min must be > 0, got 0");
  EXPECT_EQ(error_of([&] { o.batch_limits(8, 4); }), "frugal::controller_options: batch_limits max must be >= min (8), got 4");
  EXPECT_EQ(error_of([&] { o.shrink_factor(1); }), "frugal::controller_options: shrink_factor must be in (0, 1), got 1");
  EXPECT_EQ(error_of([&] { o.thresholds({0.5, 1.2}); }),
            "frugal::controller_options: thresholds must be fractions in (0, 1), got 1.2");
  EXPECT_EQ(error_of([&] { o.max_step_time(-1s); }),
            "frugal::controller_options: max_step_time must be finite and > 0 s, got -1");
  EXPECT_EQ(error_of([&] { o.planned_epochs(0); }), "frugal::controller_options: planned_epochs must be > 0, got 0");
  EXPECT_EQ(error_of([&] { frugal::step{}.samples(0); }), "frugal::step: samples must be > 0, got 0");
  EXPECT_EQ(error_of([&] { frugal::step{}.peak_bytes(-1); }), "frugal::step: peak_bytes must be finite and >= 0, got -1");
  EXPECT_EQ(error_of([&] { frugal::epoch{}.metric("", 1); }), "frugal::epoch: metric name must not be empty, got ''");
  EXPECT_EQ(error_of([&] { frugal::prune_rule{}.max_fraction(0); }),
            "frugal::prune_rule: max_fraction must be in (0, 1], got 0");
  EXPECT_EQ(error_of([&] { frugal::quantize_rule{}.widths({16, 0}); }),
            "frugal::quantize_rule: widths must be in [1, 64], got 0");

  frugal::budget run{"train", frugal::limits{}.wall(10s)};
  EXPECT_EQ(error_of([&] { frugal::controller c(run, frugal::controller_options{}.batch_size(64).batch_limits(8, 32)); }),
            "frugal::controller: batch_size must be within batch_limits [8, 32], got 64");
  EXPECT_EQ(error_of([&] { frugal::controller c(run, frugal::controller_options{}.batch_limits(8, 32)); }),
            "frugal::controller: batch_limits must be given with batch_size, got no batch_size");
  EXPECT_EQ(error_of([&] { frugal::controller c(run, frugal::controller_options{}.thresholds(frugal::resource::flops, {0.5})); }),
            "frugal::controller: thresholds(flops) must be for a resource the budget 'train' limits, got 'flops'");
  EXPECT_EQ(error_of([&] { frugal::controller c(run, frugal::controller_options{}.prune(frugal::prune_rule{})); }),
            "frugal::controller: prune/quantize rules must be given a plan (planned_epochs, planned_steps or "
            "planned_samples), got no plan");
  EXPECT_EQ(error_of([&] {
              frugal::controller c(run, frugal::controller_options{}.planned_steps(10).prune(
                                            frugal::prune_rule{}.watch(frugal::resource::flops)));
            }),
            "frugal::controller: prune watch must be a resource the budget 'train' limits, got 'flops'");
  frugal::controller ok{run};
  std::atomic<bool> flag{false};
  EXPECT_EQ(error_of([&] { ok.cancel_on(flag, frugal::stop_reason::none); }),
            "frugal::controller: cancel_on must be a reason other than none, got none");
  EXPECT_FALSE(ok.should_stop());
}

TEST(Decision, ActionsCombineAndVetoesDropThem) {
  frugal::decision d;
  EXPECT_TRUE(d.is_continue());
  EXPECT_EQ(d.primary(), frugal::action::continue_run);
  d.end_epoch("eval must fit").prune(0.25, "short");
  EXPECT_TRUE(d.has(frugal::action::end_epoch));
  EXPECT_TRUE(d.has(frugal::action::prune));
  EXPECT_TRUE(d.ends_epoch());
  EXPECT_FALSE(d.stops());
  EXPECT_EQ(d.primary(), frugal::action::end_epoch);
  EXPECT_EQ(d.reason(), "end epoch: eval must fit; prune 25.0 %: short");
  d.veto(frugal::action::end_epoch);
  EXPECT_EQ(d.primary(), frugal::action::prune);
  d.stop("enough");
  EXPECT_EQ(d.cause(), frugal::stop_reason::user);
  EXPECT_EQ(d.primary(), frugal::action::stop);
  d.veto();
  EXPECT_TRUE(d.is_continue());
  EXPECT_EQ(d.prune_fraction(), 0);
  EXPECT_EQ(error_of([&] { d.prune(1.5, "x"); }), "frugal::decision::prune: fraction must be in (0, 1], got 1.5");
  EXPECT_EQ(error_of([&] { d.quantize(0, "x"); }), "frugal::decision::quantize: bits must be in [1, 64], got 0");
  EXPECT_EQ(error_of([&] { d.batch_size(8); }),
            "frugal::decision::batch_size: the controller does not manage the batch size");
  EXPECT_EQ(frugal::to_string(frugal::stop_reason::budget_exhausted), "budget_exhausted");
  EXPECT_EQ(frugal::to_string(frugal::action::shrink_batch), "shrink_batch");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Decisions a user can trust (issue 10): one test per fault kind, with the issue's inputs.

TEST(ControllerTrust, ALevelIsNotSpendingAndItsCrossingIsItsOwnEvent) {
  // peak_bytes is a height: a step over it is a crossing the batch knob answers, not budget
  // spent. fraction_used() follows the consumables alone.
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(1h).peak_bytes(64 * MiB)};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(64).batch_limits(8, 64)};
  std::vector<std::string> log;
  ctl.add_callback("log", [&](const auto& e) {
    using E = std::decay_t<decltype(e)>;
    if constexpr (std::is_same_v<E, frugal::level_crossed_event>) log.push_back("crossed " + std::string(e.resource));
    if constexpr (std::is_same_v<E, frugal::exhausted_event>) log.push_back("exhausted " + std::string(e.resource));
  });
  run_step(run, clock, 1s);
  frugal::decision d = ctl.end_step(frugal::step{}.samples(64).peak_bytes(56 * MiB));
  EXPECT_TRUE(d.is_continue()) << d.reason();
  EXPECT_NEAR(ctl.fraction_used(), 1.0 / 3600, 1e-12);
  run_step(run, clock, 1s);
  d = ctl.end_step(frugal::step{}.samples(64).peak_bytes(70 * MiB));
  EXPECT_TRUE(d.has(frugal::action::shrink_batch)) << d.reason();
  EXPECT_FALSE(d.stops());
  EXPECT_NEAR(ctl.fraction_used(), 2.0 / 3600, 1e-12);
  EXPECT_EQ(ctl.crossed_levels(), (std::vector<std::string>{"peak_bytes"}));
  EXPECT_EQ(log, (std::vector<std::string>{"crossed peak_bytes"}));
  run_step(run, clock, 1s);
  d = ctl.end_step(frugal::step{}.samples(ctl.batch_size()).peak_bytes(40 * MiB));
  EXPECT_TRUE(ctl.crossed_levels().empty());
  EXPECT_FALSE(ctl.should_stop());
}

TEST(ControllerTrust, ABudgetAlreadySpentStopsBeforeTheFirstStep) {
  frugal::manual_clock clock;
  const std::vector<frugal::limits> spent = {frugal::limits{}.units("samples", 0), frugal::limits{}.flops(0),
                                             frugal::limits{}.wall(0s)};
  for (const frugal::limits& l : spent) {
    frugal::budget run{"train", l};
    frugal::controller ctl{run};
    EXPECT_TRUE(ctl.should_stop()) << l.to_string();
    EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::budget_exhausted) << l.to_string();
    ASSERT_EQ(ctl.history().decisions.size(), 1u);
    EXPECT_EQ(ctl.history().decisions[0].at, "start");
  }
  // A wall limit used up by an earlier phase.
  frugal::budget run{"train", frugal::limits{}.wall(5s)};
  run_step(run, clock, 5s);
  frugal::controller ctl{run};
  EXPECT_TRUE(ctl.should_stop());
  EXPECT_EQ(ctl.stop_message(), "stop (budget_exhausted): wall: 5.00 s used of 5.00 s (limit reached)");
  // And one with room left is not stopped.
  frugal::budget fresh{"fresh", frugal::limits{}.wall(5s)};
  frugal::controller ok{fresh};
  EXPECT_FALSE(ok.should_stop());
}

TEST(ControllerTrust, AStopRequestFromAnOverrunHookIsNeverLost) {
  // The issue's input: flops(50e9), planned_steps(100), 1e9 FLOPs a step; the forecast_overrun
  // hook requests a stop. Today the next commit cleared it and the run went on to step 50.
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(50e9)};
  frugal::controller ctl{run, frugal::controller_options{}.planned_steps(100)};
  ctl.add_callback("stop on overrun", [&](const frugal::forecast_overrun_event& e) {
    if (e.horizon == frugal::forecast_horizon::planned_work) ctl.request_stop("the plan does not fit");
  });
  // A veto cannot drop it either.
  ctl.add_callback("veto", [](frugal::decision_event& e) { e.decision.veto(); });
  const auto [steps, d] = run_until_stop(ctl, run, clock, 10ms, 1'000'000'000);
  EXPECT_EQ(steps, 1);
  EXPECT_TRUE(d.stops());
  EXPECT_EQ(d.cause(), frugal::stop_reason::user);
  EXPECT_EQ(ctl.stop_message(), "stop (user): the plan does not fit");
  // It holds at every later checkpoint too.
  EXPECT_TRUE(ctl.end_step().stops());
  EXPECT_TRUE(ctl.end_epoch().stops());
  EXPECT_TRUE(ctl.should_stop());
}

TEST(ControllerTrust, AStopRequestFromAnotherThreadHolds) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  std::thread other([&] { ctl.request_stop("from the data loader"); });
  other.join();
  EXPECT_TRUE(ctl.should_stop());
  const frugal::decision d = ctl.end_step();
  EXPECT_TRUE(d.stops());
  EXPECT_FALSE(d.repeats_stop());
  EXPECT_TRUE(ctl.end_step().repeats_stop());
  EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::user);
}

TEST(ControllerTrust, ACallbackMayAddAndRemoveCallbacksDuringDispatch) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  int late = 0;
  ctl.add_callback("once", [&](const frugal::step_end_event&) {
    ctl.remove_callback("once");
    ctl.add_callback("late", [&](const frugal::step_end_event&) { ++late; });
  });
  for (int i = 0; i < 3; ++i) (void)ctl.end_step();
  EXPECT_EQ(late, 2);  // from the next event on
}

TEST(ControllerTrust, AStopIsOneEventWithTheReadmesLoop) {
  // The README's loop checks in at the step that stops and again at the epoch's end: a
  // checkpoint-on-stop callback must run once.
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(5)};
  frugal::controller ctl{run};
  int stops = 0, first_stop_decisions = 0, repeats = 0;
  ctl.add_callback("checkpoint on stop", [&](const frugal::stop_event& e) {
    ++stops;
    EXPECT_EQ(e.reason, frugal::stop_reason::budget_exhausted);
    EXPECT_EQ(e.where, frugal::checkpoint::step);
  });
  ctl.add_callback("decisions", [&](frugal::decision_event& e) {
    if (e.decision.stops() && !e.decision.repeats_stop()) ++first_stop_decisions;
  });
  while (!ctl.should_stop()) {
    for (int i = 0; i < 10; ++i) {
      run_step(run, clock, 1s, 1);
      const frugal::decision d = ctl.end_step();
      if (d.ends_epoch()) break;
    }
    const frugal::decision e = ctl.end_epoch();
    repeats += e.repeats_stop() ? 1 : 0;
  }
  EXPECT_EQ(stops, 1);
  EXPECT_EQ(first_stop_decisions, 1);
  EXPECT_EQ(repeats, 1);
  EXPECT_EQ(ctl.history().repeated_stops, 1u);
}

TEST(ControllerTrust, RaisingALimitLiftsTheStopItCaused) {
  // The issue's input: 10 s wall reached with 1 s steps, set_limits(wall=20s) + reload_limits():
  // about 10 more steps (today 0).
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(10s)};
  frugal::controller ctl{run};
  EXPECT_EQ(run_until_stop(ctl, run, clock, 1s).steps, 10);
  run.set_limits(frugal::limits{}.wall(20s));
  ctl.reload_limits();
  EXPECT_FALSE(ctl.should_stop());
  EXPECT_EQ(ctl.history().decisions.back().actions, "stop_lifted");
  int stop_events = 0;
  ctl.add_callback("stops", [&](const frugal::stop_event&) { ++stop_events; });
  EXPECT_EQ(run_until_stop(ctl, run, clock, 1s).steps, 10);
  EXPECT_EQ(stop_events, 1);  // the new stop is a new event
  EXPECT_DOUBLE_EQ(run.used(frugal::resource::wall), 20.0);

  // Not lifted when the new limit still does not fit a step, nor for a stop the budget did not cause.
  run.set_limits(frugal::limits{}.wall(20500ms));
  ctl.reload_limits();
  EXPECT_TRUE(ctl.should_stop());
  frugal::budget other{"other", frugal::limits{}.wall(10s)};
  frugal::controller user{other};
  user.request_stop("done");
  other.set_limits(frugal::limits{}.wall(20s));
  user.reload_limits();
  EXPECT_TRUE(user.should_stop());
}

TEST(ControllerTrust, LoweringALimitBelowWhatIsUsedStopsAtOnce) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(1h)};
  frugal::controller ctl{run};
  run_step(run, clock, 2s);
  (void)ctl.end_step();
  run.set_limits(frugal::limits{}.wall(1s));
  ctl.reload_limits();
  EXPECT_TRUE(ctl.should_stop());
  EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::budget_exhausted);
  EXPECT_EQ(ctl.history().decisions.back().at, "limits");
}

TEST(ControllerTrust, DefaultHeadroomComesFromTheMeasuredSpread) {
  // Steps alternate 1 s and 2 s: the step costs' spread is 2 / 1.5 - 1 = 1/3 (median of
  // {1, 2} is 1.5). FLOPs do not vary: no headroom, so FLOP limits stay exact.
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(1h).flops(1e12)};
  frugal::controller ctl{run};
  for (int i = 0; i < 4; ++i) {
    run_step(run, clock, i % 2 == 0 ? 1s : 2s, 1000);
    (void)ctl.end_step();
  }
  EXPECT_NEAR(*ctl.headroom(frugal::resource::wall), 1.0 / 3, 1e-12);
  EXPECT_EQ(*ctl.headroom(frugal::resource::flops), 0.0);
  // An epoch end (one observation) takes the step costs' spread as its headroom, over the
  // square root of how many steps it lasts: 3 s against the steps' median of 1.5 s is 2.
  run_step(run, clock, 3s);
  (void)ctl.end_epoch();
  EXPECT_NEAR(*ctl.epoch_end_headroom(frugal::resource::wall), 1.0 / 3 / std::sqrt(2.0), 1e-12);
  // Once the window of steps is full, the forecast (the window's largest) is the quantile.
  for (int i = 0; i < 16; ++i) {
    run_step(run, clock, i % 2 == 0 ? 1s : 2s, 1000);
    (void)ctl.end_step();
  }
  EXPECT_EQ(*ctl.headroom(frugal::resource::wall), 0.0);
  EXPECT_NEAR(*ctl.epoch_end_headroom(frugal::resource::wall), 1.0 / 3 / std::sqrt(2.0), 1e-12);
  // A fixed margin replaces it for every resource.
  frugal::budget fixed{"fixed", frugal::limits{}.wall(1h)};
  frugal::controller with_margin{fixed, frugal::controller_options{}.margin(0.25)};
  EXPECT_EQ(*with_margin.headroom(frugal::resource::wall), 0.25);
}

TEST(ControllerTrust, AnEvaluationSlowerThanBeforeStaysInsideWithMeasuredHeadroom) {
  // The issue's shape: steps jitter (0.8-1.2 s), evaluations forecast from one observation come
  // out 50 % slower. With the measured headroom the run still ends inside its limit.
  int inside = 0;
  for (unsigned seed = 1; seed <= 50; ++seed) {
    frugal::manual_clock clock;
    frugal::budget run{"train", frugal::limits{}.wall(60s)};
    frugal::controller ctl{run, frugal::controller_options{}.steps_per_epoch(10)};
    std::mt19937 rng(seed);
    std::uniform_int_distribution<std::int64_t> ns(800'000'000, 1'200'000'000);
    int epochs = 0;
    while (!ctl.should_stop() && epochs < 20) {
      for (int i = 0; i < 10; ++i) {
        run_step(run, clock, std::chrono::nanoseconds{ns(rng)});
        if (ctl.end_step().ends_epoch()) break;
      }
      run_step(run, clock, epochs == 0 ? 2000ms : 3000ms);  // the evaluation
      ++epochs;
      (void)ctl.end_epoch();
    }
    inside += run.used(frugal::resource::wall) <= 60.0 ? 1 : 0;
  }
  EXPECT_EQ(inside, 50);
}

TEST(ControllerTrust, TheBatchGrowsToWhatTheFittedModelSaysFits) {
  // The issue's input: peak = 4 KiB + 1 KiB per sample, limit 104.5 KiB (100 fits), batch 128,
  // no accumulation, grow_after(5), 200 steps: settles at 90 or more (today: stuck at 64).
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.peak_bytes(104.5 * KiB)};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(128).gradient_accumulation(false).grow_after(5)};
  double max_peak_after_first = 0;
  for (int t = 0; t < 200 && !ctl.should_stop(); ++t) {
    const std::size_t b = ctl.batch_size();
    const double peak = 4 * KiB + static_cast<double>(b) * KiB;
    if (t > 0) max_peak_after_first = std::max(max_peak_after_first, peak);
    run_step(run, clock, 10ms);
    (void)ctl.end_step(frugal::step{}.samples(b).peak_bytes(peak));
    EXPECT_EQ(ctl.accumulation_steps(), 1u);
  }
  EXPECT_GE(ctl.batch_size(), 90u);
  EXPECT_LE(ctl.batch_size(), 100u);
  EXPECT_LE(max_peak_after_first, 104.5 * KiB);
  EXPECT_FALSE(ctl.should_stop());
  EXPECT_EQ(ctl.history().batch_changes.front().to, 64u);
  EXPECT_EQ(error_of([] {
              frugal::budget b{"b"};
              frugal::controller c(b, frugal::controller_options{}.batch_size(8).gradient_accumulation(false).effective_batch(64));
            }),
            "frugal::controller: effective_batch must be left out with gradient_accumulation(false), got 64");
}

TEST(ControllerTrust, EarlyStoppingAsPeersDoIt) {
  frugal::budget run{"train"};
  frugal::controller ctl{run, frugal::controller_options{}.early_stop(
                                  frugal::early_stopping{"val_loss"}.patience(2).start_from_epoch(1).baseline(0.9))};
  std::vector<std::pair<std::uint64_t, double>> bests;
  ctl.add_callback("save best", [&](const frugal::best_metric_event& e) { bests.emplace_back(e.epoch_index, e.value); });
  std::optional<std::uint64_t> restore_from;
  ctl.add_callback("restore best", [&](const frugal::stop_event&) { restore_from = ctl.early_stoppers()[0].best_epoch(); });
  // Epoch 0 is warm-up (no best, no patience); 0.95 does not beat the baseline 0.9, 0.8 does,
  // then two without improvement stop.
  for (double v : {0.5, 0.95, 0.8, 0.85, 0.82}) {
    if (ctl.end_epoch(frugal::epoch{}.metric("val_loss", v)).stops()) break;
  }
  EXPECT_EQ(ctl.epochs(), 5u);
  EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::early_stopping);
  EXPECT_EQ(bests, (std::vector<std::pair<std::uint64_t, double>>{{1, 0.95}, {2, 0.8}}));
  EXPECT_EQ(restore_from, std::optional<std::uint64_t>{2});
  ASSERT_EQ(ctl.history().metrics.size(), 5u);
  EXPECT_EQ(ctl.history().metrics[2].metrics.at(0).second, 0.8);
}

TEST(ControllerTrust, AMisspeltEarlyStoppingMetricIsAClearErrorAtTheFirstEpoch) {
  frugal::budget run{"train"};
  frugal::controller ctl{run, frugal::controller_options{}.early_stop(frugal::early_stopping{"val_los"})};
  EXPECT_EQ(error_of([&] { (void)ctl.end_epoch(frugal::epoch{}.metric("val_loss", 0.5)); }),
            "frugal::controller::end_epoch: early_stopping watches the metric 'val_los', which the first epoch does not "
            "report (it reports: val_loss)");
  EXPECT_EQ(ctl.epochs(), 0u);  // nothing changed
  EXPECT_FALSE(ctl.end_epoch(frugal::epoch{}.metric("val_los", 0.5)).stops());
}

TEST(ControllerTrust, TheHistoryKeepsEveryDecisionButContinue) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(3).peak_bytes(6 * MiB)};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(64).batch_limits(1, 64)};
  for (int i = 0; i < 5 && !ctl.should_stop(); ++i) {
    const std::size_t b = ctl.batch_size();
    run_step(run, clock, 1s, 1);
    (void)ctl.end_step(frugal::step{}.samples(b).peak_bytes(1 * MiB + static_cast<double>(b) * 128 * KiB));
  }
  (void)ctl.end_step();  // repeats the stop
  const frugal::controller_history& h = ctl.history();
  ASSERT_EQ(h.decisions.size(), 2u);
  EXPECT_EQ(h.decisions[0].actions, "shrink_batch");
  EXPECT_EQ(h.decisions[0].step_index, 1u);
  EXPECT_EQ(h.decisions[1].actions, "stop");
  EXPECT_EQ(h.decisions[1].cause, frugal::stop_reason::budget_exhausted);
  EXPECT_EQ(h.repeated_stops, 1u);
  ASSERT_EQ(h.batch_changes.size(), 1u);
  EXPECT_EQ(h.batch_changes[0].from, 64u);
  EXPECT_EQ(h.batch_changes[0].to, 32u);
  EXPECT_EQ(h.batch_changes[0].accumulation, 2u);
}

TEST(ControllerTrust, TheReportTellsTheControllersStory) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(4).peak_bytes(6 * MiB)};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(64).batch_limits(1, 64).early_stop(
                                  frugal::early_stopping{"val_loss"}.patience(5))};
  for (int i = 0; i < 3; ++i) {
    const std::size_t b = ctl.batch_size();
    run_step(run, clock, 1s, 1);
    (void)ctl.end_step(frugal::step{}.samples(b).peak_bytes(1 * MiB + static_cast<double>(b) * 128 * KiB));
  }
  (void)ctl.end_epoch(frugal::epoch{}.metric("val_loss", 0.5).metric("val_acc", std::nan("")));
  run_step(run, clock, 1s, 1);
  (void)ctl.end_step(frugal::step{}.samples(ctl.batch_size()));
  const frugal_test::json doc = frugal_test::json_reader::parse(frugal::json_report(run, ctl));
  const frugal_test::json& c = doc["controller"];
  EXPECT_EQ(doc["budget"]["name"].str(), "train");
  EXPECT_EQ(c["steps"].num(), 4);
  EXPECT_EQ(c["stop"]["reason"].str(), "budget_exhausted");
  EXPECT_TRUE(c["stop"]["stopped"].boolean);
  EXPECT_EQ(c["batch"]["size"].num(), 32);
  EXPECT_EQ(c["batch"]["accumulation"].num(), 2);
  EXPECT_TRUE(c["margin"].is_null());
  EXPECT_EQ(c["headroom"]["flops"]["next_step"].num(), 0);
  ASSERT_EQ(c["decisions"].items.size(), 2u);
  EXPECT_EQ(c["decisions"][0]["actions"].str(), "shrink_batch");
  EXPECT_EQ(c["decisions"][1]["actions"].str(), "stop");
  EXPECT_EQ(c["decisions"][1]["at"].str(), "step");
  EXPECT_EQ(c["batch_changes"][0]["from"].num(), 64);
  EXPECT_EQ(c["batch_changes"][0]["to"].num(), 32);
  EXPECT_EQ(c["metrics"][0]["values"]["val_loss"].num(), 0.5);
  EXPECT_TRUE(c["metrics"][0]["values"]["val_acc"].is_null());  // NaN: null, the JSON stays valid
  EXPECT_EQ(c["early_stopping"][0]["best"].num(), 0.5);
  EXPECT_EQ(c["early_stopping"][0]["best_epoch"].num(), 0);
  EXPECT_EQ(c["early_stopping"][0]["wait"].num(), 0);
  EXPECT_EQ(c["crossed_levels"].items.size(), 0u);
}

TEST(ControllerTrust, AStopRequestedAfterTheLastCheckpointStillFiresItsEventAtEndRun) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  int stop_events = 0;
  ctl.add_callback("on stop", [&](const frugal::stop_event& e) {
    ++stop_events;
    EXPECT_EQ(e.reason, frugal::stop_reason::user);
  });
  run_step(run, clock, 1s);
  (void)ctl.end_step();
  std::thread other([&] { ctl.request_stop("preempted"); });  // between checkpoints
  other.join();
  EXPECT_TRUE(ctl.should_stop());  // the loop leaves here, without another checkpoint
  EXPECT_EQ(ctl.end_run(), frugal::stop_reason::user);
  EXPECT_EQ(ctl.end_run(), frugal::stop_reason::user);  // once only
  EXPECT_EQ(stop_events, 1);
  EXPECT_EQ(ctl.history().decisions.back().at, "end");
  // A run that stopped at a checkpoint, or never stopped, adds nothing.
  frugal::budget quiet{"quiet"};
  frugal::controller done{quiet};
  EXPECT_EQ(done.end_run(), frugal::stop_reason::none);
  EXPECT_TRUE(done.history().decisions.empty());
}

TEST(ControllerTrust, SamplesWithoutABatchKnobAreNotABatchChange) {
  // Found by the scenario suite: reporting samples without batch_size() threw.
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(100)};
  frugal::controller ctl{run};
  run_step(run, clock, 1s, 1);
  EXPECT_TRUE(ctl.end_step(frugal::step{}.samples(32)).is_continue());
}

TEST(ControllerTrust, AnEpochEndWhoseForecastRoseWithTheLoadStopsInsteadOfRunningPastTheLimit) {
  // An evaluation's time follows the steps' current speed: measured at 2 s when steps took 1 s,
  // it is forecast at 4 s once the steps' median is 2 s. When even the epoch's end alone no
  // longer fits, the loop must not start it: stop, not end_epoch.
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(19s)};
  frugal::controller ctl{run, frugal::controller_options{}.margin(0).steps_per_epoch(100).forecast(
                                  frugal::forecast_options{}.window(4))};
  for (int i = 0; i < 4; ++i) {
    run_step(run, clock, 1s);
    (void)ctl.end_step();
  }
  run_step(run, clock, 2s);  // the evaluation
  (void)ctl.end_epoch();
  for (int i = 0; i < 4; ++i) {  // 7 .. 10 s
    run_step(run, clock, 1s);
    EXPECT_TRUE(ctl.end_step().is_continue());
  }
  run_step(run, clock, 3s);  // 13 s: median still 1 s; 3 s + 2 s fit in 6 s
  EXPECT_TRUE(ctl.end_step().is_continue());
  EXPECT_NEAR(*ctl.forecast_epoch_end(frugal::resource::wall), 2.0, 1e-12);
  run_step(run, clock, 3s);  // 16 s: median 2 s, so the evaluation is forecast at 4 s
  const frugal::decision d = ctl.end_step();
  EXPECT_TRUE(d.stops());
  EXPECT_EQ(d.cause(), frugal::stop_reason::forecast);
  EXPECT_EQ(d.reason(), "stop (forecast): wall: 16.0 s used of 19.0 s; the epoch's end (4.00 s) would not fit");
}
