/// @file
/// Running cost models for predictive decisions: statistics of one cost over its recent steps,
/// robust to one outlier, and a model over batch sizes that forecasts a step's cost at any size.
#pragma once

#include <frugal/units.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

namespace frugal {
namespace detail {
struct state_access;  // state.hpp: saves and restores the state of a run
}  // namespace detail

/// How the cost models weigh history. The defaults suit steps whose cost varies by tens of
/// percent: statistics cover the last `window` steps (the high estimate, their largest, is about
/// their 1 - 1/(window+1) quantile when steps are independent), and a single step more than
/// `outlier_ratio` times every other one is dropped once `outlier_settle` steps have shown it was
/// a one-off (see cost_stats).
class forecast_options {
 public:
  /// The largest window and outlier_settle, in steps.
  static constexpr std::size_t max_window = 64;

  /// Steps the statistics cover (default 16); throws std::invalid_argument unless 1 <= steps <=
  /// max_window.
  forecast_options& window(std::size_t steps) {
    if (steps == 0 || steps > max_window)
      throw std::invalid_argument("frugal::forecast_options: window must be in [1, " + std::to_string(max_window) +
                                  "], got " + std::to_string(steps));
    window_ = steps;
    return *this;
  }
  /// Infinity disables outlier exclusion.
  forecast_options& outlier_ratio(double r) {
    if (!(r > 1))
      throw std::invalid_argument("frugal::forecast_options: outlier_ratio must be > 1, got " +
                                  detail::units_impl::shortest(r));
    outlier_ratio_ = r;
    return *this;
  }
  /// Steps after a lone spike before it is dropped as a one-off (default 3); throws
  /// std::invalid_argument unless 1 <= steps <= max_window.
  forecast_options& outlier_settle(std::size_t steps) {
    if (steps == 0 || steps > max_window)
      throw std::invalid_argument("frugal::forecast_options: outlier_settle must be in [1, " +
                                  std::to_string(max_window) + "], got " + std::to_string(steps));
    outlier_settle_ = steps;
    return *this;
  }
  /// Steps the statistics cover.
  [[nodiscard]] std::size_t window() const noexcept { return window_; }
  /// How many times every other value a lone spike must be to be dropped (default 2; infinity:
  /// never).
  [[nodiscard]] double outlier_ratio() const noexcept { return outlier_ratio_; }
  /// Steps after a lone spike before it is dropped.
  [[nodiscard]] std::size_t outlier_settle() const noexcept { return outlier_settle_; }

 private:
  std::size_t window_ = 16;
  double outlier_ratio_ = 2;
  std::size_t outlier_settle_ = 3;
};

/// One cost (seconds, FLOPs, bytes, ...) observed step after step, summarised over the last
/// window() observations: the high estimate for the next step, where an underestimate is what
/// overshoots a limit; the mean for planning many steps ahead; the median and the spread for how
/// much the cost varies.
///
/// The outlier rule. A warm-up step (JIT, page faults, cold caches) can cost several times the
/// rest; taken at face value it would forecast every step as that slow for a whole window. So at
/// most one observation is excluded at a time: with v the largest value in the window and v2 the
/// second largest (v2 == v when the largest value occurs twice), v is excluded when the window
/// holds at least 2 observations, v > outlier_ratio * v2, and at least outlier_settle()
/// observations came after it -- at least 1 when v was the first observation ever received,
/// which is a warm-up step by nature. Every statistic then ignores v. Hence a forecast drops only
/// a single value that is more than outlier_ratio times every other value in the window, and only
/// once later steps have shown it did not last: the latest observation is never excluded, so a
/// cost that really grows (1 s steps, then 2 s steps for good) shows in high() at once, and
/// spikes that recur within the window are kept as soon as two of them are in it (they tie or
/// come within the ratio of each other).
class cost_stats {
 public:
  cost_stats() noexcept : cost_stats(forecast_options{}) {}
  /// Statistics with `o`'s window and outlier rule (the default constructor: forecast_options{}).
  explicit cost_stats(const forecast_options& o) noexcept
      : window_(o.window()), outlier_ratio_(o.outlier_ratio()), outlier_settle_(o.outlier_settle()) {}

  /// Negative and non-finite costs are clamped to 0: a counter cannot run backwards, and one bad
  /// reading must not poison every later forecast. O(window): queries then read cached results.
  void add(double x) noexcept {
    if (!(x >= 0) || !std::isfinite(x)) x = 0;
    ring_[static_cast<std::size_t>(count_ % window_)] = x;
    ++count_;
    last_ = x;
    update();
  }

  /// Adds x to the latest observation (clamped as add() does): what came after it was measured
  /// but belongs to it. Nothing happens when there is none.
  void add_to_last(double x) noexcept {
    if (count_ == 0 || !(x > 0) || !std::isfinite(x)) return;
    double& latest = ring_[static_cast<std::size_t>((count_ - 1) % window_)];
    latest += x;
    last_ = latest;
    update();
  }

  /// Multiplies the window's observations numbered below `before` (counting from 0, as count()
  /// does) by `factor` (finite, >= 0; else nothing happens): costs measured before a change that
  /// scaled them -- a pruning measured to make a step `factor` times as costly makes the epoch
  /// ends before it that much cheaper too. Later observations are kept as measured.
  void scale_before(std::uint64_t before, double factor) noexcept {
    if (count_ == 0 || !(factor >= 0) || !std::isfinite(factor)) return;
    const std::uint64_t n = std::min<std::uint64_t>(count_, window_);
    for (std::uint64_t s = count_ - n; s < std::min(before, count_); ++s) ring_[static_cast<std::size_t>(s % window_)] *= factor;
    last_ = ring_[static_cast<std::size_t>((count_ - 1) % window_)];
    update();
  }

  /// Observations added over the whole history (not only the window).
  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
  /// Whether nothing has been added.
  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
  /// The latest observation, after clamping (0 if empty).
  [[nodiscard]] double last() const noexcept { return last_; }
  /// Observations the statistics cover.
  [[nodiscard]] std::size_t window() const noexcept { return window_; }
  /// The largest non-excluded observation of the window: the next step's forecast (0 if empty).
  [[nodiscard]] double high() const noexcept { return high_; }
  /// The arithmetic mean of the window's non-excluded observations (0 if empty).
  [[nodiscard]] double mean() const noexcept { return mean_; }
  /// Their median: the mean of the two middle ones for an even count (0 if empty).
  [[nodiscard]] double median() const noexcept { return median_; }
  /// How far the largest recent cost lies above the typical one, high() / median() - 1; 0 with
  /// fewer than 2 non-excluded observations or a zero median. The controller's default headroom:
  /// 0 for costs that do not vary, such as FLOPs.
  [[nodiscard]] double spread() const noexcept { return spread_; }
  /// How many observations have been excluded as outliers so far, each counted once, when first
  /// excluded; they stay counted after leaving the window.
  [[nodiscard]] std::uint64_t outliers() const noexcept { return outliers_; }
  /// Whether the window's largest value is excluded now.
  [[nodiscard]] bool outlier_excluded() const noexcept { return excluded_; }

 private:
  friend struct detail::state_access;
  static constexpr std::uint64_t none = std::numeric_limits<std::uint64_t>::max();

  /// Recomputes every statistic from the window; observation number s (from 0) lives in slot
  /// s % window_.
  void update() noexcept {
    const std::uint64_t n = std::min<std::uint64_t>(count_, window_);
    const std::uint64_t first = count_ - n;
    double v = -1, v2 = -1;
    std::uint64_t v_seq = none;
    for (std::uint64_t s = first; s < count_; ++s) {
      const double y = ring_[static_cast<std::size_t>(s % window_)];
      if (y > v) {
        v2 = v;
        v = y;
        v_seq = s;
      } else if (y > v2) {
        v2 = y;  // y == v makes v2 == v: a tie, no outlier
      }
    }
    const std::uint64_t after = count_ - 1 - v_seq;
    const std::uint64_t settle = v_seq == 0 ? 1 : outlier_settle_;
    excluded_ = n >= 2 && v > outlier_ratio_ * v2 && after >= settle;
    if (excluded_ && counted_seq_ != v_seq) {
      ++outliers_;
      counted_seq_ = v_seq;
    }

    std::array<double, forecast_options::max_window> kept{};
    std::size_t m = 0;
    double sum = 0;
    for (std::uint64_t s = first; s < count_; ++s) {
      if (excluded_ && s == v_seq) continue;
      const double y = ring_[static_cast<std::size_t>(s % window_)];
      kept[m++] = y;
      sum += y;
    }
    high_ = excluded_ ? v2 : v;
    mean_ = sum / static_cast<double>(m);
    const auto mid = kept.begin() + static_cast<std::ptrdiff_t>(m / 2);
    std::nth_element(kept.begin(), mid, kept.begin() + static_cast<std::ptrdiff_t>(m));
    median_ = m % 2 == 1 ? *mid : (*std::max_element(kept.begin(), mid) + *mid) / 2;
    spread_ = m >= 2 && median_ > 0 ? high_ / median_ - 1 : 0;
  }

  std::array<double, forecast_options::max_window> ring_{};
  std::uint64_t count_ = 0;
  std::size_t window_;
  double outlier_ratio_;
  std::size_t outlier_settle_;
  double last_ = 0;
  double high_ = 0;
  double mean_ = 0;
  double median_ = 0;
  double spread_ = 0;
  bool excluded_ = false;
  std::uint64_t outliers_ = 0;
  std::uint64_t counted_seq_ = none;  ///< the observation last counted in outliers_
};

/// The cost of one step as a function of its batch size. Each batch size keeps its own
/// statistics (a cost_stats, so its outlier rule applies per size), so a forecast for a size run
/// recently is that size's own history, fixed per-step costs included. Other sizes are estimated from the sizes run recently (within the last
/// `window` observations): a least-squares line, cost = fixed + per_sample * batch, kept between
/// two bounds that hold for any cost with a non-negative fixed part -- below the smallest size,
/// at least the proportional share of its cost; above the largest, at least its cost. With one
/// recent size, other sizes scale proportionally (an over-estimate when growing, an
/// under-estimate when shrinking: the controller shrinks by a factor until it has two sizes).
/// A size last run long ago is estimated the same way but never below its own old history, so
/// costs that drift with time (memory growing with sequence length) do not make a stale size
/// look cheap. Batch 0 means "unknown": a model fed only batch 0 is a plain per-step model.
class cost_model {
 public:
  static constexpr std::size_t max_sizes = 8;  ///< least recently used sizes are forgotten

  cost_model() = default;
  /// A model whose per-size statistics use `o` (the default constructor: forecast_options{}).
  explicit cost_model(const forecast_options& o) : options_(o) {}

  /// One step at `batch` samples (0: unknown) cost `cost` (clamped to >= 0 and finite, as
  /// cost_stats::add).
  void add(std::size_t batch, double cost) {
    entry& e = entry_for(batch);
    e.stats.add(cost);
    e.last_used = ++tick_;
  }

  /// Whether no step has been added.
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  /// Batch sizes remembered (at most max_sizes).
  [[nodiscard]] std::size_t sizes() const noexcept { return size_; }
  /// The statistics of one batch size, or null if it has not been seen (or was forgotten).
  [[nodiscard]] const cost_stats* at(std::size_t batch) const noexcept {
    const entry* e = find(batch);
    return e ? &e->stats : nullptr;
  }
  /// The most recently observed batch size (0 if none, or unknown).
  [[nodiscard]] std::size_t last_batch() const noexcept {
    const entry* e = most_recent();
    return e ? e->batch : 0;
  }

  /// A cost the next step of this size is not expected to exceed (0 before any observation).
  [[nodiscard]] double high(std::size_t batch) const noexcept { return estimate(batch, &cost_stats::high); }
  /// The expected cost of a step of this size, for planning many steps ahead.
  [[nodiscard]] double mean(std::size_t batch) const noexcept { return estimate(batch, &cost_stats::mean); }
  /// The typical cost of a step of this size, estimated as mean() is.
  [[nodiscard]] double median(std::size_t batch) const noexcept { return estimate(batch, &cost_stats::median); }
  /// How far a step's cost may lie above the typical one (cost_stats::spread). A relative spread
  /// does not depend on the size much, so a size not run recently takes the spread of the size
  /// run last rather than a fit. 0 before any observation.
  [[nodiscard]] double spread(std::size_t batch) const noexcept {
    if (size_ == 0) return 0;
    const entry* own = find(batch);
    return own && recent(*own) ? own->stats.spread() : most_recent()->stats.spread();
  }

  /// Multiplies every observation but the last `recent` the model received by `factor` (finite,
  /// >= 0): steps measured before a change that scaled their cost (a pruning). A size whose
  /// latest observation is older than those keeps none of them and is scaled whole; the size
  /// that has some keeps its last `recent` as measured -- fewer of them may be its own when the
  /// size changed meanwhile, and then an old one stays unscaled: a cost kept too high, never too
  /// low.
  void scale_all_but_last(std::uint64_t recent, double factor) noexcept {
    for (std::size_t i = 0; i < size_; ++i) {
      cost_stats& s = entries_[i].stats;
      const bool all_old = entries_[i].last_used + recent <= tick_;
      s.scale_before(all_old ? s.count() : (s.count() >= recent ? s.count() - recent : 0), factor);
    }
  }

  /// Forgets every observation and batch size; the options stay.
  void clear() noexcept {
    for (entry& e : entries_) e = entry{};
    size_ = 0;
    tick_ = 0;
  }

  /// The largest batch in [1, upto] whose high() stays within `budget`; 0 if none does.
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

  /// Whether other sizes are estimated from a fitted line (two sizes run recently).
  [[nodiscard]] bool has_fit() const noexcept { return recent_sizes() >= 2; }

 private:
  friend struct detail::state_access;
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
