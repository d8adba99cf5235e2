// Without the allocation hooks linked, heap tracking says why it is unavailable instead of
// reporting a silent zero.
#include <frugal/allocation.hpp>
#include <frugal/frugal.hpp>

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace {

TEST(AllocationUnavailable, TrackingSaysTheHooksAreNotLinked) {
  const frugal::allocation_tracking_status status = frugal::allocation_tracking();
  EXPECT_FALSE(status);
  EXPECT_FALSE(status.available);
  EXPECT_NE(status.reason.find("not linked"), std::string::npos) << status.reason;
  EXPECT_NE(status.reason.find("frugal::allocation_hooks"), std::string::npos) << status.reason;
}

TEST(AllocationUnavailable, BudgetsSayTheyDoNotMeasurePeakAndCountNothing) {
  frugal::budget run{"run"};
  EXPECT_FALSE(run.measures_peak());
  {
    frugal::scope s{run, "alloc"};
    auto p = std::make_unique<int[]>(1000);
    p[0] = 1;
  }
  EXPECT_EQ(run.used(frugal::resource::allocations), 0);
  EXPECT_EQ(run.used(frugal::resource::peak_bytes), 0);
  frugal::heap_watch watch;
  EXPECT_FALSE(watch.available());
  EXPECT_EQ(watch.peak_bytes(), 0);
}

}  // namespace
