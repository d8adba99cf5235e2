// Early stopping, one scenario per parameter: patience, min_delta, mode, stopping threshold,
// divergence threshold, non-finite values; the best value and its epoch; bad input.
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

}  // namespace
