// Quantization of the MLP when the controller decides the planned work will not fit the budget
// (--quantize): a quantize decision (frugal::quantize_rule, 32 -> 8 bits) freezes the first
// --quantize-layers layers as int8 per-channel weights. From then on they compute with frugal's
// int8 product and are no longer trained, and the layers after them keep training on what they
// compute (the way QLoRA trains adapters on a frozen, quantized base).
//
// Why freeze: an int8 multiply-accumulate costs 2 FLOPs like a float one (frugal counts integer
// operations like float ones), and weights that still change would have to be quantized again at
// every step (on this CPU that costs more than the int8 product saves: README, pruning and
// quantization). Frozen int8 weights are quantized once; the saving is the frozen layers'
// backward products and updates, counted, plus the int8 product's speed, measured.
#pragma once

#include "mlp.hpp"
#include "trainer.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>

namespace fmnist {

// --quantize and its bound.
struct quantize_options {
  bool enabled = false;
  std::size_t layers = 1;  // frozen as int8 when the rule fires: the first N (1: the 784-wide one)
};

// One quantization: the layers frozen, their bytes as float and as int8, and a step's FLOPs at
// the run's batch before and after (trainer::step_flops: what the ops will charge).
struct quantize_event {
  std::size_t layers_before = 0;
  std::size_t layers_after = 0;
  std::uint64_t float_bytes = 0;  // the newly frozen layers' weights, float32
  std::uint64_t int8_bytes = 0;   // the same as int8 values and per-row scales
  std::uint64_t step_flops_before = 0;
  std::uint64_t step_flops_after = 0;
};

// A step's FLOPs at `batch` with the first `layers` layers frozen, as a fraction of a step's now
// (what frugal::quantize_rule::expected_cost is told), from the formulas: nothing is changed.
[[nodiscard]] inline double frozen_step_cost_fraction(const trainer& tr, std::size_t layers, Eigen::Index batch) {
  return static_cast<double>(tr.step_flops(batch, layers)) / static_cast<double>(tr.step_flops(batch));
}

// Acts on a quantize decision: freezes the first o.layers layers as int8. nullopt when they are
// frozen already (nothing changed). The trainer's buffers stay: the shapes do not change.
[[nodiscard]] inline std::optional<quantize_event> freeze_leading_layers(mlp& model, const trainer& tr,
                                                                        const quantize_options& o, Eigen::Index batch) {
  if (model.frozen_layers() >= o.layers) return std::nullopt;
  quantize_event e;
  e.layers_before = model.frozen_layers();
  e.step_flops_before = tr.step_flops(batch);
  model.freeze_as_int8(o.layers);
  for (std::size_t l = e.layers_before; l < o.layers; ++l) {
    e.float_bytes += static_cast<std::uint64_t>(model.params().w[l].size()) * sizeof(float);
    e.int8_bytes += model.int8_weights(l).bytes();
  }
  e.layers_after = model.frozen_layers();
  e.step_flops_after = tr.step_flops(batch);
  return e;
}

}  // namespace fmnist
