// Signals -> clean stops, with real signals raised in this process: the first stops the run at
// the next checkpoint (stop_reason::signal, the signal named, no veto), arms the watchdog at
// signal + grace, and a second one kills (death tests: a fresh process each). The handlers are
// restored afterwards; one installer at a time.
#include <frugal/controller.hpp>
#include <frugal/deadline.hpp>
#include <frugal/scope.hpp>
#include <frugal/signals.hpp>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_group.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

// A signal sent with kill() may land on any thread (a oneTBB worker, the watchdog's): wait for it.
bool within(std::chrono::milliseconds patience, const std::function<bool()>& done) {
  const auto until = std::chrono::steady_clock::now() + patience;
  while (!done() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
  return done();
}

struct sigaction current_action(int sig) {
  struct sigaction now {};
  EXPECT_EQ(::sigaction(sig, nullptr, &now), 0);
  return now;
}

TEST(SignalStop, RaisedSigtermStopsAtTheNextCheckpointWithTheSignalNamed) {
  frugal::budget run{"train", frugal::limits{}.wall(1h)};
  frugal::controller ctl{run};
  frugal::signal_stop signals;
  signals.bind(ctl);

  EXPECT_FALSE(ctl.should_stop());
  EXPECT_TRUE(ctl.end_step().is_continue());
  EXPECT_EQ(frugal::signal_stop::describe(), "");

  ASSERT_EQ(::raise(SIGTERM), 0);  // the handler runs before raise() returns: still alive
  EXPECT_TRUE(signals.received());
  EXPECT_EQ(signals.signal_number(), SIGTERM);
  EXPECT_TRUE(ctl.should_stop());
  EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::signal);
  EXPECT_EQ(ctl.stop_message(), "stop (signal): SIGTERM received");

  const frugal::decision d = ctl.end_step();
  EXPECT_TRUE(d.stops());
  EXPECT_TRUE(d.has(frugal::action::stop));
  EXPECT_FALSE(d.has(frugal::action::cancelled));
  EXPECT_EQ(d.cause(), frugal::stop_reason::signal);
  EXPECT_EQ(d.reason(), "stop (signal): SIGTERM received");
  EXPECT_EQ(ctl.end_run(), frugal::stop_reason::signal);
}

TEST(SignalStop, KillToItselfWithSigusr1StopsTheRun) {
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  frugal::signal_stop signals;
  signals.bind(ctl);
  ASSERT_EQ(::kill(::getpid(), SIGUSR1), 0);
  ASSERT_TRUE(within(2000ms, [&] { return ctl.should_stop(); }));
  EXPECT_EQ(signals.signal_number(), SIGUSR1);
  const frugal::decision d = ctl.end_step();
  EXPECT_EQ(d.cause(), frugal::stop_reason::signal);
  EXPECT_EQ(d.reason(), "stop (signal): SIGUSR1 received");
}

TEST(SignalStop, NoCallbackCanVetoTheStop) {
  frugal::budget run{"train"};
  frugal::controller ctl{run};
  frugal::signal_stop signals;
  signals.bind(ctl);
  int vetoes = 0;
  ctl.add_callback("keep going", [&vetoes](frugal::decision_event& e) {
    ++vetoes;
    e.decision.veto();
  });
  ASSERT_EQ(::raise(SIGINT), 0);
  const frugal::decision d = ctl.end_step();
  EXPECT_EQ(vetoes, 1);  // the hook ran and vetoed...
  EXPECT_TRUE(d.stops());  // ...and the stop stands
  EXPECT_EQ(d.cause(), frugal::stop_reason::signal);
  EXPECT_NE(d.reason().find("stop (signal): SIGINT received"), std::string::npos) << d.reason();
  EXPECT_TRUE(ctl.end_step().stops());
  EXPECT_EQ(vetoes, 2);
}

std::atomic<int> custom_calls{0};
void custom_handler(int) { custom_calls.fetch_add(1); }

TEST(SignalStop, RestoresThePreviousHandlersWhenItDies) {
  custom_calls = 0;
  struct sigaction custom {};
  custom.sa_handler = &custom_handler;
  sigemptyset(&custom.sa_mask);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  struct sigaction saved_term {}, saved_int {}, saved_usr1 {};
  ASSERT_EQ(::sigaction(SIGTERM, &custom, &saved_term), 0);
  ASSERT_EQ(::sigaction(SIGINT, &dfl, &saved_int), 0);
  ASSERT_EQ(::sigaction(SIGUSR1, &dfl, &saved_usr1), 0);
  {
    frugal::signal_stop signals;
    EXPECT_EQ(signals.handled_signals(), (std::vector<int>{SIGTERM, SIGINT, SIGUSR1}));
    for (int sig : {SIGTERM, SIGINT, SIGUSR1}) {
      const struct sigaction now = current_action(sig);
      EXPECT_EQ(now.sa_handler, &frugal::detail::signals_impl::on_signal) << frugal::signal_name(sig);
      EXPECT_NE(now.sa_flags & SA_RESTART, 0) << frugal::signal_name(sig);
    }
    ASSERT_EQ(::raise(SIGTERM), 0);
    EXPECT_EQ(custom_calls, 0);  // ours, not the custom one
    EXPECT_TRUE(signals.received());
  }
  EXPECT_EQ(current_action(SIGTERM).sa_handler, &custom_handler);
  EXPECT_EQ(current_action(SIGINT).sa_handler, SIG_DFL);
  EXPECT_EQ(current_action(SIGUSR1).sa_handler, SIG_DFL);
  ASSERT_EQ(::raise(SIGTERM), 0);  // a SIGTERM now goes where it went before
  EXPECT_EQ(custom_calls, 1);
  ASSERT_EQ(::sigaction(SIGTERM, &saved_term, nullptr), 0);
  ASSERT_EQ(::sigaction(SIGINT, &saved_int, nullptr), 0);
  ASSERT_EQ(::sigaction(SIGUSR1, &saved_usr1, nullptr), 0);
}

TEST(SignalStop, AnIgnoredSignalStaysIgnored) {
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  struct sigaction saved {};
  ASSERT_EQ(::sigaction(SIGUSR1, &ignore, &saved), 0);
  {
    frugal::signal_stop signals;
    EXPECT_EQ(signals.handled_signals(), (std::vector<int>{SIGTERM, SIGINT}));
    EXPECT_EQ(current_action(SIGUSR1).sa_handler, SIG_IGN);
    ASSERT_EQ(::raise(SIGUSR1), 0);
    EXPECT_FALSE(signals.received());
  }
  EXPECT_EQ(current_action(SIGUSR1).sa_handler, SIG_IGN);
  ASSERT_EQ(::sigaction(SIGUSR1, &saved, nullptr), 0);
}

TEST(SignalStop, OnlyOneInstallerAtATime) {
  {
    frugal::signal_stop first;
    try {
      frugal::signal_stop second{std::vector<int>{SIGUSR2}};
      FAIL() << "a second signal_stop was installed";
    } catch (const std::logic_error& e) {
      EXPECT_STREQ(e.what(),
                   "frugal::signal_stop: another signal_stop is alive; only one may be installed at a time "
                   "(signal handlers are process-wide)");
    }
    // The failed one took nothing from the first: its handler is still in place.
    EXPECT_EQ(current_action(SIGTERM).sa_handler, &frugal::detail::signals_impl::on_signal);
    EXPECT_EQ(current_action(SIGUSR2).sa_handler, SIG_DFL);
  }
  frugal::signal_stop again;  // the first is gone: allowed
  EXPECT_FALSE(again.received());  // and the state starts afresh
}

void expect_invalid(const std::function<void()>& make, const std::string& what) {
  try {
    make();
    ADD_FAILURE() << "no exception; expected: " << what;
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), what);
  }
}

TEST(SignalStop, BadInputIsRejectedAndLeavesNothingInstalled) {
  expect_invalid([] { frugal::signal_stop s{std::vector<int>{}}; }, "frugal::signal_stop: signals must not be empty, got none");
  expect_invalid([] { frugal::signal_stop s{std::vector<int>{SIGKILL}}; },
                 "frugal::signal_stop: signals: SIGKILL cannot be caught, got 9");
  expect_invalid([] { frugal::signal_stop s{std::vector<int>{SIGTERM, SIGSEGV}}; },
                 "frugal::signal_stop: signals: SIGSEGV reports a fault, not a request to stop, got 11");
  expect_invalid([] { frugal::signal_stop s{std::vector<int>{SIGTERM, SIGTERM}}; },
                 "frugal::signal_stop: signals: SIGTERM given twice");
  expect_invalid([] { frugal::signal_stop s{std::vector<int>{0}}; },
                 "frugal::signal_stop: signals: not a signal number, got 0");
  frugal::budget run{"train"};
  frugal::deadline_watchdog watchdog{run};
  expect_invalid([&] { frugal::signal_stop s{watchdog, -1s}; }, "frugal::signal_stop: grace must be >= 0, got -1.00 s");
  EXPECT_EQ(current_action(SIGTERM).sa_handler, SIG_DFL);
  frugal::signal_stop fine;  // nothing was left marked as installed
}

TEST(SignalStop, SaRestartKeepsABlockingReadGoing) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  frugal::signal_stop signals;
  std::atomic<bool> reading{false};
  ssize_t got = -2;
  int read_errno = 0;
  char byte = 0;
  std::thread reader([&] {
    reading = true;
    got = ::read(fds[0], &byte, 1);
    read_errno = got < 0 ? errno : 0;
  });
  while (!reading) std::this_thread::yield();
  std::this_thread::sleep_for(20ms);  // in read() by now
  EXPECT_EQ(::pthread_kill(reader.native_handle(), SIGUSR1), 0);
  // (ThreadSanitizer runs the handler only once read() returns; natively it runs now and,
  // without SA_RESTART, read() would fail with EINTR.)
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(::write(fds[1], "x", 1), 1);
  reader.join();
  EXPECT_EQ(got, 1) << "read failed: " << std::strerror(read_errno);
  EXPECT_EQ(byte, 'x');
  EXPECT_TRUE(within(2000ms, [&] { return signals.received(); }));
  EXPECT_EQ(signals.signal_number(), SIGUSR1);
  ::close(fds[0]);
  ::close(fds[1]);
}

// --- grace: the hard deadline at signal + grace ---

bool fires_within(const frugal::deadline_watchdog& w, std::chrono::milliseconds patience) {
  return within(patience, [&] { return w.fired(); });
}

TEST(SignalStop, GraceCancelsAStepThatWouldNotEndInTime) {
  frugal::budget run{"train", frugal::limits{}.wall(1h)};  // far away
  tbb::task_group_context ctx;
  frugal::deadline_watchdog watchdog{run, ctx};
  frugal::signal_stop signals{watchdog, 200ms};
  frugal::controller ctl{run};
  signals.bind(ctl);
  ctl.cancel_on(watchdog.stop_flag(), frugal::stop_reason::deadline, [&watchdog] { return watchdog.describe(); });

  const std::int64_t signalled_ns = frugal::wall_now_ns();
  ASSERT_EQ(::raise(SIGTERM), 0);
  EXPECT_TRUE(ctl.should_stop());
  EXPECT_FALSE(watchdog.fired());  // not yet: the grace runs
  std::atomic<bool> gave_up{false};
  {
    frugal::scope step{run, "step"};
    // A step in flight that ignores the stop: it ends only when cancelled (30 s escape).
    tbb::parallel_for(
        tbb::blocked_range<int>(0, 1000, 1),
        [&](const tbb::blocked_range<int>&) {
          const auto t0 = std::chrono::steady_clock::now();
          while (!ctx.is_group_execution_cancelled())
            if (std::chrono::steady_clock::now() - t0 > 30s) {
              gave_up = true;
              return;
            }
        },
        tbb::simple_partitioner(), ctx);
  }
  EXPECT_FALSE(gave_up.load());
  ASSERT_TRUE(fires_within(watchdog, 2000ms));
  const std::int64_t after_ns = *watchdog.fired_at_ns() - signalled_ns;
  EXPECT_GE(after_ns, std::chrono::nanoseconds(200ms).count());  // never before the grace ends
  EXPECT_LT(after_ns, std::chrono::nanoseconds(2000ms).count());
  EXPECT_EQ(watchdog.describe(),
            "the deadline watchdog fired: the 200 ms grace after SIGTERM ran out; parallel work in flight was cancelled");
  const frugal::decision d = ctl.end_step();
  EXPECT_TRUE(d.has(frugal::action::cancelled));
  EXPECT_EQ(d.cause(), frugal::stop_reason::deadline);
  EXPECT_EQ(d.reason(), "cancelled (deadline): " + watchdog.describe());
}

TEST(SignalStop, WithoutASignalTheGraceNeverArms) {
  frugal::budget run{"train", frugal::limits{}.wall(1h)};
  frugal::deadline_watchdog watchdog{run};
  {
    frugal::signal_stop signals{watchdog, 0ms};
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_FALSE(watchdog.armed_at().has_value());
  EXPECT_FALSE(watchdog.fired());
}

TEST(SignalStop, AStepThatEndsInTimeStopsCleanly) {
  // The signal stops the run at the next checkpoint, well inside the grace: no cancellation.
  frugal::budget run{"train", frugal::limits{}.wall(1h)};
  tbb::task_group_context ctx;
  frugal::deadline_watchdog watchdog{run, ctx};
  frugal::signal_stop signals{watchdog, 1h};
  frugal::controller ctl{run};
  signals.bind(ctl);
  ctl.cancel_on(watchdog.stop_flag());
  ASSERT_EQ(::raise(SIGUSR1), 0);
  ASSERT_TRUE(within(2000ms, [&] { return watchdog.armed_at().has_value(); }));
  const auto armed = *watchdog.armed_at();
  EXPECT_GT(armed - std::chrono::steady_clock::now(), 59min);
  const frugal::decision d = ctl.end_step();
  EXPECT_TRUE(d.has(frugal::action::stop));
  EXPECT_FALSE(d.has(frugal::action::cancelled));
  EXPECT_EQ(d.reason(), "stop (signal): SIGUSR1 received");
  EXPECT_FALSE(ctx.is_group_execution_cancelled());
}

// --- a second signal kills, with its own number in the exit status ---

class SignalStopDeathTest : public ::testing::Test {
 protected:
  // "threadsafe": the child re-runs this binary up to the statement, so no thread (oneTBB's,
  // a watchdog's) is forked mid-flight.
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(SignalStopDeathTest, TheFirstSignalDoesNotKill) {
  EXPECT_EXIT(
      {
        frugal::signal_stop signals;
        (void)::raise(SIGTERM);
        std::_Exit(signals.received() ? 0 : 3);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(SignalStopDeathTest, ASecondSigtermKillsWithSigterm) {
  EXPECT_EXIT(
      {
        frugal::signal_stop signals;
        (void)::raise(SIGTERM);
        if (!signals.received()) std::_Exit(3);
        (void)::raise(SIGTERM);
        std::_Exit(4);  // not reached
      },
      ::testing::KilledBySignal(SIGTERM), "");
}

// SIGUSR1 ahead of the limit, the program still running at it: SLURM's SIGTERM kills at once.
void slurm_warning_then_time_limit() {
  frugal::budget run{"train"};
  frugal::deadline_watchdog watchdog{run};
  frugal::signal_stop signals{watchdog, 1h};
  (void)::raise(SIGUSR1);
  if (signals.signal_number() != SIGUSR1) std::_Exit(3);
  (void)::raise(SIGTERM);
  std::_Exit(4);  // not reached
}

TEST_F(SignalStopDeathTest, SlurmWarningThenTimeLimitKillsWithSigterm) {
  EXPECT_EXIT(slurm_warning_then_time_limit(), ::testing::KilledBySignal(SIGTERM), "");
}

}  // namespace
