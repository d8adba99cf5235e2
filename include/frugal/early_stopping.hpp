// Early stopping on a metric (validation loss, accuracy): patience, min_delta, mode, a stopping
// threshold, a divergence threshold and non-finite values; the best value and its epoch are kept.
#pragma once

#include <frugal/units.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace frugal {

// Whether a smaller (loss) or a larger (accuracy) value of the metric is better.
enum class metric_mode : unsigned char { min, max };

[[nodiscard]] constexpr std::string_view to_string(metric_mode m) noexcept {
  return m == metric_mode::min ? "min" : "max";
}

// What one update of an early_stopping concluded. The stop_* verdicts say why to stop.
enum class early_stop_verdict : unsigned char {
  improved,        // a new best value (by more than min_delta)
  no_improvement,  // patience not yet used up
  stop_patience,   // no improvement for `patience` updates in a row
  stop_threshold,  // the metric reached the stopping threshold: good enough
  stop_diverged,   // the metric crossed the divergence threshold: going nowhere
  stop_non_finite  // NaN or infinity, with check_finite on
};

[[nodiscard]] constexpr std::string_view to_string(early_stop_verdict v) noexcept {
  switch (v) {
    case early_stop_verdict::improved: return "improved";
    case early_stop_verdict::no_improvement: return "no_improvement";
    case early_stop_verdict::stop_patience: return "stop_patience";
    case early_stop_verdict::stop_threshold: return "stop_threshold";
    case early_stop_verdict::stop_diverged: return "stop_diverged";
    case early_stop_verdict::stop_non_finite: return "stop_non_finite";
  }
  return "unknown";
}

[[nodiscard]] constexpr bool stops(early_stop_verdict v) noexcept {
  return v == early_stop_verdict::stop_patience || v == early_stop_verdict::stop_threshold ||
         v == early_stop_verdict::stop_diverged || v == early_stop_verdict::stop_non_finite;
}

// The rules of PyTorch Lightning's EarlyStopping, checked in its order: a non-finite value
// (check_finite), the stopping threshold, the divergence threshold, then improvement against
// best -/+ min_delta with patience. Use it alone (update() per evaluation) or give it to a
// frugal::controller, which feeds it the epochs' metrics.
class early_stopping {
 public:
  explicit early_stopping(std::string metric = "val_loss") : metric_(std::move(metric)) {
    if (metric_.empty())
      throw std::invalid_argument("frugal::early_stopping: metric must not be empty, got ''");
  }

  early_stopping& mode(metric_mode m) {
    if (m != metric_mode::min && m != metric_mode::max)
      throw std::invalid_argument("frugal::early_stopping: mode must be min or max, got " +
                                  std::to_string(static_cast<int>(m)));
    mode_ = m;
    return *this;
  }
  // Stop after this many updates in a row without improvement (Lightning's meaning: with 3, the
  // third one stops); 0 stops at the first.
  early_stopping& patience(std::size_t updates) noexcept {
    patience_ = updates;
    return *this;
  }
  // An improvement must beat the best value by more than this (in the metric's units).
  early_stopping& min_delta(double delta) {
    if (!(std::isfinite(delta) && delta >= 0))
      throw std::invalid_argument("frugal::early_stopping: min_delta must be finite and >= 0, got " +
                                  detail::units_impl::shortest(delta));
    min_delta_ = delta;
    return *this;
  }
  // Stop as soon as the metric is better than this (below it in min mode, above in max mode).
  early_stopping& stopping_threshold(double v) {
    stopping_threshold_ = checked("stopping_threshold", v);
    return *this;
  }
  // Stop as soon as the metric is worse than this (above it in min mode, below in max mode).
  early_stopping& divergence_threshold(double v) {
    divergence_threshold_ = checked("divergence_threshold", v);
    return *this;
  }
  // Stop on NaN or infinity (on by default: such a run only burns budget).
  early_stopping& check_finite(bool on) noexcept {
    check_finite_ = on;
    return *this;
  }

  [[nodiscard]] const std::string& metric() const noexcept { return metric_; }
  [[nodiscard]] metric_mode mode() const noexcept { return mode_; }
  [[nodiscard]] std::size_t patience() const noexcept { return patience_; }
  [[nodiscard]] double min_delta() const noexcept { return min_delta_; }
  [[nodiscard]] std::optional<double> stopping_threshold() const noexcept { return stopping_threshold_; }
  [[nodiscard]] std::optional<double> divergence_threshold() const noexcept { return divergence_threshold_; }
  [[nodiscard]] bool check_finite() const noexcept { return check_finite_; }

  // Feeds one evaluation of the metric, made at `epoch` (kept with the best value).
  early_stop_verdict update(double value, std::uint64_t epoch) {
    ++updates_;
    last_ = value;
    verdict_ = evaluate(value, epoch);
    if (frugal::stops(verdict_)) stopped_ = true;
    return verdict_;
  }

  // Why the last update concluded what it did, in words ("val_loss did not improve on 0.31
  // (epoch 4) for 3 evaluations").
  [[nodiscard]] std::string message() const {
    const std::string v = format_metric(last_);
    switch (verdict_) {
      case early_stop_verdict::improved: return metric_ + " improved to " + v;
      case early_stop_verdict::no_improvement:
        return metric_ + " " + v + " did not improve on " + best_text() + " (" + std::to_string(wait_) + " of " +
               std::to_string(patience_) + " evaluations without improvement)";
      case early_stop_verdict::stop_patience:
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
    }
    return {};
  }

  [[nodiscard]] early_stop_verdict verdict() const noexcept { return verdict_; }
  [[nodiscard]] bool stopped() const noexcept { return stopped_; }
  [[nodiscard]] std::optional<double> best() const noexcept {
    return best_epoch_ ? std::optional<double>(best_) : std::nullopt;
  }
  [[nodiscard]] std::optional<std::uint64_t> best_epoch() const noexcept { return best_epoch_; }
  // Updates since the last improvement.
  [[nodiscard]] std::size_t wait() const noexcept { return wait_; }
  [[nodiscard]] std::uint64_t updates() const noexcept { return updates_; }

  // Forgets the history (best value, patience count), keeping the configuration.
  void reset() noexcept {
    best_ = 0;
    best_epoch_.reset();
    wait_ = 0;
    updates_ = 0;
    last_ = 0;
    stopped_ = false;
    verdict_ = early_stop_verdict::no_improvement;
  }

 private:
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
  // a better than b, in the configured mode.
  [[nodiscard]] bool better(double a, double b) const noexcept { return mode_ == metric_mode::min ? a < b : a > b; }

  early_stop_verdict evaluate(double value, std::uint64_t epoch) {
    if (check_finite_ && !std::isfinite(value)) return early_stop_verdict::stop_non_finite;
    if (stopping_threshold_ && better(value, *stopping_threshold_)) {
      record_best(value, epoch);
      return early_stop_verdict::stop_threshold;
    }
    if (divergence_threshold_ && better(*divergence_threshold_, value)) return early_stop_verdict::stop_diverged;
    const double bar = !best_epoch_ ? (mode_ == metric_mode::min ? std::numeric_limits<double>::infinity()
                                                                  : -std::numeric_limits<double>::infinity())
                                    : (mode_ == metric_mode::min ? best_ - min_delta_ : best_ + min_delta_);
    if (better(value, bar)) {
      record_best(value, epoch);
      wait_ = 0;
      return early_stop_verdict::improved;
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

  double best_ = 0;
  std::optional<std::uint64_t> best_epoch_;
  std::size_t wait_ = 0;
  std::uint64_t updates_ = 0;
  double last_ = 0;
  bool stopped_ = false;
  early_stop_verdict verdict_ = early_stop_verdict::no_improvement;
};

}  // namespace frugal
