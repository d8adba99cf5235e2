// A scope allocates nothing once its (thread, budget, stage) slot exists: proven with a
// counting replacement of the global operator new in this test binary.
#include <frugal/frugal.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>

// GCC cannot see that these replacements pair malloc with free and warns at every inlined
// new/delete pair; the pairing is right by construction here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace {
std::atomic<long> news{0};
}

void* operator new(std::size_t n) {
  news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace {

void one_step(frugal::budget& run, frugal::budget& eval, const std::string& dynamic, frugal::unit_id samples) {
  frugal::scope step{run, "step"};
  {
    frugal::scope fwd{run, "forward"};
    frugal::add_flops(1000);
  }
  {
    frugal::scope named{run, dynamic};
    frugal::add_units(samples, 32);
    frugal::add_units("tokens", 8);
  }
  {
    frugal::scope e{eval, "eval"};
    frugal::add_flops(10);
  }
  {
    frugal::scope again{run, "step"};  // a re-entered stage
    const char name[] = {'l', static_cast<char>('0' + samples.index % 10), '\0'};  // confirmed by content
    frugal::scope layer{run, name};
  }
  frugal::attach same{frugal::current_context()};
}

TEST(ScopeAllocation, ScopesAllocateNothingAfterFirstUse) {
  frugal::budget run{"run", frugal::limits{}.wall(std::chrono::hours(1)).flops(1e15)};
  frugal::budget& eval = run.child("eval");
  const std::string dynamic = "backward";
  const frugal::unit_id samples = frugal::unit("samples");
  one_step(run, eval, dynamic, samples);  // first use creates the slots
  const long before = news.load();
  for (int i = 0; i < 1000; ++i) one_step(run, eval, dynamic, samples);
  const long during = news.load() - before;
  EXPECT_EQ(during, 0) << "operator new calls in 1000 instrumented steps";
  EXPECT_EQ(run.stage("step").calls, 1001u);
  EXPECT_EQ(run.used(frugal::resource::flops), 1001.0 * 1010);
  // The counter works: the stage table itself allocates on first use of a new stage.
  { frugal::scope s{run, "a new stage"}; }
  EXPECT_GT(news.load() - before, 0);
}

}  // namespace
