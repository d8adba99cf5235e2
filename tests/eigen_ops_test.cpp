// Named training ops: each computes what it says (checked against direct Eigen and finite
// differences), charges exactly its documented formula, agrees with flops_of on the equivalent
// expression and with the counting scalar's exact tally, and refuses bad input unchanged.
// A 3-layer MLP step adds up to a hand-derived total.
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <frugal/eigen/counting_scalar.hpp>
#include <frugal/eigen/flops.hpp>
#include <frugal/eigen/ops.hpp>
#include <frugal/frugal.hpp>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/checks.hpp"

namespace {

using frugal_test::expect_invalid;
using frugal_test::charged;

using Eigen::MatrixXd;
using Eigen::VectorXd;
using frugal::counting_scalar;
using cmatrix = Eigen::Matrix<counting_scalar, Eigen::Dynamic, Eigen::Dynamic>;
using cvector = Eigen::Matrix<counting_scalar, Eigen::Dynamic, 1>;
using u64 = std::uint64_t;

constexpr u64 T = FRUGAL_TRANSCENDENTAL_FLOPS;

template <class F>
u64 exact_ops(F&& f) {
  const frugal::scalar_op_counts before = frugal::counted_scalar_ops();
  f();
  return (frugal::counted_scalar_ops() - before).total();
}



// ---------------------------------------------------------------------------------------------
// Dense layer.
// ---------------------------------------------------------------------------------------------

constexpr Eigen::Index in = 9, out = 7, batch = 5;

TEST(DenseShape, FormulasAreThoseOfTheEquivalentExpressions) {
  const MatrixXd W = MatrixXd::Random(out, in), X = MatrixXd::Random(in, batch), dY = MatrixXd::Random(out, batch);
  const VectorXd b = VectorXd::Random(out);
  const frugal::dense_shape shape{in, out};
  EXPECT_EQ(shape.forward_flops(batch), frugal::flops_of((W * X).colwise() + b));
  EXPECT_EQ((frugal::dense_shape{in, out, false}.forward_flops(batch)), frugal::flops_of(W * X));
  EXPECT_EQ(shape.backward_flops(batch), frugal::flops_of(dY * X.transpose()) + frugal::flops_of(dY.rowwise().sum()) +
                                             frugal::flops_of(W.transpose() * dY));
  EXPECT_EQ(shape.backward_flops(batch, false),
            frugal::flops_of(dY * X.transpose()) + frugal::flops_of(dY.rowwise().sum()));
  EXPECT_EQ(shape.parameters(), u64{in} * out + out);
  EXPECT_EQ(shape.weights(), u64{in} * out);
  EXPECT_EQ(shape.backward_flops(0), 0u);
}

TEST(DenseForward, ComputesWXPlusBAndChargesItsFormula) {
  const MatrixXd W = MatrixXd::Random(out, in), X = MatrixXd::Random(in, batch);
  const VectorXd b = VectorXd::Random(out);
  MatrixXd Y;
  EXPECT_EQ(charged([&] { frugal::dense_forward(W, b, X, Y); }), (frugal::dense_shape{in, out}.forward_flops(batch)));
  const MatrixXd expected = (W * X).colwise() + b;
  EXPECT_TRUE(Y.isApprox(expected));
  EXPECT_EQ(charged([&] { frugal::dense_forward(W, X, Y); }),
            (frugal::dense_shape{in, out, false}.forward_flops(batch)));
  EXPECT_TRUE(Y.isApprox(W * X));
}

TEST(DenseBackward, ComputesTheGradientsAndChargesTwoProducts) {
  const MatrixXd W = MatrixXd::Random(out, in), X = MatrixXd::Random(in, batch), dY = MatrixXd::Random(out, batch);
  MatrixXd dW, dX;
  VectorXd db;
  EXPECT_EQ(charged([&] { frugal::dense_backward(W, X, dY, dW, db, dX); }),
            (frugal::dense_shape{in, out}.backward_flops(batch)));
  EXPECT_TRUE(dW.isApprox(dY * X.transpose()));
  EXPECT_TRUE(db.isApprox(dY.rowwise().sum()));
  EXPECT_TRUE(dX.isApprox(W.transpose() * dY));
  EXPECT_EQ(charged([&] { frugal::dense_backward(W, X, dY, dW, db); }),
            (frugal::dense_shape{in, out}.backward_flops(batch, false)));
}

// L = sum(Y .* R) for Y = W X + b has dL/dY = R: the gradients must match finite differences.
TEST(DenseBackward, MatchesFiniteDifferences) {
  const MatrixXd W = MatrixXd::Random(out, in), X = MatrixXd::Random(in, batch), R = MatrixXd::Random(out, batch);
  const VectorXd b = VectorXd::Random(out);
  const auto loss = [&](const MatrixXd& w, const VectorXd& bias, const MatrixXd& x) {
    MatrixXd y;
    frugal::dense_forward(w, bias, x, y);
    return y.cwiseProduct(R).sum();
  };
  MatrixXd dW, dX;
  VectorXd db;
  frugal::dense_backward(W, X, R, dW, db, dX);
  const double h = 1e-6;
  for (Eigen::Index i = 0; i < W.size(); i += 5) {
    MatrixXd plus = W, minus = W;
    plus(i) += h;
    minus(i) -= h;
    EXPECT_NEAR(dW(i), (loss(plus, b, X) - loss(minus, b, X)) / (2 * h), 1e-6) << "dW(" << i << ")";
  }
  for (Eigen::Index i = 0; i < b.size(); ++i) {
    VectorXd plus = b, minus = b;
    plus(i) += h;
    minus(i) -= h;
    EXPECT_NEAR(db(i), (loss(W, plus, X) - loss(W, minus, X)) / (2 * h), 1e-6) << "db(" << i << ")";
  }
  for (Eigen::Index i = 0; i < X.size(); i += 3) {
    MatrixXd plus = X, minus = X;
    plus(i) += h;
    minus(i) -= h;
    EXPECT_NEAR(dX(i), (loss(W, b, plus) - loss(W, b, minus)) / (2 * h), 1e-6) << "dX(" << i << ")";
  }
}

// On the counting scalar the products differ from 2MNK by the convention (see
// counting_scalar_test.cpp); everything around them is exact.
TEST(DenseLayer, CountingScalarAgreesOutsideTheProducts) {
  const cmatrix W = MatrixXd::Random(out, in).cast<counting_scalar>();
  const cmatrix X = MatrixXd::Random(in, batch).cast<counting_scalar>();
  const cmatrix dY = MatrixXd::Random(out, batch).cast<counting_scalar>();
  const cvector b = VectorXd::Random(out).cast<counting_scalar>();
  cmatrix Y, dW, dX, scratch;
  cvector db;
  const u64 forward = exact_ops([&] { frugal::dense_forward(W, b, X, Y); });
  const u64 product = exact_ops([&] { scratch.noalias() = W * X; });
  EXPECT_EQ(forward - product, u64{out} * batch) << "the bias add";
  const u64 backward = exact_ops([&] { frugal::dense_backward(W, X, dY, dW, db, dX); });
  const u64 products = exact_ops([&] { scratch.noalias() = dY * X.transpose(); }) +
                       exact_ops([&] { scratch.noalias() = W.transpose() * dY; });
  EXPECT_EQ(backward - products, u64{out} * (batch - 1)) << "the bias gradient";
}

TEST(DenseLayer, BadShapesThrowAndChangeNothing) {
  const MatrixXd W = MatrixXd::Random(out, in), X = MatrixXd::Random(in + 1, batch), dY = MatrixXd::Random(out, batch);
  const VectorXd b = VectorXd::Random(out), short_b = VectorXd::Random(out - 1);
  MatrixXd Y = MatrixXd::Constant(2, 2, 7.0), dW = Y, dX = Y;
  VectorXd db = VectorXd::Constant(2, 7.0);
  u64 flops = charged([&] {
    expect_invalid([&] { frugal::dense_forward(W, b, X, Y); },
                   {"dense_forward", "x.rows()", "w.cols()", "(9)", "got 10"});
    expect_invalid([&] { frugal::dense_forward(W, short_b, MatrixXd(X.topRows(in)), Y); },
                   {"b.size()", "(7)", "got 6"});
    expect_invalid([&] { frugal::dense_backward(W, MatrixXd(X.topRows(in)), MatrixXd(dY.leftCols(2)), dW, db, dX); },
                   {"dense_backward", "dy.cols()", "x.cols()", "(5)", "got 2"});
  });
  EXPECT_EQ(flops, 0u);
  EXPECT_TRUE(Y.isApproxToConstant(7.0));
  EXPECT_TRUE(dW.isApproxToConstant(7.0));
  EXPECT_TRUE(dX.isApproxToConstant(7.0));
  EXPECT_TRUE(db.isApproxToConstant(7.0));
}

// ---------------------------------------------------------------------------------------------
// ReLU, softmax + cross-entropy.
// ---------------------------------------------------------------------------------------------

TEST(Relu, ForwardAndBackwardCountOneComparisonPerCoefficient) {
  const MatrixXd x = MatrixXd::Random(out, batch), dy = MatrixXd::Random(out, batch);
  MatrixXd y, dx;
  EXPECT_EQ(charged([&] { frugal::relu(x, y); }), frugal::relu_flops(x.size()));
  EXPECT_TRUE(y.isApprox(x.cwiseMax(0.0)));
  EXPECT_EQ(charged([&] { frugal::relu_backward(x, dy, dx); }), frugal::relu_backward_flops(x.size()));
  for (Eigen::Index i = 0; i < x.size(); ++i) EXPECT_EQ(dx(i), x(i) > 0 ? dy(i) : 0.0);
  EXPECT_EQ(frugal::relu_flops(x.size()), frugal::flops_of(x.cwiseMax(0.0)));
  EXPECT_EQ(frugal::relu_backward_flops(x.size()), frugal::flops_of((x.array() > 0).select(dy, 0.0)));

  const cmatrix cx = x.cast<counting_scalar>(), cdy = dy.cast<counting_scalar>();
  cmatrix cy, cdx;
  EXPECT_EQ(exact_ops([&] { frugal::relu(cx, cy); }), frugal::relu_flops(x.size()));
  EXPECT_EQ(exact_ops([&] { frugal::relu_backward(cx, cdy, cdx); }), frugal::relu_backward_flops(x.size()));
}

constexpr Eigen::Index classes = 10;

TEST(SoftmaxCrossEntropy, LossAndGradientAreRight) {
  const MatrixXd z = 3 * MatrixXd::Random(classes, batch);
  const std::vector<int> labels{3, 0, 9, 3, 7};
  MatrixXd grad;
  const double loss = frugal::softmax_cross_entropy(z, labels, grad);
  double expected = 0;
  for (Eigen::Index j = 0; j < batch; ++j) {
    const VectorXd p = z.col(j).array().exp() / z.col(j).array().exp().sum();
    expected -= std::log(p(labels[static_cast<std::size_t>(j)]));
    VectorXd g = p;
    g(labels[static_cast<std::size_t>(j)]) -= 1;
    EXPECT_TRUE(grad.col(j).isApprox(g / batch)) << j;
  }
  EXPECT_NEAR(loss, expected / batch, 1e-12);
  // And the gradient is the loss's derivative.
  const double h = 1e-6;
  MatrixXd scratch;
  for (Eigen::Index i = 0; i < z.size(); i += 7) {
    MatrixXd plus = z, minus = z;
    plus(i) += h;
    minus(i) -= h;
    const double numeric =
        (frugal::softmax_cross_entropy(plus, labels, scratch) - frugal::softmax_cross_entropy(minus, labels, scratch)) /
        (2 * h);
    EXPECT_NEAR(grad(i), numeric, 1e-7) << i;
  }
}

TEST(SoftmaxCrossEntropy, StableForLargeLogits) {
  MatrixXd z = MatrixXd::Zero(3, 1);
  z << 1000, 0, -1000;
  MatrixXd grad;
  const double loss = frugal::softmax_cross_entropy(z, std::vector<int>{0}, grad);
  EXPECT_NEAR(loss, 0.0, 1e-12);
  EXPECT_TRUE(std::isfinite(grad.sum()));
}

TEST(SoftmaxCrossEntropy, ChargesItsFormulaWhichIsTheExactCount) {
  const MatrixXd z = MatrixXd::Random(classes, batch);
  const Eigen::VectorXi labels = (Eigen::VectorXi(batch) << 1, 2, 3, 4, 5).finished();
  MatrixXd grad;
  const u64 formula = frugal::softmax_cross_entropy_flops(classes, batch);
  EXPECT_EQ(formula, u64{batch} * (5 * classes + 1 + (classes + 1) * T));
  EXPECT_EQ(charged([&] { (void)frugal::softmax_cross_entropy(z, labels, grad); }), formula);

  static_assert(T == 1, "the exact comparison assumes one operation per transcendental");
  const cmatrix cz = z.cast<counting_scalar>();
  cmatrix cgrad;
  counting_scalar loss;
  EXPECT_EQ(exact_ops([&] { loss = frugal::softmax_cross_entropy(cz, labels, cgrad); }), formula);
  EXPECT_NEAR(loss.value(), frugal::softmax_cross_entropy(z, labels, grad), 1e-12);
}

TEST(SoftmaxCrossEntropy, BadLabelsAndShapesThrowAndChangeNothing) {
  const MatrixXd z = MatrixXd::Random(classes, 3);
  MatrixXd grad = MatrixXd::Constant(2, 2, 7.0);
  const u64 flops = charged([&] {
    expect_invalid(
        [&] {
          (void)frugal::softmax_cross_entropy(z, std::vector<int>{1, 10, 2}, grad);
        },
        {"softmax_cross_entropy", "labels[1]", "[0, 10)", "got 10"});
    expect_invalid(
        [&] {
          (void)frugal::softmax_cross_entropy(z, std::vector<int>{1, -1, 2}, grad);
        },
        {"labels[1]", "got -1"});
    expect_invalid(
        [&] {
          (void)frugal::softmax_cross_entropy(z, std::vector<int>{1, 2}, grad);
        },
        {"labels.size()", "logits.cols()", "(3)", "got 2"});
    expect_invalid([&] { (void)frugal::softmax_cross_entropy(MatrixXd(classes, 0), std::vector<int>{}, grad); },
                   {"logits.cols()", "batch", "got 0"});
  });
  EXPECT_EQ(flops, 0u);
  EXPECT_EQ(grad.rows(), 2);
  EXPECT_TRUE(grad.isApproxToConstant(7.0));
}

// ---------------------------------------------------------------------------------------------
// Optimisers.
// ---------------------------------------------------------------------------------------------

TEST(Sgd, UpdatesAndChargesTwoPerParameter) {
  MatrixXd p = MatrixXd::Random(out, in);
  const MatrixXd g = MatrixXd::Random(out, in), before = p;
  EXPECT_EQ(charged([&] { frugal::sgd_update(p, g, 0.1); }), frugal::sgd_flops(p.size()));
  EXPECT_TRUE(p.isApprox(before - 0.1 * g));
  EXPECT_EQ(frugal::sgd_flops(p.size()), frugal::flops_of(0.1 * g) + static_cast<u64>(p.size()));

  cmatrix cp = before.cast<counting_scalar>();
  const cmatrix cg = g.cast<counting_scalar>();
  EXPECT_EQ(exact_ops([&] { frugal::sgd_update(cp, cg, 0.1); }), frugal::sgd_flops(p.size()));
}

TEST(Sgd, MomentumUpdatesAndChargesFourPerParameter) {
  MatrixXd p = MatrixXd::Random(out, in), v = MatrixXd::Random(out, in);
  const MatrixXd g = MatrixXd::Random(out, in), p0 = p, v0 = v;
  EXPECT_EQ(charged([&] { frugal::sgd_momentum_update(p, g, v, 0.1, 0.9); }), frugal::sgd_momentum_flops(p.size()));
  const MatrixXd v1 = 0.9 * v0 + g;
  EXPECT_TRUE(v.isApprox(v1));
  EXPECT_TRUE(p.isApprox(p0 - 0.1 * v1));

  cmatrix cp = p0.cast<counting_scalar>(), cv = v0.cast<counting_scalar>();
  const cmatrix cg = g.cast<counting_scalar>();
  EXPECT_EQ(exact_ops([&] { frugal::sgd_momentum_update(cp, cg, cv, 0.1, 0.9); }),
            frugal::sgd_momentum_flops(p.size()));
}

TEST(Adam, MatchesTheTextbookUpdateOverSeveralSteps) {
  MatrixXd p = MatrixXd::Random(out, in), m = MatrixXd::Zero(out, in), v = MatrixXd::Zero(out, in);
  MatrixXd rp = p, rm = m, rv = v;
  const frugal::adam_options o{0.01, 0.9, 0.999, 1e-8};
  for (std::int64_t t = 1; t <= 3; ++t) {
    const MatrixXd g = MatrixXd::Random(out, in);
    EXPECT_EQ(charged([&] { frugal::adam_update(p, g, m, v, t, o); }), frugal::adam_flops(p.size()));
    // Kingma & Ba, Algorithm 1, coefficient by coefficient.
    for (Eigen::Index i = 0; i < p.size(); ++i) {
      rm(i) = o.beta1 * rm(i) + (1 - o.beta1) * g(i);
      rv(i) = o.beta2 * rv(i) + (1 - o.beta2) * g(i) * g(i);
      const double mhat = rm(i) / (1 - std::pow(o.beta1, static_cast<double>(t)));
      const double vhat = rv(i) / (1 - std::pow(o.beta2, static_cast<double>(t)));
      rp(i) -= o.lr * mhat / (std::sqrt(vhat) + o.eps);
    }
  }
  EXPECT_TRUE(p.isApprox(rp, 1e-12));
  EXPECT_TRUE(m.isApprox(rm, 1e-12));
  EXPECT_TRUE(v.isApprox(rv, 1e-12));
}

TEST(Adam, TwelvePerParameterIsTheExactCount) {
  cmatrix p = MatrixXd::Random(out, in).cast<counting_scalar>();
  cmatrix m = cmatrix::Zero(out, in), v = cmatrix::Zero(out, in);
  const cmatrix g = MatrixXd::Random(out, in).cast<counting_scalar>();
  EXPECT_EQ(exact_ops([&] { frugal::adam_update(p, g, m, v, 1); }), frugal::adam_flops(p.size()));
  EXPECT_EQ(frugal::adam_flops(1), 12u);
}

TEST(Optimisers, BadArgumentsThrowAndChangeNothing) {
  MatrixXd p = MatrixXd::Constant(3, 3, 7.0), m = p, v = p;
  const MatrixXd g = MatrixXd::Ones(3, 3), wrong = MatrixXd::Ones(3, 2);
  const u64 flops = charged([&] {
    expect_invalid([&] { frugal::sgd_update(p, g, -0.1); }, {"sgd_update", "lr", "got -0.1"});
    expect_invalid([&] { frugal::sgd_update(p, g, std::nan("")); }, {"lr", "nan"});
    expect_invalid([&] { frugal::sgd_update(p, wrong, 0.1); }, {"g.cols()", "p.cols()", "(3)", "got 2"});
    expect_invalid([&] { frugal::sgd_momentum_update(p, g, v, 0.1, -1); }, {"momentum", "got -1"});
    expect_invalid([&] { frugal::adam_update(p, g, m, v, 0); }, {"adam_update", "step", "got 0"});
    expect_invalid([&] { frugal::adam_update(p, g, m, v, 1, {0.1, 1.0, 0.999, 1e-8}); }, {"beta1", "[0, 1)", "got 1"});
    expect_invalid([&] { frugal::adam_update(p, g, m, v, 1, {0.1, 0.9, -0.5, 1e-8}); }, {"beta2", "got -0.5"});
    expect_invalid([&] { frugal::adam_update(p, g, m, v, 1, {0.1, 0.9, 0.999, 0.0}); }, {"eps", "got 0"});
    expect_invalid([&] { frugal::adam_update(p, wrong, m, v, 1); }, {"g.cols()", "got 2"});
  });
  EXPECT_EQ(flops, 0u);
  EXPECT_TRUE(p.isApproxToConstant(7.0));
  EXPECT_TRUE(m.isApproxToConstant(7.0));
  EXPECT_TRUE(v.isApproxToConstant(7.0));
}

// ---------------------------------------------------------------------------------------------
// A 3-layer MLP: 20 -> 16 -> 12 -> 10, ReLU between layers, softmax + cross-entropy, SGD.
// ---------------------------------------------------------------------------------------------

struct mlp {
  MatrixXd W1 = MatrixXd::Random(16, 20) * 0.3, W2 = MatrixXd::Random(12, 16) * 0.3,
           W3 = MatrixXd::Random(10, 12) * 0.3;
  VectorXd b1 = VectorXd::Zero(16), b2 = VectorXd::Zero(12), b3 = VectorXd::Zero(10);
};

// One training step, each stage in its own scope. The output layer is written as a counted
// expression, the others with the named ops: both routes charge the same scopes.
double train_step(mlp& net, frugal::budget& run, const MatrixXd& X, const std::vector<int>& labels, double lr) {
  MatrixXd Z1, A1, Z2, A2, Z3, dZ3, dA2, dZ2, dA1, dZ1, dW1, dW2, dW3;
  VectorXd db1, db2, db3;
  double loss = 0;
  {
    frugal::scope s{run, "forward"};
    frugal::dense_forward(net.W1, net.b1, X, Z1);
    frugal::relu(Z1, A1);
    frugal::dense_forward(net.W2, net.b2, A1, Z2);
    frugal::relu(Z2, A2);
    frugal::assign(Z3, (net.W3 * A2).colwise() + net.b3);
  }
  {
    frugal::scope s{run, "loss"};
    loss = frugal::softmax_cross_entropy(Z3, labels, dZ3);
  }
  {
    frugal::scope s{run, "backward"};
    frugal::dense_backward(net.W3, A2, dZ3, dW3, db3, dA2);
    frugal::relu_backward(Z2, dA2, dZ2);
    frugal::dense_backward(net.W2, A1, dZ2, dW2, db2, dA1);
    frugal::relu_backward(Z1, dA1, dZ1);
    frugal::dense_backward(net.W1, X, dZ1, dW1, db1);  // the first layer: no input gradient
  }
  {
    frugal::scope s{run, "update"};
    frugal::sgd_update(net.W1, dW1, lr);
    frugal::sgd_update(net.b1, db1, lr);
    frugal::sgd_update(net.W2, dW2, lr);
    frugal::sgd_update(net.b2, db2, lr);
    frugal::sgd_update(net.W3, dW3, lr);
    frugal::sgd_update(net.b3, db3, lr);
  }
  return loss;
}

// The hand derivation, batch B = 8, T = 1 (a product is 2*M*N*K, everything else 1 per op):
//
// forward
//   layer 1  W1 X + b1   2*16*20*8 + 16*8 = 5120 + 128  = 5248
//   ReLU     16*8                                         128
//   layer 2  W2 A1 + b2  2*12*16*8 + 12*8 = 3072 + 96   = 3168
//   ReLU     12*8                                          96
//   layer 3  W3 A2 + b3  2*10*12*8 + 10*8 = 1920 + 80   = 2000
//                                                 forward 10640
// loss       softmax + cross-entropy + gradient, C = 10:
//            8 * (5*10 + 1 + (10+1)*1) = 8 * 62             496
// backward
//   layer 3  dW3 = dZ3 A2'   2*10*8*12 = 1920
//            dA2 = W3' dZ3   2*12*10*8 = 1920
//            db3 = dZ3 1     10*(8-1)  =   70            = 3910
//   ReLU'    12*8                                          96
//   layer 2  dW2 2*12*8*16 = 3072, dA1 2*16*12*8 = 3072,
//            db2 12*7 = 84                               = 6228
//   ReLU'    16*8                                         128
//   layer 1  dW1 2*16*8*20 = 5120, db1 16*7 = 112 (no dX) = 5232
//                                                backward 15594
// update     SGD, 2 per parameter: 2 * (16*20+16 + 12*16+12 + 10*12+10) = 2 * 670 = 1340
//
// total      10640 + 496 + 15594 + 1340 = 28070
TEST(Mlp, ThreeLayerStepChargesTheHandDerivedTotal) {
  static_assert(T == 1, "the derivation counts a transcendental as one FLOP");
  std::srand(7);
  mlp net;
  const MatrixXd X = MatrixXd::Random(20, 8);
  const std::vector<int> labels{0, 1, 2, 3, 4, 5, 6, 7};
  frugal::budget run{"train"};
  (void)train_step(net, run, X, labels, 0.1);
  EXPECT_EQ(run.stage("forward").flops, 10640u);
  EXPECT_EQ(run.stage("loss").flops, 496u);
  EXPECT_EQ(run.stage("backward").flops, 15594u);
  EXPECT_EQ(run.stage("update").flops, 1340u);
  EXPECT_EQ(run.used(frugal::resource::flops), 28070.0);
  // The same numbers from the shape formulas.
  const frugal::dense_shape l1{20, 16}, l2{16, 12}, l3{12, 10};
  EXPECT_EQ(l1.forward_flops(8) + l2.forward_flops(8) + l3.forward_flops(8) + frugal::relu_flops(16 * 8) +
                frugal::relu_flops(12 * 8),
            10640u);
  EXPECT_EQ(l3.backward_flops(8) + l2.backward_flops(8) + l1.backward_flops(8, false) +
                frugal::relu_backward_flops(12 * 8) + frugal::relu_backward_flops(16 * 8),
            15594u);
  EXPECT_EQ(frugal::sgd_flops(l1.parameters() + l2.parameters() + l3.parameters()), 1340u);
}

TEST(Mlp, TheOpsTrain) {
  std::srand(11);
  mlp net;
  const MatrixXd X = MatrixXd::Random(20, 8);
  const std::vector<int> labels{0, 1, 2, 3, 4, 5, 6, 7};
  frugal::budget run{"train"};
  const double first = train_step(net, run, X, labels, 0.5);
  double last = first;
  for (int i = 0; i < 30; ++i) last = train_step(net, run, X, labels, 0.5);
  EXPECT_LT(last, 0.5 * first) << "30 steps on one batch should fit it";
  EXPECT_EQ(run.used(frugal::resource::flops), 31 * 28070.0);
}

}  // namespace
