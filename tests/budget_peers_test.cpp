// A budget shared by several processes: budget::set_peer_usage() combines the other processes'
// usage into every reading of this one (sums for the consumables, the larger for wall and the
// levels, energy this machine's, cost derived), while local_snapshot(), children and stages stay
// this process's alone. A manual clock, a fake resident set and a fake RAPL tree: every figure is
// exact.
#include <frugal/controller.hpp>
#include <frugal/energy.hpp>
#include <frugal/frugal.hpp>
#include <frugal/price.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "support/checks.hpp"
#include "support/fake_resident_set.hpp"
#include "support/run_step.hpp"
#include "support/temp_tree.hpp"

using namespace std::chrono_literals;

namespace {

using frugal::resource;
using frugal_test::expect_invalid;

constexpr std::size_t at(resource r) { return static_cast<std::size_t>(r); }

// A user unit this process never charges: only the peers report it.
const std::string peer_unit = "peer_tokens";

frugal::usage peers(std::initializer_list<std::pair<resource, double>> amounts,
                    std::vector<std::pair<std::string, double>> units = {}) {
  frugal::usage u;
  for (const auto& [r, v] : amounts) u.by_resource[at(r)] = v;
  u.units = std::move(units);
  return u;
}

// This process's share, known exactly: carried from an earlier process (the heap figures, which
// need the allocation hooks to be measured here) allocations 7, alloc_bytes 700, peak_bytes
// 4096; then one step: wall 10 s, cpu 4 s, 1000 FLOPs, 64 samples.
struct local_run {
  frugal::manual_clock clock;
  frugal::budget run;

  explicit local_run(frugal::limits l = {}) : run{"job", std::move(l)} {
    frugal::carried_usage c;
    c.name = "job";
    c.used.by_resource[at(resource::allocations)] = 7;
    c.used.by_resource[at(resource::alloc_bytes)] = 700;
    c.used.by_resource[at(resource::peak_bytes)] = 4096;
    run.carry(c);
    run.measure_cpu();
    frugal::scope s{run, "step"};
    clock.advance(10s);
    clock.advance_cpu(4s);
    frugal::add_flops(1000);
    frugal::add_units("samples", 64);
  }
};

bool lists_unit(const frugal::usage& u, const std::string& unit) {
  for (const auto& [name, v] : u.units)
    if (name == unit) return true;
  return false;
}

TEST(BudgetPeers, ConsumablesAddThePeersAmounts) {
  local_run l;
  frugal::budget& run = l.run;
  EXPECT_EQ(run.used(resource::cpu), 4);
  EXPECT_EQ(run.used(resource::flops), 1000);
  run.set_peer_usage(peers({{resource::cpu, 9}, {resource::flops, 500}, {resource::allocations, 3}, {resource::alloc_bytes, 300}},
                           {{"samples", 36}, {peer_unit, 1000}}));
  EXPECT_EQ(run.used(resource::cpu), 13);
  EXPECT_EQ(run.used(resource::flops), 1500);
  EXPECT_EQ(run.used(resource::allocations), 10);
  EXPECT_EQ(run.used(resource::alloc_bytes), 1000);
  EXPECT_EQ(run.used("samples"), 100);
  EXPECT_EQ(run.used(peer_unit), 1000);  // a unit this process never charged
}

TEST(BudgetPeers, WallAndTheLevelsAreTheLargerOfThisProcesssAndThePeers) {
  frugal_test::fake_resident_set rss{5000};
  local_run l;
  frugal::budget& run = l.run;

  run.set_peer_usage(peers({{resource::wall, 6}, {resource::peak_bytes, 1000}, {resource::rss_bytes, 3000}}));
  EXPECT_EQ(run.used(resource::wall), 10);
  EXPECT_EQ(run.elapsed().count(), 10);
  EXPECT_EQ(run.used(resource::peak_bytes), 4096);
  EXPECT_EQ(run.used(resource::rss_bytes), 5000);

  run.set_peer_usage(peers({{resource::wall, 25}, {resource::peak_bytes, 10000}, {resource::rss_bytes, 8000}}));
  EXPECT_EQ(run.used(resource::wall), 25);
  EXPECT_EQ(run.elapsed().count(), 25);
  EXPECT_EQ(run.used(resource::peak_bytes), 10000);
  EXPECT_EQ(run.used(resource::rss_bytes), 8000);

  // This process passes the peers again.
  {
    frugal::scope s{run, "step"};
    l.clock.advance(20s);
  }
  rss.set(9000);
  EXPECT_EQ(run.used(resource::wall), 30);
  EXPECT_EQ(run.used(resource::rss_bytes), 9000);
}

TEST(BudgetPeers, SnapshotIsTheJobsAndLocalSnapshotThisProcesss) {
  frugal_test::fake_resident_set rss{5000};
  local_run l;
  frugal::budget& run = l.run;
  run.set_peer_usage(peers({{resource::wall, 25},
                            {resource::cpu, 9},
                            {resource::flops, 500},
                            {resource::allocations, 3},
                            {resource::alloc_bytes, 300},
                            {resource::peak_bytes, 10000},
                            {resource::rss_bytes, 3000},
                            {resource::cost, 123},
                            {resource::energy, 456}},
                           {{"samples", 36}, {peer_unit, 1000}}));
  const frugal::usage job = run.snapshot();
  EXPECT_EQ(job[resource::wall], 25);
  EXPECT_EQ(job[resource::cpu], 13);
  EXPECT_EQ(job[resource::flops], 1500);
  EXPECT_EQ(job[resource::allocations], 10);
  EXPECT_EQ(job[resource::alloc_bytes], 1000);
  EXPECT_EQ(job[resource::peak_bytes], 10000);
  EXPECT_EQ(job[resource::rss_bytes], 5000);
  EXPECT_EQ(job[resource::cost], 0);  // no price: the peers' 123 is not a cost of this budget
  EXPECT_EQ(job.of("samples"), 100);
  EXPECT_EQ(job.of(peer_unit), 1000);
  EXPECT_TRUE(lists_unit(job, peer_unit));

  const frugal::usage mine = run.local_snapshot();
  EXPECT_EQ(mine[resource::wall], 10);
  EXPECT_EQ(mine[resource::cpu], 4);
  EXPECT_EQ(mine[resource::flops], 1000);
  EXPECT_EQ(mine[resource::allocations], 7);
  EXPECT_EQ(mine[resource::alloc_bytes], 700);
  EXPECT_EQ(mine[resource::peak_bytes], 4096);
  EXPECT_EQ(mine[resource::rss_bytes], 5000);
  EXPECT_EQ(mine[resource::cost], 0);
  EXPECT_EQ(mine.of("samples"), 64);
  EXPECT_EQ(mine.of(peer_unit), 0);
  EXPECT_FALSE(lists_unit(mine, peer_unit));
  const frugal::usage mine_no_energy = run.local_snapshot(false);
  EXPECT_EQ(mine_no_energy[resource::energy], 0);
  EXPECT_EQ(mine_no_energy[resource::flops], 1000);

  // snapshot() and used() read the same figures.
  for (resource r : {resource::wall, resource::cpu, resource::flops, resource::allocations, resource::alloc_bytes,
                     resource::peak_bytes, resource::rss_bytes})
    EXPECT_EQ(run.used(r), job[r]) << frugal::to_string(r);
}

// A fake RAPL tree: one package whose energy_uj the test sets.
struct fake_rapl {
  frugal_test::temp_tree tree;
  fake_rapl() {
    tree.write("intel-rapl:0/name", "package-0\n");
    tree.write("intel-rapl:0/max_energy_range_uj", "262143328850\n");
    set(0);
  }
  void set(unsigned long long uj) const { tree.write("intel-rapl:0/energy_uj", std::to_string(uj) + "\n"); }
};

TEST(BudgetPeers, EnergyStaysThisMachines) {
  fake_rapl rapl;
  frugal::energy_counter counter{rapl.tree.root()};
  ASSERT_TRUE(counter.available()) << counter.why_unavailable();
  frugal::budget run{"job", frugal::limits{}.energy(100)};
  run.set_energy_counter(counter);
  rapl.set(50'000'000);  // 50 J
  run.set_peer_usage(peers({{resource::energy, 1000}, {resource::flops, 5}}));
  EXPECT_EQ(run.used(resource::energy), 50);
  EXPECT_EQ(run.snapshot()[resource::energy], 50);
  EXPECT_EQ(run.local_snapshot()[resource::energy], 50);
  EXPECT_EQ(run.local_snapshot(false)[resource::energy], 0);
  EXPECT_EQ(run.fraction_used(resource::energy), 0.5);
  EXPECT_EQ(run.fraction_used(), 0.5);
  EXPECT_EQ(run.remaining(resource::energy), 50);
  EXPECT_FALSE(run.exhausted());
  rapl.set(100'000'000);
  EXPECT_EQ(run.exhausted_resources(), std::vector<std::string>{"energy"});
}

const frugal::price dollars = frugal::price{}.instance_hour(3.6).core_hour(7.2).per_flop(1e-9).currency("USD");

TEST(BudgetPeers, CostIsThePriceOfTheCombinedWallCpuAndFlops) {
  local_run l{frugal::limits{}.cost(0.1, "USD")};
  frugal::budget& run = l.run;
  run.set_price(dollars);
  EXPECT_EQ(run.used(resource::cost), dollars.cost(10, 4, 1000));
  run.set_peer_usage(peers({{resource::wall, 25}, {resource::cpu, 9}, {resource::flops, 500}, {resource::cost, 123}}));
  // 25 s at 3.60 an hour, 13 s of CPU at 7.20 an hour, 1500 FLOPs at 1e-9: the peers' own cost
  // figure (123) plays no part.
  EXPECT_EQ(run.used(resource::cost), dollars.cost(25, 13, 1500));
  EXPECT_DOUBLE_EQ(run.used(resource::cost), 0.025 + 0.026 + 1.5e-6);
  EXPECT_EQ(run.snapshot()[resource::cost], dollars.cost(25, 13, 1500));
  EXPECT_EQ(run.local_snapshot()[resource::cost], dollars.cost(10, 4, 1000));
  EXPECT_DOUBLE_EQ(run.fraction_used(resource::cost), (0.025 + 0.026 + 1.5e-6) / 0.1);
  EXPECT_DOUBLE_EQ(run.remaining(resource::cost), 0.1 - (0.025 + 0.026 + 1.5e-6));
  // A peer wall under this process's: the cost follows this process's wall.
  run.set_peer_usage(peers({{resource::wall, 1}, {resource::cost, 123}}));
  EXPECT_EQ(run.used(resource::cost), dollars.cost(10, 4, 1000));
}

TEST(BudgetPeers, RemainingFractionAndExhaustionAreTheJobs) {
  local_run l{frugal::limits{}.wall(30s).cpu(20s).flops(2000).units("samples", 200).units(peer_unit, 500)};
  frugal::budget& run = l.run;
  run.set_peer_usage(peers({{resource::wall, 6}, {resource::cpu, 9}, {resource::flops, 500}}, {{"samples", 36}, {peer_unit, 100}}));
  EXPECT_EQ(run.remaining(resource::wall), 20);
  EXPECT_EQ(run.remaining(resource::cpu), 7);
  EXPECT_EQ(run.remaining(resource::flops), 500);
  EXPECT_EQ(run.remaining("samples"), 100);
  EXPECT_EQ(run.remaining(peer_unit), 400);
  EXPECT_DOUBLE_EQ(run.fraction_used(resource::wall), 10.0 / 30.0);
  EXPECT_DOUBLE_EQ(run.fraction_used(resource::cpu), 13.0 / 20.0);
  EXPECT_EQ(run.fraction_used(resource::flops), 0.75);
  EXPECT_EQ(run.fraction_used(), 0.75);
  EXPECT_FALSE(run.exhausted());
  EXPECT_TRUE(run.exhausted_resources().empty());

  // The peers' share alone spends the rest.
  run.set_peer_usage(peers({{resource::wall, 6}, {resource::cpu, 9}, {resource::flops, 1000}}, {{"samples", 136}, {peer_unit, 500}}));
  EXPECT_EQ(run.remaining(resource::flops), 0);
  EXPECT_EQ(run.remaining("samples"), 0);
  EXPECT_EQ(run.remaining(peer_unit), 0);
  EXPECT_EQ(run.fraction_used(), 1.0);
  EXPECT_TRUE(run.exhausted());
  EXPECT_EQ(run.exhausted_resources(), (std::vector<std::string>{"flops", "samples", peer_unit}));

  run.set_peer_usage(peers({{resource::wall, 45}, {resource::cpu, 9}, {resource::flops, 1000}}, {{"samples", 136}, {peer_unit, 500}}));
  EXPECT_EQ(run.remaining(resource::wall), 0);
  EXPECT_EQ(run.fraction_used(resource::wall), 1.5);
  EXPECT_EQ(run.fraction_used(), 1.5);
  EXPECT_EQ(run.exhausted_resources(), (std::vector<std::string>{"wall", "flops", "samples", peer_unit}));
}

TEST(BudgetPeers, APeersLevelAboveTheLimitIsACrossingNotAnExhaustion) {
  local_run l{frugal::limits{}.peak_bytes(8192)};
  frugal::budget& run = l.run;
  EXPECT_EQ(run.remaining(resource::peak_bytes), 8192 - 4096);
  run.set_peer_usage(peers({{resource::peak_bytes, 10000}}));
  EXPECT_EQ(run.crossed_levels(), std::vector<std::string>{"peak_bytes"});
  EXPECT_TRUE(run.level_crossed());
  EXPECT_EQ(run.fraction_used(resource::peak_bytes), 10000.0 / 8192.0);
  EXPECT_EQ(run.remaining(resource::peak_bytes), 0);
  EXPECT_FALSE(run.exhausted());
  EXPECT_EQ(run.fraction_used(), 0);  // levels are not budget spent
  run.set_peer_usage(peers({{resource::peak_bytes, 8192}}));  // at the limit: not over it
  EXPECT_FALSE(run.level_crossed());
  EXPECT_EQ(run.remaining(resource::peak_bytes), 0);
}

TEST(BudgetPeers, ChildrenAndStagesAreThisProcesssAlone) {
  local_run l;
  frugal::budget& run = l.run;
  frugal::budget& eval = run.child("eval");
  {
    frugal::scope s{eval, "evaluate"};
    l.clock.advance(2s);
    frugal::add_flops(200);
    frugal::add_units("samples", 8);
  }
  run.set_peer_usage(peers({{resource::wall, 50}, {resource::flops, 500}}, {{"samples", 36}, {peer_unit, 7}}));
  EXPECT_EQ(run.used(resource::flops), 1000 + 200 + 500);
  EXPECT_EQ(run.used("samples"), 64 + 8 + 36);
  EXPECT_EQ(run.used(resource::wall), 50);
  EXPECT_EQ(run.local_snapshot()[resource::flops], 1200);
  EXPECT_EQ(run.local_snapshot()[resource::wall], 12);

  EXPECT_EQ(eval.used(resource::flops), 200);
  EXPECT_EQ(eval.used("samples"), 8);
  EXPECT_EQ(eval.used(peer_unit), 0);
  EXPECT_EQ(eval.used(resource::wall), 2);
  EXPECT_EQ(eval.snapshot()[resource::flops], 200);
  EXPECT_EQ(eval.snapshot().of("samples"), 8);

  const frugal::stage_stats step = run.stage("step");
  EXPECT_EQ(step.flops, 1000u);
  EXPECT_EQ(step.units_of("samples"), 64);
  EXPECT_EQ(step.units_of(peer_unit), 0);
  EXPECT_EQ(step.wall_seconds, 10);
  const frugal::stage_stats evaluate = eval.stage("evaluate");
  EXPECT_EQ(evaluate.flops, 200u);
}

TEST(BudgetPeers, ANewReportReplacesTheLastOne) {
  local_run l;
  frugal::budget& run = l.run;
  const frugal::usage first =
      peers({{resource::wall, 25}, {resource::flops, 500}, {resource::peak_bytes, 10000}}, {{"samples", 36}, {peer_unit, 10}});
  run.set_peer_usage(first);
  run.set_peer_usage(first);  // the same report twice: counted once
  EXPECT_EQ(run.used(resource::flops), 1500);
  EXPECT_EQ(run.used("samples"), 100);

  run.set_peer_usage(peers({{resource::flops, 200}}, {{"peer_other", 5}}));
  EXPECT_EQ(run.used(resource::flops), 1200);
  EXPECT_EQ(run.used(resource::wall), 10);
  EXPECT_EQ(run.used(resource::peak_bytes), 4096);
  EXPECT_EQ(run.used("samples"), 64);
  EXPECT_EQ(run.used(peer_unit), 0);
  EXPECT_EQ(run.used("peer_other"), 5);
  EXPECT_FALSE(lists_unit(run.snapshot(), peer_unit));

  run.set_peer_usage(frugal::usage{});
  const frugal::usage job = run.snapshot();
  const frugal::usage mine = run.local_snapshot();
  for (resource r : {resource::wall, resource::cpu, resource::flops, resource::allocations, resource::alloc_bytes,
                     resource::peak_bytes})
    EXPECT_EQ(job[r], mine[r]) << frugal::to_string(r);
  EXPECT_EQ(run.used("peer_other"), 0);

  // A unit reported twice in one report: both amounts.
  run.set_peer_usage(peers({}, {{"samples", 1}, {"samples", 2}}));
  EXPECT_EQ(run.used("samples"), 67);
}

TEST(BudgetPeers, BadAmountsAreRefusedNamingTheResourceAndTheValueAndChangeNothing) {
  local_run l;
  frugal::budget& run = l.run;
  frugal::budget& eval = run.child("eval");
  run.set_peer_usage(peers({{resource::flops, 500}, {resource::wall, 25}}, {{"samples", 36}}));
  const auto unchanged = [&] {
    EXPECT_EQ(run.used(resource::flops), 1500);
    EXPECT_EQ(run.used(resource::wall), 25);
    EXPECT_EQ(run.used(resource::cpu), 4);
    EXPECT_EQ(run.used("samples"), 100);
    EXPECT_EQ(run.used("never_reported"), 0);
  };
  const std::vector<std::pair<double, std::string>> bad = {
      {-1.0, "-1"},
      {std::numeric_limits<double>::quiet_NaN(), "nan"},
      {std::numeric_limits<double>::infinity(), "inf"},
      {-std::numeric_limits<double>::infinity(), "-inf"},
  };
  for (resource r : frugal::all_resources)
    for (const auto& [value, text] : bad) {
      SCOPED_TRACE(std::string(frugal::to_string(r)) + " = " + text);
      // Every other amount is valid, and different from the peers' last report.
      frugal::usage u = peers({{resource::flops, 999}, {resource::wall, 99}, {resource::cpu, 99}}, {{"samples", 999}});
      u.by_resource[at(r)] = value;
      expect_invalid([&] { run.set_peer_usage(u); },
                     {"frugal::budget::set_peer_usage: budget 'job': " + std::string(frugal::to_string(r)) +
                      " must be finite and >= 0, got " + text});
      unchanged();
    }
  expect_invalid([&] { eval.set_peer_usage(peers({{resource::cpu, -2}})); },
                 {"frugal::budget::set_peer_usage: budget 'job/eval': cpu must be finite and >= 0, got -2"});
  EXPECT_EQ(eval.used(resource::cpu), 0);

  // User units: the amount, and the name.
  const frugal::usage valid = peers({{resource::flops, 999}});
  const auto with_unit = [&](std::string name, double v) {
    frugal::usage u = valid;
    u.units = {{"never_reported", 3}, {std::move(name), v}};
    return u;
  };
  expect_invalid([&] { run.set_peer_usage(with_unit("samples", -5)); },
                 {"budget 'job': unit samples must be finite and >= 0, got -5"});
  unchanged();
  expect_invalid([&] { run.set_peer_usage(with_unit("samples", std::numeric_limits<double>::quiet_NaN())); },
                 {"unit samples must be finite and >= 0, got nan"});
  unchanged();
  expect_invalid([&] { run.set_peer_usage(with_unit("9lives", 1)); },
                 {"budget 'job'", "name must start with a letter or '_'"});
  unchanged();
  expect_invalid([&] { run.set_peer_usage(with_unit("", 1)); }, {"budget 'job'", "name is empty"});
  unchanged();
  expect_invalid([&] { run.set_peer_usage(with_unit("a-b", 1)); }, {"name may contain only letters, digits and '_'"});
  unchanged();
  expect_invalid([&] { run.set_peer_usage(with_unit("Flops", 1)); },
                 {"name is reserved for the builtin resource 'flops'"});
  unchanged();
}

TEST(BudgetPeers, TheControllerForecastsTheJobsUsage) {
  // 10 FLOPs a step here, and the peers have used 50 of the job's 105 already: the next step
  // no longer fits after 5 steps (50 + 50 + 10 > 105), not after 10 as this process alone.
  frugal::manual_clock clock;
  frugal::budget run{"job", frugal::limits{}.flops(105)};
  run.set_peer_usage(peers({{resource::flops, 50}}));
  frugal::controller ctl{run};
  int steps = 0;
  frugal::decision last;
  while (!ctl.should_stop() && steps < 100) {
    frugal_test::run_step(run, clock, 10ms, 10);
    ++steps;
    last = ctl.end_step();
  }
  EXPECT_EQ(steps, 5);
  EXPECT_EQ(last.cause(), frugal::stop_reason::forecast);
  EXPECT_EQ(last.reason(), "stop (forecast): flops: 100 used of 105, next step forecast 10");
  EXPECT_EQ(run.local_snapshot()[resource::flops], 50);
}

}  // namespace
