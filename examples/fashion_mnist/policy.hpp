// The example's budget policy around frugal::controller: the evaluations' reserve before the
// controller has measured one, whether the final test evaluation still fits, the progress the
// learning-rate schedule reads, the schedules. (Once an epoch's end is measured, the controller
// keeps room for it and for the final test: controller_options::run_end_work.)
#pragma once

#include <frugal/budget.hpp>
#include <frugal/controller.hpp>
#include <frugal/report.hpp>
#include <frugal/schedule.hpp>
#include <frugal/units.hpp>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>

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
  // The option's name comes first from the command line (CLI11: "--schedule: unknown ...").
  throw std::invalid_argument("unknown schedule '" + std::string(text) + "' (use budget-linear, constant or step)");
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

// What the end-of-run evaluation will cost, per limited resource. The run evaluates the
// validation set at every epoch's end and the test set once, at the run's end (or, with
// --test-every-epoch, at every epoch's end too): so the run's end costs an epoch's end plus the
// final test evaluation, `test_ratio` times the validation's work (test images / validation
// images: the same forward passes over twice the images; 0 when every epoch's end tests) -- the
// run_end_work the controller was given.
//
// Once an epoch has ended: the controller's own forecast of its end-of-epoch work (the largest
// recent one, in units of the steps' current cost for a time), times 1 + test_ratio. Before
// that: the FLOPs from the formulas, and wall / CPU time at the measured steps' FLOP rate with a
// margin of half, since timings vary more than FLOPs (measured on a loaded 2-core VM, a quarter
// let a 10 s run end 54 ms late). Evaluations count no samples and allocate nothing.
//
// The steps' FLOP rate is that of the batch the controller runs now (step_flops(batch)): a
// memory limit may have the steps run 8 samples where --batch says 128, and an 8-sample step
// takes 1/16 of a 128-sample step's FLOPs but more than 1/16 of its time.
class evaluation_cost {
 public:
  evaluation_cost(const frugal::controller& ctl, double validation_flops, double test_flops, double test_ratio,
                  std::function<double(std::size_t)> step_flops)
      : ctl_(&ctl),
        validation_flops_(validation_flops),
        test_flops_(test_flops),
        test_ratio_(test_ratio),
        step_flops_(std::move(step_flops)) {}

  [[nodiscard]] bool measured() const noexcept { return ctl_->epochs() > 0; }

  // The run's end: an epoch's end and the final test evaluation.
  [[nodiscard]] double of(std::string_view name) const {
    if (measured()) return epoch_end(name) * (1 + test_ratio_);
    return formula(name, validation_flops_ + test_flops_);
  }
  // The final test evaluation alone (0 when every epoch's end tests).
  [[nodiscard]] double final_test(std::string_view name) const {
    if (test_ratio_ == 0) return 0;
    if (measured()) return epoch_end(name) * test_ratio_;
    return formula(name, test_flops_);
  }

 private:
  [[nodiscard]] double epoch_end(std::string_view name) const {
    const std::optional<frugal::resource> r = frugal::resource_from_name(name);
    if (!r || frugal::is_level(*r)) return 0;  // user units: an evaluation counts none
    return ctl_->forecast_epoch_end(*r).value_or(0);
  }
  [[nodiscard]] double formula(std::string_view name, double flops) const {
    const std::optional<frugal::resource> r = frugal::resource_from_name(name);
    if (!r || frugal::is_level(*r)) return 0;
    if (*r == frugal::resource::flops) return flops;
    // Money is its resources at the run's price: the same formula, resource by resource.
    if (*r == frugal::resource::cost)
      return ctl_->watched().price().cost(formula("wall", flops), formula("cpu", flops), formula("flops", flops));
    if (*r == frugal::resource::wall || *r == frugal::resource::cpu || *r == frugal::resource::energy) {
      const auto t = ctl_->forecast_step(*r);
      const double step = step_flops_(ctl_->manages_batch() ? ctl_->batch_size() : 0);
      return t && step > 0 ? 1.5 * *t * flops / step : 0;
    }
    return 0;
  }

  const frugal::controller* ctl_;
  double validation_flops_;
  double test_flops_;
  double test_ratio_;
  std::function<double(std::size_t)> step_flops_;
};

// Whether `share` of the final test evaluation (1: all of it; a chunk's images / the test
// images) fits what is left of the budget: "" when it does, else the limits it would cross.
// `with_headroom`: with the controller's epoch-end headroom, as for any new work (after a stop at
// a step, or before any step); without it when the room was kept for it (a stop at an epoch's end:
// the reserve had that headroom, and the validation spent from it).
[[nodiscard]] inline std::string final_test_misfit(const frugal::controller& ctl, const evaluation_cost& cost,
                                                   bool with_headroom, double share = 1.0) {
  const frugal::budget& run = ctl.watched();
  const frugal::limits l = run.limits();
  std::string clauses;
  for (frugal::resource r : frugal::all_resources) {
    const auto lim = l.get(r);
    if (!lim || frugal::is_level(r)) continue;
    const double scale = with_headroom ? 1 + ctl.epoch_end_headroom(r).value_or(0) : 1;
    const double used = run.used(r);
    const double test = cost.final_test(frugal::to_string(r)) * scale * share;
    if (used < *lim && used + test <= *lim) continue;
    clauses += (clauses.empty() ? "" : "; ") + std::string(frugal::to_string(r)) + ": " +
               frugal::format_amount(run, r, used) + " used of " + frugal::format_amount(run, r, *lim) +
               ", the test evaluation forecast " + frugal::format_amount(run, r, test);
  }
  return clauses;
}

// A controller callback for the first epoch, before the controller has measured an epoch's end
// and so cannot keep room for it: it ends the epoch (the loop then evaluates, and the controller's
// end_epoch decides whether another step and evaluation fit) as soon as the next step and the
// evaluation forecast by evaluation_cost would cross a limit. From the second epoch on the
// controller's own end-of-epoch rule does this.
class first_evaluation_reserve {
 public:
  first_evaluation_reserve(const frugal::controller& ctl, evaluation_cost cost)
      : ctl_(&ctl), cost_(cost), limits_(ctl.watched().limits()) {}

  void operator()(frugal::decision_event& e) const {
    if (e.where != frugal::checkpoint::step || e.decision.ends_epoch() || cost_.measured()) return;
    const frugal::budget& run = ctl_->watched();
    const frugal::limits& l = limits_;
    std::string clauses;
    auto check = [&](const std::string& name, double used, double limit, bool is_builtin, frugal::resource r) {
      const auto step = ctl_->forecast_step(name);
      if (!step) return;
      const double scale = 1 + ctl_->headroom(name).value_or(0);  // as the controller's own forecasts
      const double eval = cost_.of(name);
      if (used + (*step + eval) * scale <= limit) return;
      auto fmt = [&](double v) { return is_builtin ? frugal::format_amount(run, r, v) : frugal::format_count(v); };
      if (!clauses.empty()) clauses += "; ";
      clauses += name + ": " + fmt(used) + " used of " + fmt(limit) + "; the next step (" + fmt(*step) +
                 ") and the first evaluation (" + fmt(eval) + ", forecast)" +
                 (scale > 1 ? " with the controller's headroom" : "") + " would not fit";
    };
    for (frugal::resource r : frugal::all_resources) {
      const auto lim = l.get(r);
      if (!lim || frugal::is_level(r)) continue;
      check(std::string(frugal::to_string(r)), run.used(r), *lim, true, r);
    }
    for (const auto& [unit, lim] : l.unit_limits()) check(unit, run.used(std::string_view(unit)), lim, false, {});
    if (!clauses.empty()) e.decision.end_epoch(clauses);
  }

 private:
  const frugal::controller* ctl_;
  evaluation_cost cost_;
  frugal::limits limits_;  // read once: copying them at every step would allocate
};

// How far along the run is, where 1 is the point where the last step must end: the largest
// used / (limit - evaluation reserve) over the limited cumulative resources.
[[nodiscard]] inline double budget_progress(const frugal::budget& run, const frugal::limits& l,
                                            const evaluation_cost& eval) {
  auto fraction = [](double used, double room) {
    if (room <= 0) return used > 0 || room < 0 ? 1.0 : 0.0;
    return used / room;
  };
  double p = 0;
  for (frugal::resource r : frugal::all_resources) {
    const auto lim = l.get(r);
    if (!lim || frugal::is_level(r)) continue;
    p = std::max(p, fraction(run.used(r), *lim - eval.of(frugal::to_string(r))));
  }
  for (const auto& [unit, lim] : l.unit_limits())
    p = std::max(p, fraction(run.used(std::string_view(unit)), lim - eval.of(unit)));
  return p;
}

// How many more steps of `batch` samples fit, by the tightest limit, at the controller's mean
// step costs (infinity when nothing is limited or measured): for the progress line only.
[[nodiscard]] inline double steps_left(const frugal::controller& ctl, const evaluation_cost& eval, std::size_t batch) {
  const frugal::budget& run = ctl.watched();
  const frugal::limits l = run.limits();
  double left = std::numeric_limits<double>::infinity();
  auto take = [&](std::string_view name, double used, double limit) {
    const frugal::cost_model* m = ctl.step_model(name);
    if (!m || m->empty() || m->mean(batch) <= 0) return;
    left = std::min(left, std::max(0.0, limit - used - eval.of(name)) / m->mean(batch));
  };
  for (frugal::resource r : frugal::all_resources)
    if (const auto lim = l.get(r); lim && frugal::is_consumable(r)) take(frugal::to_string(r), run.used(r), *lim);
  for (const auto& [unit, lim] : l.unit_limits()) take(unit, run.used(std::string_view(unit)), lim);
  return left;
}

}  // namespace fmnist
