// Structured pruning of the MLP when the controller decides the planned work will not fit the
// budget (--prune): a prune decision (frugal::prune_rule) gives the fraction of the work's cost
// to remove; frugal's compression plan turns it into a number of hidden units of one layer, and
// frugal's structured pruning removes the least important ones (rows of the layer before,
// columns of the layer after), with the optimizer's moments, the pending gradient and the
// trainer's buffers. Every product after it is smaller, so a step really costs less.
#pragma once

#include "mlp.hpp"
#include "trainer.hpp"

#include <frugal/eigen/compression_plan.hpp>
#include <frugal/eigen/structured_prune.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fmnist {

// --prune and its bounds.
struct prune_options {
  bool enabled = false;
  std::size_t layer = 1;     // the hidden layer pruned, 1 = the first (784 -> it: most of the FLOPs)
  int min_units = 16;        // it never goes narrower
  double max_fraction = 0.5; // of the work's cost, in one decision
};

// One pruning: the layer, its width before and after, and a step's FLOPs at the batch the run
// uses, before and after (trainer::step_flops: what the ops will charge).
struct prune_event {
  std::uint64_t step = 0;    // the controller's steps when it was decided
  std::size_t layer = 0;
  int units_before = 0;
  int units_after = 0;
  double cost_fraction = 0;  // the controller's decision::prune_fraction()
  std::uint64_t step_flops_before = 0;
  std::uint64_t step_flops_after = 0;
  std::string plan;          // frugal's plan in words
};

[[nodiscard]] inline frugal::optimizer_kind frugal_optimizer(optimizer_kind k) noexcept {
  return k == optimizer_kind::sgd ? frugal::optimizer_kind::sgd_momentum : frugal::optimizer_kind::adam;
}

// Acts on a prune decision: removes from hidden layer o.layer the units whose absence cuts the
// cost of the `samples_left` planned samples (in steps of `batch`) by `cost_fraction`, never going
// below o.min_units, the units of smallest L2 norm (frugal::unit_importance::l2_norm) first.
// nullopt when the layer is already at its floor (nothing removed).
[[nodiscard]] inline std::optional<prune_event> prune_hidden_layer(mlp& model, optimizer& opt, trainer& tr,
                                                                   const prune_options& o, double cost_fraction,
                                                                   std::uint64_t samples_left, std::size_t batch) {
  const frugal::mlp_shape shape = frugal_shape(model.sizes());
  const int width = model.sizes()[o.layer];
  if (width <= o.min_units || samples_left == 0 || !(cost_fraction > 0)) return std::nullopt;
  const frugal::training_work work{samples_left, batch, frugal_optimizer(opt.kind()), true};
  const frugal::prune_plan plan = frugal::plan_prune_for_cost_fraction(
      shape, o.layer, std::min(cost_fraction, 0.999), work, static_cast<std::uint64_t>(o.min_units));
  if (plan.units_to_remove == 0) return std::nullopt;

  prune_event e;
  e.layer = o.layer;
  e.units_before = width;
  e.cost_fraction = cost_fraction;
  e.step_flops_before = tr.step_flops(static_cast<Eigen::Index>(batch));
  e.plan = plan.message;
  const parameters& p = model.params();
  const frugal::unit_selection kept = frugal::select_units_to_remove(
      frugal::hidden_unit_scores(p.w[o.layer - 1], p.b[o.layer - 1], p.w[o.layer]),
      static_cast<Eigen::Index>(plan.units_to_remove));
  model.keep_units(o.layer, kept);
  opt.keep_units(o.layer, kept);
  tr.keep_units(o.layer, kept);
  e.units_after = model.sizes()[o.layer];
  e.step_flops_after = tr.step_flops(static_cast<Eigen::Index>(batch));
  return e;
}

}  // namespace fmnist
