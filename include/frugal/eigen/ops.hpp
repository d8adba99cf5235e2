/// @file
/// Named training ops on Eigen (dense layer forward/backward, ReLU, softmax + cross-entropy,
/// SGD, Adam) that charge their FLOPs, and each op's FLOPs as a function of its shapes.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <frugal/eigen/flops.hpp>
#include <frugal/meter.hpp>
#include <stdexcept>
#include <string>

namespace frugal {

/// Layout: one sample per column (Eigen is column-major). A dense layer with `in` inputs and
/// `out` outputs has W (out x in), b (out), X (in x batch), Y = W X + b 1' (out x batch).
///
/// FLOPs follow <frugal/eigen/flops.hpp>: a product is 2*M*N*K (a MAC is 2 FLOPs), every other
/// scalar operation 1, a transcendental FRUGAL_TRANSCENDENTAL_FLOPS (T, default 1).
struct dense_shape {
  /// Inputs (features per sample): W's columns.
  std::uint64_t in = 0;
  /// Outputs (units): W's rows and b's length.
  std::uint64_t out = 0;
  /// Whether the layer adds a bias b.
  bool bias = true;

  /// Entries of W: in * out.
  [[nodiscard]] constexpr std::uint64_t weights() const noexcept { return in * out; }
  /// Trainable parameters: in * out, plus out with a bias.
  [[nodiscard]] constexpr std::uint64_t parameters() const noexcept { return in * out + (bias ? out : 0); }

  /// Y = W X (2*out*in*batch) + b 1' (out*batch).
  [[nodiscard]] constexpr std::uint64_t forward_flops(std::uint64_t batch) const noexcept {
    return 2 * out * in * batch + (bias ? out * batch : 0);
  }
  /// Two products: dW = dY X' (2*out*batch*in) and, unless this is the first layer,
  /// dX = W' dY (2*in*out*batch); plus db = dY 1 (out*(batch-1) adds).
  [[nodiscard]] constexpr std::uint64_t backward_flops(std::uint64_t batch, bool input_grad = true) const noexcept {
    return 2 * out * batch * in + (input_grad ? 2 * in * out * batch : 0) + (bias && batch > 0 ? out * (batch - 1) : 0);
  }
};

/// max(x, 0): one comparison per coefficient.
[[nodiscard]] constexpr std::uint64_t relu_flops(std::uint64_t n) noexcept { return n; }
/// dx = x > 0 ? dy : 0: one comparison per coefficient.
[[nodiscard]] constexpr std::uint64_t relu_backward_flops(std::uint64_t n) noexcept { return n; }

/// Softmax + mean cross-entropy over `batch` columns of `classes` logits, with the gradient
/// d(loss)/d(logits). Per column: max (C-1), subtract it (C), exp (C*T), sum (C-1), divide (C),
/// log of the sum (T), loss term log(s) - (z_y - max) (1), accumulate it (1; one fewer overall),
/// p_y - 1 (1), divide the gradient by the batch (C). Then the mean (1 division):
///   batch * (5*C + 1 + (C+1)*T).
[[nodiscard]] constexpr std::uint64_t softmax_cross_entropy_flops(std::uint64_t classes, std::uint64_t batch) noexcept {
  return batch * (5 * classes + 1 + (classes + 1) * static_cast<std::uint64_t>(FRUGAL_TRANSCENDENTAL_FLOPS));
}

/// p -= lr * g: 2 per parameter.
[[nodiscard]] constexpr std::uint64_t sgd_flops(std::uint64_t parameters) noexcept { return 2 * parameters; }
/// v = momentum * v + g; p -= lr * v: 4 per parameter.
[[nodiscard]] constexpr std::uint64_t sgd_momentum_flops(std::uint64_t parameters) noexcept { return 4 * parameters; }
/// m = b1 m + (1-b1) g (3); v = b2 v + (1-b2) g^2 (4); p -= a_t m / (sqrt(v) + e_t) (5): 12 per
/// parameter. The bias corrections fold into a_t and e_t (Kingma & Ba, end of section 2),
/// computed once per call in double and not counted.
[[nodiscard]] constexpr std::uint64_t adam_flops(std::uint64_t parameters) noexcept { return 12 * parameters; }

namespace detail {
[[noreturn]] inline void bad_argument(const char* op, const std::string& what) {
  throw std::invalid_argument(std::string("frugal::") + op + ": " + what);
}

inline void require_equal(const char* op, const char* field, Eigen::Index got, const char* reference,
                          Eigen::Index expected) {
  if (got != expected)
    bad_argument(op, std::string(field) + " must equal " + reference + " (" + std::to_string(expected) + "), got " +
                         std::to_string(got));
}

inline void require_finite_nonnegative(const char* op, const char* field, double v) {
  if (!(std::isfinite(v) && v >= 0))
    bad_argument(op, std::string(field) + " must be finite and >= 0, got " + std::to_string(v));
}

[[nodiscard]] constexpr std::uint64_t count(Eigen::Index n) noexcept { return static_cast<std::uint64_t>(n); }
}  // namespace detail

/// y = w x + b 1'. y is resized if it is a Matrix; it must not alias w, x or b.
template <class W, class B, class X, class Y>
void dense_forward(const Eigen::MatrixBase<W>& w, const Eigen::MatrixBase<B>& b, const Eigen::MatrixBase<X>& x,
                   Eigen::MatrixBase<Y>& y) {
  detail::require_equal("dense_forward", "x.rows()", x.rows(), "w.cols()", w.cols());
  detail::require_equal("dense_forward", "b.size()", b.size(), "w.rows()", w.rows());
  y.noalias() = w * x;
  y.colwise() += b;
  add_flops(dense_shape{detail::count(w.cols()), detail::count(w.rows()), true}.forward_flops(detail::count(x.cols())));
}

/// y = w x, a layer without bias.
template <class W, class X, class Y>
void dense_forward(const Eigen::MatrixBase<W>& w, const Eigen::MatrixBase<X>& x, Eigen::MatrixBase<Y>& y) {
  detail::require_equal("dense_forward", "x.rows()", x.rows(), "w.cols()", w.cols());
  y.noalias() = w * x;
  add_flops(
      dense_shape{detail::count(w.cols()), detail::count(w.rows()), false}.forward_flops(detail::count(x.cols())));
}

/// Gradients of y = w x + b 1' given dy = d(loss)/dy: dw = dy x', db = dy 1, dx = w' dy.
/// Outputs are overwritten (not accumulated) and must not alias the inputs.
template <class W, class X, class DY, class DW, class DB, class DX>
void dense_backward(const Eigen::MatrixBase<W>& w, const Eigen::MatrixBase<X>& x, const Eigen::MatrixBase<DY>& dy,
                    Eigen::MatrixBase<DW>& dw, Eigen::MatrixBase<DB>& db, Eigen::MatrixBase<DX>& dx) {
  detail::require_equal("dense_backward", "x.rows()", x.rows(), "w.cols()", w.cols());
  detail::require_equal("dense_backward", "dy.rows()", dy.rows(), "w.rows()", w.rows());
  detail::require_equal("dense_backward", "dy.cols()", dy.cols(), "x.cols()", x.cols());
  dw.noalias() = dy * x.transpose();
  db = dy.rowwise().sum();
  dx.noalias() = w.transpose() * dy;
  add_flops(dense_shape{detail::count(w.cols()), detail::count(w.rows()), true}.backward_flops(detail::count(x.cols()),
                                                                                               true));
}

/// The first layer: no gradient with respect to its input (one product).
template <class W, class X, class DY, class DW, class DB>
void dense_backward(const Eigen::MatrixBase<W>& w, const Eigen::MatrixBase<X>& x, const Eigen::MatrixBase<DY>& dy,
                    Eigen::MatrixBase<DW>& dw, Eigen::MatrixBase<DB>& db) {
  detail::require_equal("dense_backward", "x.rows()", x.rows(), "w.cols()", w.cols());
  detail::require_equal("dense_backward", "dy.rows()", dy.rows(), "w.rows()", w.rows());
  detail::require_equal("dense_backward", "dy.cols()", dy.cols(), "x.cols()", x.cols());
  dw.noalias() = dy * x.transpose();
  db = dy.rowwise().sum();
  add_flops(dense_shape{detail::count(w.cols()), detail::count(w.rows()), true}.backward_flops(detail::count(x.cols()),
                                                                                               false));
}

/// y = max(x, 0). y may be x.
template <class X, class Y>
void relu(const Eigen::MatrixBase<X>& x, Eigen::MatrixBase<Y>& y) {
  using scalar = typename X::Scalar;
  y = x.cwiseMax(scalar(0));
  add_flops(relu_flops(detail::count(x.size())));
}

/// dx = dy where x > 0, else 0 (x: the ReLU's input or output; both are positive at the same
/// coefficients). dx may be dy.
template <class X, class DY, class DX>
void relu_backward(const Eigen::MatrixBase<X>& x, const Eigen::MatrixBase<DY>& dy, Eigen::MatrixBase<DX>& dx) {
  detail::require_equal("relu_backward", "dy.rows()", dy.rows(), "x.rows()", x.rows());
  detail::require_equal("relu_backward", "dy.cols()", dy.cols(), "x.cols()", x.cols());
  using scalar = typename X::Scalar;
  dx = (x.array() > scalar(0)).select(dy, scalar(0));
  add_flops(relu_backward_flops(detail::count(x.size())));
}

/// Mean cross-entropy of softmax(logits) against labels (one class index per column), and its
/// gradient with respect to the logits, softmax(logits) - onehot(labels), divided by the batch.
/// Numerically stable (the column's maximum is subtracted before exp). labels: anything with
/// size() and operator[] (std::vector<int>, Eigen::VectorXi). grad must not alias logits.
template <class Z, class Labels, class G>
[[nodiscard]] typename Z::Scalar softmax_cross_entropy(const Eigen::MatrixBase<Z>& logits, const Labels& labels,
                                                       Eigen::MatrixBase<G>& grad) {
  using scalar = typename Z::Scalar;
  const Eigen::Index classes = logits.rows();
  const Eigen::Index batch = logits.cols();
  if (classes <= 0)
    detail::bad_argument("softmax_cross_entropy",
                         "logits.rows() (classes) must be > 0, got " + std::to_string(classes));
  if (batch <= 0)
    detail::bad_argument("softmax_cross_entropy", "logits.cols() (batch) must be > 0, got " + std::to_string(batch));
  detail::require_equal("softmax_cross_entropy", "labels.size()", static_cast<Eigen::Index>(labels.size()),
                        "logits.cols()", batch);
  for (Eigen::Index j = 0; j < batch; ++j) {
    const auto y = static_cast<long long>(labels[static_cast<std::size_t>(j)]);
    if (y < 0 || y >= classes)
      detail::bad_argument("softmax_cross_entropy", "labels[" + std::to_string(j) + "] must be in [0, " +
                                                        std::to_string(classes) + "), got " + std::to_string(y));
  }
  grad.derived().resize(classes, batch);
  scalar loss(0);
  for (Eigen::Index j = 0; j < batch; ++j) {
    const auto y = static_cast<Eigen::Index>(labels[static_cast<std::size_t>(j)]);
    auto g = grad.col(j);
    const scalar m = logits.col(j).maxCoeff();
    g = (logits.col(j).array() - m).matrix();
    const scalar shifted_label = g(y);
    g = g.array().exp().matrix();
    const scalar s = g.sum();
    g /= s;
    using std::log;
    const scalar term = log(s) - shifted_label;
    loss = j == 0 ? term : loss + term;
    g(y) -= scalar(1);
  }
  grad /= scalar(static_cast<double>(batch));
  add_flops(softmax_cross_entropy_flops(detail::count(classes), detail::count(batch)));
  return loss / scalar(static_cast<double>(batch));
}

/// p -= lr * g.
template <class P, class G>
void sgd_update(Eigen::MatrixBase<P>& p, const Eigen::MatrixBase<G>& g, double lr) {
  detail::require_finite_nonnegative("sgd_update", "lr", lr);
  detail::require_equal("sgd_update", "g.rows()", g.rows(), "p.rows()", p.rows());
  detail::require_equal("sgd_update", "g.cols()", g.cols(), "p.cols()", p.cols());
  using scalar = typename P::Scalar;
  p.noalias() -= scalar(lr) * g;
  add_flops(sgd_flops(detail::count(p.size())));
}

/// v = momentum * v + g; p -= lr * v (PyTorch's SGD with momentum, no dampening).
template <class P, class G, class V>
void sgd_momentum_update(Eigen::MatrixBase<P>& p, const Eigen::MatrixBase<G>& g, Eigen::MatrixBase<V>& v, double lr,
                         double momentum) {
  detail::require_finite_nonnegative("sgd_momentum_update", "lr", lr);
  detail::require_finite_nonnegative("sgd_momentum_update", "momentum", momentum);
  detail::require_equal("sgd_momentum_update", "g.rows()", g.rows(), "p.rows()", p.rows());
  detail::require_equal("sgd_momentum_update", "g.cols()", g.cols(), "p.cols()", p.cols());
  detail::require_equal("sgd_momentum_update", "v.rows()", v.rows(), "p.rows()", p.rows());
  detail::require_equal("sgd_momentum_update", "v.cols()", v.cols(), "p.cols()", p.cols());
  using scalar = typename P::Scalar;
  v = scalar(momentum) * v + g;
  p.noalias() -= scalar(lr) * v;
  add_flops(sgd_momentum_flops(detail::count(p.size())));
}

/// Adam's hyperparameters (Kingma and Ba, 2015), with the paper's defaults.
struct adam_options {
  /// Step size (alpha).
  double lr = 1e-3;
  /// Decay rate of the first-moment estimate m.
  double beta1 = 0.9;
  /// Decay rate of the second-moment estimate v.
  double beta2 = 0.999;
  /// Added to sqrt(v hat) in the denominator, against division by zero.
  double eps = 1e-8;
};

/// One Adam step (step = 1, 2, ...) on p with gradient g and moment estimates m, v (same shape
/// as p, zero before the first step).
template <class P, class G, class M, class V>
void adam_update(Eigen::MatrixBase<P>& p, const Eigen::MatrixBase<G>& g, Eigen::MatrixBase<M>& m,
                 Eigen::MatrixBase<V>& v, std::int64_t step, const adam_options& o = {}) {
  constexpr const char* op = "adam_update";
  if (step < 1) detail::bad_argument(op, "step must be >= 1, got " + std::to_string(step));
  detail::require_finite_nonnegative(op, "lr", o.lr);
  if (!(o.beta1 >= 0 && o.beta1 < 1))
    detail::bad_argument(op, "beta1 must be in [0, 1), got " + std::to_string(o.beta1));
  if (!(o.beta2 >= 0 && o.beta2 < 1))
    detail::bad_argument(op, "beta2 must be in [0, 1), got " + std::to_string(o.beta2));
  if (!(std::isfinite(o.eps) && o.eps > 0))
    detail::bad_argument(op, "eps must be finite and > 0, got " + std::to_string(o.eps));
  detail::require_equal(op, "g.rows()", g.rows(), "p.rows()", p.rows());
  detail::require_equal(op, "g.cols()", g.cols(), "p.cols()", p.cols());
  detail::require_equal(op, "m.rows()", m.rows(), "p.rows()", p.rows());
  detail::require_equal(op, "m.cols()", m.cols(), "p.cols()", p.cols());
  detail::require_equal(op, "v.rows()", v.rows(), "p.rows()", p.rows());
  detail::require_equal(op, "v.cols()", v.cols(), "p.cols()", p.cols());
  using scalar = typename P::Scalar;
  const double t = static_cast<double>(step);
  const double correction1 = 1 - std::pow(o.beta1, t);
  const double correction2 = 1 - std::pow(o.beta2, t);
  const double step_size = o.lr * std::sqrt(correction2) / correction1;
  const double eps_t = o.eps * std::sqrt(correction2);
  m.array() = scalar(o.beta1) * m.array() + scalar(1 - o.beta1) * g.array();
  v.array() = scalar(o.beta2) * v.array() + scalar(1 - o.beta2) * g.array().square();
  p.array() -= scalar(step_size) * m.array() / (v.array().sqrt() + scalar(eps_t));
  add_flops(adam_flops(detail::count(p.size())));
}

}  // namespace frugal
