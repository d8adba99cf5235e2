// Tracing when memory runs out: closing a scope (a noexcept destructor) must neither throw nor
// terminate when the trace cannot allocate its thread log or its next chunk, and a budget's
// destructor must not either when it cannot copy the names its events point at. The event is
// dropped and counted instead, and the recording stays consistent (the allowance is not spent
// on a chunk that was never allocated; no event points at freed names).
//
// This executable replaces the global operator new so that a test can make allocations fail.
#include <frugal/frugal.hpp>
#include <frugal/trace.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/json_reader.hpp"

namespace {

// While armed, allocations of at least `failing_from` bytes throw std::bad_alloc.
std::atomic<bool> armed{false};
std::atomic<std::size_t> failing_from{0};
std::atomic<std::size_t> failed{0};

// Not RAII: a guard declared inside a block is destroyed before the scopes declared above it,
// and those are what must close without memory.
void fail_allocations(std::size_t from_bytes = 0) {
  failing_from.store(from_bytes);
  failed.store(0);
  armed.store(true);
}
void allow_allocations() { armed.store(false); }

}  // namespace

void* operator new(std::size_t n) {
  if (armed.load(std::memory_order_relaxed) && n >= failing_from.load(std::memory_order_relaxed)) {
    failed.fetch_add(1);
    throw std::bad_alloc();
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
// The replacement operator new above is malloc, so free is the matching release; GCC cannot
// see that the two are replaced as a pair.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace {

using frugal_test::json;
using frugal_test::json_reader;

std::string trace_text() {
  std::ostringstream out;
  frugal::write_chrome_trace(out);
  return out.str();
}

std::size_t complete_events(const json& doc) {
  std::size_t n = 0;
  for (const json& e : doc["traceEvents"].items) n += e["ph"].str() == "X";
  return n;
}

class TraceAllocationFailure : public ::testing::Test {
 protected:
  void TearDown() override { frugal::clear_trace(); }
};

// The thread's first event needs its log and its first chunk: neither can be had.
TEST_F(TraceAllocationFailure, NoMemoryForTheLogDropsTheEventAndCountsIt) {
  frugal::budget run{"run"};
  frugal::start_tracing(1024);  // exactly one chunk
  {
    frugal::scope s{run, "step"};
    frugal::add_flops(7);
    fail_allocations();
  }  // ~scope, with every allocation failing: before the fix, std::terminate
  allow_allocations();
  EXPECT_GT(failed.load(), 0u) << "the scope's close should have tried to allocate";
  frugal::trace_stats stats = frugal::trace_statistics();
  EXPECT_EQ(stats.events, 0u);
  EXPECT_EQ(stats.dropped, 1u);
  // Memory is back: the next events are recorded, and the one chunk the allowance holds was not
  // spent on the allocation that failed: 1024 more events fit, the 1025th is dropped.
  for (int i = 0; i < 1025; ++i) frugal::scope s{run, "step"};
  frugal::stop_tracing();
  stats = frugal::trace_statistics();
  EXPECT_EQ(stats.events, 1024u);
  EXPECT_EQ(stats.dropped, 2u);
  const json doc = json_reader::parse(trace_text());
  EXPECT_EQ(complete_events(doc), 1024u);
  EXPECT_EQ(doc["otherData"]["dropped_events"].num(), 2.0);
}

// The thread already has a log and a full chunk: only the next chunk (64 KiB) cannot be had.
TEST_F(TraceAllocationFailure, NoMemoryForTheNextChunkDropsTheEventAndCountsIt) {
  frugal::budget run{"run"};
  frugal::start_tracing(2048);  // two chunks
  for (std::size_t i = 0; i < frugal::detail::trace_chunk_events; ++i) frugal::scope s{run, "fill"};
  {
    frugal::scope s{run, "step"};
    fail_allocations(sizeof(frugal::detail::trace_chunk));
  }
  allow_allocations();
  EXPECT_EQ(failed.load(), 1u) << "exactly the chunk's allocation should have failed";
  EXPECT_EQ(frugal::trace_statistics().events, 1024u);
  EXPECT_EQ(frugal::trace_statistics().dropped, 1u);
  for (int i = 0; i < 1025; ++i) frugal::scope s{run, "step"};  // the second chunk, then full
  frugal::stop_tracing();
  EXPECT_EQ(frugal::trace_statistics().events, 2048u);
  EXPECT_EQ(frugal::trace_statistics().dropped, 2u);
  EXPECT_EQ(complete_events(json_reader::parse(trace_text())), 2048u);
}

// Many threads' first events at once, all failing: every one dropped and counted, no terminate.
TEST_F(TraceAllocationFailure, EveryThreadDropsAndCounts) {
  frugal::budget run{"run"};
  frugal::start_tracing();
  std::vector<std::thread> threads;
  {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&] {
        frugal::scope s{run, "work"};
        ready.fetch_add(1);
        while (!go.load()) std::this_thread::yield();
      });
    while (ready.load() < 4) std::this_thread::yield();
    fail_allocations();
    go.store(true);
    for (auto& th : threads) th.join();  // join allocates nothing
    allow_allocations();
  }
  frugal::stop_tracing();
  EXPECT_EQ(frugal::trace_statistics().events, 0u);
  EXPECT_EQ(frugal::trace_statistics().dropped, 4u);
  EXPECT_EQ(complete_events(json_reader::parse(trace_text())), 0u);
}

// A budget's destructor copies the names its recorded events point at; when it cannot, those
// events are dropped (and counted) rather than left pointing at freed names, or terminating.
TEST_F(TraceAllocationFailure, NoMemoryToKeepADyingBudgetsNamesDropsItsEvents) {
  frugal::budget stays{"stays"};
  frugal::start_tracing();
  { frugal::scope s{stays, "kept"}; }
  {
    std::optional<frugal::budget> dies;
    dies.emplace(std::string(100, 'd'));  // long names: copies that must allocate
    for (int i = 0; i < 3; ++i) frugal::scope s{*dies, std::string(100, 's')};
    fail_allocations();
    dies.reset();  // before the fix, std::terminate
    allow_allocations();
  }
  { frugal::scope s{stays, "after"}; }
  frugal::stop_tracing();
  const frugal::trace_stats stats = frugal::trace_statistics();
  EXPECT_EQ(stats.events, 2u);
  EXPECT_EQ(stats.dropped, 3u);
  const json doc = json_reader::parse(trace_text());
  ASSERT_EQ(complete_events(doc), 2u);
  EXPECT_EQ(doc["traceEvents"][0]["name"].str(), "kept");
  EXPECT_EQ(doc["traceEvents"][1]["name"].str(), "after");
  EXPECT_EQ(doc["otherData"]["dropped_events"].num(), 3.0);
}

// With memory, a dying budget's events keep their names (the copies), as before.
TEST_F(TraceAllocationFailure, WithMemoryADyingBudgetsEventsKeepTheirNames) {
  frugal::start_tracing();
  {
    frugal::budget dies{std::string(100, 'd')};
    frugal::scope s{dies, std::string(100, 's')};
  }
  frugal::stop_tracing();
  const json doc = json_reader::parse(trace_text());
  ASSERT_EQ(complete_events(doc), 1u);
  EXPECT_EQ(doc["traceEvents"][0]["name"].str(), std::string(100, 's'));
  EXPECT_EQ(doc["traceEvents"][0]["cat"].str(), std::string(100, 'd'));
  EXPECT_EQ(frugal::trace_statistics().dropped, 0u);
}

}  // namespace
