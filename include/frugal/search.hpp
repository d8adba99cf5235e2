/// @file
/// Hyperparameter search inside one budget: successive halving (Jamieson and Talwalkar 2016),
/// Hyperband (Li et al., JMLR 2018) and random search, each trial a child budget, each rung a decision.
#pragma once

#include <frugal/budget.hpp>
#include <frugal/controller.hpp>
#include <frugal/controller_options.hpp>
#include <frugal/early_stopping.hpp>
#include <frugal/scope.hpp>
#include <frugal/units.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <ostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <typeindex>
#include <typeinfo>
#include <utility>
#include <vector>

namespace frugal {

// ---------------------------------------------------------------------------------------------
// Configurations and the space they come from
// ---------------------------------------------------------------------------------------------

/// One point of the space: named numeric hyperparameters, in the order they were set (a batch
/// size or a width is a whole number held as a double; the trial casts it).
class configuration {
 public:
  configuration() = default;
  /// {{"lr", 0.1}, {"batch", 128}}: set() for each pair, in order (throws as set() does).
  configuration(std::initializer_list<std::pair<std::string, double>> values) {
    for (const auto& [name, value] : values) set(name, value);
  }

  /// Sets (or replaces) one value. Names must not be empty; values must be finite.
  configuration& set(std::string name, double value) {
    if (name.empty()) throw std::invalid_argument("frugal::configuration: parameter name must not be empty, got ''");
    if (!std::isfinite(value))
      throw std::invalid_argument("frugal::configuration: parameter " + name + " must be finite, got " +
                                  detail::units_impl::shortest(value));
    for (auto& v : values_)
      if (v.first == name) {
        v.second = value;
        return *this;
      }
    values_.emplace_back(std::move(name), value);
    return *this;
  }

  /// The value of a parameter; one the configuration lacks is std::invalid_argument naming it
  /// (a misspelt "lr" must not silently read as 0).
  [[nodiscard]] double operator[](std::string_view name) const {
    if (const auto v = get(name)) return *v;
    std::string have;
    for (const auto& v : values_) have += (have.empty() ? "" : ", ") + v.first;
    throw std::invalid_argument("frugal::configuration: no parameter '" + std::string(name) + "' (has: " +
                                (have.empty() ? std::string("none") : have) + ")");
  }
  /// The value of a parameter; none when the configuration lacks it.
  [[nodiscard]] std::optional<double> get(std::string_view name) const noexcept {
    for (const auto& v : values_)
      if (v.first == name) return v.second;
    return std::nullopt;
  }
  /// Every (name, value), in the order first set.
  [[nodiscard]] const std::vector<std::pair<std::string, double>>& values() const noexcept { return values_; }
  /// Whether no parameter is set.
  [[nodiscard]] bool empty() const noexcept { return values_.empty(); }

  /// "lr=0.1 batch=128 width=256": the text of reports.
  [[nodiscard]] std::string to_string() const {
    std::string out;
    for (const auto& [name, value] : values_)
      out += (out.empty() ? "" : " ") + name + "=" + detail::units_impl::shortest(value);
    return out;
  }

  /// The same names with the same values, in the same order.
  friend bool operator==(const configuration& a, const configuration& b) noexcept { return a.values_ == b.values_; }
  /// Not operator==.
  friend bool operator!=(const configuration& a, const configuration& b) noexcept { return !(a == b); }

 private:
  std::vector<std::pair<std::string, double>> values_;
};

/// Where configurations come from: a finite list (given, or the grid of some axes), or a
/// sampler over ranges. A finite space is drawn without replacement (a shuffled order, reshuffled
/// when used up), so a search over 27 configurations tries each once before any twice; a
/// sampler draws independently, as the papers' random sampling does.
class search_space {
 public:
  /// An empty sampler: add ranges with uniform(), log_uniform(), choice().
  search_space() = default;

  /// A finite list of configurations.
  [[nodiscard]] static search_space of(std::vector<configuration> list) {
    search_space s;
    for (const configuration& c : list)
      if (c.empty()) throw std::invalid_argument("frugal::search_space: a configuration must not be empty");
    s.list_ = std::move(list);
    s.finite_ = true;
    return s;
  }

  /// Every combination of the axes' values (the last axis varies fastest): a full grid.
  [[nodiscard]] static search_space grid(const std::vector<std::pair<std::string, std::vector<double>>>& axes) {
    if (axes.empty()) throw std::invalid_argument("frugal::search_space::grid: axes must not be empty");
    std::vector<configuration> list(1);
    for (const auto& [name, values] : axes) {
      if (values.empty())
        throw std::invalid_argument("frugal::search_space::grid: axis " + name + " must have values, got none");
      std::vector<configuration> next;
      for (const configuration& c : list)
        for (double v : values) next.push_back(configuration(c).set(name, v));
      list = std::move(next);
    }
    return of(std::move(list));
  }

  /// Sampler ranges. A space is a list or a sampler, never both.
  search_space& uniform(std::string name, double low, double high) {
    check_range("uniform", name, low, high);
    return add_range(std::move(name), range::uniform, low, high, {});
  }
  /// Uniform in log(value): learning rates, weight decays. Needs 0 < low.
  search_space& log_uniform(std::string name, double low, double high) {
    check_range("log_uniform", name, low, high);
    if (!(low > 0))
      throw std::invalid_argument("frugal::search_space::log_uniform: " + name + " low must be > 0, got " +
                                  detail::units_impl::shortest(low));
    return add_range(std::move(name), range::log_uniform, low, high, {});
  }
  /// One of the values, each equally likely.
  search_space& choice(std::string name, std::vector<double> values) {
    if (name.empty()) throw std::invalid_argument("frugal::search_space::choice: name must not be empty, got ''");
    if (values.empty()) throw std::invalid_argument("frugal::search_space::choice: " + name + " must have values, got none");
    for (double v : values)
      if (!std::isfinite(v))
        throw std::invalid_argument("frugal::search_space::choice: " + name + " values must be finite, got " +
                                    detail::units_impl::shortest(v));
    return add_range(std::move(name), range::choice, 0, 0, std::move(values));
  }

  /// Whether the space is a finite list of configurations (a grid or list) rather than a sampler.
  [[nodiscard]] bool finite() const noexcept { return finite_; }
  /// Whether the space has no configuration (a list) or no range (a sampler).
  [[nodiscard]] bool empty() const noexcept { return finite_ ? list_.empty() : ranges_.empty(); }
  /// Configurations in a finite space (0 for a sampler).
  [[nodiscard]] std::size_t size() const noexcept { return finite_ ? list_.size() : 0; }
  /// A finite space's configurations, in order (empty for a sampler).
  [[nodiscard]] const std::vector<configuration>& configurations() const noexcept { return list_; }

  /// One draw from a sampler.
  [[nodiscard]] configuration sample(std::mt19937_64& rng) const {
    configuration c;
    for (const range& r : ranges_) {
      std::uniform_real_distribution<double> unit(0.0, 1.0);
      switch (r.kind) {
        case range::uniform: c.set(r.name, r.low + (r.high - r.low) * unit(rng)); break;
        case range::log_uniform:
          c.set(r.name, std::exp(std::log(r.low) + (std::log(r.high) - std::log(r.low)) * unit(rng)));
          break;
        case range::choice: {
          std::uniform_int_distribution<std::size_t> pick(0, r.values.size() - 1);
          c.set(r.name, r.values[pick(rng)]);
          break;
        }
      }
    }
    return c;
  }

 private:
  struct range {
    enum kind_t { uniform, log_uniform, choice } kind;
    std::string name;
    double low, high;
    std::vector<double> values;
  };

  static void check_range(const char* what, const std::string& name, double low, double high) {
    const std::string where = std::string("frugal::search_space::") + what + ": ";
    if (name.empty()) throw std::invalid_argument(where + "name must not be empty, got ''");
    if (!std::isfinite(low))
      throw std::invalid_argument(where + name + " low must be finite, got " + detail::units_impl::shortest(low));
    if (!(std::isfinite(high) && high >= low))
      throw std::invalid_argument(where + name + " high must be finite and >= low (" +
                                  detail::units_impl::shortest(low) + "), got " + detail::units_impl::shortest(high));
  }
  search_space& add_range(std::string name, range::kind_t kind, double low, double high, std::vector<double> values) {
    if (finite_) throw std::invalid_argument("frugal::search_space: " + name + ": a list or grid space takes no ranges");
    for (const range& r : ranges_)
      if (r.name == name) throw std::invalid_argument("frugal::search_space: parameter " + name + " given twice");
    ranges_.push_back(range{kind, std::move(name), low, high, std::move(values)});
    return *this;
  }

  bool finite_ = false;
  std::vector<configuration> list_;
  std::vector<range> ranges_;
};

// ---------------------------------------------------------------------------------------------
// The plan: the papers' formulas, in units of the least resource a trial gets
// ---------------------------------------------------------------------------------------------

/// How the search allocates the resource: successive halving (Jamieson and Talwalkar 2016),
/// Hyperband (Li et al., JMLR 2018) or random search.
enum class search_method : unsigned char {
  successive_halving,  ///< one bracket: n configurations, the top 1/eta promoted at each rung
  hyperband,           ///< brackets s = s_max..0 of successive halving, from most to least exploratory
  random,              ///< n configurations, each given Hyperband's largest resource R (the baseline)
};

/// The method's enumerator name; "unknown" for an out-of-range value.
[[nodiscard]] constexpr std::string_view to_string(search_method m) noexcept {
  switch (m) {
    case search_method::successive_halving: return "successive_halving";
    case search_method::hyperband: return "hyperband";
    case search_method::random: return "random";
  }
  return "unknown";
}

/// A rung: how many trials run in it and the resource each has had by its end (cumulative: a
/// promoted trial resumes, so the rung costs trials * (resource - the previous rung's)).
struct rung_plan {
  /// Trials that run in the rung.
  std::size_t trials = 0;
  /// The resource each has had by the rung's end, cumulative, in units of search_plan::unit.
  double resource = 0;
};

/// One bracket of successive halving: its rungs, from most trials and least resource to fewest and
/// most.
struct bracket_plan {
  std::size_t s = 0;  ///< Hyperband's bracket index (its rungs: s + 1); successive halving: rungs - 1
  /// Its rungs, first to last.
  std::vector<rung_plan> rungs;
};

/// Rungs' resources are in units of `unit`, the least resource a trial gets; the search fits
/// `unit` to the parent budget (search::plan()).
struct search_plan {
  /// The method planned.
  search_method method = search_method::hyperband;
  /// The reduction factor: each rung keeps the top 1/eta.
  std::size_t eta = 3;
  /// The brackets, most exploratory first (Hyperband s = s_max..0); one for successive halving and
  /// random search.
  std::vector<bracket_plan> brackets;
  /// The least resource a trial gets, in the search resource's unit.
  double unit = 1;

  /// Configurations the plan draws (every bracket's first rung).
  [[nodiscard]] std::size_t trials() const noexcept {
    std::size_t n = 0;
    for (const auto& b : brackets) n += b.rungs.empty() ? 0 : b.rungs.front().trials;
    return n;
  }
  /// What the plan spends, in the resource's unit (unit included). Trials resume when promoted,
  /// so a rung costs only the increment. A resource that is a union over threads (wall time)
  /// with `concurrency` trials at once costs ceil(trials / concurrency) increments per rung;
  /// an additive one (samples, FLOPs, CPU) every trial's.
  [[nodiscard]] double cost(std::size_t concurrency = 1, bool union_over_threads = false) const noexcept {
    const std::size_t p = std::max<std::size_t>(1, concurrency);
    double total = 0;
    for (const auto& b : brackets) {
      double previous = 0;
      for (const auto& r : b.rungs) {
        const std::size_t count = union_over_threads ? (r.trials + p - 1) / p : r.trials;
        total += static_cast<double>(count) * (r.resource - previous);
        previous = r.resource;
      }
    }
    return total * unit;
  }
};

namespace detail {
// eta^k, exactly, in integers (the plans count configurations with it).
[[nodiscard]] inline std::size_t ipow(std::size_t eta, std::size_t k) noexcept {
  std::size_t p = 1;
  while (k-- > 0) p *= eta;
  return p;
}
// The largest s with eta^s <= x (x >= 1): floor(log_eta x) without a floating log's rounding.
[[nodiscard]] inline std::size_t floor_log(double x, std::size_t eta) noexcept {
  std::size_t s = 0;
  double p = static_cast<double>(eta);
  while (p <= x * (1 + 1e-12)) {
    ++s;
    p *= static_cast<double>(eta);
  }
  return s;
}
inline void check_eta(std::size_t eta, const char* where) {
  if (eta < 2) throw std::invalid_argument(std::string(where) + ": eta must be >= 2, got " + std::to_string(eta));
}
}  // namespace detail

/// Hyperband (Li et al. 2018, Algorithm 1) with R the largest resource in units of the least
/// (R >= 1): s_max = floor(log_eta R); bracket s = s_max..0 starts n = ceil((s_max+1) eta^s /
/// (s+1)) configurations at r = R eta^-s, and rung i keeps n_i = floor(n eta^-i) at r_i = r eta^i.
/// For R = 81, eta = 3 this is the paper's Table 1.
[[nodiscard]] inline search_plan hyperband_plan(double R, std::size_t eta) {
  detail::check_eta(eta, "frugal::hyperband_plan");
  if (!(std::isfinite(R) && R >= 1))
    throw std::invalid_argument("frugal::hyperband_plan: R must be finite and >= 1, got " + detail::units_impl::shortest(R));
  search_plan p;
  p.method = search_method::hyperband;
  p.eta = eta;
  const std::size_t s_max = detail::floor_log(R, eta);
  for (std::size_t s = s_max + 1; s-- > 0;) {
    bracket_plan b;
    b.s = s;
    const std::size_t scaled = (s_max + 1) * detail::ipow(eta, s);
    const std::size_t n = (scaled + s) / (s + 1);  // ceil(scaled / (s + 1))
    const double r = R / static_cast<double>(detail::ipow(eta, s));
    for (std::size_t i = 0; i <= s; ++i)
      b.rungs.push_back(rung_plan{n / detail::ipow(eta, i), r * static_cast<double>(detail::ipow(eta, i))});
    p.brackets.push_back(std::move(b));
  }
  return p;
}

/// Successive halving over n configurations: rung i keeps n_i = floor(n eta^-i) at r_i = eta^i,
/// for i = 0..s with s = floor(log_eta n) (the last rung keeps at least one), or fewer rungs
/// when max_rungs says so. Each rung costs about n (the budget split evenly over the rungs, as
/// in Jamieson and Talwalkar's Algorithm 1).
[[nodiscard]] inline search_plan successive_halving_plan(std::size_t n, std::size_t eta, std::size_t max_rungs = 0) {
  detail::check_eta(eta, "frugal::successive_halving_plan");
  if (n == 0) throw std::invalid_argument("frugal::successive_halving_plan: n must be >= 1, got 0");
  search_plan p;
  p.method = search_method::successive_halving;
  p.eta = eta;
  std::size_t rungs = detail::floor_log(static_cast<double>(n), eta) + 1;
  if (max_rungs > 0) rungs = std::min(rungs, max_rungs);
  bracket_plan b;
  b.s = rungs - 1;
  for (std::size_t i = 0; i < rungs; ++i)
    b.rungs.push_back(rung_plan{n / detail::ipow(eta, i), static_cast<double>(detail::ipow(eta, i))});
  p.brackets.push_back(std::move(b));
  return p;
}

/// Random search: n configurations, each given R.
[[nodiscard]] inline search_plan random_plan(std::size_t n, double R) {
  if (n == 0) throw std::invalid_argument("frugal::random_plan: n must be >= 1, got 0");
  if (!(std::isfinite(R) && R > 0))
    throw std::invalid_argument("frugal::random_plan: R must be finite and > 0, got " + detail::units_impl::shortest(R));
  search_plan p;
  p.method = search_method::random;
  p.brackets.push_back(bracket_plan{0, {rung_plan{n, R}}});
  return p;
}

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/// How a search spends its budget. Fluent:
///   frugal::search_options{}.method(frugal::search_method::hyperband).eta(3).resource("samples")
///       .metric("val_accuracy", frugal::metric_mode::max).trial_controller(ctl_options)
class search_options {
 public:
  /// The method (default hyperband).
  search_options& method(search_method m) noexcept {
    method_ = m;
    return *this;
  }
  /// The reduction factor: each rung keeps the top 1/eta and gives them eta times the resource.
  search_options& eta(std::size_t e) {
    if (e < 2) fail("eta", ">= 2", std::to_string(e));
    eta_ = e;
    return *this;
  }
  /// What a trial's resource is: a consumable the parent budget limits (samples, FLOPs, wall,
  /// ...). Without it, the one consumable the parent limits (an error if it limits several).
  search_options& resource(frugal::resource r) {
    if (!is_consumable(r)) fail("resource", "a consumable (not the level " + std::string(to_string(r)) + ")", std::string(to_string(r)));
    resource_ = std::string(to_string(r));
    return *this;
  }
  /// The search resource by name: a builtin consumable ("flops", "wall", ...) or a user unit
  /// ("samples"); throws std::invalid_argument for a level, an empty or invalid name.
  search_options& resource(std::string name) {
    if (name.empty()) fail("resource", "a resource or unit name", "''");
    if (const auto r = resource_from_name(name)) return resource(*r);
    if (auto problem = detail::units_impl::unit_name_problem(name)) fail("resource", "a valid unit name (" + *problem + ")", "'" + name + "'");
    resource_ = std::move(name);
    return *this;
  }
  /// Rungs of the most exploratory bracket, k: the largest resource is eta^(k-1) times the least.
  /// Default: enough to start that bracket with about the space's size (floor(log_eta size) + 1),
  /// or 4 for a sampler.
  search_options& rungs(std::size_t k) {
    if (k == 0) fail("rungs", ">= 1", "0");
    rungs_ = k;
    return *this;
  }
  /// Successive halving's n (default: the space's size, or eta^(rungs-1) for a sampler); random
  /// search's count is what the budget holds at Hyperband's R.
  search_options& configurations(std::size_t n) {
    if (n == 0) fail("configurations", ">= 1", "0");
    configurations_ = n;
    return *this;
  }
  /// The least resource a trial may be given (in the resource's unit): a trial below it says
  /// nothing (one step, no evaluation). When the budget would give less, the plan shrinks --
  /// fewer brackets (Hyperband), fewer configurations (successive halving, random) -- instead.
  search_options& min_resource(double r) {
    if (!(std::isfinite(r) && r > 0)) fail("min_resource", "finite and > 0", detail::units_impl::shortest(r));
    min_resource_ = r;
    return *this;
  }
  /// The metric that ranks trials: a name the trial reports at end_epoch, and whether larger
  /// (max) or smaller (min) is better.
  search_options& metric(std::string name, metric_mode mode = metric_mode::max) {
    if (name.empty()) fail("metric", "a metric name", "''");
    metric_ = std::move(name);
    mode_ = mode;
    return *this;
  }
  /// The options of each trial's controller (the same for all, or made from the configuration:
  /// a batch-size knob at the trial's batch size).
  search_options& trial_controller(controller_options o) {
    controller_ = [o = std::move(o)](const configuration&) { return o; };
    return *this;
  }
  /// The options of each trial's controller, made from its configuration; throws
  /// std::invalid_argument for an empty function.
  search_options& trial_controller(std::function<controller_options(const configuration&)> make) {
    if (!make) fail("trial_controller", "callable", "an empty std::function");
    controller_ = std::move(make);
    return *this;
  }
  /// A share of the parent's budget kept out of the search for the work after it (saving the
  /// best model, a final test): the plan and every trial leave it untouched.
  search_options& reserve(double fraction) {
    if (!(fraction >= 0 && fraction < 1)) fail("reserve", "in [0, 1)", detail::units_impl::shortest(fraction));
    reserve_ = fraction;
    return *this;
  }
  /// Trials run at once (run_parallel in <frugal/search_tbb.hpp>, or an executor): a wall-time
  /// plan counts rungs in waves of this many.
  search_options& concurrency(std::size_t n) {
    if (n == 0) fail("concurrency", ">= 1", "0");
    concurrency_ = n;
    return *this;
  }
  /// The seed of the generator that draws configurations (default 1): the same seed draws the same
  /// trials.
  search_options& seed(std::uint64_t s) noexcept {
    seed_ = s;
    return *this;
  }
  /// The child budget that holds the trials (`parent/<name>/trial-0001`, ...).
  search_options& name(std::string n) {
    if (n.empty()) fail("name", "a budget name", "''");
    name_ = std::move(n);
    return *this;
  }

  /// The method.
  [[nodiscard]] search_method method() const noexcept { return method_; }
  /// The reduction factor (default 3).
  [[nodiscard]] std::size_t eta() const noexcept { return eta_; }
  /// The search resource's name; empty: chosen from the parent's limits.
  [[nodiscard]] const std::string& resource() const noexcept { return resource_; }
  /// Rungs of the most exploratory bracket; 0: the default.
  [[nodiscard]] std::size_t rungs() const noexcept { return rungs_; }
  /// Successive halving's n; 0: the default.
  [[nodiscard]] std::size_t configurations() const noexcept { return configurations_; }
  /// The least resource a trial may be given, in the resource's unit; none when not set.
  [[nodiscard]] std::optional<double> min_resource() const noexcept { return min_resource_; }
  /// The metric that ranks trials; empty until set.
  [[nodiscard]] const std::string& metric() const noexcept { return metric_; }
  /// Whether larger (max, the default) or smaller is better.
  [[nodiscard]] metric_mode mode() const noexcept { return mode_; }
  /// The share of the parent's budget kept out of the search, in [0, 1).
  [[nodiscard]] double reserve() const noexcept { return reserve_; }
  /// Trials run at once (default 1).
  [[nodiscard]] std::size_t concurrency() const noexcept { return concurrency_; }
  /// The seed (default 1).
  [[nodiscard]] std::uint64_t seed() const noexcept { return seed_; }
  /// The child budget's name (default "search").
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  /// The controller options for a trial of configuration `c` (default options when none were
  /// given).
  [[nodiscard]] controller_options controller_for(const configuration& c) const {
    return controller_ ? controller_(c) : controller_options{};
  }

 private:
  [[noreturn]] static void fail(const std::string& field, const std::string& rule, const std::string& got) {
    throw std::invalid_argument("frugal::search_options: " + field + " must be " + rule + ", got " + got);
  }

  search_method method_ = search_method::hyperband;
  std::size_t eta_ = 3;
  std::string resource_;
  std::size_t rungs_ = 0;
  std::size_t configurations_ = 0;
  std::optional<double> min_resource_;
  std::string metric_;
  metric_mode mode_ = metric_mode::max;
  std::function<controller_options(const configuration&)> controller_;
  double reserve_ = 0;
  std::size_t concurrency_ = 1;
  std::uint64_t seed_ = 1;
  std::string name_ = "search";
};

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

/// One trial's part in one rung.
struct trial_rung_record {
  /// The rung's index in its bracket (0: the first).
  std::size_t rung = 0;
  double target = 0;   ///< the resource the trial was to have by the rung's end (cumulative)
  double used = 0;     ///< what it had (the search resource, read from its budget)
  double wall = 0;     ///< its budget's wall time by the rung's end
  std::optional<double> metric;  ///< the last value reported in this rung (else carried, below)
  bool metric_carried = false;   ///< none reported in this rung: the trial's earlier value stands
  std::string stop;              ///< its controller's stop message
};

/// One trial: its configuration, its budget and its part in each rung it ran.
struct trial_record {
  std::size_t id = 0;       ///< 1, 2, ... in the order drawn
  std::size_t bracket = 0;  ///< index in search_plan::brackets
  /// The configuration it trained.
  configuration config;
  std::optional<std::size_t> space_index;  ///< in a finite space's list
  /// Its child budget's path (`parent/<name>/trial-0001`).
  std::string budget_path;
  /// The rungs it ran, in order.
  std::vector<trial_rung_record> rungs;
  std::string error;  ///< what the trial function threw (the trial then ranks last)
  /// The latest rung's metric: what the model held in the trial's state scored.
  [[nodiscard]] std::optional<double> metric() const noexcept {
    return rungs.empty() ? std::nullopt : rungs.back().metric;
  }
};

/// One rung of one bracket as it ran.
struct rung_record {
  /// Index in search_plan::brackets.
  std::size_t bracket = 0;
  /// Index in the bracket's rungs.
  std::size_t rung = 0;
  std::size_t planned = 0;   ///< trials the plan put in it
  std::size_t run = 0;       ///< trials that ran (fewer when the budget ran out)
  double resource = 0;       ///< the target resource of each trial (cumulative)
  std::size_t promoted = 0;  ///< trials sent on to the next rung
  /// The best metric in the rung; none when no trial reported one.
  std::optional<double> best;
  std::vector<std::size_t> trials;  ///< ids, in the order of the ranking (best first)
};

/// What a search did: its settings, plan, trials and rungs, and the best trial.
struct search_result {
  /// The method.
  search_method method = search_method::hyperband;
  /// The reduction factor.
  std::size_t eta = 3;
  /// The search resource (a builtin consumable or user unit).
  std::string resource;
  /// The metric that ranked the trials.
  std::string metric;
  /// Whether larger (max) or smaller (min) was better.
  metric_mode mode = metric_mode::max;
  /// Trials run at once.
  std::size_t concurrency = 1;
  /// The plan, fitted to capacity.
  search_plan plan;
  double capacity = 0;       ///< the search resource the plan was fitted to
  double used = 0;           ///< what the search used of it (the parent's figure, after - before)
  double parent_limit = 0;   ///< the parent's limit on it
  double parent_used = 0;    ///< the parent's use of it at the end
  bool completed = false;    ///< every planned rung ran
  std::string stop;          ///< why it ended, in words
  /// Every trial, in the order drawn.
  std::vector<trial_record> trials;
  /// Every rung that ran, in order.
  std::vector<rung_record> rungs;
  std::optional<std::size_t> best;  ///< index into trials

  /// The best trial; nullptr when none reported the metric.
  [[nodiscard]] const trial_record* best_trial() const noexcept { return best ? &trials[*best] : nullptr; }
};

// ---------------------------------------------------------------------------------------------
// The trial a trial function runs
// ---------------------------------------------------------------------------------------------

class search;

namespace detail {
struct trial_slot {
  std::size_t index = 0;  // in search_result::trials
  budget* child = nullptr;
  std::unique_ptr<frugal::controller> ctl;
  std::shared_ptr<void> state;
  std::optional<std::type_index> state_type;
  bool active = true;  // may still run (not eliminated)
};
}  // namespace detail

/// What the trial function gets: its configuration, its child budget (limited to this rung's
/// resource and to what the parent has left), a controller on that budget (the same one in every
/// rung: a promoted trial's forecasts, epochs and early stopping continue), and a state slot
/// that survives between rungs, so a promoted trial resumes where it stopped.
class trial {
 public:
  /// The configuration the trial trains.
  [[nodiscard]] const configuration& config() const noexcept { return *config_; }
  /// The trial's id: 1, 2, ... in the order drawn.
  [[nodiscard]] std::size_t id() const noexcept { return id_; }
  /// Index in search_plan::brackets.
  [[nodiscard]] std::size_t bracket() const noexcept { return bracket_; }
  /// The rung it runs in (0: the first).
  [[nodiscard]] std::size_t rung() const noexcept { return rung_; }
  /// Whether this is a promoted trial continuing (rung > 0).
  [[nodiscard]] bool resumed() const noexcept { return rung_ > 0; }
  /// The search resource the trial should have by this rung's end (its budget's limit on it).
  [[nodiscard]] double target() const noexcept { return target_; }
  /// Its child budget, limited to this rung's target and to what the parent has left.
  [[nodiscard]] frugal::budget& budget() const noexcept { return *slot_->child; }
  /// Its controller, the same in every rung; drive it with end_step and end_epoch.
  [[nodiscard]] frugal::controller& controller() const noexcept { return *slot_->ctl; }

  /// The trial's state (a model, its optimizer, the data order), made from args on first use and
  /// kept while the trial may be promoted (and, for the best trial, after the search). Asking for
  /// another type than the first time is std::logic_error.
  template <class T, class... Args>
  T& state(Args&&... args) {
    if (!slot_->state) {
      slot_->state = std::make_shared<T>(std::forward<Args>(args)...);
      slot_->state_type = std::type_index(typeid(T));
    } else if (*slot_->state_type != std::type_index(typeid(T))) {
      throw std::logic_error("frugal::trial::state: trial " + std::to_string(id_) + " holds a " +
                             slot_->state_type->name() + ", not a " + typeid(T).name());
    }
    return *static_cast<T*>(slot_->state.get());
  }
  /// Whether state() has made the trial's state.
  [[nodiscard]] bool has_state() const noexcept { return static_cast<bool>(slot_->state); }

 private:
  friend class search;
  trial(detail::trial_slot& slot, const configuration& c, std::size_t id, std::size_t bracket, std::size_t rung, double target)
      : slot_(&slot), config_(&c), id_(id), bracket_(bracket), rung_(rung), target_(target) {}
  detail::trial_slot* slot_;
  const configuration* config_;
  std::size_t id_, bracket_, rung_;
  double target_;
};

/// Runs task(0) .. task(count - 1), returning when all have: in order on the calling thread
/// (search::run), on oneTBB workers (run_parallel), or any other way. Tasks do not throw.
using trial_executor = std::function<void(std::size_t count, const std::function<void(std::size_t)>& task)>;

// ---------------------------------------------------------------------------------------------
// The search
// ---------------------------------------------------------------------------------------------

/// Spends one parent budget on many configurations. The plan (search_plan) comes from the
/// papers' formulas in units of the least resource a trial gets; the unit is fitted so the whole
/// plan costs what the parent has left of the search resource (less the reserve), so a search
/// inside 2B gives every trial twice the resource of one inside B.
///
/// Staying inside. Every trial runs in its own child budget (`parent/<name>/trial-0001`), whose
/// limits are set before each rung: the search resource at the rung's target, every other
/// consumable the parent limits at what the parent has left (less what trials running at once
/// have reserved), the parent's levels as they are. A trial starts only if the parent can give it
/// its whole increment; otherwise the search stops there (a decision: search_result::stop), so
/// rankings compare trials given equal resources. The trial's controller stops it before a step
/// would cross its budget, so the parent is crossed only when a step costs more than its forecast,
/// and then by less than one step per trial running at once -- with trials in sequence, the
/// bound of a single run. (A controller forecasts from the second step; the first step of a
/// trial in a tiny rung is not forecast: give min_resource at least a step.)
///
/// Charging. The search opens a scope on `parent/<name>` around the whole run, and one on each
/// trial's budget (stage "trial") around each call of the trial function, on whichever thread
/// runs it: everything the trial does on that thread, and on the threads its frugal::parallel_for
/// attaches, is charged to its budget and to no other trial's.
class search {
 public:
  /// What run() calls once per trial and rung: trains the trial until its controller stops it.
  using trial_function = std::function<void(trial&)>;

  /// Checks the options against the parent and fits the plan to what the parent has left. Bad
  /// input is std::invalid_argument naming the field and value: an empty space, a resource the
  /// parent does not limit, no metric, a sampler without a size where successive halving needs
  /// one. A parent with nothing left is not an error: the search then runs nothing.
  search(budget& parent, search_space space, search_options options)
      : parent_(&parent), space_(std::move(space)), options_(std::move(options)), rng_(options_.seed()) {
    if (space_.empty()) throw std::invalid_argument("frugal::search: space must not be empty, got an empty space");
    if (options_.metric().empty()) throw std::invalid_argument("frugal::search: options.metric must be given, got ''");
    choose_resource();
    const double limit = limit_of(*parent_, resource_);
    const double used = used_of(*parent_, resource_);
    capacity_ = std::max(0.0, limit - used) * (1 - options_.reserve());
    fit_plan();
  }

  search(const search&) = delete;
  search& operator=(const search&) = delete;

  /// The plan, fitted to capacity().
  [[nodiscard]] const search_plan& plan() const noexcept { return plan_; }
  /// The options as given.
  [[nodiscard]] const search_options& options() const noexcept { return options_; }
  /// The search resource (the one given, or the one consumable the parent limits).
  [[nodiscard]] const std::string& resource() const noexcept { return resource_; }
  /// What the plan was fitted to: the parent's limit - used of the resource, less the reserve, when
  /// the search was made.
  [[nodiscard]] double capacity() const noexcept { return capacity_; }
  /// What the search has done so far (all of it after run()).
  [[nodiscard]] const search_result& result() const noexcept { return result_; }

  /// Runs the plan with the trials of each rung one after the other on this thread.
  const search_result& run(const trial_function& f) {
    return run(f, [](std::size_t n, const std::function<void(std::size_t)>& task) {
      for (std::size_t i = 0; i < n; ++i) task(i);
    });
  }

  /// Runs the plan, each rung's trials through `execute` (they may run at once, on any threads).
  /// Rungs are synchronous: a rung is ranked when all its trials have returned.
  const search_result& run(const trial_function& f, const trial_executor& execute) {
    if (!f) throw std::invalid_argument("frugal::search::run: the trial function must not be empty");
    if (!execute) throw std::invalid_argument("frugal::search::run: the executor must not be empty");
    if (ran_) throw std::logic_error("frugal::search::run: a search runs once");
    ran_ = true;
    holder_ = &parent_->child(options_.name());
    start_used_ = snapshot_consumables();
    result_.method = plan_.method;
    result_.eta = plan_.eta;
    result_.resource = resource_;
    result_.metric = options_.metric();
    result_.mode = options_.mode();
    result_.concurrency = options_.concurrency();
    result_.plan = plan_;
    result_.capacity = capacity_;
    result_.parent_limit = limit_of(*parent_, resource_);
    const double used_before = used_of(*parent_, resource_);
    {
      frugal::scope whole{*holder_, "search"};
      const context ctx = current_context();
      if (capacity_ <= 0 || plan_.brackets.empty()) {
        stop("budget: nothing left of " + resource_ + " for the search");
      }
      for (std::size_t b = 0; b < plan_.brackets.size() && !stopped_; ++b) run_bracket(b, f, execute, ctx);
    }
    result_.used = used_of(*parent_, resource_) - used_before;
    result_.parent_used = used_of(*parent_, resource_);
    if (!stopped_) {
      result_.completed = true;
      result_.stop = "done: every planned rung ran";
    }
    // Only the best trial's state outlives the search.
    for (auto& s : slots_)
      if (!result_.best || s->index != *result_.best) s->state.reset();
    return result_;
  }

  /// The best trial's state (the model that scored its metric), or null: none, or another type.
  template <class T>
  [[nodiscard]] T* best_state() const noexcept {
    if (!result_.best) return nullptr;
    const auto& s = *slots_[*result_.best];
    if (!s.state || *s.state_type != std::type_index(typeid(T))) return nullptr;
    return static_cast<T*>(s.state.get());
  }

 private:
  /// A resource named by the options: a builtin or a user unit.
  [[nodiscard]] static double limit_of(const budget& b, const std::string& name) {
    if (const auto r = resource_from_name(name)) return b.limit(*r);
    return b.limit(std::string_view(name));
  }
  [[nodiscard]] static double used_of(const budget& b, const std::string& name) {
    if (const auto r = resource_from_name(name)) return b.used(*r);
    return b.used(std::string_view(name));
  }
  /// Wall time is a union over threads, and energy the machine's over a time: trials at once
  /// share them rather than add to them.
  [[nodiscard]] static bool union_over_threads(const std::string& name) {
    return name == to_string(resource::wall) || name == to_string(resource::energy);
  }
  /// Limits on FLOPs, allocations and bytes are whole numbers (limits::set refuses fractions).
  [[nodiscard]] static bool whole(const std::string& name) {
    const auto r = resource_from_name(name);
    return r && is_whole_quantity(*r);
  }
  [[nodiscard]] static double rounded(const std::string& name, double v) { return whole(name) ? std::floor(v) : v; }

  /// The consumables the parent limits, by name.
  [[nodiscard]] std::vector<std::string> limited_consumables() const {
    std::vector<std::string> out;
    const frugal::limits l = parent_->limits();
    for (frugal::resource r : all_resources)
      if (is_consumable(r) && l.has(r)) out.emplace_back(to_string(r));
    for (const auto& u : l.unit_limits()) out.push_back(u.first);
    return out;
  }

  void choose_resource() {
    const std::vector<std::string> limited = limited_consumables();
    if (options_.resource().empty()) {
      if (limited.size() != 1) {
        std::string names;
        for (const auto& n : limited) names += (names.empty() ? "" : ", ") + n;
        throw std::invalid_argument("frugal::search: options.resource must be given when the parent budget '" +
                                    parent_->path() + "' limits " + std::to_string(limited.size()) +
                                    " consumables, got none (it limits: " + (names.empty() ? "none" : names) + ")");
      }
      resource_ = limited.front();
    } else {
      resource_ = options_.resource();
      if (std::find(limited.begin(), limited.end(), resource_) == limited.end())
        throw std::invalid_argument("frugal::search: options.resource must be a consumable the parent budget '" +
                                    parent_->path() + "' limits, got '" + resource_ + "'");
    }
  }

  /// The plan of a method at k rungs in units (unit 1), the brackets' first rungs capped by a
  /// finite space's size (a bracket draws distinct configurations).
  [[nodiscard]] static search_plan base_plan(search_method method, std::size_t eta, const search_space& space,
                                             std::size_t k, std::size_t n_sh) {
    search_plan p;
    switch (method) {
      case search_method::hyperband: p = hyperband_plan(static_cast<double>(detail::ipow(eta, k - 1)), eta); break;
      case search_method::successive_halving: p = successive_halving_plan(n_sh, eta, k); break;
      case search_method::random: p = random_plan(1, static_cast<double>(detail::ipow(eta, k - 1))); break;
    }
    if (space.finite())
      for (auto& b : p.brackets) {
        const std::size_t n0 = std::min(b.rungs.front().trials, space.size());
        for (std::size_t i = 0; i < b.rungs.size(); ++i)
          b.rungs[i].trials = std::max<std::size_t>(1, n0 / detail::ipow(eta, i));
      }
    return p;
  }

  [[nodiscard]] std::size_t default_rungs() const {
    if (options_.rungs() > 0) return options_.rungs();
    const std::size_t n = space_.finite() ? space_.size() : options_.configurations();
    if (n == 0) return 4;
    return detail::floor_log(static_cast<double>(n), options_.eta()) + 1;
  }

  /// Fits the plan's unit to the capacity; shrinks the plan when the unit would fall below
  /// min_resource (fewer brackets or configurations), and only then lets the unit stand at
  /// min_resource, leaving the budget to cut the plan short.
  void fit_plan() {
    const std::size_t p = options_.concurrency();
    const bool u = union_over_threads(resource_);
    const double floor_unit = options_.min_resource().value_or(0);
    std::size_t k = default_rungs();
    const std::size_t eta = options_.eta();
    std::size_t n = options_.configurations();
    if (n == 0) n = space_.finite() ? space_.size() : detail::ipow(eta, k - 1);
    if (space_.finite()) n = std::min(n, space_.size());
    if (options_.method() == search_method::random) {
      // Random search gives each configuration the R Hyperband would, at the same options.
      const search_plan h = base_plan(search_method::hyperband, eta, space_, k, n);
      double unit = capacity_ / h.cost(p, u);
      if (floor_unit > 0) unit = std::max(unit, floor_unit);
      const double R = unit * static_cast<double>(detail::ipow(eta, k - 1));
      const double waves = capacity_ > 0 ? std::floor(capacity_ / R * (1 + 1e-12)) : 0;
      std::size_t count = static_cast<std::size_t>(std::max(1.0, waves)) * (u ? p : 1);
      if (space_.finite()) count = std::min(count, space_.size());
      plan_ = random_plan(count, static_cast<double>(detail::ipow(eta, k - 1)));
      plan_.unit = unit;
      return;
    }
    for (;;) {
      plan_ = base_plan(options_.method(), eta, space_, k, n);
      const double cost = plan_.cost(p, u);
      plan_.unit = cost > 0 ? capacity_ / cost : 0;
      if (floor_unit <= 0 || plan_.unit >= floor_unit) return;
      // Too little for the least resource: a smaller plan.
      if (options_.method() == search_method::hyperband && k > 1) {
        --k;
        continue;
      }
      if (options_.method() == search_method::successive_halving && n > 1) {
        --n;
        continue;
      }
      plan_.unit = floor_unit;
      return;
    }
  }
  // --- drawing configurations ---

  /// A finite space: a shuffled order, reshuffled when used up; distinct within a bracket.
  std::vector<std::pair<configuration, std::optional<std::size_t>>> draw(std::size_t n) {
    std::vector<std::pair<configuration, std::optional<std::size_t>>> out;
    if (!space_.finite()) {
      for (std::size_t i = 0; i < n; ++i) out.emplace_back(space_.sample(rng_), std::nullopt);
      return out;
    }
    std::vector<bool> taken(space_.size(), false);
    while (out.size() < n) {
      if (order_at_ >= order_.size()) {
        order_.resize(space_.size());
        std::iota(order_.begin(), order_.end(), std::size_t{0});
        std::shuffle(order_.begin(), order_.end(), rng_);
        order_at_ = 0;
      }
      const std::size_t i = order_[order_at_++];
      if (taken[i]) continue;
      taken[i] = true;
      out.emplace_back(space_.configurations()[i], i);
    }
    return out;
  }

  // --- running ---

  void stop(std::string why) {
    if (stopped_) return;
    stopped_ = true;
    result_.stop = std::move(why);
  }

  [[nodiscard]] std::vector<std::pair<std::string, double>> snapshot_consumables() const {
    std::vector<std::pair<std::string, double>> out;
    for (const std::string& n : limited_consumables()) out.emplace_back(n, used_of(*parent_, n));
    return out;
  }

  /// What the parent has for one more trial of `name`, keeping the reserve and what running
  /// trials have reserved of an additive resource. Under mutex_.
  [[nodiscard]] double available(const std::string& name) const {
    double start = 0;
    for (const auto& [n, v] : start_used_)
      if (n == name) start = v;
    const double limit = limit_of(*parent_, name);
    const double keep = std::max(0.0, limit - start) * options_.reserve();
    double avail = limit - keep - used_of(*parent_, name);
    if (!union_over_threads(name))
      for (const auto& r : running_)
        for (const auto& [n, amount] : r.reserved)
          if (n == name) avail -= std::max(0.0, amount - (used_of(*r.slot->child, n) - r.used_at_start_of(n)));
    return avail;
  }

  struct running_trial {
    detail::trial_slot* slot;
    std::vector<std::pair<std::string, double>> reserved;  ///< additive resources set aside
    std::vector<std::pair<std::string, double>> start;     ///< the child's use when it started
    [[nodiscard]] double used_at_start_of(const std::string& n) const {
      for (const auto& [k, v] : start)
        if (k == n) return v;
      return 0;
    }
  };

  /// Sets the child's limits for the rung and reserves them; false (and nothing set) when the
  /// parent cannot give the trial its whole increment, or has nothing left of another resource.
  bool admit(detail::trial_slot& slot, double target, std::string& why) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopped_) {
      why = result_.stop;
      return false;
    }
    budget& child = *slot.child;
    frugal::limits l;
    const frugal::limits pl = parent_->limits();
    for (frugal::resource r : all_resources)  // levels are ceilings: each trial lives under them
      if (is_level(r) && pl.has(r)) l.set(r, *pl.get(r));
    running_trial run{&slot, {}, {}};
    // This trial and those that may still start beside the running ones share what is left of
    // an additive resource other than the search's.
    const std::size_t p = options_.concurrency();
    const std::size_t free_slots = p - std::min(p - 1, running_.size());
    for (const std::string& name : limited_consumables()) {
      const double used = used_of(child, name);
      double avail = available(name);
      double limit;
      if (name == resource_) {
        const double want = target - used;
        if (want > 0 && avail + 1e-9 * std::max(1.0, target) < want) {
          why = "budget: " + resource_ + " left (" + detail::units_impl::shortest(std::max(0.0, avail)) +
                ") does not hold trial " + std::to_string(result_.trials[slot.index].id) + "'s increment (" +
                detail::units_impl::shortest(want) + ")";
          return false;
        }
        limit = rounded(name, target);
      } else {
        if (avail <= 0) {
          why = "budget: the parent budget '" + parent_->path() + "' has no " + name + " left";
          return false;
        }
        // Shared among the trials that may still start beside the running ones.
        if (!union_over_threads(name)) avail /= static_cast<double>(free_slots);
        limit = rounded(name, used + avail);
      }
      limit = std::max(limit, rounded(name, used));
      if (const auto r = resource_from_name(name))
        l.set(*r, limit);
      else
        l.units(name, limit);
      run.start.emplace_back(name, used);
      if (!union_over_threads(name)) run.reserved.emplace_back(name, limit - used);
    }
    child.set_limits(l);
    running_.push_back(std::move(run));
    return true;
  }

  void release(detail::trial_slot& slot) {
    std::lock_guard<std::mutex> lock(mutex_);
    running_.erase(std::remove_if(running_.begin(), running_.end(), [&](const running_trial& r) { return r.slot == &slot; }),
                   running_.end());
  }

  /// One trial's rung: admitted, run in its budget's scope, its metric read from its controller.
  void run_trial(detail::trial_slot& slot, std::size_t bracket, std::size_t rung, double target,
                 const trial_function& f, const context& ctx, bool& ran) {
    trial_record& rec = result_.trials[slot.index];  // this trial's record: no other task touches it
    std::string why;
    if (!admit(slot, target, why)) {
      std::lock_guard<std::mutex> lock(mutex_);
      stop(why);
      ran = false;
      return;
    }
    ran = true;
    trial_rung_record rr;
    rr.rung = rung;
    rr.target = target;
    {
      attach continued{ctx};
      frugal::scope s{*slot.child, "trial"};
      std::size_t metrics_before = 0;
      try {
        if (!slot.ctl)
          slot.ctl = std::make_unique<frugal::controller>(*slot.child, options_.controller_for(rec.config));
        else
          slot.ctl->reload_limits();
        metrics_before = slot.ctl->history().metrics.size();
        trial t(slot, rec.config, rec.id, bracket, rung, target);
        f(t);
        (void)slot.ctl->end_run();
      } catch (const std::exception& e) {
        rec.error = e.what();
      } catch (...) {
        rec.error = "an exception not derived from std::exception";
      }
      if (slot.ctl) {
        const auto& metrics = slot.ctl->history().metrics;
        for (std::size_t i = metrics_before; i < metrics.size(); ++i)
          for (const auto& [name, value] : metrics[i].metrics)
            if (name == options_.metric()) rr.metric = value;
        rr.stop = slot.ctl->stop_message();
      }
    }
    if (!rr.metric && !rec.rungs.empty() && rec.rungs.back().metric) {
      rr.metric = rec.rungs.back().metric;
      rr.metric_carried = true;
    }
    if (!rec.error.empty()) rr.metric.reset();  // a trial that failed ranks last
    rr.used = used_of(*slot.child, resource_);
    rr.wall = slot.child->used(frugal::resource::wall);
    rec.rungs.push_back(std::move(rr));
    release(slot);
  }

  /// a better than b: a value beats none, NaN is none.
  [[nodiscard]] bool better(const std::optional<double>& a, const std::optional<double>& b) const noexcept {
    const bool ha = a && !std::isnan(*a), hb = b && !std::isnan(*b);
    if (ha != hb) return ha;
    if (!ha) return false;
    return options_.mode() == metric_mode::max ? *a > *b : *a < *b;
  }

  void run_bracket(std::size_t b, const trial_function& f, const trial_executor& execute, const context& ctx) {
    const bracket_plan& bp = plan_.brackets[b];
    std::vector<detail::trial_slot*> alive;
    for (auto& [config, index] : draw(bp.rungs.front().trials)) {
      trial_record rec;
      rec.id = result_.trials.size() + 1;
      rec.bracket = b;
      rec.config = std::move(config);
      rec.space_index = index;
      std::string name = std::to_string(rec.id);
      if (name.size() < 4) name.insert(0, 4 - name.size(), '0');
      budget& child = holder_->child("trial-" + name);
      rec.budget_path = child.path();
      auto slot = std::make_unique<detail::trial_slot>();
      slot->index = result_.trials.size();
      slot->child = &child;
      result_.trials.push_back(std::move(rec));
      alive.push_back(slot.get());
      slots_.push_back(std::move(slot));
    }
    for (std::size_t i = 0; i < bp.rungs.size() && !stopped_ && !alive.empty(); ++i) {
      const double target = rounded(resource_, bp.rungs[i].resource * plan_.unit);
      std::vector<char> ran(alive.size(), 0);
      execute(alive.size(), [&](std::size_t k) {
        bool r = false;
        run_trial(*alive[k], b, i, target, f, ctx, r);
        ran[k] = r ? 1 : 0;
      });
      rung_record rr;
      rr.bracket = b;
      rr.rung = i;
      rr.planned = bp.rungs[i].trials;
      rr.resource = target;
      std::vector<detail::trial_slot*> ranked;
      for (std::size_t k = 0; k < alive.size(); ++k)
        if (ran[k]) ranked.push_back(alive[k]);
      rr.run = ranked.size();
      // Ties keep the order drawn (stable): the ranking is deterministic.
      std::stable_sort(ranked.begin(), ranked.end(), [&](const detail::trial_slot* x, const detail::trial_slot* y) {
        return better(result_.trials[x->index].metric(), result_.trials[y->index].metric());
      });
      for (const auto* s : ranked) rr.trials.push_back(result_.trials[s->index].id);
      if (!ranked.empty()) rr.best = result_.trials[ranked.front()->index].metric();
      // The top floor(n_i / eta) go on: the plan's next rung (the whole rung must have run).
      std::size_t keep = 0;
      if (!stopped_ && i + 1 < bp.rungs.size()) keep = std::min(bp.rungs[i + 1].trials, ranked.size());
      rr.promoted = keep;
      for (std::size_t k = keep; k < ranked.size(); ++k) ranked[k]->active = false;
      for (auto* s : alive)
        if (std::find(ranked.begin(), ranked.end(), s) == ranked.end()) s->active = false;
      ranked.resize(keep);
      alive = ranked;
      result_.rungs.push_back(std::move(rr));
      update_best();
    }
    for (auto* s : alive) s->active = false;
    update_best();
  }

  /// The best trial by its latest metric; the states of trials that can neither run again nor be
  /// the best are freed (a search over hundreds of models keeps a handful in memory).
  void update_best() {
    for (std::size_t i = 0; i < result_.trials.size(); ++i)
      if (better(result_.trials[i].metric(), result_.best ? result_.trials[*result_.best].metric() : std::nullopt))
        result_.best = i;
    for (auto& s : slots_)
      if (!s->active && (!result_.best || s->index != *result_.best)) {
        s->state.reset();
        s->ctl.reset();
      }
  }

  budget* parent_;
  budget* holder_ = nullptr;
  search_space space_;
  search_options options_;
  std::mt19937_64 rng_;
  std::string resource_;
  double capacity_ = 0;
  search_plan plan_;
  std::vector<std::size_t> order_;
  std::size_t order_at_ = 0;
  std::vector<std::pair<std::string, double>> start_used_;
  std::vector<std::unique_ptr<detail::trial_slot>> slots_;
  std::vector<running_trial> running_;
  std::mutex mutex_;
  bool stopped_ = false;
  bool ran_ = false;
  search_result result_;
};

}  // namespace frugal
