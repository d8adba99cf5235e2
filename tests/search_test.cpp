// Hyperparameter search inside one budget (<frugal/search.hpp>, <frugal/search_tbb.hpp>): the
// papers' rung sizes and brackets, promotions of the top 1/eta, a search that never spends past
// its parent (samples, FLOPs, and wall time on a manual clock), child budgets charged exactly
// (in sequence, on std::threads and on oneTBB workers), trials resumed on promotion, the JSON
// and text reports, bad input.
#include <frugal/controller.hpp>
#include <frugal/scope.hpp>
#include <frugal/search.hpp>
#include <frugal/search_report.hpp>
#include <frugal/search_tbb.hpp>
#include <frugal/tbb.hpp>

#include <gtest/gtest.h>

#include <oneapi/tbb/global_control.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/checks.hpp"
#include "support/json_reader.hpp"

using namespace std::chrono_literals;

namespace {

using frugal_test::expect_invalid;

// The papers' formula, written out independently of the library: Li et al. 2018, Algorithm 1.
struct expected_bracket {
  std::size_t s;
  std::vector<std::size_t> n;
  std::vector<double> r;
};
std::vector<expected_bracket> hyperband_by_formula(double R, std::size_t eta) {
  const auto s_max = static_cast<std::size_t>(std::floor(std::log(R) / std::log(static_cast<double>(eta)) + 1e-9));
  std::vector<expected_bracket> out;
  for (std::size_t s = s_max + 1; s-- > 0;) {
    const double e = static_cast<double>(eta);
    const auto n = static_cast<std::size_t>(std::ceil((static_cast<double>(s_max) + 1) / (static_cast<double>(s) + 1) * std::pow(e, s) - 1e-9));
    const double r = R * std::pow(e, -static_cast<double>(s));
    expected_bracket b{s, {}, {}};
    for (std::size_t i = 0; i <= s; ++i) {
      b.n.push_back(static_cast<std::size_t>(std::floor(static_cast<double>(n) * std::pow(e, -static_cast<double>(i)) + 1e-9)));
      b.r.push_back(r * std::pow(e, static_cast<double>(i)));
    }
    out.push_back(b);
  }
  return out;
}

void expect_plan(const frugal::search_plan& p, const std::vector<expected_bracket>& want) {
  ASSERT_EQ(p.brackets.size(), want.size());
  for (std::size_t b = 0; b < want.size(); ++b) {
    EXPECT_EQ(p.brackets[b].s, want[b].s);
    ASSERT_EQ(p.brackets[b].rungs.size(), want[b].n.size()) << "bracket " << b;
    for (std::size_t i = 0; i < want[b].n.size(); ++i) {
      EXPECT_EQ(p.brackets[b].rungs[i].trials, want[b].n[i]) << "bracket s=" << want[b].s << " rung " << i;
      EXPECT_NEAR(p.brackets[b].rungs[i].resource, want[b].r[i], 1e-9 * want[b].r[i]) << "bracket s=" << want[b].s << " rung " << i;
    }
  }
}

// A space of `n` configurations whose score is known: "q" is a fixed permutation of 0..n-1.
frugal::search_space scored_space(std::size_t n) {
  std::vector<frugal::configuration> list;
  for (std::size_t i = 0; i < n; ++i)
    list.push_back(frugal::configuration{{"q", static_cast<double>((i * 7 + 3) % n)}, {"index", static_cast<double>(i)}});
  return frugal::search_space::of(list);
}

// A trial: steps of `batch` samples (and `flops` FLOPs) until its controller stops, then one
// evaluation reporting `score`. What each trial charged is kept, by trial id.
struct ledger {
  std::mutex mu;
  std::map<std::size_t, double> samples;
  std::map<std::size_t, double> flops;
  std::set<std::thread::id> threads;
  void add(std::size_t id, double s, double f) {
    std::lock_guard<std::mutex> lock(mu);
    samples[id] += s;
    flops[id] += f;
    threads.insert(std::this_thread::get_id());
  }
};

void train(frugal::trial& t, std::size_t batch, double score, ledger* book = nullptr, std::uint64_t flops = 0,
           frugal::manual_clock* clock = nullptr, std::chrono::nanoseconds step_time = 0ns) {
  frugal::controller& ctl = t.controller();
  while (!ctl.should_stop()) {
    {
      frugal::scope s{t.budget(), "step"};
      frugal::add_units("samples", static_cast<double>(batch));
      if (flops) frugal::add_flops(flops);
      if (clock) clock->advance(step_time);
    }
    if (book) book->add(t.id(), static_cast<double>(batch), static_cast<double>(flops));
    if (ctl.end_step(frugal::step{}.samples(batch)).stops()) break;
  }
  (void)ctl.end_epoch(frugal::epoch{}.metric("score", score));
}

frugal::search_options scored_options(frugal::search_method m) {
  return frugal::search_options{}.method(m).eta(3).resource("samples").metric("score", frugal::metric_mode::max);
}

// ---------------------------------------------------------------------------------------------
// The plans: the papers' formulas
// ---------------------------------------------------------------------------------------------

TEST(SearchPlan, HyperbandR81Eta3IsTable1OfLiEtAl) {
  // Li et al., JMLR 2018, Table 1: (n_i, r_i) per bracket for R = 81, eta = 3.
  const std::vector<expected_bracket> table1{
      {4, {81, 27, 9, 3, 1}, {1, 3, 9, 27, 81}},
      {3, {34, 11, 3, 1}, {3, 9, 27, 81}},
      {2, {15, 5, 1}, {9, 27, 81}},
      {1, {8, 2}, {27, 81}},
      {0, {5}, {81}},
  };
  const frugal::search_plan p = frugal::hyperband_plan(81, 3);
  expect_plan(p, table1);
  EXPECT_EQ(p.trials(), 81u + 34 + 15 + 8 + 5);
  // With resume, rung i costs n_i (r_i - r_{i-1}).
  EXPECT_DOUBLE_EQ(p.cost(), 81 * 1 + 27 * 2 + 9 * 6 + 3 * 18 + 1 * 54 +  //
                                 34 * 3 + 11 * 6 + 3 * 18 + 1 * 54 +       //
                                 15 * 9 + 5 * 18 + 1 * 54 +                //
                                 8 * 27 + 2 * 54 +                         //
                                 5 * 81);
}

TEST(SearchPlan, HyperbandMatchesTheFormulaForOtherRAndEta) {
  for (const auto& [R, eta] : std::vector<std::pair<double, std::size_t>>{{27, 3}, {8, 2}, {64, 4}, {100, 3}, {1, 3}, {26.9, 3}})
    expect_plan(frugal::hyperband_plan(R, eta), hyperband_by_formula(R, eta));
  // R not a power of eta: s_max = floor(log_3 100) = 4, the least resource 100/81.
  const frugal::search_plan p = frugal::hyperband_plan(100, 3);
  EXPECT_EQ(p.brackets.front().s, 4u);
  EXPECT_NEAR(p.brackets.front().rungs.front().resource, 100.0 / 81, 1e-12);
  EXPECT_NEAR(p.brackets.front().rungs.back().resource, 100.0, 1e-9);
}

TEST(SearchPlan, SuccessiveHalvingKeepsFloorOfNOverEtaToTheI) {
  expect_plan(frugal::successive_halving_plan(27, 3), {{3, {27, 9, 3, 1}, {1, 3, 9, 27}}});
  expect_plan(frugal::successive_halving_plan(10, 2), {{3, {10, 5, 2, 1}, {1, 2, 4, 8}}});
  expect_plan(frugal::successive_halving_plan(30, 3), {{3, {30, 10, 3, 1}, {1, 3, 9, 27}}});
  expect_plan(frugal::successive_halving_plan(10, 2, 2), {{1, {10, 5}, {1, 2}}});
  expect_plan(frugal::successive_halving_plan(1, 3), {{0, {1}, {1}}});
  // Each rung costs about n: the budget split evenly over the rungs (Jamieson and Talwalkar).
  EXPECT_DOUBLE_EQ(frugal::successive_halving_plan(27, 3).cost(), 27 * 1 + 9 * 2 + 3 * 6 + 1 * 18);
  // Wall time with 4 trials at once: rungs in waves (ceil(27/4) = 7, ceil(9/4) = 3, 1, 1).
  EXPECT_DOUBLE_EQ(frugal::successive_halving_plan(27, 3).cost(4, true), 7 * 1 + 3 * 2 + 1 * 6 + 1 * 18);
}

TEST(SearchPlan, FittedToTheParentBudget) {
  frugal::budget run{"run", frugal::limits{}.units("samples", 36000)};
  frugal::search s{run, scored_space(27), scored_options(frugal::search_method::successive_halving)};
  // 27 configurations, eta 3: 27 x 1, 9 x 3, 3 x 9, 1 x 27 units, with resume 81 units: 36000 / 81.
  EXPECT_EQ(s.plan().brackets.size(), 1u);
  EXPECT_DOUBLE_EQ(s.plan().unit, 36000.0 / 81);
  EXPECT_DOUBLE_EQ(s.plan().cost(), 36000);
  // Twice the budget, twice the resource per trial.
  frugal::budget run2{"run", frugal::limits{}.units("samples", 72000)};
  frugal::search s2{run2, scored_space(27), scored_options(frugal::search_method::successive_halving)};
  EXPECT_DOUBLE_EQ(s2.plan().unit, 2 * s.plan().unit);
  // The reserve stays out of the plan.
  frugal::budget run3{"run", frugal::limits{}.units("samples", 36000)};
  frugal::search s3{run3, scored_space(27), scored_options(frugal::search_method::successive_halving).reserve(0.25)};
  EXPECT_DOUBLE_EQ(s3.plan().cost(), 27000);
}

TEST(SearchPlan, MinResourceShrinksThePlanRatherThanStarveTrials) {
  frugal::budget run{"run", frugal::limits{}.units("samples", 10000)};
  // Hyperband over 81 configurations (R = 81 units) costs 1581 units: 6.3 samples a unit. With
  // at least 50 samples a unit, fewer brackets: R = 27 (357 units, 28 samples) is still too
  // little, R = 9 (69 units, 145 samples) fits.
  frugal::search s{run, scored_space(81), scored_options(frugal::search_method::hyperband).min_resource(50)};
  EXPECT_GE(s.plan().unit, 50);
  EXPECT_LE(s.plan().cost(), 10000 * (1 + 1e-12));
  EXPECT_EQ(s.plan().brackets.size(), 3u);
  EXPECT_DOUBLE_EQ(s.plan().unit, 10000.0 / 69);
}

TEST(SearchPlan, RandomSearchGivesEachTrialHyperbandsR) {
  frugal::budget a{"a", frugal::limits{}.units("samples", 90000)};
  frugal::budget b{"b", frugal::limits{}.units("samples", 90000)};
  frugal::search hb{a, scored_space(81), scored_options(frugal::search_method::hyperband)};
  frugal::search rs{b, scored_space(81), scored_options(frugal::search_method::random)};
  const double R = hb.plan().unit * hb.plan().brackets.front().rungs.back().resource;
  ASSERT_EQ(rs.plan().brackets.size(), 1u);
  EXPECT_NEAR(rs.plan().unit * rs.plan().brackets.front().rungs.front().resource, R, 1e-9 * R);
  EXPECT_EQ(rs.plan().trials(), static_cast<std::size_t>(std::floor(90000 / R)));
  EXPECT_LE(rs.plan().cost(), 90000);
}

// ---------------------------------------------------------------------------------------------
// Bad input names the field and the value
// ---------------------------------------------------------------------------------------------

TEST(SearchInput, BadOptionsThrowNamingFieldAndValue) {
  expect_invalid([] { frugal::search_options{}.eta(1); }, {"eta", ">= 2", "got 1"});
  expect_invalid([] { frugal::search_options{}.eta(0); }, {"eta", "got 0"});
  expect_invalid([] { frugal::search_options{}.min_resource(0); }, {"min_resource", "got 0"});
  expect_invalid([] { frugal::search_options{}.min_resource(-3); }, {"min_resource", "got -3"});
  expect_invalid([] { frugal::search_options{}.min_resource(std::nan("")); }, {"min_resource", "nan"});
  expect_invalid([] { frugal::search_options{}.rungs(0); }, {"rungs", "got 0"});
  expect_invalid([] { frugal::search_options{}.configurations(0); }, {"configurations", "got 0"});
  expect_invalid([] { frugal::search_options{}.concurrency(0); }, {"concurrency", "got 0"});
  expect_invalid([] { frugal::search_options{}.reserve(1); }, {"reserve", "got 1"});
  expect_invalid([] { frugal::search_options{}.reserve(-0.5); }, {"reserve", "got -0.5"});
  expect_invalid([] { frugal::search_options{}.metric(""); }, {"metric", "''"});
  expect_invalid([] { frugal::search_options{}.resource(frugal::resource::peak_bytes); }, {"resource", "peak_bytes"});
  expect_invalid([] { frugal::search_options{}.resource("not a unit"); }, {"resource", "'not a unit'"});
  expect_invalid([] { frugal::search_options{}.name(""); }, {"name", "''"});
  expect_invalid([] { (void)frugal::hyperband_plan(81, 1); }, {"eta", "got 1"});
  expect_invalid([] { (void)frugal::hyperband_plan(0.5, 3); }, {"R", "got 0.5"});
  expect_invalid([] { (void)frugal::successive_halving_plan(0, 3); }, {"n", "got 0"});
}

TEST(SearchInput, BadSpacesAndSearchesThrow) {
  expect_invalid([] { (void)frugal::search_space::grid({{"lr", {}}}); }, {"lr", "none"});
  expect_invalid([] { frugal::search_space{}.log_uniform("lr", 0, 1); }, {"lr", "low", "got 0"});
  expect_invalid([] { frugal::search_space{}.uniform("m", 1, 0.5); }, {"m", "high", "got 0.5"});
  expect_invalid([] { frugal::search_space{}.choice("b", {}); }, {"b", "none"});
  expect_invalid([] { frugal::configuration{}.set("lr", std::nan("")); }, {"lr", "nan"});
  expect_invalid([] { (void)frugal::configuration{{"lr", 0.1}}["lrr"]; }, {"'lrr'", "lr"});

  frugal::budget run{"run", frugal::limits{}.units("samples", 1000).wall(10s)};
  const auto opts = scored_options(frugal::search_method::hyperband);
  expect_invalid([&] { frugal::search s(run, frugal::search_space{}, opts); }, {"space", "empty"});
  expect_invalid([&] { frugal::search s(run, frugal::search_space::of({}), opts); }, {"space", "empty"});
  expect_invalid([&] { frugal::search s(run, scored_space(9), frugal::search_options{}.resource("samples")); },
                 {"metric", "''"});
  expect_invalid([&] { frugal::search s(run, scored_space(9), frugal::search_options{}.metric("score")); },
                 {"resource", "2 consumables", "wall, samples"});
  expect_invalid([&] { frugal::search s(run, scored_space(9), frugal::search_options(opts).resource("tokens")); }, {"resource", "'tokens'"});
  expect_invalid([&] { frugal::search s(run, scored_space(9), frugal::search_options(opts).resource(frugal::resource::flops)); },
                 {"resource", "'flops'"});
}

TEST(SearchInput, RunningOutIsADecisionNotAnError) {
  // A parent already spent: nothing runs, and the result says why.
  frugal::budget run{"run", frugal::limits{}.units("samples", 100)};
  {
    frugal::scope s{run, "before"};
    frugal::add_units("samples", 100);
  }
  frugal::search s{run, scored_space(9), scored_options(frugal::search_method::hyperband)};
  int calls = 0;
  const frugal::search_result& r = s.run([&](frugal::trial&) { ++calls; });
  EXPECT_EQ(calls, 0);
  EXPECT_FALSE(r.completed);
  EXPECT_NE(r.stop.find("budget"), std::string::npos) << r.stop;
  EXPECT_EQ(r.best_trial(), nullptr);
}

// ---------------------------------------------------------------------------------------------
// Promotions and staying inside the budget
// ---------------------------------------------------------------------------------------------

TEST(SearchRun, PromotionsPickTheTopOneOverEta) {
  frugal::budget run{"run", frugal::limits{}.units("samples", 81 * 70)};
  frugal::search s{run, scored_space(27), scored_options(frugal::search_method::successive_halving)};
  const frugal::search_result& r = s.run([](frugal::trial& t) { train(t, 5, t.config()["q"]); });
  ASSERT_TRUE(r.completed) << r.stop;
  ASSERT_EQ(r.rungs.size(), 4u);
  const std::vector<std::size_t> sizes{27, 9, 3, 1};
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(r.rungs[i].run, sizes[i]);
    EXPECT_EQ(r.rungs[i].promoted, i + 1 < 4 ? sizes[i + 1] : 0u);
  }
  // Each rung's trials are exactly the previous rung's top floor(n / eta) by score.
  for (std::size_t i = 0; i + 1 < 4; ++i) {
    std::vector<std::size_t> top(r.rungs[i].trials.begin(), r.rungs[i].trials.begin() + static_cast<long>(sizes[i + 1]));
    std::vector<std::size_t> next = r.rungs[i + 1].trials;
    std::sort(top.begin(), top.end());
    std::sort(next.begin(), next.end());
    EXPECT_EQ(top, next) << "rung " << i + 1;
    // The ranking is by score, best first.
    for (std::size_t k = 0; k + 1 < r.rungs[i].trials.size(); ++k)
      EXPECT_GE(*r.trials[r.rungs[i].trials[k] - 1].rungs[i].metric, *r.trials[r.rungs[i].trials[k + 1] - 1].rungs[i].metric);
  }
  // Scores are a permutation of 0..26: the survivors are 26 (1 of 1), 24..26 (3), 18..26 (9).
  ASSERT_NE(r.best_trial(), nullptr);
  EXPECT_EQ(r.best_trial()->config["q"], 26);
  for (std::size_t id : r.rungs[2].trials) EXPECT_GE(r.trials[id - 1].config["q"], 24);
  for (std::size_t id : r.rungs[1].trials) EXPECT_GE(r.trials[id - 1].config["q"], 18);
  // Minimize: the other end.
  frugal::budget run2{"run", frugal::limits{}.units("samples", 81 * 70)};
  frugal::search s2{run2, scored_space(27), scored_options(frugal::search_method::successive_halving).metric("score", frugal::metric_mode::min)};
  const frugal::search_result& r2 = s2.run([](frugal::trial& t) { train(t, 5, t.config()["q"]); });
  ASSERT_NE(r2.best_trial(), nullptr);
  EXPECT_EQ(r2.best_trial()->config["q"], 0);
}

TEST(SearchRun, HyperbandNeverSpendsPastASamplesBudget) {
  for (double limit : {20000.0, 50000.0, 200000.0}) {
    frugal::budget run{"run", frugal::limits{}.units("samples", limit)};
    frugal::search s{run, scored_space(27), scored_options(frugal::search_method::hyperband).min_resource(7)};
    const frugal::search_result& r = s.run([](frugal::trial& t) { train(t, 7, t.config()["q"]); });
    SCOPED_TRACE("limit " + std::to_string(limit) + ": " + r.stop);
    EXPECT_LE(run.used("samples"), limit);
    EXPECT_EQ(r.parent_used, run.used("samples"));
    // Every trial stops inside its rung's target, and together they use most of the budget
    // (each stops when one more step of 7 would not fit its target).
    for (const auto& t : r.trials)
      for (const auto& x : t.rungs) EXPECT_LE(x.used, x.target);
    EXPECT_GT(run.used("samples"), 0.85 * limit);
    // The brackets of the plan: R = 27 units over 27 configurations.
    EXPECT_EQ(r.plan.brackets.size(), 4u);
    EXPECT_TRUE(r.completed);
    ASSERT_NE(r.best_trial(), nullptr);
    EXPECT_EQ(r.best_trial()->config["q"], 26);  // every configuration is tried in bracket s = 3
  }
}

TEST(SearchRun, TrialsThatOverspendCutTheSearchShortWithinOneOverrun) {
  // Trials that ignore their controller and go 10 samples past every rung's target: each one's
  // overrun eats into the plan, and the search stops when the parent cannot give the next trial
  // its whole increment -- past the parent's limit by at most one trial's overrun.
  frugal::budget run{"run", frugal::limits{}.units("samples", 8100)};
  frugal::search s{run, scored_space(27), scored_options(frugal::search_method::successive_halving)};
  int calls = 0;
  const frugal::search_result& r = s.run([&](frugal::trial& t) {
    ++calls;
    frugal::scope sc{t.budget(), "step"};
    frugal::add_units("samples", t.target() - t.budget().used("samples") + 10);
    (void)t.controller().end_epoch(frugal::epoch{}.metric("score", t.config()["q"]));
  });
  EXPECT_FALSE(r.completed);
  EXPECT_NE(r.stop.find("budget: samples left"), std::string::npos) << r.stop;
  EXPECT_LT(calls, 27 + 9 + 3 + 1);
  EXPECT_LE(run.used("samples"), 8100 + 10);
  // No promotion from a rung the budget cut short.
  EXPECT_EQ(r.rungs.back().promoted, 0u);
}

TEST(SearchRun, AMinResourceTheBudgetCannotHoldRunsNothing) {
  frugal::budget run{"run", frugal::limits{}.units("samples", 3000)};
  frugal::search s{run, scored_space(27), scored_options(frugal::search_method::successive_halving).min_resource(5000)};
  int calls = 0;
  const frugal::search_result& r = s.run([&](frugal::trial&) { ++calls; });
  EXPECT_EQ(calls, 0);
  EXPECT_FALSE(r.completed);
  EXPECT_NE(r.stop.find("budget"), std::string::npos) << r.stop;
  EXPECT_EQ(run.used("samples"), 0);
}

TEST(SearchRun, NeverSpendsPastAFlopsBudget) {
  const double limit = 5e6;
  frugal::budget run{"run", frugal::limits{}.flops(limit)};
  frugal::search s{run, scored_space(27),
                   frugal::search_options{}.method(frugal::search_method::hyperband).metric("score").min_resource(3000)};
  EXPECT_EQ(s.resource(), "flops");
  const frugal::search_result& r = s.run([](frugal::trial& t) { train(t, 1, t.config()["q"], nullptr, 1000); });
  EXPECT_LE(run.used(frugal::resource::flops), limit);
  EXPECT_GT(run.used(frugal::resource::flops), 0.85 * limit);
  EXPECT_TRUE(r.completed) << r.stop;
}

TEST(SearchRun, NeverSpendsPastAWallBudget) {
  frugal::manual_clock clock;  // before the budgets: every step takes exactly 10 ms
  frugal::budget run{"run", frugal::limits{}.wall(3s)};
  frugal::search s{run, scored_space(27), scored_options(frugal::search_method::hyperband).resource(frugal::resource::wall).min_resource(0.05)};
  const frugal::search_result& r = s.run([&](frugal::trial& t) { train(t, 4, t.config()["q"], nullptr, 0, &clock, 10ms); });
  EXPECT_LE(run.used(frugal::resource::wall), 3.0);
  EXPECT_GT(run.used(frugal::resource::wall), 0.8 * 3.0);
  for (const auto& t : r.trials)
    for (const auto& x : t.rungs) EXPECT_LE(x.wall, x.target + 1e-9);
  EXPECT_TRUE(r.completed) << r.stop;
}

TEST(SearchRun, AParentWallLimitBindsASamplesSearch) {
  // The search spends samples, but the parent also limits wall time: every trial's budget gets
  // what the parent has left of it, and the trials' controllers stop there.
  frugal::manual_clock clock;
  frugal::budget run{"run", frugal::limits{}.units("samples", 1e6).wall(1s)};
  frugal::search s{run, scored_space(27), scored_options(frugal::search_method::successive_halving)};
  const frugal::search_result& r = s.run([&](frugal::trial& t) { train(t, 10, t.config()["q"], nullptr, 0, &clock, 10ms); });
  EXPECT_LE(run.used(frugal::resource::wall), 1.0);
  EXPECT_FALSE(r.completed);
  EXPECT_NE(r.stop.find("wall"), std::string::npos) << r.stop;
}

// ---------------------------------------------------------------------------------------------
// Charging, resuming
// ---------------------------------------------------------------------------------------------

TEST(SearchRun, ChildBudgetsAreChargedExactly) {
  frugal::budget run{"run", frugal::limits{}.units("samples", 30000)};
  ledger book;
  frugal::search s{run, scored_space(27), scored_options(frugal::search_method::hyperband)};
  const frugal::search_result& r = s.run([&](frugal::trial& t) { train(t, 3, t.config()["q"], &book, 17); });
  frugal::budget* holder = run.find_child("search");
  ASSERT_NE(holder, nullptr);
  double total = 0;
  for (const auto& t : r.trials) {
    frugal::budget* child = holder->find_child(t.budget_path.substr(t.budget_path.rfind('/') + 1));
    ASSERT_NE(child, nullptr) << t.budget_path;
    EXPECT_EQ(child->used("samples"), book.samples[t.id]) << t.budget_path;
    EXPECT_EQ(child->used(frugal::resource::flops), book.flops[t.id]) << t.budget_path;
    EXPECT_EQ(child->stage("trial").units_of("samples"), book.samples[t.id]);
    total += book.samples[t.id];
  }
  EXPECT_EQ(holder->used("samples"), total);
  EXPECT_EQ(run.used("samples"), total);
  EXPECT_EQ(holder->stage("search").units_of("samples"), total);
}

struct counter_state {
  explicit counter_state(double start) : samples(start) {}
  double samples;
  int calls = 0;
};

TEST(SearchRun, APromotedTrialResumesItsStateAndController) {
  frugal::budget run{"run", frugal::limits{}.units("samples", 81 * 50)};
  frugal::search s{run, scored_space(27), scored_options(frugal::search_method::successive_halving)};
  int resumed_checks = 0;
  const frugal::search_result& r = s.run([&](frugal::trial& t) {
    const bool had = t.has_state();
    EXPECT_EQ(had, t.resumed()) << "trial " << t.id() << " rung " << t.rung();
    counter_state& st = t.state<counter_state>(0.0);
    EXPECT_EQ(st.calls, static_cast<int>(t.rung()));
    // The state continues exactly where the budget says the trial stopped; so does its controller.
    EXPECT_EQ(st.samples, t.budget().used("samples"));
    EXPECT_EQ(t.controller().steps() * 5, static_cast<std::uint64_t>(st.samples));
    if (t.resumed()) ++resumed_checks;
    ++st.calls;
    frugal::controller& ctl = t.controller();
    while (!ctl.should_stop()) {
      {
        frugal::scope sc{t.budget(), "step"};
        frugal::add_units("samples", 5);
      }
      st.samples += 5;
      if (ctl.end_step(frugal::step{}.samples(5)).stops()) break;
    }
    (void)ctl.end_epoch(frugal::epoch{}.metric("score", t.config()["q"]));
    EXPECT_THROW((void)t.state<int>(), std::logic_error);
  });
  EXPECT_EQ(resumed_checks, 9 + 3 + 1);
  ASSERT_TRUE(r.completed) << r.stop;
  // Only the best trial's state outlives the search: the model that scored best.
  const counter_state* best = s.best_state<counter_state>();
  ASSERT_NE(best, nullptr);
  EXPECT_EQ(best->calls, 4);
  EXPECT_EQ(best->samples, r.best_trial()->rungs.back().used);
  EXPECT_EQ(s.best_state<int>(), nullptr);
}

TEST(SearchRun, ATrialThatThrowsRanksLastAndTheSearchGoesOn) {
  frugal::budget run{"run", frugal::limits{}.units("samples", 81 * 40)};
  frugal::search s{run, scored_space(27), scored_options(frugal::search_method::successive_halving)};
  const frugal::search_result& r = s.run([](frugal::trial& t) {
    if (t.config()["q"] == 26) throw std::runtime_error("diverged");
    train(t, 5, t.config()["q"]);
  });
  ASSERT_TRUE(r.completed) << r.stop;
  ASSERT_NE(r.best_trial(), nullptr);
  EXPECT_EQ(r.best_trial()->config["q"], 25);
  const auto failed = std::find_if(r.trials.begin(), r.trials.end(), [](const auto& t) { return t.config["q"] == 26; });
  ASSERT_NE(failed, r.trials.end());
  EXPECT_EQ(failed->error, "diverged");
  EXPECT_EQ(r.rungs[0].trials.back(), failed->id);
}

TEST(SearchRun, ASamplerSpaceDrawsInsideItsRanges) {
  frugal::budget run{"run", frugal::limits{}.units("samples", 20000)};
  auto space = frugal::search_space{}.log_uniform("lr", 1e-3, 1).uniform("momentum", 0.5, 0.99).choice("batch", {16, 64});
  frugal::search s{run, space, scored_options(frugal::search_method::successive_halving).configurations(9).seed(7)};
  const frugal::search_result& r = s.run([](frugal::trial& t) { train(t, 4, -std::abs(std::log10(t.config()["lr"]) + 1)); });
  ASSERT_EQ(r.trials.size(), 9u);
  for (const auto& t : r.trials) {
    EXPECT_GE(t.config["lr"], 1e-3);
    EXPECT_LE(t.config["lr"], 1);
    EXPECT_GE(t.config["momentum"], 0.5);
    EXPECT_LE(t.config["momentum"], 0.99);
    EXPECT_TRUE(t.config["batch"] == 16 || t.config["batch"] == 64);
    EXPECT_FALSE(t.space_index.has_value());
  }
  EXPECT_LE(run.used("samples"), 20000);
}

// ---------------------------------------------------------------------------------------------
// Parallel trials
// ---------------------------------------------------------------------------------------------

// Trials that split their work over oneTBB (frugal::parallel_for) while other trials run.
void parallel_trial(frugal::trial& t, ledger& book) {
  frugal::controller& ctl = t.controller();
  while (!ctl.should_stop()) {
    {
      frugal::scope s{t.budget(), "step"};
      frugal::parallel_for(0, 8, [&](int) {
        frugal::add_flops(t.id());  // a trial's own signature: the id, 8 times a step
        book.add(t.id(), 0, static_cast<double>(t.id()));
      });
      frugal::add_units("samples", 8);
    }
    book.add(t.id(), 8, 0);
    if (ctl.end_step(frugal::step{}.samples(8)).stops()) break;
  }
  (void)ctl.end_epoch(frugal::epoch{}.metric("score", t.config()["q"]));
}

void expect_charged_exactly(const frugal::budget& run, const frugal::search_result& r, ledger& book) {
  const frugal::budget* holder = run.find_child("search");
  ASSERT_NE(holder, nullptr);
  double samples = 0, flops = 0;
  for (const auto& t : r.trials) {
    const frugal::budget* child = holder->find_child(t.budget_path.substr(t.budget_path.rfind('/') + 1));
    ASSERT_NE(child, nullptr);
    EXPECT_EQ(child->used("samples"), book.samples[t.id]) << t.budget_path;
    EXPECT_EQ(child->used(frugal::resource::flops), book.flops[t.id]) << t.budget_path;
    // Only this trial's id was ever charged here: a multiple of it.
    EXPECT_EQ(std::fmod(child->used(frugal::resource::flops), static_cast<double>(t.id)), 0.0);
    samples += book.samples[t.id];
    flops += book.flops[t.id];
  }
  EXPECT_EQ(run.used("samples"), samples);
  EXPECT_EQ(run.used(frugal::resource::flops), flops);
}

TEST(SearchParallel, TrialsOnOneTbbAreChargedToTheirOwnBudgets) {
  tbb::global_control allow(tbb::global_control::max_allowed_parallelism, 4);
  frugal::budget run{"run", frugal::limits{}.units("samples", 40000)};
  ledger book;
  frugal::search s{run, scored_space(27), scored_options(frugal::search_method::hyperband).concurrency(4)};
  const frugal::search_result& r = frugal::run_parallel(s, [&](frugal::trial& t) { parallel_trial(t, book); });
  EXPECT_TRUE(r.completed) << r.stop;
  EXPECT_LE(run.used("samples"), 40000);
  expect_charged_exactly(run, r, book);
  ASSERT_NE(r.best_trial(), nullptr);
  EXPECT_EQ(r.best_trial()->config["q"], 26);
}

TEST(SearchParallel, TrialsOnStdThreadsAreChargedToTheirOwnBudgets) {
  // The same through an executor of plain threads (what the ThreadSanitizer build checks:
  // Debian's libtbb is not instrumented).
  const frugal::trial_executor threads = [](std::size_t n, const std::function<void(std::size_t)>& task) {
    std::atomic<std::size_t> next{0};
    std::vector<std::thread> pool;
    for (int w = 0; w < 3; ++w)
      pool.emplace_back([&] {
        for (std::size_t i = next++; i < n; i = next++) task(i);
      });
    for (auto& t : pool) t.join();
  };
  frugal::budget run{"run", frugal::limits{}.units("samples", 30000).flops(1e9)};
  ledger book;
  frugal::search s{run, scored_space(27), scored_options(frugal::search_method::hyperband).concurrency(3)};
  const frugal::search_result& r = s.run(
      [&](frugal::trial& t) {
        frugal::controller& ctl = t.controller();
        while (!ctl.should_stop()) {
          {
            frugal::scope sc{t.budget(), "step"};
            frugal::add_flops(t.id());
            frugal::add_units("samples", 8);
          }
          book.add(t.id(), 8, static_cast<double>(t.id()));
          if (ctl.end_step(frugal::step{}.samples(8)).stops()) break;
        }
        (void)ctl.end_epoch(frugal::epoch{}.metric("score", t.config()["q"]));
      },
      threads);
  EXPECT_TRUE(r.completed) << r.stop;
  EXPECT_LE(run.used("samples"), 30000);
  expect_charged_exactly(run, r, book);
}

// ---------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------

TEST(SearchReport, JsonIsValidAndHasEveryTrialAndRung) {
  frugal::budget run{"run", frugal::limits{}.units("samples", 20000)};
  frugal::search s{run, scored_space(9), scored_options(frugal::search_method::hyperband)};
  const frugal::search_result& r = s.run([](frugal::trial& t) {
    if (t.config()["q"] == 3) {
      (void)t.controller().end_epoch(frugal::epoch{}.metric("score", std::nan("")));  // a NaN metric: null
      return;
    }
    train(t, 5, t.config()["q"]);
  });
  const std::string text = frugal::json_report(run, r);
  const frugal_test::json doc = frugal_test::json_reader::parse(text);
  const auto& js = doc["search"];
  EXPECT_EQ(js["method"].str(), "hyperband");
  EXPECT_EQ(js["resource"].str(), "samples");
  EXPECT_EQ(js["metric"].str(), "score");
  EXPECT_EQ(js["mode"].str(), "max");
  EXPECT_EQ(js["inside_budget"].type, frugal_test::json::kind::boolean);
  EXPECT_TRUE(js["inside_budget"].boolean);
  EXPECT_EQ(js["parent_used"].num(), run.used("samples"));
  EXPECT_EQ(js["trials"].items.size(), r.trials.size());
  EXPECT_EQ(js["rungs"].items.size(), r.rungs.size());
  EXPECT_EQ(js["best"]["config"]["q"].num(), 8);
  EXPECT_EQ(js["best"]["trial"].num(), static_cast<double>(r.best_trial()->id));
  bool saw_null = false;
  for (const auto& t : js["trials"].items) {
    EXPECT_FALSE(t["rungs"].items.empty());
    if (t["config"]["q"].num() == 3) saw_null = t["metric"].is_null();
  }
  EXPECT_TRUE(saw_null);
  // The budget tree holds every trial's budget, under run/search.
  const auto& holder = doc["budget"]["children"][0];
  EXPECT_EQ(holder["name"].str(), "search");
  EXPECT_EQ(holder["children"].items.size(), r.trials.size());

  std::ostringstream table;
  frugal::print_report(table, r);
  EXPECT_NE(table.str().find("search: hyperband, eta 3"), std::string::npos) << table.str();
  EXPECT_NE(table.str().find("inside"), std::string::npos);
  EXPECT_NE(table.str().find("best: trial " + std::to_string(r.best_trial()->id)), std::string::npos);
}

}  // namespace
