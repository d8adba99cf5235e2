// The state of a run across processes (state.hpp, state_json.hpp): a budget and a controller run
// some steps on a manual clock, their state is captured (and written as the JSON document, read
// back), and a fresh budget and controller -- the next process -- continue from it: usage,
// forecasts, schedules, reports, early stopping's patience, the stop. Refused documents change
// nothing; saves are atomic; the time between the processes is not charged.
#include <frugal/controller.hpp>
#include <frugal/controller_report.hpp>
#include <frugal/schedule.hpp>
#include <frugal/report.hpp>
#include <frugal/scope.hpp>
#include <frugal/state.hpp>
#include <frugal/state_json.hpp>
#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <signal.h>
#include <sys/resource.h>

#include "support/file_size_limit.hpp"
#include "support/checks.hpp"
#include "support/json_reader.hpp"
#include "support/run_step.hpp"
#include "support/temp_tree.hpp"

using namespace std::chrono_literals;

namespace {

using frugal::resource;

using frugal_test::run_step;

// The configuration both processes share: the same program, started again.
frugal::limits wall_and_flops() { return frugal::limits{}.wall(10s).flops(1e6); }
frugal::controller_options knob_and_patience() {
  return frugal::controller_options{}.batch_size(32).batch_limits(8, 64).effective_batch(64).early_stop(
      frugal::early_stopping{"val_loss"}.patience(3));
}

// The first process: two epochs of two 1 s steps (1000 FLOPs, 32 samples each) under wall 10 s
// and 1e6 FLOPs; val_loss 0.5 then 0.6 (one evaluation without improvement). 4 s used.
frugal::run_state first_process(const std::function<void(frugal::budget&, frugal::controller&)>& more = {}) {
  frugal::manual_clock clock;
  frugal::budget run{"train", wall_and_flops()};
  frugal::controller ctl{run, knob_and_patience()};
  const double losses[] = {0.5, 0.6};
  for (double loss : losses) {
    for (int i = 0; i < 2; ++i) {
      run_step(run, clock, 1s, 1000, 32);
      (void)ctl.end_step(frugal::step{}.samples(32));
    }
    (void)ctl.end_epoch(frugal::epoch{}.metric("val_loss", loss));
  }
  if (more) more(run, ctl);
  return frugal::capture(run, ctl);
}

// What a state goes through between processes: the document.
frugal::run_state through_the_document(const frugal::run_state& s) {
  return frugal::from_json(frugal::to_json(s), "memory.json");
}

// ---------------------------------------------------------------------------------------------
// Capture and restore.

TEST(State, CaptureRecordsTheRunAsItStands) {
  const frugal::run_state s = first_process();
  EXPECT_EQ(s.version, 1);
  EXPECT_EQ(s.budget.name, "train");
  EXPECT_EQ(s.budget.used[resource::wall], 4.0);
  EXPECT_EQ(s.budget.used[resource::flops], 4000.0);
  EXPECT_EQ(s.budget.used.of("samples"), 128.0);
  EXPECT_EQ(s.budget.limits.get(resource::wall), 10.0);
  ASSERT_EQ(s.budget.stages.size(), 1u);
  EXPECT_EQ(s.budget.stages[0].name, "step");
  EXPECT_EQ(s.budget.stages[0].calls, 4u);
  EXPECT_EQ(s.budget.stages[0].wall_seconds, 4.0);
  EXPECT_EQ(s.controller.steps, 4u);
  EXPECT_EQ(s.controller.epochs, 2u);
  EXPECT_EQ(s.controller.steps_in_epoch, 0u);
  EXPECT_EQ(s.controller.samples, 128u);
  EXPECT_EQ(s.controller.learned_steps_per_epoch, 2u);
  EXPECT_EQ(s.controller.batch.size, 32u);
  EXPECT_EQ(s.controller.batch.accumulation, 2u);
  EXPECT_FALSE(s.controller.stop.stopped);
  ASSERT_EQ(s.controller.early_stopping.size(), 1u);
  EXPECT_EQ(s.controller.early_stopping[0].best, 0.5);
  EXPECT_EQ(s.controller.early_stopping[0].best_epoch, 0u);
  EXPECT_EQ(s.controller.early_stopping[0].wait, 1u);
  ASSERT_EQ(s.controller.resources.size(), 3u);  // wall, flops (limited), peak_bytes (always)
  EXPECT_EQ(s.controller.resources[0].name, "wall");
  ASSERT_EQ(s.controller.resources[0].step.sizes.size(), 1u);
  EXPECT_EQ(s.controller.resources[0].step.sizes[0].batch, 32u);
  EXPECT_EQ(s.controller.resources[0].step.sizes[0].stats.recent, (std::vector<double>{1, 1, 1, 1}));
  ASSERT_EQ(s.controller.history.metrics.size(), 2u);
  EXPECT_EQ(s.downtime.count(), 0.0);
  const auto age = std::chrono::system_clock::now() - s.saved_at;
  EXPECT_GE(age, 0s);
  EXPECT_LT(age, 60s);
}

TEST(State, RoundTripContinuesTheRunExactly) {
  frugal::run_state saved;
  std::optional<double> forecast_before, headroom_before;
  {
    frugal::manual_clock clock;
    frugal::budget run{"train", wall_and_flops()};
    frugal::controller ctl{run, knob_and_patience()};
    for (double loss : {0.5, 0.6}) {
      for (int i = 0; i < 2; ++i) {
        run_step(run, clock, 1s, 1000, 32);
        (void)ctl.end_step(frugal::step{}.samples(32));
      }
      (void)ctl.end_epoch(frugal::epoch{}.metric("val_loss", loss));
    }
    forecast_before = ctl.forecast_step(resource::wall);
    headroom_before = ctl.headroom(resource::wall);
    saved = frugal::capture(run, ctl);
  }
  const frugal::run_state s = through_the_document(saved);

  // The next process: the same program, a new clock (it starts at 0), a new budget and controller.
  frugal::manual_clock clock;
  frugal::budget run{"train", wall_and_flops()};
  frugal::controller ctl{run, knob_and_patience()};
  frugal::restore(run, ctl, s);

  EXPECT_TRUE(run.resumed());
  EXPECT_EQ(run.used(resource::wall), 4.0);
  EXPECT_EQ(run.used(resource::flops), 4000.0);
  EXPECT_EQ(run.used("samples"), 128.0);
  EXPECT_EQ(run.remaining(resource::wall), 6.0);
  EXPECT_EQ(run.remaining(resource::flops), 996000.0);
  EXPECT_EQ(run.fraction_used(), 0.4);
  EXPECT_EQ(run.carried()[resource::wall], 4.0);
  EXPECT_EQ(run.stage("step").calls, 4u);
  EXPECT_EQ(run.stage("step").wall_seconds, 4.0);
  EXPECT_EQ(run.stage("step").units_of("samples"), 128.0);
  const frugal::usage u = run.snapshot();
  EXPECT_EQ(u[resource::wall], 4.0);
  EXPECT_EQ(u.of("samples"), 128.0);

  EXPECT_EQ(ctl.steps(), 4u);
  EXPECT_EQ(ctl.epochs(), 2u);
  EXPECT_EQ(ctl.steps_in_epoch(), 0u);
  EXPECT_EQ(ctl.batch_size(), 32u);
  EXPECT_EQ(ctl.accumulation_steps(), 2u);
  EXPECT_EQ(ctl.effective_batch(), 64u);
  EXPECT_EQ(ctl.fraction_used(), 0.4);
  EXPECT_FALSE(ctl.should_stop());
  ASSERT_EQ(ctl.early_stoppers().size(), 1u);
  EXPECT_EQ(ctl.early_stoppers()[0].best(), 0.5);
  EXPECT_EQ(ctl.early_stoppers()[0].best_epoch(), 0u);
  EXPECT_EQ(ctl.early_stoppers()[0].wait(), 1u);
  EXPECT_EQ(ctl.early_stoppers()[0].updates(), 2u);
  EXPECT_EQ(ctl.forecast_step(resource::wall), forecast_before);
  EXPECT_EQ(ctl.forecast_step(resource::wall), 1.0);
  EXPECT_EQ(ctl.headroom(resource::wall), headroom_before);
  ASSERT_NE(ctl.step_model(resource::wall), nullptr);
  ASSERT_NE(ctl.step_model(resource::wall)->at(32), nullptr);
  EXPECT_EQ(ctl.step_model(resource::wall)->at(32)->count(), 4u);
  EXPECT_EQ(ctl.history().metrics.size(), 2u);

  // The schedule sees the carried usage: 4 s of 10 s used, lr 0.1 * (1 - 0.4).
  const frugal::linear_decay lr{0.1, run};
  EXPECT_DOUBLE_EQ(lr(), 0.06);

  // The remaining 6 s: the controller stops at 10 s, not past it.
  int steps = 0;
  while (!ctl.should_stop() && steps < 20) {
    run_step(run, clock, 1s, 1000, 32);
    ++steps;
    (void)ctl.end_step(frugal::step{}.samples(32));
  }
  EXPECT_EQ(steps, 6);
  EXPECT_EQ(run.used(resource::wall), 10.0);
  EXPECT_EQ(ctl.steps(), 10u);
  EXPECT_EQ(run.stage("step").calls, 10u);
  EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::budget_exhausted);
  const frugal_test::json report = frugal_test::json_reader::parse(frugal::json_report(run, ctl));
  EXPECT_EQ(report["budget"]["used"]["wall"].num(), 10.0);
  EXPECT_EQ(report["budget"]["limits"]["wall"].num(), 10.0);
  EXPECT_EQ(report["budget"]["used"]["flops"].num(), 10000.0);
  EXPECT_EQ(report["budget"]["stages"][0]["calls"].num(), 10.0);
  EXPECT_EQ(report["controller"]["steps"].num(), 10.0);
  EXPECT_NE(frugal::text_report(run).find("wall      10.0 s  10.0 s  100.0 %"), std::string::npos) << frugal::text_report(run);
}

// The issue's scenario: 4 s of a 10 s budget used, then the process ends; the next one has 6 s.
TEST(State, FourOfTenSecondsUsedLeavesSixAndTheRunStopsInsideTen) {
  const frugal::run_state s = through_the_document(first_process());
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(10s)};
  frugal::controller ctl{run, knob_and_patience()};
  frugal::restore(run, ctl, s);
  EXPECT_EQ(run.remaining(resource::wall), 6.0);
  int steps = 0;
  while (!ctl.should_stop() && steps < 20) {
    run_step(run, clock, 1500ms);
    ++steps;
    (void)ctl.end_step(frugal::step{}.samples(32));
  }
  // The 1 s steps of the first process are in the forecast: after 5.5, 7 and 8.5 s the next
  // 1.5 s step carries the measured spread as headroom (1.5 / 1 - 1 = 50 %: 2.25 s), over 10 s.
  EXPECT_EQ(steps, 3);
  EXPECT_EQ(run.used(resource::wall), 8.5);
  EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::forecast);
  EXPECT_EQ(ctl.stop_message(), "stop (forecast): wall: 8.50 s used of 10.0 s, next step forecast 2.25 s (+50.0 % headroom)");
}

TEST(State, LimitsAreThisProcesssAndMayDiffer) {
  const frugal::run_state s = through_the_document(first_process());
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(20s)};
  frugal::controller ctl{run, knob_and_patience()};
  frugal::restore(run, ctl, s);
  EXPECT_EQ(run.limit(resource::wall), 20.0);
  EXPECT_EQ(run.limit(resource::flops), frugal::budget::unlimited);  // not taken from the file
  EXPECT_EQ(run.remaining(resource::wall), 16.0);
  EXPECT_EQ(ctl.fraction_used(), 0.2);
  EXPECT_EQ(ctl.tracked_resources(), (std::vector<std::string>{"wall", "peak_bytes"}));
  EXPECT_EQ(ctl.forecast_step(resource::wall), 1.0);  // the model of a resource still tracked
}

TEST(State, EarlyStoppingsPatienceContinues) {
  // patience 3: 0.5 (best), 0.6 (1), and after the resume 0.7 (2), 0.8 (3: stop).
  const frugal::run_state s = through_the_document(first_process());
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.wall(100s)};
  frugal::controller ctl{run, knob_and_patience()};
  frugal::restore(run, ctl, s);
  run_step(run, clock, 1s);
  (void)ctl.end_step();
  frugal::decision d = ctl.end_epoch(frugal::epoch{}.metric("val_loss", 0.7));
  EXPECT_FALSE(d.stops());
  EXPECT_EQ(ctl.early_stoppers()[0].wait(), 2u);
  run_step(run, clock, 1s);
  (void)ctl.end_step();
  d = ctl.end_epoch(frugal::epoch{}.metric("val_loss", 0.8));
  EXPECT_TRUE(d.stops());
  EXPECT_EQ(d.cause(), frugal::stop_reason::early_stopping);
  EXPECT_EQ(d.reason(), "stop (early_stopping): val_loss did not improve on 0.5 (epoch 0) for 3 evaluations (patience 3)");
  EXPECT_EQ(ctl.epochs(), 4u);
}

// ---------------------------------------------------------------------------------------------
// The stop carried over.

TEST(State, TheRunsOwnVerdictHoldsAfterResume) {
  const frugal::run_state s = through_the_document(first_process([](frugal::budget&, frugal::controller& ctl) {
    (void)ctl.end_epoch(frugal::epoch{}.metric("val_loss", 0.7));
    (void)ctl.end_epoch(frugal::epoch{}.metric("val_loss", 0.8));  // patience used up
    ASSERT_EQ(ctl.stop_reason(), frugal::stop_reason::early_stopping);
  }));
  EXPECT_TRUE(s.controller.stop.stopped);
  frugal::manual_clock clock;
  frugal::budget run{"train", wall_and_flops()};
  frugal::controller ctl{run, knob_and_patience()};
  frugal::restore(run, ctl, s);
  EXPECT_TRUE(ctl.should_stop());
  EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::early_stopping);
  EXPECT_EQ(ctl.stop_message(), s.controller.stop.message);
}

TEST(State, AStopFromOutsideIsLiftedOnResume) {
  // SIGTERM (a stop_on flag) or request_stop ends the process; the resumed run goes on.
  const frugal::run_state s = through_the_document(first_process([](frugal::budget&, frugal::controller& ctl) {
    ctl.request_stop("preempted");
    (void)ctl.end_epoch();
    ASSERT_EQ(ctl.stop_reason(), frugal::stop_reason::user);
  }));
  EXPECT_TRUE(s.controller.stop.stopped);
  EXPECT_EQ(s.controller.stop.reason, frugal::stop_reason::user);
  frugal::manual_clock clock;
  frugal::budget run{"train", wall_and_flops()};
  frugal::controller ctl{run, knob_and_patience()};
  frugal::restore(run, ctl, s);
  EXPECT_FALSE(ctl.should_stop());
  ASSERT_FALSE(ctl.history().decisions.empty());
  const frugal::decision_record& last = ctl.history().decisions.back();
  EXPECT_EQ(last.at, "resume");
  EXPECT_EQ(last.actions, "stop_lifted");
  EXPECT_EQ(last.reason,
            "stop lifted on resume: the earlier process stopped from outside the run (was: stop (user): preempted)");
}

TEST(State, ABudgetStopHoldsUnderTheSameLimitsAndLiftsUnderLargerOnes) {
  // Ten 1 s steps: the budget is spent.
  frugal::run_state s;
  {
    frugal::manual_clock clock;
    frugal::budget run{"train", frugal::limits{}.wall(10s)};
    frugal::controller ctl{run};
    while (!ctl.should_stop()) {
      run_step(run, clock, 1s);
      (void)ctl.end_step();
    }
    ASSERT_EQ(run.used(resource::wall), 10.0);
    s = through_the_document(frugal::capture(run, ctl));
  }
  EXPECT_EQ(s.controller.stop.reason, frugal::stop_reason::budget_exhausted);
  {
    frugal::manual_clock clock;
    frugal::budget run{"train", frugal::limits{}.wall(10s)};
    frugal::controller ctl{run};
    frugal::restore(run, ctl, s);
    EXPECT_TRUE(ctl.should_stop());
    EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::budget_exhausted);
  }
  {
    frugal::manual_clock clock;
    frugal::budget run{"train", frugal::limits{}.wall(15s)};
    frugal::controller ctl{run};
    frugal::restore(run, ctl, s);
    EXPECT_FALSE(ctl.should_stop());
    EXPECT_EQ(ctl.history().decisions.back().actions, "stop_lifted");
    int steps = 0;
    while (!ctl.should_stop() && steps < 20) {
      run_step(run, clock, 1s);
      ++steps;
      (void)ctl.end_step();
    }
    EXPECT_EQ(steps, 5);
    EXPECT_EQ(run.used(resource::wall), 15.0);
  }
}

// A stop at a step because the epoch's end (its evaluation) would no longer fit is judged again
// by the same rule on resume: under the same limits it holds, though the next step alone fits.
TEST(State, AStopAtAStepForTheEpochsEndHoldsUnderTheSameLimits) {
  auto first = [](frugal::budget& run, frugal::controller& ctl, frugal::manual_clock& clock) {
    // Epoch 1: two 1 s steps and a 5 s evaluation (7 s); then 1 s steps up to 14 s, and one of
    // 2 s: 16 s used, 16 + 5 > 20 (the epoch's end would not fit) while the next step's
    // forecast (2 s, x2 for the spread) would.
    for (int i = 0; i < 2; ++i) {
      run_step(run, clock, 1s);
      (void)ctl.end_step();
    }
    {
      frugal::scope e{run, "evaluation"};
      clock.advance(5s);
    }
    (void)ctl.end_epoch();
    while (run.used(resource::wall) < 14.0) {
      run_step(run, clock, 1s);
      ASSERT_FALSE(ctl.end_step().stops());
    }
    run_step(run, clock, 2s);
    const frugal::decision d = ctl.end_step();
    ASSERT_TRUE(d.stops());
    ASSERT_NE(d.reason().find("the epoch's end"), std::string::npos) << d.reason();
  };
  frugal::run_state s;
  {
    frugal::manual_clock clock;
    frugal::budget run{"train", frugal::limits{}.wall(20s)};
    frugal::controller ctl{run};
    first(run, ctl, clock);
    s = through_the_document(frugal::capture(run, ctl));
  }
  {
    frugal::manual_clock clock;
    frugal::budget run{"train", frugal::limits{}.wall(20s)};
    frugal::controller ctl{run};
    frugal::restore(run, ctl, s);
    EXPECT_TRUE(ctl.should_stop());
    EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::forecast);
  }
  {
    frugal::manual_clock clock;
    frugal::budget run{"train", frugal::limits{}.wall(30s)};  // room for the evaluation now
    frugal::controller ctl{run};
    frugal::restore(run, ctl, s);
    EXPECT_FALSE(ctl.should_stop());
  }
}

TEST(State, ARuleMeasuringItsEffectFinishesTheMeasurementAfterResume) {
  // controller_test's quantize rule whose action does not lower FLOPs: it fires at step 10 (8
  // bits) and judges the effect over a 16-step cooldown. The process ends at step 15, mid-way.
  const auto options = [](std::vector<int>& widths) {
    return frugal::controller_options{}.planned_steps(100).quantize(
        frugal::quantize_rule{}.name("int8").watch(resource::flops).action([&widths](int b) { widths.push_back(b); }));
  };
  frugal::run_state s;
  {
    frugal::manual_clock clock;
    frugal::budget run{"train", frugal::limits{}.flops(50e9)};
    std::vector<int> widths;
    frugal::controller ctl{run, options(widths)};
    for (int i = 0; i < 15; ++i) {
      run_step(run, clock, 10ms, 1'000'000'000);
      (void)ctl.end_step();
    }
    ASSERT_EQ(widths, (std::vector<int>{8}));
    s = through_the_document(frugal::capture(run, ctl));
  }
  ASSERT_EQ(s.controller.quantize_rules.size(), 1u);
  const frugal::compression_rule_state& rule = s.controller.quantize_rules[0];
  EXPECT_EQ(rule.rule, "int8");
  EXPECT_EQ(rule.fired, 10u);
  EXPECT_TRUE(rule.measuring);
  EXPECT_EQ(rule.measure_until, 26u);
  EXPECT_EQ(rule.bits, 8);
  EXPECT_EQ(rule.resources, (std::vector<std::string>{"flops"}));
  EXPECT_EQ(rule.per_sample, (std::vector<std::vector<double>>{{1e9, 1e9, 1e9, 1e9, 1e9}}));

  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.flops(50e9)};
  std::vector<int> widths;
  frugal::controller ctl{run, options(widths)};
  frugal::restore(run, ctl, s);
  EXPECT_TRUE(ctl.quantize_rule_active(0));
  for (int i = 0; i < 45 && !ctl.should_stop(); ++i) {
    run_step(run, clock, 10ms, 1'000'000'000);
    (void)ctl.end_step();
  }
  EXPECT_TRUE(widths.empty());  // judged at step 26 as in one process: it never fires again
  EXPECT_FALSE(ctl.quantize_rule_active(0));
  ASSERT_EQ(ctl.history().compressions.size(), 1u);
  EXPECT_EQ(ctl.history().compressions[0].lowered, false);
  EXPECT_EQ(ctl.history().compressions[0].effects.at(0).after, 1e9);
  EXPECT_EQ(run.used(resource::flops), 50e9);
}

// ---------------------------------------------------------------------------------------------
// Children, levels, the time between the processes.

TEST(State, ChildrenCarryTheirShareWhenMadeBeforeOrAfterTheRestore) {
  frugal::run_state s;
  {
    frugal::manual_clock clock;
    frugal::budget run{"train"};
    frugal::budget& eval = run.child("eval");
    frugal::budget& test = run.child("test");
    frugal::controller ctl{run};
    run_step(run, clock, 3s);
    {
      frugal::scope e{eval, "evaluation"};
      clock.advance(2s);
      frugal::add_flops(7);
    }
    {
      frugal::scope t{test, "evaluation"};
      clock.advance(1s);
    }
    (void)ctl.end_step();
    s = through_the_document(frugal::capture(run, ctl));
  }
  ASSERT_EQ(s.budget.children.size(), 2u);
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::budget& eval = run.child("eval");  // before
  frugal::controller ctl{run};
  frugal::restore(run, ctl, s);
  frugal::budget& test = run.child("test", frugal::limits{}.wall(5s));  // after
  EXPECT_EQ(run.used(resource::wall), 6.0);
  EXPECT_EQ(run.used(resource::flops), 7.0);
  EXPECT_EQ(eval.used(resource::wall), 2.0);
  EXPECT_EQ(eval.used(resource::flops), 7.0);
  EXPECT_EQ(eval.stage("evaluation").calls, 1u);
  EXPECT_EQ(test.used(resource::wall), 1.0);
  EXPECT_EQ(test.remaining(resource::wall), 4.0);
  {
    frugal::scope t{test, "evaluation"};
    clock.advance(1s);
  }
  EXPECT_EQ(test.used(resource::wall), 2.0);
  EXPECT_EQ(test.stage("evaluation").calls, 2u);
  EXPECT_EQ(run.used(resource::wall), 7.0);
}

TEST(State, LevelsTakeTheHigherOfTheTwoHeights) {
  frugal::run_state s = first_process();
  s.budget.used.by_resource[static_cast<std::size_t>(resource::peak_bytes)] = 5e9;
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  frugal::restore(run, ctl, through_the_document(s));
  EXPECT_EQ(run.used(resource::peak_bytes), 5e9);
  EXPECT_EQ(run.snapshot()[resource::peak_bytes], 5e9);
}

TEST(State, DowntimeIsTheGapBetweenTheProcessesAndIsNotCharged) {
  frugal::run_state s = first_process();
  s.saved_at = std::chrono::system_clock::now() - 5s;
  s.downtime = 2s;  // an earlier resume's
  frugal::manual_clock clock;
  frugal::budget run{"train", wall_and_flops()};
  frugal::controller ctl{run, knob_and_patience()};
  frugal::restore(run, ctl, through_the_document(s));
  EXPECT_NEAR(run.downtime().count(), 7.0, 1.0);
  EXPECT_GE(run.downtime().count(), 7.0);
  EXPECT_EQ(run.used(resource::wall), 4.0);  // not charged
  // The next save carries the total on.
  EXPECT_EQ(frugal::capture(run, ctl).downtime, run.downtime());
}

// Money and energy across processes: the cost limit's currency goes through the document; cost
// is never carried on its own (it is the carried wall, cpu and flops at this process's price);
// energy is carried like any consumable. A document written before cost and energy existed
// (neither key) still resumes, with none used.
TEST(State, CostIsDerivedAfterResumeAndEnergyIsCarried) {
  // The keys missing, as in a document from before them: none used, no limit.
  nlohmann::ordered_json doc = nlohmann::ordered_json::parse(frugal::to_json(first_process()));
  for (const char* key : {"cost", "energy"}) {
    doc["budget"]["limits"].erase(key);
    doc["budget"]["used"].erase(key);
  }
  doc["budget"]["limits"].erase("currency");
  const frugal::run_state old = frugal::from_json(doc.dump(), "old.json");
  EXPECT_EQ(old.budget.used[resource::cost], 0);
  EXPECT_EQ(old.budget.used[resource::energy], 0);
  EXPECT_FALSE(old.budget.limits.has(resource::cost));

  frugal::run_state s = first_process();
  s.budget.limits.cost(0.5, "USD");
  s.budget.used.by_resource[static_cast<std::size_t>(resource::cost)] = 99;  // ignored: derived
  s.budget.used.by_resource[static_cast<std::size_t>(resource::energy)] = 1500;
  const frugal::run_state back = through_the_document(s);
  EXPECT_EQ(back.budget.limits.currency(), "USD");
  EXPECT_EQ(back.budget.limits, s.budget.limits);
  EXPECT_EQ(back.budget.used[resource::energy], 1500);
  frugal::manual_clock clock;
  frugal::budget run{"train", wall_and_flops()};
  run.set_price(frugal::price{}.instance_hour(3.6).currency("USD"));  // 0.001 USD a second of wall
  frugal::controller ctl{run, knob_and_patience()};
  frugal::restore(run, ctl, back);
  EXPECT_DOUBLE_EQ(run.used(resource::cost), 0.004);  // the 4 s carried, at this price
  EXPECT_DOUBLE_EQ(run.carried()[resource::cost], 0.004);
  EXPECT_GE(run.used(resource::energy), 1500);
}

// The reports say what a resumed run carries and how long it was down: the JSON report's
// "resumed" (null for a run of one process) and a line under the text report's table.
TEST(State, TheReportsShowTheCarriedUsageAndTheDowntime) {
  frugal::run_state s = first_process();
  s.saved_at = std::chrono::system_clock::now() - 5s;
  frugal::manual_clock clock;
  {
    frugal::budget fresh{"train", wall_and_flops()};
    EXPECT_NE(frugal::json_report(fresh).find(R"("resumed":null,"children")"), std::string::npos);
    EXPECT_EQ(frugal::text_report(fresh).find("resumed:"), std::string::npos);
  }
  frugal::budget run{"train", wall_and_flops()};
  frugal::controller ctl{run, knob_and_patience()};
  frugal::restore(run, ctl, through_the_document(s));
  run_step(run, clock, 1s, 1000, 32);
  const nlohmann::json doc = nlohmann::json::parse(frugal::json_report(run));
  const nlohmann::json& resumed = doc["budget"]["resumed"];
  ASSERT_TRUE(resumed.is_object()) << doc.dump();
  EXPECT_NEAR(resumed["downtime"].get<double>(), run.downtime().count(), 1e-9);
  EXPECT_GE(resumed["downtime"].get<double>(), 5.0);
  EXPECT_EQ(resumed["carried"]["wall"].get<double>(), 4.0);    // from the first process
  EXPECT_EQ(resumed["carried"]["flops"].get<double>(), 4000.0);
  EXPECT_EQ(resumed["carried"]["units"]["samples"].get<double>(), 128.0);
  EXPECT_EQ(doc["budget"]["used"]["wall"].get<double>(), 5.0);  // 4 carried + 1 here; downtime not charged
  const std::string text = frugal::text_report(run);
  EXPECT_NE(text.find("resumed: 4.00 s of the wall used in earlier processes; "), std::string::npos) << text;
  EXPECT_NE(text.find("between them (downtime, not charged)"), std::string::npos) << text;
}

TEST(State, ASavedAtInTheFutureAddsNoDowntime) {
  frugal::run_state s = first_process();
  s.saved_at = std::chrono::system_clock::now() + 1h;  // the clock went back
  frugal::budget run{"train", wall_and_flops()};
  frugal::controller ctl{run, knob_and_patience()};
  frugal::restore(run, ctl, through_the_document(s));
  EXPECT_EQ(run.downtime().count(), 0.0);
}

// ---------------------------------------------------------------------------------------------
// What restore refuses, changing nothing.

TEST(State, RestoreRefusesABudgetThatRanOrWasRestoredAndAForeignController) {
  const frugal::run_state s = first_process();
  {
    frugal::manual_clock clock;
    frugal::budget run{"train"};
    frugal::controller ctl{run};
    run_step(run, clock, 1s);
    const std::string e = frugal_test::error_of<std::logic_error>([&] { frugal::restore(run, ctl, s); });
    EXPECT_EQ(e, "frugal::budget::carry: budget 'train' (or a child) has already had a scope open: carry usage "
                 "before any work runs");
    EXPECT_EQ(run.used(resource::wall), 1.0);
    EXPECT_EQ(ctl.steps(), 0u);
  }
  {
    frugal::budget run{"train"};
    frugal::controller ctl{run};
    frugal::restore(run, ctl, s);
    frugal::controller again{run};
    EXPECT_EQ(frugal_test::error_of<std::logic_error>([&] { frugal::restore(run, again, s); }),
              "frugal::restore: budget 'train' was already restored");
    EXPECT_EQ(again.steps(), 0u);
    EXPECT_EQ(frugal_test::error_of<std::logic_error>([&] { frugal::restore(run, ctl, s); }),
              "frugal::restore: the controller has already run (4 steps, 2 epochs): restore into a new one, before "
              "its first step");
  }
  {
    frugal::budget run{"train"};
    frugal::budget other{"train"};
    frugal::controller ctl{other};
    EXPECT_EQ(frugal_test::error_of([&] { frugal::restore(run, ctl, s); }),
              "frugal::restore: the controller watches budget 'train', not 'train'");
    frugal::budget renamed{"finetune"};
    frugal::controller c2{renamed};
    EXPECT_EQ(frugal_test::error_of([&] { frugal::restore(renamed, c2, s); }),
              "frugal::restore: the state is of budget 'train', not 'finetune'");
    EXPECT_FALSE(run.resumed());
    EXPECT_FALSE(renamed.resumed());
  }
}

TEST(State, CheckRefusesAnInconsistentStateNamingTheField) {
  frugal::run_state s = first_process();
  s.controller.steps_in_epoch = 9;
  EXPECT_EQ(frugal_test::error_of([&] { frugal::check(s); }),
            "frugal: run state: controller.steps_in_epoch: expected at most steps (4), got 9");
  s = first_process();
  s.controller.resources[0].step.sizes[0].stats.recent[2] = -1;
  EXPECT_EQ(frugal_test::error_of([&] { frugal::check(s); }),
            "frugal: run state: controller.resources[0].step.sizes[0].stats.recent[2]: expected a finite number >= 0, "
            "got -1");
  s = first_process();
  s.budget.used.by_resource[0] = std::nan("");
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  EXPECT_EQ(frugal_test::error_of<frugal::state_error>([&] { frugal::restore(run, ctl, s); }),
            "frugal: run state: budget.used.wall: expected a finite number >= 0, got nan");
  EXPECT_FALSE(run.resumed());
}

// ---------------------------------------------------------------------------------------------
// The document.

using ojson = nlohmann::ordered_json;

TEST(StateJson, TheDocumentIsVersionedAndReadable) {
  const std::string text = frugal::to_json(first_process());
  const ojson doc = ojson::parse(text);
  EXPECT_EQ(doc.begin().key(), "format");
  EXPECT_EQ(doc["format"], "frugal-state");
  EXPECT_EQ(doc["version"], 1);
  EXPECT_EQ(doc["budget"]["used"]["wall"], 4.0);
  EXPECT_EQ(doc["budget"]["limits"]["wall"], 10.0);
  EXPECT_TRUE(doc["budget"]["limits"]["cpu"].is_null());
  EXPECT_EQ(doc["controller"]["steps"], 4);
  EXPECT_EQ(doc["controller"]["batch"]["size"], 32);
  EXPECT_EQ(doc["controller"]["early_stopping"][0]["wait"], 1);
  const std::string utc = doc["saved_at"].get<std::string>();
  ASSERT_EQ(utc.size(), std::string("2024-05-01T12:00:00.123456789Z").size()) << utc;
  EXPECT_EQ(utc.back(), 'Z');
  EXPECT_NE(text.find("\n  \"version\": 1,\n"), std::string::npos);  // indented, one field a line
}

TEST(StateJson, DoublesAndNonFiniteMetricsRoundTripExactly) {
  // nlohmann_json writes the shortest text that reads back as the same double.
  const std::vector<double> awkward = {0.1 + 0.2, 1.0 / 3, 5e-324, 1.7976931348623157e308, 2.2250738585072014e-308,
                                       123456789.123456789, 0.0};
  frugal::run_state s = first_process();
  s.controller.resources[0].step.sizes[0].stats.recent = {awkward.begin(), awkward.begin() + 4};
  s.budget.used.units = {{"samples", 1.0 / 3}, {"tokens", 0.1 + 0.2}};
  s.budget.used.by_resource[static_cast<std::size_t>(resource::wall)] = 4.000000000000001;
  s.controller.history.metrics[0].metrics = {{"a", awkward[0]},
                                              {"b", std::numeric_limits<double>::quiet_NaN()},
                                              {"c", std::numeric_limits<double>::infinity()},
                                              {"d", -std::numeric_limits<double>::infinity()},
                                              {"e", awkward[4]},
                                              {"f", awkward[5]}};
  s.controller.early_stopping[0].last = std::numeric_limits<double>::quiet_NaN();
  const frugal::run_state r = frugal::from_json(frugal::to_json(s), "x.json");
  const auto same = [](double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0 || (std::isnan(a) && std::isnan(b)); };
  const auto& recent = r.controller.resources[0].step.sizes[0].stats.recent;
  ASSERT_EQ(recent.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_TRUE(same(recent[i], awkward[i])) << i;
  EXPECT_EQ(r.budget.used.units, s.budget.used.units);
  EXPECT_EQ(r.budget.used[resource::wall], 4.000000000000001);
  const auto& m = r.controller.history.metrics[0].metrics;
  ASSERT_EQ(m.size(), 6u);
  for (std::size_t i = 0; i < m.size(); ++i) {
    EXPECT_EQ(m[i].first, s.controller.history.metrics[0].metrics[i].first);
    EXPECT_TRUE(same(m[i].second, s.controller.history.metrics[0].metrics[i].second)) << i;
  }
  EXPECT_TRUE(r.controller.early_stopping[0].last && std::isnan(*r.controller.early_stopping[0].last));
  EXPECT_EQ(r.saved_at, s.saved_at);
  EXPECT_EQ(frugal::to_json(r), frugal::to_json(s));  // and the document itself is a fixed point
}

// A file's text, and the same with one change made to its JSON.
std::string edited(const std::string& text, const std::function<void(ojson&)>& edit) {
  ojson doc = ojson::parse(text);
  edit(doc);
  return doc.dump(2);
}

class StateRefusals : public ::testing::Test {
 protected:
  void SetUp() override {
    good_ = frugal::to_json(first_process());
    dir_.mkdir("run");
  }
  // Writes `text` as run/state.json and resumes from it into a fresh budget and controller:
  // the message of the refusal; the budget and controller must be untouched.
  std::string refusal(const std::string& text) {
    dir_.write("run/state.json", text);
    frugal::budget run{"train", wall_and_flops()};
    frugal::controller ctl{run, knob_and_patience()};
    std::string message = "(not refused)";
    try {
      frugal::resume(dir_.path("run/state.json"), run, ctl);
    } catch (const frugal::state_error& e) {
      message = e.what();
      EXPECT_EQ(e.source(), dir_.path("run/state.json"));
    }
    EXPECT_EQ(run.used(resource::wall), 0.0);
    EXPECT_EQ(run.used(resource::flops), 0.0);
    EXPECT_FALSE(run.resumed());
    EXPECT_EQ(ctl.steps(), 0u);
    EXPECT_EQ(ctl.epochs(), 0u);
    EXPECT_EQ(ctl.early_stoppers()[0].updates(), 0u);
    EXPECT_EQ(ctl.batch_size(), 32u);
    return message;
  }
  std::string prefix() const { return "frugal: state file '" + dir_.path("run/state.json") + "': "; }

  std::string good_;
  frugal_test::temp_tree dir_;
};

TEST_F(StateRefusals, NotJsonOrCutShort) {
  std::string e = refusal("this is not JSON");
  EXPECT_EQ(e.rfind(prefix() + "not valid JSON, or cut short ([json.exception.parse_error.101] parse error at line 1", 0), 0u)
      << e;
  e = refusal(good_.substr(0, good_.size() / 2));
  EXPECT_EQ(e.rfind(prefix() + "not valid JSON, or cut short (", 0), 0u) << e;
  EXPECT_NE(e.find("unexpected end of input"), std::string::npos) << e;
  EXPECT_EQ(refusal(""), prefix() + "the file is empty");
  EXPECT_EQ(refusal(" \n"), prefix() + "the file is empty");
}

TEST_F(StateRefusals, AForeignDocumentOrANewerVersion) {
  EXPECT_EQ(refusal("[1, 2]"), prefix() + "expected a JSON object (a frugal state document), got [1,2]");
  EXPECT_EQ(refusal(edited(good_, [](ojson& d) { d["format"] = "frugal-report"; })),
            prefix() + "format: expected \"frugal-state\", got \"frugal-report\": not a frugal state document");
  EXPECT_EQ(refusal(edited(good_, [](ojson& d) { d.erase("format"); })),
            prefix() + "format: expected \"frugal-state\", got nothing (the field is missing): not a frugal state document");
  EXPECT_EQ(refusal(edited(good_, [](ojson& d) { d["version"] = 2; })),
            prefix() + "version: the document is version 2, newer than this frugal (" + frugal::version_string +
                ") reads (1): resume it with a newer frugal");
  EXPECT_EQ(refusal(edited(good_, [](ojson& d) { d["version"] = 0; })),
            prefix() + "version: expected a version from 1 to 1, got 0");
}

TEST_F(StateRefusals, AFieldMissingOfTheWrongTypeOrOutOfRange) {
  EXPECT_EQ(refusal(edited(good_, [](ojson& d) { d["controller"].erase("steps_in_epoch"); })),
            prefix() + "controller.steps_in_epoch: expected a non-negative integer, got nothing (the field is missing)");
  EXPECT_EQ(refusal(edited(good_, [](ojson& d) { d["controller"]["steps"] = "abc"; })),
            prefix() + "controller.steps: expected a non-negative integer, got \"abc\"");
  EXPECT_EQ(refusal(edited(good_, [](ojson& d) { d["controller"]["steps"] = -3; })),
            prefix() + "controller.steps: expected a non-negative integer, got -3");
  EXPECT_EQ(refusal(edited(good_, [](ojson& d) { d["controller"]["epochs"] = 2.5; })),
            prefix() + "controller.epochs: expected a non-negative integer, got 2.5");
  EXPECT_EQ(refusal(edited(good_, [](ojson& d) { d["budget"]["used"]["wall"] = -4; })),
            prefix() + "budget.used.wall: expected a finite number >= 0, got -4");
  EXPECT_EQ(refusal(edited(good_, [](ojson& d) { d["budget"]["used"]["units"]["samples"] = "many"; })),
            prefix() + "budget.used.units.samples: expected a finite number >= 0, got \"many\"");
  EXPECT_EQ(refusal(edited(good_, [](ojson& d) { d["controller"]["stop"]["reason"] = "bored"; })),
            prefix() + "controller.stop.reason: expected one of none, budget_exhausted, forecast, early_stopping, "
                       "diverged, non_finite, deadline, user, signal, got \"bored\"");
  EXPECT_EQ(refusal(edited(good_, [](ojson& d) { d["controller"]["resources"][0]["step"]["sizes"][0]["stats"]["recent"][1] = true; })),
            prefix() + "controller.resources[0].step.sizes[0].stats.recent[1]: expected a finite number >= 0, got true");
  EXPECT_EQ(refusal(edited(good_, [](ojson& d) { d["controller"]["early_stopping"] = ojson::object(); })),
            prefix() + "controller.early_stopping: expected an array, got {}");
  // Consistent types, inconsistent values (checked after reading, before anything is applied).
  EXPECT_EQ(refusal(edited(good_, [](ojson& d) { d["controller"]["steps_in_epoch"] = 99; })),
            prefix() + "controller.steps_in_epoch: expected at most steps (4), got 99");
  EXPECT_EQ(refusal(edited(good_, [](ojson& d) { d["controller"]["stop"]["stopped"] = true; })),
            prefix() + "controller.stop.reason: expected a reason for a stop, got none");
  EXPECT_EQ(refusal(edited(good_, [](ojson& d) { d["budget"]["limits"]["wall"] = -1; })),
            prefix() + "budget.limits.wall: expected a finite number >= 0, got -1");
}

TEST_F(StateRefusals, AGoodDocumentStillResumesAfterARefusal) {
  (void)refusal("{}");
  dir_.write("run/state.json", good_);
  frugal::budget run{"train", wall_and_flops()};
  frugal::controller ctl{run, knob_and_patience()};
  frugal::resume(dir_.path("run/state.json"), run, ctl);
  EXPECT_EQ(run.used(resource::wall), 4.0);
  EXPECT_EQ(ctl.steps(), 4u);
}

TEST(StateJson, AMissingFileIsAnIoError) {
  frugal_test::temp_tree dir;
  try {
    (void)frugal::load_state(dir.path("none.json"));
    ADD_FAILURE() << "no exception";
  } catch (const frugal::io_error& e) {
    EXPECT_EQ(std::string(e.what()), "frugal: cannot read state file '" + dir.path("none.json") + "': No such file or directory");
    EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
  }
}

using frugal_test::file_size_limit;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(StateJson, SaveThenLoadRoundTripsAndAFailedSaveKeepsTheOldFile) {
  frugal_test::temp_tree dir;
  const std::string path = dir.path("state.json");
  frugal::manual_clock clock;
  frugal::budget run{"train", wall_and_flops()};
  frugal::controller ctl{run, knob_and_patience()};
  run_step(run, clock, 1s, 1000, 32);
  (void)ctl.end_step(frugal::step{}.samples(32));
  frugal::save_state(path, run, ctl);
  const std::string first = read_file(path);
  frugal::run_state loaded = frugal::load_state(path);
  EXPECT_EQ(loaded.budget.used[resource::wall], 1.0);
  EXPECT_EQ(loaded.controller.steps, 1u);
  EXPECT_EQ(frugal::to_json(loaded), first);

  run_step(run, clock, 1s, 1000, 32);
  (void)ctl.end_step(frugal::step{}.samples(32));
  frugal::save_state(path, run, ctl);  // a second save replaces the first
  EXPECT_EQ(frugal::load_state(path).controller.steps, 2u);
  const std::string second = read_file(path);

  run_step(run, clock, 1s, 1000, 32);
  (void)ctl.end_step(frugal::step{}.samples(32));
  std::optional<frugal::io_error> e;
  {
    file_size_limit limit{256};  // the document is larger
    try {
      frugal::save_state(path, run, ctl);
    } catch (const frugal::io_error& err) {
      e = err;
    }
  }
  ASSERT_TRUE(e);
  EXPECT_EQ(std::string(e->what()).rfind("frugal: cannot write '" + path + "': File too large", 0), 0u) << e->what();
  EXPECT_EQ(read_file(path), second);
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.root())) names.push_back(entry.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"state.json"});  // no temporary file left
}


}  // namespace
