// frugal::mpi::job on the ranks of one communicator (ctest runs it under mpirun -np 4): the job's
// totals are the exact sum of the ranks', every rank stops at the same step whatever made one
// rank stop, and the exchanges' interval and horizon hold the limits.
#include <frugal/mpi.hpp>
#include <frugal/scope.hpp>
#include <frugal/signals.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

int world_rank() { return frugal::mpi::environment::world_rank(); }
int world_size() { return frugal::mpi::environment::world_size(); }

// A failing assertion on one rank must not leave the others waiting in the next collective for
// the default ten minutes: the tests' collectives give up (and end the job) after 60 s.
frugal::mpi::job_options test_options() { return frugal::mpi::job_options{}.collective_timeout(60s); }

// Every rank's value of `v`, indexed by rank.
std::vector<std::uint64_t> gather(std::uint64_t v) {
  std::vector<std::uint64_t> all(static_cast<std::size_t>(world_size()));
  MPI_Allgather(&v, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD);
  return all;
}

// Whether every rank has the same value.
bool same_everywhere(std::uint64_t v) {
  const std::vector<std::uint64_t> all = gather(v);
  return std::all_of(all.begin(), all.end(), [&](std::uint64_t x) { return x == all.front(); });
}

// One step of rank-dependent work: `flops` FLOPs and `samples` samples inside a "step" scope.
void work(frugal::budget& run, std::uint64_t flops, double samples) {
  frugal::scope s(run, "step");
  frugal::add_flops(flops);
  frugal::add_units("samples", samples);
}

TEST(MpiJob, RunsOnFourRanks) { EXPECT_EQ(world_size(), 4) << "ctest starts this test with mpirun -np 4"; }

TEST(MpiJob, TotalsAreTheExactSumOverTheRanks) {
  frugal::budget run("run");
  frugal::mpi::job job(MPI_COMM_WORLD, run, test_options());
  frugal::controller ctl(run);
  job.attach(ctl);
  const auto r = static_cast<std::uint64_t>(world_rank());
  for (int i = 0; i < 10; ++i) {
    work(run, 1000 * (r + 1), static_cast<double>(r + 1));
    const frugal::decision d = job.end_step(ctl);
    ASSERT_FALSE(d.stops());
  }
  (void)job.end_run(ctl);
  // Ranks 0..3 charged 1000, 2000, 3000, 4000 FLOPs per step for 10 steps.
  EXPECT_EQ(run.used(frugal::resource::flops), 100000.0);
  EXPECT_EQ(run.used("samples"), 100.0);
  EXPECT_EQ(run.local_snapshot()[frugal::resource::flops], 10000.0 * static_cast<double>(r + 1));
  ASSERT_EQ(job.rank_usage().size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(job.rank_usage()[i][frugal::resource::flops], 10000.0 * static_cast<double>(i + 1)) << "rank " << i;
    EXPECT_EQ(job.rank_usage()[i].of("samples"), 10.0 * static_cast<double>(i + 1)) << "rank " << i;
    EXPECT_EQ(job.rank_steps()[i], 10u);
  }
  // The sum frugal reports equals MPI's own sum of what each rank measured.
  double own = run.local_snapshot()[frugal::resource::flops], total = 0;
  MPI_Allreduce(&own, &total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  EXPECT_EQ(run.used(frugal::resource::flops), total);
  EXPECT_EQ(job.stats().exchanges, 11u);  // every step, and end_run's
}

TEST(MpiJob, JobReportHasEveryRanksFigures) {
  frugal::budget run("run");
  frugal::mpi::job job(MPI_COMM_WORLD, run, test_options());
  frugal::controller ctl(run);
  job.attach(ctl);
  work(run, 10 * static_cast<std::uint64_t>(world_rank() + 1), 1);
  (void)job.end_step(ctl);
  (void)job.end_run(ctl);
  std::ostringstream json;
  job.write_json_report(json);
  const std::string text = json.str();
  EXPECT_NE(text.find("\"ranks\":[{\"rank\":0,\"steps\":1,\"used\":{\"wall\":"), std::string::npos) << text;
  EXPECT_NE(text.find("\"flops\":100,"), std::string::npos) << text;  // the job's: 10 + 20 + 30 + 40
  EXPECT_NE(text.find("\"flops\":40,"), std::string::npos) << text;   // rank 3's own
  EXPECT_NE(text.find("\"exchanges\":{\"count\":2,\"interval\":1,"), std::string::npos) << text;
  std::ostringstream table;
  job.print_ranks(table);
  EXPECT_NE(table.str().find("rank"), std::string::npos);
  EXPECT_NE(table.str().find("exchanges: 2, every 1 step"), std::string::npos) << table.str();
}

TEST(MpiJob, EveryRankStopsAtTheSameStepUnderAFlopLimit) {
  frugal::budget run("run", frugal::limits{}.flops(1e6 + 5000));
  frugal::mpi::job job(MPI_COMM_WORLD, run, test_options());
  frugal::controller ctl(run);
  job.attach(ctl);
  // Ranks charge 1000, 2000, 3000, 4000 per step: 10000 per step for the job, so 100 steps fit
  // and a 101st does not; the controller forecasts each step from the job's cost.
  const auto r = static_cast<std::uint64_t>(world_rank());
  std::uint64_t steps = 0;
  frugal::decision d;
  while (steps < 1000) {
    work(run, 1000 * (r + 1), 1);
    ++steps;
    d = job.end_step(ctl);
    if (d.stops()) break;
  }
  (void)job.end_run(ctl);
  EXPECT_TRUE(d.stops());
  EXPECT_EQ(d.cause(), frugal::stop_reason::forecast);
  EXPECT_EQ(steps, 100u);
  EXPECT_TRUE(same_everywhere(steps));
  EXPECT_EQ(run.used(frugal::resource::flops), 1e6);
}

TEST(MpiJob, EveryRankStopsAtTheSameStepUnderAWallLimitWithOneSlowRank) {
  // Each rank's own clock: rank 2 takes 30 ms a step, the others 10 ms. The job's wall is its
  // longest rank's, so rank 2's time decides for all: 1 s holds 33 of its steps.
  frugal::manual_clock clock;
  frugal::budget run("run", frugal::limits{}.wall(1s));
  frugal::mpi::job job(MPI_COMM_WORLD, run, test_options());
  frugal::controller ctl(run);
  job.attach(ctl);
  const auto step_time = world_rank() == 2 ? 30ms : 10ms;
  std::uint64_t steps = 0;
  frugal::decision d;
  while (steps < 1000) {
    {
      frugal::scope s(run, "step");
      clock.advance(step_time);
      if (world_rank() == 2) std::this_thread::sleep_for(1ms);  // and really slower
    }
    ++steps;
    d = job.end_step(ctl);
    if (d.stops()) break;
  }
  (void)job.end_run(ctl);
  EXPECT_TRUE(d.stops());
  EXPECT_EQ(steps, 33u);
  EXPECT_TRUE(same_everywhere(steps));
  EXPECT_LE(run.used(frugal::resource::wall), 1.0);
  EXPECT_DOUBLE_EQ(run.used(frugal::resource::wall), 0.99);
}

TEST(MpiJob, AStopRequestOnOneRankStopsEveryRankAtThatStep) {
  frugal::budget run("run");
  frugal::mpi::job job(MPI_COMM_WORLD, run, test_options());
  frugal::controller ctl(run);
  job.attach(ctl);
  std::uint64_t steps = 0;
  frugal::decision d;
  while (steps < 100) {
    work(run, 100, 1);
    ++steps;
    if (world_rank() == 1 && steps == 7) ctl.request_stop("rank one had enough");
    d = job.end_step(ctl);
    if (d.stops()) break;
  }
  (void)job.end_run(ctl);
  EXPECT_EQ(steps, 7u);
  EXPECT_TRUE(same_everywhere(steps));
  EXPECT_EQ(d.cause(), frugal::stop_reason::user);
  EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::user);
  // The same words on every rank, rank 1's own included: they say whose stop it is.
  EXPECT_EQ(d.reason(), "rank 1: stop (user): rank one had enough");
  ASSERT_EQ(ctl.history().decisions.size(), 1u);
  EXPECT_EQ(ctl.history().decisions[0].step_index, 7u);
}

TEST(MpiJob, ASignalOnOneRankStopsEveryRankAtTheSameStep) {
  frugal::budget run("run");
  frugal::mpi::job job(MPI_COMM_WORLD, run, test_options());
  frugal::signal_stop signals;
  frugal::controller ctl(run);
  signals.bind(ctl);
  job.attach(ctl);
  std::uint64_t steps = 0;
  frugal::decision d;
  while (steps < 100) {
    work(run, 100, 1);
    ++steps;
    if (world_rank() == 3 && steps == 5) std::raise(SIGUSR1);
    d = job.end_step(ctl);
    if (d.stops()) break;
  }
  (void)job.end_run(ctl);
  EXPECT_EQ(steps, 5u);
  EXPECT_TRUE(same_everywhere(steps));
  EXPECT_EQ(d.cause(), frugal::stop_reason::signal);
  EXPECT_NE(d.reason().find("SIGUSR1"), std::string::npos) << d.reason();
  EXPECT_EQ(d.reason().rfind("rank 3: stop (signal): ", 0), 0u) << d.reason();
}

TEST(MpiJob, AStopPendingAfterTheLoopReachesEveryRankAtEndRun) {
  frugal::budget run("run");
  frugal::mpi::job job(MPI_COMM_WORLD, run, test_options());
  frugal::controller ctl(run);
  job.attach(ctl);
  for (int i = 0; i < 3; ++i) {
    work(run, 100, 1);
    ASSERT_FALSE(job.end_step(ctl).stops());
  }
  if (world_rank() == 2) ctl.request_stop("after the last step");
  EXPECT_EQ(job.end_run(ctl), frugal::stop_reason::user);
  EXPECT_EQ(ctl.stop_reason(), frugal::stop_reason::user);
  EXPECT_NE(ctl.stop_message().find("after the last step"), std::string::npos) << ctl.stop_message();
  if (world_rank() != 2) {
    EXPECT_NE(ctl.stop_message().find("rank 2: "), std::string::npos) << ctl.stop_message();
  }
}

TEST(MpiJob, TheSmallestBatchVotedBindsEveryRank) {
  // A decision hook that amends the decision on one rank only: the smallest batch wins for all.
  frugal::budget run("run");
  frugal::mpi::job job(MPI_COMM_WORLD, run, test_options());
  frugal::controller ctl(run, frugal::controller_options{}.batch_size(64).batch_limits(8, 64));
  if (world_rank() == 3)
    ctl.add_callback("shrink on rank 3", [](frugal::decision_event& e) {
      if (e.step_index == 4) e.decision.batch_size(32);
    });
  job.attach(ctl);
  std::vector<std::size_t> batches;
  for (int i = 0; i < 6; ++i) {
    work(run, 100, 1);
    const frugal::decision d = job.end_step(ctl);
    ASSERT_FALSE(d.stops());
    batches.push_back(ctl.batch_size());
  }
  (void)job.end_run(ctl);
  EXPECT_EQ(batches, (std::vector<std::size_t>{64, 64, 64, 32, 32, 32}));
  EXPECT_TRUE(same_everywhere(ctl.batch_size()));
  ASSERT_EQ(ctl.history().batch_changes.size(), 1u);
}

TEST(MpiJob, EveryNStepsDecidesOnlyAtExchanges) {
  frugal::budget run("run");
  frugal::mpi::job job(MPI_COMM_WORLD, run, test_options().every(5));
  frugal::controller ctl(run);
  job.attach(ctl);
  EXPECT_EQ(ctl.decision_horizon(), 5u);
  const auto r = static_cast<std::uint64_t>(world_rank());
  std::uint64_t steps = 0;
  frugal::decision d;
  while (steps < 100) {
    work(run, 1000 * (r + 1), 1);
    ++steps;
    if (world_rank() == 1 && steps == 7) ctl.request_stop("between exchanges");
    d = job.end_step(ctl);
    if (steps == 8) {
      // Between exchanges the others' usage is extrapolated at their last rate: exact here,
      // where every rank's cost per step is constant (10000 FLOPs a step for the job).
      EXPECT_EQ(run.used(frugal::resource::flops), 80000.0);
    }
    if (d.stops()) break;
  }
  (void)job.end_run(ctl);
  // Exchanges at step 1 (the first step always: it gives the others' rate), then every 5: 6,
  // 11. Rank 1's request at step 7 waits for the exchange at step 11, where every rank stops.
  EXPECT_EQ(steps, 11u);
  EXPECT_TRUE(same_everywhere(steps));
  EXPECT_EQ(job.stats().exchanges, 4u);  // steps 1, 6 and 11, and end_run's
  EXPECT_EQ(run.used(frugal::resource::flops), 110000.0);
}

TEST(MpiJob, EveryNStepsStillHoldsAFlopLimit) {
  // 10000 FLOPs a step for the job, a limit of 1e6 + 5000, exchanges at step 1 and then every
  // 8 (9, 17, ..., 8k + 1): the stop comes at the first exchange whose next 8 steps would not
  // fit, step 97 (97 + 8 > 100.5 steps' worth; at step 89, 89 + 8 <= 100.5).
  frugal::budget run("run", frugal::limits{}.flops(1e6 + 5000));
  frugal::mpi::job job(MPI_COMM_WORLD, run, test_options().every(8));
  frugal::controller ctl(run);
  job.attach(ctl);
  const auto r = static_cast<std::uint64_t>(world_rank());
  std::uint64_t steps = 0;
  frugal::decision d;
  while (steps < 1000) {
    work(run, 1000 * (r + 1), 1);
    ++steps;
    d = job.end_step(ctl);
    if (d.stops()) break;
  }
  (void)job.end_run(ctl);
  EXPECT_EQ(steps, 97u);
  EXPECT_TRUE(same_everywhere(steps));
  EXPECT_LE(run.used(frugal::resource::flops), 1e6 + 5000);
  EXPECT_EQ(d.cause(), frugal::stop_reason::forecast);
}

TEST(MpiJob, EveryAutoChoosesTheSameIntervalOnEveryRankFromTheMeasuredCost) {
  frugal::budget run("run");
  frugal::mpi::job job(MPI_COMM_WORLD, run, test_options().every_auto(0.01, 16));
  frugal::controller ctl(run);
  job.attach(ctl);
  for (int i = 0; i < 40; ++i) {
    {
      frugal::scope s(run, "step");
      std::this_thread::sleep_for(200us);
    }
    (void)job.end_step(ctl);
  }
  (void)job.end_run(ctl);
  // An exchange costs more than 1 % of a 0.2 ms step on any machine (a collective is at least
  // microseconds), so the interval grows past 1, and every rank chose the same one.
  EXPECT_GT(job.interval(), 1u);
  EXPECT_LE(job.interval(), 16u);
  EXPECT_EQ(ctl.decision_horizon(), job.interval());
  EXPECT_TRUE(same_everywhere(job.interval()));
  EXPECT_TRUE(same_everywhere(job.stats().exchanges));
  EXPECT_LT(job.stats().exchanges, 41u);
}

TEST(MpiJob, EndEpochIsAlwaysAnExchange) {
  frugal::budget run("run");
  frugal::mpi::job job(MPI_COMM_WORLD, run, test_options().every(100));
  frugal::controller ctl(run);
  job.attach(ctl);
  work(run, 7, 1);
  (void)job.end_step(ctl);  // the first step's exchange
  work(run, 7, 1);
  (void)job.end_step(ctl);
  EXPECT_EQ(job.stats().exchanges, 1u);
  (void)job.end_epoch(ctl, frugal::epoch{}.metric("val_loss", 1.0));
  EXPECT_EQ(job.stats().exchanges, 2u);
  EXPECT_EQ(run.used(frugal::resource::flops), 56.0);
  (void)job.end_run(ctl);
}

TEST(MpiJob, AllreduceSumsOverTheRanks) {
  frugal::budget run("run");
  frugal::mpi::job job(MPI_COMM_WORLD, run, test_options());
  std::vector<float> f = {1.0f, static_cast<float>(world_rank())};
  job.allreduce_sum(f.data(), f.size());
  EXPECT_EQ(f, (std::vector<float>{4.0f, 6.0f}));
  std::vector<double> d = {0.5, static_cast<double>(world_rank()) * 2};
  job.allreduce_sum(d.data(), d.size());
  EXPECT_EQ(d, (std::vector<double>{2.0, 12.0}));
  EXPECT_EQ(job.sum(std::uint64_t{3}), 12u);
}

TEST(MpiJob, MisuseIsAClearError) {
  frugal::budget run("run"), other("other");
  frugal::mpi::job job(MPI_COMM_WORLD, run, test_options());
  frugal::controller wrong(other);
  EXPECT_THROW(job.attach(wrong), std::invalid_argument);
  frugal::controller ctl(run);
  EXPECT_THROW((void)job.end_step(ctl), std::logic_error);  // not attached
  job.attach(ctl);
  EXPECT_EQ(ctl.steps(), 0u);
  // The controller's own checkpoint would decide for this rank alone.
  EXPECT_THROW((void)ctl.end_step(), std::logic_error);
  EXPECT_THROW(frugal::mpi::job_options{}.every(0), std::invalid_argument);
  EXPECT_THROW(frugal::mpi::job_options{}.every_auto(0), std::invalid_argument);
  EXPECT_THROW(frugal::mpi::job_options{}.every_auto(0.5, 0), std::invalid_argument);
  EXPECT_THROW(frugal::mpi::job_options{}.collective_timeout(0s), std::invalid_argument);
  EXPECT_THROW(frugal::mpi::job_options{}.deadline_grace(-1s), std::invalid_argument);
  try {
    (void)frugal::mpi::job_options{}.every_auto(1.5);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("max_fraction must be in (0, 1], got 1.5"), std::string::npos) << e.what();
  }
  (void)job.end_run(ctl);
}

TEST(MpiJob, AControllerOutlivingItsJobSaysSo) {
  frugal::budget run("run");
  frugal::controller ctl(run);
  {
    frugal::mpi::job job(MPI_COMM_WORLD, run, test_options());
    job.attach(ctl);
    (void)job.end_step(ctl);
  }
  EXPECT_THROW((void)ctl.end_step(), std::logic_error);
}

}  // namespace

// Every rank runs every test; rank 0 prints the usual output, the others only their failures.
int main(int argc, char** argv) {
  frugal::mpi::environment env(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  if (world_rank() != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    struct failures_only : ::testing::EmptyTestEventListener {
      void OnTestPartResult(const ::testing::TestPartResult& r) override {
        if (r.failed())
          std::cerr << "rank " << world_rank() << ": " << (r.file_name() ? r.file_name() : "?") << ":" << r.line_number()
                    << ": " << r.summary() << '\n';
      }
    };
    listeners.Append(new failures_only);
  }
  const int failed = RUN_ALL_TESTS();
  // The job fails when any rank failed.
  int any = failed;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any;
}
