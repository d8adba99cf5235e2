// Structured pruning of hidden units: the smaller network computes what the original computes
// with those units zeroed (forward and gradients), frugal's counted FLOPs drop by exactly the
// predicted amount, optimizer state shrinks the same way, and bad input is refused unchanged.
#include <frugal/eigen/compression_plan.hpp>
#include <frugal/eigen/ops.hpp>
#include <frugal/eigen/structured_prune.hpp>
#include <frugal/frugal.hpp>

#include <gtest/gtest.h>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/checks.hpp"

namespace {

using frugal_test::expect_invalid;

using Eigen::Index;
using Eigen::MatrixXd;
using Eigen::MatrixXf;
using Eigen::VectorXd;
using Eigen::VectorXf;
using u64 = std::uint64_t;


template <class Scalar>
struct mlp {
  using matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  matrix w1, w2;
  vector b1, b2;

  matrix forward(const matrix& x) const {
    matrix z1, h, y;
    frugal::dense_forward(w1, b1, x, z1);
    frugal::relu(z1, h);
    frugal::dense_forward(w2, b2, h, y);
    return y;
  }

  // One SGD step through frugal's ops; returns the loss.
  Scalar train_step(const matrix& x, const std::vector<int>& labels, double lr) {
    matrix z1, h, y, dy, dw2, dh, dz1, dw1;
    vector db2, db1;
    frugal::dense_forward(w1, b1, x, z1);
    frugal::relu(z1, h);
    frugal::dense_forward(w2, b2, h, y);
    const Scalar loss = frugal::softmax_cross_entropy(y, labels, dy);
    dw2.resize(w2.rows(), w2.cols());
    db2.resize(b2.size());
    dh.resize(h.rows(), h.cols());
    frugal::dense_backward(w2, h, dy, dw2, db2, dh);
    dz1.resize(z1.rows(), z1.cols());
    frugal::relu_backward(z1, dh, dz1);
    dw1.resize(w1.rows(), w1.cols());
    db1.resize(b1.size());
    frugal::dense_backward(w1, x, dz1, dw1, db1);
    frugal::sgd_update(w1, dw1, lr);
    frugal::sgd_update(b1, db1, lr);
    frugal::sgd_update(w2, dw2, lr);
    frugal::sgd_update(b2, db2, lr);
    return loss;
  }
};

template <class Scalar>
mlp<Scalar> random_mlp(Index in, Index hidden, Index out) {
  using m = typename mlp<Scalar>::matrix;
  using v = typename mlp<Scalar>::vector;
  return {m::Random(hidden, in), m::Random(out, hidden), v::Random(hidden), v::Random(out)};
}

// The reference: the same network with the removed units zeroed in place.
template <class Scalar>
mlp<Scalar> zeroed(mlp<Scalar> net, const std::vector<Index>& removed) {
  for (Index j : removed) {
    net.w1.row(j).setZero();
    net.b1(j) = 0;
    net.w2.col(j).setZero();
  }
  return net;
}

template <class Scalar>
mlp<Scalar> pruned(const mlp<Scalar>& net, const frugal::pruned_hidden_layer<Scalar>& p) {
  return {p.w1, p.w2, p.b1, net.b2};
}

std::vector<int> labels_for(Index batch, Index classes) {
  std::vector<int> labels;
  for (Index j = 0; j < batch; ++j) labels.push_back(static_cast<int>((j * 7 + 3) % classes));
  return labels;
}

TEST(StructuredPrune, OutputsEqualTheZeroedUnitNetwork) {
  std::srand(3);
  const mlp<float> net = random_mlp<float>(12, 10, 5);
  const MatrixXf x = MatrixXf::Random(12, 9);
  for (auto importance : {frugal::unit_importance::l2_norm, frugal::unit_importance::l2_product}) {
    for (Index k : {Index{0}, Index{1}, Index{4}, Index{9}}) {
      const auto p = frugal::prune_hidden_units(net.w1, net.b1, net.w2, k, importance);
      ASSERT_EQ(p.w1.rows(), 10 - k);
      ASSERT_EQ(p.w1.cols(), 12);
      ASSERT_EQ(p.b1.size(), 10 - k);
      ASSERT_EQ(p.w2.rows(), 5);
      ASSERT_EQ(p.w2.cols(), 10 - k);
      ASSERT_EQ(p.selection.removed().size(), static_cast<std::size_t>(k));
      const MatrixXf expected = zeroed(net, p.selection.removed()).forward(x);
      const MatrixXf got = pruned(net, p).forward(x);
      EXPECT_LE((got - expected).cwiseAbs().maxCoeff(), 1e-6f) << "k " << k;
      if (k > 0) {
        EXPECT_GT((net.forward(x) - expected).cwiseAbs().maxCoeff(), 1e-3f);  // removing units matters
      }
    }
  }
  // User scores, in double.
  const mlp<double> d = random_mlp<double>(7, 6, 3);
  VectorXd scores(6);
  scores << 5, 1, 4, 0.5, 3, 2;
  const auto p = frugal::prune_hidden_units(d.w1, d.b1, d.w2, 2, scores);
  EXPECT_EQ(p.selection.removed(), (std::vector<Index>{1, 3}));
  const MatrixXd xd = MatrixXd::Random(7, 4);
  EXPECT_LE((pruned(d, p).forward(xd) - zeroed(d, {1, 3}).forward(xd)).cwiseAbs().maxCoeff(), 1e-12);
}

// After pruning, training goes on as it would have on the zeroed network: the kept units' gradients
// are the same, so one SGD step lands on the same weights.
TEST(StructuredPrune, TrainingContinuesLikeTheZeroedNetwork) {
  std::srand(5);
  const mlp<float> net = random_mlp<float>(8, 12, 4);
  const auto p = frugal::prune_hidden_units(net.w1, net.b1, net.w2, 5);
  mlp<float> small = pruned(net, p);
  mlp<float> reference = zeroed(net, p.selection.removed());
  const MatrixXf x = MatrixXf::Random(8, 6);
  const auto labels = labels_for(6, 4);
  for (int step = 0; step < 3; ++step) {
    const float a = small.train_step(x, labels, 0.1);
    const float b = reference.train_step(x, labels, 0.1);
    EXPECT_NEAR(a, b, 1e-6f);
  }
  const auto& s = p.selection;
  EXPECT_LE((small.w1 - s.incoming(reference.w1)).cwiseAbs().maxCoeff(), 1e-6f);
  EXPECT_LE((small.b1 - s.bias(reference.b1)).cwiseAbs().maxCoeff(), 1e-6f);
  EXPECT_LE((small.w2 - s.outgoing(reference.w2)).cwiseAbs().maxCoeff(), 1e-6f);
  EXPECT_LE((small.b2 - reference.b2).cwiseAbs().maxCoeff(), 1e-6f);
  // The zeroed units stay dead in the reference: their gradients are zero.
  for (Index j : s.removed()) EXPECT_EQ(reference.w1.row(j).cwiseAbs().maxCoeff(), 0.0f);
}

// frugal's own counting, through the ops in a scope: the step costs exactly what mlp_shape
// predicts, before and after, and the drop is k units' worth.
TEST(StructuredPrune, CountedFlopsDropByThePredictedAmount) {
  std::srand(9);
  constexpr Index in = 20, hidden = 16, out = 6, batch = 5, k = 6;
  mlp<float> net = random_mlp<float>(in, hidden, out);
  const MatrixXf x = MatrixXf::Random(in, batch);
  const auto labels = labels_for(batch, out);
  const auto p = frugal::prune_hidden_units(net.w1, net.b1, net.w2, k);
  mlp<float> small = pruned(net, p);

  frugal::budget run{"run"};
  {
    frugal::scope s{run, "dense"};
    (void)net.train_step(x, labels, 0.01);
  }
  {
    frugal::scope s{run, "pruned"};
    (void)small.train_step(x, labels, 0.01);
  }
  {
    frugal::scope s{run, "dense forward"};
    (void)net.forward(x);
  }
  {
    frugal::scope s{run, "pruned forward"};
    (void)small.forward(x);
  }
  const frugal::mlp_shape before({in, hidden, out}), after({in, hidden - k, out});
  EXPECT_EQ(run.stage("dense").flops, before.training_step_flops(batch, frugal::optimizer_kind::sgd));
  EXPECT_EQ(run.stage("pruned").flops, after.training_step_flops(batch, frugal::optimizer_kind::sgd));
  EXPECT_EQ(run.stage("dense forward").flops - run.stage("pruned forward").flops,
            u64{batch} * k * (2 * in + 2 + 2 * out));  // per unit per sample: W1 row, bias, relu, W2 column
  // Backward: dW1 (2 in) + db1 (batch - 1 adds) + relu (1) + dW2 and dH (4 out); SGD: 2 per parameter.
  const u64 backward_drop = u64{batch} * k * (2 * in + 1 + 4 * out) + k * (batch - 1);
  const u64 sgd_drop = 2 * k * (in + 1 + out);
  EXPECT_EQ(run.stage("dense").flops - run.stage("pruned").flops,
            u64{batch} * k * (2 * in + 2 + 2 * out) + backward_drop + sgd_drop);
}

TEST(StructuredPrune, SelectionShrinksOptimizerState) {
  const mlp<float> net = random_mlp<float>(5, 7, 3);
  const auto p = frugal::prune_hidden_units(net.w1, net.b1, net.w2, 3);
  const auto& s = p.selection;
  EXPECT_EQ(s.units_before(), 7);
  EXPECT_EQ(s.units_after(), 4);
  EXPECT_DOUBLE_EQ(s.fraction_removed(), 3.0 / 7.0);
  EXPECT_EQ(s.kept().size() + s.removed().size(), 7u);
  EXPECT_EQ(s.incoming(net.w1), p.w1);
  EXPECT_EQ(s.bias(net.b1), p.b1);
  EXPECT_EQ(s.outgoing(net.w2), p.w2);
  // Momentum buffers shaped like the layers shrink with the same indices.
  MatrixXf v1 = MatrixXf::Zero(7, 5), v2 = MatrixXf::Zero(3, 7);
  for (Index j = 0; j < 7; ++j) {
    v1.row(j).setConstant(static_cast<float>(j));
    v2.col(j).setConstant(static_cast<float>(j));
  }
  const MatrixXf v1s = s.incoming(v1), v2s = s.outgoing(v2);
  for (Index r = 0; r < 4; ++r) {
    EXPECT_EQ(v1s(r, 0), static_cast<float>(s.kept()[static_cast<std::size_t>(r)]));
    EXPECT_EQ(v2s(0, r), static_cast<float>(s.kept()[static_cast<std::size_t>(r)]));
  }
  EXPECT_EQ(s.bias(Eigen::RowVectorXf::LinSpaced(7, 0, 6)).size(), 4);
}

TEST(UnitScores, DefinitionsAndRescalingInvariance) {
  const mlp<float> net = random_mlp<float>(6, 4, 3);
  const VectorXd l2 = frugal::hidden_unit_scores(net.w1, net.b1, net.w2);
  const VectorXd product = frugal::hidden_unit_scores(net.w1, net.b1, net.w2, frugal::unit_importance::l2_product);
  for (Index j = 0; j < 4; ++j) {
    const double in = net.w1.row(j).cast<double>().squaredNorm() + std::pow(static_cast<double>(net.b1(j)), 2);
    const double out = net.w2.col(j).cast<double>().squaredNorm();
    EXPECT_NEAR(l2(j), std::sqrt(in + out), 1e-12);
    EXPECT_NEAR(product(j), std::sqrt(in) * std::sqrt(out), 1e-12);
  }
  // Scaling unit 2's incoming weights by 4 and outgoing by 1/4 leaves the function (ReLU is
  // positively homogeneous) and the product score unchanged; the plain norm moves.
  mlp<double> d{net.w1.cast<double>(), net.w2.cast<double>(), net.b1.cast<double>(), net.b2.cast<double>()};
  mlp<double> scaled = d;
  scaled.w1.row(2) *= 4;
  scaled.b1(2) *= 4;
  scaled.w2.col(2) /= 4;
  const MatrixXd x = MatrixXd::Random(6, 3);
  EXPECT_LE((scaled.forward(x) - d.forward(x)).cwiseAbs().maxCoeff(), 1e-12);
  const VectorXd sp = frugal::hidden_unit_scores(scaled.w1, scaled.b1, scaled.w2, frugal::unit_importance::l2_product);
  EXPECT_NEAR(sp(2), product(2), 1e-6);
  EXPECT_GT(std::abs(frugal::hidden_unit_scores(scaled.w1, scaled.b1, scaled.w2)(2) - l2(2)), 0.1);
}

TEST(SelectUnits, LowestScoresGoTiesRemoveTheLaterUnit) {
  VectorXd scores(6);
  scores << 3, 1, 2, 1, 5, 1;
  auto s = frugal::select_units_to_remove(scores, 2);
  EXPECT_EQ(s.removed(), (std::vector<Index>{3, 5}));  // three tie at 1: the later two go
  EXPECT_EQ(s.kept(), (std::vector<Index>{0, 1, 2, 4}));
  s = frugal::select_units_to_remove(scores, 4);
  EXPECT_EQ(s.removed(), (std::vector<Index>{1, 2, 3, 5}));
  EXPECT_EQ(frugal::select_units_to_remove(scores, 0).kept().size(), 6u);
  const auto explicit_units = frugal::units_removed(6, {4, 0});
  EXPECT_EQ(explicit_units.removed(), (std::vector<Index>{0, 4}));
  EXPECT_EQ(explicit_units.kept(), (std::vector<Index>{1, 2, 3, 5}));
  const mlp<float> net = random_mlp<float>(3, 6, 2);
  const auto p = frugal::prune_hidden_units(net.w1, net.b1, net.w2, explicit_units);
  EXPECT_EQ(p.w1.row(0), net.w1.row(1));
  EXPECT_EQ(p.w2.col(3), net.w2.col(5));
}

TEST(StructuredPruneBadInput, ClearErrors) {
  const mlp<float> net = random_mlp<float>(4, 5, 3);
  expect_invalid([&] { (void)frugal::prune_hidden_units(net.w1, net.b1, net.w2, 5); },
                 {"frugal::prune_hidden_units", "k (units to remove) must be in [0, 5)", "got 5"});
  expect_invalid([&] { (void)frugal::prune_hidden_units(net.w1, net.b1, net.w2, 9); }, {"got 9"});
  expect_invalid([&] { (void)frugal::prune_hidden_units(net.w1, net.b1, net.w2, -1); }, {"got -1"});
  expect_invalid([&] { (void)frugal::prune_hidden_units(MatrixXf(0, 4), VectorXf(0), MatrixXf(3, 0), 0); },
                 {"w1 must not be empty", "0 x 4"});
  expect_invalid([&] { (void)frugal::prune_hidden_units(net.w1, VectorXf::Random(4), net.w2, 1); },
                 {"b1.size() must equal w1.rows() (5), got 4"});
  expect_invalid([&] { (void)frugal::prune_hidden_units(net.w1, net.b1, MatrixXf::Random(3, 6), 1); },
                 {"w2.cols() must equal w1.rows() (hidden units) (5), got 6"});
  expect_invalid([&] { (void)frugal::prune_hidden_units(net.w1, net.b1, net.w2, 1, VectorXd::Ones(4)); },
                 {"scores.size() must equal w1.rows() (hidden units) (5), got 4"});
  VectorXd bad = VectorXd::Ones(5);
  bad(3) = std::numeric_limits<double>::quiet_NaN();
  expect_invalid([&] { (void)frugal::prune_hidden_units(net.w1, net.b1, net.w2, 1, bad); }, {"scores(3) must be finite", "got nan"});
  expect_invalid([] { (void)frugal::select_units_to_remove(VectorXd(0), 0); }, {"the hidden layer must have units, got 0"});
  expect_invalid([] { (void)frugal::units_removed(4, {1, 1}); }, {"removed units must be distinct, got 1 twice"});
  expect_invalid([] { (void)frugal::units_removed(4, {4}); }, {"removed units must be in [0, 4), got 4"});
  expect_invalid([] { (void)frugal::units_removed(2, {0, 1}); }, {"k (units to remove) must be in [0, 2)", "got 2"});
  const auto s = frugal::units_removed(5, {2});
  expect_invalid([&] { (void)s.incoming(MatrixXf::Random(4, 4)); }, {"frugal::unit_selection::incoming", "m.rows()", "got 4"});
  expect_invalid([&] { (void)s.outgoing(MatrixXf::Random(4, 4)); }, {"m.cols()", "got 4"});
  expect_invalid([&] { (void)s.bias(MatrixXf::Random(5, 2)); }, {"v must be a vector", "5 x 2"});
  expect_invalid([&] { (void)frugal::prune_hidden_units(net.w1, net.b1, net.w2, frugal::units_removed(6, {0})); },
                 {"selection.units_before() must equal w1.rows() (hidden units) (5), got 6"});
}

}  // namespace
