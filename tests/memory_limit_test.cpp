// The controller under a peak_bytes limit on a real heap (the allocation hooks linked): the
// memory probe before the first step (probe_memory), the probe by the first steps, a level the
// heap already stands over, stages sized in chunks (chunk_size / end_chunk), and the memory
// models in the JSON report. The work is real: blocks allocated and touched, which the
// controller's own heap measurement sees.
//
// Every limit is set relative to the live heap when the test starts, so what the rest of the
// process holds does not matter. A measured peak is exact for this (the only allocating)
// thread up to the allocator's rounding of each block (less than a page: glibc's usable size
// of a block is its request plus at most 4096 bytes), and the level between two measurements
// also moves by what the controller itself keeps meanwhile (a stage's model, its history: a few
// KiB). The numbers are picked so that each size asked for is exact despite that: 128 KiB per
// sample, and 90 KiB of slack in the limit, of which the budget's and controller's own objects,
// made after the live heap is read, take ~26 KiB: each size asked for fits with ~64 KiB to
// spare, and the next one is over by ~64 KiB (measured: 62-70 KiB either way). A slope through
// sizes 1 and 16 is checked to within the heap's resolution over 15 (the drift seen: ~300 B).
#include <frugal/allocation.hpp>
#include <frugal/budget.hpp>
#include <frugal/controller.hpp>
#include <frugal/controller_report.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "support/checks.hpp"
#include "support/json_reader.hpp"

namespace {

using frugal_test::error_of;

constexpr std::int64_t KiB = 1024;
constexpr std::int64_t MiB = 1024 * KiB;

// Called through volatile pointers, so the compiler can neither drop an unused block nor fold
// malloc + memset into calloc: each block is really allocated, touched and counted.
void* (*volatile allocate)(std::size_t) = &std::malloc;
void (*volatile release)(void*) = &std::free;

struct block {
  explicit block(std::int64_t bytes) : p(allocate(static_cast<std::size_t>(bytes))) {
    if (!p) throw std::bad_alloc();
    std::memset(p, 1, static_cast<std::size_t>(bytes));
  }
  ~block() { release(p); }
  block(const block&) = delete;
  block& operator=(const block&) = delete;
  void* p;
};

// The live heap now, with this thread's pending bytes folded in: where a heap_watch (the
// controller's measurement) starts.
std::int64_t live_now() {
  const frugal::heap_watch w;
  return w.start_bytes();
}

// The sizes a probe or loop was asked for, without allocating while it is measured.
struct asked_sizes {
  std::array<std::size_t, 16> n{};
  std::size_t count = 0;
  void add(std::size_t size) {
    if (count < n.size()) n[count] = size;
    ++count;
  }
  [[nodiscard]] std::vector<std::size_t> list() const { return {n.begin(), n.begin() + static_cast<std::ptrdiff_t>(std::min(count, n.size()))}; }
};

class MemoryLimit : public ::testing::Test {
 protected:
  void SetUp() override {
    const frugal::allocation_tracking_status status = frugal::allocation_tracking();
    if (!status) GTEST_SKIP() << "the controller measures the heap only with the allocation hooks: " << status.reason;
    resolution = frugal::heap_resolution_bytes();
    ASSERT_GE(resolution, FRUGAL_HEAP_FOLD_BYTES);
  }
  // How well a slope through sizes 1 and 16 is known (see the file's comment).
  [[nodiscard]] double slope_tolerance() const { return static_cast<double>(resolution) / 15; }
  std::int64_t resolution = 0;
};

// A step's work: a fixed part B and U per sample (activations), allocated and freed.
constexpr std::int64_t B = 128 * KiB;
constexpr std::int64_t U = 128 * KiB;
constexpr std::int64_t slack = 90 * KiB;

// ---------------------------------------------------------------------------------------------
// probe_memory

// limit = live + resolution + slack + B + 100 U. The probe at 1 peaks at S + B + U (S, the live
// heap when it starts, ~live + 26 KiB): the bound (S + n (B + U) within the limit less the
// resolution) says 50 ((64 + 128 + 12800) / 256 KiB), over 16x, so the second probe runs at 16.
// The line through 1 and 16 is S + B + U n: 100 fits, 101 is over (the rounding and drift move
// the line at 100 by less than 30 KiB). The size chosen is measured
// before the first step starts there (controller.hpp: "until the size chosen has itself been
// measured within the limits"): a third probe at 100, which fits, so it is the batch.
TEST_F(MemoryLimit, ProbeMemoryMeasuresUpToTheSizeItChoosesAndTheFirstStepStartsThere) {
  const std::int64_t live = live_now();
  const auto limit = static_cast<double>(live + resolution + slack + B + 100 * U);
  frugal::budget run{"train", frugal::limits{}.peak_bytes(limit)};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(128).batch_limits(1, 128).gradient_accumulation(false)};
  EXPECT_EQ(ctl.batch_size(), 1u);  // the probe at the smallest batch is set up already
  EXPECT_TRUE(ctl.probing_memory());

  asked_sizes asked;
  const std::size_t batch = ctl.probe_memory([&](std::size_t n) {
    asked.add(n);
    const block work(B + static_cast<std::int64_t>(n) * U);
  });
  EXPECT_EQ(asked.list(), (std::vector<std::size_t>{1, 16, 100}));
  EXPECT_EQ(batch, 100u);
  EXPECT_EQ(ctl.batch_size(), 100u);
  EXPECT_FALSE(ctl.probing_memory());
  EXPECT_FALSE(ctl.should_stop());
  EXPECT_EQ(ctl.steps(), 0u);
  const frugal::memory_model* m = ctl.level_model("peak_bytes");
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(m->fitted());
  EXPECT_EQ(m->sizes(), 3u);
  EXPECT_NEAR(m->rise_per_unit(), static_cast<double>(U), slope_tolerance());
  EXPECT_EQ(ctl.level_resolution("peak_bytes"), static_cast<double>(resolution));
  ASSERT_EQ(ctl.history().batch_changes.size(), 2u);
  EXPECT_EQ(ctl.history().batch_changes[0].to, 1u);  // the start: the probe's smallest batch
  EXPECT_EQ(ctl.history().batch_changes[1].to, 100u);
  EXPECT_EQ(ctl.history().batch_changes[1].reason.rfind("memory probe: batch 1: peak_bytes ", 0), 0u)
      << ctl.history().batch_changes[1].reason;

  // The first step, doing the same work at 100, stays under the limit and keeps its batch.
  std::int64_t peak = 0;
  {
    const frugal::heap_watch w;
    { const block work(B + 100 * U); }
    peak = w.peak_bytes();
  }
  EXPECT_LE(static_cast<double>(peak), limit);
  const frugal::decision d = ctl.end_step(frugal::step{}.samples(100));
  EXPECT_TRUE(d.is_continue()) << d.to_string() << ": " << d.reason();
  EXPECT_EQ(ctl.batch_size(), 100u);
  EXPECT_TRUE(ctl.crossed_levels().empty());
  EXPECT_TRUE(m->measured(100).has_value());  // the step's peak joined the probe's at 100
  EXPECT_EQ(m->sizes(), 3u);
}

// With gradient accumulation (the default), a grow keeps the effective batch (128) exact: after
// 1 and 16 the probe goes to the largest divisor of 128 within 100, 64 (accumulation 2), measures
// it, and starts there.
TEST_F(MemoryLimit, ProbeMemoryWithAccumulationKeepsTheEffectiveBatch) {
  const std::int64_t live = live_now();
  const auto limit = static_cast<double>(live + resolution + slack + B + 100 * U);
  frugal::budget run{"train", frugal::limits{}.peak_bytes(limit)};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(128).batch_limits(1, 128)};
  asked_sizes asked;
  EXPECT_EQ(ctl.probe_memory([&](std::size_t n) {
    asked.add(n);
    const block work(B + static_cast<std::int64_t>(n) * U);
  }),
            64u);
  EXPECT_EQ(asked.list(), (std::vector<std::size_t>{1, 16, 64}));
  EXPECT_EQ(ctl.batch_size(), 64u);
  EXPECT_EQ(ctl.accumulation_steps(), 2u);
  EXPECT_EQ(ctl.effective_batch(), 128u);
}

// limit = live + resolution + 128 KiB: the probe at 1 peaks at ~live + 256 KiB. Nothing fits:
// the run stops before its first step, and the probe ran once.
TEST_F(MemoryLimit, ProbeMemoryStopsWhenNotEvenTheSmallestBatchFits) {
  const std::int64_t live = live_now();
  const auto limit = static_cast<double>(live + resolution + (B + U) / 2);
  frugal::budget run{"train", frugal::limits{}.peak_bytes(limit)};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(128).batch_limits(1, 128)};
  ASSERT_FALSE(ctl.should_stop());
  asked_sizes asked;
  (void)ctl.probe_memory([&](std::size_t n) {
    asked.add(n);
    const block work(B + static_cast<std::int64_t>(n) * U);
  });
  EXPECT_EQ(asked.list(), (std::vector<std::size_t>{1}));
  EXPECT_TRUE(ctl.should_stop());
  EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::forecast);
  const std::string message = ctl.stop_message();
  EXPECT_EQ(message.rfind("stop (forecast): memory probe: batch 1: peak_bytes ", 0), 0u) << message;
  EXPECT_NE(message.find("not even the smallest batch fits; no step ran"), std::string::npos) << message;
  ASSERT_EQ(ctl.history().decisions.size(), 2u);
  EXPECT_EQ(ctl.history().decisions[0].actions, "shrink_batch");  // the start: 128 -> 1 to probe
  EXPECT_EQ(ctl.history().decisions[1].at, "probe");
  EXPECT_EQ(ctl.history().decisions[1].actions, "stop");
  EXPECT_EQ(ctl.steps(), 0u);
  // A second call does nothing: the run is stopped.
  (void)ctl.probe_memory([&](std::size_t n) { asked.add(n); });
  EXPECT_EQ(asked.count, 1u);
  EXPECT_EQ(ctl.end_run(), frugal::stop_reason::forecast);
}

// ---------------------------------------------------------------------------------------------
// A level already over its limit

// The heap holds 1 MiB more than the limit when the controller is made: no batch can fit, the
// run stops at construction, and no probe is set up or run.
TEST_F(MemoryLimit, AHeapAlreadyOverTheLimitStopsAtConstruction) {
  const block resident(1 * MiB);
  const std::int64_t live = live_now();
  const auto limit = static_cast<double>(live - 512 * KiB);
  frugal::budget run{"train", frugal::limits{}.peak_bytes(limit)};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(64).batch_limits(1, 64)};
  EXPECT_TRUE(ctl.should_stop());
  EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::forecast);
  const std::string message = ctl.stop_message();
  EXPECT_EQ(message.rfind("stop (forecast): peak_bytes: the level already stands at ", 0), 0u) << message;
  EXPECT_NE(message.find("before any step: no batch size can fit"), std::string::npos) << message;
  ASSERT_EQ(ctl.history().decisions.size(), 1u);
  EXPECT_EQ(ctl.history().decisions[0].at, "start");
  EXPECT_EQ(ctl.batch_size(), 64u);  // no probe set up
  EXPECT_FALSE(ctl.probing_memory());
  int probes = 0;
  EXPECT_EQ(ctl.probe_memory([&](std::size_t) { ++probes; }), 64u);
  EXPECT_EQ(probes, 0);
  EXPECT_TRUE(ctl.end_step().repeats_stop());
}

// ---------------------------------------------------------------------------------------------
// The probe by the first steps (no probe_memory)

// Step work F + b U (F = 16 KiB), limit = live + resolution + slack + F + 48 U. The first step
// runs at 1; its bound says 43 ((64 + 16 + 48 * 128) / 144 KiB), over 16x: the second at 16; the
// line through 1 and 16 then says 48 (49 is over by ~64 KiB). No step's peak, measured by a
// heap_watch the loop holds, goes over the limit.
TEST_F(MemoryLimit, TheFirstStepsProbeAtOneThenTheBoundThenTheLine) {
  constexpr std::int64_t F = 16 * KiB;
  const std::int64_t live = live_now();
  const auto limit = static_cast<double>(live + resolution + slack + F + 48 * U);
  frugal::budget run{"train", frugal::limits{}.peak_bytes(limit)};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(64).batch_limits(1, 64).gradient_accumulation(false)};
  asked_sizes sizes;
  std::array<std::int64_t, 16> peaks{};
  std::array<bool, 16> probing{};
  for (std::size_t t = 0; t < 6 && !ctl.should_stop(); ++t) {
    const std::size_t b = ctl.batch_size();
    sizes.add(b);
    probing[t] = ctl.probing_memory();
    {
      const frugal::heap_watch w;
      { const block work(F + static_cast<std::int64_t>(b) * U); }
      peaks[t] = w.peak_bytes();
    }
    const frugal::decision d = ctl.end_step(frugal::step{}.samples(b));
    EXPECT_FALSE(d.stops()) << d.reason();
  }
  EXPECT_EQ(sizes.list(), (std::vector<std::size_t>{1, 16, 48, 48, 48, 48}));
  EXPECT_TRUE(probing[0]);   // at 1
  EXPECT_TRUE(probing[1]);   // at 16: one size is no line yet
  EXPECT_FALSE(probing[2]);  // the line through 1 and 16 ended it
  for (std::size_t t = 0; t < 6; ++t) EXPECT_LE(static_cast<double>(peaks[t]), limit) << "step " << t;
  EXPECT_TRUE(ctl.crossed_levels().empty());
  const frugal::memory_model* m = ctl.level_model("peak_bytes");
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(m->fitted());
  EXPECT_NEAR(m->rise_per_unit(), static_cast<double>(U), slope_tolerance());
}

// ---------------------------------------------------------------------------------------------
// Stages sized in chunks

// An evaluation whose chunk of n images allocates F + n V (F = 16 KiB, V = 128 KiB), limit =
// live + resolution + slack + F + 40 V. The first chunk at min (1); its bound says 36, over
// 16x: the second at 16; then the line's 40 (41 is over by ~64 KiB), again and again.
TEST_F(MemoryLimit, ChunkSizeMeasuresEachChunkAndSizesTheNextByItsOwnModel) {
  constexpr std::int64_t F = 16 * KiB;
  constexpr std::int64_t V = 128 * KiB;
  const std::int64_t live = live_now();
  const auto limit = static_cast<double>(live + resolution + slack + F + 40 * V);
  frugal::budget run{"train", frugal::limits{}.peak_bytes(limit)};
  frugal::controller ctl{run};
  asked_sizes sizes;
  std::array<std::int64_t, 16> peaks{};
  for (std::size_t i = 0; i < 5; ++i) {
    const std::size_t n = ctl.chunk_size("evaluation", 64);
    sizes.add(n);
    {
      const frugal::heap_watch w;
      { const block work(F + static_cast<std::int64_t>(n) * V); }
      peaks[i] = w.peak_bytes();
    }
    ctl.end_chunk("evaluation", n);
  }
  EXPECT_EQ(sizes.list(), (std::vector<std::size_t>{1, 16, 40, 40, 40}));
  for (std::size_t i = 0; i < 5; ++i) EXPECT_LE(static_cast<double>(peaks[i]), limit) << "chunk " << i;
  const frugal::memory_model* m = ctl.stage_model("evaluation", "peak_bytes");
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(m->fitted());
  EXPECT_EQ(m->sizes(), 3u);
  EXPECT_NEAR(m->rise_per_unit(), static_cast<double>(V), slope_tolerance());
  EXPECT_EQ(ctl.sized_stages(), (std::vector<std::pair<std::string, std::size_t>>{{"evaluation", 40}}));
  // The step's model is the step's: no chunk went into it.
  EXPECT_TRUE(ctl.level_model("peak_bytes")->empty());
  EXPECT_EQ(ctl.stage_model("training", "peak_bytes"), nullptr);

  // A last chunk smaller than the size given is recorded at its real size... once it is not
  // smaller than the chunk before (held-over buffers: memory_model::add).
  const std::size_t n = ctl.chunk_size("evaluation", 64);
  EXPECT_EQ(n, 40u);
  { const block work(F + 7 * V); }
  ctl.end_chunk("evaluation", 7);
  EXPECT_FALSE(m->measured(7).has_value());
  EXPECT_EQ(m->last_run(), 7u);
}

// One chunk at a time, ended under its own stage's name.
TEST_F(MemoryLimit, ChunksMustBeEndedOneAtATimeUnderTheirOwnName) {
  const std::int64_t live = live_now();
  frugal::budget run{"train", frugal::limits{}.peak_bytes(static_cast<double>(live + 64 * MiB))};
  frugal::controller ctl{run};
  ASSERT_EQ(ctl.chunk_size("evaluation", 8), 1u);
  EXPECT_EQ(error_of<std::logic_error>([&] { (void)ctl.chunk_size("evaluation", 8); }),
            "frugal::controller::chunk_size: the chunk of stage 'evaluation' was not ended (end_chunk)");
  EXPECT_EQ(error_of<std::logic_error>([&] { (void)ctl.chunk_size("test", 8); }),
            "frugal::controller::chunk_size: the chunk of stage 'evaluation' was not ended (end_chunk)");
  EXPECT_EQ(error_of<std::logic_error>([&] { ctl.end_chunk("eval", 1); }),
            "frugal::controller::end_chunk: the open chunk is of stage 'evaluation', not 'eval'");
  { const block work(256 * KiB); }
  ctl.end_chunk("evaluation", 1);  // still open after the refusals: ends here
  const frugal::memory_model* m = ctl.stage_model("evaluation", "peak_bytes");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->sizes(), 1u);
  EXPECT_TRUE(m->measured(1).has_value());
  EXPECT_EQ(ctl.sized_stages().size(), 1u);  // "test" was refused before it was added
  EXPECT_NO_THROW(ctl.end_chunk("other", 1));  // nothing open: nothing to end, whatever the name
}

// No hooks needed: without a limited level nothing is measured and the chunk is `max`.
TEST(MemoryLimitNoHooks, WithoutAPeakLimitTheChunkIsMax) {
  frugal::budget run{"train", frugal::limits{}.flops(1e12)};
  frugal::controller ctl{run};
  EXPECT_EQ(ctl.chunk_size("evaluation", 64, 4), 64u);
  ctl.end_chunk("evaluation", 64);
  EXPECT_EQ(ctl.chunk_size("evaluation", 64, 4), 64u);
  ctl.end_chunk("evaluation", 64);
  EXPECT_EQ(ctl.stage_model("evaluation", "peak_bytes"), nullptr);
  EXPECT_EQ(ctl.sized_stages(), (std::vector<std::pair<std::string, std::size_t>>{{"evaluation", 64}}));
}

TEST(MemoryLimitNoHooks, BadChunkArgumentsAreRefusedAndChangeNothing) {
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  EXPECT_EQ(error_of([&] { (void)ctl.chunk_size("", 8); }), R"(frugal::controller: chunk_size stage must be a name, got "")");
  EXPECT_EQ(error_of([&] { (void)ctl.chunk_size("evaluation", 8, 0); }),
            "frugal::controller: chunk_size min must be > 0, got 0");
  EXPECT_EQ(error_of([&] { (void)ctl.chunk_size("evaluation", 3, 4); }),
            "frugal::controller: chunk_size max must be >= min (4), got 3");
  EXPECT_TRUE(ctl.sized_stages().empty());
  EXPECT_EQ(ctl.chunk_size("evaluation", 4, 4), 4u);  // max == min is fine
}

// ---------------------------------------------------------------------------------------------
// The report

// probe_memory (1, 16 -> 100), two steps at 100, two evaluation chunks (1, then 16: the bound
// from 1 says far more than 16x). The report's memory section is the models, as the
// controller has them.
TEST_F(MemoryLimit, TheJsonReportHasTheStepAndStageModels) {
  constexpr std::int64_t V = 128 * KiB;
  const std::int64_t live = live_now();
  const auto limit = static_cast<double>(live + resolution + slack + B + 100 * U);
  frugal::budget run{"train", frugal::limits{}.peak_bytes(limit)};
  frugal::controller ctl{run, frugal::controller_options{}.batch_size(128).batch_limits(1, 128).gradient_accumulation(false)};
  ASSERT_EQ(ctl.probe_memory([](std::size_t n) { const block work(B + static_cast<std::int64_t>(n) * U); }), 100u);
  for (int t = 0; t < 2; ++t) {
    { const block work(B + 100 * U); }
    ASSERT_TRUE(ctl.end_step(frugal::step{}.samples(100)).is_continue());
  }
  for (std::size_t expected : {std::size_t{1}, std::size_t{16}}) {
    const std::size_t n = ctl.chunk_size("evaluation", 64);
    ASSERT_EQ(n, expected);
    { const block work(static_cast<std::int64_t>(n) * V); }
    ctl.end_chunk("evaluation", n);
  }
  const frugal::memory_model* step_model = ctl.level_model("peak_bytes");
  const frugal::memory_model* stage_model = ctl.stage_model("evaluation", "peak_bytes");
  ASSERT_NE(step_model, nullptr);
  ASSERT_NE(stage_model, nullptr);

  const frugal_test::json doc = frugal_test::json_reader::parse(frugal::json_report(run, ctl));
  const frugal_test::json& step = doc["controller"]["memory"]["step"]["peak_bytes"];
  EXPECT_EQ(step["base_bytes"].num(), step_model->base());
  EXPECT_EQ(step["rise_per_unit_bytes"].num(), step_model->rise_per_unit());
  EXPECT_TRUE(step["fitted"].boolean);
  EXPECT_EQ(step["sizes_measured"].num(), 3);  // 1, 16, 100
  EXPECT_EQ(step["resolution_bytes"].num(), static_cast<double>(resolution));
  EXPECT_EQ(step["spread"].num(), step_model->spread());
  // What the numbers mean: the line's base is the heap at the start plus the step's fixed part,
  // its slope the 128 KiB a sample adds.
  EXPECT_NEAR(step["base_bytes"].num(), static_cast<double>(live + B), static_cast<double>(resolution));
  EXPECT_NEAR(step["rise_per_unit_bytes"].num(), static_cast<double>(U), slope_tolerance());

  const frugal_test::json& stage = doc["controller"]["memory"]["stages"]["evaluation"];
  EXPECT_EQ(stage["last_size"].num(), 16);
  const frugal_test::json& eval = stage["peak_bytes"];
  EXPECT_TRUE(eval["fitted"].boolean);
  EXPECT_EQ(eval["sizes_measured"].num(), 2);
  EXPECT_EQ(eval["rise_per_unit_bytes"].num(), stage_model->rise_per_unit());
  EXPECT_NEAR(eval["rise_per_unit_bytes"].num(), static_cast<double>(V), slope_tolerance());
  EXPECT_EQ(eval["resolution_bytes"].num(), static_cast<double>(resolution));
}

}  // namespace
