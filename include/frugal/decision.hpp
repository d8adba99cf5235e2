/// @file
/// What a training loop tells the controller at a checkpoint (frugal::step, frugal::epoch) and
/// what the controller answers (frugal::decision: continue, shrink the batch, end the epoch, stop,
/// prune, quantize, cancelled -- with the reason in words).
#pragma once

#include <frugal/units.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace frugal {

class controller;

/// The end of one step (one forward/backward of a batch). Every field is optional.
///   ctl.end_step(frugal::step{}.loss(l).samples(n).peak_bytes(watch.peak_bytes()));
class step {
 public:
  /// The training loss of the step; a NaN or infinite loss stops the run (non_finite) unless
  /// the controller's check_finite_loss is off. Any value is accepted here.
  step& loss(double value) noexcept {
    loss_ = value;
    return *this;
  }
  /// Samples in the step's batch (the last batch of an epoch may be short). Without it the
  /// controller assumes its batch_size().
  step& samples(std::size_t n) {
    if (n == 0) throw std::invalid_argument("frugal::step: samples must be > 0, got 0");
    samples_ = n;
    return *this;
  }
  /// The level the heap reached during the step, in bytes (frugal::heap_watch::peak_bytes()
  /// measures it). Without it, the controller measures the heap between its checkpoints itself
  /// (when the allocation hooks are installed).
  step& peak_bytes(double bytes) {
    check_bytes("peak_bytes", bytes);
    peak_bytes_ = bytes;
    return *this;
  }
  /// The level of the heap when the step started (frugal::heap_watch::start_bytes()): the
  /// memory model's hint of what the batch size does not control (memory_model.hpp).
  step& start_bytes(double bytes) {
    check_bytes("start_bytes", bytes);
    start_bytes_ = bytes;
    return *this;
  }

  /// The step's training loss; none when not given.
  [[nodiscard]] std::optional<double> loss() const noexcept { return loss_; }
  /// Samples the step processed; none when not given (the controller then assumes its batch size).
  [[nodiscard]] std::optional<std::size_t> samples() const noexcept { return samples_; }
  /// The heap level the step reached, in bytes; none when not given.
  [[nodiscard]] std::optional<double> peak_bytes() const noexcept { return peak_bytes_; }
  /// The heap level when the step started, in bytes; none when not given.
  [[nodiscard]] std::optional<double> start_bytes() const noexcept { return start_bytes_; }

 private:
  static void check_bytes(const char* field, double bytes) {
    if (!(std::isfinite(bytes) && bytes >= 0))
      throw std::invalid_argument(std::string("frugal::step: ") + field + " must be finite and >= 0, got " +
                                  detail::units_impl::shortest(bytes));
  }

  std::optional<double> loss_;
  std::optional<std::size_t> samples_;
  std::optional<double> peak_bytes_;
  std::optional<double> start_bytes_;
};

/// The end of one epoch, with the metrics evaluated at its end (what early stopping watches).
///   ctl.end_epoch(frugal::epoch{}.metric("val_loss", v).metric("val_acc", a));
class epoch {
 public:
  /// Any value (NaN included: early stopping may be watching for it). A repeated name replaces.
  epoch& metric(std::string name, double value) {
    if (name.empty()) throw std::invalid_argument("frugal::epoch: metric name must not be empty, got ''");
    for (auto& m : metrics_)
      if (m.first == name) {
        m.second = value;
        return *this;
      }
    metrics_.emplace_back(std::move(name), value);
    return *this;
  }
  /// The value of metric `name`; none when the epoch did not report it.
  [[nodiscard]] std::optional<double> metric(std::string_view name) const noexcept {
    for (const auto& m : metrics_)
      if (m.first == name) return m.second;
    return std::nullopt;
  }
  /// Every metric, (name, value), in the order first set.
  [[nodiscard]] const std::vector<std::pair<std::string, double>>& metrics() const noexcept { return metrics_; }

 private:
  std::vector<std::pair<std::string, double>> metrics_;
};

/// The actions a decision can carry. Several can be set at once (shrink the batch and end the
/// epoch; prune and quantize), so a decision holds a set, not one value.
enum class action : std::uint8_t {
  continue_run = 0,
  shrink_batch = 1u << 0,
  grow_batch = 1u << 1,
  end_epoch = 1u << 2,
  stop = 1u << 3,
  prune = 1u << 4,
  quantize = 1u << 5,
  cancelled = 1u << 6,
};

/// The action's name ("continue", "shrink_batch", "stop", ...); "unknown" for an out-of-range
/// value.
[[nodiscard]] constexpr std::string_view to_string(action a) noexcept {
  switch (a) {
    case action::continue_run: return "continue";
    case action::shrink_batch: return "shrink_batch";
    case action::grow_batch: return "grow_batch";
    case action::end_epoch: return "end_epoch";
    case action::stop: return "stop";
    case action::prune: return "prune";
    case action::quantize: return "quantize";
    case action::cancelled: return "cancelled";
  }
  return "unknown";
}

/// Why a run stopped (Ceres' termination type, for frugal).
enum class stop_reason : std::uint8_t {
  none,              ///< not stopped
  budget_exhausted,  ///< a limit was reached
  forecast,          ///< stopped before a step (or epoch) that the forecast says would cross a limit
  early_stopping,    ///< a metric stopped improving, or reached its stopping threshold
  diverged,          ///< a metric crossed its divergence threshold
  non_finite,        ///< a NaN or infinite loss or metric
  deadline,          ///< the hard-deadline watchdog fired (parallel work cancelled)
  user,              ///< the program or a callback asked for it
  signal,            ///< a signal arrived (SIGTERM, SIGINT, SIGUSR1: see <frugal/signals.hpp>)
};

/// The reason's name ("none", "budget_exhausted", "forecast", ...); "unknown" for an out-of-range
/// value.
[[nodiscard]] constexpr std::string_view to_string(stop_reason r) noexcept {
  switch (r) {
    case stop_reason::none: return "none";
    case stop_reason::budget_exhausted: return "budget_exhausted";
    case stop_reason::forecast: return "forecast";
    case stop_reason::early_stopping: return "early_stopping";
    case stop_reason::diverged: return "diverged";
    case stop_reason::non_finite: return "non_finite";
    case stop_reason::deadline: return "deadline";
    case stop_reason::user: return "user";
    case stop_reason::signal: return "signal";
  }
  return "unknown";
}

/// The controller's answer at a checkpoint. Callbacks receive it mutable (frugal::decision_event)
/// and may veto or amend it before the loop sees it.
///   frugal::decision d = ctl.end_step(frugal::step{}.loss(l).samples(n));
///   if (d.has(frugal::action::prune)) prune(model, d.prune_fraction());
///   if (d.stops()) break;  if (d.ends_epoch()) break;   batch = ctl.batch_size();
class [[nodiscard]] decision {
 public:
  decision() = default;

  /// No action at all: keep going as before.
  [[nodiscard]] bool is_continue() const noexcept { return actions_ == 0; }
  /// Whether the decision carries `a`; has(action::continue_run) is is_continue().
  [[nodiscard]] bool has(action a) const noexcept {
    return a == action::continue_run ? actions_ == 0 : (actions_ & static_cast<std::uint8_t>(a)) != 0;
  }
  /// Stop the run (stop or cancelled).
  [[nodiscard]] bool stops() const noexcept { return has(action::stop) || has(action::cancelled); }
  /// Leave the epoch's loop now (it ends early, or the run stops).
  [[nodiscard]] bool ends_epoch() const noexcept { return stops() || has(action::end_epoch); }
  /// The most drastic action: cancelled > stop > end_epoch > quantize > prune > shrink > grow.
  [[nodiscard]] action primary() const noexcept {
    for (action a : {action::cancelled, action::stop, action::end_epoch, action::quantize, action::prune,
                     action::shrink_batch, action::grow_batch})
      if (has(a)) return a;
    return action::continue_run;
  }

  /// The batch size (and gradient-accumulation steps) for the next step: the controller's
  /// batch_size() and accumulation_steps() once the decision is made. 0 when the controller
  /// does not manage the batch size.
  [[nodiscard]] std::size_t batch_size() const noexcept { return batch_; }
  /// The gradient-accumulation steps for the next step (0 when the batch size is not managed).
  [[nodiscard]] std::size_t accumulation_steps() const noexcept { return accumulation_; }
  /// The fraction of the per-step cost of the watched resources to remove by pruning, in (0, 1]
  /// (0 without prune): the planned work's shortfall, 1 - left / forecast, capped by the rule's
  /// max_fraction. A fraction of cost, not of weights: map it to units through the cost each
  /// unit carries (README, "Pruning and quantization").
  [[nodiscard]] double prune_fraction() const noexcept { return prune_fraction_; }
  /// The bit width to quantize to (0 without quantize).
  [[nodiscard]] int quantize_bits() const noexcept { return quantize_bits_; }
  /// Why the run stops (none unless stops()).
  [[nodiscard]] stop_reason cause() const noexcept { return cause_; }
  /// A stop decided at an earlier checkpoint, repeated because the loop checked in again: a stop
  /// is one event (frugal::stop_event fires once), so act on it where this is false.
  [[nodiscard]] bool repeats_stop() const noexcept { return repeats_stop_ && stops(); }
  /// The reasons in words, one clause per action: "stop (forecast): wall: 28.9 s used of 30 s,
  /// next step forecast 1.40 s".
  [[nodiscard]] const std::string& reason() const noexcept { return reason_; }

  // --- amending (from a callback's decision hook) ---

  /// Back to "continue": every action is dropped, except a cancellation (the watchdog has
  /// already cancelled the parallel work; pretending otherwise would lie to the loop).
  decision& veto() {
    const bool cancelled = has(action::cancelled);
    actions_ = cancelled ? static_cast<std::uint8_t>(action::cancelled) : 0;
    if (!cancelled) {
      cause_ = stop_reason::none;
      batch_ = from_batch_;
      prune_fraction_ = 0;
      quantize_bits_ = 0;
    }
    return *this;
  }
  /// Drops one action (a cancellation stays, see veto()).
  decision& veto(action a) {
    if (a == action::continue_run || a == action::cancelled) return *this;
    clear(a);
    if (a == action::stop && !has(action::cancelled)) cause_ = stop_reason::none;
    if (a == action::shrink_batch || a == action::grow_batch) batch_ = from_batch_;
    if (a == action::prune) prune_fraction_ = 0;
    if (a == action::quantize) quantize_bits_ = 0;
    return *this;
  }
  /// Stops the run (stop_reason::user unless given; an existing stop keeps its cause).
  decision& stop(std::string why, stop_reason cause = stop_reason::user) {
    if (cause == stop_reason::none)
      throw std::invalid_argument("frugal::decision::stop: cause must not be none");
    // The first cause of a stop stays (a stop the decision already carries keeps its cause).
    if (!stops()) cause_ = cause;
    set(action::stop);
    clear(action::shrink_batch);
    clear(action::grow_batch);
    batch_ = from_batch_;
    note("stop (" + std::string(frugal::to_string(cause)) + "): " + why);
    return *this;
  }
  /// Ends the epoch now (its evaluation then runs); `why` is added to reason().
  decision& end_epoch(std::string why) {
    set(action::end_epoch);
    note("end epoch: " + why);
    return *this;
  }
  /// Sets the next batch size (a shrink or a grow relative to the current one). The controller
  /// checks it against its [min, max] and rejects the amendment otherwise.
  decision& batch_size(std::size_t n) {
    if (n == 0) throw std::invalid_argument("frugal::decision::batch_size: must be > 0, got 0");
    if (from_batch_ == 0)
      throw std::invalid_argument("frugal::decision::batch_size: the controller does not manage the batch size");
    clear(action::shrink_batch);
    clear(action::grow_batch);
    batch_ = n;
    if (n < from_batch_) set(action::shrink_batch);
    if (n > from_batch_) set(action::grow_batch);
    return *this;
  }
  /// Asks to prune `fraction` of the per-step cost; throws std::invalid_argument unless fraction is
  /// in (0, 1].
  decision& prune(double fraction, std::string why) {
    if (!(fraction > 0 && fraction <= 1))
      throw std::invalid_argument("frugal::decision::prune: fraction must be in (0, 1], got " +
                                  detail::units_impl::shortest(fraction));
    set(action::prune);
    prune_fraction_ = fraction;
    note("prune " + detail::units_impl::sig3(fraction * 100) + " %: " + why);
    return *this;
  }
  /// Asks to quantize to `bits` bits; throws std::invalid_argument unless 1 <= bits <= 64.
  decision& quantize(int bits, std::string why) {
    if (bits < 1 || bits > 64)
      throw std::invalid_argument("frugal::decision::quantize: bits must be in [1, 64], got " + std::to_string(bits));
    set(action::quantize);
    quantize_bits_ = bits;
    note("quantize to " + std::to_string(bits) + " bits: " + why);
    return *this;
  }

  /// "stop (forecast): ..." or "continue".
  [[nodiscard]] std::string to_string() const {
    if (reason_.empty()) return std::string(frugal::to_string(primary()));
    return reason_;
  }

  /// Same actions, batch size, prune fraction, bit width and cause (the reasons' words are not
  /// compared).
  friend bool operator==(const decision& a, const decision& b) noexcept {
    return a.actions_ == b.actions_ && a.batch_ == b.batch_ && a.prune_fraction_ == b.prune_fraction_ &&
           a.quantize_bits_ == b.quantize_bits_ && a.cause_ == b.cause_;
  }
  /// Not operator==.
  friend bool operator!=(const decision& a, const decision& b) noexcept { return !(a == b); }

 private:
  friend class controller;

  void set(action a) noexcept { actions_ = static_cast<std::uint8_t>(actions_ | static_cast<std::uint8_t>(a)); }
  void clear(action a) noexcept { actions_ = static_cast<std::uint8_t>(actions_ & ~static_cast<std::uint8_t>(a)); }
  void note(const std::string& clause) {
    if (!reason_.empty()) reason_ += "; ";
    reason_ += clause;
  }

  std::uint8_t actions_ = 0;
  bool repeats_stop_ = false;
  stop_reason cause_ = stop_reason::none;
  std::size_t from_batch_ = 0;  ///< the batch size when the decision was made
  std::size_t batch_ = 0;
  std::size_t accumulation_ = 1;
  double prune_fraction_ = 0;
  int quantize_bits_ = 0;
  std::string reason_;
};

/// A decision in plain fields, for processes that must all take the same one (an MPI job's
/// ranks, <frugal/mpi.hpp>): controller::agree_with() hands the agreement each checkpoint's
/// decision as a vote and then takes the vote the agreement leaves (merge_votes() in
/// <frugal/agreement.hpp> is the rule that makes it the same everywhere).
struct decision_vote {
  /// No rule behind an action (a callback's amendment, or no such action).
  static constexpr std::size_t no_rule = static_cast<std::size_t>(-1);

  std::uint8_t actions = 0;                 ///< frugal::action bits, or-ed (0: continue)
  stop_reason cause = stop_reason::none;    ///< why it stops (none unless it does)
  std::size_t batch_size = 0;               ///< the next step's batch size (0: not managed)
  double prune_fraction = 0;                ///< with prune: the fraction of the per-step cost, in (0, 1]
  int quantize_bits = 0;                    ///< with quantize: the bit width, in [1, 64]
  std::size_t prune_rule = no_rule;         ///< the controller's prune rule behind prune (its index)
  std::size_t quantize_rule = no_rule;      ///< the controller's quantize rule behind quantize (its index)
  bool repeats_stop = false;                ///< a stop decided at an earlier checkpoint (read only)
  std::string reason;                       ///< the words, as decision::reason()

  /// Whether the vote carries `a`; has(action::continue_run) is "no action at all".
  [[nodiscard]] bool has(action a) const noexcept {
    return a == action::continue_run ? actions == 0 : (actions & static_cast<std::uint8_t>(a)) != 0;
  }
  /// Whether it stops the run (stop or cancelled).
  [[nodiscard]] bool stops() const noexcept { return has(action::stop) || has(action::cancelled); }
  /// Same actions, cause, batch size, fraction, bits and rules as `other` (not the words).
  [[nodiscard]] bool same_choice(const decision_vote& other) const noexcept {
    return actions == other.actions && cause == other.cause && batch_size == other.batch_size &&
           prune_fraction == other.prune_fraction && quantize_bits == other.quantize_bits &&
           prune_rule == other.prune_rule && quantize_rule == other.quantize_rule;
  }
};

}  // namespace frugal
