// The example's budget decisions: the predictive stop (the next step and the final evaluation
// must fit), and the learning-rate schedule read at that measure of progress.
#pragma once

#include <frugal/budget.hpp>
#include <frugal/config.hpp>
#include <frugal/schedule.hpp>
#include <frugal/units.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace fmnist {

enum class schedule { budget_linear, constant, step };

[[nodiscard]] inline std::string_view to_string(schedule s) noexcept {
  switch (s) {
    case schedule::budget_linear: return "budget-linear";
    case schedule::constant: return "constant";
    case schedule::step: return "step";
  }
  return "unknown";
}

[[nodiscard]] inline schedule parse_schedule(std::string_view text) {
  for (schedule s : {schedule::budget_linear, schedule::constant, schedule::step})
    if (text == to_string(s)) return s;
  throw std::invalid_argument("--schedule: unknown schedule '" + std::string(text) +
                              "' (use budget-linear, constant or step)");
}

// The learning rate of frugal's budget schedules (<frugal/schedule.hpp>: budget-linear decays
// to zero at the budget's end, Li, Yumer & Ramanan, ICLR 2020; step divides by 10 at 50 % and
// 75 %), read at `progress`: the guard's fraction of the budget, which keeps room for the
// final evaluation, or of the planned epochs when nothing is limited.
class learning_rate {
 public:
  learning_rate(schedule s, float lr0, const frugal::budget& run) : rule_(make(s, lr0, run)) {}
  [[nodiscard]] float at(double progress) const {
    return static_cast<float>(std::visit([&](const auto& r) { return r.at(progress); }, rule_));
  }

 private:
  using rule = std::variant<frugal::linear_decay, frugal::constant_lr, frugal::step_decay>;
  static rule make(schedule s, float lr0, const frugal::budget& run) {
    switch (s) {
      case schedule::constant: return frugal::constant_lr(lr0, run);
      case schedule::step: return frugal::step_decay(lr0, run, {0.5, 0.75}, 0.1);
      case schedule::budget_linear: break;
    }
    return frugal::linear_decay(lr0, run);
  }
  rule rule_;
};

// Amounts of the builtin resources and of the limited user units (in the guard's order): what
// the budget has used, or what a step or an evaluation costs. Fixed-size, so that reading the
// budget at every step allocates nothing.
struct reading {
  std::array<double, frugal::resource_count> resources{};
  std::array<double, FRUGAL_MAX_UNITS> units{};
};

// Decides before each step whether that step, and the evaluation that must follow the last
// one, still fit every limit. Costs are forecast from the largest of the recent measurements
// (OR-tools' TimeLimit does the same), from formulas before anything is measured.
class budget_guard {
 public:
  explicit budget_guard(const frugal::budget& run) : run_(run), limits_(run.limits()) {
    for (const auto& [name, limit] : limits_.unit_limits()) unit_names_.push_back(name);
    if (unit_names_.size() > FRUGAL_MAX_UNITS)
      throw std::invalid_argument("--budget: " + std::to_string(unit_names_.size()) + " user units, at most " +
                                  std::to_string(FRUGAL_MAX_UNITS) + " (FRUGAL_MAX_UNITS)");
  }

  [[nodiscard]] reading read() const {
    const frugal::usage u = run_.snapshot();
    reading r;
    r.resources = u.by_resource;
    for (std::size_t i = 0; i < unit_names_.size(); ++i) r.units[i] = u.of(unit_names_[i]);
    return r;
  }

  void step_done(const reading& before, const reading& after) { steps_.push(difference(before, after)); }
  void evaluation_done(const reading& before, const reading& after) { evals_.push(difference(before, after)); }

  // Forecasts before the first measurement: FLOPs from the formulas; wall time from the FLOPs
  // at the rate of the steps measured so far (nothing is known before the first step).
  void set_first_forecasts(double step_flops, double evaluation_flops, double step_units) {
    first_step_flops_ = step_flops;
    first_eval_flops_ = evaluation_flops;
    first_step_units_ = step_units;
  }

  // The limit the next step would cross (with room for the final evaluation), or nothing.
  [[nodiscard]] std::optional<std::string> next_step_crosses(const reading& now) const {
    const reading step = forecast_step(false), eval = forecast_evaluation();
    for (frugal::resource r : frugal::all_resources) {
      const auto lim = limits_.get(r);
      if (!lim) continue;
      const auto i = static_cast<std::size_t>(r);
      // peak_bytes is a level, not a sum: it can only be checked, not forecast, here.
      if (r == frugal::resource::peak_bytes) {
        if (now.resources[i] >= *lim) return std::string(frugal::to_string(r));
        continue;
      }
      if (now.resources[i] + step.resources[i] + eval.resources[i] > *lim) return std::string(frugal::to_string(r));
    }
    for (std::size_t u = 0; u < unit_names_.size(); ++u)
      if (now.units[u] + step.units[u] + eval.units[u] > unit_limit(u)) return unit_names_[u];
    return std::nullopt;
  }

  // Whether evaluating now would leave no room for another step and its evaluation: then an
  // epoch-end evaluation is better skipped, and the rest of the budget spent on training
  // steps before the final evaluation (what is left unused is then less than a step).
  [[nodiscard]] bool evaluation_would_end_run(const reading& now) const {
    reading after = now;
    const reading eval = forecast_evaluation();
    for (std::size_t i = 0; i < after.resources.size(); ++i)
      if (i != static_cast<std::size_t>(frugal::resource::peak_bytes)) after.resources[i] += eval.resources[i];
    for (std::size_t u = 0; u < unit_names_.size(); ++u) after.units[u] += eval.units[u];
    return next_step_crosses(after).has_value();
  }

  // How far along the run is, where 1 is the point where the last step must end: the largest
  // used / (limit - evaluation reserve) over the limited resources.
  [[nodiscard]] double progress(const reading& now) const {
    const reading eval = forecast_evaluation();
    double p = 0;
    for (frugal::resource r : frugal::all_resources) {
      const auto lim = limits_.get(r);
      if (!lim || r == frugal::resource::peak_bytes) continue;
      const auto i = static_cast<std::size_t>(r);
      p = std::max(p, fraction(now.resources[i], *lim - eval.resources[i]));
    }
    for (std::size_t u = 0; u < unit_names_.size(); ++u)
      p = std::max(p, fraction(now.units[u], unit_limit(u) - eval.units[u]));
    return p;
  }

  // How many more steps fit, by the tightest limit (infinity when nothing is limited). The
  // decision uses the largest recent costs; `typical` uses their mean (for display).
  [[nodiscard]] double steps_left(const reading& now, bool typical = false) const {
    const reading step = forecast_step(typical), eval = forecast_evaluation();
    double left = std::numeric_limits<double>::infinity();
    for (frugal::resource r : frugal::all_resources) {
      const auto lim = limits_.get(r);
      const auto i = static_cast<std::size_t>(r);
      if (!lim || r == frugal::resource::peak_bytes || step.resources[i] <= 0) continue;
      left = std::min(left, std::max(0.0, *lim - now.resources[i] - eval.resources[i]) / step.resources[i]);
    }
    for (std::size_t u = 0; u < unit_names_.size(); ++u)
      if (step.units[u] > 0)
        left = std::min(left, std::max(0.0, unit_limit(u) - now.units[u] - eval.units[u]) / step.units[u]);
    return left;
  }

  // Wall seconds of a recent step: the slowest, or with `typical` the mean (0 before the first).
  [[nodiscard]] double step_seconds(bool typical = false) const {
    return forecast_step(typical).resources[static_cast<std::size_t>(frugal::resource::wall)];
  }

 private:
  // The last N measurements, oldest overwritten first.
  template <std::size_t N>
  struct window {
    std::array<reading, N> items{};
    std::size_t count = 0;
    std::size_t next = 0;
    void push(const reading& r) noexcept {
      items[next] = r;
      next = (next + 1) % N;
      count = std::min(count + 1, N);
    }
    [[nodiscard]] reading largest() const noexcept {
      reading c;
      for (std::size_t k = 0; k < count; ++k) {
        for (std::size_t i = 0; i < c.resources.size(); ++i) c.resources[i] = std::max(c.resources[i], items[k].resources[i]);
        for (std::size_t u = 0; u < c.units.size(); ++u) c.units[u] = std::max(c.units[u], items[k].units[u]);
      }
      return c;
    }
    [[nodiscard]] reading mean() const noexcept {
      reading c;
      for (std::size_t k = 0; k < count; ++k) {
        for (std::size_t i = 0; i < c.resources.size(); ++i) c.resources[i] += items[k].resources[i] / static_cast<double>(count);
        for (std::size_t u = 0; u < c.units.size(); ++u) c.units[u] += items[k].units[u] / static_cast<double>(count);
      }
      return c;
    }
  };

  static double fraction(double used, double room) noexcept {
    if (room <= 0) return used > 0 || room < 0 ? 1.0 : 0.0;
    return used / room;
  }

  [[nodiscard]] double unit_limit(std::size_t u) const { return limits_.get(std::string_view(unit_names_[u])).value_or(0); }

  [[nodiscard]] static reading difference(const reading& before, const reading& after) noexcept {
    reading d;
    for (std::size_t i = 0; i < d.resources.size(); ++i) d.resources[i] = after.resources[i] - before.resources[i];
    for (std::size_t u = 0; u < d.units.size(); ++u) d.units[u] = after.units[u] - before.units[u];
    return d;
  }

  [[nodiscard]] reading forecast_step(bool typical) const {
    if (steps_.count > 0) return typical ? steps_.mean() : steps_.largest();
    reading c;
    c.resources[static_cast<std::size_t>(frugal::resource::flops)] = first_step_flops_;
    for (std::size_t u = 0; u < unit_names_.size(); ++u) c.units[u] = first_step_units_;
    return c;
  }

  // Timings vary more than FLOPs: the wall and CPU reserve of an evaluation (the slowest of
  // the last three) gets a margin of half its time. Measured on a loaded 2-core VM, a margin
  // of a quarter let a 10 s run end 54 ms (25 steps) late.
  [[nodiscard]] reading forecast_evaluation() const {
    constexpr std::size_t wall = static_cast<std::size_t>(frugal::resource::wall);
    constexpr std::size_t cpu = static_cast<std::size_t>(frugal::resource::cpu);
    constexpr std::size_t flops = static_cast<std::size_t>(frugal::resource::flops);
    reading c;
    if (evals_.count > 0) {
      c = evals_.largest();
    } else {
      c.resources[flops] = first_eval_flops_;
      // Until an evaluation is measured: its FLOPs at the training steps' FLOP rate.
      const reading s = steps_.largest();
      if (s.resources[flops] > 0) {
        c.resources[wall] = s.resources[wall] * first_eval_flops_ / s.resources[flops];
        c.resources[cpu] = s.resources[cpu] * first_eval_flops_ / s.resources[flops];
      }
    }
    c.resources[wall] *= 1.5;
    c.resources[cpu] *= 1.5;
    return c;
  }

  const frugal::budget& run_;
  frugal::limits limits_;
  std::vector<std::string> unit_names_;
  window<16> steps_;
  window<3> evals_;
  double first_step_flops_ = 0;
  double first_eval_flops_ = 0;
  double first_step_units_ = 0;
};

}  // namespace fmnist
