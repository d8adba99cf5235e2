// Early stopping, one scenario per parameter: patience, min_delta, mode, stopping threshold,
// divergence threshold, non-finite values, baseline, start_from_epoch; the best value and its
// epoch; the last value; bad input.
#include <frugal/early_stopping.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/checks.hpp"

namespace {

using frugal_test::error_of;

using frugal::early_stop_verdict;


// Feeds the values as epochs 0, 1, 2, ... and returns the epoch whose update stopped (-1: none).
int stopping_epoch(frugal::early_stopping& es, const std::vector<double>& values) {
  for (std::size_t i = 0; i < values.size(); ++i)
    if (frugal::stops(es.update(values[i], i))) return static_cast<int>(i);
  return -1;
}

TEST(EarlyStopping, PatienceCountsUpdatesWithoutImprovement) {
  frugal::early_stopping es{"val_loss"};
  es.patience(3);
  // Improves until epoch 2 (0.5), then three updates without improvement: the third stops.
  EXPECT_EQ(stopping_epoch(es, {1.0, 0.8, 0.5, 0.6, 0.55, 0.7, 0.1}), 5);
  EXPECT_EQ(es.verdict(), early_stop_verdict::stop_patience);
  EXPECT_EQ(es.best(), 0.5);
  EXPECT_EQ(es.best_epoch(), 2u);
  EXPECT_EQ(es.wait(), 3u);
  EXPECT_TRUE(es.stopped());
  EXPECT_EQ(es.message(), "val_loss did not improve on 0.5 (epoch 2) for 3 evaluations (patience 3)");
}

TEST(EarlyStopping, AnImprovementResetsThePatience) {
  frugal::early_stopping es;
  es.patience(2);
  EXPECT_EQ(stopping_epoch(es, {1.0, 1.1, 0.9, 1.0, 0.95, 0.97}), 4);
  EXPECT_EQ(es.best(), 0.9);
  EXPECT_EQ(es.best_epoch(), 2u);
}

TEST(EarlyStopping, PatienceZeroStopsAtTheFirstNonImprovement) {
  frugal::early_stopping es;
  es.patience(0);
  EXPECT_EQ(stopping_epoch(es, {1.0, 0.9, 0.9}), 2);
}

TEST(EarlyStopping, MinDeltaRequiresAMarginToCountAsImprovement) {
  frugal::early_stopping es;
  es.patience(2).min_delta(0.1);
  // 0.95 and 0.92 are better than 1.0 but not by more than 0.1: no improvement.
  EXPECT_EQ(stopping_epoch(es, {1.0, 0.95, 0.92}), 2);
  EXPECT_EQ(es.best(), 1.0);
  frugal::early_stopping plain;
  plain.patience(2);
  EXPECT_EQ(stopping_epoch(plain, {1.0, 0.95, 0.92}), -1);
  EXPECT_EQ(plain.best(), 0.92);
}

TEST(EarlyStopping, MaxModeWantsLargerValues) {
  frugal::early_stopping es{"val_acc"};
  es.mode(frugal::metric_mode::max).patience(1);
  EXPECT_EQ(es.update(0.5, 0), early_stop_verdict::improved);
  EXPECT_EQ(es.update(0.7, 1), early_stop_verdict::improved);
  EXPECT_EQ(es.update(0.6, 2), early_stop_verdict::stop_patience);
  EXPECT_EQ(es.best(), 0.7);
  EXPECT_EQ(es.best_epoch(), 1u);
}

TEST(EarlyStopping, StoppingThresholdStopsWhenGoodEnough) {
  frugal::early_stopping es;
  es.stopping_threshold(0.1).patience(100);
  EXPECT_EQ(stopping_epoch(es, {0.5, 0.2, 0.09, 0.01}), 2);
  EXPECT_EQ(es.verdict(), early_stop_verdict::stop_threshold);
  EXPECT_EQ(es.best(), 0.09);
  EXPECT_EQ(es.message(), "val_loss 0.09 < stopping threshold 0.1");
  frugal::early_stopping acc{"acc"};
  acc.mode(frugal::metric_mode::max).stopping_threshold(0.95);
  EXPECT_EQ(stopping_epoch(acc, {0.5, 0.95, 0.96}), 2);  // strictly better than the threshold
}

TEST(EarlyStopping, DivergenceThresholdStopsWhenHopeless) {
  frugal::early_stopping es;
  es.divergence_threshold(10.0).patience(100);
  EXPECT_EQ(stopping_epoch(es, {2.0, 5.0, 10.0, 11.0}), 3);
  EXPECT_EQ(es.verdict(), early_stop_verdict::stop_diverged);
  EXPECT_EQ(es.best(), 2.0);  // a diverged value is never the best
  EXPECT_EQ(es.message(), "val_loss 11 > divergence threshold 10");
  frugal::early_stopping acc{"acc"};
  acc.mode(frugal::metric_mode::max).divergence_threshold(0.1).patience(100);
  EXPECT_EQ(stopping_epoch(acc, {0.5, 0.2, 0.05}), 2);
}

TEST(EarlyStopping, NonFiniteStopsUnlessCheckFiniteIsOff) {
  frugal::early_stopping es;
  es.patience(100);
  EXPECT_EQ(stopping_epoch(es, {1.0, std::nan("")}), 1);
  EXPECT_EQ(es.verdict(), early_stop_verdict::stop_non_finite);
  EXPECT_EQ(es.message(), "val_loss is nan (not finite); best was 1 (epoch 0)");
  frugal::early_stopping inf;
  EXPECT_EQ(stopping_epoch(inf, {std::numeric_limits<double>::infinity()}), 0);

  // Off: a NaN is simply not an improvement, and uses patience.
  frugal::early_stopping lenient;
  lenient.check_finite(false).patience(2);
  EXPECT_EQ(lenient.update(1.0, 0), early_stop_verdict::improved);
  EXPECT_EQ(lenient.update(std::nan(""), 1), early_stop_verdict::no_improvement);
  EXPECT_EQ(lenient.update(std::nan(""), 2), early_stop_verdict::stop_patience);
  EXPECT_EQ(lenient.best(), 1.0);
}

TEST(EarlyStopping, ResetForgetsHistoryButKeepsConfiguration) {
  frugal::early_stopping es;
  es.patience(1).min_delta(0.5);
  EXPECT_EQ(stopping_epoch(es, {1.0, 1.0}), 1);
  es.reset();
  EXPECT_FALSE(es.stopped());
  EXPECT_FALSE(es.best().has_value());
  EXPECT_EQ(es.min_delta(), 0.5);
  EXPECT_EQ(es.update(3.0, 7), early_stop_verdict::improved);
  EXPECT_EQ(es.best_epoch(), 7u);
}

TEST(EarlyStopping, BadInputIsRejectedAndChangesNothing) {
  frugal::early_stopping es;
  es.min_delta(0.25);
  EXPECT_EQ(error_of([&] { es.min_delta(-1); }), "frugal::early_stopping: min_delta must be finite and >= 0, got -1");
  EXPECT_EQ(error_of([&] { es.min_delta(std::nan("")); }),
            "frugal::early_stopping: min_delta must be finite and >= 0, got nan");
  EXPECT_EQ(error_of([&] { es.stopping_threshold(std::numeric_limits<double>::infinity()); }),
            "frugal::early_stopping: stopping_threshold must be finite, got inf");
  EXPECT_EQ(error_of([&] { es.divergence_threshold(std::nan("")); }),
            "frugal::early_stopping: divergence_threshold must be finite, got nan");
  EXPECT_EQ(error_of([] { frugal::early_stopping bad{""}; }), "frugal::early_stopping: metric must not be empty, got ''");
  EXPECT_EQ(es.min_delta(), 0.25);
  EXPECT_FALSE(es.stopping_threshold().has_value());
  EXPECT_FALSE(es.divergence_threshold().has_value());
}

TEST(EarlyStopping, BaselineNeverBeatenStopsAfterPatienceWithTheBestKnown) {
  frugal::early_stopping es;
  es.patience(3).baseline(0.5);
  EXPECT_EQ(es.baseline(), 0.5);
  // Each value improves on the best but none beats the baseline: patience runs out anyway.
  EXPECT_EQ(es.update(0.7, 0), early_stop_verdict::no_improvement);
  EXPECT_EQ(es.best(), 0.7);  // known from the first evaluation although 0.7 misses the baseline
  EXPECT_EQ(es.best_epoch(), 0u);
  EXPECT_EQ(es.wait(), 1u);
  EXPECT_EQ(es.message(), "val_loss 0.7 did not beat the baseline 0.5 (1 of 3 evaluations; best 0.7 (epoch 0))");
  EXPECT_EQ(es.update(0.65, 1), early_stop_verdict::no_improvement);
  EXPECT_EQ(es.update(0.61, 2), early_stop_verdict::stop_patience);
  EXPECT_TRUE(es.stopped());
  EXPECT_EQ(es.best(), 0.61);
  EXPECT_EQ(es.best_epoch(), 2u);
  EXPECT_EQ(es.wait(), 3u);
  EXPECT_EQ(es.message(), "val_loss did not beat the baseline 0.5 for 3 evaluations (patience 3); best 0.61 (epoch 2)");
}

TEST(EarlyStopping, BeatingTheBaselineLaterResetsThePatience) {
  frugal::early_stopping es;
  es.patience(3).baseline(0.5);
  EXPECT_EQ(es.update(0.7, 0), early_stop_verdict::no_improvement);
  EXPECT_EQ(es.update(0.6, 1), early_stop_verdict::no_improvement);
  EXPECT_EQ(es.wait(), 2u);
  EXPECT_EQ(es.update(0.45, 2), early_stop_verdict::improved);
  EXPECT_EQ(es.wait(), 0u);
  // Beaten once, the baseline is out of the way: plain patience from here on.
  EXPECT_EQ(es.update(0.46, 3), early_stop_verdict::no_improvement);
  EXPECT_EQ(es.message(), "val_loss 0.46 did not improve on 0.45 (epoch 2) (1 of 3 evaluations without improvement)");
  EXPECT_EQ(es.update(0.47, 4), early_stop_verdict::no_improvement);
  EXPECT_EQ(es.update(0.48, 5), early_stop_verdict::stop_patience);
  EXPECT_EQ(es.best(), 0.45);
  EXPECT_EQ(es.best_epoch(), 2u);
  EXPECT_EQ(es.message(), "val_loss did not improve on 0.45 (epoch 2) for 3 evaluations (patience 3)");
}

TEST(EarlyStopping, MinDeltaAppliesToTheBaselineToo) {
  // Min mode, baseline 0.5, min_delta 0.1: a value must be below 0.4 to beat the baseline.
  frugal::early_stopping es;
  es.patience(3).baseline(0.5).min_delta(0.1);
  EXPECT_EQ(es.update(0.7, 0), early_stop_verdict::no_improvement);
  EXPECT_EQ(es.update(0.45, 1), early_stop_verdict::no_improvement);  // beats the best by 0.25, not the baseline
  EXPECT_EQ(es.best(), 0.45);
  EXPECT_EQ(es.best_epoch(), 1u);
  EXPECT_EQ(es.wait(), 2u);
  EXPECT_EQ(es.update(0.3, 2), early_stop_verdict::improved);
  EXPECT_EQ(es.wait(), 0u);
  EXPECT_EQ(es.best(), 0.3);

  // Max mode, baseline 0.9, min_delta 0.01: a value must be above 0.91.
  frugal::early_stopping acc{"val_acc"};
  acc.mode(frugal::metric_mode::max).patience(2).baseline(0.9).min_delta(0.01);
  EXPECT_EQ(acc.update(0.905, 0), early_stop_verdict::no_improvement);
  EXPECT_EQ(acc.update(0.92, 1), early_stop_verdict::improved);
  EXPECT_EQ(acc.best(), 0.92);
  EXPECT_EQ(acc.best_epoch(), 1u);

  frugal::early_stopping acc2{"val_acc"};
  acc2.mode(frugal::metric_mode::max).patience(2).baseline(0.9).min_delta(0.01);
  EXPECT_EQ(stopping_epoch(acc2, {0.905, 0.908}), 1);
  EXPECT_EQ(acc2.message(), "val_acc did not beat the baseline 0.9 for 2 evaluations (patience 2); best 0.905 (epoch 0)");
}

TEST(EarlyStopping, WarmUpEpochsAreNotCounted) {
  frugal::early_stopping es;
  es.patience(1).start_from_epoch(3).stopping_threshold(0.1).divergence_threshold(10.0);
  EXPECT_EQ(es.start_from_epoch(), 3u);
  EXPECT_EQ(es.update(50.0, 0), early_stop_verdict::warming_up);  // above the divergence threshold
  EXPECT_EQ(es.update(0.05, 1), early_stop_verdict::warming_up);  // below the stopping threshold
  EXPECT_EQ(es.update(0.9, 2), early_stop_verdict::warming_up);
  EXPECT_EQ(es.message(), "val_loss 0.9 (warm-up: counted from epoch 3)");
  EXPECT_FALSE(es.stopped());
  EXPECT_FALSE(es.best().has_value());
  EXPECT_FALSE(es.best_epoch().has_value());
  EXPECT_EQ(es.wait(), 0u);
  EXPECT_EQ(es.updates(), 3u);
  EXPECT_EQ(es.last(), 0.9);
  // The first counted epoch records the best, however it compares with the warm-up values.
  EXPECT_EQ(es.update(0.95, 3), early_stop_verdict::improved);
  EXPECT_EQ(es.best(), 0.95);
  EXPECT_EQ(es.best_epoch(), 3u);
  EXPECT_EQ(es.update(0.96, 4), early_stop_verdict::stop_patience);
  EXPECT_EQ(es.message(), "val_loss did not improve on 0.95 (epoch 3) for 1 evaluations (patience 1)");
  EXPECT_EQ(frugal::to_string(early_stop_verdict::warming_up), "warming_up");
  EXPECT_FALSE(frugal::stops(early_stop_verdict::warming_up));
}

TEST(EarlyStopping, ThresholdsApplyFromTheFirstCountedEpoch) {
  frugal::early_stopping es;
  es.patience(100).start_from_epoch(2).divergence_threshold(10.0);
  EXPECT_EQ(stopping_epoch(es, {20.0, 20.0, 20.0}), 2);
  EXPECT_EQ(es.verdict(), early_stop_verdict::stop_diverged);
}

TEST(EarlyStopping, NonFiniteStillStopsDuringWarmUp) {
  frugal::early_stopping es;
  es.start_from_epoch(5);
  EXPECT_EQ(es.update(std::nan(""), 0), early_stop_verdict::stop_non_finite);
  EXPECT_TRUE(es.stopped());
  EXPECT_TRUE(std::isnan(*es.last()));
  EXPECT_EQ(es.message(), "val_loss is nan (not finite); best was nothing");
  frugal::early_stopping lenient;
  lenient.start_from_epoch(5).check_finite(false);
  EXPECT_EQ(lenient.update(std::nan(""), 0), early_stop_verdict::warming_up);
  EXPECT_EQ(lenient.wait(), 0u);
}

TEST(EarlyStopping, FirstCountedEpochRecordsTheBestBelowTheBaseline) {
  frugal::early_stopping es;
  es.patience(2).start_from_epoch(2).baseline(0.1);
  EXPECT_EQ(stopping_epoch(es, {0.5, 0.4, 0.6}), -1);
  EXPECT_EQ(es.verdict(), early_stop_verdict::no_improvement);
  EXPECT_EQ(es.best(), 0.6);
  EXPECT_EQ(es.best_epoch(), 2u);
  EXPECT_EQ(es.wait(), 1u);
}

TEST(EarlyStopping, LastIsTheLastValueFed) {
  frugal::early_stopping es;
  EXPECT_FALSE(es.last().has_value());
  EXPECT_EQ(es.message(), "val_loss: no evaluation yet");
  es.update(0.4, 0);
  es.update(0.7, 1);
  EXPECT_EQ(es.last(), 0.7);
  EXPECT_EQ(es.best(), 0.4);
  es.reset();
  EXPECT_FALSE(es.last().has_value());
}

TEST(EarlyStopping, BadBaselineIsRejectedAndChangesNothing) {
  frugal::early_stopping es;
  es.baseline(0.5);
  EXPECT_EQ(error_of([&] { es.baseline(std::nan("")); }), "frugal::early_stopping: baseline must be finite, got nan");
  EXPECT_EQ(error_of([&] { es.baseline(std::numeric_limits<double>::infinity()); }),
            "frugal::early_stopping: baseline must be finite, got inf");
  EXPECT_EQ(error_of([&] { es.baseline(-std::numeric_limits<double>::infinity()); }),
            "frugal::early_stopping: baseline must be finite, got -inf");
  EXPECT_EQ(es.baseline(), 0.5);
  frugal::early_stopping fresh;
  EXPECT_FALSE(fresh.baseline().has_value());
  EXPECT_EQ(fresh.start_from_epoch(), 0u);
}

TEST(EarlyStopping, ResetKeepsBaselineAndStartFromEpoch) {
  frugal::early_stopping es;
  es.patience(1).baseline(0.5).start_from_epoch(2);
  EXPECT_EQ(stopping_epoch(es, {1.0, 1.0, 0.9}), 2);  // the first counted one misses the baseline
  EXPECT_EQ(es.best(), 0.9);
  es.reset();
  EXPECT_FALSE(es.stopped());
  EXPECT_FALSE(es.best().has_value());
  EXPECT_EQ(es.wait(), 0u);
  EXPECT_EQ(es.baseline(), 0.5);
  EXPECT_EQ(es.start_from_epoch(), 2u);
  EXPECT_EQ(es.update(0.1, 1), early_stop_verdict::warming_up);
  EXPECT_EQ(es.update(0.7, 2), early_stop_verdict::stop_patience);  // still misses the baseline
  EXPECT_EQ(es.best(), 0.7);
}

}  // namespace
