/// @file
/// Structured pruning of hidden units between two dense layers: scores, the units to remove, and
/// the smaller dense matrices (and optimizer state) that compute exactly what the zeroed units do.
#pragma once

#include <frugal/eigen/ops.hpp>
#include <frugal/units.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

namespace frugal {

// The hidden layer between dense layers 1 and 2 (ops.hpp's layout, W out x in):
//   H = relu(W1 X + b1),  Y = W2 H + b2,
// unit j is row j of W1, entry j of b1 and column j of W2. Removing unit j is exactly zeroing
// row j of W1, b1(j) and column j of W2: the unit's pre-activation is 0, relu(0) = 0, and a zero
// column of W2 adds nothing to Y. b2 is unchanged. Unlike unstructured pruning, every dense
// product after removal is smaller, so the FLOPs (2*in + 2*out + 2 per unit per sample forward,
// dense_shape's formulas) and the time really drop.

/// How a unit's importance is scored (smallest scores are removed first).
enum class unit_importance {
  /// ||(W1 row j, b1(j), W2 column j)||_2: the L2 norm of everything the unit touches.
  l2_norm,
  /// ||(W1 row j, b1(j))||_2 * ||W2 column j||_2: unchanged when a unit's incoming weights are
  /// scaled by a > 0 and its outgoing by 1/a, which leaves a ReLU network's function unchanged.
  l2_product,
};

/// Which hidden units survive, in their original order, and how to shrink per-unit state the
/// same way (SGD momentum, Adam moments, gradient accumulators, masks of the two layers).
class unit_selection {
 public:
  unit_selection() = default;

  /// Hidden units before the selection.
  [[nodiscard]] Eigen::Index units_before() const noexcept { return before_; }
  /// Hidden units kept: kept().size().
  [[nodiscard]] Eigen::Index units_after() const noexcept { return static_cast<Eigen::Index>(kept_.size()); }
  /// Original indices of the kept units, ascending: new unit r was unit kept()[r].
  [[nodiscard]] const std::vector<Eigen::Index>& kept() const noexcept { return kept_; }
  /// Original indices of the removed units, ascending.
  [[nodiscard]] const std::vector<Eigen::Index>& removed() const noexcept { return removed_; }
  /// removed().size() / units_before(), in [0, 1]; 0 when there were no units.
  [[nodiscard]] double fraction_removed() const noexcept {
    return before_ == 0 ? 0.0 : static_cast<double>(removed_.size()) / static_cast<double>(before_);
  }

  /// State shaped like W1 (units x in): the kept rows.
  template <class M>
  [[nodiscard]] Eigen::Matrix<typename M::Scalar, Eigen::Dynamic, Eigen::Dynamic> incoming(const Eigen::MatrixBase<M>& m) const {
    detail::require_equal("unit_selection::incoming", "m.rows()", m.rows(), "units_before()", before_);
    Eigen::Matrix<typename M::Scalar, Eigen::Dynamic, Eigen::Dynamic> r(units_after(), m.cols());
    for (Eigen::Index k = 0; k < units_after(); ++k) r.row(k) = m.row(kept_[static_cast<std::size_t>(k)]);
    return r;
  }
  /// State shaped like b1 (units): the kept entries.
  template <class V>
  [[nodiscard]] Eigen::Matrix<typename V::Scalar, Eigen::Dynamic, 1> bias(const Eigen::MatrixBase<V>& v) const {
    if (v.rows() != 1 && v.cols() != 1)
      detail::bad_argument("unit_selection::bias", "v must be a vector, got " + std::to_string(v.rows()) + " x " +
                                                       std::to_string(v.cols()));
    detail::require_equal("unit_selection::bias", "v.size()", v.size(), "units_before()", before_);
    Eigen::Matrix<typename V::Scalar, Eigen::Dynamic, 1> r(units_after());
    for (Eigen::Index k = 0; k < units_after(); ++k) r(k) = v(kept_[static_cast<std::size_t>(k)]);
    return r;
  }
  /// State shaped like W2 (out x units): the kept columns.
  template <class M>
  [[nodiscard]] Eigen::Matrix<typename M::Scalar, Eigen::Dynamic, Eigen::Dynamic> outgoing(const Eigen::MatrixBase<M>& m) const {
    detail::require_equal("unit_selection::outgoing", "m.cols()", m.cols(), "units_before()", before_);
    Eigen::Matrix<typename M::Scalar, Eigen::Dynamic, Eigen::Dynamic> r(m.rows(), units_after());
    for (Eigen::Index k = 0; k < units_after(); ++k) r.col(k) = m.col(kept_[static_cast<std::size_t>(k)]);
    return r;
  }

 private:
  template <class S>
  friend unit_selection select_units_to_remove(const Eigen::MatrixBase<S>& scores, Eigen::Index k);
  friend unit_selection units_removed(Eigen::Index units, std::vector<Eigen::Index> removed);

  Eigen::Index before_ = 0;
  std::vector<Eigen::Index> kept_;
  std::vector<Eigen::Index> removed_;
};

namespace detail {
inline void require_unit_count(const char* op, Eigen::Index units, Eigen::Index k) {
  if (units <= 0) bad_argument(op, "the hidden layer must have units, got " + std::to_string(units));
  if (k < 0 || k >= units)
    bad_argument(op, "k (units to remove) must be in [0, " + std::to_string(units) + ") for a layer of " +
                         std::to_string(units) + " units (at least one must remain), got " + std::to_string(k));
}

template <class W1, class B1, class W2>
void require_hidden_layer(const char* op, const Eigen::MatrixBase<W1>& w1, const Eigen::MatrixBase<B1>& b1,
                          const Eigen::MatrixBase<W2>& w2) {
  if (w1.size() == 0)
    bad_argument(op, "w1 must not be empty, got " + std::to_string(w1.rows()) + " x " + std::to_string(w1.cols()));
  if (w2.size() == 0)
    bad_argument(op, "w2 must not be empty, got " + std::to_string(w2.rows()) + " x " + std::to_string(w2.cols()));
  if (b1.rows() != 1 && b1.cols() != 1)
    bad_argument(op, "b1 must be a vector, got " + std::to_string(b1.rows()) + " x " + std::to_string(b1.cols()));
  require_equal(op, "b1.size()", b1.size(), "w1.rows()", w1.rows());
  require_equal(op, "w2.cols()", w2.cols(), "w1.rows() (hidden units)", w1.rows());
}
}  // namespace detail

/// Removes the k units of smallest score (scores: one finite value per unit). Ties: of equal
/// scores the unit with the larger index goes first, so earlier units survive (the same rule as
/// magnitude_prune). 0 <= k < units.
template <class S>
[[nodiscard]] unit_selection select_units_to_remove(const Eigen::MatrixBase<S>& scores, Eigen::Index k) {
  constexpr const char* op = "select_units_to_remove";
  if (scores.rows() != 1 && scores.cols() != 1)
    detail::bad_argument(op, "scores must be a vector, got " + std::to_string(scores.rows()) + " x " +
                                 std::to_string(scores.cols()));
  const Eigen::Index units = scores.size();
  detail::require_unit_count(op, units, k);
  std::vector<double> score(static_cast<std::size_t>(units));
  for (Eigen::Index j = 0; j < units; ++j) {
    const double v = static_cast<double>(scores(j));
    if (!std::isfinite(v))
      detail::bad_argument(op, "scores(" + std::to_string(j) + ") must be finite, got " + detail::units_impl::shortest(v));
    score[static_cast<std::size_t>(j)] = v;
  }
  std::vector<Eigen::Index> order(static_cast<std::size_t>(units));
  std::iota(order.begin(), order.end(), Eigen::Index{0});
  // A strict total order: removal order is lower score first, then higher index first.
  std::nth_element(order.begin(), order.begin() + k, order.end(), [&score](Eigen::Index a, Eigen::Index b) {
    const double sa = score[static_cast<std::size_t>(a)], sb = score[static_cast<std::size_t>(b)];
    return sa < sb || (sa == sb && a > b);
  });
  unit_selection s;
  s.before_ = units;
  s.removed_.assign(order.begin(), order.begin() + k);
  std::sort(s.removed_.begin(), s.removed_.end());
  std::vector<bool> gone(static_cast<std::size_t>(units), false);
  for (Eigen::Index j : s.removed_) gone[static_cast<std::size_t>(j)] = true;
  for (Eigen::Index j = 0; j < units; ++j)
    if (!gone[static_cast<std::size_t>(j)]) s.kept_.push_back(j);
  return s;
}

/// A selection that removes exactly the given units (any order, no duplicates) of a layer.
[[nodiscard]] inline unit_selection units_removed(Eigen::Index units, std::vector<Eigen::Index> removed) {
  constexpr const char* op = "units_removed";
  detail::require_unit_count(op, units, static_cast<Eigen::Index>(removed.size()));
  std::sort(removed.begin(), removed.end());
  for (std::size_t r = 0; r < removed.size(); ++r) {
    if (removed[r] < 0 || removed[r] >= units)
      detail::bad_argument(op, "removed units must be in [0, " + std::to_string(units) + "), got " +
                                   std::to_string(removed[r]));
    if (r > 0 && removed[r] == removed[r - 1])
      detail::bad_argument(op, "removed units must be distinct, got " + std::to_string(removed[r]) + " twice");
  }
  unit_selection s;
  s.before_ = units;
  std::size_t next = 0;
  for (Eigen::Index j = 0; j < units; ++j) {
    if (next < removed.size() && removed[next] == j)
      ++next;
    else
      s.kept_.push_back(j);
  }
  s.removed_ = std::move(removed);
  return s;
}

/// Each hidden unit's score (a vector of w1.rows() entries), computed in double.
template <class W1, class B1, class W2>
[[nodiscard]] Eigen::VectorXd hidden_unit_scores(const Eigen::MatrixBase<W1>& w1, const Eigen::MatrixBase<B1>& b1,
                                                 const Eigen::MatrixBase<W2>& w2,
                                                 unit_importance importance = unit_importance::l2_norm) {
  detail::require_hidden_layer("hidden_unit_scores", w1, b1, w2);
  const Eigen::VectorXd in = w1.template cast<double>().rowwise().squaredNorm() +
                             b1.template cast<double>().cwiseAbs2().reshaped();
  const Eigen::VectorXd out = w2.template cast<double>().colwise().squaredNorm().transpose();
  if (importance == unit_importance::l2_product) return in.cwiseSqrt().cwiseProduct(out.cwiseSqrt());
  return (in + out).cwiseSqrt();
}

/// The two layers with units removed. b2 is not here: it does not change.
template <class Scalar>
struct pruned_hidden_layer {
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> w1;  ///< units_after x in
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> b1;               ///< units_after
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> w2;  ///< out x units_after
  unit_selection selection;                                  ///< shrink optimizer state with it
};

/// Removes the units `selection` names: smaller dense matrices computing exactly what the
/// original computes with those units zeroed.
template <class W1, class B1, class W2>
[[nodiscard]] pruned_hidden_layer<typename W1::Scalar> prune_hidden_units(const Eigen::MatrixBase<W1>& w1,
                                                                          const Eigen::MatrixBase<B1>& b1,
                                                                          const Eigen::MatrixBase<W2>& w2,
                                                                          const unit_selection& selection) {
  detail::require_hidden_layer("prune_hidden_units", w1, b1, w2);
  detail::require_equal("prune_hidden_units", "selection.units_before()", selection.units_before(),
                        "w1.rows() (hidden units)", w1.rows());
  return {selection.incoming(w1), selection.bias(b1), selection.outgoing(w2), selection};
}

/// Removes the k least important units (0 <= k < units), scored by `importance`.
template <class W1, class B1, class W2>
[[nodiscard]] pruned_hidden_layer<typename W1::Scalar> prune_hidden_units(
    const Eigen::MatrixBase<W1>& w1, const Eigen::MatrixBase<B1>& b1, const Eigen::MatrixBase<W2>& w2, Eigen::Index k,
    unit_importance importance = unit_importance::l2_norm) {
  detail::require_hidden_layer("prune_hidden_units", w1, b1, w2);
  detail::require_unit_count("prune_hidden_units", w1.rows(), k);
  return prune_hidden_units(w1, b1, w2, select_units_to_remove(hidden_unit_scores(w1, b1, w2, importance), k));
}

/// Removes the k units of smallest user score (one finite score per unit, e.g. a running mean of
/// |activation| * ||W2 column||, or a Taylor estimate of the loss change).
template <class W1, class B1, class W2, class S>
[[nodiscard]] pruned_hidden_layer<typename W1::Scalar> prune_hidden_units(const Eigen::MatrixBase<W1>& w1,
                                                                          const Eigen::MatrixBase<B1>& b1,
                                                                          const Eigen::MatrixBase<W2>& w2,
                                                                          Eigen::Index k,
                                                                          const Eigen::MatrixBase<S>& scores) {
  detail::require_hidden_layer("prune_hidden_units", w1, b1, w2);
  detail::require_equal("prune_hidden_units", "scores.size()", scores.size(), "w1.rows() (hidden units)", w1.rows());
  return prune_hidden_units(w1, b1, w2, select_units_to_remove(scores, k));
}

}  // namespace frugal
