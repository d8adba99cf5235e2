/// @file
/// What a frugal::controller decided and measured, kept for the report: every decision other than
/// continue, the batch-size history, compression actions with their measured effect, the metrics.
#pragma once

#include <frugal/decision.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace frugal {

/// One decision other than continue, or a change of the run's state between checkpoints.
struct decision_record {
  std::uint64_t step_index = 0;   ///< steps ended when it was made
  std::uint64_t epoch_index = 0;  ///< the epoch it belongs to (0 for the first)
  /// Where: "step" or "epoch" (a checkpoint), "start" (the budget was already spent when the
  /// controller was made), "limits" (reload_limits lifted or made a stop), "end" (end_run: a
  /// stop requested or cancelled after the last checkpoint), "effect" (a rule's action was
  /// measured and found not to lower what it watches).
  std::string at;
  std::string actions;            ///< "stop", "shrink_batch+end_epoch", "stop_lifted", ...
  /// Why the run stops; none unless the actions include a stop.
  stop_reason cause = stop_reason::none;
  std::string reason;             ///< the decision's words
};

/// The batch size changed (after callbacks): from, to, and why.
struct batch_change_record {
  /// Steps ended when the change was decided.
  std::uint64_t step_index = 0;
  /// The batch size before (samples per step).
  std::size_t from = 0;
  /// The batch size after.
  std::size_t to = 0;
  /// Gradient-accumulation steps at the new size.
  std::size_t accumulation = 1;
  /// Why, in words.
  std::string reason;
};

/// A prune or quantize action the loop was told to take, and what it did to the cost per sample
/// of each resource its rule watches: `before` is the median of the steps before the action,
/// `after` the median of the steps over the rule's cooldown after it (unknown until then).
struct compression_record {
  /// One watched resource's cost per sample, before and after the action.
  struct effect {
    /// The resource or user unit.
    std::string resource;
    /// Median cost per sample over the steps before the action, in the resource's unit.
    double before = 0;
    /// The same over the rule's cooldown after it; none until measured.
    std::optional<double> after;
  };
  /// Steps ended when the action was decided.
  std::uint64_t step_index = 0;
  /// The epoch it belongs to (0 for the first).
  std::uint64_t epoch_index = 0;
  action kind = action::prune;  ///< prune or quantize
  std::string rule;             ///< the rule's name
  double fraction = 0;          ///< prune: decision::prune_fraction()
  int bits = 0;                 ///< quantize: decision::quantize_bits()
  /// The decision's words.
  std::string reason;
  /// One per resource the rule watches.
  std::vector<effect> effects;
  /// Whether some watched cost per sample fell by at least 1 %; a rule whose action did not is
  /// not fired again.
  std::optional<bool> lowered;
};

/// The metrics an end_epoch reported.
struct metric_record {
  /// The epoch (0 for the first).
  std::uint64_t epoch_index = 0;
  /// (name, value), as the epoch reported them.
  std::vector<std::pair<std::string, double>> metrics;
};

/// Everything above, in order. Decisions are bounded (a run that the loop keeps driving after a
/// stop repeats it at every checkpoint: those repeats are counted, not kept).
struct controller_history {
  /// The most decisions kept; later ones are counted in decisions_dropped.
  static constexpr std::size_t max_decisions = 4096;
  /// The decisions, in order (at most max_decisions).
  std::vector<decision_record> decisions;
  std::uint64_t decisions_dropped = 0;   ///< past max_decisions
  std::uint64_t repeated_stops = 0;      ///< checkpoints that only repeated a stop
  /// Every batch-size change, in order.
  std::vector<batch_change_record> batch_changes;
  /// Every prune or quantize action, in order.
  std::vector<compression_record> compressions;
  /// Every epoch's metrics, in order.
  std::vector<metric_record> metrics;

  /// Keeps `r`, or counts it in decisions_dropped past max_decisions.
  void add(decision_record r) {
    if (decisions.size() < max_decisions)
      decisions.push_back(std::move(r));
    else
      ++decisions_dropped;
  }
};

/// "shrink_batch+end_epoch": the actions a decision carries, most drastic first.
[[nodiscard]] inline std::string actions_text(const decision& d) {
  std::string out;
  for (action a : {action::cancelled, action::stop, action::end_epoch, action::quantize, action::prune,
                   action::shrink_batch, action::grow_batch})
    if (d.has(a)) out += (out.empty() ? "" : "+") + std::string(to_string(a));
  return out.empty() ? std::string(to_string(action::continue_run)) : out;
}

}  // namespace frugal
