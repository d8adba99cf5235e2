// Levels are not consumables, on a real heap (the allocation hooks linked): a peak_bytes ceiling
// neared or crossed moves neither "budget used", nor the learning-rate schedules, nor exhausted();
// a crossed ceiling is its own state, in the budget and in its report.
#include <frugal/allocation.hpp>
#include <frugal/budget.hpp>
#include <frugal/report.hpp>
#include <frugal/schedule.hpp>
#include <frugal/scope.hpp>
#include <frugal/units.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "support/json_reader.hpp"
#include "support/temp_tree.hpp"

using namespace std::chrono_literals;

namespace {

constexpr std::int64_t MiB = std::int64_t{1} << 20;

// Called through volatile pointers, so the compiler can neither drop an unused block nor fold
// malloc + memset into calloc: each block is really allocated, touched and counted.
void* (*volatile allocate)(std::size_t) = &std::malloc;
void (*volatile release)(void*) = &std::free;

struct block {
  explicit block(std::int64_t bytes) : p(allocate(static_cast<std::size_t>(bytes))) {
    if (p) std::memset(p, 1, static_cast<std::size_t>(bytes));
  }
  ~block() { release(p); }
  block(const block&) = delete;
  block& operator=(const block&) = delete;
  void* p;
};

class Levels : public ::testing::Test {
 protected:
  void SetUp() override {
    const frugal::allocation_tracking_status status = frugal::allocation_tracking();
    if (!status) GTEST_SKIP() << "peak_bytes needs the allocation hooks: " << status.reason;
  }
};

// The issue's input: limits{}.wall(1h).peak_bytes(64MiB), 48 MiB resident, one step peaking at
// 56 MiB, then one past 64 MiB. Before the fix the learning rate read 0.0124 after the first step
// and 0 for ever after the second, and exhausted() stopped the run.
TEST_F(Levels, APeakBytesCeilingMovesNeitherTheScheduleNorExhaustion) {
  frugal::budget run{"train", frugal::limits{}.wall(1h).peak_bytes(static_cast<double>(64 * MiB))};
  ASSERT_TRUE(run.measures_peak());
  const frugal::linear_decay lr(0.1, run);

  // Whatever the test binary already holds counts towards the 48 MiB.
  const std::int64_t base = frugal::heap_live_bytes();
  ASSERT_LT(base, 40 * MiB);
  const block resident(48 * MiB - base);

  {
    frugal::scope step{run, "step"};
    const block rise(8 * MiB);  // the heap stands at ~56 MiB
  }
  EXPECT_GE(run.used(frugal::resource::peak_bytes), static_cast<double>(55 * MiB));
  EXPECT_LE(run.used(frugal::resource::peak_bytes), static_cast<double>(64 * MiB));
  EXPECT_GT(lr(), 0.0999);
  EXPECT_FALSE(run.level_crossed());
  EXPECT_TRUE(run.crossed_levels().empty());
  EXPECT_NEAR(run.fraction_used(frugal::resource::peak_bytes), 56.0 / 64.0, 2.0 / 64.0);  // its height
  EXPECT_NEAR(run.remaining(frugal::resource::peak_bytes), static_cast<double>(8 * MiB), static_cast<double>(2 * MiB));

  {
    frugal::scope step{run, "step"};
    const block over(24 * MiB);  // ~72 MiB: over the ceiling
  }
  EXPECT_GT(run.used(frugal::resource::peak_bytes), static_cast<double>(64 * MiB));
  EXPECT_FALSE(run.exhausted());
  EXPECT_TRUE(run.exhausted_resources().empty());
  EXPECT_TRUE(run.level_crossed());
  EXPECT_EQ(run.crossed_levels(), std::vector<std::string>{"peak_bytes"});
  EXPECT_GT(lr(), 0.0999);
  EXPECT_LT(run.fraction_used(), 1e-3);
  EXPECT_GT(run.fraction_used(frugal::resource::peak_bytes), 1.0);
  EXPECT_EQ(run.remaining(frugal::resource::peak_bytes), 0);
  EXPECT_GE(run.stage("step").peak_rise_bytes, 24 * MiB);  // the rise, not the level

  const std::string text = frugal::json_report(run);
  EXPECT_NE(text.find(R"("exhausted":[])"), std::string::npos) << text;
  EXPECT_NE(text.find(R"("levels_crossed":["peak_bytes"])"), std::string::npos) << text;
  const frugal_test::json doc = frugal_test::json_reader::parse(text);
  EXPECT_EQ(doc["budget"]["fraction_used"].num(), run.fraction_used());
  EXPECT_EQ(doc["resource_kinds"]["peak_bytes"].str(), "level");
  EXPECT_NE(frugal::text_report(run).find("peak_bytes (level, crossed)"), std::string::npos)
      << frugal::text_report(run);
}

// A height exactly at its limit fits: only above it is the ceiling crossed.
TEST_F(Levels, StandingExactlyAtTheCeilingIsNotCrossed) {
  frugal::budget run{"train"};
  {
    frugal::scope step{run, "step"};
    const block b(4 * MiB);
  }
  const double peak = run.used(frugal::resource::peak_bytes);
  ASSERT_GT(peak, 0);
  run.set_limits(frugal::limits{}.peak_bytes(peak));
  EXPECT_FALSE(run.level_crossed());
  EXPECT_EQ(run.fraction_used(frugal::resource::peak_bytes), 1.0);
  EXPECT_EQ(run.fraction_used(), 0);  // nothing consumable is limited
  run.set_limits(frugal::limits{}.peak_bytes(peak - 1));
  EXPECT_TRUE(run.level_crossed());
  EXPECT_FALSE(run.exhausted());
}

// peak_bytes=auto on a fake cgroup (1 GiB, 600 MiB used): the limit less what the cgroup counts
// beyond the live heap, so a heap that grows by 32 MiB leaves the limit where it was (the cgroup's
// usage would grow by as much). The tolerance is the reader's own allocations (paths, file text)
// still live when it reads the heap: a few KiB.
TEST_F(Levels, PeakBytesAutoGivesTheLiveHeapItsShareOfTheCgroup) {
  const frugal_test::temp_tree tree;
  tree.write("proc/self/cgroup", "0::/job\n");
  tree.write("sys/fs/cgroup/job/memory.max", std::to_string(1024 * MiB) + "\n");
  tree.write("sys/fs/cgroup/job/memory.current", std::to_string(600 * MiB) + "\n");
  const block b(32 * MiB);
  const auto live = static_cast<double>(frugal::exact_heap_totals().live_bytes);
  ASSERT_GE(live, static_cast<double>(32 * MiB));
  const double expected = static_cast<double>(1024 * MiB - 600 * MiB) + live;
  EXPECT_NEAR(frugal::auto_limit(frugal::resource::peak_bytes, tree.root()), expected, 16 * 1024);
  const frugal::limits l = frugal::limits::parse("peak_bytes=auto,wall=1h", tree.root());
  EXPECT_NEAR(*l.get(frugal::resource::peak_bytes), expected, 16 * 1024);
  EXPECT_EQ(frugal::limits::parse(l.to_string()), l);
}

}  // namespace
