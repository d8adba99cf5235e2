// Money and energy as budgets: the price model (price.hpp), cost derived from wall, cpu and flops
// exactly, the controller and the hard deadline stopping inside a cost limit, energy read from a
// fake RAPL tree through a budget, and the reports. A manual clock: nothing sleeps.
#include <frugal/controller.hpp>
#include <frugal/controller_report.hpp>
#include <frugal/deadline.hpp>
#include <frugal/energy.hpp>
#include <frugal/price.hpp>
#include <frugal/report.hpp>
#include <frugal/scope.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "support/checks.hpp"
#include "support/json_reader.hpp"
#include "support/run_step.hpp"

using namespace std::chrono_literals;

namespace {

using frugal::resource;
using frugal_test::expect_invalid;
using frugal_test::run_step;

// ---------------------------------------------------------------------------------------------
// The price model.

TEST(Price, ParsesEveryKeyWithTheCurrencyNamedOnce) {
  const frugal::price p = frugal::price::parse("instance_hour=3.06USD, core_hour=0.04, flop=2e-15");
  EXPECT_EQ(p.instance_hour(), 3.06);
  EXPECT_EQ(p.core_hour(), 0.04);
  EXPECT_EQ(p.per_flop(), 2e-15);
  EXPECT_EQ(p.currency(), "USD");
  EXPECT_TRUE(p.prices_cpu());
  EXPECT_EQ(p.to_string(), "instance_hour=3.06USD,core_hour=0.04USD,flop=2e-15USD");
  EXPECT_EQ(frugal::price::parse(p.to_string()), p);
  EXPECT_EQ(frugal::price::parse("currency=EUR,instance_hour=1").currency(), "EUR");
  EXPECT_EQ(frugal::price::parse("instance_hour=1").currency(), "");
  EXPECT_FALSE(frugal::price::parse("instance_hour=1").prices_cpu());
}

TEST(Price, CostIsTheSumOfItsParts) {
  const frugal::price p = frugal::price{}.instance_hour(3.6).core_hour(7.2).per_flop(1e-9).currency("USD");
  EXPECT_DOUBLE_EQ(p.cost(10, 0, 0), 0.01);   // 10 s at 3.60 an hour
  EXPECT_DOUBLE_EQ(p.cost(0, 5, 0), 0.01);    // 5 s of CPU at 7.20 an hour
  EXPECT_DOUBLE_EQ(p.cost(0, 0, 1e6), 0.001);
  EXPECT_DOUBLE_EQ(p.cost(10, 5, 1e6), 0.021);
  EXPECT_DOUBLE_EQ(p.wall_bound(0.01), 10);  // what money buys of the wall, at most
  EXPECT_EQ(frugal::price{}.per_flop(1).wall_bound(1), std::numeric_limits<double>::infinity());
}

TEST(Price, BadPricesNameTheFieldAndTheValue) {
  expect_invalid([] { (void)frugal::price::parse("instance_hour=3USD,core_hour=1EUR"); }, {"core_hour=1EUR", "EUR", "USD"});
  expect_invalid([] { (void)frugal::price::parse("instance_hour=3,hour=1"); }, {"unknown key 'hour'"});
  expect_invalid([] { (void)frugal::price::parse("instance_hour=3,instance_hour=4"); }, {"repeats", "instance_hour"});
  expect_invalid([] { (void)frugal::price::parse("instance_hour=-3"); }, {"price instance_hour", "'-3'", "negative"});
  expect_invalid([] { (void)frugal::price::parse("instance_hour=0,core_hour=0"); }, {"prices nothing"});
  expect_invalid([] { (void)frugal::price::parse("instance_hour=3usd"); }, {"ISO 4217", "'usd'"});
  expect_invalid([] { (void)frugal::price::parse("currency=dollar,instance_hour=3"); }, {"currency", "'dollar'"});
  expect_invalid([] { (void)frugal::price::parse(""); }, {"empty price"});
  expect_invalid([] { (void)frugal::price::parse("instance_hour"); }, {"'instance_hour'", "key=value"});
  expect_invalid([] { (void)frugal::price{}.instance_hour(-1); }, {"instance_hour", "-1"});
  expect_invalid([] { (void)frugal::price{}.core_hour(std::numeric_limits<double>::quiet_NaN()); }, {"core_hour", "nan"});
  expect_invalid([] { (void)frugal::price{}.per_flop(std::numeric_limits<double>::infinity()); }, {"flop", "inf"});
}

// ---------------------------------------------------------------------------------------------
// Cost in a budget: derived, never charged on its own.

const frugal::price dollars = frugal::price{}.instance_hour(3.6).core_hour(7.2).per_flop(1e-9).currency("USD");

// A 10 s step with 5 s of CPU and 1e6 FLOPs: 0.01 + 0.01 + 0.001 at `dollars`.
void priced_step(frugal::budget& b, frugal::manual_clock& clock) {
  frugal::scope s{b, "step"};
  clock.advance(10s);
  clock.advance_cpu(5s);
  frugal::add_flops(1'000'000);
}

TEST(BudgetCost, IsThePriceOfTheResourcesExactly) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  EXPECT_FALSE(run.measures_cost());
  run.set_price(dollars);
  EXPECT_TRUE(run.measures_cost());
  EXPECT_TRUE(run.measures_cpu());  // a core-hour price needs the CPU time
  priced_step(run, clock);
  priced_step(run, clock);
  const frugal::usage u = run.snapshot();
  EXPECT_EQ(u[resource::wall], 20);
  EXPECT_EQ(u[resource::cpu], 10);
  EXPECT_EQ(u[resource::flops], 2e6);
  EXPECT_EQ(u[resource::cost], dollars.cost(u[resource::wall], u[resource::cpu], u[resource::flops]));
  EXPECT_DOUBLE_EQ(u[resource::cost], 0.042);
  EXPECT_EQ(run.used(resource::cost), u[resource::cost]);
}

TEST(BudgetCost, ChildrenArePricedAsTheirParentAndChargeIt) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::budget& early = run.child("early");  // made before the price: set_price reaches it
  run.set_price(dollars);
  frugal::budget& eval = run.child("eval");    // made after: takes it
  EXPECT_EQ(early.price(), dollars);
  EXPECT_EQ(eval.price(), dollars);
  priced_step(run, clock);
  priced_step(eval, clock);
  EXPECT_DOUBLE_EQ(eval.used(resource::cost), 0.021);
  EXPECT_DOUBLE_EQ(run.used(resource::cost), 0.042);  // the child's share included
  EXPECT_EQ(early.used(resource::cost), 0);
}

TEST(BudgetCost, APriceSetLaterCoversWhatWasUsedBefore) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  run.measure_cpu();
  priced_step(run, clock);
  EXPECT_EQ(run.used(resource::cost), 0);
  run.set_price(dollars);
  EXPECT_DOUBLE_EQ(run.used(resource::cost), 0.021);
}

TEST(BudgetCost, ALimitIsExhaustedLikeAnyConsumable) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.cost(0.042, "USD")};
  run.set_price(dollars);
  priced_step(run, clock);
  EXPECT_DOUBLE_EQ(run.fraction_used(), 0.5);
  EXPECT_FALSE(run.exhausted());
  priced_step(run, clock);
  priced_step(run, clock);
  EXPECT_EQ(run.exhausted_resources(), std::vector<std::string>{"cost"});
  EXPECT_DOUBLE_EQ(run.remaining(resource::cost), 0);
}

TEST(BudgetCost, CurrenciesMustAgree) {
  frugal::budget run{"train", frugal::limits{}.cost(10, "EUR")};
  expect_invalid([&] { run.set_price(dollars); }, {"set_price", "'train'", "EUR", "USD"});
  EXPECT_FALSE(run.measures_cost());  // nothing changed
  frugal::budget other{"other"};
  other.set_price(dollars);
  expect_invalid([&] { other.set_limits(frugal::limits{}.cost(1, "GBP")); }, {"set_limits", "GBP", "USD"});
  EXPECT_FALSE(other.limits().has(resource::cost));
  expect_invalid([&] { (void)other.child("eval", frugal::limits{}.cost(1, "JPY")); }, {"child 'eval'", "JPY", "USD"});
  // A limit naming no currency takes the price's; a price naming none takes the limit's.
  other.set_limits(frugal::limits{}.cost(1));
  run.set_price(frugal::price{}.instance_hour(1));
}

// ---------------------------------------------------------------------------------------------
// The controller and the hard deadline under a cost limit.

TEST(ControllerCost, OneSecondStepsStopInsideTheCostNeverPast) {
  frugal::manual_clock clock;
  // 3.60 USD an hour: 30 s cost 0.03 USD.
  frugal::budget run{"train", frugal::limits{}.cost(0.03, "USD")};
  run.set_price(frugal::price{}.instance_hour(3.6).currency("USD"));
  frugal::controller ctl{run, frugal::controller_options{}.margin(0)};
  int steps = 0;
  frugal::decision last;
  while (!ctl.should_stop() && steps < 100) {
    run_step(run, clock, 1s);
    ++steps;
    last = ctl.end_step();
  }
  EXPECT_TRUE(steps == 29 || steps == 30) << steps;
  EXPECT_LE(run.used(resource::cost), 0.03 + 1e-12);
  EXPECT_NE(last.reason().find("cost"), std::string::npos) << last.reason();
  // Money in the controller's words carries its currency, as in the report.
  EXPECT_NE(last.reason().find(" USD used of 0.0300 USD"), std::string::npos) << last.reason();
}

TEST(ControllerCost, FlopPricedCostIsExactLikeFlops) {
  frugal::manual_clock clock;
  // Binary fractions, so the sums are exact: 2^27 FLOPs at 2^-30 a FLOP is 0.125 a step.
  frugal::budget run{"train", frugal::limits{}.cost(3.75)};
  run.set_price(frugal::price{}.per_flop(std::ldexp(1.0, -30)));
  frugal::controller ctl{run};
  int steps = 0;
  while (!ctl.should_stop() && steps < 100) {
    run_step(run, clock, 1s, std::uint64_t{1} << 27);
    ++steps;
    (void)ctl.end_step();
  }
  EXPECT_EQ(steps, 30);  // 30 steps of 0.125 fill 3.75 exactly, the 31st would cross
  EXPECT_EQ(run.used(resource::cost), 3.75);
}

TEST(ControllerCost, ALimitNothingMeasuresIsRefused) {
  frugal::budget run{"train", frugal::limits{}.cost(1)};
  expect_invalid([&] { frugal::controller ctl{run}; }, {"cost limit", "'train'", "price", "no price"});
  // Energy over a tree with no RAPL zone: refused with the counter's reason.
  const std::filesystem::path empty = std::filesystem::temp_directory_path() / ("frugal_cost_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(empty);
  frugal::energy_counter none{empty.string()};
  frugal::budget hot{"train", frugal::limits{}.energy(1000)};
  hot.set_energy_counter(none);
  expect_invalid([&] { frugal::controller ctl{hot}; }, {"energy limit", "RAPL", "no intel-rapl"});
  // A limit set later is refused when the controller re-reads it.
  frugal::budget later{"later"};
  frugal::controller ctl{later};
  later.set_limits(frugal::limits{}.cost(1));
  expect_invalid([&] { ctl.reload_limits(); }, {"cost limit", "no price"});
  std::filesystem::remove_all(empty);
}

TEST(DeadlineCost, FiresWhenTheInstanceHoursSpendTheLimit) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.cost(0.01, "USD")};
  run.set_price(frugal::price{}.instance_hour(3.6).currency("USD"));
  frugal::deadline_watchdog w{run};
  {
    frugal::scope s{run, "step"};
    clock.advance(9s);
    EXPECT_FALSE(w.poll());
    clock.advance(1s);  // 10 s at 3.60 an hour: 0.01
    EXPECT_TRUE(w.poll());
  }
  EXPECT_EQ(w.describe(), "the deadline watchdog fired at the cost limit");
}

// ---------------------------------------------------------------------------------------------
// Energy through a budget: a fake RAPL tree (energy_test.cpp tests the reader itself).

class fake_rapl {
 public:
  fake_rapl() : root_(std::filesystem::temp_directory_path() / ("frugal_rapl_" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(root_ / "intel-rapl:0");
    write("intel-rapl:0/name", "package-0");
    write("intel-rapl:0/max_energy_range_uj", "262143328850");
    set(0);
  }
  ~fake_rapl() { std::filesystem::remove_all(root_); }
  void set(unsigned long long uj) { write("intel-rapl:0/energy_uj", std::to_string(uj)); }
  [[nodiscard]] std::string root() const { return root_.string(); }

 private:
  void write(const std::string& file, const std::string& text) {
    const auto tmp = root_ / (file + ".tmp");
    std::ofstream(tmp) << text << '\n';
    std::filesystem::rename(tmp, root_ / file);
  }
  std::filesystem::path root_;
};

TEST(BudgetEnergy, IsWhatTheCounterReadSinceTheBudgetBeganReadingIt) {
  fake_rapl tree;
  tree.set(5'000'000);  // before the counter: not the budget's
  frugal::energy_counter counter{tree.root()};
  frugal::budget run{"train", frugal::limits{}.energy(100)};
  tree.set(7'500'000);
  run.set_energy_counter(counter);  // 2.5 J before this: not counted either
  EXPECT_TRUE(run.measures_energy());
  EXPECT_EQ(run.energy_unavailable(), "");
  frugal::budget& eval = run.child("eval");
  tree.set(57'500'000);
  EXPECT_EQ(run.used(resource::energy), 50);
  EXPECT_EQ(eval.used(resource::energy), 50);  // the machine's, over the child's life
  EXPECT_EQ(run.snapshot()[resource::energy], 50);
  EXPECT_DOUBLE_EQ(run.fraction_used(), 0.5);
  tree.set(107'500'000);
  EXPECT_EQ(run.exhausted_resources(), std::vector<std::string>{"energy"});
}

TEST(BudgetEnergy, UnreadableIsSaidNotZero) {
  const std::filesystem::path empty = std::filesystem::temp_directory_path() / ("frugal_norapl_" + std::to_string(::getpid()));
  std::filesystem::create_directories(empty);
  frugal::energy_counter none{empty.string()};
  frugal::budget run{"train"};
  run.set_energy_counter(none);
  EXPECT_FALSE(run.measures_energy());
  EXPECT_NE(run.energy_unavailable().find("no intel-rapl"), std::string::npos) << run.energy_unavailable();
  const std::string text = frugal::text_report(run);
  EXPECT_NE(text.find("energy: not measured: "), std::string::npos) << text;
  const auto doc = frugal_test::json_reader::parse(frugal::json_report(run));
  EXPECT_TRUE(doc["budget"]["used"]["energy"].is_null());
  EXPECT_EQ(doc["budget"]["energy_unavailable"].str(), run.energy_unavailable());
  std::filesystem::remove_all(empty);
}

// ---------------------------------------------------------------------------------------------
// Reports.

TEST(CostReport, TextAndJsonAgreeWithTheResources) {
  frugal::manual_clock clock;
  frugal::budget run{"train", frugal::limits{}.cost(0.1, "USD")};
  run.set_price(dollars);
  priced_step(run, clock);
  const std::string text = frugal::text_report(run);
  EXPECT_NE(text.find("0.0210 USD"), std::string::npos) << text;
  EXPECT_NE(text.find("0.100 USD"), std::string::npos) << text;
  const auto doc = frugal_test::json_reader::parse(frugal::json_report(run));
  const auto& b = doc["budget"];
  EXPECT_EQ(b["limits"]["currency"].str(), "USD");
  EXPECT_EQ(b["price"]["instance_hour"].num(), 3.6);
  EXPECT_EQ(b["price"]["core_hour"].num(), 7.2);
  EXPECT_EQ(b["price"]["flop"].num(), 1e-9);
  EXPECT_EQ(b["price"]["currency"].str(), "USD");
  EXPECT_EQ(b["used"]["cost"].num(),
            dollars.cost(b["used"]["wall"].num(), b["used"]["cpu"].num(), b["used"]["flops"].num()));
  EXPECT_EQ(doc["units_of_measure"]["cost"].str(), "money");
  EXPECT_EQ(doc["units_of_measure"]["energy"].str(), "joules");
  // Without a price: not measured, not zero.
  frugal::budget free{"free"};
  EXPECT_TRUE(frugal_test::json_reader::parse(frugal::json_report(free))["budget"]["used"]["cost"].is_null());
  EXPECT_TRUE(frugal_test::json_reader::parse(frugal::json_report(free))["budget"]["price"].is_null());
}

}  // namespace
