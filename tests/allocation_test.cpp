// Heap accounting with the allocation hooks linked: exact counts per scope (Eigen's memory
// included), across oneTBB threads, through every member of the malloc family, and the hazards
// (recursion, cross-thread frees, exiting threads, frugal's own bookkeeping).
#include <frugal/allocation.hpp>
#include <frugal/frugal.hpp>
#include <frugal/report.hpp>
#include <frugal/tbb.hpp>

#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>

#include <dlfcn.h>
#include <malloc.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace {

// Allocated before main: the hooks must already work (constant-initialised state).
std::vector<int>* const before_main = new std::vector<int>(1000, 7);

static_assert(std::is_trivially_destructible_v<frugal::detail::thread_state>,
              "per-thread hook state must survive thread_local destruction order");

// The compiler may call these through the PLT or inline them away; a volatile pointer keeps
// each call a real call into the hooks.
template <class F>
F* opaque(F* f) {
  F* volatile p = f;
  return p;
}

class Allocation : public ::testing::Test {
 protected:
  void SetUp() override {
    const frugal::allocation_tracking_status status = frugal::allocation_tracking();
    if (!status) GTEST_SKIP() << status.reason;
  }
};

TEST_F(Allocation, TrackingIsAvailableAndCountedBeforeMain) {
  EXPECT_EQ(before_main->size(), 1000u);
  const frugal::heap_totals t = frugal::exact_heap_totals();
  EXPECT_GT(t.allocations, 0u);
  EXPECT_GE(t.live_bytes, static_cast<std::int64_t>(1000 * sizeof(int)));
}

TEST_F(Allocation, AnEigenProductCountsExactlyItsResult) {
  const Eigen::MatrixXf b = Eigen::MatrixXf::Random(64, 64);
  const Eigen::MatrixXf c = Eigen::MatrixXf::Random(64, 64);
  frugal::budget run{"run"};
  {
    frugal::scope s{run, "product"};
    Eigen::MatrixXf a = b * c;
    EXPECT_NEAR(a(3, 5), b.row(3).dot(c.col(5)), 1e-4);
  }
  EXPECT_EQ(run.used(frugal::resource::allocations), 1);
  EXPECT_EQ(run.used(frugal::resource::alloc_bytes), 64 * 64 * sizeof(float));
  EXPECT_EQ(run.stage("product").allocations, 1u);
  EXPECT_EQ(run.stage("product").alloc_bytes, 64u * 64u * sizeof(float));

  Eigen::MatrixXf a(64, 64);
  {
    frugal::scope s{run, "noalias"};
    a.noalias() = b * c;
  }
  EXPECT_EQ(run.stage("noalias").allocations, 0u);
  EXPECT_EQ(run.stage("noalias").alloc_bytes, 0u);
}

TEST_F(Allocation, KnownAllocationsAcrossEightTbbThreadsAreCountedExactly) {
  tbb::global_control allow(tbb::global_control::max_allowed_parallelism, 8);
  tbb::task_arena arena(8);
  frugal::budget run{"run"};
  constexpr int n = 4000;
  std::vector<void*> blocks(n, nullptr);
  // oneTBB allocates its workers and task pools on first use; warm it up so the scope below
  // sees only the body's allocations.
  arena.execute([&] {
    frugal::scope s{run, "warm-up"};
    frugal::parallel_for(0, n, [&](int i) { blocks[i] = nullptr; });
  });
  arena.execute([&] {
    frugal::scope s{run, "parallel"};
    frugal::parallel_for(0, n, [&](int i) { blocks[i] = opaque(&std::malloc)(static_cast<std::size_t>(16 + i % 5)); });
  });
  std::uint64_t bytes = 0;
  for (int i = 0; i < n; ++i) bytes += static_cast<std::uint64_t>(16 + i % 5);
  EXPECT_EQ(run.stage("parallel").allocations, static_cast<std::uint64_t>(n));
  EXPECT_EQ(run.stage("parallel").alloc_bytes, bytes);
  for (void* p : blocks) std::free(p);
}

// peak_bytes is a level: the live heap crossing it is a crossed ceiling, not an exhausted budget.
TEST_F(Allocation, APeakBytesLimitIsCrossedWhenTheLiveHeapRisesAboveIt) {
  frugal::budget run{"run", frugal::limits{}.peak_bytes(frugal::heap_live_bytes() + (8 << 20))};
  ASSERT_TRUE(run.measures_peak());
  {
    frugal::scope s{run, "small"};
    std::unique_ptr<char[]> small(new char[1 << 20]);
    small[0] = 1;
  }
  EXPECT_FALSE(run.level_crossed());
  {
    frugal::scope s{run, "big"};
    std::unique_ptr<char[]> big(new char[16 << 20]);
    big[0] = 1;
  }
  EXPECT_TRUE(run.level_crossed());
  EXPECT_EQ(run.crossed_levels(), std::vector<std::string>{"peak_bytes"});
  EXPECT_FALSE(run.exhausted());
  EXPECT_EQ(run.fraction_used(), 0);
  EXPECT_GE(run.stage("big").peak_rise_bytes, 16 << 20);
  EXPECT_LT(run.stage("small").peak_rise_bytes, 2 << 20);
  EXPECT_GE(run.stage("small").peak_rise_bytes, 1 << 20);
}

// A budget one thread uses skips the shared busy word without the hooks (the solo mode,
// budget::transition()). With them it must not: another thread's heap fold tests that word to
// raise the budget's peak, and an activation written with a plain store could pass unseen by a
// fold racing it, losing that fold's heap from the peak.
TEST_F(Allocation, ABudgetWithAHeapWatcherKeepsTheSharedBusyWord) {
  frugal::budget run{"run"};
  ASSERT_TRUE(run.measures_peak());
  for (int i = 0; i < 3; ++i) {
    frugal::scope s{run, "step"};
    std::unique_ptr<char[]> block(new char[1 << 20]);
    block[0] = 1;
  }
  EXPECT_EQ(frugal::detail::budget_access::solo(run), frugal::detail::budget_access::solo_mode::never);
  EXPECT_GE(run.used(frugal::resource::peak_bytes), 1 << 20);
}

// The input: budgets with peak_bytes=1MiB and 64 MiB live. Before the fix the 129th got
// no watcher slot: never crossed, and the report printed 0 B. Now there is no limit on slots.
TEST_F(Allocation, EveryBudgetMeasuresItsPeakHoweverManyThereAre) {
  constexpr int count = 300;  // past two blocks of slots
  std::vector<std::unique_ptr<frugal::budget>> budgets;
  for (int i = 0; i < count; ++i)
    budgets.push_back(std::make_unique<frugal::budget>("b" + std::to_string(i), frugal::limits{}.peak_bytes(1 << 20)));
  for (const auto& b : budgets) ASSERT_TRUE(b->measures_peak()) << b->name();
  frugal::heap_watch watch;
  ASSERT_TRUE(watch.available());
  frugal::budget& the_129th = *budgets[128];
  frugal::budget& last = *budgets.back();
  {
    frugal::scope a{the_129th, "step"};
    frugal::scope b{last, "step"};
    std::unique_ptr<char[]> live(new char[64 << 20]);
    live[0] = 1;
  }
  for (frugal::budget* b : {&the_129th, &last}) {
    EXPECT_GE(b->used(frugal::resource::peak_bytes), 64 << 20) << b->name();
    EXPECT_TRUE(b->level_crossed()) << b->name();
    EXPECT_EQ(b->crossed_levels(), std::vector<std::string>{"peak_bytes"}) << b->name();
    EXPECT_EQ(frugal::text_report(*b).find(" 0 B"), std::string::npos) << frugal::text_report(*b);
  }
  EXPECT_GE(watch.peak_bytes(), 64 << 20);
  EXPECT_EQ(budgets.front()->used(frugal::resource::peak_bytes), 0) << "never active: no peak";

  // Slots are recycled: as many budgets again, after these are gone, take no new slot.
  const std::size_t used = frugal::detail::heap.watchers_used.load();
  budgets.clear();
  for (int i = 0; i < count; ++i)
    budgets.push_back(std::make_unique<frugal::budget>("c" + std::to_string(i), frugal::limits{}.peak_bytes(1 << 20)));
  EXPECT_EQ(frugal::detail::heap.watchers_used.load(), used);
}

TEST_F(Allocation, PeakIsOnlyRecordedWhileTheBudgetIsActive) {
  frugal::budget run{"run"};
  { frugal::scope s{run, "idle"}; }
  const double before = run.used(frugal::resource::peak_bytes);
  {
    std::unique_ptr<char[]> outside(new char[32 << 20]);  // no scope of run open
    outside[0] = 1;
  }
  EXPECT_EQ(run.used(frugal::resource::peak_bytes), before);
}

TEST_F(Allocation, CrossThreadFreesKeepProcessTotalsExact) {
  frugal::budget run{"run"};
  std::vector<void*> blocks(1000);
  std::thread worker([&] {
    frugal::scope s{run, "allocate"};
    for (auto& p : blocks) p = opaque(&std::malloc)(100);
  });
  worker.join();
  EXPECT_EQ(run.stage("allocate").allocations, 1000u);
  EXPECT_EQ(run.stage("allocate").alloc_bytes, 100000u);
  std::int64_t usable = 0;
  for (void* p : blocks) usable += static_cast<std::int64_t>(malloc_usable_size(p));
  const frugal::heap_totals before = frugal::this_thread_heap_totals();
  for (void* p : blocks) opaque(&std::free)(p);  // freed on this thread, allocated on the worker
  const frugal::heap_totals after = frugal::this_thread_heap_totals();
  EXPECT_EQ(after.frees - before.frees, 1000u);
  // This thread's live heap drops by what the worker's rose: the process total, their sum, is
  // back where it was.
  EXPECT_EQ(before.live_bytes - after.live_bytes, usable);
}

// The same thread body with and without its work: what thread creation itself allocates
// cancels out, and what the thread did is all there after it exited.
TEST_F(Allocation, AThreadThatExitsFoldsItsCountersIn) {
  auto run_thread = [](bool work) {
    const frugal::heap_totals start = frugal::exact_heap_totals();
    std::thread t([work] {
      if (!work) return;
      for (int i = 0; i < 10; ++i) opaque(&std::free)(opaque(&std::malloc)(64));
      static void* kept = nullptr;
      kept = opaque(&std::malloc)(200000);  // outlives the thread (mmapped: folded at once)
      (void)kept;
    });
    t.join();
    const frugal::heap_totals end = frugal::exact_heap_totals();
    return std::array<std::int64_t, 3>{static_cast<std::int64_t>(end.allocations - start.allocations),
                                       static_cast<std::int64_t>(end.frees - start.frees),
                                       end.live_bytes - start.live_bytes};
  };
  run_thread(false);  // first thread creation may set up more than later ones
  const auto idle = run_thread(false);
  const auto busy = run_thread(true);
  EXPECT_EQ(busy[0] - idle[0], 11);
  EXPECT_EQ(busy[1] - idle[1], 10);
  EXPECT_GE(busy[2] - idle[2], 200000);
  EXPECT_LT(busy[2] - idle[2], 200000 + 8192);
}

TEST_F(Allocation, EveryMemberOfTheFamilyIsCountedWithItsSize) {
  frugal::budget run{"run"};
  { frugal::scope warm{run, "family"}; }  // frugal's slot for the stage exists before the count
  const frugal::heap_totals start = frugal::this_thread_heap_totals();
  {
    frugal::scope s{run, "family"};
    void* a = opaque(&std::malloc)(10);
    void* b = opaque(&std::calloc)(4, 25);
    void* c = opaque(&aligned_alloc)(64, 128);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(c) % 64, 0u);
    void* d = nullptr;
    EXPECT_EQ(opaque(&posix_memalign)(&d, 256, 300), 0);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(d) % 256, 0u);
    void* e = opaque(&memalign)(32, 40);
    void* f = opaque(&valloc)(50);
    void* g = opaque(&pvalloc)(60);
    // Through ::operator new, which a new-expression may elide when nothing uses the memory.
    void* h = ::operator new[](8 * sizeof(double));
    void* i = ::operator new[](16 * sizeof(float), std::align_val_t{128});
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(i) % 128, 0u);
    for (void* p : {a, b, c, d, e, f, g}) opaque(&std::free)(p);
    ::operator delete[](h);
    ::operator delete[](i, std::align_val_t{128});
  }
  EXPECT_EQ(run.stage("family").allocations, 9u);
  EXPECT_EQ(run.stage("family").alloc_bytes, 10u + 100 + 128 + 300 + 40 + 50 + 60 + 64 + 64);
  const frugal::heap_totals end = frugal::this_thread_heap_totals();
  EXPECT_EQ(end.frees - start.frees, 9u);
  EXPECT_EQ(end.live_bytes, start.live_bytes);
}

TEST_F(Allocation, ReallocGrowsShrinksAndFrees) {
  frugal::budget run{"run"};
  { frugal::scope warm{run, "realloc"}; }
  const frugal::heap_totals start = frugal::this_thread_heap_totals();
  {
    frugal::scope s{run, "realloc"};
    void* p = opaque(&std::realloc)(nullptr, 100);  // = malloc(100)
    std::memset(p, 1, 100);
    p = opaque(&std::realloc)(p, 100000);  // larger
    EXPECT_EQ(static_cast<unsigned char*>(p)[99], 1);
    p = opaque(&std::realloc)(p, 10);  // smaller
    EXPECT_EQ(static_cast<unsigned char*>(p)[9], 1);
    EXPECT_EQ(opaque(&std::realloc)(p, 0), nullptr);  // frees (glibc)
  }
  EXPECT_EQ(run.stage("realloc").allocations, 3u);
  EXPECT_EQ(run.stage("realloc").alloc_bytes, 100u + 100000 + 10);
  EXPECT_EQ(frugal::this_thread_heap_totals().live_bytes, start.live_bytes);
}

TEST_F(Allocation, CallocOverflowFreeNullAndFailedAllocationsCountNothing) {
  frugal::budget run{"run"};
  { frugal::scope warm{run, "edge"}; }
  const frugal::heap_totals start = frugal::this_thread_heap_totals();
  {
    frugal::scope s{run, "edge"};
    errno = 0;
    EXPECT_EQ(opaque(&std::calloc)(SIZE_MAX, 2), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    opaque(&std::free)(nullptr);
    EXPECT_EQ(opaque(&std::malloc)(SIZE_MAX - 4096), nullptr);
    void* d = nullptr;
    EXPECT_EQ(opaque(&posix_memalign)(&d, 3, 16), EINVAL);
    EXPECT_EQ(opaque(&aligned_alloc)(24, 48), nullptr);
  }
  EXPECT_EQ(run.stage("edge").allocations, 0u);
  const frugal::heap_totals end = frugal::this_thread_heap_totals();
  EXPECT_EQ(end.allocations, start.allocations);
  EXPECT_EQ(end.frees, start.frees);
}

// GCC turns malloc followed by a full memset into a calloc call at -O2: that call must reach
// the calloc hook once, not recurse or count twice.
__attribute__((noinline)) void* zeroed(std::size_t n) {
  void* p = std::malloc(n);
  if (p) std::memset(p, 0, n);
  return p;
}

TEST_F(Allocation, MallocPlusMemsetCountsOnce) {
  frugal::budget run{"run"};
  {
    frugal::scope s{run, "zeroed"};
    void* p = zeroed(4096);
    EXPECT_EQ(static_cast<unsigned char*>(p)[4095], 0);
    std::free(p);
  }
  EXPECT_EQ(run.stage("zeroed").allocations, 1u);
  EXPECT_EQ(run.stage("zeroed").alloc_bytes, 4096u);
}

TEST_F(Allocation, AHookNeverAllocatesItself) {
  frugal::budget run{"run"};
  std::uint64_t counted = 0;
  std::thread fresh([&] {  // the first allocation of a thread also registers it
    frugal::scope s{run, "first"};
    opaque(&std::free)(opaque(&std::malloc)(8));
    counted = frugal::detail::this_thread.counters.allocations;
  });
  fresh.join();
  EXPECT_EQ(run.stage("first").allocations, 1u);
}

TEST_F(Allocation, FrugalsBookkeepingIsNotChargedToUserScopes) {
  frugal::budget run{"run"};
  frugal::budget& eval = run.child("eval");
  {
    frugal::scope outer{run, "outer"};
    // First use of each: frugal allocates slots and stage tables here.
    { frugal::scope a{run, "a brand new stage"}; }
    { frugal::scope b{eval, "another"}; }
    const std::string dynamic = std::string(20, 'x');  // the user's own: counted
    { frugal::scope c{run, dynamic}; }
    (void)run.stages();
    (void)run.snapshot();
    (void)run.exhausted();
  }
  EXPECT_EQ(run.stage("outer").allocations, 1u) << "only the user's std::string";
  EXPECT_EQ(run.used(frugal::resource::allocations), 1);
}

TEST_F(Allocation, UsableSizeAgreesWithGlibc) {
  using usable_fn = std::size_t (*)(void*);
  auto glibc = reinterpret_cast<usable_fn>(dlsym(RTLD_NEXT, "malloc_usable_size"));
  ASSERT_NE(glibc, nullptr) << dlerror();
  for (std::size_t n : {1u, 24u, 25u, 1000u, 4096u, 200000u, 4u << 20}) {  // small, large, mmapped
    void* p = opaque(&std::malloc)(n);
    EXPECT_EQ(malloc_usable_size(p), glibc(p)) << n;
    EXPECT_GE(malloc_usable_size(p), n);
    opaque(&std::free)(p);
  }
}

TEST_F(Allocation, HeapWatchRecordsAPeakAndResets) {
  frugal::heap_watch watch;
  ASSERT_TRUE(watch.available());
  const std::int64_t base = watch.peak_bytes();
  {
    std::unique_ptr<char[]> block(new char[4 << 20]);
    block[0] = 1;
  }
  EXPECT_GE(watch.peak_bytes() - base, 4 << 20);
  watch.reset();
  EXPECT_LT(watch.peak_bytes() - frugal::heap_live_bytes(), 1 << 20);
}

TEST_F(Allocation, StagesAndBudgetsOfChildrenCarryAllocations) {
  frugal::budget run{"run"};
  frugal::budget& eval = run.child("eval");
  {
    frugal::scope s{eval, "eval"};
    std::vector<int> v(100);
    v[0] = 1;
  }
  EXPECT_EQ(eval.used(frugal::resource::allocations), 1);
  EXPECT_EQ(run.used(frugal::resource::allocations), 1);
  EXPECT_EQ(run.used(frugal::resource::alloc_bytes), 400);
}

}  // namespace
