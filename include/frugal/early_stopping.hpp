/// @file
/// Early stopping on a metric (validation loss, accuracy): patience, min_delta, mode, a stopping
/// threshold, a divergence threshold, non-finite values, a baseline and warm-up epochs; the best
/// value and its epoch are kept.
#pragma once

#include <frugal/units.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace frugal {
namespace detail {
struct state_access;  // state.hpp: saves and restores the state of a run
}  // namespace detail

/// Whether a smaller (loss) or a larger (accuracy) value of the metric is better.
enum class metric_mode : unsigned char { min, max };

/// "min" or "max".
[[nodiscard]] constexpr std::string_view to_string(metric_mode m) noexcept {
  return m == metric_mode::min ? "min" : "max";
}

/// What one update of an early_stopping concluded. The stop_* verdicts say why to stop.
enum class early_stop_verdict : unsigned char {
  improved,         ///< a new best value (by more than min_delta), beating the baseline if any
  no_improvement,   ///< patience not yet used up
  stop_patience,    ///< no improvement for `patience` updates in a row
  stop_threshold,   ///< the metric reached the stopping threshold: good enough
  stop_diverged,    ///< the metric crossed the divergence threshold: going nowhere
  stop_non_finite,  ///< NaN or infinity, with check_finite on
  warming_up        ///< an epoch before start_from_epoch: not counted
};

/// The verdict's enumerator name ("stop_patience", ...); "unknown" for an out-of-range value.
[[nodiscard]] constexpr std::string_view to_string(early_stop_verdict v) noexcept {
  switch (v) {
    case early_stop_verdict::improved: return "improved";
    case early_stop_verdict::no_improvement: return "no_improvement";
    case early_stop_verdict::stop_patience: return "stop_patience";
    case early_stop_verdict::stop_threshold: return "stop_threshold";
    case early_stop_verdict::stop_diverged: return "stop_diverged";
    case early_stop_verdict::stop_non_finite: return "stop_non_finite";
    case early_stop_verdict::warming_up: return "warming_up";
  }
  return "unknown";
}

/// Whether the verdict is one of the stop_* ones.
[[nodiscard]] constexpr bool stops(early_stop_verdict v) noexcept {
  return v == early_stop_verdict::stop_patience || v == early_stop_verdict::stop_threshold ||
         v == early_stop_verdict::stop_diverged || v == early_stop_verdict::stop_non_finite;
}

/// The rules of PyTorch Lightning's EarlyStopping, checked in its order: a non-finite value
/// (check_finite), the stopping threshold, the divergence threshold, then improvement against
/// best -/+ min_delta with patience. Two rules come from Keras' EarlyStopping, which users of
/// either expect: a baseline the metric must beat before patience is reset, and warm-up epochs
/// (start_from_epoch) that are not counted at all. Use it alone (update() per evaluation) or give
/// it to a frugal::controller, which feeds it the epochs' metrics.
class early_stopping {
 public:
  /// Watches the metric an epoch reports as `metric`; throws std::invalid_argument when it is
  /// empty.
  explicit early_stopping(std::string metric = "val_loss") : metric_(std::move(metric)) {
    if (metric_.empty())
      throw std::invalid_argument("frugal::early_stopping: metric must not be empty, got ''");
  }

  /// Whether lower (min, the default) or higher (max) is better; throws std::invalid_argument for a
  /// value outside the enum.
  early_stopping& mode(metric_mode m) {
    if (m != metric_mode::min && m != metric_mode::max)
      throw std::invalid_argument("frugal::early_stopping: mode must be min or max, got " +
                                  std::to_string(static_cast<int>(m)));
    mode_ = m;
    return *this;
  }
  /// Stop after this many updates in a row without improvement (Lightning's meaning: with 3, the
  /// third one stops); 0 stops at the first.
  early_stopping& patience(std::size_t updates) noexcept {
    patience_ = updates;
    return *this;
  }
  /// An improvement must beat the best value by more than this (in the metric's units).
  early_stopping& min_delta(double delta) {
    if (!(std::isfinite(delta) && delta >= 0))
      throw std::invalid_argument("frugal::early_stopping: min_delta must be finite and >= 0, got " +
                                  detail::units_impl::shortest(delta));
    min_delta_ = delta;
    return *this;
  }
  /// Stop as soon as the metric is better than this (below it in min mode, above in max mode).
  early_stopping& stopping_threshold(double v) {
    stopping_threshold_ = checked("stopping_threshold", v);
    return *this;
  }
  /// Stop as soon as the metric is worse than this (above it in min mode, below in max mode).
  early_stopping& divergence_threshold(double v) {
    divergence_threshold_ = checked("divergence_threshold", v);
    return *this;
  }
  /// Stop on NaN or infinity (on by default: such a run only burns budget).
  early_stopping& check_finite(bool on) noexcept {
    check_finite_ = on;
    return *this;
  }
  /// Keras' baseline: patience is only reset by a value that improves on the best AND beats the
  /// baseline by more than min_delta, so a run that never gets better than the baseline stops
  /// after `patience` evaluations. The best value is still recorded meanwhile.
  early_stopping& baseline(double v) {
    baseline_ = checked("baseline", v);
    return *this;
  }
  /// Keras' start_from_epoch: evaluations at epochs below this (0-based) are a warm-up, where
  /// early metrics are noisy; they count no patience, record no best and ignore both thresholds.
  /// A non-finite value still stops (with check_finite), since it burns budget during warm-up too.
  early_stopping& start_from_epoch(std::uint64_t epoch) noexcept {
    start_from_epoch_ = epoch;
    return *this;
  }

  /// The metric's name.
  [[nodiscard]] const std::string& metric() const noexcept { return metric_; }
  /// min (the default) or max.
  [[nodiscard]] metric_mode mode() const noexcept { return mode_; }
  /// Updates without improvement that stop (default 3).
  [[nodiscard]] std::size_t patience() const noexcept { return patience_; }
  /// The least improvement that counts, in the metric's units (default 0).
  [[nodiscard]] double min_delta() const noexcept { return min_delta_; }
  /// The stopping threshold; none by default.
  [[nodiscard]] std::optional<double> stopping_threshold() const noexcept { return stopping_threshold_; }
  /// The divergence threshold; none by default.
  [[nodiscard]] std::optional<double> divergence_threshold() const noexcept { return divergence_threshold_; }
  /// Whether a non-finite value stops (default true).
  [[nodiscard]] bool check_finite() const noexcept { return check_finite_; }
  /// The baseline; none by default.
  [[nodiscard]] std::optional<double> baseline() const noexcept { return baseline_; }
  /// The first counted epoch, 0-based (default 0: no warm-up).
  [[nodiscard]] std::uint64_t start_from_epoch() const noexcept { return start_from_epoch_; }

  /// Feeds one evaluation of the metric, made at `epoch` (kept with the best value).
  early_stop_verdict update(double value, std::uint64_t epoch) {
    ++updates_;
    last_ = value;
    verdict_ = evaluate(value, epoch);
    if (frugal::stops(verdict_)) stopped_ = true;
    return verdict_;
  }

  /// Why the last update concluded what it did, in words ("val_loss did not improve on 0.31
  /// (epoch 4) for 3 evaluations").
  [[nodiscard]] std::string message() const {
    if (!last_) return metric_ + ": no evaluation yet";
    const std::string v = format_metric(*last_);
    switch (verdict_) {
      case early_stop_verdict::improved: return metric_ + " improved to " + v;
      case early_stop_verdict::no_improvement:
        if (baseline_unbeaten())
          return metric_ + " " + v + " did not beat the baseline " + format_metric(*baseline_) + " (" +
                 std::to_string(wait_) + " of " + std::to_string(patience_) + " evaluations; " + best_clause() + ")";
        return metric_ + " " + v + " did not improve on " + best_text() + " (" + std::to_string(wait_) + " of " +
               std::to_string(patience_) + " evaluations without improvement)";
      case early_stop_verdict::stop_patience:
        if (baseline_unbeaten())
          return metric_ + " did not beat the baseline " + format_metric(*baseline_) + " for " +
                 std::to_string(wait_) + " evaluations (patience " + std::to_string(patience_) + "); " +
                 best_clause();
        return metric_ + " did not improve on " + best_text() + " for " + std::to_string(wait_) +
               " evaluations (patience " + std::to_string(patience_) + ")";
      case early_stop_verdict::stop_threshold:
        return metric_ + " " + v + (mode_ == metric_mode::min ? " < " : " > ") + "stopping threshold " +
               format_metric(*stopping_threshold_);
      case early_stop_verdict::stop_diverged:
        return metric_ + " " + v + (mode_ == metric_mode::min ? " > " : " < ") + "divergence threshold " +
               format_metric(*divergence_threshold_);
      case early_stop_verdict::stop_non_finite:
        return metric_ + " is " + v + " (not finite); best was " + best_text();
      case early_stop_verdict::warming_up:
        return metric_ + " " + v + " (warm-up: counted from epoch " + std::to_string(start_from_epoch_) + ")";
    }
    return {};
  }

  /// The last update's verdict (no_improvement before any).
  [[nodiscard]] early_stop_verdict verdict() const noexcept { return verdict_; }
  /// Whether some update returned a stop_* verdict since construction or reset().
  [[nodiscard]] bool stopped() const noexcept { return stopped_; }
  /// The best value and its epoch, known from the first counted (not warm-up) finite evaluation
  /// on, unless that one diverged; also while a baseline has not been beaten yet.
  [[nodiscard]] std::optional<double> best() const noexcept {
    return best_epoch_ ? std::optional<double>(best_) : std::nullopt;
  }
  /// The epoch of best(); none while best() is.
  [[nodiscard]] std::optional<std::uint64_t> best_epoch() const noexcept { return best_epoch_; }
  /// The value of the last update, warm-up and non-finite ones included; none before any.
  [[nodiscard]] std::optional<double> last() const noexcept { return last_; }
  /// Counted updates since the last improvement (one that also beat the baseline, if any).
  [[nodiscard]] std::size_t wait() const noexcept { return wait_; }
  /// Updates since construction or reset(), warm-up ones included.
  [[nodiscard]] std::uint64_t updates() const noexcept { return updates_; }

  /// Forgets the history (best value, patience count), keeping the configuration.
  void reset() noexcept {
    best_ = 0;
    best_epoch_.reset();
    wait_ = 0;
    updates_ = 0;
    last_.reset();
    stopped_ = false;
    verdict_ = early_stop_verdict::no_improvement;
  }

 private:
  friend struct detail::state_access;
  static double checked(const char* field, double v) {
    if (!std::isfinite(v))
      throw std::invalid_argument(std::string("frugal::early_stopping: ") + field + " must be finite, got " +
                                  detail::units_impl::shortest(v));
    return v;
  }
  static std::string format_metric(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    return detail::units_impl::shortest(v);
  }
  [[nodiscard]] std::string best_text() const {
    return best_epoch_ ? format_metric(best_) + " (epoch " + std::to_string(*best_epoch_) + ")" : "nothing";
  }
  [[nodiscard]] std::string best_clause() const { return best_epoch_ ? "best " + best_text() : "no best yet"; }
  /// a better than b, in the configured mode.
  [[nodiscard]] bool better(double a, double b) const noexcept { return mode_ == metric_mode::min ? a < b : a > b; }
  /// a better than b by more than min_delta.
  [[nodiscard]] bool beats(double a, double b) const noexcept {
    return better(a, mode_ == metric_mode::min ? b - min_delta_ : b + min_delta_);
  }
  /// A baseline is set and no value has beaten it yet (the best is the closest to it so far).
  [[nodiscard]] bool baseline_unbeaten() const noexcept {
    return baseline_ && !(best_epoch_ && beats(best_, *baseline_));
  }

  early_stop_verdict evaluate(double value, std::uint64_t epoch) {
    if (check_finite_ && !std::isfinite(value)) return early_stop_verdict::stop_non_finite;
    if (epoch < start_from_epoch_) return early_stop_verdict::warming_up;
    if (stopping_threshold_ && better(value, *stopping_threshold_)) {
      record_best(value, epoch);
      return early_stop_verdict::stop_threshold;
    }
    if (divergence_threshold_ && better(*divergence_threshold_, value)) return early_stop_verdict::stop_diverged;
    const double worst = mode_ == metric_mode::min ? std::numeric_limits<double>::infinity()
                                                   : -std::numeric_limits<double>::infinity();
    if (best_epoch_ ? beats(value, best_) : better(value, worst)) {
      // The best is recorded even when it misses the baseline, so best() is known from the first
      // counted evaluation; only beating the baseline as well resets the patience (Keras).
      record_best(value, epoch);
      if (!baseline_ || beats(value, *baseline_)) {
        wait_ = 0;
        return early_stop_verdict::improved;
      }
    }
    ++wait_;
    return wait_ >= patience_ ? early_stop_verdict::stop_patience : early_stop_verdict::no_improvement;
  }
  void record_best(double value, std::uint64_t epoch) {
    if (!best_epoch_ || better(value, best_)) {
      best_ = value;
      best_epoch_ = epoch;
    }
  }

  std::string metric_;
  metric_mode mode_ = metric_mode::min;
  std::size_t patience_ = 3;
  double min_delta_ = 0;
  std::optional<double> stopping_threshold_;
  std::optional<double> divergence_threshold_;
  bool check_finite_ = true;
  std::optional<double> baseline_;
  std::uint64_t start_from_epoch_ = 0;

  double best_ = 0;
  std::optional<std::uint64_t> best_epoch_;
  std::size_t wait_ = 0;
  std::uint64_t updates_ = 0;
  std::optional<double> last_;
  bool stopped_ = false;
  early_stop_verdict verdict_ = early_stop_verdict::no_improvement;
};

}  // namespace frugal
