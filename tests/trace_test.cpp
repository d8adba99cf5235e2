// Opt-in tracing: scopes become Chrome trace "complete" events per thread, memory stays within
// the requested bound, names survive their budgets, and nothing is recorded when off.
#include <frugal/frugal.hpp>
#include <frugal/tbb.hpp>
#include <frugal/trace.hpp>

#include <gtest/gtest.h>

#include <oneapi/tbb/global_control.h>

#include <set>
#include <sstream>
#include <string>

#include "support/json_reader.hpp"

using namespace std::chrono_literals;
using frugal_test::json;
using frugal_test::json_reader;

namespace {

std::string trace_text() {
  std::ostringstream out;
  frugal::write_chrome_trace(out);
  return out.str();
}

class Trace : public ::testing::Test {
 protected:
  void TearDown() override { frugal::clear_trace(); }
};

TEST_F(Trace, ScopesBecomeCompleteEventsWithTimesAndCharges) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::start_tracing(4096);
  EXPECT_TRUE(frugal::tracing());
  clock.advance(1ms);
  {
    frugal::scope step{run, "step"};
    clock.advance(2ms);
    {
      frugal::scope fwd{run, "forward"};
      frugal::add_flops(1000);
      clock.advance(3ms);
    }
  }
  frugal::stop_tracing();
  { frugal::scope after{run, "after"}; }  // not recorded: tracing is off
  const json doc = json_reader::parse(trace_text());
  const json& events = doc["traceEvents"];
  std::vector<const json*> complete;
  for (const json& e : events.items)
    if (e["ph"].str() == "X") complete.push_back(&e);
  ASSERT_EQ(complete.size(), 2u);
  // Events are written in the order scopes closed: the inner one first.
  EXPECT_EQ((*complete[0])["name"].str(), "forward");
  EXPECT_EQ((*complete[0])["cat"].str(), "train");
  EXPECT_DOUBLE_EQ((*complete[0])["ts"].num(), 3000.0);  // microseconds since start_tracing
  EXPECT_DOUBLE_EQ((*complete[0])["dur"].num(), 3000.0);
  EXPECT_DOUBLE_EQ((*complete[0])["args"]["flops"].num(), 1000.0);
  EXPECT_EQ((*complete[1])["name"].str(), "step");
  EXPECT_DOUBLE_EQ((*complete[1])["ts"].num(), 1000.0);
  EXPECT_DOUBLE_EQ((*complete[1])["dur"].num(), 5000.0);
  EXPECT_DOUBLE_EQ((*complete[1])["args"]["flops"].num(), 1000.0);  // inclusive
  EXPECT_EQ((*complete[0])["tid"].num(), (*complete[1])["tid"].num());
  EXPECT_EQ(doc["displayTimeUnit"].str(), "ms");
  const frugal::trace_stats stats = frugal::trace_statistics();
  EXPECT_EQ(stats.events, 2u);
  EXPECT_EQ(stats.dropped, 0u);
}

TEST_F(Trace, WorkerThreadsGetTheirOwnTracksAndThreadNames) {
  tbb::global_control allow(tbb::global_control::max_allowed_parallelism, 4);
  frugal::budget run{"train"};
  frugal::start_tracing();
  {
    frugal::scope s{run, "parallel"};
    frugal::parallel_for(0, 64, [](int) {
      frugal::add_flops(1);
      volatile double x = 0;
      for (int i = 0; i < 20000; ++i) x = x + i;
    });
  }
  frugal::stop_tracing();
  const json doc = json_reader::parse(trace_text());
  std::set<double> event_threads, named_threads;
  double flops = 0;
  for (const json& e : doc["traceEvents"].items) {
    if (e["ph"].str() == "X") {
      event_threads.insert(e["tid"].num());
      EXPECT_EQ(e["name"].str(), "parallel");
      if (e["args"].members.size() == 3) {
        EXPECT_TRUE(e["args"]["continued"].boolean);
      }
      // Each event carries what its own thread did: together, every FLOP exactly once.
      flops += e["args"]["flops"].num();
    } else {
      EXPECT_EQ(e["ph"].str(), "M");
      named_threads.insert(e["tid"].num());
    }
  }
  EXPECT_EQ(event_threads, named_threads);
  EXPECT_EQ(flops, 64.0);
}

TEST_F(Trace, MemoryIsBoundedAndDropsAreCounted) {
  frugal::budget run{"run"};
  frugal::start_tracing(1);  // rounds up to one chunk of 1024 events
  for (int i = 0; i < 3000; ++i) frugal::scope s{run, "tiny"};
  frugal::stop_tracing();
  const frugal::trace_stats stats = frugal::trace_statistics();
  EXPECT_EQ(stats.events, 0u) << "1 event allowed: less than one chunk, so none is reserved";
  EXPECT_EQ(stats.dropped, 3000u);
  frugal::start_tracing(2048);
  for (int i = 0; i < 3000; ++i) frugal::scope s{run, "tiny"};
  frugal::stop_tracing();
  EXPECT_EQ(frugal::trace_statistics().events, 2048u);
  EXPECT_EQ(frugal::trace_statistics().dropped, 3000u - 2048u);
  const json doc = json_reader::parse(trace_text());
  EXPECT_EQ(doc["otherData"]["dropped_events"].num(), 952.0);
}

TEST_F(Trace, NamesOutliveTheirBudgets) {
  frugal::start_tracing();
  {
    frugal::budget temporary{"trial-7"};
    frugal::scope s{temporary, std::string("evaluate")};
  }
  frugal::stop_tracing();
  const json doc = json_reader::parse(trace_text());
  const json& e = doc["traceEvents"][0];
  EXPECT_EQ(e["name"].str(), "evaluate");
  EXPECT_EQ(e["cat"].str(), "trial-7");
}

// trace.json is UTF-8 whatever bytes the names hold: ill-formed sequences become U+FFFD (the
// writer's policy, detail/json.hpp), well-formed ones pass unchanged, also after the budget died.
TEST_F(Trace, NamesThatAreNotUtf8BecomeValidUtf8) {
  frugal::start_tracing();
  frugal::budget run{"caf\xE9"};
  { frugal::scope s{run, std::string("\xED\xA0\x80 \xC0\xAF")}; }
  {
    frugal::budget temporary{"\xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F"};
    frugal::scope s{temporary, std::string("\xC2\xB5s")};
  }
  frugal::stop_tracing();
  const std::string text = trace_text();
  json doc;
  ASSERT_NO_THROW(doc = json_reader::parse(text)) << text;
  const json& events = doc["traceEvents"];
  EXPECT_EQ(events[0]["name"].str(), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD \xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(events[0]["cat"].str(), "caf\xEF\xBF\xBD");
  EXPECT_EQ(events[1]["name"].str(), "\xC2\xB5s");
  EXPECT_EQ(events[1]["cat"].str(), "\xE6\x97\xA5\xE6\x9C\xAC \xEF\xBF\xBD");
}

TEST_F(Trace, StartingAgainDiscardsThePreviousRecording) {
  frugal::budget run{"run"};
  frugal::start_tracing();
  { frugal::scope s{run, "first"}; }
  frugal::start_tracing();
  { frugal::scope s{run, "second"}; }
  frugal::stop_tracing();
  const json doc = json_reader::parse(trace_text());
  ASSERT_EQ(frugal::trace_statistics().events, 1u);
  EXPECT_EQ(doc["traceEvents"][0]["name"].str(), "second");
}

TEST_F(Trace, BadInputIsRejected) {
  EXPECT_THROW(frugal::start_tracing(0), std::invalid_argument);
  EXPECT_FALSE(frugal::tracing());
}

}  // namespace
