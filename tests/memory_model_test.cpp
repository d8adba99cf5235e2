// frugal::memory_model on exact synthetic peaks (no allocation hooks): the bound from one size,
// the line through sizes 2x apart, the monotone envelope, the headroom on the rise only, the
// window of peaks per size and the staleness of old sizes, held-over runs, largest_within and
// bad input. Then the controller's batch knob sized by that model on synthetic peaks (no hooks:
// the peaks are the step's peak_bytes, the base hint its start_bytes): growth within the room
// above the base, a margin on the rise only, and the bound's 16x limit.
#include <frugal/controller.hpp>
#include <frugal/memory_model.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/checks.hpp"

namespace {

using frugal_test::error_of;

constexpr double KiB = 1024.0;
constexpr double MiB = 1024.0 * 1024.0;

// ---------------------------------------------------------------------------------------------
// The model alone.

TEST(MemoryModel, AnEmptyModelForecastsNothingAndFitsNothing) {
  const frugal::memory_model m;
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.window(), 16u);  // the default window
  EXPECT_EQ(m.sizes(), 0u);
  EXPECT_FALSE(m.fitted());
  EXPECT_EQ(m.smallest_size(), 0u);
  EXPECT_EQ(m.largest_size(), 0u);
  EXPECT_EQ(m.last_size(), 0u);
  EXPECT_EQ(m.last_run(), 0u);
  EXPECT_EQ(m.peak(1), 0);
  EXPECT_EQ(m.peak(1000), 0);
  EXPECT_EQ(m.forecast(1000, 0.5), 0);
  EXPECT_EQ(m.base(), 0);
  EXPECT_EQ(m.rise_per_unit(), 0);
  EXPECT_EQ(m.spread(), 0);
  EXPECT_FALSE(m.measured(1).has_value());
  // Nothing is known, so nothing is said to fit, however large the limit.
  EXPECT_EQ(m.largest_within(1e18, 0, 1, 100), 0u);
}

// One size s = 16 at peak P = L + 16 * 4096, the heap at L when it started (the base hint):
// at or below 16 the measured peak bounds; above, L + (P - L) * n / 16.
TEST(MemoryModel, OneSizeBoundsSmallerSizesByItsPeakAndLargerOnesProportionallyAboveTheHint) {
  constexpr double L = 1'000'000;
  constexpr double P = L + 16 * 4096.0;  // 1'065'536
  frugal::memory_model m;
  EXPECT_TRUE(m.add(16, P, L));
  EXPECT_FALSE(m.empty());
  EXPECT_EQ(m.sizes(), 1u);
  EXPECT_FALSE(m.fitted());
  EXPECT_EQ(m.last_size(), 16u);
  EXPECT_EQ(m.smallest_size(), 16u);
  EXPECT_EQ(m.largest_size(), 16u);
  EXPECT_EQ(m.measured(16), std::optional<double>(P));
  EXPECT_FALSE(m.measured(8).has_value());
  EXPECT_EQ(m.base(), L);
  EXPECT_EQ(m.rise_per_unit(), 4096.0);  // (P - L) / 16
  EXPECT_EQ(m.peak(1), P);
  EXPECT_EQ(m.peak(8), P);
  EXPECT_EQ(m.peak(16), P);
  EXPECT_EQ(m.peak(17), L + 17 * 4096.0);
  EXPECT_EQ(m.peak(32), L + 32 * 4096.0);  // 1'131'072
  // Headroom 0.5 scales the rise above L: L + 1.5 * 65536.
  EXPECT_EQ(m.forecast(8, 0.5), L + 1.5 * 16 * 4096.0);

  // Without the hint the whole peak counts as grown by the size: a line from the origin.
  frugal::memory_model no_hint;
  EXPECT_TRUE(no_hint.add(16, P));
  EXPECT_EQ(no_hint.base(), 0);
  EXPECT_EQ(no_hint.rise_per_unit(), P / 16);  // 66'596
  EXPECT_EQ(no_hint.peak(32), 2 * P);
  EXPECT_EQ(no_hint.peak(16), P);
}

// Sizes 1 and 16 (16x apart) at base + r * n: the line, exact.
TEST(MemoryModel, SizesTwiceApartOrMoreGiveTheLine) {
  constexpr double base = 5'000'000, r = 3000;
  frugal::memory_model m;
  ASSERT_TRUE(m.add(1, base + r * 1));
  ASSERT_TRUE(m.add(16, base + r * 16));
  EXPECT_TRUE(m.fitted());
  EXPECT_EQ(m.sizes(), 2u);
  EXPECT_NEAR(m.base(), base, 1e-6);
  EXPECT_NEAR(m.rise_per_unit(), r, 1e-6);
  EXPECT_NEAR(m.peak(100), base + r * 100, 1e-6);  // 5'300'000
  EXPECT_NEAR(m.peak(8), base + r * 8, 1e-6);      // the line, above the peak measured at 1
  // Two sizes exactly line_span (2) apart are enough.
  frugal::memory_model two;
  ASSERT_TRUE(two.add(8, base + r * 8));
  ASSERT_TRUE(two.add(16, base + r * 16));
  EXPECT_TRUE(two.fitted());
  EXPECT_NEAR(two.rise_per_unit(), r, 1e-6);
}

// 88 (an epoch's short last batch) and 128 are closer than 2x: no line, the bound. peak(100) is
// the peak of the smallest measured size >= 100 (128); peak(200) the bound from 128 over the hint:
// 1'000'000 + (1'128'000 - 1'000'000) * 200 / 128 = 1'200'000.
TEST(MemoryModel, SizesCloserThanTwiceApartGiveNoLine) {
  frugal::memory_model m;
  ASSERT_TRUE(m.add(88, 1'088'000, 1'000'000));
  ASSERT_TRUE(m.add(128, 1'128'000, 1'000'000));
  EXPECT_EQ(m.sizes(), 2u);
  EXPECT_FALSE(m.fitted());
  EXPECT_EQ(m.base(), 1'000'000);
  EXPECT_EQ(m.rise_per_unit(), 1000);  // (1'128'000 - 1'000'000) / 128
  EXPECT_EQ(m.peak(50), 1'088'000);    // the smallest measured size >= 50 is 88
  EXPECT_EQ(m.peak(88), 1'088'000);
  EXPECT_EQ(m.peak(100), 1'128'000);   // ... >= 100 is 128
  EXPECT_EQ(m.peak(128), 1'128'000);
  EXPECT_EQ(m.peak(200), 1'200'000);
}

// The forecast with headroom h is base + (1 + h) * (peak(n) - base), not (1 + h) * peak(n).
TEST(MemoryModel, HeadroomScalesTheRiseNotTheBase) {
  frugal::memory_model m;
  ASSERT_TRUE(m.add(1, 5'003'000));
  ASSERT_TRUE(m.add(16, 5'048'000));
  // base 5'000'000, peak(100) 5'300'000: 5'000'000 + 1.1 * 300'000 = 5'330'000 (not 5'830'000).
  EXPECT_NEAR(m.forecast(100, 0.1), m.base() + 1.1 * (m.peak(100) - m.base()), 1e-6);
  EXPECT_NEAR(m.forecast(100, 0.1), 5'330'000, 1e-6);
  EXPECT_NEAR(m.forecast(100, 0), m.peak(100), 1e-6);
  EXPECT_NEAR(m.forecast(100, -1), m.peak(100), 1e-6);  // a negative headroom counts as 0
}

// Sizes 4, 8, 16 at 1000, 5000, 3000: least squares gives 2000 + 107.14 n, which at 10 and 16
// (3071, 3714) is below the 5000 measured at 8. A larger batch does not need less: the
// envelope holds it at 5000, until the line rises above (n >= 29: 2000 + 107.14 * 29 = 5107).
TEST(MemoryModel, TheLineIsRaisedToAPeakMeasuredAtASmallerSize) {
  frugal::memory_model m;
  ASSERT_TRUE(m.add(4, 1000));
  ASSERT_TRUE(m.add(8, 5000));
  ASSERT_TRUE(m.add(16, 3000));
  ASSERT_TRUE(m.fitted());
  EXPECT_NEAR(m.rise_per_unit(), 24000.0 / 224.0, 1e-9);  // (3 * 92000 - 28 * 9000) / (3 * 336 - 28^2)
  EXPECT_NEAR(m.base(), 2000, 1e-9);                      // (9000 - slope * 28) / 3
  EXPECT_NEAR(m.peak(4), 2000 + 4 * 24000.0 / 224.0, 1e-9);  // the line (2428.6) over the 1000 at 4
  EXPECT_EQ(m.peak(8), 5000);
  EXPECT_EQ(m.peak(10), 5000);
  EXPECT_EQ(m.peak(16), 5000);  // not the 3000 measured there
  EXPECT_NEAR(m.peak(28), 5000, 1e-9);  // 2000 + 107.14 * 28 = 5000: line and peak meet
  EXPECT_NEAR(m.peak(40), 2000 + 40 * 24000.0 / 224.0, 1e-9);
  for (std::size_t n = 1; n < 64; ++n) EXPECT_LE(m.peak(n), m.peak(n + 1)) << n;
}

// Window 4: a size keeps the largest of its last 4 peaks; spread() = (largest - median) /
// (median - base) while it has fewer than 4, 0 once it has 4 (its largest is a high quantile).
TEST(MemoryModel, EachSizeKeepsItsLargestRecentPeakAndSpreadReadsTheRest) {
  frugal::memory_model m(4);
  EXPECT_EQ(m.window(), 4u);
  ASSERT_TRUE(m.add(32, 150, 50));
  EXPECT_EQ(m.spread(), 0);  // one peak: largest == median
  ASSERT_TRUE(m.add(32, 170, 50));
  EXPECT_DOUBLE_EQ(m.spread(), 10.0 / 110.0);  // median 160 (of 2), base 50
  ASSERT_TRUE(m.add(32, 160, 50));
  EXPECT_EQ(m.measured(32), std::optional<double>(170));
  EXPECT_EQ(m.base(), 50);
  EXPECT_DOUBLE_EQ(m.spread(), (170.0 - 160.0) / (160.0 - 50.0));  // median of {150, 160, 170}
  EXPECT_EQ(m.peak(32), 170);
  ASSERT_TRUE(m.add(32, 155, 50));
  EXPECT_EQ(m.spread(), 0);  // the window is full
  EXPECT_EQ(m.measured(32), std::optional<double>(170));
  // Four more runs push every old peak out: 170 is forgotten.
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(m.add(32, 100, 50));
  EXPECT_EQ(m.measured(32), std::optional<double>(100));
  EXPECT_EQ(m.sizes(), 1u);  // the same size, one entry
}

// Window 4: a size not run within the last 4 measurements is stale: out of sizes(), of the
// line, of the envelope; run again, it counts again.
TEST(MemoryModel, SizesNotMeasuredWithinTheWindowDropOut) {
  frugal::memory_model m(4);
  ASSERT_TRUE(m.add(8, 1080, 1000));   // tick 1
  ASSERT_TRUE(m.add(32, 1320, 1000));  // tick 2: the line 1000 + 10 n
  EXPECT_TRUE(m.fitted());
  EXPECT_NEAR(m.base(), 1000, 1e-9);
  EXPECT_NEAR(m.rise_per_unit(), 10, 1e-9);
  ASSERT_TRUE(m.add(32, 1320, 1000));  // tick 3
  ASSERT_TRUE(m.add(32, 1320, 1000));  // tick 4: 8 was measured 3 runs ago, still recent
  EXPECT_EQ(m.sizes(), 2u);
  EXPECT_TRUE(m.fitted());
  EXPECT_EQ(m.peak(8), 1080);
  ASSERT_TRUE(m.add(32, 1320, 1000));  // tick 5: 8 is 4 runs old, stale
  EXPECT_EQ(m.sizes(), 1u);
  EXPECT_FALSE(m.fitted());
  EXPECT_FALSE(m.measured(8).has_value());
  EXPECT_EQ(m.smallest_size(), 32u);
  EXPECT_EQ(m.peak(8), 1320);  // bounded by 32's peak, 8's own is gone
  EXPECT_EQ(m.base(), 1000);   // the hint
  EXPECT_EQ(m.rise_per_unit(), 10);
  // Run again (8 < 32: the first run is held over, the next counts), 8 counts again.
  EXPECT_FALSE(m.add(8, 1080, 1000));
  EXPECT_TRUE(m.add(8, 1080, 1000));
  EXPECT_EQ(m.sizes(), 2u);
  EXPECT_TRUE(m.fitted());
  EXPECT_EQ(m.peak(8), 1080);
}

// A run at a size smaller than the run before may have started on the larger size's buffers:
// nothing is recorded (peak nor hint); the next run at that size is.
TEST(MemoryModel, ARunSmallerThanTheOneBeforeIsNotRecorded) {
  frugal::memory_model m;
  ASSERT_TRUE(m.add(64, 5000, 1000));
  EXPECT_FALSE(m.add(16, 2000, 500));
  EXPECT_EQ(m.last_run(), 16u);
  EXPECT_EQ(m.last_size(), 64u);  // the size run last *recorded*
  EXPECT_FALSE(m.measured(16).has_value());
  EXPECT_EQ(m.sizes(), 1u);
  EXPECT_EQ(m.base(), 1000);  // the refused run's start (500) is not the hint
  EXPECT_TRUE(m.add(16, 2000, 1000));
  EXPECT_EQ(m.measured(16), std::optional<double>(2000));
  EXPECT_EQ(m.sizes(), 2u);
  EXPECT_TRUE(m.add(16, 2100, 1000));  // the same size again: not smaller, recorded
  EXPECT_EQ(m.measured(16), std::optional<double>(2100));
}

// A model keeps at most max_sizes (8) sizes; a ninth replaces the least recently run.
TEST(MemoryModel, ANinthSizeReplacesTheLeastRecentlyRun) {
  frugal::memory_model m(64);
  for (std::size_t s = 1; s <= 9; ++s) ASSERT_TRUE(m.add(s, 1000.0 + static_cast<double>(s)));
  EXPECT_EQ(m.sizes(), 8u);
  EXPECT_FALSE(m.measured(1).has_value());
  EXPECT_EQ(m.smallest_size(), 2u);
  EXPECT_EQ(m.measured(9), std::optional<double>(1009));
}

// forecast(n) = 5'000'000 + 3000 n: the largest n within 5'300'000 is 100, exactly at the limit
// (a forecast equal to the limit fits); one byte less, 99. With headroom 0.5: 5e6 + 4500 n,
// 66 (66.67).
TEST(MemoryModel, LargestWithinFindsTheExactBoundary) {
  frugal::memory_model m;
  ASSERT_TRUE(m.add(1, 5'003'000));
  ASSERT_TRUE(m.add(16, 5'048'000));
  ASSERT_EQ(m.forecast(100, 0), 5'300'000);  // exact in doubles: the boundary test means something
  EXPECT_EQ(m.largest_within(5'300'000, 0, 1, 1000), 100u);
  EXPECT_EQ(m.largest_within(5'299'999, 0, 1, 1000), 99u);
  EXPECT_EQ(m.largest_within(5'300'000, 0.5, 1, 1000), 66u);
  EXPECT_EQ(m.largest_within(1e18, 0, 1, 50), 50u);      // hi caps
  EXPECT_EQ(m.largest_within(5'300'000, 0, 40, 60), 60u);
  EXPECT_EQ(m.largest_within(5'300'000, 0, 101, 200), 0u);  // lo itself is over
  EXPECT_EQ(m.largest_within(5'002'999, 0, 1, 1000), 0u);   // even 1 (5'003'000) is over
  EXPECT_EQ(m.largest_within(1e18, 0, 0, 10), 0u);          // lo 0: no size
  EXPECT_EQ(m.largest_within(1e18, 0, 10, 9), 0u);          // hi < lo
  // The binary search agrees with a scan, at limits from below size 1's forecast to above
  // size 1000's (5e6 + 1.2 * 3000 * 1000 = 8.6e6).
  for (double limit = 5'002'000; limit <= 9'000'000; limit = limit * 1.0005 + 1) {
    std::size_t scan = 0;
    for (std::size_t n = 1; n <= 1000; ++n)
      if (m.forecast(n, 0.2) <= limit) scan = n;
    ASSERT_EQ(m.largest_within(limit, 0.2, 1, 1000), scan) << limit;
  }
}

TEST(MemoryModel, BadInputIsRefusedWithWhatWasWrongAndChangesNothing) {
  EXPECT_EQ(error_of([] { frugal::memory_model m(0); }), "frugal::memory_model: window must be in [1, 64], got 0");
  EXPECT_EQ(error_of([] { frugal::memory_model m(65); }), "frugal::memory_model: window must be in [1, 64], got 65");
  EXPECT_EQ(frugal::memory_model(64).window(), 64u);
  EXPECT_EQ(frugal::memory_model(1).window(), 1u);

  frugal::memory_model m;
  EXPECT_EQ(error_of([&] { m.add(0, 100); }), "frugal::memory_model::add: size must be > 0, got 0");
  EXPECT_EQ(error_of([&] { m.add(4, -1); }), "frugal::memory_model::add: peak must be finite and >= 0, got -1");
  EXPECT_EQ(error_of([&] { m.add(4, std::nan("")); }), "frugal::memory_model::add: peak must be finite and >= 0, got nan");
  EXPECT_EQ(error_of([&] { m.add(4, std::numeric_limits<double>::infinity()); }),
            "frugal::memory_model::add: peak must be finite and >= 0, got inf");
  EXPECT_EQ(error_of([&] { m.add(4, 100, -5); }), "frugal::memory_model::add: start must be finite and >= 0, got -5");
  EXPECT_EQ(error_of([&] { m.add(4, 100, std::nan("")); }),
            "frugal::memory_model::add: start must be finite and >= 0, got nan");
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.last_run(), 0u);  // a refused add is no run either
  EXPECT_TRUE(m.add(1, 100));   // so a run at 1 is not "smaller than the one before"
}

TEST(MemoryModel, ClearForgetsEverything) {
  frugal::memory_model m;
  ASSERT_TRUE(m.add(8, 5000, 1000));
  ASSERT_TRUE(m.add(64, 9000, 1000));
  ASSERT_TRUE(m.fitted());
  m.clear();
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.sizes(), 0u);
  EXPECT_FALSE(m.fitted());
  EXPECT_EQ(m.last_run(), 0u);
  EXPECT_EQ(m.peak(64), 0);
  EXPECT_EQ(m.base(), 0);
  EXPECT_FALSE(m.measured(64).has_value());
  // A run smaller than the last before clear() is recorded, and the old hint (1000) is gone.
  ASSERT_TRUE(m.add(4, 3000, 2000));
  EXPECT_EQ(m.base(), 2000);
  EXPECT_EQ(m.rise_per_unit(), 250);  // (3000 - 2000) / 4
  EXPECT_EQ(m.window(), 16u);         // the window is kept
}

// ---------------------------------------------------------------------------------------------
// The controller's batch knob on that model, synthetic peaks (no hooks: nothing is measured by
// the controller itself, so no probe at the smallest batch and no resolution added).

// peak(b) = 50 MiB resident + b * 16 KiB, limit 52 MiB: the room above the base is 2 MiB, 128
// fits exactly. After grow_after (3) steps the batch grows to what fits in 90 % of the room
// above the base: 16 KiB * b <= 0.9 * 2 MiB = 1.8 MiB, b <= 115.2 -> 115 (0.9 * 52 MiB =
// 46.8 MiB would be below the base: nothing would grow). It then stays (the fitted line gives
// 115 again), and no step crosses the limit.
TEST(ControllerMemorySynthetic, TheBatchGrowsWithinTheHeadroomOfTheRoomAboveTheBase) {
  frugal::budget run{"train", frugal::limits{}.peak_bytes(52 * MiB)};
  frugal::controller ctl{run, frugal::controller_options{}
                                  .batch_size(32)
                                  .batch_limits(1, 256)
                                  .gradient_accumulation(false)
                                  .grow_after(3)
                                  .grow_headroom(0.9)};
  EXPECT_FALSE(ctl.probing_memory());  // no hooks: nothing measured, no probe
  std::vector<std::size_t> sizes;
  std::vector<std::string> grow_reasons;
  for (int t = 0; t < 12 && !ctl.should_stop(); ++t) {
    const std::size_t b = ctl.batch_size();
    sizes.push_back(b);
    const double peak = 50 * MiB + static_cast<double>(b) * 16 * KiB;
    ASSERT_LE(peak, 52 * MiB) << "step " << t << " at batch " << b;
    const frugal::decision d = ctl.end_step(frugal::step{}.samples(b).peak_bytes(peak).start_bytes(50 * MiB));
    EXPECT_FALSE(d.stops()) << d.reason();
    EXPECT_FALSE(d.has(frugal::action::shrink_batch)) << d.reason();
    if (d.has(frugal::action::grow_batch)) grow_reasons.push_back(d.reason());
  }
  EXPECT_EQ(sizes, (std::vector<std::size_t>{32, 32, 32, 115, 115, 115, 115, 115, 115, 115, 115, 115}));
  ASSERT_EQ(grow_reasons.size(), 1u);
  EXPECT_NE(grow_reasons[0].find("grow batch 32 -> 115"), std::string::npos) << grow_reasons[0];
  EXPECT_NE(grow_reasons[0].find("(of the room above the memory base)"), std::string::npos) << grow_reasons[0];
  const frugal::memory_model* m = ctl.level_model("peak_bytes");
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(m->fitted());
  EXPECT_NEAR(m->base(), 50 * MiB, 1e-3);
  EXPECT_NEAR(m->rise_per_unit(), 16 * KiB, 1e-6);
  EXPECT_EQ(ctl.level_resolution("peak_bytes"), 0);  // no hooks
}

// The case: 57 MiB resident, limit 62 MiB, margin 10 %, batch 512 peaking at 61.09 MiB.
// The margin is on the 4.09 MiB the batch adds: 57 + 1.1 * 4.09 = 61.499 MiB fits; 10 % of the
// whole peak (67.2 MiB) would not. Batch 512 keeps running: no shrink, no stop.
TEST(ControllerMemorySynthetic, AMarginMultipliesTheRiseNotTheBase) {
  frugal::budget run{"train", frugal::limits{}.peak_bytes(62 * MiB)};
  frugal::controller ctl{run, frugal::controller_options{}.margin(0.1).batch_size(512)};
  for (int t = 0; t < 30; ++t) {
    const frugal::decision d =
        ctl.end_step(frugal::step{}.samples(512).peak_bytes(61.09 * MiB).start_bytes(57 * MiB));
    ASSERT_TRUE(d.is_continue()) << "step " << t << ": " << d.to_string() << " " << d.reason();
  }
  EXPECT_EQ(ctl.batch_size(), 512u);
  EXPECT_FALSE(ctl.should_stop());
  EXPECT_TRUE(ctl.history().batch_changes.empty());
  EXPECT_EQ(ctl.headroom("peak_bytes"), std::optional<double>(0.1));
  EXPECT_EQ(ctl.forecast_peak(512), 61.09 * MiB);
  const frugal::memory_model* m = ctl.level_model("peak_bytes");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->base(), 57 * MiB);
  EXPECT_NEAR(m->forecast(512, 0.1), 57 * MiB + 1.1 * 4.09 * MiB, 1e-3);
  EXPECT_LT(m->forecast(512, 0.1), 62 * MiB);
}

// The same step without its start level: nothing says what the batch does not control (base 0),
// so the margin covers the whole 61.09 MiB (67.2 MiB > 62 MiB) and the batch halves (one size
// cannot say what fits below it: the shrink factor).
TEST(ControllerMemorySynthetic, WithoutTheStartLevelTheWholePeakIsTheRise) {
  frugal::budget run{"train", frugal::limits{}.peak_bytes(62 * MiB)};
  frugal::controller ctl{run, frugal::controller_options{}.margin(0.1).batch_size(512)};
  const frugal::decision d = ctl.end_step(frugal::step{}.samples(512).peak_bytes(61.09 * MiB));
  EXPECT_TRUE(d.has(frugal::action::shrink_batch)) << d.to_string() << " " << d.reason();
  EXPECT_EQ(ctl.batch_size(), 256u);
}

// How far a bound (one size measured, no line) may grow the batch in one move: bound_growth
// (16) times, per controller.hpp ("a bound grows a size bound_growth times at most").
// peak(b) = 1 MiB resident + b * 64 KiB, limit 1 MiB + 20 * 64 KiB: from one step at batch 1
// the bound says 20 fit. The batch may grow to 16 (16x), then the line through 1 and 16 says 20.
TEST(ControllerMemorySynthetic, ABoundGrowsTheBatchSixteenTimesAtMost) {
  frugal::budget run{"train", frugal::limits{}.peak_bytes(1 * MiB + 20 * 64 * KiB)};
  frugal::controller ctl{run, frugal::controller_options{}
                                  .batch_size(1)
                                  .batch_limits(1, 64)
                                  .gradient_accumulation(false)
                                  .grow_after(1)
                                  .grow_headroom(1)};
  std::vector<std::size_t> sizes;
  for (int t = 0; t < 4 && !ctl.should_stop(); ++t) {
    const std::size_t b = ctl.batch_size();
    sizes.push_back(b);
    (void)ctl.end_step(frugal::step{}.samples(b).peak_bytes(1 * MiB + static_cast<double>(b) * 64 * KiB).start_bytes(1 * MiB));
  }
  EXPECT_EQ(sizes, (std::vector<std::size_t>{1, 16, 20, 20}));
}

}  // namespace
