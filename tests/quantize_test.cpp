// Int8 quantization: round trip within scale/2, per-channel beats per-tensor on skewed rows, both
// quantized products within the derived bound (which is nearly attained, so it is not vacuous),
// exact int32 accumulation past the int32 range, fake-quantization, bytes, FLOPs, bad input.
#include <frugal/eigen/ops.hpp>
#include <frugal/eigen/quantize.hpp>
#include <frugal/frugal.hpp>

#include <gtest/gtest.h>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "support/checks.hpp"

namespace {

using frugal_test::expect_invalid;
using frugal_test::charged;

using Eigen::Index;
using Eigen::MatrixXd;
using Eigen::MatrixXf;
using Eigen::VectorXf;
using frugal::quant_granularity;
using frugal::quantized_product_mode;
using u64 = std::uint64_t;

constexpr quantized_product_mode both_modes[] = {quantized_product_mode::int32_accumulate,
                                                 quantized_product_mode::dequantize};



// Rows whose magnitudes differ by up to 10^4.
MatrixXf skewed(Index rows, Index cols) {
  MatrixXf w = MatrixXf::Random(rows, cols);
  for (Index i = 0; i < rows; ++i) w.row(i) *= std::pow(10.0f, -4.0f * static_cast<float>(i) / static_cast<float>(rows - 1));
  return w;
}

TEST(Quantize, RoundTripWithinHalfAScale) {
  std::srand(1);
  const MatrixXf w = skewed(37, 53);
  for (auto g : {quant_granularity::per_tensor, quant_granularity::per_channel}) {
    const frugal::quantized_matrix q = frugal::quantize(w, g);
    ASSERT_EQ(q.rows(), 37);
    ASSERT_EQ(q.cols(), 53);
    EXPECT_EQ(q.scales().size(), g == quant_granularity::per_tensor ? 1 : 37);
    const MatrixXf back = frugal::dequantize(q);
    for (Index i = 0; i < w.rows(); ++i) {
      const float s = q.scale(i);
      const double max_abs = w.row(i).cwiseAbs().maxCoeff();
      if (g == quant_granularity::per_channel) {
        EXPECT_FLOAT_EQ(s, static_cast<float>(max_abs / 127));
      }
      for (Index j = 0; j < w.cols(); ++j) {
        const int v = q.values()(i, j);
        EXPECT_LE(std::abs(v), 127);
        // scale/2, plus the float rounding of q * s (half an ulp of the result).
        EXPECT_LE(std::abs(static_cast<double>(w(i, j)) - back(i, j)),
                  s / 2.0 + std::numeric_limits<float>::epsilon() * std::abs(w(i, j)))
            << i << ", " << j;
      }
    }
  }
  // The largest weight of each channel lands on +-127.
  const auto q = frugal::quantize(w, quant_granularity::per_channel);
  for (Index i = 0; i < w.rows(); ++i) EXPECT_EQ(q.values().row(i).cast<int>().cwiseAbs().maxCoeff(), 127);
}

TEST(Quantize, PerChannelBeatsPerTensorOnSkewedRows) {
  std::srand(2);
  const MatrixXf w = skewed(16, 64);
  const MatrixXf per_tensor = frugal::dequantize(frugal::quantize(w, quant_granularity::per_tensor));
  const MatrixXf per_channel = frugal::dequantize(frugal::quantize(w, quant_granularity::per_channel));
  const double e_tensor = (per_tensor - w).norm(), e_channel = (per_channel - w).norm();
  EXPECT_LT(e_channel, e_tensor);
  // Row by row the relative error: per tensor the small rows collapse to zero, per channel every
  // row keeps about 2 decimal digits.
  for (Index i = 0; i < w.rows(); ++i) {
    const double rel_channel = (per_channel.row(i) - w.row(i)).norm() / w.row(i).norm();
    EXPECT_LT(rel_channel, 0.01) << i;
  }
  EXPECT_EQ(per_tensor.row(15).cwiseAbs().maxCoeff(), 0.0f);
  EXPECT_GT((per_tensor.row(15) - w.row(15)).norm() / w.row(15).norm(), 0.99);
}

TEST(Quantize, ZeroRowsBytesAndTies) {
  MatrixXf w = MatrixXf::Random(4, 6);
  w.row(2).setZero();
  const auto q = frugal::quantize(w, quant_granularity::per_channel);
  EXPECT_EQ(q.scale(2), 0.0f);
  EXPECT_EQ(frugal::dequantize(q).row(2), Eigen::RowVectorXf::Zero(6));
  EXPECT_EQ(q.bytes(), 24u + 4 * 4);
  EXPECT_EQ(frugal::quantize(w, quant_granularity::per_tensor).bytes(), 24u + 4);
  EXPECT_EQ(frugal::float_bytes(4, 6), 96u);
  const MatrixXf layer = MatrixXf::Random(256, 784);
  const double ratio = static_cast<double>(frugal::float_bytes(256, 784)) /
                       static_cast<double>(frugal::quantize(layer).bytes());
  EXPECT_GT(ratio, 3.97);
  EXPECT_LE(ratio, 4.0);
  // Halves round away from zero: with max 127 the scale is 1, so 0.5 -> 1 and -2.5 -> -3.
  MatrixXf h(1, 3);
  h << 127, 0.5f, -2.5f;
  const auto qh = frugal::quantize(h, quant_granularity::per_tensor);
  EXPECT_EQ(qh.values()(0, 1), 1);
  EXPECT_EQ(qh.values()(0, 2), -3);
}

MatrixXd reference_product(const MatrixXf& w, const MatrixXf& x) { return w.cast<double>() * x.cast<double>(); }

TEST(QuantizedProduct, WithinTheDerivedBound) {
  std::srand(3);
  // Odd sizes exercise every tail: k not a multiple of 8, n not a multiple of 4.
  for (auto [m, k, n] : {std::tuple<Index, Index, Index>{37, 53, 11}, {64, 784, 1}, {5, 8, 4}, {3, 1, 2}}) {
    const MatrixXf w = skewed(m, k) * 3.0f;
    MatrixXf x = MatrixXf::Random(k, n);
    x.col(0) *= 0.001f;  // columns of very different size: the int32 mode scales each on its own
    for (auto g : {quant_granularity::per_tensor, quant_granularity::per_channel}) {
      const auto q = frugal::quantize(w, g);
      for (auto mode : both_modes) {
        MatrixXf y;
        frugal::quantized_product(q, x, y, mode);
        ASSERT_EQ(y.rows(), m);
        ASSERT_EQ(y.cols(), n);
        const MatrixXd err = (y.cast<double>() - reference_product(w, x)).cwiseAbs();
        const MatrixXd bound = frugal::quantized_product_error_bound(q, x, mode);
        EXPECT_TRUE((err.array() <= bound.array()).all())
            << m << "x" << k << "x" << n << " mode " << static_cast<int>(mode) << " worst excess "
            << (err - bound).maxCoeff();
      }
    }
  }
}

// Weights built so every one rounds by almost +s/2, inputs all positive: the dequantize error
// reaches 98 % of the bound (so the bound is tight, and the test above could fail).
TEST(QuantizedProduct, BoundIsNearlyAttained) {
  std::srand(4);
  constexpr Index m = 6, k = 300;
  const float s = 1.0f / 127;
  MatrixXf w(m, k);
  for (Index i = 0; i < m; ++i)
    for (Index j = 0; j < k; ++j) w(i, j) = (static_cast<float>(std::rand() % 200 - 100) + 0.49f) * s;
  w.col(0).setConstant(1.0f);  // sets the scale to exactly max/127
  const MatrixXf x = (MatrixXf::Random(k, 3).array() + 1.5f).matrix();
  const auto q = frugal::quantize(w, quant_granularity::per_channel);
  MatrixXf y;
  frugal::quantized_product(q, x, y, quantized_product_mode::dequantize);
  const MatrixXd err = (y.cast<double>() - reference_product(w, x)).cwiseAbs();
  const MatrixXd bound = frugal::quantized_product_error_bound(q, x, quantized_product_mode::dequantize);
  EXPECT_TRUE((err.array() <= bound.array()).all());
  EXPECT_GT((err.array() / bound.array()).minCoeff(), 0.9);
}

// With int8-representable inputs the int32 mode is exact integer arithmetic: only the final
// scaling rounds. k = 140000 passes the int32 range (127 * 127 * 140000 > 2^31): the sums are
// split into chunks that cannot overflow.
TEST(QuantizedProduct, Int32AccumulationIsExactPastTheInt32Range) {
  for (Index k : {Index{1000}, Index{140000}}) {
    MatrixXf w(2, k), x(k, 5);
    for (Index j = 0; j < k; ++j) {
      w(0, j) = 127.0f;
      w(1, j) = static_cast<float>((j * 37) % 255 - 127);
      for (Index c = 0; c < 5; ++c) x(j, c) = static_cast<float>(c == 2 ? 127 : ((j + c) * 11) % 255 - 127);
    }
    const auto q = frugal::quantize(w, quant_granularity::per_channel);
    ASSERT_EQ(q.scale(0), 1.0f);
    MatrixXf y;
    frugal::quantized_product(q, x, y, quantized_product_mode::int32_accumulate);
    for (Index i = 0; i < 2; ++i)
      for (Index c = 0; c < 5; ++c) {
        double exact = 0;
        for (Index j = 0; j < k; ++j) exact += static_cast<double>(w(i, j)) * static_cast<double>(x(j, c));
        EXPECT_NEAR(y(i, c), exact, 4 * 0x1p-24 * std::abs(exact) + 1e-9) << k << " " << i << " " << c;
      }
    EXPECT_GT(static_cast<double>(y(0, 2)), 2147483647.0 * (k > 133144 ? 1 : 0));
  }
}

TEST(QuantizedProduct, ForwardAddsTheBiasAndChargesTheFormulas) {
  const MatrixXf w = MatrixXf::Random(24, 40), x = MatrixXf::Random(40, 6);
  const VectorXf b = VectorXf::Random(24);
  const auto q = frugal::quantize(w);
  for (auto mode : both_modes) {
    MatrixXf y, yb;
    EXPECT_EQ(charged([&] { frugal::quantized_product(q, x, y, mode); }),
              frugal::quantized_product_flops(24, 6, 40, mode));
    EXPECT_EQ(charged([&] { frugal::quantized_forward(q, b, x, yb, mode); }),
              frugal::quantized_product_flops(24, 6, 40, mode) + 24 * 6);
    EXPECT_TRUE(yb.isApprox(MatrixXf(y.colwise() + b), 1e-6f));
  }
  EXPECT_EQ(frugal::quantized_product_flops(24, 6, 40, quantized_product_mode::int32_accumulate),
            2u * 24 * 6 * 40 + 4 * 40 * 6 + 6 + 2 * 24 * 6);
  EXPECT_EQ(frugal::quantized_product_flops(24, 6, 40, quantized_product_mode::dequantize), 2u * 24 * 6 * 40 + 24 * 40);
  EXPECT_EQ(charged([&] { (void)frugal::quantize(w, quant_granularity::per_channel); }), frugal::quantize_flops(960, 24));
  EXPECT_EQ(charged([&] { (void)frugal::quantize(w, quant_granularity::per_tensor); }), 4u * 960 + 1);
  EXPECT_EQ(charged([&] { (void)frugal::dequantize(q); }), 960u);
  EXPECT_EQ(charged([&] { (void)frugal::fake_quantize(w); }), frugal::quantize_flops(960, 24) + 960);
  // The default (automatic) is one of the two, resolved by the number of columns: the same
  // answer, FLOPs and bound as naming it.
  for (Index n : {Index{1}, Index{6}}) {
    const MatrixXf xn = MatrixXf::Random(40, n);
    const auto named = frugal::resolve_product_mode(quantized_product_mode::automatic, static_cast<u64>(n));
    EXPECT_NE(named, quantized_product_mode::automatic);
    MatrixXf y_default, y_named;
    const u64 flops = charged([&] { frugal::quantized_product(q, xn, y_default); });
    frugal::quantized_product(q, xn, y_named, named);
    EXPECT_EQ(y_default, y_named);
    EXPECT_EQ(flops, frugal::quantized_product_flops(24, static_cast<u64>(n), 40, named));
    EXPECT_EQ(frugal::quantized_product_error_bound(q, xn), frugal::quantized_product_error_bound(q, xn, named));
  }
  EXPECT_EQ(frugal::resolve_product_mode(quantized_product_mode::dequantize, 1), quantized_product_mode::dequantize);
  EXPECT_EQ(frugal::resolve_product_mode(quantized_product_mode::automatic, 1), quantized_product_mode::int32_accumulate);
}

TEST(FakeQuantize, IsTheDequantizedWeightsAndIdempotent) {
  const MatrixXf w = skewed(8, 20);
  const MatrixXf f = frugal::fake_quantize(w);
  EXPECT_EQ(f, frugal::dequantize(frugal::quantize(w)));
  const auto q1 = frugal::quantize(w), q2 = frugal::quantize(f);
  EXPECT_EQ(q1.values(), q2.values());
  EXPECT_TRUE(frugal::fake_quantize(f).isApprox(f, 1e-6f));
}

// Quantization-aware fine-tuning: forward with fake-quantized weights, gradient straight through
// to the float weights. The int8 model's loss falls to a small fraction of where it started.
TEST(FakeQuantize, QuantizationAwareFineTuningLowersTheInt8Loss) {
  std::srand(6);
  const MatrixXf target = MatrixXf::Random(4, 10);
  const MatrixXf x = MatrixXf::Random(10, 64);
  const MatrixXf y_true = target * x;
  MatrixXf w = target + 0.3f * MatrixXf::Random(4, 10);
  const auto int8_loss = [&](const MatrixXf& weights) {
    MatrixXf y;
    frugal::quantized_product(frugal::quantize(weights), x, y, quantized_product_mode::dequantize);
    return (y - y_true).squaredNorm() / 64;
  };
  const float before = int8_loss(w);
  for (int step = 0; step < 200; ++step) {
    const MatrixXf wq = frugal::fake_quantize(w);
    const MatrixXf dy = 2.0f * (wq * x - y_true) / 64.0f;
    const MatrixXf g = dy * x.transpose();  // d loss / d wq, passed straight through to w
    frugal::sgd_update(w, g, 0.5);
  }
  EXPECT_LT(int8_loss(w), 0.05f * before);
}

// Each thread keeps its own scratch: concurrent products on one shared quantized matrix give
// exactly the single-threaded results (and TSan sees no race).
TEST(QuantizedProduct, ConcurrentProductsOnSharedWeights) {
  const MatrixXf w = MatrixXf::Random(40, 72);
  const auto q = frugal::quantize(w);
  std::vector<MatrixXf> xs, expected(4), got(4);
  for (int t = 0; t < 4; ++t) xs.push_back(MatrixXf::Random(72, t == 0 ? 1 : 9 + t));
  for (int t = 0; t < 4; ++t)
    frugal::quantized_product(q, xs[t], expected[t], t % 2 == 0 ? quantized_product_mode::int32_accumulate
                                                                : quantized_product_mode::dequantize);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int r = 0; r < 20; ++r)
        frugal::quantized_product(q, xs[t], got[t], t % 2 == 0 ? quantized_product_mode::int32_accumulate
                                                              : quantized_product_mode::dequantize);
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(got[t], expected[t]) << t;
}

TEST(QuantizeBadInput, ClearErrorsNothingChanged) {
  expect_invalid([] { (void)frugal::quantize(MatrixXf(0, 3)); }, {"frugal::quantize", "w must not be empty", "0 x 3"});
  MatrixXf w = MatrixXf::Random(3, 3);
  w(2, 1) = std::numeric_limits<float>::infinity();
  expect_invalid([&] { (void)frugal::quantize(w); }, {"w(2, 1) must be finite", "got inf"});
  const auto q = frugal::quantize(MatrixXf::Random(3, 4));
  MatrixXf y = MatrixXf::Constant(2, 2, 7.0f);
  expect_invalid([&] { frugal::quantized_product(q, MatrixXf::Random(5, 2), y); },
                 {"frugal::quantized_product", "x.rows() must equal w.cols() (4), got 5"});
  expect_invalid([&] { frugal::quantized_forward(q, VectorXf::Random(2), MatrixXf::Random(4, 2), y); },
                 {"frugal::quantized_forward", "b.size() must equal w.rows() (3), got 2"});
  expect_invalid([&] { frugal::quantized_product(frugal::quantized_matrix{}, MatrixXf::Random(4, 2), y); },
                 {"w must not be empty"});
  MatrixXf x = MatrixXf::Random(4, 2);
  x(1, 1) = std::numeric_limits<float>::quiet_NaN();
  expect_invalid([&] { frugal::quantized_product(q, x, y, quantized_product_mode::int32_accumulate); },
                 {"x must be finite for int32_accumulate, x(1, 1) is nan"});
  EXPECT_EQ(y, MatrixXf::Constant(2, 2, 7.0f));
  using values = frugal::quantized_matrix::values_type;
  expect_invalid([] { frugal::quantized_matrix m(values::Zero(2, 2), VectorXf::Ones(1), quant_granularity::per_channel); },
                 {"frugal::quantized_matrix", "scales.size() must equal values.rows() (per_channel) (2), got 1"});
  expect_invalid([] { frugal::quantized_matrix m(values::Zero(2, 2), VectorXf::Constant(1, -1.0f), quant_granularity::per_tensor); },
                 {"scales(0) must be finite and >= 0", "got -1"});
  expect_invalid([] { frugal::quantized_matrix m(values::Constant(1, 2, std::int8_t{-128}), VectorXf::Ones(1), quant_granularity::per_tensor); },
                 {"values(0, 0) must be in [-127, 127], got -128"});
  expect_invalid([] { frugal::quantized_matrix m(values(0, 2), VectorXf::Ones(1), quant_granularity::per_tensor); },
                 {"values must not be empty", "0 x 2"});
}

}  // namespace
