// What a frugal::controller decided and measured, kept for the report: every decision other than
// continue, the batch-size history, compression actions with their measured effect, the metrics.
#pragma once

#include <frugal/decision.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace frugal {

// One decision other than continue, or a change of the run's state between checkpoints.
struct decision_record {
  std::uint64_t step_index = 0;   // steps ended when it was made
  std::uint64_t epoch_index = 0;  // the epoch it belongs to (0 for the first)
  // Where: "step" or "epoch" (a checkpoint), "start" (the budget was already spent when the
  // controller was made), "limits" (reload_limits lifted or made a stop), "end" (end_run: a
  // stop requested or cancelled after the last checkpoint), "effect" (a rule's action was
  // measured and found not to lower what it watches).
  std::string at;
  std::string actions;            // "stop", "shrink_batch+end_epoch", "stop_lifted", ...
  stop_reason cause = stop_reason::none;
  std::string reason;             // the decision's words
};

// The batch size changed (after callbacks): from, to, and why.
struct batch_change_record {
  std::uint64_t step_index = 0;
  std::size_t from = 0;
  std::size_t to = 0;
  std::size_t accumulation = 1;
  std::string reason;
};

// A prune or quantize action the loop was told to take, and what it did to the cost per sample
// of each resource its rule watches: `before` is the median of the steps before the action,
// `after` the median of the steps over the rule's cooldown after it (unknown until then).
struct compression_record {
  struct effect {
    std::string resource;
    double before = 0;
    std::optional<double> after;
  };
  std::uint64_t step_index = 0;
  std::uint64_t epoch_index = 0;
  action kind = action::prune;  // prune or quantize
  std::string rule;             // the rule's name
  double fraction = 0;          // prune: decision::prune_fraction()
  int bits = 0;                 // quantize: decision::quantize_bits()
  std::string reason;
  std::vector<effect> effects;
  // Whether some watched cost per sample fell by at least 1 %; a rule whose action did not is
  // not fired again.
  std::optional<bool> lowered;
};

// The metrics an end_epoch reported.
struct metric_record {
  std::uint64_t epoch_index = 0;
  std::vector<std::pair<std::string, double>> metrics;
};

// Everything above, in order. Decisions are bounded (a run that the loop keeps driving after a
// stop repeats it at every checkpoint: those repeats are counted, not kept).
struct controller_history {
  static constexpr std::size_t max_decisions = 4096;
  std::vector<decision_record> decisions;
  std::uint64_t decisions_dropped = 0;   // past max_decisions
  std::uint64_t repeated_stops = 0;      // checkpoints that only repeated a stop
  std::vector<batch_change_record> batch_changes;
  std::vector<compression_record> compressions;
  std::vector<metric_record> metrics;

  void add(decision_record r) {
    if (decisions.size() < max_decisions)
      decisions.push_back(std::move(r));
    else
      ++decisions_dropped;
  }
};

// "shrink_batch+end_epoch": the actions a decision carries, most drastic first.
[[nodiscard]] inline std::string actions_text(const decision& d) {
  std::string out;
  for (action a : {action::cancelled, action::stop, action::end_epoch, action::quantize, action::prune,
                   action::shrink_batch, action::grow_batch})
    if (d.has(a)) out += (out.empty() ? "" : "+") + std::string(to_string(a));
  return out.empty() ? std::string(to_string(action::continue_run)) : out;
}

}  // namespace frugal
