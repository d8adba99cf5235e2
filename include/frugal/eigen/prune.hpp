/// @file
/// Unstructured magnitude pruning of Eigen weight matrices: per-layer or global masks to a target
/// sparsity, masks that keep pruned weights at zero, and conversion to Eigen::SparseMatrix.
#pragma once

#include <frugal/eigen/flops.hpp>
#include <frugal/eigen/ops.hpp>
#include <frugal/meter.hpp>
#include <frugal/units.hpp>

#include <Eigen/Core>
#include <Eigen/SparseCore>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace frugal {

// The honest cost first: a dense Eigen product does not get cheaper because weights are zero.
// W * X with 90 % of W zeroed runs the same kernel, in the same time, as with none zeroed, and
// frugal charges it the same 2*M*N*K. Unstructured pruning saves time only after conversion to
// a sparse matrix (to_sparse below; 2*nnz*N FLOPs), and on this kind of CPU that pays only at
// high sparsity (sparse_likely_pays, and time_dense_vs_sparse to measure your own shapes).
// Structured pruning (<frugal/eigen/structured_prune.hpp>) removes whole units and shrinks the
// dense products themselves.

/// Which weights of one (out x in) matrix survive: a 0/1 matrix of the weights' scalar type, so
/// apply() is one coefficient-wise product that can run after every optimizer step.
template <class Scalar>
class basic_prune_mask {
 public:
  /// The 0/1 matrix, column-major, the weights' shape (out x in).
  using matrix_type = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;

  basic_prune_mask() = default;

  /// keep(i, j) is 1 where the weight survives and 0 where it is pruned.
  explicit basic_prune_mask(matrix_type keep) : keep_(std::move(keep)) {
    if (keep_.size() == 0)
      detail::bad_argument("prune_mask", "keep must not be empty, got " + std::to_string(keep_.rows()) + " x " +
                                             std::to_string(keep_.cols()));
    for (Eigen::Index j = 0; j < keep_.cols(); ++j)
      for (Eigen::Index i = 0; i < keep_.rows(); ++i) {
        const Scalar v = keep_(i, j);
        if (v != Scalar(0) && v != Scalar(1))
          detail::bad_argument("prune_mask", "keep(" + std::to_string(i) + ", " + std::to_string(j) +
                                                 ") must be 0 or 1, got " +
                                                 detail::units_impl::shortest(static_cast<double>(v)));
        kept_ += v == Scalar(1) ? 1 : 0;
      }
  }

  /// A mask that keeps every weight of a rows x cols matrix.
  [[nodiscard]] static basic_prune_mask keep_all(Eigen::Index rows, Eigen::Index cols) {
    if (rows <= 0 || cols <= 0)
      detail::bad_argument("prune_mask::keep_all", "rows and cols must be > 0, got " + std::to_string(rows) + " x " +
                                                       std::to_string(cols));
    return basic_prune_mask(matrix_type::Ones(rows, cols));
  }

  /// Rows of the masked matrix (outputs).
  [[nodiscard]] Eigen::Index rows() const noexcept { return keep_.rows(); }
  /// Columns of the masked matrix (inputs).
  [[nodiscard]] Eigen::Index cols() const noexcept { return keep_.cols(); }
  /// Weights covered: rows() * cols().
  [[nodiscard]] std::uint64_t size() const noexcept { return static_cast<std::uint64_t>(keep_.size()); }
  /// Weights that survive.
  [[nodiscard]] std::uint64_t kept() const noexcept { return kept_; }
  /// Weights pruned: size() - kept().
  [[nodiscard]] std::uint64_t pruned() const noexcept { return size() - kept_; }
  /// Fraction of the weights pruned (0 for an empty mask).
  [[nodiscard]] double sparsity() const noexcept {
    return size() == 0 ? 0.0 : static_cast<double>(pruned()) / static_cast<double>(size());
  }
  /// Whether weight (i, j) survives; i and j must be in range (not checked).
  [[nodiscard]] bool keeps(Eigen::Index i, Eigen::Index j) const { return keep_(i, j) != Scalar(0); }
  /// The 0/1 matrix itself.
  [[nodiscard]] const matrix_type& values() const noexcept { return keep_; }

  /// w = w .* keep: pruned weights become (and, applied after every update, stay) zero. Apply it
  /// to the weights after each optimizer step, and to momentum / Adam moments if they should not
  /// carry a pruned weight's history. Charges one FLOP per weight.
  template <class W>
  void apply(Eigen::MatrixBase<W>& w) const {
    detail::require_equal("prune_mask::apply", "w.rows()", w.rows(), "mask rows", keep_.rows());
    detail::require_equal("prune_mask::apply", "w.cols()", w.cols(), "mask cols", keep_.cols());
    frugal::assign(w.derived(), w.derived().cwiseProduct(keep_));
  }
  /// For a temporary view: mask.apply(W.block(...)).
  template <class W>
  void apply(Eigen::MatrixBase<W>&& w) const {
    apply(w);
  }

  /// Same shape and same weights kept.
  friend bool operator==(const basic_prune_mask& a, const basic_prune_mask& b) {
    return a.keep_.rows() == b.keep_.rows() && a.keep_.cols() == b.keep_.cols() && a.keep_ == b.keep_;
  }
  /// Not operator==.
  friend bool operator!=(const basic_prune_mask& a, const basic_prune_mask& b) { return !(a == b); }

 private:
  matrix_type keep_;
  std::uint64_t kept_ = 0;
};

/// The mask for float weights, the common case.
using prune_mask = basic_prune_mask<float>;

namespace detail {

[[nodiscard]] inline std::string layer_field(const char* name, std::size_t layer, std::size_t count) {
  return count == 1 ? std::string(name) : std::string(name) + "[" + std::to_string(layer) + "]";
}

// How many of n weights a sparsity prunes: floor(sparsity * n), so never more than asked and
// (sparsity < 1) at least one weight kept; a product within 1e-9 of an integer counts as that
// integer, so 0.29 of 100 prunes 29 although 0.29 * 100 is 28.999999999999996 in double.
[[nodiscard]] inline std::uint64_t pruned_count(double sparsity, std::uint64_t n) {
  const double t = sparsity * static_cast<double>(n);
  const double nearest = std::round(t);
  const double k = std::abs(t - nearest) <= 1e-9 * std::max(1.0, static_cast<double>(n)) ? nearest : std::floor(t);
  return std::min(static_cast<std::uint64_t>(k), n == 0 ? 0 : n - 1);
}

inline void require_sparsity(const char* op, double sparsity) {
  if (!(sparsity >= 0 && sparsity < 1))
    bad_argument(op, "sparsity must be in [0, 1), got " + units_impl::shortest(sparsity));
}

// The shared core of per-layer and global pruning. Weights are ranked by magnitude, largest
// first; equal magnitudes by position (layer, then column-major index), earlier first; the first
// n - k survive. Weights a previous mask pruned rank below every other weight, so a mask only
// ever grows its pruned set.
template <class Scalar, class Layer>
[[nodiscard]] std::vector<basic_prune_mask<Scalar>> magnitude_prune_layers(
    const char* op, const std::vector<const Layer*>& layers, double sparsity,
    const std::vector<basic_prune_mask<Scalar>>* previous) {
  require_sparsity(op, sparsity);
  const std::size_t count = layers.size();
  if (count == 0) bad_argument(op, "layers must not be empty, got 0 layers");
  if (previous != nullptr && previous->size() != count)
    bad_argument(op, "previous must hold one mask per layer (" + std::to_string(count) + "), got " +
                         std::to_string(previous->size()));
  std::vector<std::uint64_t> offset(count + 1, 0);
  std::uint64_t already_pruned = 0;
  for (std::size_t l = 0; l < count; ++l) {
    const auto& w = *layers[l];
    if (w.size() == 0)
      bad_argument(op, layer_field("w", l, count) + " must not be empty, got " + std::to_string(w.rows()) + " x " +
                           std::to_string(w.cols()));
    for (Eigen::Index j = 0; j < w.cols(); ++j)
      for (Eigen::Index i = 0; i < w.rows(); ++i)
        if (!std::isfinite(static_cast<double>(w(i, j))))
          bad_argument(op, layer_field("w", l, count) + "(" + std::to_string(i) + ", " + std::to_string(j) +
                               ") must be finite, got " + units_impl::shortest(static_cast<double>(w(i, j))));
    if (previous != nullptr) {
      const auto& p = (*previous)[l];
      if (p.rows() != w.rows() || p.cols() != w.cols())
        bad_argument(op, layer_field("previous", l, count) + " must be " + std::to_string(w.rows()) + " x " +
                             std::to_string(w.cols()) + " like the weights, got " + std::to_string(p.rows()) + " x " +
                             std::to_string(p.cols()));
      already_pruned += p.pruned();
    }
    offset[l + 1] = offset[l] + static_cast<std::uint64_t>(w.size());
  }
  const std::uint64_t n = offset[count];
  const std::uint64_t k = pruned_count(sparsity, n);
  if (k < already_pruned)
    bad_argument(op, "sparsity " + units_impl::shortest(sparsity) + " prunes " + std::to_string(k) + " of " +
                         std::to_string(n) + " weights, fewer than the " + std::to_string(already_pruned) +
                         " the previous masks already prune (a mask only grows)");

  // Magnitudes in one index space; -1 marks an already pruned weight.
  std::vector<Scalar> magnitude(static_cast<std::size_t>(n));
  for (std::size_t l = 0; l < count; ++l) {
    const auto& w = *layers[l];
    Scalar* m = magnitude.data() + offset[l];
    for (Eigen::Index j = 0; j < w.cols(); ++j)
      for (Eigen::Index i = 0; i < w.rows(); ++i) {
        const bool gone = previous != nullptr && !(*previous)[l].keeps(i, j);
        m[i + j * w.rows()] = gone ? Scalar(-1) : static_cast<Scalar>(std::abs(w(i, j)));
      }
  }
  std::vector<basic_prune_mask<Scalar>> masks;
  masks.reserve(count);
  std::vector<typename basic_prune_mask<Scalar>::matrix_type> keep;
  keep.reserve(count);
  for (std::size_t l = 0; l < count; ++l)
    keep.emplace_back(basic_prune_mask<Scalar>::matrix_type::Zero(layers[l]->rows(), layers[l]->cols()));

  // A strict total order, so the survivors do not depend on nth_element's algorithm.
  std::vector<std::uint64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), std::uint64_t{0});
  const auto survives_before = [&magnitude](std::uint64_t a, std::uint64_t b) {
    const Scalar ma = magnitude[static_cast<std::size_t>(a)];
    const Scalar mb = magnitude[static_cast<std::size_t>(b)];
    return ma > mb || (ma == mb && a < b);
  };
  const auto survivors = static_cast<std::ptrdiff_t>(n - k);
  std::nth_element(order.begin(), order.begin() + survivors, order.end(), survives_before);
  for (std::ptrdiff_t s = 0; s < survivors; ++s) {
    const std::uint64_t g = order[static_cast<std::size_t>(s)];
    const std::size_t l = static_cast<std::size_t>(std::upper_bound(offset.begin(), offset.end(), g) - offset.begin()) - 1;
    const auto local = static_cast<Eigen::Index>(g - offset[l]);
    keep[l](local % keep[l].rows(), local / keep[l].rows()) = Scalar(1);
  }
  for (auto& m : keep) masks.emplace_back(std::move(m));
  return masks;
}

template <class Scalar>
using matrix_ref = Eigen::Ref<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>>;

template <class T>
[[nodiscard]] std::vector<const T*> pointers(const std::vector<T>& v) {
  std::vector<const T*> p;
  p.reserve(v.size());
  for (const T& x : v) p.push_back(&x);
  return p;
}

}  // namespace detail

/// The mask that prunes floor(sparsity * size) weights of w, those of smallest magnitude
/// (sparsity in [0, 1); at least one weight survives). Ties: of equal magnitudes the one with the
/// smaller column-major index survives. Deterministic; O(size) expected time. Charges nothing.
template <class W>
[[nodiscard]] basic_prune_mask<typename W::Scalar> magnitude_prune(const Eigen::MatrixBase<W>& w, double sparsity) {
  using scalar = typename W::Scalar;
  const auto& plain = w.derived().eval();  // no copy for a plain matrix
  const std::vector<const std::decay_t<decltype(plain)>*> one{&plain};
  return std::move(detail::magnitude_prune_layers<scalar>("magnitude_prune", one, sparsity, nullptr).front());
}

/// Iterative pruning: as above, and every weight `previous` pruned stays pruned (they rank below
/// all others). sparsity must prune at least as many weights as previous already does.
template <class W>
[[nodiscard]] basic_prune_mask<typename W::Scalar> magnitude_prune(const Eigen::MatrixBase<W>& w, double sparsity,
                                                                   const basic_prune_mask<typename W::Scalar>& previous) {
  using scalar = typename W::Scalar;
  const auto& plain = w.derived().eval();
  const std::vector<const std::decay_t<decltype(plain)>*> one{&plain};
  const std::vector<basic_prune_mask<scalar>> prev{previous};
  return std::move(detail::magnitude_prune_layers<scalar>("magnitude_prune", one, sparsity, &prev).front());
}

/// One threshold for all layers: prunes floor(sparsity * total weights) of smallest magnitude
/// across the layers, so layers of small weights lose more. Ties: earlier layer, then smaller
/// column-major index, survives. Returns one mask per layer, in order.
/// @verbatim
///   auto masks = frugal::global_magnitude_prune({W1, W2, W3}, 0.8);   // float; <double> for double
/// @endverbatim
template <class Scalar = float>
[[nodiscard]] std::vector<basic_prune_mask<Scalar>> global_magnitude_prune(
    const std::vector<detail::matrix_ref<Scalar>>& layers, double sparsity) {
  return detail::magnitude_prune_layers<Scalar>("global_magnitude_prune", detail::pointers(layers), sparsity, nullptr);
}
/// Iterative global pruning: as above, and every weight `previous` (one mask per layer, same
/// shapes) pruned stays pruned. sparsity must prune at least as many weights as they already do;
/// throws std::invalid_argument otherwise.
template <class Scalar = float>
[[nodiscard]] std::vector<basic_prune_mask<Scalar>> global_magnitude_prune(
    const std::vector<detail::matrix_ref<Scalar>>& layers, double sparsity,
    const std::vector<basic_prune_mask<Scalar>>& previous) {
  return detail::magnitude_prune_layers<Scalar>("global_magnitude_prune", detail::pointers(layers), sparsity, &previous);
}

// ---------------------------------------------------------------------------------------------
// Sparse conversion.
// ---------------------------------------------------------------------------------------------

/// Pruned weights as a row-major sparse matrix (to_sparse's result).
template <class Scalar>
using sparse_weights = Eigen::SparseMatrix<Scalar, Eigen::RowMajor>;

/// The kept weights of w as a row-major sparse matrix: the mask's pattern, so nnz == mask.kept()
/// (a kept weight that happens to be zero is stored too, and the FLOP count stays predictable).
template <class W>
[[nodiscard]] sparse_weights<typename W::Scalar> to_sparse(const Eigen::MatrixBase<W>& w,
                                                           const basic_prune_mask<typename W::Scalar>& mask) {
  detail::require_equal("to_sparse", "w.rows()", w.rows(), "mask rows", mask.rows());
  detail::require_equal("to_sparse", "w.cols()", w.cols(), "mask cols", mask.cols());
  sparse_weights<typename W::Scalar> s(w.rows(), w.cols());
  Eigen::VectorXi per_row = mask.values().rowwise().sum().template cast<int>();
  s.reserve(per_row);
  for (Eigen::Index i = 0; i < w.rows(); ++i)
    for (Eigen::Index j = 0; j < w.cols(); ++j)
      if (mask.keeps(i, j)) s.insert(i, j) = w(i, j);
  s.makeCompressed();
  return s;
}

/// The nonzero weights of w (exact zeros dropped) as a row-major sparse matrix.
template <class W>
[[nodiscard]] sparse_weights<typename W::Scalar> to_sparse(const Eigen::MatrixBase<W>& w) {
  using scalar = typename W::Scalar;
  sparse_weights<scalar> s(w.rows(), w.cols());
  Eigen::VectorXi per_row = (w.array() != scalar(0)).rowwise().count().template cast<int>();
  s.reserve(per_row);
  for (Eigen::Index i = 0; i < w.rows(); ++i)
    for (Eigen::Index j = 0; j < w.cols(); ++j)
      if (w(i, j) != scalar(0)) s.insert(i, j) = w(i, j);
  s.makeCompressed();
  return s;
}

/// S X for S with nnz stored entries and X with n columns: one multiply and one add per stored
/// entry per column, the 2*M*N*K convention with K*M replaced by nnz.
[[nodiscard]] constexpr std::uint64_t sparse_product_flops(std::uint64_t nnz, std::uint64_t n) noexcept {
  return 2 * nnz * n;
}

/// y = s x, charging sparse_product_flops(nnz, x.cols()). y must not alias x.
template <class S, class X, class Y>
void sparse_product(const Eigen::SparseMatrix<S, Eigen::RowMajor>& s, const Eigen::MatrixBase<X>& x,
                    Eigen::MatrixBase<Y>& y) {
  detail::require_equal("sparse_product", "x.rows()", x.rows(), "s.cols()", s.cols());
  y.noalias() = s * x;
  add_flops(sparse_product_flops(static_cast<std::uint64_t>(s.nonZeros()), detail::count(x.cols())));
}

/// y = s x + b 1', the sparse twin of dense_forward: 2*nnz*N + rows*N FLOPs.
template <class S, class B, class X, class Y>
void sparse_forward(const Eigen::SparseMatrix<S, Eigen::RowMajor>& s, const Eigen::MatrixBase<B>& b,
                    const Eigen::MatrixBase<X>& x, Eigen::MatrixBase<Y>& y) {
  detail::require_equal("sparse_forward", "x.rows()", x.rows(), "s.cols()", s.cols());
  detail::require_equal("sparse_forward", "b.size()", b.size(), "s.rows()", s.rows());
  y.noalias() = s * x;
  y.colwise() += b;
  add_flops(sparse_product_flops(static_cast<std::uint64_t>(s.nonZeros()), detail::count(x.cols())) +
            detail::count(s.rows()) * detail::count(x.cols()));
}

/// The sparsity from which a sparse product beat the dense one in benchmarks/compression_bench
/// (256 x 784 weights times 784 x 128 activations, float, Eigen 3.4, GCC 12 -O2, 2-vCPU VM).
/// Default x86-64 flags (SSE2): sparse took 6.0x the dense time at 50 %, 2.5x at 80 %, 1.4x at
/// 90 %, 1.14x at 92 %, 0.71x at 95 %: about 93 %. With AVX2 + FMA (measured with -march=native,
/// AVX-512) dense gains more: 1.8x at 95 %, 0.61x at 98 %: about 97 %. Below it, keep the dense
/// matrix and the mask.
#if defined(__AVX2__) && defined(__FMA__)
inline constexpr double measured_sparse_crossover = 0.97;
#else
inline constexpr double measured_sparse_crossover = 0.93;
#endif

/// Whether a sparse product is likely to beat the dense one at this sparsity, by the crossover
/// measured above. Shapes, compiler flags (AVX/FMA speed up dense far more than sparse) and
/// machines move it: time_dense_vs_sparse measures yours.
[[nodiscard]] constexpr bool sparse_likely_pays(double sparsity) noexcept { return sparsity >= measured_sparse_crossover; }

/// Dense W X against sparse S X on the caller's own matrices: best of `repetitions` runs each.
struct sparse_timing {
  /// Best time of one dense product W X, in seconds.
  double dense_seconds = 0;
  /// Best time of one sparse product S X, in seconds.
  double sparse_seconds = 0;
  std::uint64_t dense_flops = 0;   ///< per product, 2*M*N*K
  std::uint64_t sparse_flops = 0;  ///< per product, 2*nnz*N
  /// dense_seconds / sparse_seconds (> 1: sparse is faster); 0 when sparse_seconds is 0.
  [[nodiscard]] double speedup() const noexcept { return sparse_seconds > 0 ? dense_seconds / sparse_seconds : 0.0; }
  /// Whether the sparse product was faster.
  [[nodiscard]] bool pays() const noexcept { return sparse_seconds < dense_seconds; }
};

/// Times y = w x and y = s x (s: to_sparse of the pruned w) with std::chrono::steady_clock,
/// which a frugal::manual_clock does not replace: this is a real measurement. The products it
/// runs are charged to the current scope like any other.
template <class W, class S, class X>
[[nodiscard]] sparse_timing time_dense_vs_sparse(const Eigen::MatrixBase<W>& w,
                                                 const Eigen::SparseMatrix<S, Eigen::RowMajor>& s,
                                                 const Eigen::MatrixBase<X>& x, int repetitions = 5) {
  detail::require_equal("time_dense_vs_sparse", "s.rows()", s.rows(), "w.rows()", w.rows());
  detail::require_equal("time_dense_vs_sparse", "s.cols()", s.cols(), "w.cols()", w.cols());
  detail::require_equal("time_dense_vs_sparse", "x.rows()", x.rows(), "w.cols()", w.cols());
  if (repetitions < 1)
    detail::bad_argument("time_dense_vs_sparse", "repetitions must be >= 1, got " + std::to_string(repetitions));
  using clock = std::chrono::steady_clock;
  Eigen::Matrix<typename W::Scalar, Eigen::Dynamic, Eigen::Dynamic> y(w.rows(), x.cols());
  sparse_timing t;
  t.dense_flops = 2 * detail::count(w.rows()) * detail::count(w.cols()) * detail::count(x.cols());
  t.sparse_flops = sparse_product_flops(static_cast<std::uint64_t>(s.nonZeros()), detail::count(x.cols()));
  t.dense_seconds = t.sparse_seconds = 1e300;
  for (int r = 0; r < repetitions; ++r) {
    const auto a = clock::now();
    y.noalias() = w * x;
    const auto b = clock::now();
    y.noalias() = s * x;
    const auto c = clock::now();
    t.dense_seconds = std::min(t.dense_seconds, std::chrono::duration<double>(b - a).count());
    t.sparse_seconds = std::min(t.sparse_seconds, std::chrono::duration<double>(c - b).count());
  }
  add_flops(static_cast<std::uint64_t>(repetitions) * (t.dense_flops + t.sparse_flops));
  return t;
}

}  // namespace frugal
