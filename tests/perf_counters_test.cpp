// The hardware cross-check: where perf_event_open offers counters, they count a region (and a
// GEMM's floating-point operations agree with frugal's 2*M*N*K); where it does not (virtual
// machines without a PMU, such as the reference machine), the tests skip with the reason.
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <cstdint>
#include <frugal/eigen/flops.hpp>
#include <frugal/perf_counters.hpp>
#include <string>

namespace {

// Work the compiler cannot remove: a dependent chain of integer operations.
std::uint64_t spin(std::uint64_t n) {
  volatile std::uint64_t sink = 0;
  std::uint64_t x = 1;
  for (std::uint64_t i = 0; i < n; ++i) x = x * 6364136223846793005ull + 1442695040888963407ull;
  sink = x;
  return sink;
}

TEST(PerfCounters, SayWhetherTheyAreAvailableAndWhyNot) {
  frugal::perf_counters counters;
  if (counters.available()) {
    EXPECT_TRUE(counters.reason().empty()) << counters.reason();
  } else {
    EXPECT_NE(counters.reason().find("perf_event_open"), std::string::npos) << counters.reason();
    EXPECT_FALSE(counters.flops_available()) << "floating-point events without an instruction counter";
  }
  if (counters.flops_available()) {
    EXPECT_TRUE(counters.flops_reason().empty()) << counters.flops_reason();
  } else {
    EXPECT_FALSE(counters.flops_reason().empty());
  }
}

TEST(PerfCounters, UnavailableCountersMeasureNothing) {
  frugal::perf_counters counters;
  if (counters.available()) GTEST_SKIP() << "this machine has a PMU: the unavailable path is not reachable here";
  frugal::hardware_counts counts;
  {
    frugal::hardware_region region{counters, counts};
    (void)spin(1000);
  }
  EXPECT_EQ(counts.instructions, 0u);
  EXPECT_FALSE(counts.flops.has_value());
  EXPECT_FALSE(counts.scaled);
}

TEST(PerfCounters, CountInstructionsOfARegion) {
  frugal::perf_counters counters;
  if (!counters.available()) GTEST_SKIP() << counters.reason();
  frugal::hardware_counts small, large;
  {
    frugal::hardware_region region{counters, small};
    (void)spin(100'000);
  }
  {
    frugal::hardware_region region{counters, large};
    (void)spin(1'000'000);
  }
  EXPECT_GT(small.instructions, 100'000u);
  // Ten times the loop, about ten times the instructions (a loop iteration is a few of them).
  EXPECT_GT(large.instructions, 5 * small.instructions);
  EXPECT_LT(large.instructions, 20 * small.instructions);
}

TEST(PerfCounters, GemmFlopsAgreeWithFlopsOf) {
  frugal::perf_counters counters;
  if (!counters.flops_available()) GTEST_SKIP() << counters.flops_reason();
  const Eigen::MatrixXd a = Eigen::MatrixXd::Random(192, 160), b = Eigen::MatrixXd::Random(160, 128);
  Eigen::MatrixXd c(192, 128);
  const std::uint64_t counted = frugal::flops_of(a * b);
  frugal::hardware_counts hw;
  {
    frugal::hardware_region region{counters, hw};
    c.noalias() = a * b;
  }
  ASSERT_TRUE(hw.flops.has_value());
  const double ratio = static_cast<double>(*hw.flops) / static_cast<double>(counted);
  // The hardware counts what ran (an FMA as two), so 2*M*N*K plus the kernel's extra adds.
  EXPECT_GT(ratio, 0.95) << *hw.flops << " hardware vs " << counted << " counted";
  EXPECT_LT(ratio, 1.25) << *hw.flops << " hardware vs " << counted << " counted";
}

}  // namespace
