// Unstructured magnitude pruning: the mask keeps exactly the largest magnitudes (ties by index),
// per layer and globally; masks persist through optimizer updates and only grow; the sparse
// conversion computes the masked product and charges 2*nnz*N; bad input changes nothing.
#include <frugal/eigen/ops.hpp>
#include <frugal/eigen/prune.hpp>
#include <frugal/frugal.hpp>

#include <gtest/gtest.h>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/checks.hpp"

namespace {

using frugal_test::expect_invalid;
using frugal_test::charged;

using Eigen::MatrixXd;
using Eigen::MatrixXf;
using Eigen::VectorXf;
using u64 = std::uint64_t;



// Few distinct magnitudes, both signs: many ties.
MatrixXf tied_matrix(Eigen::Index rows, Eigen::Index cols, unsigned seed) {
  std::srand(seed);
  MatrixXf w(rows, cols);
  for (Eigen::Index j = 0; j < cols; ++j)
    for (Eigen::Index i = 0; i < rows; ++i) w(i, j) = static_cast<float>(std::rand() % 9 - 4) * 0.25f;
  return w;
}

// The reference: sort every weight by (|w| descending, position ascending), keep the first n - k.
std::vector<MatrixXf> reference_keep(const std::vector<MatrixXf>& layers, u64 k) {
  struct entry {
    float magnitude;
    std::size_t layer;
    Eigen::Index index;
  };
  std::vector<entry> all;
  for (std::size_t l = 0; l < layers.size(); ++l)
    for (Eigen::Index i = 0; i < layers[l].size(); ++i) all.push_back({std::abs(layers[l](i)), l, i});
  std::stable_sort(all.begin(), all.end(), [](const entry& a, const entry& b) { return a.magnitude > b.magnitude; });
  std::vector<MatrixXf> keep;
  for (const auto& w : layers) keep.push_back(MatrixXf::Zero(w.rows(), w.cols()));
  for (std::size_t s = 0; s < all.size() - k; ++s) keep[all[s].layer](all[s].index) = 1.0f;
  return keep;
}

TEST(MagnitudePrune, KeepsExactlyTheLargestMagnitudesWithTies) {
  for (unsigned seed : {1u, 2u, 3u}) {
    const MatrixXf w = tied_matrix(13, 17, seed);
    const u64 n = 13 * 17;
    for (double sparsity : {0.0, 0.1, 0.29, 0.5, 0.75, 0.9, 0.99}) {
      const frugal::prune_mask mask = frugal::magnitude_prune(w, sparsity);
      const u64 k = static_cast<u64>(std::floor(sparsity * static_cast<double>(n) + 1e-9));
      EXPECT_EQ(mask.pruned(), k) << sparsity;
      EXPECT_EQ(mask.kept(), n - k);
      EXPECT_EQ(mask.values(), reference_keep({w}, k).front()) << "seed " << seed << " sparsity " << sparsity;
      // Every survivor is at least as large as every pruned weight.
      float smallest_kept = std::numeric_limits<float>::infinity(), largest_pruned = 0;
      for (Eigen::Index i = 0; i < w.size(); ++i) {
        if (mask.values()(i) == 1)
          smallest_kept = std::min(smallest_kept, std::abs(w(i)));
        else
          largest_pruned = std::max(largest_pruned, std::abs(w(i)));
      }
      if (k > 0) {
        EXPECT_GE(smallest_kept, largest_pruned);
      }
    }
  }
}

TEST(MagnitudePrune, EqualMagnitudesKeepTheEarlierIndex) {
  MatrixXf w(3, 3);
  w << 1, -1, 1, -1, 1, -1, 1, -1, 1;
  const frugal::prune_mask mask = frugal::magnitude_prune(w, 0.5);  // floor(4.5) = 4 pruned
  EXPECT_EQ(mask.pruned(), 4u);
  for (Eigen::Index i = 0; i < 9; ++i) EXPECT_EQ(mask.values()(i), i < 5 ? 1.0f : 0.0f) << i;
}

TEST(MagnitudePrune, PrunesFloorOfSparsityTimesSizeAndKeepsOne) {
  const MatrixXf w = MatrixXf::Random(10, 10);
  EXPECT_EQ(frugal::magnitude_prune(w, 0.29).pruned(), 29u);  // 0.29 * 100 is 28.999999999999996 in double
  EXPECT_EQ(frugal::magnitude_prune(w, 0.0).pruned(), 0u);
  EXPECT_EQ(frugal::magnitude_prune(w, 0.999).pruned(), 99u);
  EXPECT_EQ(frugal::magnitude_prune(MatrixXf::Random(1, 7), 0.5).pruned(), 3u);
  EXPECT_EQ(frugal::magnitude_prune(MatrixXf::Random(1, 1), 0.9).pruned(), 0u);  // the last weight stays
  EXPECT_DOUBLE_EQ(frugal::magnitude_prune(w, 0.25).sparsity(), 0.25);
}

TEST(MagnitudePrune, WorksOnExpressionsAndDoubles) {
  const MatrixXd w = MatrixXd::Random(6, 5);
  const frugal::basic_prune_mask<double> m = frugal::magnitude_prune(w, 0.4);
  EXPECT_EQ(m.pruned(), 12u);
  EXPECT_EQ(frugal::magnitude_prune(2.0 * w, 0.4), m);  // scaling does not change the ranking
  EXPECT_EQ(frugal::magnitude_prune(w.block(0, 0, 3, 5), 0.4).pruned(), 6u);
}

// A helper applies the mask after each optimizer step: pruned weights stay exactly zero while the
// others keep learning. Without the mask the same updates revive them (the test can fail).
TEST(PruneMask, PrunedWeightsStayZeroThroughSgdUpdates) {
  std::srand(7);
  MatrixXf w = MatrixXf::Random(8, 10);
  const frugal::prune_mask mask = frugal::magnitude_prune(w, 0.6);
  mask.apply(w);
  MatrixXf unmasked = w;
  const MatrixXf start = w;
  for (int step = 0; step < 20; ++step) {
    const MatrixXf g = MatrixXf::Random(8, 10);
    frugal::sgd_update(w, g, 0.1);
    mask.apply(w);
    frugal::sgd_update(unmasked, g, 0.1);
  }
  for (Eigen::Index i = 0; i < w.size(); ++i) {
    if (mask.values()(i) == 0) {
      EXPECT_EQ(w(i), 0.0f) << i;
      EXPECT_NE(unmasked(i), 0.0f) << i;
    } else {
      EXPECT_NE(w(i), start(i)) << i;
      EXPECT_EQ(w(i), unmasked(i)) << i;
    }
  }
}

TEST(PruneMask, ApplyChargesOneFlopPerWeightAndTakesViews) {
  MatrixXf w = MatrixXf::Random(6, 9);
  const frugal::prune_mask mask = frugal::magnitude_prune(w, 0.5);
  EXPECT_EQ(charged([&] { mask.apply(w); }), 54u);
  MatrixXf big = MatrixXf::Ones(10, 12);
  const frugal::prune_mask corner = frugal::magnitude_prune(w, 0.5);
  corner.apply(big.block(2, 3, 6, 9));
  EXPECT_EQ(big.block(2, 3, 6, 9), corner.values());
  EXPECT_EQ(big.sum(), 120.0f - 27.0f);
}

TEST(PruneMask, FromValuesKeepAllAndEquality) {
  MatrixXf keep(2, 2);
  keep << 1, 0, 0, 1;
  const frugal::prune_mask m(keep);
  EXPECT_EQ(m.kept(), 2u);
  EXPECT_TRUE(m.keeps(0, 0));
  EXPECT_FALSE(m.keeps(1, 0));
  EXPECT_EQ(frugal::prune_mask::keep_all(3, 4).kept(), 12u);
  EXPECT_NE(m, frugal::prune_mask::keep_all(2, 2));
  EXPECT_EQ(frugal::prune_mask{}.sparsity(), 0.0);
}

TEST(MagnitudePrune, IterativePruningNeverRevivesAWeight) {
  MatrixXf w = MatrixXf::Random(12, 12);
  const frugal::prune_mask first = frugal::magnitude_prune(w, 0.5);
  first.apply(w);
  // Fine-tuning moves the weights: a pruned weight is zero, a few kept ones are now smaller than it.
  for (Eigen::Index i = 0; i < w.size(); i += 7)
    if (first.values()(i) == 1) w(i) = 0;
  const frugal::prune_mask second = frugal::magnitude_prune(w, 0.6, first);
  EXPECT_EQ(second.pruned(), 86u);
  for (Eigen::Index i = 0; i < w.size(); ++i)
    if (first.values()(i) == 0) {
      EXPECT_EQ(second.values()(i), 0.0f) << i;
    }
  expect_invalid([&] { (void)frugal::magnitude_prune(w, 0.3, first); },
                 {"frugal::magnitude_prune", "sparsity 0.3 prunes 43", "the 72 the previous masks already prune"});
}

TEST(GlobalMagnitudePrune, OneThresholdAcrossLayers) {
  const MatrixXf big = tied_matrix(6, 8, 11);
  const MatrixXf small = tied_matrix(5, 4, 12) * 0.1f;
  for (double sparsity : {0.2, 0.5, 0.8}) {
    const auto masks = frugal::global_magnitude_prune({big, small}, sparsity);
    ASSERT_EQ(masks.size(), 2u);
    const u64 k = static_cast<u64>(std::floor(sparsity * 68 + 1e-9));
    const auto expected = reference_keep({big, small}, k);
    EXPECT_EQ(masks[0].values(), expected[0]) << sparsity;
    EXPECT_EQ(masks[1].values(), expected[1]) << sparsity;
    EXPECT_EQ(masks[0].pruned() + masks[1].pruned(), k);
  }
  // Small weights go first: at 30 % (20 weights) the small layer is pruned harder.
  const auto masks = frugal::global_magnitude_prune({big, small}, 0.3);
  EXPECT_GT(masks[1].sparsity(), masks[0].sparsity());
  const auto again = frugal::global_magnitude_prune({big, small}, 0.6, masks);
  for (std::size_t l = 0; l < 2; ++l)
    for (Eigen::Index i = 0; i < masks[l].values().size(); ++i)
      if (masks[l].values()(i) == 0) {
        EXPECT_EQ(again[l].values()(i), 0.0f);
      }
  const MatrixXd d = MatrixXd::Random(3, 3);
  EXPECT_EQ(frugal::global_magnitude_prune<double>({d, d}, 0.5).size(), 2u);
}

// ---------------------------------------------------------------------------------------------
// The honest cost and the sparse conversion.
// ---------------------------------------------------------------------------------------------

TEST(PruneCost, DenseProductsDoNotGetCheaperFromZeros) {
  MatrixXf w = MatrixXf::Random(16, 24);
  const MatrixXf x = MatrixXf::Random(24, 8);
  const VectorXf b = VectorXf::Random(16);
  MatrixXf y;
  const u64 dense = charged([&] { frugal::dense_forward(w, b, x, y); });
  frugal::magnitude_prune(w, 0.9).apply(w);
  EXPECT_EQ(charged([&] { frugal::dense_forward(w, b, x, y); }), dense);
}

TEST(ToSparse, MaskPatternProductAndFlops) {
  MatrixXf w = MatrixXf::Random(16, 24);
  const frugal::prune_mask mask = frugal::magnitude_prune(w, 0.75);
  w(0, 0) = 0;  // a kept weight may be zero: the mask's pattern is stored all the same
  const auto s = frugal::to_sparse(w, mask);
  EXPECT_EQ(static_cast<u64>(s.nonZeros()), mask.kept());
  EXPECT_EQ(MatrixXf(s), MatrixXf(w.cwiseProduct(mask.values())));
  EXPECT_EQ(frugal::sparse_product_flops(96, 8), 2u * 96 * 8);

  const MatrixXf x = MatrixXf::Random(24, 8);
  const VectorXf b = VectorXf::Random(16);
  MatrixXf y_sparse, y_dense;
  EXPECT_EQ(charged([&] { frugal::sparse_forward(s, b, x, y_sparse); }), 2u * mask.kept() * 8 + 16 * 8);
  frugal::dense_forward(w.cwiseProduct(mask.values()), b, x, y_dense);
  EXPECT_TRUE(y_sparse.isApprox(y_dense, 1e-5f));
  EXPECT_EQ(charged([&] { frugal::sparse_product(s, x, y_sparse); }), 2u * mask.kept() * 8);
  EXPECT_TRUE(y_sparse.isApprox(MatrixXf(w.cwiseProduct(mask.values()) * x), 1e-5f));

  MatrixXf z = MatrixXf::Zero(3, 4);
  z(1, 2) = 5;
  z(2, 0) = -1;
  const auto zs = frugal::to_sparse(z);
  EXPECT_EQ(zs.nonZeros(), 2);
  EXPECT_EQ(MatrixXf(zs), z);
}

TEST(ToSparse, TimingReportsBothAndChargesWhatItRan) {
  const MatrixXf w = MatrixXf::Random(32, 40);
  const frugal::prune_mask mask = frugal::magnitude_prune(w, 0.9);
  const auto s = frugal::to_sparse(w, mask);
  const MatrixXf x = MatrixXf::Random(40, 4);
  frugal::sparse_timing t;
  const u64 flops = charged([&] { t = frugal::time_dense_vs_sparse(w, s, x, 2); });
  EXPECT_EQ(t.dense_flops, 2u * 32 * 40 * 4);
  EXPECT_EQ(t.sparse_flops, 2u * mask.kept() * 4);
  EXPECT_EQ(flops, 2 * (t.dense_flops + t.sparse_flops));
  EXPECT_GT(t.dense_seconds, 0.0);
  EXPECT_GT(t.sparse_seconds, 0.0);
  EXPECT_EQ(t.pays(), t.sparse_seconds < t.dense_seconds);
  EXPECT_TRUE(frugal::sparse_likely_pays(0.99));
  EXPECT_FALSE(frugal::sparse_likely_pays(0.5));
  EXPECT_TRUE(frugal::sparse_likely_pays(frugal::measured_sparse_crossover));
}

// ---------------------------------------------------------------------------------------------
// Bad input: a clear error, nothing changed.
// ---------------------------------------------------------------------------------------------

TEST(PruneBadInput, SparsityOutsideZeroOne) {
  const MatrixXf w = MatrixXf::Random(4, 4);
  expect_invalid([&] { (void)frugal::magnitude_prune(w, 1.0); }, {"frugal::magnitude_prune", "sparsity", "[0, 1)", "got 1"});
  expect_invalid([&] { (void)frugal::magnitude_prune(w, -0.1); }, {"sparsity", "got -0.1"});
  expect_invalid([&] { (void)frugal::magnitude_prune(w, 1.5); }, {"sparsity", "got 1.5"});
  expect_invalid([&] { (void)frugal::magnitude_prune(w, std::nan("")); }, {"sparsity", "got nan"});
  expect_invalid([&] { (void)frugal::global_magnitude_prune({w}, 2.0); }, {"frugal::global_magnitude_prune", "sparsity", "got 2"});
}

TEST(PruneBadInput, EmptyAndNonFiniteMatrices) {
  expect_invalid([] { (void)frugal::magnitude_prune(MatrixXf(0, 5), 0.5); }, {"w must not be empty", "0 x 5"});
  expect_invalid([] { (void)frugal::global_magnitude_prune(std::vector<frugal::detail::matrix_ref<float>>{}, 0.5); },
                 {"layers must not be empty"});
  const MatrixXf a = MatrixXf::Random(2, 2);
  expect_invalid([&] { (void)frugal::global_magnitude_prune({a, MatrixXf(3, 0)}, 0.5); }, {"w[1] must not be empty", "3 x 0"});
  MatrixXf w = MatrixXf::Random(3, 4);
  w(1, 2) = std::numeric_limits<float>::quiet_NaN();
  expect_invalid([&] { (void)frugal::magnitude_prune(w, 0.5); }, {"w(1, 2) must be finite", "got nan"});
  expect_invalid([] { frugal::prune_mask m{MatrixXf::Constant(2, 2, 0.5f)}; }, {"frugal::prune_mask", "keep(0, 0) must be 0 or 1", "got 0.5"});
  expect_invalid([] { frugal::prune_mask m{MatrixXf(0, 0)}; }, {"keep must not be empty"});
  expect_invalid([] { (void)frugal::prune_mask::keep_all(0, 3); }, {"rows and cols must be > 0", "0 x 3"});
}

TEST(PruneBadInput, ShapeMismatchesChangeNothing) {
  MatrixXf w = MatrixXf::Random(3, 4);
  const MatrixXf before = w;
  const frugal::prune_mask mask = frugal::magnitude_prune(MatrixXf::Random(4, 3), 0.5);
  expect_invalid([&] { mask.apply(w); }, {"frugal::prune_mask::apply", "w.rows()", "got 3"});
  EXPECT_EQ(w, before);
  expect_invalid([&] { (void)frugal::to_sparse(w, mask); }, {"frugal::to_sparse", "w.rows()"});
  expect_invalid([&] { (void)frugal::magnitude_prune(w, 0.5, mask); }, {"previous must be 3 x 4", "got 4 x 3"});
  expect_invalid([&] { (void)frugal::global_magnitude_prune({w, w}, 0.5, {frugal::magnitude_prune(w, 0.1)}); },
                 {"previous must hold one mask per layer (2), got 1"});
  const auto s = frugal::to_sparse(w, frugal::magnitude_prune(w, 0.5));
  MatrixXf y = MatrixXf::Zero(2, 2);
  expect_invalid([&] { frugal::sparse_product(s, MatrixXf::Random(5, 2), y); }, {"frugal::sparse_product", "x.rows()", "got 5"});
  expect_invalid([&] { frugal::sparse_forward(s, VectorXf::Random(4), MatrixXf::Random(4, 2), y); },
                 {"frugal::sparse_forward", "b.size()", "got 4"});
  EXPECT_EQ(y, MatrixXf::Zero(2, 2));
  expect_invalid([&] { (void)frugal::time_dense_vs_sparse(w, s, MatrixXf::Random(4, 2), 0); }, {"repetitions must be >= 1", "got 0"});
}

}  // namespace
