/// @file
/// One decision out of several processes' votes (an MPI job's ranks, <frugal/mpi.hpp>): the
/// rule that makes every process take the same one, free of any transport so it can be tested.
#pragma once

#include <frugal/decision.hpp>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace frugal {

/// The decision every process takes, given each process's vote (votes[i] is process i's, all
/// made at the same checkpoint). Deterministic: every process that merges the same votes gets
/// the same result, so each can merge on its own after exchanging them.
///
/// The most careful vote wins, action by action:
///  - cancelled, else stop, when any process's vote has it, with the cause and words of the
///    lowest-numbered such process; a stop takes no batch change, epoch end, prune or quantize
///    with it (the controller drops them too);
///  - otherwise end_epoch when any vote has it; the smallest batch size voted (a memory limit
///    on one process binds them all; a vote of 0 offers none); prune and quantize with the
///    fraction, bit width and rule of the lowest-numbered process that voted for them.
/// `current_batch` is the batch size in force (the votes' batch sizes are the next step's): a
/// result below it shrinks the batch, above it grows it (0: the batch size is not managed).
///
/// The words: when every vote is the same, the first process's reason; otherwise the reason of
/// each process whose vote gave part of the result, saying whose it is ("rank 2: stop (signal):
/// ..."), in the order the parts are taken. Throws std::invalid_argument for no
/// votes.
[[nodiscard]] inline decision_vote merge_votes(const std::vector<decision_vote>& votes, std::size_t current_batch) {
  if (votes.empty()) throw std::invalid_argument("frugal::merge_votes: votes must not be empty, got none");
  const auto first_with = [&](action a) -> std::size_t {
    for (std::size_t i = 0; i < votes.size(); ++i)
      if (votes[i].has(a)) return i;
    return votes.size();
  };
  bool unanimous = true;
  for (const decision_vote& v : votes) unanimous = unanimous && v.same_choice(votes.front());

  decision_vote agreed;
  agreed.batch_size = current_batch;
  std::vector<std::size_t> whose;  // the processes whose clauses the result takes, in order
  const auto take = [&](std::size_t i) {
    for (std::size_t w : whose)
      if (w == i) return;
    whose.push_back(i);
  };

  const std::size_t cancelled = first_with(action::cancelled);
  const std::size_t stopped = cancelled < votes.size() ? cancelled : first_with(action::stop);
  if (stopped < votes.size()) {
    const decision_vote& v = votes[stopped];
    agreed.actions = static_cast<std::uint8_t>(v.actions & (static_cast<std::uint8_t>(action::stop) |
                                                            static_cast<std::uint8_t>(action::cancelled)));
    agreed.cause = v.cause;
    take(stopped);
  } else {
    if (const std::size_t i = first_with(action::end_epoch); i < votes.size()) {
      agreed.actions = static_cast<std::uint8_t>(agreed.actions | static_cast<std::uint8_t>(action::end_epoch));
      take(i);
    }
    if (current_batch > 0) {
      // A vote of batch 0 has no batch to offer (a process that does not manage it): skipped.
      std::size_t smallest = votes.size();
      for (std::size_t i = 0; i < votes.size(); ++i)
        if (votes[i].batch_size > 0 && (smallest == votes.size() || votes[i].batch_size < votes[smallest].batch_size))
          smallest = i;
      const std::size_t b = smallest < votes.size() ? votes[smallest].batch_size : current_batch;
      if (b != current_batch) {
        agreed.batch_size = b;
        agreed.actions = static_cast<std::uint8_t>(
            agreed.actions | static_cast<std::uint8_t>(b < current_batch ? action::shrink_batch : action::grow_batch));
        take(smallest);
      }
    }
    if (const std::size_t i = first_with(action::prune); i < votes.size()) {
      agreed.actions = static_cast<std::uint8_t>(agreed.actions | static_cast<std::uint8_t>(action::prune));
      agreed.prune_fraction = votes[i].prune_fraction;
      agreed.prune_rule = votes[i].prune_rule;
      take(i);
    }
    if (const std::size_t i = first_with(action::quantize); i < votes.size()) {
      agreed.actions = static_cast<std::uint8_t>(agreed.actions | static_cast<std::uint8_t>(action::quantize));
      agreed.quantize_bits = votes[i].quantize_bits;
      agreed.quantize_rule = votes[i].quantize_rule;
      take(i);
    }
  }

  if (unanimous) {
    agreed.reason = votes.front().reason;
  } else {
    for (std::size_t i : whose) {
      if (votes[i].reason.empty()) continue;
      if (!agreed.reason.empty()) agreed.reason += "; ";
      agreed.reason += "rank " + std::to_string(i) + ": " + votes[i].reason;
    }
  }
  return agreed;
}

}  // namespace frugal
