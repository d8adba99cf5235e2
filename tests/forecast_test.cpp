// Cost models: the running mean and recent maximum of a step cost, forecasts at batch sizes seen
// and unseen (fixed + per-sample fit, its bounds), least-recently-used sizes, bad options.
#include <frugal/forecast.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/checks.hpp"

namespace {

using frugal_test::error_of;


TEST(CostStats, EmptyForecastsZero) {
  frugal::cost_stats s;
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.high(), 0);
  EXPECT_EQ(s.mean(), 0);
}

TEST(CostStats, ConstantCostIsForecastExactly) {
  frugal::cost_stats s;
  for (int i = 0; i < 100; ++i) s.add(1.5);
  EXPECT_EQ(s.high(), 1.5);
  EXPECT_EQ(s.mean(), 1.5);
  EXPECT_EQ(s.last(), 1.5);
  EXPECT_EQ(s.count(), 100u);
}

TEST(CostStats, HighIsTheMaximumOfTheWindowAndForgetsOlderSpikes) {
  frugal::cost_stats s{frugal::forecast_options{}.window(4)};
  s.add(1);
  s.add(9);  // a spike
  s.add(2);
  s.add(3);
  EXPECT_EQ(s.high(), 9);
  s.add(1);  // window {9, 2, 3, 1}
  EXPECT_EQ(s.high(), 9);
  s.add(1);  // window {2, 3, 1, 1}: the spike has left
  EXPECT_EQ(s.high(), 3);
  s.add(1);
  s.add(1);  // window {1, 1, 1, 1}
  EXPECT_EQ(s.high(), 1);
}

TEST(CostStats, HighMatchesABruteForceMaximumOnNoise) {
  const std::size_t window = 7;
  frugal::cost_stats s{frugal::forecast_options{}.window(window)};
  std::mt19937 rng(42);
  std::uniform_real_distribution<double> u(0.7, 1.3);
  std::vector<double> all;
  for (int i = 0; i < 500; ++i) {
    all.push_back(u(rng));
    s.add(all.back());
    double expected = 0;
    for (std::size_t j = all.size() > window ? all.size() - window : 0; j < all.size(); ++j)
      expected = std::max(expected, all[j]);
    ASSERT_EQ(s.high(), expected) << "after " << all.size() << " samples";
  }
}

TEST(CostStats, MeanIsAnExponentiallyWeightedAverage) {
  frugal::cost_stats s{frugal::forecast_options{}.alpha(0.5)};
  s.add(4);  // the first sample initialises
  EXPECT_EQ(s.mean(), 4);
  s.add(2);
  EXPECT_EQ(s.mean(), 3);
  s.add(3);
  EXPECT_EQ(s.mean(), 3);
}

TEST(CostStats, NegativeAndNonFiniteCostsCountAsZero) {
  frugal::cost_stats s;
  s.add(-5);
  s.add(std::numeric_limits<double>::quiet_NaN());
  s.add(std::numeric_limits<double>::infinity());
  EXPECT_EQ(s.high(), 0);
  EXPECT_EQ(s.mean(), 0);
}

TEST(ForecastOptions, BadValuesAreRejectedWithFieldAndValue) {
  frugal::forecast_options o;
  EXPECT_EQ(error_of([&] { o.window(0); }), "frugal::forecast_options: window must be in [1, 64], got 0");
  EXPECT_EQ(error_of([&] { o.window(65); }), "frugal::forecast_options: window must be in [1, 64], got 65");
  EXPECT_NE(error_of([&] { o.alpha(0); }).find("alpha must be in (0, 1]"), std::string::npos);
  EXPECT_NE(error_of([&] { o.alpha(std::nan("")); }).find("alpha"), std::string::npos);
  EXPECT_EQ(o.window(), 16u);  // unchanged by the failed calls
  EXPECT_EQ(o.alpha(), 0.2);
}

TEST(CostModel, UnknownBatchIsAPlainPerStepModel) {
  frugal::cost_model m;
  EXPECT_EQ(m.high(0), 0);
  m.add(0, 2.0);
  m.add(0, 3.0);
  EXPECT_EQ(m.high(0), 3.0);
  EXPECT_EQ(m.high(64), 3.0);  // nothing known about sizes: the history is the guess
  EXPECT_FALSE(m.has_fit());
}

TEST(CostModel, OneSizeScalesProportionally) {
  frugal::cost_model m;
  m.add(64, 6.4);
  EXPECT_DOUBLE_EQ(m.high(64), 6.4);
  EXPECT_DOUBLE_EQ(m.high(32), 3.2);
  EXPECT_DOUBLE_EQ(m.high(128), 12.8);
}

// peak = 1 MiB + batch * 64 KiB: the model of the memory test.
double peak_of(std::size_t batch) { return 1048576.0 + static_cast<double>(batch) * 65536.0; }

TEST(CostModel, TwoSizesFitFixedPlusPerSampleExactly) {
  frugal::cost_model m;
  m.add(64, peak_of(64));
  m.add(32, peak_of(32));
  ASSERT_TRUE(m.has_fit());
  for (std::size_t b : {1, 8, 16, 48, 100, 256}) EXPECT_NEAR(m.high(b), peak_of(b), 1e-6) << "batch " << b;
  // The largest batch under 4 MiB: 1 MiB + b * 64 KiB <= 4 MiB  =>  b <= 48.
  EXPECT_EQ(m.largest_batch_within(4.0 * 1048576, 1000), 48u);
  EXPECT_EQ(m.largest_batch_within(4.0 * 1048576, 20), 20u);
  EXPECT_EQ(m.largest_batch_within(1048576.0, 1000), 0u);  // even one sample does not fit
}

TEST(CostModel, SeenSizesUseTheirOwnHistory) {
  frugal::cost_model m;
  m.add(32, 1.0);
  m.add(64, 3.0);  // not linear through the origin: a fixed cost
  m.add(32, 1.2);
  EXPECT_EQ(m.high(32), 1.2);
  EXPECT_EQ(m.high(64), 3.0);
  EXPECT_EQ(m.mean(64), 3.0);
}

TEST(CostModel, ExtrapolationIsBoundedBelowAndAbove) {
  frugal::cost_model m;
  // A fit with a large negative intercept would predict ~0 for small batches; the bound is the
  // proportional share of the smallest size seen.
  m.add(10, 1.0);
  m.add(20, 10.0);
  EXPECT_DOUBLE_EQ(m.high(5), 0.5);
  // A fit decreasing with the batch (noise) is flattened; above the largest size, at least its cost.
  frugal::cost_model n;
  n.add(10, 5.0);
  n.add(20, 4.0);
  EXPECT_GE(n.high(40), 4.0);
  EXPECT_GE(n.high(40), n.high(20));
}

TEST(CostModel, ForgetsTheLeastRecentlyUsedSize) {
  frugal::cost_model m;
  for (std::size_t b = 1; b <= frugal::cost_model::max_sizes; ++b) m.add(b, static_cast<double>(b));
  m.add(1, 1.0);  // size 1 is now the most recent, size 2 the least
  m.add(100, 100.0);
  EXPECT_EQ(m.sizes(), frugal::cost_model::max_sizes);
  EXPECT_EQ(m.at(2), nullptr);
  ASSERT_NE(m.at(1), nullptr);
  ASSERT_NE(m.at(100), nullptr);
  EXPECT_EQ(m.last_batch(), 100u);
}

TEST(CostModel, ASizeRunLongAgoIsNeverEstimatedBelowWhatItsSizeNowImplies) {
  // Memory growing with time: batch 64 was run at the start, then only batch 32 for a while.
  frugal::cost_model m{frugal::forecast_options{}.window(4)};
  m.add(64, 5.0);
  for (int t = 0; t < 10; ++t) m.add(32, 3.0 + 0.1 * t);  // now 3.9 at 32
  ASSERT_NE(m.at(64), nullptr);
  EXPECT_FALSE(m.has_fit());                   // 64 is no longer recent
  EXPECT_DOUBLE_EQ(m.high(64), 2 * 3.9);       // the proportional scale of the recent size ...
  frugal::cost_model n{frugal::forecast_options{}.window(4)};
  n.add(64, 9.0);
  for (int t = 0; t < 10; ++t) n.add(32, 3.0);
  EXPECT_DOUBLE_EQ(n.high(64), 9.0);           // ... but not below the size's own history
  n.add(64, 5.0);                              // run again: recent, its own window rules
  EXPECT_DOUBLE_EQ(n.high(64), 9.0);
  EXPECT_TRUE(n.has_fit());
}

}  // namespace
