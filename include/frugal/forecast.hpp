// Running cost models for predictive decisions: statistics of one cost over recent steps (EWMA
// mean, recent maximum), and a model over batch sizes that forecasts a step's cost at any size.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

namespace frugal {

// How the cost models weigh history. The defaults suit steps whose cost varies by tens of
// percent: the mean forgets in ~1/alpha steps, the high estimate is the largest of the last
// `window` steps (about their 1 - 1/(window+1) quantile when steps are independent).
class forecast_options {
 public:
  static constexpr std::size_t max_window = 64;

  forecast_options& window(std::size_t steps) {
    if (steps == 0 || steps > max_window)
      throw std::invalid_argument("frugal::forecast_options: window must be in [1, " + std::to_string(max_window) +
                                  "], got " + std::to_string(steps));
    window_ = steps;
    return *this;
  }
  forecast_options& alpha(double a) {
    if (!(a > 0 && a <= 1))
      throw std::invalid_argument("frugal::forecast_options: alpha must be in (0, 1], got " + std::to_string(a));
    alpha_ = a;
    return *this;
  }
  [[nodiscard]] std::size_t window() const noexcept { return window_; }
  [[nodiscard]] double alpha() const noexcept { return alpha_; }

 private:
  std::size_t window_ = 16;
  double alpha_ = 0.2;
};

// One cost (seconds, FLOPs, bytes, ...) observed step after step: an exponentially weighted mean
// for planning many steps ahead, and the maximum of the recent window for the next step, where
// an underestimate is what overshoots a limit.
class cost_stats {
 public:
  cost_stats() noexcept : cost_stats(forecast_options{}) {}
  explicit cost_stats(const forecast_options& o) noexcept : window_(o.window()), alpha_(o.alpha()) {}

  // Negative and non-finite costs are clamped to 0: a counter cannot run backwards, and one bad
  // reading must not poison every later forecast.
  void add(double x) noexcept {
    if (!(x >= 0) || !std::isfinite(x)) x = 0;
    mean_ = count_ == 0 ? x : mean_ + alpha_ * (x - mean_);
    const std::size_t slot = static_cast<std::size_t>(count_ % window_);
    const bool evicts = count_ >= window_;
    const double evicted = ring_[slot];
    ring_[slot] = x;
    ++count_;
    last_ = x;
    if (x >= max_) {
      max_ = x;
    } else if (evicts && evicted == max_) {
      max_ = 0;
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(count_, window_));
      for (std::size_t i = 0; i < n; ++i) max_ = std::max(max_, ring_[i]);
    }
  }

  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
  [[nodiscard]] double last() const noexcept { return last_; }
  [[nodiscard]] double mean() const noexcept { return mean_; }
  // The largest of the last window() observations: the next step's forecast.
  [[nodiscard]] double high() const noexcept { return max_; }
  [[nodiscard]] std::size_t window() const noexcept { return window_; }

 private:
  std::array<double, forecast_options::max_window> ring_{};
  std::uint64_t count_ = 0;
  std::size_t window_;
  double alpha_;
  double mean_ = 0;
  double max_ = 0;
  double last_ = 0;
};

// The cost of one step as a function of its batch size. Each batch size keeps its own
// statistics, so a forecast for a size run recently is that size's own history, fixed per-step
// costs included. Other sizes are estimated from the sizes run recently (within the last
// `window` observations): a least-squares line, cost = fixed + per_sample * batch, kept between
// two bounds that hold for any cost with a non-negative fixed part -- below the smallest size,
// at least the proportional share of its cost; above the largest, at least its cost. With one
// recent size, other sizes scale proportionally (an over-estimate when growing, an
// under-estimate when shrinking: the controller shrinks by a factor until it has two sizes).
// A size last run long ago is estimated the same way but never below its own old history, so
// costs that drift with time (memory growing with sequence length) do not make a stale size
// look cheap. Batch 0 means "unknown": a model fed only batch 0 is a plain per-step model.
class cost_model {
 public:
  static constexpr std::size_t max_sizes = 8;  // least recently used sizes are forgotten

  cost_model() = default;
  explicit cost_model(const forecast_options& o) : options_(o) {}

  void add(std::size_t batch, double cost) {
    entry& e = entry_for(batch);
    e.stats.add(cost);
    e.last_used = ++tick_;
  }

  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] std::size_t sizes() const noexcept { return size_; }
  // The statistics of one batch size, or null if it has not been seen (or was forgotten).
  [[nodiscard]] const cost_stats* at(std::size_t batch) const noexcept {
    const entry* e = find(batch);
    return e ? &e->stats : nullptr;
  }
  // The most recently observed batch size (0 if none, or unknown).
  [[nodiscard]] std::size_t last_batch() const noexcept {
    const entry* e = most_recent();
    return e ? e->batch : 0;
  }

  // A cost the next step of this size is not expected to exceed (0 before any observation).
  [[nodiscard]] double high(std::size_t batch) const noexcept { return estimate(batch, &cost_stats::high); }
  // The expected cost of a step of this size, for planning many steps ahead.
  [[nodiscard]] double mean(std::size_t batch) const noexcept { return estimate(batch, &cost_stats::mean); }

  // The largest batch in [1, upto] whose high() stays within `budget`; 0 if none does.
  [[nodiscard]] std::size_t largest_batch_within(double budget, std::size_t upto) const noexcept {
    if (upto == 0 || !(high(1) <= budget)) return 0;
    std::size_t lo = 1, hi = upto;  // invariant: high(lo) <= budget
    while (lo < hi) {
      const std::size_t mid = lo + (hi - lo + 1) / 2;
      if (high(mid) <= budget)
        lo = mid;
      else
        hi = mid - 1;
    }
    return lo;
  }

  // Whether other sizes are estimated from a fitted line (two sizes run recently).
  [[nodiscard]] bool has_fit() const noexcept { return recent_sizes() >= 2; }

 private:
  struct entry {
    std::size_t batch = 0;
    std::uint64_t last_used = 0;
    cost_stats stats;
  };
  using statistic = double (cost_stats::*)() const noexcept;

  [[nodiscard]] const entry* find(std::size_t batch) const noexcept {
    for (std::size_t i = 0; i < size_; ++i)
      if (entries_[i].batch == batch) return &entries_[i];
    return nullptr;
  }
  [[nodiscard]] const entry* most_recent() const noexcept {
    const entry* best = nullptr;
    for (std::size_t i = 0; i < size_; ++i)
      if (!best || entries_[i].last_used > best->last_used) best = &entries_[i];
    return best;
  }
  [[nodiscard]] bool recent(const entry& e) const noexcept { return tick_ - e.last_used < options_.window(); }
  [[nodiscard]] std::size_t recent_sizes() const noexcept {
    std::size_t n = 0;
    for (std::size_t i = 0; i < size_; ++i) n += entries_[i].batch > 0 && recent(entries_[i]) ? 1 : 0;
    return n;
  }

  entry& entry_for(std::size_t batch) {
    for (std::size_t i = 0; i < size_; ++i)
      if (entries_[i].batch == batch) return entries_[i];
    std::size_t slot = size_;
    if (size_ == max_sizes) {
      slot = 0;
      for (std::size_t i = 1; i < size_; ++i)
        if (entries_[i].last_used < entries_[slot].last_used) slot = i;
    } else {
      ++size_;
    }
    entries_[slot] = entry{batch, 0, cost_stats(options_)};
    return entries_[slot];
  }

  [[nodiscard]] double estimate(std::size_t batch, statistic stat) const noexcept {
    if (size_ == 0) return 0;
    const entry* own = find(batch);
    if (own && recent(*own)) return (own->stats.*stat)();
    const double v = estimate_from_recent(batch, stat);
    return own ? std::max(v, (own->stats.*stat)()) : v;
  }

  [[nodiscard]] double estimate_from_recent(std::size_t batch, statistic stat) const noexcept {
    // An unknown size, or a model that never learnt sizes: the latest history is the best guess.
    if (batch == 0 || recent_sizes() == 0) return (most_recent()->stats.*stat)();
    const entry* lo = nullptr;
    const entry* hi = nullptr;
    double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (std::size_t i = 0; i < size_; ++i) {
      const entry& e = entries_[i];
      if (e.batch == 0 || !recent(e)) continue;
      const double x = static_cast<double>(e.batch);
      const double y = (e.stats.*stat)();
      n += 1;
      sx += x;
      sy += y;
      sxx += x * x;
      sxy += x * y;
      if (!lo || e.batch < lo->batch) lo = &e;
      if (!hi || e.batch > hi->batch) hi = &e;
    }
    const double b = static_cast<double>(batch);
    if (n < 2) return (lo->stats.*stat)() * b / static_cast<double>(lo->batch);
    // A cost falling with the batch size is noise: such a fit is flattened to the mean.
    double slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
    if (!(slope > 0)) slope = 0;
    const double intercept = (sy - slope * sx) / n;
    double v = std::max(0.0, intercept + slope * b);
    if (batch < lo->batch) v = std::max(v, (lo->stats.*stat)() * b / static_cast<double>(lo->batch));
    if (batch > hi->batch) v = std::max(v, (hi->stats.*stat)());
    return v;
  }

  forecast_options options_;
  std::array<entry, max_sizes> entries_{};
  std::size_t size_ = 0;
  std::uint64_t tick_ = 0;
};

}  // namespace frugal
