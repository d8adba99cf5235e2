// The model: a multi-layer perceptron (ReLU hidden layers, softmax cross-entropy) in Eigen
// float, column-major batches (features x samples), with the FLOPs of every operation counted.
#pragma once

#include "idx.hpp"

#include <frugal/eigen.hpp>
#include <frugal/eigen/compression_plan.hpp>
#include <frugal/eigen/quantize.hpp>
#include <frugal/eigen/structured_prune.hpp>
#include <frugal/meter.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace fmnist {

// FLOPs: the layers, the loss and the optimizers are frugal's counted Eigen ops
// (<frugal/eigen.hpp>: a GEMM is 2*M*N*K, a MAC two FLOPs; other scalar operations one each);
// what the example adds around them is counted here, with the same convention.
namespace flop {
[[nodiscard]] constexpr std::uint64_t elementwise(std::uint64_t coeffs, std::uint64_t ops = 1) noexcept {
  return coeffs * ops;
}
// The predicted class: a compare per class and sample.
[[nodiscard]] constexpr std::uint64_t argmax(std::uint64_t classes, std::uint64_t n) noexcept {
  return elementwise(classes * n);
}
inline void count(std::uint64_t n) noexcept { frugal::add_flops(n); }
}  // namespace flop

// Weights and biases of every layer (also the shape of gradients and optimizer moments).
struct parameters {
  std::vector<Eigen::MatrixXf> w;  // w[l]: sizes[l+1] x sizes[l]
  std::vector<Eigen::VectorXf> b;  // b[l]: sizes[l+1]

  explicit parameters(const std::vector<int>& sizes) {
    for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
      w.push_back(Eigen::MatrixXf::Zero(sizes[l + 1], sizes[l]));
      b.push_back(Eigen::VectorXf::Zero(sizes[l + 1]));
    }
  }
  // Weights and biases of layers first .. the last (the trained ones, when the first are frozen).
  [[nodiscard]] std::uint64_t count(std::size_t first = 0) const noexcept {
    std::uint64_t n = 0;
    for (std::size_t l = first; l < w.size(); ++l) n += static_cast<std::uint64_t>(w[l].size() + b[l].size());
    return n;
  }
  // Hidden layer `hidden` (1 .. w.size() - 1: the output of layer hidden - 1, the input of layer
  // hidden) cut to the units `kept` keeps: rows of w[hidden - 1] and b[hidden - 1], columns of
  // w[hidden]. Weights, gradients and optimizer moments all shrink this way.
  void keep_units(std::size_t hidden, const frugal::unit_selection& kept) {
    w[hidden - 1] = kept.incoming(w[hidden - 1]);
    b[hidden - 1] = kept.bias(b[hidden - 1]);
    w[hidden] = kept.outgoing(w[hidden]);
  }
  // this += other from layer `first` on: the reduction of per-shard gradients (the layers
  // before `first` are frozen, their gradients never computed).
  void add(const parameters& other, std::size_t first = 0) {
    for (std::size_t l = first; l < w.size(); ++l) {
      w[l] += other.w[l];
      b[l] += other.b[l];
    }
    flop::count(flop::elementwise(count(first)));
  }
};

// "784,256,128,10": input, hidden layers, classes.
[[nodiscard]] inline std::vector<int> layer_sizes(const std::vector<int>& hidden) {
  std::vector<int> sizes{static_cast<int>(image_side * image_side)};
  sizes.insert(sizes.end(), hidden.begin(), hidden.end());
  sizes.push_back(classes);
  return sizes;
}

// {784, 256, 128, 10} -> "784-256-128-10".
[[nodiscard]] inline std::string shape_text(const std::vector<int>& sizes) {
  std::string t;
  for (const int x : sizes) t += (t.empty() ? "" : "-") + std::to_string(x);
  return t;
}

// The sizes as frugal's compression plans read them (pruning.hpp, deploy.hpp).
[[nodiscard]] inline frugal::mlp_shape frugal_shape(const std::vector<int>& sizes) {
  std::vector<std::uint64_t> widths;
  for (const int s : sizes) widths.push_back(static_cast<std::uint64_t>(s));
  return frugal::mlp_shape(std::move(widths));
}

class mlp {
 public:
  // He initialisation (normal, variance 2/fan_in), zero biases, reproducible from the seed.
  mlp(std::vector<int> sizes, std::uint64_t seed) : sizes_(std::move(sizes)), params_(sizes_) {
    if (sizes_.size() < 2) throw std::invalid_argument("fmnist::mlp: sizes: need at least 2 layers");
    for (int s : sizes_)
      if (s <= 0) throw std::invalid_argument("fmnist::mlp: sizes: layer size must be > 0, got " + std::to_string(s));
    std::mt19937_64 rng(seed);
    for (std::size_t l = 0; l < params_.w.size(); ++l) {
      std::normal_distribution<float> normal(0.0f, std::sqrt(2.0f / static_cast<float>(sizes_[l])));
      for (Eigen::Index i = 0; i < params_.w[l].size(); ++i) params_.w[l].data()[i] = normal(rng);
    }
  }

  [[nodiscard]] const std::vector<int>& sizes() const noexcept { return sizes_; }
  [[nodiscard]] std::size_t layers() const noexcept { return params_.w.size(); }
  [[nodiscard]] parameters& params() noexcept { return params_; }
  [[nodiscard]] const parameters& params() const noexcept { return params_; }
  // The parameters trained with the first `frozen` layers frozen (default: as the model is now).
  [[nodiscard]] std::uint64_t trained_count(std::optional<std::size_t> frozen = std::nullopt) const noexcept {
    return params_.count(frozen.value_or(frozen_layers()));
  }

  // --quantize (quantizing.hpp): the first frozen_layers() layers compute with int8 per-channel
  // weights (frugal::quantize) and are no longer trained -- no weight gradient, no update, and
  // the first trained layer computes no input gradient. Their float weights in params() become
  // exactly what the int8 ones stand for (q * s), so a pruning's unit scores, a checkpoint's
  // floats and a deployment read the model the steps compute with.
  [[nodiscard]] std::size_t frozen_layers() const noexcept { return int8_.size(); }
  [[nodiscard]] const frugal::quantized_matrix& int8_weights(std::size_t l) const { return int8_.at(l); }
  // Freezes layers frozen_layers() .. n - 1 as int8 (n < layers(): the output layer trains).
  void freeze_as_int8(std::size_t n) {
    if (n >= layers())
      throw std::invalid_argument("fmnist::mlp: freeze_as_int8: " + std::to_string(n) + " layers of " +
                                  std::to_string(layers()) + " (the output layer must train)");
    for (std::size_t l = int8_.size(); l < n; ++l) {
      int8_.push_back(frugal::quantize(params_.w[l], frugal::quant_granularity::per_channel));
      params_.w[l] = frugal::dequantize(int8_.back());
    }
  }
  // A checkpoint's frozen layers (checkpoint.hpp): their int8 weights as saved, float weights
  // already q * s.
  void restore_int8(std::vector<frugal::quantized_matrix> frozen) { int8_ = std::move(frozen); }

  // FLOPs of one forward pass over n samples (loading, layers, loss and its gradient, predicted
  // class) and of one backward pass: the forecast of a step's cost before one is measured. With
  // `frozen`, as they would be with that many layers frozen (default: as the model is now).
  [[nodiscard]] std::uint64_t forward_flops(std::uint64_t n, std::optional<std::size_t> frozen = std::nullopt) const noexcept {
    const std::size_t first = frozen.value_or(frozen_layers());
    std::uint64_t f = flop::elementwise(static_cast<std::uint64_t>(sizes_[0]) * n);
    for (std::size_t l = 0; l < layers(); ++l) {
      const frugal::dense_shape s = shape(l);
      f += l < first
               ? frugal::quantized_product_flops(s.out, n, s.in, frugal::quantized_product_mode::automatic) + s.out * n
               : s.forward_flops(n);
      if (l + 1 < layers()) f += frugal::relu_flops(s.out * n);
    }
    const auto c = static_cast<std::uint64_t>(sizes_.back());
    return f + frugal::softmax_cross_entropy_flops(c, n) + flop::argmax(c, n);
  }
  [[nodiscard]] std::uint64_t backward_flops(std::uint64_t n, std::optional<std::size_t> frozen = std::nullopt) const noexcept {
    const std::size_t first = frozen.value_or(frozen_layers());
    std::uint64_t f = 0;
    for (std::size_t l = first; l < layers(); ++l) {
      f += shape(l).backward_flops(n, l > first);
      if (l > first) f += frugal::relu_backward_flops(shape(l).in * n);
    }
    return f;
  }

  [[nodiscard]] frugal::dense_shape shape(std::size_t l) const noexcept {
    return frugal::dense_shape{static_cast<std::uint64_t>(sizes_[l]), static_cast<std::uint64_t>(sizes_[l + 1]), true};
  }

  // Structured pruning (pruning.hpp): hidden layer `hidden` keeps the units `kept` names, in
  // the int8 weights of frozen layers too (rows and their scales before it, columns after).
  void keep_units(std::size_t hidden, const frugal::unit_selection& kept) {
    params_.keep_units(hidden, kept);
    sizes_[hidden] = static_cast<int>(kept.units_after());
    if (hidden - 1 < int8_.size()) {
      const frugal::quantized_matrix& q = int8_[hidden - 1];
      int8_[hidden - 1] = frugal::quantized_matrix(kept.incoming(q.values()), kept.bias(q.scales()), q.granularity());
    }
    if (hidden < int8_.size()) {
      const frugal::quantized_matrix& q = int8_[hidden];
      int8_[hidden] = frugal::quantized_matrix(kept.outgoing(q.values()), q.scales(), q.granularity());
    }
  }
  // A checkpoint of a pruned run (checkpoint.hpp): its narrower sizes and their weights.
  void replace(std::vector<int> sizes, parameters p) {
    sizes_ = std::move(sizes);
    params_ = std::move(p);
  }

 private:
  std::vector<int> sizes_;
  parameters params_;
  std::vector<frugal::quantized_matrix> int8_;  // layers 0 .. frozen_layers() - 1
};

// One shard's buffers for up to `capacity` samples. They follow the batch (resize()): a step
// of the size before allocates nothing, and a smaller batch frees what it does not use, so the
// heap's peak falls with the batch size (what a peak_bytes limit needs).
struct workspace {
  workspace(const std::vector<int>& sizes, Eigen::Index cap) : grad(sizes) {
    input.resize(sizes[0], 0);
    for (std::size_t l = 1; l < sizes.size(); ++l) {
      act.emplace_back(sizes[l], 0);
      delta.emplace_back(sizes[l], 0);
    }
    resize(cap);
  }
  // Buffers for exactly `cap` samples (0 frees them); nothing happens at the current size.
  // Eigen frees a matrix's old storage before allocating the new one, so the heap never holds
  // both sizes at once.
  void resize(Eigen::Index cap) {
    if (cap == capacity) return;
    capacity = cap;
    input.resize(input.rows(), cap);
    for (auto& m : act) m.resize(m.rows(), cap);
    for (auto& m : delta) m.resize(m.rows(), cap);
    labels.resize(static_cast<std::size_t>(cap));
    labels.shrink_to_fit();
  }
  Eigen::Index capacity = -1;
  Eigen::MatrixXf input;               // pixels scaled to [0, 1]
  std::vector<Eigen::MatrixXf> act;    // after ReLU; the last one holds the class probabilities
  std::vector<Eigen::MatrixXf> delta;  // d loss / d pre-activation
  std::vector<std::uint8_t> labels;
  parameters grad;
  double loss_sum = 0;   // summed over the samples scored since reset_scores()
  std::int64_t correct = 0;

  void reset_scores() noexcept {
    loss_sum = 0;
    correct = 0;
  }
};

// Gathers images index[0..n) into the workspace's first n columns, pixels scaled to [0, 1].
inline void load_batch(workspace& ws, const image_set& images, const std::vector<std::uint8_t>& labels,
                       const std::uint32_t* index, Eigen::Index n) {
  const auto pixels = static_cast<Eigen::Index>(images.pixels_per_image());
  for (Eigen::Index j = 0; j < n; ++j) {
    const std::uint8_t* src = images.pixels.data() + static_cast<std::size_t>(index[j]) * images.pixels_per_image();
    ws.input.col(j) = Eigen::Map<const Eigen::Matrix<std::uint8_t, Eigen::Dynamic, 1>>(src, pixels).cast<float>() *
                      (1.0f / 255.0f);
    ws.labels[static_cast<std::size_t>(j)] = labels[index[j]];
  }
  flop::count(flop::elementwise(static_cast<std::uint64_t>(pixels * n)));
}

// The first n labels of a workspace, as frugal::softmax_cross_entropy reads labels.
struct label_view {
  const std::uint8_t* data;
  std::size_t n;
  [[nodiscard]] std::size_t size() const noexcept { return n; }
  [[nodiscard]] std::uint8_t operator[](std::size_t i) const noexcept { return data[i]; }
};

// Forward pass over the first n columns; the loss and hits of those samples are added to the
// workspace's scores, and the loss's gradient with respect to the logits, times n / batch (so
// that the shards' gradients add up to the batch mean), left in ws.delta.back().
// A training step's frozen layers compute with their int8 weights; an evaluation's (training
// false) with the float ones they stand for, so that freezing leaves an evaluation's cost and
// the model it measures as they were (the deployment quantizes the whole model its own way).
inline void forward(const mlp& model, workspace& ws, Eigen::Index n, Eigen::Index batch, bool training = true) {
  const parameters& p = model.params();
  const std::size_t layers = model.layers();
  for (std::size_t l = 0; l < layers; ++l) {
    const Eigen::MatrixXf& prev = l == 0 ? ws.input : ws.act[l - 1];
    auto z = ws.act[l].leftCols(n);
    if (training && l < model.frozen_layers())
      frugal::quantized_forward(model.int8_weights(l), p.b[l], prev.leftCols(n), z);
    else
      frugal::dense_forward(p.w[l], p.b[l], prev.leftCols(n), z);
    if (l + 1 < layers) frugal::relu(z, z);
  }
  const auto logits = ws.act.back().leftCols(n);
  auto grad = ws.delta.back().leftCols(n);
  const float mean_loss = frugal::softmax_cross_entropy(logits, label_view{ws.labels.data(), static_cast<std::size_t>(n)}, grad);
  ws.loss_sum += static_cast<double>(mean_loss) * static_cast<double>(n);
  if (n != batch) {
    grad *= static_cast<float>(n) / static_cast<float>(batch);
    flop::count(flop::elementwise(static_cast<std::uint64_t>(grad.size())));
  }
  for (Eigen::Index j = 0; j < n; ++j) {
    Eigen::Index predicted = 0;
    logits.col(j).maxCoeff(&predicted);
    ws.correct += predicted == ws.labels[static_cast<std::size_t>(j)] ? 1 : 0;
  }
  flop::count(flop::argmax(static_cast<std::uint64_t>(logits.rows()), static_cast<std::uint64_t>(n)));
}

// Gradients of the loss over the first n columns into ws.grad, from ws.delta.back() as
// forward() left it: the trained layers' (a frozen layer's stay as they are).
inline void backward(const mlp& model, workspace& ws, Eigen::Index n) {
  const parameters& p = model.params();
  const std::size_t first = model.frozen_layers();
  for (std::size_t l = model.layers(); l-- > first;) {
    const auto dy = ws.delta[l].leftCols(n);
    if (l == first) {  // nothing below it trains: no input gradient
      frugal::dense_backward(p.w[l], (l == 0 ? ws.input : ws.act[l - 1]).leftCols(n), dy, ws.grad.w[l], ws.grad.b[l]);
      break;
    }
    auto dx = ws.delta[l - 1].leftCols(n);
    frugal::dense_backward(p.w[l], ws.act[l - 1].leftCols(n), dy, ws.grad.w[l], ws.grad.b[l], dx);
    frugal::relu_backward(ws.act[l - 1].leftCols(n), dx, dx);
  }
}

enum class optimizer_kind { sgd, adam };

// SGD with momentum (v = mu*v + g; w -= lr*v) or Adam: frugal's counted update ops.
class optimizer {
 public:
  optimizer(optimizer_kind kind, const mlp& model, float momentum)
      : kind_(kind), momentum_(momentum), m_(model.sizes()), v_(model.sizes()) {}

  // Updates the trained layers (a frozen one keeps its weights, its moments stay as they were).
  void step(mlp& model, const parameters& g, float lr) {
    parameters& p = model.params();
    ++t_;
    for (std::size_t l = model.frozen_layers(); l < p.w.size(); ++l) {
      if (kind_ == optimizer_kind::sgd) {
        frugal::sgd_momentum_update(p.w[l], g.w[l], m_.w[l], lr, momentum_);
        frugal::sgd_momentum_update(p.b[l], g.b[l], m_.b[l], lr, momentum_);
      } else {
        frugal::adam_options o;
        o.lr = lr;
        frugal::adam_update(p.w[l], g.w[l], m_.w[l], v_.w[l], t_, o);
        frugal::adam_update(p.b[l], g.b[l], m_.b[l], v_.b[l], t_, o);
      }
    }
  }

  // Structured pruning (pruning.hpp): the moments of the removed units go with them.
  void keep_units(std::size_t hidden, const frugal::unit_selection& kept) {
    m_.keep_units(hidden, kept);
    v_.keep_units(hidden, kept);
  }

  // Its state, for a checkpoint (checkpoint.hpp): the moments and the steps taken (Adam's bias
  // correction needs the count).
  [[nodiscard]] optimizer_kind kind() const noexcept { return kind_; }
  [[nodiscard]] parameters& first_moment() noexcept { return m_; }
  [[nodiscard]] parameters& second_moment() noexcept { return v_; }
  [[nodiscard]] std::int64_t& steps_taken() noexcept { return t_; }

  // FLOPs of one step, for forecasts (with `frozen`: had that many layers been frozen).
  [[nodiscard]] std::uint64_t step_flops(const mlp& model, std::optional<std::size_t> frozen = std::nullopt) const noexcept {
    const std::uint64_t n = model.trained_count(frozen);
    return kind_ == optimizer_kind::sgd ? frugal::sgd_momentum_flops(n) : frugal::adam_flops(n);
  }

 private:
  optimizer_kind kind_;
  float momentum_;
  parameters m_;  // momentum (SGD) or first moment (Adam)
  parameters v_;  // second moment (Adam)
  std::int64_t t_ = 0;
};

}  // namespace fmnist
