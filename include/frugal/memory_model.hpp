/// @file
/// The memory a stage needs as a function of the size the loop picks for it (a step's batch, an
/// evaluation's chunk): peak(n) = base + rise_per_unit * n, fitted to measured peaks, with the
/// headroom applied to the part the size controls.
#pragma once

#include <frugal/units.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace frugal {
namespace detail {
struct state_access;  // state.hpp: saves and restores the state of a run
}  // namespace detail

/// peak(n) = base + rise_per_unit * n, with n the stage's size (samples in a batch, images in an
/// evaluation chunk), fitted to the peaks the stage reached at the sizes it ran.
///
/// - base is what the size does not control: the resident data, the model, its optimizer state,
///   the per-step buffers of fixed size. rise_per_unit is what one more sample adds (activations,
///   input buffers, their gradients).
/// - Each size keeps the largest of its last `window` peaks: a memory peak is not an outlier to
///   drop (one peak over the limit is the failure to avoid), and the same size allocates the
///   same buffers, so its peaks repeat.
/// - Only sizes run within the last `window` measurements count (the others are stale: what a
///   program keeps resident changes, and a line through an old peak would forecast a larger
///   size too low). A size measured again counts again.
/// - With sizes at least a factor line_span (2) apart, the least-squares line through (size,
///   largest peak) gives base and rise_per_unit; peak(n) is that line, but never below a peak
///   measured at a size <= n (a larger batch does not need less). Sizes closer together (128
///   and an epoch's short last batch of 88) would give a slope made of noise: no line.
/// - Without a line, with S the largest size measured at peak P, and L the lowest live heap seen
///   when the stage started (the base hint; 0 if never given), the only safe statements are
///   peak(n) <= the peak of the smallest measured size >= n, for n <= S, and
///   peak(n) <= L + (P - L) * n / S for n > S (the fixed part of P - L counted as if it grew with
///   n, which overestimates). So a measurement can grow the size safely, never shrink it on
///   trust: a second size is measured before the line is believed.
/// - The forecast with headroom h is base + (1 + h) * (peak(n) - base): the headroom scales what
///   the size controls, not the resident data (a 10 % margin on a 60 MiB heap of which 2 MiB
///   depend on the batch is 0.2 MiB, not 6 MiB).
/// - The measured headroom, spread(), is the spread of the peaks of the size run last, relative
///   to its rise above the base: (largest - median) / (median - base), while that size has fewer
///   than `window` peaks; 0 once it has a full window (its largest is then a high quantile).
class memory_model {
 public:
  /// How many distinct sizes the model remembers; the least recently used is forgotten first.
  static constexpr std::size_t max_sizes = 8;
  /// The largest window: peaks kept per size.
  static constexpr std::size_t max_window = 64;
  /// How far apart (largest / smallest) the recent sizes must be for a line through them.
  static constexpr double line_span = 2;

  memory_model() noexcept = default;
  /// A model keeping the last `window` peaks of each size; throws std::invalid_argument unless 1 <=
  /// window <= max_window.
  explicit memory_model(std::size_t window) {
    if (window == 0 || window > max_window)
      throw std::invalid_argument("frugal::memory_model: window must be in [1, " + std::to_string(max_window) +
                                  "], got " + std::to_string(window));
    window_ = window;
  }

  /// One run of the stage at `size` reached `peak` bytes; `start` is the live heap when it began
  /// (the base hint; heap_watch::start_bytes()), when known. Returns whether the peak was
  /// recorded: a run at a size smaller than the run before is not, since the stage may still
  /// have held the larger size's buffers when it began (a loop whose buffers follow the batch
  /// frees them inside the step), so its peak says nothing about its own size; the next run at
  /// that size is recorded. Sizes of 0 and negative or non-finite values are refused: a model
  /// fed garbage would forecast garbage.
  bool add(std::size_t size, double peak, std::optional<double> start = std::nullopt) {
    if (size == 0) throw std::invalid_argument("frugal::memory_model::add: size must be > 0, got 0");
    check_bytes("peak", peak);
    if (start) check_bytes("start", *start);
    const bool held_over = size < last_run_;
    last_run_ = size;
    if (held_over) return false;
    if (start) base_hint_ = base_hint_ ? std::min(*base_hint_, *start) : *start;
    entry& e = entry_for(size);
    e.peaks[e.next] = peak;
    e.next = (e.next + 1) % window_;
    e.count = std::min(e.count + 1, window_);
    e.last_used = ++tick_;
    return true;
  }

  /// Whether no peak has been recorded.
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  /// The size of the last run added, recorded or not (0 when none).
  [[nodiscard]] std::size_t last_run() const noexcept { return last_run_; }
  /// Sizes measured recently (the model's evidence; see the class comment).
  [[nodiscard]] std::size_t sizes() const noexcept {
    std::size_t n = 0;
    for (std::size_t i = 0; i < size_; ++i) n += recent(entries_[i]) ? 1 : 0;
    return n;
  }
  /// Whether base and rise_per_unit come from a line: recent sizes line_span apart or more.
  [[nodiscard]] bool fitted() const noexcept {
    const std::size_t lo = smallest_size();
    return lo > 0 && static_cast<double>(largest_size()) >= line_span * static_cast<double>(lo);
  }
  /// Peaks kept per size (the constructor's `window`).
  [[nodiscard]] std::size_t window() const noexcept { return window_; }
  ///@{
  /// The smallest and largest sizes measured recently (0 when empty).
  [[nodiscard]] std::size_t smallest_size() const noexcept { return extreme(true); }
  [[nodiscard]] std::size_t largest_size() const noexcept { return extreme(false); }
  ///@}
  /// The size run last (0 when empty).
  [[nodiscard]] std::size_t last_size() const noexcept {
    const entry* e = most_recent();
    return e ? e->size : 0;
  }

  /// The largest of the recent peaks measured at this size (nullopt if not measured recently).
  [[nodiscard]] std::optional<double> measured(std::size_t size) const noexcept {
    const entry* e = find(size);
    if (!e || !recent(*e)) return std::nullopt;
    return e->high();
  }

  /// What the size does not control: the line's intercept, else the base hint.
  [[nodiscard]] double base() const noexcept {
    if (size_ == 0) return base_hint_.value_or(0);
    if (!fitted()) return std::min(base_hint_.value_or(0), largest_recent()->high());
    return line().intercept;
  }
  /// Bytes one more unit of size adds: the line's slope, else the bound's (see the class comment).
  [[nodiscard]] double rise_per_unit() const noexcept {
    if (size_ == 0) return 0;
    if (!fitted()) {
      const entry& e = *largest_recent();
      return (e.high() - base()) / static_cast<double>(e.size);
    }
    return line().slope;
  }

  /// The peak expected at size n (0 when empty); see the class comment.
  [[nodiscard]] double peak(std::size_t n) const noexcept {
    if (size_ == 0) return 0;
    double measured_below = 0;           // the largest peak measured recently at a size <= n
    const entry* at_or_above = nullptr;  // the smallest size measured recently >= n
    for (std::size_t i = 0; i < size_; ++i) {
      const entry& e = entries_[i];
      if (!recent(e)) continue;
      if (e.size <= n) measured_below = std::max(measured_below, e.high());
      if (e.size >= n && (!at_or_above || e.size < at_or_above->size)) at_or_above = &e;
    }
    if (!fitted()) {
      if (at_or_above) return at_or_above->high();
      return base() + rise_per_unit() * static_cast<double>(n);
    }
    const fit f = line();
    return std::max(measured_below, f.intercept + f.slope * static_cast<double>(n));
  }

  /// The forecast with headroom h applied to what the size controls: base + (1 + h) * rise.
  [[nodiscard]] double forecast(std::size_t n, double headroom) const noexcept {
    if (size_ == 0) return 0;
    const double b = base();
    return b + (1 + std::max(0.0, headroom)) * std::max(0.0, peak(n) - b);
  }

  /// The measured headroom (see the class comment); 0 when empty.
  [[nodiscard]] double spread() const noexcept {
    const entry* e = most_recent();
    if (!e || e->count >= window_) return 0;
    std::array<double, max_window> v{};
    for (std::size_t i = 0; i < e->count; ++i) v[i] = e->peaks[i];
    std::sort(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(e->count));
    const double median = e->count % 2 ? v[e->count / 2] : (v[e->count / 2 - 1] + v[e->count / 2]) / 2;
    const double rise = median - base();
    if (!(rise > 0)) return 0;
    return std::max(0.0, (v[e->count - 1] - median) / rise);
  }

  /// The largest size in [lo, hi] whose forecast (headroom h) stays within `limit`; 0 if even lo
  /// does not (or the model is empty: nothing is known).
  [[nodiscard]] std::size_t largest_within(double limit, double headroom, std::size_t lo, std::size_t hi) const noexcept {
    if (size_ == 0 || lo == 0 || hi < lo || !(forecast(lo, headroom) <= limit)) return 0;
    while (lo < hi) {  // invariant: forecast(lo) fits; forecast is non-decreasing in n
      const std::size_t mid = lo + (hi - lo + 1) / 2;
      if (forecast(mid, headroom) <= limit)
        lo = mid;
      else
        hi = mid - 1;
    }
    return lo;
  }

  /// Forgets every measurement (for a program that changed what stays resident: a pruned model).
  void clear() noexcept {
    for (entry& e : entries_) e = entry{};
    size_ = 0;
    tick_ = 0;
    last_run_ = 0;
    base_hint_.reset();
  }

 private:
  friend struct detail::state_access;
  struct entry {
    std::size_t size = 0;
    std::array<double, max_window> peaks{};
    std::size_t count = 0;
    std::size_t next = 0;
    std::uint64_t last_used = 0;
    [[nodiscard]] double high() const noexcept {
      double h = 0;
      for (std::size_t i = 0; i < count; ++i) h = std::max(h, peaks[i]);
      return h;
    }
  };
  struct fit {
    double intercept;
    double slope;
  };

  static void check_bytes(const char* field, double v) {
    if (!(std::isfinite(v) && v >= 0))
      throw std::invalid_argument(std::string("frugal::memory_model::add: ") + field +
                                  " must be finite and >= 0, got " + detail::units_impl::shortest(v));
  }

  [[nodiscard]] const entry* find(std::size_t size) const noexcept {
    for (std::size_t i = 0; i < size_; ++i)
      if (entries_[i].size == size) return &entries_[i];
    return nullptr;
  }
  [[nodiscard]] const entry* most_recent() const noexcept {
    const entry* best = nullptr;
    for (std::size_t i = 0; i < size_; ++i)
      if (!best || entries_[i].last_used > best->last_used) best = &entries_[i];
    return best;
  }
  [[nodiscard]] bool recent(const entry& e) const noexcept { return tick_ - e.last_used < window_; }
  [[nodiscard]] const entry* largest_recent() const noexcept {
    const entry* best = nullptr;
    for (std::size_t i = 0; i < size_; ++i)
      if (recent(entries_[i]) && (!best || entries_[i].size > best->size)) best = &entries_[i];
    return best;
  }
  [[nodiscard]] std::size_t extreme(bool smallest) const noexcept {
    std::size_t out = 0;
    for (std::size_t i = 0; i < size_; ++i)
      if (recent(entries_[i]) && (out == 0 || (smallest ? entries_[i].size < out : entries_[i].size > out)))
        out = entries_[i].size;
    return out;
  }

  entry& entry_for(std::size_t size) {
    for (std::size_t i = 0; i < size_; ++i)
      if (entries_[i].size == size) return entries_[i];
    std::size_t slot = size_;
    if (size_ == max_sizes) {
      slot = 0;
      for (std::size_t i = 1; i < size_; ++i)
        if (entries_[i].last_used < entries_[slot].last_used) slot = i;
    } else {
      ++size_;
    }
    entries_[slot] = entry{};
    entries_[slot].size = size;
    return entries_[slot];
  }

  /// Least squares through (size, largest peak); a slope below 0 is noise (a larger batch does
  /// not free memory) and is flattened to the mean.
  [[nodiscard]] fit line() const noexcept {
    double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (std::size_t i = 0; i < size_; ++i) {
      if (!recent(entries_[i])) continue;
      const double x = static_cast<double>(entries_[i].size);
      const double y = entries_[i].high();
      n += 1;
      sx += x;
      sy += y;
      sxx += x * x;
      sxy += x * y;
    }
    double slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
    if (!(slope > 0)) slope = 0;
    return fit{(sy - slope * sx) / n, slope};
  }

  std::size_t window_ = 16;
  std::array<entry, max_sizes> entries_{};
  std::size_t size_ = 0;
  std::uint64_t tick_ = 0;
  std::optional<double> base_hint_;
  std::size_t last_run_ = 0;  ///< the size of the last run, recorded or not
};

}  // namespace frugal
