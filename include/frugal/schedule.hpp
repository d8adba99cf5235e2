/// @file
/// Budget-aware learning-rate schedules: driven by the fraction of the budget used, so they
/// anneal to their final value exactly when the budget runs out (Li, Yumer, Ramanan, ICLR 2020).
/// They follow consumables only: memory near or over its peak_bytes or rss_bytes ceiling moves
/// them not at all.
#pragma once

#include <frugal/budget.hpp>
#include <frugal/units.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace frugal {
namespace detail {

// The part every schedule shares: where the fraction comes from, lr0, and the checks.
class schedule_base {
 public:
  // The learning rate now: at(run.fraction_used()), the largest fraction over the budget's
  // limited consumables, so the schedule follows whichever runs out first. Levels (peak_bytes,
  // rss_bytes) are not spent: memory pressure is answered by the batch size, and a crossed
  // ceiling must not zero the learning rate and silently stop the run from learning.
  [[nodiscard]] double operator()() const { return at_fraction(run_->fraction_used()); }
  [[nodiscard]] double lr0() const noexcept { return lr0_; }
  [[nodiscard]] const budget& watched() const noexcept { return *run_; }

 protected:
  schedule_base(const char* name, double lr0, const budget& run) : name_(name), lr0_(lr0), run_(&run) {
    if (!(std::isfinite(lr0) && lr0 > 0))
      throw std::invalid_argument(std::string("frugal::") + name_ + ": lr0 must be finite and > 0, got " +
                                  units_impl::shortest(lr0));
  }
  virtual ~schedule_base() = default;
  schedule_base(const schedule_base&) = default;
  schedule_base& operator=(const schedule_base&) = default;

  [[nodiscard]] virtual double at_fraction(double f) const = 0;

  // The fraction used, clamped to [0, 1]: past the budget the schedule holds its final value.
  [[nodiscard]] static double clamp_fraction(double f) noexcept {
    if (!(f > 0)) return 0;  // NaN too
    return std::min(f, 1.0);
  }

  [[noreturn]] void fail(const char* field, const std::string& rule, double got) const {
    throw std::invalid_argument(std::string("frugal::") + name_ + ": " + field + " must be " + rule + ", got " +
                                units_impl::shortest(got));
  }

  const char* name_;
  double lr0_;
  const budget* run_;
};

// Decaying schedules: an optional linear warmup from 0 over the first `warmup` fraction of the
// budget, then a decay from lr0 to final_lr over the rest.
template <class Derived>
class decay_schedule : public schedule_base {
 public:
  // Rises linearly from 0 to lr0 over the first `fraction` of the budget.
  Derived& warmup(double fraction) {
    if (!(fraction >= 0 && fraction < 1)) fail("warmup", "in [0, 1)", fraction);
    warmup_ = fraction;
    return static_cast<Derived&>(*this);
  }
  // The value reached when the budget is used up (0 by default, as in the paper).
  Derived& final_lr(double lr) {
    if (!(std::isfinite(lr) && lr >= 0 && lr <= lr0_)) fail("final_lr", "finite and in [0, lr0]", lr);
    final_ = lr;
    return static_cast<Derived&>(*this);
  }
  [[nodiscard]] double warmup() const noexcept { return warmup_; }
  [[nodiscard]] double final_lr() const noexcept { return final_; }

  // The learning rate at a fraction of the budget used (clamped to [0, 1]).
  [[nodiscard]] double at(double fraction) const { return at_fraction(fraction); }

 protected:
  using schedule_base::schedule_base;

  [[nodiscard]] double at_fraction(double f) const override {
    f = clamp_fraction(f);
    if (f < warmup_) return lr0_ * f / warmup_;
    const double g = warmup_ < 1 ? (f - warmup_) / (1 - warmup_) : 1.0;
    return final_ + (lr0_ - final_) * static_cast<const Derived&>(*this).shape(std::min(1.0, g));
  }

 private:
  double warmup_ = 0;
  double final_ = 0;
};

}  // namespace detail

/// lr0 * (1 - f), f the fraction of the budget used: the schedule Li, Yumer and Ramanan found to
/// beat step schedules at every budget.   auto lr = frugal::linear_decay(0.1, run);  opt.lr = lr();
class linear_decay : public detail::decay_schedule<linear_decay> {
 public:
  /// Decays from `lr0` over `run`'s fraction used; throws std::invalid_argument unless lr0 is
  /// finite and > 0.
  linear_decay(double lr0, const budget& run) : decay_schedule("linear_decay", lr0, run) {}
  /// The share of (lr0 - final_lr) left after the fraction g of the decay.
  [[nodiscard]] static double shape(double g) noexcept { return 1 - g; }
};

/// lr0 * (1 + cos(pi f)) / 2: cosine annealing whose period is the budget.
class cosine_decay : public detail::decay_schedule<cosine_decay> {
 public:
  /// Decays from `lr0` over `run`'s fraction used; throws std::invalid_argument unless lr0 is
  /// finite and > 0.
  cosine_decay(double lr0, const budget& run) : decay_schedule("cosine_decay", lr0, run) {}
  /// The share of (lr0 - final_lr) left after the fraction g of the decay: (1 + cos(pi g)) / 2.
  [[nodiscard]] static double shape(double g) noexcept {
    constexpr double pi = 3.14159265358979323846;
    return 0.5 * (1 + std::cos(pi * g));
  }
};

/// lr0 throughout: the baseline.
class constant_lr : public detail::schedule_base {
 public:
  /// `lr0` whatever `run` has used; throws std::invalid_argument unless lr0 is finite and > 0.
  constant_lr(double lr0, const budget& run) : schedule_base("constant_lr", lr0, run) {}
  /// The rate at `fraction` of the budget used: lr0.
  [[nodiscard]] double at(double fraction) const { return at_fraction(fraction); }

 protected:
  /// lr0, whatever the fraction.
  [[nodiscard]] double at_fraction(double) const override { return lr0_; }
};

/// lr0 * gamma^k, k the number of milestones (fractions of the budget) passed: the classic
/// step schedule, placed on the budget rather than on a fixed epoch count.
class step_decay : public detail::schedule_base {
 public:
  /// Throws std::invalid_argument unless lr0 is finite and > 0, gamma in (0, 1] and the milestones
  /// strictly increasing in (0, 1).
  step_decay(double lr0, const budget& run, std::vector<double> milestones = {0.5, 0.75}, double gamma = 0.1)
      : schedule_base("step_decay", lr0, run), milestones_(std::move(milestones)), gamma_(gamma) {
    if (!(gamma > 0 && gamma <= 1)) fail("gamma", "in (0, 1]", gamma);
    for (std::size_t i = 0; i < milestones_.size(); ++i) {
      if (!(milestones_[i] > 0 && milestones_[i] < 1))
        fail(("milestones[" + std::to_string(i) + "]").c_str(), "in (0, 1)", milestones_[i]);
      if (i > 0 && !(milestones_[i] > milestones_[i - 1]))
        fail(("milestones[" + std::to_string(i) + "]").c_str(),
             "greater than milestones[" + std::to_string(i - 1) + "] = " + detail::units_impl::shortest(milestones_[i - 1]),
             milestones_[i]);
    }
  }
  /// The rate at `fraction` of the budget used (clamped to [0, 1]).
  [[nodiscard]] double at(double fraction) const { return at_fraction(fraction); }
  /// The fractions of the budget at which the rate is multiplied by gamma(), ascending.
  [[nodiscard]] const std::vector<double>& milestones() const noexcept { return milestones_; }
  /// The factor applied at each milestone, in (0, 1].
  [[nodiscard]] double gamma() const noexcept { return gamma_; }

 protected:
  /// lr0 * gamma^k, k the milestones at or below f (clamped to [0, 1]).
  [[nodiscard]] double at_fraction(double f) const override {
    f = clamp_fraction(f);
    double lr = lr0_;
    for (double m : milestones_)
      if (f >= m) lr *= gamma_;
    return lr;
  }

 private:
  std::vector<double> milestones_;
  double gamma_;
};

}  // namespace frugal
