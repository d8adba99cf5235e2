// Cost models: the window statistics of a step cost (high, mean, median, spread) and the rule
// that drops one outlier, forecasts at batch sizes seen and unseen (fixed + per-sample fit, its
// bounds), least-recently-used sizes, bad options.
#include <frugal/forecast.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/checks.hpp"

namespace {

using frugal_test::error_of;

void add_all(frugal::cost_stats& s, const std::vector<double>& xs) {
  for (double x : xs) s.add(x);
}

TEST(CostStats, EmptyForecastsZero) {
  frugal::cost_stats s;
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.high(), 0);
  EXPECT_EQ(s.mean(), 0);
  EXPECT_EQ(s.median(), 0);
  EXPECT_EQ(s.spread(), 0);
  EXPECT_EQ(s.outliers(), 0u);
  EXPECT_FALSE(s.outlier_excluded());
}

TEST(CostStats, ConstantCostIsForecastExactly) {
  frugal::cost_stats s;
  for (int i = 0; i < 100; ++i) s.add(1.5);
  EXPECT_EQ(s.high(), 1.5);
  EXPECT_EQ(s.mean(), 1.5);
  EXPECT_EQ(s.median(), 1.5);
  EXPECT_EQ(s.spread(), 0);
  EXPECT_EQ(s.last(), 1.5);
  EXPECT_EQ(s.count(), 100u);
  EXPECT_EQ(s.outliers(), 0u);
}

TEST(CostStats, HighIsTheMaximumOfTheWindowAndForgetsOlderSpikes) {
  // The outlier rule off: high() is the plain maximum of the window.
  frugal::cost_stats s{frugal::forecast_options{}.window(4).outlier_ratio(std::numeric_limits<double>::infinity())};
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
  EXPECT_EQ(s.outliers(), 0u);
}

TEST(CostStats, HighMatchesABruteForceMaximumOnNoise) {
  // Noise within a factor of 2: never an outlier, high() is the window's maximum.
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
  EXPECT_EQ(s.outliers(), 0u);
}

// The statistics the outlier rule implies, computed the obvious way from the whole history.
struct reference {
  double high = 0, mean = 0, median = 0, spread = 0;
  bool excluded = false;
  std::size_t outlier = 0;  // index into the history, when excluded
};

reference reference_of(const std::vector<double>& all, std::size_t window, double ratio, std::size_t settle) {
  reference r;
  const std::size_t first = all.size() > window ? all.size() - window : 0;
  std::vector<double> w(all.begin() + static_cast<std::ptrdiff_t>(first), all.end());
  std::vector<double> sorted = w;
  std::sort(sorted.begin(), sorted.end());
  if (w.size() >= 2) {
    const double v = sorted[sorted.size() - 1], v2 = sorted[sorted.size() - 2];
    const std::size_t at = first + static_cast<std::size_t>(std::find(w.begin(), w.end(), v) - w.begin());
    const std::size_t after = all.size() - 1 - at;
    if (v > ratio * v2 && after >= (at == 0 ? 1 : settle)) {
      r.excluded = true;
      r.outlier = at;
      sorted.pop_back();
    }
  }
  std::vector<double> kept;
  for (std::size_t i = first; i < all.size(); ++i)
    if (!(r.excluded && i == r.outlier)) kept.push_back(all[i]);
  double sum = 0;
  for (double x : kept) sum += x;
  r.mean = sum / static_cast<double>(kept.size());
  r.high = sorted.back();
  const std::size_t m = sorted.size();
  r.median = m % 2 == 1 ? sorted[m / 2] : (sorted[m / 2 - 1] + sorted[m / 2]) / 2;
  r.spread = m >= 2 && r.median > 0 ? r.high / r.median - 1 : 0;
  return r;
}

TEST(CostStats, StatisticsMatchABruteForceReferenceWithSpikes) {
  for (std::size_t window : {2u, 5u, 16u}) {
    for (std::size_t settle : {1u, 3u}) {
      frugal::cost_stats s{frugal::forecast_options{}.window(window).outlier_settle(settle)};
      std::mt19937 rng(static_cast<unsigned>(window * 10 + settle));
      std::uniform_real_distribution<double> u(0.8, 1.2);
      std::bernoulli_distribution spike(0.08);
      std::vector<double> all;
      std::uint64_t counted = 0;
      std::size_t last_counted = std::numeric_limits<std::size_t>::max();
      for (int i = 0; i < 400; ++i) {
        all.push_back(u(rng) * (i == 0 || spike(rng) ? 6.0 : 1.0));
        s.add(all.back());
        const reference r = reference_of(all, window, 2, settle);
        if (r.excluded && r.outlier != last_counted) {
          ++counted;
          last_counted = r.outlier;
        }
        const std::string where = "window " + std::to_string(window) + ", settle " + std::to_string(settle) +
                                  ", after " + std::to_string(all.size()) + " samples";
        ASSERT_EQ(s.outlier_excluded(), r.excluded) << where;
        ASSERT_EQ(s.high(), r.high) << where;
        ASSERT_EQ(s.median(), r.median) << where;
        ASSERT_DOUBLE_EQ(s.mean(), r.mean) << where;
        ASSERT_DOUBLE_EQ(s.spread(), r.spread) << where;
        ASSERT_EQ(s.outliers(), counted) << where;
      }
      EXPECT_GT(s.outliers(), 0u) << "window " << window << ", settle " << settle;
    }
  }
}

TEST(CostStats, MeanAndMedianAreThoseOfTheWindow) {
  frugal::cost_stats s{frugal::forecast_options{}.window(4)};
  add_all(s, {4, 2, 3});
  EXPECT_EQ(s.mean(), 3);
  EXPECT_EQ(s.median(), 3);
  s.add(7);  // {4, 2, 3, 7}: 7 < 2 * 4, no outlier
  EXPECT_EQ(s.mean(), 4);
  EXPECT_EQ(s.median(), 3.5);  // the two middle ones, 3 and 4
  s.add(4);  // {2, 3, 7, 4}
  EXPECT_EQ(s.mean(), 4);
  EXPECT_EQ(s.median(), 3.5);
  s.add(1);  // {3, 7, 4, 1}
  EXPECT_EQ(s.mean(), 3.75);
  EXPECT_EQ(s.median(), 3.5);
  EXPECT_EQ(s.high(), 7);
}

TEST(CostStats, NegativeAndNonFiniteCostsCountAsZero) {
  frugal::cost_stats s;
  s.add(-5);
  s.add(std::numeric_limits<double>::quiet_NaN());
  s.add(std::numeric_limits<double>::infinity());
  EXPECT_EQ(s.high(), 0);
  EXPECT_EQ(s.mean(), 0);
  EXPECT_EQ(s.median(), 0);
  EXPECT_EQ(s.spread(), 0);
  EXPECT_EQ(s.last(), 0);
}

TEST(CostStats, AWarmUpStepIsExcludedAfterOneLaterStep) {
  frugal::cost_stats s;
  s.add(5);  // the first step ever: JIT, page faults, cold caches
  EXPECT_EQ(s.high(), 5);  // nothing yet says it was a one-off
  EXPECT_EQ(s.mean(), 5);
  EXPECT_FALSE(s.outlier_excluded());
  EXPECT_EQ(s.outliers(), 0u);
  s.add(0.9);
  EXPECT_EQ(s.high(), 0.9);
  EXPECT_EQ(s.mean(), 0.9);
  EXPECT_EQ(s.median(), 0.9);
  EXPECT_EQ(s.spread(), 0);  // one observation left
  EXPECT_EQ(s.last(), 0.9);
  EXPECT_EQ(s.count(), 2u);
  EXPECT_TRUE(s.outlier_excluded());
  EXPECT_EQ(s.outliers(), 1u);
  for (int i = 0; i < 14; ++i) s.add(0.9);  // the window still holds the 5
  EXPECT_EQ(s.high(), 0.9);
  EXPECT_TRUE(s.outlier_excluded());
  EXPECT_EQ(s.outliers(), 1u);  // counted once
  s.add(0.9);                   // the 5 leaves the window
  EXPECT_EQ(s.high(), 0.9);
  EXPECT_FALSE(s.outlier_excluded());
  EXPECT_EQ(s.outliers(), 1u);  // and stays counted
}

TEST(CostStats, AMidRunSpikeIsExcludedOnlyOnceItSettled) {
  frugal::cost_stats s;
  add_all(s, {1, 1, 1, 1, 5});
  EXPECT_EQ(s.high(), 5);  // the latest value is never an outlier
  s.add(1);
  s.add(1);
  EXPECT_EQ(s.high(), 5);  // two later steps: not yet settled (outlier_settle 3)
  EXPECT_FALSE(s.outlier_excluded());
  EXPECT_EQ(s.outliers(), 0u);
  s.add(1);
  EXPECT_EQ(s.high(), 1);
  EXPECT_EQ(s.mean(), 1);
  EXPECT_EQ(s.spread(), 0);
  EXPECT_TRUE(s.outlier_excluded());
  EXPECT_EQ(s.outliers(), 1u);
}

TEST(CostStats, SpikesRecurringWithinTheWindowAreKept) {
  // Every 3rd step costs 3: fewer than outlier_settle steps between spikes, never excluded.
  frugal::cost_stats s;
  for (int i = 1; i <= 100; ++i) {
    s.add(i % 3 == 0 ? 3 : 1);
    if (i >= 3) {
      ASSERT_EQ(s.high(), 3) << "step " << i;
    }
    ASSERT_FALSE(s.outlier_excluded()) << "step " << i;
  }
  EXPECT_EQ(s.outliers(), 0u);

  // Every 4th step costs 3: the first spike, alone in the window and followed by 3 cheap steps,
  // is excluded by the rule until the next spike ties it; from then on the window always holds
  // several 3s and none is ever excluded.
  frugal::cost_stats t;
  for (int i = 1; i <= 100; ++i) {
    t.add(i % 4 == 0 ? 3 : 1);
    if (i == 7) {
      EXPECT_TRUE(t.outlier_excluded());
      EXPECT_EQ(t.high(), 1);
    }
    if (i >= 8) {
      ASSERT_EQ(t.high(), 3) << "step " << i;
      ASSERT_FALSE(t.outlier_excluded()) << "step " << i;
    }
  }
  EXPECT_EQ(t.outliers(), 1u);
}

TEST(CostStats, ACostThatReallyGrowsShowsInHighAtOnce) {
  frugal::cost_stats s;
  for (int i = 0; i < 10; ++i) s.add(1);
  s.add(2);
  EXPECT_EQ(s.high(), 2);
  EXPECT_EQ(s.median(), 1);
  EXPECT_EQ(s.spread(), 1);  // 2 / 1 - 1
  EXPECT_DOUBLE_EQ(s.mean(), 12.0 / 11);
  for (int i = 0; i < 5; ++i) s.add(2);
  EXPECT_EQ(s.high(), 2);
  EXPECT_FALSE(s.outlier_excluded());
  // Even a jump far above the ratio is forecast at once, and kept while it lasts.
  s.add(10);
  EXPECT_EQ(s.high(), 10);
  for (int i = 0; i < 5; ++i) s.add(10);
  EXPECT_EQ(s.high(), 10);
  EXPECT_EQ(s.outliers(), 0u);
}

TEST(CostStats, TiedLargestValuesAreNeverOutliers) {
  frugal::cost_stats s;
  add_all(s, {5, 5, 1, 1, 1, 1});
  EXPECT_FALSE(s.outlier_excluded());
  EXPECT_EQ(s.outliers(), 0u);
  EXPECT_EQ(s.high(), 5);
  EXPECT_EQ(s.median(), 1);
  EXPECT_EQ(s.spread(), 4);
  EXPECT_DOUBLE_EQ(s.mean(), 14.0 / 6);
}

TEST(CostStats, SpreadIsHowFarTheHighLiesAboveTheMedian) {
  const auto spread_of = [](const std::vector<double>& xs) {
    frugal::cost_stats s;
    add_all(s, xs);
    return s.spread();
  };
  EXPECT_EQ(spread_of({}), 0);
  EXPECT_EQ(spread_of({3}), 0);        // a single observation
  EXPECT_EQ(spread_of({2, 2, 2, 2}), 0);
  EXPECT_EQ(spread_of({1, 1, 1, 2}), 1);   // median 1
  EXPECT_EQ(spread_of({1, 2, 4}), 1);      // median 2
  EXPECT_EQ(spread_of({1, 1, 3, 3}), 0.5);  // median 2
  EXPECT_EQ(spread_of({4, 4, 4, 5}), 0.25);
  EXPECT_EQ(spread_of({0, 0, 1}), 0);  // a zero median
  EXPECT_EQ(spread_of({8, 1, 1, 1}), 0);  // the warm-up 8 is excluded: {1, 1, 1}
}

TEST(CostStats, TheWindowEvictsAnExcludedOutlierNormally) {
  frugal::cost_stats s{frugal::forecast_options{}.window(4)};
  add_all(s, {1, 9, 1, 1, 1});  // window {9, 1, 1, 1}: the 9 has settled
  EXPECT_TRUE(s.outlier_excluded());
  EXPECT_EQ(s.high(), 1);
  EXPECT_EQ(s.outliers(), 1u);
  s.add(2);  // window {1, 1, 1, 2}: the 9 has left
  EXPECT_FALSE(s.outlier_excluded());
  EXPECT_EQ(s.high(), 2);
  EXPECT_EQ(s.mean(), 1.25);
  EXPECT_EQ(s.median(), 1);
  EXPECT_EQ(s.spread(), 1);
  EXPECT_EQ(s.outliers(), 1u);
  // A spike that leaves before it settles is never excluded.
  frugal::cost_stats t{frugal::forecast_options{}.window(2)};
  add_all(t, {1, 1, 5, 1});  // window {5, 1}: one step after it
  EXPECT_EQ(t.high(), 5);
  t.add(1);  // window {1, 1}
  EXPECT_EQ(t.high(), 1);
  EXPECT_EQ(t.outliers(), 0u);
}

TEST(CostStats, OutlierOptionsChangeTheRule) {
  const double inf = std::numeric_limits<double>::infinity();
  frugal::cost_stats off{frugal::forecast_options{}.outlier_ratio(inf)};
  add_all(off, {5, 0.9, 0.9});
  EXPECT_EQ(off.high(), 5);  // infinity disables the rule
  EXPECT_EQ(off.outliers(), 0u);
  frugal::cost_stats off_zero{frugal::forecast_options{}.outlier_ratio(inf)};
  add_all(off_zero, {5, 0, 0});
  EXPECT_EQ(off_zero.high(), 5);  // even above a zero second largest

  frugal::cost_stats wide{frugal::forecast_options{}.outlier_ratio(4)};
  add_all(wide, {1, 1, 1, 3, 1, 1, 1});
  EXPECT_EQ(wide.high(), 3);  // 3 is not above 4 times 1
  wide.add(5);
  add_all(wide, {1, 1, 1});
  EXPECT_EQ(wide.high(), 5);  // 5 is not above 4 times 3: kept once settled
  EXPECT_FALSE(wide.outlier_excluded());
  EXPECT_EQ(wide.outliers(), 0u);

  frugal::cost_stats quick{frugal::forecast_options{}.outlier_settle(1)};
  add_all(quick, {1, 1, 5, 1});
  EXPECT_EQ(quick.high(), 1);  // one later step settles it
  EXPECT_EQ(quick.outliers(), 1u);

  frugal::cost_stats slow{frugal::forecast_options{}.outlier_settle(5)};
  add_all(slow, {5, 1});
  EXPECT_EQ(slow.high(), 1);  // a warm-up step settles after one step whatever outlier_settle says
}

TEST(ForecastOptions, BadValuesAreRejectedWithFieldAndValue) {
  frugal::forecast_options o;
  EXPECT_EQ(error_of([&] { o.window(0); }), "frugal::forecast_options: window must be in [1, 64], got 0");
  EXPECT_EQ(error_of([&] { o.window(65); }), "frugal::forecast_options: window must be in [1, 64], got 65");
  EXPECT_EQ(error_of([&] { o.outlier_ratio(1); }), "frugal::forecast_options: outlier_ratio must be > 1, got 1");
  EXPECT_EQ(error_of([&] { o.outlier_ratio(0.5); }), "frugal::forecast_options: outlier_ratio must be > 1, got 0.5");
  EXPECT_EQ(error_of([&] { o.outlier_ratio(std::nan("")); }),
            "frugal::forecast_options: outlier_ratio must be > 1, got nan");
  EXPECT_EQ(error_of([&] { o.outlier_ratio(-std::numeric_limits<double>::infinity()); }),
            "frugal::forecast_options: outlier_ratio must be > 1, got -inf");
  EXPECT_EQ(error_of([&] { o.outlier_settle(0); }),
            "frugal::forecast_options: outlier_settle must be in [1, 64], got 0");
  EXPECT_EQ(error_of([&] { o.outlier_settle(65); }),
            "frugal::forecast_options: outlier_settle must be in [1, 64], got 65");
  // Unchanged by the failed calls.
  EXPECT_EQ(o.window(), 16u);
  EXPECT_EQ(o.outlier_ratio(), 2);
  EXPECT_EQ(o.outlier_settle(), 3u);
  // The bounds themselves are accepted.
  o.outlier_ratio(std::numeric_limits<double>::infinity()).outlier_settle(64).window(64);
  EXPECT_EQ(o.outlier_ratio(), std::numeric_limits<double>::infinity());
  EXPECT_EQ(o.outlier_settle(), 64u);
  o.outlier_ratio(1.5).outlier_settle(1);
  EXPECT_EQ(o.outlier_ratio(), 1.5);
  EXPECT_EQ(o.outlier_settle(), 1u);
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

TEST(CostModel, AWarmUpStepDoesNotDrivePlanning) {
  // The case that motivated the outlier rule: 5 s, then 0.9 s steps.
  frugal::cost_model m;
  m.add(32, 5.0);
  m.add(32, 0.9);
  EXPECT_EQ(m.high(32), 0.9);
  EXPECT_DOUBLE_EQ(100 * m.mean(32), 90.0);  // the planned cost of 100 steps
  EXPECT_EQ(m.at(32)->outliers(), 1u);
}

TEST(CostModel, MedianFollowsTheMeanEstimationPath) {
  frugal::cost_model m;
  for (double c : {1.0, 1.0, 1.0, 5.0}) m.add(10, c);  // the 5 is the latest: kept
  for (double c : {2.0, 2.0, 2.0}) m.add(20, c);
  EXPECT_EQ(m.median(10), 1.0);
  EXPECT_EQ(m.mean(10), 2.0);
  EXPECT_EQ(m.high(10), 5.0);
  EXPECT_EQ(m.median(20), 2.0);
  // Unseen sizes: a line through the medians (10, 1), (20, 2); the means (10, 2), (20, 2) are flat.
  EXPECT_DOUBLE_EQ(m.median(30), 3.0);
  EXPECT_DOUBLE_EQ(m.median(15), 1.5);
  EXPECT_DOUBLE_EQ(m.mean(30), 2.0);
  frugal::cost_model empty;
  EXPECT_EQ(empty.median(10), 0);
}

TEST(CostModel, SpreadIsThatOfTheSizeOrOfTheSizeRunLast) {
  frugal::cost_model m{frugal::forecast_options{}.window(4)};
  EXPECT_EQ(m.spread(32), 0);  // empty
  for (double c : {1.0, 1.0, 1.0, 2.0}) m.add(32, c);
  m.add(64, 2.0);
  m.add(64, 2.0);
  EXPECT_EQ(m.spread(32), 1);   // its own: run 2 observations ago, within the window
  EXPECT_EQ(m.spread(64), 0);   // its own
  EXPECT_EQ(m.spread(128), 0);  // never run: that of 64, run last
  EXPECT_EQ(m.spread(0), 0);
  m.add(32, 2.0);  // 32's window {1, 1, 2, 2}: median 1.5
  EXPECT_DOUBLE_EQ(m.spread(128), 2.0 / 1.5 - 1);
  EXPECT_DOUBLE_EQ(m.spread(32), 2.0 / 1.5 - 1);
  for (int i = 0; i < 4; ++i) m.add(64, 2.0);  // 32 is no longer recent
  EXPECT_EQ(m.spread(32), 0);                  // that of 64
  EXPECT_GT(m.at(32)->spread(), 0);
}

TEST(CostModel, ClearForgetsEveryObservationButKeepsTheOptions) {
  frugal::cost_model m{frugal::forecast_options{}.window(2).outlier_ratio(std::numeric_limits<double>::infinity())};
  m.add(32, 1.0);
  m.add(64, 3.0);
  m.add(0, 9.0);
  m.clear();
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.sizes(), 0u);
  EXPECT_EQ(m.at(32), nullptr);
  EXPECT_EQ(m.at(0), nullptr);
  EXPECT_EQ(m.last_batch(), 0u);
  EXPECT_EQ(m.high(32), 0);
  EXPECT_EQ(m.mean(32), 0);
  EXPECT_EQ(m.median(32), 0);
  EXPECT_EQ(m.spread(32), 0);
  EXPECT_FALSE(m.has_fit());
  // Options kept: a window of 2 with the outlier rule off.
  m.add(16, 8.0);
  m.add(16, 1.0);
  EXPECT_EQ(m.high(16), 8.0);  // not excluded as a warm-up step
  m.add(16, 1.0);
  EXPECT_EQ(m.high(16), 1.0);  // left the window of 2
  EXPECT_EQ(m.at(16)->count(), 3u);
  EXPECT_EQ(m.last_batch(), 16u);
  EXPECT_EQ(m.high(32), 2.0);  // proportional to the only size known now
}

// A change that scaled the costs (a pruning measured to make a step 0.5x as costly): the
// observations before it are scaled, those after it kept, and the statistics follow.
TEST(CostStats, ScaleBeforeScalesOnlyTheEarlierObservations) {
  frugal::cost_stats s;
  add_all(s, {4, 4, 2, 2, 2});  // the change came before observation 2
  EXPECT_EQ(s.high(), 4);
  EXPECT_EQ(s.spread(), 1);  // the fall reads as spread
  s.scale_before(2, 0.5);
  EXPECT_EQ(s.high(), 2);
  EXPECT_EQ(s.mean(), 2);
  EXPECT_EQ(s.spread(), 0);
  EXPECT_EQ(s.last(), 2);
  s.scale_before(5, std::numeric_limits<double>::quiet_NaN());  // refused: nothing changes
  s.scale_before(5, -1);
  EXPECT_EQ(s.mean(), 2);
  frugal::cost_stats empty;
  empty.scale_before(3, 0.5);
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.high(), 0);
}

TEST(CostModel, ScaleAllButLastKeepsTheRecentSteps) {
  frugal::cost_model m;
  for (int i = 0; i < 4; ++i) m.add(64, 2.0);  // an old size: all before the change
  for (int i = 0; i < 4; ++i) m.add(128, 4.0);
  for (int i = 0; i < 2; ++i) m.add(128, 2.0);  // after the change: half the cost
  m.scale_all_but_last(2, 0.5);
  EXPECT_EQ(m.at(64)->high(), 1.0);
  EXPECT_EQ(m.at(128)->high(), 2.0);
  EXPECT_EQ(m.at(128)->count(), 6u);
  EXPECT_EQ(m.at(128)->spread(), 0);
}

}  // namespace
