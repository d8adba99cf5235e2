/// @file
/// How a frugal::controller is configured: controller_options (margin, thresholds, the batch-size
/// knob, epochs and the plan, rules), user batch rules, and the pruning / quantization rules.
#pragma once

#include <frugal/early_stopping.hpp>
#include <frugal/forecast.hpp>
#include <frugal/units.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace frugal {

class controller;
namespace detail {
struct state_access;  // state.hpp: saves and restores the state of a run
}  // namespace detail

/// What a user batch rule sees: the knob, its bounds, the default rule's choice, and the
/// controller for forecasts (ctl.forecast_peak(b), ctl.forecast_step(frugal::resource::wall, b)).
struct batch_request {
  /// The batch size now (samples per step).
  std::size_t current;
  /// The smallest batch the rule may return (batch_limits).
  std::size_t min;
  /// The largest batch the rule may return (batch_limits).
  std::size_t max;
  std::size_t effective;  ///< the effective batch that accumulation keeps
  std::size_t proposed;   ///< what the default rule would do (current: nothing)
  /// The controller asking, for its forecasts.
  const controller& ctl;
};

/// Replaces the default batch rule: returns the next batch size, within [min, max]. Called at
/// every end_step while the run goes on.
using batch_rule = std::function<std::size_t(const batch_request&)>;

namespace detail {

// What pruning and quantization rules share: which resources they watch, when they fire.
template <class Derived>
class compression_rule {
 public:
  // Watch this resource (default: wall, cpu and flops, those the budget limits).
  Derived& watch(resource r) {
    watched_.emplace_back(frugal::to_string(r));
    return self();
  }
  Derived& watch(std::string unit) {
    if (unit.empty()) throw std::invalid_argument(std::string(kind()) + ": watched unit must not be empty, got ''");
    watched_.push_back(std::move(unit));
    return self();
  }
  // Fire only when at least this fraction of the planned work's cost cannot be covered.
  Derived& min_shortfall(double f) {
    if (!(f > 0 && f < 1))
      throw std::invalid_argument(std::string(kind()) + ": min_shortfall must be in (0, 1), got " +
                                  units_impl::shortest(f));
    min_shortfall_ = f;
    return self();
  }
  // Steps to wait after firing, so the cost models see the smaller model before judging again;
  // the action's effect is measured over these steps (at least one).
  Derived& cooldown_steps(std::size_t n) noexcept {
    cooldown_ = n;
    return self();
  }
  // Steps the run must have taken before the rule may fire (default 10): the first steps of a
  // run are often slow (page faults, cold caches) and an irreversible action must not follow
  // from them.
  Derived& warmup_steps(std::size_t n) noexcept {
    warmup_ = n;
    return self();
  }
  // Whether the action lowers an epoch end's cost (its evaluation) as it lowers a step's, per
  // sample (default true: a pruning's evaluations run the same, smaller layers). Once the
  // effect is measured, the epoch ends measured before the action are scaled by it only then.
  // false for an action that saves training work alone, such as freezing layers: evaluations
  // cost what they did, and scaling them would forecast an epoch end too cheap.
  Derived& scales_epoch_ends(bool yes) noexcept {
    scales_epoch_ends_ = yes;
    return self();
  }
  Derived& name(std::string n) {
    if (n.empty()) throw std::invalid_argument(std::string(kind()) + ": name must not be empty, got ''");
    name_ = std::move(n);
    return self();
  }

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const std::vector<std::string>& watched() const noexcept { return watched_; }
  [[nodiscard]] double min_shortfall() const noexcept { return min_shortfall_; }
  [[nodiscard]] std::size_t cooldown_steps() const noexcept { return cooldown_; }
  [[nodiscard]] std::size_t warmup_steps() const noexcept { return warmup_; }
  [[nodiscard]] bool scales_epoch_ends() const noexcept { return scales_epoch_ends_; }

 protected:
  explicit compression_rule(std::string n) : name_(std::move(n)) {}
  [[nodiscard]] Derived& self() noexcept { return static_cast<Derived&>(*this); }
  [[nodiscard]] static constexpr const char* kind() noexcept { return Derived::kind_name; }

  std::string name_;
  std::vector<std::string> watched_;
  double min_shortfall_ = 0.02;
  std::size_t cooldown_ = 16;
  std::size_t warmup_ = 10;
  bool scales_epoch_ends_ = true;
};

}  // namespace detail

/// Fires a prune action when the forecast cost of the planned work left exceeds what the budget
/// has left: the fraction to remove is the shortfall, 1 - remaining / forecast, capped.
class prune_rule : public detail::compression_rule<prune_rule> {
 public:
  /// The rule's name in error messages.
  static constexpr const char* kind_name = "frugal::prune_rule";
  prune_rule() : compression_rule("prune") {}
  /// The most to remove in one firing (default 0.5).
  prune_rule& max_fraction(double f) {
    if (!(f > 0 && f <= 1))
      throw std::invalid_argument(std::string(kind_name) + ": max_fraction must be in (0, 1], got " +
                                  detail::units_impl::shortest(f));
    max_fraction_ = f;
    return *this;
  }
  /// Called with the fraction when the decision (after callbacks) still prunes. Without an
  /// action the loop acts on decision::prune_fraction().
  prune_rule& action(std::function<void(double fraction)> f) {
    action_ = std::move(f);
    return *this;
  }
  /// The most to remove in one firing, in (0, 1].
  [[nodiscard]] double max_fraction() const noexcept { return max_fraction_; }

 private:
  friend class controller;
  double max_fraction_ = 0.5;
  std::function<void(double)> action_;
};

/// Fires a quantize action when the planned work cannot be covered: the new width is the widest
/// allowed one expected to remove at least the shortfall (else the one expected to remove the
/// most). By default a step's cost is taken as proportional to the bit width; a loop whose
/// quantized step saves something else (its integer products charged like float ones, say)
/// states what it expects with expected_cost(), so the rule does not count on savings that never
/// come. What the action really changed is measured over the cooldown either way.
class quantize_rule : public detail::compression_rule<quantize_rule> {
 public:
  /// The rule's name in error messages.
  static constexpr const char* kind_name = "frugal::quantize_rule";
  /// The widest width a rule takes, in bits: from_bits, widths and expected_cost are in [.., 64].
  static constexpr int max_bits = 64;
  quantize_rule() : compression_rule("quantize") {}
  /// The model's width now (default 32: float).
  quantize_rule& from_bits(int bits) {
    if (bits < 2 || bits > max_bits)
      throw std::invalid_argument(std::string(kind_name) + ": from_bits must be in [2, " + std::to_string(max_bits) +
                                  "], got " + std::to_string(bits));
    from_bits_ = bits;
    return *this;
  }
  /// The widths it may choose (default 16, 8, 4).
  quantize_rule& widths(std::vector<int> w) {
    if (w.empty()) throw std::invalid_argument(std::string(kind_name) + ": widths must not be empty");
    for (int b : w)
      if (b < 1 || b > max_bits)
        throw std::invalid_argument(std::string(kind_name) + ": widths must be in [1, " + std::to_string(max_bits) +
                                    "], got " + std::to_string(b));
    // Widest first, without repeats: the widths are in [1, max_bits], so a pass over that range sorts
    // them (what std::sort with std::greater and std::unique would give, without instantiating them).
    bool present[max_bits + 1] = {};
    for (int b : w) present[b] = true;
    w.clear();
    for (int b = max_bits; b >= 1; --b)
      if (present[b]) w.push_back(b);
    widths_ = std::move(w);
    return *this;
  }
  /// What a step is expected to cost at `bits`, as a fraction of its cost at from_bits (default
  /// bits / from_bits). A width expected to save nothing over the current one is never chosen.
  quantize_rule& expected_cost(int bits, double fraction) {
    if (bits < 1 || bits > max_bits)
      throw std::invalid_argument(std::string(kind_name) + ": expected_cost: bits must be in [1, " +
                                  std::to_string(max_bits) + "], got " + std::to_string(bits));
    if (!(fraction > 0 && fraction <= 1))
      throw std::invalid_argument(std::string(kind_name) + ": expected_cost: fraction must be in (0, 1], got " +
                                  detail::units_impl::shortest(fraction));
    expected_cost_[bits] = fraction;
    return *this;
  }
  /// The same, asked when the rule decides: f(bits) is what a step is expected to cost at `bits`
  /// (never asked for from_bits, which costs 1), for the model as it is then. For a cost that
  /// changes with the model's shape -- a pruning or a resumed checkpoint made it narrower -- so
  /// the rule does not plan with the shape it had when the controller was built. It replaces the
  /// fractions stated by the other form. An answer outside (0, 1] makes that checkpoint throw
  /// std::invalid_argument naming the rule, the width and the answer. Throws
  /// std::invalid_argument for an empty f.
  quantize_rule& expected_cost(std::function<double(int bits)> f) {
    if (!f) throw std::invalid_argument(std::string(kind_name) + ": expected_cost: the function must not be empty");
    expected_cost_of_ = std::move(f);
    return *this;
  }
  /// Fire no earlier than needed: wait until the shortfall is within min_shortfall of the
  /// largest saving a width is expected to bring, so the quantized rest of the plan fits with
  /// min_shortfall of its cost to spare (if the shortfall is already past that saving, fire at
  /// once, as without it). A plan with epoch ends also waits for the first to be measured: until
  /// then the forecast lacks the evaluations, and cannot tell how late is late enough. For an
  /// action that costs quality the longer it is in force -- layers frozen early learn nothing
  /// more -- later is better. Default false: fire at the first shortfall of min_shortfall.
  /// With scales_epoch_ends(false) a saving is counted on the steps' share of the plan alone.
  quantize_rule& defer(bool yes = true) noexcept {
    defer_ = yes;
    return *this;
  }
  /// Called with the new width when the decision (after callbacks) still quantizes. Without an
  /// action the loop acts on decision::quantize_bits().
  quantize_rule& action(std::function<void(int bits)> f) {
    action_ = std::move(f);
    return *this;
  }
  /// The model's width now, in bits.
  [[nodiscard]] int from_bits() const noexcept { return from_bits_; }
  /// The widths it may choose, widest first, without repeats.
  [[nodiscard]] const std::vector<int>& widths() const noexcept { return widths_; }
  /// Whether it fires no earlier than needed (defer()).
  [[nodiscard]] bool deferred() const noexcept { return defer_; }
  /// What a step is expected to cost at `bits` relative to from_bits: 1 at from_bits; else the
  /// function's answer (std::invalid_argument if it is outside (0, 1]), else the fraction stated,
  /// else bits / from_bits.
  [[nodiscard]] double expected_cost(int bits) const {
    if (bits == from_bits_) return 1.0;
    if (expected_cost_of_) {
      const double f = expected_cost_of_(bits);
      if (!(f > 0 && f <= 1))
        throw std::invalid_argument(std::string(kind_name) + " '" + name() + "': expected_cost(" + std::to_string(bits) +
                                    ") answered " + detail::units_impl::shortest(f) + "; it must be in (0, 1]");
      return f;
    }
    if (bits >= 1 && bits <= max_bits && expected_cost_[bits] > 0) return expected_cost_[bits];
    return static_cast<double>(bits) / from_bits_;
  }

 private:
  friend class controller;
  int from_bits_ = 32;
  std::vector<int> widths_{16, 8, 4};
  double expected_cost_[max_bits + 1] = {};  // by width; 0: not stated
  std::function<double(int)> expected_cost_of_;  // asked at each decision; replaces expected_cost_
  bool defer_ = false;
  std::function<void(int)> action_;
};

/// How the controller decides. Fluent:
///   frugal::controller_options{}.margin(0.02).batch_size(64).batch_limits(8, 64).epoch_samples(60000)
class controller_options {
 public:
  /// A fixed headroom: forecasts are multiplied by (1 + margin) before they are compared with
  /// what is left, for every resource. Without it, each resource's headroom is measured: the
  /// spread of its recent costs (largest / median - 1, of the steps and of the epoch ends), so
  /// FLOPs and samples, which do not vary, get none and wall time on a loaded machine gets what
  /// its variability needs (see controller::headroom).
  controller_options& margin(double m) {
    if (!(std::isfinite(m) && m >= 0)) fail("margin", "finite and >= 0", detail::units_impl::shortest(m));
    margin_ = m;
    return *this;
  }
  ///@{
  /// Soft thresholds (fractions of a limit) that fire an approaching event once each; for every
  /// resource (default {0.8}), or for one.
  controller_options& thresholds(std::vector<double> fractions) {
    default_thresholds_ = checked_thresholds("thresholds", std::move(fractions));
    return *this;
  }
  controller_options& thresholds(resource r, std::vector<double> fractions) {
    return thresholds(std::string(frugal::to_string(r)), std::move(fractions));
  }
  controller_options& thresholds(std::string resource_or_unit, std::vector<double> fractions) {
    auto checked = checked_thresholds("thresholds(" + resource_or_unit + ")", std::move(fractions));
    for (auto& t : thresholds_)
      if (t.first == resource_or_unit) {
        t.second = std::move(checked);
        return *this;
      }
    thresholds_.emplace_back(std::move(resource_or_unit), std::move(checked));
    return *this;
  }
  ///@}
  /// How the cost models weigh history (forecast_options' defaults otherwise).
  controller_options& forecast(forecast_options o) noexcept {
    forecast_ = o;
    return *this;
  }
  /// Stop on a NaN or infinite step loss (default on).
  controller_options& check_finite_loss(bool on) noexcept {
    check_finite_loss_ = on;
    return *this;
  }

  // --- the batch-size knob ---
  /// The controller manages the batch size from this initial value (the default max too).
  controller_options& batch_size(std::size_t initial) {
    if (initial == 0) fail("batch_size", "> 0", "0");
    batch_size_ = initial;
    return *this;
  }
  /// The bounds of the batch knob (default: [1, the initial batch size]); throws
  /// std::invalid_argument unless 0 < min <= max.
  controller_options& batch_limits(std::size_t min, std::size_t max) {
    if (min == 0) fail("batch_limits min", "> 0", "0");
    if (max < min) fail("batch_limits max", ">= min (" + std::to_string(min) + ")", std::to_string(max));
    batch_min_ = min;
    batch_max_ = max;
    return *this;
  }
  /// The batch that gradient accumulation keeps: accumulation_steps() = ceil(effective / batch).
  /// Default: the initial batch size.
  controller_options& effective_batch(std::size_t n) {
    if (n == 0) fail("effective_batch", "> 0", "0");
    effective_batch_ = n;
    return *this;
  }
  /// Off: a shrunken batch is just smaller (accumulation_steps() stays 1), for loops that do not
  /// accumulate gradients. Default on.
  controller_options& gradient_accumulation(bool on) noexcept {
    accumulate_ = on;
    return *this;
  }
  /// A shrink multiplies the batch by this when the forecast cannot say what fits (default 0.5).
  controller_options& shrink_factor(double f) {
    if (!(f > 0 && f < 1)) fail("shrink_factor", "in (0, 1)", detail::units_impl::shortest(f));
    shrink_factor_ = f;
    return *this;
  }
  /// Steps after a batch change before the batch may grow back (default 20; 0: never grows).
  controller_options& grow_after(std::size_t steps) noexcept {
    grow_after_ = steps;
    return *this;
  }
  /// A grow must keep the forecast within this fraction of the limit (default 0.9).
  controller_options& grow_headroom(double f) {
    if (!(f > 0 && f <= 1)) fail("grow_headroom", "in (0, 1]", detail::units_impl::shortest(f));
    grow_headroom_ = f;
    return *this;
  }
  /// A latency cap per step: the batch shrinks when a step's forecast wall time exceeds it.
  template <class Rep, class Period>
  controller_options& max_step_time(std::chrono::duration<Rep, Period> d) {
    const double s = std::chrono::duration<double>(d).count();
    if (!(std::isfinite(s) && s > 0)) fail("max_step_time", "finite and > 0 s", detail::units_impl::shortest(s));
    max_step_time_ = s;
    return *this;
  }
  /// Replaces the default batch rule; throws std::invalid_argument for an empty function.
  controller_options& batch_rule(frugal::batch_rule rule) {
    if (!rule) fail("batch_rule", "callable", "an empty std::function");
    batch_rule_ = std::move(rule);
    return *this;
  }

  // --- epochs and the plan ---
  /// Samples in an epoch (the dataset size). Learnt from the first complete epoch otherwise.
  controller_options& epoch_samples(std::size_t n) {
    if (n == 0) fail("epoch_samples", "> 0", "0");
    epoch_samples_ = n;
    return *this;
  }
  /// Steps in an epoch (instead of epoch_samples); throws std::invalid_argument for 0.
  controller_options& steps_per_epoch(std::size_t n) {
    if (n == 0) fail("steps_per_epoch", "> 0", "0");
    steps_per_epoch_ = n;
    return *this;
  }
  /// Work the run does once, at its end, after the last epoch's end, in units of an epoch's
  /// end-of-epoch work (default 0): a final test evaluation over a test set twice the size of
  /// the validation set that every epoch's end evaluates is 2. The controller keeps room for it
  /// on top of the next step and an epoch's end, at the same forecast (the largest recent epoch
  /// end) and headroom: it ends an epoch, or stops, early enough that the last epoch's end and
  /// this still fit; a stop at a step (the epoch's end then skipped) leaves at least this much.
  /// Pruning and quantization rules count it in the planned work. forecast_run_end() says what
  /// it is forecast to cost. Throws std::invalid_argument unless finite and >= 0.
  controller_options& run_end_work(double epoch_ends) {
    if (!(epoch_ends >= 0) || !std::isfinite(epoch_ends))
      fail("run_end_work", "finite and >= 0 (in epoch ends)", detail::units_impl::shortest(epoch_ends));
    run_end_work_ = epoch_ends;
    return *this;
  }
  /// The run's end work, in epoch ends.
  [[nodiscard]] double run_end_work() const noexcept { return run_end_work_; }

  ///@{
  /// The work the run intends to do (one of them): what pruning and quantization rules compare
  /// with the budget left.
  controller_options& planned_epochs(std::size_t n) { return plan(n, plan_kind::epochs, "planned_epochs"); }
  controller_options& planned_steps(std::size_t n) { return plan(n, plan_kind::steps, "planned_steps"); }
  controller_options& planned_samples(std::size_t n) { return plan(n, plan_kind::samples, "planned_samples"); }
  ///@}

  // --- rules ---
  /// Adds an early-stopping rule, fed each epoch's metrics at end_epoch.
  controller_options& early_stop(early_stopping rule) {
    early_stopping_.push_back(std::move(rule));
    return *this;
  }
  /// Adds a pruning rule, checked at every end_step; needs a plan (planned_epochs, ...).
  controller_options& prune(prune_rule rule) {
    prune_rules_.push_back(std::move(rule));
    return *this;
  }
  /// Adds a quantization rule, checked at every end_step; needs a plan (planned_epochs, ...).
  controller_options& quantize(quantize_rule rule) {
    quantize_rules_.push_back(std::move(rule));
    return *this;
  }

 private:
  friend class controller;
  friend struct detail::state_access;
  enum class plan_kind : unsigned char { none, epochs, steps, samples };

  [[noreturn]] static void fail(const std::string& field, const std::string& rule, const std::string& got) {
    throw std::invalid_argument("frugal::controller_options: " + field + " must be " + rule + ", got " + got);
  }
  static std::vector<double> checked_thresholds(const std::string& field, std::vector<double> f) {
    for (double v : f)
      if (!(v > 0 && v < 1)) fail(field, "fractions in (0, 1)", detail::units_impl::shortest(v));
    // On pointers: the same std::sort as memory_model.hpp's (one instantiation, not two).
    std::sort(f.data(), f.data() + f.size());
    f.erase(std::unique(f.begin(), f.end()), f.end());
    return f;
  }
  controller_options& plan(std::size_t n, plan_kind k, const char* field) {
    if (n == 0) fail(field, "> 0", "0");
    plan_ = k;
    plan_amount_ = n;
    return *this;
  }

  std::optional<double> margin_;  ///< none: measured per resource
  std::vector<double> default_thresholds_{0.8};
  std::vector<std::pair<std::string, std::vector<double>>> thresholds_;
  forecast_options forecast_;
  bool check_finite_loss_ = true;
  std::size_t batch_size_ = 0;
  std::size_t batch_min_ = 0;
  std::size_t batch_max_ = 0;
  std::size_t effective_batch_ = 0;
  bool accumulate_ = true;
  double shrink_factor_ = 0.5;
  std::size_t grow_after_ = 20;
  double grow_headroom_ = 0.9;
  double max_step_time_ = 0;
  frugal::batch_rule batch_rule_;
  std::size_t epoch_samples_ = 0;
  std::size_t steps_per_epoch_ = 0;
  double run_end_work_ = 0;
  plan_kind plan_ = plan_kind::none;
  std::size_t plan_amount_ = 0;
  std::vector<early_stopping> early_stopping_;
  std::vector<prune_rule> prune_rules_;
  std::vector<quantize_rule> quantize_rules_;
};

}  // namespace frugal
