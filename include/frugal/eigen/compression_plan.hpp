/// @file
/// Compression sized by the budget: the FLOPs and bytes of a dense MLP exactly as frugal's ops
/// charge them, and plans saying how many hidden units to prune and whether to quantize to fit.
#pragma once

#include <frugal/eigen/ops.hpp>
#include <frugal/eigen/quantize.hpp>
#include <frugal/units.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace frugal {

/// The optimizer a training step runs, as ops.hpp charges it (none: no update).
enum class optimizer_kind { none, sgd, sgd_momentum, adam };

/// FLOPs of one optimizer step over `parameters` parameters (ops.hpp's sgd/momentum/adam).
[[nodiscard]] constexpr std::uint64_t optimizer_flops(optimizer_kind o, std::uint64_t parameters) noexcept {
  switch (o) {
    case optimizer_kind::none: return 0;
    case optimizer_kind::sgd: return sgd_flops(parameters);
    case optimizer_kind::sgd_momentum: return sgd_momentum_flops(parameters);
    case optimizer_kind::adam: return adam_flops(parameters);
  }
  return 0;
}

/// A dense ReLU MLP, widths {in, hidden..., out}: dense layers (ops.hpp's dense_forward) with a
/// ReLU after every layer but the last, softmax cross-entropy on the logits.
class mlp_shape {
 public:
  /// A network of layers widths[0] -> widths[1] -> ...; throws std::invalid_argument for fewer than
  /// two widths or a zero width.
  explicit mlp_shape(std::vector<std::uint64_t> widths, bool bias = true) : widths_(std::move(widths)), bias_(bias) {
    if (widths_.size() < 2)
      detail::bad_argument("mlp_shape", "widths must hold at least {in, out}, got " + std::to_string(widths_.size()) +
                                            " entries");
    for (std::size_t l = 0; l < widths_.size(); ++l)
      if (widths_[l] == 0) detail::bad_argument("mlp_shape", "widths[" + std::to_string(l) + "] must be > 0, got 0");
  }

  /// {in, hidden..., out}, in units.
  [[nodiscard]] const std::vector<std::uint64_t>& widths() const noexcept { return widths_; }
  /// Whether every layer has a bias.
  [[nodiscard]] bool bias() const noexcept { return bias_; }
  /// Dense layers: widths().size() - 1.
  [[nodiscard]] std::size_t layers() const noexcept { return widths_.size() - 1; }
  /// Dense layer l (0-based, < layers(); not checked): widths[l] inputs, widths[l + 1] outputs.
  [[nodiscard]] dense_shape layer(std::size_t l) const noexcept { return dense_shape{widths_[l], widths_[l + 1], bias_}; }

  /// Trainable parameters, over every layer.
  [[nodiscard]] std::uint64_t parameters() const noexcept {
    std::uint64_t p = 0;
    for (std::size_t l = 0; l < layers(); ++l) p += layer(l).parameters();
    return p;
  }

  /// Every layer's dense_forward plus relu on every hidden layer.
  [[nodiscard]] std::uint64_t forward_flops(std::uint64_t batch) const noexcept {
    std::uint64_t f = 0;
    for (std::size_t l = 0; l < layers(); ++l) {
      f += layer(l).forward_flops(batch);
      if (l + 1 < layers()) f += relu_flops(widths_[l + 1] * batch);
    }
    return f;
  }

  /// One training step as ops.hpp charges it: the forward pass, softmax_cross_entropy on the
  /// logits, dense_backward of every layer (the first without an input gradient), relu_backward
  /// of every hidden layer, and the optimizer over every parameter. 0 for an empty batch.
  [[nodiscard]] std::uint64_t training_step_flops(std::uint64_t batch, optimizer_kind o) const noexcept {
    if (batch == 0) return 0;
    std::uint64_t f = forward_flops(batch) + softmax_cross_entropy_flops(widths_.back(), batch);
    for (std::size_t l = 0; l < layers(); ++l) {
      f += layer(l).backward_flops(batch, l > 0);
      if (l + 1 < layers()) f += relu_backward_flops(widths_[l + 1] * batch);
    }
    return f + optimizer_flops(o, parameters());
  }

  /// The same network with hidden layer `hidden` (1 .. widths().size() - 2) `width` units wide.
  [[nodiscard]] mlp_shape with_width(std::size_t hidden, std::uint64_t width) const {
    require_hidden("mlp_shape::with_width", hidden);
    std::vector<std::uint64_t> w = widths_;
    w[hidden] = width;
    return mlp_shape(std::move(w), bias_);
  }

  ///@{
  /// Model bytes: float weights and biases, or int8 weights with their float scales (one per
  /// layer, or one per output unit) and float biases.
  [[nodiscard]] std::uint64_t float_bytes() const noexcept { return sizeof(float) * parameters(); }
  [[nodiscard]] std::uint64_t int8_bytes(quant_granularity g) const noexcept {
    std::uint64_t b = 0;
    for (std::size_t l = 0; l < layers(); ++l) {
      const dense_shape s = layer(l);
      b += s.weights() + sizeof(float) * (g == quant_granularity::per_tensor ? 1 : s.out) +
           (bias_ ? sizeof(float) * s.out : 0);
    }
    return b;
  }
  ///@}
  /// Float activations of a forward pass over `batch` samples: the input and every layer's output
  /// (a floor: a training step also keeps pre-activations and gradients). Quantizing the weights
  /// does not change it.
  [[nodiscard]] std::uint64_t activation_bytes(std::uint64_t batch) const noexcept {
    std::uint64_t units = 0;
    for (std::uint64_t w : widths_) units += w;
    return sizeof(float) * units * batch;
  }

  /// Throws std::invalid_argument, naming `op`, unless `hidden` indexes a hidden layer, in
  /// [1, widths().size() - 2].
  void require_hidden(const char* op, std::size_t hidden) const {
    if (hidden < 1 || hidden + 1 >= widths_.size())
      detail::bad_argument(op, "hidden must name a hidden layer, in [1, " + std::to_string(widths_.size() - 1) +
                                   ") for " + std::to_string(widths_.size()) + " widths, got " + std::to_string(hidden));
  }

 private:
  std::vector<std::uint64_t> widths_;
  bool bias_ = true;
};

/// The work left in the run: `samples` more samples in steps of `batch` (the last step takes what
/// is left), each a training step with `optimizer`, or a forward pass only (training = false).
struct training_work {
  /// Samples left to process.
  std::uint64_t samples = 0;
  /// Samples per step (> 0).
  std::uint64_t batch = 1;
  /// The optimizer each training step runs.
  optimizer_kind optimizer = optimizer_kind::sgd;
  /// Training steps (forward, backward, optimizer); false: forward passes only.
  bool training = true;
};

/// FLOPs of the work on this network, step by step as the ops charge them.
[[nodiscard]] inline std::uint64_t planned_flops(const mlp_shape& shape, const training_work& work) {
  if (work.batch == 0) detail::bad_argument("planned_flops", "work.batch must be > 0, got 0");
  const auto step = [&](std::uint64_t b) {
    return work.training ? shape.training_step_flops(b, work.optimizer) : shape.forward_flops(b);
  };
  const std::uint64_t full = work.samples / work.batch, rest = work.samples % work.batch;
  return full * step(work.batch) + (rest > 0 ? step(rest) : 0);
}

/// How many units of one hidden layer to remove so the planned work fits the FLOPs left.
struct prune_plan {
  std::size_t hidden = 0;             ///< the hidden layer, an index into widths
  /// The hidden layer's width now.
  std::uint64_t units_before = 0;
  /// Its width after the plan.
  std::uint64_t units_after = 0;
  /// units_before - units_after.
  std::uint64_t units_to_remove = 0;
  double fraction = 0;                ///< units_to_remove / units_before
  double remaining_flops = 0;         ///< what the plan had to fit
  double planned_flops_before = 0;    ///< the work left, at the present width
  double planned_flops_after = 0;     ///< the work left, at units_after
  /// planned_flops_before per sample of the work.
  double flops_per_sample_before = 0;
  /// planned_flops_after per sample of the work.
  double flops_per_sample_after = 0;
  bool needed = false;                ///< the work does not fit at the present width
  bool fits = false;                  ///< planned_flops_after <= remaining_flops
  std::string message;                ///< "prune 37 % of hidden units (256 → 161) to fit the remaining 2.10e11 FLOPs"
};

namespace detail {
[[nodiscard]] inline std::string plan_percent(double fraction) {
  const double p = fraction * 100;
  return (p >= 9.95 ? units_impl::fixed(p, 0) : units_impl::sig3(p)) + " %";
}
inline void require_work(const char* op, const training_work& work) {
  if (work.batch == 0) bad_argument(op, "work.batch must be > 0, got 0");
  if (work.samples == 0) bad_argument(op, "work.samples must be > 0, got 0");
}

// The largest width in [lo, hi] with fits(width), assuming fits is monotone (true up to some
// width); lo - 1 when even lo does not fit.
template <class Fits>
[[nodiscard]] std::uint64_t widest_fitting(std::uint64_t lo, std::uint64_t hi, Fits fits) {
  if (!fits(lo)) return lo - 1;
  while (lo < hi) {
    const std::uint64_t mid = lo + (hi - lo + 1) / 2;
    if (fits(mid))
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}
}  // namespace detail

/// The widest hidden layer `hidden` (at least min_units, at most its present width) for which the
/// planned work costs at most remaining_flops. Running out is a decision, not an error: when even
/// min_units do not fit, the plan says so (fits = false, units_after = min_units).
///   auto p = frugal::plan_prune_for_flops(shape, 1, run.remaining(frugal::resource::flops), work);
///   if (p.needed) { auto s = frugal::prune_hidden_units(W1, b1, W2, p.units_to_remove); ... }
[[nodiscard]] inline prune_plan plan_prune_for_flops(const mlp_shape& shape, std::size_t hidden, double remaining_flops,
                                                     const training_work& work, std::uint64_t min_units = 1) {
  constexpr const char* op = "plan_prune_for_flops";
  shape.require_hidden(op, hidden);
  if (std::isnan(remaining_flops) || remaining_flops < 0)
    detail::bad_argument(op, "remaining_flops must be >= 0, got " + detail::units_impl::shortest(remaining_flops));
  detail::require_work(op, work);
  const std::uint64_t width = shape.widths()[hidden];
  if (min_units < 1 || min_units > width)
    detail::bad_argument(op, "min_units must be in [1, " + std::to_string(width) + "] (the layer's width), got " +
                                 std::to_string(min_units));
  const auto cost = [&](std::uint64_t units) {
    return static_cast<double>(planned_flops(shape.with_width(hidden, units), work));
  };
  prune_plan p;
  p.hidden = hidden;
  p.units_before = width;
  p.remaining_flops = remaining_flops;
  p.planned_flops_before = cost(width);
  p.needed = p.planned_flops_before > remaining_flops;
  const std::uint64_t fitting =
      p.needed ? detail::widest_fitting(min_units, width, [&](std::uint64_t u) { return cost(u) <= remaining_flops; })
               : width;
  p.fits = fitting >= min_units;
  p.units_after = p.fits ? fitting : min_units;
  p.units_to_remove = width - p.units_after;
  p.fraction = static_cast<double>(p.units_to_remove) / static_cast<double>(width);
  p.planned_flops_after = cost(p.units_after);
  const auto samples = static_cast<double>(work.samples);
  p.flops_per_sample_before = p.planned_flops_before / samples;
  p.flops_per_sample_after = p.planned_flops_after / samples;
  const std::string left = format_count(remaining_flops);
  if (!p.needed)
    p.message = "no pruning needed: the planned " + format_count(p.planned_flops_before) + " FLOPs fit the remaining " +
                left + " FLOPs";
  else if (p.fits)
    p.message = "prune " + detail::plan_percent(p.fraction) + " of hidden units (" + std::to_string(width) + " → " +
                std::to_string(p.units_after) + ") to fit the remaining " + left + " FLOPs";
  else
    p.message = "pruning cannot fit the remaining " + left + " FLOPs: even " + std::to_string(min_units) +
                (min_units == 1 ? " hidden unit needs " : " hidden units need ") + format_count(p.planned_flops_after) +
                "; shorten the planned work or stop";
  return p;
}

/// The controller's prune decision (decision::prune_fraction(): the fraction of the planned
/// work's cost to remove) as a number of units: the widest layer whose planned work costs at most
/// (1 - cost_fraction) of what it costs now.
[[nodiscard]] inline prune_plan plan_prune_for_cost_fraction(const mlp_shape& shape, std::size_t hidden,
                                                             double cost_fraction, const training_work& work,
                                                             std::uint64_t min_units = 1) {
  constexpr const char* op = "plan_prune_for_cost_fraction";
  shape.require_hidden(op, hidden);
  if (!(cost_fraction >= 0 && cost_fraction < 1))
    detail::bad_argument(op, "cost_fraction must be in [0, 1), got " + detail::units_impl::shortest(cost_fraction));
  detail::require_work(op, work);
  return plan_prune_for_flops(shape, hidden, (1 - cost_fraction) * static_cast<double>(planned_flops(shape, work)),
                              work, min_units);
}

/// Whether to quantize, and how many units of one hidden layer to remove, so the model (and the
/// activations of a batch) fit in target_bytes.
struct bytes_options {
  std::uint64_t batch = 0;  ///< count the activations of a batch this large (0: the model only)
  /// The scales int8 storage would use (per_channel by default).
  quant_granularity granularity = quant_granularity::per_channel;
  /// Whether the plan may store the weights as int8.
  bool allow_quantize = true;
  /// Whether the plan may remove hidden units.
  bool allow_prune = true;
  /// The fewest units the hidden layer may keep.
  std::uint64_t min_units = 1;
};

/// plan_for_bytes's answer: whether to quantize and how many units of one hidden layer to remove so
/// the model (and a batch's activations) fit target_bytes.
struct bytes_plan {
  /// The hidden layer, an index into widths.
  std::size_t hidden = 0;
  bool quantize = false;              ///< store the weights as int8 (4x smaller weights)
  /// The hidden layer's width now.
  std::uint64_t units_before = 0;
  /// Its width after the plan.
  std::uint64_t units_after = 0;
  /// units_before - units_after.
  std::uint64_t units_to_remove = 0;
  /// units_to_remove / units_before.
  double fraction = 0;
  /// What the plan had to fit, in bytes.
  double target_bytes = 0;
  double bytes_before = 0;            ///< float model (+ activations), present width
  double bytes_after = 0;             ///< after the plan
  /// The float model (+ activations) does not fit at the present width.
  bool needed = false;
  /// bytes_after <= target_bytes.
  bool fits = false;
  /// The plan in words (what to quantize and prune, or why it cannot fit).
  std::string message;
};

/// Quantization comes first: it keeps every unit and moves each weight by at most scale/2, while
/// pruning removes units outright. The plan prunes only what int8 storage alone cannot fit.
[[nodiscard]] inline bytes_plan plan_for_bytes(const mlp_shape& shape, std::size_t hidden, double target_bytes,
                                               const bytes_options& o = {}) {
  constexpr const char* op = "plan_for_bytes";
  shape.require_hidden(op, hidden);
  if (std::isnan(target_bytes) || target_bytes < 0)
    detail::bad_argument(op, "target_bytes must be >= 0, got " + detail::units_impl::shortest(target_bytes));
  const std::uint64_t width = shape.widths()[hidden];
  if (o.min_units < 1 || o.min_units > width)
    detail::bad_argument(op, "min_units must be in [1, " + std::to_string(width) + "] (the layer's width), got " +
                                 std::to_string(o.min_units));
  const auto bytes = [&](std::uint64_t units, bool int8) {
    const mlp_shape s = shape.with_width(hidden, units);
    return static_cast<double>((int8 ? s.int8_bytes(o.granularity) : s.float_bytes()) + s.activation_bytes(o.batch));
  };
  bytes_plan p;
  p.hidden = hidden;
  p.units_before = width;
  p.target_bytes = target_bytes;
  p.bytes_before = bytes(width, false);
  p.needed = p.bytes_before > target_bytes;
  p.units_after = width;
  if (p.needed) {
    p.quantize = o.allow_quantize;
    if (bytes(width, p.quantize) > target_bytes && o.allow_prune) {
      const std::uint64_t fitting =
          detail::widest_fitting(o.min_units, width, [&](std::uint64_t u) { return bytes(u, p.quantize) <= target_bytes; });
      p.units_after = fitting >= o.min_units ? fitting : o.min_units;
    }
  }
  p.units_to_remove = width - p.units_after;
  p.fraction = static_cast<double>(p.units_to_remove) / static_cast<double>(width);
  p.bytes_after = bytes(p.units_after, p.quantize);
  p.fits = p.bytes_after <= target_bytes;
  const std::string target = format_bytes(target_bytes);
  const std::string change = format_bytes(p.bytes_before) + " → " + format_bytes(p.bytes_after);
  std::string actions;
  if (p.quantize) actions = "quantize weights to int8";
  if (p.units_to_remove > 0)
    actions += std::string(actions.empty() ? "prune " : " and prune ") + detail::plan_percent(p.fraction) +
               " of hidden units (" + std::to_string(width) + " → " + std::to_string(p.units_after) + ")";
  if (!p.needed)
    p.message = "no compression needed: " + format_bytes(p.bytes_before) + " fit " + target;
  else if (p.fits)
    p.message = actions + " (" + change + ") to fit " + target;
  else
    p.message = "compression cannot fit " + target + ": " + (actions.empty() ? "nothing allowed" : actions) +
                " still needs " + format_bytes(p.bytes_after);
  return p;
}

/// Both targets at once: the FLOP plan's width first (the work must fit), then the bytes plan on
/// that narrower network, which may quantize and prune further.
struct compression_plan {
  /// The FLOP plan, on the present network.
  prune_plan flops;
  /// The bytes plan, on the network the FLOP plan leaves.
  bytes_plan bytes;
  /// The hidden layer's width now.
  std::uint64_t units_before = 0;
  /// Its width after both plans.
  std::uint64_t units_after = 0;
  /// units_before - units_after.
  std::uint64_t units_to_remove = 0;
  /// Whether to store the weights as int8 (the bytes plan's choice).
  bool quantize = false;
  /// Both plans fit.
  bool fits = false;
  /// Both plans in words.
  std::string message;
};

/// The FLOP plan for `remaining_flops` and `work` (plan_prune_for_flops), then the bytes plan for
/// `target_bytes` on the narrower network (plan_for_bytes). Throws std::invalid_argument as those
/// do.
[[nodiscard]] inline compression_plan plan_compression(const mlp_shape& shape, std::size_t hidden,
                                                       double remaining_flops, const training_work& work,
                                                       double target_bytes, const bytes_options& o = {}) {
  compression_plan c;
  c.flops = plan_prune_for_flops(shape, hidden, remaining_flops, work, o.min_units);
  c.bytes = plan_for_bytes(shape.with_width(hidden, c.flops.units_after), hidden, target_bytes, o);
  c.units_before = shape.widths()[hidden];
  c.units_after = c.bytes.units_after;
  c.units_to_remove = c.units_before - c.units_after;
  c.quantize = c.bytes.quantize;
  c.fits = c.flops.fits && c.bytes.fits;
  if (!c.flops.needed && !c.bytes.needed)
    c.message = "no compression needed: " + c.flops.message.substr(c.flops.message.find(':') + 2) + "; " +
                c.bytes.message.substr(c.bytes.message.find(':') + 2);
  else if (!c.bytes.needed)
    c.message = c.flops.message;
  else if (!c.flops.needed)
    c.message = c.bytes.message;
  else
    c.message = c.flops.message + "; then " + c.bytes.message;
  return c;
}

}  // namespace frugal
